//! The reconciler: asks every host for its agents, on start-up and every few seconds, and
//! makes the store follow reality.
//!
//! - an agent the host reports gets the host's status;
//! - an agent on a host but missing from the store is adopted from its meta.json;
//! - a stored agent its reachable host no longer knows becomes `unknown` (never deleted: the
//!   workspace may still be there, and an operator decides);
//! - a host that cannot be asked makes its agents `unknown`, never `stopped`.
//!
//! **Invariant**: the reconciler never deletes a workspace or an agent.

pub mod hook_watch;
pub mod snapshots;
pub mod tailnet;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hostctl::api::{AgentInfo, HostAgentStatus};
use tracing::{debug, info, warn};

use crate::Gateway;
use crate::agents::activity;
use crate::hosts::Host;
use crate::model::{AgentStatus, HostStatus};
use crate::model::{EventKind, EventResult, Timestamp};
use crate::store::{AgentActivity, AgentRecord, Event, HostRecord, Observed, StoreError};

/// Reconciles every host once, the hosts in parallel.
pub async fn reconcile_all(gw: &Arc<Gateway>) {
    let hosts = gw.hosts.all();
    // Only these background passes stop idle agents: one whose caller gives up waiting
    // (`list`) could drop the stop half done.
    let runs = hosts.iter().map(|host| look_at_host(gw, host, true));
    for (host, result) in hosts.iter().zip(futures::future::join_all(runs).await) {
        match result {
            // Once a run, on a task of its own (the passes do not wait for it), the host's
            // snapshots are taken up: those the store lost are listed again.
            Ok(true) if gw.snapshot_scans.claim(host.name()) => {
                let (gw, host) = (gw.clone(), host.clone());
                gw.tasks.clone().spawn(async move {
                    let done = snapshots::adopt(&gw, &host).await;
                    gw.snapshot_scans.finish(host.name(), done);
                });
            }
            Ok(_) => {}
            Err(e) => warn!(host = host.name(), error = %e, "reconciling failed"),
        }
    }
}

/// Asks every host, in parallel, for its hostctl version, upgrades the remote ones that run
/// another version, and records what they run.
pub async fn record_versions(gw: &Arc<Gateway>) {
    let hosts = gw.hosts.all();
    futures::future::join_all(hosts.iter().map(|h| check_hostctl(gw, h))).await;
}

/// Asks one host for its hostctl version and records it; a remote host whose hostctl is of
/// another version gets this gateway's (as `host add` would install it), so that a gateway
/// upgrade upgrades its hosts.
pub async fn check_hostctl(gw: &Gateway, host: &Host) {
    let theirs = match host.version().await {
        Ok(v) => v,
        Err(e) => {
            warn!(host = host.name(), error = %e, "cannot ask hostctl for its version");
            return;
        }
    };
    let current =
        theirs.version == crate::VERSION && theirs.api_version == hostctl::api::API_VERSION;
    let mut now = theirs.clone();
    if !current && let Host::Remote(remote) = host {
        match remote.upgrade_hostctl(&gw.companion_hostctl()).await {
            Ok((v, true)) => {
                info!(
                    host = host.name(),
                    from = theirs.version,
                    to = v.version,
                    "hostctl upgraded on the host"
                );
                // The serve already running is the old binary: the next calls start the new.
                remote.retire_serve();
                now = v;
            }
            Ok((v, false)) => now = v,
            Err(e) => warn!(host = host.name(), error = %e, "cannot upgrade hostctl on the host"),
        }
    }
    if now.api_version != hostctl::api::API_VERSION {
        warn!(
            host = host.name(),
            theirs = now.api_version,
            ours = hostctl::api::API_VERSION,
            "hostctl speaks another API version: see what to do with: ssh gw host check"
        );
    }
    if let Err(e) = gw
        .store
        .set_host_status(host.name(), HostStatus::Reachable, None, Some(&now.version))
        .await
    {
        warn!(error = %e, "cannot record the hostctl version");
    }
}

/// A host whose agents a caller of [`reconcile_within`] sees as last seen.
#[derive(Debug, PartialEq, Eq)]
pub enum NotAsked {
    /// The host did not answer within the wait.
    Slow(String),
    /// The host was already unreachable (with the reason): it is not waited for; the
    /// reconciler's own passes notice when it is back.
    Unreachable(String, String),
    /// The host answered, but what it said could not be saved (the database's failure, in
    /// words a client may see): the statuses shown are the last saved.
    NotSaved(String, String),
    /// The gateway's database cannot be written at all (why, and how many audit events wait
    /// in memory): whatever is shown may be out of date.
    Unwritable { cause: String, kept: usize },
}

