//! ClamAV extended body signatures: `.ndb` files (and the unofficial `.ndu`).
//!
//! A line is `MalwareName:TargetType:Offset:HexSignature[:min_flevel[:max_flevel]]`; what of it
//! is supported is described in the [module documentation](super) of the engine. This module
//! parses lines into [`BodySignature`]s and matches a set of them against content.
//!
//! # Matching
//!
//! A hex signature is split at its unbounded gaps (`*`, `{n-}`) into [`Segment`]s, each of which
//! has a bounded length. Every signature with a fixed byte run of at least two bytes gets one
//! [`Anchor`]: the longest such run (at most [`MAX_ANCHOR`] bytes of it, the window with the
//! fewest common bytes such as NUL, space and 0xFF). All anchors go into one Aho-Corasick
//! automaton, which is run once over the content, reporting every (overlapping) occurrence. Only
//! the signatures whose anchor occurred are verified, each around the occurrences of its anchor:
//!
//! - the segments before the anchor's segment are matched leftmost, each ending as early as it
//!   can (once per signature and part, the first time its anchor occurs);
//! - the anchor's segment is tried at the starts that put the anchor where it occurred, after the
//!   earlier segments and within the offset constraint; a start is tried at most once;
//! - the segments after it are matched leftmost from where it ended; when they do not match, no
//!   later end of the anchor's segment is followed up again.
//!
//! Matching the segments one after the other, each at its earliest end, finds a match whenever
//! there is one: an earlier end leaves at least as much room for the rest. A segment is matched by
//! simulating its tokens over sets of positions (ranges), so alternatives and bounded gaps cost no
//! backtracking.
//!
//! Signatures without a fixed run of two bytes are few; they are verified on every part.
//!
//! # Bounded work
//!
//! Every part gets a budget of [`STEPS_PER_BYTE`] steps per byte plus [`MIN_STEPS`]: a step is one
//! position examined by a token, one compared byte, one gap applied, or one (anchor occurrence,
//! signature) pair looked at. The automaton reports at most [`MAX_ANCHOR`] anchor occurrences per
//! byte (distinct anchors ending at one position differ in length), and a signature never tries
//! the same start of its anchor's segment twice. When the budget runs out the part is given up as
//! clean: a hostile signature set, or a hostile part against an unlucky one, costs time linear in
//! the part's size, at the price of possibly missing a match in that part.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use aho_corasick::{AhoCorasick, MatchKind};

/// The longest anchor put into the automaton, in bytes; a longer fixed run contributes a window of
/// this many bytes.
pub(super) const MAX_ANCHOR: usize = 32;

/// The work a part may cost per byte of its length, in steps (see the module documentation).
pub(super) const STEPS_PER_BYTE: u64 = 16;

/// The work any part may cost, however short.
pub(super) const MIN_STEPS: u64 = 1 << 22;

/// How many start positions of a segment are simulated together.
const WINDOW: usize = 4096;

/// Bytes too common to make a good anchor.
const COMMON_BYTES: [u8; 6] = [0x00, 0x20, 0xff, 0x0a, 0x0d, 0x90];

/// One parsed `.ndb` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BodySignature {
    /// The malware name reported on a match.
    name: String,
    /// Which content the signature applies to.
    target: Target,
    /// Where the match must start.
    offset: Offset,
    /// The pattern, split at its unbounded gaps.
    segments: Vec<Segment>,
    /// The fixed run the automaton looks for; `None` when there is no run of two bytes.
    anchor: Option<Anchor>,
}

/// A signature's target type: what kind of content it applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// 0: any part.
    Any,
    /// 1: a part starting with `MZ` (DOS/Windows executable).
    Pe,
    /// 3: an HTML part: of MIME type `text/html`, or see [`looks_like_html`].
    Html,
    /// 4: the whole raw message, not a part.
    Mail,
    /// 6: a part starting with `\x7fELF`.
    Elf,
    /// 7: a text part: no NUL byte in it.
    Text,
    /// 10: a part starting with `%PDF-`.
    Pdf,
}

/// Where a match may start, in bytes from the start of the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Offset {
    /// `*`: anywhere.
    Any,
    /// `n` or `n,shift`: from `at` to `at + shift`.
    Start { at: usize, shift: usize },
    /// `EOF-n` or `EOF-n,shift`: from `back` bytes before the end to `shift` bytes after that.
    FromEnd { back: usize, shift: usize },
}

