//! The per-agent locks: one change of an agent's life at a time.

use std::collections::HashMap;
use std::sync::Arc;

/// One change of an agent's life at a time: `stop`, `start`, `restart`, `destroy` and
/// `migrate` (and `clone` of its source, `snapshot` of it) of one agent take turns, each finding the agent as
/// the one before left it. Commands that only look, attaching and sessions inside it do not
/// wait.
#[derive(Debug, Default)]
pub struct AgentLocks(std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl AgentLocks {
    /// Waits for agent `name`'s turn; it lasts until the guard is dropped.
    pub async fn hold(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = match self.0.lock() {
            Ok(mut map) => {
                // Forget the locks nobody holds or waits for (their agents may be gone).
                map.retain(|_, lock| Arc::strong_count(lock) > 1);
                map.entry(name.to_owned()).or_default().clone()
            }
            Err(_) => Arc::default(),
        };
        lock.lock_owned().await
    }
}
