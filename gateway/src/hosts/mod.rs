//! Hosts: the machines that run agents, and how the gateway reaches them.
//!
//! Every operation on an agent goes through hostctl's JSON contract (`hostctl::api`), even on
//! the gateway's own machine: [`Host`] is the one interface, with one transport per kind of
//! host. The local host runs hostctl as a child process ([`local`]). The reconciler
//! ([`reconciler`]) keeps the store's statuses in step with what the hosts report.
//!
//! **Invariant**: nothing here deletes a workspace except an explicit `destroy`.

pub mod listen;
pub mod local;
pub mod looks;
pub mod mosh;
pub mod remote;
mod session;
mod transfer;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hostctl::api::{
    AgentInfo, AgentSockets, Call, CreateInput, CreateRequest, ErrorCode, ErrorReply, Exchange,
    Secrets, SnapshotList, SnapshotMeta, SnapshotRemoved, SnapshotRequest, SocketLink, TermSize,
    UsageReport, VersionInfo, WorkspaceDigest,
};
use tokio::io::{AsyncRead, AsyncWrite};

pub use local::LocalHost;
pub use remote::RemoteHost;
pub use remote::leg::LinkId;
pub use session::{
    AgentSession, MAX_ARGUMENT, MAX_COMMAND, PipedProcess, ProcessExit, TerminalInput,
    TerminalProcess, TerminalReceiver, TerminalSender, terminal_input,
};
pub use transfer::{copy_workspace, restore_snapshot};

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
    /// The host presented another key than the pinned one.
    #[error(
        "the host key of '{host}' has changed: it presents {presented}, the pinned key is {pinned}; \
         the gateway refuses to talk to it (someone may be impersonating it)"
    )]
    HostKeyChanged {
        host: String,
        pinned: String,
        presented: String,
    },
    /// The host refused the gateway's key.
    #[error("host '{host}' refused the gateway's key for user '{user}'")]
    AuthRefused { host: String, user: String },
}

impl HostError {
    /// Whether the host itself is the problem (rather than the request).
    pub fn host_unreachable(&self) -> bool {
        matches!(
            self,
            HostError::Unreachable { .. }
                | HostError::Timeout { .. }
                | HostError::HostKeyChanged { .. }
                | HostError::AuthRefused { .. }
        )
    }
}

pub type BoxRead = Pin<Box<dyn AsyncRead + Send>>;
pub type BoxWrite = Pin<Box<dyn AsyncWrite + Send>>;
pub type ExitFuture = Pin<Box<dyn Future<Output = ProcessExit> + Send>>;

/// A byte stream both ways: a forwarded TCP connection or unix socket.
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

/// How long a call may take.
#[derive(Clone, Copy, Debug)]
pub enum CallKind {
    Normal,
    /// `create` (a git clone is slow).
    Long,
    /// The reconciler's question: short, since past it the host is `unreachable`.
    Probe,
}

/// One host, whatever its transport. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Host {
    Local(Arc<LocalHost>),
    Remote(Arc<RemoteHost>),
}

impl Host {
    pub fn name(&self) -> &str {
        match self {
            Host::Local(_) => LOCAL_HOST,
            Host::Remote(h) => h.name(),
        }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        call: &Call,
        kind: CallKind,
    ) -> Result<T, HostError> {
        match self {
            Host::Local(h) => h.call(call, kind).await,
            Host::Remote(h) => h.call(call, kind).await,
        }
    }

    async fn piped(&self, call: &Call, outlives_client: bool) -> Result<PipedProcess, HostError> {
        match self {
            Host::Local(h) => h.piped(call, outlives_client),
            Host::Remote(h) => h.piped(call, remote::pool::Lane::Sessions).await,
        }
    }

    /// A byte stream out of the host (`hostctl pack`, `snapshot-read`), on connections of
    /// its own.
    async fn transfer_source(&self, call: &Call) -> Result<PipedProcess, HostError> {
        match self {
            Host::Local(h) => h.piped(call, false),
            Host::Remote(h) => h.piped(call, remote::pool::Lane::Transfer).await,
        }
    }