/// One element of a hex signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token {
    /// Fixed bytes, never empty.
    Literal(Vec<u8>),
    /// One byte compared under a mask: `a?` or `?a`.
    Masked(ByteMask),
    /// `min` to `max` arbitrary bytes (`None`: any number): `??`, `{n}`, `{n-m}`, `[n-m]`, `*`...
    Gap { min: usize, max: Option<usize> },
    /// One of several byte strings, each never empty: `(aa|bb??|c?dd)`.
    Choice(Vec<Vec<ByteMask>>),
}

/// A byte pattern: a content byte `b` matches when `b & mask == value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ByteMask {
    value: u8,
    mask: u8,
}

/// A run of tokens with bounded gaps only, preceded by an unbounded gap (except the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Segment {
    /// The fewest bytes between the end of the previous segment and the start of this one.
    skip: usize,
    /// The tokens, none of them an unbounded gap.
    tokens: Vec<Token>,
    /// The fewest bytes a match of the segment spans.
    min_len: usize,
}

/// The fixed bytes a signature is found by, and where they lie in their segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Anchor {
    bytes: Vec<u8>,
    /// The index of the segment holding the anchor.
    segment: usize,
    /// The fewest bytes between the start of the segment and the anchor.
    min_before: usize,
    /// The most bytes between the start of the segment and the anchor.
    max_before: usize,
}

/// A compiled set of body signatures: those scanned against each part, and those scanned against
/// the raw message (target type 4).
#[derive(Debug, Clone, Default)]
pub(super) struct BodySignatures {
    parts: SignatureSet,
    mail: SignatureSet,
}

/// Signatures with one automaton over their anchors.
#[derive(Debug, Clone, Default)]
struct SignatureSet {
    signatures: Vec<BodySignature>,
    /// The automaton over the distinct anchors; `None` when no signature has one.
    automaton: Option<AhoCorasick>,
    /// For each pattern of the automaton, the signatures anchored on it.
    owners: Vec<Vec<usize>>,
    /// The signatures without an anchor, verified on every part.
    unanchored: Vec<usize>,
}

/// What scanning one part cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ScanStats {
    /// The distinct signatures verified: those whose anchor occurred (and whose target type the
    /// part has), plus those without an anchor.
    pub candidates: usize,
    /// The steps spent verifying.
    pub steps: u64,
    /// Whether the budget ran out, so that the part was given up as clean.
    pub exhausted: bool,
}

/// The content being scanned, with what its target type tests found, computed on first use.
pub(super) struct Part<'a> {
    data: &'a [u8],
    /// Whether the part's MIME type is `text/html`.
    html_type: bool,
    html: OnceCell<bool>,
    text: OnceCell<bool>,
}

/// The verification budget of a part ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exhausted;

/// The steps left to spend on a part.
#[derive(Debug)]
struct Budget {
    left: u64,
    spent: u64,
}

/// What verifying one signature against one part has found so far.
#[derive(Debug, Default)]
struct Progress {
    /// The signature cannot match this part.
    dead: bool,
    /// The earliest start of the anchor's segment, once the segments before it are matched.
    lower: Option<usize>,
    /// The first start of the anchor's segment not yet tried.
    next_start: usize,
    /// The earliest end of the anchor's segment from which the segments after it were found not to
    /// match: they cannot match after a later end either.
    failed_from: Option<usize>,
}

/// Parses one signature line (already trimmed, not blank, not a comment).
pub(super) fn parse_line(line: &str) -> Result<BodySignature, String> {
    let fields: Vec<&str> = line.split(':').collect();
    if !(4..=6).contains(&fields.len()) {
        return Err("expected name:target:offset:hexsignature".to_owned());
    }
    let name = fields[0].trim();
    if name.is_empty() {
        return Err("empty signature name".to_owned());
    }
    if fields[4..].iter().any(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit())) {
        return Err("functionality level is not a number".to_owned());
    }
    let target = parse_target(fields[1].trim())?;
    let offset = parse_offset(fields[2].trim())?;
    let tokens = parse_pattern(fields[3].trim())?;
    let segments = split_segments(tokens);
    let anchor = choose_anchor(&segments);
    Ok(BodySignature { name: name.to_owned(), target, offset, segments, anchor })
}

