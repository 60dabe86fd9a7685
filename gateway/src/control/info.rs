//! `info NAME [--json]`

use clap::Args;

use super::output::{AgentJson, age, json_text, status_text, tags_text, to_json};
use super::seen::{LIST_WAIT, not_asked_text};
use super::{Caller, CommandIo, CommandResult, agent_and_host, exit, refreshed_agent};
use crate::agents::Core;
use crate::agents::reconcile::NotAsked;
use crate::model::Timestamp;
use crate::model::{ActivitySource, AgentStatus};
use crate::store::AgentRecord;
use hostctl::disk::size_short;

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The agent's name.
    pub name: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(
    core: &Core<'_>,
    caller: &Caller,
    args: InfoArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let (agent, _host) = agent_and_host(core, caller, &args.name).await?;
    // Like `list`: a host known to be unreachable is not asked, and a slow one not waited for
    // past LIST_WAIT; the agent is then shown as last seen, with a warning that says so.
    let down = core
        .store
        .host(&agent.host)
        .await?
        .filter(|h| h.status == crate::model::HostStatus::Unreachable);
    let not_asked = match down {
        Some(h) => Some(NotAsked::Unreachable(
            h.name,
            h.last_error.unwrap_or_default(),
        )),
        None => {
            match tokio::time::timeout(LIST_WAIT, refreshed_agent(core, caller, &args.name)).await {
                Ok(refreshed) => return show(core, refreshed?.0, true, args.json, io).await,
                Err(_) => Some(NotAsked::Slow(agent.host.clone())),
            }
        }
    };
    if let Some(host) = not_asked {
        let text = not_asked_text(&host).replace("its agents are", "the agent is");
        io.write_err(&format!("warning: {text}\n")).await;
    }
    // Its host did not answer for the status: it is not asked for figures either.
    show(core, agent, false, args.json, io).await
}

/// Prints the agent; with `ask_usage`, what it uses of its host too.
async fn show(
    core: &Core<'_>,
    agent: AgentRecord,
    ask_usage: bool,
    json: bool,
    io: &mut CommandIo,
) -> CommandResult {
    let shared_with = core.store.shares(&agent.name).await?;
    let measured = if ask_usage {
        crate::agents::usage::of_agents(core, std::slice::from_ref(&agent)).await
    } else {
        crate::agents::usage::Measured::default()
    };
    for (host, why) in &measured.not_answered {
        io.write_err(&format!(
            "warning: host '{host}' could not say what the agent uses ({why})\n"
        ))
        .await;
    }
    let usage = measured.usage.get(&agent.name);
    if json {
        let json = AgentJson::of(&agent).shared_with(&shared_with).usage(usage);
        io.write_out(&json_text(&to_json(&json))).await;
        return Ok(exit::OK);
    }
    let mut lines = vec![
        ("name", agent.name.clone()),
        ("host", agent.host.clone()),
        ("status", status_text(&agent)),
        ("template", agent.template.clone()),
        (
            "cli",
            agent
                .spec
                .cli
                .map_or_else(|| "none recognised".to_owned(), |c| c.to_string()),
        ),
        ("command", agent.command.clone()),
        ("workspace", agent.workspace.clone()),
        (
            "sandbox",
            match super::output::sandbox_of(&agent) {
                Some(hostctl::api::Sandbox::Bwrap) => "bwrap".to_owned(),
                Some(hostctl::api::Sandbox::None) => {
                    "none (it sees all the host user can)".to_owned()
                }
                None => "not known yet".to_owned(),
            },
        ),
        ("limits", agent.spec.limits.display()),
        (
            "created",
            format!("{} ({} ago)", agent.created_at, age(agent.created_at)),
        ),
        ("created by", agent.created_by.clone().unwrap_or_default()),
        ("shared with", shared_with.join(", ")),
        ("secrets", agent.spec.secret_names.join(", ")),
        ("tags", tags_text(&agent)),
    ];
    if let Some(pid) = agent.pid {
        lines.push(("pid", pid.to_string()));
    }
    // A stopped agent's reason is in its status already (`stopped (tmux server gone)`).
    if let (AgentStatus::Exited, Some(reason)) = (agent.status, &agent.stop_reason) {
        lines.push(("ended", reason.clone()));
    }
    if let Some(reason) = &agent.activity.reason {
        lines.push(("waiting for", reason.clone()));
    }
    if let Some(source) = agent.activity.source {
        lines.push((
            "status from",
            match source {
                ActivitySource::Hook => "the CLI's hooks",
                ActivitySource::Screen => "its screen",
            }
            .to_owned(),
        ));
    }
    if let Some(at) = agent.status_since {
        lines.push(("since", format!("{at} ({} ago)", age(at))));
    }
    // What tmux told of its last output stands in while the screen has not been read.
    let host_told = || {
        agent
            .last_activity
            .as_deref()
            .and_then(|t| Timestamp::parse(t).ok())
    };
    if let Some(at) = agent.activity.last_output_at.or_else(host_told) {
        lines.push(("last output", format!("{at} ({} ago)", age(at))));
    }
    if let Some(at) = agent.activity.last_input_at {
        lines.push(("last input", format!("{at} ({} ago)", age(at))));
    }
    if let Some(line) = &agent.activity.last_line {
        lines.push(("last line", line.clone()));
    }
    if let Some(usage) = usage {
        lines.extend(usage_lines(usage));
    }
    let text: String = lines
        .iter()
        .map(|(k, v)| format!("{:<13}{v}\n", format!("{k}:")))
        .collect();
    io.write_out(&text).await;
    Ok(exit::OK)
}

/// What the agent uses of its host, as `info` shows it.
fn usage_lines(usage: &hostctl::api::AgentUsage) -> Vec<(&'static str, String)> {
    let cpu = match (usage.cpu_percent, usage.cpu_window_seconds) {
        (Some(percent), Some(window)) => format!(
            "{percent:.1}% over the last {window:.0} s ({:.1} s in all)",
            usage.cpu_seconds
        ),
        _ => "not running".to_owned(),
    };
    let disk = match (usage.disk_bytes, &usage.disk_note) {
        (Some(bytes), _) => format!("{} (its workspace)", size_short(bytes)),
        (None, Some(why)) => format!("unknown ({why})"),
        (None, None) => "unknown".to_owned(),
    };
    vec![
        ("cpu", cpu),
        (
            "memory",
            format!(
                "{} in {} processes",
                size_short(usage.memory_bytes),
                usage.processes
            ),
        ),
        ("disk", disk),
    ]
}
