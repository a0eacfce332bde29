//! The UTC hour an event belongs to, for the date placeholders of a path: read from an RFC 3339
//! timestamp (the event's `time`), or from the host clock.

use eventyard_sdk::clock;

/// A UTC hour: the values of `{yyyy}`, `{mm}`, `{dd}` and `{HH}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hour {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
}

impl Hour {
    /// The hour that contains `secs` seconds since the Unix epoch (negative before 1970).
    pub fn from_unix_secs(secs: i64) -> Hour {
        let (year, month, day) = clock::civil_from_days(secs.div_euclid(86_400));
        // rem_euclid(86_400) / 3600 is in 0..24, so the cast is lossless.
        let hour = (secs.rem_euclid(86_400) / 3600) as u32;
        Hour { year, month, day, hour }
    }

    /// The hour of the host clock now.
    pub fn now() -> Hour {
        // u64 nanoseconds / 1e9 fits in i64.
        Hour::from_unix_secs((clock::now_nanos() / 1_000_000_000) as i64)
    }
}

/// Parses an RFC 3339 timestamp (`2022-07-12T07:08:09Z`, `2022-07-12t09:08:09.5+02:00`) into
/// seconds since the Unix epoch, or `None` when `text` is not one.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = digits(&b[0..4])?;
    let (month, day) = (digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Fractional seconds do not change the hour: skip them.
    let mut rest = &b[19..];
    if let Some((b'.', fraction)) = rest.split_first() {
        let len = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        rest = &fraction[len..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let offset = h * 3600 + m * 60;
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// The number an all-digit byte string spells.
fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0i64, |n, c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
}

/// Days in `month` of `year` in the proleptic Gregorian calendar.
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`, the
/// inverse of [`clock::civil_from_days`]).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(text: &str) -> Option<Hour> {
        parse_rfc3339(text).map(Hour::from_unix_secs)
    }

    #[test]
    fn timestamps_become_utc_hours() {
        let h = |year, month, day, hour| Some(Hour { year, month, day, hour });
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(hour("2022-07-12T07:08:09Z"), h(2022, 7, 12, 7));
        assert_eq!(hour("2022-07-11T16:44:27.146Z"), h(2022, 7, 11, 16));
        assert_eq!(hour("2022-07-12t01:30:00+02:00"), h(2022, 7, 11, 23));
        assert_eq!(hour("2022-12-31T23:30:00-01:00"), h(2023, 1, 1, 0));
        assert_eq!(hour("2000-02-29T12:00:00Z"), h(2000, 2, 29, 12));
        assert_eq!(hour("1969-12-31T23:59:59Z"), h(1969, 12, 31, 23));
    }

    #[test]
    fn other_text_is_refused() {
        for bad in [
            "",
            "2022-07-12",
            "2022-07-12T07:08:09",
            "2022-13-12T07:08:09Z",
            "2022-02-29T07:08:09Z",
            "2022-07-12T24:00:00Z",
            "2022-07-12T07:08:09.Z",
            "2022-07-12T07:08:09+0200",
            "2022-07-12T07:08:09Zjunk",
            "２０22-07-12T07:08:09Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
