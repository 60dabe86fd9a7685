//! Agent forwarding (`ssh -A NAME@gw`): the operator's SSH agent, reached from inside the
//! agent through a unix socket on the agent's host.
//!
//! A connection whose operator may forward their agent (`operator set --agent-forwarding
//! on`, see `super::session`) gets, when its first session starts, a socket of its own in
//! the agent's socket directory (`hostctl agent-socket`): the gateway listens there (on a
//! remote host, the host's sshd listens for it, as for `ssh -R`), and each connection made to
//! it becomes an `auth-agent@openssh.com` channel to the client, spliced to it. Commands get
//! that socket as `SSH_AUTH_SOCK`; the agent's own processes and its attached sessions name
//! the directory's stable link, which points at the newest live socket, so a long-lived
//! tmux session reaches whichever forwarding is live now.
//!
//! **Invariants**:
//! - A socket lives no longer than the connection that made it, nor than the operator's
//!   permission: the connection holds its [`Forwarding`], whose drop stops the listener, and
//!   turning the operator's forwarding off stops it at once (`agents::live`). Either way the
//!   link then points back at the newest socket still live (or is removed).
//! - Each agent's sockets are arranged one change at a time ([`Registry`]), so no connection
//!   removes a socket another one is still setting up.
//! - The forwarding and every use of it are in the audit trail.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hostctl::api::SocketLink;
use russh::server::Handle;
use tokio::sync::OnceCell;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info};

use super::channel::{OpenChannel, splice};
use crate::Gateway;
use crate::agents::{Caller, audit};
use crate::hosts::Host;
use crate::hosts::listen::{HostListener, ListenOn};
use crate::model::EventKind;
use crate::streams::Backlog;

/// How long the client may take to answer an agent channel.
const CLIENT_OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The live forwarded agents of each agent, by the name of their socket, oldest first.
#[derive(Default)]
pub struct Registry {
    agents: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Vec<String>>>>>,
    next: AtomicU64,
}

impl Registry {
    /// The live sockets of `agent`, held while they are arranged.
    fn of(&self, agent: &str) -> Arc<tokio::sync::Mutex<Vec<String>>> {
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        agents.entry(agent.to_owned()).or_default().clone()
    }

