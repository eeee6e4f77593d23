//! Searching the tracking log (Get-MessageTrackingLog, `GET /api/v1/tracking`): the events that match every
//! given criterion, oldest first, read from the daily files whose date can hold them.
//!
//! The files are streamed a line at a time (never a whole file in memory); a line that does not parse, or
//! that is longer than [`MAX_LINE`], is skipped and counted. A page ends after `limit` events; the next one
//! starts at a [`Bookmark`]: the date of a file and the byte offset of the next matching line in it, so that
//! turning a page costs no rescan of what came before. Before a line is parsed, a `Prefilter` looks for the
//! text a matching line must contain (the MID's digits, the event name, the longest literal part of an
//! address pattern): most lines of a narrow search are passed over without being parsed.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use memchr::memmem::Finder;

use sluice_api_types::TrackingEvent;
use sluice_queue_db::time::parse_rfc3339;

use super::EventId;

/// Lines longer than this (no event comes close) are skipped.
pub const MAX_LINE: usize = 1 << 20;

pub(crate) const DAY_MS: i64 = 86_400_000;

/// What a search asks for; every given criterion must match.
#[derive(Debug, Clone, Default)]
pub struct Criteria {
    /// The envelope sender: an address, ASCII case-insensitive, where `*` stands for any run of characters.
    pub sender: Option<String>,
    /// One of the event's recipients, as `sender`.
    pub recipient: Option<String>,
    /// The Message-ID, with or without its angle brackets.
    pub internet_message_id: Option<String>,
    pub mid: Option<u64>,
    pub event_id: Option<EventId>,
    /// Events at or after this time (milliseconds since the epoch).
    pub start_ms: Option<i64>,
    /// Events at or before this time.
    pub end_ms: Option<i64>,
}

/// Where a page starts: a daily file and a byte offset in it (`2026-12-03:18342`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bookmark {
    pub date: String,
    pub offset: u64,
}

impl Bookmark {
    pub fn parse(s: &str) -> Option<Bookmark> {
        let (date, offset) = s.split_once(':')?;
        day_of(date)?;
        Some(Bookmark { date: date.to_owned(), offset: offset.parse().ok()? })
    }
}

impl std::fmt::Display for Bookmark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.date, self.offset)
    }
}

/// A page of a search.
#[derive(Debug, Default)]
pub struct Found {
    pub events: Vec<TrackingEvent>,
    /// Where the next page starts, when there are more events.
    pub next: Option<Bookmark>,
    /// Lines skipped because they were too long, or did not parse (of those the `Prefilter` let through).
    pub skipped: u64,
}

impl Criteria {
    /// Whether `e` matches every criterion.
    pub fn matches(&self, e: &TrackingEvent) -> bool {
        let time_ok = || {
            if self.start_ms.is_none() && self.end_ms.is_none() {
                return true;
            }
            let Some(t) = parse_rfc3339(&e.time) else { return false };
            self.start_ms.is_none_or(|s| t >= s) && self.end_ms.is_none_or(|end| t <= end)
        };
        self.mid.is_none_or(|m| e.mid == m)
            && self.event_id.is_none_or(|id| e.event_id == id.as_str())
            && self.sender.as_deref().is_none_or(|p| address_matches(p, &e.sender))
            && self.recipient.as_deref().is_none_or(|p| e.recipients.iter().any(|r| address_matches(p, r)))
            && self
                .internet_message_id
                .as_deref()
                .is_none_or(|id| bare_id(id) == bare_id(e.internet_message_id.as_deref().unwrap_or("")))
            && time_ok()
    }
}

fn bare_id(id: &str) -> &str {
    let id = id.trim();
    id.strip_prefix('<').and_then(|i| i.strip_suffix('>')).unwrap_or(id)
}

/// Whether `address` matches `pattern`: case-insensitive, `*` standing for any run of characters (the
/// filters' `-like`).
pub fn address_matches(pattern: &str, address: &str) -> bool {
    sluice_filter::like(pattern, address)
}

/// The day (days since the epoch) of a `YYYY-MM-DD` date.
fn day_of(date: &str) -> Option<i64> {
    if date.len() != 10 {
        return None;
    }
    parse_rfc3339(&format!("{date}T00:00:00Z")).map(|ms| ms.div_euclid(DAY_MS))
}

/// The date of a daily file's name (`tracking-2026-12-03.log`), with its day number.
pub(crate) fn file_date(name: &str) -> Option<(String, i64)> {
    let date = name.strip_prefix("tracking-")?.strip_suffix(".log")?;
    Some((date.to_owned(), day_of(date)?))
}

