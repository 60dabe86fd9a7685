//! The state store: the only module that writes SQL or mentions sqlx.
//!
//! `agentgate.db` is sqlite in WAL mode, created and migrated on open (migrations are embedded
//! from `gateway/migrations/`). Reality is tmux on the hosts: the reconciler writes what it
//! sees here, and nothing here ever deletes a workspace. The store gives facts; who may see
//! what is decided in `agents::access`.
//!
//! One file per table (or close group of tables), each with its records and its queries:
//! `operators` (operators, keys, tailnet logins), `agents` (agents and their shares),
//! `hosts`, `snapshots`, `secrets`, `operations` (the journal of multi-step
//! operations), `notify` (notification channels); the audit trail is written by `audit`
//! and read by `events`; `changes` publishes each recorded status change.
//!
//! Rows are read into their records by `#[derive(sqlx::FromRow)]`: each column by its type
//! (the domain's values through `columns`, JSON columns through `columns::Json`), renamed in
//! the SQL (`AS`) where the record's name differs. The queries are not checked at compile time
//! (`sqlx::query!`): that needs a database at build time, or offline files from `cargo sqlx
//! prepare` kept in step with every statement by a tool CI does not have, and several
//! statements are put together with `format!` (the shared column lists, the snapshot upsert),
//! which the macros cannot check. The store's unit tests run every query against a real,
//! migrated database instead.

mod agents;
mod audit;
mod changes;
mod columns;
mod events;
mod hosts;
mod notify;
mod operations;
mod operators;
mod secrets;
mod snapshots;

pub use changes::{DESTROYED, FEED_CAPACITY, StatusChange};
pub use notify::{ChannelUrl, NewChannel, NotifyChannel};

pub use operations::Operation;

/// SQL for "`column` holds a time before the one bound at `param`". Times are RFC 3339 text
/// in UTC, some with a fraction of a second and some without, and as text `…:01Z` sorts
/// after `…:01.5Z`: an earlier second is told by the text (so the column's index serves),
/// the same second by `julianday` (to the millisecond).
fn before_sql(column: &str, param: &str) -> String {
    format!(
        "({column} < substr({param}, 1, 19) OR (substr({column}, 1, 19) = substr({param}, 1, 19) \
         AND julianday({column}) < julianday({param})))"
    )
}

#[cfg(test)]
pub(crate) use agents::sample_agent;
pub use agents::{AgentActivity, AgentRecord, Observed};
pub use events::{Event, EventFilter, EventScope};
pub use hosts::HostRecord;
pub use operators::{KeyRecord, NewKey, Operator, OperatorSummary, RemovedCredentials};
pub use secrets::SecretSummary;
pub use snapshots::{SameArchive, SnapshotRecord};

use std::path::Path;
use std::sync::Arc;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub use audit::{
    INTERRUPTED_MESSAGE, MAX_KEPT, MAX_KEPT_BYTES, RETRY_EVERY, Recorded, StartedEvent,
};

impl StoreError {
    /// What went wrong, in words a client may be told: sqlite's own phrase for its error
    /// code, never the statement or the values. Whole errors go to the log only.
    pub fn cause(&self) -> String {
        let StoreError::Database(sqlx::Error::Database(db)) = self else {
            return match self {
                StoreError::Conflict(m) => m.clone(),
                StoreError::Corrupt(_) => "stored data is damaged".into(),
                StoreError::Migrate(_) => "its schema could not be brought up to date".into(),
                StoreError::Database(sqlx::Error::PoolTimedOut) => {
                    "it did not answer in time".into()
                }
                StoreError::Database(_) => "it could not be read or written".into(),
            };
        };
        // sqlite's extended result code; the primary code is its low byte.
        let code = db.code().and_then(|c| c.parse::<i64>().ok()).unwrap_or(0) & 0xff;
        match code {
            13 => "disk full (database or disk is full)".into(),
            8 => "the database file is read-only".into(),
            10 => "disk I/O error".into(),
            11 | 26 => "the database file is damaged (malformed)".into(),
            5 | 6 => "the database is locked by another process".into(),
            14 => "the database file cannot be opened".into(),
            _ => "it could not be read or written".into(),
        }
    }
}

