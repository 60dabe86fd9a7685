//! `attach NAME` (and `ssh NAME@gw` with a terminal): the client's terminal joins the agent's
//! tmux session. Detaching (prefix, d) ends the ssh session with status 0 and leaves the agent
//! running; several clients may watch one agent at once. A stopped agent is started first.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{CommandError, CommandIo, CommandResult, exit, refreshed_agent};
use crate::Gateway;
use crate::hosts::{TerminalInput, reconciler};
use crate::store::AgentStatus;

pub async fn run(gw: &Arc<Gateway>, name: &str, io: &mut CommandIo) -> CommandResult {
    let Some(terminal) = io.terminal.as_ref() else {
        return Err(CommandError::usage("attach needs a terminal").hint(format!(
            "ask ssh for one: ssh -t {name}@<gateway>  (or: ssh -t <gateway> attach {name})"
        )));
    };
    let term = terminal.term.clone();
    let mut size_rx = terminal.size.clone();
    let size = *size_rx.borrow_and_update();
    let (agent, host) = refreshed_agent(gw, name).await?;
    match agent.status {
        AgentStatus::Stopped => {
            io.write_err(&format!(
                "agentgate: agent '{name}' is stopped; starting it\n"
            ))
            .await;
            let info = host.start(name, Some(size)).await?;
            gw.store
                .observe_agent(name, &reconciler::observed(&info))
                .await?;
        }
        AgentStatus::Unknown => {
            return Err(CommandError::failed(format!(
                "agent '{name}' cannot be reached: its host '{}' does not answer",
                agent.host
            )));
        }
        AgentStatus::Creating => {
            return Err(
                CommandError::failed(format!("agent '{name}' is still being created"))
                    .hint("try again in a moment"),
            );
        }
        AgentStatus::Running | AgentStatus::Exited => {}
    }
    let mut process = host.attach(name, &term, size).await?;
    let input = process.input.clone();
    let CommandIo {
        stdin,
        stdout,
        closed,
        ..
    } = io;

    let pump_output = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match process.output.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if stdout.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    let _ = stdout.flush().await;
                }
            }
        }
    };
    let pump_input = async {
        loop {
            tokio::select! {
                chunk = stdin.recv() => match chunk {
                    Some(bytes) => {
                        if input.send(TerminalInput::Data(bytes)).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                changed = size_rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let size = *size_rx.borrow_and_update();
                    if input.send(TerminalInput::Resize(size)).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let client_gone = {
        tokio::pin!(pump_output, pump_input);
        let mut input_open = true;
        loop {
            tokio::select! {
                () = &mut pump_output => break false,
                () = &mut pump_input, if input_open => input_open = false,
                () = closed.cancelled() => break true,
            }
        }
    };
    if client_gone {
        process.kill.cancel();
    }
    drop(input);
    let code = process.exit.await;
    Ok(match code {
        Some(code) => u32::try_from(code).unwrap_or(exit::FAILED),
        None => exit::FAILED,
    })
}