/// Parses a target type number.
fn parse_target(text: &str) -> Result<Target, String> {
    let number: u32 = text.parse().map_err(|_| format!("target type {text:?} is not a number"))?;
    let unsupported = match number {
        0 => return Ok(Target::Any),
        1 => return Ok(Target::Pe),
        3 => return Ok(Target::Html),
        4 => return Ok(Target::Mail),
        6 => return Ok(Target::Elf),
        7 => return Ok(Target::Text),
        10 => return Ok(Target::Pdf),
        2 => "OLE2",
        5 => "graphics",
        8 => "unused",
        9 => "Mach-O",
        11 => "Flash",
        12 => "Java class",
        _ => "unknown",
    };
    Err(format!("target type {number} ({unsupported}) is not supported"))
}

/// Parses an offset: `*`, `n`, `EOF-n`, either of the last two followed by `,shift`.
fn parse_offset(text: &str) -> Result<Offset, String> {
    if text == "*" {
        return Ok(Offset::Any);
    }
    let (base, shift) = match text.split_once(',') {
        Some((base, shift)) => (base, parse_number(shift).ok_or_else(|| format!("offset {text:?}: bad shift"))?),
        None => (text, 0),
    };
    if let Some(at) = parse_number(base) {
        return Ok(Offset::Start { at, shift });
    }
    if let Some(back) = base.strip_prefix("EOF-").and_then(parse_number) {
        return Ok(Offset::FromEnd { back, shift });
    }
    let relative = ["EP+", "EP-", "SL+", "SE", "S"].iter().any(|p| base.starts_with(p));
    if relative {
        return Err(format!("offset {text:?} needs PE parsing: not supported"));
    }
    Err(format!("offset {text:?} is not *, n, n,m or EOF-n"))
}

/// A decimal number of ASCII digits only.
fn parse_number(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses a hex signature into tokens: adjacent fixed bytes joined into one literal, adjacent gaps
/// into one gap.
pub(super) fn parse_pattern(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (token, next) = match chars[i] {
            '*' => (Token::Gap { min: 0, max: None }, i + 1),
            '{' => {
                let (body, next) = enclosed(&chars, i, '}')?;
                (parse_gap(&body, true)?, next)
            }
            '[' => {
                let (body, next) = enclosed(&chars, i, ']')?;
                (parse_gap(&body, false)?, next)
            }
            '(' => {
                let (body, next) = enclosed(&chars, i, ')')?;
                (parse_choice(&body)?, next)
            }
            '!' => return Err("negated alternatives !(..) are not supported".to_owned()),
            _ => (parse_byte(&chars, i)?, i + 2),
        };
        push_token(&mut tokens, token);
        i = next;
    }
    if !tokens.iter().any(|t| !matches!(t, Token::Gap { .. })) {
        return Err("the hex signature has no bytes to match".to_owned());
    }
    Ok(tokens)
}

/// The text between `chars[open]` and the next `close`, and the index after `close`.
fn enclosed(chars: &[char], open: usize, close: char) -> Result<(String, usize), String> {
    let rest = chars.get(open + 1..).unwrap_or_default();
    let len = rest.iter().position(|&c| c == close).ok_or_else(|| format!("unclosed {:?}", chars[open]))?;
    Ok((rest[..len].iter().collect(), open + len + 2))
}

/// Parses the inside of `{n}`, `{n-}`, `{-n}`, `{n-m}` or (`braces` false) `[n-m]`.
fn parse_gap(body: &str, braces: bool) -> Result<Token, String> {
    let bad = || if braces { format!("bad gap {{{body}}}") } else { format!("bad gap [{body}]") };
    let (min, max) = match body.split_once('-') {
        None if braces => {
            let n = parse_number(body).ok_or_else(bad)?;
            (n, Some(n))
        }
        Some(("", max)) if braces => (0, Some(parse_number(max).ok_or_else(bad)?)),
        Some((min, "")) if braces => (parse_number(min).ok_or_else(bad)?, None),
        Some((min, max)) => (parse_number(min).ok_or_else(bad)?, Some(parse_number(max).ok_or_else(bad)?)),
        None => return Err(bad()),
    };
    if max.is_some_and(|max| max < min) {
        return Err(bad());
    }
    Ok(Token::Gap { min, max })
}

