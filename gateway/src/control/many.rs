//! Acting on many agents at once: `stop`/`start`/`destroy --tag K=V`, `send --tag`/`--all`,
//! and `tag`/`untag`, which edit the labels the others select by.

use std::collections::BTreeMap;
use std::sync::Arc;

use clap::Args;

use super::output::parse_pair;
use super::{Caller, CommandError, CommandIo, CommandResult, exit, require_owner};
use crate::Gateway;
use crate::store::AgentRecord;

/// The longest tag key and value.
const MAX_TAG_LEN: usize = 128;

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

// `destroy NAME [--force]` or `destroy --tag K=V [--yes] [--force]`: each agent by
// `super::destroy::destroy_one`.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub targets: Targets,
    /// Destroy it even if it is running.
    #[arg(long, short)]
    pub force: bool,
}

/// The caller's own agents (those they created: not those shared with them, and for an admin
/// not everyone's) that carry every tag in `tags` (all of them when `tags` is empty), by
/// name; agents on a host the caller may not use are left out.
pub async fn select(
    gw: &Gateway,
    caller: &Caller,
    tags: &[(String, String)],
) -> Result<Vec<AgentRecord>, CommandError> {
    Ok(crate::agents::access::agents(&gw.store, &caller.operator)
        .await?
        .into_iter()
        .filter(|a| a.created_by.as_deref() == Some(caller.operator.name.as_str()))
        .filter(|a| super::may_use_host(gw, &caller.operator, &a.host))
        .filter(|a| tags.iter().all(|(k, v)| a.tags.get(k) == Some(v)))
        .collect())
}

pub fn tags_text(tags: &[(String, String)]) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What [`each`] does to each agent.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Stop,
    Start,
    Destroy { force: bool },
}

impl Op {
    fn verb(self) -> &'static str {
        match self {
            Op::Stop => "stop",
            Op::Start => "start",
            Op::Destroy { .. } => "destroy",
        }
    }

    async fn run(
        self,
        gw: &Arc<Gateway>,
        caller: &Caller,
        name: &str,
        io: &mut CommandIo,
    ) -> CommandResult {
        let _turn = gw.agent_locks.hold(name).await;
        match self {
            Op::Stop => super::stop::run(gw, caller, name, io).await,
            Op::Start => super::start::run(gw, caller, name, io).await,
            Op::Destroy { force } => super::destroy::destroy_one(gw, caller, name, force, io).await,
        }
    }
}

/// Does `op` to one agent, or to each agent with the tags (after asking, unless `--yes`):
/// every agent is tried; the exit status is 1 if any failed.
pub async fn each(
    gw: &Arc<Gateway>,
    caller: &Caller,
    targets: &Targets,
    op: Op,
    io: &mut CommandIo,
) -> CommandResult {
    if let Some(name) = &targets.name {
        return op.run(gw, caller, name, io).await;
    }
    let verb = op.verb();
    let agents = select(gw, caller, &targets.tags).await?;
    if agents.is_empty() {
        return Err(CommandError::failed(format!(
            "no agent has the tag {}",
            tags_text(&targets.tags)
        ))
        .hint("see the agents and their tags with: ssh gw list"));
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
        let (status, message) = match op.run(gw, caller, name, io).await {
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
            gw,
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
    gw: &Gateway,
    caller: &Caller,
    name: &str,
    detail: &str,
    status: u32,
    message: &str,
) {
    super::record(
        gw,
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
    gw: &Gateway,
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
            gw,
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

#[derive(Debug, Args)]
pub struct TagArgs {
    /// The agent's name.
    pub name: String,
    /// The tags to set, KEY=VALUE (a key already set gets the new value).
    #[arg(required = true, value_name = "K=V", value_parser = parse_pair)]
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct UntagArgs {
    /// The agent's name.
    pub name: String,
    /// The keys to remove.
    #[arg(required = true, value_name = "KEY")]
    pub keys: Vec<String>,
}

/// Checks a tag's key and value: what `--tag K=V` can select again.
pub fn check_tag(key: &str, value: &str) -> Result<(), CommandError> {
    let bad = |what: &str| {
        CommandError::usage(format!("invalid tag '{key}={value}': {what}")).hint(
            "keys are letters, digits, '.', '_', '-' and '/'; values have no control characters",
        )
    };
    if key.is_empty() || key.len() > MAX_TAG_LEN || value.len() > MAX_TAG_LEN {
        return Err(bad(&format!(
            "keys are 1 to {MAX_TAG_LEN} characters, values at most {MAX_TAG_LEN}"
        )));
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
    {
        return Err(bad(
            "the key has a character other than letters, digits, '.', '_', '-', '/'",
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(bad("the value has a control character"));
    }
    Ok(())
}

/// `tag NAME K=V...` (`remove` empty) and `untag NAME KEY...`: the new tags go to the agent's
/// host first (its files describe it), then to the gateway's records.
pub async fn edit_tags(
    gw: &Arc<Gateway>,
    caller: &Caller,
    name: &str,
    set: &[(String, String)],
    remove: &[String],
    io: &mut CommandIo,
) -> CommandResult {
    for (k, v) in set {
        check_tag(k, v)?;
    }
    let (agent, host) = super::agent_and_host(gw, caller, name).await?;
    require_owner(caller, &agent, "change its tags")?;
    let mut tags: BTreeMap<String, String> = agent.tags.clone();
    for key in remove {
        if tags.remove(key).is_none() {
            return Err(CommandError::failed(format!(
                "agent '{name}' has no tag '{key}'"
            )));
        }
    }
    tags.extend(set.iter().cloned());
    host.set_tags(name, &tags).await?;
    let saved = gw.store.set_tags(name, &tags).await;
    let done = || {
        format!(
            "the tags of agent '{name}' were changed on host {}",
            agent.host
        )
    };
    let later = "the gateway shows and selects by the old tags until the command is run again";
    super::recorded(io, saved, done, later).await;
    let text = if tags.is_empty() {
        "no tags".to_owned()
    } else {
        tags.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    io.write_out(&format!("agent '{name}': {text}\n")).await;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_checked() {
        assert!(check_tag("team", "infra").is_ok());
        assert!(check_tag("k8s.io/app", "a b").is_ok());
        for (k, v) in [("", "x"), ("a b", "x"), ("k", "a\nb"), ("k;rm", "x")] {
            assert!(check_tag(k, v).is_err(), "{k:?}={v:?}");
        }
        assert!(check_tag("k", &"v".repeat(MAX_TAG_LEN + 1)).is_err());
    }
}
