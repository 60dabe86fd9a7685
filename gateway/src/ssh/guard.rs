//! Before authentication: the limits a connection meets before it has logged in, like
//! OpenSSH's `LoginGraceTime`, `MaxStartups`, `PerSourceMaxStartups` and `PerSourcePenalties`.
//!
//! - A connection must log in within `login_grace_time`, or it is closed.
//! - At most `max_startups` connections may be unauthenticated at once. When a new one would
//!   pass that, the oldest unauthenticated connection of the source that holds the most is
//!   closed to make room: a flood slows itself down, never the operator who comes next.
//! - A source (an IPv4 address, an IPv6 /64) with `per_source_max_startups` unauthenticated
//!   connections has its next ones refused.
//! - A source earns penalties when its connections end without logging in: `authfail` when
//!   they tried and failed, `noauth` when they never tried, `grace_exceeded` when they ran out
//!   of time. Penalties add up (to at most `max`) and wear off in real time; once a source's
//!   penalty reaches `min` its connections are refused at accept until it has worn off.
//!   Addresses in `exempt` are never penalised.
//!
//! The decisions are pure ([`GuardState`], with the time passed in); [`Guard`] wraps them in a
//! mutex for the accept loop and the connections' [`Ticket`]s.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{PenaltyConfig, SshConfig};

/// Where connections come from, for limits and penalties: an IPv4 address or an IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                Source(IpAddr::V6(octets.into()))
            }
            v4 => Source(v4),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(_) => write!(f, "{}/64", self.0),
            IpAddr::V4(_) => write!(f, "{}", self.0),
        }
    }
}

/// How a connection ended before logging in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It logged in: no penalty.
    LoggedIn,
    /// It tried to authenticate and failed.
    AuthFailed,
    /// It never tried.
    NoAuth,
    /// `login_grace_time` ran out.
    GraceExceeded,
}

/// The answer at accept.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Served; `evict` is a connection to close to make room (its id).
    Accept { evict: Option<u64> },
    /// Refused: this source has too many unauthenticated connections.
    SourceFull,
    /// Refused: this source is penalised for this much longer.
    Penalised(Duration),
}

#[derive(Debug)]
struct Pending {
    source: Source,
    since: Instant,
}

#[derive(Debug)]
struct Penalty {
    until: Instant,
    /// Reached `min`: connections are refused until `until`.
    blocking: bool,
}

/// The guard's bookkeeping, without locks or clocks.
#[derive(Debug)]
pub struct GuardState {
    max_startups: usize,
    per_source: usize,
    penalties: PenaltyConfig,
    pending: BTreeMap<u64, Pending>,
    penalty: HashMap<Source, Penalty>,
}

impl GuardState {
    pub fn new(ssh: &SshConfig) -> GuardState {
        GuardState {
            max_startups: ssh.max_startups.max(1),
            per_source: ssh.per_source_max_startups.max(1),
            penalties: ssh.penalties.clone(),
            pending: BTreeMap::new(),
            penalty: HashMap::new(),
        }
    }

    /// Whether connection `id` from `ip` is served, at time `now`. An accepted connection is
    /// pending until [`GuardState::ended`] or [`GuardState::logged_in`].
    pub fn admit(&mut self, id: u64, ip: IpAddr, now: Instant) -> Admission {
        let source = Source::of(ip);
        if let Some(p) = self.penalty.get(&source) {
            if p.until <= now {
                self.penalty.remove(&source);
            } else if p.blocking {
                return Admission::Penalised(p.until - now);
            }
        }
        let from_source = self.pending.values().filter(|p| p.source == source).count();
        if from_source >= self.per_source {
            return Admission::SourceFull;
        }
        let evict = (self.pending.len() >= self.max_startups)
            .then(|| self.oldest_of_busiest())
            .flatten();
        if let Some(old) = evict {
            self.pending.remove(&old);
        }
        self.pending.insert(id, Pending { source, since: now });
        Admission::Accept { evict }
    }

