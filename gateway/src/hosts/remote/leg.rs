//! The host leg: one SSH client connection from the gateway to a host, its host key checked
//! and the gateway's key logged in, and the channels run on it (`spawn_reader`,
//! `exec_collect`). The connections of a host are pooled by [`pool`].
//!
//! **Invariant**: a connection whose link is gone cannot hang. Its socket is [`watch`]ed
//! (bytes the host does not take or acknowledge within `stall_timeout` end it).
//!
//! [`pool`]: super::pool
//! [`watch`]: super::watch

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use russh::client::{self, Handle, Msg};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{Channel, ChannelMsg, ChannelReadHalf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::watch::{Cut, Watched};

use crate::hosts::{HostError, ProcessExit};
use crate::streams::{Backlog, Inbound};

/// Where a host is and how it proves itself.
#[derive(Clone, Debug)]
pub struct Target {
    /// The host's name in the gateway (for messages).
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
}

impl Target {
    pub fn display(&self) -> String {
        if self.port == 22 {
            format!("{}@{}", self.user, self.address)
        } else {
            format!("{}@{}:{}", self.user, self.address, self.port)
        }
    }
}

/// What the host's key must be.
#[derive(Clone, Debug)]
pub enum KeyCheck {
    /// The pinned key: anything else is refused.
    Pinned(PublicKey),
    /// Trust on first use (`host add` without `--host-key`): accept and report the key.
    FirstUse,
}

/// How connections are made: the gateway's client key and the limits.
#[derive(Clone, Debug)]
pub struct LegSettings {
    pub client_key: Arc<PrivateKey>,
    pub connect_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_max: usize,
    pub max_sessions: usize,
    /// How long bytes for a host may wait (not taken by the socket, or not acknowledged by the
    /// host) before its connection is closed as lost.
    pub stall_timeout: Duration,
}

impl LegSettings {
    fn client_config(&self) -> Arc<client::Config> {
        Arc::new(client::Config {
            client_id: russh::SshId::Standard(std::borrow::Cow::Owned(format!(
                "SSH-2.0-agentgate_{}",
                crate::VERSION
            ))),
            inactivity_timeout: None,
            keepalive_interval: Some(self.keepalive_interval),
            keepalive_max: self.keepalive_max,
            nodelay: true,
            window_size: 8 * 1024 * 1024,
            ..Default::default()
        })
    }
}

/// The russh client handler of one connection: checks the host key, and records what the
/// host presented so that a refusal can say what changed. On a connection that carries a
/// remote forward, the channels the host's sshd opens for it go to `forwarded`; any other
/// connection refuses them.
pub struct Leg {
    check: KeyCheck,
    presented: Arc<Mutex<Option<PublicKey>>>,
    forwarded: Option<mpsc::Sender<ForwardedChannel>>,
}

/// A channel the host's sshd opened for a remote forward: one connection to its listener.
pub struct ForwardedChannel {
    pub channel: Channel<Msg>,
    /// The peer's address and port, as sshd reports them (empty and 0 for a unix socket).
    pub originator: (String, u32),
}

impl Leg {
    /// Accepts a channel for the remote forward this connection carries, if there is room in
    /// its queue; refuses it otherwise (the peer on the host sees its connection closed).
    async fn forwarded(
        &self,
        channel: Channel<Msg>,
        originator: (String, u32),
        reply: client::ChannelOpenHandle,
    ) {
        let permit = match &self.forwarded {
            Some(queue) => queue.clone().try_reserve_owned().ok(),
            None => None,
        };
        match permit {
            Some(permit) => {
                reply.accept().await;
                permit.send(ForwardedChannel {
                    channel,
                    originator,
                });
            }
            None => {
                debug!("a forwarded channel the gateway did not ask for, or too many: refused");
                reply
                    .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                    .await;
            }
        }
    }
}

impl client::Handler for Leg {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        presented: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // Hosts are pinned by key; a certificate is not a pinned key.
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = presented else {
            return Ok(false);
        };
        if let Ok(mut seen) = self.presented.lock() {
            *seen = Some(key.clone());
        }
        Ok(match &self.check {
            KeyCheck::Pinned(pinned) => pinned.key_data() == key.key_data(),
            KeyCheck::FirstUse => true,
        })
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<Msg>,
        _connected_address: &str,
        _connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let originator = (originator_address.to_owned(), originator_port);
        self.forwarded(channel, originator, reply).await;
        Ok(())
    }

    async fn server_channel_open_forwarded_streamlocal(
        &mut self,
        channel: Channel<Msg>,
        _socket_path: &str,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.forwarded(channel, (String::new(), 0), reply).await;
        Ok(())
    }
}

/// Which connection of a host's pool: what a failed call judged, so that exactly that one is
/// retired. Numbers are never reused within a pool; 0 is no connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LinkId(pub(super) u64);

