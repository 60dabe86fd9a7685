//! The agent route: everything on a connection to `NAME@gw` happens inside the agent's
//! environment, on the agent's host, through that host's transport.
//!
//! - a terminal + shell attaches to the agent's tmux session;
//! - exec runs the command with the user's shell in the workspace, with the agent's
//!   environment (a terminal only when the client asks for one);
//! - a shell without a terminal is a login shell in the workspace reading stdin;
//! - the `sftp` subsystem is OpenSSH's `sftp-server` in the workspace;
//! - a mosh client's start of `mosh-server` without a command starts it on the agent's host
//!   attached to the agent (hostctl's `mosh`), only for an agent on the gateway's own host,
//!   where mosh's UDP arrives;
//! - `direct-tcpip` and `direct-streamlocal` are dialled from the agent's host, so
//!   `localhost` means that host.
//!
//! Each of them is recorded in the audit trail.

use std::fmt;
use std::sync::Arc;

use russh::ChannelOpenFailure;
use russh::server::{ChannelOpenHandle, Handle};
use tracing::info;

use super::channel::{OpenChannel, PendingChannel, command_io, finish, finish_process, splice};
use super::forward_agent::Forwarding;
use crate::Gateway;
use crate::agents::said::{CommandError, exit};
use crate::agents::{Caller, Core, audit, lifecycle};
use crate::hosts::mosh::MoshStart;
use crate::hosts::{AgentSession, LOCAL_HOST, ProcessExit};
use crate::model::EventKind;

/// Where a forwarded channel goes.
#[derive(Clone, Debug)]
pub enum Forward {
    Tcp(String, u16),
    Unix(String),
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Forward::Tcp(host, port) if host.contains(':') => write!(f, "[{host}]:{port}"),
            Forward::Tcp(host, port) => write!(f, "{host}:{port}"),
            Forward::Unix(path) => write!(f, "unix:{path}"),
        }
    }
}

/// How an agent-route session is named in the audit trail; `term` is the terminal's type when
/// the client asked for one.
fn audit_detail(session: &AgentSession, term: Option<&str>) -> (EventKind, String) {
    match session {
        AgentSession::Exec(line) => (EventKind::Exec, line.clone()),
        AgentSession::Shell => match term {
            None => (EventKind::Shell, "login shell without a terminal".into()),
            // `session::shell` gives a terminal tmux cannot drive a shell instead of an attach.
            Some(term) => (
                EventKind::Shell,
                format!(
                    "login shell on a terminal tmux cannot drive (TERM={}), instead of an attach",
                    if term.is_empty() { "unset" } else { term }
                ),
            ),
        },
        AgentSession::Sftp => (EventKind::Sftp, "sftp-server".into()),
        AgentSession::Attach => (EventKind::Attach, "attach".into()),
        // An attach through mosh, with what mosh-server was asked for.
        AgentSession::Mosh(MoshStart::Attach { server_args }) => (
            EventKind::Attach,
            format!(
                "attach through mosh-server new {}",
                shlex::try_join(server_args.iter().map(String::as_str))
                    .unwrap_or_else(|_| server_args.join(" "))
            )
            .trim_end()
            .to_owned(),
        ),
        AgentSession::Mosh(MoshStart::Command { line, .. }) => (EventKind::Exec, line.clone()),
    }
}

/// Why a mosh start for an agent on `host` cannot work: mosh's UDP goes to the address the
/// client logged in to, the gateway's, and the gateway does not relay it, so only an agent on
/// the gateway's own machine can be reached (`None`).
pub fn mosh_unreachable(agent: &str, host: &str) -> Option<CommandError> {
    if host == LOCAL_HOST {
        return None;
    }
    Some(
        CommandError::failed(format!(
            "mosh cannot reach agent '{agent}': it runs on host '{host}', and mosh's UDP goes to \
             the gateway's address, which does not relay UDP"
        ))
        .hint(format!(
            "mosh works with agents on the gateway's own host (local); for '{agent}' use ssh: \
             ssh -t {agent}@<gateway>"
        )),
    )
}

