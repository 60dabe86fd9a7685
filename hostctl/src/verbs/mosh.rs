//! `mosh`: a mosh session attached to an agent. `mosh-server` runs on this host, outside the
//! agent's sandbox (a sandbox hides the host's tmux server from what runs inside it, as the
//! `attach` verb's tmux client runs outside it too), in the agent's workspace, with `tmux
//! attach` to the agent's session as its command.
//!
//! Since it runs outside the sandbox, it gets no more than an attach's tmux client does: the
//! basics of the user's environment, the agent's name and workspace, and of what the gateway
//! sends only where the client is (`SSH_CONNECTION`, by which `mosh-server -s` binds, and
//! `SSH_CLIENT`) and the locale; none of the agent's own variables, and no option of
//! mosh-server's that would set another variable.
//!
//! It only starts `mosh-server`, which prints its `MOSH CONNECT` line, forks and detaches: the
//! mosh client then speaks UDP to it directly. Nothing here relays UDP.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use super::*;

/// What tells a user where `mosh-server` comes from, when this host has none.
const INSTALL_MOSH: &str = "mosh-server is not installed on this host, and mosh needs it on the agent's host \
     (Debian and Ubuntu: apt-get install mosh)";

impl HostCtl {
    /// Replaces this process with `mosh-server new SERVER_ARGS... -- tmux attach` to agent
    /// `name`'s session, started in its workspace. The agent must be running: the attach
    /// starts after this process has gone, where no error could reach the client.
    pub fn mosh(
        &self,
        name: &str,
        extra_env: &[(String, String)],
        server_args: &[String],
    ) -> Result<std::convert::Infallible> {
        use std::os::unix::process::CommandExt;
        check_server_args(server_args)?;
        let meta = self.agent_for_session(name)?;
        if self.tmux.pane(name)?.is_none() {
            return Err(Error::Failed(format!(
                "agent '{name}' is stopped; start it first (ssh <gateway> start {name}), then run mosh again"
            )));
        }
        let attach = self.tmux.attach_command(name);
        // The attach's own environment (the user's basics, and TMUX_TMPDIR, by which its tmux
        // client finds the agents' server), then the agent's name and where the client is.
        let mut env: Vec<(OsString, OsString)> = attach
            .get_envs()
            .filter_map(|(key, value)| value.map(|value| (key.to_owned(), value.to_owned())))
            .collect();
        env.push(("AGENTGATE_AGENT".into(), name.into()));
        env.push((
            "AGENTGATE_WORKSPACE".into(),
            meta.workspace_path.clone().into_os_string(),
        ));
        env.push(("PWD".into(), meta.workspace_path.clone().into_os_string()));
        for (key, value) in extra_env {
            validate_env_key(key)?;
            if from_the_client(key) {
                env.push((key.into(), value.into()));
            }
        }
        let path = env
            .iter()
            .rev()
            .find(|(key, _)| key == "PATH")
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        let server = find_program("mosh-server", &path)
            .ok_or_else(|| Error::Failed(INSTALL_MOSH.to_owned()))?;
        // mosh-server starts its command in the home directory: tmux by its full path, so no
        // directory there decides which program runs.
        let tmux = find_program("tmux", &path)
            .ok_or_else(|| Error::Failed("tmux is not installed on this host".to_owned()))?;
        let mut mosh = Command::new(&server);
        mosh.env_clear()
            .envs(env)
            .current_dir(&meta.workspace_path)
            .arg("new")
            .args(server_args)
            .arg("--")
            .arg(tmux)
            .args(attach.get_args());
        crate::userenv::set_session_tty(&mut mosh);
        let err = mosh.exec();
        Err(Error::Spawn {
            program: server.display().to_string(),
            source: err,
        })
    }
}

/// Whether a variable the gateway sends is one an attach through mosh takes: where the client
/// is, and the locale.
fn from_the_client(key: &str) -> bool {
    matches!(key, "SSH_CONNECTION" | "SSH_CLIENT") || is_locale_variable(key)
}

/// `LANG`, `LANGUAGE` and `LC_*`.
fn is_locale_variable(key: &str) -> bool {
    key == "LANG" || key == "LANGUAGE" || key.starts_with("LC_")
}

/// Refuses what would turn mosh-server's options into more than options: a `--` (its command
/// is the attach), and an assignment (`-l NAME=VALUE` sets NAME in mosh-server's environment)
/// of anything but a locale variable.
fn check_server_args(server_args: &[String]) -> Result<()> {
    for arg in server_args {
        if arg == "--" {
            return Err(Error::InvalidInput(
                "'--' is not an option of mosh-server new: the command after it is the attach's"
                    .into(),
            ));
        }
        if let Some((key, _)) = arg.split_once('=')
            && !is_locale_variable(key.trim_start_matches("-l"))
        {
            return Err(Error::InvalidInput(format!(
                "'{}' is not a locale variable's assignment: mosh-server's -l takes LANG, LANGUAGE and LC_* only here",
                arg.escape_debug()
            )));
        }
    }
    Ok(())
}

/// The first executable file named `program` in the absolute directories of `path` (a `PATH`
/// value).
fn find_program(program: &str, path: &OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|candidate| {
            Path::new(candidate)
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_is_found_only_as_an_executable_file_on_an_absolute_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        let program = bin.join("mosh-server");
        std::fs::write(&program, "#!/bin/sh\n").expect("write");
        let path = std::env::join_paths([Path::new("relative"), &bin]).expect("path");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(find_program("mosh-server", &path), None, "not executable");
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(find_program("mosh-server", &path), Some(program));
        assert_eq!(find_program("mosh-server", OsStr::new("")), None);
    }

    #[test]
    fn mosh_servers_options_set_no_variable_but_the_locale() {
        let args = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
        assert!(check_server_args(&args(&["-c", "256", "-s", "-l", "LANG=C.UTF-8"])).is_ok());
        assert!(check_server_args(&args(&["-lLC_ALL=C", "-p", "60001:60010"])).is_ok());
        for bad in [
            &["-l", "LD_PRELOAD=/tmp/x.so"][..],
            &["-lPATH=/tmp"],
            &["-s", "--", "sh"],
        ] {
            assert!(check_server_args(&args(bad)).is_err(), "{bad:?}");
        }
        assert!(from_the_client("SSH_CONNECTION") && from_the_client("LC_TIME"));
        assert!(!from_the_client("LD_PRELOAD") && !from_the_client("TERM_PROGRAM"));
    }
}
