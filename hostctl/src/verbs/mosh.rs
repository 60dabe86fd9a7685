//! `mosh`: a mosh session attached to an agent. `mosh-server` runs on this host, outside the
//! agent's sandbox (a sandbox hides the host's tmux server from what runs inside it, as the
//! `attach` verb's tmux client runs outside it too), in the agent's workspace, with the
//! environment a session gets, and `tmux attach` to the agent's session as its command.
//!
//! It only starts `mosh-server`, which prints its `MOSH CONNECT` line, forks and detaches: the
//! mosh client then speaks UDP to it directly. Nothing here relays UDP.

use std::ffi::OsStr;
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
        if let Some(bad) = server_args.iter().find(|a| a.as_str() == "--") {
            return Err(Error::InvalidInput(format!(
                "'{bad}' is not an option of mosh-server new: the command after it is the attach's"
            )));
        }
        let meta = self.agent_for_session(name)?;
        if self.tmux.pane(name)?.is_none() {
            return Err(Error::Failed(format!(
                "agent '{name}' is stopped; start it first (ssh <gateway> start {name}), then run mosh again"
            )));
        }
        // The session's environment, built as for any session, then handed to mosh-server.
        let mut session = Command::new("mosh-server");
        self.session_env(&mut session, &meta, extra_env)?;
        // The attach's tmux client finds the host's agents' server by it, as `attach` does.
        if let Some(dir) = std::env::var_os("TMUX_TMPDIR") {
            session.env("TMUX_TMPDIR", dir);
        }
        let path = session
            .get_envs()
            .find(|(key, _)| *key == "PATH")
            .and_then(|(_, value)| value.map(OsStr::to_owned))
            .unwrap_or_default();
        let server = find_program("mosh-server", &path)
            .ok_or_else(|| Error::Failed(INSTALL_MOSH.to_owned()))?;
        let attach = self.tmux.attach_command(name);
        let mut mosh = Command::new(&server);
        mosh.env_clear()
            .envs(
                session
                    .get_envs()
                    .filter_map(|(key, value)| value.map(|value| (key, value))),
            )
            .current_dir(&meta.workspace_path)
            .arg("new")
            .args(server_args)
            .arg("--")
            .arg(attach.get_program())
            .args(attach.get_args());
        let err = mosh.exec();
        Err(Error::Spawn {
            program: server.display().to_string(),
            source: err,
        })
    }
}

/// The first executable file named `program` in the directories of `path` (a `PATH` value).
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
}
