//! A new agent with another agent's settings and a copy of its workspace, on the same host or
//! another one.

use hostctl::api::{TermSize, WorkspaceDigest, WorkspaceSource};

use crate::agents::Core;
use crate::agents::create::{Origin, create_reserved, reserve};
use crate::agents::error::{Error, Result};
use crate::agents::{lifecycle, placement};
use crate::hosts::copy_workspace;
use crate::model::OperationKind;
use crate::store::{AgentRecord, Operator};

/// Agent `source` copied as a new agent `name`, on `host` (default: the source's host).
#[derive(Clone, Debug)]
pub struct CloneRequest {
    pub source: String,
    pub name: String,
    pub host: Option<String>,
    /// The caller's terminal, for the new agent's first screen.
    pub size: Option<TermSize>,
}

/// What a clone made.
#[derive(Debug)]
pub struct Cloned {
    /// The source, as it was when it was copied.
    pub source: AgentRecord,
    pub agent: AgentRecord,
    /// The copy's digest, as both hosts verified it.
    pub digest: Option<WorkspaceDigest>,
}

/// Makes the clone for `operator`, holding the source's turn: its workspace is not changed
/// by a move or a stop meanwhile. A journaled operation (`agents::create`).
pub async fn clone(core: &Core<'_>, operator: &Operator, request: CloneRequest) -> Result<Cloned> {
    let _turn = core.locks.hold(&request.source).await;
    placement::check_new_name(core, &request.name).await?;
    let (src, from) = lifecycle::usable(core, operator, &request.source).await?;
    lifecycle::ready(&src)?;
    let host_name = match &request.host {
        Some(host) => placement::choose_host(core, operator, Some(host)).await?,
        None => src.host.clone(),
    };
    let to = core.hosts.get(&host_name)?;
    let mut spec = src.spec.clone();
    spec.name = request.name.clone();
    spec.workspace = WorkspaceSource::Prepared;
    spec.prompt = None;
    spec.size = request.size;
    spec.created_by = Some(operator.name.clone());
    placement::settle_sandbox(operator, &host_name, &mut spec, true)?;
    let origin = Origin {
        kind: OperationKind::Clone,
        from_host: Some(src.host.clone()),
        source: Some(src.name.clone()),
    };
    let intent = reserve(core, &host_name, &spec, src.idle_stop.clone(), origin).await?;
    let mut copied = None;
    let slot = &mut copied;
    let (from_host, to_host, src_name, dst) = (&from, &to, &src.name, &request.name);
    let copy = move |operation: String| async move {
        *slot = Some(copy_workspace(from_host, src_name, to_host, dst, &operation).await?);
        Ok::<(), Error>(())
    };
    let agent = create_reserved(core, &to, &spec, intent, copy).await?;
    Ok(Cloned {
        source: src,
        agent,
        digest: copied,
    })
}
