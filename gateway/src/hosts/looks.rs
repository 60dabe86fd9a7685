//! The reconciler's memory of its looks at each host's screens: from when to read them next,
//! and when the last look ended (a look kept waiting by another takes its answer).

use std::collections::HashMap;
use std::sync::Mutex;

/// The last look at one host. Its lock makes the looks at one host one at a time.
#[derive(Debug, Default)]
pub struct HostLook {
    /// A second before the host's own time (Unix seconds) at the last look, so the next look
    /// reads only the screens with output since (`None`: read them all).
    pub mark: Option<i64>,
    /// When the last look ended: a look asked for before then, and kept waiting by it, takes
    /// its answer instead of asking the host again.
    pub done_at: Option<std::time::Instant>,
}

/// Every host's [`HostLook`].
#[derive(Debug, Default)]
pub struct ScreenMarks(Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<HostLook>>>>);

impl ScreenMarks {
    pub fn for_host(&self, host: &str) -> std::sync::Arc<tokio::sync::Mutex<HostLook>> {
        match self.0.lock() {
            Ok(mut map) => map.entry(host.to_owned()).or_default().clone(),
            Err(_) => std::sync::Arc::default(),
        }
    }
}
