//! `host key | add | list | info | check | remove`: the machines that run agents.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::output::{age, json_text, table};
use super::{Caller, CommandError, CommandIo, CommandResult, exit, require_admin};
use crate::Gateway;
use crate::hosts::remote::install::{self, Probe};
use crate::hosts::remote::leg::{self, KeyCheck, Target, fingerprint};
use crate::hosts::{HostError, LOCAL_HOST, reconciler};
use crate::store::{AgentStatus, HostRecord, StoreError};

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
            io.write_out(&format!("{}\n", client_key_line(gw)?)).await;
            Ok(exit::OK)
        }
        HostCommand::List(args) => list(gw, caller, args.json, io).await,
        HostCommand::Info(args) => info(gw, caller, args, io).await,
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
            remove(gw, args, io).await
        }
        HostCommand::Discover(args) => {
            require_admin(caller, "discover hosts")?;
            discover(gw, args, io).await
        }
    }
}

fn client_key_line(gw: &Gateway) -> Result<String, CommandError> {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "gateway".into());
    let mut public = gw.client_key.public_key().clone();
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

async fn add(gw: &Arc<Gateway>, args: AddArgs, io: &mut CommandIo) -> CommandResult {
    let name = args.name.clone();
    if name == LOCAL_HOST {
        return Err(CommandError::usage(
            "'local' is the gateway's own machine; it always exists",
        ));
    }
    if let Err(reason) = hostctl::api::validate_name("host", &name) {
        return Err(CommandError::usage(reason)
            .hint("host names use lowercase letters, digits and '-', like build-box"));
    }
    if gw.store.host(&name).await?.is_some() {
        return Err(
            CommandError::failed(format!("a host named '{name}' already exists")).hint(format!(
                "see it with: ssh gw host info {name}; to add it again: ssh gw host remove {name}"
            )),
        );
    }
    let check = match &args.host_key {
        Some(line) => KeyCheck::Pinned(
            crate::auth::parse_public_key_line(line)
                .ok()
                .and_then(|k| russh::keys::PublicKey::from_openssh(&k.openssh).ok())
                .ok_or_else(|| {
                    CommandError::usage("--host-key is not an OpenSSH public key").hint(
                        "give the key as ssh-keyscan prints it, without the host name: 'ssh-ed25519 AAAA...'",
                    )
                })?,
        ),
        None => KeyCheck::FirstUse,
    };
    let peer = match &args.tailscale {
        Some(peer) => Some(resolve_peer(gw, peer).await?),
        None => None,
    };
    let address = match (&peer, &args.address) {
        (Some((_, address)), _) => address.clone(),
        (None, Some(address)) => address.clone(),
        (None, None) => {
            return Err(CommandError::usage(
                "give the host's ADDRESS, or --tailscale PEER",
            ));
        }
    };
    let target = Target {
        name: name.clone(),
        address,
        port: args.port,
        user: args.user.clone().unwrap_or_else(default_user),
    };
    let conn = leg::connect(&target, check, &gw.leg_settings())
        .await
        .map_err(|e| connect_error(gw, &target, e))?;
    let limit = gw.config.hosts.call_timeout;
    let probe = install::probe(&conn, &gw.tasks, limit).await.map_err(|e| {
        CommandError::failed(format!("cannot ask {} what it is: {e}", target.display()))
    })?;
    let Some(tmux) = probe.tmux.clone() else {
        return Err(
            CommandError::failed(format!("tmux is not installed on {}", target.display())).hint(
                "install it there (apt install tmux, dnf install tmux, brew install tmux), then run host add again",
            ),
        );
    };
    let (version, installed) = install::ensure_hostctl(
        &conn,
        &gw.tasks,
        &probe,
        &gw.companion_hostctl(),
        gw.config.hosts.create_timeout,
    )
    .await
    .map_err(CommandError::failed)?;
    let _ = conn
        .handle
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    let key_line = conn
        .host_key
        .to_openssh()
        .map_err(|e| CommandError::failed(format!("cannot encode the host key: {e}")))?;
    let record = HostRecord {
        name: name.clone(),
        address: Some(target.address.clone()),
        port: target.port,
        user: Some(target.user.clone()),
        host_key: Some(key_line),
        status: crate::store::HostStatus::Reachable,
        hostctl_version: Some(version.version.clone()),
        hostctl_path: Some(probe.hostctl_path()),
        platform: Some(probe.platform.clone()),
        last_contact: Some(crate::store::now()),
        last_error: None,
        created_at: crate::store::now(),
        tailscale_id: peer.as_ref().map(|(p, _)| p.id.clone()),
        tailscale_name: args.tailscale.clone(),
    };
    match gw.store.insert_host(&record).await {
        Ok(()) => {}
        Err(StoreError::Conflict(m)) => return Err(CommandError::failed(m)),
        Err(e) => return Err(e.into()),
    }
    let host = gw
        .remote_host(&record)
        .map_err(|e| CommandError::failed(e.to_string()))?;
    gw.hosts.insert(host);
    // Agents already on the host (added before, under another gateway) are adopted now.
    if let Ok(host) = gw.hosts.get(&name) {
        let _ = reconciler::reconcile_host(gw, &host).await;
    }
    let key_fp = fingerprint(&conn.host_key);
    if args.json {
        let record = gw.store.host(&name).await?.unwrap_or(record);
        io.write_out(&json_text(&host_json(
            &record,
            agent_count(gw, &name).await?,
            &gw.tailnet.view(),
        )))
        .await;
    } else {
        let trust = if args.host_key.is_some() {
            "as given"
        } else {
            "trusted on first use; check it"
        };
        let hostctl = if installed {
            format!(
                "installed hostctl {} at {}",
                version.version,
                probe.hostctl_path()
            )
        } else {
            format!(
                "hostctl {} already at {}",
                version.version,
                probe.hostctl_path()
            )
        };
        io.write_out(&format!(
            "added host '{name}' ({}), {} with {tmux}\nhost key {key_fp} ({trust})\n{hostctl}\n",
            target.display(),
            probe.platform,
        ))
        .await;
    }
    Ok(exit::OK)
}

