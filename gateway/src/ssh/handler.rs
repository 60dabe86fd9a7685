//! The russh handler: a thin adapter. Each callback turns its arguments into one call on the
//! connection's [`Connection`] (`session.rs`, where every decision is) and the answer into
//! russh's replies, handing the work that follows to a task: a control command, a session
//! inside the agent (`agent.rs`), a forward, a remote forward's listener (`reverse.rs`), or a
//! refusal. Callbacks of one connection run one at a time, so they only answer the request.
//! Returning `Err` from a callback kills the connection, so they return `Err` only for that.

use std::net::SocketAddr;
use std::sync::Arc;

use russh::server::{
    Auth, ChannelOpenHandle, Handle, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tracing::{Instrument, info};

use super::agent;
use super::channel::{OpenChannel, PendingChannel, command_io, finish};
use super::forward_agent::Forwarding;
use super::guard::Ticket;
use super::reverse::{self, ChannelTarget, ListenKey, ListenRequest};
use super::session::{
    AuthAnswer, Connection, ForwardAnswer, ForwardRequest, ListenAnswer, OpenAnswer, Start, Work,
    remote_forward_refusal,
};
use crate::Gateway;
use crate::agents::Caller;
use crate::agents::live::Revocation;
use crate::agents::said::exit;
use crate::hosts::AgentSession;
use crate::store::StoreError;

/// Why a connection must end: the protocol failed, or the facts of a login could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Ssh(#[from] russh::Error),
    /// The facts of a login or of a channel's check could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct ConnectionHandler {
    gw: Arc<Gateway>,
    connection: Connection<OpenChannel>,
    handle: Option<Handle>,
}

impl ConnectionHandler {
    pub fn new(
        gw: Arc<Gateway>,
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
        ticket: Arc<Ticket>,
        revocation: Arc<Revocation>,
    ) -> Self {
        ConnectionHandler {
            connection: Connection::new(gw.clone(), peer, local, ticket, revocation),
            gw,
            handle: None,
        }
    }

    /// Answers a request that starts a channel, and starts its work in a task.
    fn start(
        &self,
        id: ChannelId,
        start: Start<OpenChannel>,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let (
            Start::Run {
                pending,
                caller,
                work,
                forwarding,
            },
            Some(handle),
        ) = (start, self.handle.clone())
        else {
            session.channel_failure(id)?;
            return Ok(());
        };
        session.channel_success(id)?;
        match work {
            Work::Control(line) => self.spawn_control(pending, caller, line),
            Work::Agent { agent, session } => {
                self.spawn_agent_session(pending, caller, handle, agent, session, forwarding)
            }
            Work::Refusal(message) => self.spawn_refusal(pending, message),
        }
        Ok(())
    }

    /// Runs a control command (`exec` or `shell` on the control route) in its own task.
    fn spawn_control(&self, pending: PendingChannel, caller: Caller, line: String) {
        let gw = self.gw.clone();
        self.gw.tasks.spawn(async move {
            let (mut io, writer) = command_io(pending.channel, pending.pty);
            let status = crate::control::dispatch(&gw, &caller, &line, &mut io).await;
            finish(io, writer, status).await;
        });
    }

    /// Starts a session inside the agent this connection is routed to.
    fn spawn_agent_session(
        &self,
        pending: PendingChannel,
        caller: Caller,
        handle: Handle,
        agent: String,
        session: AgentSession,
        forwarding: Option<Arc<Forwarding>>,
    ) {
        let gw = self.gw.clone();
        let span = tracing::info_span!("session", agent = %agent, kind = ?session);
        let run = agent::run_session(
            gw.clone(),
            caller,
            handle,
            agent,
            session,
            pending,
            forwarding,
        );
        gw.tasks.spawn(run.instrument(span));
    }

    /// Answers a request that cannot be served with a clear message and exit status 1.
    fn spawn_refusal(&self, pending: PendingChannel, message: String) {
        self.gw.tasks.spawn(async move {
            let (mut io, writer) = command_io(pending.channel, pending.pty);
            io.write_err(&message).await;
            finish(io, writer, exit::FAILED).await;
        });
    }

    /// Opens a forward the session allowed, or refuses it (and records the refusal) in a task.
    async fn forward(
        &mut self,
        channel: Channel<Msg>,
        request: ForwardRequest,
        reply: ChannelOpenHandle,
    ) -> Result<(), ConnectionError> {
        let gw = self.gw.clone();
        match self.connection.open_forward(request).await? {
            ForwardAnswer::Refuse { failure, record } => {
                gw.tasks.clone().spawn(async move {
                    reply.reject(failure).await;
                    if let Some(record) = record {
                        record.write(&gw).await;
                    }
                });
            }
            ForwardAnswer::Open {
                caller,
                agent,
                target,
            } => {
                let span = tracing::info_span!("forward", agent = %agent, target = %target);
                // Read from now on: nothing arrives before the open is accepted, and from then
                // on nothing the client sends waits for the dial or the audit record.
                let channel = OpenChannel::open(channel, self.connection.backlog(), &gw.tasks);
                gw.tasks.clone().spawn(
                    agent::run_forward(gw, caller, agent, target, channel, reply).instrument(span),
                );
            }
        }
        Ok(())
    }
}

