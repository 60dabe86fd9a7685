//! The operations journal (table `operations`): a change of an agent's life that takes more
//! than one step is written before its first step, its step after each, and its end after the
//! last. The decisions (what to do with one that has no end) live in `crate::agents::journal`;
//! this file only reads and writes rows.

use super::{Result, Store};
use crate::model::{OperationKind, Outcome, Step, Timestamp};

/// One row of the journal.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Operation {
    pub id: String,
    pub kind: OperationKind,
    /// The agent it makes, moves or removes.
    pub agent: String,
    /// The host the agent comes from (migrate; clone: the source's host).
    pub from_host: Option<String>,
    /// The host it works on: the new agent's (create, clone, restore), the target (migrate),
    /// the agent's (destroy).
    pub host: String,
    /// The source agent of a clone, the snapshot of a restore.
    pub source: Option<String>,
    /// migrate: whether the agent ran before the move (it runs after, whatever happens).
    pub was_running: bool,
    pub step: Step,
    pub operator: Option<String>,
    /// The gateway run that began it.
    pub run: String,
    pub started_at: Timestamp,
}

impl Store {
    /// Writes an operation before its first step.
    pub async fn begin_operation(&self, op: &Operation) -> Result<()> {
        sqlx::query(
            "INSERT INTO operations (id, kind, agent, from_host, host, source, was_running, step, operator, run, started_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&op.id)
        .bind(op.kind.as_str())
        .bind(&op.agent)
        .bind(&op.from_host)
        .bind(&op.host)
        .bind(&op.source)
        .bind(op.was_running)
        .bind(op.step.as_str())
        .bind(&op.operator)
        .bind(&op.run)
        .bind(op.started_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that an operation has done `step`.
    pub async fn operation_step(&self, id: &str, step: Step) -> Result<()> {
        sqlx::query("UPDATE operations SET step = ? WHERE id = ?")
            .bind(step.as_str())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records how an operation ended.
    pub async fn end_operation(&self, id: &str, outcome: Outcome, message: &str) -> Result<()> {
        sqlx::query(
            "UPDATE operations SET ended_at = ?, outcome = ?, message = ? WHERE id = ? AND ended_at IS NULL",
        )
        .bind(Timestamp::now())
        .bind(outcome.as_str())
        .bind(message)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The operations with no end that a run other than `run` began (cut short by its death),
    /// oldest first.
    pub async fn open_operations_of_other_runs(&self, run: &str) -> Result<Vec<Operation>> {
        let rows = sqlx::query_as::<_, Operation>(
            "SELECT id, kind, agent, from_host, host, source, was_running, step, operator, run, started_at
             FROM operations WHERE ended_at IS NULL AND run != ? ORDER BY rowid",
        )
        .bind(run)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Whether an operation on the same agent began after operation `id` (in this run or
    /// another): what `id` left is then no longer the agent's last word.
    pub async fn operation_superseded(&self, id: &str) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM operations later, operations op
               WHERE op.id = ?1 AND later.agent = op.agent AND later.rowid > op.rowid)",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Whether an operation on agent `agent` was under way at `since` or after: one with no
    /// end, or one that ended at `since` or later. A host's report asked for at `since` may
    /// then show the agent as it was before or during the operation (a destroy that ended
    /// after the host was asked still shows the agent there).
    pub async fn operation_since(&self, agent: &str, since: Timestamp) -> Result<bool> {
        Ok(sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM operations
               WHERE agent = ?1 AND (ended_at IS NULL OR NOT {}))",
            super::before_sql("ended_at", "?2")
        ))
        .bind(agent)
        .bind(since)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Deletes the operations that ended before `before`; returns how many.
    pub async fn prune_operations(&self, before: Timestamp) -> Result<u64> {
        Ok(sqlx::query(&format!(
            "DELETE FROM operations WHERE ended_at IS NOT NULL AND {}",
            super::before_sql("ended_at", "?1")
        ))
        .bind(before)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: &str, run: &str) -> Operation {
        Operation {
            id: id.into(),
            kind: OperationKind::Migrate,
            agent: "a".into(),
            from_host: Some("h1".into()),
            host: "h2".into(),
            source: None,
            was_running: true,
            step: Step::Begun,
            operator: Some("alice".into()),
            run: run.into(),
            started_at: time::macros::datetime!(2026-12-06 12:00:00.5 UTC).into(),
        }
    }

    #[tokio::test]
    async fn an_operation_is_open_to_other_runs_until_it_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).await.expect("open");
        store.begin_operation(&op("o1", "r1")).await.expect("begin");
        store.begin_operation(&op("o2", "r2")).await.expect("begin");
        store
            .operation_step("o1", Step::Copied)
            .await
            .expect("step");
        let open = store
            .open_operations_of_other_runs("r2")
            .await
            .expect("open");
        assert_eq!(
            open,
            vec![Operation {
                step: Step::Copied,
                ..op("o1", "r1")
            }]
        );
        store
            .end_operation("o1", Outcome::Undone, "undone")
            .await
            .expect("end");
        assert!(
            store
                .open_operations_of_other_runs("r2")
                .await
                .expect("open")
                .is_empty()
        );
        // A later operation on the same agent supersedes an earlier one, whatever its run.
        assert!(store.operation_superseded("o1").await.expect("query"));
        assert!(!store.operation_superseded("o2").await.expect("query"));
        store
            .begin_operation(&Operation {
                id: "o3".into(),
                ..op("o3", "r3")
            })
            .await
            .expect("begin");
        assert!(store.operation_superseded("o2").await.expect("query"));
        assert!(!store.operation_superseded("o3").await.expect("query"));
        // An end is written once.
        store
            .end_operation("o1", Outcome::Finished, "again")
            .await
            .expect("end");
        assert_eq!(
            store
                .prune_operations(Timestamp::parse("9999-01-01T00:00:00Z").expect("a time"))
                .await
                .expect("prune"),
            1
        );
    }
}
