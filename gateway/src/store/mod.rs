//! The state store: the only module that writes SQL or mentions sqlx.
//!
//! `agentgate.db` is sqlite in WAL mode, created and migrated on open (migrations are embedded
//! from `gateway/migrations/`). It holds operators and their keys, hosts, agents (what was asked
//! and the last status seen) and the audit trail. Reality is tmux on the hosts: the reconciler
//! writes what it sees here, and nothing here ever deletes a workspace.

mod audit;
mod changes;
mod notify;
mod operations;

pub use changes::{DESTROYED, FEED_CAPACITY, StatusChange};
pub use notify::{ChannelKind, ChannelUrl, NewChannel, NotifyChannel};

pub use operations::{Operation, OperationKind, Outcome, Step};

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use hostctl::api::CreateRequest;
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

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
    INTERRUPTED, INTERRUPTED_MESSAGE, LOST_KIND, MAX_KEPT, MAX_KEPT_BYTES, RETRY_EVERY, Recorded,
    STARTED, StartedEvent,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            other => Err(format!("unknown role '{other}' (use admin or operator)")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Operator {
    pub id: i64,
    pub name: String,
    pub role: Role,
}

/// A public key as stored: the OpenSSH line and its SHA-256 fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyRecord {
    pub operator: String,
    pub role: Role,
    pub fingerprint: String,
    pub algorithm: String,
    pub public_key: String,
    pub comment: String,
    pub created_at: String,
}

/// An operator and what they hold, for `operator list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OperatorSummary {
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub keys: i64,
    pub tailscale_logins: i64,
    pub agents: i64,
}

/// What `remove_credentials` removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemovedCredentials {
    pub keys: u64,
    pub logins: u64,
}

/// A secret as `secret list` shows it: never its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecretSummary {
    pub name: String,
    pub set_by: String,
    pub updated_at: String,
}

/// A key to register.
pub struct NewKey<'a> {
    pub fingerprint: &'a str,
    pub algorithm: &'a str,
    pub public_key: &'a str,
    pub comment: &'a str,
}

/// An agent's status as the gateway knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// `create` is under way on the host.
    Creating,
    Running,
    Exited,
    Stopped,
    /// Its host could not be asked.
    Unknown,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Creating => "creating",
            AgentStatus::Running => "running",
            AgentStatus::Exited => "exited",
            AgentStatus::Stopped => "stopped",
            AgentStatus::Unknown => "unknown",
        }
    }

    fn parse(s: &str) -> AgentStatus {
        match s {
            "creating" => AgentStatus::Creating,
            "running" => AgentStatus::Running,
            "exited" => AgentStatus::Exited,
            "stopped" => AgentStatus::Stopped,
            _ => AgentStatus::Unknown,
        }
    }
}

impl From<hostctl::api::HostAgentStatus> for AgentStatus {
    fn from(s: hostctl::api::HostAgentStatus) -> Self {
        match s {
            hostctl::api::HostAgentStatus::Running => AgentStatus::Running,
            hostctl::api::HostAgentStatus::Exited => AgentStatus::Exited,
            hostctl::api::HostAgentStatus::Stopped => AgentStatus::Stopped,
        }
    }
}

/// A host as the gateway knows it. `local` has no address, user or key.
#[derive(Clone, Debug, Serialize)]
pub struct HostRecord {
    pub name: String,
    pub address: Option<String>,
    pub port: u16,
    pub user: Option<String>,
    /// The pinned host key, an OpenSSH public-key line.
    pub host_key: Option<String>,
    /// `reachable` or `unreachable`.
    pub status: String,
    pub hostctl_version: Option<String>,
    /// Where hostctl is on the host (absolute).
    pub hostctl_path: Option<String>,
    /// `os/arch` as the host reports it (`linux/x86_64`).
    pub platform: Option<String>,
    pub last_contact: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    /// For a host added by tailnet name: the peer's stable node ID, and that name.
    pub tailscale_id: Option<String>,
    pub tailscale_name: Option<String>,
}

impl HostRecord {
    /// A record with nothing but a name (every other field empty or default).
    pub fn named(name: &str) -> HostRecord {
        HostRecord {
            name: name.to_owned(),
            address: None,
            port: 22,
            user: None,
            host_key: None,
            status: String::new(),
            hostctl_version: None,
            hostctl_path: None,
            platform: None,
            last_contact: None,
            last_error: None,
            created_at: String::new(),
            tailscale_id: None,
            tailscale_name: None,
        }
    }
}

/// A snapshot the gateway knows of: the archive itself is on `host`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub id: String,
    /// The agent it was taken of (which may have been destroyed since).
    pub agent: String,
    /// That agent's `created_at`: which agent of that name it was. None for a snapshot
    /// recorded before this was kept, whose agent was gone by then.
    pub agent_created_at: Option<String>,
    pub host: String,
    pub label: Option<String>,
    /// When the gateway recorded it (the gateway's clock, not the host's).
    pub created_at: String,
    /// The archive's size in bytes.
    pub size: u64,
    /// The archive's SHA-256 (hex), which a restore must match.
    pub sha256: String,
    /// The agent's owner when it was taken: with admins, the one who may remove it.
    pub owner: Option<String>,
    pub taken_by: Option<String>,
    /// The agent's settings when it was taken.
    pub spec: CreateRequest,
    pub idle_stop: Option<String>,
}

/// What [`Store::insert_snapshot`] does with a record of the same archive under the same ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameArchive {
    /// Keep it: the new record is a conflict (a snapshot taken up from its host).
    Keep,
    /// Replace it (the gateway's own record of a snapshot it just took).
    Replace,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRecord {
    pub name: String,
    pub host: String,
    pub template: String,
    pub command: String,
    pub workspace: String,
    pub spec: CreateRequest,
    pub tags: BTreeMap<String, String>,
    pub status: AgentStatus,
    pub exit_code: Option<i32>,
    pub pid: Option<u32>,
    pub last_activity: Option<String>,
    pub created_at: String,
    pub created_by: Option<String>,
    /// What it is doing while it runs, told from its screen.
    pub activity: AgentActivity,
    /// Since when its status (lifecycle and activity) is what it is (RFC 3339).
    pub status_since: Option<String>,
    /// How long it may be idle before it is stopped (`30m`), if it may not for ever.
    pub idle_stop: Option<String>,
    /// Why it was stopped, when the gateway stopped it (`idle`).
    pub stop_reason: Option<String>,
    /// The operators it is shared with (besides its creator), by name.
    pub shared_with: Vec<String>,
}

