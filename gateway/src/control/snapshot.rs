//! `snapshot NAME [--label L] [--json]`, `snapshot list [NAME] [--json]`, `snapshot remove ID`,
//! and the restore behind `create NEW --from-snapshot ID [--host H]`.
//!
//! A snapshot is kept on the agent's host (hostctl's `snapshots/ID.tar.gz` with its settings
//! beside it); the store records it (with the archive's SHA-256), so that `snapshot list` asks
//! no host and a restore can check every byte it receives against the checksum recorded when
//! the snapshot was taken. IDs are `AGENT-YYYYMMDD-HHMM` (UTC), `-2`, `-3`... for more than one
//! in a minute.

use std::sync::Arc;

use clap::{Args, Subcommand};
use hostctl::api::{ErrorCode, SnapshotMeta, SnapshotRequest};
use hostctl::disk::size_text;
use serde_json::{Value, json};

use super::output::{age, json_text, table};
use super::{Caller, CommandError, CommandIo, CommandResult, exit, refreshed_agent, require_owner};
use crate::Gateway;
use crate::hosts::HostError;
use crate::model::AgentStatus;
use crate::store::SnapshotRecord;

/// The most snapshots of one agent in one minute (IDs `-2` to `-N`).
const MAX_PER_MINUTE: u32 = 100;

/// The longest label, in bytes (as hostctl checks it).
const MAX_LABEL_LEN: usize = hostctl::snapshots::MAX_LABEL_LEN;

#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:\n  ssh gw snapshot fix-ci --label 'before the refactor'\n  ssh gw snapshot list fix-ci\n  ssh gw create fix-ci-2 --from-snapshot fix-ci-20261123-1215 --host gpu-box\n  ssh gw snapshot remove fix-ci-20261123-1215\n\nA snapshot is the agent's workspace (compressed, with a SHA-256) and its settings, kept\non the agent's host. IDs are AGENT-YYYYMMDD-HHMM (UTC). Stop the agent first for a quiet\nsnapshot: files that change while they are read make it fail."
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
    gw: &Arc<Gateway>,
    caller: &Caller,
    args: SnapshotArgs,
    io: &mut CommandIo,
) -> CommandResult {
    match args.command {
        Some(SnapshotCommand::List(list)) => run_list(gw, caller, list, io).await,
        Some(SnapshotCommand::Remove(remove)) => run_remove(gw, caller, &remove.id, io).await,
        None => {
            let Some(name) = args.name else {
                return Err(CommandError::usage("which agent? snapshot NAME"));
            };
            take(gw, caller, &name, args.label, args.json, io).await
        }
    }
}

