//! A stand-in for tailscaled's LocalAPI (no tailscaled can run here): HTTP/1.1 on a unix
//! socket with tailscaled's wire rules, built from the real JSON shapes in
//! `tests/fixtures/tailscale/`. A test adds peers and changes them while the gateway runs;
//! every change is announced on the IPN bus (`watch-ipn-bus`) as tailscaled does.
//!
//! Rules kept: `Host` must be `local-tailscaled.sock` (or empty) and `Origin`/`Referer` absent,
//! else 403 `invalid localapi request`; unknown paths 404; `whois` 400 without `addr` and 404
//! `no match for IP:port` for a non-peer; `ping` POST only, `type` required, and never
//! answered for an offline peer; `watch-ipn-bus` validates `mask`, sends its headers at once,
//! then one compact JSON object per line, the initial state first when asked.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

const VERSION: &str = "1.102.3-t7a4c9e1b2-g3f8d6c0a5";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tailscale");
/// The user that owns tagged nodes.
const TAGGED_DEVICES: i64 = 6543210987654321;

/// One peer as a test describes it.
#[derive(Clone, Debug)]
pub struct Peer {
    pub host_name: String,
    pub ip: String,
    pub online: bool,
    pub tags: Vec<String>,
    /// The login of its owner (tagged peers belong to `tagged-devices`).
    pub login: Option<String>,
}

struct State {
    backend_state: String,
    peers: BTreeMap<String, Peer>,
}

/// The emulated tailscaled; it stops when dropped.
pub struct LocalApiEmulator {
    socket: PathBuf,
    state: Arc<Mutex<State>>,
    bus: broadcast::Sender<String>,
    running: Option<(watch::Sender<bool>, std::thread::JoinHandle<()>)>,
}

impl LocalApiEmulator {
    /// Starts serving on `socket`, logged in, with no peers.
    pub fn start(socket: &Path) -> LocalApiEmulator {
        let (bus, _) = broadcast::channel(128);
        let mut emu = LocalApiEmulator {
            socket: socket.to_owned(),
            state: Arc::new(Mutex::new(State {
                backend_state: "Running".into(),
                peers: BTreeMap::new(),
            })),
            bus,
            running: None,
        };
        emu.resume();
        emu
    }

    /// tailscaled stops: the socket goes away and open connections (watches) are cut.
    pub fn stop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            let _ = stop.send(true);
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// tailscaled starts again (after [`stop`](Self::stop)).
    pub fn resume(&mut self) {
        assert!(self.running.is_none(), "the emulator is already running");
        let _ = std::fs::remove_file(&self.socket);
        let std_listener = std::os::unix::net::UnixListener::bind(&self.socket)
            .unwrap_or_else(|e| panic!("cannot listen on {}: {e}", self.socket.display()));
        std_listener.set_nonblocking(true).expect("nonblocking");
        let (stop_tx, stop_rx) = watch::channel(false);
        let state = self.state.clone();
        let bus = self.bus.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(serve(std_listener, state, bus, stop_rx));
        });
        self.running = Some((stop_tx, thread));
    }

    /// Adds (or replaces) a peer; returns its stable node ID.
    pub fn add_peer(&self, peer: Peer) -> String {
        let id = stable_id(&peer.host_name);
        self.change(|s| {
            s.peers.insert(peer.host_name.clone(), peer);
        });
        id
    }

    pub fn set_online(&self, host_name: &str, online: bool) {
        self.change(|s| {
            s.peers
                .get_mut(host_name)
                .unwrap_or_else(|| panic!("no peer {host_name}"))
                .online = online;
        });
    }

    pub fn set_address(&self, host_name: &str, ip: &str) {
        self.change(|s| {
            s.peers
                .get_mut(host_name)
                .unwrap_or_else(|| panic!("no peer {host_name}"))
                .ip = ip.to_owned();
        });
    }

    pub fn remove_peer(&self, host_name: &str) {
        self.change(|s| {
            s.peers.remove(host_name);
        });
    }

    /// `Running`, `NeedsLogin`, `Stopped`, ...
    pub fn set_backend_state(&self, state: &str) {
        self.change(|s| s.backend_state = state.to_owned());
    }

    fn change(&self, f: impl FnOnce(&mut State)) {
        let line = {
            let mut s = self.state.lock().expect("state");
            f(&mut s);
            // What a 1.98+ daemon sends on a peer change with NotifyPeerChanges: the
            // changed nodes (the gateway only takes it as a cue to ask `status`).
            let nodes: Vec<Value> = s.peers.values().map(node_json).collect();
            json!({"Version": VERSION, "ErrMessage": null, "LoginFinished": null,
                   "State": state_number(&s.backend_state), "Prefs": null, "NetMap": null,
                   "Engine": null, "BrowseToURL": null, "DriveShares": null,
                   "PeersChanged": nodes})
            .to_string()
        };
        let _ = self.bus.send(line);
    }
}

