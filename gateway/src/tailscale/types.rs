//! The LocalAPI's JSON, as far as the gateway reads it. The LocalAPI is not a stable API:
//! unknown fields are ignored, every field is optional, and `null` reads as empty.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer};

/// `null` (or a missing field, with `#[serde(default)]`) as the type's default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A time as tailscaled writes it (RFC 3339); the zero time (year 1) means unset.
fn time<'de, D>(d: D) -> Result<Option<time::OffsetDateTime>, D::Error>
where
    D: Deserializer<'de>,
{
    let text: Option<String> = Option::deserialize(d)?;
    Ok(text.and_then(|t| {
        time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
            .ok()
            .filter(|t| t.year() > 1)
    }))
}

/// `GET status`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Status {
    #[serde(rename = "Version", deserialize_with = "nullable")]
    pub version: String,
    /// `false`: userspace networking; tailnet addresses are not reachable with plain sockets.
    #[serde(rename = "TUN", deserialize_with = "nullable")]
    pub tun: bool,
    /// `Running`, `NeedsLogin`, `NeedsMachineAuth`, `Stopped`, `Starting`, `NoState`, ...
    #[serde(rename = "BackendState", deserialize_with = "nullable")]
    pub backend_state: String,
    #[serde(rename = "AuthURL", deserialize_with = "nullable")]
    pub auth_url: String,
    #[serde(rename = "Self", deserialize_with = "nullable")]
    pub self_node: PeerStatus,
    #[serde(rename = "Health", deserialize_with = "nullable")]
    pub health: Vec<String>,
    #[serde(rename = "MagicDNSSuffix", deserialize_with = "nullable")]
    pub magic_dns_suffix: String,
    #[serde(rename = "CurrentTailnet", deserialize_with = "nullable")]
    pub current_tailnet: Option<CurrentTailnet>,
    /// Keyed by node key, which changes when the key rotates: find peers by [`PeerStatus::id`].
    #[serde(rename = "Peer", deserialize_with = "nullable")]
    pub peer: HashMap<String, PeerStatus>,
    #[serde(rename = "User", deserialize_with = "nullable")]
    pub user: HashMap<String, UserProfile>,
}

impl Status {
    /// The peers, in a stable order (by host name).
    pub fn peers(&self) -> Vec<&PeerStatus> {
        let mut peers: Vec<&PeerStatus> = self.peer.values().collect();
        peers.sort_by(|a, b| a.host_name.cmp(&b.host_name).then(a.id.cmp(&b.id)));
        peers
    }

    /// The peer with this stable node ID.
    pub fn peer_by_id(&self, id: &str) -> Option<&PeerStatus> {
        self.peer.values().find(|p| p.id == id)
    }

    pub fn tailnet_name(&self) -> Option<&str> {
        self.current_tailnet
            .as_ref()
            .map(|t| t.name.as_str())
            .filter(|n| !n.is_empty())
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct CurrentTailnet {
    #[serde(rename = "Name", deserialize_with = "nullable")]
    pub name: String,
    #[serde(rename = "MagicDNSSuffix", deserialize_with = "nullable")]
    pub magic_dns_suffix: String,
}

/// A node of the tailnet (`Self`, or a peer).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct PeerStatus {
    /// The stable node ID (`nA9f...CNTRL`): survives key rotation and address changes.
    #[serde(rename = "ID", deserialize_with = "nullable")]
    pub id: String,
    #[serde(rename = "HostName", deserialize_with = "nullable")]
    pub host_name: String,
    /// MagicDNS name, with a trailing dot.
    #[serde(rename = "DNSName", deserialize_with = "nullable")]
    pub dns_name: String,
    #[serde(rename = "OS", deserialize_with = "nullable")]
    pub os: String,
    #[serde(rename = "UserID", deserialize_with = "nullable")]
    pub user_id: i64,
    #[serde(rename = "TailscaleIPs", deserialize_with = "nullable")]
    pub tailscale_ips: Vec<IpAddr>,
    #[serde(rename = "Tags", deserialize_with = "nullable")]
    pub tags: Vec<String>,
    /// The direct UDP path in use (`ip:port`), empty when relayed or idle.
    #[serde(rename = "CurAddr", deserialize_with = "nullable")]
    pub cur_addr: String,
    /// The peer's home DERP region (`fra`, `nyc`, ...).
    #[serde(rename = "Relay", deserialize_with = "nullable")]
    pub relay: String,
    #[serde(rename = "PeerRelay", deserialize_with = "nullable")]
    pub peer_relay: String,
    /// When the peer was last connected to the coordination server (meaningful when offline).
    #[serde(rename = "LastSeen", deserialize_with = "time")]
    pub last_seen: Option<time::OffsetDateTime>,
    /// Connected to the coordination server (not proof that packets get through).
    #[serde(rename = "Online", deserialize_with = "nullable")]
    pub online: bool,
    #[serde(rename = "Active", deserialize_with = "nullable")]
    pub active: bool,
    #[serde(rename = "Expired", deserialize_with = "nullable")]
    pub expired: bool,
    #[serde(rename = "ShareeNode", deserialize_with = "nullable")]
    pub sharee_node: bool,
    #[serde(rename = "InNetworkMap", deserialize_with = "nullable")]
    pub in_network_map: bool,
}

impl PeerStatus {
    /// The MagicDNS name without its trailing dot.
    pub fn dns(&self) -> &str {
        self.dns_name.trim_end_matches('.')
    }

