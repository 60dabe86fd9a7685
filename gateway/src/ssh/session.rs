//! One connection's state and every decision about it, apart from the SSH protocol: its login
//! (through [`super::login`]), the session channels waiting for the request that starts them,
//! which requests each may make (`pty-req`, `env`, `x11-req`), what `shell`, `exec` and
//! `subsystem` start on either route, which forwards (`direct-tcpip`, `direct-streamlocal`)
//! are opened and how a refused one is answered and recorded, which remote forwards
//! (`tcpip-forward`, `streamlocal-forward@openssh.com`) it may hold (through
//! [`super::reverse`]), and the window the connection advertises.
//!
//! The russh handler (`handler.rs`) turns each callback into one call here and the answer into
//! russh's replies and tasks; nothing here takes a russh channel or session, so every decision
//! is tested with plain values. A channel is known by its number and carries whatever the
//! handler keeps for it (`C`: the open channel), which this module only holds and hands back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use russh::ChannelOpenFailure;
use russh::keys::PublicKey;
use tracing::{debug, info};

use super::agent::Forward;
use super::channel::{PendingChannel, PtyRequest, Resize};
use super::forward_agent::Forwarding;
use super::guard::Ticket;
use super::limits::{self, EnvRefusal, SessionEnv};
use super::login::Login;
use super::reverse::{self, Decision, ListenKey, ListenRequest};
use crate::Gateway;
use crate::agents::live::Revocation;
use crate::agents::said::exit;
use crate::agents::{Caller, access, audit};
use crate::auth::{self, KeyDecision, Route};
use crate::hosts::AgentSession;
use crate::hosts::listen::ListenOn;
use crate::hosts::mosh::MoshStart;
use crate::store::StoreError;
use crate::streams::Backlog;

/// Above this much unconsumed client data, the window the connection re-advertises shrinks
/// to [`THROTTLED_WINDOW`] bytes until the consumers catch up: once a client has spent the
/// window it already holds (at most the configured window), it may send only a trickle.
/// (russh re-advertises window as data arrives, not as it is consumed.)
pub const BACKLOG_HIGH_WATER: usize = 1024 * 1024;
pub const THROTTLED_WINDOW: u32 = 512;

/// What a session inside an agent that asked for agent forwarding (`ssh -A`) is told when
/// `operator` may not forward their agent into `agent`.
pub fn agent_forwarding_refused(operator: &str, agent: &str) -> String {
    format!(
        "agentgate: agent forwarding (ssh -A) is not allowed for operator '{operator}' on this \
         gateway, so SSH_AUTH_SOCK reaches no agent inside '{agent}' (an admin allows it: ssh gw \
         operator set {operator} --agent-forwarding on)\n"
    )
}

/// What an authentication attempt comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthAnswer {
    Accept,
    /// Refused; only a public key may be tried next.
    Reject,
}

/// What opening a session channel comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenAnswer {
    Accept,
    Refuse(ChannelOpenFailure),
}

/// A forward the client asks for, as it asks for it.
#[derive(Debug, Clone)]
pub enum ForwardRequest {
    /// `direct-tcpip`: the port as the protocol carries it (32 bits, which may be too many).
    Tcp { host: String, port: u32 },
    /// `direct-streamlocal`: a Unix socket's path.
    Unix(String),
}

/// What a forward comes to.
#[derive(Debug)]
pub enum ForwardAnswer {
    /// Dialled from the agent's host (`agent::run_forward`).
    Open {
        caller: Caller,
        agent: String,
        target: Forward,
    },
    /// Refused with `failure`; `record`, if any, is written to the audit trail once the client
    /// has its answer.
    Refuse {
        failure: ChannelOpenFailure,
        record: Option<AuditRecord>,
    },
}

/// An audit event decided here and written by the handler's task (`agents::audit::record`).
#[derive(Debug)]
pub struct AuditRecord {
    pub caller: Caller,
    pub kind: crate::model::EventKind,
    pub agent: Option<String>,
    pub detail: String,
    pub status: u32,
    pub message: String,
}

impl AuditRecord {
    pub async fn write(self, gw: &Gateway) {
        audit::record(
            &gw.core(),
            &self.caller,
            self.kind,
            self.agent,
            &self.detail,
            self.status,
            &self.message,
        )
        .await;
    }
}

/// What a remote forward request comes to on a connection.
#[derive(Debug)]
pub enum ListenAnswer {
    /// Open a listener on `agent`'s host (`super::reverse::open`), then `super::reverse::serve` it.
    Listen {
        caller: Caller,
        agent: String,
        on: ListenOn,
    },
    /// Refused (the client gets `request-failure`); `record`, if any, is written to the audit
    /// trail.
    Refuse(Option<AuditRecord>),
}

/// The audit record of a refused remote forward.
pub fn remote_forward_refusal(
    caller: Caller,
    agent: Option<String>,
    request: &ListenRequest,
    reason: &str,
) -> AuditRecord {
    AuditRecord {
        caller,
        kind: crate::model::EventKind::Forward,
        agent,
        detail: request.to_string(),
        status: exit::FAILED,
        message: format!("agentgate: {reason}"),
    }
}

/// What a request that starts a session channel (`shell`, `exec`, `subsystem`) comes to.
#[expect(
    clippy::large_enum_variant,
    reason = "made once per request and moved straight into the task that serves it"
)]
pub enum Start<C> {
    /// `channel-failure`: no such waiting channel, no login, or nothing to start.
    Failure,
    /// `channel-success`, then `work` on the channel.
    Run {
        pending: PendingChannel<C>,
        caller: Caller,
        work: Work,
        /// The connection's forwarded agent, when the channel asked for it and was granted
        /// it (`ssh -A`).
        forwarding: Option<Arc<Forwarding>>,
    },
}

