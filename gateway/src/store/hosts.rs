//! Hosts: the machines agents run on, how to reach them, and what was last seen of them.

use super::{Result, Store, StoreError};
use crate::model::{HostStatus, Timestamp};

/// A host as the gateway knows it. `local` has no address, user or key.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct HostRecord {
    pub name: String,
    pub address: Option<String>,
    #[sqlx(try_from = "i64")]
    pub port: u16,
    pub user: Option<String>,
    /// The pinned host key, an OpenSSH public-key line.
    pub host_key: Option<String>,
    pub status: HostStatus,
    pub hostctl_version: Option<String>,
    /// Where hostctl is on the host (absolute).
    pub hostctl_path: Option<String>,
    /// `os/arch` as the host reports it (`linux/x86_64`).
    pub platform: Option<String>,
    pub last_contact: Option<Timestamp>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
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
            status: HostStatus::Reachable,
            hostctl_version: None,
            hostctl_path: None,
            platform: None,
            last_contact: None,
            last_error: None,
            created_at: Timestamp::now(),
            tailscale_id: None,
            tailscale_name: None,
        }
    }
}

impl Store {
    // ---- hosts --------------------------------------------------------------------------

    /// Sets a host's status with its last error (`None` clears it) and, when reachable, its
    /// last contact; true when the status changed. Of callers racing to make the same change,
    /// exactly one is told it changed; of callers racing to make different ones, the status and
    /// the error written together are those of one of them, never a mix.
    pub async fn set_host_status(
        &self,
        host: &str,
        status: HostStatus,
        error: Option<&str>,
        hostctl_version: Option<&str>,
    ) -> Result<bool> {
        let status = status.as_str();
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
        let contact = (status == HostStatus::Reachable.as_str()).then(Timestamp::now);
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
        .bind(host.status.as_str())
        .bind(&host.hostctl_version)
        .bind(&host.hostctl_path)
        .bind(&host.platform)
        .bind(host.last_contact)
        .bind(Timestamp::now())
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
        let rows = sqlx::query_as::<_, HostRecord>(&format!(
            "{HOST_COLUMNS} ORDER BY name = 'local' DESC, name"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    pub async fn host(&self, name: &str) -> Result<Option<HostRecord>> {
        let row = sqlx::query_as::<_, HostRecord>(&format!("{HOST_COLUMNS} WHERE name = ?"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row)
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
}

const HOST_COLUMNS: &str = "SELECT name, address, COALESCE(port, 22) AS port, user, host_key, status, hostctl_version,
            hostctl_path, platform, last_contact, last_error, created_at, tailscale_id, tailscale_name
            FROM hosts";
