//! Acting on many agents at once, for the commands that can (`stop`/`start`/`destroy --tag
//! K=V`, `send --tag`/`--all`, `approve`/`deny --tag`): the selection, the confirmation, each
//! agent in turn with its own audit event. No command of its own: `stop`, `start` and
//! `destroy` come through [`each`] with what they do to one agent (`super::Each`).

use clap::Args;

use super::output::parse_pair;
use super::{Caller, CommandError, CommandIo, CommandResult, Each, exit};
use crate::agents::Core;
use crate::store::AgentRecord;

/// One agent by name, or every agent with some tags.
#[derive(Debug, Args)]
pub struct Targets {
    /// The agent's name.
    #[arg(required_unless_present = "tags", conflicts_with = "tags")]
    pub name: Option<String>,
    /// Every agent of yours with this tag, KEY=VALUE (repeatable: all must match).
    #[arg(long = "tag", value_name = "K=V", value_parser = parse_pair)]
    pub tags: Vec<(String, String)>,
    /// Do not ask before acting on agents chosen by --tag.
    #[arg(long, short = 'y', requires = "tags")]
    pub yes: bool,
}

/// The caller's own agents (those they created: not those shared with them, and for an admin
/// not everyone's) that carry every tag in `tags` (all of them when `tags` is empty), by
/// name; agents on a host the caller may not use are left out.
pub async fn select(
    core: &Core<'_>,
    caller: &Caller,
    tags: &[(String, String)],
) -> Result<Vec<AgentRecord>, CommandError> {
    Ok(crate::agents::access::agents(core.store, &caller.operator)
        .await?
        .into_iter()
        .filter(|a| a.created_by.as_deref() == Some(caller.operator.name.as_str()))
        .filter(|a| super::may_use_host(core, &caller.operator, &a.host))
        .filter(|a| tags.iter().all(|(k, v)| a.tags.get(k) == Some(v)))
        .collect())
}

pub fn tags_text(tags: &[(String, String)]) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Does `op` to the agent named, or to each agent with the tags (after asking, unless
/// `--yes`), each in its turn (`agents::locks`): every agent is tried; the exit status is 1 if
/// any failed.
pub async fn each(
    core: &Core<'_>,
    caller: &Caller,
    targets: &Targets,
    op: Each,
    io: &mut CommandIo,
) -> CommandResult {
    if let Some(name) = &targets.name {
        let _turn = core.locks.hold(name).await;
        return op.run(core, caller, name, io).await;
    }
    let verb = op.verb();
    let agents = select(core, caller, &targets.tags).await?;
    if agents.is_empty() {
        return Err(CommandError::failed(format!(
            "no agent has the tag {}",
            tags_text(&targets.tags)
        ))
        .hint("see the agents and their tags with: ssh core list"));
    }
    let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
    if !targets.yes {
        confirm(
            io,
            &format!(
                "{verb} {} agent{}: {}?",
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                names.join(", ")
            ),
        )
        .await?;
    }
    let mut failed = 0;
    let by = format!("(by tag {})", tags_text(&targets.tags));
    for name in names {
        let done = {
            let _turn = core.locks.hold(name).await;
            op.run(core, caller, name, io).await
        };
        let (status, message) = match done {
            Ok(status) => (status, String::new()),
            Err(e) => {
                io.write_err(&format!("error: agent '{name}': {}\n", e.message))
                    .await;
                (e.status, e.message)
            }
        };
        if status != exit::OK {
            failed += 1;
        }
        record_one(
            core,
            caller,
            name,
            &format!("{verb} {name} {by}"),
            status,
            &message,
        )
        .await;
    }
    Ok(if failed == 0 { exit::OK } else { exit::FAILED })
}

/// The audit event of one agent acted on by a command that chose several: each has its own,
/// so that `events --agent NAME` shows it (the command itself is recorded without an agent).
pub async fn record_one(
    core: &Core<'_>,
    caller: &Caller,
    name: &str,
    detail: &str,
    status: u32,
    message: &str,
) {
    super::record(
        core,
        caller,
        crate::model::EventKind::Command,
        Some(name.to_owned()),
        detail,
        status,
        message,
    )
    .await;
}

/// Reports what a command that chose several agents did to each (its line on stdout, or its
/// error on stderr), with one audit event per agent (`VERB NAME BY`); the exit status is 1 if
/// any failed.
pub async fn report_each(
    core: &Core<'_>,
    caller: &Caller,
    verb_by: (&str, &str),
    results: Vec<(&AgentRecord, Result<String, CommandError>)>,
    io: &mut CommandIo,
) -> u32 {
    let (verb, by) = verb_by;
    let mut failed = 0;
    for (agent, result) in results {
        let (status, message) = match &result {
            Ok(line) => (exit::OK, line.trim().to_owned()),
            Err(e) => (exit::FAILED, e.message.clone()),
        };
        record_one(
            core,
            caller,
            &agent.name,
            &format!("{verb} {} {by}", agent.name),
            status,
            &message,
        )
        .await;
        match result {
            Ok(line) => io.write_out(&line).await,
            Err(e) => {
                failed += 1;
                io.write_err(&format!("error: agent '{}': {}\n", agent.name, e.message))
                    .await;
            }
        }
    }
    if failed == 0 { exit::OK } else { exit::FAILED }
}

/// Asks a yes/no question on the client's terminal; without a terminal (a script), refuses
/// with a hint to pass `--yes`.
pub async fn confirm(io: &mut CommandIo, question: &str) -> Result<(), CommandError> {
    if io.terminal.is_none() {
        return Err(
            CommandError::usage(format!("this would {}", question.trim_end_matches('?')))
                .hint("add --yes to go ahead (or run it with ssh -t to be asked)"),
        );
    }
    io.write_out(&format!("{question} [y/N] ")).await;
    let mut answer = String::new();
    loop {
        // The end of input (the connection closing) is no: only an answer ended by Enter
        // counts.
        let chunk = tokio::select! {
            chunk = io.stdin.recv() => chunk,
            () = io.closed.cancelled() => None,
        };
        let Some(chunk) = chunk else {
            answer.clear();
            break;
        };
        let mut done = false;
        for &b in chunk.iter() {
            match b {
                b'\r' | b'\n' => done = true,
                // ^C, ^D: no.
                0x03 | 0x04 => {
                    answer.clear();
                    done = true;
                }
                0x7f | 0x08 if answer.pop().is_some() => io.write_out("\x08 \x08").await,
                b if (b.is_ascii_graphic() || b == b' ') && answer.len() < 16 => {
                    answer.push(char::from(b));
                    io.write_out(&char::from(b).to_string()).await;
                }
                _ => {}
            }
            if done {
                break;
            }
        }
        if done {
            break;
        }
    }
    io.write_out("\r\n").await;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(CommandError::failed("nothing done")),
    }
}
