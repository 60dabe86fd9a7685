//! The control commands: `ssh gw COMMAND ...`. They parse, call the core and print.
//!
//! [`parse`] turns an exec string into a [`ControlCommand`] (pure: a refusal is a value);
//! [`dispatch`] runs it against the gateway, writes to the client's streams and returns the
//! exit status: 0 ok, 1 failed or not found, 2 usage. One file per command.

pub mod answer;
pub mod attach;
pub mod clone;
pub mod create;
pub mod destroy;
pub mod diff;
mod dispatch;
pub mod doctor;
pub mod events;
pub mod host;
pub mod info;
pub mod key;
pub mod list;
pub mod logs;
pub mod many;
pub mod migrate;
pub mod notify;
pub mod output;
mod parse;
pub mod restart;
pub mod secret;
pub mod seen;
pub mod send;
pub mod share;
pub mod snapshot;
pub mod ssh_config;
pub mod start;
pub mod stop;
pub mod tag;
pub mod top;
pub mod usage;
pub mod version;
pub mod wait;
pub mod watch;
pub mod whoami;

pub use crate::agents::Caller;
use crate::agents::Core;
use crate::agents::access;
pub use crate::agents::audit::record;
pub use crate::agents::said::{
    CommandError, CommandResult, SEEN_AGAIN, exit, not_recorded, recorded,
};
use crate::hosts::Host;
use crate::store::AgentRecord;
pub use crate::streams::{CommandIo, Terminal};
pub use dispatch::dispatch;
pub use parse::{ControlCli, ControlCommand, JsonArg, NameArg, Parsed, help_text, parse, redacted};

/// Refuses a command that changes what only admins manage (`what`: "add hosts").
pub fn require_admin(caller: &Caller, what: &str) -> Result<(), CommandError> {
    if access::may_administer(&caller.operator) {
        return Ok(());
    }
    Err(CommandError::failed(format!(
        "only admins can {what}; you are '{}', an operator",
        caller.operator.name
    ))
    .hint("ask an admin of this gateway (see them with: ssh gw operator list)"))
}

/// Refuses what only an agent's owner (its creator) or an admin may do, such as destroying
/// it (`agents::shares::require_owner`).
pub fn require_owner(
    caller: &Caller,
    agent: &AgentRecord,
    what: &'static str,
) -> Result<(), CommandError> {
    Ok(crate::agents::shares::require_owner(
        &caller.operator,
        agent,
        what,
    )?)
}

/// Looks up an agent the caller may use and its host (`agents::lifecycle::usable`). An agent
/// the caller may not see does not exist for them: the answer is the same.
pub async fn agent_and_host(
    core: &Core<'_>,
    caller: &Caller,
    name: &str,
) -> Result<(AgentRecord, Host), CommandError> {
    Ok(crate::agents::lifecycle::usable(core, &caller.operator, name).await?)
}

/// Whether `operator` may have agents on `host` (`agents::access::may_use_host`).
pub fn may_use_host(core: &Core<'_>, operator: &crate::store::Operator, host: &str) -> bool {
    access::may_use_host(operator, host, core.policy)
}

/// Looks up an agent, asks its host for its current state and stores it
/// (`agents::lifecycle::refreshed`).
pub async fn refreshed_agent(
    core: &Core<'_>,
    caller: &Caller,
    name: &str,
) -> Result<(AgentRecord, Host), CommandError> {
    Ok(crate::agents::lifecycle::refreshed(core, &caller.operator, name).await?)
}

/// What `stop`, `start` and `destroy` do to each agent they chose (`many::each`).
#[derive(Clone, Copy, Debug)]
pub enum Each {
    Stop,
    Start,
    Destroy { force: bool },
}

impl Each {
    /// The command's name, for the confirmation and the audit trail.
    pub fn verb(self) -> &'static str {
        match self {
            Each::Stop => "stop",
            Each::Start => "start",
            Each::Destroy { .. } => "destroy",
        }
    }

    /// Does it to agent `name` (the caller holds the agent's turn).
    pub async fn run(
        self,
        core: &Core<'_>,
        caller: &Caller,
        name: &str,
        io: &mut CommandIo,
    ) -> CommandResult {
        match self {
            Each::Stop => stop::run(core, caller, name, io).await,
            Each::Start => start::run(core, caller, name, io).await,
            Each::Destroy { force } => destroy::destroy_one(core, caller, name, force, io).await,
        }
    }
}
