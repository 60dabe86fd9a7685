//! The russh handler: a thin adapter from russh's callbacks to decisions in `auth`,
//! `agents::access` and [`super::login`] (who logged in, on which route, whether they still
//! may), and to work in `control` and [`super::agent`]. Callbacks of one connection run one at a time, so they only
//! answer the request and hand anything slow to a task. Returning `Err` from a callback kills
//! the connection, so they return `Err` only for that.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use russh::server::{
    Auth, ChannelOpenHandle, Handle, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet};
use tracing::{Instrument, debug, info};

use super::agent::{self, Forward};
use super::channel::{OpenChannel, PendingChannel, PtyRequest, command_io, finish};
use super::guard::Ticket;
use super::limits::{self, EnvRefusal, SessionEnv};
use super::login::Login;
use crate::Gateway;
use crate::agents::access;
use crate::agents::{Caller, audit};
use crate::auth::{self, KeyDecision, Route};
use crate::control::{self, Parsed, exit};
use crate::hosts::AgentSession;
use crate::ssh::live::Revocation;
use crate::streams::Backlog;

pub struct ConnectionHandler {
    gw: Arc<Gateway>,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    /// Who logged in, on which route, and whether they still may (`super::login`).
    login: Login,
    handle: Option<Handle>,
    channels: HashMap<ChannelId, PendingChannel>,
    /// Client data received on this connection that its consumers have not taken yet.
    backlog: Backlog,
}

/// Above this much unconsumed client data, the window the connection re-advertises shrinks
/// to [`THROTTLED_WINDOW`] bytes until the consumers catch up: once a client has spent the
/// window it already holds (at most the configured window), it may send only a trickle.
/// (russh re-advertises window as data arrives, not as it is consumed.)
const BACKLOG_HIGH_WATER: usize = 1024 * 1024;
const THROTTLED_WINDOW: u32 = 512;

impl ConnectionHandler {
    pub fn new(
        gw: Arc<Gateway>,
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
        ticket: Arc<Ticket>,
        revocation: Arc<Revocation>,
    ) -> Self {
        ConnectionHandler {
            login: Login::new(gw.clone(), peer, ticket, revocation),
            gw,
            peer,
            local,
            handle: None,
            channels: HashMap::new(),
            backlog: Backlog::default(),
        }
    }

    /// `reply`, if the connection may still open channels; else the channel is refused.
    async fn admit_channel(
        &mut self,
        reply: ChannelOpenHandle,
    ) -> Result<Option<ChannelOpenHandle>, anyhow::Error> {
        if self.login.still_admitted().await? {
            return Ok(Some(reply));
        }
        self.gw
            .tasks
            .spawn(reply.reject(ChannelOpenFailure::AdministrativelyProhibited));
        Ok(None)
    }

