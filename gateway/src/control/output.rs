//! How commands print: aligned tables with stable columns for people, JSON for scripts.
//! The same output whether or not stdout is a terminal.
//!
//! A command's JSON is built from an output type of its own (`AgentJson`, `EventJson`, ...),
//! never from the store's records: what scripts read is a promise kept here, whatever the
//! store's rows become. Their keys come out sorted (they pass through `serde_json::Value`,
//! whose maps are ordered by key), as they always have.

use std::collections::BTreeMap;

use hostctl::api::Sandbox;
use serde::Serialize;
use serde_json::Value;

use crate::model::{
    ActivitySource, AgentStatus, EventKind, EventResult, HostStatus, Role, Timestamp,
};
use crate::store::{AgentRecord, Event, KeyRecord, OperatorSummary, SecretSummary};

/// Columns padded to their widest cell, separated by two spaces; the last column unpadded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i < last {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `running`, `exited (3)`, `stopped`, ...
pub fn status_text(agent: &AgentRecord) -> String {
    match (agent.status, agent.exit_code, agent.stop_reason.as_deref()) {
        (AgentStatus::Exited, Some(code), _) => format!("exited ({code})"),
        (AgentStatus::Stopped, _, Some(reason)) => format!("stopped ({reason})"),
        _ => agent.shown_status().to_owned(),
    }
}

/// Whether `wanted` (a `--status` or `--until` word) names the agent's status: its shown
/// status, or `running` for any agent whose process runs (working, waiting and idle ones too).
pub fn status_matches(agent: &AgentRecord, wanted: &str) -> bool {
    agent.shown_status() == wanted || agent.status.as_str() == wanted
}

/// The words `--status` and `--until` accept.
pub const STATUS_WORDS: &[&str] = &[
    "running", "working", "waiting", "idle", "exited", "stopped", "unknown", "creating",
];

/// Statuses from a comma-separated list (one value for clap: a `Vec` would be taken for
/// several).
#[derive(Clone, Debug)]
pub struct Statuses(pub Vec<String>);

/// A word given to an option that is not what the option takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadWord {
    #[error("'{0}' is not a status (one of: {words})", words = STATUS_WORDS.join(", "))]
    Status(String),
    #[error("'{0}' is not of the form KEY=VALUE")]
    Pair(String),
}

/// Checks a comma-separated list of statuses.
pub fn parse_statuses(words: &str) -> Result<Statuses, BadWord> {
    words
        .split(',')
        .map(str::trim)
        .map(|w| {
            if STATUS_WORDS.contains(&w) {
                Ok(w.to_owned())
            } else {
                Err(BadWord::Status(w.to_owned()))
            }
        })
        .collect::<Result<_, _>>()
        .map(Statuses)
}

/// A short age like `45s`, `12m`, `3h`, `5d`.
pub fn age(then: Timestamp) -> String {
    // A time ahead of the gateway's clock is 0s old.
    let secs = (time::OffsetDateTime::now_utc() - then.datetime()).whole_seconds();
    crate::config::duration_text(std::time::Duration::from_secs(
        u64::try_from(secs).unwrap_or(0),
    ))
}

pub fn tags_text(agent: &AgentRecord) -> String {
    agent
        .tags
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// An agent in `list --json`, `info --json` (with `shared_with`) and `create --json`.
#[derive(Serialize)]
pub struct AgentJson<'a> {
    name: &'a str,
    host: &'a str,
    /// What an operator sees: `working`, `waiting` or `idle` for a running agent whose
    /// activity is known, its lifecycle status otherwise (`state`).
    status: &'static str,
    status_reason: Option<&'a str>,
    status_source: Option<ActivitySource>,
    cli: Option<&'static str>,
    status_since: Option<Timestamp>,
    state: AgentStatus,
    stop_reason: Option<&'a str>,
    idle_stop: Option<&'a str>,
    last_output_at: Option<Timestamp>,
    last_input_at: Option<Timestamp>,
    last_line: Option<&'a str>,
    exit_code: Option<i32>,
    pid: Option<u32>,
    template: &'a str,
    command: &'a str,
    workspace: &'a str,
    tags: &'a BTreeMap<String, String>,
    created_at: Timestamp,
    created_by: Option<&'a str>,
    last_activity: Option<&'a str>,
    secrets: &'a [String],
    /// What it runs in (`bwrap`, `none`); none while its host has not said.
    sandbox: Option<&'static str>,
    /// What it may use of its host (`memory_bytes`, `cpus`, `pids`); absent when unlimited.
    #[serde(skip_serializing_if = "hostctl::api::Limits::is_empty")]
    limits: hostctl::api::Limits,
    /// `info` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    shared_with: Option<&'a [String]>,
    /// What it uses of its host (`info` and `list`); absent when its host could not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageJson>,
}

/// What an agent uses of its host, as its host measured it (`usage`, `info`, `list`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UsageJson {
    /// How many processes its tree has (none when it is not running).
    pub processes: u32,
    /// CPU time its live processes have used, in seconds.
    pub cpu_seconds: f64,
    /// CPU use in percent of one core over `cpu_window_seconds`.
    pub cpu_percent: Option<f64>,
    pub cpu_window_seconds: Option<f64>,
    /// Resident memory of its processes, summed, in bytes.
    pub memory_bytes: u64,
    /// Its workspace's disk use, in bytes; null when it could not be counted in time
    /// (`disk_note` says why).
    pub disk_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_note: Option<String>,
}