    /// Saves agent `name`'s workspace and settings as snapshot `request.id` on this host.
    pub async fn snapshot(
        &self,
        name: &str,
        request: &SnapshotRequest,
    ) -> Result<SnapshotMeta, HostError> {
        let call = Call::Snapshot {
            name: name.to_owned(),
            request: request.clone(),
        };
        self.call(&call, CallKind::Long).await
    }

    /// The snapshots on this host, as its files describe them.
    pub async fn snapshot_list(&self) -> Result<SnapshotList, HostError> {
        self.call(&Call::SnapshotList, CallKind::Normal).await
    }

    /// Deletes snapshot `id`'s files on this host.
    pub async fn snapshot_remove(&self, id: &str) -> Result<SnapshotRemoved, HostError> {
        let call = Call::SnapshotRemove { id: id.to_owned() };
        self.call(&call, CallKind::Normal).await
    }

    /// What changed in agent `name`'s workspace since its creation (`hostctl diff`), streamed.
    pub async fn diff(
        &self,
        name: &str,
        stat: bool,
        json: bool,
    ) -> Result<PipedProcess, HostError> {
        let call = Call::Diff {
            name: name.to_owned(),
            stat,
            json,
        };
        self.piped(&call, false).await
    }

    /// What each agent of this host uses of it (only agent `name`, when given): its process
    /// tree's CPU and memory, its workspace's disk.
    pub async fn usage(&self, name: Option<&str>) -> Result<UsageReport, HostError> {
        let call = Call::Usage {
            name: name.map(str::to_owned),
        };
        self.call(&call, CallKind::Normal).await
    }

    /// Arranges the directory of agent `name`'s forwarded SSH agents (`ssh -A`): keeps the
    /// sockets in `keep`, removes the others, and does `link` to the stable link.
    pub async fn agent_sockets(
        &self,
        name: &str,
        keep: &[String],
        link: SocketLink,
    ) -> Result<AgentSockets, HostError> {
        let call = Call::AgentSocket {
            name: name.to_owned(),
            keep: keep.to_vec(),
            link,
        };
        self.call(&call, CallKind::Normal).await
    }

    /// hostctl's version (with the probe's short time limit: a quick question).
    pub async fn version(&self) -> Result<VersionInfo, HostError> {
        self.call(&Call::Version, CallKind::Probe).await
    }

    /// Creates an agent; `secrets` go to its first start, on hostctl's stdin.
    pub async fn create(
        &self,
        request: &CreateRequest,
        secrets: &Secrets,
    ) -> Result<AgentInfo, HostError> {
        let call = Call::Create(Box::new(CreateInput {
            request: request.clone(),
            secrets: secrets.clone(),
        }));
        self.call(&call, CallKind::Long).await
    }

    pub async fn list(&self) -> Result<Vec<AgentInfo>, HostError> {
        let call = Call::List {
            screens_after: None,
        };
        self.call(&call, CallKind::Normal).await
    }

    /// The reconciler's `list`: with the short probe time limit.
    /// Every agent on the host; with `screens_after` (Unix seconds), the screens only of
    /// those with output since then.
    pub async fn probe(&self, screens_after: Option<i64>) -> Result<Vec<AgentInfo>, HostError> {
        self.probe_judged(screens_after).await.0
    }

    /// [`probe`](Self::probe), and the connections the question went over: those its failure
    /// judges ([`retire_links`](Self::retire_links)).
    pub async fn probe_judged(
        &self,
        screens_after: Option<i64>,
    ) -> (Result<Vec<AgentInfo>, HostError>, Vec<LinkId>) {
        let call = Call::List { screens_after };
        match self {
            Host::Local(h) => (h.call(&call, CallKind::Probe).await, Vec::new()),
            Host::Remote(h) => h.call_judged(&call, CallKind::Probe).await,
        }
    }

    /// Retires the host connections `links` (judged unreachable): nothing new goes to them
    /// and their sessions end as lost. Nothing for the local host.
    pub async fn retire_links(&self, links: &[LinkId], why: &str) {
        if let Host::Remote(h) = self {
            h.retire_links(links, why).await;
        }
    }

    pub async fn info(&self, name: &str) -> Result<AgentInfo, HostError> {
        let call = Call::Info {
            name: name.to_owned(),
        };
        self.call(&call, CallKind::Normal).await
    }

