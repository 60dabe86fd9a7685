//! `clone SRC DST [--host H] [--json]`: a new agent with another agent's settings and a copy
//! of its workspace, on the same host or another one.

use clap::Args;

use super::output::{agent_json, json_text, status_text};
use super::{Caller, CommandIo, CommandResult, exit};
use crate::agents::Core;
use crate::agents::transfer::clone::{CloneRequest, clone};

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ssh core clone fix-ci fix-ci-2\n  ssh core clone fix-ci try-gpu --host gpu-box\n\nThe workspace is copied as it is at that moment: stop SRC first for a quiet copy (a copy\nthat changed while it was made is refused)."
)]
pub struct CloneArgs {
    /// The agent to copy.
    pub src: String,
    /// The new agent's name.
    pub dst: String,
    /// The host to create it on (default: SRC's host).
    #[arg(long, short = 'H', value_name = "HOST")]
    pub host: Option<String>,
    /// Print the new agent as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(
    core: &Core<'_>,
    caller: &Caller,
    args: CloneArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let request = CloneRequest {
        source: args.src,
        name: args.dst,
        host: args.host,
        size: io.terminal.as_ref().map(|t| *t.size.borrow()),
    };
    let cloned = clone(core, &caller.operator, request).await?;
    let (src, agent) = (&cloned.source, &cloned.agent);
    if args.json {
        io.write_out(&json_text(&agent_json(agent))).await;
    } else {
        let digest = cloned
            .digest
            .map(|d| format!("{} entries, {} bytes, verified", d.entries, d.bytes))
            .unwrap_or_default();
        io.write_out(&format!(
            "cloned '{}' (host {}) as '{}' on host {} ({}); workspace {} ({digest})\n",
            src.name,
            src.host,
            agent.name,
            agent.host,
            status_text(agent),
            agent.workspace
        ))
        .await;
    }
    Ok(exit::OK)
}
