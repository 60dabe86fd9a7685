//! `restart NAME`: stop, then start.

use std::sync::Arc;

use super::{Caller, CommandIo, CommandResult, agent_and_host, exit};
use crate::Gateway;
use crate::hosts::reconciler;

pub async fn run(
    gw: &Arc<Gateway>,
    caller: &Caller,
    name: &str,
    io: &mut CommandIo,
) -> CommandResult {
    let (agent, host) = agent_and_host(gw, caller, name).await?;
    let secrets = super::secret::values(gw, &agent.spec.secret_names).await?;
    host.stop(name).await?;
    let info = host.start(name, None, &secrets).await?;
    let saved = gw
        .store
        .observe_agent(name, &reconciler::observed(&info))
        .await;
    let done = || format!("agent '{name}' was restarted on host {}", agent.host);
    super::recorded(io, saved, done, super::SEEN_AGAIN).await;
    io.write_out(&format!(
        "restarted agent '{name}' on host {}\n",
        agent.host
    ))
    .await;
    Ok(exit::OK)
}
