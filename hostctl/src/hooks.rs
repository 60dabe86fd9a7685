//! The agent CLIs' own hooks: how hostctl wires them at each start, records what they report,
//! and tells a watching gateway at once.
//!
//! - **Wiring** ([`wire`]): for a CLI the gateway recognised (`CreateRequest::cli`) whose
//!   program starts the agent's command, hostctl writes that CLI's hook settings into the
//!   agent's directory and points the CLI at them, on its command line (Claude Code's
//!   `--settings FILE`, Codex's `-c` overrides) or in its environment (Gemini CLI's system
//!   settings path). The user's own files, in the workspace and in their home, are never
//!   changed. Each hook runs `hostctl hook --home HOME --agent NAME CLI`.
//! - **Recording** ([`record`]): `hostctl hook` reads the event the CLI gives on stdin (or, for
//!   Codex's `notify`, as its last argument), turns it into a [`HookEvent`] and appends it to
//!   `agents/NAME/hooks.jsonl`. It always exits 0 and prints nothing: a hook must never change
//!   what the CLI does, nor slow it for long.
//! - **Telling** ([`watch`]): each recorded event is also sent, as the agent's name, to the
//!   datagram socket `hooks/hooks.sock` in hostctl's home, where `hostctl hook-watch` (run by the
//!   gateway) prints it, so that the gateway looks at that agent at once instead of at its next
//!   round.
//!
//! Deciding what the events mean for the agent's status is the gateway's business, not this
//! module's: it only records and reports them ([`recent`]).

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{
    AgentCli, AgentCommand, AgentMeta, HOOK_EVENTS_REPORTED, HookEvent, HookKind, OwnCall,
};
use crate::error::{Error, Result};
use crate::files::Files;

/// The most bytes of a hook's input read: a CLI's event carries the tool's input, which can be
/// a whole file being written; what is kept of it is one line.
const MAX_INPUT: u64 = 1024 * 1024;

/// The longest `detail` kept, in characters.
const MAX_DETAIL: usize = 200;

/// When hooks.jsonl passes this size it is moved to hooks.jsonl.1 and a new one begins.
const MAX_EVENTS_FILE: u64 = 64 * 1024;

/// The socket `hook-watch` listens on, in hostctl's home.
pub fn socket_path(files: &Files) -> PathBuf {
    files.hooks_socket()
}

/// In a directory of their own, the only one of the agent's that its sandbox may write (the
/// hooks run inside it).
fn events_path(files: &Files, agent: &str) -> PathBuf {
    files.events_dir(agent).join("hooks.jsonl")
}

fn previous_events_path(files: &Files, agent: &str) -> PathBuf {
    files.events_dir(agent).join("hooks.jsonl.1")
}

/// The hook events of the agent's last start are the only ones that count: a start forgets
/// those of the process before.
pub fn forget(files: &Files, agent: &str) {
    let _ = std::fs::remove_file(events_path(files, agent));
    let _ = std::fs::remove_file(previous_events_path(files, agent));
}

/// The CLI whose hooks can be wired into `command`: the recognised CLI, when it is the
/// command's program. A command line that does something else first (`cd sub && claude`) is
/// left as it is: the screen alone tells its state.
pub fn wirable(cli: Option<AgentCli>, command: &AgentCommand) -> Option<AgentCli> {
    let cli = cli?;
    let program = match command {
        AgentCommand::LoginShell => return None,
        AgentCommand::Argv { argv } => argv.first()?.as_str(),
        AgentCommand::Shell { line } => line.split_whitespace().next()?,
    };
    let base = program.rsplit('/').next().unwrap_or(program);
    (base == cli.name()).then_some(cli)
}

/// What starting an agent with hooks needs: the command with the CLI's hook options, and the
/// variables to add to its environment.
pub struct Wired {
    pub command: AgentCommand,
    pub env: Vec<(String, String)>,
}