impl UsageJson {
    pub fn of(usage: &hostctl::api::AgentUsage) -> UsageJson {
        UsageJson {
            processes: usage.processes,
            cpu_seconds: usage.cpu_seconds,
            cpu_percent: usage.cpu_percent,
            cpu_window_seconds: usage.cpu_window_seconds,
            memory_bytes: usage.memory_bytes,
            disk_bytes: usage.disk_bytes,
            disk_note: usage.disk_note.clone(),
        }
    }
}

impl<'a> AgentJson<'a> {
    pub fn of(agent: &'a AgentRecord) -> AgentJson<'a> {
        AgentJson {
            name: &agent.name,
            host: &agent.host,
            status: agent.shown_status(),
            status_reason: agent.activity.reason.as_deref(),
            status_source: agent.activity.source,
            cli: agent.spec.cli.map(hostctl::api::AgentCli::name),
            status_since: agent.status_since,
            state: agent.status,
            stop_reason: agent.stop_reason.as_deref(),
            idle_stop: agent.idle_stop.as_deref(),
            last_output_at: agent.activity.last_output_at,
            last_input_at: agent.activity.last_input_at,
            last_line: agent.activity.last_line.as_deref(),
            exit_code: agent.exit_code,
            pid: agent.pid,
            template: &agent.template,
            command: &agent.command,
            workspace: &agent.workspace,
            tags: &agent.tags,
            created_at: agent.created_at,
            created_by: agent.created_by.as_deref(),
            last_activity: agent.last_activity.as_deref(),
            secrets: &agent.spec.secret_names,
            sandbox: sandbox_of(agent).map(Sandbox::as_str),
            limits: agent.spec.limits,
            shared_with: None,
            usage: None,
        }
    }

    /// With what it uses of its host, when its host said (`info`, `list`).
    pub fn usage(self, usage: Option<&hostctl::api::AgentUsage>) -> AgentJson<'a> {
        AgentJson {
            usage: usage.map(UsageJson::of),
            ..self
        }
    }

    /// With the operators it is shared with (`info`).
    pub fn shared_with(self, operators: &'a [String]) -> AgentJson<'a> {
        AgentJson {
            shared_with: Some(operators),
            ..self
        }
    }
}

/// The JSON of an agent in `list --json`, `info --json` and `create --json`.
pub fn agent_json(agent: &AgentRecord) -> Value {
    to_json(&AgentJson::of(agent))
}

/// One line of the audit trail in `events --json`.
#[derive(Serialize)]
pub struct EventJson<'a> {
    id: i64,
    at: Timestamp,
    operator: Option<&'a str>,
    source: Option<&'a str>,
    kind: EventKind,
    agent: Option<&'a str>,
    detail: &'a str,
    result: EventResult,
    message: &'a str,
}

impl<'a> EventJson<'a> {
    pub fn of(e: &'a Event) -> EventJson<'a> {
        EventJson {
            id: e.id,
            at: e.at,
            operator: e.operator.as_deref(),
            source: e.source.as_deref(),
            kind: e.kind,
            agent: e.agent.as_deref(),
            detail: &e.detail,
            result: e.result,
            message: &e.message,
        }
    }
}

/// The operator, role and key of a connection in `whoami --json`.
#[derive(Serialize)]
pub struct WhoamiJson<'a> {
    pub operator: &'a str,
    pub role: Role,
    pub key: &'a str,
    pub source: &'a str,
}

/// A secret in `secret list --json`: never its value.
#[derive(Serialize)]
pub struct SecretJson<'a> {
    name: &'a str,
    set_by: &'a str,
    updated_at: Timestamp,
}

impl<'a> SecretJson<'a> {
    pub fn of(s: &'a SecretSummary) -> SecretJson<'a> {
        SecretJson {
            name: &s.name,
            set_by: &s.set_by,
            updated_at: s.updated_at,
        }
    }
}

/// A key that may log in, in `key list --json`.
#[derive(Serialize)]
pub struct KeyJson<'a> {
    operator: &'a str,
    role: Role,
    fingerprint: &'a str,
    algorithm: &'a str,
    public_key: &'a str,
    comment: &'a str,
    created_at: Timestamp,
}

impl<'a> KeyJson<'a> {
    pub fn of(k: &'a KeyRecord) -> KeyJson<'a> {
        KeyJson {
            operator: &k.operator,
            role: k.role,
            fingerprint: &k.fingerprint,
            algorithm: &k.algorithm,
            public_key: &k.public_key,
            comment: &k.comment,
            created_at: k.created_at,
        }
    }
}

/// A tailnet login that may log in, in `key list --json`.
#[derive(Serialize)]
pub struct TailnetLoginJson<'a> {
    pub operator: &'a str,
    pub role: Role,
    pub tailscale_login: &'a str,
}

