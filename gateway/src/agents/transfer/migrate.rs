//! Moves an agent to another host. It is stopped, its workspace streamed to the other host and
//! verified there, started there, and only then removed from the old host. A failure before
//! the move is complete leaves the agent where it was, as it was.

use hostctl::api::{Secrets, WorkspaceDigest, WorkspaceSource};
use tracing::warn;

use crate::agents::Core;
use crate::agents::error::{Error, Purpose, Result};
use crate::agents::journal::{Intent, Planned};
use crate::agents::reconcile;
use crate::agents::{lifecycle, placement};
use crate::hosts::{Host, HostError, copy_workspace};
use crate::model::{AgentStatus, OperationKind, Step};
use crate::store::{AgentRecord, Operator};

/// Agent `name` to be moved to host `host`.
#[derive(Clone, Debug)]
pub struct MigrateRequest {
    pub name: String,
    pub host: String,
}

/// What a move did.
#[derive(Debug)]
pub struct Migrated {
    /// The agent where it is now.
    pub agent: AgentRecord,
    /// The host it left.
    pub from_host: String,
    /// The copy's digest, as both hosts verified it.
    pub digest: WorkspaceDigest,
    /// Why its old copy could not be removed, if it could not (the move is done all the same).
    pub leftover: Option<HostError>,
}

/// Moves the agent for `operator`, holding its turn for the whole move. A journaled operation:
/// a gateway that dies half-way settles it at its next start.
pub async fn migrate(
    core: &Core<'_>,
    operator: &Operator,
    request: MigrateRequest,
) -> Result<Migrated> {
    let _turn = core.locks.hold(&request.name).await;
    let name = request.name.as_str();
    let (mut agent, from) = lifecycle::refreshed(core, operator, name).await?;
    if agent.host == request.host {
        return Err(Error::AlreadyOnHost {
            name: name.to_owned(),
            host: request.host,
        });
    }
    let to = core
        .hosts
        .get(&placement::choose_host(core, operator, Some(&request.host)).await?)?;
    match agent.status {
        AgentStatus::Creating => lifecycle::ready(&agent)?,
        AgentStatus::Unknown => {
            return Err(Error::HostNotAnswering {
                name: name.to_owned(),
                host: agent.host.clone(),
                purpose: Purpose::Migrate,
            });
        }
        _ => {}
    }
    placement::settle_sandbox(operator, &request.host, &mut agent.spec, true)?;
    if let WorkspaceSource::Dir { path } = &agent.spec.workspace {
        return Err(Error::WorkspaceNotItsOwn {
            name: name.to_owned(),
            path: path.clone(),
            host: agent.host.clone(),
            to: request.host,
        });
    }
    // The target is asked before the agent is stopped: an unreachable host, or one that has
    // an agent of that name already, refuses the move while nothing has happened yet.
    let there = to
        .probe(None)
        .await
        .map_err(|cause| Error::TargetNotAnswering {
            name: name.to_owned(),
            to: request.host.clone(),
            cause: Box::new(cause),
        })?;
    if there.iter().any(|a| a.name == name) {
        return Err(Error::UnlistedOnTarget {
            name: name.to_owned(),
            host: request.host,
        });
    }
    let was_running = agent.status == AgentStatus::Running;
    let secrets = crate::agents::secrets::values(core.store, &agent.spec.secret_names).await?;
    let intent = Intent::begin(
        core,
        Planned {
            kind: OperationKind::Migrate,
            agent: name.to_owned(),
            from_host: Some(agent.host.clone()),
            host: request.host.clone(),
            source: None,
            was_running,
            operator: Some(operator.name.clone()),
        },
    )
    .await?;
    let moving = Move {
        core: *core,
        intent: &intent,
        agent: &agent,
        from: &from,
        to: &to,
        to_name: &request.host,
        secrets: &secrets,
        was_running,
    };
    let result = moving.run().await;
    intent.end(&result).await;
    let (digest, leftover) = result?;
    let moved = core
        .store
        .agent(name)
        .await?
        .ok_or_else(|| Error::NoSuchAgent(name.to_owned()))?;
    Ok(Migrated {
        agent: moved,
        from_host: agent.host,
        digest,
        leftover,
    })
}

