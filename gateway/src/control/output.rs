//! How commands print: aligned tables with stable columns for people, JSON for scripts.
//! The same output whether or not stdout is a terminal.

use serde_json::{Value, json};

use crate::model::Timestamp;
use crate::model::{ActivitySource, AgentStatus};
use crate::store::AgentRecord;
use hostctl::api::AgentCli;

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

/// Checks a comma-separated list of statuses.
pub fn parse_statuses(words: &str) -> Result<Statuses, String> {
    words
        .split(',')
        .map(str::trim)
        .map(|w| {
            if STATUS_WORDS.contains(&w) {
                Ok(w.to_owned())
            } else {
                Err(format!(
                    "'{w}' is not a status (one of: {})",
                    STATUS_WORDS.join(", ")
                ))
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

/// The JSON shape of an agent in `list --json`, `info --json` and `create --json`.
pub fn agent_json(agent: &AgentRecord) -> Value {
    json!({
        "name": agent.name,
        "host": agent.host,
        "status": agent.shown_status(),
        "status_reason": agent.activity.reason,
        "status_source": agent.activity.source.map(ActivitySource::as_str),
        "cli": agent.spec.cli.map(AgentCli::name),
        "status_since": agent.status_since,
        "state": agent.status.as_str(),
        "stop_reason": agent.stop_reason,
        "idle_stop": agent.idle_stop,
        "last_output_at": agent.activity.last_output_at,
        "last_input_at": agent.activity.last_input_at,
        "last_line": agent.activity.last_line,
        "exit_code": agent.exit_code,
        "pid": agent.pid,
        "template": agent.template,
        "command": agent.command,
        "workspace": agent.workspace,
        "tags": agent.tags,
        "created_at": agent.created_at,
        "created_by": agent.created_by,
        "last_activity": agent.last_activity,
        "secrets": agent.spec.secret_names,
    })
}

/// Pretty JSON with a final newline.
pub fn json_text(value: &Value) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
    s.push('\n');
    s
}

/// Parses `K=V` for `--tag` and `--env`.
pub fn parse_pair(word: &str) -> Result<(String, String), String> {
    match word.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("'{word}' is not of the form KEY=VALUE")),
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

    #[test]
    fn pairs_need_a_key_and_an_equals_sign() {
        assert_eq!(parse_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_pair("a="), Ok(("a".into(), String::new())));
        assert!(parse_pair("=b").is_err());
        assert!(parse_pair("ab").is_err());
    }
}
