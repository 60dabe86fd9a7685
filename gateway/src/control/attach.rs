//! `attach NAME` (and `ssh NAME@gw` with a terminal): the client's terminal joins the agent's
//! tmux session. The attaching itself is `agents::attach`'s, which the agent route calls too.

use std::sync::Arc;

use super::{Caller, CommandIo, CommandResult};
use crate::Gateway;

pub async fn run(
    gw: &Arc<Gateway>,
    caller: &Caller,
    name: &str,
    io: &mut CommandIo,
) -> CommandResult {
    crate::agents::attach::run(gw, caller, name, io).await
}
