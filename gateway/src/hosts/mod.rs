//! Hosts: the machines that run agents, and how the gateway reaches them.
//!
//! Every operation on an agent goes through hostctl's JSON contract (`hostctl::api`), even on
//! the gateway's own machine: [`Host`] is the one interface, with one transport per kind of
//! host. The local host runs hostctl as a child process ([`local`]). The reconciler
//! ([`reconciler`]) keeps the store's statuses in step with what the hosts report.
//!
//! **Invariant**: nothing here deletes a workspace except an explicit `destroy`.

pub mod local;
pub mod reconciler;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hostctl::api::{AgentInfo, CreateRequest, ErrorCode, TermSize, VersionInfo};
use tokio::io::{AsyncRead, AsyncWrite};

pub use local::LocalHost;

/// The name of the gateway's own machine, which always exists.
pub const LOCAL_HOST: &str = "local";

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The host does not know the agent.
    #[error("{0}")]
    NotFound(String),
    /// hostctl refused or failed, and said why.
    #[error("{message}")]
    Rejected { code: ErrorCode, message: String },
    /// The host could not be asked at all.
    #[error("host '{host}' cannot be reached: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("host '{host}' did not answer {what} within {seconds} s")]
    Timeout {
        host: String,
        what: String,
        seconds: u64,
    },
    /// hostctl answered something that is not the contract.
    #[error("host '{host}' answered {what} with something unexpected: {detail}")]
    Protocol {
        host: String,
        what: String,
        detail: String,
    },
    #[error("no host named '{0}'")]
    NoSuchHost(String),
}

impl HostError {
    /// Whether the host itself is the problem (rather than the request).
    pub fn host_unreachable(&self) -> bool {
        matches!(
            self,
            HostError::Unreachable { .. } | HostError::Timeout { .. }
        )
    }
}

pub type BoxRead = Pin<Box<dyn AsyncRead + Send>>;
pub type BoxWrite = Pin<Box<dyn AsyncWrite + Send>>;
pub type ExitFuture = Pin<Box<dyn Future<Output = ProcessExit> + Send>>;

/// A byte stream both ways: a forwarded TCP connection or unix socket.
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

/// How a process on a host ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessExit {
    Code(i32),
    Signal {
        signal: i32,
        core_dumped: bool,
    },
    /// The process could not be waited for.
    Unknown,
}

impl ProcessExit {
    pub fn from_status(status: std::io::Result<std::process::ExitStatus>) -> ProcessExit {
        use std::os::unix::process::ExitStatusExt;
        match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => ProcessExit::Code(code),
                (None, Some(signal)) => ProcessExit::Signal {
                    signal,
                    core_dumped: s.core_dumped(),
                },
                (None, None) => ProcessExit::Unknown,
            },
            Err(_) => ProcessExit::Unknown,
        }
    }

    /// The exit status a shell would report: the code, or 128 + the signal.
    pub fn shell_status(self) -> u32 {
        match self {
            ProcessExit::Code(code) => u32::try_from(code).unwrap_or(1),
            ProcessExit::Signal { signal, .. } => 128 + u32::try_from(signal).unwrap_or(0),
            ProcessExit::Unknown => 1,
        }
    }
}

/// What runs inside an agent's environment for one SSH session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentSession {
    /// `ssh NAME@gw COMMAND`: the command line, run by the user's shell with `-c`.
    Exec(String),
    /// `ssh -T NAME@gw`: a login shell reading stdin.
    Shell,
    /// The `sftp` subsystem: OpenSSH's `sftp-server` in the workspace.
    Sftp,
    /// `ssh -t NAME@gw`: the agent's own tmux session.
    Attach,
}

impl AgentSession {
    /// The hostctl command line (after `hostctl`) that runs this session.
    fn hostctl_args(&self, agent: &str, env: &[(String, String)]) -> Vec<String> {
        let mut args = match self {
            AgentSession::Exec(line) => {
                vec!["exec".into(), agent.into(), "-c".into(), line.clone()]
            }
            AgentSession::Shell => vec!["exec".into(), agent.into()],
            AgentSession::Sftp => return vec!["sftp".into(), agent.into()],
            AgentSession::Attach => return vec!["attach".into(), agent.into()],
        };
        for (key, value) in env {
            args.push("--env".into());
            args.push(format!("{key}={value}"));
        }
        args
    }
}

/// What goes into a terminal: keystrokes, or a new size.
#[derive(Debug)]
pub enum TerminalInput {
    Data(bytes::Bytes),
    Resize(TermSize),
}

/// A process on a host attached to a terminal: its output, its input and how it ended.
/// Dropping `input` closes the terminal's input side.
pub struct TerminalProcess {
    pub output: BoxRead,
    pub input: tokio::sync::mpsc::Sender<TerminalInput>,
    pub exit: ExitFuture,
    /// Cancel to end the process (the client went away).
    pub kill: tokio_util::sync::CancellationToken,
}

/// A process on a host with its standard streams as pipes.
pub struct PipedProcess {
    pub stdin: BoxWrite,
    pub stdout: BoxRead,
    pub stderr: BoxRead,
    pub exit: ExitFuture,
    /// Delivers a signal, by its SSH name (`INT`, `TERM`, ...), to the process.
    pub signal: Box<dyn Fn(&str) + Send + Sync>,
}

