//! A new agent, whatever it is made from (a plain `create`, a `clone`, a snapshot restored):
//! its row reserved as `creating` with the operation journaled ([`reserve`]), then made on its
//! host after whatever its workspace needs first ([`create_reserved`]), each step written to
//! the journal, and its name released on any failure that made nothing.

use hostctl::api::CreateRequest;

use super::error::Error;
use super::journal::{Intent, Planned};
use crate::agents::Core;
use crate::agents::reconcile;
use crate::hosts::Host;
use crate::model::{AgentStatus, OperationKind, Step};
use crate::store::{AgentRecord, StoreError};

/// Where a new agent comes from, for the operations journal: a plain create, or a copy of
/// another agent (clone) or of a snapshot (restore) on `from_host`.
#[derive(Clone, Debug)]
pub struct Origin {
    pub kind: OperationKind,
    pub from_host: Option<String>,
    pub source: Option<String>,
}

impl Origin {
    pub fn create() -> Origin {
        Origin {
            kind: OperationKind::Create,
            from_host: None,
            source: None,
        }
    }
}

/// Writes the operation (`agents::journal`), then inserts the new agent's row as `creating`:
/// it reserves the name while the host works, so two creates (or clones) of one name cannot
/// both proceed.
pub async fn reserve(
    core: &Core<'_>,
    host_name: &str,
    request: &CreateRequest,
    idle_stop: Option<String>,
    origin: Origin,
) -> Result<Intent, Error> {
    let intent = Intent::begin(
        core,
        Planned {
            kind: origin.kind,
            agent: request.name.clone(),
            from_host: origin.from_host,
            host: host_name.to_owned(),
            source: origin.source,
            was_running: false,
            operator: request.created_by.clone(),
        },
    )
    .await?;
    let record = AgentRecord {
        name: request.name.clone(),
        host: host_name.to_owned(),
        template: request.template.clone(),
        command: request.command.display(),
        workspace: String::new(),
        spec: request.clone(),
        tags: request.tags.clone(),
        status: AgentStatus::Creating,
        exit_code: None,
        pid: None,
        last_activity: None,
        created_at: crate::model::Timestamp::now(),
        created_by: request.created_by.clone(),
        activity: Default::default(),
        status_since: None,
        idle_stop,
        stop_reason: None,
        shared_with: Vec::new(),
    };
    let inserted = core.store.insert_agent(&record).await.map_err(|e| match e {
        StoreError::Conflict(m) => Error::Conflict(m),
        other => other.into(),
    });
    match inserted {
        Ok(()) => Ok(intent),
        Err(e) => {
            intent.end(&Err::<(), _>(&e)).await;
            Err(e)
        }
    }
}

/// An error of the core, as the caller's error `E`.
fn as_caller<E: From<Error>>(e: impl Into<Error>) -> E {
    E::from(e.into())
}

/// Runs `prepare` (a workspace copy, for clones and restores; it gets the operation's ID,
/// which marks the copy), then creates the reserved agent on `host` and records what the host
/// reports. Any failure releases the name. Each step is written to the operation's journal.
/// `prepare` fails with the caller's own error `E`, into which the core's turn too.
pub async fn create_reserved<E, F, Fut>(
    core: &Core<'_>,
    host: &Host,
    request: &CreateRequest,
    intent: Intent,
    prepare: F,
) -> Result<AgentRecord, E>
where
    E: From<Error> + std::fmt::Display,
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let name = &request.name;
    let mut on_host = false;
    let mut copied = false;
    let created = async {
        let secrets = super::secrets::values(core.store, &request.secret_names)
            .await
            .map_err(as_caller)?;
        prepare(intent.id().to_owned()).await?;
        copied = true;
        if intent.kind() != OperationKind::Create {
            intent.step(Step::Copied).await.map_err(as_caller)?;
        }
        let info = host.create(request, &secrets).await.map_err(as_caller)?;
        on_host = true;
        let recorded = async {
            intent.step(Step::Created).await?;
            core.store
                .observe_agent(name, &reconcile::observed(&info))
                .await?;
            core.store.set_sandbox(name, info.meta.sandbox()).await
        }
        .await;
        if let Err(cause) = recorded {
            // It exists on its host: the command must not say it was not made. Its row stays
            // `creating` until the next look at the host (or, if the gateway stops first, the
            // next start's settling of this operation) records what the host says.
            return Err(as_caller(Error::CreatedNotRecorded {
                name: name.clone(),
                host: host.name().to_owned(),
                cause,
            }));
        }
        core.store
            .agent(name)
            .await
            .map_err(as_caller)?
            .ok_or_else(|| as_caller(Error::NoSuchAgent(name.clone())))
    };
    let made = created.await;
    if made.is_err() && !on_host {
        // A copy that made it but whose agent did not start is not left behind (a failed
        // copy removed itself).
        if copied && intent.kind() != OperationKind::Create {
            let _ = host.discard(name, Some(intent.id())).await;
        }
        // Nothing was made: the name is free again. (An agent the host made but whose record
        // failed keeps its row; the reconciler records it.)
        core.store.delete_agent(name).await.map_err(as_caller)?;
    }
    // Made on its host is done, whatever its record came to.
    let outcome = if on_host {
        Ok(())
    } else {
        made.as_ref().map(|_| ()).map_err(|e: &E| e.to_string())
    };
    intent.end(&outcome).await;
    made
}
