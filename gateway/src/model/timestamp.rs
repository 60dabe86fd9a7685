//! [`Timestamp`]: a moment as the gateway records it, and the one place that writes and reads
//! its text.
//!
//! The text is RFC 3339 in UTC (`2026-12-06T09:53:15.123456789Z`, the fraction only when there
//! is one), the form every database written so far holds: sqlite compares these columns as text
//! (`at >= ?`, `ended_at < ?`), which orders them in time only because they are all in this one
//! form. A time with another offset is read, and turned to UTC.

use std::fmt;
use std::str::FromStr;

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// A moment, in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

/// Text that is not an RFC 3339 time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not an RFC 3339 time like 2026-01-31T12:00:00Z: {why}")]
pub struct BadTimestamp {
    pub text: String,
    pub why: String,
}

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp(OffsetDateTime::now_utc())
    }

    /// Reads RFC 3339 text (any offset; kept in UTC).
    pub fn parse(text: &str) -> Result<Timestamp, BadTimestamp> {
        OffsetDateTime::parse(text, &Rfc3339)
            .map(Timestamp::from)
            .map_err(|e| BadTimestamp {
                text: text.to_owned(),
                why: e.to_string(),
            })
    }

    /// The moment itself, for arithmetic.
    pub fn datetime(self) -> OffsetDateTime {
        self.0
    }

    /// The same moment with its fraction of a second dropped (for text meant for people).
    pub fn whole_seconds(self) -> Timestamp {
        Timestamp(self.0.replace_nanosecond(0).unwrap_or(self.0))
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(t: OffsetDateTime) -> Timestamp {
        Timestamp(t.to_offset(UtcOffset::UTC))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only a year outside 0..=9999 cannot be written in RFC 3339; no such time is made
        // here (they come from the clock or from RFC 3339 text), and one would print empty.
        f.write_str(&self.0.format(&Rfc3339).unwrap_or_default())
    }
}

impl FromStr for Timestamp {
    type Err = BadTimestamp;
    fn from_str(text: &str) -> Result<Timestamp, BadTimestamp> {
        Timestamp::parse(text)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_databases_hold_reads_and_writes_back_the_same() {
        // As `strftime('%Y-%m-%dT%H:%M:%SZ')` (the first migration) and the time crate wrote
        // them: whole seconds, and fractions with their trailing zeros cut.
        for text in [
            "2026-01-01T00:00:00Z",
            "2026-12-06T09:53:15.123456789Z",
            "2026-12-06T09:53:15.5Z",
            "2026-12-06T09:53:15.000123Z",
        ] {
            let t = Timestamp::parse(text).expect("parses");
            assert_eq!(t.to_string(), text);
            assert_eq!(
                serde_json::to_string(&t).expect("json"),
                format!("\"{text}\"")
            );
            let back: Timestamp = serde_json::from_str(&format!("\"{text}\"")).expect("json");
            assert_eq!(back, t);
        }
    }

    #[test]
    fn another_offset_is_kept_in_utc_and_bad_text_is_refused() {
        let t = Timestamp::parse("2026-01-31T12:00:00+01:00").expect("parses");
        assert_eq!(t.to_string(), "2026-01-31T11:00:00Z");
        let err = Timestamp::parse("2026-01-31 12:00:00").expect_err("no T");
        assert!(
            err.to_string()
                .contains("'2026-01-31 12:00:00' is not an RFC 3339 time")
        );
        assert!("yesterday".parse::<Timestamp>().is_err());
    }

    #[test]
    fn now_is_written_as_the_store_always_wrote_it() {
        let t = Timestamp::now();
        assert!(t.to_string().ends_with('Z'));
        assert_eq!(Timestamp::parse(&t.to_string()), Ok(t));
        assert_eq!(
            Timestamp::parse("2026-12-06T09:53:15.75Z")
                .expect("parses")
                .whole_seconds()
                .to_string(),
            "2026-12-06T09:53:15Z"
        );
    }
}
