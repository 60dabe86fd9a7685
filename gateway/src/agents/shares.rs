//! Sharing an agent: letting another operator see and use it ([`share`]), or taking that back
//! ([`unshare`]). Only the agent's owner (its creator) or an admin may; an operator it is
//! shared with may use it, not dispose of it ([`require_owner`]).

use super::access;
use super::error::{Error, Result};
use super::lifecycle::usable;
use crate::agents::Core;
use crate::store::{AgentRecord, Operator};

/// Agent `agent` to be shared with operator `with`, or no longer.
#[derive(Clone, Debug)]
pub struct ShareRequest {
    pub agent: String,
    pub with: String,
}

/// Refuses what only an agent's owner (its creator) or an admin may do (`what`: "share it").
pub fn require_owner(operator: &Operator, agent: &AgentRecord, what: &'static str) -> Result<()> {
    if access::may_dispose(operator, agent.created_by.as_deref()) {
        return Ok(());
    }
    Err(Error::NotOwner {
        agent: agent.name.clone(),
        owner: agent.created_by.clone(),
        what,
    })
}

/// Shares the agent with the operator, for `operator` (its owner or an admin). Returns the
/// agent's record. An operator who may not have agents on the agent's host (`local`) cannot
/// be given one there; its owner already has it.
pub async fn share(
    core: &Core<'_>,
    operator: &Operator,
    request: &ShareRequest,
) -> Result<AgentRecord> {
    let (agent, _host) = usable(core, operator, &request.agent).await?;
    require_owner(operator, &agent, "share it")?;
    let Some(with) = core.store.operator_named(&request.with).await? else {
        return Err(Error::NoSuchOperator(request.with.clone()));
    };
    if !access::may_use_host(&with, &agent.host, core.policy) {
        return Err(Error::ShareOnLocal {
            operator: with.name,
            agent: agent.name,
        });
    }
    if agent.created_by.as_deref() == Some(request.with.as_str()) {
        return Err(Error::AlreadyOwner {
            operator: request.with.clone(),
            agent: agent.name,
        });
    }
    core.store
        .share(&agent.name, &request.with, &operator.name)
        .await?;
    Ok(agent)
}

/// Takes a share back, for `operator` (the agent's owner or an admin). Returns the agent's
/// record.
pub async fn unshare(
    core: &Core<'_>,
    operator: &Operator,
    request: &ShareRequest,
) -> Result<AgentRecord> {
    let (agent, _host) = usable(core, operator, &request.agent).await?;
    require_owner(operator, &agent, "unshare it")?;
    if !core.store.unshare(&agent.name, &request.with).await? {
        return Err(Error::NotShared {
            operator: request.with.clone(),
            agent: agent.name,
        });
    }
    Ok(agent)
}
