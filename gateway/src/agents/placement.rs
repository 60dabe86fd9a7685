//! Where a new agent goes and under which name: the name checks ([`check_new_name`]), the
//! host chosen ([`choose_host`]: the one named, else the configured default, else the least
//! busy reachable host the operator may use, [`place`]), and the lock that makes choosing a
//! host and reserving the new agent's row there one step ([`PLACING`]).

use hostctl::api::CreateRequest;

use super::access;
use super::error::{Error, Result};
use crate::agents::Core;
use crate::hosts::LOCAL_HOST;
use crate::model::{AgentStatus, HostStatus};
use crate::store::{AgentRecord, HostRecord, Operator};

/// Held from the choice of a host to the reservation of the new agent's row there (a
/// create's, and only that: a clone or a restore goes to a host it is told or its source's).
/// One per process: a data directory is served by one gateway.
pub static PLACING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Refuses a name a new agent cannot take: invalid, reserved, an operator's, or taken.
pub async fn check_new_name(core: &Core<'_>, name: &str) -> Result<()> {
    if let Some(reason) = crate::auth::name_unavailable_reason(name) {
        return Err(Error::BadName(reason));
    }
    if core.store.operator_exists(name).await? {
        return Err(Error::NameOfAnOperator(name.to_owned()));
    }
    if core.store.agent_exists(name).await? {
        return Err(Error::NameTaken(name.to_owned()));
    }
    Ok(())
}

/// The host named (it must exist), else the configured default host, else the placement.
pub async fn choose_host(
    core: &Core<'_>,
    operator: &Operator,
    named: Option<&str>,
) -> Result<String> {
    match named
        .map(str::to_owned)
        .or_else(|| core.default_host.map(str::to_owned))
    {
        Some(name) => {
            if core.store.host(&name).await?.is_none() {
                return Err(Error::NoSuchHost(name));
            }
            if !access::may_use_host(operator, &name, core.policy) {
                return Err(Error::HostForAdminsOnly(name));
            }
            Ok(name)
        }
        None => {
            let hosts: Vec<HostRecord> = core
                .store
                .hosts()
                .await?
                .into_iter()
                .filter(|h| access::may_use_host(operator, &h.name, core.policy))
                .collect();
            let agents = core.store.agents().await?;
            place(&hosts, &agents).ok_or_else(|| Error::NoReachableHost {
                but_local: !access::may_use_host(operator, LOCAL_HOST, core.policy),
            })
        }
    }
}

/// Settles what `spec`, a new agent of `operator`'s on `host`, runs in
/// ([`access::sandbox_on`]; `copied`: its sandbox was carried from what it is a copy of):
/// refused for an operator's agent asked to run on `local` without a sandbox.
pub fn settle_sandbox(
    operator: &Operator,
    host: &str,
    spec: &mut CreateRequest,
    copied: bool,
) -> Result<()> {
    let asked = if copied {
        access::SandboxAsked::Copied(spec.sandbox)
    } else {
        access::SandboxAsked::Asked(spec.sandbox)
    };
    spec.sandbox = access::sandbox_on(operator, host, asked)
        .map_err(|_| Error::UnsandboxedOnLocal(spec.name.clone()))?;
    Ok(())
}

/// Where an agent goes when no host is named: the reachable host with the fewest agents
/// running or being created; on a tie `local`, then the first by name.
pub fn place(hosts: &[HostRecord], agents: &[AgentRecord]) -> Option<String> {
    hosts
        .iter()
        .filter(|h| h.status == HostStatus::Reachable)
        .min_by_key(|h| {
            let running = agents
                .iter()
                .filter(|a| {
                    a.host == h.name
                        && matches!(a.status, AgentStatus::Running | AgentStatus::Creating)
                })
                .count();
            (running, h.name != LOCAL_HOST, h.name.clone())
        })
        .map(|h| h.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, status: HostStatus) -> HostRecord {
        HostRecord {
            status,
            ..HostRecord::named(name)
        }
    }

    fn agent(name: &str, host: &str, status: AgentStatus) -> AgentRecord {
        crate::store::sample_agent(name, host, status)
    }

    #[test]
    fn placement_picks_the_least_busy_reachable_host() {
        let hosts = [
            host("local", HostStatus::Reachable),
            host("b", HostStatus::Reachable),
            host("a", HostStatus::Reachable),
            host("down", HostStatus::Unreachable),
        ];
        assert_eq!(place(&hosts, &[]).as_deref(), Some("local"));
        let agents = [
            agent("x", "local", AgentStatus::Running),
            agent("y", "a", AgentStatus::Stopped),
        ];
        // Stopped agents do not count; ties go by name.
        assert_eq!(place(&hosts, &agents).as_deref(), Some("a"));
        let agents = [
            agent("w", "local", AgentStatus::Running),
            agent("x", "local", AgentStatus::Running),
            agent("y", "a", AgentStatus::Running),
            agent("z", "b", AgentStatus::Running),
        ];
        assert_eq!(place(&hosts, &agents).as_deref(), Some("a"));
        // A tie with the gateway's own machine goes to it.
        assert_eq!(place(&hosts, &agents[1..]).as_deref(), Some("local"));
        assert_eq!(place(&[host("down", HostStatus::Unreachable)], &[]), None);
    }

    #[test]
    fn placement_counts_agents_being_created() {
        let hosts = [
            host("local", HostStatus::Reachable),
            host("a", HostStatus::Reachable),
        ];
        let agents = [agent("x", "local", AgentStatus::Creating)];
        assert_eq!(place(&hosts, &agents).as_deref(), Some("a"));
        // One at a time, creates spread evenly: each placed agent is a `creating` row.
        let mut agents = Vec::new();
        for i in 0..7 {
            let chosen = place(&hosts, &agents).expect("a host");
            agents.push(agent(&format!("n{i}"), &chosen, AgentStatus::Creating));
        }
        let on = |h: &str| agents.iter().filter(|a| a.host == h).count();
        assert_eq!((on("local"), on("a")), (4, 3));
        // Exited, stopped and unknown agents do not count.
        let idle = [
            agent("e", "local", AgentStatus::Exited),
            agent("s", "local", AgentStatus::Stopped),
            agent("u", "local", AgentStatus::Unknown),
        ];
        assert_eq!(place(&hosts, &idle).as_deref(), Some("local"));
    }
}
