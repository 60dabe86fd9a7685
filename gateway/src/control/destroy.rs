//! `destroy NAME [--force]` (or `destroy --tag K=V [--yes] [--force]`): deletes the agent, its session, its files and the workspace its
//! host created (a `--dir` workspace is never deleted). A running agent needs `--force`.

use std::sync::Arc;

use clap::Args;

use super::{Caller, CommandError, CommandIo, CommandResult, exit, refreshed_agent, require_owner};
use crate::Gateway;
use crate::agents::journal::{Intent, Planned};
use crate::hosts::HostError;
use crate::store::{AgentStatus, OperationKind, Step};

#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub targets: super::many::Targets,
    /// Destroy it even if it is running.
    #[arg(long, short)]
    pub force: bool,
}

pub async fn run(
    gw: &Arc<Gateway>,
    caller: &Caller,
    args: DestroyArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let op = super::many::Op::Destroy { force: args.force };
    super::many::each(gw, caller, &args.targets, op, io).await
}

pub async fn destroy_one(
    gw: &Arc<Gateway>,
    caller: &Caller,
    name: &str,
    force: bool,
    io: &mut CommandIo,
) -> CommandResult {
    let (agent, host) = refreshed_agent(gw, caller, name).await?;
    require_owner(caller, &agent, "destroy it")?;
    if agent.status == AgentStatus::Running && !force {
        return Err(
            CommandError::failed(format!("agent '{name}' is running")).hint(format!(
                "stop it first (ssh gw stop {name}), or pass --force"
            )),
        );
    }
    if agent.status == AgentStatus::Unknown && !force {
        return Err(CommandError::failed(format!(
            "the state of agent '{name}' is unknown (its host '{}' cannot be asked)",
            agent.host
        ))
        .hint("pass --force to forget it anyway; its files on the host are then left alone"));
    }
    let intent = Intent::begin(
        gw,
        Planned {
            kind: OperationKind::Destroy,
            agent: name.to_owned(),
            from_host: None,
            host: agent.host.clone(),
            source: None,
            was_running: agent.status == AgentStatus::Running,
            operator: Some(caller.operator.name.clone()),
        },
    )
    .await?;
    let on_host = match host.destroy(name).await {
        // Already gone on the host: forgetting it here is all that is left to do.
        Ok(()) | Err(HostError::NotFound(_)) => Ok(()),
        Err(e) if force && e.host_unreachable() => Ok(()),
        Err(e) => Err(CommandError::from(e)),
    };
    if let Err(e) = on_host {
        intent.end(&Err::<(), _>(&e.message)).await;
        return Err(e);
    }
    // Removed from its host: what is left is the record. One that cannot be written leaves
    // the operation open at this step, and the gateway's next start finishes it.
    let forgotten = match intent.step(Step::HostDone).await {
        Ok(()) => gw.store.delete_agent(name).await,
        Err(e) => Err(e),
    };
    if forgotten.is_ok() {
        intent.end(&Ok::<(), String>(())).await;
    }
    let done = || format!("agent '{name}' was destroyed on host {}", agent.host);
    let later = format!(
        "it stays listed (as unknown) until the gateway's next start finishes the destroy, or until: ssh gw destroy {name} --force"
    );
    super::recorded(io, forgotten, done, &later).await;
    gw.inputs.forget(name);
    io.write_out(&format!(
        "destroyed agent '{name}' on host {}\n",
        agent.host
    ))
    .await;
    Ok(exit::OK)
}
