//! The units the configuration and the commands read: durations (`500ms`, `10s`, `5m`, `2h`,
//! `1d`), networks (an address, or an address/prefix) and a template's resource limits
//! (`memory = "512M"`, `cpus = 1.5`, `pids = 256`), each with its error.

use std::time::Duration;

/// A network in the configuration that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an address or network (like 10.0.0.0/8 or fd00::/8)")]
pub struct BadNetwork(pub String);

/// Whether `net` (an address, or an address/prefix) contains `ip`; an error if `net` is not
/// one.
pub fn network_contains(net: &str, ip: std::net::IpAddr) -> Result<bool, BadNetwork> {
    use std::net::IpAddr;
    let bad = || BadNetwork(net.to_owned());
    let (addr, prefix) = match net.split_once('/') {
        Some((a, p)) => (a, Some(p.parse::<u32>().map_err(|_| bad())?)),
        None => (net, None),
    };
    let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
    let ip = ip.to_canonical();
    let (a, b, bits) = match (addr, ip) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (
            u128::from(a.to_bits()) << 96,
            u128::from(b.to_bits()) << 96,
            32,
        ),
        (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits(), b.to_bits(), 128),
        (IpAddr::V4(_), _) => return prefix.filter(|p| *p > 32).map_or(Ok(false), |_| Err(bad())),
        (IpAddr::V6(_), _) => {
            return prefix
                .filter(|p| *p > 128)
                .map_or(Ok(false), |_| Err(bad()));
        }
    };
    let prefix = prefix.unwrap_or(bits);
    if prefix > bits {
        return Err(bad());
    }
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    Ok(a & mask == b & mask)
}

/// An idle-stop period: a duration of at least a second.
pub fn parse_idle_stop(text: &str) -> Result<Duration, BadDuration> {
    let d = parse_duration(text)?;
    if d < Duration::from_secs(1) {
        return Err(BadDuration::UnderASecond(text.to_owned()));
    }
    Ok(d)
}

/// A duration in the largest whole unit of [`parse_duration`]'s below it: `45s`, `30m`, `2h`,
/// `3d` (for messages: the idle stop's "no output and no input for 30m").
pub fn duration_text(d: Duration) -> String {
    match d.as_secs() {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// A duration that cannot be read, and what one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDuration {
    #[error("'{0}' is not a duration (examples: 500ms, 10s, 5m, 2h)")]
    NotANumber(String),
    #[error("'{0}' has an unknown unit (use ms, s, m, h or d)")]
    UnknownUnit(String),
    #[error("'{0}' is too long")]
    TooLong(String),
    #[error("'{0}' is shorter than a second")]
    UnderASecond(String),
}

/// Parses `500ms`, `10s`, `5m`, `2h` or `1d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| BadDuration::NotANumber(text.to_owned()))?;
    let millis = match unit.trim() {
        "ms" => Some(value),
        "" | "s" => value.checked_mul(1000),
        "m" => value.checked_mul(60_000),
        "h" => value.checked_mul(3_600_000),
        "d" => value.checked_mul(86_400_000),
        _ => {
            return Err(BadDuration::UnknownUnit(text.to_owned()));
        }
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| BadDuration::TooLong(text.to_owned()))
}

pub(super) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => super::parse_duration(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// A template's limit as TOML writes it: a string (`"512M"`, `"1.5"`) or a number (`1.5`,
/// `256`), read by `parse` (hostctl's, which `create`'s options use too).
fn limit_value<'de, D, T>(d: D, parse: fn(&str) -> Result<T, String>) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Whole(u64),
        Number(f64),
        Text(String),
    }
    let text = match Option::<Written>::deserialize(d)? {
        None => return Ok(None),
        Some(Written::Whole(n)) => n.to_string(),
        Some(Written::Number(n)) => n.to_string(),
        Some(Written::Text(t)) => t,
    };
    parse(&text).map(Some).map_err(serde::de::Error::custom)
}

/// `memory = "512M"` in a template, in bytes.
pub fn memory_limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    limit_value(d, hostctl::api::parse_memory)
}

/// `cpus = 1.5` in a template, in thousandths of a CPU.
pub fn cpus_limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    limit_value(d, hostctl::api::parse_cpus)
}

/// `pids = 256` in a template.
pub fn pids_limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    limit_value(d, hostctl::api::parse_pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_is_told_in_its_largest_whole_unit_and_reads_back() {
        for (secs, text) in [(45, "45s"), (1800, "30m"), (5400, "1h"), (3 * 86_400, "3d")] {
            assert_eq!(duration_text(Duration::from_secs(secs)), text);
        }
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
    }

    #[test]
    fn networks_match_addresses_and_bad_ones_are_refused() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
        assert_eq!(network_contains("10.0.0.0/8", ip("10.200.1.1")), Ok(true));
        assert_eq!(network_contains("10.0.0.0/8", ip("11.0.0.1")), Ok(false));
        assert_eq!(
            network_contains("127.0.0.100/31", ip("127.0.0.101")),
            Ok(true)
        );
        assert_eq!(
            network_contains("127.0.0.100/31", ip("127.0.0.102")),
            Ok(false)
        );
        assert_eq!(network_contains("192.0.2.7", ip("192.0.2.7")), Ok(true));
        assert_eq!(network_contains("0.0.0.0/0", ip("8.8.8.8")), Ok(true));
        assert_eq!(
            network_contains("fd7a:115c:a1e0::/48", ip("fd7a:115c:a1e0:ab::1")),
            Ok(true)
        );
        assert_eq!(
            network_contains("fd7a:115c:a1e0::/48", ip("10.0.0.1")),
            Ok(false)
        );
        assert_eq!(
            network_contains("10.0.0.0/8", ip("::ffff:10.1.1.1")),
            Ok(true)
        );
        for bad in ["10.0.0.0/33", "fd00::/129", "nonsense", "10.0.0.0/x", ""] {
            assert!(network_contains(bad, ip("10.0.0.1")).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("m").is_err());
    }
}
