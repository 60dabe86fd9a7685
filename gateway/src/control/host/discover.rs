//! `host discover --tag TAG`: adds the tailnet peers that carry a tag as hosts.

use super::*;

pub(super) async fn discover(
    gw: &Arc<Gateway>,
    args: DiscoverArgs,
    io: &mut CommandIo,
) -> CommandResult {
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