    pub async fn stop(&self, name: &str) -> Result<AgentInfo, HostError> {
        let call = Call::Stop {
            name: name.to_owned(),
        };
        self.call(&call, CallKind::Normal).await
    }

    /// Starts a stopped or exited agent; `secrets` go on hostctl's stdin.
    pub async fn start(
        &self,
        name: &str,
        size: Option<TermSize>,
        secrets: &Secrets,
    ) -> Result<AgentInfo, HostError> {
        let call = Call::Start {
            name: name.to_owned(),
            size,
            secrets: secrets.clone(),
        };
        self.call(&call, CallKind::Normal).await
    }

    pub async fn destroy(&self, name: &str) -> Result<(), HostError> {
        let call = Call::Destroy {
            name: name.to_owned(),
        };
        let _: serde_json::Value = self.call(&call, CallKind::Long).await?;
        Ok(())
    }

    /// Fingerprints a workspace (an agent's, or one unpacked for it).
    pub async fn digest(&self, name: &str) -> Result<WorkspaceDigest, HostError> {
        let call = Call::Digest {
            name: name.to_owned(),
        };
        self.call(&call, CallKind::Long).await
    }

    /// Removes a workspace unpacked for `name` that no agent owns; with an `operation`, only
    /// the copy hostctl marked as that operation's.
    pub async fn discard(&self, name: &str, operation: Option<&str>) -> Result<(), HostError> {
        let call = Call::Discard {
            name: name.to_owned(),
            operation: operation.map(str::to_owned),
        };
        let _: serde_json::Value = self.call(&call, CallKind::Normal).await?;
        Ok(())
    }

    /// Replaces the agent's tags in its files on the host (JSON on hostctl's stdin).
    pub async fn set_tags(
        &self,
        name: &str,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<AgentInfo, HostError> {
        let call = Call::Tags {
            name: name.to_owned(),
            tags: tags.clone(),
        };
        self.call(&call, CallKind::Normal).await
    }

    /// Types `text` into the agent, or pastes it when it has a line break (on stdin to hostctl:
    /// text never goes on a command line).
    pub async fn send(
        &self,
        name: &str,
        text: &str,
        enter: bool,
    ) -> Result<hostctl::api::SendReport, HostError> {
        let call = Call::Send {
            name: name.to_owned(),
            text: text.to_owned(),
            enter,
        };
        self.call(&call, CallKind::Normal).await
    }

    /// Presses keys in the agent, by name.
    pub async fn keys(
        &self,
        name: &str,
        keys: &[hostctl::api::Key],
    ) -> Result<hostctl::api::SendReport, HostError> {
        let call = Call::Keys {
            name: name.to_owned(),
            keys: keys.to_vec(),
        };
        self.call(&call, CallKind::Normal).await
    }

    pub async fn logs(
        &self,
        name: &str,
        lines: Option<usize>,
        follow: bool,
        raw: bool,
    ) -> Result<PipedProcess, HostError> {
        let call = Call::Logs {
            name: name.to_owned(),
            lines,
            follow,
            raw,
        };
        self.piped(&call, false).await
    }

    /// Starts `hostctl hook-watch`: a line with an agent's name for each event its CLI
    /// reports through its hooks (see `hook_watch`).
    pub async fn hook_watch(&self) -> Result<PipedProcess, HostError> {
        self.piped(&Call::HookWatch, false).await
    }

    /// Starts a session inside an agent with its standard streams as pipes (no terminal).
    pub async fn open_piped(
        &self,
        agent: &str,
        session: &AgentSession,
        env: &[(String, String)],
    ) -> Result<PipedProcess, HostError> {
        session.check_input(env)?;
        self.piped(&session.hostctl_call(agent, env), true).await
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
        session.check_input(env)?;
        let call = session.hostctl_call(agent, env);
        match self {
            Host::Local(h) => h.terminal(&call, term, size),
            Host::Remote(h) => h.terminal(&call, term, size).await,
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
            Host::Remote(h) => h.connect_tcp(target_host, port).await,
        }
    }

    /// Opens a TCP connection to `port` on agent `agent`'s own loopback through `hostctl dial`,
    /// for an agent whose sandbox has no network (`create --network none`): only from inside
    /// it are its ports reachable.
    pub async fn dial_agent(
        &self,
        agent: &str,
        port: u16,
    ) -> Result<Box<dyn Duplex>, std::io::Error> {
        let call = Call::Dial {
            name: agent.to_owned(),
            port,
        };
        let process = self
            .piped(&call, false)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Box::new(session::DialledAgent::new(process)))
    }

