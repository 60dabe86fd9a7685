//! Operators and their credentials: roles, SSH keys and tailnet logins.

use super::{Result, Store, StoreError};
use crate::model::{Role, Timestamp};

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Operator {
    pub id: i64,
    pub name: String,
    pub role: Role,
}

/// A public key as stored: the OpenSSH line and its SHA-256 fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyRecord {
    pub operator: String,
    pub role: Role,
    pub fingerprint: String,
    pub algorithm: String,
    pub public_key: String,
    pub comment: String,
    pub created_at: Timestamp,
}

/// An operator and what they hold, for `operator list`.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct OperatorSummary {
    pub name: String,
    pub role: Role,
    pub created_at: Timestamp,
    pub keys: i64,
    pub tailscale_logins: i64,
    pub agents: i64,
    /// Whether their SSH agent may be forwarded into agents (`ssh -A`).
    pub agent_forwarding: bool,
}

/// What `remove_credentials` removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemovedCredentials {
    pub keys: u64,
    pub logins: u64,
}

/// A key to register.
pub struct NewKey<'a> {
    pub fingerprint: &'a str,
    pub algorithm: &'a str,
    pub public_key: &'a str,
    pub comment: &'a str,
}

impl Store {
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
        let now = Timestamp::now();
        let operator_id = upsert_operator(&mut tx, name, role, now).await?;
        sqlx::query(
            "INSERT INTO keys (operator_id, fingerprint, algorithm, public_key, comment, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(operator_id)
        .bind(key.fingerprint)
        .bind(key.algorithm)
        .bind(key.public_key)
        .bind(key.comment)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.key_by_fingerprint(key.fingerprint)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a key vanished right after it was added".into()))
    }

    pub async fn keys(&self) -> Result<Vec<KeyRecord>> {
        let rows = sqlx::query_as::<_, KeyRecord>(
            "SELECT o.name AS operator, o.role, k.fingerprint, k.algorithm, k.public_key, k.comment, k.created_at
             FROM keys k JOIN operators o ON o.id = k.operator_id ORDER BY o.name, k.id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    pub async fn key_by_fingerprint(&self, fingerprint: &str) -> Result<Option<KeyRecord>> {
        let row = sqlx::query_as::<_, KeyRecord>(
            "SELECT o.name AS operator, o.role, k.fingerprint, k.algorithm, k.public_key, k.comment, k.created_at
             FROM keys k JOIN operators o ON o.id = k.operator_id WHERE k.fingerprint = ?",
        )
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
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
        let now = Timestamp::now();
        let operator_id = upsert_operator(&mut tx, name, role, now).await?;
        sqlx::query(
            "INSERT INTO tailscale_logins (login, operator_id, created_at) VALUES (?, ?, ?)",
        )
        .bind(login)
        .bind(operator_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every tailnet login that may log in: (login, operator, role).
    pub async fn tailscale_logins(&self) -> Result<Vec<(String, String, Role)>> {
        Ok(sqlx::query_as(
            "SELECT t.login, o.name, o.role FROM tailscale_logins t
             JOIN operators o ON o.id = t.operator_id ORDER BY o.name, t.login",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The operator a tailnet login belongs to, if it is registered.
    pub async fn operator_by_tailscale_login(&self, login: &str) -> Result<Option<Operator>> {
        let row = sqlx::query_as::<_, Operator>(
            "SELECT o.id, o.name, o.role FROM tailscale_logins t
             JOIN operators o ON o.id = t.operator_id WHERE t.login = ?",
        )
        .bind(login)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    /// The operator who owns the key with this fingerprint, if any.
    pub async fn operator_by_fingerprint(&self, fingerprint: &str) -> Result<Option<Operator>> {
        let row = sqlx::query_as::<_, Operator>(
            "SELECT o.id, o.name, o.role FROM keys k JOIN operators o ON o.id = k.operator_id WHERE k.fingerprint = ?",
        )
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    /// The operator named `name`, if there is one.
    pub async fn operator_named(&self, name: &str) -> Result<Option<Operator>> {
        let row =
            sqlx::query_as::<_, Operator>("SELECT id, name, role FROM operators WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row)
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
        Ok(sqlx::query_as(
            "SELECT o.name, o.role, o.created_at,
                    (SELECT COUNT(*) FROM keys k WHERE k.operator_id = o.id) AS keys,
                    (SELECT COUNT(*) FROM tailscale_logins t WHERE t.operator_id = o.id)
                        AS tailscale_logins,
                    (SELECT COUNT(*) FROM agents a WHERE a.created_by = o.name) AS agents,
                    o.agent_forwarding
             FROM operators o ORDER BY o.name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Whether operator `name`'s SSH agent may be forwarded into agents (`ssh -A`); false for
    /// one that is not registered.
    pub async fn agent_forwarding_allowed(&self, name: &str) -> Result<bool> {
        let allowed: Option<bool> =
            sqlx::query_scalar("SELECT agent_forwarding FROM operators WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(allowed.unwrap_or(false))
    }

    /// Allows or forbids forwarding operator `name`'s SSH agent; false when there is no such
    /// operator.
    pub async fn set_agent_forwarding(&self, name: &str, allowed: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE operators SET agent_forwarding = ? WHERE name = ?")
            .bind(allowed)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
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
}

/// Operator `name`'s id, creating it with `role` if it is new (an existing one keeps its role).
async fn upsert_operator(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    name: &str,
    role: Role,
    now: Timestamp,
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