/// Finds the tailnet peer `name` names (host name, MagicDNS name or tailnet IP) in a fresh
/// status; returns it with the address to reach it at.
async fn resolve_peer(
    gw: &Gateway,
    name: &str,
) -> Result<(crate::tailscale::PeerStatus, String), CommandError> {
    let view = gw.tailnet.refresh().await;
    let status = view.running().map_err(|why| {
        CommandError::failed(format!("cannot look up '{name}' on the tailnet: {why}"))
            .hint("or add the host by its address: ssh gw host add NAME ADDRESS")
    })?;
    let found: Vec<&crate::tailscale::PeerStatus> = status
        .peers()
        .into_iter()
        .filter(|p| p.is_named(name))
        .collect();
    let peer = match found.as_slice() {
        [] => {
            return Err(
                CommandError::failed(format!("no tailnet peer is named '{name}'")).hint(
                    "give its host name, MagicDNS name or tailnet IP, as `tailscale status` shows them",
                ),
            );
        }
        [one] => *one,
        many => {
            let names: Vec<&str> = many.iter().map(|p| p.dns()).collect();
            return Err(CommandError::failed(format!(
                "'{name}' names {} tailnet peers: {}",
                many.len(),
                names.join(", ")
            ))
            .hint("give its MagicDNS name or tailnet IP instead"));
        }
    };
    if let Some(why) = crate::tailscale::verdict::peer_problem(Some(peer), name) {
        return Err(CommandError::failed(why).hint("add it once it is online"));
    }
    let address = peer.address().ok_or_else(|| {
        CommandError::failed(format!("tailnet peer '{name}' has no tailnet address"))
    })?;
    Ok((peer.clone(), address.to_string()))
}