impl NotAsked {
    /// The host that gave no answer (too slow, or down), whose agents are not asked anything
    /// else either; none when the host answered but its answer could not be saved.
    pub fn silent_host(&self) -> Option<&str> {
        match self {
            NotAsked::Slow(name) | NotAsked::Unreachable(name, _) => Some(name),
            NotAsked::NotSaved(..) | NotAsked::Unwritable { .. } => None,
        }
    }
}

/// Reconciles every reachable host in parallel, waiting at most `wait` for each; returns the
/// hosts whose agents keep the statuses last seen: those that did not answer in time and
/// those already known to be unreachable.
pub async fn reconcile_within(gw: &Arc<Gateway>, wait: std::time::Duration) -> Vec<NotAsked> {
    let mut not_asked = Vec::new();
    let mut hosts = gw.hosts.all();
    match gw.store.hosts().await {
        Ok(records) => hosts.retain(|host| {
            let down = records
                .iter()
                .find(|r| r.name == host.name() && r.status == HostStatus::Unreachable);
            if let Some(r) = down {
                let reason = r.last_error.clone().unwrap_or_default();
                not_asked.push(NotAsked::Unreachable(r.name.clone(), reason));
            }
            down.is_none()
        }),
        Err(e) => warn!(error = %e, "cannot read the hosts' statuses"),
    }
    let runs = hosts
        .iter()
        .map(|host| tokio::time::timeout(wait, reconcile_host(gw, host)));
    for (host, result) in hosts.iter().zip(futures::future::join_all(runs).await) {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(host = host.name(), error = %e, "reconciling failed");
                not_asked.push(NotAsked::NotSaved(host.name().to_owned(), e.cause()));
            }
            Err(_) => not_asked.push(NotAsked::Slow(host.name().to_owned())),
        }
    }
    // A look another caller made just before may have been the one that could not save: the
    // audit trail's writes tell whether the database takes writes now.
    if !not_asked
        .iter()
        .any(|n| matches!(n, NotAsked::NotSaved(..)))
        && let Some((kept, cause)) = gw.store.audit_fault().await
    {
        not_asked.push(NotAsked::Unwritable { cause, kept });
    }
    not_asked
}

/// Reconciles one host: its agents' statuses follow what it reports. A host that cannot be
/// asked becomes `unreachable` and its agents `unknown`.
pub async fn reconcile_host(gw: &Gateway, host: &Host) -> Result<(), StoreError> {
    look_at_host(gw, host, false).await.map(|_| ())
}

/// [`reconcile_host`], stopping agents idle past their idle-stop period when `may_stop`.
/// Looks at one host are one at a time, so their answers are stored in order. True if the
/// host answered.
async fn look_at_host(gw: &Gateway, host: &Host, may_stop: bool) -> Result<bool, StoreError> {
    let asked = std::time::Instant::now();
    let look = gw.screen_marks.for_host(host.name());
    let mut last = look.lock().await;
    // Another look (a `list`, a live view, the reconciler's pass) ended while this one waited:
    // its answer is as fresh as this one's would be. Idle stops wait for a pass of their own.
    if !may_stop && last.done_at.is_some_and(|done| done >= asked) {
        return Ok(false);
    }
    let looked = look_once(gw, host, may_stop, &mut last.mark).await;
    last.done_at = Some(std::time::Instant::now());
    looked
}