    /// The MagicDNS short name (the first label).
    pub fn short_name(&self) -> &str {
        self.dns().split('.').next().unwrap_or_default()
    }

    /// The address to reach it at: its first IPv4 tailnet address, else its first address.
    pub fn address(&self) -> Option<IpAddr> {
        self.tailscale_ips
            .iter()
            .find(|ip| ip.is_ipv4())
            .or_else(|| self.tailscale_ips.first())
            .copied()
    }

    /// Whether `name` names this peer: its host name, MagicDNS name (with or without the
    /// trailing dot), short name, or one of its tailnet addresses.
    pub fn is_named(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        (!self.host_name.is_empty() && self.host_name.eq_ignore_ascii_case(name))
            || (!self.dns_name.is_empty()
                && (self.dns().eq_ignore_ascii_case(name)
                    || self.short_name().eq_ignore_ascii_case(name)))
            || name
                .parse::<IpAddr>()
                .is_ok_and(|ip| self.tailscale_ips.contains(&ip))
    }

    /// How packets reach it: `direct ADDR`, `relay REGION` (DERP), `peer-relay ADDR`, or
    /// `idle` when nothing was sent lately.
    pub fn path(&self) -> String {
        if !self.cur_addr.is_empty() {
            format!("direct {}", self.cur_addr)
        } else if !self.peer_relay.is_empty() {
            format!("peer-relay {}", self.peer_relay)
        } else if self.active && !self.relay.is_empty() {
            format!("relay {}", self.relay)
        } else {
            "idle".to_owned()
        }
    }