impl AgentRecord {
    /// The status an operator sees: `working`, `waiting` or `idle` for a running agent whose
    /// activity is known, its lifecycle status otherwise.
    pub fn shown_status(&self) -> &'static str {
        match (self.status, self.activity.state) {
            (AgentStatus::Running, Some(state)) => state.as_str(),
            (status, _) => status.as_str(),
        }
    }
}

/// What a running agent is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivityState {
    /// Its screen changed recently.
    Working,
    /// It waits for the operator (a prompt or a question on its screen).
    Waiting,
    /// No output and no input for the idle period.
    Idle,
}

impl ActivityState {
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityState::Working => "working",
            ActivityState::Waiting => "waiting",
            ActivityState::Idle => "idle",
        }
    }

    pub fn parse(s: &str) -> Option<ActivityState> {
        match s {
            "working" => Some(ActivityState::Working),
            "waiting" => Some(ActivityState::Waiting),
            "idle" => Some(ActivityState::Idle),
            _ => None,
        }
    }
}

/// What is known of a running agent's activity (see `crate::status`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentActivity {
    /// None: neither working, waiting nor idle (plain `running`), or not running.
    pub state: Option<ActivityState>,
    /// Why it is `waiting` (the matching rule's reason).
    pub reason: Option<String>,
    /// The last time its screen changed (RFC 3339).
    pub last_output_at: Option<String>,
    /// The last time an operator typed into it through the gateway (RFC 3339).
    pub last_input_at: Option<String>,
    /// `COLSxROWS HASH` of the screen last seen.
    pub screen: Option<String>,
    /// The last line with text on its screen.
    pub last_line: Option<String>,
    /// Why that screen would make it `waiting`, if it would.
    pub screen_waits: Option<String>,
    /// Whether that wait is a question (a dialog, a yes/no question) rather than a prompt.
    pub screen_asks: bool,
    /// What told the state: the CLI's hooks or its screen.
    pub source: Option<ActivitySource>,
}

/// What told an agent's activity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivitySource {
    /// The events its CLI reported through its hooks.
    Hook,
    /// Its screen (the rules of its template or CLI), and its output and input times.
    Screen,
}

impl ActivitySource {
    pub fn as_str(self) -> &'static str {
        match self {
            ActivitySource::Hook => "hook",
            ActivitySource::Screen => "screen",
        }
    }

    pub fn parse(s: &str) -> Option<ActivitySource> {
        match s {
            "hook" => Some(ActivitySource::Hook),
            "screen" => Some(ActivitySource::Screen),
            _ => None,
        }
    }
}

/// What a host said about an agent, to be written over the stored status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub status: AgentStatus,
    pub exit_code: Option<i32>,
    pub pid: Option<u32>,
    pub last_activity: Option<String>,
    pub workspace: Option<String>,
    /// Its activity, when it was worked out (None leaves the stored one, except that an agent
    /// that does not run has none).
    pub activity: Option<AgentActivity>,
    /// Why it does not run, when its host knows and no stop ended it (its process exited or
    /// was killed, its tmux server is gone). Taken as the stop reason, with an `agent` event,
    /// when the agent comes to this status; a stop clears the reason.
    pub stop_reason: Option<String>,
}

