//! `share NAME OPERATOR` and `unshare NAME OPERATOR`: let another operator see and use an
//! agent, or take that back. Only the agent's owner (its creator) or an admin may.

use std::sync::Arc;

use clap::Args;

use super::{
    Caller, CommandError, CommandIo, CommandResult, agent_and_host, exit, local_refused,
    may_use_host, require_owner,
};
use crate::Gateway;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ssh gw share fix-ci bob\n  ssh gw unshare fix-ci bob")]
pub struct ShareArgs {
    /// The agent's name.
    pub name: String,
    /// The operator to share it with (see: ssh gw operator list).
    pub operator: String,
}

pub async fn share(
    gw: &Arc<Gateway>,
    caller: &Caller,
    args: ShareArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let (agent, _host) = agent_and_host(gw, caller, &args.name).await?;
    require_owner(caller, &agent, "share it")?;
    let Some(operator) = gw.store.operator_named(&args.operator).await? else {
        return Err(
            CommandError::failed(format!("no operator named '{}'", args.operator))
                .hint("see the operators with: ssh gw operator list"),
        );
    };
    if !may_use_host(gw, &operator, &agent.host) {
        return Err(local_refused(&format!(
            "'{}' is an operator and agent '{}' runs on 'local'",
            operator.name, agent.name
        ))
        .hint(format!("move it first: ssh gw migrate {} HOST", agent.name)));
    }
    if agent.created_by.as_deref() == Some(args.operator.as_str()) {
        return Err(CommandError::failed(format!(
            "'{}' owns agent '{}' already",
            args.operator, agent.name
        )));
    }
    gw.store
        .share(&agent.name, &args.operator, &caller.operator.name)
        .await?;
    io.write_out(&format!(
        "shared agent '{}' with '{}'\n",
        agent.name, args.operator
    ))
    .await;
    Ok(exit::OK)
}

pub async fn unshare(
    gw: &Arc<Gateway>,
    caller: &Caller,
    args: ShareArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let (agent, _host) = agent_and_host(gw, caller, &args.name).await?;
    require_owner(caller, &agent, "unshare it")?;
    if !gw.store.unshare(&agent.name, &args.operator).await? {
        return Err(CommandError::failed(format!(
            "agent '{}' is not shared with '{}'",
            agent.name, args.operator
        ))
        .hint(format!(
            "see whom it is shared with: ssh gw info {}",
            agent.name
        )));
    }
    io.write_out(&format!(
        "agent '{}' is no longer shared with '{}'\n",
        agent.name, args.operator
    ))
    .await;
    Ok(exit::OK)
}
