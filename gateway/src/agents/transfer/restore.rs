//! A new agent made from a snapshot: the snapshot's settings (with the environment variables
//! and tags given added) and exactly its workspace, checked byte for byte against the
//! checksum recorded when it was taken, on the snapshot's host or another one.

use hostctl::api::{TermSize, WorkspaceSource};

use crate::agents::Core;
use crate::agents::access;
use crate::agents::create::{Origin, create_reserved, reserve};
use crate::agents::error::{Error, Result};
use crate::agents::{placement, tags};
use crate::hosts::restore_snapshot;
use crate::model::OperationKind;
use crate::store::{AgentRecord, Operator};

/// Snapshot `snapshot` restored as a new agent `name`.
#[derive(Clone, Debug)]
pub struct RestoreRequest {
    pub snapshot: String,
    pub name: String,
    /// The host to make it on (default: the snapshot's host).
    pub host: Option<String>,
    /// Added to the snapshot's environment and tags.
    pub env: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    /// Instead of the snapshot's.
    pub idle_stop: Option<String>,
    pub prompt: Option<String>,
    /// The caller's terminal, for the new agent's first screen.
    pub size: Option<TermSize>,
    /// Instead of the snapshot's sandbox.
    pub sandbox: Option<hostctl::api::Sandbox>,
}

/// Makes the agent for `operator`, who must see the snapshot and may use its host. A
/// journaled operation (`agents::create`).
pub async fn restore(
    core: &Core<'_>,
    operator: &Operator,
    request: RestoreRequest,
) -> Result<AgentRecord> {
    let name = request.name.as_str();
    let id = request.snapshot.as_str();
    placement::check_new_name(core, name).await?;
    for (k, v) in &request.tags {
        tags::check(k, v)?;
    }
    for (k, _) in &request.env {
        hostctl::api::validate_env_key(k).map_err(Error::BadEnvKey)?;
    }
    let snapshot = super::snapshot::visible(core, operator, id).await?;
    if core.store.host(&snapshot.host).await?.is_none() {
        return Err(Error::SnapshotHostGone {
            id: id.to_owned(),
            host: snapshot.host,
        });
    }
    if !access::may_use_host(operator, &snapshot.host, core.policy) {
        return Err(Error::SnapshotOnLocal(id.to_owned()));
    }
    let from = core.hosts.get(&snapshot.host)?;
    let host_name = match &request.host {
        Some(host) => placement::choose_host(core, operator, Some(host)).await?,
        None => snapshot.host.clone(),
    };
    let to = core.hosts.get(&host_name)?;
    let mut spec = snapshot.spec.clone();
    spec.name = name.to_owned();
    spec.workspace = WorkspaceSource::Prepared;
    spec.prompt = request.prompt.clone();
    if let Some(sandbox) = request.sandbox {
        spec.sandbox = Some(sandbox);
    }
    spec.size = request.size;
    spec.created_by = Some(operator.name.clone());
    placement::settle_sandbox(operator, &host_name, &mut spec, request.sandbox.is_none())?;
    spec.env.extend(request.env.iter().cloned());
    spec.tags.extend(request.tags.iter().cloned());
    let idle_stop = request.idle_stop.clone().or(snapshot.idle_stop.clone());
    let origin = Origin {
        kind: OperationKind::Restore,
        from_host: Some(snapshot.host.clone()),
        source: Some(id.to_owned()),
    };
    let intent = reserve(core, &host_name, &spec, idle_stop, origin).await?;
    let (from_host, to_host, snapshot) = (&from, &to, &snapshot);
    create_reserved(core, &to, &spec, intent, move |operation| async move {
        restore_snapshot(
            from_host,
            id,
            &snapshot.sha256,
            snapshot.size,
            to_host,
            name,
            &operation,
        )
        .await
        .map_err(|cause| Error::RestoreFailed {
            id: id.to_owned(),
            host: snapshot.host.clone(),
            cause: Box::new(cause),
        })
    })
    .await
}