/// One line of the audit trail.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Its place in the trail (0 for an event not yet recorded).
    pub id: i64,
    pub at: String,
    pub operator: Option<String>,
    pub source: Option<String>,
    pub kind: String,
    pub agent: Option<String>,
    pub detail: String,
    pub result: String,
    pub message: String,
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

    // ---- operators and keys -------------------------------------------------------------

    pub async fn operator_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM operators")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Registers a key for operator `name`, creating the operator with `role` if it is new.
    /// A key that is already registered is a conflict, whoever it belongs to.
    pub async fn add_key(&self, name: &str, role: Role, key: &NewKey<'_>) -> Result<KeyRecord> {
        let mut tx = self.pool.begin().await?;
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT o.name FROM keys k JOIN operators o ON o.id = k.operator_id WHERE k.fingerprint = ?",
        )
        .bind(key.fingerprint)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(owner) = existing {
            return Err(StoreError::Conflict(format!(
                "key {} is already registered to operator '{owner}'",
                key.fingerprint
            )));
        }
        let now = now();
        let operator_id = upsert_operator(&mut tx, name, role, &now).await?;
        sqlx::query(
            "INSERT INTO keys (operator_id, fingerprint, algorithm, public_key, comment, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(operator_id)
        .bind(key.fingerprint)
        .bind(key.algorithm)
        .bind(key.public_key)
        .bind(key.comment)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.key_by_fingerprint(key.fingerprint)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a key vanished right after it was added".into()))
    }

    pub async fn keys(&self) -> Result<Vec<KeyRecord>> {
        let rows = sqlx::query(
            "SELECT o.name, o.role, k.fingerprint, k.algorithm, k.public_key, k.comment, k.created_at
             FROM keys k JOIN operators o ON o.id = k.operator_id ORDER BY o.name, k.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    pub async fn key_by_fingerprint(&self, fingerprint: &str) -> Result<Option<KeyRecord>> {
        let row = sqlx::query(
            "SELECT o.name, o.role, k.fingerprint, k.algorithm, k.public_key, k.comment, k.created_at
             FROM keys k JOIN operators o ON o.id = k.operator_id WHERE k.fingerprint = ?",
        )
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    /// Lets operator `name` (created with `role` if new) log in by tailnet identity `login`.
    /// A login already registered is a conflict, whoever it belongs to.
    pub async fn add_tailscale_login(&self, name: &str, role: Role, login: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT o.name FROM tailscale_logins t JOIN operators o ON o.id = t.operator_id
             WHERE t.login = ?",
        )
        .bind(login)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(owner) = existing {
            return Err(StoreError::Conflict(format!(
                "tailnet login {login} is already registered to operator '{owner}'"
            )));
        }
        let now = now();
        let operator_id = upsert_operator(&mut tx, name, role, &now).await?;
        sqlx::query(
            "INSERT INTO tailscale_logins (login, operator_id, created_at) VALUES (?, ?, ?)",
        )
        .bind(login)
        .bind(operator_id)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every tailnet login that may log in: (login, operator, role).
    pub async fn tailscale_logins(&self) -> Result<Vec<(String, String, Role)>> {
        let rows = sqlx::query(
            "SELECT t.login, o.name, o.role FROM tailscale_logins t
             JOIN operators o ON o.id = t.operator_id ORDER BY o.name, t.login",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("login")?,
                    r.try_get("name")?,
                    parse_role(&r.try_get::<String, _>("role")?)?,
                ))
            })
            .collect()
    }

    /// The operator a tailnet login belongs to, if it is registered.
    pub async fn operator_by_tailscale_login(&self, login: &str) -> Result<Option<Operator>> {
        let row = sqlx::query(
            "SELECT o.id, o.name, o.role FROM tailscale_logins t
             JOIN operators o ON o.id = t.operator_id WHERE t.login = ?",
        )
        .bind(login)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(operator_from_row).transpose()
    }

    /// The operator who owns the key with this fingerprint, if any.
    pub async fn operator_by_fingerprint(&self, fingerprint: &str) -> Result<Option<Operator>> {
        let row = sqlx::query(
            "SELECT o.id, o.name, o.role FROM keys k JOIN operators o ON o.id = k.operator_id WHERE k.fingerprint = ?",
        )
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(operator_from_row).transpose()
    }

    /// The operator named `name`, if there is one.
    pub async fn operator_named(&self, name: &str) -> Result<Option<Operator>> {
        let row = sqlx::query("SELECT id, name, role FROM operators WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(operator_from_row).transpose()
    }

    pub async fn operator_exists(&self, name: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM operators WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// The operator a credential names, if it is still registered: a key's fingerprint, or
    /// `tailscale:LOGIN` for a tailnet identity.
    pub async fn operator_by_credential(&self, credential: &str) -> Result<Option<Operator>> {
        match credential.strip_prefix("tailscale:") {
            Some(login) => self.operator_by_tailscale_login(login).await,
            None => self.operator_by_fingerprint(credential).await,
        }
    }

    /// Every operator, with how many keys, tailnet logins and agents each has.
    pub async fn operators(&self) -> Result<Vec<OperatorSummary>> {
        let rows = sqlx::query(
            "SELECT o.name, o.role, o.created_at,
                    (SELECT COUNT(*) FROM keys k WHERE k.operator_id = o.id) AS keys,
                    (SELECT COUNT(*) FROM tailscale_logins t WHERE t.operator_id = o.id) AS logins,
                    (SELECT COUNT(*) FROM agents a WHERE a.created_by = o.name) AS agents
             FROM operators o ORDER BY o.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OperatorSummary {
                    name: r.try_get("name")?,
                    role: parse_role(&r.try_get::<String, _>("role")?)?,
                    created_at: r.try_get("created_at")?,
                    keys: r.try_get("keys")?,
                    tailscale_logins: r.try_get("logins")?,
                    agents: r.try_get("agents")?,
                })
            })
            .collect()
    }

    /// The keys operator `name` may log in with.
    pub async fn keys_of(&self, name: &str) -> Result<Vec<KeyRecord>> {
        Ok(self
            .keys()
            .await?
            .into_iter()
            .filter(|k| k.operator == name)
            .collect())
    }

    /// Removes credentials: `what` is a key's fingerprint (one key), a tailnet login (one
    /// login), or an operator's name (every key and login of theirs; the operator stays, so
    /// their agents keep their owner). Refused when no admin could log in afterwards.
    pub async fn remove_credentials(&self, what: &str) -> Result<RemovedCredentials> {
        let mut tx = self.pool.begin().await?;
        let keys = sqlx::query(
            "DELETE FROM keys WHERE fingerprint = ?1
               OR operator_id = (SELECT id FROM operators WHERE name = ?1)",
        )
        .bind(what)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let logins = sqlx::query(
            "DELETE FROM tailscale_logins WHERE login = ?1
               OR operator_id = (SELECT id FROM operators WHERE name = ?1)",
        )
        .bind(what)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if keys + logins > 0 {
            let admins: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM operators o WHERE o.role = 'admin'
                   AND (EXISTS (SELECT 1 FROM keys k WHERE k.operator_id = o.id)
                        OR EXISTS (SELECT 1 FROM tailscale_logins t WHERE t.operator_id = o.id))",
            )
            .fetch_one(&mut *tx)
            .await?;
            if admins == 0 {
                return Err(StoreError::Conflict(
                    "that would leave no admin able to log in".into(),
                ));
            }
        }
        tx.commit().await?;
        Ok(RemovedCredentials { keys, logins })
    }

    // ---- shares ------------------------------------------------------------------------

    /// Lets `operator` see and use agent `agent`. Sharing twice is not an error.
    pub async fn share(&self, agent: &str, operator: &str, by: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO agent_shares (agent, operator, shared_by, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (agent, operator) DO NOTHING",
        )
        .bind(agent)
        .bind(operator)
        .bind(by)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes back a share; false if there was none.
    pub async fn unshare(&self, agent: &str, operator: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM agent_shares WHERE agent = ? AND operator = ?")
            .bind(agent)
            .bind(operator)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The operators agent `agent` is shared with, by name.
    pub async fn shares(&self, agent: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT operator FROM agent_shares WHERE agent = ? ORDER BY operator",
        )
        .bind(agent)
        .fetch_all(&self.pool)
        .await?)
    }

    // ---- secrets ------------------------------------------------------------------------

    /// Stores (or replaces) secret `name`.
    pub async fn set_secret(&self, name: &str, value: &[u8], by: &str) -> Result<bool> {
        let existed = self.secret_names().await?.iter().any(|n| n == name);
        sqlx::query(
            "INSERT INTO secrets (name, value, created_by, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET value = ?2, created_by = ?3, updated_at = ?4",
        )
        .bind(name)
        .bind(value)
        .bind(by)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(existed)
    }

    /// Every secret's name, sorted, with who set it and when.
    pub async fn secrets(&self) -> Result<Vec<SecretSummary>> {
        let rows = sqlx::query("SELECT name, created_by, updated_at FROM secrets ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SecretSummary {
                    name: r.try_get("name")?,
                    set_by: r.try_get("created_by")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn secret_names(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT name FROM secrets")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Secret `name`'s value, if it is set.
    pub async fn secret_value(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM secrets WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn remove_secret(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM secrets WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    // ---- agents -------------------------------------------------------------------------

    /// Inserts a new agent in state `creating`; a taken name is a conflict.
    pub async fn insert_agent(&self, agent: &AgentRecord) -> Result<()> {
        let spec = serde_json::to_string(&agent.spec)
            .map_err(|e| StoreError::Corrupt(format!("encoding agent spec: {e}")))?;
        let tags = serde_json::to_string(&agent.tags)
            .map_err(|e| StoreError::Corrupt(format!("encoding tags: {e}")))?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let result = sqlx::query(
            "INSERT INTO agents (name, host, template, command, workspace, spec, tags, status, exit_code, pid,
                                 last_activity, created_at, created_by, updated_at, status_since,
                                 idle_stop)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?14, ?15)",
        )
        .bind(&agent.name)
        .bind(&agent.host)
        .bind(&agent.template)
        .bind(&agent.command)
        .bind(&agent.workspace)
        .bind(spec)
        .bind(tags)
        .bind(agent.status.as_str())
        .bind(agent.exit_code)
        .bind(agent.pid.map(i64::from))
        .bind(&agent.last_activity)
        .bind(&agent.created_at)
        .bind(&agent.created_by)
        .bind(now())
        .bind(&agent.idle_stop)
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {
                // A new agent is news too: from nothing to `creating`, or to what an adopted
                // agent is.
                let at = time::OffsetDateTime::now_utc();
                let after = changes::shown_row(&mut tx, &agent.name).await?;
                let news = changes::between(None, after.as_ref(), at)?;
                tx.commit().await?;
                self.feed.publish(news.into_iter().collect());
                Ok(())
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict(
                format!("an agent named '{}' already exists", agent.name),
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn agent(&self, name: &str) -> Result<Option<AgentRecord>> {
        let row = sqlx::query(&format!("{AGENT_SELECT} WHERE name = ?"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    pub async fn agent_exists(&self, name: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    pub async fn agents(&self) -> Result<Vec<AgentRecord>> {
        let rows = sqlx::query(&format!("{AGENT_SELECT} ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(agent_from_row).collect()
    }

    pub async fn agents_on_host(&self, host: &str) -> Result<Vec<AgentRecord>> {
        let rows = sqlx::query(&format!("{AGENT_SELECT} WHERE host = ? ORDER BY name"))
            .bind(host)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(agent_from_row).collect()
    }

    /// Writes what a host said about an agent.
    pub async fn observe_agent(&self, name: &str, seen: &Observed) -> Result<()> {
        self.observe_agents(&[(name, seen)]).await.map(|_| ())
    }

    /// Writes what a host said about its agents, in one transaction; a row that already says
    /// the same is not written (a reconciler pass over agents that did not change writes
    /// nothing). Returns how many rows changed.
    pub async fn observe_agents(&self, seen: &[(&str, &Observed)]) -> Result<u64> {
        self.observe_then(seen, None).await
    }

    /// Writes a stop the gateway made for a reason of its own (`idle`): the stopped status
    /// and the reason in one transaction, so the change is published once, with its reason.
    pub async fn observe_stopped_for(
        &self,
        name: &str,
        seen: &Observed,
        reason: &str,
    ) -> Result<()> {
        self.observe_then(&[(name, seen)], Some(reason))
            .await
            .map(|_| ())
    }

    /// [`Store::observe_agents`], then the stop reason `stopped_for` on those now stopped; the
    /// changes of shown status are published after the commit (see `changes`).
    async fn observe_then(
        &self,
        seen: &[(&str, &Observed)],
        stopped_for: Option<&str>,
    ) -> Result<u64> {
        // IMMEDIATE: the write lock from the start, so that the rows read before the writes are
        // the ones they change (a deferred read would also make the first write fail with
        // SQLITE_BUSY, unretried, after another writer's commit).
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut changed = 0;
        let at = time::OffsetDateTime::now_utc();
        let now = format_time(at);
        let names: Vec<&str> = seen.iter().map(|(name, _)| *name).collect();
        let before = changes::shown_rows_named(&mut tx, &names).await?;
        for (name, seen) in seen {
            // An end no stop explains is news once: when the agent comes to this status (or,
            // exited, to another exit code), not when a host that was unreachable tells it
            // again. The event is written first, in the same transaction as the status: that
            // first write takes the database's write lock, so the row it reads is the one the
            // update below changes, whichever caller (the reconciler, `info`, `wait`) sees
            // the end first.
            if let Some(reason) = &seen.stop_reason {
                sqlx::query(
                    "INSERT INTO events (at, kind, agent, detail, result, message)
                     SELECT ?1, 'agent', name, ?2, ?3, ?2 FROM agents
                      WHERE name = ?4
                        AND (status IS NOT ?3 OR (?3 = 'exited' AND exit_code IS NOT ?5))
                        AND NOT (status = 'unknown' AND stop_reason IS ?2)",
                )
                .bind(&now)
                .bind(reason)
                .bind(seen.status.as_str())
                .bind(name)
                .bind(seen.exit_code)
                .execute(&mut *tx)
                .await?;
            }
            // ?8: whether the activity was worked out. Without it the stored one stays while
            // the agent keeps its status; a new status (a start, a stop) clears what its old
            // screen told, so the next look starts afresh. The right-hand sides read the row
            // as it was.
            let activity = seen.activity.clone().unwrap_or_default();
            changed += sqlx::query(
                "UPDATE agents SET status = ?1, exit_code = ?2, pid = ?3,
                        last_activity = COALESCE(?4, last_activity),
                        workspace = COALESCE(?5, workspace), updated_at = ?6,
                        activity = CASE WHEN ?1 != 'running' THEN NULL
                                        WHEN ?8 THEN ?9
                                        WHEN status IS NOT ?1 THEN NULL ELSE activity END,
                        activity_reason = CASE WHEN ?1 != 'running' THEN NULL
                                               WHEN ?8 THEN ?10
                                               WHEN status IS NOT ?1 THEN NULL
                                               ELSE activity_reason END,
                        last_output_at = CASE WHEN ?8 THEN ?11 ELSE last_output_at END,
                        last_input_at = CASE WHEN ?8 THEN ?12 ELSE last_input_at END,
                        screen = CASE WHEN ?8 THEN ?13 WHEN status IS NOT ?1 THEN NULL
                                      ELSE screen END,
                        last_line = CASE WHEN ?8 THEN ?14 ELSE last_line END,
                        screen_waits = CASE WHEN ?8 THEN ?15 WHEN status IS NOT ?1 THEN NULL
                                            ELSE screen_waits END,
                        screen_asks = CASE WHEN ?8 THEN ?18 WHEN status IS NOT ?1 THEN NULL
                                           ELSE screen_asks END,
                        activity_source = CASE WHEN ?1 != 'running' THEN NULL
                                               WHEN ?8 THEN ?17
                                               WHEN status IS NOT ?1 THEN NULL
                                               ELSE activity_source END,
                        stop_reason = CASE WHEN ?1 IN ('running', 'creating') THEN NULL
                                           WHEN ?16 IS NOT NULL AND (status IS NOT ?1 OR
                                                (?1 = 'exited' AND exit_code IS NOT ?2))
                                           THEN ?16
                                           WHEN status IS NOT ?1 AND status != 'unknown'
                                                AND ?1 != 'unknown' THEN NULL
                                           ELSE stop_reason END,
                        status_since = CASE
                            WHEN status IS NOT ?1 OR (CASE WHEN ?1 != 'running' THEN NULL
                                    WHEN ?8 THEN ?9 WHEN status IS NOT ?1 THEN NULL
                                    ELSE activity END) IS NOT activity
                            THEN ?6 ELSE status_since END
                 WHERE name = ?7
                   AND (status IS NOT ?1 OR exit_code IS NOT ?2 OR pid IS NOT ?3
                        OR (?4 IS NOT NULL AND last_activity IS NOT ?4)
                        OR (?5 IS NOT NULL AND workspace IS NOT ?5)
                        OR (?1 != 'running' AND activity IS NOT NULL)
                        OR (?8 AND (activity IS NOT ?9 OR activity_reason IS NOT ?10
                                    OR last_output_at IS NOT ?11 OR last_input_at IS NOT ?12
                                    OR screen IS NOT ?13 OR last_line IS NOT ?14
                                    OR screen_waits IS NOT ?15 OR activity_source IS NOT ?17
                                    OR screen_asks IS NOT ?18)))",
            )
            .bind(seen.status.as_str())
            .bind(seen.exit_code)
            .bind(seen.pid.map(i64::from))
            .bind(&seen.last_activity)
            .bind(&seen.workspace)
            .bind(&now)
            .bind(name)
            .bind(seen.activity.is_some())
            .bind(activity.state.map(ActivityState::as_str))
            .bind(&activity.reason)
            .bind(&activity.last_output_at)
            .bind(&activity.last_input_at)
            .bind(&activity.screen)
            .bind(&activity.last_line)
            .bind(&activity.screen_waits)
            .bind(&seen.stop_reason)
            .bind(activity.source.map(ActivitySource::as_str))
            .bind(activity.screen_asks)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        if let Some(reason) = stopped_for {
            for name in &names {
                changed += sqlx::query(
                    "UPDATE agents SET stop_reason = ? WHERE name = ? AND status = 'stopped'",
                )
                .bind(reason)
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
        }
        let mut news = Vec::new();
        if changed > 0 {
            let after = changes::shown_rows_named(&mut tx, &names).await?;
            let mut done = std::collections::HashSet::new();
            for name in names.iter().filter(|n| done.insert(**n)) {
                news.extend(changes::between(before.get(*name), after.get(*name), at)?);
            }
        }
        tx.commit().await?;
        self.feed.publish(news);
        Ok(changed)
    }

    /// Replaces an agent's tags (and those in its stored spec).
    pub async fn set_tags(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<()> {
        let text = serde_json::to_string(tags)
            .map_err(|e| StoreError::Corrupt(format!("encoding tags: {e}")))?;
        sqlx::query(
            "UPDATE agents SET tags = ?1, spec = json_set(spec, '$.tags', json(?1)), updated_at = ?2
             WHERE name = ?3",
        )
        .bind(text)
        .bind(now())
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records why the gateway stopped an agent (after its stopped status was observed).
    pub async fn set_stop_reason(&self, name: &str, reason: &str) -> Result<()> {
        sqlx::query("UPDATE agents SET stop_reason = ? WHERE name = ? AND status = 'stopped'")
            .bind(reason)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks every settled agent of a host `unknown` (the host could not be asked).
    pub async fn mark_host_agents_unknown(&self, host: &str) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let at = time::OffsetDateTime::now_utc();
        let before = changes::shown_rows_of_host(&mut tx, host).await?;
        // What the screen told goes with the status, as in `observe_agents`.
        let written = sqlx::query(
            "UPDATE agents SET pid = NULL, updated_at = ?1,
                    status_since = CASE WHEN status != 'unknown' THEN ?1 ELSE status_since END,
                    status = 'unknown', activity = NULL, activity_reason = NULL, screen = NULL,
                    screen_waits = NULL, screen_asks = NULL, activity_source = NULL
             WHERE host = ?2 AND status != 'creating' AND (status != 'unknown' OR pid IS NOT NULL)",
        )
        .bind(format_time(at))
        .bind(host)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let mut news = Vec::new();
        if written > 0 {
            for after in changes::shown_rows_of_host(&mut tx, host).await? {
                let was = before.iter().find(|b| b.agent() == after.agent());
                news.extend(changes::between(was, Some(&after), at)?);
            }
        }
        tx.commit().await?;
        self.feed.publish(news);
        Ok(())
    }

    /// Moves an agent's row to another host (a finished migration).
    pub async fn set_agent_host(&self, name: &str, host: &str) -> Result<()> {
        sqlx::query("UPDATE agents SET host = ?, updated_at = ? WHERE name = ?")
            .bind(host)
            .bind(now())
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_agent(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let at = time::OffsetDateTime::now_utc();
        let before = changes::shown_row(&mut tx, name).await?;
        let done = sqlx::query("DELETE FROM agents WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let news = changes::between(before.as_ref(), None, at)?;
        tx.commit().await?;
        self.feed.publish(news.into_iter().collect());
        Ok(done.rows_affected() > 0)
    }

    // ---- hosts --------------------------------------------------------------------------

    /// Sets a host's status with its last error (`None` clears it) and, when reachable, its
    /// last contact; true when the status changed. Of callers racing to make the same change,
    /// exactly one is told it changed; of callers racing to make different ones, the status and
    /// the error written together are those of one of them, never a mix.
    pub async fn set_host_status(
        &self,
        host: &str,
        status: &str,
        error: Option<&str>,
        hostctl_version: Option<&str>,
    ) -> Result<bool> {
        let changed = sqlx::query(
            "UPDATE hosts SET status = ?1, last_error = ?2 WHERE name = ?3 AND status != ?1",
        )
        .bind(status)
        .bind(error)
        .bind(host)
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0;
        let contact = (status == "reachable").then(now);
        // The error follows only while the status is still this caller's.
        sqlx::query(
            "UPDATE hosts SET last_error = CASE WHEN status = ?1 THEN ?2 ELSE last_error END,
                    hostctl_version = COALESCE(?3, hostctl_version),
                    last_contact = COALESCE(?4, last_contact) WHERE name = ?5",
        )
        .bind(status)
        .bind(error)
        .bind(hostctl_version)
        .bind(contact)
        .bind(host)
        .execute(&self.pool)
        .await?;
        Ok(changed)
    }

    /// A tailnet host's new address (its peer's tailnet address changed).
    pub async fn set_host_address(&self, host: &str, address: &str) -> Result<()> {
        sqlx::query("UPDATE hosts SET address = ? WHERE name = ?")
            .bind(address)
            .bind(host)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records the outcome of contacting a host: `None` clears the last error.
    pub async fn set_host_error(&self, host: &str, error: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE hosts SET last_error = ? WHERE name = ?")
            .bind(error)
            .bind(host)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn insert_host(&self, host: &HostRecord) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO hosts (name, address, port, user, host_key, status, hostctl_version,
                                hostctl_path, platform, last_contact, created_at,
                                tailscale_id, tailscale_name)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&host.name)
        .bind(&host.address)
        .bind(i64::from(host.port))
        .bind(&host.user)
        .bind(&host.host_key)
        .bind(&host.status)
        .bind(&host.hostctl_version)
        .bind(&host.hostctl_path)
        .bind(&host.platform)
        .bind(&host.last_contact)
        .bind(now())
        .bind(&host.tailscale_id)
        .bind(&host.tailscale_name)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "a host named '{}' already exists",
                host.name
            )));
        }
        Ok(())
    }

    /// Updates what the gateway knows of a host's hostctl (after an install or upgrade).
    pub async fn set_host_hostctl(
        &self,
        host: &str,
        path: &str,
        version: &str,
        platform: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE hosts SET hostctl_path = ?, hostctl_version = ?, platform = ? WHERE name = ?",
        )
        .bind(path)
        .bind(version)
        .bind(platform)
        .bind(host)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn hosts(&self) -> Result<Vec<HostRecord>> {
        let rows = sqlx::query(&format!(
            "{HOST_COLUMNS} ORDER BY name = 'local' DESC, name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(host_from_row).collect()
    }

    pub async fn host(&self, name: &str) -> Result<Option<HostRecord>> {
        let row = sqlx::query(&format!("{HOST_COLUMNS} WHERE name = ?"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(host_from_row).transpose()
    }

    /// Forgets a host and the agents the gateway knew on it (nothing on the host is touched).
    /// Returns how many agents were forgotten.
    pub async fn delete_host(&self, name: &str) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let agents = sqlx::query("DELETE FROM agents WHERE host = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM hosts WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(agents)
    }

    // ---- snapshots ----------------------------------------------------------------------

    /// Records a snapshot; a taken ID is a conflict. With [`SameArchive::Replace`], a record of
    /// the very same archive (same host, size and SHA-256: one taken up from the host while the
    /// snapshot was being recorded) gives way to this one.
    pub async fn insert_snapshot(
        &self,
        snapshot: &SnapshotRecord,
        same: SameArchive,
    ) -> Result<()> {
        let spec = serde_json::to_string(&snapshot.spec)
            .map_err(|e| StoreError::Corrupt(format!("encoding snapshot spec: {e}")))?;
        let on_conflict = match same {
            SameArchive::Keep => "",
            SameArchive::Replace => {
                "ON CONFLICT (id) DO UPDATE SET agent = excluded.agent,
                    agent_created_at = excluded.agent_created_at, label = excluded.label,
                    created_at = excluded.created_at, owner = excluded.owner,
                    taken_by = excluded.taken_by, spec = excluded.spec,
                    idle_stop = excluded.idle_stop
                 WHERE snapshots.host = excluded.host AND snapshots.size = excluded.size
                   AND snapshots.sha256 = excluded.sha256"
            }
        };
        let result = sqlx::query(&format!(
            "INSERT INTO snapshots (id, agent, agent_created_at, host, label, created_at, size,
                                    sha256, owner, taken_by, spec, idle_stop)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) {on_conflict}"
        ))
        .bind(&snapshot.id)
        .bind(&snapshot.agent)
        .bind(&snapshot.agent_created_at)
        .bind(&snapshot.host)
        .bind(&snapshot.label)
        .bind(&snapshot.created_at)
        .bind(i64::try_from(snapshot.size).unwrap_or(i64::MAX))
        .bind(&snapshot.sha256)
        .bind(&snapshot.owner)
        .bind(&snapshot.taken_by)
        .bind(spec)
        .bind(&snapshot.idle_stop)
        .execute(&self.pool)
        .await;
        let conflict =
            || StoreError::Conflict(format!("a snapshot '{}' already exists", snapshot.id));
        match result {
            Ok(done) if done.rows_affected() > 0 => Ok(()),
            // The upsert's condition did not hold: another archive has this ID.
            Ok(_) => Err(conflict()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(conflict()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a snapshot has this ID.
    pub async fn snapshot_exists(&self, id: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM snapshots WHERE id = ?")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// Snapshot `id` (who may see it: `agents::access`).
    pub async fn snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>> {
        let row = sqlx::query(&format!("{SNAPSHOT_SELECT} WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(snapshot_from_row).transpose()
    }

    /// Every snapshot (of agent `of` only, if given), oldest first.
    pub async fn snapshots(&self, of: Option<&str>) -> Result<Vec<SnapshotRecord>> {
        let rows = sqlx::query(&format!(
            "{SNAPSHOT_SELECT} WHERE (?1 IS NULL OR agent = ?1) ORDER BY created_at, id"
        ))
        .bind(of)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(snapshot_from_row).collect()
    }

    /// Forgets a snapshot; false if there was none.
    pub async fn delete_snapshot(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM snapshots WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    // ---- events -------------------------------------------------------------------------

    /// Deletes the events recorded before `before` (RFC 3339); returns how many.
    pub async fn prune_events(&self, before: &str) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM events WHERE at < ?")
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
        let rows = sqlx::query(
            "SELECT * FROM (SELECT id, at, operator, source, kind, agent, detail, result, message FROM events
               WHERE (?1 IS NULL OR agent = ?1) AND (?2 IS NULL OR operator = ?2)
                 AND (?3 IS NULL OR at >= ?3) AND id > ?4
                 AND (?6 IS NULL OR operator = ?6 OR agent IN (SELECT value FROM json_each(?7)))
               ORDER BY id DESC LIMIT ?5) ORDER BY id",
        )
        .bind(&filter.agent)
        .bind(&filter.operator)
        .bind(&filter.since)
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
        rows.iter().map(event_of_row).collect()
    }
}

/// An `events` row read whole.
fn event_of_row(r: &sqlx::sqlite::SqliteRow) -> Result<Event> {
    Ok(Event {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        operator: r.try_get("operator")?,
        source: r.try_get("source")?,
        kind: r.try_get("kind")?,
        agent: r.try_get("agent")?,
        detail: r.try_get("detail")?,
        result: r.try_get("result")?,
        message: r.try_get("message")?,
    })
}

/// Which events to read.
#[derive(Clone, Debug)]
pub struct EventFilter {
    pub agent: Option<String>,
    pub operator: Option<String>,
    /// RFC 3339: events at or after this time.
    pub since: Option<String>,
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

const AGENT_SELECT: &str =
    "SELECT name, host, template, command, workspace, spec, tags, status, exit_code, pid,
    last_activity, created_at, created_by, activity, activity_reason, status_since,
    last_output_at, last_input_at, screen, last_line, idle_stop, stop_reason, screen_waits,
    screen_asks, activity_source,
    (SELECT json_group_array(operator) FROM
        (SELECT operator FROM agent_shares s WHERE s.agent = agents.name ORDER BY operator))
        AS shared_with
    FROM agents";

const SNAPSHOT_SELECT: &str =
    "SELECT id, agent, agent_created_at, host, label, created_at, size, sha256, owner,
            taken_by, spec, idle_stop FROM snapshots";

const HOST_COLUMNS: &str = "SELECT name, address, port, user, host_key, status, hostctl_version,
            hostctl_path, platform, last_contact, last_error, created_at, tailscale_id, tailscale_name
            FROM hosts";

/// Operator `name`'s id, creating it with `role` if it is new (an existing one keeps its role).
async fn upsert_operator(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    name: &str,
    role: Role,
    now: &str,
) -> Result<i64> {
    sqlx::query("INSERT INTO operators (name, role, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(
        sqlx::query_scalar("SELECT id FROM operators WHERE name = ?")
            .bind(name)
            .fetch_one(&mut **tx)
            .await?,
    )
}

fn operator_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Operator> {
    Ok(Operator {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: parse_role(&r.try_get::<String, _>("role")?)?,
    })
}

fn host_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<HostRecord> {
    let port: Option<i64> = r.try_get("port")?;
    Ok(HostRecord {
        name: r.try_get("name")?,
        address: r.try_get("address")?,
        port: port.and_then(|p| u16::try_from(p).ok()).unwrap_or(22),
        user: r.try_get("user")?,
        host_key: r.try_get("host_key")?,
        status: r.try_get("status")?,
        hostctl_version: r.try_get("hostctl_version")?,
        hostctl_path: r.try_get("hostctl_path")?,
        platform: r.try_get("platform")?,
        last_contact: r.try_get("last_contact")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        tailscale_id: r.try_get("tailscale_id")?,
        tailscale_name: r.try_get("tailscale_name")?,
    })
}

fn agent_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<AgentRecord> {
    let spec: String = r.try_get("spec")?;
    let tags: String = r.try_get("tags")?;
    let name: String = r.try_get("name")?;
    let shared_with = serde_json::from_str(&r.try_get::<String, _>("shared_with")?)
        .map_err(|e| StoreError::Corrupt(format!("shares of agent '{name}': {e}")))?;
    Ok(AgentRecord {
        spec: serde_json::from_str(&spec)
            .map_err(|e| StoreError::Corrupt(format!("spec of agent '{name}': {e}")))?,
        tags: serde_json::from_str(&tags)
            .map_err(|e| StoreError::Corrupt(format!("tags of agent '{name}': {e}")))?,
        name,
        host: r.try_get("host")?,
        template: r.try_get("template")?,
        command: r.try_get("command")?,
        workspace: r.try_get("workspace")?,
        status: AgentStatus::parse(&r.try_get::<String, _>("status")?),
        exit_code: r.try_get("exit_code")?,
        pid: r
            .try_get::<Option<i64>, _>("pid")?
            .and_then(|p| u32::try_from(p).ok()),
        last_activity: r.try_get("last_activity")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        activity: AgentActivity {
            state: r
                .try_get::<Option<String>, _>("activity")?
                .as_deref()
                .and_then(ActivityState::parse),
            reason: r.try_get("activity_reason")?,
            last_output_at: r.try_get("last_output_at")?,
            last_input_at: r.try_get("last_input_at")?,
            screen: r.try_get("screen")?,
            last_line: r.try_get("last_line")?,
            screen_waits: r.try_get("screen_waits")?,
            screen_asks: r
                .try_get::<Option<bool>, _>("screen_asks")?
                .unwrap_or(false),
            source: r
                .try_get::<Option<String>, _>("activity_source")?
                .as_deref()
                .and_then(ActivitySource::parse),
        },
        status_since: r.try_get("status_since")?,
        idle_stop: r.try_get("idle_stop")?,
        stop_reason: r.try_get("stop_reason")?,
        shared_with,
    })
}

fn snapshot_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<SnapshotRecord> {
    let id: String = r.try_get("id")?;
    let spec: String = r.try_get("spec")?;
    Ok(SnapshotRecord {
        spec: serde_json::from_str(&spec)
            .map_err(|e| StoreError::Corrupt(format!("spec of snapshot '{id}': {e}")))?,
        id,
        agent: r.try_get("agent")?,
        agent_created_at: r.try_get("agent_created_at")?,
        host: r.try_get("host")?,
        label: r.try_get("label")?,
        created_at: r.try_get("created_at")?,
        size: u64::try_from(r.try_get::<i64, _>("size")?).unwrap_or(0),
        sha256: r.try_get("sha256")?,
        owner: r.try_get("owner")?,
        taken_by: r.try_get("taken_by")?,
        idle_stop: r.try_get("idle_stop")?,
    })
}

fn key_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<KeyRecord> {
    Ok(KeyRecord {
        operator: r.try_get("name")?,
        role: parse_role(&r.try_get::<String, _>("role")?)?,
        fingerprint: r.try_get("fingerprint")?,
        algorithm: r.try_get("algorithm")?,
        public_key: r.try_get("public_key")?,
        comment: r.try_get("comment")?,
        created_at: r.try_get("created_at")?,
    })
}

fn parse_role(s: &str) -> Result<Role> {
    s.parse().map_err(StoreError::Corrupt)
}

pub fn now() -> String {
    format_time(time::OffsetDateTime::now_utc())
}

/// A time as the store keeps it: RFC 3339, in UTC.
pub fn format_time(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Reads a time the store wrote ([`format_time`]).
pub fn parse_time(text: &str) -> std::result::Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("'{text}' is not an RFC 3339 time: {e}"))
}

/// An agent record for tests: a login shell on `host`, in `status`, made by no one.
#[cfg(test)]
pub(crate) fn sample_agent(name: &str, host: &str, status: AgentStatus) -> AgentRecord {
    AgentRecord {
        name: name.into(),
        host: host.into(),
        template: "shell".into(),
        command: String::new(),
        workspace: String::new(),
        spec: CreateRequest {
            name: name.into(),
            template: "shell".into(),
            command: hostctl::api::AgentCommand::LoginShell,
            restart_command: None,
            workspace: hostctl::api::WorkspaceSource::Empty,
            env: BTreeMap::new(),
            tags: BTreeMap::new(),
            prompt: None,
            size: None,
            created_by: None,
            secret_names: Vec::new(),
            cli: None,
        },
        tags: BTreeMap::new(),
        status,
        exit_code: None,
        pid: None,
        last_activity: None,
        created_at: now(),
        created_by: None,
        activity: AgentActivity::default(),
        status_since: None,
        idle_stop: None,
        stop_reason: None,
        shared_with: Vec::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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
        host.status = "reachable".into();
        store.insert_host(&host).await.expect("insert");
        let record = |s: &Store| {
            let s = s.clone();
            async move {
                let h = s.host("h").await.expect("q").expect("host");
                (h.status, h.last_error)
            }
        };
        let down = store.set_host_status("h", "unreachable", Some("gone"), None);
        assert!(
            down.await.expect("set"),
            "the first change is told it changed"
        );
        let again = store.set_host_status("h", "unreachable", Some("still gone"), None);
        assert!(!again.await.expect("set"), "a repeat is not a change");
        assert_eq!(
            record(&store).await,
            ("unreachable".into(), Some("still gone".into()))
        );
        let up = store.set_host_status("h", "reachable", None, Some("9.9"));
        assert!(up.await.expect("set"));
        assert_eq!(record(&store).await, ("reachable".into(), None));
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
            agent_created_at: Some(agent.created_at.clone()),
            host: "h1".into(),
            label: Some("before".into()),
            created_at: now(),
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
            last_output_at: Some("2026-01-01T00:00:00Z".into()),
            last_input_at: Some("2026-01-01T00:00:01Z".into()),
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
        let since = back.status_since.clone().expect("a since");
        // The same status again, without activity: nothing changes, since stays.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        store
            .observe_agent("a", &seen(AgentStatus::Running, None))
            .await
            .expect("observe");
        let back = get(&store).await;
        assert_eq!(
            (back.activity.clone(), back.status_since.clone()),
            (waiting.clone(), Some(since.clone()))
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
                .filter(|e| e.kind == "agent")
                .map(|e| (e.result, e.detail))
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

    #[tokio::test]
    async fn events_are_kept_in_order() {
        let (_d, store) = store().await;
        for i in 0..5 {
            store
                .record_event(&Event {
                    kind: "command".into(),
                    detail: format!("list {i}"),
                    result: "ok".into(),
                    agent: (i % 2 == 0).then(|| "a".to_owned()),
                    ..Event::default()
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
            .set_host_status("local", "unreachable", Some("connection refused"), None)
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
