//! The host leg: SSH client connections from the gateway to one host, pooled.
//!
//! Every operation is a channel on a pooled connection. Session channels (exec, PTY, the
//! `sftp-server`) count against the host's `MaxSessions`: a connection that has
//! `max_sessions` of them open gets a sibling. hostctl's JSON calls use connections of their
//! own (the control lane), so that a bulk transfer on a session connection never delays the
//! reconciler's questions: russh's client stalls every channel of a connection while one
//! channel's consumer is behind.
//!
//! A failed connect is remembered for a short back-off, during which the gateway's background
//! questions (the reconciler's, a `hostctl serve` start) get the same error at once instead of
//! piling up on a dead host. What an operator waits for is not refused by it: it tries the
//! host again (waiting at most `connect_timeout`), so the first attach after a link comes back
//! works; callers that queued behind a connect that failed get its error.
//!
//! **Invariant**: a connection whose link is gone cannot hang. Its socket is [`watch`]ed
//! (bytes the host does not take or acknowledge within `stall_timeout` end it), and a
//! connection that is retired ([`Pool::retire`]: judged unreachable, or not answering) is
//! taken out of the pool before it is cut, so no new channel goes to it.
//!
//! [`watch`]: super::watch

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use russh::client::{self, Handle, Msg};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{Channel, ChannelMsg, ChannelReadHalf};
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

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
/// host presented so that a refusal can say what changed.
pub struct Leg {
    check: KeyCheck,
    presented: Arc<Mutex<Option<PublicKey>>>,
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
}

/// Which connection of a host's pool: what a failed call judged, so that exactly that one is
/// retired. Numbers are never reused within a pool; 0 is no connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LinkId(u64);

/// One authenticated connection to a host.
pub struct Connection {
    pub handle: Handle<Leg>,
    /// The key the host presented.
    pub host_key: PublicKey,
    host: String,
    sessions: Arc<AtomicUsize>,
    opened: Instant,
    id: LinkId,
    /// Ends the socket from outside (a retired connection).
    cut: Cut,
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
    async fn close(&self, why: &str) {
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

/// Which connections an operation uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// hostctl's short JSON calls.
    Control,
    /// Sessions and forwards: attach, exec, sftp, `logs -f`, `-L`/`-D`.
    Sessions,
    /// Workspace streams (`pack`, for `clone` and `migrate`): a bulk stream whose consumer
    /// may fall behind must not hold up sessions, nor the `unpack` it feeds on the same host.
    Transfer,
}

/// The connections to one host.
pub struct Pool {
    target: Target,
    pinned: PublicKey,
    settings: LegSettings,
    control: tokio::sync::Mutex<Vec<Arc<Connection>>>,
    sessions: tokio::sync::Mutex<Vec<Arc<Connection>>>,
    transfer: tokio::sync::Mutex<Vec<Arc<Connection>>>,
    failure: Mutex<Option<Failure>>,
    /// The number of the next connection ([`LinkId`]).
    next_link: AtomicU64,
}

/// The last failed connect to a host.
#[derive(Clone, Debug)]
struct Failure {
    at: Instant,
    backoff: Duration,
    error: String,
    /// The lane whose caller tried.
    lane: Lane,
}

/// Whether a caller waits for a connect during the back-off after a failed one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patience {
    /// A background question (the reconciler's, a serve start): refused during the back-off.
    BackOff,
    /// Someone waits for the answer (an attach, a control command): it tries.
    Try,
}

/// Whether a caller of `lane`, who asked for a connection at `asked`, gets `failure`'s error
/// at once instead of a connect of its own (returned then).
///
/// - A connect of the same lane failed while the caller waited its turn: it gets that error,
///   so that callers queued on a dead host do not each wait `connect_timeout` again.
/// - Otherwise, within the back-off after the last failure, background questions get its
///   error; a caller someone waits for tries anyway, so that the first attach after the link
///   returns works.
fn refuse_during_backoff(
    lane: Lane,
    patience: Patience,
    failure: Option<&Failure>,
    asked: Instant,
    now: Instant,
) -> Option<String> {
    let failure = failure?;
    let failed_while_waiting = failure.lane == lane && failure.at >= asked;
    let backing_off = patience == Patience::BackOff
        && now.saturating_duration_since(failure.at) < failure.backoff;
    (failed_while_waiting || backing_off).then(|| failure.error.clone())
}

