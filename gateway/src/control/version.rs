//! `version [--json]`: the gateway's version and each host's hostctl.

use serde_json::json;

use super::output::json_text;
use super::{CommandIo, CommandResult, JsonArg, exit};
use crate::hosts::Hosts;

pub async fn run(hosts: &Hosts, args: JsonArg, io: &mut CommandIo) -> CommandResult {
    // Every host at once: one that does not answer costs its probe time limit, not more.
    let all = hosts.all();
    let answers = futures::future::join_all(all.iter().map(|h| h.version())).await;
    let hosts: Vec<(String, Option<String>, Option<String>)> = all
        .iter()
        .zip(answers)
        .map(|(host, answer)| {
            let (version, tmux) = match answer {
                Ok(v) => (Some(v.version), v.tmux),
                Err(e) => (None, Some(format!("unreachable: {e}"))),
            };
            (host.name().to_owned(), version, tmux)
        })
        .collect();
    let text = if args.json {
        json_text(&json!({
            "agentgate": crate::VERSION,
            "hosts": hosts.iter().map(|(name, version, tmux)| json!({
                "host": name, "hostctl": version, "tmux": tmux,
            })).collect::<Vec<_>>(),
        }))
    } else {
        let mut text = format!("agentgate {}\n", crate::VERSION);
        for (name, version, tmux) in &hosts {
            text.push_str(&format!(
                "host {name}: hostctl {}, {}\n",
                version.as_deref().unwrap_or("?"),
                tmux.as_deref().unwrap_or("tmux not found")
            ));
        }
        text
    };
    io.write_out(&text).await;
    Ok(exit::OK)
}
