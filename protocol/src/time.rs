//! Times as the logs, the audit log and the owner's pages print them: UTC, to the second.

use std::time::SystemTime;

use time::OffsetDateTime;

/// The UTC date and time of `secs` seconds since 1970-01-01 (the epoch for a value out
/// of range).
fn utc(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `secs` since the epoch as `YYYY-MM-DD<sep>HH:MM:SSZ`.
fn format_utc(secs: i64, sep: char) -> String {
    let t = utc(secs);
    format!(
        "{:04}-{:02}-{:02}{sep}{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Milliseconds since the Unix epoch (0 for a clock set before it).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `t` as RFC 3339 UTC to the second: `2025-06-01T12:34:56Z` (times before 1970 as the
/// epoch).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    format_utc(secs, 'T')
}

/// Epoch milliseconds as UTC for people: `2025-06-01 12:34:56Z`.
pub fn readable_ms(ms: i64) -> String {
    format_utc(ms.div_euclid(1000), ' ')
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_748_781_296);
        assert_eq!(rfc3339(t), "2025-06-01T12:34:56Z");
        assert_eq!(readable_ms(1_748_781_296_789), "2025-06-01 12:34:56Z");
        // Leap day, and the day before the epoch.
        assert_eq!(readable_ms(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(readable_ms(-1), "1969-12-31 23:59:59Z");
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(rfc3339(before), "1970-01-01T00:00:00Z");
    }
}
