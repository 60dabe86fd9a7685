//! The SSH server: the accept loop, russh's configuration, and the host key.
//!
//! The gateway owns its accept loop (a connection limit, `TCP_NODELAY`, one tracing span and
//! one tracked task per connection) and hands each socket to `russh::server::run_stream` with a
//! [`handler::ConnectionHandler`].

pub mod agent;
pub mod channel;
pub mod forward_agent;
pub mod guard;
pub mod handler;
pub mod killable;
pub mod limits;
pub mod login;
mod quickack;
pub mod quiet;
pub mod reverse;
pub mod session;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};
use russh::{MethodKind, MethodSet, Preferred};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{Instrument, debug, info, warn};

use crate::Gateway;
use crate::config::SshConfig;
use crate::model::{EventKind, EventResult};

/// Why the gateway's host or client key could not be loaded or made. Each says what it was
/// doing; the cause is its source (printed after it by `main`).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot load the {what} {}", path.display())]
    Load {
        what: String,
        path: PathBuf,
        #[source]
        source: Box<russh::keys::Error>,
    },
    #[error("cannot generate a {what}")]
    Generate {
        what: String,
        #[source]
        source: Box<russh::keys::ssh_key::Error>,
    },
    #[error("cannot write the {what} {}", path.display())]
    Write {
        what: String,
        path: PathBuf,
        #[source]
        source: Box<russh::keys::ssh_key::Error>,
    },
    /// The public half, beside the private key at `path`.
    #[error("cannot write {}.pub", path.display())]
    WritePublic {
        path: PathBuf,
        #[source]
        source: Box<russh::keys::ssh_key::Error>,
    },
    #[error(transparent)]
    Mode(#[from] crate::ModeError),
}

/// Loads a private key, or creates an Ed25519 one (mode 0600, public half beside it).
pub fn load_or_create_key(path: &Path, what: &str) -> Result<PrivateKey, KeyError> {
    if path.exists() {
        return russh::keys::load_secret_key(path, None).map_err(|source| KeyError::Load {
            what: what.to_owned(),
            path: path.to_owned(),
            source: Box::new(source),
        });
    }
    let mut key = PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519)
        .map_err(|source| KeyError::Generate {
            what: what.to_owned(),
            source: Box::new(source),
        })?;
    key.set_comment(format!("agentgate {what}"));
    key.write_openssh_file(path, LineEnding::LF)
        .map_err(|source| KeyError::Write {
            what: what.to_owned(),
            path: path.to_owned(),
            source: Box::new(source),
        })?;
    crate::set_mode(path, 0o600)?;
    key.public_key()
        .write_openssh_file(path.with_extension("pub"))
        .map_err(|source| KeyError::WritePublic {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
    info!(path = %path.display(), "created a new Ed25519 {what}");
    Ok(key)
}

/// russh's server configuration, every limit set on purpose.
pub fn server_config(ssh: &SshConfig, host_key: PrivateKey) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard(Cow::Owned(format!(
            "SSH-2.0-agentgate_{}",
            crate::VERSION
        ))),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: ssh.auth_rejection_delay,
        // OpenSSH clients probe with `none` first: that probe must not cost a delay.
        auth_rejection_time_initial: Some(std::time::Duration::ZERO),
        keys: vec![host_key],
        // Every refusal counts, offers of a key included (as OpenSSH's MaxAuthTries), plus
        // the `none` probe every OpenSSH client starts with.
        max_auth_attempts: ssh.max_auth_attempts + 1,
        inactivity_timeout: Some(ssh.inactivity_timeout),
        keepalive_interval: Some(ssh.keepalive_interval),
        keepalive_max: ssh.keepalive_max,
        window_size: ssh.window_size,
        maximum_packet_size: 32_768,
        event_buffer_size: 100,
        nodelay: true,
        preferred: preferred(),
        ..Default::default()
    }
}

/// The algorithms the gateway offers, best first: what `ssh-audit` passes without a failure.
///
/// - Key exchange: the post-quantum hybrid `mlkem768x25519-sha256` (OpenSSH 9.9 and later),
///   then Curve25519 for older clients (OpenSSH 6.5 and later; Debian 12's 9.2 has no ML-KEM),
///   and the strict key exchange marker (Terrapin). No finite-field Diffie-Hellman: no OpenSSH
///   client since 6.5 needs it, and a 4096-bit group exchange lets anyone make the gateway
///   spend CPU before they authenticate.
/// - Ciphers: AES-GCM first (fastest with AES-NI), then ChaCha20-Poly1305. Only AEAD ciphers,
///   so no MAC is ever used; the list of MACs holds only encrypt-then-MAC ones.
/// - No compression. Host keys: the gateway's Ed25519 key is its only one.
fn preferred() -> Preferred {
    use russh::{cipher, compression, kex, mac};
    Preferred {
        kex: Cow::Borrowed(&[
            kex::MLKEM768X25519_SHA256,
            kex::CURVE25519,
            kex::CURVE25519_PRE_RFC_8731,
            kex::EXTENSION_SUPPORT_AS_SERVER,
            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
        ]),
        cipher: Cow::Borrowed(&[
            cipher::AES_128_GCM,
            cipher::AES_256_GCM,
            cipher::CHACHA20_POLY1305,
        ]),
        mac: Cow::Borrowed(&[mac::HMAC_SHA256_ETM, mac::HMAC_SHA512_ETM]),
        compression: Cow::Borrowed(&[compression::NONE]),
        ..Preferred::default()
    }
}

