//! Literal prefiltering: one Aho-Corasick pass over a haystack tells which rules can match.
//!
//! Most rule regexes cannot match unless some literal string occurs in the text: `/\bviagra\b/i`
//! needs `viagra`, `/(?:cheap|discount) meds/` needs `cheap meds` or `discount meds`.
//! [`requirements`] finds such a set from the regex's syntax tree (ASCII case folded, at
//! least [`MIN_LITERAL`] bytes each). A [`Prefilter`] holds the literals of every rule that
//! runs over one haystack in one automaton: a message costs one scan of each haystack plus the
//! regexes of the rules whose literals occurred. Rules without a usable literal run every time.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_syntax::hir::{Class, Hir, HirKind};

use super::perl::Flags;
use crate::per_thread::PerThread;

/// The shortest literal worth prefiltering on: shorter ones occur in almost every message.
pub(super) const MIN_LITERAL: usize = 3;

/// The most strings a literal set may hold before it is given up on. Debian's rules have long
/// alternations (a phishing rule names dozens of phrases): 128 gives them a set, which on ordinary mail
/// keeps them from running (32 left `__PHOTO_RETOUCHING`, `__VALIDATE_MAILBOX` and others running on
/// every message). The automaton's size grows with the strings, its pass over the text does not.
const MAX_SET: usize = 128;

/// The most bytes a class may hold and still count as a few literal alternatives.
const MAX_CLASS: usize = 4;

/// How many literal-less rules share one regex set: a few rules per pass, few enough that the set's
/// automaton stays small (one set of a hundred such rules thrashes its cache on ordinary mail).
const SET_SIZE: usize = 8;

/// A set of literals, lowercase ASCII: a match contains at least one of them.
type Literals = Vec<Vec<u8>>;

/// What a match of `skeleton` must contain, parsed once.
#[derive(Debug, Default)]
pub(super) struct Requirements {
    /// A set of literals one of which a match holds (`None` when there is no useful set).
    pub literals: Option<Literals>,
    /// Byte classes a match holds a byte of each ([`bytes_of`]).
    pub bytes: Vec<ByteSet>,
    /// Whether a match can be as short as [`SHORT_MATCH`] bytes: such a rule (`/\S/`, `/^\s*\S/`) matches
    /// nearly every text within its first bytes, and is cheaper alone than in a regex set, which would
    /// then match and have to search the whole text for its other members.
    pub short: bool,
}

/// See [`Requirements::short`].
const SHORT_MATCH: usize = 2;

pub(super) fn requirements(skeleton: &str, flags: Flags) -> Requirements {
    match hir_of(skeleton, flags) {
        Some(hir) => Requirements {
            literals: literals_of(&hir),
            bytes: bytes_of(&hir),
            short: hir.properties().minimum_len().is_some_and(|len| len <= SHORT_MATCH),
        },
        None => Requirements::default(),
    }
}

/// The literals a match of `skeleton` must contain, or `None` when there is no useful set.
#[cfg(test)]
fn required_literals(skeleton: &str, flags: Flags) -> Option<Literals> {
    literals_of(&hir_of(skeleton, flags)?)
}

fn literals_of(hir: &Hir) -> Option<Literals> {
    let set = required(hir)?;
    (quality(&set) >= MIN_LITERAL).then_some(set)
}

/// The syntax tree of `skeleton`, parsed as it is compiled.
pub(super) fn hir_of(skeleton: &str, flags: Flags) -> Option<Hir> {
    let parse = |unicode: bool| {
        regex_syntax::ParserBuilder::new()
            .unicode(unicode)
            .utf8(false)
            .case_insensitive(flags.case_insensitive)
            .multi_line(flags.multi_line)
            .dot_matches_new_line(flags.dot_all)
            .ignore_whitespace(flags.extended)
            .build()
            .parse(skeleton)
            .ok()
    };
    // As the pattern is compiled: a byte regex's text is ASCII (non-ASCII spelled as bytes); a fancy
    // pattern's skeleton with non-ASCII characters is Unicode.
    if skeleton.is_ascii() { parse(false).or_else(|| parse(true)) } else { parse(true) }
}

/// A set of byte values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ByteSet([u64; 4]);

