//! An agent's resource limits (`create --memory 512M --cpus 1.5 --pids 256`, the template
//! keys of the same names): their values, how they are written by people and how they cross
//! the contract. Applying them on a host is [`crate::cgroups`]'s.

use super::*;

/// The least memory limit accepted: below it not even a shell starts.
pub const MIN_MEMORY_BYTES: u64 = 4 * 1024 * 1024;

/// The fewest processes accepted: an agent's pane, its sandbox and a shell need a few.
pub const MIN_PIDS: u32 = 4;

/// The least CPU share accepted, in thousandths of a CPU (the kernel's quota needs 1 ms per
/// 100 ms period at least).
pub const MIN_CPU_MILLIS: u32 = 10;

/// What an agent may use of its host; each limit absent is no limit. An agent with none
/// never touches cgroups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// The most memory its processes may use together, in bytes; past it the kernel kills
    /// one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// How many CPUs' worth of time its processes may use together, in thousandths of a CPU
    /// (`--cpus 1.5` is 1500). In JSON: `cpus`, a number of CPUs.
    #[serde(
        default,
        rename = "cpus",
        skip_serializing_if = "Option::is_none",
        with = "cpus_as_number"
    )]
    pub cpu_millis: Option<u32>,
    /// The most processes and threads it may have at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.memory_bytes.is_none() && self.cpu_millis.is_none() && self.pids.is_none()
    }

    /// `memory 512M, cpus 1.5, pids 256`, naming only those set; `none` when none is.
    pub fn display(&self) -> String {
        let mut parts = Vec::new();
        if let Some(bytes) = self.memory_bytes {
            parts.push(format!("memory {}", memory_text(bytes)));
        }
        if let Some(millis) = self.cpu_millis {
            parts.push(format!("cpus {}", cpus_text(millis)));
        }
        if let Some(pids) = self.pids {
            parts.push(format!("pids {pids}"));
        }
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    }

    /// Refuses values that no host could apply (a request written by hand, or by an older
    /// peer), saying which and what is accepted. The parsers below never make such values.
    pub fn check(&self) -> Result<(), String> {
        if let Some(bytes) = self.memory_bytes
            && bytes < MIN_MEMORY_BYTES
        {
            return Err(format!(
                "a memory limit of {bytes} bytes is too small: at least {} is accepted",
                memory_text(MIN_MEMORY_BYTES)
            ));
        }
        if let Some(millis) = self.cpu_millis
            && millis < MIN_CPU_MILLIS
        {
            return Err(format!(
                "a CPU limit of {} is too small: at least {} is accepted",
                cpus_text(millis),
                cpus_text(MIN_CPU_MILLIS)
            ));
        }
        if let Some(pids) = self.pids
            && pids < MIN_PIDS
        {
            return Err(format!(
                "a limit of {pids} processes is too small: at least {MIN_PIDS} is accepted"
            ));
        }
        Ok(())
    }
}

/// A size in bytes as people write it: `512M`, `2G`, `1.5G`, `65536` (bytes), with suffixes
/// K, M, G, T (powers of 1024; `KiB`, `MB` and the like mean the same).
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "'{}' is not a memory size: write a number with K, M, G or T (512M, 1.5G), at least {}",
            text.escape_debug(),
            memory_text(MIN_MEMORY_BYTES)
        )
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(bad()),
    };
    let bytes = scaled(number, 1u64 << shift).ok_or_else(bad)?;
    if bytes < MIN_MEMORY_BYTES {
        return Err(bad());
    }
    Ok(bytes)
}

/// A number of CPUs as people write it (`1.5`, `0.25`, `2`), in thousandths of a CPU.
pub fn parse_cpus(text: &str) -> Result<u32, String> {
    let bad = || {
        format!(
            "'{}' is not a number of CPUs: write a positive number like 0.5, 1.5 or 2, at least {}",
            text.escape_debug(),
            cpus_text(MIN_CPU_MILLIS)
        )
    };
    let millis = scaled(text.trim(), 1000).ok_or_else(bad)?;
    match u32::try_from(millis) {
        Ok(millis) if millis >= MIN_CPU_MILLIS => Ok(millis),
        _ => Err(bad()),
    }
}

/// A number of processes (`256`).
pub fn parse_pids(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(pids) if pids >= MIN_PIDS && text.trim().bytes().all(|b| b.is_ascii_digit()) => Ok(pids),
        _ => Err(format!(
            "'{}' is not a number of processes: write a whole number like 256, at least {MIN_PIDS}",
            text.escape_debug()
        )),
    }
}

/// `number` (digits, at most one `.` with up to 3 decimals after it) times `unit`, exactly,
/// in whole units of what `unit` counts; none when it is not such a number or overflows.
fn scaled(number: &str, unit: u64) -> Option<u64> {
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty())
        || !digits(whole)
        || !digits(fraction)
        || fraction.len() > 3
        || (number.contains('.') && fraction.is_empty())
    {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let thousandths: u64 = format!("{fraction:0<3}").parse().ok()?;
    let total = whole
        .checked_mul(unit)?
        .checked_add(thousandths.checked_mul(unit)? / 1000)?;
    Some(total)
}

