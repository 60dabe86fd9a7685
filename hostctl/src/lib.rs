//! hostctl: the host side of agentgate.
//!
//! It owns tmux and the agent files on one host, and nothing else: it knows no operators, no
//! gateway state and no network. The gateway reaches every host, its own included, through the
//! `hostctl VERB ... --json` contract whose types are in [`api`].
//!
//! - [`api`]: the JSON contract (the only types that cross the process boundary).
//! - [`files`]: `$AGENTGATE_HOME/agents/<name>/` and `workspaces/<name>/`.
//! - [`tmux`]: the tmux driver, the only code that runs tmux.
//! - [`logwriter`]: output.log, kept within its limit.
//! - [`logview`]: output.log rendered through a terminal emulator, as lines to read.
//! - [`procs`]: the processes an agent's run started, ended when it stops.
//! - [`sandbox`]: the bubblewrap sandbox an agent and the sessions inside it run in.
//! - [`enter`]: sessions joining their agent's running sandbox.
//! - [`verbs`]: create, list, info, stop, start, destroy, logs, send, attach.
//! - [`transfer`]: pack, unpack, digest, discard: workspaces moved between hosts.
//! - [`snapshots`]: snapshot, snapshot-read, snapshot-remove: workspaces kept for later.
//! - [`diff`]: what changed in a workspace since its agent was created.
//! - [`usage`]: the CPU, memory and disk each agent uses.

pub mod agent_socket;
pub mod api;
pub mod cgroups;
pub mod diff;
pub mod disk;
pub mod enter;
pub mod error;
pub mod files;
pub mod hooks;
pub mod logview;
pub mod logwriter;
pub mod procs;
pub mod sandbox;
pub mod serve;
pub mod snapshots;
pub mod tmux;
pub mod transfer;
pub mod usage;
pub mod userenv;
pub mod verbs;

pub use error::{Error, Result};
pub use verbs::HostCtl;

/// This build's version, reported by `hostctl version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
