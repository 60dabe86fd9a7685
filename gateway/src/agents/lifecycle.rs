//! The life of one agent, as every route asks for it: finding an agent an operator may use and
//! its host ([`usable`]), its state fresh from its host ([`refreshed`]), whether it is ready for
//! sessions ([`ready`]), and starting, stopping, restarting and destroying it, each a call to
//! its host followed by the record of what the host said ([`Done`]).
//!
//! One change of an agent's life at a time: the callers hold the agent's turn
//! (`Core::locks`) around these.

use hostctl::api::AgentInfo;

use super::access;
use super::error::{Error, Result};
use super::journal::{Intent, Planned};
use crate::agents::Core;
use crate::agents::reconcile;
use crate::hosts::{Host, HostError};
use crate::model::{AgentStatus, OperationKind, Step};
use crate::store::{AgentRecord, Observed, Operator, StoreError};

/// What a host did, and whether the gateway could record it. A record that failed does not
/// undo what was done: the caller says so, and the next look at the host records it.
#[derive(Debug)]
pub struct Done<T> {
    pub value: T,
    pub recorded: Result<(), StoreError>,
}

/// Agent `name` and its host, if `operator` may use it (`access::may_use`).
pub async fn usable(
    core: &Core<'_>,
    operator: &Operator,
    name: &str,
) -> Result<(AgentRecord, Host)> {
    let agent = core.store.agent(name).await?;
    match access::may_use(operator, agent.as_ref().map(Into::into), core.policy) {
        Ok(()) => {}
        Err(access::Denied::LocalForAdminsOnly) => {
            return Err(Error::LocalForAdminsOnly(name.to_owned()));
        }
        Err(_) => return Err(Error::NoSuchAgent(name.to_owned())),
    }
    let agent = agent.ok_or_else(|| Error::NoSuchAgent(name.to_owned()))?;
    let host = core.hosts.get(&agent.host)?;
    Ok((agent, host))
}

/// As [`usable`], with the agent's state asked of its host and recorded first. A host that
/// cannot be asked (or that the tailnet reports down) leaves the agent `unknown`; a record
/// the store cannot take still decides what the caller does (the next look records it).
pub async fn refreshed(
    core: &Core<'_>,
    operator: &Operator,
    name: &str,
) -> Result<(AgentRecord, Host)> {
    let (agent, host) = usable(core, operator, name).await?;
    let answer = match crate::agents::reconcile::tailnet::down_reason(core, &agent.host).await {
        Some(reason) => Err(reason),
        None => host.info(name).await.map_err(|e| e.to_string()),
    };
    let seen = match answer {
        Ok(info) => reconcile::observed_from(core, &agent, &info),
        Err(e) => {
            tracing::warn!(agent = name, error = %e, "cannot refresh agent");
            reconcile::unknown()
        }
    };
    if agent.status == AgentStatus::Creating {
        return Ok((agent, host));
    }
    if let Err(e) = core.store.observe_agent(name, &seen).await {
        tracing::warn!(agent = name, error = %e, "cannot record an agent's status");
        return Ok((as_seen(agent, &seen), host));
    }
    let agent = access::agent(core.store, operator, name)
        .await?
        .ok_or_else(|| Error::NoSuchAgent(name.to_owned()))?;
    Ok((agent, host))
}

/// An agent's record with what its host just said applied in memory, for a caller to go on
/// with when the store could not take it (the next look at the host records it).
pub fn as_seen(mut agent: AgentRecord, seen: &Observed) -> AgentRecord {
    agent.status = seen.status;
    agent.exit_code = seen.exit_code;
    agent.pid = seen.pid;
    if let Some(activity) = &seen.activity {
        agent.activity = activity.clone();
    }
    if seen.status != AgentStatus::Running {
        agent.activity.state = None;
    }
    agent
}

/// Refuses an agent whose `create` is under way: its host may not have it yet, and the
/// create records what becomes of it.
pub fn ready(agent: &AgentRecord) -> Result<()> {
    if agent.status == AgentStatus::Creating {
        return Err(Error::StillCreating(agent.name.clone()));
    }
    Ok(())
}

/// Starts `agent` on `host`, with its secrets, and records what the host says.
pub async fn start(core: &Core<'_>, agent: &AgentRecord, host: &Host) -> Result<Done<AgentInfo>> {
    let secrets = super::secrets::values(core.store, &agent.spec.secret_names).await?;
    let info = host.start(&agent.name, None, &secrets).await?;
    Ok(record(core, info).await)
}

/// Stops `agent` on `host` (its workspace and files stay) and records what the host says.
pub async fn stop(core: &Core<'_>, agent: &AgentRecord, host: &Host) -> Result<Done<AgentInfo>> {
    let info = host.stop(&agent.name).await?;
    Ok(record(core, info).await)
}

/// Stops, then starts `agent` (its secrets looked up first: a secret gone leaves the agent
/// running).
pub async fn restart(core: &Core<'_>, agent: &AgentRecord, host: &Host) -> Result<Done<AgentInfo>> {
    let secrets = super::secrets::values(core.store, &agent.spec.secret_names).await?;
    host.stop(&agent.name).await?;
    let info = host.start(&agent.name, None, &secrets).await?;
    Ok(record(core, info).await)
}

/// Destroys `agent` for `operator`: its session, its files and the workspace its host created
/// (never a `--dir` one). A running agent, or one whose host cannot be asked, needs `force`
/// (then an unreachable host's files are left alone). A journaled operation: a gateway that
/// dies between the host's destroy and the record finishes it at its next start.
pub async fn destroy(
    core: &Core<'_>,
    operator: &Operator,
    agent: &AgentRecord,
    host: &Host,
    force: bool,
) -> Result<Done<()>> {
    let name = &agent.name;
    if agent.status == AgentStatus::Running && !force {
        return Err(Error::Running(name.clone()));
    }
    if agent.status == AgentStatus::Unknown && !force {
        return Err(Error::StateUnknown {
            name: name.clone(),
            host: agent.host.clone(),
        });
    }
    let intent = Intent::begin(
        core,
        Planned {
            kind: OperationKind::Destroy,
            agent: name.clone(),
            from_host: None,
            host: agent.host.clone(),
            source: None,
            was_running: agent.status == AgentStatus::Running,
            operator: Some(operator.name.clone()),
        },
    )
    .await?;
    let on_host = match host.destroy(name).await {
        // Already gone on the host: forgetting it here is all that is left to do.
        Ok(()) | Err(HostError::NotFound(_)) => Ok(()),
        Err(e) if force && e.host_unreachable() => Ok(()),
        Err(e) => Err(Error::from(e)),
    };
    if let Err(e) = on_host {
        intent.end(&Err::<(), _>(&e)).await;
        return Err(e);
    }
    // Removed from its host: what is left is the record. One that cannot be written leaves
    // the operation open at this step, and the gateway's next start finishes it.
    let forgotten = match intent.step(Step::HostDone).await {
        Ok(()) => core.store.delete_agent(name).await.map(drop),
        Err(e) => Err(e),
    };
    if forgotten.is_ok() {
        intent.end(&Ok::<(), String>(())).await;
    }
    core.inputs.forget(name);
    Ok(Done {
        value: (),
        recorded: forgotten,
    })
}

/// Records what a host said of an agent after acting on it.
async fn record(core: &Core<'_>, info: AgentInfo) -> Done<AgentInfo> {
    let recorded = core
        .store
        .observe_agent(&info.name, &reconcile::observed(&info))
        .await;
    Done {
        value: info,
        recorded,
    }
}
