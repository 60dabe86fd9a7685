//! Snapshots: archives of agents' workspaces kept on their hosts, and who took them.

use hostctl::api::CreateRequest;

use super::{Result, Store, StoreError};
use crate::model::Timestamp;

/// A snapshot the gateway knows of: the archive itself is on `host`.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SnapshotRecord {
    pub id: String,
    /// The agent it was taken of (which may have been destroyed since).
    pub agent: String,
    /// That agent's `created_at`: which agent of that name it was. None for a snapshot
    /// recorded before this was kept, whose agent was gone by then.
    pub agent_created_at: Option<Timestamp>,
    pub host: String,
    pub label: Option<String>,
    /// When the gateway recorded it (the gateway's clock, not the host's).
    pub created_at: Timestamp,
    /// The archive's size in bytes.
    #[sqlx(try_from = "i64")]
    pub size: u64,
    /// The archive's SHA-256 (hex), which a restore must match.
    pub sha256: String,
    /// The agent's owner when it was taken: with admins, the one who may remove it.
    pub owner: Option<String>,
    pub taken_by: Option<String>,
    /// The agent's settings when it was taken.
    #[sqlx(try_from = "super::columns::Json<CreateRequest>")]
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

impl Store {
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
        .bind(snapshot.agent_created_at)
        .bind(&snapshot.host)
        .bind(&snapshot.label)
        .bind(snapshot.created_at)
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
        let row = sqlx::query_as::<_, SnapshotRecord>(&format!("{SNAPSHOT_SELECT} WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row)
    }

    /// Every snapshot (of agent `of` only, if given), oldest first.
    pub async fn snapshots(&self, of: Option<&str>) -> Result<Vec<SnapshotRecord>> {
        let rows = sqlx::query_as::<_, SnapshotRecord>(&format!(
            "{SNAPSHOT_SELECT} WHERE (?1 IS NULL OR agent = ?1) ORDER BY created_at, id"
        ))
        .bind(of)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Forgets a snapshot; false if there was none.
    pub async fn delete_snapshot(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM snapshots WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

const SNAPSHOT_SELECT: &str =
    "SELECT id, agent, agent_created_at, host, label, created_at, size, sha256, owner,
            taken_by, spec, idle_stop FROM snapshots";
