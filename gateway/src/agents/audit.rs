//! The audit trail as every route writes it: who did what to which agent, from where, and how
//! it ended. A command or session is written when it starts and completed when it ends, so one
//! the gateway dies during is in the trail too; a write the database cannot take is kept and
//! written later (`store::audit`), never lost silently.

use tracing::info;

use super::Caller;
use crate::Gateway;
use crate::store::Event;

/// Writes one audit event as under way (result `started`), for [`end_record`] to complete:
/// a command or session that outlives its start is in the trail even if the gateway dies
/// before it ends. A failure to write is logged and the event kept (`store::audit`).
pub async fn start_record(
    gw: &Gateway,
    caller: &Caller,
    kind: &str,
    agent: Option<String>,
    detail: &str,
) -> crate::store::StartedEvent {
    info!(
        operator = caller.operator.name,
        kind, detail, "audit: started"
    );
    gw.store
        .start_event(&event_of(caller, kind, agent, detail))
        .await
}

/// Completes an event [`start_record`] wrote, with the command's exit status and message.
pub async fn end_record(
    gw: &Gateway,
    started: crate::store::StartedEvent,
    status: u32,
    message: &str,
) {
    let event = started.event();
    info!(
        operator = event.operator.as_deref().unwrap_or_default(),
        kind = event.kind,
        detail = event.detail,
        status,
        "audit"
    );
    gw.store
        .end_event(started, &result_of(status), message)
        .await;
}

fn event_of(caller: &Caller, kind: &str, agent: Option<String>, detail: &str) -> Event {
    Event {
        id: 0,
        at: crate::model::Timestamp::now(),
        operator: Some(caller.operator.name.clone()),
        source: Some(caller.source.clone()),
        kind: kind.to_owned(),
        agent,
        detail: detail.to_owned(),
        result: String::new(),
        message: String::new(),
    }
}

fn result_of(status: u32) -> String {
    if status == 0 {
        "ok".into()
    } else {
        format!("exit {status}")
    }
}

/// Writes one audit event. A failure to write is logged and the event kept until the
/// database can take it (`store::audit`), never fatal to the command.
pub async fn record(
    gw: &Gateway,
    caller: &Caller,
    kind: &str,
    agent: Option<String>,
    detail: &str,
    status: u32,
    message: &str,
) {
    info!(
        operator = caller.operator.name,
        kind, detail, status, "audit"
    );
    let event = Event {
        result: result_of(status),
        message: message.to_owned(),
        ..event_of(caller, kind, agent, detail)
    };
    if let Err(e) = gw.store.record_event(&event).await {
        tracing::error!(error = %e, "could not record an audit event");
    }
}
