//! Diagnosing a host step by step (`host check`, `doctor`): reachable, host key, login, tmux,
//! hostctl, disk, the tailnet, each with what to do when it fails. It sits beside the
//! transport it exercises; the control commands only print its steps.

use std::time::{Duration, Instant};

use tokio_util::task::TaskTracker;

use super::install::{self, Probe};
use super::leg::{self, KeyCheck, LegSettings, Target, fingerprint};
use crate::hosts::{Host, HostError};
use crate::store::HostRecord;
use crate::tailscale::Tailnet;

/// What diagnosing a remote host uses: how to connect, the time limits, and the tailnet.
pub struct Diagnostics<'a> {
    pub leg: LegSettings,
    pub tasks: &'a TaskTracker,
    pub tailnet: &'a Tailnet,
    pub connect_timeout: Duration,
    pub call_timeout: Duration,
    pub ping_timeout: Duration,
}

/// One step of `host check`.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    pub fix: Option<String>,
}

/// The steps of `doctor` and `host check local`: hostctl beside the gateway, and tmux.
pub async fn local(local: Result<Host, HostError>) -> Vec<Step> {
    let mut steps = Vec::new();
    match local {
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

/// The steps of `host check NAME` for a host reached over SSH, in order; the first that
/// fails ends the list (those after it could not be tried).
pub async fn remote(d: &Diagnostics<'_>, h: &HostRecord) -> Vec<Step> {
    let mut steps = Vec::new();
    // 0. The tailnet, for a host added by tailnet name: then the SSH steps all the same.
    if h.tailscale_id.is_some() {
        steps.push(tailnet_step(d, h).await);
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
    let limit = d.connect_timeout;
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
    let conn = match leg::connect(&target, KeyCheck::Pinned(pinned.clone()), &d.leg).await {
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
    let limit = d.call_timeout;
    match install::probe(&conn, d.tasks, limit).await {
        Ok(probe) => {
            steps.push(tmux_step(&probe));
            steps.push(hostctl_step(d, &conn, &probe, h, limit).await);
            steps.push(disk_step(&probe));
        }
        Err(e) => steps.push(Step {
            name: "probe",
            ok: false,
            detail: e.to_string(),
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
    d: &Diagnostics<'_>,
    conn: &leg::Connection,
    probe: &Probe,
    h: &HostRecord,
    limit: Duration,
) -> Step {
    let path = h
        .hostctl_path
        .clone()
        .unwrap_or_else(|| probe.hostctl_path());
    match install::hostctl_version(conn, d.tasks, &path, limit).await {
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

/// `host check`'s first step for a tailnet host: what the tailnet says, and a ping.
async fn tailnet_step(d: &Diagnostics<'_>, h: &HostRecord) -> Step {
    let fail = |detail: String, fix: &str| Step {
        name: "tailnet",
        ok: false,
        detail,
        fix: Some(fix.to_owned()),
    };
    let name = h.tailscale_name.as_deref().unwrap_or_default();
    let view = d.tailnet.refresh().await;
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
    let limit = d.ping_timeout;
    let offline = if peer.online {
        String::new()
    } else {
        format!(
            "; the tailnet lists it offline{}",
            peer.last_seen
                .map(|t| format!(" since {}", crate::model::Timestamp::from(t)))
                .unwrap_or_default()
        )
    };
    match d.tailnet.api().ping(ip, limit).await {
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
