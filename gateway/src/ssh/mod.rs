//! The SSH server: the accept loop, russh's configuration, and the host key.
//!
//! The gateway owns its accept loop (a connection limit, `TCP_NODELAY`, one tracing span and
//! one tracked task per connection) and hands each socket to `russh::server::run_stream` with a
//! [`handler::ConnectionHandler`].

pub mod agent;
pub mod channel;
pub mod handler;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};
use russh::{MethodKind, MethodSet, Preferred};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{Instrument, debug, info, warn};

use crate::Gateway;
use crate::config::SshConfig;

/// Loads a private key, or creates an Ed25519 one (mode 0600, public half beside it).
pub fn load_or_create_key(path: &Path, what: &str) -> anyhow::Result<PrivateKey> {
    if path.exists() {
        return russh::keys::load_secret_key(path, None)
            .with_context(|| format!("cannot load the {what} {}", path.display()));
    }
    let mut key = PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519)
        .with_context(|| format!("cannot generate a {what}"))?;
    key.set_comment(format!("agentgate {what}"));
    key.write_openssh_file(path, LineEnding::LF)
        .with_context(|| format!("cannot write the {what} {}", path.display()))?;
    crate::set_mode(path, 0o600)?;
    key.public_key()
        .write_openssh_file(path.with_extension("pub"))
        .with_context(|| format!("cannot write {}.pub", path.display()))?;
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
        max_auth_attempts: ssh.max_auth_attempts,
        inactivity_timeout: Some(ssh.inactivity_timeout),
        keepalive_interval: Some(ssh.keepalive_interval),
        keepalive_max: ssh.keepalive_max,
        window_size: ssh.window_size,
        maximum_packet_size: 32_768,
        event_buffer_size: 100,
        nodelay: true,
        preferred: Preferred {
            cipher: Cow::Borrowed(&[
                russh::cipher::AES_128_GCM,
                russh::cipher::AES_256_GCM,
                russh::cipher::CHACHA20_POLY1305,
                russh::cipher::AES_256_CTR,
                russh::cipher::AES_192_CTR,
                russh::cipher::AES_128_CTR,
            ]),
            compression: Cow::Borrowed(&[russh::compression::NONE]),
            ..Preferred::default()
        },
        ..Default::default()
    }
}

/// Accepts connections until the gateway shuts down.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, config: Arc<russh::server::Config>) {
    let limit = Arc::new(Semaphore::new(gw.config.ssh.max_connections.max(1)));
    let next_id = AtomicU64::new(1);
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
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let conn_id = next_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("conn", conn_id, %peer);
        let handler =
            handler::ConnectionHandler::new(gw.clone(), Some(peer), stream.local_addr().ok());
        let config = config.clone();
        let shutdown = gw.shutdown.clone();
        gw.tasks.spawn(
            async move {
                let _permit = permit;
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
                        }
                    }
                    Err(e) => debug!(error = %e, "handshake failed"),
                }
            }
            .instrument(span),
        );
    }
    info!("stopped accepting connections");
}
