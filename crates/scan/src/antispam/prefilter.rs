//! Literal prefiltering: one Aho-Corasick pass over a haystack tells which rules can match.
//!
//! Most rule regexes cannot match unless some literal string occurs in the text: `/\bviagra\b/i`
//! needs `viagra`, `/(?:cheap|discount) meds/` needs `cheap meds` or `discount meds`.
//! [`required_literals`] finds such a set from the regex's syntax tree (ASCII case folded, at
//! least [`MIN_LITERAL`] bytes each). A [`Prefilter`] holds the literals of every rule that
//! runs over one haystack in one automaton: a message costs one scan of each haystack plus the
//! regexes of the rules whose literals occurred. Rules without a usable literal run every time.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_syntax::hir::{Class, Hir, HirKind};

use super::perl::Flags;

/// The shortest literal worth prefiltering on: shorter ones occur in almost every message.
pub(super) const MIN_LITERAL: usize = 3;

/// The most strings a literal set may hold before it is given up on.
const MAX_SET: usize = 32;

/// The most bytes a class may hold and still count as a few literal alternatives.
const MAX_CLASS: usize = 4;

/// How many literal-less rules share one regex set: a few rules per pass, few enough that the set's
/// automaton stays small (one set of a hundred such rules thrashes its cache on ordinary mail).
const SET_SIZE: usize = 8;

/// A set of literals, lowercase ASCII: a match contains at least one of them.
type Literals = Vec<Vec<u8>>;

/// The literals a match of `skeleton` must contain, or `None` when there is no useful set.
pub(super) fn required_literals(skeleton: &str, flags: Flags) -> Option<Literals> {
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
    // As the pattern is compiled: non-ASCII characters make it Unicode.
    let hir = if skeleton.is_ascii() { parse(false).or_else(|| parse(true)) } else { parse(true) }?;
    let set = required(&hir)?;
    (quality(&set) >= MIN_LITERAL).then_some(set)
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
        HirKind::Class(class) => class_bytes(class).map(|bytes| bytes.into_iter().map(|b| vec![b]).collect()),
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
            dedup(set)
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

/// The bytes a class matches, lowercased and deduplicated, when there are few.
fn class_bytes(class: &Class) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    match class {
        Class::Bytes(class) => {
            for range in class.ranges() {
                if usize::from(range.end() - range.start()) >= MAX_CLASS * 2 {
                    return None;
                }
                bytes.extend((range.start()..=range.end()).map(|b| b.to_ascii_lowercase()));
            }
        }
        Class::Unicode(class) => {
            for range in class.ranges() {
                if (range.end() as u32 - range.start() as u32) as usize >= MAX_CLASS * 2 {
                    return None;
                }
                for c in range.start()..=range.end() {
                    // A class of non-ASCII characters is several bytes each: not a byte set.
                    bytes.push(u8::try_from(u32::from(c)).ok().filter(u8::is_ascii)?.to_ascii_lowercase());
                }
            }
        }
    }
    bytes.sort_unstable();
    bytes.dedup();
    (bytes.len() <= MAX_CLASS).then_some(bytes)
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
    sets: Vec<(regex::bytes::RegexSet, Vec<usize>)>,
}

/// Builds a [`Prefilter`].
#[derive(Debug, Default)]
pub(super) struct PrefilterBuilder {
    slots: Vec<usize>,
    always: Vec<usize>,
    literals: HashMap<Vec<u8>, Vec<usize>>,
    /// Slots without a literal, with their regex-set source.
    set: Vec<(usize, String)>,
}

impl PrefilterBuilder {
    /// Adds rule `rule`, woken by any of `literals`, else by a match of `set_source` in a regex
    /// set, else by every haystack.
    pub(super) fn add(&mut self, rule: usize, literals: Option<Literals>, set_source: Option<String>) {
        let slot = self.slots.len();
        self.slots.push(rule);
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
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(&patterns)
                .expect("literal patterns always build an automaton")
        });
        let mut always = self.always;
        let mut sets = Vec::new();
        for chunk in self.set.chunks(SET_SIZE) {
            let built = regex::bytes::RegexSetBuilder::new(chunk.iter().map(|(_, source)| source))
                .unicode(false)
                .size_limit(16 << 20)
                .dfa_size_limit(8 << 20)
                .build();
            match built {
                Ok(set) if chunk.len() > 1 => sets.push((set, chunk.iter().map(|(slot, _)| *slot).collect())),
                // A lone rule, or a set too big to build: each runs on its own.
                _ => always.extend(chunk.iter().map(|(slot, _)| *slot)),
            }
        }
        Prefilter { slots: self.slots, always, automaton, wakes, sets }
    }
}

impl Prefilter {
    /// Which slots can match `haystack`: `woken[slot]`.
    pub(super) fn woken(&self, haystack: &[u8], woken: &mut Vec<bool>) {
        woken.clear();
        woken.resize(self.slots.len(), false);
        for &slot in &self.always {
            woken[slot] = true;
        }
        for (set, slots) in &self.sets {
            for index in set.matches(haystack).iter() {
                woken[slots[index]] = true;
            }
        }
        let Some(automaton) = &self.automaton else { return };
        let mut seen = vec![false; self.wakes.len()];
        for found in automaton.find_overlapping_iter(haystack) {
            let pattern = found.pattern().as_usize();
            if !std::mem::replace(&mut seen[pattern], true) {
                for &slot in &self.wakes[pattern] {
                    woken[slot] = true;
                }
            }
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
    }

    #[test]
    fn prefilter_wakes_rules_by_literal_case_insensitively() {
        let mut builder = PrefilterBuilder::default();
        builder.add(10, Some(vec![b"viagra".to_vec()]), None);
        builder.add(11, None, None);
        builder.add(12, Some(vec![b"free money".to_vec(), b"viagra".to_vec()]), None);
        builder.add(13, Some(vec![b"lottery".to_vec()]), None);
        builder.add(14, None, Some(r"(?i)\bn\d+w\b".to_owned()));
        builder.add(15, None, Some(r"^x{3}".to_owned()));
        let prefilter = builder.build();
        assert_eq!(prefilter.prefiltered(), 5);
        let mut woken = Vec::new();
        prefilter.woken(b"Buy VIAGRA now", &mut woken);
        assert_eq!(woken, vec![true, true, true, false, false, false]);
        prefilter.woken(b"nothing here N0W", &mut woken);
        assert_eq!(woken, vec![false, true, false, false, true, false]);
    }
}
