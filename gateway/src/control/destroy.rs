//! `destroy NAME [--force]` (or `destroy --tag K=V [--yes] [--force]`): deletes the agent, its session, its files and the workspace its
//! host created (a `--dir` workspace is never deleted). A running agent needs `--force`.

use clap::Args;

use super::many::Targets;
use super::{Caller, CommandIo, CommandResult, exit, refreshed_agent, require_owner};
use crate::agents::Core;
use crate::agents::lifecycle;

// `destroy NAME [--force]` or `destroy --tag K=V [--yes] [--force]`: each agent by
// [`destroy_one`].
#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub targets: Targets,
    /// Destroy it even if it is running.
    #[arg(long, short)]
    pub force: bool,
}

pub async fn destroy_one(
    core: &Core<'_>,
    caller: &Caller,
    name: &str,
    force: bool,
    io: &mut CommandIo,
) -> CommandResult {
    let (agent, host) = refreshed_agent(core, caller, name).await?;
    require_owner(caller, &agent, "destroy it")?;
    let done = lifecycle::destroy(core, &caller.operator, &agent, &host, force).await?;
    let what = || format!("agent '{name}' was destroyed on host {}", agent.host);
    let later = format!(
        "it stays listed (as unknown) until the gateway's next start finishes the destroy, or until: ssh core destroy {name} --force"
    );
    super::recorded(io, done.recorded, what, &later).await;
    io.write_out(&format!(
        "destroyed agent '{name}' on host {}\n",
        agent.host
    ))
    .await;
    Ok(exit::OK)
}