/// Parses the inside of `(aa|bb|..)`: alternatives of hex bytes, `??` and nibble wildcards.
fn parse_choice(body: &str) -> Result<Token, String> {
    if body == "B" || body == "L" {
        return Err(format!("({body}) boundary anchors are not supported"));
    }
    let mut alternatives = Vec::new();
    for alternative in body.split('|') {
        let chars: Vec<char> = alternative.chars().collect();
        if chars.is_empty() || !chars.len().is_multiple_of(2) {
            return Err(format!("bad alternative {alternative:?} in ({body})"));
        }
        let bytes = chars
            .chunks(2)
            .map(|pair| byte_mask(pair[0], pair[1]))
            .collect::<Option<Vec<ByteMask>>>()
            .ok_or_else(|| format!("bad alternative {alternative:?} in ({body})"))?;
        alternatives.push(bytes);
    }
    Ok(Token::Choice(alternatives))
}

/// Parses the byte (two hex digits, `??`, `a?` or `?a`) at `chars[i]`.
fn parse_byte(chars: &[char], i: usize) -> Result<Token, String> {
    let (Some(&high), Some(&low)) = (chars.get(i), chars.get(i + 1)) else {
        return Err(format!("odd number of hex digits at character {}", i + 1));
    };
    let byte = byte_mask(high, low).ok_or_else(|| format!("unexpected {:?} at character {}", chars[i], i + 1))?;
    Ok(match byte.mask {
        0xff => Token::Literal(vec![byte.value]),
        0 => Token::Gap { min: 1, max: Some(1) },
        _ => Token::Masked(byte),
    })
}

/// A byte pattern from two characters, each a hex digit or `?`.
fn byte_mask(high: char, low: char) -> Option<ByteMask> {
    let nibble = |c: char| -> Option<(u8, u8)> {
        match c {
            '?' => Some((0, 0)),
            _ => c.to_digit(16).and_then(|d| u8::try_from(d).ok()).map(|d| (d, 0x0f)),
        }
    };
    let (high, high_mask) = nibble(high)?;
    let (low, low_mask) = nibble(low)?;
    Some(ByteMask { value: (high << 4) | low, mask: (high_mask << 4) | low_mask })
}

/// Appends a token, joining it to the previous one when both are literals or both are gaps.
fn push_token(tokens: &mut Vec<Token>, token: Token) {
    match (tokens.last_mut(), token) {
        (Some(Token::Literal(previous)), Token::Literal(bytes)) => previous.extend_from_slice(&bytes),
        (Some(Token::Gap { min, max }), Token::Gap { min: more_min, max: more_max }) => {
            *min = min.saturating_add(more_min);
            *max = max.zip(more_max).map(|(a, b)| a.saturating_add(b));
        }
        (_, token) => tokens.push(token),
    }
}

/// Splits tokens at their unbounded gaps.
fn split_segments(tokens: Vec<Token>) -> Vec<Segment> {
    let mut segments = vec![Segment { skip: 0, tokens: Vec::new(), min_len: 0 }];
    for token in tokens {
        match token {
            Token::Gap { min, max: None } => segments.push(Segment { skip: min, tokens: Vec::new(), min_len: 0 }),
            token => {
                if let Some(segment) = segments.last_mut() {
                    segment.min_len = segment.min_len.saturating_add(token_len(&token).0);
                    segment.tokens.push(token);
                }
            }
        }
    }
    segments
}

/// The fewest and the most bytes a token spans (`usize::MAX` for no limit).
fn token_len(token: &Token) -> (usize, usize) {
    match token {
        Token::Literal(bytes) => (bytes.len(), bytes.len()),
        Token::Masked(_) => (1, 1),
        Token::Gap { min, max } => (*min, max.unwrap_or(usize::MAX)),
        Token::Choice(alternatives) => {
            let lens = alternatives.iter().map(Vec::len);
            (lens.clone().min().unwrap_or(0), lens.max().unwrap_or(0))
        }
    }
}

