//! Operations that outlive the gateway.
//!
//! Every change of an agent's life that takes more than one step (create, clone, migrate,
//! restore from a snapshot, destroy) is an [`Intent`]: written to the store before its first
//! step, its step after each one, its end after the last. A gateway killed in between leaves
//! an operation with no end; the next gateway finishes or undoes it against what the hosts say
//! ([`recover`], at start-up and then until none is left, as hosts come back), and says what it
//! did in the log and the audit trail.
//!
//! What "finish or undo" means, by kind:
//! - **create, clone, restore** (a new agent, reserved as `creating`): if its host has the
//!   agent, it is taken up as it is; if not, the copy made for it (hostctl's mark names the
//!   operation) is removed and the name is released.
//! - **migrate**: once the store names the new host (the switch), the move is finished (the
//!   old copy is removed); before it, the move is undone: what was made on the new host is
//!   removed and the agent is started again on its old host if it was running.
//! - **destroy**: finished (the host is asked again, the record removed).
//!
//! **Invariant**: a run finishes or undoes only the operations of other runs (the ones under
//! way in this run belong to their commands), each while holding its agent's turn
//! (`AgentLocks`), and only once every host it needs answers.
//!
//! This module decides; `store` keeps the rows; the hosts are asked through [`crate::hosts`].

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::Gateway;
use crate::agents::reconcile;
use crate::hosts::{Host, HostError};
use crate::model::EventKind;
use crate::model::{AgentStatus, HostStatus, OperationKind, Outcome, Step};
use crate::store::{Event, Operation, StoreError};

/// The environment variable that makes the gateway kill itself (SIGKILL) right after an
/// operation records a step: `KIND:STEP`, such as `migrate:copied`. A fault-injection point
/// for the tests of this module, read at each step; unset in normal use.
pub const CRASH_AFTER_ENV: &str = "AGENTGATE_CRASH_AFTER";

/// What a new operation is about (the rest of its row is filled in by [`Intent::begin`]).
#[derive(Clone, Debug)]
pub struct Planned {
    pub kind: OperationKind,
    pub agent: String,
    pub from_host: Option<String>,
    pub host: String,
    pub source: Option<String>,
    pub was_running: bool,
    pub operator: Option<String>,
}

/// An operation under way in this run.
#[derive(Debug)]
pub struct Intent {
    id: String,
    kind: OperationKind,
    agent: String,
    store: crate::store::Store,
}

impl Intent {
    /// Writes the operation before its first step.
    pub async fn begin(
        core: &crate::agents::Core<'_>,
        planned: Planned,
    ) -> Result<Intent, StoreError> {
        let id = new_operation_id();
        let op = Operation {
            id: id.clone(),
            kind: planned.kind,
            agent: planned.agent.clone(),
            from_host: planned.from_host,
            host: planned.host,
            source: planned.source,
            was_running: planned.was_running,
            step: Step::Begun,
            operator: planned.operator,
            run: core.run_id.to_owned(),
            started_at: crate::model::Timestamp::now(),
        };
        core.store.begin_operation(&op).await?;
        info!(
            operation = id,
            kind = op.kind.as_str(),
            agent = op.agent,
            "operation begun"
        );
        crash_if_asked(op.kind, Step::Begun);
        Ok(Intent {
            id,
            kind: planned.kind,
            agent: planned.agent,
            store: core.store.clone(),
        })
    }

    pub fn kind(&self) -> OperationKind {
        self.kind
    }

    /// The operation's ID (hostctl marks the copies it makes with it).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Records that `step` is done.
    pub async fn step(&self, step: Step) -> Result<(), StoreError> {
        self.store.operation_step(&self.id, step).await?;
        info!(
            operation = self.id,
            kind = self.kind.as_str(),
            agent = self.agent,
            step = step.as_str(),
            "operation step"
        );
        crash_if_asked(self.kind, step);
        Ok(())
    }

    /// Records the end: done when `result` is Ok, failed (and undone by the command) when not.
    pub async fn end<T, E: std::fmt::Display>(self, result: &Result<T, E>) {
        let (outcome, message) = match result {
            Ok(_) => (Outcome::Done, String::new()),
            Err(e) => (Outcome::Failed, e.to_string()),
        };
        if let Err(e) = self.store.end_operation(&self.id, outcome, &message).await {
            // The next run finds it open and settles it against the hosts.
            warn!(operation = self.id, error = %e, "could not record the end of an operation");
        }
    }
}