/// Writes the hook settings of `cli` for the agent of `meta` into its directory and returns its
/// `command` set to use them. `hostctl` is this program's absolute path.
pub fn wire(
    files: &Files,
    meta: &AgentMeta,
    cli: AgentCli,
    command: &AgentCommand,
    hostctl: &Path,
) -> Result<Wired> {
    let name = &meta.request.name;
    // `hostctl hook --home HOME --agent NAME CLI [EVENT]`: what every hook runs.
    let hook_words = |event_arg: Option<&str>| -> Vec<String> {
        let hook = OwnCall::Hook {
            home: files.home().to_owned(),
            agent: name.clone(),
            cli,
            event: event_arg.map(str::to_owned),
        };
        std::iter::once(hostctl.to_string_lossy().into_owned())
            .chain(hook.argv())
            .collect()
    };
    let hook_command = |event_arg: Option<&str>| shell_words(&hook_words(event_arg));
    let dir = files.agent_dir(name);
    match cli {
        AgentCli::Claude => {
            const EVENTS: &[&str] = &[
                "SessionStart",
                "UserPromptSubmit",
                "PreToolUse",
                "PostToolUse",
                "PostToolUseFailure",
                "PermissionRequest",
                "Notification",
                "Stop",
                "StopFailure",
                "SessionEnd",
            ];
            let hooks: serde_json::Map<String, Value> = EVENTS
                .iter()
                .map(|event| {
                    let entry = json!([{
                        "matcher": "*",
                        "hooks": [{"type": "command", "command": hook_command(None), "timeout": 10}]
                    }]);
                    ((*event).to_owned(), entry)
                })
                .collect();
            let path = dir.join("claude-settings.json");
            write_file(&path, &json!({ "hooks": hooks }))?;
            Ok(Wired {
                command: with_options(
                    command,
                    &["--settings".into(), path.to_string_lossy().into_owned()],
                ),
                env: Vec::new(),
            })
        }
        AgentCli::Codex => {
            // `notify` runs a program with the event as its last argument: the turn's end.
            let notify = serde_json::to_string(&hook_words(None))
                .map_err(|e| Error::Failed(e.to_string()))?;
            // Codex's own hooks (`[hooks]`) run only once their definition is trusted in its
            // `/hooks` dialog, so only `notify` is wired: the end of each turn.
            let options = vec!["-c".to_owned(), format!("notify={notify}")];
            Ok(Wired {
                command: with_options(command, &options),
                env: Vec::new(),
            })
        }
        AgentCli::Gemini => {
            const EVENTS: &[&str] = &[
                "SessionStart",
                "BeforeAgent",
                "AfterAgent",
                "BeforeTool",
                "AfterTool",
                "Notification",
                "SessionEnd",
            ];
            // Gemini CLI reads hooks only from settings files: its system settings file, which
            // takes precedence over the user's, is pointed at a copy of the one in force (if
            // any) with the hooks added.
            let system = std::env::var_os("GEMINI_CLI_SYSTEM_SETTINGS_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/etc/gemini-cli/settings.json"));
            let mut settings: Value = std::fs::read(&system)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            let hooks: serde_json::Map<String, Value> = EVENTS
                .iter()
                .map(|event| {
                    let entry = json!([{
                        "matcher": "*",
                        "hooks": [{"type": "command", "name": "agentgate", "command": hook_command(None), "timeout": 10000}]
                    }]);
                    ((*event).to_owned(), entry)
                })
                .collect();
            if let Some(object) = settings.as_object_mut() {
                object.insert("hooks".into(), Value::Object(hooks));
            }
            let path = dir.join("gemini-settings.json");
            write_file(&path, &settings)?;
            Ok(Wired {
                command: command.clone(),
                env: vec![(
                    "GEMINI_CLI_SYSTEM_SETTINGS_PATH".into(),
                    path.to_string_lossy().into_owned(),
                )],
            })
        }
        AgentCli::Aider => Ok(Wired {
            command: command.clone(),
            env: vec![
                ("AIDER_NOTIFICATIONS".into(), "true".into()),
                (
                    "AIDER_NOTIFICATIONS_COMMAND".into(),
                    hook_command(Some("turn-ended")),
                ),
            ],
        }),
    }
}