    /// The oldest pending connection of the source with the most pending connections.
    fn oldest_of_busiest(&self) -> Option<u64> {
        let mut counts: HashMap<Source, usize> = HashMap::new();
        for p in self.pending.values() {
            *counts.entry(p.source).or_default() += 1;
        }
        let busiest = counts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))?
            .0;
        self.pending
            .iter()
            .filter(|(_, p)| p.source == busiest)
            .min_by_key(|(id, p)| (p.since, **id))
            .map(|(id, _)| *id)
    }

    /// Connection `id` logged in: it no longer counts as unauthenticated.
    pub fn logged_in(&mut self, id: u64) {
        self.pending.remove(&id);
    }

    /// Connection `id` from `ip` ended as `how`. Returns the source and how long it is now
    /// refused for, when this ending started a block.
    pub fn ended(
        &mut self,
        id: u64,
        ip: IpAddr,
        how: Ending,
        now: Instant,
    ) -> Option<(Source, Duration)> {
        self.pending.remove(&id);
        let p = &self.penalties;
        let amount = match how {
            Ending::LoggedIn => return None,
            Ending::AuthFailed => p.authfail,
            Ending::NoAuth => p.noauth,
            Ending::GraceExceeded => p.grace_exceeded,
        };
        if !p.enabled || amount.is_zero() || p.exempts(ip) {
            return None;
        }
        let source = Source::of(ip);
        let entry = self.penalty.entry(source).or_insert(Penalty {
            until: now,
            blocking: false,
        });
        let base = entry.until.max(now);
        entry.until = (base + amount).min(now + p.max);
        let was_blocking = entry.blocking;
        if entry.until - now >= p.min {
            entry.blocking = true;
        }
        (entry.blocking && !was_blocking).then(|| (source, entry.until - now))
    }

    /// Unauthenticated connections now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Forgets penalties that have worn off (so the table does not grow without bound).
    fn sweep(&mut self, now: Instant) {
        if self.penalty.len() > 4096 {
            self.penalty.retain(|_, p| p.until > now);
        }
    }
}

/// The guard shared by the accept loop and every connection.
#[derive(Debug)]
pub struct Guard {
    state: Mutex<GuardState>,
    grace: Duration,
    /// Tokens that close pending connections, by id (to evict one).
    kicks: Mutex<HashMap<u64, CancellationToken>>,
}

