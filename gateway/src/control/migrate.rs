//! `migrate NAME HOST [--json]`: moves an agent to another host. It is stopped, its workspace
//! streamed to the other host and verified there, started there, and only then removed from
//! the old host. A failure before the move is complete leaves the agent where it was, as it
//! was.

use clap::Args;

use super::output::{agent_json, json_text, status_text};
use super::{Caller, CommandIo, CommandResult, exit};
use crate::agents::Core;
use crate::agents::transfer::migrate::{MigrateRequest, migrate};

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  ssh core migrate fix-ci gpu-box")]
pub struct MigrateArgs {
    /// The agent to move.
    pub name: String,
    /// The host to move it to (see `host list`).
    pub host: String,
    /// Print the moved agent as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(
    core: &Core<'_>,
    caller: &Caller,
    args: MigrateArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let request = MigrateRequest {
        name: args.name,
        host: args.host,
    };
    let moved = migrate(core, &caller.operator, request).await?;
    let (agent, name) = (&moved.agent, &moved.agent.name);
    if args.json {
        io.write_out(&json_text(&agent_json(agent))).await;
    } else {
        io.write_out(&format!(
            "moved agent '{name}' from host {} to host {} ({}); workspace {} ({} entries, {} bytes, verified)\n",
            moved.from_host,
            agent.host,
            status_text(agent),
            agent.workspace,
            moved.digest.entries,
            moved.digest.bytes
        ))
        .await;
    }
    if let Some(e) = moved.leftover {
        io.write_err(&format!(
            "warning: the old copy on host '{}' could not be removed ({e}); remove it there with: hostctl destroy {name}\n",
            moved.from_host
        ))
        .await;
    }
    Ok(exit::OK)
}