/// An operator in `operator list --json`.
#[derive(Serialize)]
pub struct OperatorJson<'a> {
    name: &'a str,
    role: Role,
    created_at: Timestamp,
    keys: i64,
    tailscale_logins: i64,
    agents: i64,
    agent_forwarding: bool,
}

impl<'a> OperatorJson<'a> {
    pub fn of(o: &'a OperatorSummary) -> OperatorJson<'a> {
        OperatorJson {
            name: &o.name,
            role: o.role,
            created_at: o.created_at,
            keys: o.keys,
            tailscale_logins: o.tailscale_logins,
            agents: o.agents,
            agent_forwarding: o.agent_forwarding,
        }
    }
}

/// A host in `host list --json` and `host info --json` (the command fills in what only it
/// knows: the agents it may see there, the key's fingerprint, what the tailnet says).
#[derive(Serialize)]
pub struct HostJson<'a> {
    pub name: &'a str,
    pub address: Option<&'a str>,
    /// Only for a host with an address (`local` has none).
    pub port: Option<u16>,
    pub user: Option<&'a str>,
    pub status: HostStatus,
    pub agents: usize,
    pub hostctl_version: Option<&'a str>,
    pub hostctl_path: Option<&'a str>,
    pub platform: Option<&'a str>,
    pub host_key: Option<&'a str>,
    pub host_key_fingerprint: Option<String>,
    pub last_contact: Option<Timestamp>,
    pub last_error: Option<&'a str>,
    pub created_at: Timestamp,
    pub tailnet: Value,
}

/// An output type as a JSON value (keys in order).
pub fn to_json<T: Serialize>(value: &T) -> Value {
    // Output types hold strings, numbers, times and maps with string keys only, which always
    // serialize.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// What the agent runs in: as its host chose at `create`; none while it is being created
/// and its host has not said yet.
pub fn sandbox_of(agent: &AgentRecord) -> Option<Sandbox> {
    agent.spec.sandbox
}

/// `sandbox bwrap` or `no sandbox`, for `create`'s report.
pub fn sandbox_text(agent: &AgentRecord) -> String {
    match sandbox_of(agent) {
        Some(Sandbox::Bwrap) => "sandbox bwrap".to_owned(),
        Some(Sandbox::None) => "no sandbox".to_owned(),
        None => "sandbox not known yet".to_owned(),
    }
}

/// Pretty JSON with a final newline.
pub fn json_text(value: &Value) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
    s.push('\n');
    s
}

/// Parses `K=V` for `--tag` and `--env`.
pub fn parse_pair(word: &str) -> Result<(String, String), BadWord> {
    match word.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(BadWord::Pair(word.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["NAME", "STATUS"],
            &[
                vec!["a".into(), "running".into()],
                vec!["longer-name".into(), "stopped".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME         STATUS\na            running\nlonger-name  stopped\n"
        );
    }

    #[test]
    fn ages_are_short() {
        let an_hour_ago = time::OffsetDateTime::now_utc() - time::Duration::minutes(61);
        assert_eq!(age(an_hour_ago.into()), "1h");
        let ahead = time::OffsetDateTime::now_utc() + time::Duration::minutes(5);
        assert_eq!(age(ahead.into()), "0s");
    }

    /// What scripts read of an agent: every key, in order, with its words and times as they
    /// always were.
    #[test]
    fn an_agents_json_keeps_its_keys_words_and_times() {
        let mut agent = crate::store::sample_agent("a", "h", AgentStatus::Exited);
        let at = |t: &str| t.parse::<Timestamp>().expect("a time");
        agent.created_at = at("2026-12-06T09:00:00.5Z");
        agent.status_since = Some(at("2026-12-06T09:01:00Z"));
        agent.exit_code = Some(3);
        agent.activity.source = Some(ActivitySource::Hook);
        agent.tags = BTreeMap::from([("team".to_owned(), "web".to_owned())]);
        let shared = vec!["bob".to_owned()];
        let text = json_text(&to_json(&AgentJson::of(&agent).shared_with(&shared)));
        let expected = r#"{
  "cli": null,
  "command": "",
  "created_at": "2026-12-06T09:00:00.5Z",
  "created_by": null,
  "exit_code": 3,
  "host": "h",
  "idle_stop": null,
  "last_activity": null,
  "last_input_at": null,
  "last_line": null,
  "last_output_at": null,
  "name": "a",
  "pid": null,
  "sandbox": null,
  "secrets": [],
  "shared_with": [
    "bob"
  ],
  "state": "exited",
  "status": "exited",
  "status_reason": null,
  "status_since": "2026-12-06T09:01:00Z",
  "status_source": "hook",
  "stop_reason": null,
  "tags": {
    "team": "web"
  },
  "template": "shell",
  "workspace": ""
}
"#;
        assert_eq!(text, expected);
        assert!(!json_text(&agent_json(&agent)).contains("shared_with"));
    }

    #[test]
    fn pairs_need_a_key_and_an_equals_sign() {
        assert_eq!(parse_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_pair("a="), Ok(("a".into(), String::new())));
        assert!(parse_pair("=b").is_err());
        assert!(parse_pair("ab").is_err());
    }
}
