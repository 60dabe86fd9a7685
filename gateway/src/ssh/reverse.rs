//! Remote forwards (`ssh -R`) into an agent: which `tcpip-forward` and
//! `streamlocal-forward@openssh.com` requests a connection may make (pure: [`decide`]), and the
//! task that carries each connection made to the listener on the agent's host back to the
//! client as a `forwarded-tcpip` or `forwarded-streamlocal@openssh.com` channel.
//!
//! The listener opens on the agent's host (`hosts::listen`), always on its loopback, as
//! OpenSSH's sshd does with `GatewayPorts no`: an address the client names is reported back to
//! it unchanged but does not widen the listener. OpenSSH's SOCKS mode (`ssh -R PORT`) needs
//! nothing here: the client itself answers SOCKS on the channels it receives.
//!
//! **Invariant**: a listener lives no longer than the connection that asked for it: the
//! connection holds each forward's [`DropGuard`], so `cancel-tcpip-forward`, the end of the
//! connection and the gateway's shutdown all close it on the host.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use russh::server::Handle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info};

use super::channel::{OpenChannel, splice};
use crate::Gateway;
use crate::agents::said::CommandError;
use crate::agents::{Caller, access, audit, lifecycle};
use crate::hosts::listen::{Accepted, HostListener, ListenOn};
use crate::model::EventKind;
use crate::streams::Backlog;

/// Remote forwards one connection may hold at once; OpenSSH users rarely ask for more than a
/// few, and each holds a listener (for a remote host, a connection) on the agent's host.
pub const MAX_REMOTE_FORWARDS: usize = 8;

/// How long the client may take to answer a forwarded channel (it dials its own target first).
const CLIENT_OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// A remote forward as the client asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenRequest {
    /// `tcpip-forward`: the address and port as the protocol carries them (the port in 32
    /// bits, which may be too many; 0 asks for any free port).
    Tcp { address: String, port: u32 },
    /// `streamlocal-forward@openssh.com`: a unix socket's path on the agent's host.
    Unix(String),
}

impl fmt::Display for ListenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenRequest::Tcp { address, port } if address.contains(':') => {
                write!(f, "-R [{address}]:{port}")
            }
            ListenRequest::Tcp { address, port } => write!(f, "-R {address}:{port}"),
            ListenRequest::Unix(path) => write!(f, "-R unix:{path}"),
        }
    }
}

/// A forward as the connection knows it, to cancel it: the address the client named and the
/// port it listens on (the allocated one when 0 was asked, which is what OpenSSH's client
/// cancels), or the socket's path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ListenKey {
    Tcp { address: String, port: u16 },
    Unix(String),
}

/// What a remote forward request comes to.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Listen there on the agent's host.
    Listen(ListenOn),
    /// Refuse, for this reason (logged, and recorded in the audit trail).
    Refuse(String),
}

/// Whether a connection on the route to `agent` (None: the control route), holding `held`
/// remote forwards already, may listen where `request` asks.
pub fn decide(
    request: &ListenRequest,
    agent: Option<&str>,
    policy: access::Policy,
    held: &Forwards,
) -> Decision {
    match access::may_listen(agent, policy) {
        Ok(()) => {}
        Err(access::Denied::RemoteForwardingOff) => {
            return Decision::Refuse(
                "remote forwarding (ssh -R) is switched off on this gateway (ssh.allow_remote_forwarding)".into(),
            );
        }
        Err(_) => {
            return Decision::Refuse(
                "remote forwarding works on connections to an agent: ssh -R ... NAME@<gateway>"
                    .into(),
            );
        }
    }
    if held.len() >= MAX_REMOTE_FORWARDS {
        return Decision::Refuse(format!(
            "at most {MAX_REMOTE_FORWARDS} remote forwards may be open on one connection"
        ));
    }
    match request {
        ListenRequest::Tcp { address, port } => {
            let Ok(port) = u16::try_from(*port) else {
                return Decision::Refuse(format!("port {port} is out of range"));
            };
            if port != 0
                && held.holds(&ListenKey::Tcp {
                    address: address.clone(),
                    port,
                })
            {
                return Decision::Refuse(format!("{request} is open already on this connection"));
            }
            Decision::Listen(ListenOn::Tcp { port })
        }
        ListenRequest::Unix(path) => {
            if !path.starts_with('/') {
                return Decision::Refuse(format!(
                    "the socket path {path:?} is not absolute: give the whole path on the agent's host"
                ));
            }
            if path.contains('\0') {
                return Decision::Refuse("the socket path contains a NUL byte".into());
            }
            Decision::Listen(ListenOn::Unix(path.clone()))
        }
    }
}