/// One look at `host`; true if it answered.
async fn look_once(
    gw: &Gateway,
    host: &Host,
    may_stop: bool,
    mark: &mut Option<i64>,
) -> Result<bool, StoreError> {
    let record = gw.store.host(host.name()).await?;
    // A tailnet host whose peer the tailnet reports down is not asked: it is unreachable.
    if let Some(reason) = tailnet_down(gw, record.as_ref()) {
        *mark = None;
        return mark_unreachable(gw, host.name(), &reason)
            .await
            .map(|()| false);
    }
    // Screens are read again only where there was output since the last look: the mark is
    // the host's own time (tmux's) of the newest output it reported then.
    let since = *mark;
    let asked_at = time::OffsetDateTime::now_utc();
    let (probed, judged) = host.probe_judged(since).await;
    if probed.is_err() {
        *mark = None;
    }
    match probed {
        Ok(agents) => {
            // The tailnet may have reported the peer down while the probe was under way: its
            // word is the later one.
            if let Some(reason) = tailnet_down(gw, record.as_ref()) {
                return mark_unreachable(gw, host.name(), &reason)
                    .await
                    .map(|()| false);
            }
            let was_unreachable = record
                .as_ref()
                .is_some_and(|h| h.status == HostStatus::Unreachable);
            let changed = gw
                .store
                .set_host_status(host.name(), HostStatus::Reachable, None, None)
                .await?;
            if changed && was_unreachable {
                info!(host = host.name(), "host reachable again");
                record_host_change(gw, host.name(), HostStatus::Reachable, "").await;
                // It may have been unreachable when the gateway (a newer one) started.
                check_hostctl(gw, host).await;
            }
            // The next look reads the screens with output from a second before this one
            // (tmux counts whole seconds), on the host's clock.
            *mark = if apply(gw, host, &agents, since, asked_at, may_stop).await? {
                agents.iter().filter_map(|a| a.seen_at).min().map(|t| t - 1)
            } else {
                None
            };
            Ok(true)
        }
        Err(e) if e.host_unreachable() => {
            // The connections the question went over are judged with the host: kept, a call
            // or session would go to them again once the link is back and hang or fail there.
            // Connections made since are not what was judged, and stay.
            host.retire_links(&judged, "the host was judged unreachable")
                .await;
            mark_unreachable(gw, host.name(), &e.to_string())
                .await
                .map(|()| false)
        }
        Err(e) => {
            // The host answered, but not as expected: it is reachable, and the error is kept
            // for `host info` and `host check`.
            warn!(host = host.name(), error = %e, "host answered the reconciler badly");
            gw.store
                .set_host_error(host.name(), Some(&e.to_string()))
                .await
                .map(|()| false)
        }
    }
}

/// Why the tailnet says a tailnet host is down, if it does (such a host is not asked).
fn tailnet_down(gw: &Gateway, record: Option<&HostRecord>) -> Option<String> {
    crate::tailscale::verdict::down(&gw.tailnet.view(), record?)
}

/// Makes a host `unreachable` (with the reason, for `host info`) and its agents `unknown`.
pub async fn mark_unreachable(gw: &Gateway, host: &str, reason: &str) -> Result<(), StoreError> {
    if gw
        .store
        .set_host_status(host, HostStatus::Unreachable, Some(reason), None)
        .await?
    {
        warn!(host, reason, "host unreachable; its agents are unknown");
        record_host_change(gw, host, HostStatus::Unreachable, reason).await;
    }
    gw.store.mark_host_agents_unknown(host).await
}

/// An audit event for a host that became reachable or unreachable (admins see it in `events`).
async fn record_host_change(gw: &Gateway, host: &str, became: HostStatus, reason: &str) {
    let event = Event {
        detail: format!("{host} {}", became.as_str()),
        message: reason.into(),
        ..Event::new(
            EventKind::Host,
            match became {
                HostStatus::Reachable => EventResult::Ok,
                HostStatus::Unreachable => EventResult::Unreachable,
            },
        )
    };
    if let Err(e) = gw.store.record_event(&event).await {
        warn!(host, error = %e, "could not record an audit event");
    }
}

