//! `host add NAME USER@ADDRESS` (or `--tailscale PEER`): enrols a host: its key pinned, a probe
//! of what it has, hostctl installed, and its record.

use super::*;

pub(super) async fn add(gw: &Arc<Gateway>, args: AddArgs, io: &mut CommandIo) -> CommandResult {
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
    let prepared = enrol::prepare(&gw.enrolment(), &target, check)
        .await
        .map_err(|e| enrol_error(gw, &target, e))?;
    let enrol::Prepared {
        host_key,
        host_key_line: key_line,
        probe,
        tmux,
        hostctl: version,
        installed,
    } = prepared;
    let record = HostRecord {
        name: name.clone(),
        address: Some(target.address.clone()),
        port: target.port,
        user: Some(target.user.clone()),
        host_key: Some(key_line),
        status: crate::model::HostStatus::Reachable,
        hostctl_version: Some(version.version.clone()),
        hostctl_path: Some(probe.hostctl_path()),
        platform: Some(probe.platform.clone()),
        last_contact: Some(crate::model::Timestamp::now()),
        last_error: None,
        created_at: crate::model::Timestamp::now(),
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
        let _ = reconcile::reconcile_host(gw, &host).await;
    }
    let key_fp = fingerprint(&host_key);
    if args.json {
        let record = gw.store.host(&name).await?.unwrap_or(record);
        io.write_out(&json_text(&host_json(
            &record,
            agent_count(&gw.store, &name).await?,
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
pub(super) fn host_name_for(peer: &crate::tailscale::PeerStatus) -> String {
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

/// Why enrolling failed, as the operator should read it, with what to do.
fn enrol_error(gw: &Gateway, target: &Target, e: enrol::EnrolError) -> CommandError {
    match e {
        enrol::EnrolError::Connect(e) => connect_error(gw, target, e),
        e @ enrol::EnrolError::NoTmux { .. } => CommandError::failed(e.to_string()).hint(
            "install it there (apt install tmux, dnf install tmux, brew install tmux), then run host add again",
        ),
        e => CommandError::failed(e.to_string()),
    }
}

/// A connection failure as the operator should read it, with what to do.
fn connect_error(gw: &Gateway, target: &Target, e: HostError) -> CommandError {
    let message = e.to_string();
    match e {
        HostError::AuthRefused { .. } => {
            let key = client_key_line(&gw.client_key).unwrap_or_default();
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
