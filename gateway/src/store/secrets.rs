//! Secrets: values agents get in their environment, never shown back.

use super::{Result, Store};
use crate::model::Timestamp;

/// A secret as `secret list` shows it: never its value.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SecretSummary {
    pub name: String,
    pub set_by: String,
    pub updated_at: Timestamp,
}

impl Store {
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
        .bind(Timestamp::now())
        .execute(&self.pool)
        .await?;
        Ok(existed)
    }

    /// Every secret's name, sorted, with who set it and when.
    pub async fn secrets(&self) -> Result<Vec<SecretSummary>> {
        Ok(sqlx::query_as(
            "SELECT name, created_by AS set_by, updated_at FROM secrets ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?)
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
}