/// A host name for a tailnet peer: its MagicDNS short name (else its host name), lowercase,
/// with anything but letters, digits and '-' made '-'.
fn host_name_for(peer: &crate::tailscale::PeerStatus) -> String {
    let base = if peer.short_name().is_empty() {
        peer.host_name.as_str()
    } else {
        peer.short_name()
    };
    let name: String = base
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name.trim_matches('-').to_owned()
}

async fn discover(gw: &Arc<Gateway>, args: DiscoverArgs, io: &mut CommandIo) -> CommandResult {
    let view = gw.tailnet.refresh().await;
    let status = view
        .running()
        .map_err(|why| CommandError::failed(format!("cannot list the tailnet's peers: {why}")))?;
    let known: Vec<String> = gw
        .store
        .hosts()
        .await?
        .into_iter()
        .filter_map(|h| h.tailscale_id)
        .collect();
    let found: Vec<&crate::tailscale::PeerStatus> = status
        .peers()
        .into_iter()
        .filter(|p| p.tags.contains(&args.tag))
        .filter(|p| !p.sharee_node && !known.contains(&p.id))
        .collect();
    let state = |p: &crate::tailscale::PeerStatus| {
        if p.expired {
            "expired".to_owned()
        } else if p.online {
            "online".to_owned()
        } else {
            "offline".to_owned()
        }
    };
    if !args.add {
        if args.json {
            let all: Vec<Value> = found
                .iter()
                .map(|p| {
                    json!({
                        "name": host_name_for(p), "peer": p.dns(), "id": p.id,
                        "addresses": p.tailscale_ips, "state": state(p), "os": p.os,
                        "tags": p.tags, "path": p.path(),
                    })
                })
                .collect();
            io.write_out(&json_text(&Value::Array(all))).await;
        } else if found.is_empty() {
            io.write_err(&format!(
                "no tailnet peer tagged {} that is not a host already\n",
                args.tag
            ))
            .await;
        } else {
            let rows: Vec<Vec<String>> = found
                .iter()
                .map(|p| {
                    vec![
                        host_name_for(p),
                        p.dns().to_owned(),
                        p.address().map(|a| a.to_string()).unwrap_or_default(),
                        state(p),
                        p.os.clone(),
                        p.tags.join(","),
                    ]
                })
                .collect();
            io.write_out(&table(
                &["NAME", "PEER", "ADDRESS", "STATE", "OS", "TAGS"],
                &rows,
            ))
            .await;
        }
        return Ok(exit::OK);
    }
    // --add: every online peer, each on its own; one that fails does not stop the others.
    let mut failed = 0;
    let mut added = 0;
    for p in found {
        let name = host_name_for(p);
        if !p.reachable() {
            io.write_err(&format!("skipped {} ({}): {}\n", p.dns(), name, state(p)))
                .await;
            continue;
        }
        let args = AddArgs {
            name: name.clone(),
            address: None,
            tailscale: Some(p.dns().to_owned()),
            user: args.user.clone(),
            port: 22,
            host_key: None,
            json: false,
        };
        match add(gw, args, io).await {
            Ok(_) => added += 1,
            Err(e) => {
                failed += 1;
                let hint = e.hint.map(|h| format!("\n  hint: {h}")).unwrap_or_default();
                io.write_err(&format!(
                    "cannot add {} as '{name}': {}{hint}\n",
                    p.dns(),
                    e.message
                ))
                .await;
            }
        }
    }
    if added == 0 && failed == 0 {
        io.write_err(&format!(
            "no online tailnet peer tagged {} that is not a host already\n",
            args.tag
        ))
        .await;
    }
    Ok(if failed > 0 { exit::FAILED } else { exit::OK })
}