/// What runs on a started channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// A control command line (`control::dispatch`).
    Control(String),
    /// A session inside the connection's agent (`agent::run_session`).
    Agent {
        agent: String,
        session: AgentSession,
    },
    /// A message on stderr and exit status 1: the request cannot be served.
    Refusal(String),
}

/// Whether tmux can attach a client on a terminal of type `term`. tmux refuses a terminal
/// that cannot clear its screen or move its cursor (`open terminal failed: terminal does not
/// support clear`): `dumb`, which Emacs (TRAMP, `M-x shell`) and other programs that drive a
/// shell through a terminal ask for, and no type at all. Such a client wants a shell, not a
/// screen, so it gets a login shell on its terminal instead of a failed attach.
pub fn tmux_can_drive(term: &str) -> bool {
    !matches!(term.trim(), "" | "dumb" | "unknown")
}

/// What a command line on the agent route runs: a mosh client's start of `mosh-server`
/// (`MoshStart`: without a command, an attach through mosh), or the command itself.
fn agent_command(line: &str) -> AgentSession {
    match MoshStart::recognise(line) {
        Some(start) => {
            debug!(line, "a mosh client's start of mosh-server");
            AgentSession::Mosh(start)
        }
        None => AgentSession::Exec(line.to_owned()),
    }
}

/// One connection, from its first authentication attempt to its end.
pub struct Connection<C> {
    gw: Arc<Gateway>,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    /// Who logged in, on which route, and whether they still may (`super::login`).
    login: Login,
    /// Session channels between `channel-open` and the request that starts them, by number.
    channels: HashMap<u32, PendingChannel<C>>,
    /// Client data received on this connection that its consumers have not taken yet.
    backlog: Backlog,
    /// Its remote forwards (`ssh -R`), each closed when dropped (`super::reverse`).
    remote_forwards: reverse::Forwards,
    /// Its forwarded SSH agent (`ssh -A`), once a channel asked and the operator may.
    forwarding: Option<Arc<Forwarding>>,
}

impl<C: Resize> Connection<C> {
    pub fn new(
        gw: Arc<Gateway>,
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
        ticket: Arc<Ticket>,
        revocation: Arc<Revocation>,
    ) -> Self {
        Connection {
            login: Login::new(gw.clone(), peer, ticket, revocation),
            gw,
            peer,
            local,
            channels: HashMap::new(),
            backlog: Backlog::default(),
            remote_forwards: reverse::Forwards::default(),
            forwarding: None,
        }
    }

    /// The connection's unconsumed client data, which every channel's reader counts.
    pub fn backlog(&self) -> &Backlog {
        &self.backlog
    }

    /// `none`: a login by tailnet identity when `auth.tailscale` is on and the peer's identity
    /// names an operator; otherwise a key is needed (the `none` probe does not count as a
    /// refused attempt).
    pub async fn auth_none(&mut self, user: &str) -> Result<AuthAnswer, StoreError> {
        if self.gw.config.auth.tailscale.enabled
            && let Some((operator, login)) = self.login.tailnet_operator(user).await?
        {
            let credential = format!("tailscale:{login}");
            if !self.login.admit(user, operator, credential.clone()).await? {
                return Ok(self.refuse(user, &credential));
            }
            return Ok(AuthAnswer::Accept);
        }
        Ok(AuthAnswer::Reject)
    }

    /// Passwords are never taken.
    pub fn auth_password(&mut self, user: &str) -> AuthAnswer {
        info!(user, source = %self.login.source(), "password authentication refused");
        self.refuse(user, "password")
    }

    /// A key offered before its signature: accepted if it is registered.
    pub async fn key_offered(
        &mut self,
        user: &str,
        key: &PublicKey,
    ) -> Result<AuthAnswer, StoreError> {
        let (decision, fingerprint) = self.login.key_decision(key).await?;
        Ok(match decision {
            KeyDecision::Accept(_) => AuthAnswer::Accept,
            KeyDecision::Reject => {
                debug!(key = fingerprint, "offered key is not registered");
                self.refuse(user, &fingerprint)
            }
        })
    }

    /// A key whose signature russh verified: the login, if it is still registered.
    pub async fn key_verified(
        &mut self,
        user: &str,
        key: &PublicKey,
    ) -> Result<AuthAnswer, StoreError> {
        let (decision, fingerprint) = self.login.key_decision(key).await?;
        let KeyDecision::Accept(operator) = decision else {
            info!(user, key = fingerprint, source = %self.login.source(), "login refused: unregistered key");
            return Ok(self.refuse(user, &fingerprint));
        };
        if !self
            .login
            .admit(user, operator, fingerprint.clone())
            .await?
        {
            return Ok(self.refuse(user, &fingerprint));
        }
        Ok(AuthAnswer::Accept)
    }

    /// Refuses an authentication attempt, for the pre-login limits and the audit trail.
    /// (russh counts the attempts against `max_auth_attempts`.)
    fn refuse(&mut self, user: &str, credential: &str) -> AuthAnswer {
        self.login.ticket.auth_failed(user, credential);
        AuthAnswer::Reject
    }