impl Guard {
    pub fn new(ssh: &SshConfig) -> Arc<Guard> {
        Arc::new(Guard {
            state: Mutex::new(GuardState::new(ssh)),
            grace: ssh.login_grace_time,
            kicks: Mutex::new(HashMap::new()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, GuardState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn kicks(&self) -> std::sync::MutexGuard<'_, HashMap<u64, CancellationToken>> {
        self.kicks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Decides about a new connection; on acceptance, its ticket (closing any connection
    /// evicted to make room).
    pub fn admit(self: &Arc<Self>, id: u64, ip: IpAddr) -> Result<Arc<Ticket>, Admission> {
        let now = Instant::now();
        let decision = {
            let mut state = self.state();
            state.sweep(now);
            state.admit(id, ip, now)
        };
        let Admission::Accept { evict } = decision else {
            return Err(decision);
        };
        let kick = CancellationToken::new();
        let mut kicks = self.kicks();
        if let Some(old) = evict.and_then(|old| kicks.remove(&old)) {
            old.cancel();
        }
        kicks.insert(id, kick.clone());
        drop(kicks);
        Ok(Arc::new(Ticket {
            guard: self.clone(),
            id,
            ip,
            deadline: now + self.grace,
            kick,
            logged_in: CancellationToken::new(),
            failed: std::sync::atomic::AtomicBool::new(false),
            refused: Mutex::new(Vec::new()),
        }))
    }

    /// Unauthenticated connections now.
    pub fn pending(&self) -> usize {
        self.state().pending()
    }
}

/// Why a pending connection is closed by the guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    GraceExceeded,
    Evicted,
}

/// One connection's place in the guard, from accept to its end.
#[derive(Debug)]
pub struct Ticket {
    guard: Arc<Guard>,
    id: u64,
    ip: IpAddr,
    deadline: Instant,
    kick: CancellationToken,
    logged_in: CancellationToken,
    failed: std::sync::atomic::AtomicBool,
    refused: Mutex<Vec<(String, String)>>,
}

impl Ticket {
    /// The connection logged in: it leaves the unauthenticated count and its grace timer.
    pub fn logged_in(&self) {
        self.logged_in.cancel();
        self.guard.state().logged_in(self.id);
        self.guard.kicks().remove(&self.id);
    }

    /// An authentication attempt failed: `credential` (a key's fingerprint, `password`) was
    /// refused for `user`.
    pub fn auth_failed(&self, user: &str, credential: &str) {
        self.failed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut refused = self
            .refused
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // A client may try the same key twice (offer, then sign): name it once.
        if refused.len() < 32 && !refused.iter().any(|(_, c)| c == credential) {
            refused.push((user.to_owned(), credential.to_owned()));
        }
    }

    /// What was refused on a connection that never logged in: (user, credential) pairs.
    pub fn refused(&self) -> Vec<(String, String)> {
        if self.logged_in.is_cancelled() {
            return Vec::new();
        }
        self.refused
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Resolves when the guard closes the connection: its grace time ran out before it logged
    /// in, or it was evicted to make room. Never resolves once it has logged in.
    pub async fn closed(&self) -> Closed {
        tokio::select! {
            () = self.logged_in.cancelled() => std::future::pending().await,
            () = self.kick.cancelled() => Closed::Evicted,
            () = tokio::time::sleep_until(self.deadline) => {
                if self.logged_in.is_cancelled() {
                    std::future::pending().await
                } else {
                    Closed::GraceExceeded
                }
            }
        }
    }

    /// Records how the connection ended (called once, by its task). Returns the source and how
    /// long it is blocked, when this ending started a penalty block.
    pub fn end(&self, closed: Option<Closed>) -> Option<(Source, Duration)> {
        let how = if self.logged_in.is_cancelled() {
            Ending::LoggedIn
        } else if closed == Some(Closed::GraceExceeded) {
            Ending::GraceExceeded
        } else if self.failed.load(std::sync::atomic::Ordering::Relaxed) {
            Ending::AuthFailed
        } else {
            Ending::NoAuth
        };
        self.guard.kicks().remove(&self.id);
        self.guard
            .state()
            .ended(self.id, self.ip, how, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SshConfig {
        SshConfig {
            max_startups: 4,
            per_source_max_startups: 2,
            ..SshConfig::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ipv6_sources_are_grouped_by_64_and_mapped_v4_is_v4() {
        assert_eq!(
            Source::of(ip("2001:db8:1:2:aaaa::1")),
            Source::of(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Source::of(ip("::ffff:10.0.0.1")),
            Source::of(ip("10.0.0.1"))
        );
    }

    #[test]
    fn a_full_table_evicts_the_oldest_of_the_busiest_source() {
        let mut g = GuardState::new(&settings());
        let t = Instant::now();
        assert_eq!(
            g.admit(1, ip("10.0.0.1"), t),
            Admission::Accept { evict: None }
        );
        assert_eq!(
            g.admit(2, ip("10.0.0.2"), t),
            Admission::Accept { evict: None }
        );
        assert_eq!(
            g.admit(3, ip("10.0.0.2"), t),
            Admission::Accept { evict: None }
        );
        // 10.0.0.2 holds two: its third is refused, though the table has room.
        assert_eq!(g.admit(4, ip("10.0.0.2"), t), Admission::SourceFull);
        assert_eq!(
            g.admit(5, ip("10.0.0.3"), t),
            Admission::Accept { evict: None }
        );
        // Full (4): a newcomer evicts 10.0.0.2's oldest, not 10.0.0.1's.
        assert_eq!(
            g.admit(6, ip("10.0.0.4"), t),
            Admission::Accept { evict: Some(2) }
        );
        assert_eq!(g.pending(), 4);
        g.logged_in(6);
        assert_eq!(g.pending(), 3);
    }

    #[test]
    fn penalties_add_up_block_at_min_and_wear_off() {
        let mut g = GuardState::new(&settings());
        let t = Instant::now();
        let bad = ip("10.9.9.9");
        for id in 0..2 {
            assert_eq!(g.admit(id, bad, t), Admission::Accept { evict: None });
            assert_eq!(
                g.ended(id, bad, Ending::AuthFailed, t),
                None,
                "10 s < min 15 s"
            );
        }
        assert_eq!(g.admit(7, bad, t), Admission::Accept { evict: None });
        let (source, blocked) = g.ended(7, bad, Ending::AuthFailed, t).expect("blocks");
        assert_eq!(source, Source::of(bad));
        assert_eq!(blocked, Duration::from_secs(15));
        assert_eq!(
            g.admit(8, bad, t),
            Admission::Penalised(Duration::from_secs(15))
        );
        // Others are not affected; the block wears off.
        assert_eq!(
            g.admit(9, ip("10.9.9.8"), t),
            Admission::Accept { evict: None }
        );
        let later = t + Duration::from_secs(16);
        assert_eq!(g.admit(10, bad, later), Admission::Accept { evict: None });
        // A login costs nothing; penalties stop at max.
        assert_eq!(g.ended(10, bad, Ending::LoggedIn, later), None);
        for id in 20..300 {
            g.ended(id, bad, Ending::GraceExceeded, later);
        }
        assert_eq!(
            g.admit(400, bad, later),
            Admission::Penalised(PenaltyConfig::default().max)
        );
    }

    #[test]
    fn exempt_sources_and_disabled_penalties_cost_nothing() {
        let mut ssh = settings();
        ssh.penalties.exempt = vec!["10.1.0.0/16".into(), "::1".into()];
        let mut g = GuardState::new(&ssh);
        let t = Instant::now();
        for id in 0..50 {
            assert_eq!(g.ended(id, ip("10.1.2.3"), Ending::GraceExceeded, t), None);
            assert_eq!(g.ended(id, ip("::1"), Ending::GraceExceeded, t), None);
        }
        assert_eq!(
            g.admit(99, ip("10.1.2.3"), t),
            Admission::Accept { evict: None }
        );
        ssh.penalties.enabled = false;
        let mut g = GuardState::new(&ssh);
        for id in 0..50 {
            assert_eq!(g.ended(id, ip("10.2.0.1"), Ending::AuthFailed, t), None);
        }
    }
}