/// `host check`'s first step for a tailnet host: what the tailnet says, and a ping.
async fn tailnet_step(gw: &Gateway, h: &HostRecord) -> Step {
    let fail = |detail: String, fix: &str| Step {
        name: "tailnet",
        ok: false,
        detail,
        fix: Some(fix.to_owned()),
    };
    let name = h.tailscale_name.as_deref().unwrap_or_default();
    let view = gw.tailnet.refresh().await;
    let status = match view.running() {
        Ok(s) => s.clone(),
        Err(why) => {
            return fail(
                format!("cannot ask tailscaled: {why}"),
                "run tailscaled on the gateway's machine and log it in (tailscale up)",
            );
        }
    };
    let Some(peer) = h.tailscale_id.as_ref().and_then(|id| status.peer_by_id(id)) else {
        return fail(
            format!("tailnet peer '{name}' is no longer in this node's tailnet"),
            "check the machine in the tailnet's admin console, or remove the host and add it again",
        );
    };
    if peer.expired {
        return fail(
            format!("the key of tailnet peer '{name}' has expired"),
            "log the machine in again (tailscale up on it)",
        );
    }
    let Some(ip) = peer.address() else {
        return fail(
            format!("tailnet peer '{name}' has no tailnet address"),
            "check `tailscale status` on the machine",
        );
    };
    let limit = gw.config.tailscale.ping_timeout;
    let offline = if peer.online {
        String::new()
    } else {
        format!(
            "; the tailnet lists it offline{}",
            peer.last_seen
                .map(|t| format!(" since {}", crate::store::format_time(t)))
                .unwrap_or_default()
        )
    };
    match gw.tailnet.api().ping(ip, limit).await {
        Ok(pong) if pong.err.is_empty() => Step {
            name: "tailnet",
            ok: true,
            detail: format!(
                "pong from {} ({ip}) via {} in {:.1} ms{offline}",
                peer.dns(),
                pong.path(),
                pong.latency_seconds * 1000.0
            ),
            fix: None,
        },
        Ok(pong) => fail(
            format!("ping {} ({ip}): {}", peer.dns(), pong.err),
            "check `tailscale status` on both machines",
        ),
        Err(crate::tailscale::LocalApiError::Timeout(_)) => fail(
            format!(
                "no pong from {} ({ip}) within {} s{offline}",
                peer.dns(),
                limit.as_secs()
            ),
            "start the machine and tailscaled on it; `tailscale status` there should show it connected",
        ),
        Err(e) => fail(
            format!("cannot ping {} ({ip}): {e}", peer.dns()),
            "check tailscaled on the gateway's machine",
        ),
    }
}

/// A connection failure as the operator should read it, with what to do.
fn connect_error(gw: &Gateway, target: &Target, e: HostError) -> CommandError {
    let message = e.to_string();
    match e {
        HostError::AuthRefused { .. } => {
            let key = client_key_line(gw).unwrap_or_default();
            CommandError::failed(message).hint(format!(
                "put the gateway's key in ~{user}/.ssh/authorized_keys on the host:\n  ssh gw host key | ssh {dest} 'cat >> ~/.ssh/authorized_keys'\nthe key: {key}",
                user = target.user,
                dest = target.display(),
            ))
        }
        HostError::HostKeyChanged { .. } => CommandError::failed(message).hint(
            "check the host's key out of band (ssh-keyscan on the host itself); if it did change, remove the host and add it again",
        ),
        _ => CommandError::failed(message)
            .hint(format!("see what fails with: ssh gw host check {}", target.name)),
    }
}

async fn agent_count(gw: &Gateway, host: &str) -> Result<usize, StoreError> {
    Ok(gw.store.agents_on_host(host).await?.len())
}

/// What the tailnet says of a tailnet host, for `host list` and `host info`.
fn tailnet_json(h: &HostRecord, view: &crate::tailscale::View) -> Value {
    let Some(id) = &h.tailscale_id else {
        return Value::Null;
    };
    let mut out = json!({ "peer": h.tailscale_name, "id": id });
    match view.running().map(|status| status.peer_by_id(id)) {
        Ok(Some(p)) => {
            out["dns_name"] = json!(p.dns());
            out["addresses"] = json!(p.tailscale_ips);
            out["online"] = json!(p.online);
            out["last_seen"] = json!(
                (!p.online)
                    .then_some(p.last_seen)
                    .flatten()
                    .map(crate::store::format_time)
            );
            out["os"] = json!(p.os);
            out["path"] = json!(p.path());
            out["tags"] = json!(p.tags);
            out["expired"] = json!(p.expired);
        }
        Ok(None) => out["error"] = json!("not in the tailnet"),
        Err(why) => out["error"] = json!(why),
    }
    out
}