    /// A session channel: kept until the request that starts it, with what sshd tells a
    /// session about its connection, if the credential still lets the operator in and the
    /// connection has room for another waiting channel. `open` makes the handler's side of it
    /// (its reader counts into [`Self::backlog`]), only once it is accepted.
    pub async fn open_session(
        &mut self,
        channel: u32,
        open: impl FnOnce(&Backlog) -> C,
    ) -> Result<OpenAnswer, StoreError> {
        if !self.login.still_admitted().await? {
            return Ok(OpenAnswer::Refuse(
                ChannelOpenFailure::AdministrativelyProhibited,
            ));
        }
        if self.channels.len() >= limits::MAX_PENDING_CHANNELS {
            info!(
                open = self.channels.len(),
                "session channel refused: too many opened and not started"
            );
            return Ok(OpenAnswer::Refuse(ChannelOpenFailure::Other {
                // SSH_OPEN_RESOURCE_SHORTAGE
                code: 4,
                reason: format!(
                    "agentgate: at most {} session channels may wait for a command on one connection",
                    limits::MAX_PENDING_CHANNELS
                ),
            }));
        }
        let mut env = Vec::new();
        if let (Some(peer), Some(local)) = (self.peer, self.local) {
            env.push((
                "SSH_CONNECTION".to_owned(),
                format!(
                    "{} {} {} {}",
                    peer.ip(),
                    peer.port(),
                    local.ip(),
                    local.port()
                ),
            ));
            env.push((
                "SSH_CLIENT".to_owned(),
                format!("{} {} {}", peer.ip(), peer.port(), local.port()),
            ));
        }
        self.channels.insert(
            channel,
            PendingChannel {
                channel: open(&self.backlog),
                pty: None,
                env: SessionEnv::new(env),
                notice: None,
                forwards_agent: false,
            },
        );
        Ok(OpenAnswer::Accept)
    }

    /// A forward: opened only on the agent route, while forwarding is on and the credential
    /// still lets the operator in. A refusal for the route or the gateway's setting is
    /// recorded in the audit trail with its reason.
    pub async fn open_forward(
        &mut self,
        request: ForwardRequest,
    ) -> Result<ForwardAnswer, StoreError> {
        let prohibited = ForwardAnswer::Refuse {
            failure: ChannelOpenFailure::AdministrativelyProhibited,
            record: None,
        };
        if !self.login.still_admitted().await? {
            return Ok(prohibited);
        }
        let target = match request {
            ForwardRequest::Tcp { host, port } => match u16::try_from(port) {
                Ok(port) => Forward::Tcp(host, port),
                Err(_) => {
                    return Ok(ForwardAnswer::Refuse {
                        failure: ChannelOpenFailure::Other {
                            code: 2,
                            reason: format!("port {port} is out of range"),
                        },
                        record: None,
                    });
                }
            },
            ForwardRequest::Unix(path) => Forward::Unix(path),
        };
        let Some(caller) = self.login.caller.clone() else {
            return Ok(prohibited);
        };
        let agent = match &self.login.route {
            Route::Control => None,
            Route::Agent(agent) => Some(agent.clone()),
        };
        let reason = match (
            access::may_forward(agent.as_deref(), self.gw.policy()),
            &agent,
        ) {
            (Ok(()), Some(agent)) => {
                return Ok(ForwardAnswer::Open {
                    caller,
                    agent: agent.clone(),
                    target,
                });
            }
            (Err(access::Denied::ForwardingOff), _) => {
                "agentgate: port forwarding is switched off on this gateway"
            }
            _ => {
                "agentgate: port forwarding works on connections to an agent: ssh -L ... NAME@<gateway>"
            }
        };
        Ok(ForwardAnswer::Refuse {
            failure: ChannelOpenFailure::Other {
                code: 1,
                reason: reason.to_owned(),
            },
            record: Some(AuditRecord {
                caller,
                kind: crate::model::EventKind::Forward,
                agent,
                detail: target.to_string(),
                status: exit::FAILED,
                message: reason.to_owned(),
            }),
        })
    }

    /// A remote forward (`tcpip-forward`, `streamlocal-forward@openssh.com`): listened for
    /// only on the agent route, while remote forwarding is on, the credential still lets the
    /// operator in, and the connection holds fewer than its bound (`super::reverse::decide`).
    /// A refusal is logged with its reason and recorded in the audit trail.
    pub async fn remote_forward(
        &mut self,
        request: &ListenRequest,
    ) -> Result<ListenAnswer, StoreError> {
        if !self.login.still_admitted().await? {
            return Ok(ListenAnswer::Refuse(None));
        }
        let Some(caller) = self.login.caller.clone() else {
            return Ok(ListenAnswer::Refuse(None));
        };
        let agent = match &self.login.route {
            Route::Control => None,
            Route::Agent(agent) => Some(agent.clone()),
        };
        let decision = reverse::decide(
            request,
            agent.as_deref(),
            self.gw.policy(),
            &self.remote_forwards,
        );
        Ok(match (decision, agent) {
            (Decision::Listen(on), Some(agent)) => ListenAnswer::Listen { caller, agent, on },
            (Decision::Listen(_), None) => ListenAnswer::Refuse(None),
            (Decision::Refuse(reason), agent) => {
                info!(%request, reason, "remote forward refused");
                ListenAnswer::Refuse(Some(remote_forward_refusal(
                    caller, agent, request, &reason,
                )))
            }
        })
    }

    /// A remote forward that now listens: held until it is cancelled or the connection ends.
    pub fn listening(&mut self, key: ListenKey, stop: tokio_util::sync::DropGuard) {
        self.remote_forwards.insert(key, stop);
    }

    /// `cancel-tcpip-forward` or `cancel-streamlocal-forward@openssh.com`: closes the
    /// forward's listener; false if this connection holds no such forward.
    pub fn cancel_remote_forward(&mut self, key: &ListenKey) -> bool {
        self.remote_forwards.cancel(key)
    }

