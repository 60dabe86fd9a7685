//! `ssh-config [--prefix P] [--host-name H] [--port N] [--json]`: an OpenSSH config block with
//! one `Host` per agent, so `ssh agent-NAME`, scp, rsync and VS Code's host list work by name.

use clap::Args;
use serde_json::json;

use super::output::json_text;
use super::{Caller, CommandIo, CommandResult, exit};
use crate::config::Config;
use crate::store::Store;

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  ssh gw ssh-config >> ~/.ssh/config && ssh agent-fix-ci")]
pub struct SshConfigArgs {
    /// Name the hosts PREFIX + agent name (default from the gateway's config: agent-).
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// The gateway's address as this client reaches it.
    #[arg(long, value_name = "HOST")]
    pub host_name: Option<String>,
    /// The gateway's port as this client reaches it.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(
    config: &Config,
    store: &Store,
    caller: &Caller,
    args: SshConfigArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let settings = &config.ssh_config;
    let prefix = args.prefix.unwrap_or_else(|| settings.prefix.clone());
    if prefix
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '*' | '?' | '!' | '#' | '"'))
    {
        return Err(super::CommandError::usage(format!(
            "--prefix '{prefix}' holds a character ssh_config patterns treat specially"
        )));
    }
    let listen = config.server.listen;
    let host_name = args
        .host_name
        .or_else(|| settings.host_name.clone())
        .unwrap_or_else(|| {
            if listen.ip().is_unspecified() {
                this_host_name()
            } else {
                listen.ip().to_string()
            }
        });
    let port = args.port.or(settings.port).unwrap_or(listen.port());
    let agents = crate::agents::access::agents(store, &caller.operator).await?;
    let text = if args.json {
        json_text(&serde_json::Value::Array(
            agents
                .iter()
                .map(|a| json!({ "host": format!("{prefix}{}", a.name), "host_name": host_name, "port": port, "user": a.name }))
                .collect(),
        ))
    } else {
        let mut text =
            format!("# agentgate at {host_name}:{port}: one Host per agent (ssh gw ssh-config)\n");
        for agent in &agents {
            text.push_str(&format!(
                "\nHost {prefix}{name}\n    HostName {host_name}\n    Port {port}\n    User {name}\n",
                name = agent.name
            ));
        }
        text
    };
    io.write_out(&text).await;
    Ok(exit::OK)
}

fn this_host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned())
}
