//! `share NAME OPERATOR` and `unshare NAME OPERATOR`: let another operator see and use an
//! agent, or take that back. Only the agent's owner (its creator) or an admin may.

use clap::Args;

use super::{Caller, CommandIo, CommandResult, exit};
use crate::agents::Core;
use crate::agents::shares::{self, ShareRequest};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ssh core share fix-ci bob\n  ssh core unshare fix-ci bob")]
pub struct ShareArgs {
    /// The agent's name.
    pub name: String,
    /// The operator to share it with (see: ssh core operator list).
    pub operator: String,
}

impl ShareArgs {
    fn request(self) -> ShareRequest {
        ShareRequest {
            agent: self.name,
            with: self.operator,
        }
    }
}

pub async fn share(
    core: &Core<'_>,
    caller: &Caller,
    args: ShareArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let request = args.request();
    let agent = shares::share(core, &caller.operator, &request).await?;
    io.write_out(&format!(
        "shared agent '{}' with '{}'\n",
        agent.name, request.with
    ))
    .await;
    Ok(exit::OK)
}

pub async fn unshare(
    core: &Core<'_>,
    caller: &Caller,
    args: ShareArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let request = args.request();
    let agent = shares::unshare(core, &caller.operator, &request).await?;
    io.write_out(&format!(
        "agent '{}' is no longer shared with '{}'\n",
        agent.name, request.with
    ))
    .await;
    Ok(exit::OK)
}
