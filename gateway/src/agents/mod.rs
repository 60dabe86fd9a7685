//! The core of what happens to agents, below both routes: the control commands, the agent
//! route and the live view all call it.
//!
//! - [`access`]: who may see and use what (every rule, as pure functions of the store's facts);
//! - [`lifecycle`]: finding an agent one may use, its fresh state, starting, stopping and
//!   restarting it, each with the record of what its host said;
//! - [`journal`]: multi-step changes of an agent's life that a gateway's death cannot leave
//!   half done;
//! - [`activity`]: whether a running agent works, waits (and on what) or idles;
//! - [`reconcile`]: the store following what the hosts say (the reconciler, the hooks' watch,
//!   snapshots found on hosts, hosts that follow their tailnet peer);
//! - [`hooks`]: what its CLI's hooks said; [`deliver`]: text and keys that reach its CLI;
//! - [`secrets`]: the secrets its environment gets at each start;
//! - [`transfer`]: an agent's workspace carried elsewhere: cloned, migrated, snapshotted,
//!   restored from a snapshot;
//! - [`usage`]: the CPU, memory and disk each agent uses, as its host measures it;
//! - [`shares`]: whom else an agent is shared with; [`tags`]: the labels it is selected by;
//! - [`audit`]: the trail of who did what; [`locks`]: one change of an agent's life at a time;
//! - [`live`]: the connections logged in now and the agents each reaches, ended when their
//!   access is taken back (the SSH layer registers them, the commands that take access back
//!   check them, neither through the other);
//! - [`attach`]: a client's terminal joined to an agent's tmux session, for both routes;
//! - [`said`]: how a failure is told to an SSH client (`error:`, a hint, an exit status),
//!   the same on both routes.
//!
//! [`Caller`] is who asks: an operator, the key or login they came with, from where.
//! [`Core`] is what the core's operations use of the gateway, borrowed for one call
//! (`Gateway::core`): the records, the hosts, the tailnet's view, the per-agent locks, what
//! operators typed, the status rules and settings, the access policy, the default host and
//! this run's ID. The configuration file, the client key, the gateway's tasks and shutdown,
//! the live connections and the notifier are not in it.
//!
//! Its one error, [`Error`], is turned by each route into its own output.

mod error;

pub mod access;
pub mod activity;
pub mod attach;
pub mod audit;
pub mod create;
pub mod deliver;
pub mod hooks;
pub mod journal;
pub mod lifecycle;
pub mod live;
pub mod locks;
pub mod placement;
pub mod reconcile;
pub mod said;
pub mod secrets;
pub mod shares;
pub mod tags;
pub mod transfer;
pub mod usage;

pub use error::{Error, LOCAL_FOR_ADMINS, LabelError, Purpose, Result, TagProblem};

use crate::config::StatusConfig;
use crate::hosts::Hosts;
use crate::store::Store;
use crate::tailscale::Tailnet;

/// The parts of the gateway the core's operations use, borrowed for one call.
#[derive(Clone, Copy)]
pub struct Core<'a> {
    pub store: &'a Store,
    pub hosts: &'a Hosts,
    /// The tailnet, as the local tailscaled reports it (a host it says is down is not asked).
    pub tailnet: &'a Tailnet,
    /// One change of an agent's life at a time.
    pub locks: &'a locks::AgentLocks,
    /// When operators last typed into each agent.
    pub inputs: &'a activity::Inputs,
    /// The templates' rules for telling that an agent waits for the operator.
    pub status_rules: &'a activity::Rules,
    /// The status settings of the configuration (how long quiet means idle, ...).
    pub status: &'a StatusConfig,
    /// Who may see and use what, from the configuration.
    pub policy: access::Policy,
    /// Where a new agent goes when its command names no host (`hosts.default_host`).
    pub default_host: Option<&'a str>,
    /// This run's ID, written into the operations it begins (`agents::journal`).
    pub run_id: &'a str,
}

/// Who runs a command, and from where.
#[derive(Clone, Debug)]
pub struct Caller {
    pub operator: crate::store::Operator,
    pub key_fingerprint: String,
    pub source: String,
    /// The connection's ID among the live ones (`agents::live`).
    pub connection: u64,
}
