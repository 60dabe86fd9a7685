//! `info NAME [--json]`

use std::sync::Arc;

use clap::Args;

use super::output::{age, agent_json, json_text, status_text, tags_text};
use super::{Caller, CommandIo, CommandResult, exit, refreshed_agent};
use crate::Gateway;

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The agent's name.
    pub name: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(
    gw: &Arc<Gateway>,
    caller: &Caller,
    args: InfoArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let (agent, _host) = refreshed_agent(gw, caller, &args.name).await?;
    let shared_with = gw.store.shares(&agent.name).await?;
    if args.json {
        let mut json = agent_json(&agent);
        json["shared_with"] = serde_json::json!(shared_with);
        io.write_out(&json_text(&json)).await;
        return Ok(exit::OK);
    }
    let mut lines = vec![
        ("name", agent.name.clone()),
        ("host", agent.host.clone()),
        ("status", status_text(&agent)),
        ("template", agent.template.clone()),
        ("command", agent.command.clone()),
        ("workspace", agent.workspace.clone()),
        (
            "created",
            format!("{} ({} ago)", agent.created_at, age(&agent.created_at)),
        ),
        ("created by", agent.created_by.clone().unwrap_or_default()),
        ("shared with", shared_with.join(", ")),
        ("secrets", agent.spec.secret_names.join(", ")),
        ("tags", tags_text(&agent)),
    ];
    if let Some(pid) = agent.pid {
        lines.push(("pid", pid.to_string()));
    }
    if let Some(reason) = &agent.activity.reason {
        lines.push(("waiting for", reason.clone()));
    }
    if let Some(at) = &agent.status_since {
        lines.push(("since", format!("{at} ({} ago)", age(at))));
    }
    if let Some(at) = agent
        .activity
        .last_output_at
        .as_ref()
        .or(agent.last_activity.as_ref())
    {
        lines.push(("last output", format!("{at} ({} ago)", age(at))));
    }
    if let Some(at) = &agent.activity.last_input_at {
        lines.push(("last input", format!("{at} ({} ago)", age(at))));
    }
    if let Some(line) = &agent.activity.last_line {
        lines.push(("last line", line.clone()));
    }
    let text: String = lines
        .iter()
        .map(|(k, v)| format!("{:<13}{v}\n", format!("{k}:")))
        .collect();
    io.write_out(&text).await;
    Ok(exit::OK)
}
