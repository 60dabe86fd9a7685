//! The audit trail's writes (the `events` table): every event goes through here, and none is
//! lost without a trace.
//!
//! An event the database cannot take (a full disk, a read-only or locked file) is kept in
//! memory, in order, and written before any later one as soon as the database can again: at
//! the next audit write, before `events` reads the trail ([`Store::events`]), and on the
//! gateway's timer ([`RETRY_EVERY`]). What is kept is bounded ([`MAX_KEPT`] events and
//! [`MAX_KEPT_BYTES`]); past that the oldest are dropped and counted, and the count is written
//! as an event of its own (kind `audit`, "N events lost") as soon as it can be.
//!
//! Why keep rather than refuse new actions until the database can be written: the hosts are
//! the reality, and a gateway whose disk is full must still let an operator stop a runaway
//! agent; every audit event is also a line of the gateway's log (`control::record`).
//!
//! A command's event is written when it starts (result `started`) and completed when it ends
//! ([`Store::start_event`], [`Store::end_event`]), so a command under way when the gateway dies
//! is in the trail; at the next start [`Store::mark_interrupted_events`] ends such rows as
//! `interrupted`.
//!
//! This module decides nothing about what is recorded: that is `control::record`'s.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Event, Result, Store};
use crate::model::{EventKind, EventResult, Timestamp};

/// The most events kept in memory while the database cannot be written.
pub const MAX_KEPT: usize = 10_000;
/// The most bytes of text kept in memory while the database cannot be written (an exec line can
/// be long: the count alone would not bound the memory).
pub const MAX_KEPT_BYTES: usize = 16 * 1024 * 1024;
/// How often the gateway tries again to write the events kept in memory.
pub const RETRY_EVERY: Duration = Duration::from_secs(5);

/// The message of an event whose command was under way when the gateway stopped (its result
/// is [`EventResult::Interrupted`]).
pub const INTERRUPTED_MESSAGE: &str = "the gateway stopped before it ended";

/// Whether an event is in the database now, or waits in memory for the database to take it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    Written,
    Kept,
}

/// An event written (or kept) as `started`, to be completed with [`Store::end_event`].
#[derive(Debug)]
pub struct StartedEvent {
    row: Arc<Mutex<RowState>>,
    event: Event,
}

impl StartedEvent {
    /// The event as it started.
    pub fn event(&self) -> &Event {
        &self.event
    }
}

/// Where a started event's row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RowState {
    /// In memory, waiting for the database.
    Kept,
    Written(i64),
    /// Dropped from memory (counted as lost).
    Dropped,
}

fn state(row: &Mutex<RowState>) -> RowState {
    match row.lock() {
        Ok(state) => *state,
        Err(poisoned) => *poisoned.into_inner(),
    }
}

fn set_state(row: &Mutex<RowState>, to: RowState) {
    match row.lock() {
        Ok(mut state) => *state = to,
        Err(poisoned) => *poisoned.into_inner() = to,
    }
}

/// A write waiting for the database.
#[derive(Debug)]
enum Pending {
    /// A whole row; `row` is set for a started event, so its end can find it.
    Insert {
        event: Event,
        row: Option<Arc<Mutex<RowState>>>,
    },
    /// The end of a started event whose row is written.
    End {
        id: i64,
        result: EventResult,
        message: String,
    },
}

impl Pending {
    /// Roughly what it holds in memory.
    fn size(&self) -> usize {
        const OVERHEAD: usize = 128;
        OVERHEAD
            + match self {
                Pending::Insert { event, .. } => event_size(event),
                Pending::End { message, .. } => message.len(),
            }
    }
}

fn event_size(e: &Event) -> usize {
    std::mem::size_of::<Timestamp>()
        + e.operator.as_ref().map_or(0, String::len)
        + e.source.as_ref().map_or(0, String::len)
        + e.agent.as_ref().map_or(0, String::len)
        + e.detail.len()
        + e.message.len()
}

/// The writes kept in memory, oldest first, and the count of those dropped.
#[derive(Debug)]
pub struct Backlog {
    pending: VecDeque<Pending>,
    bytes: usize,
    max_events: usize,
    max_bytes: usize,
    lost: u64,
    /// The times of the first and last event dropped since the last note.
    lost_between: Option<(Timestamp, Timestamp)>,
    /// Why the database last refused a write ([`super::StoreError::cause`]).
    last_error: Option<String>,
}

impl Default for Backlog {
    fn default() -> Self {
        Backlog::new(MAX_KEPT, MAX_KEPT_BYTES)
    }
}

