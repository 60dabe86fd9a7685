//! `attach NAME` (and `ssh NAME@gw` with a terminal): the client's terminal joins the agent's
//! tmux session. The attaching itself is `agents::attach`'s, which the agent route calls too.

use super::{Caller, CommandIo, CommandResult};
use crate::agents::Core;
use crate::agents::live::LiveConnections;

pub async fn run(
    core: &Core<'_>,
    live: &std::sync::Arc<LiveConnections>,
    caller: &Caller,
    name: &str,
    io: &mut CommandIo,
) -> CommandResult {
    crate::agents::attach::run(core, live, caller, name, io).await
}
