//! Listeners opened on a host for a remote forward (`ssh -R`): a TCP port on the host's
//! loopback or a unix socket, whose connections arrive as streams for the caller to carry to
//! the client. On `local` the gateway listens itself; on a remote host the host's sshd does,
//! on a connection of its own (`remote::RemoteHost::listen`).
//!
//! **Invariant**: a listener lives exactly as long as its [`HostListener`]: dropping it stops
//! the accept loop (and for a remote host closes the connection whose sshd listens), so a
//! forward ends with the operator's connection and nothing listens after it.

use std::path::PathBuf;

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::Duplex;

/// Connections accepted and not yet taken by the forward's task, at most: more wait in the
/// listener's own backlog (the kernel's, or the host sshd's).
pub const ACCEPTED_QUEUE: usize = 16;

/// Connections one listener's forward carries at once, at most: each is a channel to the
/// client and a task, and whoever connects on the host (an agent, perhaps turned hostile)
/// chooses how many; past it, the next waits in the queue above until one ends.
pub const MAX_CARRIED: usize = 64;

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
    incoming: mpsc::Receiver<Accepted>,
    carrying: Arc<Semaphore>,
    _close: DropGuard,
}

/// A connection taken from a listener, counted among those it carries until this is dropped.
pub struct Carried {
    pub accepted: Accepted,
    _slot: OwnedSemaphorePermit,
}

impl HostListener {
    /// A listener whose accept loop (or remote connection) ends when `close` is cancelled.
    pub fn new(port: u16, incoming: mpsc::Receiver<Accepted>, close: CancellationToken) -> Self {
        HostListener {
            port,
            incoming,
            carrying: Arc::new(Semaphore::new(MAX_CARRIED)),
            _close: close.drop_guard(),
        }
    }

    /// The next connection, once fewer than [`MAX_CARRIED`] taken before are still carried
    /// (their [`Carried`] alive); none once the listener has stopped. Cancel-safe.
    pub async fn accept(&mut self) -> Option<Carried> {
        let slot = self.carrying.clone().acquire_owned().await.ok()?;
        let accepted = self.incoming.recv().await?;
        Some(Carried {
            accepted,
            _slot: slot,
        })
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
            // Both loopbacks, as sshd binds `localhost`: a client that resolves `localhost`
            // to ::1 first and does not fall back (as some do) finds the forward too. The
            // port is the IPv4 one's; ::1 on the same port is a bonus where it is free.
            let v4 = tokio::net::TcpListener::bind(("127.0.0.1", *port)).await?;
            let bound = v4.local_addr()?.port();
            let v6 = match tokio::net::TcpListener::bind(("::1", bound)).await {
                Ok(v6) => Some(v6),
                Err(e) => {
                    debug!(port = bound, error = %e, "no ::1 listener beside 127.0.0.1 for a remote forward");
                    None
                }
            };
            tasks.spawn(async move {
                let accept_v6 = async |v6: &Option<tokio::net::TcpListener>| match v6 {
                    Some(v6) => v6.accept().await,
                    None => std::future::pending().await,
                };
                loop {
                    let accepted = tokio::select! {
                        () = stop.cancelled() => break,
                        accepted = v4.accept() => accepted,
                        accepted = accept_v6(&v6) => accepted,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Waits (bounded) until `check` holds.
    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..100 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{what} did not happen within 2 s");
    }

    #[tokio::test]
    async fn a_tcp_listener_on_port_0_reports_its_port_and_closes_when_dropped() {
        let tasks = TaskTracker::new();
        let mut listener = listen_here(&ListenOn::Tcp { port: 0 }, &tasks)
            .await
            .expect("listen");
        assert_ne!(listener.port, 0);
        let mut client = tokio::net::TcpStream::connect(("127.0.0.1", listener.port))
            .await
            .expect("connect");
        let mut accepted = listener.accept().await.expect("a connection").accepted;
        assert_eq!(accepted.originator.0, "127.0.0.1");
        client.write_all(b"ping").await.expect("write");
        let mut got = [0; 4];
        accepted.stream.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"ping");

        // ::1 on the same port, where the machine has it.
        if std::net::TcpListener::bind(("::1", 0)).is_ok() {
            let mut client6 = tokio::net::TcpStream::connect(("::1", listener.port))
                .await
                .expect("connect over ::1");
            let mut accepted = listener
                .accept()
                .await
                .expect("a connection over ::1")
                .accepted;
            assert_eq!(accepted.originator.0, "::1");
            client6.write_all(b"pong").await.expect("write");
            accepted.stream.read_exact(&mut got).await.expect("read");
            assert_eq!(&got, b"pong");
        }

        let port = listener.port;
        drop(listener);
        tasks.close();
        tokio::time::timeout(Duration::from_secs(2), tasks.wait())
            .await
            .expect("the accept loop ends once its listener is dropped");
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err(),
            "something still listens on {port}"
        );
    }

    #[tokio::test]
    async fn a_listener_carries_a_bounded_number_of_connections_at_once() {
        let tasks = TaskTracker::new();
        let mut listener = listen_here(&ListenOn::Tcp { port: 0 }, &tasks)
            .await
            .expect("listen");
        let mut clients = Vec::new();
        for _ in 0..=MAX_CARRIED {
            clients.push(
                tokio::net::TcpStream::connect(("127.0.0.1", listener.port))
                    .await
                    .expect("connect"),
            );
        }
        let mut carried = Vec::new();
        for _ in 0..MAX_CARRIED {
            carried.push(listener.accept().await.expect("a connection"));
        }
        // The one more is connected, but waits until a carried one ends.
        let waiting = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(waiting.is_err(), "more than {MAX_CARRIED} carried at once");
        carried.pop();
        let next = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
        assert!(
            matches!(next, Ok(Some(_))),
            "the next one is not taken once one ends"
        );
    }

    #[tokio::test]
    async fn a_unix_listener_makes_its_socket_and_removes_it_when_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("fwd.sock");
        let on = ListenOn::Unix(path.to_str().expect("utf-8").to_owned());
        let tasks = TaskTracker::new();
        let mut listener = listen_here(&on, &tasks).await.expect("listen");
        assert_eq!(listener.port, 0);
        let _client = tokio::net::UnixStream::connect(&path)
            .await
            .expect("connect");
        assert!(listener.accept().await.is_some());
        // A second listener on the same path is refused while the first lives.
        assert!(listen_here(&on, &tasks).await.is_err());
        drop(listener);
        eventually("the socket's removal", || !path.exists()).await;
    }
}