/// One host, whatever its transport. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Host {
    Local(Arc<LocalHost>),
}

impl Host {
    pub fn name(&self) -> &str {
        match self {
            Host::Local(_) => LOCAL_HOST,
        }
    }

    pub async fn version(&self) -> Result<VersionInfo, HostError> {
        match self {
            Host::Local(h) => h.call(&["version"], None, false).await,
        }
    }

    pub async fn create(&self, request: &CreateRequest) -> Result<AgentInfo, HostError> {
        let body = serde_json::to_vec(request).map_err(|e| HostError::Protocol {
            host: self.name().to_owned(),
            what: "create".into(),
            detail: e.to_string(),
        })?;
        match self {
            Host::Local(h) => h.call(&["create"], Some(body), true).await,
        }
    }

    pub async fn list(&self) -> Result<Vec<AgentInfo>, HostError> {
        match self {
            Host::Local(h) => h.call(&["list"], None, false).await,
        }
    }

    pub async fn info(&self, name: &str) -> Result<AgentInfo, HostError> {
        match self {
            Host::Local(h) => h.call(&["info", name], None, false).await,
        }
    }

    pub async fn stop(&self, name: &str) -> Result<AgentInfo, HostError> {
        match self {
            Host::Local(h) => h.call(&["stop", name], None, false).await,
        }
    }

    pub async fn start(&self, name: &str, size: Option<TermSize>) -> Result<AgentInfo, HostError> {
        let mut args = vec!["start".to_owned(), name.to_owned()];
        if let Some(size) = size {
            args.extend([
                "--cols".into(),
                size.cols.to_string(),
                "--rows".into(),
                size.rows.to_string(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match self {
            Host::Local(h) => h.call(&args, None, false).await,
        }
    }

    pub async fn destroy(&self, name: &str) -> Result<(), HostError> {
        let _: serde_json::Value = match self {
            Host::Local(h) => h.call(&["destroy", name], None, false).await?,
        };
        Ok(())
    }

    /// Types `text` into the agent (on stdin to hostctl: text never goes on a command line).
    pub async fn send(&self, name: &str, text: &str, enter: bool) -> Result<(), HostError> {
        let mut args = vec!["send", name, "-"];
        if !enter {
            args.push("--no-enter");
        }
        let body = format!("{text}\n").into_bytes();
        let _: serde_json::Value = match self {
            Host::Local(h) => h.call(&args, Some(body), false).await?,
        };
        Ok(())
    }

    pub async fn logs(
        &self,
        name: &str,
        lines: Option<usize>,
        follow: bool,
        raw: bool,
    ) -> Result<PipedProcess, HostError> {
        let mut args = vec!["logs".to_owned(), name.to_owned()];
        if let Some(n) = lines {
            args.extend(["-n".to_owned(), n.to_string()]);
        }
        if follow {
            args.push("-f".into());
        }
        if raw {
            args.push("--raw".into());
        }
        match self {
            Host::Local(h) => h.piped(&args, false),
        }
    }

    /// Starts a session inside an agent with its standard streams as pipes (no terminal).
    pub async fn open_piped(
        &self,
        agent: &str,
        session: &AgentSession,
        env: &[(String, String)],
    ) -> Result<PipedProcess, HostError> {
        let args = session.hostctl_args(agent, env);
        match self {
            Host::Local(h) => h.piped(&args, true),
        }
    }

    /// Starts a session inside an agent on a new terminal of the given size.
    pub async fn open_terminal(
        &self,
        agent: &str,
        session: &AgentSession,
        env: &[(String, String)],
        term: &str,
        size: TermSize,
    ) -> Result<TerminalProcess, HostError> {
        let args = session.hostctl_args(agent, env);
        match self {
            Host::Local(h) => h.terminal(&args, term, size),
        }
    }

    /// Opens a TCP connection from the host (`ssh -L`, `-D`, `-W`): `localhost` is the host's.
    pub async fn connect_tcp(
        &self,
        target_host: &str,
        port: u16,
    ) -> Result<Box<dyn Duplex>, std::io::Error> {
        match self {
            Host::Local(h) => h.connect_tcp(target_host, port).await,
        }
    }

    /// Connects to a unix socket on the host.
    pub async fn connect_unix(&self, path: &str) -> Result<Box<dyn Duplex>, std::io::Error> {
        match self {
            Host::Local(h) => h.connect_unix(path).await,
        }
    }
}

/// Every host the gateway knows. Only the local host exists so far.
#[derive(Clone, Debug)]
pub struct Hosts {
    local: Host,
}

impl Hosts {
    pub fn new(local: LocalHost) -> Hosts {
        Hosts {
            local: Host::Local(Arc::new(local)),
        }
    }

    pub fn get(&self, name: &str) -> Result<Host, HostError> {
        match name {
            LOCAL_HOST => Ok(self.local.clone()),
            other => Err(HostError::NoSuchHost(other.to_owned())),
        }
    }

    pub fn all(&self) -> Vec<Host> {
        vec![self.local.clone()]
    }
}