/// The best anchor: the longest fixed run of at least two bytes (a window of [`MAX_ANCHOR`] bytes
/// of a longer one), ties going to the one with the fewest common bytes.
fn choose_anchor(segments: &[Segment]) -> Option<Anchor> {
    let mut best: Option<((usize, usize), Anchor)> = None;
    for (index, segment) in segments.iter().enumerate() {
        let (mut min_before, mut max_before) = (0usize, 0usize);
        for token in &segment.tokens {
            if let Token::Literal(bytes) = token
                && bytes.len() >= 2
            {
                let (start, window) = rarest_window(bytes);
                let score = (window.len(), rare_count(window));
                if best.as_ref().is_none_or(|(best_score, _)| score > *best_score) {
                    let anchor = Anchor {
                        bytes: window.to_vec(),
                        segment: index,
                        min_before: min_before.saturating_add(start),
                        max_before: max_before.saturating_add(start),
                    };
                    best = Some((score, anchor));
                }
            }
            let (min, max) = token_len(token);
            min_before = min_before.saturating_add(min);
            max_before = max_before.saturating_add(max);
        }
    }
    best.map(|(_, anchor)| anchor)
}

/// The window of at most [`MAX_ANCHOR`] bytes of `bytes` with the most rare bytes, and its start.
fn rarest_window(bytes: &[u8]) -> (usize, &[u8]) {
    if bytes.len() <= MAX_ANCHOR {
        return (0, bytes);
    }
    let mut best = (rare_count(&bytes[..MAX_ANCHOR]), 0);
    let mut count = best.0;
    for start in 1..=bytes.len() - MAX_ANCHOR {
        count -= usize::from(!COMMON_BYTES.contains(&bytes[start - 1]));
        count += usize::from(!COMMON_BYTES.contains(&bytes[start + MAX_ANCHOR - 1]));
        if count > best.0 {
            best = (count, start);
        }
    }
    (best.1, &bytes[best.1..best.1 + MAX_ANCHOR])
}

fn rare_count(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| !COMMON_BYTES.contains(b)).count()
}

impl BodySignature {
    /// The malware name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Whether some content of this signature's target type matches, the budget allowing.
    fn verify_everywhere(&self, data: &[u8], budget: &mut Budget) -> Result<bool, Exhausted> {
        let Some((lo, hi)) = self.offset.starts(data.len()) else { return Ok(false) };
        Ok(lead(&self.segments, lo, hi, data, budget)?.is_some())
    }

    /// Whether the signature matches with its anchor at `at`, given what earlier occurrences found.
    fn verify_at(
        &self,
        anchor: &Anchor,
        at: usize,
        progress: &mut Progress,
        data: &[u8],
        budget: &mut Budget,
    ) -> Result<bool, Exhausted> {
        let Some((offset_lo, offset_hi)) = self.offset.starts(data.len()) else {
            progress.dead = true;
            return Ok(false);
        };
        let j = anchor.segment;
        let (Some(segment), Some(before)) = (self.segments.get(j), self.segments.get(..j)) else {
            progress.dead = true;
            return Ok(false);
        };
        let (lower, upper) = if j == 0 {
            (offset_lo, offset_hi)
        } else {
            let lower = match progress.lower {
                Some(lower) => lower,
                None => match lead(before, offset_lo, offset_hi, data, budget)? {
                    Some(end) => *progress.lower.insert(end.saturating_add(segment.skip)),
                    None => {
                        progress.dead = true;
                        return Ok(false);
                    }
                },
            };
            (lower, data.len())
        };
        let Some(hi) = at.checked_sub(anchor.min_before) else { return Ok(false) };
        let lo = at.saturating_sub(anchor.max_before).max(lower).max(progress.next_start);
        let hi = hi.min(upper);
        if lo > hi {
            return Ok(false);
        }
        progress.next_start = hi.saturating_add(1);
        let Some(end) = earliest_end(segment, lo, hi, data, budget)? else { return Ok(false) };
        if progress.failed_from.is_some_and(|failed| end >= failed) {
            return Ok(false);
        }
        let after = self.segments.get(j + 1..).unwrap_or_default();
        let found = follow(after, end, data, budget)?;
        if !found {
            progress.failed_from = Some(end);
        }
        Ok(found)
    }
}

impl Offset {
    /// The range of starts allowed in content of `len` bytes; `None` when there is none.
    fn starts(self, len: usize) -> Option<(usize, usize)> {
        let (lo, shift) = match self {
            Offset::Any => return Some((0, len)),
            Offset::Start { at, shift } => (at, shift),
            Offset::FromEnd { back, shift } => (len.checked_sub(back)?, shift),
        };
        (lo <= len).then(|| (lo, lo.saturating_add(shift).min(len)))
    }
}