/// One line on a tailnet host: `online linux direct 1.2.3.4:41641`, `offline, seen 3h ago`.
fn tailnet_text(t: &Value) -> String {
    if t.is_null() {
        return "-".into();
    }
    if let Some(e) = t["error"].as_str() {
        return format!("? ({e})");
    }
    let os = t["os"].as_str().unwrap_or_default();
    if t["online"] == true {
        format!("online {os} {}", t["path"].as_str().unwrap_or_default())
    } else {
        let seen = t["last_seen"]
            .as_str()
            .map(|s| format!(", seen {} ago", age(s)))
            .unwrap_or_default();
        format!("offline {os}{seen}")
    }
}

fn host_json(h: &HostRecord, agents: usize, view: &crate::tailscale::View) -> Value {
    let key_fp = h
        .host_key
        .as_deref()
        .and_then(|k| russh::keys::PublicKey::from_openssh(k).ok())
        .map(|k| fingerprint(&k));
    json!({
        "name": h.name,
        "address": h.address,
        "port": h.address.as_ref().map(|_| h.port),
        "user": h.user,
        "status": h.status,
        "agents": agents,
        "hostctl_version": h.hostctl_version,
        "hostctl_path": h.hostctl_path,
        "platform": h.platform,
        "host_key": h.host_key,
        "host_key_fingerprint": key_fp,
        "last_contact": h.last_contact,
        "last_error": h.last_error,
        "created_at": h.created_at,
        "tailnet": tailnet_json(h, view),
    })
}

/// Hosts, with the number of agents on each the caller may see.
async fn list(gw: &Arc<Gateway>, caller: &Caller, json: bool, io: &mut CommandIo) -> CommandResult {
    let view = gw.tailnet.view();
    let hosts = gw.store.hosts().await?;
    let agents = crate::agents::access::agents(&gw.store, &caller.operator).await?;
    let count = |host: &str| agents.iter().filter(|a| a.host == host).count();
    if json {
        let all: Vec<Value> = hosts
            .iter()
            .map(|h| host_json(h, count(&h.name), &view))
            .collect();
        io.write_out(&json_text(&Value::Array(all))).await;
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            let running = agents
                .iter()
                .filter(|a| a.host == h.name && a.status == AgentStatus::Running)
                .count();
            vec![
                h.name.clone(),
                address_text(h),
                h.status.as_str().to_owned(),
                format!("{}/{}", running, count(&h.name)),
                h.hostctl_version.clone().unwrap_or_else(|| "-".into()),
                h.last_contact
                    .as_deref()
                    .map_or_else(|| "never".into(), |t| format!("{} ago", age(t))),
                tailnet_text(&tailnet_json(h, &view)),
            ]
        })
        .collect();
    io.write_out(&table(
        &[
            "NAME",
            "ADDRESS",
            "STATUS",
            "RUNNING/AGENTS",
            "HOSTCTL",
            "LAST CONTACT",
            "TAILNET",
        ],
        &rows,
    ))
    .await;
    Ok(exit::OK)
}

fn address_text(h: &HostRecord) -> String {
    match (&h.user, &h.address) {
        (Some(user), Some(address)) if h.port == 22 => format!("{user}@{address}"),
        (Some(user), Some(address)) => format!("{user}@{address}:{}", h.port),
        _ => "(this machine)".into(),
    }
}

async fn host_record(gw: &Gateway, name: &str) -> Result<HostRecord, CommandError> {
    gw.store.host(name).await?.ok_or_else(|| {
        CommandError::failed(format!("no host named '{name}'"))
            .hint("see the hosts with: ssh gw host list")
    })
}

