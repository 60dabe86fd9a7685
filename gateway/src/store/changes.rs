//! The feed of status changes: every change of an agent's shown status (`running` to
//! `exited`, `working` to `waiting` and why...) that the store records is published here, once,
//! after the write that made it has committed.
//!
//! The store is the only writer of an agent's status, so it is the one place that sees every
//! change, whoever made it (the reconciler, `info`, `wait`, `stop`, `create`, `destroy`). Each
//! writer reads the agent's row before and after its write in the same `BEGIN IMMEDIATE`
//! transaction: of two writers racing to record the same change, the second finds the row
//! already changed, so the change is published exactly once.
//!
//! The feed is a bounded `tokio::sync::broadcast` ([`FEED_CAPACITY`]): publishing never waits,
//! and a subscriber that falls behind by more than that learns how many changes it missed
//! (`RecvError::Lagged`) instead of holding anyone up. This module decides nothing about who
//! is told what: a change carries its agent's owner and shares so that subscribers can apply
//! the access rule without asking the database again (`agents::access`).

use std::collections::BTreeMap;

use tokio::sync::broadcast;

use super::{Result, StoreError};
use crate::model::Timestamp;

/// How many changes the feed holds for its slowest subscriber.
pub const FEED_CAPACITY: usize = 1024;

/// What `to` says of an agent that was destroyed (its row deleted).
pub const DESTROYED: &str = "destroyed";

/// One change of an agent's shown status, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusChange {
    /// When the store recorded it.
    pub at: Timestamp,
    pub agent: String,
    pub host: String,
    /// The shown status before (`working`, `waiting`, `idle`, `running`, `exited`, ...); None
    /// for an agent that did not exist.
    pub from: Option<String>,
    /// The shown status now, or [`DESTROYED`].
    pub to: String,
    /// Why it is what it is now: the waiting question, how its process ended, `idle` for an
    /// idle stop, the host's error when its host is unreachable.
    pub reason: Option<String>,
    /// Who created the agent (who may see it, with those it is shared with and admins).
    pub owner: Option<String>,
    pub shared_with: Vec<String>,
    pub tags: BTreeMap<String, String>,
    /// Its host is unreachable (the agent is `unknown` because of it).
    pub host_unreachable: bool,
}

impl StatusChange {
    /// Whether it has every one of `tags`.
    pub fn has_tags(&self, tags: &[(String, String)]) -> bool {
        tags.iter().all(|(k, v)| self.tags.get(k) == Some(v))
    }
}

/// The sending half of the feed, kept by the store.
#[derive(Clone, Debug)]
pub struct Feed(broadcast::Sender<StatusChange>);

impl Default for Feed {
    fn default() -> Self {
        Feed(broadcast::channel(FEED_CAPACITY).0)
    }
}

impl Feed {
    pub fn subscribe(&self) -> broadcast::Receiver<StatusChange> {
        self.0.subscribe()
    }

    /// Publishes what a committed write changed. Nobody listening is not an error.
    pub fn publish(&self, changes: Vec<StatusChange>) {
        for change in changes {
            let _ = self.0.send(change);
        }
    }
}

/// An agent's row as far as its shown status goes, read inside a writer's transaction.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(super) struct ShownRow {
    agent: String,
    host: String,
    status: String,
    activity: Option<String>,
    activity_reason: Option<String>,
    stop_reason: Option<String>,
    exit_code: Option<i32>,
    owner: Option<String>,
    tags: String,
    /// JSON: the operators it is shared with.
    shares: String,
    host_status: Option<String>,
    host_error: Option<String>,
}

const SHOWN_SELECT: &str =
    "SELECT a.name AS agent, a.host, a.status, a.activity, a.activity_reason,
        a.stop_reason, a.exit_code, a.created_by AS owner, a.tags,
        COALESCE((SELECT json_group_array(s.operator) FROM agent_shares s
                  WHERE s.agent = a.name), '') AS shares,
        h.status AS host_status, h.last_error AS host_error
    FROM agents a LEFT JOIN hosts h ON h.name = a.host";

impl ShownRow {
    /// The agent's host is unreachable (so the agent is `unknown` because of it).
    fn host_unreachable(&self) -> bool {
        self.host_status.as_deref() == Some(crate::model::HostStatus::Unreachable.as_str())
    }

