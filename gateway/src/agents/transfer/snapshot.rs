//! Snapshots: an agent's workspace (compressed, with its SHA-256) and its settings, kept on
//! the agent's host (hostctl's `snapshots/ID.tar.gz` with its settings beside it) and recorded
//! in the store, so that listing them asks no host and a restore can check every byte it
//! receives against the checksum recorded when the snapshot was taken. IDs are
//! `AGENT-YYYYMMDD-HHMM` (UTC), `-2`, `-3`... for more than one in a minute.
//!
//! [`take`], [`list`], [`remove`], and [`visible`] for a restore; the label and the host's
//! reply are checked here ([`check_label`], [`check_reply`]), pure.

use hostctl::api::{ErrorCode, SnapshotMeta};

use crate::agents::Core;
use crate::agents::error::{Error, LabelError, Purpose, Result};
use crate::agents::{access, lifecycle, shares};
use crate::hosts::HostError;
use crate::model::AgentStatus;
use crate::store::{Operator, SameArchive, SnapshotRecord, StoreError};

/// The most snapshots of one agent in one minute (IDs `-2` to `-N`).
pub const MAX_PER_MINUTE: u32 = 100;

/// The longest label, in bytes (as hostctl checks it).
pub const MAX_LABEL_LEN: usize = hostctl::snapshots::MAX_LABEL_LEN;

/// A label is one short line of text: it is shown in tables, one snapshot a line.
pub fn check_label(label: &str) -> Result<(), LabelError> {
    if label.len() > MAX_LABEL_LEN {
        return Err(LabelError::TooLong {
            len: label.len(),
            limit: MAX_LABEL_LEN,
        });
    }
    if label.chars().any(char::is_control) {
        return Err(LabelError::NotOneLine);
    }
    Ok(())
}

/// A host's answer to snapshot `requested` must be about that snapshot: the gateway records
/// the ID it asked for, never another.
pub fn check_reply(requested: &str, made: &SnapshotMeta) -> Result<()> {
    if made.id == requested {
        return Ok(());
    }
    Err(Error::WrongSnapshot {
        requested: requested.to_owned(),
        answered: made.id.clone(),
    })
}

/// Whether a snapshot that failed with `e` may have left files on the host: unless hostctl
/// answered (it refused, or failed and cleaned up after itself), it may have been cut off
/// mid-way or have finished with its answer lost.
fn may_have_left_files(e: &HostError) -> bool {
    !matches!(e, HostError::Rejected { .. } | HostError::NotFound(_))
}

/// A snapshot of agent `name` to take, with an optional label.
#[derive(Clone, Debug)]
pub struct TakeRequest {
    pub name: String,
    pub label: Option<String>,
}

/// Takes a snapshot for `operator` (the agent's owner or an admin), holding the agent's turn
/// (a move under way finishes first), and records it.
pub async fn take(
    core: &Core<'_>,
    operator: &Operator,
    request: TakeRequest,
) -> Result<SnapshotRecord> {
    let _turn = core.locks.hold(&request.name).await;
    let TakeRequest { name, label } = request;
    let name = name.as_str();
    if let Some(label) = &label {
        check_label(label)?;
    }
    let (agent, host) = lifecycle::refreshed(core, operator, name).await?;
    shares::require_owner(operator, &agent, "snapshot it")?;
    match agent.status {
        AgentStatus::Creating => lifecycle::ready(&agent)?,
        AgentStatus::Unknown => {
            return Err(Error::HostNotAnswering {
                name: name.to_owned(),
                host: agent.host.clone(),
                purpose: Purpose::Snapshot,
            });
        }
        _ => {}
    }
    let minute = time::OffsetDateTime::now_utc().format(time::macros::format_description!(
        "[year][month][day]-[hour][minute]"
    ))?;
    // The first ID free in the store and on the host (a concurrent snapshot, or one left
    // there by an earlier gateway, holds it there).
    let mut made = None;
    for n in 1..=MAX_PER_MINUTE {
        let id = hostctl::api::snapshot_id(name, &minute, n);
        if core.store.snapshot_exists(&id).await? {
            continue;
        }
        let asked = hostctl::api::SnapshotRequest {
            id,
            label: label.clone(),
            taken_by: Some(operator.name.clone()),
        };
        match host.snapshot(name, &asked).await {
            Err(HostError::Rejected {
                code: ErrorCode::AlreadyExists,
                ..
            }) => continue,
            Err(cause) => {
                if may_have_left_files(&cause) {
                    // hostctl may have been cut off half-way, or have finished unheard: what
                    // it made under this ID would be on the host with no record, which
                    // `snapshot list` cannot show nor `snapshot remove` delete.
                    let _ = host.snapshot_remove(&asked.id).await;
                }
                return Err(Error::SnapshotFailed {
                    name: name.to_owned(),
                    host: agent.host.clone(),
                    running: agent.status == AgentStatus::Running,
                    cause: Box::new(cause),
                });
            }
            Ok(snapshot) => {
                if let Err(e) = check_reply(&asked.id, &snapshot) {
                    let _ = host.snapshot_remove(&asked.id).await;
                    return Err(e);
                }
                made = Some(snapshot);
                break;
            }
        }
    }
    let Some(made) = made else {
        return Err(Error::TooManySnapshots {
            name: name.to_owned(),
            limit: MAX_PER_MINUTE,
        });
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
        taken_by: Some(operator.name.clone()),
        spec: agent.spec.clone(),
        idle_stop: agent.idle_stop.clone(),
    };
    if let Err(e) = core
        .store
        .insert_snapshot(&record, SameArchive::Replace)
        .await
    {
        // Not recorded, so not usable: the archive is not left behind unlisted.
        let _ = host.snapshot_remove(&id).await;
        return Err(match e {
            StoreError::Conflict(m) => Error::SnapshotConflict(m),
            other => other.into(),
        });
    }
    Ok(record)
}

