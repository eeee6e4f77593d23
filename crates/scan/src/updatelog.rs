//! The updater log's line format, as the mail security appliance writes it:
//!
//! ```text
//! Mon Aug 18 11:32:55 2014 Info: antispam verifying applied files
//! ```
//!
//! The time is UTC in C's `ctime` layout (the day of the month padded with a space to width 2),
//! then the level, a colon and the text. The civil date is computed here from the day count
//! (Howard Hinnant's `civil_from_days`), so no date library is needed.

/// One log line (without a line break) for `text` at `level`, stamped `unix_seconds` (UTC).
/// Line breaks and other control characters in `text` become spaces, so that one call is always
/// one line.
pub fn line(unix_seconds: i64, level: &str, text: &str) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let second_of_day = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {} {}: {}",
        weekday_name(days),
        month_name(month),
        day,
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
        year,
        level,
        text
    )
}

/// The proleptic Gregorian (year, month 1-12, day 1-31) of a count of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 is March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // month is 1..=12 and day 1..=31 by construction.
    (year, month as u32, day as u32)
}

fn weekday_name(days: i64) -> &'static str {
    // 1970-01-01 was a Thursday.
    const NAMES: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    NAMES[days.rem_euclid(7) as usize]
}

fn month_name(month: u32) -> &'static str {
    const NAMES: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    NAMES.get(month.wrapping_sub(1) as usize).copied().unwrap_or("???")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_timestamps() {
        let cases = [
            (1_408_361_575, "Mon Aug 18 11:32:55 2014"),
            (0, "Thu Jan  1 00:00:00 1970"),
            (1_407_485_001, "Fri Aug  8 08:03:21 2014"),
            (951_782_400, "Tue Feb 29 00:00:00 2000"),
            (1_709_251_199, "Thu Feb 29 23:59:59 2024"),
            (-1, "Wed Dec 31 23:59:59 1969"),
            (4_102_444_800, "Fri Jan  1 00:00:00 2100"),
        ];
        for (seconds, want) in cases {
            assert_eq!(line(seconds, "Info", "x"), format!("{want} Info: x"), "{seconds}");
        }
    }

    #[test]
    fn the_appliance_example() {
        assert_eq!(
            line(1_408_361_575, "Info", "antispam verifying applied files"),
            "Mon Aug 18 11:32:55 2014 Info: antispam verifying applied files"
        );
    }

    #[test]
    fn control_characters_do_not_break_the_line() {
        assert_eq!(line(0, "Warning", "a\r\nb"), "Thu Jan  1 00:00:00 1970 Warning: a  b");
    }
}
