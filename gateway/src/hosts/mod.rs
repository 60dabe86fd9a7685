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
use tokio::io::AsyncRead;

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
pub type ExitFuture = Pin<Box<dyn Future<Output = Option<i32>> + Send>>;

/// What goes into a terminal: keystrokes, or a new size.
#[derive(Debug)]
pub enum TerminalInput {
    Data(bytes::Bytes),
    Resize(TermSize),
}

/// A process on a host attached to a terminal (`hostctl attach`): its output, its input and
/// its exit code. Dropping `input` closes the terminal's input side.
pub struct TerminalProcess {
    pub output: BoxRead,
    pub input: tokio::sync::mpsc::Sender<TerminalInput>,
    /// Resolves with the exit code once the process has ended (`None`: killed by a signal).
    pub exit: ExitFuture,
    /// Cancel to end the process (the client went away).
    pub kill: tokio_util::sync::CancellationToken,
}

/// A process on a host whose stdout is streamed (`hostctl logs -f`).
pub struct StreamProcess {
    pub stdout: BoxRead,
    pub stderr: BoxRead,
    pub exit: ExitFuture,
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
    ) -> Result<StreamProcess, HostError> {
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
            Host::Local(h) => h.stream(&args),
        }
    }

    pub async fn attach(
        &self,
        name: &str,
        term: &str,
        size: TermSize,
    ) -> Result<TerminalProcess, HostError> {
        match self {
            Host::Local(h) => h.attach(name, term, size),
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
