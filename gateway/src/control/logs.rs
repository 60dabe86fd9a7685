//! `logs NAME [-n N] [-f] [--raw]`: the agent's output as it read on its screen (hostctl
//! renders it through a terminal emulator), or with `--raw` the bytes the pane printed.

use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::{Caller, CommandError, CommandIo, CommandResult, agent_and_host, exit};
use crate::agents::Core;
use crate::hosts::local::read_all;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The agent's name.
    pub name: String,
    /// Only the last N lines (at most 100000).
    #[arg(short = 'n', long = "lines", value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new()
              .range(0..=hostctl::verbs::MAX_LOG_LINES as u64))]
    pub lines: Option<usize>,
    /// Keep printing new output until interrupted.
    #[arg(short, long)]
    pub follow: bool,
    /// The bytes as the agent printed them, terminal escapes and all (colours, cursor moves).
    #[arg(long)]
    pub raw: bool,
}

pub async fn run(
    core: &Core<'_>,
    shutdown: &CancellationToken,
    caller: &Caller,
    args: LogsArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let (agent, host) = agent_and_host(core, caller, &args.name).await?;
    let mut process = host
        .logs(&args.name, args.lines, args.follow, args.raw)
        .await?;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = tokio::select! {
            read = process.stdout.read(&mut buf) => read.unwrap_or(0),
            () = io.closed.cancelled() => 0,
            () = shutdown.cancelled() => 0,
        };
        if n == 0 {
            break;
        }
        if io.stdout.write_all(&buf[..n]).await.is_err() {
            break;
        }
        let _ = io.stdout.flush().await;
    }
    if io.closed.is_cancelled() {
        return Ok(exit::OK);
    }
    let stderr = read_all(process.stderr).await;
    match process.exit.await {
        crate::hosts::ProcessExit::Code(0) => Ok(exit::OK),
        crate::hosts::ProcessExit::Lost => Err(CommandError::host_lost(&agent.host, &agent.name)),
        _ => Err(CommandError::failed(
            stderr
                .trim()
                .trim_start_matches("hostctl: error: ")
                .to_owned(),
        )),
    }
}