impl ByteSet {
    fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }

    fn insert_range(&mut self, from: u8, to: u8) {
        for b in from..=to {
            self.insert(b);
        }
    }

    fn len(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    fn union(mut self, other: &ByteSet) -> ByteSet {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a |= b;
        }
        self
    }

    fn intersects(&self, other: &ByteSet) -> bool {
        self.0.iter().zip(other.0).any(|(a, b)| a & b != 0)
    }

    /// The bytes `haystack` holds.
    pub(super) fn of(haystack: &[u8]) -> ByteSet {
        let mut set = ByteSet::default();
        if haystack.len() < 256 {
            // A header's value: fewer bytes than the flags below would take to read back.
            for &b in haystack {
                set.insert(b);
            }
            return set;
        }
        // A flag per byte value: one store per byte and no read, where or-ing bits into four words made
        // each byte wait for the last one that touched the same word (twice as slow on repetitive text).
        let mut seen = [false; 256];
        for &b in haystack {
            seen[usize::from(b)] = true;
        }
        for (b, _) in (0..=255u8).zip(seen).filter(|(_, seen)| *seen) {
            set.insert(b);
        }
        set
    }
}

/// The most byte sets kept for one rule (the smallest: the most selective).
const MAX_BYTE_SETS: usize = 8;
/// A byte set larger than this says too little to be worth checking.
const MAX_BYTE_SET: u32 = 200;

/// Sets of bytes a match must contain one byte of each: `[vV]` and `[iI1l|]` for
/// `/v[\W_]{0,3}[i1l|]/i`. A message whose text lacks every byte of one set cannot match, whatever its
/// literals: the check for the rules no literal prefilters (most obfuscation families), and a second one
/// after the literals for the rest. Empty when nothing is known.
#[cfg(test)]
fn required_bytes(skeleton: &str, flags: Flags) -> Vec<ByteSet> {
    hir_of(skeleton, flags).map(|hir| bytes_of(&hir)).unwrap_or_default()
}

fn bytes_of(hir: &Hir) -> Vec<ByteSet> {
    let mut sets: Vec<ByteSet> = mandatory(hir).into_iter().filter(|s| s.len() <= MAX_BYTE_SET).collect();
    sets.sort_by_key(ByteSet::len);
    sets.dedup();
    sets.truncate(MAX_BYTE_SETS);
    sets
}

/// Byte sets every match of `hir` contains a byte of each.
fn mandatory(hir: &Hir) -> Vec<ByteSet> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Vec::new(),
        HirKind::Literal(literal) => literal
            .0
            .iter()
            .map(|&b| {
                let mut set = ByteSet::default();
                set.insert(b);
                set
            })
            .collect(),
        HirKind::Class(class) => vec![first_bytes(class)],
        HirKind::Capture(capture) => mandatory(&capture.sub),
        HirKind::Repetition(rep) if rep.min >= 1 => mandatory(&rep.sub),
        HirKind::Repetition(_) => Vec::new(),
        HirKind::Concat(parts) => parts.iter().flat_map(mandatory).collect(),
        HirKind::Alternation(branches) => {
            // One set per branch (its smallest); a branch that requires nothing makes the whole say nothing.
            let mut union = ByteSet::default();
            for branch in branches {
                match mandatory(branch).into_iter().min_by_key(ByteSet::len) {
                    Some(set) => union = union.union(&set),
                    None => return Vec::new(),
                }
            }
            vec![union]
        }
    }
}

/// The bytes a match of `class` can start with: its bytes, or the leading bytes of its characters' UTF-8.
fn first_bytes(class: &Class) -> ByteSet {
    let mut set = ByteSet::default();
    match class {
        Class::Bytes(class) => {
            for range in class.ranges() {
                set.insert_range(range.start(), range.end());
            }
        }
        Class::Unicode(class) => {
            let lead = |c: char| {
                let mut buf = [0u8; 4];
                c.encode_utf8(&mut buf);
                buf[0]
            };
            for range in class.ranges() {
                // Leading bytes grow with the code point: the range's are the span between its ends'.
                set.insert_range(lead(range.start()), lead(range.end()));
            }
        }
    }
    set
}

/// The shortest string of a set: how selective it is.
fn quality(set: &Literals) -> usize {
    set.iter().map(Vec::len).min().unwrap_or(0)
}

