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
        let args: Vec<std::ffi::OsString> = match command {
            Some(line) => vec!["-c".into(), line.into()],
            None => vec!["-l".into()],
        };
        let (mut cmd, _filter) = self.in_sandbox(&meta, shell.clone().into(), &args)?;
        self.session_env(&mut cmd, &meta, extra_env)?;
        self.join_sandbox(&meta, &cmd)?;
        let err = cmd.exec();
        Err(Error::Spawn {
            program: shell,
            source: err,
        })
    }

    /// Replaces this process with OpenSSH's `sftp-server`, starting in the agent's workspace,
    /// with the environment a command gets (sshd gives a subsystem the same as a command).
    pub fn sftp(
        &self,
        name: &str,
        extra_env: &[(String, String)],
    ) -> Result<std::convert::Infallible> {
        use std::os::unix::process::CommandExt;
        let meta = self.agent_for_session(name)?;
        let server = sftp_server().ok_or_else(|| {
            Error::Failed(
                "OpenSSH's sftp-server is not installed on this host (Debian and Ubuntu: apt-get install openssh-sftp-server)"
                    .into(),
            )
        })?;
        let args = ["-d".into(), meta.workspace_path.clone().into_os_string()];
        let (mut cmd, _filter) = self.in_sandbox(&meta, server.clone().into_os_string(), &args)?;
        self.session_env(&mut cmd, &meta, extra_env)?;
        self.join_sandbox(&meta, &cmd)?;
        let err = cmd.exec();
        Err(Error::Spawn {
            program: server.display().to_string(),
            source: err,
        })
    }

    /// `program args...` as a session inside agent `meta` runs it. A sandboxed agent's
    /// session joins its sandbox ([`Self::join_sandbox`]), so the command is the same for
    /// both. The descriptor returned (none) is kept for callers that hold one open.
    fn in_sandbox(
        &self,
        _meta: &AgentMeta,
        program: std::ffi::OsString,
        args: &[std::ffi::OsString],
    ) -> Result<(Command, Option<std::os::fd::OwnedFd>)> {
        let mut cmd = Command::new(program);
        cmd.args(args);
        Ok((cmd, None))
    }

    /// For a sandboxed agent: runs `cmd` inside the agent's running sandbox, or (the agent
    /// is stopped) inside a fresh one with its view that ends with the session, and never
    /// returns but on failure. For an agent without a sandbox: returns at once, for the
    /// caller to execute `cmd` itself.
    fn join_sandbox(&self, meta: &AgentMeta, cmd: &Command) -> Result<()> {
        if !crate::sandbox::is_sandboxed(meta) {
            return Ok(());
        }
        let sandbox = match crate::enter::running(&self.files, &meta.request.name) {
            Some(running) => running,
            None => crate::enter::fresh(&self.files, meta)?,
        };
        match crate::enter::run(sandbox, cmd)? {}
    }

    pub(super) fn agent_for_session(&self, name: &str) -> Result<AgentMeta> {
        check_name(name)?;
        let meta = self.files.read_meta(name)?;
        // A session uses the agent's share of the host, as the agent's own processes do.
        crate::cgroups::join_for_session(&self.files, &meta)?;
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
        crate::userenv::set_session_tty(cmd);
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
        // tmux copies SSH_AUTH_SOCK from each attaching client into the session's
        // environment (`update-environment`), and removes it when the client has none: the
        // stable link keeps new windows reaching the operator's forwarded agent (`ssh -A`).
        let err = self
            .tmux
            .attach_command(name)
            .env("SSH_AUTH_SOCK", self.files.ssh_agent_link(name))
            .exec();
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
