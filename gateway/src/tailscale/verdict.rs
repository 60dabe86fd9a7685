//! What the tailnet says of a host's peer: online at an address, down (offline, expired, gone)
//! and why, or nothing (tailscaled not running, or not a tailnet host). Pure: from a view of
//! the tailnet and the host's record.

use super::View;
use super::types::PeerStatus;
use crate::store::HostRecord;

/// What the tailnet says of a host's peer.
#[derive(Debug)]
pub enum PeerVerdict<'a> {
    /// The tailnet says nothing (tailscaled not running, or the host is not a tailnet host).
    Silent,
    /// Online: reach it at its address.
    Online(&'a PeerStatus),
    /// Not reachable over the tailnet, and why.
    Down(String),
}

/// The verdict on the host of `record` (a host added by tailnet name has a peer ID).
pub fn verdict<'a>(view: &'a View, record: &HostRecord) -> PeerVerdict<'a> {
    let (Some(id), View::Status(status)) = (&record.tailscale_id, view) else {
        return PeerVerdict::Silent;
    };
    if status.backend_state != "Running" {
        return PeerVerdict::Silent;
    }
    let name = record.tailscale_name.as_deref().unwrap_or(id);
    let peer = status.peer_by_id(id);
    match peer_problem(peer, name) {
        Some(why) => PeerVerdict::Down(why),
        None => peer.map_or(PeerVerdict::Silent, PeerVerdict::Online),
    }
}

/// Why a peer (`None`: not in the tailnet) cannot be reached over the tailnet, if it cannot;
/// `name` is how the operator named it.
pub fn peer_problem(peer: Option<&PeerStatus>, name: &str) -> Option<String> {
    match peer {
        None => Some(format!(
            "tailnet peer '{name}' is no longer in this node's tailnet (removed, or no longer shared)"
        )),
        Some(p) if p.expired => Some(format!(
            "the key of tailnet peer '{name}' has expired: log it in again (tailscale up on it)"
        )),
        Some(p) if !p.online => Some(format!(
            "tailnet peer '{name}' is offline{}",
            p.last_seen
                .map(|t| format!(" (last seen {})", crate::model::Timestamp::from(t)))
                .unwrap_or_default()
        )),
        Some(_) => None,
    }
}

/// Why the tailnet says the host of `record` is down, if it says so.
pub fn down(view: &View, record: &HostRecord) -> Option<String> {
    match verdict(view, record) {
        PeerVerdict::Down(reason) => Some(reason),
        _ => None,
    }
}
