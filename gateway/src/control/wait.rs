//! `wait NAME [--timeout SECONDS]`: returns when the agent's process exits, with its exit code.
//! Exit status: the agent's exit code; 1 if it was stopped or cannot be asked; 124 on timeout.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use hostctl::api::HostAgentStatus;

use super::{Caller, CommandError, CommandIo, CommandResult, agent_and_host, exit};
use crate::Gateway;
use crate::hosts::reconciler;

const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: the agent's exit code; 1 if it is stopped or cannot be asked; 124 on timeout."
)]
pub struct WaitArgs {
    /// The agent's name.
    pub name: String,
    /// Give up after this many seconds (exit status 124).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
}

pub async fn run(
    gw: &Arc<Gateway>,
    caller: &Caller,
    args: WaitArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let (_agent, host) = agent_and_host(gw, caller, &args.name).await?;
    let deadline = match args.timeout {
        Some(t) if t.is_finite() && t >= 0.0 => {
            Some(tokio::time::Instant::now() + Duration::from_secs_f64(t.min(1e9)))
        }
        Some(_) => {
            return Err(CommandError::usage(
                "--timeout must be a number of seconds, 0 or more",
            ));
        }
        None => None,
    };
    loop {
        let info = host.info(&args.name).await?;
        gw.store
            .observe_agent(&args.name, &reconciler::observed(&info))
            .await?;
        match info.status {
            HostAgentStatus::Exited => {
                let code = info.exit_code.unwrap_or(1);
                io.write_out(&format!(
                    "agent '{}' exited with status {code}\n",
                    args.name
                ))
                .await;
                return Ok(u32::try_from(code).unwrap_or(exit::FAILED));
            }
            HostAgentStatus::Stopped => {
                return Err(CommandError::failed(format!(
                    "agent '{}' is stopped",
                    args.name
                )));
            }
            HostAgentStatus::Running => {}
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            io.write_err(&format!(
                "error: agent '{}' is still running after the timeout\n",
                args.name
            ))
            .await;
            return Ok(exit::TIMEOUT);
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = io.closed.cancelled() => return Ok(exit::FAILED),
            () = gw.shutdown.cancelled() => return Err(CommandError::failed("the gateway is shutting down")),
        }
    }
}