    /// Whether a connection to it can be expected to work: online and its key not expired.
    pub fn reachable(&self) -> bool {
        self.online && !self.expired
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct UserProfile {
    #[serde(rename = "ID", deserialize_with = "nullable")]
    pub id: i64,
    #[serde(rename = "LoginName", deserialize_with = "nullable")]
    pub login_name: String,
    #[serde(rename = "DisplayName", deserialize_with = "nullable")]
    pub display_name: String,
}

/// `GET whois`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct WhoIs {
    #[serde(rename = "Node", deserialize_with = "nullable")]
    pub node: Node,
    #[serde(rename = "UserProfile", deserialize_with = "nullable")]
    pub user_profile: UserProfile,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Node {
    #[serde(rename = "StableID", deserialize_with = "nullable")]
    pub stable_id: String,
    #[serde(rename = "Name", deserialize_with = "nullable")]
    pub name: String,
    #[serde(rename = "Tags", deserialize_with = "nullable")]
    pub tags: Vec<String>,
}

/// `POST ping`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct PingResult {
    #[serde(rename = "IP", deserialize_with = "nullable")]
    pub ip: String,
    #[serde(rename = "NodeName", deserialize_with = "nullable")]
    pub node_name: String,
    /// Empty on success.
    #[serde(rename = "Err", deserialize_with = "nullable")]
    pub err: String,
    #[serde(rename = "LatencySeconds", deserialize_with = "nullable")]
    pub latency_seconds: f64,
    /// Set when the pong came over a direct path.
    #[serde(rename = "Endpoint", deserialize_with = "nullable")]
    pub endpoint: String,
    #[serde(rename = "PeerRelay", deserialize_with = "nullable")]
    pub peer_relay: String,
    #[serde(rename = "DERPRegionCode", deserialize_with = "nullable")]
    pub derp_region_code: String,
}

impl PingResult {
    /// `direct ADDR`, `relay REGION`, or `peer-relay ADDR`.
    pub fn path(&self) -> String {
        if !self.endpoint.is_empty() {
            format!("direct {}", self.endpoint)
        } else if !self.peer_relay.is_empty() {
            format!("peer-relay {}", self.peer_relay)
        } else if !self.derp_region_code.is_empty() {
            format!("relay {}", self.derp_region_code)
        } else {
            "unknown path".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tailscale");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap_or_else(|e| {
            panic!("fixture {name}: {e}");
        })
    }

    #[test]
    fn the_status_fixture_reads() -> Result<(), serde_json::Error> {
        let s: Status = serde_json::from_str(&fixture("status_3peers.json"))?;
        assert_eq!(s.backend_state, "Running");
        assert!(s.tun);
        assert_eq!(s.tailnet_name(), Some("example.com"));
        assert_eq!(s.peer.len(), 3);
        let mac = s
            .peer_by_id("nA9fRt3Kd711CNTRL")
            .map(|p| p.host_name.clone());
        assert_eq!(mac.as_deref(), Some("alices-macbook-pro"));
        let host2 = s.peers().into_iter().find(|p| p.is_named("agent-host-02"));
        let host2 = host2.map(|p| (p.tags.clone(), p.address()));
        assert_eq!(
            host2,
            Some((
                vec!["tag:agent-host".to_owned()],
                "100.101.7.43".parse().ok()
            ))
        );
        assert!(
            s.peers()
                .iter()
                .any(|p| p.is_named("agent-host-02.tail1a2b3c.ts.net."))
        );
        assert!(s.peers().iter().any(|p| p.is_named("100.88.21.7")));
        assert!(!s.peers().iter().any(|p| p.is_named("nobody")));
        Ok(())
    }

    #[test]
    fn nulls_unknown_fields_and_zero_times_are_tolerated() -> Result<(), serde_json::Error> {
        let s: Status = serde_json::from_str(
            r#"{"Version":"1.80.0","BackendState":"NeedsLogin","Peer":null,"User":null,
                "Self":{"ID":"","TailscaleIPs":null,"LastSeen":"0001-01-01T00:00:00Z","Brand":"new"},
                "CurrentTailnet":null,"Health":["You are logged out."],"Future":{"x":1}}"#,
        )?;
        assert_eq!(s.backend_state, "NeedsLogin");
        assert!(s.peer.is_empty());
        assert_eq!(s.self_node.last_seen, None);
        assert_eq!(s.tailnet_name(), None);
        let p: PeerStatus =
            serde_json::from_str(r#"{"LastSeen":"2026-08-22T12:40:59.62+02:00","Online":false}"#)?;
        assert_eq!(p.last_seen.map(|t| t.hour()), Some(12));
        Ok(())
    }

    #[test]
    fn whois_and_ping_fixtures_read() -> Result<(), serde_json::Error> {
        let w: WhoIs = serde_json::from_str(&fixture("whois_operator.json"))?;
        assert!(!w.user_profile.login_name.is_empty());
        let ok: PingResult = serde_json::from_str(&fixture("ping_ok.json"))?;
        assert_eq!(ok.path(), "direct 198.51.100.23:41641");
        let none: PingResult = serde_json::from_str(&fixture("ping_no_peer.json"))?;
        assert_eq!(none.err, "no matching peer");
        Ok(())
    }
}
