//! `events [--agent A] [--operator O] [--since T] [-n N] [--json] [-f]`: the audit trail.

use std::time::Duration;

use clap::Args;

use super::output::{EventJson, json_text, table, to_json};
use super::{Caller, CommandError, CommandIo, CommandResult, exit};
use crate::model::EventResult;
use crate::model::Timestamp;
use crate::store::Store;
use crate::store::{Event, EventFilter};
use tokio_util::sync::CancellationToken;

/// How often `events -f` looks for new events.
const FOLLOW_POLL: Duration = Duration::from_millis(500);
/// The most rows `events -f` shows as `started` and watches to show again when they end
/// (past that, the oldest are no longer watched).
const FOLLOW_STARTED: usize = 1000;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ssh gw events --agent fix-ci\n  ssh gw events --since 1h --json\n  ssh gw events -f"
)]
pub struct EventsArgs {
    /// Only events about this agent.
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
    /// Only events of this operator.
    #[arg(long, value_name = "NAME")]
    pub operator: Option<String>,
    /// Only events since this long ago (30s, 10m, 2h, 7d) or this RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// At most this many of the newest events.
    #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 50)]
    pub limit: u32,
    /// Print JSON (one array; with -f, one object per line).
    #[arg(long)]
    pub json: bool,
    /// Keep printing new events until interrupted.
    #[arg(short, long)]
    pub follow: bool,
}

pub async fn run(
    store: &Store,
    stop: &CancellationToken,
    caller: &Caller,
    args: EventsArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let since = args
        .since
        .as_deref()
        .map(since_time)
        .transpose()
        .map_err(|e| CommandError::usage(e.to_string()))?;
    let mut filter = EventFilter {
        agent: args.agent.clone(),
        operator: args.operator.clone(),
        since,
        after: 0,
        limit: i64::from(args.limit),
        only: crate::agents::access::events_scope(store, &caller.operator).await?,
    };
    let events = store.events(&filter).await?;
    // Events the database could not take are not in what was read: say so.
    if let Some((kept, cause)) = store.audit_fault().await {
        io.write_err(&format!(
            "warning: the gateway's database cannot be written ({cause}): {kept} audit \
             event{} wait{} in memory and are not shown; they are written, in order, once it can\n",
            if kept == 1 { "" } else { "s" },
            if kept == 1 { "s" } else { "" }
        ))
        .await;
    }
    if args.json && !args.follow {
        let all: Vec<serde_json::Value> = events.iter().map(event_json).collect();
        io.write_out(&json_text(&serde_json::Value::Array(all)))
            .await;
        return Ok(exit::OK);
    }
    io.write_out(&render(&events, args.json, true)).await;
    if !args.follow {
        return Ok(exit::OK);
    }
    filter.after = events.last().map_or(0, |e| e.id);
    filter.since = None;
    filter.limit = 1000;
    // Rows shown while their command was under way are shown again once it has ended.
    let mut under_way = std::collections::VecDeque::new();
    watch_started(&mut under_way, &events);
    loop {
        tokio::select! {
            () = tokio::time::sleep(FOLLOW_POLL) => {}
            () = io.closed.cancelled() => return Ok(exit::OK),
            () = stop.cancelled() => return Ok(exit::OK),
        }
        let ids: Vec<i64> = under_way.iter().copied().collect();
        let mut shown = if ids.is_empty() {
            Vec::new()
        } else {
            store.events_with_ids(&ids).await?
        };
        // Those still under way are watched on; a row pruned meanwhile is forgotten.
        under_way = shown
            .iter()
            .filter(|e| e.result == EventResult::Started)
            .map(|e| e.id)
            .collect();
        shown.retain(|e| e.result != EventResult::Started);
        // An agent shared or taken back meanwhile counts from now on.
        filter.only = crate::agents::access::events_scope(store, &caller.operator).await?;
        let new = store.events(&filter).await?;
        if let Some(last) = new.last() {
            filter.after = last.id;
        }
        watch_started(&mut under_way, &new);
        shown.extend(new);
        if !shown.is_empty() {
            io.write_out(&render(&shown, args.json, false)).await;
        }
    }
}

/// Notes the rows of `events` that are under way, to show again when they end.
fn watch_started(under_way: &mut std::collections::VecDeque<i64>, events: &[Event]) {
    for e in events.iter().filter(|e| e.result == EventResult::Started) {
        if under_way.len() >= FOLLOW_STARTED {
            under_way.pop_front();
        }
        under_way.push_back(e.id);
    }
}

fn render(events: &[Event], json: bool, header: bool) -> String {
    if json {
        return events
            .iter()
            .map(|e| format!("{}\n", event_json(e)))
            .collect();
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.at.to_string(),
                e.operator.clone().unwrap_or_default(),
                e.kind.to_string(),
                e.agent.clone().unwrap_or_default(),
                e.result.to_string(),
                e.detail.replace(['\n', '\r'], " "),
            ]
        })
        .collect();
    let text = table(
        &["TIME", "OPERATOR", "KIND", "AGENT", "RESULT", "DETAIL"],
        &rows,
    );
    if header {
        text
    } else {
        text.lines().skip(1).map(|l| format!("{l}\n")).collect()
    }
}

fn event_json(e: &Event) -> serde_json::Value {
    to_json(&EventJson::of(e))
}

/// A `--since` that is neither a duration nor a time.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum BadSince {
    #[error("--since: {0}, or give an RFC 3339 time like 2026-01-31T12:00:00Z")]
    Neither(String),
    #[error("--since: {0} is further back than time goes")]
    TooFarBack(String),
}

/// `--since`: a duration back from now, or an RFC 3339 time.
fn since_time(text: &str) -> Result<Timestamp, BadSince> {
    if let Ok(at) = Timestamp::parse(text) {
        return Ok(at);
    }
    let back = crate::config::parse_duration(text).map_err(|e| BadSince::Neither(e.to_string()))?;
    time::Duration::try_from(back)
        .ok()
        .and_then(|back| time::OffsetDateTime::now_utc().checked_sub(back))
        .map(Timestamp::from)
        .ok_or_else(|| BadSince::TooFarBack(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times() {
        assert_eq!(
            since_time("2026-01-31T12:00:00+01:00").map(|t| t.to_string()),
            Ok("2026-01-31T11:00:00Z".to_owned())
        );
        let an_hour_ago = since_time("1h").expect("parses");
        assert!(an_hour_ago < Timestamp::now());
        assert!(matches!(since_time("yesterday"), Err(BadSince::Neither(_))));
    }
}