/// The remote forwards a connection holds: dropping one (or all, with the connection) closes
/// its listener.
#[derive(Default)]
pub struct Forwards(HashMap<ListenKey, DropGuard>);

impl Forwards {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn holds(&self, key: &ListenKey) -> bool {
        self.0.contains_key(key)
    }

    /// Keeps a forward that now listens; `stop` ends it when dropped.
    pub fn insert(&mut self, key: ListenKey, stop: DropGuard) {
        self.0.insert(key, stop);
    }

    /// `cancel-tcpip-forward` or `cancel-streamlocal-forward@openssh.com`: closes the
    /// forward, if this connection holds it.
    pub fn cancel(&mut self, key: &ListenKey) -> bool {
        self.0.remove(key).is_some()
    }
}

/// Opens the listener on `agent`'s host, if `caller` may use the agent; the error is the
/// reason, as the log and the audit trail give it.
pub async fn open(
    gw: &Gateway,
    caller: &Caller,
    agent: &str,
    on: &ListenOn,
) -> Result<HostListener, String> {
    let host = match lifecycle::usable(&gw.core(), &caller.operator, agent).await {
        Ok((_, host)) => host,
        Err(e) => return Err(CommandError::from(e).message),
    };
    host.listen(on).await.map_err(|e| {
        format!(
            "cannot listen on agent '{agent}''s host ({}): {e}",
            host.name()
        )
    })
}

/// What the client's channels for one forward are opened with: the address and port it
/// asked for (the allocated port when it asked for 0), or the socket's path, which its
/// client matches against the forwards it asked for.
#[derive(Clone, Debug)]
pub enum ChannelTarget {
    Tcp { address: String, port: u16 },
    Unix(String),
}

/// Carries each connection to `listener` to the client, until `stop` (the connection's
/// guard, dropped by a cancel or the connection's end) or the gateway's shutdown. The
/// forward is one event in the audit trail, from its start, ended with how many connections
/// it carried.
#[expect(
    clippy::too_many_arguments,
    reason = "one forward's whole context, passed once"
)]
pub async fn serve(
    gw: Arc<Gateway>,
    caller: Caller,
    agent: String,
    request: ListenRequest,
    target: ChannelTarget,
    mut listener: HostListener,
    handle: Handle,
    backlog: Backlog,
    stop: CancellationToken,
) {
    let detail = match &target {
        ChannelTarget::Tcp { port, .. } => format!("{request} (listening on 127.0.0.1:{port})"),
        ChannelTarget::Unix(_) => request.to_string(),
    };
    let started = audit::start_record(
        &gw.core(),
        &caller,
        EventKind::Forward,
        Some(agent),
        &detail,
    )
    .await;
    let mut carried = 0u64;
    loop {
        let taken = tokio::select! {
            () = stop.cancelled() => break,
            () = gw.shutdown.cancelled() => break,
            taken = listener.accept() => taken,
        };
        let Some(taken) = taken else {
            break;
        };
        carried += 1;
        let (handle, target, backlog, gw2) =
            (handle.clone(), target.clone(), backlog.clone(), gw.clone());
        gw.tasks.spawn(async move {
            // `taken` (its place among the listener's connections) lives as long as this.
            carry(&gw2, taken.accepted, handle, target, &backlog).await;
        });
    }
    drop(listener);
    let message = format!("closed after {carried} connection(s)");
    audit::end_record(&gw.core(), started, 0, &message).await;
}

