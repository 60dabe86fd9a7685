//! `wait NAME [--until STATUS[,STATUS]] [--timeout SECONDS]`
//!
//! Without `--until`: returns when the agent's process exits, with its exit code.
//! With `--until`: returns as soon as the agent's status is one of those named (`waiting`,
//! `idle`, `working`, `running`, `exited`, `stopped`...), printing it.

use std::time::Duration;

use clap::Args;

use super::output::{Statuses, parse_statuses, status_matches, status_text};
use super::{Caller, CommandError, CommandIo, CommandResult, agent_and_host, exit};
use crate::agents::Core;
use crate::agents::reconcile;
use crate::model::AgentStatus;
use tokio_util::sync::CancellationToken;

const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Args)]
#[command(after_help = "Exit status:
  without --until: the agent's exit code; 1 if it is stopped or cannot be asked
  with --until:    0 once the agent has one of the statuses; 1 if it can no longer get one
                   (it exited or was stopped, and that status was not asked for), or cannot
                   be asked
  124 on timeout, 2 on a usage error.")]
pub struct WaitArgs {
    /// The agent's name.
    pub name: String,
    /// Wait until the agent has one of these statuses (comma-separated): working, waiting,
    /// idle, running, exited, stopped, unknown.
    #[arg(long, value_name = "STATUS[,STATUS]", value_parser = parse_statuses)]
    pub until: Option<Statuses>,
    /// Give up after this many seconds (exit status 124).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
}

pub async fn run(
    core: &Core<'_>,
    shutdown: &CancellationToken,
    caller: &Caller,
    args: WaitArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let (_agent, host) = agent_and_host(core, caller, &args.name).await?;
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
    let name = &args.name;
    loop {
        // The agent's row as it was (its activity so far), then what its host says now.
        let before = crate::agents::access::agent(core.store, &caller.operator, name)
            .await?
            .ok_or_else(|| CommandError::no_agent(name))?;
        let seen = match host.info(name).await {
            // A row still being created is its create's to record: its host may show the
            // agent half made.
            Ok(_) if before.status == crate::model::AgentStatus::Creating => None,
            Ok(info) => Some(reconcile::observed_from(core, &before, &info)),
            Err(e) if args.until.is_some() && e.host_unreachable() => Some(reconcile::unknown()),
            Err(e) => return Err(e.into()),
        };
        let recorded = match &seen {
            Some(seen) => core.store.observe_agent(name, seen).await,
            None => Ok(()),
        };
        let agent = match recorded {
            Ok(()) => crate::agents::access::agent(core.store, &caller.operator, name)
                .await?
                .ok_or_else(|| CommandError::no_agent(name))?,
            // The wait goes on from what the host says; the record waits for the store.
            Err(e) => {
                tracing::warn!(agent = name.as_str(), error = %e, "cannot record an agent's status");
                match &seen {
                    Some(seen) => crate::agents::lifecycle::as_seen(before, seen),
                    None => before,
                }
            }
        };
        match &args.until {
            None => match agent.status {
                AgentStatus::Exited => {
                    let code = agent.exit_code.unwrap_or(1);
                    io.write_out(&format!("agent '{name}' exited with status {code}\n"))
                        .await;
                    return Ok(u32::try_from(code).unwrap_or(exit::FAILED));
                }
                AgentStatus::Stopped => {
                    return Err(CommandError::failed(format!("agent '{name}' is stopped")));
                }
                _ => {}
            },
            Some(wanted) => {
                if wanted.0.iter().any(|w| status_matches(&agent, w)) {
                    let reason = agent
                        .activity
                        .reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default();
                    io.write_out(&format!(
                        "agent '{name}' is {}{reason}\n",
                        status_text(&agent)
                    ))
                    .await;
                    return Ok(exit::OK);
                }
                if matches!(agent.status, AgentStatus::Exited | AgentStatus::Stopped) {
                    return Err(CommandError::failed(format!(
                        "agent '{name}' is {}, and will not become {} by itself",
                        status_text(&agent),
                        wanted.0.join(" or ")
                    ))
                    .hint(format!("start it again with: ssh core start {name}")));
                }
            }
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            let what = match &args.until {
                None => "still running".to_owned(),
                Some(_) => format!("still {}", status_text(&agent)),
            };
            io.write_err(&format!(
                "error: agent '{name}' is {what} after the timeout\n"
            ))
            .await;
            return Ok(exit::TIMEOUT);
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = io.closed.cancelled() => return Ok(exit::FAILED),
            () = shutdown.cancelled() => return Err(CommandError::failed("the gateway is shutting down")),
        }
    }
}
