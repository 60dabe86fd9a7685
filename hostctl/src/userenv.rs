//! The environment hostctl hands on: what sshd would give the host user's session, not
//! whatever hostctl's caller had.
//!
//! hostctl runs with its caller's environment: on a remote host, an SSH session's; on the
//! local host, the gateway's, which may hold the gateway's own credentials or variables such
//! as `CI=true` that change how an agent's CLI behaves (Gemini CLI then refuses to run
//! interactively). Agents and the sessions inside them get only the basics below, then their
//! own variables.

use std::ffi::OsString;
use std::process::Command;

/// The variables kept from hostctl's own environment: what sshd sets for the user (HOME,
/// USER, SHELL, PATH, ...), the locale, and the terminal type when hostctl runs on a terminal.
const BASICS: &[&str] = &[
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "PATH",
    "MAIL",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
    "TERM",
];

/// The search path when hostctl's environment has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The variables of `vars` (an environment such as [`std::env::vars_os`]) to hand on: the
/// basics, those named in `also`, and a default `PATH` when `vars` has none.
fn kept(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    also: &[&str],
) -> Vec<(OsString, OsString)> {
    let mut kept: Vec<(OsString, OsString)> = vars
        .into_iter()
        .filter(|(key, _)| {
            key.to_str()
                .is_some_and(|k| BASICS.contains(&k) || k.starts_with("LC_") || also.contains(&k))
        })
        .collect();
    if !kept.iter().any(|(key, _)| key == "PATH") {
        kept.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    kept
}

/// Clears `cmd`'s environment down to the basics of hostctl's own, plus the variables named
/// in `also` when hostctl has them.
pub fn clear_to_basics(cmd: &mut Command, also: &[&str]) {
    cmd.env_clear().envs(kept(std::env::vars_os(), also));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn only_the_users_basics_and_the_locale_are_kept() {
        let kept = kept(
            vars(&[
                ("HOME", "/home/u"),
                ("CI", "true"),
                ("AWS_SECRET_ACCESS_KEY", "s"),
                ("TMUX_TMPDIR", "/t"),
                ("LC_TIME", "C"),
                ("PATH", "/bin"),
            ]),
            &["TMUX_TMPDIR"],
        );
        assert_eq!(
            kept,
            vars(&[
                ("HOME", "/home/u"),
                ("TMUX_TMPDIR", "/t"),
                ("LC_TIME", "C"),
                ("PATH", "/bin")
            ])
        );
    }

    #[test]
    fn a_missing_path_gets_the_default() {
        assert_eq!(
            kept(vars(&[("HOME", "/h")]), &[]),
            vars(&[("HOME", "/h"), ("PATH", DEFAULT_PATH)])
        );
    }
}