async fn take(
    gw: &Arc<Gateway>,
    caller: &Caller,
    name: &str,
    label: Option<String>,
    json: bool,
    io: &mut CommandIo,
) -> CommandResult {
    if let Some(label) = &label {
        check_label(label)?;
    }
    let (agent, host) = refreshed_agent(gw, caller, name).await?;
    require_owner(caller, &agent, "snapshot it")?;
    match agent.status {
        AgentStatus::Creating => crate::agents::lifecycle::ready(&agent)?,
        AgentStatus::Unknown => {
            return Err(CommandError::failed(format!(
                "agent '{name}' cannot be reached: its host '{}' does not answer",
                agent.host
            ))
            .hint(format!(
                "see what fails with: ssh gw host check {}",
                agent.host
            )));
        }
        _ => {}
    }
    let minute = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]-[hour][minute]"
        ))
        .map_err(|e| CommandError::failed(format!("cannot format the time: {e}")))?;
    // The first ID free in the store and on the host (a concurrent snapshot, or one left
    // there by an earlier gateway, holds it there).
    let mut made = None;
    for n in 1..=MAX_PER_MINUTE {
        let id = hostctl::api::snapshot_id(name, &minute, n);
        if gw.store.snapshot_exists(&id).await? {
            continue;
        }
        let request = SnapshotRequest {
            id,
            label: label.clone(),
            taken_by: Some(caller.operator.name.clone()),
        };
        match host.snapshot(name, &request).await {
            Err(HostError::Rejected {
                code: ErrorCode::AlreadyExists,
                ..
            }) => continue,
            Err(e) => {
                if may_have_left_files(&e) {
                    // hostctl may have been cut off half-way, or have finished unheard: what
                    // it made under this ID would be on the host with no record, which
                    // `snapshot list` cannot show nor `snapshot remove` delete.
                    let _ = host.snapshot_remove(&request.id).await;
                }
                let e = CommandError::from(e);
                let hint = if agent.status == AgentStatus::Running {
                    format!(
                        "if its files changed while they were read, stop it first: ssh gw stop {name}"
                    )
                } else {
                    format!("see what fails with: ssh gw host check {}", agent.host)
                };
                return Err(CommandError {
                    message: format!("snapshot of agent '{name}' failed: {}", e.message),
                    ..e
                }
                .hint(hint));
            }
            Ok(snapshot) => {
                if let Err(e) = check_reply(&request.id, &snapshot) {
                    let _ = host.snapshot_remove(&request.id).await;
                    return Err(e);
                }
                made = Some(snapshot);
                break;
            }
        }
    }
    let Some(made) = made else {
        return Err(CommandError::failed(format!(
            "agent '{name}' has had {MAX_PER_MINUTE} snapshots this minute already"
        ))
        .hint("try again in a minute"));
    };
    let id = made.id.clone();
    let record = SnapshotRecord {
        id: made.id,
        agent: name.to_owned(),
        // Which agent of this name it is: the store shows the snapshot through this very
        // agent only, never through a later one of the same name.
        agent_created_at: Some(agent.created_at),
        host: agent.host.clone(),
        label,
        // The gateway's clock, as for agents: the host's may be off.
        created_at: crate::model::Timestamp::now(),
        size: made.size,
        sha256: made.sha256,
        owner: agent.created_by.clone(),
        taken_by: Some(caller.operator.name.clone()),
        spec: agent.spec.clone(),
        idle_stop: agent.idle_stop.clone(),
    };
    if let Err(e) = gw
        .store
        .insert_snapshot(&record, crate::store::SameArchive::Replace)
        .await
    {
        // Not recorded, so not usable: the archive is not left behind unlisted.
        let _ = host.snapshot_remove(&id).await;
        return Err(match e {
            crate::store::StoreError::Conflict(m) => {
                CommandError::failed(m).hint("try again in a moment")
            }
            other => other.into(),
        });
    }
    if json {
        io.write_out(&json_text(&snapshot_json(&record, true)))
            .await;
    } else {
        io.write_out(&format!(
            "snapshot {id} of agent '{name}' on host {}: {}, sha256 {}\nrestore it with: ssh gw create NEW --from-snapshot {id} [--host HOST]\n",
            record.host,
            size_text(record.size),
            record.sha256
        ))
        .await;
    }
    Ok(exit::OK)
}

/// Whether a snapshot that failed with `e` may have left files on the host: unless hostctl
/// answered (it refused, or failed and cleaned up after itself), it may have been cut off
/// mid-way or have finished with its answer lost.
fn may_have_left_files(e: &HostError) -> bool {
    !matches!(e, HostError::Rejected { .. } | HostError::NotFound(_))
}

/// A host's answer to snapshot `requested` must be about that snapshot: the gateway records
/// the ID it asked for, never another.
fn check_reply(requested: &str, made: &SnapshotMeta) -> Result<(), CommandError> {
    if made.id == requested {
        return Ok(());
    }
    Err(CommandError::failed(format!(
        "the host answered snapshot '{requested}' with snapshot '{}'; nothing was recorded",
        made.id.escape_debug()
    )))
}

fn check_label(label: &str) -> Result<(), CommandError> {
    if label.len() > MAX_LABEL_LEN {
        return Err(CommandError::usage(format!(
            "the label is {} bytes long; the limit is {MAX_LABEL_LEN}",
            label.len()
        )));
    }
    if label.chars().any(char::is_control) {
        return Err(CommandError::usage(
            "a label is one line of text: no newlines, tabs or escapes",
        ));
    }
    Ok(())
}