/// Accepts connections until the gateway shuts down.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, config: Arc<russh::server::Config>) {
    let limit = Arc::new(Semaphore::new(gw.config.ssh.max_connections.max(1)));
    let next_id = AtomicU64::new(1);
    let guard = guard::Guard::new(&gw.config.ssh);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = gw.shutdown_accepting.cancelled() => break,
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            warn!(%peer, "connection refused: too many connections");
            drop(stream);
            continue;
        };
        let conn_id = next_id.fetch_add(1, Ordering::Relaxed);
        let ticket = match guard.admit(conn_id, peer.ip()) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                debug!(%peer, ?refusal, "connection refused before login");
                drop(stream);
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let span = tracing::info_span!("conn", conn_id, %peer);
        let revocation = Arc::new(crate::agents::live::Revocation::default());
        let handler = handler::ConnectionHandler::new(
            gw.clone(),
            Some(peer),
            stream.local_addr().ok(),
            ticket.clone(),
            revocation.clone(),
        );
        let config = config.clone();
        let shutdown = gw.shutdown.clone();
        let gw = gw.clone();
        gw.tasks.clone().spawn(
            async move {
                let _permit = permit;
                let closed =
                    run_connection(config, stream, handler, &ticket, &shutdown, &revocation).await;
                // The ending counts before the audit write: the source's next connection may
                // come as soon as the client has its answer.
                let block = ticket.end(closed);
                refused_login(&gw, &peer, &ticket.refused()).await;
                if let Some((source, blocked)) = block {
                    penalised(&gw, source, blocked).await;
                }
            }
            .instrument(span),
        );
    }
    info!("stopped accepting connections");
}

/// Runs one connection to its end; returns why the guard closed it, if it did (before login:
/// its grace time ran out, or it was evicted to make room).
async fn run_connection(
    config: Arc<russh::server::Config>,
    stream: tokio::net::TcpStream,
    handler: handler::ConnectionHandler,
    ticket: &guard::Ticket,
    shutdown: &tokio_util::sync::CancellationToken,
    revocation: &crate::agents::live::Revocation,
) -> Option<guard::Closed> {
    let kill = tokio_util::sync::CancellationToken::new();
    let stream = killable::Killable::new(quickack::QuickAck::new(stream), kill.clone());
    let run = async {
        match russh::server::run_stream(config, stream, handler).await {
            Ok(session) => {
                let handle = session.handle();
                tokio::select! {
                    result = session => {
                        if let Err(e) = result {
                            debug!(error = %e, "connection ended with an error");
                        }
                    }
                    () = shutdown.cancelled() => {
                        let _ = handle
                            .disconnect(russh::Disconnect::ByApplication, "the gateway is shutting down".into(), "en".into())
                            .await;
                    }
                    why = revocation.revoked() => {
                        // A moment for sessions that clean up (the live view puts the client's
                        // terminal back) before the connection is cut.
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        let _ = handle
                            .disconnect(russh::Disconnect::ByApplication, format!("access revoked: {why}"), "en".into())
                            .await;
                    }
                }
            }
            Err(e) => debug!(error = %e, "handshake failed"),
        }
    };
    tokio::select! {
        () = run => None,
        why = ticket.closed() => {
            info!(?why, "connection closed before login");
            // The session may run in russh's own task by now: cut its socket.
            kill.cancel();
            Some(why)
        }
    }
}

/// A connection that tried to log in and never did: one event naming every key it offered.
async fn refused_login(gw: &Gateway, peer: &std::net::SocketAddr, refused: &[(String, String)]) {
    let Some((user, _)) = refused.first() else {
        return;
    };
    let credentials: Vec<&str> = refused.iter().map(|(_, c)| c.as_str()).collect();
    let event = crate::store::Event {
        source: Some(peer.to_string()),
        detail: format!("user {user} key {}", credentials.join(", ")),
        message: "no registered key".into(),
        ..crate::store::Event::new(EventKind::Login, EventResult::Refused)
    };
    if let Err(e) = gw.store.record_event(&event).await {
        tracing::error!(error = %e, "could not record a refused login");
    }
}

/// A source's connections are refused for a while: said in the log and the audit trail.
async fn penalised(gw: &Gateway, source: guard::Source, blocked: std::time::Duration) {
    warn!(%source, seconds = blocked.as_secs(), "source penalised: its connections keep ending without a login; refusing it");
    let event = crate::store::Event {
        source: Some(source.to_string()),
        detail: format!(
            "connections from {source} refused for {} s",
            blocked.as_secs()
        ),
        message: "its connections kept ending without a login".into(),
        ..crate::store::Event::new(EventKind::Penalty, EventResult::Refused)
    };
    if let Err(e) = gw.store.record_event(&event).await {
        tracing::error!(error = %e, "could not record a penalty");
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// The error and its causes, as `main` prints them (`what: cause: cause`).
    fn chain(e: &dyn std::error::Error) -> String {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    }

    #[test]
    fn a_key_is_made_once_and_one_that_cannot_be_read_is_named_with_its_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let made = dir.path().join("client_key");
        let key = load_or_create_key(&made, "client key").expect("made");
        let mode = std::fs::metadata(&made).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(made.with_extension("pub").exists());
        let again = load_or_create_key(&made, "client key").expect("loaded");
        assert_eq!(again.public_key(), key.public_key());

        let damaged = dir.path().join("host_key");
        std::fs::write(&damaged, "not a key\n").expect("write");
        let e = load_or_create_key(&damaged, "host key").expect_err("refused");
        let said = chain(&e);
        let what = format!("cannot load the host key {}: ", damaged.display());
        assert!(said.starts_with(&what) && said.len() > what.len(), "{said}");
    }
}