/// The daily files in `dir` that can hold events of [`start_ms`, `end_ms`], oldest first. An event is
/// written to the file of the day it reaches the writer, a moment after its time: a file may hold events of
/// the evening before, so the file of the day after `end_ms` is read too.
pub fn files_for(dir: &Path, start_ms: Option<i64>, end_ms: Option<i64>) -> std::io::Result<Vec<(String, i64)>> {
    let mut files: Vec<(String, i64)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(f) = entry.file_name().to_str().and_then(file_date) {
            files.push(f);
        }
    }
    files.retain(|(_, day)| may_hold(*day, start_ms, end_ms));
    files.sort_by_key(|(_, day)| *day);
    Ok(files)
}

/// Whether the file of `day` can hold events of [`start_ms`, `end_ms`].
fn may_hold(day: i64, start_ms: Option<i64>, end_ms: Option<i64>) -> bool {
    let (first, last) = (day * DAY_MS, (day + 1) * DAY_MS - 1);
    start_ms.is_none_or(|s| last >= s) && end_ms.is_none_or(|e| first <= e.saturating_add(DAY_MS))
}

/// The events in `dir` that match `criteria`, from `from` on (or the start), at most `limit`.
pub fn search(dir: &Path, criteria: &Criteria, from: Option<&Bookmark>, limit: usize) -> std::io::Result<Found> {
    let mut found = Found::default();
    let from_day = from.and_then(|b| day_of(&b.date));
    for (date, day) in files_for(dir, criteria.start_ms, criteria.end_ms)? {
        if from_day.is_some_and(|d| day < d) {
            continue;
        }
        let offset = from.filter(|b| b.date == date).map_or(0, |b| b.offset);
        let file = match File::open(dir.join(format!("tracking-{date}.log"))) {
            Ok(f) => f,
            // Removed since listed (retention): nothing to read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if scan(file, &date, offset, criteria, limit, &mut found)? {
            break;
        }
    }
    Ok(found)
}

/// Text a line must contain for its event to match the criteria: a necessary condition, tested on the raw
/// line before it is parsed. It holds for lines as the writer writes them (compact JSON, which escapes only
/// `"`, `\` and control characters): a needle that holds one of those is not used.
pub(crate) struct Prefilter {
    /// Found as they are.
    exact: Vec<Finder<'static>>,
    /// Found in the line with ASCII letters in lower case (addresses compare case-insensitively).
    folded: Vec<Finder<'static>>,
}

impl Prefilter {
    pub(crate) fn new(c: &Criteria) -> Prefilter {
        let usable = |t: &str| !t.is_empty() && !t.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
        let mut exact: Vec<String> = Vec::new();
        if let Some(mid) = c.mid {
            exact.push(mid.to_string());
        }
        if let Some(id) = c.event_id {
            exact.push(format!("\"{}\"", id.as_str()));
        }
        if let Some(id) = c.internet_message_id.as_deref().map(bare_id).filter(|id| usable(id)) {
            exact.push(id.to_owned());
        }
        // The longest part of an address pattern without a wildcard.
        let folded = [&c.sender, &c.recipient]
            .into_iter()
            .filter_map(|p| p.as_deref()?.split('*').max_by_key(|part| part.len()).filter(|part| usable(part)))
            .map(str::to_ascii_lowercase);
        Prefilter {
            exact: exact.iter().map(|n| Finder::new(n.as_bytes()).into_owned()).collect(),
            folded: folded.map(|n| Finder::new(n.as_bytes()).into_owned()).collect(),
        }
    }

    /// Whether `line` may match; `scratch` holds its folded copy when one is needed.
    pub(crate) fn may_match(&self, line: &[u8], scratch: &mut Vec<u8>) -> bool {
        if !self.exact.iter().all(|f| f.find(line).is_some()) {
            return false;
        }
        if self.folded.is_empty() {
            return true;
        }
        scratch.clear();
        scratch.extend(line.iter().map(u8::to_ascii_lowercase));
        self.folded.iter().all(|f| f.find(scratch).is_some())
    }
}