/// What `PRAGMA quick_check` found ([`Store::check`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checked {
    /// No damage found.
    Sound,
    /// No database file yet: nothing to check.
    Absent,
    /// Damage found: sqlite's first findings.
    Damaged(Vec<String>),
    /// The check ran out of its time budget before it was done: what was read was sound.
    OutOfTime,
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    /// Audit writes the database could not take yet (see `audit`).
    audit: Arc<tokio::sync::Mutex<audit::Backlog>>,
    /// Where recorded status changes are published (see `changes`).
    feed: changes::Feed,
    /// Bumped when a notification channel is added or removed (see `notify`).
    channels_changed: Arc<std::sync::atomic::AtomicU64>,
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub async fn open(path: &Path) -> Result<Store> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .after_release(|connection, _| {
                Box::pin(async move {
                    use sqlx::Connection;
                    // A transaction whose COMMIT failed (a full disk) is rolled back by sqlite
                    // itself; sqlx's ROLLBACK then fails and its count of open transactions
                    // stays at one, so the connection's next transaction would be a savepoint
                    // whose rollback leaves the write lock held, and every other writer
                    // "locked" for ever. Such a connection is closed instead of reused. The
                    // handle's round trip lets a rollback still queued finish first.
                    drop(connection.lock_handle().await?);
                    Ok(!connection.is_in_transaction())
                })
            })
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store {
            pool,
            audit: Arc::default(),
            feed: changes::Feed::default(),
            channels_changed: Arc::default(),
        })
    }

    /// The status changes recorded from now on (see `changes`).
    pub fn subscribe_changes(&self) -> tokio::sync::broadcast::Receiver<StatusChange> {
        self.feed.subscribe()
    }

    /// Runs sqlite's `PRAGMA quick_check` on the database at `path` (if there is one) on a
    /// connection of its own, for at most `budget`: sqlite's progress handler interrupts it
    /// then, so a large database cannot hold the start for minutes. A file sqlite cannot
    /// read as a database at all is `Damaged` too.
    pub async fn check(path: &Path, budget: std::time::Duration) -> Result<Checked> {
        use sqlx::Connection;
        if !path.exists() {
            return Ok(Checked::Absent);
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(std::time::Duration::from_secs(5));
        let said = |e: &sqlx::Error| match e {
            sqlx::Error::Database(db) => format!(
                "{} (sqlite error {})",
                db.message(),
                db.code().unwrap_or_default()
            ),
            other => other.to_string(),
        };
        let damaged = |e: &sqlx::Error| {
            let code = match e {
                sqlx::Error::Database(db) => db.code().and_then(|c| c.parse::<i64>().ok()),
                _ => None,
            };
            // SQLITE_CORRUPT, SQLITE_NOTADB.
            matches!(code.map(|c| c & 0xff), Some(11 | 26))
        };
        let mut connection = match sqlx::SqliteConnection::connect_with(&options).await {
            Ok(c) => c,
            Err(e) if damaged(&e) => return Ok(Checked::Damaged(vec![said(&e)])),
            Err(e) => return Err(e.into()),
        };
        let deadline = std::time::Instant::now() + budget;
        connection
            .lock_handle()
            .await?
            .set_progress_handler(1000, move || std::time::Instant::now() < deadline);
        let found: std::result::Result<Vec<String>, sqlx::Error> =
            sqlx::query_scalar("PRAGMA quick_check(20)")
                .fetch_all(&mut connection)
                .await;
        let timed_out = std::time::Instant::now() >= deadline;
        let _ = connection.close().await;
        match found {
            Ok(lines) if lines.iter().all(|l| l == "ok") => Ok(Checked::Sound),
            Ok(lines) => Ok(Checked::Damaged(lines)),
            Err(e) if damaged(&e) => Ok(Checked::Damaged(vec![said(&e)])),
            // SQLITE_INTERRUPT from the progress handler.
            Err(_) if timed_out => Ok(Checked::OutOfTime),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{
        ActivitySource, ActivityState, AgentStatus, EventKind, EventResult, HostStatus, Role,
        Timestamp,
    };

    pub(crate) async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("t.db")).await.expect("open");
        (dir, store)
    }

    fn key(fp: &str) -> NewKey<'_> {
        NewKey {
            fingerprint: fp,
            algorithm: "ssh-ed25519",
            public_key: "ssh-ed25519 AAAA",
            comment: "c",
        }
    }

    #[tokio::test]
    async fn keys_belong_to_one_operator_only() {
        let (_d, store) = store().await;
        assert_eq!(store.operator_count().await.expect("count"), 0);
        store
            .add_key("alice", Role::Admin, &key("SHA256:a"))
            .await
            .expect("add");
        store
            .add_key("alice", Role::Operator, &key("SHA256:b"))
            .await
            .expect("second key");
        let err = store.add_key("bob", Role::Operator, &key("SHA256:a")).await;
        assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
        let op = store
            .operator_by_fingerprint("SHA256:b")
            .await
            .expect("q")
            .expect("found");
        assert_eq!((op.name.as_str(), op.role), ("alice", Role::Admin));
        assert_eq!(store.keys().await.expect("keys").len(), 2);
        assert!(
            store
                .operator_by_fingerprint("SHA256:zz")
                .await
                .expect("q")
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_host_status_and_its_error_change_together_and_once() {
        let (_d, store) = store().await;
        let mut host = HostRecord::named("h");
        host.status = HostStatus::Reachable;
        store.insert_host(&host).await.expect("insert");
        let record = |s: &Store| {
            let s = s.clone();
            async move {
                let h = s.host("h").await.expect("q").expect("host");
                (h.status, h.last_error)
            }
        };
        let down = store.set_host_status("h", HostStatus::Unreachable, Some("gone"), None);
        assert!(
            down.await.expect("set"),
            "the first change is told it changed"
        );
        let again = store.set_host_status("h", HostStatus::Unreachable, Some("still gone"), None);
        assert!(!again.await.expect("set"), "a repeat is not a change");
        assert_eq!(
            record(&store).await,
            (HostStatus::Unreachable, Some("still gone".into()))
        );
        let up = store.set_host_status("h", HostStatus::Reachable, None, Some("9.9"));
        assert!(up.await.expect("set"));
        assert_eq!(record(&store).await, (HostStatus::Reachable, None));
        let h = store.host("h").await.expect("q").expect("host");
        assert_eq!(h.hostctl_version.as_deref(), Some("9.9"));
        assert!(h.last_contact.is_some());
    }

    #[tokio::test]
    async fn agents_round_trip_and_names_are_unique() {
        let (_d, store) = store().await;
        let mut agent = sample_agent("a", "local", AgentStatus::Creating);
        agent.command = "$SHELL -l".into();
        agent.spec.tags = BTreeMap::from([("k".into(), "v".into())]);
        agent.tags = agent.spec.tags.clone();
        agent.created_by = Some("alice".into());
        store.insert_agent(&agent).await.expect("insert");
        assert!(matches!(
            store.insert_agent(&agent).await,
            Err(StoreError::Conflict(_))
        ));
        store
            .observe_agent(
                "a",
                &Observed {
                    status: AgentStatus::Exited,
                    exit_code: Some(3),
                    pid: None,
                    last_activity: None,
                    workspace: Some("/w/a".into()),
                    activity: None,
                    stop_reason: None,
                },
            )
            .await
            .expect("observe");
        let back = store.agent("a").await.expect("q").expect("found");
        assert_eq!(
            (back.status, back.exit_code, back.workspace.as_str()),
            (AgentStatus::Exited, Some(3), "/w/a")
        );
        assert_eq!(back.spec, agent.spec);
        let running = |pid, activity: Option<&str>| Observed {
            status: AgentStatus::Running,
            exit_code: None,
            pid: Some(pid),
            last_activity: activity.map(str::to_owned),
            workspace: None,
            activity: None,
            stop_reason: None,
        };
        let (first, same, moved) = (
            running(7, Some("1")),
            running(7, None),
            running(7, Some("2")),
        );
        assert_eq!(
            store
                .observe_agents(&[("a", &first)])
                .await
                .expect("observe"),
            1
        );
        assert_eq!(
            store
                .observe_agents(&[("a", &first), ("a", &same), ("gone", &first)])
                .await
                .expect("observe"),
            0,
            "what the row already says is not written again"
        );
        assert_eq!(
            store
                .observe_agents(&[("a", &moved)])
                .await
                .expect("observe"),
            1
        );
        let back = store.agent("a").await.expect("q").expect("found");
        assert_eq!(
            (
                back.status,
                back.pid,
                back.last_activity.as_deref(),
                back.workspace.as_str()
            ),
            (AgentStatus::Running, Some(7), Some("2"), "/w/a")
        );
        store.mark_host_agents_unknown("local").await.expect("mark");
        assert_eq!(
            store.agent("a").await.expect("q").expect("found").status,
            AgentStatus::Unknown
        );
        assert!(store.delete_agent("a").await.expect("delete"));
        assert!(store.agent("a").await.expect("q").is_none());
    }

    #[tokio::test]
    async fn a_snapshot_is_recorded_once_per_archive_and_outlives_its_agent() {
        // Who may see it: `agents::access`.
        let (_d, store) = store().await;
        let mut agent = sample_agent("w", "local", AgentStatus::Running);
        agent.created_by = Some("alice".into());
        store.insert_agent(&agent).await.expect("agent");
        let snapshot = SnapshotRecord {
            id: "w-20261123-1215".into(),
            agent: "w".into(),
            agent_created_at: Some(agent.created_at),
            host: "h1".into(),
            label: Some("before".into()),
            created_at: crate::model::Timestamp::now(),
            size: 1234,
            sha256: "ab".repeat(32),
            owner: Some("alice".into()),
            taken_by: Some("alice".into()),
            spec: agent.spec.clone(),
            idle_stop: Some("30m".into()),
        };
        store
            .insert_snapshot(&snapshot, SameArchive::Keep)
            .await
            .expect("insert");
        assert!(matches!(
            store.insert_snapshot(&snapshot, SameArchive::Keep).await,
            Err(StoreError::Conflict(_))
        ));
        // The gateway's own record replaces one of the same archive taken up from the host,
        // never one of another archive.
        let mut adopted = snapshot.clone();
        adopted.label = Some("from the host".into());
        adopted.agent_created_at = None;
        store.delete_snapshot(&snapshot.id).await.expect("delete");
        store
            .insert_snapshot(&adopted, SameArchive::Keep)
            .await
            .expect("insert");
        let mut other = snapshot.clone();
        other.sha256 = "cd".repeat(32);
        assert!(matches!(
            store.insert_snapshot(&other, SameArchive::Replace).await,
            Err(StoreError::Conflict(_))
        ));
        store
            .insert_snapshot(&snapshot, SameArchive::Replace)
            .await
            .expect("replaces the same archive");
        let id = snapshot.id.as_str();
        assert_eq!(store.snapshot(id).await.expect("q"), Some(snapshot.clone()));
        assert_eq!(store.snapshots(Some("w")).await.expect("q").len(), 1);
        assert!(store.snapshots(Some("x")).await.expect("q").is_empty());
        store.delete_agent("w").await.expect("delete");
        assert_eq!(
            store.snapshots(None).await.expect("q"),
            vec![snapshot.clone()]
        );
        assert!(store.snapshot_exists(id).await.expect("q"));
        assert!(store.delete_snapshot(id).await.expect("delete"));
        assert!(!store.delete_snapshot(id).await.expect("again"));
        assert!(store.snapshots(None).await.expect("q").is_empty());
    }

    #[tokio::test]
    async fn activity_and_its_since_follow_the_status() {
        let (_d, store) = store().await;
        let mut agent = sample_agent("a", "local", AgentStatus::Creating);
        agent.idle_stop = Some("30m".into());
        store.insert_agent(&agent).await.expect("insert");
        let seen = |status, activity: Option<AgentActivity>| Observed {
            status,
            exit_code: None,
            pid: None,
            last_activity: None,
            workspace: None,
            activity,
            stop_reason: None,
        };
        let waiting = AgentActivity {
            state: Some(ActivityState::Waiting),
            reason: Some("asks permission".into()),
            last_output_at: Some("2026-01-01T00:00:00Z".parse().expect("a time")),
            last_input_at: Some("2026-01-01T00:00:01Z".parse().expect("a time")),
            screen: Some("80x24 abc".into()),
            last_line: Some("Do you want to proceed?".into()),
            screen_waits: Some("asks permission".into()),
            screen_asks: true,
            source: Some(ActivitySource::Screen),
        };
        let get = |s: &Store| {
            let s = s.clone();
            async move { s.agent("a").await.expect("q").expect("found") }
        };
        store
            .observe_agent("a", &seen(AgentStatus::Running, Some(waiting.clone())))
            .await
            .expect("observe");
        let back = get(&store).await;
        assert_eq!(
            (back.activity.clone(), back.shown_status()),
            (waiting.clone(), "waiting")
        );
        assert_eq!(back.idle_stop.as_deref(), Some("30m"));
        let since = back.status_since.expect("a since");
        // The same status again, without activity: nothing changes, since stays.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        store
            .observe_agent("a", &seen(AgentStatus::Running, None))
            .await
            .expect("observe");
        let back = get(&store).await;
        assert_eq!(
            (back.activity.clone(), back.status_since),
            (waiting.clone(), Some(since))
        );
        // Stopped: what the screen told is gone (the input time stays), since moves.
        store
            .observe_agent("a", &seen(AgentStatus::Stopped, None))
            .await
            .expect("observe");
        store.set_stop_reason("a", "idle").await.expect("reason");
        let back = get(&store).await;
        assert_eq!(
            (back.shown_status(), back.stop_reason.as_deref()),
            ("stopped", Some("idle"))
        );
        assert_eq!(
            (back.activity.state, back.activity.screen.as_deref()),
            (None, None)
        );
        assert_eq!(back.activity.last_input_at, waiting.last_input_at);
        assert_ne!(back.status_since, Some(since));
        // Started again (without activity, as `start` records it): a clean slate.
        store
            .observe_agent("a", &seen(AgentStatus::Running, None))
            .await
            .expect("observe");
        let back = get(&store).await;
        assert_eq!(
            (back.shown_status(), back.stop_reason.as_deref()),
            ("running", None)
        );
        assert_eq!(back.activity.screen, None);
    }

    #[tokio::test]
    async fn an_end_no_stop_explains_is_a_reason_and_one_event() {
        let (_d, store) = store().await;
        store
            .insert_agent(&sample_agent("a", "local", AgentStatus::Running))
            .await
            .expect("insert");
        let seen = |status, exit_code, reason: Option<&str>| Observed {
            status,
            exit_code,
            pid: None,
            last_activity: None,
            workspace: None,
            activity: None,
            stop_reason: reason.map(str::to_owned),
        };
        let agent_events = |s: &Store| {
            let s = s.clone();
            async move {
                s.events(&EventFilter {
                    limit: 100,
                    ..EventFilter::default()
                })
                .await
                .expect("events")
                .into_iter()
                .filter(|e| e.kind == EventKind::Agent)
                .map(|e| (e.result.to_string(), e.detail))
                .collect::<Vec<_>>()
            }
        };
        let killed = "its process was killed by signal 9 (SIGKILL)";
        let exited = seen(AgentStatus::Exited, Some(137), Some(killed));
        // Seen twice (the reconciler, then `info`): one event.
        for _ in 0..2 {
            store.observe_agent("a", &exited).await.expect("observe");
        }
        let back = store.agent("a").await.expect("q").expect("found");
        assert_eq!(back.stop_reason.as_deref(), Some(killed));
        assert_eq!(
            agent_events(&store).await,
            vec![("exited".to_owned(), killed.to_owned())]
        );
        // Its host unreachable, then back with the same news: no new event.
        store
            .mark_host_agents_unknown("local")
            .await
            .expect("unknown");
        store.observe_agent("a", &exited).await.expect("observe");
        assert_eq!(agent_events(&store).await.len(), 1);
        // A stop by hand: the reason goes, and no event.
        store
            .observe_agent("a", &seen(AgentStatus::Stopped, None, None))
            .await
            .expect("observe");
        let back = store.agent("a").await.expect("q").expect("found");
        assert_eq!(
            (back.status, back.stop_reason),
            (AgentStatus::Stopped, None)
        );
        assert_eq!(agent_events(&store).await.len(), 1);
        // Started, then its tmux server killed: a reason and a second event.
        store
            .observe_agent("a", &seen(AgentStatus::Running, None, None))
            .await
            .expect("observe");
        let gone = seen(AgentStatus::Stopped, None, Some("tmux server gone"));
        store.observe_agent("a", &gone).await.expect("observe");
        store.observe_agent("a", &gone).await.expect("observe");
        let back = store.agent("a").await.expect("q").expect("found");
        assert_eq!(back.stop_reason.as_deref(), Some("tmux server gone"));
        assert_eq!(
            agent_events(&store).await,
            vec![
                ("exited".to_owned(), killed.to_owned()),
                ("stopped".to_owned(), "tmux server gone".to_owned())
            ]
        );
    }

    /// Times with and without a fraction of a second, within one second of the bound: `events
    /// --since` keeps exactly those at or after it, and pruning removes exactly those before it.
    #[tokio::test]
    async fn times_in_the_same_second_as_a_bound_are_kept_or_pruned_by_their_moment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("t.db")).await.expect("open");
        let at = |text: &str| Timestamp::parse(text).expect("a time");
        for (n, text) in [
            "2026-12-06T09:00:00.9Z",
            "2026-12-06T09:00:01Z",
            "2026-12-06T09:00:01.2Z",
            "2026-12-06T09:00:01.5Z",
            "2026-12-06T09:00:01.7Z",
            "2026-12-06T09:00:02Z",
        ]
        .into_iter()
        .enumerate()
        {
            let mut event = Event::new(EventKind::Command, EventResult::Ok);
            event.at = at(text);
            event.detail = format!("e{n}");
            store.record_event(&event).await.expect("record");
        }
        let details = |events: Vec<Event>| events.into_iter().map(|e| e.detail).collect::<Vec<_>>();
        let since = EventFilter {
            since: Some(at("2026-12-06T09:00:01.5Z")),
            ..EventFilter::default()
        };
        assert_eq!(
            details(store.events(&since).await.expect("events")),
            ["e3", "e4", "e5"]
        );
        let pruned = store
            .prune_events(at("2026-12-06T09:00:01.5Z"))
            .await
            .expect("prune");
        assert_eq!(pruned, 3);
        let all = store.events(&EventFilter::default()).await.expect("events");
        assert_eq!(details(all), ["e3", "e4", "e5"]);
    }

    /// A database written before the records carried a time type: its times are the text the
    /// old code wrote (and the first migration's `strftime` for `local`), read as the same
    /// moments and written back as the same text.
    #[tokio::test]
    async fn a_database_written_with_times_as_text_opens_and_reads_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        Store::open(&path).await.expect("create").close().await;
        {
            use sqlx::Connection;
            let mut old = sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display()))
                .await
                .expect("connect");
            let spec =
                serde_json::to_string(&sample_agent("a", "local", AgentStatus::Running).spec)
                    .expect("spec");
            for statement in [
                "UPDATE hosts SET created_at = '2026-11-01T08:00:00Z',
                        last_contact = '2026-12-06T09:53:15.123456789Z' WHERE name = 'local'"
                    .to_owned(),
                format!(
                    "INSERT INTO agents (name, host, template, command, workspace, spec, tags,
                                         status, created_at, updated_at, status_since,
                                         last_output_at, activity, activity_source)
                     VALUES ('a', 'local', 'shell', '', '/w', '{spec}', '{{}}', 'running',
                             '2026-12-06T09:00:00.5Z', '2026-12-06T09:00:00.5Z',
                             '2026-12-06T09:01:00.25Z', '2026-12-06T09:02:00Z', 'working',
                             'screen')"
                ),
                "INSERT INTO events (at, operator, source, kind, agent, detail, result, message)
                 VALUES ('2026-12-06T09:00:01.000001Z', 'alice', 'ssh', 'command', 'a',
                         'create a', 'ok', '')"
                    .to_owned(),
            ] {
                sqlx::query(&statement)
                    .execute(&mut old)
                    .await
                    .expect("old row");
            }
            old.close().await.expect("close");
        }
        let store = Store::open(&path).await.expect("reopen");
        let local = store.host("local").await.expect("q").expect("local");
        assert_eq!(local.created_at.to_string(), "2026-11-01T08:00:00Z");
        assert_eq!(
            local.last_contact.map(|t| t.to_string()).as_deref(),
            Some("2026-12-06T09:53:15.123456789Z")
        );
        let agent = store.agent("a").await.expect("q").expect("agent");
        assert_eq!(
            (
                agent.created_at.to_string(),
                agent.status_since.map(|t| t.to_string()),
                agent.activity.last_output_at.map(|t| t.to_string()),
            ),
            (
                "2026-12-06T09:00:00.5Z".to_owned(),
                Some("2026-12-06T09:01:00.25Z".to_owned()),
                Some("2026-12-06T09:02:00Z".to_owned())
            )
        );
        let events = store.events(&EventFilter::default()).await.expect("events");
        assert_eq!(
            events.iter().map(|e| e.at.to_string()).collect::<Vec<_>>(),
            ["2026-12-06T09:00:01.000001Z"]
        );
        // Filters compare the text sqlite holds with the text a time is written as.
        let since = |text: &str| EventFilter {
            since: Some(text.parse().expect("a time")),
            ..EventFilter::default()
        };
        let after = store
            .events(&since("2026-12-06T09:00:00Z"))
            .await
            .expect("q");
        assert_eq!(after.len(), 1);
        let later = store
            .events(&since("2026-12-06T09:00:02Z"))
            .await
            .expect("q");
        assert!(later.is_empty());
    }

    #[tokio::test]
    async fn events_are_kept_in_order() {
        let (_d, store) = store().await;
        for i in 0..5 {
            store
                .record_event(&Event {
                    detail: format!("list {i}"),
                    agent: (i % 2 == 0).then(|| "a".to_owned()),
                    ..Event::new(EventKind::Command, EventResult::Ok)
                })
                .await
                .expect("record");
        }
        let last = store
            .events(&EventFilter {
                limit: 2,
                ..EventFilter::default()
            })
            .await
            .expect("events");
        assert_eq!(
            last.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>(),
            ["list 3", "list 4"]
        );
        let of_a = EventFilter {
            agent: Some("a".into()),
            ..EventFilter::default()
        };
        assert_eq!(store.events(&of_a).await.expect("events").len(), 3);
        let after = EventFilter {
            after: last[0].id,
            ..EventFilter::default()
        };
        assert_eq!(store.events(&after).await.expect("events").len(), 1);
    }

    #[tokio::test]
    async fn each_recorded_change_of_shown_status_is_published_once() {
        let (_dir, store) = store().await;
        let mut feed = store.subscribe_changes();
        let mut agent = sample_agent("a", "local", AgentStatus::Creating);
        agent.created_by = Some("ann".into());
        store.insert_agent(&agent).await.expect("insert");
        let seen = |status, state: Option<ActivityState>, reason: Option<&str>| Observed {
            status,
            exit_code: (status == AgentStatus::Exited).then_some(3),
            pid: None,
            last_activity: None,
            workspace: None,
            activity: Some(AgentActivity {
                state,
                reason: reason.map(str::to_owned),
                ..AgentActivity::default()
            }),
            stop_reason: (status == AgentStatus::Exited)
                .then(|| "its process exited with 3".to_owned()),
        };
        let working = seen(AgentStatus::Running, Some(ActivityState::Working), None);
        let waiting = seen(
            AgentStatus::Running,
            Some(ActivityState::Waiting),
            Some("asks a yes/no question"),
        );
        // Written twice (two observers racing): one change.
        for seen in [&working, &working, &waiting, &waiting] {
            store.observe_agent("a", seen).await.expect("observe");
        }
        store
            .observe_agent("a", &seen(AgentStatus::Exited, None, None))
            .await
            .expect("observe");
        store.mark_host_agents_unknown("local").await.expect("mark");
        store.delete_agent("a").await.expect("delete");
        let mut got = Vec::new();
        while let Ok(change) = feed.try_recv() {
            assert_eq!(
                (change.agent.as_str(), change.owner.as_deref()),
                ("a", Some("ann"))
            );
            got.push((change.from, change.to, change.reason));
        }
        let s = |t: &str| Some(t.to_owned());
        assert_eq!(
            got,
            [
                (None, "creating".into(), None),
                (s("creating"), "working".into(), None),
                (s("working"), "waiting".into(), s("asks a yes/no question")),
                (
                    s("waiting"),
                    "exited".into(),
                    s("its process exited with 3")
                ),
                (
                    s("exited"),
                    "unknown".into(),
                    s("its process exited with 3")
                ),
                (s("unknown"), DESTROYED.into(), None),
            ]
        );
    }

    #[tokio::test]
    async fn an_unreachable_host_makes_its_agents_unknown_with_the_hosts_error() {
        let (_dir, store) = store().await;
        store
            .insert_agent(&sample_agent("a", "local", AgentStatus::Running))
            .await
            .expect("insert");
        let mut feed = store.subscribe_changes();
        store
            .set_host_status(
                "local",
                HostStatus::Unreachable,
                Some("connection refused"),
                None,
            )
            .await
            .expect("host");
        store.mark_host_agents_unknown("local").await.expect("mark");
        store
            .mark_host_agents_unknown("local")
            .await
            .expect("again");
        let change = feed.try_recv().expect("a change");
        assert_eq!(
            (
                change.to.as_str(),
                change.reason.as_deref(),
                change.host_unreachable
            ),
            (
                "unknown",
                Some("host 'local' is unreachable: connection refused"),
                true
            )
        );
        assert!(feed.try_recv().is_err(), "one change only");
    }

    #[tokio::test]
    async fn an_idle_stop_is_one_change_with_its_reason() {
        let (_dir, store) = store().await;
        store
            .insert_agent(&sample_agent("a", "local", AgentStatus::Running))
            .await
            .expect("insert");
        let mut feed = store.subscribe_changes();
        let stopped = Observed {
            status: AgentStatus::Stopped,
            exit_code: None,
            pid: None,
            last_activity: None,
            workspace: None,
            activity: None,
            stop_reason: None,
        };
        store
            .observe_stopped_for("a", &stopped, "idle")
            .await
            .expect("stop");
        let change = feed.try_recv().expect("a change");
        assert_eq!(
            (
                change.from.as_deref(),
                change.to.as_str(),
                change.reason.as_deref()
            ),
            (Some("running"), "stopped", Some("idle"))
        );
        assert!(feed.try_recv().is_err(), "one change only");
    }
}
