//! One connection's state and every decision about it, apart from the SSH protocol: its login
//! (through [`super::login`]), the session channels waiting for the request that starts them,
//! which requests each may make (`pty-req`, `env`, `x11-req`), what `shell`, `exec` and
//! `subsystem` start on either route, which forwards (`direct-tcpip`, `direct-streamlocal`)
//! are opened and how a refused one is answered and recorded, and the window the connection
//! advertises.
//!
//! The russh handler (`handler.rs`) turns each callback into one call here and the answer into
//! russh's replies and tasks; nothing here takes a russh channel or session, so every decision
//! is tested with plain values. A channel is known by its number and carries whatever the
//! handler keeps for it (`C`: the open channel), which this module only holds and hands back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use hostctl::api::TermSize;
use russh::ChannelOpenFailure;
use russh::keys::PublicKey;
use tracing::{debug, info};

use super::agent::Forward;
use super::channel::{PendingChannel, PtyRequest};
use super::guard::Ticket;
use super::limits::{self, EnvRefusal, SessionEnv};
use super::login::Login;
use crate::Gateway;
use crate::agents::live::Revocation;
use crate::agents::said::exit;
use crate::agents::{Caller, access, audit};
use crate::auth::{self, KeyDecision, Route};
use crate::hosts::AgentSession;
use crate::store::StoreError;
use crate::streams::Backlog;

/// Above this much unconsumed client data, the window the connection re-advertises shrinks
/// to [`THROTTLED_WINDOW`] bytes until the consumers catch up: once a client has spent the
/// window it already holds (at most the configured window), it may send only a trickle.
/// (russh re-advertises window as data arrives, not as it is consumed.)
pub const BACKLOG_HIGH_WATER: usize = 1024 * 1024;
pub const THROTTLED_WINDOW: u32 = 512;

/// A channel whose terminal size a `pty-req` sets.
pub trait Resize {
    fn set_size(&self, size: TermSize);
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
    pub kind: &'static str,
    pub agent: Option<String>,
    pub detail: String,
    pub status: u32,
    pub message: String,
}

impl AuditRecord {
    pub async fn write(self, gw: &Gateway) {
        audit::record(
            gw,
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

/// What a request that starts a session channel (`shell`, `exec`, `subsystem`) comes to.
pub enum Start<C> {
    /// `channel-failure`: no such waiting channel, no login, or nothing to start.
    Failure,
    /// `channel-success`, then `work` on the channel.
    Run {
        pending: PendingChannel<C>,
        caller: Caller,
        work: Work,
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
                kind: "forward",
                agent,
                detail: target.to_string(),
                status: exit::FAILED,
                message: reason.to_owned(),
            }),
        })
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

    /// `x11-req`: no X11 forwarding, refused at once, so a client that waits for the answer
    /// goes on.
    pub fn x11(&self) -> bool {
        false
    }

    /// `shell`: with a terminal, an attach to the agent (on the control route, the live view);
    /// without, a login shell in its workspace (on the control route, the help).
    pub fn shell(&mut self, channel: u32) -> Start<C> {
        let Some((pending, caller)) = self.take(channel) else {
            return Start::Failure;
        };
        let work = match self.login.route.clone() {
            Route::Agent(agent) if pending.pty.is_some() => Work::Agent {
                agent,
                session: AgentSession::Attach,
            },
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
                    session: AgentSession::Exec(line.to_owned()),
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