impl Drop for LocalApiEmulator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stable_id(host_name: &str) -> String {
    let mut h: u64 = 1469598103934665603;
    for b in host_name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(1099511628211);
    }
    format!("n{:013X}CNTRL", h & 0xF_FFFF_FFFF_FFFF)
}

fn node_id(host_name: &str) -> i64 {
    i64::from_str_radix(&stable_id(host_name)[1..12], 16).unwrap_or(1)
}

fn user_id(login: &str) -> i64 {
    node_id(login) + 17
}

fn state_number(state: &str) -> u8 {
    match state {
        "InUseOtherUser" => 1,
        "NeedsLogin" => 2,
        "NeedsMachineAuth" => 3,
        "Stopped" => 4,
        "Starting" => 5,
        "Running" => 6,
        _ => 0,
    }
}

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{name}"))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// A peer's `PeerStatus`, on the fixture's shape.
fn peer_status(p: &Peer, template: &Value) -> Value {
    let mut v = template.clone();
    let owner = p.login.as_deref().map_or(TAGGED_DEVICES, user_id);
    v["ID"] = json!(stable_id(&p.host_name));
    v["NodeID"] = json!(node_id(&p.host_name));
    v["HostName"] = json!(p.host_name);
    v["DNSName"] = json!(format!("{}.tail1a2b3c.ts.net.", p.host_name));
    v["OS"] = json!("linux");
    v["UserID"] = json!(owner);
    v["TailscaleIPs"] = json!([p.ip]);
    v["AllowedIPs"] = json!([format!("{}/32", p.ip)]);
    if p.tags.is_empty() {
        v.as_object_mut().map(|o| o.remove("Tags"));
    } else {
        v["Tags"] = json!(p.tags);
    }
    v["Online"] = json!(p.online);
    v["Active"] = json!(p.online);
    v["CurAddr"] = json!(if p.online { "198.51.100.23:41641" } else { "" });
    v["LastSeen"] = json!(if p.online {
        "0001-01-01T00:00:00Z"
    } else {
        "2026-08-22T12:40:59.62+02:00"
    });
    v
}

/// A peer's `tailcfg.Node` (for whois and the bus).
fn node_json(p: &Peer) -> Value {
    let mut node = json!({
        "ID": node_id(&p.host_name),
        "StableID": stable_id(&p.host_name),
        "Name": format!("{}.tail1a2b3c.ts.net.", p.host_name),
        "User": p.login.as_deref().map_or(TAGGED_DEVICES, user_id),
        "Key": format!("nodekey:{:064x}", node_id(&p.host_name)),
        "Addresses": [format!("{}/32", p.ip)],
        "AllowedIPs": [format!("{}/32", p.ip)],
        "HomeDERP": 4,
        "Hostinfo": {"OS": "linux", "Hostname": p.host_name},
        "Online": p.online,
        "ComputedName": p.host_name,
    });
    if !p.tags.is_empty() {
        node["Tags"] = json!(p.tags);
    }
    node
}