    /// Connects to a unix socket on the host.
    pub async fn connect_unix(&self, path: &str) -> Result<Box<dyn Duplex>, std::io::Error> {
        match self {
            Host::Local(h) => h.connect_unix(path).await,
            Host::Remote(h) => h.connect_unix(path).await,
        }
    }

    /// Opens a listener on the host for a remote forward (`ssh -R`): a TCP port on the host's
    /// loopback, or a unix socket. It closes when the returned listener is dropped.
    pub async fn listen(&self, on: &listen::ListenOn) -> std::io::Result<listen::HostListener> {
        match self {
            Host::Local(h) => h.listen(on).await,
            Host::Remote(h) => h.listen(on).await,
        }
    }
}

/// Every host the gateway knows: `local`, and the remote hosts added with `host add`.
#[derive(Debug)]
pub struct Hosts {
    local: Host,
    remote: std::sync::RwLock<std::collections::BTreeMap<String, Host>>,
}

impl Hosts {
    pub fn new(local: LocalHost) -> Hosts {
        Hosts {
            local: Host::Local(Arc::new(local)),
            remote: std::sync::RwLock::default(),
        }
    }

    pub fn get(&self, name: &str) -> Result<Host, HostError> {
        if name == LOCAL_HOST {
            return Ok(self.local.clone());
        }
        self.remote
            .read()
            .ok()
            .and_then(|hosts| hosts.get(name).cloned())
            .ok_or_else(|| HostError::NoSuchHost(name.to_owned()))
    }

    /// Every host, `local` first.
    pub fn all(&self) -> Vec<Host> {
        let mut all = vec![self.local.clone()];
        if let Ok(hosts) = self.remote.read() {
            all.extend(hosts.values().cloned());
        }
        all
    }

    pub fn insert(&self, host: RemoteHost) {
        if let Ok(mut hosts) = self.remote.write() {
            hosts.insert(host.name().to_owned(), Host::Remote(Arc::new(host)));
        }
    }

    pub fn remove(&self, name: &str) -> Option<Host> {
        self.remote.write().ok()?.remove(name)
    }
}

/// The words and the stdin of a call that gives one answer, for a transport to run. A call
/// whose streams are the caller's to pump is refused: it is opened with `piped`.
pub(crate) fn answer_call(
    host: &str,
    call: &Call,
) -> Result<(Vec<String>, Option<Vec<u8>>), HostError> {
    let protocol = |detail: String| HostError::Protocol {
        host: host.to_owned(),
        what: call.verb().to_owned(),
        detail,
    };
    if call.exchange() != Exchange::Answer {
        return Err(protocol(
            "it streams, and was asked for one answer".to_owned(),
        ));
    }
    let body = call.body().map_err(|e| protocol(e.to_string()))?;
    Ok((call.argv(), body))
}

/// Decodes a hostctl `--json` answer: the value on success, else hostctl's error reply.
pub fn decode_reply<T: serde::de::DeserializeOwned>(
    host: &str,
    what: &str,
    exit: ProcessExit,
    stdout: &[u8],
    stderr: &[u8],
) -> Result<T, HostError> {
    let stdout = String::from_utf8_lossy(stdout);
    if exit == ProcessExit::Code(0) {
        return serde_json::from_str(stdout.trim()).map_err(|e| HostError::Protocol {
            host: host.to_owned(),
            what: what.to_owned(),
            detail: format!("{e} in {:?}", truncate(&stdout)),
        });
    }
    match serde_json::from_str::<ErrorReply>(stdout.trim()) {
        Ok(reply) if reply.error.code == ErrorCode::NotFound => {
            Err(HostError::NotFound(reply.error.message))
        }
        // What the host lacks is said of it by name.
        Ok(reply) if reply.error.code == ErrorCode::HostLacks => Err(HostError::Rejected {
            code: reply.error.code,
            message: match reply.error.message.strip_prefix("this host") {
                Some(rest) => format!("host '{host}'{rest}"),
                None => format!("host '{host}': {}", reply.error.message),
            },
        }),
        Ok(reply) => Err(HostError::Rejected {
            code: reply.error.code,
            message: reply.error.message,
        }),
        Err(_) => Err(HostError::Protocol {
            host: host.to_owned(),
            what: what.to_owned(),
            detail: format!(
                "hostctl ended with {exit:?} and stderr {:?}",
                truncate(&String::from_utf8_lossy(stderr))
            ),
        }),
    }
}