    /// Refuses an authentication attempt, for the pre-login limits and the audit trail.
    /// (russh counts the attempts against `max_auth_attempts`.)
    fn refuse(&mut self, user: &str, credential: &str) -> Auth {
        self.login.ticket.auth_failed(user, credential);
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        }
    }

    /// Takes a pending channel for a request that starts it; answers failure if there is none.
    fn take_channel(
        &mut self,
        id: ChannelId,
        session: &mut Session,
    ) -> Result<Option<(PendingChannel, Caller, Handle)>, russh::Error> {
        match (
            self.channels.remove(&id),
            self.login.caller.clone(),
            self.handle.clone(),
        ) {
            (Some(pending), Some(caller), Some(handle)) => {
                session.channel_success(id)?;
                Ok(Some((pending, caller, handle)))
            }
            _ => {
                session.channel_failure(id)?;
                Ok(None)
            }
        }
    }

    /// Starts a control command (`exec` or `shell` on the control route) in its own task.
    fn spawn_control(&self, pending: PendingChannel, caller: Caller, line: String) {
        let gw = self.gw.clone();
        let tasks = gw.tasks.clone();
        let span = tracing::info_span!("command", line = %control::redacted(&line));
        tasks.spawn(
            async move {
                let (mut io, writer) = command_io(pending.channel, pending.pty);
                let ran = control::guarded(async {
                    match control::parse(&line) {
                        Parsed::Run(command) => {
                            control::run(&gw, &caller, &line, *command, &mut io).await
                        }
                        Parsed::Print {
                            text,
                            status,
                            to_stderr,
                        } => {
                            if to_stderr {
                                io.write_err(&text).await;
                            } else {
                                io.write_out(&text).await;
                            }
                            status
                        }
                    }
                })
                .await;
                // A bug must not leave the client waiting: it gets an answer and a status.
                let status = match ran {
                    Ok(status) => status,
                    Err(panic) => {
                        tracing::error!(panic, "a control command failed inside the gateway");
                        io.write_err(
                            "error: the gateway failed inside this command (see its log)\n",
                        )
                        .await;
                        exit::FAILED
                    }
                };
                finish(io, writer, status).await;
            }
            .instrument(span),
        );
    }

    /// Starts a session inside the agent this connection is routed to.
    fn spawn_agent_session(
        &self,
        pending: PendingChannel,
        caller: Caller,
        handle: Handle,
        agent: String,
        session: AgentSession,
    ) {
        let gw = self.gw.clone();
        let span = tracing::info_span!("session", agent = %agent, kind = ?session);
        gw.tasks.clone().spawn(
            agent::run_session(gw, caller, handle, agent, session, pending).instrument(span),
        );
    }

    /// Answers a request that cannot be served with a clear message and exit status 1.
    fn spawn_refusal(&self, pending: PendingChannel, message: String) {
        self.gw.tasks.spawn(async move {
            let (mut io, writer) = command_io(pending.channel, pending.pty);
            io.write_err(&message).await;
            finish(io, writer, exit::FAILED).await;
        });
    }

    /// Opens a forwarded connection from the agent's host, or refuses it with a reason.
    fn open_forward(&self, channel: Channel<Msg>, target: Forward, reply: ChannelOpenHandle) {
        let Some(caller) = self.login.caller.clone() else {
            self.gw
                .tasks
                .spawn(reply.reject(ChannelOpenFailure::AdministrativelyProhibited));
            return;
        };
        let agent = match &self.login.route {
            Route::Control => None,
            Route::Agent(agent) => Some(agent.clone()),
        };
        let refusal = match access::may_forward(agent.as_deref(), self.gw.policy()) {
            Ok(()) => None,
            Err(access::Denied::ForwardingOff) => Some((
                agent,
                "agentgate: port forwarding is switched off on this gateway",
            )),
            Err(_) => Some((
                agent,
                "agentgate: port forwarding works on connections to an agent: ssh -L ... NAME@<gateway>",
            )),
        };
        let gw = self.gw.clone();
        if let Some((agent, reason)) = refusal {
            gw.tasks.clone().spawn(async move {
                reply
                    .reject(ChannelOpenFailure::Other {
                        code: 1,
                        reason: reason.to_owned(),
                    })
                    .await;
                audit::record(
                    &gw,
                    &caller,
                    crate::model::EventKind::Forward,
                    agent,
                    &target.to_string(),
                    exit::FAILED,
                    reason,
                )
                .await;
            });
            return;
        }
        let Route::Agent(agent) = self.login.route.clone() else {
            return;
        };
        let span = tracing::info_span!("forward", agent = %agent, target = %target);
        // Read from now on: nothing arrives before the open is accepted, and from then on
        // nothing the client sends waits for the dial or the audit record.
        let channel = OpenChannel::open(channel, &self.backlog, &gw.tasks);
        gw.tasks
            .clone()
            .spawn(agent::run_forward(gw, caller, agent, target, channel, reply).instrument(span));
    }
}

