//! The connections logged in now, and the agents each reaches: taking access back (a key or
//! tailnet login removed, an operator removed or made an operator, an agent unshared) ends
//! the connections it no longer allows, their sessions with them, not only their next
//! channels. An agent-route connection reaches its agent; a control connection reaches the
//! agents it is attached to (`attach`, Enter in the live view) while it is.
//!
//! An operator's agent forwardings (`ssh -A`) are ended apart from their connections when an
//! admin turns forwarding off for them ([`LiveConnections::end_forwardings`]).
//!
//! [`revalidate`] checks every connection against the store; the commands that take access
//! back call it, and so does a sweep every [`SWEEP_EVERY`] (for `agentgate key remove` run
//! beside a running gateway).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Gateway;
use crate::agents::access;
use crate::model::{EventKind, EventResult};
use crate::store::Event;

/// How often every connection is checked even with no command taking access back.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// A connection's end, once its access is taken back, and why.
#[derive(Debug, Default)]
pub struct Revocation {
    token: CancellationToken,
    why: Mutex<String>,
}

impl Revocation {
    /// Ends the connection; true the first time only.
    pub fn revoke(&self, why: &str) -> bool {
        let first = !self.token.is_cancelled();
        if let Ok(mut slot) = self.why.lock()
            && slot.is_empty()
        {
            why.clone_into(&mut slot);
        }
        self.token.cancel();
        first
    }

    /// Waits until the connection's access is taken back; says why.
    pub async fn revoked(&self) -> String {
        self.token.cancelled().await;
        self.why.lock().map(|w| w.clone()).unwrap_or_default()
    }
}

struct Entry {
    operator: String,
    credential: String,
    /// The agents it reaches, with how many of its sessions reach each.
    agents: HashMap<String, usize>,
    revocation: Arc<Revocation>,
}

/// Every logged-in connection, by an ID of its own.
#[derive(Default)]
pub struct LiveConnections {
    next: AtomicU64,
    entries: Mutex<HashMap<u64, Entry>>,
    /// The agent forwardings open now, by operator: each ends when its token is cancelled.
    forwardings: Mutex<HashMap<String, Vec<CancellationToken>>>,
}

impl LiveConnections {
    /// Records a connection logging in.
    pub fn register(&self, operator: &str, credential: &str, revocation: Arc<Revocation>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = Entry {
            operator: operator.to_owned(),
            credential: credential.to_owned(),
            agents: HashMap::new(),
            revocation,
        };
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(id, entry);
        }
        id
    }

    pub fn unregister(&self, id: u64) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&id);
        }
    }

    /// Connection `id` reaches `agent` from now on (until it is unregistered).
    pub fn reach(&self, id: u64, agent: &str) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.get_mut(&id)
        {
            *entry.agents.entry(agent.to_owned()).or_default() += 1;
        }
    }

    /// Connection `id` reaches `agent` while the guard lives (a command about it, on the
    /// control route).
    pub fn enter(self: &Arc<Self>, id: u64, agent: &str) -> Entered {
        self.reach(id, agent);
        Entered {
            live: self.clone(),
            id,
            agent: agent.to_owned(),
        }
    }

    /// Connection `id`'s revocation, to end cleanly before it is cut.
    pub fn revocation(&self, id: u64) -> Option<Arc<Revocation>> {
        let entries = self.entries.lock().ok()?;
        entries.get(&id).map(|e| e.revocation.clone())
    }

    /// An agent forwarding of `operator`'s opens: it ends when the token returned is
    /// cancelled ([`Self::end_forwardings`]); whoever holds it cancels it when it ends itself.
    pub fn forwarding_opened(&self, operator: &str) -> CancellationToken {
        let token = CancellationToken::new();
        let mut all = self.forwardings.lock().unwrap_or_else(|e| e.into_inner());
        let theirs = all.entry(operator.to_owned()).or_default();
        theirs.retain(|t| !t.is_cancelled());
        theirs.push(token.clone());
        token
    }

    /// Ends every agent forwarding of `operator`'s open now (forwarding was turned off for
    /// them); says how many were.
    pub fn end_forwardings(&self, operator: &str) -> usize {
        let mut all = self.forwardings.lock().unwrap_or_else(|e| e.into_inner());
        all.remove(operator)
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !t.is_cancelled())
            .inspect(CancellationToken::cancel)
            .count()
    }

    /// How many connections are logged in.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn snapshot(&self) -> Vec<(u64, String, String, Vec<String>)> {
        self.entries.lock().map_or_else(
            |_| Vec::new(),
            |entries| {
                entries
                    .iter()
                    .map(|(id, e)| {
                        (
                            *id,
                            e.operator.clone(),
                            e.credential.clone(),
                            e.agents.keys().cloned().collect(),
                        )
                    })
                    .collect()
            },
        )
    }

    /// Ends connection `id`; true if this ended it (it was not ended already).
    fn revoke(&self, id: u64, why: &str) -> bool {
        self.revocation(id).is_some_and(|r| r.revoke(why))
    }
}