/// Every string `hir` can match, when that is a small finite set.
fn exact(hir: &Hir) -> Option<Literals> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Some(vec![Vec::new()]),
        HirKind::Literal(literal) => Some(vec![literal.0.to_ascii_lowercase()]),
        HirKind::Class(class) => class_strings(class),
        HirKind::Capture(capture) => exact(&capture.sub),
        HirKind::Concat(parts) => {
            let mut set = vec![Vec::new()];
            for part in parts {
                set = product(&set, &exact(part)?)?;
            }
            Some(set)
        }
        HirKind::Alternation(branches) => {
            let mut set = Vec::new();
            for branch in branches {
                set.extend(exact(branch)?);
            }
            dedup(set)
        }
        HirKind::Repetition(rep) => {
            let sub = exact(&rep.sub)?;
            match (rep.min, rep.max) {
                (0, Some(1)) => dedup(sub.into_iter().chain([Vec::new()]).collect()),
                (n, Some(m)) if n == m && n <= 8 => {
                    let mut set = vec![Vec::new()];
                    for _ in 0..n {
                        set = product(&set, &sub)?;
                    }
                    Some(set)
                }
                _ => None,
            }
        }
    }
}

/// A set of literals one of which every match of `hir` contains.
fn required(hir: &Hir) -> Option<Literals> {
    if let Some(set) = exact(hir)
        && quality(&set) > 0
    {
        return Some(set);
    }
    match hir.kind() {
        HirKind::Capture(capture) => required(&capture.sub),
        HirKind::Repetition(rep) if rep.min >= 1 => required(&rep.sub),
        HirKind::Alternation(branches) => {
            let mut set = Vec::new();
            for branch in branches {
                set.extend(required(branch)?);
            }
            shrink(set)
        }
        HirKind::Concat(parts) => {
            let mut best: Option<Literals> = None;
            let mut offer = |candidate: Option<Literals>| {
                if let Some(candidate) = candidate
                    && quality(&candidate) > best.as_ref().map_or(0, quality)
                {
                    best = Some(candidate);
                }
            };
            // Runs of exact parts make longer literals than any part alone.
            let mut run: Option<Literals> = None;
            for part in parts {
                match exact(part) {
                    Some(set) => {
                        run = match run.take() {
                            None => Some(set),
                            Some(prefix) => match product(&prefix, &set) {
                                Some(joined) => Some(joined),
                                None => {
                                    offer(Some(prefix));
                                    Some(set)
                                }
                            },
                        };
                    }
                    None => {
                        offer(run.take());
                        offer(required(part));
                    }
                }
            }
            offer(run);
            best
        }
        _ => None,
    }
}

/// The strings a class matches (a byte, or a character's UTF-8), ASCII-lowercased and deduplicated,
/// when there are few. A pattern written with non-ASCII characters runs with Unicode case folding, where
/// `s` is `[Ssſ]` and `k` is `[KkK]` (the Kelvin sign): `ſ` is kept as its two bytes, so `send` gives
/// `send` and `ſend` rather than no literal at all.
fn class_strings(class: &Class) -> Option<Literals> {
    let mut strings = Vec::new();
    match class {
        Class::Bytes(class) => {
            for range in class.ranges() {
                if usize::from(range.end() - range.start()) >= MAX_CLASS * 2 {
                    return None;
                }
                strings.extend((range.start()..=range.end()).map(|b| vec![b.to_ascii_lowercase()]));
            }
        }
        Class::Unicode(class) => {
            for range in class.ranges() {
                if (range.end() as u32 - range.start() as u32) as usize >= MAX_CLASS * 2 {
                    return None;
                }
                for c in range.start()..=range.end() {
                    let mut buf = [0u8; 4];
                    strings.push(c.to_ascii_lowercase().encode_utf8(&mut buf).as_bytes().to_vec());
                }
            }
        }
    }
    strings.sort_unstable();
    strings.dedup();
    (strings.len() <= MAX_CLASS).then_some(strings)
}

fn product(left: &Literals, right: &Literals) -> Option<Literals> {
    if left.len() * right.len() > MAX_SET {
        return None;
    }
    let mut out = Vec::with_capacity(left.len() * right.len());
    for a in left {
        for b in right {
            let mut joined = a.clone();
            joined.extend_from_slice(b);
            out.push(joined);
        }
    }
    dedup(out)
}

/// `set`, or when it holds more than [`MAX_SET`] strings, its strings cut to the longest length that
/// leaves at most that many: a match holding a string holds its prefix. A long alternation of phrases
/// (`__LOCK_MAILBOX` has over a hundred) keeps a set of shorter strings instead of none.
fn shrink(mut set: Literals) -> Option<Literals> {
    set.sort_unstable();
    set.dedup();
    let mut len = set.iter().map(Vec::len).max().unwrap_or(0);
    while set.len() > MAX_SET && len > MIN_LITERAL {
        len -= 1;
        for literal in &mut set {
            literal.truncate(len);
        }
        set.dedup();
    }
    (set.len() <= MAX_SET).then_some(set)
}

