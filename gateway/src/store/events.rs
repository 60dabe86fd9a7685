//! Reading the audit trail (`audit` writes it).

use super::{Result, Store};
use crate::model::{EventKind, EventResult, Timestamp};

/// One line of the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Event {
    /// Its place in the trail (0 for an event not yet recorded).
    pub id: i64,
    pub at: Timestamp,
    pub operator: Option<String>,
    pub source: Option<String>,
    pub kind: EventKind,
    pub agent: Option<String>,
    pub detail: String,
    pub result: EventResult,
    pub message: String,
}

impl Store {
    // ---- events -------------------------------------------------------------------------

    /// Deletes the events recorded before `before`; returns how many.
    pub async fn prune_events(&self, before: Timestamp) -> Result<u64> {
        Ok(sqlx::query(&format!(
            "DELETE FROM events WHERE {}",
            super::before_sql("at", "?1")
        ))
        .bind(before)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// The newest `filter.limit` events that match, oldest first; with `filter.after`, only
    /// events recorded after that id (for following the trail).
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        // What waits in memory goes first, so the trail read is the whole trail if it can be.
        let _ = self.flush_events().await;
        let rows = sqlx::query_as::<_, Event>(
            "SELECT * FROM (SELECT id, at, operator, source, kind, agent, detail, result, message FROM events
               WHERE (?1 IS NULL OR agent = ?1) AND (?2 IS NULL OR operator = ?2)
                 AND (?3 IS NULL OR at >= substr(?3, 1, 19) AND julianday(at) >= julianday(?3))
                 AND id > ?4
                 AND (?6 IS NULL OR operator = ?6 OR agent IN (SELECT value FROM json_each(?7)))
               ORDER BY id DESC LIMIT ?5) ORDER BY id",
        )
        .bind(&filter.agent)
        .bind(&filter.operator)
        .bind(filter.since)
        .bind(filter.after)
        .bind(filter.limit)
        .bind(filter.only.as_ref().map(|o| &o.operator))
        .bind(
            filter
                .only
                .as_ref()
                .map(|o| serde_json::Value::from(o.agents.clone()).to_string()),
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}

impl Event {
    /// An event of `kind` that happens now, with nothing else said yet: it is stamped when it
    /// is made, not when it reaches the database (which may take it late: see `audit`).
    pub fn new(kind: EventKind, result: EventResult) -> Event {
        Event {
            id: 0,
            at: Timestamp::now(),
            operator: None,
            source: None,
            kind,
            agent: None,
            detail: String::new(),
            result,
            message: String::new(),
        }
    }
}

/// Which events to read.
#[derive(Clone, Debug)]
pub struct EventFilter {
    pub agent: Option<String>,
    pub operator: Option<String>,
    /// Events at or after this time.
    pub since: Option<Timestamp>,
    /// Only events with an id above this one.
    pub after: i64,
    pub limit: i64,
    /// Only these events (`None`: every one).
    pub only: Option<EventScope>,
}

/// A part of the audit trail: the events of `operator` and those about `agents`
/// (`agents::access::events_scope` says which part an operator may read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventScope {
    pub operator: String,
    pub agents: Vec<String>,
}

impl Default for EventFilter {
    fn default() -> Self {
        EventFilter {
            agent: None,
            operator: None,
            since: None,
            after: 0,
            limit: 100,
            only: None,
        }
    }
}
