//! `diff NAME [--stat] [--json]`: what changed in an agent's workspace since it was created.
//! hostctl works it out on the agent's host (git when the workspace is a repository, else the
//! list of files recorded at creation); its output is streamed to the client as it comes.

use std::sync::Arc;

use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Caller, CommandError, CommandIo, CommandResult, agent_and_host, exit};
use crate::Gateway;
use crate::hosts::ProcessExit;
use crate::hosts::local::read_all;
use crate::store::AgentStatus;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ssh gw diff fix-ci\n  ssh gw diff fix-ci --stat\n  ssh gw diff fix-ci --json | jq '.changes[].path'\n\nIn a git repository: `git status --short`, the untracked files, then `git diff HEAD`.\nElsewhere: the files added (A), changed (M) and removed (D) since the agent was created."
)]
pub struct DiffArgs {
    /// The agent's name.
    pub name: String,
    /// Names and counts only: `git diff --stat`, or no per-file lines.
    #[arg(long)]
    pub stat: bool,
    /// Print one JSON object (kind "git" or "files").
    #[arg(long)]
    pub json: bool,
}

pub async fn run(
    gw: &Arc<Gateway>,
    caller: &Caller,
    args: DiffArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let (agent, host) = agent_and_host(gw, caller, &args.name).await?;
    if agent.status == AgentStatus::Creating {
        return Err(
            CommandError::failed(format!("agent '{}' is still being created", agent.name))
                .hint("try again in a moment"),
        );
    }
    let mut process = host.diff(&args.name, args.stat, args.json).await?;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = tokio::select! {
            read = process.stdout.read(&mut buf) => read.unwrap_or(0),
            () = io.closed.cancelled() => 0,
            () = gw.shutdown.cancelled() => 0,
        };
        if n == 0 {
            break;
        }
        if io.stdout.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = io.stdout.flush().await;
    if io.closed.is_cancelled() {
        (process.signal)("TERM");
        return Ok(exit::OK);
    }
    let stderr = read_all(process.stderr).await;
    let message = stderr
        .trim()
        .trim_start_matches("hostctl: error: ")
        .to_owned();
    match process.exit.await {
        ProcessExit::Code(0) => Ok(exit::OK),
        ProcessExit::Lost => Err(CommandError::host_lost(&agent.host, &agent.name)),
        ProcessExit::Code(2) => Err(CommandError::usage(message)),
        _ if message.contains("nothing to compare") => Err(CommandError::failed(message).hint(
            "to follow its changes from now on, make it a git repository with a first commit",
        )),
        _ => Err(CommandError::failed(message)),
    }
}
