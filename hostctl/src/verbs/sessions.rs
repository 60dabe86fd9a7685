//! Sessions inside an agent: `attach` (its tmux session), `exec` (a command or a shell in its
//! workspace) and `sftp`; each replaces hostctl with the process it runs.

use super::*;

impl HostCtl {
    /// Replaces this process with the host user's shell in the agent's workspace, with the
    /// agent's environment plus `extra_env`: `shell -c COMMAND` for a command, else a login
    /// shell reading its standard input. The agent need not be running: its workspace is
    /// what counts.
    pub fn exec(
        &self,
        name: &str,
        command: Option<&str>,
        extra_env: &[(String, String)],
    ) -> Result<std::convert::Infallible> {
        use std::os::unix::process::CommandExt;
        let meta = self.agent_for_session(name)?;
        let shell = login_shell();
        let mut cmd = Command::new(&shell);
        match command {
            Some(line) => cmd.arg("-c").arg(line),
            None => cmd.arg("-l"),
        };
        self.session_env(&mut cmd, &meta, extra_env)?;
        let err = cmd.exec();
        Err(Error::Spawn {
            program: shell,
            source: err,
        })
    }

    /// Replaces this process with OpenSSH's `sftp-server`, starting in the agent's workspace.
    pub fn sftp(&self, name: &str) -> Result<std::convert::Infallible> {
        use std::os::unix::process::CommandExt;
        let meta = self.agent_for_session(name)?;
        let server = sftp_server().ok_or_else(|| {
            Error::Failed(
                "OpenSSH's sftp-server is not installed on this host (Debian and Ubuntu: apt-get install openssh-sftp-server)"
                    .into(),
            )
        })?;
        let mut cmd = Command::new(&server);
        cmd.arg("-d").arg(&meta.workspace_path);
        self.session_env(&mut cmd, &meta, &[])?;
        let err = cmd.exec();
        Err(Error::Spawn {
            program: server.display().to_string(),
            source: err,
        })
    }

    fn agent_for_session(&self, name: &str) -> Result<AgentMeta> {
        check_name(name)?;
        let meta = self.files.read_meta(name)?;
        if !meta.workspace_path.is_dir() {
            return Err(Error::Failed(format!(
                "the workspace {} of agent '{name}' is gone",
                meta.workspace_path.display()
            )));
        }
        Ok(meta)
    }

    /// The environment of a session inside an agent, built like sshd builds a session's:
    /// the user's basics (not whatever hostctl's caller had), then the agent's own variables,
    /// then what the client sent (accepted `env` requests, `SSH_CONNECTION`, ...).
    fn session_env(
        &self,
        cmd: &mut Command,
        meta: &AgentMeta,
        extra_env: &[(String, String)],
    ) -> Result<()> {
        crate::userenv::clear_to_basics(cmd, &[]);
        cmd.current_dir(&meta.workspace_path)
            .envs(&meta.request.env)
            .env("AGENTGATE_AGENT", &meta.request.name)
            .env("AGENTGATE_WORKSPACE", &meta.workspace_path)
            .env("PWD", &meta.workspace_path);
        for (key, value) in extra_env {
            validate_env_key(key)?;
            cmd.env(key, value);
        }
        Ok(())
    }

    /// Replaces this process with `tmux attach` to the agent's session.
    pub fn attach(&self, name: &str) -> Result<std::convert::Infallible> {
        use std::os::unix::process::CommandExt;
        check_name(name)?;
        self.files.read_meta(name)?;
        if self.tmux.pane(name)?.is_none() {
            return Err(Error::Failed(format!(
                "agent '{name}' is stopped; start it first (start {name})"
            )));
        }
        let err = self.tmux.attach_command(name).exec();
        Err(Error::Spawn {
            program: "tmux".into(),
            source: err,
        })
    }
}

/// Where OpenSSH's `sftp-server` lives on common systems.
fn sftp_server() -> Option<PathBuf> {
    [
        "/usr/lib/openssh/sftp-server",
        "/usr/libexec/openssh/sftp-server",
        "/usr/libexec/sftp-server",
        "/usr/lib/ssh/sftp-server",
        "/usr/local/libexec/sftp-server",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}
