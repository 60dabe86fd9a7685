//! `host list` and `host info NAME`: the hosts as the gateway knows them, with what the tailnet
//! says of each tailnet host.

use super::*;

pub(super) async fn agent_count(store: &Store, host: &str) -> Result<usize, StoreError> {
    Ok(store.agents_on_host(host).await?.len())
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
                    .map(crate::model::Timestamp::from)
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
            .and_then(|s| crate::model::Timestamp::parse(s).ok())
            .map(|s| format!(", seen {} ago", age(s)))
            .unwrap_or_default();
        format!("offline {os}{seen}")
    }
}

pub(super) fn host_json(h: &HostRecord, agents: usize, view: &crate::tailscale::View) -> Value {
    let key_fp = h
        .host_key
        .as_deref()
        .and_then(|k| russh::keys::PublicKey::from_openssh(k).ok())
        .map(|k| fingerprint(&k));
    to_json(&HostJson {
        name: &h.name,
        address: h.address.as_deref(),
        port: h.address.as_ref().map(|_| h.port),
        user: h.user.as_deref(),
        status: h.status,
        agents,
        hostctl_version: h.hostctl_version.as_deref(),
        hostctl_path: h.hostctl_path.as_deref(),
        platform: h.platform.as_deref(),
        host_key: h.host_key.as_deref(),
        host_key_fingerprint: key_fp,
        last_contact: h.last_contact,
        last_error: h.last_error.as_deref(),
        created_at: h.created_at,
        tailnet: tailnet_json(h, view),
    })
}

/// Hosts, with the number of agents on each the caller may see.
pub(super) async fn list(
    store: &Store,
    tailnet: &Tailnet,
    caller: &Caller,
    json: bool,
    io: &mut CommandIo,
) -> CommandResult {
    let view = tailnet.view();
    let hosts = store.hosts().await?;
    let agents = crate::agents::access::agents(store, &caller.operator).await?;
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

pub(super) async fn info(
    store: &Store,
    tailnet: &Tailnet,
    caller: &Caller,
    args: HostName,
    io: &mut CommandIo,
) -> CommandResult {
    let h = host_record(store, &args.name).await?;
    let mut agents = crate::agents::access::agents(store, &caller.operator).await?;
    agents.retain(|a| a.host == h.name);
    let value = host_json(&h, agents.len(), &tailnet.view());
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