fn truncate(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_run_the_words_they_ran_before_and_all_but_the_attach_get_the_environment() {
        let env = [("TERM_PROGRAM".to_owned(), "vscode".to_owned())];
        let words = |session: AgentSession| session.hostctl_call("a", &env).argv();
        assert_eq!(
            words(AgentSession::Exec("make test".into())),
            [
                "exec",
                "a",
                "-c",
                "make test",
                "--env",
                "TERM_PROGRAM=vscode"
            ]
        );
        assert_eq!(
            words(AgentSession::Shell),
            ["exec", "a", "--env", "TERM_PROGRAM=vscode"]
        );
        assert_eq!(
            words(AgentSession::Sftp),
            ["sftp", "a", "--env", "TERM_PROGRAM=vscode"]
        );
        assert_eq!(words(AgentSession::Attach), ["attach", "a"]);
        let mosh = |line: &str| {
            AgentSession::Mosh(super::mosh::MoshStart::recognise(line).expect("a mosh start"))
        };
        assert_eq!(
            words(mosh("mosh-server 'new' '-s' '-l' 'LANG=C.UTF-8'")),
            // Not TERM_PROGRAM: mosh-server runs outside the agent's sandbox.
            ["mosh", "a", "--", "-s", "-l", "LANG=C.UTF-8"]
        );
        assert_eq!(
            words(mosh("mosh-server 'new' '--' 'top'")),
            [
                "exec",
                "a",
                "-c",
                "mosh-server new -- sh -c 'cd \"$AGENTGATE_WORKSPACE\" && exec \"$@\"' mosh-command top",
                "--env",
                "TERM_PROGRAM=vscode"
            ]
        );
    }

    #[test]
    fn a_call_for_one_answer_gets_its_words_and_body_and_a_stream_is_refused() {
        let send = Call::Send {
            name: "a".into(),
            text: "hi".into(),
            enter: true,
        };
        let (words, body) = answer_call("h1", &send).expect("an answer call");
        assert_eq!(words, ["send", "a", "-", "--json"]);
        assert_eq!(body.as_deref(), Some(&b"hi\n"[..]));
        let pack = Call::Pack { name: "a".into() };
        match answer_call("h1", &pack) {
            Err(HostError::Protocol { host, what, .. }) => {
                assert_eq!((host.as_str(), what.as_str()), ("h1", "pack"));
            }
            other => panic!("a stream was taken for an answer: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_storm_of_resizes_leaves_one_the_newest_and_keystrokes_in_order() {
        let (input, mut terminal) = terminal_input(TermSize { cols: 80, rows: 24 });
        assert!(input.data(bytes::Bytes::from_static(b"a")).await);
        for i in 0..5000u16 {
            input.resize(TermSize {
                cols: 100 + i % 500,
                rows: 30 + i % 200,
            });
        }
        input.resize(TermSize {
            cols: 123,
            rows: 45,
        });
        assert!(input.data(bytes::Bytes::from_static(b"b")).await);
        // The size first: one resize, the last one sent.
        match terminal.recv().await {
            Some(TerminalInput::Resize(size)) => assert_eq!(
                size,
                TermSize {
                    cols: 123,
                    rows: 45
                }
            ),
            other => panic!("expected one resize, got {other:?}"),
        }
        for expected in [b"a", b"b"] {
            match terminal.recv().await {
                Some(TerminalInput::Data(bytes)) => assert_eq!(&bytes[..], expected),
                other => panic!("expected keystrokes, got {other:?}"),
            }
        }
        // A size equal to the one applied is no change at all.
        input.resize(TermSize {
            cols: 123,
            rows: 45,
        });
        drop(input);
        assert!(terminal.recv().await.is_none());
    }
}