impl ConnectionHandler {
    /// A remote forward (`ssh -R`): refused (and recorded) in a task, or the listener opened
    /// on the agent's host and served in a task. Opening it is awaited here, bounded by the
    /// host's connect timeout: SSH answers global requests in order, and the answer to a
    /// `tcpip-forward` for port 0 carries the port, so it cannot be given later.
    async fn remote_forward(
        &mut self,
        request: ListenRequest,
    ) -> Result<Option<u16>, ConnectionError> {
        let Some(handle) = self.handle.clone() else {
            return Ok(None);
        };
        let gw = self.gw.clone();
        let (caller, agent, on) = match self.connection.remote_forward(&request).await? {
            ListenAnswer::Refuse(record) => {
                if let Some(record) = record {
                    gw.tasks
                        .clone()
                        .spawn(async move { record.write(&gw).await });
                }
                return Ok(None);
            }
            ListenAnswer::Listen { caller, agent, on } => (caller, agent, on),
        };
        let listener = match reverse::open(&gw, &caller, &agent, &on).await {
            Ok(listener) => listener,
            Err(reason) => {
                info!(%request, %agent, reason, "remote forward refused");
                let record = remote_forward_refusal(caller, Some(agent), &request, &reason);
                gw.tasks
                    .clone()
                    .spawn(async move { record.write(&gw).await });
                return Ok(None);
            }
        };
        let port = listener.port;
        let (key, target) = match &request {
            ListenRequest::Tcp { address, .. } => (
                ListenKey::Tcp {
                    address: address.clone(),
                    port,
                },
                ChannelTarget::Tcp {
                    address: address.clone(),
                    port,
                },
            ),
            ListenRequest::Unix(path) => (
                ListenKey::Unix(path.clone()),
                ChannelTarget::Unix(path.clone()),
            ),
        };
        let stop = tokio_util::sync::CancellationToken::new();
        self.connection.listening(key, stop.clone().drop_guard());
        let span = tracing::info_span!("remote_forward", agent = %agent, request = %request);
        let backlog = self.connection.backlog().clone();
        gw.tasks.clone().spawn(
            reverse::serve(
                gw, caller, agent, request, target, listener, handle, backlog, stop,
            )
            .instrument(span),
        );
        Ok(Some(port))
    }
}

/// russh's answer for an authentication attempt: only a public key may be tried next.
fn auth(answer: AuthAnswer) -> Auth {
    match answer {
        AuthAnswer::Accept => Auth::Accept,
        AuthAnswer::Reject => Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        },
    }
}

/// russh's reply to a channel request: success or failure.
fn reply(session: &mut Session, id: ChannelId, success: bool) -> Result<(), ConnectionError> {
    if success {
        session.channel_success(id)?;
    } else {
        session.channel_failure(id)?;
    }
    Ok(())
}

impl russh::server::Handler for ConnectionHandler {
    type Error = ConnectionError;

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        Ok(auth(self.connection.auth_none(user).await?))
    }

    async fn auth_password(&mut self, user: &str, _password: &str) -> Result<Auth, Self::Error> {
        Ok(auth(self.connection.auth_password(user)))
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(auth(
            self.connection.key_offered(user, offer.public_key).await?,
        ))
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(auth(
            self.connection.key_verified(user, key.public_key).await?,
        ))
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
        let id = u32::from(channel.id());
        let tasks = self.gw.tasks.clone();
        let open = |backlog: &_| OpenChannel::open(channel, backlog, &tasks);
        match self.connection.open_session(id, open).await? {
            OpenAnswer::Accept => reply.accept().await,
            OpenAnswer::Refuse(failure) => {
                self.gw.tasks.spawn(reply.reject(failure));
            }
        }
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
        let request = ForwardRequest::Tcp {
            host: host_to_connect.to_owned(),
            port: port_to_connect,
        };
        self.forward(channel, request, reply).await
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        channel: Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let request = ForwardRequest::Unix(socket_path.to_owned());
        self.forward(channel, request, reply).await
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
        let id = u32::from(channel);
        let accepted = self.connection.pty(id, term, col_width, row_height);
        reply(session, channel, accepted)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let id = u32::from(channel);
        let accepted = self.connection.env(id, variable_name, variable_value);
        reply(session, channel, accepted)
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Some(handle) = self.handle.clone() else {
            return Ok(false);
        };
        let gw = self.gw.clone();
        let make = |caller, agent, backlog| Forwarding::new(gw, caller, agent, handle, backlog);
        Ok(self
            .connection
            .agent_forwarding(u32::from(channel), make)
            .await?)
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
        reply(session, channel, self.connection.x11())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let start = self.connection.shell(u32::from(channel));
        Ok(self.start(channel, start, session)?)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let start = self.connection.exec(u32::from(channel), data);
        Ok(self.start(channel, start, session)?)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let start = self.connection.subsystem(u32::from(channel), name);
        Ok(self.start(channel, start, session)?)
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let request = ListenRequest::Tcp {
            address: address.to_owned(),
            port: *port,
        };
        match self.remote_forward(request).await? {
            Some(bound) => {
                *port = u32::from(bound);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Ok(port) = u16::try_from(port) else {
            return Ok(false);
        };
        let key = ListenKey::Tcp {
            address: address.to_owned(),
            port,
        };
        Ok(self.connection.cancel_remote_forward(&key))
    }

    async fn streamlocal_forward(
        &mut self,
        socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let request = ListenRequest::Unix(socket_path.to_owned());
        Ok(self.remote_forward(request).await?.is_some())
    }

    async fn cancel_streamlocal_forward(
        &mut self,
        socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let key = ListenKey::Unix(socket_path.to_owned());
        Ok(self.connection.cancel_remote_forward(&key))
    }

    fn adjust_window(&mut self, _channel: ChannelId, _current: u32) -> u32 {
        self.connection.window()
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.connection.closed(u32::from(channel));
        Ok(())
    }
}
