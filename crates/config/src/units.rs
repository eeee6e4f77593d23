//! Human units of the configuration file: durations (`100ms`, `30s`, `5m`, `4h`, `2d`), sizes (`64KB`,
//! `35MB`, `2GB`, binary multiples) and times of day (`01:00:00`).
//!
//! Every parser here has a renderer that gives back the shortest exact human form, so that
//! `parse(render(x)) == x` and `sluice check-config` prints values the way an operator would write them.

use std::fmt;
use std::time::Duration;

/// Duration units, largest first, as (suffix, milliseconds).
const DURATION_UNITS: [(&str, u64); 5] = [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Size units, largest first, as (suffix, bytes). `B` is accepted on input but never rendered.
const SIZE_UNITS: [(&str, u64); 4] = [("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)];

/// Splits `"35MB"` into `(35, "MB")`, allowing blanks between the number and the unit.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    if digits == 0 {
        return None;
    }
    let number = text[..digits].parse().ok()?;
    Some((number, text[digits..].trim_start()))
}

/// Parses a duration such as `100ms`, `30s`, `5m`, `4h` or `2d`.
///
/// The error is a sentence fragment for [`crate::ConfigError::Invalid`]; the caller adds the key.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad =
        || format!("invalid duration {text:?}: expected a whole number and a unit (ms, s, m, h, d), e.g. \"30s\"");
    let (number, unit) = split_number(text).ok_or_else(bad)?;
    let (_, millis) = DURATION_UNITS.iter().find(|(suffix, _)| suffix.eq_ignore_ascii_case(unit)).ok_or_else(bad)?;
    let total = number.checked_mul(*millis).ok_or_else(|| format!("duration {text:?} is too large"))?;
    Ok(Duration::from_millis(total))
}

/// Renders a duration in the largest unit that represents it exactly (`"35m"`, `"100ms"`, `"0s"`).
///
/// Sub-millisecond parts cannot come from [`parse_duration`] and are dropped.
pub fn render_duration(duration: Duration) -> String {
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return "0s".to_owned();
    }
    DURATION_UNITS
        .iter()
        .find(|(_, unit)| millis.is_multiple_of(*unit))
        .map(|(suffix, unit)| format!("{}{suffix}", millis / unit))
        // The last unit is 1 ms, which divides every value, so `find` always succeeds.
        .unwrap_or_else(|| format!("{millis}ms"))
}

/// Parses a size such as `64KB`, `35MB`, `2GB` (binary: 1 KB = 1024 bytes), `512B` or a bare `4096` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid size {text:?}: expected a whole number of bytes or a number and a unit (KB, MB, GB, TB), e.g. \"35MB\""
        )
    };
    let (number, unit) = split_number(text).ok_or_else(bad)?;
    let multiplier = if unit.is_empty() || unit.eq_ignore_ascii_case("B") {
        1
    } else {
        SIZE_UNITS
            .iter()
            .find(|(suffix, _)| suffix.eq_ignore_ascii_case(unit))
            .map(|(_, bytes)| *bytes)
            .ok_or_else(bad)?
    };
    number.checked_mul(multiplier).ok_or_else(|| format!("size {text:?} is too large"))
}

/// Renders a size in the largest binary unit that represents it exactly (`"35MB"`), else in bytes (`"1000B"`).
pub fn render_size(bytes: u64) -> String {
    SIZE_UNITS
        .iter()
        .find(|(_, unit)| bytes != 0 && bytes.is_multiple_of(*unit))
        .map(|(suffix, unit)| format!("{}{suffix}", bytes / unit))
        .unwrap_or_else(|| format!("{bytes}B"))
}

/// A wall-clock time of day, as in `online_defrag_schedule = "01:00:00"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay {
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub minute: u8,
    /// 0..=59.
    pub second: u8,
}

impl TimeOfDay {
    /// Parses `HH:MM:SS` (24-hour clock, two digits each).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("invalid time of day {text:?}: expected \"HH:MM:SS\", e.g. \"01:00:00\"");
        let mut parts = text.split(':');
        let mut field = |max: u8| -> Result<u8, String> {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let value: u8 = part.parse().map_err(|_| bad())?;
            if value > max {
                return Err(bad());
            }
            Ok(value)
        };
        let time = TimeOfDay { hour: field(23)?, minute: field(59)?, second: field(59)? };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(time)
    }

    /// Seconds since midnight.
    pub fn seconds_since_midnight(self) -> u32 {
        u32::from(self.hour) * 3600 + u32::from(self.minute) * 60 + u32::from(self.second)
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let cases: &[(&str, u64)] = &[
            ("100ms", 100),
            ("30s", 30_000),
            ("5m", 300_000),
            ("4h", 14_400_000),
            ("2d", 172_800_000),
            ("0s", 0),
            ("10 s", 10_000),
            ("3H", 10_800_000),
        ];
        for (text, millis) in cases {
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(*millis)), "{text}");
        }
    }

    #[test]
    fn bad_durations_are_refused() {
        for text in ["", "s", "10", "10x", "1.5h", "-1s", "1h30m", "99999999999999999999d", "9999999999999999d"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
    }

    #[test]
    fn durations_render_in_largest_exact_unit() {
        let cases: &[(u64, &str)] = &[
            (100, "100ms"),
            (1_500, "1500ms"),
            (30_000, "30s"),
            (90_000, "90s"),
            (300_000, "5m"),
            (5_400_000, "90m"),
            (14_400_000, "4h"),
            (172_800_000, "2d"),
            (0, "0s"),
        ];
        for (millis, text) in cases {
            let duration = Duration::from_millis(*millis);
            assert_eq!(render_duration(duration), *text);
            assert_eq!(parse_duration(text), Ok(duration));
        }
    }

    #[test]
    fn sizes_parse() {
        let cases: &[(&str, u64)] = &[
            ("64KB", 64 * 1024),
            ("35MB", 35 * 1024 * 1024),
            ("2GB", 2 * 1024 * 1024 * 1024),
            ("1TB", 1 << 40),
            ("500mb", 500 * 1024 * 1024),
            ("4096", 4096),
            ("12B", 12),
            ("0", 0),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text), Ok(*bytes), "{text}");
        }
    }

    #[test]
    fn bad_sizes_are_refused() {
        for text in ["", "MB", "1.5MB", "10 XB", "-1", "99999999999TB"] {
            assert!(parse_size(text).is_err(), "{text}");
        }
    }

    #[test]
    fn sizes_render_in_largest_exact_unit() {
        let cases: &[(u64, &str)] =
            &[(35 * 1024 * 1024, "35MB"), (1024, "1KB"), (1536, "1536B"), (1000, "1000B"), (0, "0B"), (3 << 30, "3GB")];
        for (bytes, text) in cases {
            assert_eq!(render_size(*bytes), *text);
            assert_eq!(parse_size(text), Ok(*bytes));
        }
    }

    #[test]
    fn time_of_day_round_trips() {
        let time = TimeOfDay::parse("01:00:00").expect("valid");
        assert_eq!(time, TimeOfDay { hour: 1, minute: 0, second: 0 });
        assert_eq!(time.to_string(), "01:00:00");
        assert_eq!(time.seconds_since_midnight(), 3600);
        assert_eq!(TimeOfDay::parse("23:59:59").map(|t| t.to_string()).as_deref(), Ok("23:59:59"));
        for text in ["24:00:00", "1:00:00", "01:60:00", "01:00", "01:00:00:00", "aa:bb:cc", ""] {
            assert!(TimeOfDay::parse(text).is_err(), "{text}");
        }
    }
}
