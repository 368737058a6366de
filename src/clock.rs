//! The clock behind every expiry decision, as a trait so tests can move time, and how koidc
//! writes a time for a person.

use chrono::{DateTime, SecondsFormat, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// The current time in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// `t` as RFC 3339 in UTC, to the second (`2026-01-02T03:04:05Z`).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// How far `t` is from `now`: `in 5m`, `expired 2h3m ago`.
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    let span = |s: i64| match s {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    };
    if secs >= 0 {
        format!("in {}", span(secs))
    } else {
        format!("expired {} ago", span(-secs))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    #[test]
    fn times_read_as_rfc3339_and_as_a_distance_from_now() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(rfc3339(now), "2026-01-02T03:04:05Z");
        let later = |s: i64| now + chrono::Duration::seconds(s);
        assert_eq!(relative(later(119), now), "in 119s");
        assert_eq!(relative(later(7199), now), "in 119m");
        assert_eq!(relative(later(7380), now), "in 2h3m");
        assert_eq!(relative(later(-60), now), "expired 60s ago");
    }
}
