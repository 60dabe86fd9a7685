//! Snapshots found on a host that the store does not know (a store restored from a backup,
//! or lost): once a run, each host's are listed, checked like the gateway's own input, and
//! taken up ([`adopt`]); [`SnapshotScans`] keeps, per host, whether that was done.

use std::collections::HashMap;

use tracing::{info, warn};

use crate::Gateway;
use crate::hosts::Host;
use crate::model::Timestamp;
use crate::store::{SameArchive, SnapshotRecord, StoreError};

/// Per host, whether its snapshots were taken up in this run of the gateway
/// ([`adopt`]), are being, or when that last failed.
#[derive(Debug, Default)]
pub struct SnapshotScans(std::sync::Mutex<HashMap<String, Scan>>);

#[derive(Debug)]
enum Scan {
    Running,
    Done,
    Failed(std::time::Instant),
}

/// How long after a failed listing of a host's snapshots it is tried again.
const SCAN_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

impl SnapshotScans {
    /// Whether `host`'s snapshots are to be listed now (then marked as being listed).
    pub(super) fn claim(&self, host: &str) -> bool {
        let Ok(mut scans) = self.0.lock() else {
            return false;
        };
        let due = match scans.get(host) {
            None => true,
            Some(Scan::Failed(at)) => at.elapsed() >= SCAN_RETRY,
            Some(Scan::Running | Scan::Done) => false,
        };
        if due {
            scans.insert(host.to_owned(), Scan::Running);
        }
        due
    }

    pub(super) fn finish(&self, host: &str, done: bool) {
        if let Ok(mut scans) = self.0.lock() {
            let scan = if done {
                Scan::Done
            } else {
                Scan::Failed(std::time::Instant::now())
            };
            scans.insert(host.to_owned(), scan);
        }
    }
}

/// Records the snapshots on `host` that the store does not know, as the host describes them;
/// false if the host could not say.
pub(super) async fn adopt(gw: &Gateway, host: &Host) -> bool {
    let list = match host.snapshot_list().await {
        Ok(list) => list,
        Err(e) => {
            warn!(host = host.name(), error = %e, "cannot list the host's snapshots");
            return false;
        }
    };
    for why in &list.skipped {
        warn!(host = host.name(), skipped = why, "not a whole snapshot");
    }
    for meta in list.snapshots {
        // The host's word is checked as the gateway's own input would be: a snapshot that
        // fails is left on the host, unlisted.
        if let Err(why) = valid_snapshot(&meta) {
            warn!(host = host.name(), snapshot = %meta.id.escape_debug(), why = %why, "not taking up a snapshot");
            continue;
        }
        match gw.store.snapshot_exists(&meta.id).await {
            Ok(false) => {}
            Ok(true) => continue,
            Err(e) => {
                warn!(host = host.name(), error = %e, "cannot read the snapshots");
                return false;
            }
        }
        let record = match adopted_snapshot(gw, host.name(), meta).await {
            Ok(record) => record,
            Err(e) => {
                warn!(host = host.name(), error = %e, "cannot read the agents");
                return false;
            }
        };
        info!(
            snapshot = record.id,
            agent = record.agent,
            host = host.name(),
            "taking up a snapshot found on the host"
        );
        match gw.store.insert_snapshot(&record, SameArchive::Keep).await {
            // Another host has a snapshot of this ID: the store keeps the one it has.
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => {
                warn!(host = host.name(), error = %e, "cannot record a snapshot");
                return false;
            }
        }
    }
    true
}

/// Why what a host says of a snapshot is not taken up.
#[derive(Debug, PartialEq, thiserror::Error)]
enum Unfit {
    /// A field that hostctl's own checks refuse, in their words.
    #[error("{0}")]
    Field(String),
    #[error(transparent)]
    Operator(#[from] crate::auth::InvalidInput),
}

/// Whether what a host says of a snapshot is what the gateway would have recorded itself.
fn valid_snapshot(meta: &hostctl::api::SnapshotMeta) -> Result<(), Unfit> {
    hostctl::api::validate_snapshot_id(&meta.id).map_err(Unfit::Field)?;
    hostctl::api::validate_agent_name(&meta.agent).map_err(Unfit::Field)?;
    if let Some(label) = &meta.label {
        hostctl::snapshots::check_label(label).map_err(|e| Unfit::Field(e.to_string()))?;
    }
    hostctl::api::validate_sha256(&meta.sha256).map_err(Unfit::Field)?;
    for who in [&meta.spec.created_by, &meta.taken_by]
        .into_iter()
        .flatten()
    {
        crate::auth::validate_operator_name(who)?;
    }
    Ok(())
}

/// A store record for a snapshot found on `host`. Its owner is its agent's creator, from the
/// settings it keeps. It is seen through an agent of its name only if that agent has the same
/// creator and was there before the snapshot was taken: never through someone else's agent.
async fn adopted_snapshot(
    gw: &Gateway,
    host: &str,
    meta: hostctl::api::SnapshotMeta,
) -> Result<SnapshotRecord, StoreError> {
    let taken = Timestamp::parse(&meta.created_at).ok();
    let agent_created_at = gw.store.agent(&meta.agent).await?.and_then(|agent| {
        let before = taken.is_some_and(|taken| agent.created_at <= taken);
        (before && agent.created_by == meta.spec.created_by).then_some(agent.created_at)
    });
    Ok(SnapshotRecord {
        agent_created_at,
        host: host.to_owned(),
        label: meta.label,
        created_at: taken.unwrap_or_else(Timestamp::now),
        size: meta.size,
        sha256: meta.sha256,
        owner: meta.spec.created_by.clone(),
        taken_by: meta.taken_by,
        spec: meta.spec,
        idle_stop: None,
        id: meta.id,
        agent: meta.agent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AgentStatus;
    use crate::store::sample_agent;

    #[test]
    fn a_snapshot_found_on_a_host_is_checked_like_the_gateways_own_input() {
        let mut spec = sample_agent("w", "h1", AgentStatus::Running).spec;
        spec.created_by = Some("alice".into());
        let good = hostctl::api::SnapshotMeta {
            id: "w-20261123-1200".into(),
            agent: "w".into(),
            label: Some("before the refactor".into()),
            created_at: "2026-11-23T12:00:00Z".into(),
            size: 10,
            sha256: "ab".repeat(32),
            spec,
            taken_by: Some("bob.smith".into()),
        };
        assert_eq!(valid_snapshot(&good), Ok(()));
        let bad = |change: fn(&mut hostctl::api::SnapshotMeta)| {
            let mut meta = good.clone();
            change(&mut meta);
            valid_snapshot(&meta).expect_err("refused").to_string()
        };
        assert!(bad(|m| m.label = Some("\x1b]0;owned\x07".into())).contains("control"));
        assert!(bad(|m| m.id = "../x".into()).contains("snapshot"));
        assert!(bad(|m| m.agent = "W W".into()).contains("name"));
        assert!(bad(|m| m.sha256 = "zz".into()).contains("SHA-256"));
        assert!(bad(|m| m.taken_by = Some("a\nb".into())).contains("operator"));
    }
}