/// One authenticated connection to a host.
pub struct Connection {
    pub handle: Handle<Leg>,
    /// The key the host presented.
    pub host_key: PublicKey,
    host: String,
    /// Session channels open on it (the pool keeps it under `max_sessions`).
    pub(super) sessions: Arc<AtomicUsize>,
    pub(super) opened: Instant,
    pub(super) id: LinkId,
    /// Ends the socket from outside (a retired connection).
    pub(super) cut: Cut,
}

impl Connection {
    /// The host's name in the gateway.
    pub fn host_name(&self) -> &str {
        &self.host
    }

    /// Closed, or cut (retired or found stuck): no new channel goes to it.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed() || self.cut.is_cut()
    }

    pub fn id(&self) -> LinkId {
        self.id
    }

    /// Ends the connection now, whatever it is doing: its sessions end as lost. A polite
    /// disconnect is sent too, in case the connection still moves.
    pub(super) async fn close(&self, why: &str) {
        self.cut.cut(why);
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.handle
                .disconnect(russh::Disconnect::ByApplication, "", "en"),
        )
        .await;
    }
}

/// Connects, checks the host key and authenticates with the gateway's key.
pub async fn connect(
    target: &Target,
    check: KeyCheck,
    settings: &LegSettings,
) -> Result<Connection, HostError> {
    connect_with(target, check, settings, None).await
}

/// [`connect`], for a connection that carries a remote forward: the channels the host opens
/// for it go to `forwarded`.
pub async fn connect_forwarding(
    target: &Target,
    pinned: PublicKey,
    settings: &LegSettings,
    forwarded: mpsc::Sender<ForwardedChannel>,
) -> Result<Connection, HostError> {
    connect_with(target, KeyCheck::Pinned(pinned), settings, Some(forwarded)).await
}

async fn connect_with(
    target: &Target,
    check: KeyCheck,
    settings: &LegSettings,
    forwarded: Option<mpsc::Sender<ForwardedChannel>>,
) -> Result<Connection, HostError> {
    let unreachable = |reason: String| HostError::Unreachable {
        host: target.name.clone(),
        reason,
    };
    let limit = settings.connect_timeout;
    let timed_out = || {
        unreachable(format!(
            "no answer from {} within {} s",
            target.display(),
            limit.as_secs()
        ))
    };
    let started = Instant::now();
    let dial = tokio::net::TcpStream::connect((target.address.as_str(), target.port));
    let stream = tokio::time::timeout(limit, dial)
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| {
            unreachable(format!(
                "cannot connect to {}:{}: {e}",
                target.address, target.port
            ))
        })?;
    let _ = stream.set_nodelay(true);
    // Best effort: without it, bytes handed to the socket are only watched by the keepalives.
    if let Err(e) = super::watch::limit_unacknowledged(&stream, settings.stall_timeout) {
        debug!(host = target.name, error = %e, "cannot set TCP_USER_TIMEOUT");
    }
    let cut = Cut::default();
    let stream = Watched::new(stream, settings.stall_timeout, cut.clone());
    let presented = Arc::new(Mutex::new(None));
    let pinned = match &check {
        KeyCheck::Pinned(key) => Some(key.clone()),
        KeyCheck::FirstUse => None,
    };
    let handler = Leg {
        check,
        presented: presented.clone(),
        forwarded,
    };
    let remaining = limit.saturating_sub(started.elapsed());
    let handshake = client::connect_stream(settings.client_config(), stream, handler);
    let mut handle = match tokio::time::timeout(remaining, handshake).await {
        Err(_) => return Err(timed_out()),
        Ok(Ok(handle)) => handle,
        Ok(Err(e)) => {
            let seen = presented.lock().ok().and_then(|s| s.clone());
            return Err(match (pinned, seen) {
                (Some(pinned), Some(seen)) if pinned.key_data() != seen.key_data() => {
                    HostError::HostKeyChanged {
                        host: target.name.clone(),
                        pinned: fingerprint(&pinned),
                        presented: fingerprint(&seen),
                    }
                }
                _ => unreachable(format!(
                    "SSH handshake with {} failed: {e}",
                    target.display()
                )),
            });
        }
    };
    let host_key = presented
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .ok_or_else(|| unreachable("the host presented no key".into()))?;
    let key =
        PrivateKeyWithHashAlg::new(settings.client_key.clone(), rsa_hash(&settings.client_key));
    let remaining = limit.saturating_sub(started.elapsed());
    let auth = tokio::time::timeout(
        remaining,
        handle.authenticate_publickey(target.user.clone(), key),
    )
    .await
    .map_err(|_| timed_out())?
    .map_err(|e| unreachable(format!("authentication failed: {e}")))?;
    if !auth.success() {
        return Err(HostError::AuthRefused {
            host: target.name.clone(),
            user: target.user.clone(),
        });
    }
    debug!(
        host = target.name,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "connected"
    );
    Ok(Connection {
        handle,
        host_key,
        host: target.name.clone(),
        sessions: Arc::new(AtomicUsize::new(0)),
        opened: Instant::now(),
        id: LinkId::default(),
        cut,
    })
}

