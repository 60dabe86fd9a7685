//! Listeners opened on a host for a remote forward (`ssh -R`): a TCP port on the host's
//! loopback or a unix socket, whose connections arrive as streams for the caller to carry to
//! the client. On `local` the gateway listens itself; on a remote host the host's sshd does,
//! on a connection of its own (`remote::RemoteHost::listen`).
//!
//! **Invariant**: a listener lives exactly as long as its [`HostListener`]: dropping it stops
//! the accept loop (and for a remote host closes the connection whose sshd listens), so a
//! forward ends with the operator's connection and nothing listens after it.

use std::path::PathBuf;

use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::Duplex;

/// Connections accepted and not yet taken by the forward's task, at most: more wait in the
/// listener's own backlog (the kernel's, or the host sshd's).
pub const ACCEPTED_QUEUE: usize = 16;

/// Where a remote forward listens on the agent's host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenOn {
    /// A TCP port on the host's loopback (0: any free port, reported back).
    Tcp { port: u16 },
    /// A unix socket at this path on the host.
    Unix(String),
}

/// One connection a listener accepted, with where it came from.
pub struct Accepted {
    pub stream: Box<dyn Duplex>,
    /// The peer's address and port (for a unix socket: empty and 0).
    pub originator: (String, u32),
}

/// An open listener on a host. Dropping it closes the listener.
pub struct HostListener {
    /// The TCP port it listens on (the one allocated when 0 was asked); 0 for a unix socket.
    pub port: u16,
    pub incoming: mpsc::Receiver<Accepted>,
    _close: DropGuard,
}

impl HostListener {
    /// A listener whose accept loop (or remote connection) ends when `close` is cancelled.
    pub fn new(port: u16, incoming: mpsc::Receiver<Accepted>, close: CancellationToken) -> Self {
        HostListener {
            port,
            incoming,
            _close: close.drop_guard(),
        }
    }
}

/// Listens on this machine: the gateway's own loopback, or a unix socket it creates (and
/// removes again when the listener closes).
pub async fn listen_here(on: &ListenOn, tasks: &TaskTracker) -> std::io::Result<HostListener> {
    let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
    let close = CancellationToken::new();
    let stop = close.clone();
    let port = match on {
        ListenOn::Tcp { port } => {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", *port)).await?;
            let bound = listener.local_addr()?.port();
            tasks.spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        () = stop.cancelled() => break,
                        accepted = listener.accept() => accepted,
                    };
                    let (stream, peer) = match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            debug!(error = %e, "accept on a remote forward's port failed");
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let accepted = Accepted {
                        stream: Box::new(stream),
                        originator: (peer.ip().to_string(), u32::from(peer.port())),
                    };
                    if tx.send(accepted).await.is_err() {
                        break;
                    }
                }
            });
            bound
        }
        ListenOn::Unix(path) => {
            let listener = tokio::net::UnixListener::bind(path)?;
            let path = PathBuf::from(path);
            tasks.spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        () = stop.cancelled() => break,
                        accepted = listener.accept() => accepted,
                    };
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            debug!(error = %e, "accept on a remote forward's socket failed");
                            continue;
                        }
                    };
                    let accepted = Accepted {
                        stream: Box::new(stream),
                        originator: (String::new(), 0),
                    };
                    if tx.send(accepted).await.is_err() {
                        break;
                    }
                }
                // As sshd does: the socket it made goes with the forward.
                drop(listener);
                let _ = std::fs::remove_file(&path);
            });
            0
        }
    };
    Ok(HostListener::new(port, rx, close))
}