/// The earliest end of `segments` matched in turn, the first starting in `lo..=hi`.
fn lead(
    segments: &[Segment],
    lo: usize,
    hi: usize,
    data: &[u8],
    budget: &mut Budget,
) -> Result<Option<usize>, Exhausted> {
    let Some((first, rest)) = segments.split_first() else { return Ok(Some(lo)) };
    let Some(mut end) = earliest_end(first, lo, hi, data, budget)? else { return Ok(None) };
    for segment in rest {
        match earliest_end(segment, end.saturating_add(segment.skip), data.len(), data, budget)? {
            Some(next) => end = next,
            None => return Ok(None),
        }
    }
    Ok(Some(end))
}

/// Whether `segments` match in turn after `end`.
fn follow(segments: &[Segment], end: usize, data: &[u8], budget: &mut Budget) -> Result<bool, Exhausted> {
    match segments.first() {
        None => Ok(true),
        Some(first) => {
            let lo = end.saturating_add(first.skip);
            Ok(lead(segments, lo, data.len(), data, budget)?.is_some())
        }
    }
}

/// The earliest end of a match of `segment` starting in `lo..=hi`.
fn earliest_end(
    segment: &Segment,
    lo: usize,
    hi: usize,
    data: &[u8],
    budget: &mut Budget,
) -> Result<Option<usize>, Exhausted> {
    let hi = hi.min(data.len());
    let mut best: Option<usize> = None;
    let mut start = lo;
    while start <= hi {
        // A match starting here ends at start + min_len or later: no better than the best.
        if best.is_some_and(|best| start.saturating_add(segment.min_len) >= best) {
            break;
        }
        let window_end = start.saturating_add(WINDOW - 1).min(hi);
        let ends = simulate(&segment.tokens, Positions::range(start, window_end), data, budget)?;
        if let Some(end) = ends.first() {
            best = Some(best.map_or(end, |best| best.min(end)));
        }
        start = window_end + 1;
    }
    Ok(best)
}

/// The ends of the matches of `tokens` starting at any of `starts`.
fn simulate(tokens: &[Token], starts: Positions, data: &[u8], budget: &mut Budget) -> Result<Positions, Exhausted> {
    let mut positions = starts;
    for token in tokens {
        if positions.is_empty() {
            break;
        }
        positions = step(token, &positions, data, budget)?;
    }
    Ok(positions)
}

/// The positions after `token` matched at any of `from`.
fn step(token: &Token, from: &Positions, data: &[u8], budget: &mut Budget) -> Result<Positions, Exhausted> {
    let mut out = Positions::default();
    match token {
        Token::Gap { min, max } => {
            budget.spend(from.ranges.len() as u64)?;
            for &(lo, hi) in &from.ranges {
                let Some(first) = lo.checked_add(*min).filter(|&first| first <= data.len()) else { break };
                let last = max.map_or(data.len(), |max| hi.saturating_add(max).min(data.len()));
                if last >= first {
                    out.push_range(first, last);
                }
            }
        }
        Token::Literal(bytes) => {
            let Some(&head) = bytes.first() else { return Ok(out) };
            let Some(last_start) = data.len().checked_sub(bytes.len()) else { return Ok(out) };
            for &(lo, hi) in &from.ranges {
                if lo > last_start {
                    break;
                }
                let hi = hi.min(last_start);
                budget.spend((hi - lo + 1) as u64)?;
                for (index, &byte) in data[lo..=hi].iter().enumerate() {
                    let at = lo + index;
                    if byte == head {
                        budget.spend(bytes.len() as u64)?;
                        if data.get(at..at + bytes.len()) == Some(bytes.as_slice()) {
                            out.push_range(at + bytes.len(), at + bytes.len());
                        }
                    }
                }
            }
        }
        Token::Masked(byte) => {
            for &(lo, hi) in &from.ranges {
                let hi = hi.min(data.len().saturating_sub(1));
                if lo >= data.len() {
                    break;
                }
                budget.spend((hi - lo + 1) as u64)?;
                for at in lo..=hi {
                    if data.get(at).is_some_and(|&b| byte.matches(b)) {
                        out.push_range(at + 1, at + 1);
                    }
                }
            }
        }
        Token::Choice(alternatives) => {
            let mut ends = Vec::new();
            for &(lo, hi) in &from.ranges {
                let hi = hi.min(data.len());
                if lo > hi {
                    break;
                }
                budget.spend(((hi - lo + 1) as u64).saturating_mul(alternatives.len() as u64))?;
                for at in lo..=hi {
                    for alternative in alternatives {
                        if masked_match(data, at, alternative) {
                            ends.push(at + alternative.len());
                        }
                    }
                }
            }
            ends.sort_unstable();
            ends.dedup();
            for end in ends {
                out.push_range(end, end);
            }
        }
    }
    Ok(out)
}