fn dedup(mut set: Literals) -> Option<Literals> {
    set.sort_unstable();
    set.dedup();
    (set.len() <= MAX_SET).then_some(set)
}

/// The literals of the rules run over one haystack, in one automaton.
#[derive(Debug, Default)]
pub(super) struct Prefilter {
    /// The rules this prefilter serves, by their index in the rule set.
    pub slots: Vec<usize>,
    /// Slots without a literal: they run every time.
    always: Vec<usize>,
    automaton: Option<AhoCorasick>,
    /// For each automaton pattern, the slots it wakes.
    wakes: Vec<Vec<usize>>,
    /// Small regex sets of the slots without a literal: one pass over the haystack per set wakes
    /// the members that can match, instead of one pass per rule.
    sets: Vec<(PerThread<regex::bytes::RegexSet>, Vec<usize>)>,
    /// For each slot, byte sets the haystack must hold a byte of each for the rule to match
    /// ([`bytes_of`]); checked before a set's pass and before a rule is woken.
    needs: Vec<Vec<ByteSet>>,
}

/// Builds a [`Prefilter`].
#[derive(Debug, Default)]
pub(super) struct PrefilterBuilder {
    slots: Vec<usize>,
    needs: Vec<Vec<ByteSet>>,
    always: Vec<usize>,
    literals: HashMap<Vec<u8>, Vec<usize>>,
    /// Slots without a literal, with their regex-set source.
    set: Vec<(usize, String)>,
}

impl PrefilterBuilder {
    /// Adds rule `rule`, woken by any of `literals`, else by a match of `set_source` in a regex
    /// set, else by every haystack; in each case only when the haystack holds a byte of each of `needs`.
    pub(super) fn add(
        &mut self,
        rule: usize,
        literals: Option<Literals>,
        set_source: Option<String>,
        needs: Vec<ByteSet>,
    ) {
        let slot = self.slots.len();
        self.slots.push(rule);
        self.needs.push(needs);
        match literals {
            None => match set_source {
                Some(source) => self.set.push((slot, source)),
                None => self.always.push(slot),
            },
            Some(set) => {
                for literal in set {
                    self.literals.entry(literal).or_default().push(slot);
                }
            }
        }
    }

    pub(super) fn build(self) -> Prefilter {
        let mut entries: Vec<(Vec<u8>, Vec<usize>)> = self.literals.into_iter().collect();
        entries.sort_unstable();
        let (patterns, wakes): (Vec<Vec<u8>>, Vec<Vec<usize>>) = entries.into_iter().unzip();
        let automaton = (!patterns.is_empty()).then(|| {
            // A DFA: about 40 MB for Debian's rules, and 8% faster on a message than the default NFA.
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .match_kind(MatchKind::Standard)
                .build(&patterns)
                .expect("literal patterns always build an automaton")
        });
        let mut always = self.always;
        let mut sets = Vec::new();
        // Members that need the same rare bytes share sets, so that a text without those bytes skips whole
        // sets rather than running each set for one member that can match (rule order does not matter here).
        let mut members = self.set;
        let needs = &self.needs;
        members.sort_by_key(|(slot, _)| needs[*slot].first().map_or([u64::MAX; 4], |set| set.0));
        for chunk in members.chunks(SET_SIZE) {
            let built = regex::bytes::RegexSetBuilder::new(chunk.iter().map(|(_, source)| source))
                .unicode(false)
                .size_limit(16 << 20)
                .dfa_size_limit(8 << 20)
                .build();
            match built {
                Ok(set) if chunk.len() > 1 => {
                    sets.push((PerThread::new(set), chunk.iter().map(|(slot, _)| *slot).collect()));
                }
                // A lone rule, or a set too big to build: each runs on its own.
                _ => always.extend(chunk.iter().map(|(slot, _)| *slot)),
            }
        }
        Prefilter { slots: self.slots, always, automaton, wakes, sets, needs: self.needs }
    }
}

