//! `doctor [--json]`: the gateway's health in one look: the local host, every remote host as
//! last seen, and the local tailscaled (its state, version and tailnet).

use serde_json::json;

use super::output::json_text;
use super::{CommandIo, CommandResult, JsonArg, exit};
use crate::hosts::Hosts;
use crate::store::Store;
use crate::tailscale::Tailnet;
use crate::tailscale::{LocalApiError, View, backend_problem};

/// One finding: `ok`, `warn` (works, with a remark) or `fail` (something does not work).
struct Finding {
    level: &'static str,
    what: String,
    detail: String,
    fix: Option<String>,
}

pub async fn run(
    hosts: &Hosts,
    store: &Store,
    tailnet: &Tailnet,
    args: JsonArg,
    io: &mut CommandIo,
) -> CommandResult {
    let mut findings = vec![Finding {
        level: "ok",
        what: "gateway".into(),
        detail: format!("agentgate {}", crate::VERSION),
        fix: None,
    }];
    for step in crate::hosts::remote::diagnose::local(hosts.get(crate::hosts::LOCAL_HOST)).await {
        findings.push(Finding {
            level: if step.ok { "ok" } else { "fail" },
            what: format!("local {}", step.name),
            detail: step.detail,
            fix: step.fix,
        });
    }
    let hosts = store.hosts().await?;
    for h in hosts.iter().filter(|h| h.name != crate::hosts::LOCAL_HOST) {
        let reachable = h.status == crate::model::HostStatus::Reachable;
        findings.push(Finding {
            level: if reachable { "ok" } else { "fail" },
            what: format!("host {}", h.name),
            detail: if reachable {
                format!(
                    "reachable, hostctl {}",
                    h.hostctl_version.as_deref().unwrap_or("?")
                )
            } else {
                format!(
                    "unreachable: {}",
                    h.last_error.as_deref().unwrap_or("no answer")
                )
            },
            fix: (!reachable).then(|| format!("see what fails with: ssh gw host check {}", h.name)),
        });
    }
    let tailnet_hosts = hosts.iter().filter(|h| h.tailscale_id.is_some()).count();
    findings.push(tailscale_finding(&tailnet.refresh().await, tailnet_hosts));

    let healthy = findings.iter().all(|f| f.level != "fail");
    if args.json {
        let value = json!({
            "ok": healthy,
            "findings": findings.iter().map(|f| json!({
                "level": f.level, "what": f.what, "detail": f.detail, "fix": f.fix,
            })).collect::<Vec<_>>(),
        });
        io.write_out(&json_text(&value)).await;
    } else {
        let width = findings.iter().map(|f| f.what.len()).max().unwrap_or(0);
        let mut text = String::new();
        for f in &findings {
            let level = match f.level {
                "fail" => "FAIL",
                "warn" => "warn",
                _ => "ok  ",
            };
            text.push_str(&format!("{level} {:<width$}  {}\n", f.what, f.detail));
            if let Some(fix) = &f.fix {
                text.push_str(&format!("     {:<width$}  fix: {fix}\n", ""));
            }
        }
        io.write_out(&text).await;
    }
    Ok(if healthy { exit::OK } else { exit::FAILED })
}

/// tailscaled's state. Without tailscaled nothing fails unless hosts were added by tailnet
/// name: they are then reached by SSH alone, and their tailnet state is unknown.
fn tailscale_finding(view: &View, tailnet_hosts: usize) -> Finding {
    let level_if_needed = if tailnet_hosts > 0 { "fail" } else { "warn" };
    match view {
        View::Status(s) if s.backend_state == "Running" => {
            let (level, remark) = if s.tun {
                ("ok", String::new())
            } else {
                (
                    "warn",
                    "; userspace networking: tailnet addresses are not reachable from this machine's sockets".to_owned(),
                )
            };
            Finding {
                level,
                what: "tailscale".into(),
                detail: format!(
                    "tailscaled {} running, tailnet {}, this node {} ({} peers){remark}",
                    s.version,
                    s.tailnet_name().unwrap_or("?"),
                    s.self_node.dns(),
                    s.peer.len()
                ),
                fix: (!s.tun).then(|| "run tailscaled with a TUN device (without --tun=userspace-networking)".to_owned()),
            }
        }
        View::Status(s) => Finding {
            level: level_if_needed,
            what: "tailscale".into(),
            detail: format!("tailscaled {} is {}", s.version, s.backend_state),
            fix: Some(backend_problem(s)),
        },
        View::Unavailable(LocalApiError::NotRunning(path)) => Finding {
            level: level_if_needed,
            what: "tailscale".into(),
            detail: format!(
                "tailscaled is not running (nothing at {}): tailnet features are off",
                path.display()
            ),
            fix: Some(
                "install and start tailscale, or point tailscale.socket (serve --tailscale-socket) at its socket"
                    .into(),
            ),
        },
        View::Unavailable(e) => Finding {
            level: level_if_needed,
            what: "tailscale".into(),
            detail: e.to_string(),
            fix: Some("check tailscaled on the gateway's machine".into()),
        },
        View::Unknown => Finding {
            level: "warn",
            what: "tailscale".into(),
            detail: "tailscaled has not been asked yet".into(),
            fix: None,
        },
    }
}