    /// `pty-req` on a waiting channel: its terminal, at a size clamped to what tmux handles
    /// (it becomes an agent's window). False (`channel-failure`) for any other channel.
    pub fn pty(&mut self, channel: u32, term: &str, cols: u32, rows: u32) -> bool {
        let Some(pending) = self.channels.get_mut(&channel) else {
            return false;
        };
        pending.channel.set_size(limits::term_size(cols, rows));
        pending.pty = Some(PtyRequest {
            term: term.to_owned(),
        });
        true
    }

    /// `env` on a waiting channel. As sshd: a variable that is not kept gets a failure reply
    /// if the client asked for one (OpenSSH does not ask) and is otherwise dropped; the
    /// connection goes on.
    pub fn env(&mut self, channel: u32, name: &str, value: &str) -> bool {
        if !auth::env_allowed(name, &self.gw.config.ssh.accept_env) {
            debug!(variable = name, "env request ignored: name not accepted");
            return false;
        }
        // Control commands take no environment: nothing would be done with it.
        if self.login.route == Route::Control {
            return false;
        }
        let Some(pending) = self.channels.get_mut(&channel) else {
            return false;
        };
        match pending.env.offer(name, value) {
            Ok(()) => true,
            Err(refusal) => {
                let why = match refusal {
                    EnvRefusal::TooMany => "the channel has the most variables it may keep",
                    EnvRefusal::TooLarge => "the channel's variables would take too many bytes",
                };
                debug!(variable = name, why, "env request refused");
                false
            }
        }
    }

    /// `auth-agent-req@openssh.com` (`ssh -A`): on the agent route, granted when the operator
    /// may forward their agent (`operator set NAME --agent-forwarding on`): the channel's
    /// session gets the connection's [`Forwarding`] (made by `make` the first time). Refused
    /// otherwise; OpenSSH's client asks without wanting a reply and says nothing when it is
    /// refused, so a session that asked is told why on its stderr. The control route's
    /// commands ignore it (a client that forwards its agent everywhere would otherwise get
    /// the note on every command).
    pub async fn agent_forwarding(
        &mut self,
        channel: u32,
        make: impl FnOnce(Caller, String, Backlog) -> Forwarding,
    ) -> Result<bool, StoreError> {
        let (Route::Agent(agent), Some(caller)) = (&self.login.route, &self.login.caller) else {
            return Ok(false);
        };
        if !self.channels.contains_key(&channel) {
            return Ok(false);
        }
        let (agent, caller) = (agent.clone(), caller.clone());
        let allowed = self
            .gw
            .store
            .agent_forwarding_allowed(&caller.operator.name)
            .await?;
        let Some(pending) = self.channels.get_mut(&channel) else {
            return Ok(false);
        };
        if !allowed {
            debug!(
                operator = caller.operator.name,
                "agent forwarding refused: not allowed for the operator"
            );
            pending.notice = Some(agent_forwarding_refused(&caller.operator.name, &agent));
            return Ok(false);
        }
        let backlog = self.backlog.clone();
        self.forwarding
            .get_or_insert_with(|| Arc::new(make(caller, agent, backlog)));
        pending.forwards_agent = true;
        Ok(true)
    }

    /// The connection's forwarded agent, for a channel that asked for it and was granted it.
    fn forwarding_for(&self, pending: &PendingChannel<C>) -> Option<Arc<Forwarding>> {
        self.forwarding
            .as_ref()
            .filter(|_| pending.forwards_agent)
            .cloned()
    }

    /// `x11-req`: no X11 forwarding, refused at once, so a client that waits for the answer
    /// goes on.
    pub fn x11(&self) -> bool {
        false
    }

    /// `shell`: with a terminal, an attach to the agent (on the control route, the live view);
    /// without, a login shell in its workspace (on the control route, the help). A terminal
    /// tmux cannot drive (see [`tmux_can_drive`]) gets that login shell too, on the terminal.
    pub fn shell(&mut self, channel: u32) -> Start<C> {
        let Some((pending, caller)) = self.take(channel) else {
            return Start::Failure;
        };
        let work = match self.login.route.clone() {
            Route::Agent(agent)
                if pending
                    .pty
                    .as_ref()
                    .is_some_and(|pty| tmux_can_drive(&pty.term)) =>
            {
                Work::Agent {
                    agent,
                    session: AgentSession::Attach,
                }
            }
            Route::Agent(agent) => Work::Agent {
                agent,
                session: AgentSession::Shell,
            },
            // `ssh gw` on a terminal opens the live view; without one it prints the help.
            Route::Control => {
                let line = if pending.pty.is_some() { "top" } else { "" };
                Work::Control(line.to_owned())
            }
        };
        Start::Run {
            forwarding: self.forwarding_for(&pending),
            pending,
            caller,
            work,
        }
    }

    /// `exec`: the command inside the agent, or a control command. A command is text: bytes
    /// that are not UTF-8 are refused, never changed, and so is a NUL byte, which no command
    /// line can hold (nor the audit trail show).
    pub fn exec(&mut self, channel: u32, data: &[u8]) -> Start<C> {
        let Some((pending, caller)) = self.take(channel) else {
            return Start::Failure;
        };
        let work = match std::str::from_utf8(data) {
            Ok(line) if line.contains('\0') => Work::Refusal(
                "error: the command contains a NUL byte\n\
                 hint: write it with an escape, as in: printf '\\0'\n"
                    .to_owned(),
            ),
            Ok(line) => match self.login.route.clone() {
                Route::Agent(agent) => Work::Agent {
                    agent,
                    session: agent_command(line),
                },
                Route::Control => Work::Control(line.to_owned()),
            },
            Err(e) => Work::Refusal(format!(
                "error: the command is not valid UTF-8 (at byte {})\n\
                 hint: write such bytes with escapes, as in: printf '\\377'\n",
                e.valid_up_to()
            )),
        };
        Start::Run {
            forwarding: self.forwarding_for(&pending),
            pending,
            caller,
            work,
        }
    }