impl Backlog {
    pub fn new(max_events: usize, max_bytes: usize) -> Backlog {
        Backlog {
            pending: VecDeque::new(),
            bytes: 0,
            max_events: max_events.max(1),
            max_bytes,
            lost: 0,
            lost_between: None,
            last_error: None,
        }
    }

    /// Nothing waits: a new write may go straight to the database.
    fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.lost == 0
    }

    /// Keeps a write, dropping the oldest to stay within the bounds.
    fn push(&mut self, write: Pending) {
        let size = write.size();
        while !self.pending.is_empty()
            && (self.pending.len() >= self.max_events || self.bytes + size > self.max_bytes)
        {
            self.drop_oldest();
        }
        if size > self.max_bytes {
            // Bigger than everything that may be kept: it is the one lost.
            self.lose(&write);
            return;
        }
        self.bytes += size;
        self.pending.push_back(write);
    }

    fn drop_oldest(&mut self) {
        if let Some(write) = self.pending.pop_front() {
            self.bytes = self.bytes.saturating_sub(write.size());
            self.lose(&write);
        }
    }

    fn lose(&mut self, write: &Pending) {
        self.lost += 1;
        let at = match write {
            Pending::Insert { event, row } => {
                if let Some(row) = row {
                    set_state(row, RowState::Dropped);
                }
                event.at
            }
            Pending::End { .. } => Timestamp::now(),
        };
        self.lost_between = Some(match self.lost_between.take() {
            Some((first, _)) => (first, at),
            None => (at, at),
        });
    }

    /// Completes a started event that is still kept here; false if it is not.
    fn end_kept(&mut self, row: &Arc<Mutex<RowState>>, result: EventResult, message: &str) -> bool {
        for write in &mut self.pending {
            if let Pending::Insert {
                event,
                row: Some(kept),
            } = write
                && Arc::ptr_eq(kept, row)
            {
                let before = event.message.len();
                self.bytes = (self.bytes + message.len()).saturating_sub(before);
                event.result = result;
                event.message = message.to_owned();
                return true;
            }
        }
        false
    }

    /// The event that tells how many were dropped, if any were.
    fn lost_note(&self) -> Option<Event> {
        if self.lost == 0 {
            return None;
        }
        let (first, last) = self
            .lost_between
            .unwrap_or_else(|| (Timestamp::now(), Timestamp::now()));
        Some(Event {
            at: first,
            detail: format!(
                "{} event{} lost",
                self.lost,
                if self.lost == 1 { "" } else { "s" }
            ),
            message: format!(
                "the gateway's database could not be written and more events waited than it \
                 keeps in memory ({} events, {} MiB): the oldest, from {first} to {last}, were \
                 dropped (the gateway's log has an `audit` line for each)",
                self.max_events,
                self.max_bytes / (1024 * 1024)
            ),
            ..Event::new(EventKind::Audit, EventResult::Lost)
        })
    }

    /// How many writes wait.
    pub fn len(&self) -> usize {
        self.pending.len()
    }
}

impl Store {
    /// Records one whole event: written now, or kept in memory (in order) until the database
    /// can take it. Never an error: a write that fails is kept, and one dropped from memory
    /// is counted in the trail.
    pub async fn record_event(&self, event: &Event) -> Result<Recorded> {
        let write = Pending::Insert {
            event: event.clone(),
            row: None,
        };
        let mut backlog = self.audit.lock().await;
        Ok(self.write_or_keep(&mut backlog, write).await)
    }

    /// Records an event as under way ([`EventResult::Started`]); [`Store::end_event`] completes
    /// it.
    pub async fn start_event(&self, event: &Event) -> StartedEvent {
        let mut event = event.clone();
        event.result = EventResult::Started;
        let row = Arc::new(Mutex::new(RowState::Kept));
        let write = Pending::Insert {
            event: event.clone(),
            row: Some(row.clone()),
        };
        let mut backlog = self.audit.lock().await;
        self.write_or_keep(&mut backlog, write).await;
        StartedEvent { row, event }
    }

    /// Completes a started event with its result and message.
    pub async fn end_event(
        &self,
        started: StartedEvent,
        result: EventResult,
        message: &str,
    ) -> Recorded {
        let mut backlog = self.audit.lock().await;
        match state(&started.row) {
            RowState::Written(id) => {
                let write = Pending::End {
                    id,
                    result,
                    message: message.to_owned(),
                };
                self.write_or_keep(&mut backlog, write).await
            }
            RowState::Kept if backlog.end_kept(&started.row, result, message) => {
                let _ = self.flush_kept(&mut backlog).await;
                if backlog.is_empty() {
                    Recorded::Written
                } else {
                    Recorded::Kept
                }
            }
            // Its start was dropped from memory: it is counted among the events lost.
            RowState::Kept | RowState::Dropped => Recorded::Kept,
        }
    }

