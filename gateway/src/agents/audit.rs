//! The audit trail as every route writes it: who did what to which agent, from where, and how
//! it ended. A command or session is written when it starts and completed when it ends, so one
//! the gateway dies during is in the trail too; a write the database cannot take is kept and
//! written later (`store::audit`), never lost silently.

use tracing::info;

use super::Caller;
use crate::agents::Core;
use crate::model::{EventKind, EventResult};
use crate::store::Event;

/// Writes one audit event as under way (result `started`), for [`end_record`] to complete:
/// a command or session that outlives its start is in the trail even if the gateway dies
/// before it ends. A failure to write is logged and the event kept (`store::audit`).
pub async fn start_record(
    core: &Core<'_>,
    caller: &Caller,
    kind: EventKind,
    agent: Option<String>,
    detail: &str,
) -> crate::store::StartedEvent {
    info!(
        operator = caller.operator.name,
        kind = kind.as_str(),
        detail,
        "audit: started"
    );
    core.store
        .start_event(&event_of(caller, kind, agent, detail, EventResult::Started))
        .await
}

/// Completes an event [`start_record`] wrote, with the command's exit status and message.
pub async fn end_record(
    core: &Core<'_>,
    started: crate::store::StartedEvent,
    status: u32,
    message: &str,
) {
    let event = started.event();
    info!(
        operator = event.operator.as_deref().unwrap_or_default(),
        kind = event.kind.as_str(),
        detail = event.detail,
        status,
        "audit"
    );
    core.store
        .end_event(started, EventResult::of_exit(status), message)
        .await;
}

fn event_of(
    caller: &Caller,
    kind: EventKind,
    agent: Option<String>,
    detail: &str,
    result: EventResult,
) -> Event {
    Event {
        operator: Some(caller.operator.name.clone()),
        source: Some(caller.source.clone()),
        agent,
        detail: detail.to_owned(),
        ..Event::new(kind, result)
    }
}

/// Writes one audit event. A failure to write is logged and the event kept until the
/// database can take it (`store::audit`), never fatal to the command.
pub async fn record(
    core: &Core<'_>,
    caller: &Caller,
    kind: EventKind,
    agent: Option<String>,
    detail: &str,
    status: u32,
    message: &str,
) {
    info!(
        operator = caller.operator.name,
        kind = kind.as_str(),
        detail,
        status,
        "audit"
    );
    let event = Event {
        message: message.to_owned(),
        ..event_of(caller, kind, agent, detail, EventResult::of_exit(status))
    };
    if let Err(e) = core.store.record_event(&event).await {
        tracing::error!(error = %e, "could not record an audit event");
    }
}