async fn info(
    gw: &Arc<Gateway>,
    caller: &Caller,
    args: HostName,
    io: &mut CommandIo,
) -> CommandResult {
    let h = host_record(gw, &args.name).await?;
    let mut agents = crate::agents::access::agents(&gw.store, &caller.operator).await?;
    agents.retain(|a| a.host == h.name);
    let value = host_json(&h, agents.len(), &gw.tailnet.view());
    if args.json {
        io.write_out(&json_text(&value)).await;
        return Ok(exit::OK);
    }
    let field = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut text = String::new();
    for (label, key) in [
        ("name", "name"),
        ("status", "status"),
        ("platform", "platform"),
        ("hostctl", "hostctl_version"),
        ("hostctl path", "hostctl_path"),
        ("host key", "host_key_fingerprint"),
        ("last contact", "last_contact"),
        ("last error", "last_error"),
        ("added", "created_at"),
    ] {
        if key == "last_error" && !value["tailnet"].is_null() {
            text.push_str(&format!(
                "{:<13} {} ({})\n",
                "tailnet",
                tailnet_text(&value["tailnet"]),
                value["tailnet"]["peer"].as_str().unwrap_or_default()
            ));
        }
        text.push_str(&format!("{label:<13} {}\n", field(&value[key])));
        if key == "name" {
            text.push_str(&format!("{:<13} {}\n", "address", address_text(&h)));
        }
    }
    let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
    text.push_str(&format!(
        "{:<13} {}\n",
        "agents",
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        }
    ));
    io.write_out(&text).await;
    Ok(exit::OK)
}

async fn remove(gw: &Arc<Gateway>, args: RemoveArgs, io: &mut CommandIo) -> CommandResult {
    if args.name == LOCAL_HOST {
        return Err(CommandError::usage(
            "'local' is the gateway's own machine and cannot be removed",
        ));
    }
    let h = host_record(gw, &args.name).await?;
    let agents = gw.store.agents_on_host(&h.name).await?;
    if !agents.is_empty() && !args.force {
        let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
        return Err(CommandError::failed(format!(
            "host '{}' has {} agent(s): {}",
            h.name,
            agents.len(),
            names.join(", ")
        ))
        .hint(format!(
            "destroy or migrate them first, or forget them with: ssh gw host remove {} --force (they keep running on the host)",
            h.name
        )));
    }
    if let Some(crate::hosts::Host::Remote(host)) = gw.hosts.remove(&h.name) {
        host.reset().await;
    }
    let forgotten = gw.store.delete_host(&h.name).await?;
    let mut text = format!("removed host '{}'", h.name);
    if forgotten > 0 {
        text.push_str(&format!(
            "; forgot {forgotten} agent(s), which keep running there"
        ));
    }
    io.write_out(&format!("{text}\n")).await;
    Ok(exit::OK)
}

/// One step of `host check`.
pub(super) struct Step {
    pub(super) name: &'static str,
    pub(super) ok: bool,
    pub(super) detail: String,
    pub(super) fix: Option<String>,
}

async fn check(gw: &Arc<Gateway>, args: HostName, io: &mut CommandIo) -> CommandResult {
    let h = host_record(gw, &args.name).await?;
    let steps = if h.name == LOCAL_HOST {
        check_local(gw).await
    } else {
        check_remote(gw, &h).await
    };
    let healthy = steps.iter().all(|s| s.ok);
    if args.json {
        let value = json!({
            "host": h.name,
            "ok": healthy,
            "steps": steps.iter().map(|s| json!({
                "step": s.name, "ok": s.ok, "detail": s.detail, "fix": s.fix,
            })).collect::<Vec<_>>(),
        });
        io.write_out(&json_text(&value)).await;
    } else {
        let mut text = String::new();
        for s in &steps {
            text.push_str(&format!(
                "{} {:<9} {}\n",
                if s.ok { "ok  " } else { "FAIL" },
                s.name,
                s.detail
            ));
            if let Some(fix) = &s.fix {
                text.push_str(&format!("               fix: {fix}\n"));
            }
        }
        text.push_str(if healthy {
            "the host is healthy\n"
        } else {
            "the host is not usable until the failing step is fixed\n"
        });
        io.write_out(&text).await;
    }
    Ok(if healthy { exit::OK } else { exit::FAILED })
}