/// `512M`, `1.5G`, or bytes when no unit divides it in thousandths.
pub fn memory_text(bytes: u64) -> String {
    // In u128: a thousand times the largest size still fits.
    let wide = u128::from(bytes) * 1000;
    for (suffix, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        let unit = 1u128 << shift;
        if u128::from(bytes) >= unit
            && wide.is_multiple_of(unit)
            && let Ok(thousandths) = u64::try_from(wide / unit)
        {
            return format!("{}{suffix}", decimal(thousandths));
        }
    }
    bytes.to_string()
}

/// `1.5`, `0.25`, `2`.
pub fn cpus_text(millis: u32) -> String {
    decimal(u64::from(millis))
}

/// Thousandths as a decimal number without trailing zeros.
fn decimal(thousandths: u64) -> String {
    let whole = thousandths / 1000;
    let fraction = thousandths % 1000;
    if fraction == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{}", format!("{fraction:03}").trim_end_matches('0'))
    }
}

/// `cpus` in JSON is a number of CPUs (`1.5`); inside it is thousandths.
mod cpus_as_number {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(millis: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
        match millis {
            Some(m) => s.serialize_f64(f64::from(*m) / 1000.0),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        let Some(cpus) = Option::<f64>::deserialize(d)? else {
            return Ok(None);
        };
        if !(cpus.is_finite() && cpus > 0.0 && cpus < 1e6) {
            return Err(serde::de::Error::custom(format!(
                "{cpus} is not a number of CPUs"
            )));
        }
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "checked finite, positive and below a million just above"
        )]
        let millis = (cpus * 1000.0).round() as u32;
        Ok(Some(millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_are_read_as_people_write_them() {
        assert_eq!(parse_memory("512M"), Ok(512 << 20));
        assert_eq!(parse_memory("64m"), Ok(64 << 20));
        assert_eq!(parse_memory("2G"), Ok(2 << 30));
        assert_eq!(parse_memory("1.5G"), Ok(3 << 29));
        assert_eq!(parse_memory("1GiB"), Ok(1 << 30));
        assert_eq!(parse_memory("8388608"), Ok(8 << 20));
        assert_eq!(parse_memory("4096K"), Ok(4 << 20));
        for bad in [
            "0", "0M", "-1G", "12X", "", "M", "1.G", "1.2345G", "1e9", "1 G x", "1K",
        ] {
            let err = parse_memory(bad).expect_err(bad);
            assert!(err.contains("K, M, G or T"), "{bad}: {err}");
        }
        assert_eq!(parse_memory("99999999999T").map_err(|_| ()), Err(()));
    }

    #[test]
    fn cpus_are_read_in_thousandths() {
        assert_eq!(parse_cpus("1.5"), Ok(1500));
        assert_eq!(parse_cpus("0.5"), Ok(500));
        assert_eq!(parse_cpus(".25"), Ok(250));
        assert_eq!(parse_cpus("2"), Ok(2000));
        for bad in [
            "0", "0.0", "-1", "1.5x", "", "0.001", "abc", "1,5", "5000000",
        ] {
            let err = parse_cpus(bad).expect_err(bad);
            assert!(err.contains("number of CPUs"), "{bad}: {err}");
        }
    }

    #[test]
    fn process_counts_are_whole_numbers() {
        assert_eq!(parse_pids("256"), Ok(256));
        for bad in ["0", "-5", "3", "12X", "1.5", "", "+9"] {
            let err = parse_pids(bad).expect_err(bad);
            assert!(err.contains("number of processes"), "{bad}: {err}");
        }
    }

    #[test]
    fn limits_are_shown_as_they_were_written() {
        let limits = Limits {
            memory_bytes: Some(512 << 20),
            cpu_millis: Some(1500),
            pids: Some(256),
        };
        assert_eq!(limits.display(), "memory 512M, cpus 1.5, pids 256");
        assert_eq!(Limits::default().display(), "none");
        assert_eq!(memory_text(3 << 29), "1.5G");
        assert_eq!(memory_text(12345678), "12345678");
        assert_eq!(cpus_text(250), "0.25");
        // The largest size a request can hold is shown, not overflowed.
        assert_eq!(memory_text(u64::MAX), u64::MAX.to_string());
        assert_eq!(memory_text(16_000_000 << 40), "16000000T");
    }

    #[test]
    fn limits_cross_the_contract_with_cpus_as_a_number() {
        let limits = Limits {
            memory_bytes: Some(64 << 20),
            cpu_millis: Some(500),
            pids: None,
        };
        let json = serde_json::to_value(limits).expect("encodes");
        assert_eq!(
            json,
            serde_json::json!({"memory_bytes": 67108864, "cpus": 0.5})
        );
        let back: Limits = serde_json::from_value(json).expect("decodes");
        assert_eq!(back, limits);
        let none: Limits = serde_json::from_str("{}").expect("decodes");
        assert!(none.is_empty());
        assert!(serde_json::from_str::<Limits>(r#"{"cpus": -1}"#).is_err());
        assert!(
            Limits {
                pids: Some(1),
                ..Limits::default()
            }
            .check()
            .is_err()
        );
    }
}
