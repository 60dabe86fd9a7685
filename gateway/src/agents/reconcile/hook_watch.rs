//! Follows each host's `hostctl hook-watch`, so that an event an agent's CLI reports through
//! its hooks is seen at once: that agent is looked at again (`hostctl info`) and what it shows
//! is recorded, instead of waiting for the reconciler's next round.
//!
//! One watch per host, started again (after a pause) when it ends: a host that cannot be
//! reached, or a hostctl too old to watch, leaves its agents to the reconciler's rounds, which
//! read the same events, only later. It must not decide what the events mean: the status is
//! worked out as for any look (`reconcile::observe`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::Gateway;
use crate::hosts::Host;

/// How often the set of hosts is checked for one without a watch.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The pause before a host's ended watch starts again.
const RESTART_AFTER: Duration = Duration::from_secs(5);

/// The most agents looked at again for one burst of events: the rest wait for the next.
const MAX_BURST: usize = 64;

/// The longest line a watch may print (an agent's name).
const MAX_LINE: usize = 256;

/// Keeps one watch running per host until the gateway stops accepting connections.
pub async fn run(gw: Arc<Gateway>) {
    let mut watches: HashMap<String, (CancellationToken, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = gw.shutdown_accepting.cancelled() => break,
        }
        let hosts = gw.hosts.all();
        // Hosts removed: their watch ends.
        watches.retain(|name, (stop, _)| {
            let kept = hosts.iter().any(|h| h.name() == name);
            if !kept {
                stop.cancel();
            }
            kept
        });
        for host in hosts {
            let running = watches
                .get(host.name())
                .is_some_and(|(_, task)| !task.is_finished());
            if !running {
                let stop = gw.shutdown_accepting.child_token();
                let task = gw
                    .tasks
                    .spawn(watch_host(gw.clone(), host.clone(), stop.clone()));
                watches.insert(host.name().to_owned(), (stop, task));
            }
        }
    }
    for (stop, _) in watches.values() {
        stop.cancel();
    }
}

/// One watch of one host, until it ends, then the pause before the next.
async fn watch_host(gw: Arc<Gateway>, host: Host, stop: CancellationToken) {
    match follow(&gw, &host, &stop).await {
        Ok(()) => debug!(host = host.name(), "the hook watch ended"),
        Err(e) => debug!(host = host.name(), error = %e, "no hook watch"),
    }
    tokio::select! {
        () = tokio::time::sleep(RESTART_AFTER) => {}
        () = stop.cancelled() => {}
    }
}

/// Why a host's hook watch ended before it was asked to.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error(transparent)]
    Host(#[from] crate::hosts::HostError),
    #[error("reading its events: {0}")]
    Read(#[from] std::io::Error),
}

async fn follow(gw: &Gateway, host: &Host, stop: &CancellationToken) -> Result<(), Ended> {
    let process = host.hook_watch().await?;
    // Its stdin stays open while it is wanted: the watch ends at its end.
    let _stdin = process.stdin;
    let mut lines = BufReader::new(process.stdout);
    let mut line = String::new();
    loop {
        line.clear();
        let read = tokio::select! {
            read = read_line(&mut lines, &mut line) => read,
            () = stop.cancelled() => return Ok(()),
        };
        if read? == 0 {
            return Ok(());
        }
        // The events that arrived meanwhile are one burst: each agent is looked at once.
        let mut names = vec![line.trim().to_owned()];
        while names.len() < MAX_BURST && lines.buffer().contains(&b'\n') {
            line.clear();
            read_line(&mut lines, &mut line).await?;
            names.push(line.trim().to_owned());
        }
        names.sort();
        names.dedup();
        for name in names.iter().filter(|n| !n.is_empty()) {
            look_again(gw, host, name).await;
        }
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes.
async fn read_line(
    lines: &mut BufReader<crate::hosts::BoxRead>,
    line: &mut String,
) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt;
    let mut bounded = (&mut *lines).take(MAX_LINE as u64);
    let n = bounded.read_line(line).await?;
    if n == MAX_LINE && !line.ends_with('\n') {
        return Err(std::io::Error::other("a hook watch line is too long"));
    }
    Ok(n)
}

/// Looks at one agent of `host` again and records what it shows.
async fn look_again(gw: &Gateway, host: &Host, name: &str) {
    let Ok(Some(prev)) = gw.store.agent(name).await else {
        return;
    };
    if prev.host != host.name() || prev.status == crate::model::AgentStatus::Creating {
        return;
    }
    match host.info(name).await {
        Ok(info) => {
            // A stop, start or move recorded meanwhile knows better than this look.
            let unchanged = gw
                .store
                .agent(name)
                .await
                .ok()
                .flatten()
                .is_some_and(|now| now.status == prev.status && now.host == prev.host);
            if !unchanged {
                return;
            }
            if let Err(e) = crate::agents::reconcile::observe(&gw.core(), &prev, &info).await {
                warn!(agent = name, error = %e, "cannot record an agent's status");
            }
        }
        Err(e) => debug!(agent = name, error = %e, "cannot look at an agent after its hook"),
    }
}