pub(super) async fn check_local(gw: &Arc<Gateway>) -> Vec<Step> {
    let mut steps = Vec::new();
    match gw.hosts.get(LOCAL_HOST) {
        Ok(host) => match host.version().await {
            Ok(v) => {
                steps.push(Step {
                    name: "hostctl",
                    ok: true,
                    detail: format!("hostctl {} (API {})", v.version, v.api_version),
                    fix: None,
                });
                steps.push(Step {
                    name: "tmux",
                    ok: v.tmux.is_some(),
                    detail: v.tmux.unwrap_or_else(|| "not found".into()),
                    fix: Some("install tmux on this machine".into()),
                });
            }
            Err(e) => steps.push(Step {
                name: "hostctl",
                ok: false,
                detail: e.to_string(),
                fix: Some("install hostctl beside agentgate, or set hosts.hostctl".into()),
            }),
        },
        Err(e) => steps.push(Step {
            name: "hostctl",
            ok: false,
            detail: e.to_string(),
            fix: None,
        }),
    }
    for s in &mut steps {
        if s.ok {
            s.fix = None;
        }
    }
    steps
}

async fn check_remote(gw: &Arc<Gateway>, h: &HostRecord) -> Vec<Step> {
    let mut steps = Vec::new();
    // 0. The tailnet, for a host added by tailnet name: then the SSH steps all the same.
    if h.tailscale_id.is_some() {
        steps.push(tailnet_step(gw, h).await);
    }
    let (Some(address), Some(user)) = (h.address.clone(), h.user.clone()) else {
        steps.push(Step {
            name: "record",
            ok: false,
            detail: "the host has no address or user".into(),
            fix: Some("remove the host and add it again".into()),
        });
        return steps;
    };
    let target = Target {
        name: h.name.clone(),
        address,
        port: h.port,
        user,
    };
    // 1. TCP.
    let limit = gw.config.hosts.connect_timeout;
    let started = Instant::now();
    let dial = tokio::net::TcpStream::connect((target.address.as_str(), target.port));
    match tokio::time::timeout(limit, dial).await {
        Ok(Ok(_)) => steps.push(Step {
            name: "network",
            ok: true,
            detail: format!(
                "{}:{} accepts connections ({} ms)",
                target.address,
                target.port,
                started.elapsed().as_millis()
            ),
            fix: None,
        }),
        failure => {
            let why = match failure {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no answer within {} s", limit.as_secs()),
            };
            steps.push(Step {
                name: "network",
                ok: false,
                detail: format!(
                    "cannot connect to {}:{}: {why}",
                    target.address, target.port
                ),
                fix: Some(
                    "check that the host is up, on the tailnet, and that sshd listens on that port"
                        .into(),
                ),
            });
            return steps;
        }
    }
    // 2 and 3. Host key, then login.
    let pinned = h
        .host_key
        .as_deref()
        .and_then(|k| russh::keys::PublicKey::from_openssh(k).ok());
    let Some(pinned) = pinned else {
        steps.push(Step {
            name: "host key",
            ok: false,
            detail: "no pinned key is stored".into(),
            fix: Some("remove the host and add it again".into()),
        });
        return steps;
    };
    let conn = match leg::connect(
        &target,
        KeyCheck::Pinned(pinned.clone()),
        &gw.leg_settings(),
    )
    .await
    {
        Ok(conn) => {
            steps.push(Step {
                name: "host key",
                ok: true,
                detail: format!("matches the pinned key {}", fingerprint(&pinned)),
                fix: None,
            });
            steps.push(Step {
                name: "login",
                ok: true,
                detail: format!("the gateway's key logs in as {}", target.user),
                fix: None,
            });
            conn
        }
        Err(e) => {
            let (step, fix) = match &e {
                HostError::HostKeyChanged { .. } => (
                    "host key",
                    "check the host's key out of band; if it did change, remove the host and add it again".to_owned(),
                ),
                HostError::AuthRefused { .. } => {
                    steps.push(Step {
                        name: "host key",
                        ok: true,
                        detail: format!("matches the pinned key {}", fingerprint(&pinned)),
                        fix: None,
                    });
                    (
                        "login",
                        format!(
                            "ssh gw host key | ssh {} 'cat >> ~/.ssh/authorized_keys'",
                            target.display()
                        ),
                    )
                }
                _ => ("ssh", "see the gateway's log for the SSH error".to_owned()),
            };
            steps.push(Step {
                name: step,
                ok: false,
                detail: e.to_string(),
                fix: Some(fix),
            });
            return steps;
        }
    };
    // 4. tmux, 5. hostctl, 6. disk.
    let limit = gw.config.hosts.call_timeout;
    match install::probe(&conn, &gw.tasks, limit).await {
        Ok(probe) => {
            steps.push(tmux_step(&probe));
            steps.push(hostctl_step(gw, &conn, &probe, h, limit).await);
            steps.push(disk_step(&probe));
        }
        Err(e) => steps.push(Step {
            name: "probe",
            ok: false,
            detail: e,
            fix: Some("check that the user's shell runs commands (ssh HOST true)".into()),
        }),
    }
    let _ = conn
        .handle
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    steps
}

