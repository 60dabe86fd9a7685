//! `stop NAME`: ends the agent's session; the workspace and files stay.

use super::{Caller, CommandIo, CommandResult, agent_and_host, exit};
use crate::agents::Core;
use crate::agents::lifecycle;

pub async fn run(
    core: &Core<'_>,
    caller: &Caller,
    name: &str,
    io: &mut CommandIo,
) -> CommandResult {
    let (agent, host) = agent_and_host(core, caller, name).await?;
    let done = lifecycle::stop(core, &agent, &host).await?;
    let what = || format!("agent '{name}' was stopped on host {}", agent.host);
    super::recorded(io, done.recorded, what, super::SEEN_AGAIN).await;
    io.write_out(&format!(
        "stopped agent '{name}' on host {} (workspace kept)\n",
        agent.host
    ))
    .await;
    Ok(exit::OK)
}