fn rsa_hash(key: &PrivateKey) -> Option<HashAlg> {
    key.algorithm().is_rsa().then_some(HashAlg::Sha256)
}

/// The SHA256 fingerprint of a key, as OpenSSH prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// A session slot on a connection, given back when dropped; it also says which connection.
pub struct Slot(Option<Arc<AtomicUsize>>, LinkId);

impl Slot {
    /// No slot: for channels that do not count against `MaxSessions` (forwards).
    pub fn none() -> Slot {
        Slot(None, LinkId::default())
    }

    pub(super) fn taken(conn: &Connection) -> Slot {
        conn.sessions.fetch_add(1, Ordering::Relaxed);
        Slot(Some(conn.sessions.clone()), conn.id)
    }

    /// The connection the slot is on.
    pub fn link(&self) -> LinkId {
        self.1
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(count) = self.0.take() {
            count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Where a forwarding channel goes, on the host.
#[derive(Clone, Copy, Debug)]
pub enum Forward<'a> {
    Tcp { host: &'a str, port: u16 },
    Unix { path: &'a str },
}

/// The output side of a channel: data, stderr, and how the process ended.
pub struct ChannelOutput {
    pub stdout: Inbound,
    pub stderr: Inbound,
    pub exit: oneshot::Receiver<ProcessExit>,
    /// Cancelled once the channel is closed or its connection gone: writers waiting for the
    /// host's window stop then (russh would leave them waiting for ever).
    pub ended: tokio_util::sync::CancellationToken,
}

/// Reads a channel until it closes, on its own task (a channel that is not read stalls its
/// whole connection): data to `stdout`, extended data to `stderr`, `exit-status` or
/// `exit-signal` to `exit`. A channel that ends without either lost its connection.
pub fn spawn_reader(mut reader: ChannelReadHalf, slot: Slot, tasks: &TaskTracker) -> ChannelOutput {
    let backlog = Backlog::default();
    let (out_tx, stdout) = Inbound::channel(&backlog);
    let (err_tx, stderr) = Inbound::channel(&backlog);
    let (exit_tx, exit) = oneshot::channel();
    let ended = tokio_util::sync::CancellationToken::new();
    let end = ended.clone().drop_guard();
    tasks.spawn(async move {
        let _end = end;
        let _slot = slot;
        let mut out_tx = Some(out_tx);
        let mut err_tx = Some(err_tx);
        let mut ended = None;
        while let Some(msg) = reader.wait().await {
            match msg {
                ChannelMsg::Data { data } => forward(&mut out_tx, data).await,
                ChannelMsg::ExtendedData { data, ext: 1 } => forward(&mut err_tx, data).await,
                ChannelMsg::Eof => {
                    out_tx = None;
                    err_tx = None;
                }
                ChannelMsg::ExitStatus { exit_status } => {
                    ended = Some(ProcessExit::Code(i32::try_from(exit_status).unwrap_or(255)));
                }
                ChannelMsg::ExitSignal {
                    signal_name,
                    core_dumped,
                    ..
                } => {
                    ended = Some(crate::streams::signals::signal_number(&signal_name).map_or(
                        ProcessExit::Unknown,
                        |signal| ProcessExit::Signal {
                            signal,
                            core_dumped,
                        },
                    ));
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        drop((out_tx, err_tx));
        let _ = exit_tx.send(ended.unwrap_or(ProcessExit::Lost));
    });
    ChannelOutput {
        stdout,
        stderr,
        exit,
        ended,
    }
}

async fn forward(tx: &mut Option<crate::streams::InboundSender>, data: Bytes) {
    if let Some(sender) = tx
        && !sender.send(data).await
    {
        *tx = None;
    }
}

/// Runs one command line on a session channel and collects its whole output (for small
/// outputs: hostctl's JSON answers, probes). `stdin` is sent, then EOF.
pub async fn exec_collect(
    channel: Channel<Msg>,
    slot: Slot,
    tasks: &TaskTracker,
    line: &str,
    stdin: Option<&[u8]>,
    max: usize,
) -> Result<(ProcessExit, Vec<u8>, Vec<u8>), russh::Error> {
    use tokio::io::AsyncReadExt;
    let (reader, writer) = channel.split();
    let output = spawn_reader(reader, slot, tasks);
    writer.exec(true, line.as_bytes()).await?;
    let feed = async {
        if let Some(body) = stdin {
            let _ = writer.data(body).await;
        }
        let _ = writer.eof().await;
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX);
    let mut stdout = crate::streams::InboundReader::from(output.stdout).take(limit);
    let mut stderr = crate::streams::InboundReader::from(output.stderr).take(limit);
    let _ = tokio::join!(
        feed,
        stdout.read_to_end(&mut out),
        stderr.read_to_end(&mut err)
    );
    let exit = output.exit.await.unwrap_or(ProcessExit::Lost);
    Ok((exit, out, err))
}