/// Makes the store follow a host's report. Returns whether every running agent's screen is
/// now known (else the next look at the host reads every screen again: a screen forgotten
/// by a change of status, say, is not read again while it shows no new output).
async fn apply(
    gw: &Gateway,
    host_handle: &Host,
    reported: &[AgentInfo],
    since: Option<i64>,
    asked_at: time::OffsetDateTime,
    may_stop: bool,
) -> Result<bool, StoreError> {
    let host = host_handle.name();
    let stored = gw.store.agents_on_host(host).await?;
    let by_name: HashMap<&str, &AgentRecord> =
        stored.iter().map(|a| (a.name.as_str(), a)).collect();
    let now = time::OffsetDateTime::now_utc();
    let not_for_this_report =
        |agent: &AgentRecord| !report_applies(agent, asked_at, now, create_abandoned(gw, agent));
    let mut seen: Vec<(&str, Observed)> = Vec::new();
    let mut adopted_any = false;
    for info in reported {
        if let Some(prev) = by_name.get(info.name.as_str()) {
            if !not_for_this_report(prev) {
                seen.push((&info.name, observed_from(&gw.core(), prev, info)));
            }
        } else if gw.store.agent_exists(&info.name).await? {
            // The name is taken by an agent on another host: the store keeps its own.
            warn!(
                agent = info.name,
                host, "an agent of this name also exists on another host"
            );
        } else if gw
            .store
            .operation_since(&info.name, Timestamp::from(asked_at))
            .await?
        {
            // A destroy (or a failed create, clone or migration) that ended after the host was
            // asked: the report shows what that operation has since removed. The next look
            // adopts it if it is still there.
            debug!(
                agent = info.name,
                host, "not adopting an agent an operation changed since the host was asked"
            );
        } else {
            info!(
                agent = info.name,
                host, "adopting an agent found on the host"
            );
            gw.store.insert_agent(&adopted(host, info)).await?;
            adopted_any = true;
        }
    }
    let reported_names: HashSet<&str> = reported.iter().map(|a| a.name.as_str()).collect();
    for agent in &stored {
        // A `creating` row older than the create time limit belongs to a create that died
        // with the gateway: it is treated like any other row.
        if !not_for_this_report(agent)
            && !reported_names.contains(agent.name.as_str())
            && agent.status != AgentStatus::Unknown
        {
            debug!(agent = agent.name, host, "agent is missing on its host");
            seen.push((&agent.name, unknown()));
        }
    }
    let due: Vec<(&str, std::time::Duration)> = seen
        .iter()
        .filter_map(|(name, o)| Some((*name, idle_stop_due(by_name.get(name)?, o)?)))
        .collect();
    // A running agent with output since the mark must have brought its screen (it could not
    // be read, say); every running agent must have one known.
    let screens_known = !adopted_any
        && reported.iter().all(|info| {
            info.status != HostAgentStatus::Running
                || info.screen.is_some()
                || unix(info.last_activity.as_deref()).is_some_and(|t| since.is_some_and(|s| t < s))
        })
        && seen.iter().all(|(_, o)| {
            o.status != AgentStatus::Running
                || o.activity.as_ref().is_some_and(|a| a.screen.is_some())
        });
    let seen: Vec<(&str, &Observed)> = seen.iter().map(|(n, o)| (*n, o)).collect();
    gw.store.observe_agents(&seen).await?;
    if may_stop {
        for (name, period) in due {
            // Someone may have attached or typed since the look.
            if gw.inputs.viewers(name) == 0
                && gw.inputs.last(name).is_none_or(|t| {
                    time::OffsetDateTime::now_utc() - t
                        >= time::Duration::try_from(period).unwrap_or(time::Duration::MAX)
                })
            {
                stop_idle(gw, host_handle, name, period).await;
            }
        }
    }
    Ok(screens_known)
}

/// Whether a host's report, asked for at `asked_at`, is to be applied to `agent` now. Not to
/// a row whose status changed after the host was asked (a create, a stop or a start that
/// ended meanwhile: the store knows better), nor to a row still `creating` (it belongs to its
/// create, and the host may show the agent half made) unless that create was `abandoned`. A
/// change dated after `now` is a clock that was set back, not news: the report applies.
fn report_applies(
    agent: &AgentRecord,
    asked_at: time::OffsetDateTime,
    now: time::OffsetDateTime,
    abandoned: bool,
) -> bool {
    let newer = agent
        .status_since
        .map(Timestamp::datetime)
        .is_some_and(|t| t > asked_at && t <= now);
    let being_created = agent.status == AgentStatus::Creating && !abandoned;
    !newer && !being_created
}

/// The host's RFC 3339 text (tmux's last activity) as seconds since the epoch.
fn unix(rfc3339: Option<&str>) -> Option<i64> {
    host_time(rfc3339).map(time::OffsetDateTime::unix_timestamp)
}

/// A time a host wrote, if it is one.
fn host_time(rfc3339: Option<&str>) -> Option<time::OffsetDateTime> {
    Timestamp::parse(rfc3339?).ok().map(Timestamp::datetime)
}

/// The idle-stop period of an agent just seen idle for at least that long, if it has one.
fn idle_stop_due(prev: &AgentRecord, seen: &Observed) -> Option<std::time::Duration> {
    let activity = seen.activity.as_ref()?;
    if activity.state != Some(crate::model::ActivityState::Idle) {
        return None;
    }
    let period = crate::config::parse_idle_stop(prev.idle_stop.as_deref()?).ok()?;
    let quiet_since = activity
        .last_output_at
        .max(activity.last_input_at)?
        .datetime();
    let quiet = time::OffsetDateTime::now_utc() - quiet_since;
    (quiet >= time::Duration::try_from(period).ok()?).then_some(period)
}

