//! Wall-clock helpers: persisted times are milliseconds since the Unix epoch (UTC).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `YYYYMMDDHH` (UTC) of a Unix time in milliseconds, for generation file names.
pub(crate) fn yyyymmddhh(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let hour = secs.rem_euclid(86_400) / 3600;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}{hour:02}")
}

/// Converts days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
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

    #[test]
    fn generation_names_use_utc_calendar_hours() {
        assert_eq!(yyyymmddhh(0), "1970010100");
        // 2026-11-22T05:54:05Z
        assert_eq!(yyyymmddhh(1_795_326_845_000), "2026112205");
        // 2000-02-29T23:59:59Z (leap day)
        assert_eq!(yyyymmddhh(951_868_799_000), "2000022923");
    }
}

/// RFC 3339 UTC with milliseconds (`2026-11-22T05:34:05.123Z`).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", s / 3600, s % 3600 / 60, s % 60, ms.rem_euclid(1000))
}

/// Parses RFC 3339 (`2026-11-22T05:34:05Z`, optional fraction, `Z` or a `+hh:mm`/`-hh:mm` offset) into
/// milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = s.get(start..i).filter(|f| !f.is_empty())?;
        ms = format!("{frac:0<3}")[..3].parse::<i64>().ok()?;
    }
    let offset = match s.get(i..)? {
        "Z" | "z" => 0,
        o if o.len() == 6 && matches!(o.as_bytes()[0], b'+' | b'-') && o.as_bytes()[3] == b':' => {
            let m = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if o.starts_with('-') { -m } else { m }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) - offset * 60) * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` (UTC).
pub fn date(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(1000).div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// C's `ctime` layout in UTC, as the mail security appliance's logs write it: `Mon Aug 18 11:32:55 2014`
/// (the day of the month padded with a space to width 2).
pub fn ctime(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let s = secs.rem_euclid(86_400);
    format!(
        "{} {} {d:>2} {:02}:{:02}:{:02} {y}",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// Weekday names from 1970-01-01, a Thursday: `WEEKDAYS[days.rem_euclid(7)]`.
pub const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
/// Month names, January first.
pub const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// RFC 5322 date-time in UTC (`Sun, 22 Nov 2026 05:34:05 +0000`), for `Received:` headers.
pub fn rfc5322(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let s = secs.rem_euclid(86_400);
    format!(
        "{}, {d} {} {y:04} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

#[cfg(test)]
mod ctime_tests {
    use super::ctime;

    #[test]
    fn ctime_formats_known_times() {
        let cases = [
            (1_408_361_575, "Mon Aug 18 11:32:55 2014"),
            (0, "Thu Jan  1 00:00:00 1970"),
            (1_407_485_001, "Fri Aug  8 08:03:21 2014"),
            (951_782_400, "Tue Feb 29 00:00:00 2000"),
            (-1, "Wed Dec 31 23:59:59 1969"),
            (4_102_444_800, "Fri Jan  1 00:00:00 2100"),
        ];
        for (seconds, want) in cases {
            assert_eq!(ctime(seconds * 1000), want, "{seconds}");
        }
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn formats_are_utc() {
        assert_eq!(rfc3339(1_795_326_845_123), "2026-11-22T05:54:05.123Z");
        assert_eq!(rfc5322(1_795_326_845_123), "Sun, 22 Nov 2026 05:54:05 +0000");
        assert_eq!(date(0), "1970-01-01");
    }

    #[test]
    fn rfc3339_parses_what_it_formats_and_offsets() {
        for ms in [0, 951_868_799_000, 1_795_326_845_123] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(parse_rfc3339("2026-11-22T05:54:05Z"), Some(1_795_326_845_000));
        assert_eq!(parse_rfc3339("2026-11-22T06:54:05+01:00"), Some(1_795_326_845_000));
        assert_eq!(parse_rfc3339("2026-11-22T05:54:05.5Z"), Some(1_795_326_845_500));
        for bad in [
            "",
            "2026-11-22",
            "2026-13-22T05:54:05Z",
            "2026-11-22T05:54:05",
            "2026-11-22T05:54:05.Z",
            "x026-11-22T05:54:05Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
