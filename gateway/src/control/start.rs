//! `start NAME`: starts a stopped or exited agent (with its template's restart command when
//! it has one).

use hostctl::api::HostAgentStatus;

use super::{Caller, CommandIo, CommandResult, exit, refreshed_agent};
use crate::agents::Core;
use crate::agents::lifecycle;
use crate::model::AgentStatus;

pub async fn run(
    core: &Core<'_>,
    caller: &Caller,
    name: &str,
    io: &mut CommandIo,
) -> CommandResult {
    let (agent, host) = refreshed_agent(core, caller, name).await?;
    if agent.status == AgentStatus::Running {
        io.write_out(&format!("agent '{name}' is already running\n"))
            .await;
        return Ok(exit::OK);
    }
    let done = lifecycle::start(core, &agent, &host).await?;
    let what = || format!("agent '{name}' was started on host {}", agent.host);
    super::recorded(io, done.recorded, what, super::SEEN_AGAIN).await;
    let verb = if done.value.status == HostAgentStatus::Running {
        "started"
    } else {
        "started (it has already exited)"
    };
    io.write_out(&format!("{verb} agent '{name}' on host {}\n", agent.host))
        .await;
    Ok(exit::OK)
}
