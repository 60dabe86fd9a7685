//! Agents as the gateway knows them: what was asked, the last status seen, the activity
//! told from hooks or the screen, and whom each is shared with (the facts `agents::access`
//! decides from).

use std::collections::BTreeMap;

use hostctl::api::{CreateRequest, Sandbox};

use super::{Result, Store, StoreError, changes};
use crate::model::{ActivitySource, ActivityState, AgentStatus, EventKind, Timestamp};

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AgentRecord {
    pub name: String,
    pub host: String,
    pub template: String,
    pub command: String,
    pub workspace: String,
    #[sqlx(try_from = "super::columns::Json<CreateRequest>")]
    pub spec: CreateRequest,
    #[sqlx(try_from = "super::columns::Json<BTreeMap<String, String>>")]
    pub tags: BTreeMap<String, String>,
    pub status: AgentStatus,
    pub exit_code: Option<i32>,
    pub pid: Option<u32>,
    /// The host's word on its tmux session's last activity (its own text, kept as told).
    pub last_activity: Option<String>,
    pub created_at: Timestamp,
    pub created_by: Option<String>,
    /// What it is doing while it runs, told from its screen.
    #[sqlx(flatten)]
    pub activity: AgentActivity,
    /// Since when its status (lifecycle and activity) is what it is.
    pub status_since: Option<Timestamp>,
    /// How long it may be idle before it is stopped (`30m`), if it may not for ever.
    pub idle_stop: Option<String>,
    /// Why it was stopped, when the gateway stopped it (`idle`).
    pub stop_reason: Option<String>,
    /// The operators it is shared with (besides its creator), by name.
    #[sqlx(try_from = "super::columns::Json<Vec<String>>")]
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

/// What is known of a running agent's activity (see `agents::activity`).
#[derive(Clone, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct AgentActivity {
    /// None: neither working, waiting nor idle (plain `running`), or not running.
    #[sqlx(rename = "activity")]
    pub state: Option<ActivityState>,
    /// Why it is `waiting` (the matching rule's reason).
    #[sqlx(rename = "activity_reason")]
    pub reason: Option<String>,
    /// The last time its screen changed.
    pub last_output_at: Option<Timestamp>,
    /// The last time an operator typed into it through the gateway.
    pub last_input_at: Option<Timestamp>,
    /// `COLSxROWS HASH` of the screen last seen.
    pub screen: Option<String>,
    /// The last line with text on its screen.
    pub last_line: Option<String>,
    /// Why that screen would make it `waiting`, if it would.
    pub screen_waits: Option<String>,
    /// Whether that wait is a question (a dialog, a yes/no question) rather than a prompt.
    pub screen_asks: bool,
    /// What told the state: the CLI's hooks or its screen.
    #[sqlx(rename = "activity_source")]
    pub source: Option<ActivitySource>,
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

impl Store {
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
        .bind(Timestamp::now())
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
                                 idle_stop, sandbox)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?14, ?15, ?16)",
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
        .bind(agent.created_at)
        .bind(&agent.created_by)
        .bind(Timestamp::now())
        .bind(&agent.idle_stop)
        .bind(agent.spec.sandbox.map(Sandbox::as_str))
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {
                // A new agent is news too: from nothing to `creating`, or to what an adopted
                // agent is.
                let at = Timestamp::now();
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
        let row = sqlx::query_as::<_, AgentRecord>(&format!("{AGENT_SELECT} WHERE name = ?"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row)
    }

    pub async fn agent_exists(&self, name: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    pub async fn agents(&self) -> Result<Vec<AgentRecord>> {
        let rows = sqlx::query_as::<_, AgentRecord>(&format!("{AGENT_SELECT} ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    pub async fn agents_on_host(&self, host: &str) -> Result<Vec<AgentRecord>> {
        let rows = sqlx::query_as::<_, AgentRecord>(&format!(
            "{AGENT_SELECT} WHERE host = ? ORDER BY name"
        ))
        .bind(host)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
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
        let at = Timestamp::now();
        let now = at;
        let names: Vec<&str> = seen.iter().map(|(name, _)| *name).collect();
        let before = changes::shown_rows_named(&mut tx, &names).await?;
        for (name, seen) in seen {
            // An end no stop explains is news once: when the agent comes to this status (or,
            // exited, to another exit code), not when a host that was unreachable tells it
            // again. The event is written first, in the same transaction as the status: that
            // first write takes the database's write lock, so the row it reads is the one the
            // update below changes, whichever caller (the reconciler, `info`, `wait`) sees
            // the end first. Its result is the status the agent came to (?3 is both).
            if let Some(reason) = &seen.stop_reason {
                sqlx::query(
                    "INSERT INTO events (at, kind, agent, detail, result, message)
                     SELECT ?1, ?6, name, ?2, ?3, ?2 FROM agents
                      WHERE name = ?4
                        AND (status IS NOT ?3 OR (?3 = 'exited' AND exit_code IS NOT ?5))
                        AND NOT (status = 'unknown' AND stop_reason IS ?2)",
                )
                .bind(now)
                .bind(reason)
                .bind(seen.status.as_str())
                .bind(name)
                .bind(seen.exit_code)
                .bind(EventKind::Agent)
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
            .bind(now)
            .bind(name)
            .bind(seen.activity.is_some())
            .bind(activity.state.map(ActivityState::as_str))
            .bind(&activity.reason)
            .bind(activity.last_output_at)
            .bind(activity.last_input_at)
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

    /// Records what agent `name` runs in, as its host chose it (in its stored spec too).
    pub async fn set_sandbox(&self, name: &str, sandbox: Sandbox) -> Result<()> {
        sqlx::query(
            "UPDATE agents SET sandbox = ?1, spec = json_set(spec, '$.sandbox', ?1) WHERE name = ?2",
        )
        .bind(sandbox.as_str())
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
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
        .bind(Timestamp::now())
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
        let at = Timestamp::now();
        let before = changes::shown_rows_of_host(&mut tx, host).await?;
        // What the screen told goes with the status, as in `observe_agents`.
        let written = sqlx::query(
            "UPDATE agents SET pid = NULL, updated_at = ?1,
                    status_since = CASE WHEN status != 'unknown' THEN ?1 ELSE status_since END,
                    status = 'unknown', activity = NULL, activity_reason = NULL, screen = NULL,
                    screen_waits = NULL, screen_asks = NULL, activity_source = NULL
             WHERE host = ?2 AND status != 'creating' AND (status != 'unknown' OR pid IS NOT NULL)",
        )
        .bind(at)
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
            .bind(Timestamp::now())
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_agent(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let at = Timestamp::now();
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
}

const AGENT_SELECT: &str = "SELECT name, host, template, command, workspace,
    json_set(spec, '$.sandbox', sandbox) AS spec, tags, status, exit_code, pid,
    last_activity, created_at, created_by, activity, activity_reason, status_since,
    last_output_at, last_input_at, screen, last_line, idle_stop, stop_reason, screen_waits,
    COALESCE(screen_asks, 0) AS screen_asks, activity_source,
    (SELECT json_group_array(operator) FROM
        (SELECT operator FROM agent_shares s WHERE s.agent = agents.name ORDER BY operator))
        AS shared_with
    FROM agents";

/// An agent record for tests: a login shell on `host`, in `status`, made by no one.
#[cfg(test)]
pub(crate) fn sample_agent(name: &str, host: &str, status: AgentStatus) -> AgentRecord {
    AgentRecord {
        name: name.into(),
        host: host.into(),
        template: "shell".into(),
        command: String::new(),
        workspace: String::new(),
        spec: CreateRequest::login_shell(name),
        tags: BTreeMap::new(),
        status,
        exit_code: None,
        pid: None,
        last_activity: None,
        created_at: Timestamp::now(),
        created_by: None,
        activity: AgentActivity::default(),
        status_since: None,
        idle_stop: None,
        stop_reason: None,
        shared_with: Vec::new(),
    }
}

#[cfg(test)]
mod sandbox_tests {
    use super::*;

    #[tokio::test]
    async fn what_an_agent_runs_in_is_what_its_host_said_not_what_was_asked() {
        let (_dir, store) = super::super::tests::store().await;
        // Asked for the host's default: not known until the host says.
        let mut agent = sample_agent("a", "local", AgentStatus::Creating);
        agent.spec.sandbox = None;
        store.insert_agent(&agent).await.expect("insert");
        assert_eq!(
            store.agent("a").await.expect("q").expect("a").spec.sandbox,
            None
        );
        store.set_sandbox("a", Sandbox::Bwrap).await.expect("set");
        let back = store.agent("a").await.expect("q").expect("a");
        assert_eq!(back.spec.sandbox, Some(Sandbox::Bwrap));
        // The column and the stored spec agree.
        let column: Option<String> =
            sqlx::query_scalar("SELECT sandbox FROM agents WHERE name = 'a'")
                .fetch_one(&store.pool)
                .await
                .expect("column");
        assert_eq!(column.as_deref(), Some("bwrap"));
        // An adopted agent's row takes its spec's.
        let mut adopted = sample_agent("b", "local", AgentStatus::Running);
        adopted.spec.sandbox = Some(Sandbox::None);
        store.insert_agent(&adopted).await.expect("insert");
        assert_eq!(
            store.agent("b").await.expect("q").expect("b").spec.sandbox,
            Some(Sandbox::None)
        );
        // The column takes nothing else.
        let refused = sqlx::query("UPDATE agents SET sandbox = 'docker' WHERE name = 'a'")
            .execute(&store.pool)
            .await;
        assert!(refused.is_err(), "the column took an unknown sandbox");
    }
}
