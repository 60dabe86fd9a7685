//! What an agent uses of its host (`hostctl usage`): the CPU and memory of its process tree
//! and the disk its workspace takes, as hostctl measured them in one look at the host.

use serde::{Deserialize, Serialize};

/// `hostctl usage [NAME] --json`: every agent of the host (or the one named), each measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    #[serde(default)]
    pub agents: Vec<AgentUsage>,
}

/// One agent's use of its host. Its processes are the pane's process and all its descendants
/// (in its sandbox too), as /proc shows them when it was asked; a stopped agent has none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentUsage {
    pub name: String,
    /// How many processes its tree has.
    #[serde(default)]
    pub processes: u32,
    /// The CPU time (user and system) its live processes have used, in seconds.
    #[serde(default)]
    pub cpu_seconds: f64,
    /// Its CPU use over the last [`cpu_window_seconds`](Self::cpu_window_seconds), in percent
    /// of one core (a tree busy on two cores is 200); none when not known.
    #[serde(default)]
    pub cpu_percent: Option<f64>,
    /// What `cpu_percent` is measured over: since the host was last asked, or, the first time,
    /// since the agent's process started.
    #[serde(default)]
    pub cpu_window_seconds: Option<f64>,
    /// The resident memory of its processes, summed as `ps -o rss` would (pages two of them
    /// share count twice), in bytes.
    #[serde(default)]
    pub memory_bytes: u64,
    /// The disk its workspace takes, as `du -sk` counts it (allocated blocks, a hard-linked
    /// file once), in bytes; none when it could not be measured in time (then `disk_note`).
    #[serde(default)]
    pub disk_bytes: Option<u64>,
    /// Why `disk_bytes` is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_note: Option<String>,
}