/// A snapshot as [`list`] shows it.
#[derive(Clone, Debug)]
pub struct Listed {
    pub snapshot: SnapshotRecord,
    /// Whether the gateway still has the host the snapshot is kept on.
    pub host_present: bool,
}

/// The snapshots `operator` may see (of agent `of` only, if given; it may have been destroyed
/// since), oldest first. No host is asked.
pub async fn list(core: &Core<'_>, operator: &Operator, of: Option<&str>) -> Result<Vec<Listed>> {
    let snapshots = access::snapshots(core.store, operator, of).await?;
    let hosts: Vec<String> = core
        .store
        .hosts()
        .await?
        .into_iter()
        .map(|h| h.name)
        .collect();
    Ok(snapshots
        .into_iter()
        .map(|snapshot| Listed {
            host_present: hosts.contains(&snapshot.host),
            snapshot,
        })
        .collect())
}

/// What [`remove`] found on the snapshot's host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removed {
    /// Removed there and here.
    Both,
    /// The host no longer had it; the record is gone now too.
    AlreadyGone { host: String },
    /// The gateway no longer has its host: the archive there (if the machine still has it)
    /// is left alone, and the record removed.
    HostForgotten { host: String },
}

/// Removes snapshot `id`, on its host and in the store, for `operator` (the owner of its
/// agent when it was taken, or an admin). A host that fails keeps it, and so does the store.
pub async fn remove(core: &Core<'_>, operator: &Operator, id: &str) -> Result<Removed> {
    let snapshot = visible(core, operator, id).await?;
    if !access::may_dispose(operator, snapshot.owner.as_deref()) {
        return Err(Error::NotSnapshotOwner {
            id: snapshot.id,
            owner: snapshot.owner,
        });
    }
    let removed = if core.store.host(&snapshot.host).await?.is_some() {
        let host = core.hosts.get(&snapshot.host)?;
        match host.snapshot_remove(id).await {
            Ok(removed) if !removed.existed => Removed::AlreadyGone {
                host: snapshot.host,
            },
            Ok(_) => Removed::Both,
            Err(cause) => {
                return Err(Error::SnapshotRemoveFailed {
                    id: id.to_owned(),
                    host: snapshot.host,
                    cause: Box::new(cause),
                });
            }
        }
    } else {
        Removed::HostForgotten {
            host: snapshot.host,
        }
    };
    core.store.delete_snapshot(id).await?;
    Ok(removed)
}

/// Snapshot `id`, if `operator` may see it; else the same answer as for one that does not
/// exist.
pub async fn visible(core: &Core<'_>, operator: &Operator, id: &str) -> Result<SnapshotRecord> {
    access::snapshot(core.store, operator, id)
        .await?
        .ok_or_else(|| Error::NoSuchSnapshot(id.to_owned()))
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
            spec: hostctl::api::CreateRequest::login_shell("w"),
            taken_by: None,
        };
        assert!(check_reply("w-20261123-1215", &made("w-20261123-1215")).is_ok());
        let refused = check_reply("w-20261123-1215", &made("x-20261123-1215\n"));
        assert_eq!(
            refused.map_err(|e| e.to_string()),
            Err(
                "the host answered snapshot 'w-20261123-1215' with snapshot \
                 'x-20261123-1215\\n'; nothing was recorded"
                    .to_owned()
            )
        );
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
        assert_eq!(check_label("before the refactor"), Ok(()));
        assert_eq!(check_label("a\nb"), Err(LabelError::NotOneLine));
        assert_eq!(check_label("tab\there"), Err(LabelError::NotOneLine));
        assert_eq!(check_label(&"x".repeat(MAX_LABEL_LEN)), Ok(()));
        let long = check_label(&"x".repeat(MAX_LABEL_LEN + 1));
        let len = MAX_LABEL_LEN + 1;
        let limit = MAX_LABEL_LEN;
        assert_eq!(long, Err(LabelError::TooLong { len, limit }));
        assert_eq!(
            long.map_err(|e| e.to_string()),
            Err(format!(
                "the label is {} bytes long; the limit is {MAX_LABEL_LEN}",
                MAX_LABEL_LEN + 1
            ))
        );
    }
}
