//! What agents use of their hosts (CPU, memory, disk), as their hosts measure it
//! (`hostctl usage`): each host of the agents asked about is asked once, all of them at once,
//! each within [`USAGE_WAIT`]. `usage`, `info` and `list --json` show it.
//!
//! It is asked about agents the caller may already see (`access::agents`, `lifecycle::usable`),
//! and keeps of each host's answer only those: a host reports all its agents, and another
//! operator's must not show. Nothing is stored: the figures are the host's, as of the call.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hostctl::api::{AgentUsage, UsageReport};

use crate::agents::Core;
use crate::model::{AgentStatus, HostStatus};
use crate::store::AgentRecord;

/// How long a host is waited for: above hostctl's own budget for counting the workspaces
/// (`hostctl::usage::DISK_BUDGET`), so that a huge workspace shows as unknown rather than its
/// whole host as silent.
pub const USAGE_WAIT: Duration = Duration::from_secs(5);

/// The figures of the agents asked about, and the hosts that could not say.
#[derive(Debug, Default)]
pub struct Measured {
    /// By agent name: those whose host answered.
    pub usage: BTreeMap<String, AgentUsage>,
    /// Each host that did not answer, and why, for a warning.
    pub not_answered: Vec<(String, NotAnswered)>,
}

/// Why a host gave no figures.
#[derive(Debug, thiserror::Error)]
pub enum NotAnswered {
    #[error("it is unreachable")]
    Unreachable,
    #[error("it did not answer within {} s", USAGE_WAIT.as_secs())]
    Slow,
    #[error(transparent)]
    Host(#[from] crate::hosts::HostError),
}

/// Asks the hosts of `agents` what each uses. A host that is unreachable, or does not answer
/// in time, leaves its agents without figures (and is named in `not_answered`); so does an
/// agent still being created.
pub async fn of_agents(core: &Core<'_>, agents: &[AgentRecord]) -> Measured {
    let mut by_host: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    // One still being created has nothing on its host to measure yet.
    for agent in agents.iter().filter(|a| a.status != AgentStatus::Creating) {
        by_host
            .entry(agent.host.as_str())
            .or_default()
            .insert(agent.name.as_str());
    }
    let asks = by_host.into_iter().map(|(host, names)| async move {
        let answer = ask(core, host, &names).await;
        (host, names, answer)
    });
    let mut measured = Measured::default();
    for (host, names, answer) in futures::future::join_all(asks).await {
        match answer {
            Ok(report) => measured.usage.extend(pick(report, &names)),
            Err(why) => measured.not_answered.push((host.to_owned(), why)),
        }
    }
    measured
}

/// One host's answer about `names` (only that agent's, when there is one).
async fn ask(
    core: &Core<'_>,
    host: &str,
    names: &BTreeSet<&str>,
) -> Result<UsageReport, NotAnswered> {
    // Like `list`: a host known to be unreachable is not waited for.
    if let Ok(Some(record)) = core.store.host(host).await
        && record.status == HostStatus::Unreachable
    {
        return Err(NotAnswered::Unreachable);
    }
    let host = core.hosts.get(host)?;
    let only = match names.iter().collect::<Vec<_>>().as_slice() {
        [one] => Some(**one),
        _ => None,
    };
    match tokio::time::timeout(USAGE_WAIT, host.usage(only)).await {
        Ok(answer) => Ok(answer?),
        Err(_) => Err(NotAnswered::Slow),
    }
}

/// The figures of `names` in a host's report, by name: the others' are dropped. Pure.
pub fn pick(report: UsageReport, names: &BTreeSet<&str>) -> BTreeMap<String, AgentUsage> {
    report
        .agents
        .into_iter()
        .filter(|a| names.contains(a.name.as_str()))
        .map(|a| (a.name.clone(), a))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_agents_asked_about_are_kept_of_a_hosts_report() {
        let usage = |name: &str| AgentUsage {
            name: name.to_owned(),
            memory_bytes: 1,
            ..AgentUsage::default()
        };
        let report = UsageReport {
            agents: vec![usage("mine"), usage("someone-elses"), usage("shared")],
        };
        let kept = pick(report, &BTreeSet::from(["mine", "shared", "gone"]));
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["mine", "shared"]);
    }
}