    /// `subsystem`: `sftp` inside the agent; any other is refused on the agent route with a
    /// failure (the channel waits on), and every one on the control route with a message.
    pub fn subsystem(&mut self, channel: u32, name: &str) -> Start<C> {
        let (agent, refusal) = match (&self.login.route, name) {
            (Route::Agent(agent), "sftp") => (agent.clone(), None),
            (Route::Agent(agent), _) => {
                info!(subsystem = name, agent = %agent, "unknown subsystem refused");
                return Start::Failure;
            }
            (Route::Control, _) => (
                String::new(),
                Some(format!(
                    "error: the gateway itself has no '{name}' subsystem\nhint: connect as an agent: sftp NAME@<gateway>\n"
                )),
            ),
        };
        let Some((pending, caller)) = self.take(channel) else {
            return Start::Failure;
        };
        let work = match refusal {
            Some(message) => Work::Refusal(message),
            None => Work::Agent {
                agent,
                session: AgentSession::Sftp,
            },
        };
        Start::Run {
            forwarding: self.forwarding_for(&pending),
            pending,
            caller,
            work,
        }
    }

    /// The window to advertise next: the configured one, or a trickle while this connection's
    /// consumers are behind (see [`BACKLOG_HIGH_WATER`]).
    pub fn window(&self) -> u32 {
        if self.backlog.bytes() > BACKLOG_HIGH_WATER {
            THROTTLED_WINDOW
        } else {
            self.gw.config.ssh.window_size
        }
    }

    /// The client closed a channel: a waiting one is forgotten.
    pub fn closed(&mut self, channel: u32) {
        self.channels.remove(&channel);
    }

    /// Takes a waiting channel for the request that starts it, with who logged in.
    fn take(&mut self, channel: u32) -> Option<(PendingChannel<C>, Caller)> {
        match (self.channels.remove(&channel), self.login.caller.clone()) {
            (Some(pending), Some(caller)) => Some((pending, caller)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Mutex;

    use bytes::Bytes;
    use hostctl::api::TermSize;
    use russh::keys::{Algorithm, PrivateKey};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::config::Config;
    use crate::model::{AgentStatus, Role};
    use crate::store::{NewKey, Store};
    use crate::streams::Inbound;

    /// Stands in for an open channel: it keeps the terminal size it was given.
    #[derive(Default)]
    struct Probe(Mutex<Option<TermSize>>);

    impl Resize for Probe {
        fn set_size(&self, size: TermSize) {
            *self.0.lock().expect("lock") = Some(size);
        }
    }

    const PEER: &str = "192.0.2.7:50000";
    const LOCAL: &str = "127.0.0.1:2222";

    /// A gateway that runs nothing, on a store of its own: operator alice (whose key is
    /// `key`) owns agent `w`.
    async fn gateway(config: Config, key: &PrivateKey) -> (tempfile::TempDir, Arc<Gateway>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("t.db")).await.expect("store");
        let own = PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519)
            .expect("a key");
        let gw = Arc::new(
            Gateway::new(config, store, Arc::new(own), CancellationToken::new()).expect("gw"),
        );
        let fingerprint = auth::fingerprint(key.public_key());
        let new = NewKey {
            fingerprint: &fingerprint,
            algorithm: "ssh-ed25519",
            public_key: "ssh-ed25519 AAAA",
            comment: "alice",
        };
        gw.store
            .add_key("alice", Role::Operator, &new)
            .await
            .expect("key");
        // An admin besides: removing alice's key must not leave nobody to administer.
        let root = NewKey {
            fingerprint: "SHA256:root",
            ..new
        };
        gw.store
            .add_key("root", Role::Admin, &root)
            .await
            .expect("key");
        let mut agent =
            crate::store::sample_agent("w", crate::hosts::LOCAL_HOST, AgentStatus::Running);
        agent.created_by = Some("alice".into());
        gw.store.insert_agent(&agent).await.expect("agent");
        (dir, gw)
    }

    fn key() -> PrivateKey {
        PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519).expect("a key")
    }

    fn connection(gw: &Arc<Gateway>) -> Connection<Probe> {
        let guard = super::super::guard::Guard::new(&gw.config.ssh);
        let ticket = guard
            .admit(1, IpAddr::V4(Ipv4Addr::LOCALHOST))
            .expect("admitted");
        Connection::new(
            gw.clone(),
            PEER.parse().ok(),
            LOCAL.parse().ok(),
            ticket,
            Arc::default(),
        )
    }

    /// Alice, logged in with her key as `user` (`w`: the agent route; anything else: control).
    async fn logged_in(gw: &Arc<Gateway>, key: &PrivateKey, user: &str) -> Connection<Probe> {
        let mut c = connection(gw);
        assert_eq!(
            c.key_verified(user, key.public_key()).await.expect("auth"),
            AuthAnswer::Accept
        );
        c
    }

    async fn open(c: &mut Connection<Probe>, channel: u32) -> OpenAnswer {
        c.open_session(channel, |_| Probe::default())
            .await
            .expect("open")
    }

    /// The work a started channel runs, with the channel; panics on a failure.
    fn started(start: Start<Probe>) -> (PendingChannel<Probe>, Work) {
        match start {
            Start::Run { pending, work, .. } => (pending, work),
            Start::Failure => panic!("the request failed"),
        }
    }

    fn work(start: Start<Probe>) -> Work {
        started(start).1
    }

    fn agent_work(session: AgentSession) -> Work {
        Work::Agent {
            agent: "w".into(),
            session,
        }
    }

