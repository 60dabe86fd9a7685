//! `version [--json]`: the gateway's version and each host's hostctl.

use std::sync::Arc;

use serde_json::json;

use super::output::json_text;
use super::{CommandIo, CommandResult, JsonArg, exit};
use crate::Gateway;

pub async fn run(gw: &Arc<Gateway>, args: JsonArg, io: &mut CommandIo) -> CommandResult {
    let mut hosts = Vec::new();
    for host in gw.hosts.all() {
        let (version, tmux) = match host.version().await {
            Ok(v) => (Some(v.version), v.tmux),
            Err(e) => (None, Some(format!("unreachable: {e}"))),
        };
        hosts.push((host.name().to_owned(), version, tmux));
    }
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