/// One move under way, step by step, each step written to the operation's journal.
struct Move<'a> {
    core: Core<'a>,
    intent: &'a Intent,
    agent: &'a AgentRecord,
    from: &'a Host,
    to: &'a Host,
    to_name: &'a str,
    secrets: &'a Secrets,
    was_running: bool,
}

impl Move<'_> {
    /// Starts the agent again where it was, if it ran (after a step that failed).
    async fn restore(&self) {
        let name = self.agent.name.as_str();
        if self.was_running
            && let Ok(info) = self.from.start(name, None, self.secrets).await
        {
            let _ = self
                .core
                .store
                .observe_agent(name, &reconcile::observed(&info))
                .await;
        }
    }

    /// Returns the verified copy's digest, and why the old copy could not be removed if so.
    async fn run(&self) -> Result<(WorkspaceDigest, Option<HostError>)> {
        let (core, from, to) = (self.core, self.from, self.to);
        let name = self.agent.name.as_str();
        let (from_name, to_name) = (self.agent.host.as_str(), self.to_name);
        let operation = self.intent.id();
        if self.was_running {
            // A stop whose answer was lost may still have stopped it: start it again then.
            let stopped = match from.stop(name).await {
                Ok(info) => info,
                Err(e) => {
                    self.restore().await;
                    return Err(e.into());
                }
            };
            core.store
                .observe_agent(name, &reconcile::observed(&stopped))
                .await?;
        }
        self.intent.step(Step::SourceStopped).await?;
        let digest = match copy_workspace(from, name, to, name, operation).await {
            Ok(digest) => digest,
            Err(cause) => {
                self.restore().await;
                return Err(Error::CopyFailed {
                    name: name.to_owned(),
                    from: from_name.to_owned(),
                    cause: Box::new(cause),
                });
            }
        };
        // Nothing may have started it again meanwhile (an attach, say): then what was copied
        // is already stale, and the agent stays where it runs.
        if let Ok(now) = from.info(name).await
            && now.status == hostctl::api::HostAgentStatus::Running
        {
            let _ = to.discard(name, Some(operation)).await;
            return Err(Error::StartedDuringMove {
                name: name.to_owned(),
                from: from_name.to_owned(),
                to: to_name.to_owned(),
            });
        }
        self.intent.step(Step::Copied).await?;
        // On the new host it starts as a restart would: with the restart command, if any.
        let mut request = self.agent.spec.clone();
        request.workspace = WorkspaceSource::Prepared;
        request.prompt = None;
        if let Some(again) = request.restart_command.clone() {
            request.command = again;
        }
        let info = match to.create(&request, self.secrets).await {
            Ok(info) => info,
            Err(cause) => {
                let _ = to.discard(name, Some(operation)).await;
                self.restore().await;
                return Err(Error::StartOnTargetFailed {
                    name: name.to_owned(),
                    from: from_name.to_owned(),
                    to: to_name.to_owned(),
                    cause: Box::new(cause),
                });
            }
        };
        let info = if self.was_running {
            info
        } else {
            // It was not running: it is not running after the move either.
            to.stop(name).await.unwrap_or(info)
        };
        self.intent.step(Step::Created).await?;
        core.store.set_agent_host(name, to_name).await?;
        self.intent.step(Step::Switched).await?;
        core.store
            .observe_agent(name, &reconcile::observed(&info))
            .await?;
        let leftover = match from.destroy(name).await {
            Ok(()) => None,
            Err(e) => {
                warn!(agent = name, host = from_name, error = %e, "the old copy was not removed");
                Some(e)
            }
        };
        Ok((digest, leftover))
    }
}