/// A fresh operation ID: the time in nanoseconds and a counter, in hex (unique within a
/// gateway, and across its runs while the clock goes forward).
fn new_operation_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    format!(
        "op-{:x}-{:x}",
        nanos.unsigned_abs(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A gateway run's ID, written into the operations it begins.
pub fn new_run_id() -> String {
    format!(
        "run-{:x}-{:x}",
        time::OffsetDateTime::now_utc()
            .unix_timestamp_nanos()
            .unsigned_abs(),
        std::process::id()
    )
}

fn crash_if_asked(kind: OperationKind, step: Step) {
    let Ok(at) = std::env::var(CRASH_AFTER_ENV) else {
        return;
    };
    if at.split_once(':') == Some((kind.as_str(), step.as_str())) {
        warn!(
            kind = kind.as_str(),
            step = step.as_str(),
            "{CRASH_AFTER_ENV}: killing the gateway here"
        );
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
        // SIGKILL cannot be caught: nothing after this runs.
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// What settling one operation came to.
enum Settled {
    /// Ended, with what was done.
    Ended(Outcome, String),
    /// Not now: a host it needs does not answer (tried again later).
    Waits(String),
}

/// Finishes or undoes the operations that earlier runs left open. Returns how many are still
/// open (their hosts do not answer yet).
pub async fn recover(gw: &Arc<Gateway>) -> usize {
    let open = match gw.store.open_operations_of_other_runs(&gw.run_id).await {
        Ok(open) => open,
        Err(e) => {
            warn!(error = %e, "cannot read the operations journal");
            return 1;
        }
    };
    let mut waiting = 0;
    for op in open {
        let _turn = gw.agent_locks.hold(&op.agent).await;
        match settle(gw, &op).await {
            Settled::Ended(outcome, message) => {
                info!(
                    operation = op.id,
                    kind = op.kind.as_str(),
                    agent = op.agent,
                    outcome = outcome.as_str(),
                    message,
                    "an operation the gateway's death cut short is settled"
                );
                if let Err(e) = gw.store.end_operation(&op.id, outcome, &message).await {
                    warn!(operation = op.id, error = %e, "could not record the end of an operation");
                    waiting += 1;
                    continue;
                }
                record(gw, &op, outcome, &message).await;
            }
            Settled::Waits(why) => {
                info!(
                    operation = op.id,
                    agent = op.agent,
                    why,
                    "an operation waits for its hosts"
                );
                waiting += 1;
            }
        }
    }
    waiting
}

/// Settles what earlier runs left open until nothing is: at once, then at every reconcile
/// interval while an operation waits for a host to come back.
pub async fn follow(gw: Arc<Gateway>) {
    loop {
        if recover(&gw).await == 0 {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(gw.config.hosts.reconcile_interval) => {}
            () = gw.shutdown_accepting.cancelled() => return,
        }
    }
}

/// The audit event of a settled operation.
async fn record(gw: &Gateway, op: &Operation, outcome: Outcome, message: &str) {
    let route = match &op.from_host {
        Some(from) if op.kind == OperationKind::Migrate => format!("{from} -> {}", op.host),
        _ => op.host.clone(),
    };
    let event = Event {
        operator: op.operator.clone(),
        source: Some("gateway".into()),
        agent: Some(op.agent.clone()),
        detail: format!(
            "{} {} on {route}, begun {}, cut short after step {}",
            op.kind.as_str(),
            op.agent,
            op.started_at,
            op.step.as_str()
        ),
        message: message.to_owned(),
        ..Event::new(EventKind::Operation, outcome.into())
    };
    if let Err(e) = gw.store.record_event(&event).await {
        warn!(error = %e, "could not record an audit event");
    }
}

/// A host the operation needs, if it answers now (one known to be unreachable is not asked:
/// the operation waits for it).
async fn host_now(gw: &Gateway, name: &str) -> Result<Host, Settled> {
    let waits = |why: String| Settled::Waits(why);
    if let Ok(Some(record)) = gw.store.host(name).await
        && record.status == HostStatus::Unreachable
    {
        return Err(waits(format!("host '{name}' is unreachable")));
    }
    gw.hosts
        .get(name)
        .map_err(|e| waits(format!("host '{name}': {e}")))
}

/// A host's answer, or the operation waits.
fn answered<T>(host: &str, result: Result<T, HostError>) -> Result<Option<T>, Settled> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(HostError::NotFound(_)) => Ok(None),
        Err(e) => Err(Settled::Waits(format!("host '{host}': {e}"))),
    }
}

async fn settle(gw: &Arc<Gateway>, op: &Operation) -> Settled {
    let settled = match op.kind {
        OperationKind::Create | OperationKind::Clone | OperationKind::Restore => {
            settle_new_agent(gw, op).await
        }
        OperationKind::Migrate => settle_migration(gw, op).await,
        OperationKind::Destroy => settle_destroy(gw, op).await,
    };
    settled.unwrap_or_else(|waits| waits)
}

/// Whether a later operation on the same agent began (then what this one left is that one's
/// to decide: this one only removes its own copy).
async fn superseded(gw: &Gateway, op: &Operation) -> Result<bool, Settled> {
    gw.store
        .operation_superseded(&op.id)
        .await
        .map_err(store_waits)
}

fn store_waits(e: StoreError) -> Settled {
    Settled::Waits(format!("the store: {e}"))
}

/// Removes the copy the operation made for its agent on `host`, if one is there; a workspace
/// that is not its copy is left alone (and named).
async fn discard_copy(host: &Host, op: &Operation) -> Result<String, Settled> {
    match host.discard(&op.agent, Some(&op.id)).await {
        Ok(()) => Ok(format!(
            "the copy it had made on host '{}' was removed",
            host.name()
        )),
        Err(HostError::NotFound(_)) => Ok(String::new()),
        Err(HostError::Rejected { message, .. }) => {
            warn!(
                operation = op.id,
                host = host.name(),
                message,
                "a workspace was left alone"
            );
            Ok(format!("left alone on host '{}': {message}", host.name()))
        }
        Err(e) => Err(Settled::Waits(format!("host '{}': {e}", host.name()))),
    }
}

fn joined(parts: &[String]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join("; ")
}

async fn settle_new_agent(gw: &Arc<Gateway>, op: &Operation) -> Result<Settled, Settled> {
    let name = op.agent.as_str();
    if superseded(gw, op).await? {
        // The name's row, if any, is a later operation's: only this one's copy goes.
        let host = host_now(gw, &op.host).await?;
        let copy = discard_copy(&host, op).await?;
        return Ok(Settled::Ended(
            Outcome::Undone,
            joined(&[format!("a later operation on '{name}' took over"), copy]),
        ));
    }
    let record = gw.store.agent(name).await.map_err(store_waits)?;
    if let Some(agent) = &record
        && agent.status != AgentStatus::Creating
    {
        return Ok(Settled::Ended(
            Outcome::Finished,
            format!("agent '{name}' had been made on host '{}'", agent.host),
        ));
    }
    let host = host_now(gw, &op.host).await?;
    if record.is_some()
        && let Some(info) = answered(&op.host, host.info(name).await)?
    {
        gw.store
            .observe_agent(name, &reconcile::observed(&info))
            .await
            .map_err(store_waits)?;
        return Ok(Settled::Ended(
            Outcome::Finished,
            format!(
                "agent '{name}' had been made on host '{}': taken up as it is ({})",
                op.host,
                AgentStatus::from(info.status).as_str()
            ),
        ));
    }
    let copy = discard_copy(&host, op).await?;
    if record.is_some() {
        gw.store.delete_agent(name).await.map_err(store_waits)?;
    }
    Ok(Settled::Ended(
        Outcome::Undone,
        joined(&[
            format!(
                "agent '{name}' was never made on host '{}': its name is free again",
                op.host
            ),
            copy,
        ]),
    ))
}

async fn settle_migration(gw: &Arc<Gateway>, op: &Operation) -> Result<Settled, Settled> {
    let name = op.agent.as_str();
    let Some(from_name) = op.from_host.as_deref() else {
        return Ok(Settled::Ended(
            Outcome::Undone,
            "the journal names no host it came from; nothing done".into(),
        ));
    };
    let record = gw.store.agent(name).await.map_err(store_waits)?;
    let later = superseded(gw, op).await?;
    let Some(agent) = record else {
        let to = host_now(gw, &op.host).await?;
        let copy = discard_copy(&to, op).await?;
        return Ok(Settled::Ended(
            Outcome::Undone,
            joined(&[format!("agent '{name}' is gone"), copy]),
        ));
    };
    if later {
        // A later operation moved or changed the agent: it is left as that one left it, and
        // only what this one made on its target goes (an agent it made there that the record
        // does not name, and its copy).
        let to = host_now(gw, &op.host).await?;
        let mut done = vec![format!(
            "a later operation on '{name}' took over; it is on host '{}'",
            agent.host
        )];
        if agent.host != op.host
            && op.step >= Step::Copied
            && answered(&op.host, to.info(name).await)?.is_some()
        {
            answered(&op.host, to.destroy(name).await)?;
            done.push(format!(
                "the agent it had made on host '{}' was removed",
                op.host
            ));
        }
        done.push(discard_copy(&to, op).await?);
        return Ok(Settled::Ended(Outcome::Undone, joined(&done)));
    }
    let from = host_now(gw, from_name).await?;
    if agent.host == op.host {
        // Switched: the move is whole but for the old copy.
        let removed = answered(from_name, from.destroy(name).await)?;
        return Ok(Settled::Ended(
            Outcome::Finished,
            format!(
                "agent '{name}' had moved to host '{}'{}",
                op.host,
                if removed.is_some() {
                    format!("; its old copy on host '{from_name}' was removed")
                } else {
                    String::new()
                }
            ),
        ));
    }
    // Not switched: the agent stays where it was, and runs again there first, whether or not
    // the new host answers yet (what was made there is removed once it does).
    let mut done = vec![format!("agent '{name}' stays on host '{from_name}'")];
    if op.was_running {
        done.push(start_again(gw, &from, name).await?);
    }
    let to = host_now(gw, &op.host).await?;
    if op.step >= Step::Copied && answered(&op.host, to.info(name).await)?.is_some() {
        answered(&op.host, to.destroy(name).await)?;
        done.push(format!(
            "the agent it had made on host '{}' was removed",
            op.host
        ));
    }
    done.push(discard_copy(&to, op).await?);
    Ok(Settled::Ended(Outcome::Undone, joined(&done)))
}

/// Starts the agent on `host` if it is not running (it was, before a move that was undone).
async fn start_again(gw: &Gateway, host: &Host, name: &str) -> Result<String, Settled> {
    let Some(now) = answered(host.name(), host.info(name).await)? else {
        return Ok(format!(
            "it is not on host '{}' any more: nothing to start",
            host.name()
        ));
    };
    let runs = "it runs, as before the move".to_owned();
    if now.status == hostctl::api::HostAgentStatus::Running {
        return Ok(runs);
    }
    let Ok(Some(agent)) = gw.store.agent(name).await else {
        return Ok(String::new());
    };
    let secrets = super::secrets::values(&gw.store, &agent.spec.secret_names)
        .await
        .map_err(|e| Settled::Waits(e.to_string()))?;
    let info = host
        .start(name, None, &secrets)
        .await
        .map_err(|e| Settled::Waits(format!("starting it on host '{}': {e}", host.name())))?;
    gw.store
        .observe_agent(name, &reconcile::observed(&info))
        .await
        .map_err(store_waits)?;
    Ok(runs)
}

async fn settle_destroy(gw: &Arc<Gateway>, op: &Operation) -> Result<Settled, Settled> {
    let name = op.agent.as_str();
    if superseded(gw, op).await? || gw.store.agent(name).await.map_err(store_waits)?.is_none() {
        return Ok(Settled::Ended(
            Outcome::Finished,
            format!("agent '{name}' was destroyed"),
        ));
    }
    let host = host_now(gw, &op.host).await?;
    answered(&op.host, host.destroy(name).await)?;
    gw.store.delete_agent(name).await.map_err(store_waits)?;
    Ok(Settled::Ended(
        Outcome::Finished,
        format!("agent '{name}' was destroyed on host '{}'", op.host),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_pass_hostctls_check_and_differ() {
        let a = new_operation_id();
        let b = new_operation_id();
        assert_ne!(a, b);
        hostctl::api::validate_operation_id(&a).expect("valid");
        hostctl::api::validate_operation_id(&new_run_id()).expect("valid");
    }
}