impl Prefilter {
    /// Which slots can match `haystack`: `woken[slot]`.
    pub(super) fn woken(&self, haystack: &[u8], woken: &mut Vec<bool>) {
        woken.clear();
        woken.resize(self.slots.len(), false);
        // The haystack's bytes are gathered on the first rule with needs that would run, if any.
        let mut present: Option<ByteSet> = None;
        let mut possible = |slot: usize| {
            let needs = &self.needs[slot];
            needs.is_empty() || {
                let present = present.get_or_insert_with(|| ByteSet::of(haystack));
                needs.iter().all(|need| need.intersects(present))
            }
        };
        for &slot in &self.always {
            woken[slot] = possible(slot);
        }
        for (set, slots) in &self.sets {
            let mut can_match = slots.iter().copied().filter(|&slot| possible(slot));
            let Some(first) = can_match.next() else { continue };
            if can_match.next().is_none() {
                // One member has the bytes it needs: its own regex, which runs next, is one pass as the
                // set's would be (on smtp-source's message, four of the six sets over the body).
                woken[first] = true;
                continue;
            }
            // Most sets match nothing: a search that stops at the first match says so for less than the
            // overlapping search, which runs to the end of the text to name every member that matches.
            if !set.is_match(haystack) {
                continue;
            }
            for index in set.matches(haystack).iter() {
                woken[slots[index]] = possible(slots[index]);
            }
        }
        let Some(automaton) = &self.automaton else { return };
        let mut seen = vec![false; self.wakes.len()];
        for found in automaton.find_overlapping_iter(haystack) {
            let pattern = found.pattern().as_usize();
            if !std::mem::replace(&mut seen[pattern], true) {
                for &slot in &self.wakes[pattern] {
                    woken[slot] = possible(slot);
                }
            }
        }
    }