/// How an attach that ended with `status` (`agents::attach::run`) is recorded: `None` when the
/// client went away first (it closed its channel without detaching), as any other session
/// whose client left, else the status.
pub fn attach_ended(status: u32) -> Option<ProcessExit> {
    if status == exit::CLIENT_GONE {
        return None;
    }
    Some(ProcessExit::Code(i32::try_from(status).unwrap_or(1)))
}

/// Runs one session inside an agent to its end and closes the channel.
pub async fn run_session(
    gw: Arc<Gateway>,
    caller: Caller,
    handle: Handle,
    agent: String,
    session: AgentSession,
    pending: PendingChannel,
    forwarding: Option<Arc<Forwarding>>,
) {
    let mut env = pending.env.into_vars();
    let (mut io, writer) = command_io(pending.channel, pending.pty);
    if let Some(notice) = &pending.notice {
        io.write_err(notice).await;
    }
    let (kind, detail) = audit_detail(&session, io.terminal.as_ref().map(|t| t.term.as_str()));
    // In the trail from its start: a session the gateway dies during is there too.
    let core = gw.core();
    let started = audit::start_record(&core, &caller, kind, Some(agent.clone()), &detail).await;
    let result: Result<Option<ProcessExit>, CommandError> = async {
        if session == AgentSession::Attach {
            // The attached session names the stable link, which this connection's socket
            // becomes the newest behind.
            if let Some(forwarding) = &forwarding
                && let Ok((_, host)) = lifecycle::usable(&core, &caller.operator, &agent).await
                && let Err(why) = forwarding.socket(&host).await
            {
                io.write_err(&format!("agentgate: {why}\n")).await;
            }
            let status =
                crate::agents::attach::run(&core, &gw.live, &caller, &agent, &mut io).await?;
            return Ok(attach_ended(status));
        }
        let (record, host) = lifecycle::usable(&core, &caller.operator, &agent).await?;
        crate::agents::lifecycle::ready(&record)?;
        if let AgentSession::Mosh(_) = &session
            && let Some(e) = mosh_unreachable(&agent, host.name())
        {
            return Err(e);
        }
        if let Some(forwarding) = &forwarding {
            match forwarding.socket(&host).await {
                Ok(socket) => env.push((
                    "SSH_AUTH_SOCK".to_owned(),
                    socket.to_string_lossy().into_owned(),
                )),
                Err(why) => io.write_err(&format!("agentgate: {why}\n")).await,
            }
        }
        let terminal = io.terminal.as_ref().map(|t| {
            // A shell's terminal with no type is dumb (a host would otherwise pick a capable
            // default, and the client could not draw what that shell's programs send).
            let term = if t.term.is_empty() && session == AgentSession::Shell {
                "dumb"
            } else {
                &t.term
            };
            (term.to_owned(), *t.size.borrow())
        });
        let exit = match terminal {
            Some((term, size)) => {
                let process = host
                    .open_terminal(&agent, &session, &env, &term, size)
                    .await?;
                crate::bridge::terminal(&mut io, process, |_| {}).await
            }
            None => {
                let process = host.open_piped(&agent, &session, &env).await?;
                crate::bridge::piped(&mut io, process).await
            }
        };
        if exit == Some(ProcessExit::Lost) {
            return Err(CommandError::host_lost(host.name(), &agent));
        }
        Ok(exit)
    }
    .await;
    match result {
        Ok(exit) => {
            let status = exit.map_or(255, ProcessExit::shell_status);
            let message = if exit.is_none() {
                "the client went away"
            } else {
                ""
            };
            audit::end_record(&core, started, status, message).await;
            finish_process(io, writer, Some(&handle), exit).await;
        }
        Err(e) => {
            io.write_err(&e.render()).await;
            audit::end_record(&core, started, e.status, &e.message).await;
            finish(io, writer, e.status).await;
        }
    }
}

