//! `approve NAME` and `deny NAME`: answer the question an agent asks (its CLI's permission
//! dialog, a yes/no question) with yes or no; `--tag K=V` and `--all` answer every such agent
//! of yours that asks one.

use clap::Args;

use super::output::parse_pair;
use super::{Caller, CommandError, CommandIo, CommandResult, exit, refreshed_agent};
use crate::agents::Core;
use crate::agents::deliver::{self, Answered};
use crate::model::AgentStatus;
use crate::store::AgentRecord;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ssh core approve fix-ci\n  ssh core deny --tag team=infra")]
pub struct AnswerArgs {
    /// The agent's name.
    #[arg(required_unless_present_any = ["tags", "all"], conflicts_with_all = ["tags", "all"])]
    pub name: Option<String>,
    /// Every agent of yours with this tag, KEY=VALUE (repeatable: all must match), that asks.
    #[arg(long = "tag", value_name = "K=V", value_parser = parse_pair)]
    pub tags: Vec<(String, String)>,
    /// Every agent of yours that asks.
    #[arg(long, conflicts_with = "tags")]
    pub all: bool,
}

pub async fn run(
    core: &Core<'_>,
    caller: &Caller,
    args: AnswerArgs,
    approve: bool,
    io: &mut CommandIo,
) -> CommandResult {
    let verb = if approve { "approve" } else { "deny" };
    if let Some(name) = &args.name {
        let (agent, host) = refreshed_agent(core, caller, name).await?;
        let answered = deliver::answer(core, &agent, &host, approve).await?;
        let line = answer_line(&agent.name, approve, &answered)?;
        io.write_out(&line).await;
        return Ok(exit::OK);
    }
    let asking: Vec<AgentRecord> = super::many::select(core, caller, &args.tags)
        .await?
        .into_iter()
        .filter(|a| a.status == AgentStatus::Running)
        .filter(|a| crate::agents::activity::question(&a.activity).is_some())
        .collect();
    if asking.is_empty() {
        return Err(CommandError::failed(if args.all {
            "no agent of yours asks anything".to_owned()
        } else {
            "no agent of yours with those tags asks anything".to_owned()
        })
        .hint("see which agents wait, and why: ssh core list --status waiting"));
    }
    let by = if args.all {
        "(by --all)".to_owned()
    } else {
        format!("(by tag {})", super::many::tags_text(&args.tags))
    };
    // One at a time: each answer is a decision about what that agent may do.
    let mut results = Vec::new();
    for agent in &asking {
        let result = match core.hosts.get(&agent.host) {
            Ok(host) => deliver::answer(core, agent, &host, approve)
                .await
                .map_err(CommandError::from)
                .and_then(|answered| answer_line(&agent.name, approve, &answered)),
            Err(e) => Err(CommandError::from(e)),
        };
        results.push((agent, result));
    }
    Ok(super::many::report_each(core, caller, (verb, &by), results, io).await)
}

/// The line that says what the answer did, or the error that says it did nothing.
fn answer_line(name: &str, approve: bool, answered: &Answered) -> Result<String, CommandError> {
    let (done, verb) = if approve {
        ("approved", "approve")
    } else {
        ("denied", "deny")
    };
    match answered {
        Answered::Taken { question, by } => Ok(format!(
            "{done}: agent '{name}' {question} ({})\n",
            by.text()
        )),
        Answered::NothingAsked { status } => Err(CommandError::failed(format!(
            "agent '{name}' asks nothing to {verb}: it is {status}"
        ))
        .hint(format!("see what it shows with: ssh core info {name}"))),
        Answered::NotOnScreen { asked } => Err(CommandError::failed(format!(
            "agent '{name}' {asked} by its CLI's hooks, but its screen shows no question to {verb}"
        ))
        .hint(format!(
            "look at it and answer it yourself: ssh {name}@core"
        ))),
        Answered::NotTaken { question } => Err(CommandError::failed(format!(
            "agent '{name}' still {question} {} s after the answer",
            deliver::CONFIRM_WITHIN.as_secs()
        ))
        .hint(format!("answer it yourself: ssh {name}@core"))),
    }
}