impl russh::server::Handler for ConnectionHandler {
    type Error = anyhow::Error;

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        if self.gw.config.auth.tailscale.enabled
            && let Some((operator, login)) = self.login.tailnet_operator(user).await?
        {
            let credential = format!("tailscale:{login}");
            if !self.login.admit(user, operator, credential.clone()).await? {
                return Ok(self.refuse(user, &credential));
            }
            return Ok(Auth::Accept);
        }
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        })
    }

    async fn auth_password(&mut self, user: &str, _password: &str) -> Result<Auth, Self::Error> {
        info!(user, source = %self.login.source(), "password authentication refused");
        Ok(self.refuse(user, "password"))
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let (decision, fingerprint) = self.login.key_decision(offer.public_key).await?;
        Ok(match decision {
            KeyDecision::Accept(_) => Auth::Accept,
            KeyDecision::Reject => {
                debug!(key = fingerprint, "offered key is not registered");
                self.refuse(user, &fingerprint)
            }
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let (decision, fingerprint) = self.login.key_decision(key.public_key).await?;
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
        Ok(Auth::Accept)
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        self.handle = Some(session.handle());
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(reply) = self.admit_channel(reply).await? else {
            return Ok(());
        };
        if self.channels.len() >= limits::MAX_PENDING_CHANNELS {
            info!(
                open = self.channels.len(),
                "session channel refused: too many opened and not started"
            );
            self.gw.tasks.spawn(reply.reject(ChannelOpenFailure::Other {
                // SSH_OPEN_RESOURCE_SHORTAGE
                code: 4,
                reason: format!(
                    "agentgate: at most {} session channels may wait for a command on one connection",
                    limits::MAX_PENDING_CHANNELS
                ),
            }));
            return Ok(());
        }
        // What sshd tells a session about its connection.
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
            channel.id(),
            PendingChannel {
                channel: OpenChannel::open(channel, &self.backlog, &self.gw.tasks),
                pty: None,
                env: SessionEnv::new(env),
            },
        );
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(reply) = self.admit_channel(reply).await? else {
            return Ok(());
        };
        match u16::try_from(port_to_connect) {
            Ok(port) => self.open_forward(
                channel,
                Forward::Tcp(host_to_connect.to_owned(), port),
                reply,
            ),
            Err(_) => {
                self.gw.tasks.spawn(reply.reject(ChannelOpenFailure::Other {
                    code: 2,
                    reason: format!("port {port_to_connect} is out of range"),
                }));
            }
        }
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        channel: Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(reply) = self.admit_channel(reply).await? else {
            return Ok(());
        };
        self.open_forward(channel, Forward::Unix(socket_path.to_owned()), reply);
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(pending) => {
                // Clamped to what tmux handles: this size becomes an agent's window.
                pending
                    .channel
                    .set_size(limits::term_size(col_width, row_height));
                pending.pty = Some(PtyRequest {
                    term: term.to_owned(),
                });
                session.channel_success(channel)?;
            }
            None => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // As sshd: a variable that is not kept gets a failure reply if the client asked for
        // one (OpenSSH does not ask) and is otherwise dropped; the connection goes on.
        if !auth::env_allowed(variable_name, &self.gw.config.ssh.accept_env) {
            debug!(
                variable = variable_name,
                "env request ignored: name not accepted"
            );
            session.channel_failure(channel)?;
            return Ok(());
        }
        // Control commands take no environment: nothing would be done with it.
        if self.login.route == Route::Control {
            session.channel_failure(channel)?;
            return Ok(());
        }
        let Some(pending) = self.channels.get_mut(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        match pending.env.offer(variable_name, variable_value) {
            Ok(()) => session.channel_success(channel)?,
            Err(refusal) => {
                let why = match refusal {
                    EnvRefusal::TooMany => "the channel has the most variables it may keep",
                    EnvRefusal::TooLarge => "the channel's variables would take too many bytes",
                };
                debug!(variable = variable_name, why, "env request refused");
                session.channel_failure(channel)?;
            }
        }
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // No X11 forwarding: refused at once, so a client that waits for the answer goes on.
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some((pending, caller, handle)) = self.take_channel(channel, session)? else {
            return Ok(());
        };
        match self.login.route.clone() {
            Route::Agent(agent) if pending.pty.is_some() => {
                self.spawn_agent_session(pending, caller, handle, agent, AgentSession::Attach)
            }
            Route::Agent(agent) => {
                self.spawn_agent_session(pending, caller, handle, agent, AgentSession::Shell)
            }
            // `ssh gw` on a terminal opens the live view; without one it prints the help.
            Route::Control => {
                let line = if pending.pty.is_some() { "top" } else { "" };
                self.spawn_control(pending, caller, line.to_owned())
            }
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some((pending, caller, handle)) = self.take_channel(channel, session)? else {
            return Ok(());
        };
        // A command is text: bytes that are not UTF-8 are refused, never changed, and so is a
        // NUL byte, which no command line can hold (nor the audit trail show).
        let line = match std::str::from_utf8(data) {
            Ok(line) if line.contains('\0') => {
                let message = "error: the command contains a NUL byte\n\
                               hint: write it with an escape, as in: printf '\\0'\n";
                self.spawn_refusal(pending, message.to_owned());
                return Ok(());
            }
            Ok(line) => line.to_owned(),
            Err(e) => {
                let message = format!(
                    "error: the command is not valid UTF-8 (at byte {})\n\
                     hint: write such bytes with escapes, as in: printf '\\377'\n",
                    e.valid_up_to()
                );
                self.spawn_refusal(pending, message);
                return Ok(());
            }
        };
        match self.login.route.clone() {
            Route::Agent(agent) => {
                self.spawn_agent_session(pending, caller, handle, agent, AgentSession::Exec(line))
            }
            Route::Control => self.spawn_control(pending, caller, line),
        }
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match (&self.login.route, name) {
            (Route::Agent(agent), "sftp") => {
                let agent = agent.clone();
                if let Some((pending, caller, handle)) = self.take_channel(channel, session)? {
                    self.spawn_agent_session(pending, caller, handle, agent, AgentSession::Sftp);
                }
            }
            (Route::Agent(agent), _) => {
                info!(subsystem = name, agent = %agent, "unknown subsystem refused");
                session.channel_failure(channel)?;
            }
            (Route::Control, _) => {
                let message = format!(
                    "error: the gateway itself has no '{name}' subsystem\nhint: connect as an agent: sftp NAME@<gateway>\n"
                );
                if let Some((pending, _caller, _handle)) = self.take_channel(channel, session)? {
                    self.spawn_refusal(pending, message);
                }
            }
        }
        Ok(())
    }

    /// The window to advertise next: the configured one, or a trickle while this connection's
    /// consumers are behind (see [`BACKLOG_HIGH_WATER`]).
    fn adjust_window(&mut self, _channel: ChannelId, _current: u32) -> u32 {
        if self.backlog.bytes() > BACKLOG_HIGH_WATER {
            THROTTLED_WINDOW
        } else {
            self.gw.config.ssh.window_size
        }
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }
}
