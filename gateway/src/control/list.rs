//! `list [--tag K=V]... [--status S] [--json | -q]`; with `--json`, what each agent uses of
//! its host too (`agents::usage`).

use std::sync::Arc;

use clap::Args;
use hostctl::api::Sandbox;

use super::output::{
    AgentJson, Statuses, age, json_text, parse_pair, parse_statuses, status_matches, status_text,
    table, tags_text, to_json,
};
use super::seen::{LIST_WAIT, not_asked_text};
use super::{Caller, CommandIo, CommandResult, exit};
use crate::Gateway;
use crate::agents::reconcile::{self, NotAsked};

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

/// Takes the gateway, not only the core: `list` first runs the reconciler's pass over every
/// host (`reconcile::reconcile_within`), a service of the gateway's.
pub async fn run(
    gw: &Arc<Gateway>,
    caller: &Caller,
    args: ListArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let core = &gw.core();
    // A fresh look at the hosts, so that `list` never shows a status the reconciler has not
    // caught up with yet; a slow host is not waited for, nor one known to be unreachable:
    // their agents are shown as last seen.
    let not_asked = reconcile::reconcile_within(gw, LIST_WAIT).await;
    for host in &not_asked {
        io.write_err(&format!("warning: {}\n", not_asked_text(host)))
            .await;
    }
    // A host that was too slow or down for the statuses is not asked for figures either.
    let silent: Vec<&str> = not_asked.iter().filter_map(NotAsked::silent_host).collect();
    let agents: Vec<_> = crate::agents::access::agents(core.store, &caller.operator)
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
        // What each uses of its host, for scripts; a host that cannot say leaves it out.
        let askable: Vec<_> = agents
            .iter()
            .filter(|a| !silent.contains(&a.host.as_str()))
            .cloned()
            .collect();
        let measured = crate::agents::usage::of_agents(core, &askable).await;
        for (host, why) in &measured.not_answered {
            io.write_err(&format!(
                "warning: host '{host}' could not say what its agents use ({why})\n"
            ))
            .await;
        }
        json_text(&serde_json::Value::Array(
            agents
                .iter()
                .map(|a| to_json(&AgentJson::of(a).usage(measured.usage.get(&a.name))))
                .collect(),
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
                    super::output::sandbox_of(a)
                        .map_or("-", Sandbox::as_str)
                        .to_owned(),
                    age(a.created_at),
                    tags_text(a),
                ]
            })
            .collect();
        table(
            &[
                "NAME", "HOST", "STATUS", "SINCE", "TEMPLATE", "CLI", "SANDBOX", "AGE", "TAGS",
            ],
            &rows,
        )
    };
    io.write_out(&text).await;
    Ok(exit::OK)
}