    #[tokio::test]
    async fn only_a_registered_key_logs_in_and_passwords_never_do() {
        let alices = key();
        let (_dir, gw) = gateway(Config::default(), &alices).await;
        let mut c = connection(&gw);
        let stranger = key();
        assert_eq!(
            c.key_offered("w", stranger.public_key())
                .await
                .expect("offer"),
            AuthAnswer::Reject
        );
        assert_eq!(c.auth_password("w"), AuthAnswer::Reject);
        // The `none` probe is refused without counting: tailnet logins are off.
        assert_eq!(c.auth_none("w").await.expect("none"), AuthAnswer::Reject);
        let refused: Vec<String> = c
            .login
            .ticket
            .refused()
            .into_iter()
            .map(|(_, credential)| credential)
            .collect();
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert_eq!(refused[1], "password");
        assert_eq!(
            c.key_offered("w", alices.public_key())
                .await
                .expect("offer"),
            AuthAnswer::Accept
        );
        assert_eq!(
            c.key_verified("w", alices.public_key())
                .await
                .expect("verify"),
            AuthAnswer::Accept
        );
        assert_eq!(c.login.route, Route::Agent("w".into()));
    }

    #[tokio::test]
    async fn requests_on_the_agent_route_start_sessions_inside_the_agent() {
        let alices = key();
        let (_dir, gw) = gateway(Config::default(), &alices).await;
        let mut c = logged_in(&gw, &alices, "w").await;
        for channel in 0..6 {
            assert_eq!(open(&mut c, channel).await, OpenAnswer::Accept);
        }
        // A terminal (clamped to what tmux takes) and a shell: attach.
        assert!(c.pty(0, "xterm", 100_000, 0));
        let (pending, started_work) = started(c.shell(0));
        assert_eq!(started_work, agent_work(AgentSession::Attach));
        assert_eq!(
            *pending.channel.0.lock().expect("lock"),
            Some(limits::term_size(100_000, 0))
        );
        assert_eq!(pending.pty.map(|p| p.term).as_deref(), Some("xterm"));
        // A shell without one: a login shell; exec: the command; sftp: sftp-server.
        assert_eq!(work(c.shell(1)), agent_work(AgentSession::Shell));
        assert_eq!(
            work(c.exec(2, b"make test")),
            agent_work(AgentSession::Exec("make test".into()))
        );
        assert_eq!(work(c.subsystem(3, "sftp")), agent_work(AgentSession::Sftp));
        // Another subsystem fails, and the channel still waits for a request.
        assert!(matches!(c.subsystem(4, "netconf"), Start::Failure));
        assert_eq!(
            work(c.exec(4, b"true")),
            agent_work(AgentSession::Exec("true".into()))
        );
        // A channel is started once; a closed one is gone; an unknown one fails.
        assert!(matches!(c.exec(0, b"true"), Start::Failure));
        c.closed(5);
        assert!(matches!(c.shell(5), Start::Failure));
        assert!(!c.pty(9, "xterm", 80, 24));
        assert!(!c.x11());
    }

    #[tokio::test]
    async fn agent_forwarding_is_refused_unless_allowed_and_a_session_inside_the_agent_is_told_why()
    {
        let alices = key();
        let (_dir, gw) = gateway(Config::default(), &alices).await;
        let mut c = logged_in(&gw, &alices, "w").await;
        for channel in 0..2 {
            assert_eq!(open(&mut c, channel).await, OpenAnswer::Accept);
        }
        let never = |_, _, _| -> Forwarding { panic!("no forwarding is made when refused") };
        assert!(!c.agent_forwarding(0, never).await.expect("store"));
        let (pending, _) = started(c.exec(0, b"ssh-add -l"));
        let notice = pending.notice.expect("a notice");
        assert_eq!(notice, agent_forwarding_refused("alice", "w"));
        assert!(
            notice.contains("ssh gw operator set alice --agent-forwarding on"),
            "{notice}"
        );
        assert!(!pending.forwards_agent);
        // A channel that did not ask is not told; an unknown one is refused all the same.
        let (pending, _) = started(c.exec(1, b"true"));
        assert_eq!(pending.notice, None);
        assert!(!c.agent_forwarding(7, never).await.expect("store"));

        // The control route's commands take no note of it, allowed or not.
        assert!(
            gw.store
                .set_agent_forwarding("alice", true)
                .await
                .expect("set")
        );
        let mut control = logged_in(&gw, &alices, "gw").await;
        assert_eq!(open(&mut control, 0).await, OpenAnswer::Accept);
        assert!(!control.agent_forwarding(0, never).await.expect("store"));
        let (pending, _) = started(control.exec(0, b"list"));
        assert_eq!(pending.notice, None);
        assert!(!pending.forwards_agent);
    }

    #[tokio::test]
    async fn the_control_route_runs_commands_and_refuses_subsystems() {
        let alices = key();
        let (_dir, gw) = gateway(Config::default(), &alices).await;
        let mut c = logged_in(&gw, &alices, "gw").await;
        assert_eq!(c.login.route, Route::Control);
        for channel in 0..4 {
            assert_eq!(open(&mut c, channel).await, OpenAnswer::Accept);
        }
        assert!(c.pty(0, "xterm", 80, 24));
        assert_eq!(work(c.shell(0)), Work::Control("top".into()));
        assert_eq!(work(c.shell(1)), Work::Control(String::new()));
        assert_eq!(
            work(c.exec(2, b"list --json")),
            Work::Control("list --json".into())
        );
        assert_eq!(
            work(c.subsystem(3, "sftp")),
            Work::Refusal(
                "error: the gateway itself has no 'sftp' subsystem\n\
                 hint: connect as an agent: sftp NAME@<gateway>\n"
                    .into()
            )
        );
    }