/// Stops an agent that was idle for its idle-stop period; it starts again on the next attach.
async fn stop_idle(gw: &Gateway, host: &Host, name: &str, period: std::time::Duration) {
    let stopped = async {
        let info = host.stop(name).await.map_err(|e| e.to_string())?;
        // The status and its reason together, so the feed tells one change: stopped, idle.
        gw.store
            .observe_stopped_for(name, &observed(&info), "idle")
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    let period = crate::config::duration_text(period);
    let (result, message) = match &stopped {
        Ok(()) => {
            info!(agent = name, idle_for = period, "stopped an idle agent");
            (
                EventResult::Ok,
                format!("no output and no input for {period}"),
            )
        }
        Err(e) => {
            warn!(agent = name, error = %e, "cannot stop an idle agent");
            (EventResult::Failed, e.clone())
        }
    };
    let event = Event {
        agent: Some(name.to_owned()),
        detail: format!("stop {name}"),
        message,
        ..Event::new(EventKind::IdleStop, result)
    };
    if let Err(e) = gw.store.record_event(&event).await {
        warn!(agent = name, error = %e, "could not record an audit event");
    }
}

fn create_abandoned(gw: &Gateway, agent: &AgentRecord) -> bool {
    let created = agent.created_at.datetime();
    let limit =
        time::Duration::try_from(gw.config.hosts.create_timeout).unwrap_or(time::Duration::HOUR);
    time::OffsetDateTime::now_utc() - created > limit + time::Duration::MINUTE
}

/// What a host's report says about one agent.
pub fn observed(info: &AgentInfo) -> Observed {
    Observed {
        status: info.status.into(),
        exit_code: info.exit_code,
        pid: info.pid,
        last_activity: info.last_activity.clone(),
        workspace: Some(info.meta.workspace_path.to_string_lossy().into_owned()),
        activity: None,
        stop_reason: info.ending.and_then(hostctl::api::Ending::reason),
    }
}

/// An agent whose host cannot say where it is.
pub fn unknown() -> Observed {
    Observed {
        status: AgentStatus::Unknown,
        exit_code: None,
        pid: None,
        last_activity: None,
        workspace: None,
        activity: None,
        stop_reason: None,
    }
}

/// What a host's report says about one agent, with its activity worked out from what was
/// known of it (`prev`, its stored record).
pub fn observed_from(
    core: &crate::agents::Core<'_>,
    prev: &AgentRecord,
    info: &AgentInfo,
) -> Observed {
    let mut seen = observed(info);
    if info.status == HostAgentStatus::Running {
        let look = activity::Look {
            screen: info.screen.as_ref(),
            tmux_activity: host_time(info.last_activity.as_deref()),
            input: core.inputs.last(&prev.name),
            hooks: &info.hooks,
        };
        // A process started again (or for the first time) starts with a clean slate but for
        // the operator's last input.
        let base = match prev.status {
            AgentStatus::Running | AgentStatus::Unknown => prev.activity.clone(),
            AgentStatus::Creating | AgentStatus::Exited | AgentStatus::Stopped => AgentActivity {
                last_input_at: prev.activity.last_input_at,
                ..AgentActivity::default()
            },
        };
        seen.activity = Some(activity::next(
            core.status,
            core.status_rules
                .for_agent(&prev.template, &prev.spec.command),
            &base,
            &look,
            time::OffsetDateTime::now_utc(),
        ));
    }
    seen
}

/// Records what a host said about one agent (its activity worked out).
pub async fn observe(
    core: &crate::agents::Core<'_>,
    prev: &AgentRecord,
    info: &AgentInfo,
) -> Result<(), StoreError> {
    core.store
        .observe_agent(&prev.name, &observed_from(core, prev, info))
        .await
}

/// A store record for an agent found on a host (or just created there).
pub fn adopted(host: &str, info: &AgentInfo) -> AgentRecord {
    let request = &info.meta.request;
    AgentRecord {
        name: info.name.clone(),
        host: host.to_owned(),
        template: request.template.clone(),
        command: request.command.display(),
        workspace: info.meta.workspace_path.to_string_lossy().into_owned(),
        spec: request.clone(),
        tags: request.tags.clone(),
        status: info.status.into(),
        exit_code: info.exit_code,
        pid: info.pid,
        last_activity: info.last_activity.clone(),
        // The host's clock said when it was made; text that is no time (a damaged meta.json)
        // makes it new now rather than keep the agent out of the store.
        created_at: Timestamp::parse(&info.meta.created_at).unwrap_or_else(|_| Timestamp::now()),
        created_by: request.created_by.clone(),
        activity: Default::default(),
        status_since: None,
        idle_stop: None,
        stop_reason: None,
        shared_with: Vec::new(),
    }
}

/// Runs the reconciler until the gateway shuts down.
pub async fn run(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(gw.config.hosts.reconcile_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => reconcile_all(&gw).await,
            () = gw.shutdown_accepting.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sample_agent;

    /// A host's report of agent `name`, running.
    fn reported(name: &str) -> AgentInfo {
        let meta: hostctl::api::AgentMeta = serde_json::from_value(serde_json::json!({
            "name": name, "command": {"kind": "login_shell"}, "workspace": {"kind": "empty"},
            "workspace_path": "/w", "created_at": "2026-01-01T00:00:00Z"
        }))
        .expect("meta");
        AgentInfo {
            name: name.into(),
            status: HostAgentStatus::Running,
            pid: None,
            exit_code: None,
            ending: None,
            last_activity: None,
            meta,
            screen: None,
            seen_at: None,
            hooks: Vec::new(),
        }
    }

    #[tokio::test]
    async fn an_agent_destroyed_after_its_host_was_asked_is_not_adopted_from_that_report() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::Store::open(&dir.path().join("t.db"))
            .await
            .expect("store");
        let key = russh::keys::PrivateKey::random(
            &mut russh::keys::key::safe_rng(),
            russh::keys::Algorithm::Ed25519,
        )
        .expect("a key");
        let gw = Gateway::new(
            crate::config::Config::default(),
            store,
            Arc::new(key),
            tokio_util::sync::CancellationToken::new(),
        )
        .expect("gateway");
        let host = gw.hosts.get(crate::hosts::LOCAL_HOST).expect("local");
        // The host is asked; then `busy` is destroyed (its operation ends), then the answer,
        // which still lists it, is applied.
        let asked_at = time::OffsetDateTime::now_utc();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let destroy = crate::agents::journal::Intent::begin(
            &gw.core(),
            crate::agents::journal::Planned {
                kind: crate::model::OperationKind::Destroy,
                agent: "busy".into(),
                from_host: None,
                host: crate::hosts::LOCAL_HOST.into(),
                source: None,
                was_running: true,
                operator: None,
            },
        )
        .await
        .expect("begun");
        destroy.end(&Ok::<(), String>(())).await;
        let report = [reported("busy"), reported("stray")];
        apply(&gw, &host, &report, None, asked_at, false)
            .await
            .expect("applied");
        assert!(gw.store.agent("busy").await.expect("read").is_none());
        // An agent no operation touched is adopted as before.
        assert!(gw.store.agent("stray").await.expect("read").is_some());
        // A look asked for after the destroy ended adopts what is still there.
        apply(
            &gw,
            &host,
            &report,
            None,
            time::OffsetDateTime::now_utc(),
            false,
        )
        .await
        .expect("applied");
        assert!(gw.store.agent("busy").await.expect("read").is_some());
    }

    #[test]
    fn a_report_applies_only_to_rows_older_than_it_and_not_being_created() {
        let at = |s: &str| Timestamp::parse(s).expect("a time").datetime();
        let asked = at("2026-01-01T12:00:00Z");
        let now = at("2026-01-01T12:00:01Z");
        let agent = |status, since: Option<&str>| crate::store::AgentRecord {
            status_since: since.map(|s| Timestamp::parse(s).expect("a time")),
            ..sample_agent("a", "local", status)
        };
        let running = AgentStatus::Running;
        assert!(report_applies(&agent(running, None), asked, now, false));
        assert!(report_applies(
            &agent(running, Some("2026-01-01T11:59:59.9Z")),
            asked,
            now,
            false
        ));
        // Created, stopped or started while the host was being asked.
        assert!(!report_applies(
            &agent(AgentStatus::Stopped, Some("2026-01-01T12:00:00.5Z")),
            asked,
            now,
            false
        ));
        // Dated after now: a clock set back.
        assert!(report_applies(
            &agent(running, Some("2026-01-01T13:00:00Z")),
            asked,
            now,
            false
        ));
        assert!(!report_applies(
            &agent(AgentStatus::Creating, None),
            asked,
            now,
            false
        ));
        assert!(report_applies(
            &agent(AgentStatus::Creating, None),
            asked,
            now,
            true
        ));
    }
}
