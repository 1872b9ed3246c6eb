//! RFC3339 timestamps with nanoseconds in UTC, without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// `t` as `2016-10-06T00:17:09.669794202Z` (always nine fraction digits, as
/// conmon writes them; Go's `time.RFC3339Nano` parser accepts them).
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Now, as [`rfc3339_nano`].
pub fn now() -> String {
    rfc3339_nano(SystemTime::now())
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        let t = UNIX_EPOCH + Duration::new(1_475_713_029, 669_794_202);
        assert_eq!(rfc3339_nano(t), "2016-10-06T00:17:09.669794202Z");
        assert_eq!(rfc3339_nano(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        // A leap day and the last second of a year.
        let t = UNIX_EPOCH + Duration::new(951_782_400, 5);
        assert_eq!(rfc3339_nano(t), "2000-02-29T00:00:00.000000005Z");
        let t = UNIX_EPOCH + Duration::new(1_767_225_599, 0);
        assert_eq!(rfc3339_nano(t), "2025-12-31T23:59:59.000000000Z");
    }
}