    pub(super) fn agent(&self) -> &str {
        &self.agent
    }

    /// The status an operator sees (as `AgentRecord::shown_status`) and why.
    fn shown(&self) -> (String, Option<String>) {
        match (self.status.as_str(), self.activity.as_deref()) {
            ("running", Some(activity)) => (activity.to_owned(), self.activity_reason.clone()),
            ("running", None) => ("running".to_owned(), None),
            ("exited", _) => (
                "exited".to_owned(),
                self.stop_reason
                    .clone()
                    .or_else(|| self.exit_code.map(|c| format!("exit {c}"))),
            ),
            ("unknown", _) if self.host_unreachable() => (
                "unknown".to_owned(),
                Some(match self.host_error.as_deref() {
                    Some(e) if !e.is_empty() => {
                        format!("host '{}' is unreachable: {e}", self.host)
                    }
                    _ => format!("host '{}' is unreachable", self.host),
                }),
            ),
            (status, _) => (status.to_owned(), self.stop_reason.clone()),
        }
    }

    fn change(
        &self,
        from: Option<String>,
        to: String,
        reason: Option<String>,
        at: Timestamp,
    ) -> Result<StatusChange> {
        Ok(StatusChange {
            at,
            agent: self.agent.clone(),
            host: self.host.clone(),
            from,
            to,
            reason,
            owner: self.owner.clone(),
            shared_with: if self.shares.is_empty() {
                Vec::new()
            } else {
                serde_json::from_str(&self.shares)
                    .map_err(|e| StoreError::Corrupt(format!("shares of '{}': {e}", self.agent)))?
            },
            tags: serde_json::from_str(&self.tags)
                .map_err(|e| StoreError::Corrupt(format!("tags of '{}': {e}", self.agent)))?,
            host_unreachable: self.host_unreachable(),
        })
    }
}

/// Agent `name`'s row, read in `tx`.
pub(super) async fn shown_row(
    tx: &mut sqlx::SqliteConnection,
    name: &str,
) -> Result<Option<ShownRow>> {
    let row = sqlx::query_as::<_, ShownRow>(&format!("{SHOWN_SELECT} WHERE a.name = ?"))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(row)
}

/// The rows of the agents named, read in `tx` with one statement (a reconciler pass writes
/// every agent of a host in one transaction).
pub(super) async fn shown_rows_named(
    tx: &mut sqlx::SqliteConnection,
    names: &[&str],
) -> Result<std::collections::HashMap<String, ShownRow>> {
    let names = serde_json::to_string(names)
        .map_err(|e| StoreError::Corrupt(format!("encoding names: {e}")))?;
    let rows = sqlx::query_as::<_, ShownRow>(&format!(
        "{SHOWN_SELECT} WHERE a.name IN (SELECT value FROM json_each(?))"
    ))
    .bind(names)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.agent.clone(), row))
        .collect())
}

/// Every agent row of host `host`, read in `tx`.
pub(super) async fn shown_rows_of_host(
    tx: &mut sqlx::SqliteConnection,
    host: &str,
) -> Result<Vec<ShownRow>> {
    let rows =
        sqlx::query_as::<_, ShownRow>(&format!("{SHOWN_SELECT} WHERE a.host = ? ORDER BY a.name"))
            .bind(host)
            .fetch_all(&mut *tx)
            .await?;
    Ok(rows)
}

/// The change from `before` to `after` (None for a row that does not exist), if the shown
/// status or its reason differ.
pub(super) fn between(
    before: Option<&ShownRow>,
    after: Option<&ShownRow>,
    at: Timestamp,
) -> Result<Option<StatusChange>> {
    let was = before.map(ShownRow::shown);
    match after {
        Some(row) => {
            let (to, reason) = row.shown();
            if was.as_ref() == Some(&(to.clone(), reason.clone())) {
                return Ok(None);
            }
            row.change(was.map(|(from, _)| from), to, reason, at)
                .map(Some)
        }
        None => match (before, was) {
            (Some(row), Some((from, _))) => row
                .change(Some(from), DESTROYED.to_owned(), None, at)
                .map(Some),
            _ => Ok(None),
        },
    }
}