/// Whether `pattern` matches `data` at `at`.
fn masked_match(data: &[u8], at: usize, pattern: &[ByteMask]) -> bool {
    match data.get(at..).and_then(|rest| rest.get(..pattern.len())) {
        Some(window) => window.iter().zip(pattern).all(|(&b, p)| p.matches(b)),
        None => false,
    }
}

impl ByteMask {
    fn matches(self, byte: u8) -> bool {
        byte & self.mask == self.value
    }
}

/// A set of positions in the content: sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Default, PartialEq, Eq)]
struct Positions {
    ranges: Vec<(usize, usize)>,
}

impl Positions {
    /// The positions `lo..=hi`.
    fn range(lo: usize, hi: usize) -> Positions {
        Positions { ranges: if lo <= hi { vec![(lo, hi)] } else { Vec::new() } }
    }

    fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    fn first(&self) -> Option<usize> {
        self.ranges.first().map(|&(lo, _)| lo)
    }

    /// Adds `lo..=hi`; `lo` must not be below the start of the last range.
    fn push_range(&mut self, lo: usize, hi: usize) {
        match self.ranges.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => self.ranges.push((lo, hi)),
        }
    }
}

impl Budget {
    /// The budget of content `len` bytes long.
    fn for_len(len: usize) -> Budget {
        Budget { left: (len as u64).saturating_mul(STEPS_PER_BYTE).saturating_add(MIN_STEPS), spent: 0 }
    }

    fn spend(&mut self, steps: u64) -> Result<(), Exhausted> {
        self.spent = self.spent.saturating_add(steps);
        self.left = self.left.checked_sub(steps).ok_or(Exhausted)?;
        Ok(())
    }
}

impl<'a> Part<'a> {
    /// A part to scan; `html_type` says whether its MIME type is `text/html`.
    pub(super) fn new(data: &'a [u8], html_type: bool) -> Part<'a> {
        Part { data, html_type, html: OnceCell::new(), text: OnceCell::new() }
    }

    /// Whether the part is of `target` type.
    fn is(&self, target: Target) -> bool {
        match target {
            Target::Any | Target::Mail => true,
            Target::Pe => self.data.starts_with(b"MZ"),
            Target::Elf => self.data.starts_with(b"\x7fELF"),
            Target::Pdf => self.data.starts_with(b"%PDF-"),
            Target::Html => *self.html.get_or_init(|| self.html_type || looks_like_html(self.data)),
            Target::Text => *self.text.get_or_init(|| !self.data.contains(&0)),
        }
    }
}

/// Whether content is HTML by its bytes: after an optional UTF-8 byte order mark and ASCII
/// whitespace it starts with `<`, and it contains `<html` in any case.
fn looks_like_html(data: &[u8]) -> bool {
    let data = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
    let start = data.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(data.len());
    data.get(start) == Some(&b'<') && data[start..].windows(5).any(|w| w.eq_ignore_ascii_case(b"<html"))
}

impl BodySignatures {
    /// Compiles signatures into one automaton per set; the error says why the anchors could not be
    /// indexed, in which case every signature is verified on every part.
    pub(super) fn new(signatures: Vec<BodySignature>) -> (BodySignatures, Option<String>) {
        let (mail, parts): (Vec<_>, Vec<_>) = signatures.into_iter().partition(|s| s.target == Target::Mail);
        let (parts, parts_error) = SignatureSet::new(parts);
        let (mail, mail_error) = SignatureSet::new(mail);
        (BodySignatures { parts, mail }, parts_error.or(mail_error))
    }

