//! `host key | add | list | info | check | remove | discover`: the machines that run agents.
//! One file per subcommand; this one holds their arguments and `host key`.

mod add;
mod check;
mod discover;
mod list;
mod remove;

use add::{add, host_name_for};
use check::check;
use discover::discover;
use list::{agent_count, host_json, info, list};
use remove::remove;

use std::sync::Arc;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::output::{HostJson, to_json};
use super::output::{age, json_text, table};
use super::{Caller, CommandError, CommandIo, CommandResult, exit, require_admin};
use crate::Gateway;
use crate::agents::reconcile;
use crate::hosts::remote::enrol;
use crate::hosts::remote::leg::{KeyCheck, Target, fingerprint};
use crate::hosts::{HostError, Hosts, LOCAL_HOST};
use crate::model::AgentStatus;
use crate::store::{HostRecord, Store, StoreError};
use crate::tailscale::Tailnet;

#[derive(Debug, Args)]
pub struct HostArgs {
    #[command(subcommand)]
    pub command: HostCommand,
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Print the gateway's public key, for the host user's ~/.ssh/authorized_keys.
    Key,
    /// Add a host: pin its key, check tmux, install hostctl on it.
    #[command(
        after_help = "Examples:\n  ssh gw host key | ssh me@build-box 'cat >> ~/.ssh/authorized_keys'\n  ssh gw host add build-box 100.64.0.7 --user me\n  ssh gw host add gpu --tailscale gpu-box --user me\n  ssh gw host add vm2 vm2.example.net --port 2200 --host-key \"$(ssh-keyscan -t ed25519 vm2.example.net | cut -d' ' -f2-)\""
    )]
    Add(AddArgs),
    /// List hosts: address, status, agents, hostctl version.
    #[command(visible_alias = "ls")]
    List(JsonFlag),
    /// Show one host in detail.
    Info(HostName),
    /// Diagnose a host step by step: network, host key, login, tmux, hostctl, disk.
    Check(HostName),
    /// Forget a host (nothing on the host is touched).
    #[command(visible_alias = "rm")]
    Remove(RemoveArgs),
    /// Tailnet peers that are not hosts yet (by tag); --add adds them.
    #[command(
        after_help = "Examples:\n  ssh gw host discover\n  ssh gw host discover --tag tag:gpu --add --user me"
    )]
    Discover(DiscoverArgs),
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Only peers with this ACL tag.
    #[arg(long, default_value = "tag:agent-host", value_name = "TAG")]
    pub tag: String,
    /// Add every online peer found, named after its MagicDNS short name.
    #[arg(long)]
    pub add: bool,
    /// With --add: the user to log in as on each host (default: root, or the gateway's own user).
    #[arg(long, short = 'u', requires = "add")]
    pub user: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The host's name in the gateway: lowercase letters, digits and '-'.
    pub name: String,
    /// Its address: a name or an IP (often its Tailscale address).
    #[arg(required_unless_present = "tailscale")]
    pub address: Option<String>,
    /// A tailnet peer instead of an address: its host name, MagicDNS name or tailnet IP. The
    /// gateway reaches it at its tailnet address and follows that address when it changes.
    #[arg(long, value_name = "PEER", conflicts_with = "address")]
    pub tailscale: Option<String>,
    /// The user to log in as on the host (default: root, or the gateway's own user).
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// The port sshd listens on.
    #[arg(long, short = 'p', default_value_t = 22)]
    pub port: u16,
    /// The host's public key ('ssh-ed25519 AAAA...'); without it the first key seen is
    /// trusted (and printed).
    #[arg(long, value_name = "LINE")]
    pub host_key: Option<String>,
    /// Print the new host as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HostName {
    /// The host's name.
    pub name: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The host's name.
    pub name: String,
    /// Remove it even though agents run there: the gateway forgets them, they keep running.
    #[arg(long)]
    pub force: bool,
}

pub async fn run(
    gw: &Arc<Gateway>,
    caller: &Caller,
    args: HostArgs,
    io: &mut CommandIo,
) -> CommandResult {
    match args.command {
        HostCommand::Key => {
            io.write_out(&format!("{}\n", client_key_line(&gw.client_key)?))
                .await;
            Ok(exit::OK)
        }
        HostCommand::List(args) => list(&gw.store, &gw.tailnet, caller, args.json, io).await,
        HostCommand::Info(args) => info(&gw.store, &gw.tailnet, caller, args, io).await,
        HostCommand::Add(args) => {
            require_admin(caller, "add hosts")?;
            add(gw, args, io).await
        }
        HostCommand::Check(args) => {
            require_admin(caller, "check hosts")?;
            check(gw, args, io).await
        }
        HostCommand::Remove(args) => {
            require_admin(caller, "remove hosts")?;
            remove(&gw.store, &gw.hosts, args, io).await
        }
        HostCommand::Discover(args) => {
            require_admin(caller, "discover hosts")?;
            discover(gw, args, io).await
        }
    }
}

fn client_key_line(key: &russh::keys::PrivateKey) -> Result<String, CommandError> {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "gateway".into());
    let mut public = key.public_key().clone();
    public.set_comment(format!("agentgate@{host}"));
    public
        .to_openssh()
        .map_err(|e| CommandError::failed(format!("cannot print the gateway's key: {e}")))
}

fn default_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".into())
}

async fn host_record(store: &Store, name: &str) -> Result<HostRecord, CommandError> {
    store.host(name).await?.ok_or_else(|| {
        CommandError::failed(format!("no host named '{name}'"))
            .hint("see the hosts with: ssh gw host list")
    })
}