    /// Writes the events kept in memory, oldest first; returns how many were written. An
    /// error leaves the rest kept.
    pub async fn flush_events(&self) -> Result<usize> {
        let mut backlog = self.audit.lock().await;
        self.flush_kept(&mut backlog).await
    }

    /// Whether audit writes wait in memory because the database refused them: how many,
    /// and why (in words a client may see).
    pub async fn audit_fault(&self) -> Option<(usize, String)> {
        let backlog = self.audit.lock().await;
        (!backlog.is_empty()).then(|| {
            (
                backlog.len() + usize::from(backlog.lost > 0),
                backlog.last_error.clone().unwrap_or_default(),
            )
        })
    }

    /// How many audit writes wait in memory for the database.
    pub async fn events_kept(&self) -> usize {
        let backlog = self.audit.lock().await;
        backlog.len() + usize::from(backlog.lost > 0)
    }

    /// The events with these ids (those still there), oldest first: `events -f` reads again
    /// the rows it showed as `started`, to show how they ended.
    pub async fn events_with_ids(&self, ids: &[i64]) -> Result<Vec<Event>> {
        let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        let rows = sqlx::query_as::<_, Event>(
            "SELECT id, at, operator, source, kind, agent, detail, result, message FROM events
             WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Ends the events left `started` by a gateway that stopped before their commands ended.
    /// Only `serve` calls it, before it accepts connections: nothing of this run is under way.
    pub async fn mark_interrupted_events(&self) -> Result<u64> {
        Ok(
            sqlx::query("UPDATE events SET result = ?, message = ? WHERE result = ?")
                .bind(EventResult::Interrupted)
                .bind(INTERRUPTED_MESSAGE)
                .bind(EventResult::Started)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// Writes `write` after whatever is kept (so the trail stays in order), or keeps it.
    async fn write_or_keep(&self, backlog: &mut Backlog, write: Pending) -> Recorded {
        if backlog.is_empty() {
            match self.write(&write).await {
                Ok(()) => return Recorded::Written,
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        "the audit trail cannot be written; its events are kept in memory \
                         until the database can take them"
                    );
                    backlog.last_error = Some(e.cause());
                    backlog.push(write);
                    return Recorded::Kept;
                }
            }
        }
        backlog.push(write);
        let _ = self.flush_kept(backlog).await;
        if backlog.is_empty() {
            Recorded::Written
        } else {
            Recorded::Kept
        }
    }

    async fn flush_kept(&self, backlog: &mut Backlog) -> Result<usize> {
        let flushed = self.flush_in_order(backlog).await;
        if let Err(e) = &flushed {
            backlog.last_error = Some(e.cause());
        }
        flushed
    }

    async fn flush_in_order(&self, backlog: &mut Backlog) -> Result<usize> {
        let mut written = 0;
        if let Some(note) = backlog.lost_note() {
            self.write(&Pending::Insert {
                event: note,
                row: None,
            })
            .await?;
            tracing::warn!(events = backlog.lost, "audit events were lost");
            backlog.lost = 0;
            backlog.lost_between = None;
            written += 1;
        }
        while let Some(write) = backlog.pending.front() {
            self.write(write).await?;
            if let Some(write) = backlog.pending.pop_front() {
                backlog.bytes = backlog.bytes.saturating_sub(write.size());
            }
            written += 1;
        }
        if written > 0 {
            tracing::info!(
                events = written,
                "audit events kept in memory are written to the database"
            );
        }
        Ok(written)
    }

    async fn write(&self, write: &Pending) -> Result<()> {
        match write {
            Pending::Insert { event, row } => {
                // Run to its end (not `RETURNING id` with one row fetched): the commit, where
                // a full disk shows, happens when the statement finishes, and its error must
                // reach here.
                let id = sqlx::query(
                    "INSERT INTO events (at, operator, source, kind, agent, detail, result, message)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(event.at)
                .bind(&event.operator)
                .bind(&event.source)
                .bind(event.kind)
                .bind(&event.agent)
                .bind(&event.detail)
                .bind(event.result)
                .bind(&event.message)
                .execute(&self.pool)
                .await?
                .last_insert_rowid();
                if let Some(row) = row {
                    set_state(row, RowState::Written(id));
                }
            }
            Pending::End {
                id,
                result,
                message,
            } => {
                sqlx::query("UPDATE events SET result = ?, message = ? WHERE id = ?")
                    .bind(result)
                    .bind(message)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventFilter;

    fn event(detail: &str) -> Event {
        Event {
            detail: detail.into(),
            ..Event::new(EventKind::Command, EventResult::Ok)
        }
    }

    fn insert(detail: &str) -> Pending {
        Pending::Insert {
            event: event(detail),
            row: None,
        }
    }

    fn details(backlog: &Backlog) -> Vec<String> {
        backlog
            .pending
            .iter()
            .map(|w| match w {
                Pending::Insert { event, .. } => event.detail.clone(),
                Pending::End { id, .. } => format!("end {id}"),
            })
            .collect()
    }

    #[test]
    fn the_backlog_drops_its_oldest_past_its_bounds_and_counts_them() {
        let mut backlog = Backlog::new(3, 1 << 20);
        for i in 0..5 {
            backlog.push(insert(&format!("e{i}")));
        }
        assert_eq!(details(&backlog), ["e2", "e3", "e4"]);
        assert_eq!(backlog.lost, 2);
        let note = backlog.lost_note().expect("a note");
        assert_eq!(note.detail, "2 events lost");
        // Bytes bound it too: one long line pushes out what no longer fits.
        let mut backlog = Backlog::new(100, 2000);
        backlog.push(insert("short"));
        backlog.push(insert(&"x".repeat(1750)));
        assert_eq!(backlog.len(), 1);
        assert_eq!(backlog.lost, 1);
        backlog.push(insert(&"y".repeat(5000)));
        assert_eq!(backlog.len(), 0, "too big to keep at all");
        assert_eq!(backlog.lost, 3);
        assert!(backlog.bytes == 0);
    }

    #[test]
    fn a_started_event_still_kept_takes_its_end_in_place() {
        let mut backlog = Backlog::new(10, 1 << 20);
        let row = Arc::new(Mutex::new(RowState::Kept));
        backlog.push(Pending::Insert {
            event: event("stop x"),
            row: Some(row.clone()),
        });
        backlog.push(insert("list"));
        assert!(backlog.end_kept(&row, EventResult::Exit(1), "it failed"));
        match backlog.pending.front() {
            Some(Pending::Insert { event, .. }) => {
                assert_eq!(
                    (event.result, event.message.as_str()),
                    (EventResult::Exit(1), "it failed")
                )
            }
            other => panic!("{other:?}"),
        }
        // Dropped from memory: the row says so, and its end has nothing to complete.
        let mut small = Backlog::new(1, 1 << 20);
        let row = Arc::new(Mutex::new(RowState::Kept));
        small.push(Pending::Insert {
            event: event("wait x"),
            row: Some(row.clone()),
        });
        small.push(insert("list"));
        assert_eq!(state(&row), RowState::Dropped);
        assert!(!small.end_kept(&row, EventResult::Ok, ""));
    }

    /// Makes every connection of the store's pool refuse to grow the file past `pages` (real
    /// sqlite: inserts then fail with "database or disk is full", as on a full disk).
    /// `pages` 0: the file as it is, with no free page left inside it to write into either.
    async fn limit_pages(store: &Store, pages: i64) {
        let pages = if pages == 0 {
            sqlx::query("VACUUM")
                .execute(&store.pool)
                .await
                .expect("vacuum");
            page_count(store).await
        } else {
            pages
        };
        let mut connections = Vec::new();
        for _ in 0..4 {
            connections.push(store.pool.acquire().await.expect("connection"));
        }
        for connection in &mut connections {
            sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
                .execute(&mut **connection)
                .await
                .expect("pragma");
        }
    }

    async fn page_count(store: &Store) -> i64 {
        sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&store.pool)
            .await
            .expect("page_count")
    }

    async fn trail(store: &Store) -> Vec<(String, String)> {
        store
            .events(&EventFilter {
                limit: 1000,
                ..EventFilter::default()
            })
            .await
            .expect("events")
            .into_iter()
            .map(|e| (e.detail.chars().take(12).collect(), e.result.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn events_the_database_refuses_are_kept_and_written_in_order_once_it_can() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("a.db")).await.expect("open");
        assert_eq!(
            store.record_event(&event("before")).await.expect("record"),
            Recorded::Written
        );
        let running = store.start_event(&event("wait long")).await;
        limit_pages(&store, 0).await;
        // Long details: each needs pages of its own, which the database may not grow.
        let long = |n: u32| format!("during {n} {}", "z".repeat(8000));
        assert_eq!(
            store.record_event(&event(&long(1))).await.expect("record"),
            Recorded::Kept
        );
        let during = store.start_event(&event(&long(2))).await;
        assert_eq!(
            store.end_event(during, EventResult::Exit(3), "no").await,
            Recorded::Kept
        );
        assert_eq!(
            store.end_event(running, EventResult::Ok, "").await,
            Recorded::Kept
        );
        assert_eq!(store.events_kept().await, 3);
        assert!(store.flush_events().await.is_err(), "still full");
        assert_eq!(
            trail(&store).await,
            [
                ("before".into(), "ok".into()),
                ("wait long".into(), "started".into())
            ]
        );
        // Space again: the next write brings everything, in order, then itself.
        limit_pages(&store, 1 << 30).await;
        assert_eq!(
            store.record_event(&event("after")).await.expect("record"),
            Recorded::Written
        );
        assert_eq!(store.events_kept().await, 0);
        assert_eq!(
            trail(&store).await,
            [
                ("before".into(), "ok".into()),
                ("wait long".into(), "ok".into()),
                ("during 1 zzz".into(), "ok".into()),
                ("during 2 zzz".into(), "exit 3".into()),
                ("after".into(), "ok".into()),
            ]
        );
    }

    #[tokio::test]
    async fn events_dropped_from_memory_are_counted_in_the_trail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("a.db")).await.expect("open");
        store.audit = Arc::new(tokio::sync::Mutex::new(Backlog::new(2, 1 << 20)));
        limit_pages(&store, 0).await;
        let long = |n: u32| format!("e{n} {}", "z".repeat(8000));
        for n in 1..=5 {
            store.record_event(&event(&long(n))).await.expect("record");
        }
        limit_pages(&store, 1 << 30).await;
        store.flush_events().await.expect("flush");
        assert_eq!(store.events_kept().await, 0);
        // The count may have gone in while the database was full (a short row can fit where
        // a long one does not): every drop is counted, before the events kept.
        let trail = trail(&store).await;
        let (notes, kept): (Vec<_>, Vec<_>) = trail.iter().partition(|(_, r)| r == "lost");
        let counted: u64 = store
            .events(&EventFilter::default())
            .await
            .expect("events")
            .iter()
            .filter(|e| e.kind == EventKind::Audit)
            .map(|e| {
                e.detail
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum();
        assert_eq!(counted, 3, "{trail:?}");
        assert!(!notes.is_empty());
        assert_eq!(
            kept,
            [
                &("e4 zzzzzzzzz".to_owned(), "ok".to_owned()),
                &("e5 zzzzzzzzz".to_owned(), "ok".to_owned())
            ]
        );
        assert_eq!(trail.last(), Some(&("e5 zzzzzzzzz".into(), "ok".into())));
    }

    #[tokio::test]
    async fn rows_left_started_are_marked_interrupted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("a.db")).await.expect("open");
        let _forgotten = store.start_event(&event("logs -f x")).await;
        let ended = store.start_event(&event("list")).await;
        store.end_event(ended, EventResult::Ok, "").await;
        assert_eq!(store.mark_interrupted_events().await.expect("mark"), 1);
        let events = store.events(&EventFilter::default()).await.expect("events");
        assert_eq!(
            events
                .iter()
                .map(|e| (e.detail.as_str(), e.result, e.message.as_str()))
                .collect::<Vec<_>>(),
            [
                ("logs -f x", EventResult::Interrupted, INTERRUPTED_MESSAGE),
                ("list", EventResult::Ok, "")
            ]
        );
    }

    #[tokio::test]
    async fn the_start_up_check_stops_at_its_time_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.db");
        let store = Store::open(&path).await.expect("open");
        for n in 0..2000 {
            store
                .record_event(&event(&format!("e{n} {}", "z".repeat(500))))
                .await
                .expect("record");
        }
        store.close().await;
        assert_eq!(
            Store::check(&path, Duration::from_secs(60))
                .await
                .expect("check"),
            crate::store::Checked::Sound
        );
        // No time at all: sqlite's progress handler interrupts the check at once.
        assert_eq!(
            Store::check(&path, Duration::ZERO).await.expect("check"),
            crate::store::Checked::OutOfTime
        );
        assert_eq!(
            Store::check(&dir.path().join("none.db"), Duration::ZERO)
                .await
                .expect("check"),
            crate::store::Checked::Absent
        );
    }
}