    #[tokio::test]
    async fn a_command_line_is_text_without_a_nul_byte() {
        let alices = key();
        let (_dir, gw) = gateway(Config::default(), &alices).await;
        let mut c = logged_in(&gw, &alices, "w").await;
        open(&mut c, 0).await;
        open(&mut c, 1).await;
        assert_eq!(
            work(c.exec(0, b"ls\0")),
            Work::Refusal(
                "error: the command contains a NUL byte\n\
                 hint: write it with an escape, as in: printf '\\0'\n"
                    .into()
            )
        );
        assert_eq!(
            work(c.exec(1, b"ls \xff")),
            Work::Refusal(
                "error: the command is not valid UTF-8 (at byte 3)\n\
                 hint: write such bytes with escapes, as in: printf '\\377'\n"
                    .into()
            )
        );
    }

    #[tokio::test]
    async fn a_session_knows_its_connection_and_few_channels_wait_at_once() {
        let alices = key();
        let (_dir, gw) = gateway(Config::default(), &alices).await;
        let mut c = logged_in(&gw, &alices, "w").await;
        let most = u32::try_from(limits::MAX_PENDING_CHANNELS).expect("small");
        for channel in 0..most {
            assert_eq!(open(&mut c, channel).await, OpenAnswer::Accept);
        }
        assert_eq!(
            open(&mut c, most).await,
            OpenAnswer::Refuse(ChannelOpenFailure::Other {
                code: 4,
                reason: format!(
                    "agentgate: at most {most} session channels may wait for a command on one connection"
                ),
            })
        );
        // One started makes room again.
        let (pending, _) = started(c.exec(0, b"env"));
        assert_eq!(open(&mut c, most).await, OpenAnswer::Accept);
        assert_eq!(
            pending.env.into_vars()[..2],
            [
                (
                    "SSH_CONNECTION".to_owned(),
                    "192.0.2.7 50000 127.0.0.1 2222".to_owned()
                ),
                ("SSH_CLIENT".to_owned(), "192.0.2.7 50000 2222".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn env_is_kept_on_the_agent_route_for_accepted_names_within_bounds() {
        let alices = key();
        let (_dir, gw) = gateway(Config::default(), &alices).await;
        let mut c = logged_in(&gw, &alices, "w").await;
        open(&mut c, 0).await;
        assert!(c.env(0, "LANG", "C.UTF-8"));
        assert!(!c.env(0, "PATH", "/tmp"), "not in ssh.accept_env");
        assert!(!c.env(7, "LANG", "C"), "no such channel");
        for n in 1..limits::MAX_ENV_VARS {
            assert!(c.env(0, &format!("LC_{n}"), "x"));
        }
        assert!(!c.env(0, "LC_ALL", "x"), "one past the most");
        let (pending, _) = started(c.exec(0, b"env"));
        assert!(
            pending
                .env
                .into_vars()
                .contains(&("LANG".to_owned(), "C.UTF-8".to_owned()))
        );
        // Control commands take none.
        let mut control = logged_in(&gw, &alices, "gw").await;
        open(&mut control, 0).await;
        assert!(!control.env(0, "LANG", "C"));
    }

    #[tokio::test]
    async fn forwards_open_on_the_agent_route_only_and_refusals_are_recorded() {
        let alices = key();
        let (_dir, gw) = gateway(Config::default(), &alices).await;
        let tcp = |port| ForwardRequest::Tcp {
            host: "localhost".into(),
            port,
        };
        let mut c = logged_in(&gw, &alices, "w").await;
        match c.open_forward(tcp(3000)).await.expect("forward") {
            ForwardAnswer::Open { agent, target, .. } => {
                assert_eq!(
                    (agent.as_str(), target.to_string()),
                    ("w", "localhost:3000".into())
                );
            }
            refused => panic!("{refused:?}"),
        }
        match c
            .open_forward(ForwardRequest::Unix("/run/x.sock".into()))
            .await
            .expect("forward")
        {
            ForwardAnswer::Open { target, .. } => {
                assert_eq!(target.to_string(), "unix:/run/x.sock")
            }
            refused => panic!("{refused:?}"),
        }
        match c.open_forward(tcp(70_000)).await.expect("forward") {
            ForwardAnswer::Refuse { failure, record } => {
                assert_eq!(
                    failure,
                    ChannelOpenFailure::Other {
                        code: 2,
                        reason: "port 70000 is out of range".into()
                    }
                );
                assert!(record.is_none());
            }
            opened => panic!("{opened:?}"),
        }
        // On the control route: refused, and the trail says why.
        let mut control = logged_in(&gw, &alices, "gw").await;
        let reason = "agentgate: port forwarding works on connections to an agent: ssh -L ... NAME@<gateway>";
        match control.open_forward(tcp(3000)).await.expect("forward") {
            ForwardAnswer::Refuse {
                failure,
                record: Some(record),
            } => {
                assert_eq!(
                    failure,
                    ChannelOpenFailure::Other {
                        code: 1,
                        reason: reason.into()
                    }
                );
                assert_eq!(
                    (
                        record.kind,
                        record.agent.as_deref(),
                        record.detail.as_str(),
                        record.status,
                        record.message.as_str(),
                        record.caller.operator.name.as_str()
                    ),
                    (
                        crate::model::EventKind::Forward,
                        None,
                        "localhost:3000",
                        1,
                        reason,
                        "alice"
                    )
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn forwarding_switched_off_is_refused_naming_the_agent() {
        let alices = key();
        let mut config = Config::default();
        config.ssh.allow_forwarding = false;
        let (_dir, gw) = gateway(config, &alices).await;
        let mut c = logged_in(&gw, &alices, "w").await;
        let request = ForwardRequest::Tcp {
            host: "::1".into(),
            port: 22,
        };
        match c.open_forward(request).await.expect("forward") {
            ForwardAnswer::Refuse {
                failure,
                record: Some(record),
            } => {
                let reason = "agentgate: port forwarding is switched off on this gateway";
                assert_eq!(
                    failure,
                    ChannelOpenFailure::Other {
                        code: 1,
                        reason: reason.into()
                    }
                );
                assert_eq!(
                    (
                        record.agent.as_deref(),
                        record.detail.as_str(),
                        record.message.as_str()
                    ),
                    (Some("w"), "[::1]:22", reason)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn without_a_login_or_once_its_key_is_removed_nothing_opens() {
        let alices = key();
        let (_dir, gw) = gateway(Config::default(), &alices).await;
        let prohibited = |answer: ForwardAnswer| {
            matches!(
                answer,
                ForwardAnswer::Refuse {
                    failure: ChannelOpenFailure::AdministrativelyProhibited,
                    record: None
                }
            )
        };
        let mut stranger = connection(&gw);
        assert_eq!(
            open(&mut stranger, 0).await,
            OpenAnswer::Refuse(ChannelOpenFailure::AdministrativelyProhibited)
        );
        assert!(matches!(stranger.exec(0, b"ls"), Start::Failure));

        let mut c = logged_in(&gw, &alices, "w").await;
        assert_eq!(open(&mut c, 0).await, OpenAnswer::Accept);
        let fingerprint = auth::fingerprint(alices.public_key());
        gw.store
            .remove_credentials(&fingerprint)
            .await
            .expect("remove");
        assert_eq!(
            open(&mut c, 1).await,
            OpenAnswer::Refuse(ChannelOpenFailure::AdministrativelyProhibited)
        );
        let request = ForwardRequest::Tcp {
            host: "localhost".into(),
            port: 3000,
        };
        assert!(prohibited(c.open_forward(request).await.expect("forward")));
    }

    #[tokio::test]
    async fn a_mosh_clients_start_of_mosh_server_is_a_mosh_session_on_the_agent_route_only() {
        let alices = key();
        let (_dir, gw) = gateway(Config::default(), &alices).await;
        let mut c = logged_in(&gw, &alices, "w").await;
        for channel in 0..3 {
            assert_eq!(open(&mut c, channel).await, OpenAnswer::Accept);
        }
        let attach = b"mosh-server 'new' '-c' '256' '-s' '-l' 'LANG=C.UTF-8'";
        assert_eq!(
            work(c.exec(0, attach)),
            agent_work(AgentSession::Mosh(MoshStart::Attach {
                server_args: ["-c", "256", "-s", "-l", "LANG=C.UTF-8"]
                    .map(String::from)
                    .to_vec()
            }))
        );
        assert!(matches!(
            work(c.exec(1, b"mosh-server 'new' '--' 'top'")),
            Work::Agent {
                session: AgentSession::Mosh(MoshStart::Command { .. }),
                ..
            }
        ));
        // A line a shell would expand is the command it is.
        assert_eq!(
            work(c.exec(2, b"mosh-server new -c $COLORS")),
            agent_work(AgentSession::Exec("mosh-server new -c $COLORS".into()))
        );
        // On the control route it is a control command's line, as any other.
        let mut control = logged_in(&gw, &alices, "gw").await;
        open(&mut control, 0).await;
        let line = String::from_utf8_lossy(attach).into_owned();
        assert_eq!(work(control.exec(0, attach)), Work::Control(line));
    }

    #[tokio::test]
    async fn a_terminal_tmux_cannot_drive_gets_a_login_shell_not_an_attach() {
        let alices = key();
        let (_dir, gw) = gateway(Config::default(), &alices).await;
        let mut c = logged_in(&gw, &alices, "w").await;
        for channel in 0..4 {
            assert_eq!(open(&mut c, channel).await, OpenAnswer::Accept);
        }
        assert!(c.pty(0, "dumb", 80, 24));
        let (pending, started_work) = started(c.shell(0));
        assert_eq!(started_work, agent_work(AgentSession::Shell));
        assert!(
            pending.pty.is_some(),
            "the shell runs on the client's terminal"
        );
        assert!(c.pty(1, "", 80, 24));
        assert_eq!(work(c.shell(1)), agent_work(AgentSession::Shell));
        assert!(c.pty(2, "xterm-256color", 80, 24));
        assert_eq!(work(c.shell(2)), agent_work(AgentSession::Attach));
        // On the control route a dumb terminal still opens the live view's route.
        let mut control = logged_in(&gw, &alices, "gw").await;
        open(&mut control, 0).await;
        assert!(control.pty(0, "dumb", 80, 24));
        assert_eq!(work(control.shell(0)), Work::Control("top".into()));
        assert!(!tmux_can_drive("dumb") && !tmux_can_drive(" ") && tmux_can_drive("vt100"));
    }

    #[tokio::test]
    async fn a_connection_whose_consumers_are_behind_gets_a_trickle_of_window() {
        let alices = key();
        let (_dir, gw) = gateway(Config::default(), &alices).await;
        let c = logged_in(&gw, &alices, "w").await;
        assert_eq!(c.window(), gw.config.ssh.window_size);
        let (sender, inbound) = Inbound::channel(c.backlog());
        assert!(
            sender
                .send(Bytes::from(vec![0u8; BACKLOG_HIGH_WATER + 1]))
                .await
        );
        assert_eq!(c.window(), THROTTLED_WINDOW);
        drop(inbound);
        assert_eq!(c.window(), gw.config.ssh.window_size);
    }
}