async fn run_list(
    gw: &Arc<Gateway>,
    caller: &Caller,
    args: ListArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let snapshots =
        crate::agents::access::snapshots(&gw.store, &caller.operator, args.name.as_deref()).await?;
    let hosts: Vec<String> = gw
        .store
        .hosts()
        .await?
        .into_iter()
        .map(|h| h.name)
        .collect();
    let host_present = |s: &SnapshotRecord| hosts.contains(&s.host);
    if args.json {
        let all: Vec<Value> = snapshots
            .iter()
            .map(|s| snapshot_json(s, host_present(s)))
            .collect();
        io.write_out(&json_text(&Value::Array(all))).await;
        return Ok(exit::OK);
    }
    if snapshots.is_empty() {
        let hint = match &args.name {
            Some(name) => {
                format!("no snapshots of '{name}' (take one with: ssh gw snapshot {name})\n")
            }
            None => "no snapshots (take one with: ssh gw snapshot NAME)\n".to_owned(),
        };
        io.write_out(&hint).await;
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = snapshots
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                s.agent.clone(),
                if host_present(s) {
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
    gw: &Arc<Gateway>,
    caller: &Caller,
    id: &str,
    io: &mut CommandIo,
) -> CommandResult {
    let snapshot = visible_snapshot(gw, caller, id).await?;
    require_snapshot_owner(caller, &snapshot)?;
    let mut warning = None;
    if gw.store.host(&snapshot.host).await?.is_some() {
        let host = gw.hosts.get(&snapshot.host)?;
        match host.snapshot_remove(id).await {
            Ok(removed) if !removed.existed => {
                warning = Some(format!(
                    "warning: snapshot '{id}' was already gone from host '{}'\n",
                    snapshot.host
                ));
            }
            Ok(_) => {}
            Err(e) => {
                let e = CommandError::from(e);
                return Err(CommandError {
                    message: format!(
                        "removing snapshot '{id}' on host '{}' failed: {}; it is kept",
                        snapshot.host, e.message
                    ),
                    ..e
                });
            }
        }
    } else {
        warning = Some(format!(
            "warning: host '{}' is no longer known to the gateway; its copy of the archive (if the machine still has it) is left alone\n",
            snapshot.host
        ));
    }
    gw.store.delete_snapshot(id).await?;
    if let Some(warning) = warning {
        io.write_err(&warning).await;
    }
    io.write_out(&format!("removed snapshot {id}\n")).await;
    Ok(exit::OK)
}

/// Snapshot `id`, if the caller may see it; else the same answer as for one that does not exist.
pub(super) async fn visible_snapshot(
    gw: &Gateway,
    caller: &Caller,
    id: &str,
) -> Result<SnapshotRecord, CommandError> {
    crate::agents::access::snapshot(&gw.store, &caller.operator, id)
        .await?
        .ok_or_else(|| {
            CommandError::failed(format!("no snapshot '{id}'"))
                .hint("see the snapshots with: ssh gw snapshot list")
        })
}

/// Only the owner of the snapshot's agent (when it was taken) or an admin may remove it.
fn require_snapshot_owner(caller: &Caller, snapshot: &SnapshotRecord) -> Result<(), CommandError> {
    if crate::agents::access::may_dispose(&caller.operator, snapshot.owner.as_deref()) {
        return Ok(());
    }
    Err(CommandError::failed(format!(
        "only the owner of snapshot '{}' ({}) or an admin can remove it",
        snapshot.id,
        snapshot.owner.as_deref().unwrap_or("none")
    )))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_about_another_snapshot_is_refused() {
        let made = |id: &str| SnapshotMeta {
            id: id.into(),
            agent: "w".into(),
            label: None,
            created_at: "2999-01-01T00:00:00Z".into(),
            size: 1,
            sha256: "ab".repeat(32),
            spec: hostctl::api::CreateRequest {
                name: "w".into(),
                template: "shell".into(),
                command: hostctl::api::AgentCommand::LoginShell,
                restart_command: None,
                workspace: hostctl::api::WorkspaceSource::Empty,
                env: Default::default(),
                tags: Default::default(),
                prompt: None,
                size: None,
                created_by: None,
                secret_names: Vec::new(),
                cli: None,
            },
            taken_by: None,
        };
        assert!(check_reply("w-20261123-1215", &made("w-20261123-1215")).is_ok());
        assert!(check_reply("w-20261123-1215", &made("x-20261123-1215")).is_err());
    }

    #[test]
    fn a_snapshot_cut_off_is_cleaned_up_and_a_refused_one_is_not() {
        let timeout = HostError::Timeout {
            host: "h1".into(),
            what: "snapshot".into(),
            seconds: 600,
        };
        assert!(may_have_left_files(&timeout));
        let garbled = HostError::Protocol {
            host: "h1".into(),
            what: "snapshot".into(),
            detail: "EOF".into(),
        };
        assert!(may_have_left_files(&garbled));
        let refused = HostError::Rejected {
            code: ErrorCode::Failed,
            message: "tar: file changed as we read it".into(),
        };
        assert!(!may_have_left_files(&refused));
    }

    #[test]
    fn labels_are_one_short_line() {
        assert!(check_label("before the refactor").is_ok());
        assert_eq!(check_label("a\nb").map_err(|e| e.status), Err(exit::USAGE));
        assert!(check_label(&"x".repeat(MAX_LABEL_LEN + 1)).is_err());
    }
}
