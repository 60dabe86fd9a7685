//! `watch [NAME...] [--tag K=V]... [--json]`: the status changes of the agents the caller may
//! see, one line each, as the gateway records them, until the client leaves.
//!
//! It follows the store's feed (`store::StatusChange`). The feed holds a bounded number of
//! changes for each follower: a client that reads slower than changes come does not make the
//! gateway buffer more; it gets a line saying how many changes it missed, then goes on from
//! the newest.

use clap::Args;
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::output::parse_pair;
use super::{Caller, CommandError, CommandIo, CommandResult, exit};
use crate::store::StatusChange;
use crate::store::Store;

#[derive(Debug, Args)]
#[command(
    after_help = "Each line: TIME AGENT HOST FROM -> TO, and the reason when there is one:\n  \
    2026-01-05T10:12:03Z  fix-ci  local  working -> waiting  (asks a yes/no question)\n\
    --json prints one object per line: {\"time\", \"agent\", \"host\", \"from\", \"to\", \"reason\"}.\n\
    A client that reads too slowly gets a line saying how many changes it missed\n\
    ({\"missed\": N} with --json).\n\n\
    Example: ssh gw watch --json | while read -r change; do ...; done"
)]
pub struct WatchArgs {
    /// Only these agents (default: every agent you may see, new ones included).
    pub names: Vec<String>,
    /// Only agents with this tag, KEY=VALUE (repeatable: all must match).
    #[arg(long = "tag", value_name = "K=V", value_parser = parse_pair)]
    pub tags: Vec<(String, String)>,
    /// Print one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(
    store: &Store,
    stop: &CancellationToken,
    caller: &Caller,
    args: WatchArgs,
    io: &mut CommandIo,
) -> CommandResult {
    // Following before the names are checked: nothing recorded in between is lost.
    let feed = store.subscribe_changes();
    for name in &args.names {
        if crate::agents::access::agent(store, &caller.operator, name)
            .await?
            .is_none()
        {
            return Err(CommandError::no_agent(name));
        }
    }
    let wanted = |change: &StatusChange| {
        crate::agents::access::may_see(&caller.operator, change.into())
            && change.has_tags(&args.tags)
            && (args.names.is_empty() || args.names.contains(&change.agent))
    };
    follow(feed, wanted, args.json, io, stop).await
}

/// Prints the changes `wanted` picks from `feed` until the client leaves or `stopping` fires.
async fn follow(
    mut feed: broadcast::Receiver<StatusChange>,
    wanted: impl Fn(&StatusChange) -> bool,
    json: bool,
    io: &mut CommandIo,
    stopping: &CancellationToken,
) -> CommandResult {
    let closed = io.closed.clone();
    loop {
        let received = tokio::select! {
            received = feed.recv() => received,
            () = closed.cancelled() => return Ok(exit::OK),
            () = stopping.cancelled() => {
                return Err(CommandError::failed("the gateway is shutting down"));
            }
        };
        let line = match received {
            Ok(change) if wanted(&change) => line_of(&change, json),
            Ok(_) => continue,
            Err(RecvError::Lagged(missed)) => missed_line(missed, json),
            Err(RecvError::Closed) => return Ok(exit::OK),
        };
        // A client that does not read holds this write (SSH's window), and meanwhile the feed
        // moves on without it: what it misses is counted, not kept.
        tokio::select! {
            () = io.write_out(&line) => {}
            () = closed.cancelled() => return Ok(exit::OK),
            () = stopping.cancelled() => {
                return Err(CommandError::failed("the gateway is shutting down"));
            }
        }
        io.flush().await;
    }
}

/// One change as a line of text or of JSON.
pub fn line_of(change: &StatusChange, json: bool) -> String {
    let time = change.at;
    if json {
        let doc = json!({
            "time": time,
            "agent": change.agent,
            "host": change.host,
            "from": change.from,
            "to": change.to,
            "reason": change.reason,
        });
        return format!("{doc}\n");
    }
    let seconds = change.at.whole_seconds();
    let reason = change
        .reason
        .as_deref()
        .map(|r| format!("  ({r})"))
        .unwrap_or_default();
    format!(
        "{seconds}  {}  {}  {} -> {}{reason}\n",
        change.agent,
        change.host,
        change.from.as_deref().unwrap_or("new"),
        change.to
    )
}

fn missed_line(missed: u64, json: bool) -> String {
    if json {
        format!("{}\n", json!({ "missed": missed }))
    } else {
        format!("(missed {missed} changes: this client read too slowly)\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn change(n: usize) -> StatusChange {
        StatusChange {
            at: time::OffsetDateTime::UNIX_EPOCH.into(),
            agent: format!("a{n}"),
            host: "local".into(),
            from: Some("working".into()),
            to: "waiting".into(),
            reason: None,
            owner: None,
            shared_with: Vec::new(),
            tags: std::collections::BTreeMap::new(),
            host_unreachable: false,
        }
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_is_told_how_many_changes_it_missed() {
        // A feed that holds 4 changes, 10 published before the client reads any.
        let (tx, feed) = broadcast::channel(4);
        for n in 1..=10 {
            tx.send(change(n)).expect("send");
        }
        drop(tx);
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let (_input, stdin) = crate::streams::Inbound::channel(&Default::default());
        let (_signal, signals) = tokio::sync::mpsc::channel(1);
        let mut io = CommandIo {
            stdin,
            stdout: Box::pin(server),
            stderr: Box::pin(tokio::io::sink()),
            terminal: None,
            closed: CancellationToken::new(),
            signals,
        };
        let status = follow(
            feed,
            |c| c.agent != "a9",
            false,
            &mut io,
            &CancellationToken::new(),
        )
        .await
        .expect("ends when the feed does");
        assert_eq!(status, exit::OK);
        drop(io);
        let mut out = String::new();
        client.read_to_string(&mut out).await.expect("read");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "(missed 6 changes: this client read too slowly)");
        let agents: Vec<&str> = lines[1..]
            .iter()
            .map(|l| l.split_whitespace().nth(1).unwrap_or_default())
            .collect();
        assert_eq!(agents, ["a7", "a8", "a10"]);
        assert_eq!(missed_line(6, true), "{\"missed\":6}\n");
    }
}