fn tmux_step(probe: &Probe) -> Step {
    match &probe.tmux {
        Some(v) => Step {
            name: "tmux",
            ok: true,
            detail: v.clone(),
            fix: None,
        },
        None => Step {
            name: "tmux",
            ok: false,
            detail: "tmux is not installed".into(),
            fix: Some("install tmux on the host (apt install tmux)".into()),
        },
    }
}

async fn hostctl_step(
    gw: &Gateway,
    conn: &leg::Connection,
    probe: &Probe,
    h: &HostRecord,
    limit: Duration,
) -> Step {
    let path = h
        .hostctl_path
        .clone()
        .unwrap_or_else(|| probe.hostctl_path());
    match install::hostctl_version(conn, &gw.tasks, &path, limit).await {
        Some(v) if v.api_version == hostctl::api::API_VERSION => Step {
            name: "hostctl",
            ok: true,
            detail: format!("hostctl {} at {path}", v.version),
            fix: None,
        },
        Some(v) => Step {
            name: "hostctl",
            ok: false,
            detail: format!(
                "hostctl {} at {path} speaks API {}, the gateway {}",
                v.version,
                v.api_version,
                hostctl::api::API_VERSION
            ),
            fix: Some(
                "remove the host and add it again: host add installs the matching hostctl".into(),
            ),
        },
        None => Step {
            name: "hostctl",
            ok: false,
            detail: format!("no working hostctl at {path}"),
            fix: Some(format!(
                "remove the host and add it again (host add installs hostctl); the host is {}",
                probe.platform
            )),
        },
    }
}

/// Below this, `host check` warns: agents' workspaces and logs need room.
const LOW_DISK_KIB: u64 = 1024 * 1024;

fn disk_step(probe: &Probe) -> Step {
    match probe.free_kib {
        Some(kib) => Step {
            name: "disk",
            ok: kib >= LOW_DISK_KIB,
            detail: format!("{} MiB free under {}", kib / 1024, probe.home),
            fix: (kib < LOW_DISK_KIB).then(|| format!("free some space under {}", probe.home)),
        },
        None => Step {
            name: "disk",
            ok: true,
            detail: format!("free space under {} not known (no df)", probe.home),
            fix: None,
        },
    }
}
