//! The russh handler: a thin adapter from russh's callbacks to decisions in `auth` and work in
//! `control`. Callbacks of one connection run one at a time, so they only answer the request
//! and hand anything slow to a task. Returning `Err` from a callback kills the connection, so
//! they return `Err` only for that.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet};
use tracing::{Instrument, debug, info, warn};

use super::channel::{PtyRequest, command_io, finish, term_size};
use crate::Gateway;
use crate::auth::{self, KeyDecision, Route};
use crate::control::{self, Caller, Parsed, exit};

/// A session channel between `channel-open` and the request that starts it.
struct PendingChannel {
    channel: Channel<Msg>,
    pty: Option<PtyRequest>,
}

pub struct ConnectionHandler {
    gw: Arc<Gateway>,
    peer: Option<SocketAddr>,
    caller: Option<Caller>,
    route: Route,
    channels: HashMap<ChannelId, PendingChannel>,
}

impl ConnectionHandler {
    pub fn new(gw: Arc<Gateway>, peer: Option<SocketAddr>) -> Self {
        ConnectionHandler {
            gw,
            peer,
            caller: None,
            route: Route::Control,
            channels: HashMap::new(),
        }
    }

    fn source(&self) -> String {
        self.peer
            .map(|p| p.to_string())
            .unwrap_or_else(|| "unknown".into())
    }

    async fn key_decision(&self, key: &PublicKey) -> Result<(KeyDecision, String), anyhow::Error> {
        let fingerprint = auth::fingerprint(key);
        let owner = self.gw.store.operator_by_fingerprint(&fingerprint).await?;
        Ok((auth::decide_key(owner), fingerprint))
    }

    /// Takes a pending channel for a request that starts it; answers failure if there is none.
    fn take_channel(
        &mut self,
        id: ChannelId,
        session: &mut Session,
    ) -> Result<Option<(PendingChannel, Caller)>, russh::Error> {
        match (self.channels.remove(&id), self.caller.clone()) {
            (Some(pending), Some(caller)) => {
                session.channel_success(id)?;
                Ok(Some((pending, caller)))
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
                let (mut io, writer) = command_io(pending.channel, pending.pty, &gw.tasks);
                let status = match control::parse(&line) {
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
                };
                finish(io, writer, status).await;
            }
            .instrument(span),
        );
    }

    /// Starts an attach to the agent this connection is routed to.
    fn spawn_attach(&self, pending: PendingChannel, caller: Caller, agent: String) {
        let gw = self.gw.clone();
        let tasks = gw.tasks.clone();
        let span = tracing::info_span!("attach", agent = %agent);
        tasks.spawn(
            async move {
                let (mut io, writer) = command_io(pending.channel, pending.pty, &gw.tasks);
                let (status, message) = match control::attach::run(&gw, &agent, &mut io).await {
                    Ok(status) => (status, String::new()),
                    Err(e) => {
                        io.write_err(&e.render()).await;
                        (e.status, e.message)
                    }
                };
                control::record(
                    &gw,
                    &caller,
                    "attach",
                    Some(agent.clone()),
                    &format!("attach {agent}"),
                    status,
                    &message,
                )
                .await;
                finish(io, writer, status).await;
            }
            .instrument(span),
        );
    }

    /// Answers a request the agent route does not serve yet with a clear message.
    fn spawn_refusal(&self, pending: PendingChannel, message: String) {
        let gw = self.gw.clone();
        gw.tasks.clone().spawn(async move {
            let (mut io, writer) = command_io(pending.channel, pending.pty, &gw.tasks);
            io.write_err(&message).await;
            finish(io, writer, exit::FAILED).await;
        });
    }
}

impl russh::server::Handler for ConnectionHandler {
    type Error = anyhow::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        })
    }

    async fn auth_password(&mut self, user: &str, _password: &str) -> Result<Auth, Self::Error> {
        info!(user, source = %self.source(), "password authentication refused");
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        })
    }

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let (decision, fingerprint) = self.key_decision(offer.public_key).await?;
        Ok(match decision {
            KeyDecision::Accept(_) => Auth::Accept,
            KeyDecision::Reject => {
                debug!(key = fingerprint, "offered key is not registered");
                Auth::reject()
            }
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let (decision, fingerprint) = self.key_decision(key.public_key).await?;
        let KeyDecision::Accept(operator) = decision else {
            info!(user, key = fingerprint, source = %self.source(), "login refused: unregistered key");
            return Ok(Auth::reject());
        };
        let agent_exists = self.gw.store.agent_exists(user).await?;
        self.route = auth::route_for(user, agent_exists);
        info!(user, operator = operator.name, key = fingerprint, route = ?self.route, "login");
        self.caller = Some(Caller {
            operator,
            key_fingerprint: fingerprint,
            source: self.source(),
        });
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels
            .insert(channel.id(), PendingChannel { channel, pty: None });
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        info!(
            target_host = host_to_connect,
            port = port_to_connect,
            "port forwarding refused (not available yet)"
        );
        reply
            .reject(ChannelOpenFailure::Other {
                code: 1,
                reason: "agentgate: port forwarding into agents is not available in this version"
                    .into(),
            })
            .await;
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
                pending.pty = Some(PtyRequest {
                    term: term.to_owned(),
                    size: term_size(col_width, row_height),
                });
                session.channel_success(channel)?;
            }
            None => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        _channel: ChannelId,
        variable_name: &str,
        _variable_value: &str,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // OpenSSH sends `env` without asking for a reply; environment requests take effect
        // on the agent route's exec sessions, which come in a later version.
        debug!(variable = variable_name, "env request ignored");
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some((pending, caller)) = self.take_channel(channel, session)? else {
            return Ok(());
        };
        match self.route.clone() {
            Route::Agent(agent) if pending.pty.is_some() => self.spawn_attach(pending, caller, agent),
            Route::Agent(agent) => self.spawn_refusal(
                pending,
                format!(
                    "error: a shell without a terminal inside agent '{agent}' is not available in this version\n\
                     hint: attach with a terminal: ssh -t {agent}@<gateway>\n"
                ),
            ),
            Route::Control => self.spawn_control(pending, caller, String::new()),
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some((pending, caller)) = self.take_channel(channel, session)? else {
            return Ok(());
        };
        let line = String::from_utf8_lossy(data).into_owned();
        match self.route.clone() {
            Route::Agent(agent) => self.spawn_refusal(
                pending,
                format!(
                    "error: running commands inside agent '{agent}' is not available in this version\n\
                     hint: attach with: ssh -t {agent}@<gateway>, or type into it with: ssh <gateway> send {agent} TEXT\n"
                ),
            ),
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
        let Some((pending, _caller)) = self.take_channel(channel, session)? else {
            return Ok(());
        };
        let message = match &self.route {
            Route::Agent(agent) => format!(
                "error: the '{name}' subsystem inside agent '{agent}' (sftp, scp) is not available in this version\n"
            ),
            Route::Control => format!(
                "error: the gateway itself has no '{name}' subsystem; connect as an agent (NAME@gateway)\n"
            ),
        };
        warn!(subsystem = name, "subsystem refused");
        self.spawn_refusal(pending, message);
        Ok(())
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
