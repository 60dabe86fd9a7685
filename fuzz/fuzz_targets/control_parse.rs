//! Fuzzes the control-command parser: the exec string of `ssh gw COMMAND ...`, which any
//! operator with a key sends. The gateway refuses one that is not UTF-8; here any bytes are
//! made text with `String::from_utf8_lossy`, which covers every line it accepts.
//!
//! [`gateway::control::parse`] and [`gateway::control::redacted`] (what the audit trail and
//! the log show) must never panic, whatever the line. Beyond "no panic", it checks what the
//! gateway relies on: a refusal is a usage error on stderr, and the redacted line never shows
//! the value of an `--env K=V` that the parser accepted.

#![no_main]

use gateway::control::{self, ControlCommand, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let parsed = control::parse(&line);
    let shown = control::redacted(&line);
    match parsed {
        Parsed::Run(command) => {
            // What the audit trail records about the command must not panic either.
            let _ = command.agent();
            if let ControlCommand::Create(args) = &*command {
                for (key, value) in &args.env {
                    check_env_hidden(&line, &shown, key, value);
                }
            }
        }
        Parsed::Print {
            status, to_stderr, ..
        } => {
            // Help goes to stdout with status 0; anything else is a usage error on stderr.
            assert!(
                (status == control::exit::OK && !to_stderr)
                    || (status == control::exit::USAGE && to_stderr),
                "unexpected refusal: status {status}, to_stderr {to_stderr} for {line:?}"
            );
        }
    }
});

/// A secret-looking `--env` value must not reach the audit trail. Short values, and values that
/// are also part of another word of the line (the agent's name, say) or of what the redaction
/// itself prints (`KEY=***`, `-eKEY=***`, `--env=KEY=***`), can show there for another reason:
/// those are not checked.
fn check_env_hidden(line: &str, shown: &str, key: &str, value: &str) {
    // A line the redaction cannot print again shows as a fixed marker, which hides it all.
    if shown == "<unprintable command line>" {
        return;
    }
    let Some(words) = shlex::split(line) else {
        return;
    };
    let holders = words.iter().filter(|w| w.contains(value)).count();
    let printed_by_redaction = [
        format!("{key}=***"),
        format!("-e{key}=***"),
        format!("--env={key}=***"),
    ];
    if value.len() < 8 || holders != 1 || printed_by_redaction.iter().any(|p| p.contains(value)) {
        return;
    }
    let shown_words = shlex::split(shown).unwrap_or_default();
    assert!(
        !shown_words.iter().any(|w| w.contains(value)),
        "the value of --env {key} shows in the redacted line {shown:?} (from {line:?})"
    );
}
