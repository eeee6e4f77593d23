//! Times as the appliance prints them: `Thu Dec 03 10:15:42 2026 UTC` (ctime's layout, in UTC), spans as
//! `7d 2h 40m 1s`, and big numbers with thousands separators.

use sluice_queue_db::time::{MONTHS, WEEKDAYS, civil_from_days, parse_rfc3339};

/// `%a %b %d %H:%M:%S %Y UTC` of a time in milliseconds since the epoch.
pub fn ctime(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let s = secs.rem_euclid(86_400);
    format!(
        "{} {} {d:02} {:02}:{:02}:{:02} {y:04} UTC",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// [`ctime`] of an RFC 3339 time; the text as it came when it does not parse (a newer server's format is
/// still worth showing).
pub fn ctime_of(rfc3339: &str) -> String {
    parse_rfc3339(rfc3339).map_or_else(|| rfc3339.to_owned(), ctime)
}

/// `HH:MM:SS` (UTC) of an RFC 3339 time; the text as it came when it does not parse.
pub fn clock_of(rfc3339: &str) -> String {
    match parse_rfc3339(rfc3339) {
        Some(ms) => {
            let s = ms.div_euclid(1000).rem_euclid(86_400);
            format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
        }
        None => rfc3339.to_owned(),
    }
}

/// A span of seconds as the appliance writes uptimes: `7d 2h 40m 1s`, leading zero units left out, `0s`
/// for nothing.
pub fn span(seconds: u64) -> String {
    let parts = [(seconds / 86_400, "d"), (seconds % 86_400 / 3600, "h"), (seconds % 3600 / 60, "m")];
    let mut out: Vec<String> =
        parts.iter().skip_while(|(n, _)| *n == 0).map(|(n, unit)| format!("{n}{unit}")).collect();
    out.push(format!("{}s", seconds % 60));
    out.join(" ")
}

/// A count with thousands separators: `8,388,608`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_is_the_appliances_layout_in_utc() {
        assert_eq!(ctime_of("2026-12-03T10:15:42Z"), "Thu Dec 03 10:15:42 2026 UTC");
        assert_eq!(ctime_of("2014-08-18T11:40:01.999Z"), "Mon Aug 18 11:40:01 2014 UTC");
        // An offset is converted, across a day and a year.
        assert_eq!(ctime_of("2027-01-01T00:30:00+01:00"), "Thu Dec 31 23:30:00 2026 UTC");
        assert_eq!(ctime(0), "Thu Jan 01 00:00:00 1970 UTC");
        // Leap day.
        assert_eq!(ctime(951_868_799_000), "Tue Feb 29 23:59:59 2000 UTC");
        assert_eq!(ctime_of("yesterday"), "yesterday");
    }

    #[test]
    fn clock_is_the_utc_time_of_day() {
        assert_eq!(clock_of("2026-12-03T10:15:42.120Z"), "10:15:42");
        assert_eq!(clock_of("2026-12-03T10:15:42-02:00"), "12:15:42");
        assert_eq!(clock_of("soon"), "soon");
    }

    #[test]
    fn spans_leave_out_leading_zero_units() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(59), "59s");
        assert_eq!(span(3600), "1h 0m 0s");
        assert_eq!(span(7 * 86_400 + 2 * 3600 + 40 * 60 + 1), "7d 2h 40m 1s");
        assert_eq!(span(86_400 + 5), "1d 0h 0m 5s");
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(8_388_608), "8,388,608");
        assert_eq!(count(u64::MAX), "18,446,744,073,709,551,615");
    }
}
