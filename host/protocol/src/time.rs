//! Timestamps: unix milliseconds, written as RFC 3339 UTC text.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::ProtocolError;

/// A point in time with millisecond precision, e.g. `2026-11-21T10:00:00.000Z`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Timestamp(u64);

impl Timestamp {
    /// From unix milliseconds.
    pub fn from_unix_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// From a system time.
    pub fn from_system_time(time: SystemTime) -> Self {
        Self(
            time.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        )
    }

    /// The system clock's current time.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// Unix milliseconds.
    pub fn unix_millis(self) -> u64 {
        self.0
    }

    /// This time plus `ms` milliseconds (saturating).
    pub fn plus_millis(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = UNIX_EPOCH + Duration::from_millis(self.0);
        write!(f, "{}", humantime::format_rfc3339_millis(time))
    }
}

impl FromStr for Timestamp {
    type Err = ProtocolError;

    /// Reads the one canonical form, `2026-11-21T10:00:00.000Z`: signed documents are
    /// verified over their canonical JSON, so another spelling of the same instant would
    /// fail as a bad signature; it is refused here, saying how to write it.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parsed = humantime::parse_rfc3339(text)
            .map(Self::from_system_time)
            .map_err(|e| ProtocolError::Malformed {
                path: ".".into(),
                reason: format!("invalid RFC 3339 timestamp {text:?}: {e}"),
            })?;
        let canonical = parsed.to_string();
        if canonical != text {
            return Err(ProtocolError::Malformed {
                path: ".".into(),
                reason: format!(
                    "timestamp {text:?} is not in canonical form: write {canonical:?} (RFC 3339, UTC, milliseconds), the form signatures cover"
                ),
            });
        }
        Ok(parsed)
    }
}

serde_via_text!(Timestamp);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_rfc3339() {
        let t = Timestamp::from_unix_millis(1_795_000_000_123);
        let text = t.to_string();
        assert_eq!(text, "2026-11-18T11:06:40.123Z");
        assert_eq!(text.parse::<Timestamp>().unwrap(), t);
        assert!("yesterday".parse::<Timestamp>().is_err());
        let other_spelling = "2026-11-18T11:06:40Z".parse::<Timestamp>().unwrap_err();
        assert!(
            other_spelling
                .to_string()
                .contains("write \"2026-11-18T11:06:40.000Z\""),
            "{other_spelling}"
        );
    }
}