/// One connection to the listener: a channel to the client, then bytes both ways.
async fn carry(
    gw: &Gateway,
    accepted: Accepted,
    handle: Handle,
    target: ChannelTarget,
    backlog: &Backlog,
) {
    let Accepted { stream, originator } = accepted;
    let open = async {
        match &target {
            ChannelTarget::Tcp { address, port } => {
                handle
                    .channel_open_forwarded_tcpip(
                        address.clone(),
                        u32::from(*port),
                        originator.0.clone(),
                        originator.1,
                    )
                    .await
            }
            ChannelTarget::Unix(path) => {
                handle
                    .channel_open_forwarded_streamlocal(path.clone())
                    .await
            }
        }
    };
    let channel = match tokio::time::timeout(CLIENT_OPEN_TIMEOUT, open).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(e)) => {
            debug!(error = %e, ?target, "the client refused a forwarded connection");
            return;
        }
        Err(_) => {
            info!(
                ?target,
                "the client did not answer a forwarded connection in time"
            );
            return;
        }
    };
    let channel = OpenChannel::open(channel, backlog, &gw.tasks);
    tokio::select! {
        () = splice(channel, stream) => {}
        () = gw.shutdown.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: access::Policy = access::Policy {
        operators_on_local: false,
        allow_forwarding: true,
        allow_remote_forwarding: true,
    };

    fn tcp(address: &str, port: u32) -> ListenRequest {
        ListenRequest::Tcp {
            address: address.into(),
            port,
        }
    }

    fn refused(decision: Decision) -> String {
        match decision {
            Decision::Refuse(reason) => reason,
            Decision::Listen(on) => panic!("listens on {on:?}"),
        }
    }

    #[test]
    fn a_remote_forward_listens_on_the_agents_loopback_whatever_address_is_named() {
        let none = Forwards::default();
        for address in ["", "localhost", "127.0.0.1", "0.0.0.0", "*", "::1"] {
            assert_eq!(
                decide(&tcp(address, 8080), Some("w"), ON, &none),
                Decision::Listen(ListenOn::Tcp { port: 8080 })
            );
        }
        assert_eq!(
            decide(&tcp("localhost", 0), Some("w"), ON, &none),
            Decision::Listen(ListenOn::Tcp { port: 0 })
        );
        assert_eq!(
            decide(&ListenRequest::Unix("/tmp/s".into()), Some("w"), ON, &none),
            Decision::Listen(ListenOn::Unix("/tmp/s".into()))
        );
    }

    #[test]
    fn a_remote_forward_is_refused_off_the_agent_route_or_switched_off_saying_why() {
        let none = Forwards::default();
        let reason = refused(decide(&tcp("", 80), None, ON, &none));
        assert!(reason.contains("NAME@<gateway>"), "{reason}");
        let off = access::Policy {
            allow_remote_forwarding: false,
            ..ON
        };
        let reason = refused(decide(&tcp("", 80), Some("w"), off, &none));
        assert!(reason.contains("allow_remote_forwarding"), "{reason}");
    }

    #[test]
    fn bad_ports_and_paths_are_refused_saying_what_is_wrong() {
        let none = Forwards::default();
        let reason = refused(decide(&tcp("", 70000), Some("w"), ON, &none));
        assert_eq!(reason, "port 70000 is out of range");
        let relative = ListenRequest::Unix("sock".into());
        let reason = refused(decide(&relative, Some("w"), ON, &none));
        assert!(reason.contains("not absolute"), "{reason}");
    }

    #[test]
    fn a_connection_holds_a_bounded_number_of_remote_forwards_and_cancels_them() {
        let mut held = Forwards::default();
        let tokens: Vec<CancellationToken> = (0..MAX_REMOTE_FORWARDS)
            .map(|_| CancellationToken::new())
            .collect();
        for (i, token) in tokens.iter().enumerate() {
            let port = 9000 + u16::try_from(i).unwrap_or(0);
            assert!(matches!(
                decide(&tcp("", u32::from(port)), Some("w"), ON, &held),
                Decision::Listen(_)
            ));
            held.insert(
                ListenKey::Tcp {
                    address: String::new(),
                    port,
                },
                token.clone().drop_guard(),
            );
        }
        let reason = refused(decide(&tcp("", 9999), Some("w"), ON, &held));
        assert!(
            reason.contains(&format!("at most {MAX_REMOTE_FORWARDS}")),
            "{reason}"
        );
        // The same port again is refused while it is held.
        assert!(held.cancel(&ListenKey::Tcp {
            address: String::new(),
            port: 9001
        }));
        assert!(
            tokens[1].is_cancelled(),
            "a cancelled forward's listener is told to close"
        );
        assert!(!tokens[0].is_cancelled());
        let reason = refused(decide(&tcp("", 9000), Some("w"), ON, &held));
        assert!(reason.contains("open already"), "{reason}");
        assert!(!held.cancel(&ListenKey::Unix("/nowhere".into())));
        // The connection's end drops every forward: each listener is told to close.
        drop(held);
        assert!(tokens.iter().all(CancellationToken::is_cancelled));
    }
}