    pub(super) fn len(&self) -> usize {
        self.parts.signatures.len() + self.mail.signatures.len()
    }

    /// The name of the first signature (other than target type 4) matching a part.
    pub(super) fn find_in_part(&self, part: &Part<'_>) -> Option<&str> {
        self.scan_part(part).0
    }

    /// The name of the first target type 4 signature matching the raw message.
    pub(super) fn find_in_mail(&self, raw: &[u8]) -> Option<&str> {
        if self.mail.signatures.is_empty() {
            return None;
        }
        self.mail.scan(&Part::new(raw, false)).0
    }

    /// [`BodySignatures::find_in_part`] with what the scan cost.
    pub(super) fn scan_part(&self, part: &Part<'_>) -> (Option<&str>, ScanStats) {
        self.parts.scan(part)
    }
}

impl SignatureSet {
    fn new(signatures: Vec<BodySignature>) -> (SignatureSet, Option<String>) {
        let mut patterns: Vec<&[u8]> = Vec::new();
        let mut owners: Vec<Vec<usize>> = Vec::new();
        let mut by_bytes: HashMap<&[u8], usize> = HashMap::new();
        let mut unanchored = Vec::new();
        for (index, signature) in signatures.iter().enumerate() {
            let Some(anchor) = &signature.anchor else {
                unanchored.push(index);
                continue;
            };
            match by_bytes.entry(anchor.bytes.as_slice()) {
                Entry::Occupied(pattern) => owners[*pattern.get()].push(index),
                Entry::Vacant(slot) => {
                    slot.insert(patterns.len());
                    patterns.push(&anchor.bytes);
                    owners.push(vec![index]);
                }
            }
        }
        if patterns.is_empty() {
            return (SignatureSet { signatures, automaton: None, owners: Vec::new(), unanchored }, None);
        }
        match AhoCorasick::builder().match_kind(MatchKind::Standard).build(&patterns) {
            Ok(automaton) => (SignatureSet { signatures, automaton: Some(automaton), owners, unanchored }, None),
            Err(error) => {
                let all = (0..signatures.len()).collect();
                let set = SignatureSet { signatures, automaton: None, owners: Vec::new(), unanchored: all };
                (
                    set,
                    Some(format!("body signature anchors could not be indexed ({error}): each is checked on its own")),
                )
            }
        }
    }

    /// The name of the first signature matching `part`, and what finding it cost.
    fn scan(&self, part: &Part<'_>) -> (Option<&str>, ScanStats) {
        let mut budget = Budget::for_len(part.data.len());
        let mut stats = ScanStats::default();
        let found = self.find(part, &mut budget, &mut stats);
        stats.steps = budget.spent;
        stats.exhausted = found.is_err();
        let name = found.ok().flatten().and_then(|index| self.signatures.get(index)).map(BodySignature::name);
        (name, stats)
    }

    /// The index of the first signature matching `part`.
    fn find(&self, part: &Part<'_>, budget: &mut Budget, stats: &mut ScanStats) -> Result<Option<usize>, Exhausted> {
        for &index in &self.unanchored {
            let Some(signature) = self.signatures.get(index) else { continue };
            if part.is(signature.target) {
                stats.candidates += 1;
                if signature.verify_everywhere(part.data, budget)? {
                    return Ok(Some(index));
                }
            }
        }
        let Some(automaton) = &self.automaton else { return Ok(None) };
        let Ok(occurrences) = automaton.try_find_overlapping_iter(part.data) else { return Ok(None) };
        let mut progress: HashMap<usize, Progress> = HashMap::new();
        for occurrence in occurrences {
            let owners = self.owners.get(occurrence.pattern().as_usize()).map_or(&[][..], Vec::as_slice);
            budget.spend(owners.len() as u64)?;
            for &index in owners {
                let Some(signature) = self.signatures.get(index) else { continue };
                let Some(anchor) = &signature.anchor else { continue };
                let state = progress.entry(index).or_insert_with(|| {
                    let dead = !part.is(signature.target);
                    stats.candidates += usize::from(!dead);
                    Progress { dead, ..Progress::default() }
                });
                if !state.dead && signature.verify_at(anchor, occurrence.start(), state, part.data, budget)? {
                    return Ok(Some(index));
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
