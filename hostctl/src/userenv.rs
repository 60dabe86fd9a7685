//! The environment hostctl hands on: what sshd would give the host user's session, not
//! whatever hostctl's caller had.
//!
//! hostctl runs with its caller's environment: on a remote host, an SSH session's; on the
//! local host, the gateway's, which may hold the gateway's own credentials or variables such
//! as `CI=true` that change how an agent's CLI behaves (Gemini CLI then refuses to run
//! interactively). Agents and the sessions inside them get only the basics below, then their
//! own variables.
//!
//! The user's identity is the account hostctl runs as, as sshd puts it in a session's
//! environment (`USER`, `LOGNAME`, `MAIL` from the password database): a caller that runs
//! without them (the gateway under systemd, say) or claims another name does not change who
//! the user is. `HOME` and `SHELL` stay as the caller has them when it has them, since a
//! deployment may point them elsewhere on purpose (sshd's `SetEnv` does), and come from the
//! password database otherwise.

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

/// The account a session runs as, from the password database.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Account {
    name: OsString,
    home: OsString,
    shell: OsString,
}

/// The account of the user hostctl runs as, if the password database knows it.
fn account() -> Option<Account> {
    let user = nix::unistd::User::from_uid(nix::unistd::getuid()).ok()??;
    Some(Account {
        name: user.name.into(),
        home: user.dir.into_os_string(),
        shell: user.shell.into_os_string(),
    })
}

/// `vars` with the user's identity as sshd sets it: `USER` and `LOGNAME` are the account's
/// name (or, with no account, `USER` as given for both), `MAIL` its mailbox in `/var/mail`,
/// and `HOME` and `SHELL` the account's when `vars` has none.
fn with_identity(
    mut vars: Vec<(OsString, OsString)>,
    account: Option<&Account>,
) -> Vec<(OsString, OsString)> {
    let get = |vars: &[(OsString, OsString)], key: &str| {
        vars.iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let set = |vars: &mut Vec<(OsString, OsString)>, key: &str, value: OsString| {
        vars.retain(|(k, _)| k != key);
        vars.push((key.into(), value));
    };
    let name = account
        .map(|a| a.name.clone())
        .or_else(|| get(&vars, "USER"))
        .or_else(|| get(&vars, "LOGNAME"));
    if let Some(name) = name {
        set(&mut vars, "USER", name.clone());
        set(&mut vars, "LOGNAME", name.clone());
        if get(&vars, "MAIL").is_none() {
            let mut mail = OsString::from("/var/mail/");
            mail.push(&name);
            set(&mut vars, "MAIL", mail);
        }
    }
    if let Some(account) = account {
        if get(&vars, "HOME").is_none() && !account.home.is_empty() {
            set(&mut vars, "HOME", account.home.clone());
        }
        if get(&vars, "SHELL").is_none() && !account.shell.is_empty() {
            set(&mut vars, "SHELL", account.shell.clone());
        }
    }
    vars
}

/// Clears `cmd`'s environment down to the basics of hostctl's own, with the user's identity
/// as sshd sets it, plus the variables named in `also` when hostctl has them.
pub fn clear_to_basics(cmd: &mut Command, also: &[&str]) {
    let vars = with_identity(kept(std::env::vars_os(), also), account().as_ref());
    cmd.env_clear().envs(vars);
}

/// Sets `SSH_TTY` to the terminal hostctl runs on, if it runs on one, as sshd does for a
/// session with a terminal: a session on a terminal runs on hostctl's own (the gateway or
/// the host's sshd made it for the client's `pty-req`).
pub fn set_session_tty(cmd: &mut Command) {
    use std::io::IsTerminal;
    // The terminal's name is the link behind descriptor 0 (Linux's /proc, which bubblewrap
    // and every host agentgate supports have).
    if std::io::stdin().is_terminal()
        && let Ok(path) = std::fs::read_link("/proc/self/fd/0")
    {
        cmd.env("SSH_TTY", path);
    }
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

    fn alice() -> Account {
        Account {
            name: "alice".into(),
            home: "/home/alice".into(),
            shell: "/bin/bash".into(),
        }
    }

    #[test]
    fn the_identity_is_the_accounts_whatever_the_caller_claims() {
        let got = with_identity(
            vars(&[("USER", "tester"), ("HOME", "/srv/h")]),
            Some(&alice()),
        );
        assert_eq!(
            got,
            vars(&[
                ("HOME", "/srv/h"),
                ("USER", "alice"),
                ("LOGNAME", "alice"),
                ("MAIL", "/var/mail/alice"),
                ("SHELL", "/bin/bash"),
            ])
        );
    }

    #[test]
    fn a_caller_without_user_or_home_gets_them_from_the_account() {
        let got = with_identity(vars(&[("PATH", "/bin")]), Some(&alice()));
        assert_eq!(
            got,
            vars(&[
                ("PATH", "/bin"),
                ("USER", "alice"),
                ("LOGNAME", "alice"),
                ("MAIL", "/var/mail/alice"),
                ("HOME", "/home/alice"),
                ("SHELL", "/bin/bash"),
            ])
        );
        // With no account known, USER as given names LOGNAME too; MAIL as given stays.
        let got = with_identity(vars(&[("USER", "u"), ("MAIL", "/m")]), None);
        assert_eq!(
            got,
            vars(&[("MAIL", "/m"), ("USER", "u"), ("LOGNAME", "u")])
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
