//! Attaching a client's terminal to an agent's tmux session: `ssh -t NAME@gw` on the agent
//! route, and `attach NAME` (and Enter in the live view) on the control route, both through
//! [`run`]. Detaching (prefix, d) ends the ssh session with status 0 and leaves the agent
//! running; several clients may watch one agent at once. A stopped agent is started first.

use super::Caller;
use super::said::{CommandError, CommandResult, SEEN_AGAIN, exit, recorded};
use crate::agents::Core;
use crate::agents::live::LiveConnections;
use crate::agents::reconcile;
use crate::hosts::AgentSession;
use crate::model::AgentStatus;
use crate::streams::CommandIo;

/// Puts a full-screen program's terminal back: bracketed paste off, attributes reset, cursor
/// shown, main screen. The live view leaves with it; an attach whose tmux could not send its
/// own ends with it.
pub const TERMINAL_RESET: &str = "\x1b[?2004l\x1b[0m\x1b[?25h\x1b[?1049l";

pub async fn run(
    core: &Core<'_>,
    live: &std::sync::Arc<LiveConnections>,
    caller: &Caller,
    name: &str,
    io: &mut CommandIo,
) -> CommandResult {
    let Some(terminal) = io.terminal.as_ref() else {
        return Err(CommandError::usage("attach needs a terminal").hint(format!(
            "ask ssh for one: ssh -t {name}@<gateway>  (or: ssh -t <gateway> attach {name})"
        )));
    };
    let term = terminal.term.clone();
    let size = *terminal.size.borrow();
    // While attached (from the live view too), the connection reaches the agent: unsharing it
    // ends the connection. Entered before the check, so that an unshare between the two is
    // not missed.
    let _entered = live.enter(caller.connection, name);
    let (agent, host) = super::lifecycle::refreshed(core, &caller.operator, name).await?;
    match agent.status {
        AgentStatus::Stopped => {
            io.write_err(&format!(
                "agentgate: agent '{name}' is stopped; starting it\n"
            ))
            .await;
            let secrets = super::secrets::values(core.store, &agent.spec.secret_names).await?;
            let info = host.start(name, Some(size), &secrets).await?;
            let saved = core
                .store
                .observe_agent(name, &reconcile::observed(&info))
                .await;
            let done = || {
                format!(
                    "agentgate: agent '{name}' was started on host {}",
                    agent.host
                )
            };
            recorded(io, saved, done, SEEN_AGAIN).await;
        }
        AgentStatus::Unknown => {
            return Err(CommandError::failed(format!(
                "agent '{name}' cannot be reached: its host '{}' does not answer",
                agent.host
            )));
        }
        AgentStatus::Creating => super::lifecycle::ready(&agent)?,
        AgentStatus::Running | AgentStatus::Exited => {}
    }
    let process = host
        .open_terminal(name, &AgentSession::Attach, &[], &term, size)
        .await?;
    // An attached viewer keeps the agent from being stopped for idleness.
    let _viewer = core.inputs.attached(name);
    // Typing counts as the operator's input; the terminal's answers to tmux's questions on
    // attach do not.
    let on_input = |bytes: &[u8]| {
        if super::activity::typed(bytes) {
            core.inputs.touch(name);
        }
    };
    Ok(match crate::bridge::terminal(io, process, on_input).await {
        Some(crate::hosts::ProcessExit::Lost) => {
            // tmux on the host could not put the terminal back: leave its alternate screen,
            // show the cursor and reset colours, so the message lands on a usable terminal.
            io.write_out(&format!("{TERMINAL_RESET}\n")).await;
            return Err(CommandError::host_lost(&agent.host, name));
        }
        Some(ended) => ended.shell_status(),
        // The client closed the channel or the connection without detaching (paramiko's
        // `close()`): it left, like a detach; nothing failed.
        None => exit::CLIENT_GONE,
    })
}