/// An attach under way from a control connection ([`LiveConnections::enter`]).
pub struct Entered {
    live: Arc<LiveConnections>,
    id: u64,
    agent: String,
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Ok(mut entries) = self.live.entries.lock()
            && let Some(entry) = entries.get_mut(&self.id)
            && let Some(count) = entry.agents.get_mut(&self.agent)
        {
            *count -= 1;
            if *count == 0 {
                entry.agents.remove(&self.agent);
            }
        }
    }
}

/// Ends every connection (but `except`) whose credential no longer names its operator, or
/// that reaches an agent its operator may no longer use. Returns how many it ended.
pub async fn revalidate(gw: &Gateway, except: Option<u64>) -> usize {
    // Many connections share a credential and agents: each is looked up once per pass.
    let mut operators: HashMap<String, Option<crate::store::Operator>> = HashMap::new();
    let mut allowed: HashMap<(String, String), bool> = HashMap::new();
    let mut ended = 0;
    let policy = gw.policy();
    for (id, operator, credential, agents) in gw.live.snapshot() {
        if Some(id) == except {
            continue;
        }
        let now = match operators.get(&credential) {
            Some(known) => known.clone(),
            None => match gw.store.operator_by_credential(&credential).await {
                Ok(found) => {
                    operators.insert(credential.clone(), found.clone());
                    found
                }
                Err(e) => {
                    warn!(error = %e, "cannot check a connection's access");
                    continue;
                }
            },
        };
        let Some(now) = now.filter(|now| access::still_admitted(&operator, Some(now))) else {
            end(
                gw,
                id,
                &operator,
                &credential,
                "your key or login was removed",
            )
            .await;
            ended += 1;
            continue;
        };
        for agent in agents {
            let key = (now.name.clone(), agent.clone());
            let may = match allowed.get(&key) {
                Some(may) => *may,
                None => match gw.store.agent(&agent).await {
                    Ok(found) => {
                        let may = access::may_keep(&now, found.as_ref().map(Into::into), policy);
                        allowed.insert(key, may);
                        may
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot check a connection's access");
                        true
                    }
                },
            };
            if !may {
                let why = format!("you may no longer use agent '{agent}'");
                end(gw, id, &operator, &credential, &why).await;
                ended += 1;
                break;
            }
        }
    }
    ended
}

async fn end(gw: &Gateway, id: u64, operator: &str, credential: &str, why: &str) {
    // A connection still closing from an earlier pass is not ended (nor recorded) again.
    if !gw.live.revoke(id, why) {
        return;
    }
    info!(
        operator,
        key = credential,
        why,
        "ending a connection: its access was taken back"
    );
    let event = Event {
        operator: Some(operator.to_owned()),
        detail: format!("connection ended (key {credential})"),
        message: why.to_owned(),
        ..Event::new(EventKind::Session, EventResult::Revoked)
    };
    if let Err(e) = gw.store.record_event(&event).await {
        warn!(error = %e, "could not record an audit event");
    }
}

/// Checks every connection every [`SWEEP_EVERY`] until the gateway stops accepting clients.
pub async fn sweep(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if !gw.live.is_empty() {
                    revalidate(&gw, None).await;
                }
            }
            () = gw.shutdown_accepting.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attaches_count_and_a_revocation_says_why_once() {
        let live = Arc::new(LiveConnections::default());
        let r = Arc::new(Revocation::default());
        let id = live.register("bob", "SHA256:x", r.clone());
        let first = live.enter(id, "a");
        let second = live.enter(id, "a");
        assert_eq!(live.snapshot()[0].3, vec!["a".to_owned()]);
        drop(first);
        assert_eq!(live.snapshot()[0].3, vec!["a".to_owned()]);
        drop(second);
        assert!(live.snapshot()[0].3.is_empty());
        assert!(live.revoke(id, "first"));
        assert!(!r.revoke("second"));
        let why = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(r.revoked());
        assert_eq!(why, "first");
        live.unregister(id);
        assert!(live.is_empty());
    }

    #[test]
    fn turning_an_operators_forwarding_off_ends_theirs_and_no_one_elses() {
        let live = LiveConnections::default();
        let bobs = [live.forwarding_opened("bob"), live.forwarding_opened("bob")];
        let ann = live.forwarding_opened("ann");
        // One of bob's ended by itself: not counted again.
        bobs[0].cancel();
        assert_eq!(live.end_forwardings("bob"), 1);
        assert!(bobs.iter().all(CancellationToken::is_cancelled));
        assert!(!ann.is_cancelled());
        assert_eq!(live.end_forwardings("bob"), 0);
        assert_eq!(live.end_forwardings("nobody"), 0);
    }
}