/// Reads one file from `offset`, adding its matches to `found`; true when the page is full (`found.next`
/// then says where the next one starts).
fn scan(
    mut file: File,
    date: &str,
    offset: u64,
    criteria: &Criteria,
    limit: usize,
    found: &mut Found,
) -> std::io::Result<bool> {
    let prefilter = Prefilter::new(criteria);
    let mut scratch = Vec::new();
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut line = Vec::with_capacity(512);
    let mut at = offset;
    loop {
        line.clear();
        let n = (&mut reader).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(false);
        }
        let start = at;
        at += n as u64;
        if line.last() != Some(&b'\n') {
            if n > MAX_LINE {
                // Too long: skip to its end.
                found.skipped += 1;
                at += skip_line(&mut reader)?;
                continue;
            }
            // The writer's last line, still being written: the next search reads it.
            return Ok(false);
        }
        if !prefilter.may_match(&line, &mut scratch) {
            continue;
        }
        let Ok(event) = serde_json::from_slice::<TrackingEvent>(&line) else {
            found.skipped += 1;
            continue;
        };
        if !criteria.matches(&event) {
            continue;
        }
        if found.events.len() == limit {
            found.next = Some(Bookmark { date: date.to_owned(), offset: start });
            return Ok(true);
        }
        found.events.push(event);
    }
}