    /// What lets `slot` run: `literal` (one of its strings occurred), `regex set` (its set's pass
    /// matched it), or `every message`; each only when the text holds the bytes a match needs.
    pub(super) fn woken_by(&self, slot: usize) -> &'static str {
        if self.always.contains(&slot) {
            "every message"
        } else if self.sets.iter().any(|(_, slots)| slots.contains(&slot)) {
            "regex set"
        } else {
            "literal"
        }
    }

    /// How many slots have a literal.
    pub(super) fn prefiltered(&self) -> usize {
        self.slots.len() - self.always.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literals(pattern: &str, ci: bool) -> Option<Vec<String>> {
        let flags = Flags { case_insensitive: ci, ..Flags::default() };
        required_literals(pattern, flags)
            .map(|set| set.into_iter().map(|l| String::from_utf8_lossy(&l).into_owned()).collect())
    }

    #[test]
    fn literals_of_common_rule_shapes() {
        assert_eq!(literals(r"\bviagra\b", true), Some(vec!["viagra".into()]));
        assert_eq!(
            literals(r"(?:cheap|discount) meds", false),
            Some(vec!["cheap meds".into(), "discount meds".into()])
        );
        assert_eq!(literals(r"colou?r\s+\w+", false), Some(vec!["color".into(), "colour".into()]));
        assert_eq!(literals(r"^Subject: .*free", false), Some(vec!["subject: ".into()]));
        assert_eq!(literals(r"\d+ percent off", false), Some(vec![" percent off".into()]));
        assert_eq!(literals(r"[a-z]+@[a-z]+", false), None);
        assert_eq!(literals(r"ab", false), None, "too short to be worth it");
        assert_eq!(literals(r"(?:hello|hi)", false), None, "one branch is too short");
        // Long alternations, as in SpamAssassin's phishing rules, keep a literal set (up to MAX_SET strings).
        let words: Vec<String> = (0..100).map(|i| format!("word{i:03}")).collect();
        assert_eq!(literals(&format!(r"\b(?:{})\b", words.join("|")), true).map(|l| l.len()), Some(100));
        // A non-ASCII pattern folds case by Unicode: `s` also matches `ſ`, which the set spells out.
        assert_eq!(literals(r"send \d+£", true), Some(vec!["send ".into(), "\u{17f}end ".into()]));
        // More phrases than a set holds: their prefixes, as long as they can be.
        let many: Vec<String> = (0..MAX_SET + 1).map(|i| format!("word{i:03}")).collect();
        let prefixes: Vec<String> = (0..=MAX_SET / 10).map(|i| format!("word{i:02}")).collect();
        assert_eq!(literals(&many.join("|"), false), Some(prefixes));
        let too_many: Vec<String> = (0..MAX_SET + 1).map(|i| format!("{i:03}{i:03}")).collect();
        assert_eq!(literals(&too_many.join("|"), false), None, "prefixes of 3 bytes are still too many");
    }

    fn bytes(pattern: &str, ci: bool) -> Vec<String> {
        let flags = Flags { case_insensitive: ci, ..Flags::default() };
        required_bytes(pattern, flags)
            .into_iter()
            .map(|set| (0..=255u8).filter(|b| set.intersects(&ByteSet::of(&[*b]))).map(char::from).collect())
            .collect()
    }

    #[test]
    fn the_bytes_of_short_and_long_text_are_gathered_alike() {
        let text: Vec<u8> = (0..600u32).map(|i| (i * 7 % 251) as u8).collect();
        for len in [0, 1, 255, 256, 600] {
            let text = &text[..len];
            let one_by_one = text.iter().fold(ByteSet::default(), |set, b| set.union(&ByteSet::of(&[*b])));
            assert_eq!(ByteSet::of(text), one_by_one, "{len} bytes");
            assert_eq!(ByteSet::of(text).len() as usize, text.iter().collect::<std::collections::HashSet<_>>().len());
        }
    }

    #[test]
    fn bytes_a_match_needs() {
        assert_eq!(bytes(r"v[\W_]{0,3}[i1l|]", true), ["Vv", "1ILil|"]);
        assert_eq!(bytes(r"(?:ab|c)d?", false), ["ac"], "one byte of each branch");
        assert!(bytes(r"(?:ab|x?)", false).is_empty(), "a branch that needs nothing");
        assert!(bytes(r"^\s*$", false).is_empty());
        // A Unicode class needs the leading byte of one of its characters: the Kelvin sign folds with k.
        let kelvin = bytes("k\u{e9}", true);
        assert_eq!(kelvin.len(), 2, "{kelvin:?}");
        assert!(kelvin.iter().any(|s| s.contains('K') && s.contains('k') && s.contains('\u{e2}')), "{kelvin:?}");
        assert!(kelvin.iter().any(|s| s.contains('\u{c3}')), "{kelvin:?}");
    }

    #[test]
    fn a_rule_whose_bytes_are_missing_is_not_woken() {
        let needs = |pattern: &str| required_bytes(pattern, Flags { case_insensitive: true, ..Flags::default() });
        let mut builder = PrefilterBuilder::default();
        builder.add(0, None, Some(r"(?i)v[\W_]{0,3}[i1l|]".into()), needs(r"v[\W_]{0,3}[i1l|]"));
        builder.add(1, None, Some(r"(?i)z[\W_]{0,3}q".into()), needs(r"z[\W_]{0,3}q"));
        builder.add(2, Some(vec![b"cheap".to_vec()]), None, needs(r"cheap\s+meds"));
        builder.add(3, None, None, needs(r"\bx+y"));
        let prefilter = builder.build();
        let mut woken = Vec::new();
        // Every rule's bytes are there (not every rule matches: the sets and literals decide that).
        prefilter.woken(b"V.I cheap meds xy zq", &mut woken);
        assert_eq!(woken, [true, true, true, true]);
        prefilter.woken(b"V.I cheap", &mut woken);
        assert_eq!(woken, [true, false, false, false], "no 'm', 'd', 'x', 'y', 'z' or 'q'");
        prefilter.woken(b"1XXXXXXXXXX\n2XXXXXXXX", &mut woken);
        assert_eq!(woken, [false, false, false, false]);
    }

    #[test]
    fn prefilter_wakes_rules_by_literal_case_insensitively() {
        let mut builder = PrefilterBuilder::default();
        builder.add(10, Some(vec![b"viagra".to_vec()]), None, Vec::new());
        builder.add(11, None, None, Vec::new());
        builder.add(12, Some(vec![b"free money".to_vec(), b"viagra".to_vec()]), None, Vec::new());
        builder.add(13, Some(vec![b"lottery".to_vec()]), None, Vec::new());
        builder.add(14, None, Some(r"(?i)\bn\d+w\b".to_owned()), Vec::new());
        builder.add(15, None, Some(r"^x{3}".to_owned()), Vec::new());
        let prefilter = builder.build();
        assert_eq!(prefilter.prefiltered(), 5);
        let mut woken = Vec::new();
        prefilter.woken(b"Buy VIAGRA now", &mut woken);
        assert_eq!(woken, vec![true, true, true, false, false, false]);
        prefilter.woken(b"nothing here N0W", &mut woken);
        assert_eq!(woken, vec![false, true, false, false, true, false]);
    }
}
