//! `list [--tag K=V]... [--status S] [--json | -q]`

use std::sync::Arc;

use clap::Args;

use super::output::{
    Statuses, age, agent_json, json_text, parse_pair, parse_statuses, status_matches, status_text,
    table, tags_text,
};
use super::{Caller, CommandIo, CommandResult, exit};
use crate::Gateway;
use crate::hosts::reconciler::{self, NotAsked};

/// How long `list` waits for each host before answering from what was last seen.
pub const LIST_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only agents with this tag, KEY=VALUE (repeatable: all must match).
    #[arg(long = "tag", value_name = "K=V", value_parser = parse_pair)]
    pub tags: Vec<(String, String)>,
    /// Only agents with one of these statuses (comma-separated): working, waiting, idle,
    /// running (any agent whose process runs), exited, stopped, unknown, creating.
    #[arg(long, value_name = "STATUS[,STATUS]", value_parser = parse_statuses)]
    pub status: Option<Statuses>,
    /// Print a JSON array.
    #[arg(long, conflicts_with = "quiet")]
    pub json: bool,
    /// Print names only, one per line.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Why a host's agents are shown as last seen, for `list`'s warnings and the live view.
pub fn not_asked_text(host: &NotAsked) -> String {
    match host {
        NotAsked::Slow(host) => format!(
            "host '{host}' did not answer within {} ms; its agents are shown as last seen",
            LIST_WAIT.as_millis()
        ),
        NotAsked::Unreachable(host, reason) => {
            let reason = if reason.is_empty() {
                String::new()
            } else {
                format!(" ({reason})")
            };
            format!(
                "host '{host}' is unreachable{reason}; its agents are shown as last seen \
                 (see: ssh gw host info {host})"
            )
        }
        NotAsked::NotSaved(host, cause) => format!(
            "what host '{host}' reports could not be saved (the gateway's database: {cause}); \
             its agents are shown as last saved"
        ),
        NotAsked::Unwritable { cause, kept } => format!(
            "the gateway's database cannot be written ({cause}): the statuses shown may be out \
             of date, and {kept} audit event{} wait{} in memory until it can",
            if *kept == 1 { "" } else { "s" },
            if *kept == 1 { "s" } else { "" }
        ),
    }
}

pub async fn run(
    gw: &Arc<Gateway>,
    caller: &Caller,
    args: ListArgs,
    io: &mut CommandIo,
) -> CommandResult {
    // A fresh look at the hosts, so that `list` never shows a status the reconciler has not
    // caught up with yet; a slow host is not waited for, nor one known to be unreachable:
    // their agents are shown as last seen.
    for host in reconciler::reconcile_within(gw, LIST_WAIT).await {
        io.write_err(&format!("warning: {}\n", not_asked_text(&host)))
            .await;
    }
    let agents: Vec<_> = crate::agents::access::agents(&gw.store, &caller.operator)
        .await?
        .into_iter()
        .filter(|a| args.tags.iter().all(|(k, v)| a.tags.get(k) == Some(v)))
        .filter(|a| {
            args.status
                .as_ref()
                .is_none_or(|wanted| wanted.0.iter().any(|w| status_matches(a, w)))
        })
        .collect();
    let text = if args.json {
        json_text(&serde_json::Value::Array(
            agents.iter().map(agent_json).collect(),
        ))
    } else if args.quiet {
        agents.iter().map(|a| format!("{}\n", a.name)).collect()
    } else {
        let rows: Vec<Vec<String>> = agents
            .iter()
            .map(|a| {
                vec![
                    a.name.clone(),
                    a.host.clone(),
                    status_text(a),
                    a.status_since.map_or_else(String::new, age),
                    a.template.clone(),
                    a.spec.cli.map_or_else(|| "-".to_owned(), |c| c.to_string()),
                    age(a.created_at),
                    tags_text(a),
                ]
            })
            .collect();
        table(
            &[
                "NAME", "HOST", "STATUS", "SINCE", "TEMPLATE", "CLI", "AGE", "TAGS",
            ],
            &rows,
        )
    };
    io.write_out(&text).await;
    Ok(exit::OK)
}