/// Reads up to and including the next newline; returns the bytes read.
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<u64> {
    let mut skipped = 0u64;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(skipped);
        }
        let (used, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        reader.consume(used);
        skipped += used as u64;
        if done {
            return Ok(skipped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(time: &str, id: &str, mid: u64, sender: &str, recipients: &[&str]) -> TrackingEvent {
        TrackingEvent {
            time: time.into(),
            event_id: id.into(),
            mid,
            internet_message_id: Some("<a1@example.com>".into()),
            sender: sender.into(),
            recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
            queue: None,
            source: None,
            source_ip: None,
            reply: None,
            audit: None,
        }
    }

    #[test]
    fn addresses_match_case_insensitively_with_wildcards() {
        for (pattern, address, expected) in [
            ("a@example.com", "a@example.com", true),
            ("A@Example.COM", "a@example.com", true),
            ("a@example.com", "a@example.co", false),
            ("a@example.co", "a@example.com", false),
            ("*@example.com", "bob@example.com", true),
            ("*@example.com", "bob@example.org", false),
            ("b*b@*", "bob@x", true),
            ("b*b@*", "bo@x", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
        ] {
            assert_eq!(address_matches(pattern, address), expected, "{pattern} ~ {address}");
        }
    }

    #[test]
    fn every_given_criterion_must_match() {
        let e = event("2026-12-03T10:00:00.000Z", "DELIVER", 7, "Alice@Example.com", &["bob@remote.test"]);
        let all = Criteria {
            sender: Some("alice@example.com".into()),
            recipient: Some("*@REMOTE.test".into()),
            internet_message_id: Some("a1@example.com".into()),
            mid: Some(7),
            event_id: Some(EventId::Deliver),
            start_ms: parse_rfc3339("2026-12-03T10:00:00Z"),
            end_ms: parse_rfc3339("2026-12-03T10:00:00Z"),
        };
        assert!(all.matches(&e));
        assert!(Criteria::default().matches(&e));
        let misses = [
            Criteria { sender: Some("bob@example.com".into()), ..Criteria::default() },
            Criteria { recipient: Some("alice@*".into()), ..Criteria::default() },
            Criteria { internet_message_id: Some("<other@example.com>".into()), ..Criteria::default() },
            Criteria { mid: Some(8), ..Criteria::default() },
            Criteria { event_id: Some(EventId::Fail), ..Criteria::default() },
            Criteria { start_ms: parse_rfc3339("2026-12-03T10:00:00.001Z"), ..Criteria::default() },
            Criteria { end_ms: parse_rfc3339("2026-12-03T09:59:59.999Z"), ..Criteria::default() },
        ];
        for c in misses {
            assert!(!c.matches(&e), "{c:?}");
        }
    }

    /// The prefilter never passes over a line whose event matches, and passes over most that do not.
    #[test]
    fn the_prefilter_keeps_every_matching_line() {
        let mut e = event("2026-12-03T10:00:00.000Z", "DELIVER", 7123, "Alice@Example.com", &["bob@remote.test"]);
        e.reply = Some("250 2.0.0 \"quoted\" ok".into());
        let line = serde_json::to_vec(&e).unwrap();
        let mut other = event("2026-12-03T10:00:00.000Z", "RECEIVE", 8, "c@d", &["e@f"]);
        other.internet_message_id = Some("<b2@other.test>".into());
        let other = serde_json::to_vec(&other).unwrap();
        let mut scratch = Vec::new();
        let criteria = [
            Criteria { mid: Some(7123), ..Criteria::default() },
            Criteria { event_id: Some(EventId::Deliver), ..Criteria::default() },
            Criteria { sender: Some("ALICE@example.COM".into()), ..Criteria::default() },
            Criteria { sender: Some("*@example.com".into()), ..Criteria::default() },
            Criteria { recipient: Some("b*@remote.*".into()), ..Criteria::default() },
            Criteria { internet_message_id: Some("<a1@example.com>".into()), ..Criteria::default() },
            Criteria { sender: Some("*".into()), recipient: Some("**".into()), ..Criteria::default() },
            Criteria { sender: Some("alice\"@example.com".into()), ..Criteria::default() },
        ];
        for (i, c) in criteria.iter().enumerate() {
            let p = Prefilter::new(c);
            if i < 7 {
                assert!(c.matches(&e), "{c:?}");
                assert!(p.may_match(&line, &mut scratch), "{c:?}");
            }
            if i < 6 {
                assert!(!p.may_match(&other, &mut scratch), "{c:?}");
            }
        }
        // A needle that JSON would escape is not used: the line is parsed and compared.
        assert!(Prefilter::new(&criteria[7]).may_match(&other, &mut scratch));
    }

    #[test]
    fn only_the_files_whose_day_can_hold_the_range_are_read() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "tracking-2026-11-30.log",
            "tracking-2026-12-01.log",
            "tracking-2026-12-02.log",
            "tracking-2026-12-03.log",
            "tracking-2026-12-04.log",
            "tracking-2026-13-01.log",
            "tracking-2026-12-02.log.tmp",
            "other.log",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let dates = |s: Option<&str>, e: Option<&str>| -> Vec<String> {
            files_for(dir.path(), s.and_then(parse_rfc3339), e.and_then(parse_rfc3339))
                .unwrap()
                .into_iter()
                .map(|(d, _)| d)
                .collect()
        };
        assert_eq!(dates(None, None), ["2026-11-30", "2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"]);
        // The day after the end may hold the end's last events.
        assert_eq!(
            dates(Some("2026-12-01T12:00:00Z"), Some("2026-12-02T01:00:00Z")),
            ["2026-12-01", "2026-12-02", "2026-12-03"]
        );
        assert_eq!(dates(Some("2026-12-03T00:00:00Z"), None), ["2026-12-03", "2026-12-04"]);
        assert_eq!(dates(None, Some("2026-11-29T23:59:59Z")), ["2026-11-30"]);
        assert_eq!(dates(Some("2026-12-05T00:00:00Z"), None), Vec::<String>::new());
    }

    #[test]
    fn a_search_streams_pages_skips_bad_lines_and_leaves_a_partial_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let line = |e: &TrackingEvent| format!("{}\n", serde_json::to_string(e).unwrap());
        let day1: String = (1..=3)
            .map(|mid| line(&event("2026-12-01T10:00:00.000Z", "RECEIVE", mid, "a@x", &["b@y"])))
            .chain(["not json\n".to_owned(), format!("{}\n", "x".repeat(MAX_LINE + 10))])
            .collect();
        std::fs::write(dir.path().join("tracking-2026-12-01.log"), day1).unwrap();
        let day2 = format!(
            "{}{}{{\"time\":\"2026-12-02",
            line(&event("2026-12-02T10:00:00.000Z", "RECEIVE", 4, "a@x", &["b@y"])),
            line(&event("2026-12-02T10:00:00.000Z", "DELIVER", 4, "a@x", &["b@y"]))
        );
        std::fs::write(dir.path().join("tracking-2026-12-02.log"), day2).unwrap();
        let c = Criteria { event_id: Some(EventId::Receive), ..Criteria::default() };
        let mut mids = Vec::new();
        let mut from = None;
        let mut skipped = 0;
        loop {
            let page = search(dir.path(), &c, from.as_ref(), 2).unwrap();
            mids.extend(page.events.iter().map(|e| e.mid));
            skipped += page.skipped;
            let Some(next) = page.next else { break };
            from = Some(Bookmark::parse(&next.to_string()).unwrap());
        }
        assert_eq!(mids, [1, 2, 3, 4]);
        // The line too long; "not json" has no "RECEIVE" and is passed over before it is parsed.
        assert_eq!(skipped, 1);
        let all = search(dir.path(), &Criteria::default(), None, 100).unwrap();
        assert_eq!((all.events.len(), all.skipped), (5, 2));
        assert_eq!(Bookmark::parse("2026-12-02:17"), Some(Bookmark { date: "2026-12-02".into(), offset: 17 }));
        assert_eq!(Bookmark::parse("yesterday:17"), None);
    }
}