/// What a failed connect's error says, as the reason of the `Unreachable` error that callers
/// refused during the back-off get (which names the host itself: not twice).
fn failure_reason(e: &HostError) -> String {
    match e {
        HostError::Unreachable { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Back-off after a failed connect: doubles from the first to the last, while it keeps failing.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_LAST: Duration = Duration::from_secs(4);

/// A session slot on a connection, given back when dropped; it also says which connection.
pub struct Slot(Option<Arc<AtomicUsize>>, LinkId);

impl Slot {
    /// No slot: for channels that do not count against `MaxSessions` (forwards).
    pub fn none() -> Slot {
        Slot(None, LinkId::default())
    }

    fn taken(conn: &Connection) -> Slot {
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

impl Pool {
    pub fn new(target: Target, pinned: PublicKey, settings: LegSettings) -> Pool {
        Pool {
            target,
            pinned,
            settings,
            control: tokio::sync::Mutex::new(Vec::new()),
            sessions: tokio::sync::Mutex::new(Vec::new()),
            transfer: tokio::sync::Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            next_link: AtomicU64::new(1),
        }
    }

    fn lane(&self, lane: Lane) -> &tokio::sync::Mutex<Vec<Arc<Connection>>> {
        match lane {
            Lane::Control => &self.control,
            Lane::Sessions => &self.sessions,
            Lane::Transfer => &self.transfer,
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// A connection of `lane` with a free session slot (taken), connecting if none has one.
    pub async fn connection(
        &self,
        lane: Lane,
        patience: Patience,
    ) -> Result<(Arc<Connection>, Slot), HostError> {
        let asked = Instant::now();
        let mut conns = self.lane(lane).lock().await;
        // A retired or cut connection is out already; one closed by the host goes here.
        conns.retain(|c| !c.is_closed());
        let max = self.settings.max_sessions;
        if let Some(conn) = conns
            .iter()
            .find(|c| c.sessions.load(Ordering::Relaxed) < max)
        {
            return Ok((conn.clone(), Slot::taken(conn)));
        }
        let failure = self.last_failure();
        if let Some(error) =
            refuse_during_backoff(lane, patience, failure.as_ref(), asked, Instant::now())
        {
            return Err(HostError::Unreachable {
                host: self.target.name.clone(),
                reason: error,
            });
        }
        match connect(
            &self.target,
            KeyCheck::Pinned(self.pinned.clone()),
            &self.settings,
        )
        .await
        {
            Ok(mut conn) => {
                if let Ok(mut failure) = self.failure.lock()
                    && failure.take().is_some()
                {
                    info!(host = self.target.name, "connected to the host again");
                }
                conn.id = LinkId(self.next_link.fetch_add(1, Ordering::Relaxed));
                let conn = Arc::new(conn);
                let slot = Slot::taken(&conn);
                conns.push(conn.clone());
                Ok((conn, slot))
            }
            Err(e) => {
                self.failed(&e, lane);
                Err(e)
            }
        }
    }

    fn last_failure(&self) -> Option<Failure> {
        self.failure.lock().ok()?.clone()
    }

    /// Retires the connection `link` if it is still in the pool: no new channel goes to it,
    /// and it is closed at once (its sessions end as lost). A newer connection is never
    /// touched: it was not what was judged.
    pub async fn retire(&self, link: LinkId, why: &str) {
        if link == LinkId::default() {
            return;
        }
        for lane in [Lane::Control, Lane::Sessions, Lane::Transfer] {
            let retired = {
                let mut conns = self.lane(lane).lock().await;
                let found = conns.iter().position(|c| c.id == link);
                found.map(|at| conns.remove(at))
            };
            if let Some(conn) = retired {
                warn!(
                    host = self.target.name,
                    lane = ?lane,
                    age_s = conn.opened.elapsed().as_secs(),
                    why,
                    "closing a connection to the host"
                );
                conn.close(why).await;
                return;
            }
        }
    }

    fn failed(&self, e: &HostError, lane: Lane) {
        if let Ok(mut failure) = self.failure.lock() {
            let backoff = failure
                .as_ref()
                .map_or(BACKOFF_FIRST, |f| (f.backoff * 2).min(BACKOFF_LAST));
            *failure = Some(Failure {
                at: Instant::now(),
                backoff,
                error: failure_reason(e),
                lane,
            });
        }
    }

    /// Drops every connection (the host's sessions end); the next operation reconnects.
    pub async fn reset(&self) {
        for lock in [&self.control, &self.sessions, &self.transfer] {
            let conns: Vec<Arc<Connection>> = lock.lock().await.drain(..).collect();
            for conn in conns {
                conn.close("the host's connections were reset").await;
            }
        }
    }

    /// Drops the control connections if they no longer answer (a call timed out on one).
    pub async fn check_control(&self) {
        let conns: Vec<Arc<Connection>> = self.control.lock().await.clone();
        for conn in conns {
            let alive = tokio::time::timeout(Duration::from_secs(2), conn.handle.send_ping())
                .await
                .is_ok_and(|r| r.is_ok())
                && !conn.is_closed();
            if !alive {
                self.retire(conn.id, "it did not answer a ping").await;
            }
        }
    }

    /// Opens a session channel; retries once on a fresh connection when the host refuses
    /// another session on a connection (its `MaxSessions` is lower than ours).
    pub async fn open_session(
        &self,
        lane: Lane,
        patience: Patience,
    ) -> Result<(Channel<Msg>, Slot), HostError> {
        for _ in 0..2 {
            let (conn, slot) = self.connection(lane, patience).await?;
            let open = conn.handle.channel_open_session();
            match tokio::time::timeout(self.settings.connect_timeout, open).await {
                Ok(Ok(channel)) => return Ok((channel, slot)),
                Ok(Err(russh::Error::ChannelOpenFailure(_))) => {
                    // Full: mark it so, and let the next attempt open a sibling.
                    conn.sessions.store(usize::MAX / 2, Ordering::Relaxed);
                    debug!(
                        host = self.target.name,
                        age_s = conn.opened.elapsed().as_secs(),
                        "the host refused another session on a connection"
                    );
                }
                Ok(Err(e)) => {
                    return Err(HostError::Unreachable {
                        host: self.target.name.clone(),
                        reason: format!("cannot open a channel: {e}"),
                    });
                }
                Err(_) => {
                    return Err(HostError::Timeout {
                        host: self.target.name.clone(),
                        what: "a new channel".into(),
                        seconds: self.settings.connect_timeout.as_secs(),
                    });
                }
            }
        }
        Err(HostError::Unreachable {
            host: self.target.name.clone(),
            reason: "the host refuses new sessions".into(),
        })
    }

    /// Opens a forwarding channel (they do not count against `MaxSessions`).
    pub async fn open_forward(&self, to: Forward<'_>) -> std::io::Result<Channel<Msg>> {
        let (conn, slot) = self
            .connection(Lane::Sessions, Patience::Try)
            .await
            .map_err(std::io::Error::other)?;
        drop(slot);
        let open = async {
            match to {
                Forward::Tcp { host, port } => {
                    conn.handle
                        .channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0)
                        .await
                }
                Forward::Unix { path } => conn.handle.channel_open_direct_streamlocal(path).await,
            }
        };
        match tokio::time::timeout(self.settings.connect_timeout, open).await {
            Ok(Ok(channel)) => Ok(channel),
            Ok(Err(russh::Error::ChannelOpenFailure(reason))) => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                format!("the host refused: {reason:?}"),
            )),
            Ok(Err(e)) => Err(std::io::Error::other(e.to_string())),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection timed out",
            )),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(lane: Lane, at: Instant) -> Failure {
        Failure {
            at,
            backoff: Duration::from_secs(2),
            error: "no answer".into(),
            lane,
        }
    }

    #[test]
    fn background_questions_back_off_after_a_failed_connect() {
        let failed = Instant::now();
        let asked = failed + Duration::from_millis(500);
        for lane in [Lane::Control, Lane::Sessions, Lane::Transfer] {
            let f = failure(Lane::Sessions, failed);
            assert_eq!(
                refuse_during_backoff(lane, Patience::BackOff, Some(&f), asked, asked).as_deref(),
                Some("no answer")
            );
            let later = failed + Duration::from_secs(3);
            assert_eq!(
                refuse_during_backoff(lane, Patience::BackOff, Some(&f), later, later),
                None
            );
        }
        assert_eq!(
            refuse_during_backoff(Lane::Control, Patience::BackOff, None, asked, asked),
            None
        );
    }

    #[test]
    fn what_an_operator_waits_for_tries_the_host_again_during_the_back_off() {
        let failed = Instant::now();
        let asked = failed + Duration::from_millis(500);
        for lane in [Lane::Control, Lane::Sessions, Lane::Transfer] {
            for failed_lane in [Lane::Control, Lane::Sessions] {
                let f = failure(failed_lane, failed);
                assert_eq!(
                    refuse_during_backoff(lane, Patience::Try, Some(&f), asked, asked),
                    None
                );
            }
        }
    }

    #[test]
    fn callers_queued_behind_a_failed_connect_get_its_error() {
        let asked = Instant::now();
        let failed = asked + Duration::from_secs(5);
        for lane in [Lane::Sessions, Lane::Control] {
            let f = failure(lane, failed);
            let now = failed + Duration::from_secs(10);
            assert_eq!(
                refuse_during_backoff(lane, Patience::Try, Some(&f), asked, now).as_deref(),
                Some("no answer"),
                "{lane:?}"
            );
        }
        // A failure of another lane while a session waited is not its own: it tries.
        let f = failure(Lane::Control, failed);
        let now = failed + Duration::from_secs(10);
        assert_eq!(
            refuse_during_backoff(Lane::Sessions, Patience::Try, Some(&f), asked, now),
            None
        );
    }

    #[test]
    fn an_error_given_during_the_back_off_names_the_host_once() {
        let failed = HostError::Unreachable {
            host: "h1".into(),
            reason: "connection refused".into(),
        };
        let given = HostError::Unreachable {
            host: "h1".into(),
            reason: failure_reason(&failed),
        };
        assert_eq!(
            given.to_string(),
            "host 'h1' cannot be reached: connection refused"
        );
    }
}