    /// A socket name no live one of this run has.
    fn fresh_id(&self) -> String {
        format!("{:x}", self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// Where the stable link should point once `live` are the live sockets: the newest.
fn link_for(live: &[String]) -> SocketLink {
    match live.last() {
        Some(id) => SocketLink::To(id.clone()),
        None => SocketLink::Remove,
    }
}

/// One connection's forwarded agent: made on its first session, kept until it ends.
pub struct Forwarding {
    gw: Arc<Gateway>,
    caller: Caller,
    agent: String,
    handle: Handle,
    backlog: Backlog,
    live: OnceCell<Result<Live, String>>,
}

/// A forwarding that listens on the agent's host.
struct Live {
    socket: PathBuf,
    /// Cancelled when the operator's forwarding is turned off.
    revoked: CancellationToken,
    _stop: DropGuard,
}

impl Forwarding {
    pub fn new(
        gw: Arc<Gateway>,
        caller: Caller,
        agent: String,
        handle: Handle,
        backlog: Backlog,
    ) -> Forwarding {
        Forwarding {
            gw,
            caller,
            agent,
            handle,
            backlog,
            live: OnceCell::new(),
        }
    }

    /// This connection's socket on `host` (the agent's), made the first time it is asked
    /// for; the error says why there is none (the same for every later session).
    pub async fn socket(&self, host: &Host) -> Result<&std::path::Path, &str> {
        const TURNED_OFF: &str =
            "agent forwarding was turned off for this operator: SSH_AUTH_SOCK is not set";
        let live = self
            .live
            .get_or_init(|| async {
                self.start(host).await.inspect_err(|why| {
                    info!(
                        agent = self.agent,
                        why, "agent forwarding could not be set up"
                    );
                })
            })
            .await;
        match live {
            Ok(live) if live.revoked.is_cancelled() => Err(TURNED_OFF),
            Ok(live) => Ok(&live.socket),
            Err(why) => Err(why),
        }
    }

    async fn start(&self, host: &Host) -> Result<Live, String> {
        let registry = &self.gw.forwarded_agents;
        let sockets = registry.of(&self.agent);
        let mut live = sockets.lock().await;
        let id = registry.fresh_id();
        let failed = |e: &dyn std::fmt::Display| {
            format!(
                "cannot forward the agent to agent '{}''s host ({}): {e}",
                self.agent,
                host.name()
            )
        };
        // Whatever is not live (a socket a restarted gateway left) goes, ours among them.
        let dir = host
            .agent_sockets(&self.agent, &live, SocketLink::Keep)
            .await
            .map_err(|e| failed(&e))?
            .dir;
        let socket = dir.join(&id);
        let on = ListenOn::Unix(socket.to_string_lossy().into_owned());
        let listener = host.listen(&on).await.map_err(|e| failed(&e))?;
        live.push(id.clone());
        if let Err(e) = host
            .agent_sockets(&self.agent, &live, link_for(&live))
            .await
        {
            live.pop();
            return Err(failed(&e));
        }
        drop(live);
        let stop = CancellationToken::new();
        let revoked = self.gw.live.forwarding_opened(&self.caller.operator.name);
        let serving = Serving {
            gw: self.gw.clone(),
            caller: self.caller.clone(),
            agent: self.agent.clone(),
            handle: self.handle.clone(),
            backlog: self.backlog.clone(),
            host: host.clone(),
            id,
        };
        let detail = format!("ssh -A: the operator's SSH agent at {}", socket.display());
        self.gw
            .tasks
            .spawn(serving.serve(listener, detail, stop.clone(), revoked.clone()));
        Ok(Live {
            socket,
            revoked,
            _stop: stop.drop_guard(),
        })
    }
}

/// What carries the uses of one forwarding to the client, and clears its socket after.
struct Serving {
    gw: Arc<Gateway>,
    caller: Caller,
    agent: String,
    handle: Handle,
    backlog: Backlog,
    host: Host,
    /// Its socket's name in the agent's socket directory.
    id: String,
}

impl Serving {
    /// Carries each connection to `listener` to the client until `stop` (the connection's
    /// end), `revoked` (the operator's forwarding turned off) or the gateway's shutdown, then
    /// points the link at the newest socket still live; the forwarding is one event in the
    /// audit trail, and each use another.
    async fn serve(
        self,
        mut listener: HostListener,
        detail: String,
        stop: CancellationToken,
        revoked: CancellationToken,
    ) {
        let core = self.gw.core();
        let started = audit::start_record(
            &core,
            &self.caller,
            EventKind::AgentForward,
            Some(self.agent.clone()),
            &detail,
        )
        .await;
        let mut uses = 0u64;
        loop {
            let carried = tokio::select! {
                () = stop.cancelled() => break,
                () = revoked.cancelled() => break,
                () = self.gw.shutdown.cancelled() => break,
                carried = listener.accept() => carried,
            };
            let Some(carried) = carried else {
                break;
            };
            uses += 1;
            let (gw, handle, backlog) =
                (self.gw.clone(), self.handle.clone(), self.backlog.clone());
            let (caller, agent) = (self.caller.clone(), self.agent.clone());
            self.gw.tasks.spawn(async move {
                let core = gw.core();
                let record = audit::record(
                    &core,
                    &caller,
                    EventKind::AgentForward,
                    Some(agent),
                    "a process on the agent's host used the operator's forwarded SSH agent",
                    0,
                    "",
                );
                let open = tokio::time::timeout(CLIENT_OPEN_TIMEOUT, handle.channel_open_agent());
                // Recorded while the client answers, not before: a use waits for no write.
                let ((), open) = tokio::join!(record, open);
                let channel = match open {
                    Ok(Ok(channel)) => channel,
                    Ok(Err(e)) => {
                        debug!(error = %e, "the client refused an agent channel");
                        return;
                    }
                    Err(_) => {
                        info!("the client did not answer an agent channel in time");
                        return;
                    }
                };
                let channel = OpenChannel::open(channel, &backlog, &gw.tasks);
                tokio::select! {
                    () = splice(channel, carried.accepted.stream) => {}
                    () = gw.shutdown.cancelled() => {}
                }
            });
        }
        drop(listener);
        let message = if revoked.is_cancelled() {
            format!("closed after {uses} use(s): agent forwarding was turned off for the operator")
        } else {
            format!("closed after {uses} use(s)")
        };
        // Done with: no longer one of the operator's open forwardings.
        revoked.cancel();
        audit::end_record(&core, started, 0, &message).await;
        if self.gw.shutdown.is_cancelled() {
            // The gateway is stopping: the next one's first forwarding into this agent clears
            // what is left (its sockets are all gone with this gateway's listeners).
            return;
        }
        let sockets = self.gw.forwarded_agents.of(&self.agent);
        let mut live = sockets.lock().await;
        live.retain(|other| *other != self.id);
        if let Err(e) = self
            .host
            .agent_sockets(&self.agent, &live, link_for(&live))
            .await
        {
            debug!(agent = self.agent, error = %e, "a forwarded agent's socket could not be cleared");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_follows_the_newest_live_socket() {
        assert_eq!(link_for(&[]), SocketLink::Remove);
        assert_eq!(
            link_for(&["1".into(), "2".into()]),
            SocketLink::To("2".into())
        );
    }

    #[test]
    fn socket_names_are_fresh_and_valid() {
        let registry = Registry::default();
        let a = registry.fresh_id();
        let b = registry.fresh_id();
        assert_ne!(a, b);
        for id in [a, b] {
            hostctl::api::validate_socket_id(&id).expect("a name hostctl takes");
        }
    }
}