/// `command` with `options` right after its program.
fn with_options(command: &AgentCommand, options: &[String]) -> AgentCommand {
    match command {
        AgentCommand::Argv { argv } => {
            let mut out = argv.clone();
            let at = 1.min(out.len());
            out.splice(at..at, options.iter().cloned());
            AgentCommand::Argv { argv: out }
        }
        AgentCommand::Shell { line } => {
            let trimmed = line.trim_start();
            let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
            let (program, rest) = trimmed.split_at(end);
            AgentCommand::Shell {
                line: format!("{program} {}{rest}", shell_words(options)),
            }
        }
        AgentCommand::LoginShell => AgentCommand::LoginShell,
    }
}

fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            shlex::try_quote(w)
                .map(|q| q.into_owned())
                .unwrap_or_else(|_| w.clone())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn write_file(path: &Path, value: &Value) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Failed(e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(Error::io("writing", &tmp))?;
    file.write_all(&bytes).map_err(Error::io("writing", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(Error::io("writing", path))
}

/// `hostctl hook --agent NAME CLI [ARG]`: records the event the CLI hands its hook. `input` is
/// the hook's stdin; `arg` its extra argument (Codex's `notify` passes the event there, aider
/// passes nothing and is given `turn-ended` by its wiring).
pub fn record(
    files: &Files,
    agent: &str,
    cli: AgentCli,
    arg: Option<&str>,
    input: impl Read,
) -> Result<()> {
    crate::api::validate_agent_name(agent).map_err(Error::InvalidInput)?;
    let dir = files.agent_dir(agent);
    if !dir.is_dir() {
        return Err(Error::NotFound(format!(
            "no agent named '{agent}' on this host"
        )));
    }
    let payload: Value = match arg {
        Some("turn-ended") => json!({"hook_event_name": "turn-ended"}),
        Some(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        None => {
            let mut bytes = Vec::new();
            let _ = input.take(MAX_INPUT).read_to_end(&mut bytes);
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        }
    };
    let event = event_of(cli, &payload, time::OffsetDateTime::now_utc());
    append(files, agent, &event)?;
    tell_watcher(files, agent);
    Ok(())
}

/// What `payload`, given by `cli` to its hook, says.
pub fn event_of(cli: AgentCli, payload: &Value, at: time::OffsetDateTime) -> HookEvent {
    let text = |key: &str| payload.get(key).and_then(Value::as_str);
    // Codex's notify names its event `type`; the hooks name theirs `hook_event_name`.
    let name = text("hook_event_name")
        .or_else(|| text("type"))
        .unwrap_or("unknown")
        .to_owned();
    // Gemini CLI's permission notice carries the dialog's details instead of the tool's
    // input: `{"type": "exec", "command": ...}`, `{"type": "edit", "fileName": ...}`.
    let details = payload.get("details");
    let details_tool = details
        .and_then(|d| d.get("type"))
        .and_then(Value::as_str)
        .map(|kind| match kind {
            "exec" => "run_shell_command".to_owned(),
            "edit" => "replace".to_owned(),
            other => other.to_owned(),
        });
    let tool = text("tool_name").map(str::to_owned).or(details_tool);
    let tool_detail =
        || describe_tool(payload.get("tool_input")).or_else(|| describe_tool(details));
    let (kind, detail) = match name.as_str() {
        "SessionStart" => (HookKind::SessionStarted, None),
        "UserPromptSubmit" | "BeforeAgent" => {
            (HookKind::PromptSubmitted, text("prompt").map(str::to_owned))
        }
        "PreToolUse" | "BeforeTool" => (HookKind::ToolStarted, tool_detail()),
        "PostToolUse" | "PostToolUseFailure" | "AfterTool" | "PermissionDenied" => {
            (HookKind::ToolEnded, tool_detail())
        }
        "PermissionRequest" => (HookKind::PermissionAsked, tool_detail()),
        "Notification" => {
            let message = text("message").map(str::to_owned);
            match text("notification_type") {
                Some("permission_prompt" | "ToolPermission") => {
                    (HookKind::PermissionAsked, tool_detail().or(message))
                }
                Some("elicitation_dialog") => (HookKind::QuestionAsked, message),
                Some("idle_prompt") => (HookKind::TurnEnded, message),
                _ => (HookKind::Other, message),
            }
        }
        "Stop" | "AfterAgent" | "agent-turn-complete" | "turn-ended" => (HookKind::TurnEnded, None),
        "StopFailure" => (
            HookKind::TurnFailed,
            text("error").or(text("message")).map(str::to_owned),
        ),
        "SessionEnd" => (HookKind::SessionEnded, text("reason").map(str::to_owned)),
        _ => (HookKind::Other, None),
    };
    HookEvent {
        at,
        cli,
        event: one_line(&name, 64),
        kind,
        tool: tool.map(|t| one_line(&t, 64)),
        detail: detail.map(|d| one_line(&d, MAX_DETAIL)),
        session: text("session_id")
            .or_else(|| text("thread-id"))
            .map(|s| one_line(s, 64)),
    }
}

/// What a tool's input is about, in a line: the command it runs, the file it writes, the
/// address it fetches, the question it asks.
fn describe_tool(input: Option<&Value>) -> Option<String> {
    let input = input?;
    for key in ["command", "cmd"] {
        match input.get(key) {
            Some(Value::String(s)) => return Some(s.clone()),
            Some(Value::Array(words)) => {
                let words: Vec<&str> = words.iter().filter_map(Value::as_str).collect();
                // `bash -lc SCRIPT` is the script.
                return Some(match words.as_slice() {
                    [_, flag, script] if flag.ends_with('c') && flag.starts_with('-') => {
                        (*script).to_owned()
                    }
                    _ => words.join(" "),
                });
            }
            _ => {}
        }
    }
    for key in [
        "file_path",
        "path",
        "absolute_path",
        "fileName",
        "notebook_path",
        "url",
    ] {
        if let Some(s) = input.get(key).and_then(Value::as_str) {
            return Some(s.to_owned());
        }
    }
    input
        .get("questions")
        .and_then(|q| q.get(0))
        .and_then(|q| q.get("question"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// `text` on one line (line breaks and control characters as spaces), at most `max`
/// characters.
fn one_line(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out.trim().to_owned()
}

fn append(files: &Files, agent: &str, event: &HookEvent) -> Result<()> {
    let path = events_path(files, agent);
    // Made at every start; an agent started by an older hostctl has none yet.
    let dir = files.events_dir(agent);
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
    }
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.len() > MAX_EVENTS_FILE) {
        let _ = std::fs::rename(&path, previous_events_path(files, agent));
    }
    let mut line = serde_json::to_vec(event).map_err(|e| Error::Failed(e.to_string()))?;
    line.push(b'\n');
    // The events directory is the sandboxed agent's to write: never through its symlinks.
    let mut file = crate::files::append_untrusted(&path).map_err(Error::io("opening", &path))?;
    // One write: lines of hooks that run at once do not interleave.
    file.write_all(&line).map_err(Error::io("writing", &path))
}

fn tell_watcher(files: &Files, agent: &str) {
    if let Ok(socket) = UnixDatagram::unbound() {
        let _ = socket.set_nonblocking(true);
        let _ = socket.send_to(agent.as_bytes(), socket_path(files));
    }
}

/// The agent's last hook events, oldest first (at most [`HOOK_EVENTS_REPORTED`]). Lines that
/// do not parse (a line cut by a crash) are skipped.
pub fn recent(files: &Files, agent: &str) -> Vec<HookEvent> {
    let mut events = Vec::new();
    for path in [
        previous_events_path(files, agent),
        events_path(files, agent),
    ] {
        // Written inside the agent's sandbox, read here outside it: a symlink or a fifo the
        // agent put in place of the file is not followed, and a file grown past the size hostctl
        // keeps is read from its tail only (its first line may be cut: it does not parse).
        let Ok(bytes) = crate::files::read_untrusted_tail(&path, 2 * MAX_EVENTS_FILE) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        events.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    let skip = events.len().saturating_sub(HOOK_EVENTS_REPORTED);
    events.drain(..skip);
    events
}

/// `hostctl hook-watch`: prints the name of each agent whose CLI reports an event, one per
/// line, until stdin ends (the gateway went away) or stdout is closed. A second watcher takes
/// the socket over from the first, which then hears nothing more.
pub fn watch(files: &Files, mut out: impl Write) -> Result<()> {
    let path = socket_path(files);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    }
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).map_err(Error::io("listening on", &path))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(Error::io("listening on", &path))?;
    let (ended_tx, ended) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = ended_tx.send(());
    });
    // Ready: the caller may count on events from now on.
    writeln!(out).map_err(Error::io("writing", "stdout"))?;
    out.flush().map_err(Error::io("writing", "stdout"))?;
    let mut buf = [0u8; 128];
    loop {
        if ended.try_recv().is_ok() {
            break;
        }
        match socket.recv(&mut buf) {
            Ok(n) => {
                let Ok(name) = std::str::from_utf8(&buf[..n]) else {
                    continue;
                };
                if crate::api::validate_agent_name(name).is_err() {
                    continue;
                }
                if writeln!(out, "{name}").and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(Error::io("listening on", &path)(e)),
        }
    }
    // The socket file stays: a later watcher may have taken it over, and the next one to
    // start removes a stale one.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("a time")
    }

    #[test]
    fn claude_events_are_read_for_what_they_mean() {
        let ask = json!({
            "session_id": "s1", "hook_event_name": "PermissionRequest", "tool_name": "Bash",
            "tool_input": {"command": "touch agentgate-probe.txt\nrm -rf /", "description": "x"}
        });
        let event = event_of(AgentCli::Claude, &ask, at());
        assert_eq!(event.kind, HookKind::PermissionAsked);
        assert_eq!(event.tool.as_deref(), Some("Bash"));
        assert_eq!(
            event.detail.as_deref(),
            Some("touch agentgate-probe.txt rm -rf /")
        );
        assert_eq!(event.session.as_deref(), Some("s1"));
        let idle = json!({"hook_event_name": "Notification", "notification_type": "idle_prompt", "message": "Claude is waiting"});
        assert_eq!(
            event_of(AgentCli::Claude, &idle, at()).kind,
            HookKind::TurnEnded
        );
        let write = json!({"hook_event_name": "PreToolUse", "tool_name": "Write", "tool_input": {"file_path": "/w/hello.txt", "content": "x"}});
        assert_eq!(
            event_of(AgentCli::Claude, &write, at()).detail.as_deref(),
            Some("/w/hello.txt")
        );
        assert_eq!(
            event_of(AgentCli::Claude, &Value::Null, at()).kind,
            HookKind::Other
        );
    }

    #[test]
    fn codex_and_gemini_events_are_read_for_what_they_mean() {
        let notify = json!({"type": "agent-turn-complete", "thread-id": "t1", "last-assistant-message": "done"});
        let event = event_of(AgentCli::Codex, &notify, at());
        assert_eq!(
            (event.kind, event.session.as_deref()),
            (HookKind::TurnEnded, Some("t1"))
        );
        let exec = json!({"hook_event_name": "PermissionRequest", "tool_name": "Bash", "tool_input": {"command": ["bash", "-lc", "touch x"]}});
        assert_eq!(
            event_of(AgentCli::Codex, &exec, at()).detail.as_deref(),
            Some("touch x")
        );
        let before = json!({"hook_event_name": "BeforeAgent", "prompt": "hello"});
        assert_eq!(
            event_of(AgentCli::Gemini, &before, at()).kind,
            HookKind::PromptSubmitted
        );
        let perm = json!({"hook_event_name": "Notification", "notification_type": "ToolPermission",
            "message": "Tool Confirm Shell Command requires execution",
            "details": {"type": "exec", "title": "Confirm Shell Command", "command": "touch p", "rootCommand": "touch"}});
        let event = event_of(AgentCli::Gemini, &perm, at());
        assert_eq!(event.kind, HookKind::PermissionAsked);
        assert_eq!(
            (event.tool.as_deref(), event.detail.as_deref()),
            (Some("run_shell_command"), Some("touch p"))
        );
    }

    #[test]
    fn a_detail_is_one_short_line() {
        let long = "x".repeat(1000);
        let d = one_line(&long, MAX_DETAIL);
        assert_eq!(d.chars().count(), MAX_DETAIL + 1);
        assert_eq!(one_line("a\nb\u{1b}[31m", 50), "a b [31m");
    }

    #[test]
    fn hooks_are_wired_only_into_the_clis_own_program() {
        let shell = |l: &str| AgentCommand::Shell { line: l.into() };
        assert_eq!(
            wirable(Some(AgentCli::Claude), &shell("claude --continue")),
            Some(AgentCli::Claude)
        );
        assert_eq!(
            wirable(Some(AgentCli::Claude), &shell("/opt/bin/claude")),
            Some(AgentCli::Claude)
        );
        assert_eq!(
            wirable(Some(AgentCli::Claude), &shell("cd x && claude")),
            None
        );
        assert_eq!(wirable(None, &shell("claude")), None);
        assert_eq!(
            wirable(Some(AgentCli::Codex), &AgentCommand::LoginShell),
            None
        );
        let wired = with_options(
            &shell("  claude --continue"),
            &["--settings".into(), "/a b/s.json".into()],
        );
        assert_eq!(wired, shell("claude --settings '/a b/s.json' --continue"));
        let argv = AgentCommand::Argv {
            argv: vec!["codex".into(), "resume".into()],
        };
        assert_eq!(
            with_options(&argv, &["-c".into(), "x=1".into()]),
            AgentCommand::Argv {
                argv: vec!["codex".into(), "-c".into(), "x=1".into(), "resume".into()]
            }
        );
    }

    #[test]
    fn events_are_kept_bounded_and_read_back_in_order() {
        let home = tempfile::tempdir().expect("tempdir");
        let files = Files::new(home.path().to_owned());
        std::fs::create_dir_all(files.agent_dir("a1")).expect("agent dir");
        for i in 0..2000 {
            let payload = json!({"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {"command": format!("step {i}")}});
            record(
                &files,
                "a1",
                AgentCli::Claude,
                None,
                serde_json::to_vec(&payload).expect("json").as_slice(),
            )
            .expect("recorded");
        }
        let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(events_path(&files, "a1")) <= MAX_EVENTS_FILE + 1024);
        assert!(size(previous_events_path(&files, "a1")) <= MAX_EVENTS_FILE + 1024);
        let recent = recent(&files, "a1");
        assert_eq!(recent.len(), HOOK_EVENTS_REPORTED);
        assert_eq!(
            recent.last().and_then(|e| e.detail.as_deref()),
            Some("step 1999")
        );
        assert!(record(&files, "../x", AgentCli::Claude, None, &b"{}"[..]).is_err());
        assert!(record(&files, "nobody", AgentCli::Claude, None, &b"{}"[..]).is_err());
    }

    #[test]
    fn a_symlink_planted_in_the_events_directory_is_neither_read_nor_written_through() {
        let home = tempfile::tempdir().expect("tempdir");
        let files = Files::new(home.path().to_owned());
        std::fs::create_dir_all(files.agent_dir("a1")).expect("agent dir");
        let payload = br#"{"hook_event_name": "Stop"}"#;
        record(&files, "a1", AgentCli::Claude, None, &payload[..]).expect("recorded");
        // Another file of the host user's, holding what reads as events: the agent, which can
        // write only its events directory, points its events file at it.
        let elsewhere = home.path().join("elsewhere.jsonl");
        let line = std::fs::read(events_path(&files, "a1")).expect("read");
        let planted: Vec<u8> = line.repeat(3);
        std::fs::write(&elsewhere, &planted).expect("write");
        std::fs::remove_file(events_path(&files, "a1")).expect("rm");
        std::os::unix::fs::symlink(&elsewhere, events_path(&files, "a1")).expect("symlink");
        std::os::unix::fs::symlink(&elsewhere, previous_events_path(&files, "a1"))
            .expect("symlink");
        assert!(recent(&files, "a1").is_empty(), "read through the symlink");
        assert!(record(&files, "a1", AgentCli::Claude, None, &payload[..]).is_err());
        assert_eq!(std::fs::read(&elsewhere).expect("read"), planted);
    }
}