fn status_json(s: &State) -> Value {
    let mut status = fixture("status_3peers.json");
    let template = status["Peer"]
        .as_object()
        .and_then(|m| m.values().next().cloned())
        .expect("a peer in the fixture");
    let mut peers = serde_json::Map::new();
    let mut users = serde_json::Map::new();
    users.insert(
        TAGGED_DEVICES.to_string(),
        json!({"ID": TAGGED_DEVICES, "LoginName": "tagged-devices", "DisplayName": "Tagged Devices"}),
    );
    for p in s.peers.values() {
        peers.insert(
            format!("nodekey:{:064x}", node_id(&p.host_name)),
            peer_status(p, &template),
        );
        if let Some(login) = &p.login {
            users.insert(
                user_id(login).to_string(),
                json!({"ID": user_id(login), "LoginName": login, "DisplayName": login}),
            );
        }
    }
    status["BackendState"] = json!(s.backend_state);
    if s.backend_state != "Running" {
        status["Peer"] = Value::Null;
        status["CurrentTailnet"] = Value::Null;
        status["Health"] = json!(["You are logged out."]);
    } else {
        status["Peer"] = Value::Object(peers);
    }
    status["User"] = Value::Object(users);
    status
}

async fn serve(
    listener: std::os::unix::net::UnixListener,
    state: Arc<Mutex<State>>,
    bus: broadcast::Sender<String>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = tokio::net::UnixListener::from_std(listener).expect("listener");
    loop {
        let stream = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let state = state.clone();
        let bus = bus.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                let bus = bus.clone();
                async move { Ok::<_, Infallible>(answer(req, &state, &bus).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// A response body: whole, or a stream of lines.
enum EmuBody {
    Full(Full<Bytes>),
    Lines(mpsc::Receiver<Bytes>),
}

impl Body for EmuBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            EmuBody::Full(full) => Pin::new(full).poll_frame(cx),
            EmuBody::Lines(rx) => rx
                .poll_recv(cx)
                .map(|line| line.map(|b| Ok(Frame::data(b)))),
        }
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<EmuBody> {
    let mut r = Response::new(EmuBody::Full(Full::new(body.into())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert("Content-Type", content_type.parse().expect("header"));
    h.insert("Tailscale-Version", VERSION.parse().expect("header"));
    h.insert("Tailscale-Cap", "145".parse().expect("header"));
    h.insert("X-Frame-Options", "DENY".parse().expect("header"));
    h.insert("X-Content-Type-Options", "nosniff".parse().expect("header"));
    r
}

fn text(status: StatusCode, message: &str) -> Response<EmuBody> {
    reply(status, "text/plain; charset=utf-8", format!("{message}\n"))
}

fn json_reply(v: &Value) -> Response<EmuBody> {
    reply(
        StatusCode::OK,
        "application/json",
        format!("{}\n", serde_json::to_string_pretty(v).expect("json")),
    )
}

fn query(req: &Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| unescape(v))
    })
}

fn unescape(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&v[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn answer(
    req: Request<Incoming>,
    state: &Mutex<State>,
    bus: &broadcast::Sender<String>,
) -> Response<EmuBody> {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !(host.is_empty() || host == "local-tailscaled.sock")
        || req.headers().contains_key("origin")
        || req.headers().contains_key("referer")
    {
        return text(StatusCode::FORBIDDEN, "invalid localapi request");
    }
    let path = req.uri().path().to_owned();
    match path.strip_prefix("/localapi/v0/").unwrap_or("") {
        "status" => json_reply(&status_json(&state.lock().expect("state"))),
        "whois" => {
            let Some(addr) = query(&req, "addr").filter(|a| !a.is_empty()) else {
                return text(StatusCode::BAD_REQUEST, "missing 'addr' parameter");
            };
            let ip = match addr.parse::<std::net::SocketAddr>() {
                Ok(sa) => sa.ip().to_string(),
                Err(_) => match addr.parse::<std::net::IpAddr>() {
                    Ok(ip) => ip.to_string(),
                    Err(_) => return text(StatusCode::BAD_REQUEST, "invalid 'addr' parameter"),
                },
            };
            let s = state.lock().expect("state");
            match s.peers.values().find(|p| p.ip == ip) {
                Some(p) => {
                    let (uid, login) = match &p.login {
                        Some(l) => (user_id(l), l.as_str()),
                        None => (TAGGED_DEVICES, "tagged-devices"),
                    };
                    let body = json!({
                        "Node": node_json(p),
                        "UserProfile": {"ID": uid, "LoginName": login, "DisplayName": login},
                        "CapMap": null,
                    });
                    reply(
                        StatusCode::OK,
                        "application/json",
                        serde_json::to_string_pretty(&body).expect("json"),
                    )
                }
                None => text(StatusCode::NOT_FOUND, "no match for IP:port"),
            }
        }
        "ping" => {
            if req.method() != hyper::Method::POST {
                return text(StatusCode::BAD_REQUEST, "want POST");
            }
            let Some(ip) = query(&req, "ip").filter(|i| !i.is_empty()) else {
                return text(StatusCode::BAD_REQUEST, "missing 'ip' parameter");
            };
            if ip.parse::<std::net::IpAddr>().is_err() {
                return text(StatusCode::BAD_REQUEST, "invalid IP");
            }
            let kind = query(&req, "type").unwrap_or_default();
            if kind.is_empty() {
                return text(StatusCode::BAD_REQUEST, "missing 'type' parameter");
            }
            let peer = state
                .lock()
                .expect("state")
                .peers
                .values()
                .find(|p| p.ip == ip)
                .cloned();
            let silent = peer.as_ref().is_some_and(|p| !p.online)
                || !["disco", "TSMP", "ICMP", "peerapi"].contains(&kind.as_str());
            if silent {
                // tailscaled never answers a ping to a peer that does not answer (nor one of
                // an unknown type): not even a status line.
                std::future::pending::<()>().await;
            }
            let body = match peer {
                Some(p) => json!({"IP": ip, "NodeIP": ip, "NodeName": p.host_name, "Err": "",
                    "LatencySeconds": 0.001234, "Endpoint": "198.51.100.23:41641",
                    "PeerRelay": "", "DERPRegionID": 0, "DERPRegionCode": ""}),
                None => json!({"IP": ip, "NodeIP": "", "NodeName": "", "Err": "no matching peer",
                    "LatencySeconds": 0, "Endpoint": "", "PeerRelay": "", "DERPRegionID": 0,
                    "DERPRegionCode": ""}),
            };
            reply(StatusCode::OK, "application/json", format!("{body}\n"))
        }
        "watch-ipn-bus" => {
            let Some(mask) = query(&req, "mask").unwrap_or_default().parse::<u64>().ok() else {
                return text(StatusCode::BAD_REQUEST, "bad mask");
            };
            if mask & (1 << 16) != 0 {
                return text(
                    StatusCode::BAD_REQUEST,
                    "NotifyInProcessNoDisconnect is not allowed over LocalAPI",
                );
            }
            let (tx, rx) = mpsc::channel(128);
            let mut lines = bus.subscribe();
            if mask & 2 != 0 {
                let s = state.lock().expect("state");
                let first = json!({"Version": VERSION, "SessionID": "emu-session",
                    "ErrMessage": null, "LoginFinished": null,
                    "State": state_number(&s.backend_state), "Prefs": null, "NetMap": null,
                    "Engine": null, "BrowseToURL": null, "DriveShares": null});
                let _ = tx.try_send(Bytes::from(format!("{first}\n")));
            }
            tokio::spawn(async move {
                while let Ok(line) = lines.recv().await {
                    if tx.send(Bytes::from(format!("{line}\n"))).await.is_err() {
                        break;
                    }
                }
            });
            let mut r = Response::new(EmuBody::Lines(rx));
            r.headers_mut()
                .insert("Content-Type", "application/json".parse().expect("header"));
            r
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}