/// Dials `target` from the agent's host; on success accepts the channel and splices bytes
/// both ways (half-close included) until both directions end. A failed dial is a
/// channel-open failure with the reason, never a hang.
pub async fn run_forward(
    gw: Arc<Gateway>,
    caller: Caller,
    agent: String,
    target: Forward,
    channel: OpenChannel,
    reply: ChannelOpenHandle,
) {
    let core = gw.core();
    let record = ForwardRecord {
        core,
        caller: &caller,
        agent: &agent,
        detail: target.to_string(),
    };
    let (record_of_agent, host) = match lifecycle::usable(&core, &caller.operator, &agent).await {
        Ok(found) => found,
        Err(e) => {
            let e = CommandError::from(e);
            record.refuse(reply, e.status, e.message).await;
            return;
        }
    };
    // An agent with no network of its own is reachable on its loopback only from inside.
    let cut_off = record_of_agent.spec.network == Some(hostctl::api::Network::None)
        && record_of_agent.spec.sandbox == Some(hostctl::api::Sandbox::Bwrap);
    let dialled = match &target {
        Forward::Tcp(h, port) if cut_off && is_loopback(h) => host.dial_agent(&agent, *port).await,
        Forward::Tcp(h, port) => host.connect_tcp(h, *port).await,
        Forward::Unix(path) => host.connect_unix(path).await,
    };
    let upstream = match dialled {
        Ok(stream) => stream,
        Err(e) => {
            let reason = format!("agentgate: cannot connect to {target} from agent '{agent}': {e}");
            info!(%reason, "forward refused");
            record.refuse(reply, 1, reason).await;
            return;
        }
    };
    reply.accept().await;
    record.answered(0, "").await;
    tokio::select! {
        () = splice(channel, upstream) => {}
        () = gw.shutdown.cancelled() => {}
    }
}

/// Whether `host` names the dialling machine's own loopback.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A forward's entry in the audit trail: opened (status 0), or refused and why.
struct ForwardRecord<'a> {
    core: Core<'a>,
    caller: &'a Caller,
    agent: &'a str,
    detail: String,
}

impl ForwardRecord<'_> {
    async fn answered(&self, status: u32, message: &str) {
        let agent = Some(self.agent.to_owned());
        audit::record(
            &self.core,
            self.caller,
            EventKind::Forward,
            agent,
            &self.detail,
            status,
            message,
        )
        .await;
    }

    /// Refuses the channel with `reason` (what the client's ssh prints), and records it.
    async fn refuse(&self, reply: ChannelOpenHandle, status: u32, reason: String) {
        reply
            .reject(ChannelOpenFailure::Other {
                code: 2,
                reason: reason.clone(),
            })
            .await;
        self.answered(status, &reason).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mosh_reaches_only_agents_on_the_gateways_own_host() {
        assert!(mosh_unreachable("a", LOCAL_HOST).is_none());
        let refused = mosh_unreachable("far", "h1").expect("refused");
        assert_eq!(refused.status, exit::FAILED);
        assert_eq!(
            refused.render(),
            "error: mosh cannot reach agent 'far': it runs on host 'h1', and mosh's UDP goes to \
             the gateway's address, which does not relay UDP\n\
             hint: mosh works with agents on the gateway's own host (local); for 'far' use ssh: \
             ssh -t far@<gateway>\n"
        );
        let (kind, detail) = audit_detail(
            &AgentSession::Mosh(MoshStart::Attach {
                server_args: vec!["-s".into(), "-l".into(), "LANG=C.UTF-8".into()],
            }),
            Some("xterm"),
        );
        assert_eq!(
            (kind, detail.as_str()),
            (
                EventKind::Attach,
                "attach through mosh-server new -s -l 'LANG=C.UTF-8'"
            )
        );
    }

    #[test]
    fn an_attach_whose_client_closed_its_channel_is_the_client_leaving() {
        assert_eq!(attach_ended(exit::CLIENT_GONE), None);
        assert_eq!(attach_ended(0), Some(ProcessExit::Code(0)));
        assert_eq!(attach_ended(1), Some(ProcessExit::Code(1)));
        assert_eq!(attach_ended(130), Some(ProcessExit::Code(130)));
    }
}
