//! A host's pooled connections, in lanes, with the back-off after a failed connect.
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
//! **Invariant**: a connection that is retired ([`Pool::retire`]: judged unreachable, or not
//! answering) is taken out of the pool before it is cut, so no new channel goes to it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::keys::PublicKey;
use tracing::{debug, info, warn};

use russh::Channel;
use russh::client::Msg;

use super::leg::{Connection, Forward, KeyCheck, LegSettings, LinkId, Slot, Target, connect};
use crate::hosts::HostError;

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

    /// A connection of its own, outside the lanes, for one remote forward (`ssh -R`): the
    /// host's sshd listens for as long as it is open, and the channels it opens for the
    /// listener go to `forwarded`. Closing it is how the forward ends, so it is never shared.
    pub async fn forwarding_connection(
        &self,
        forwarded: tokio::sync::mpsc::Sender<super::leg::ForwardedChannel>,
    ) -> Result<Connection, HostError> {
        super::leg::connect_forwarding(&self.target, self.pinned.clone(), &self.settings, forwarded)
            .await
    }

    /// The time limit of one step with the host (a connect, a channel, a request).
    pub fn step_timeout(&self) -> Duration {
        self.settings.connect_timeout
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
