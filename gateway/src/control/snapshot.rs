//! `snapshot NAME [--label L] [--json]`, `snapshot list [NAME] [--json]`, `snapshot remove ID`
//! (the restore is `create NEW --from-snapshot ID`). What a snapshot is, and the taking,
//! listing and removing, are `agents::transfer::snapshot`'s; this file parses and prints.

use clap::{Args, Subcommand};
use hostctl::disk::size_text;
use serde_json::{Value, json};

use super::output::{age, json_text, table};
use super::{Caller, CommandError, CommandIo, CommandResult, exit};
use crate::agents::Core;
use crate::agents::transfer::snapshot::{self as snapshots, Removed, TakeRequest};
use crate::store::SnapshotRecord;

#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:\n  ssh core snapshot fix-ci --label 'before the refactor'\n  ssh core snapshot list fix-ci\n  ssh core create fix-ci-2 --from-snapshot fix-ci-20261123-1215 --host gpu-box\n  ssh core snapshot remove fix-ci-20261123-1215\n\nA snapshot is the agent's workspace (compressed, with a SHA-256) and its settings, kept\non the agent's host. IDs are AGENT-YYYYMMDD-HHMM (UTC). Stop the agent first for a quiet\nsnapshot: files that change while they are read make it fail."
)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: Option<SnapshotCommand>,
    /// The agent to snapshot.
    #[arg(required = true)]
    pub name: Option<String>,
    /// A note to remember it by (one line, at most 200 bytes).
    #[arg(long, short = 'l', value_name = "LABEL")]
    pub label: Option<String>,
    /// Print the snapshot as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// List the snapshots you may see (of one agent, with NAME), oldest first.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Delete a snapshot, on its host and in the gateway (its agent's owner or an admin).
    #[command(visible_alias = "rm")]
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only the snapshots of this agent (it may have been destroyed since).
    pub name: Option<String>,
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The snapshot's ID (see `snapshot list`).
    pub id: String,
}

impl SnapshotArgs {
    /// The agent the command is about, for the audit trail.
    pub fn agent(&self) -> Option<&str> {
        match &self.command {
            None => self.name.as_deref(),
            Some(SnapshotCommand::List(a)) => a.name.as_deref(),
            Some(SnapshotCommand::Remove(_)) => None,
        }
    }
}

pub async fn run(
    core: &Core<'_>,
    caller: &Caller,
    args: SnapshotArgs,
    io: &mut CommandIo,
) -> CommandResult {
    match args.command {
        Some(SnapshotCommand::List(list)) => run_list(core, caller, list, io).await,
        Some(SnapshotCommand::Remove(remove)) => run_remove(core, caller, &remove.id, io).await,
        None => {
            let Some(name) = args.name else {
                return Err(CommandError::usage("which agent? snapshot NAME"));
            };
            take(core, caller, &name, args.label, args.json, io).await
        }
    }
}

async fn take(
    core: &Core<'_>,
    caller: &Caller,
    name: &str,
    label: Option<String>,
    json: bool,
    io: &mut CommandIo,
) -> CommandResult {
    let request = TakeRequest {
        name: name.to_owned(),
        label,
    };
    let record = snapshots::take(core, &caller.operator, request).await?;
    if json {
        io.write_out(&json_text(&snapshot_json(&record, true)))
            .await;
    } else {
        let id = &record.id;
        io.write_out(&format!(
            "snapshot {id} of agent '{name}' on host {}: {}, sha256 {}\nrestore it with: ssh core create NEW --from-snapshot {id} [--host HOST]\n",
            record.host,
            size_text(record.size),
            record.sha256
        ))
        .await;
    }
    Ok(exit::OK)
}

async fn run_list(
    core: &Core<'_>,
    caller: &Caller,
    args: ListArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let listed = snapshots::list(core, &caller.operator, args.name.as_deref()).await?;
    if args.json {
        let all: Vec<Value> = listed
            .iter()
            .map(|l| snapshot_json(&l.snapshot, l.host_present))
            .collect();
        io.write_out(&json_text(&Value::Array(all))).await;
        return Ok(exit::OK);
    }
    if listed.is_empty() {
        let hint = match &args.name {
            Some(name) => {
                format!("no snapshots of '{name}' (take one with: ssh core snapshot {name})\n")
            }
            None => "no snapshots (take one with: ssh core snapshot NAME)\n".to_owned(),
        };
        io.write_out(&hint).await;
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = listed
        .iter()
        .map(|l| {
            let s = &l.snapshot;
            vec![
                s.id.clone(),
                s.agent.clone(),
                if l.host_present {
                    s.host.clone()
                } else {
                    format!("{} (gone)", s.host)
                },
                size_text(s.size),
                age(s.created_at),
                s.label.clone().unwrap_or_default(),
            ]
        })
        .collect();
    io.write_out(&table(
        &["ID", "AGENT", "HOST", "SIZE", "AGE", "LABEL"],
        &rows,
    ))
    .await;
    Ok(exit::OK)
}

async fn run_remove(
    core: &Core<'_>,
    caller: &Caller,
    id: &str,
    io: &mut CommandIo,
) -> CommandResult {
    match snapshots::remove(core, &caller.operator, id).await? {
        Removed::Both => {}
        Removed::AlreadyGone { host } => {
            io.write_err(&format!(
                "warning: snapshot '{id}' was already gone from host '{host}'\n"
            ))
            .await;
        }
        Removed::HostForgotten { host } => {
            io.write_err(&format!(
                "warning: host '{host}' is no longer known to the gateway; its copy of the archive (if the machine still has it) is left alone\n"
            ))
            .await;
        }
    }
    io.write_out(&format!("removed snapshot {id}\n")).await;
    Ok(exit::OK)
}

/// The JSON shape of a snapshot in `snapshot --json` and `snapshot list --json`.
fn snapshot_json(s: &SnapshotRecord, host_present: bool) -> Value {
    json!({
        "id": s.id,
        "agent": s.agent,
        "host": s.host,
        "host_present": host_present,
        "label": s.label,
        "created_at": s.created_at,
        "size": s.size,
        "sha256": s.sha256,
        "owner": s.owner,
        "taken_by": s.taken_by,
        "template": s.spec.template,
        "command": s.spec.command.display(),
        "tags": s.spec.tags,
        "idle_stop": s.idle_stop,
    })
}
