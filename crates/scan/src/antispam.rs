//! The built-in antispam engine: a documented subset of SpamAssassin's rule language.
//!
//! # Supported rules
//!
//! Rule files are read line by line, in order (a directory's `*.cf` files sorted by name, as
//! SpamAssassin reads them). Blank lines are ignored, and a `#` at the start of a line or after
//! whitespace starts a comment (write `\#` for a literal `#` in a regex). The rule lines are:
//!
//! ```text
//! header   NAME Header-Name[:modifier] =~ /regex/flags [if-unset: TEXT]
//! header   NAME Header-Name[:modifier] !~ /regex/flags [if-unset: TEXT]
//! header   NAME exists:Header-Name
//! body     NAME /regex/flags
//! rawbody  NAME /regex/flags
//! uri      NAME /regex/flags
//! full     NAME /regex/flags
//! meta     NAME expression
//! score    NAME n            (or four values n n n n: the first one, the set without Bayes
//!                             and network tests, is used)
//! describe NAME text
//! tflags   NAME flags        (multiple, maxhits=N and nosubject act; nice, net, learn,
//!                             publish, ... are accepted)
//! replace_tag / replace_pre / replace_inter / replace_post / replace_rules   (ReplaceTags)
//! if EXPR / ifplugin PLUGIN / else / endif
//! ```
//!
//! - Rule names are `[A-Za-z0-9_]+`. A later definition of a name replaces the earlier one.
//! - Regexes are Perl's, written `/.../` or `m` with any punctuation delimiter, flags `i`, `m`,
//!   `s`, `x` (and `g`, `o`, which mean nothing here). They run over bytes with ASCII semantics
//!   (`\w`, `\s`, case folding; `\xe9` is a byte), as Perl runs SpamAssassin's rules. Perl
//!   spellings are translated (see the `perl` module); a rule with look-around,
//!   back-references, atomic groups or possessive quantifiers runs on a backtracking engine
//!   (`fancy-regex`, over the text with Unicode semantics, at most 200,000 steps per haystack)
//!   after a plain regex with look-around taken out (and each back-reference replaced by its
//!   group's pattern) has matched.
//! - Header rules test a header's values: every occurrence, unfolded and RFC 2047-decoded,
//!   joined with `"\n"`. Modifiers: `:raw` (as sent: not decoded, folding kept), `:addr` /
//!   `:addrs` (the first / every address), `:name` / `:names` (display names), `:first` /
//!   `:last` (one occurrence). Pseudo-headers: `ALL` (every header as `Name: value` lines; raw
//!   block with `:raw`), `ToCc`, `EnvelopeFrom` (`X-Envelope-From` or `Return-Path`),
//!   `MESSAGEID`. A header that is absent is the `if-unset` text; without one, the rule does not
//!   hit whichever operator it uses (as in SpamAssassin). Other modifiers (`:host`, `:ip`, ...)
//!   skip the rule, counted.
//! - `body` rules see the Subject and the rendered text parts as paragraphs, `rawbody` the
//!   decoded text parts with HTML kept, `uri` every link, `full` the raw message (first 1 MiB);
//!   see the `view` module. Body, raw body and URI rules run over one line per paragraph, line
//!   or URI: `^` and `$` match at each.
//! - `meta` expressions combine other rules' hit counts with `!`, `&&`, `||`, `+`, `-`, `*`,
//!   `/`, comparisons and parentheses; a name no rule defines is 0; a meta rule in a cycle is
//!   reported and skipped.
//! - A rule without a `score` line scores 1.0 (`T_` rules 0.01), as in SpamAssassin. A score
//!   of 0 disables a rule; `__` rules are never scored and run only when a scored meta rule
//!   needs them. Only the rules a message can score with are run.
//! - A rule hits once per message, unless `tflags multiple`: then its value (for `meta`
//!   expressions) is its number of matches, up to `maxhits=N`. Its score is added once.
//! - `if` conditions understand `version` (4.000001), numbers, `plugin(...)` (true only for
//!   `Mail::SpamAssassin::Plugin::ReplaceTags`, the one plugin sluice implements),
//!   `can(...)` (the configuration features listed in the `load` module), `!`, `&&`, `||` and
//!   comparisons; anything else is false. `ifplugin` blocks of other plugins are skipped.
//!
//! Skipped, and counted by reason in [`RuleSet::stats`]: `eval:` tests (Perl code in
//! plugins), rule types that only plugins provide (`mimeheader`, `askdns`, `urirhssub`, ...),
//! rules inside `if`/`ifplugin` blocks that are false here, and unsupported header modifiers.
//! Other settings (`lang`, `priority`, `freemail_domains`, ...) are ignored and counted. A rule
//! that does not compile is a [`RuleError`]; the rules around it still load.
//!
//! # Matching
//!
//! Each message is decoded once ([`crate::mime`]) and every rule shares it. For every haystack
//! (decoded headers, raw headers, body, raw body, URIs, full message), one Aho-Corasick
//! automaton holds the literals each rule's regex requires (see the `prefilter` module); a rule
//! runs its regex only when one of its literals occurs, or, when it has none, when a small regex set
//! of such rules matches. Before either, the bytes the haystack holds (a 256-bit set, one pass) are
//! checked against the byte classes each rule's matches must contain: a rule needing a `v` or `V`
//! and an `i`, `1`, `l` or `|` is not tried on text without them, and a regex set none of whose
//! members can match is not run. A rule whose matches start at a line start and are short
//! (`/^\s?\S{1,60}\s?$/`) is tried at each line start of text with few long lines (a body's
//! paragraphs) rather than searched for through all of it.
//!
//! # GTUBE
//!
//! A message whose raw bytes or decoded text contain [`GTUBE`] scores an extra 1000 points, hits
//! `GTUBE` and gets SCL 9.
//!
//! # Spam confidence level
//!
//! [`scl_of`] maps a score to Exchange's spam confidence level, 0 to 9: `floor(score * 1.4)`,
//! clamped. SpamAssassin's required score of 5.0 ([`REQUIRED_SCORE`]) is SCL 7, the level at
//! which mail is usually treated as spam.
//!
//! # Profiling
//!
//! One message in [`SAMPLE_EVERY`] is timed rule by rule; [`RuleSet::slowest`] lists the rules
//! that cost the most, for `sluice engines --rules`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::SourceFile;
use crate::mime::{self, Decoded};

mod eval;
mod load;
mod meta;
mod perl;
mod prefilter;
mod view;

use meta::Expr;
use perl::Pattern;
use prefilter::Prefilter;
use view::{Haystack, HeaderSpec, View};

/// The Generic Test for Unsolicited Bulk Email: a message containing it is spam.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// SpamAssassin's default required score: a message scoring this much is spam (SCL 7).
pub const REQUIRED_SCORE: f64 = 5.0;

/// One message in this many is timed rule by rule.
pub const SAMPLE_EVERY: u64 = 64;

/// The score a GTUBE message gets on top of its rules.
const GTUBE_SCORE: f64 = 1000.0;

/// The most matches a `tflags multiple` rule counts without `maxhits`.
const MAX_HITS: usize = 1000;

/// The default rules shipped in the binary.
const DEFAULT_RULES: &str = include_str!("../rules/default.cf");

/// A compiled set of antispam rules. Cheap to share: put it in an `Arc`.
#[derive(Debug)]
pub struct RuleSet {
    /// Rules in definition order; the order of [`SpamVerdict::hits`].
    rules: Vec<Rule>,
    /// The tests to run, by what their prefilter reads.
    prefilters: Vec<(Over, Prefilter)>,
    /// The meta rules, and how to evaluate only the ones a message can change.
    metas: MetaPlan,
    /// The native `eval:` tests to run on every message.
    evals: Vec<usize>,
    /// The distinct header specs the tests read, by slot (`Test::header_slot`).
    header_specs: Vec<HeaderSpec>,
    timing: Timing,
    skipped: BTreeMap<&'static str, usize>,
    ignored: usize,
    fancy: usize,
    errors: usize,
}

/// The verdict of [`RuleSet::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct SpamVerdict {
    /// The sum of the scores of the rules that hit (plus 1000 for GTUBE).
    pub score: f64,
    /// The spam confidence level, 0 to 9: see [`scl_of`].
    pub scl: u8,
    /// Whether the message contains [`GTUBE`].
    pub gtube: bool,
    /// The names of the scored rules that hit, in rule order (`GTUBE` first when it hit).
    pub hits: Vec<String>,
}

/// What a rule set holds, for `sluice engines --rules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStats {
    /// Rules loaded (tests and metas, disabled ones included).
    pub loaded: usize,
    /// Rules run for each message: the scored ones and what scored metas read.
    pub active: usize,
    /// Active tests that run only when one of their literals occurs.
    pub prefiltered: usize,
    /// Active tests that run on every message (no usable literal, negated, or `exists:`).
    pub always: usize,
    /// Rules on the backtracking engine.
    pub backtracking: usize,
    /// Rule lines not loaded, by reason.
    pub skipped: BTreeMap<&'static str, usize>,
    /// Setting lines that mean nothing to sluice (`lang`, `priority`, ...).
    pub ignored_settings: usize,
    /// Rules that did not compile (each one was reported by [`RuleSet::compile`]).
    pub errors: usize,
}

/// A rule's share of scanning time, from sampled messages.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleTiming {
    pub rule: String,
    /// Mean time of one run, in microseconds.
    pub mean_us: f64,
    /// Runs measured.
    pub runs: u64,
    /// Total time measured, in microseconds.
    pub total_us: f64,
    /// What lets the rule run on a message: `literal`, `regex set`, `every message` (the prefilter's
    /// gates; the costly rules of the last kind are the ones worth rewriting).
    pub woken_by: &'static str,
}

/// A rule that did not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The rule file's name.
    pub file: String,
    /// The line number in the file, from 1 (0 when the error is about the rule as a whole).
    pub line: usize,
    /// The rule's name, when the line got that far.
    pub rule: Option<String>,
    /// What is wrong, in one line.
    pub reason: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some(rule) => write!(f, "{}:{}: rule {}: {}", self.file, self.line, rule, self.reason),
            None => write!(f, "{}:{}: {}", self.file, self.line, self.reason),
        }
    }
}

impl std::error::Error for RuleError {}

/// Maps a score to a spam confidence level: `floor(score * 1.4)` clamped to `0..=9`; NaN is 0.
pub fn scl_of(score: f64) -> u8 {
    if score.is_nan() {
        return 0;
    }
    // Multiplying by 14 first keeps 5.0 exactly at 7: 5.0 * 1.4 is 6.999... in binary.
    let level = (score * 14.0 / 10.0).floor();
    level.clamp(0.0, 9.0) as u8
}

/// What a prefilter reads: a haystack, or the value of one header spec (by its slot), for the header
/// rules no literal of the whole header block prefilters: the rules on one header share a regex set
/// over its value instead of each running alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Over {
    Haystack(Haystack),
    Header(usize),
}

/// One compiled rule.
#[derive(Debug)]
struct Rule {
    name: String,
    score: f64,
    description: Option<String>,
    tflags: TFlags,
    kind: Kind,
}

impl Rule {
    /// Whether the rule adds to the score: SpamAssassin does not run rules scored 0, and `__`
    /// rules exist only for `meta` rules.
    fn is_scored(&self) -> bool {
        self.score != 0.0 && !self.name.starts_with("__") && !matches!(self.kind, Kind::Disabled)
    }
}

#[derive(Debug)]
enum Kind {
    Test(Box<Test>),
    Meta(Expr),
    /// One of the `eval:` tests sluice implements.
    Eval(eval::Eval),
    /// A meta rule caught in a cycle.
    Disabled,
}

/// A rule that looks at the message.
#[derive(Debug)]
struct Test {
    haystack: Haystack,
    /// The header a header rule reads.
    header: Option<HeaderSpec>,
    /// The rule set's number for `header` (see `View::header_in`).
    header_slot: usize,
    /// The regex; `None` for `exists:`.
    pattern: Option<Pattern>,
    /// The regex (Unicode off) for a regex set (see [`Prefilter`]).
    set_source: Option<String>,
    /// What the prefilter wakes the rule on.
    literals: Option<Vec<Vec<u8>>>,
    /// Bytes the text must hold one of each set of for a match (see `prefilter::requirements`).
    bytes: Vec<prefilter::ByteSet>,
    negate: bool,
    if_unset: Option<String>,
}

/// The `tflags` that change matching.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct TFlags {
    multiple: bool,
    max_hits: Option<usize>,
    no_subject: bool,
}

impl TFlags {
    fn parse(text: &str) -> TFlags {
        let mut flags = TFlags::default();
        for word in text.split_whitespace() {
            match word {
                "multiple" => flags.multiple = true,
                "nosubject" => flags.no_subject = true,
                _ => {
                    if let Some(n) = word.strip_prefix("maxhits=").and_then(|n| n.parse().ok()) {
                        flags.max_hits = Some(n);
                    }
                }
            }
        }
        flags
    }
}

/// The meta rules in evaluation order, and what lets a message evaluate only the few that a hit can
/// change: most of a large set reads rules that did not hit, and keeps the value it has when nothing
/// hits.
#[derive(Debug, Default)]
struct MetaPlan {
    /// The meta rules to evaluate, each after the metas it reads.
    order: Vec<usize>,
    /// Every rule's value on a message where no test hits (tests 0, metas evaluated on that).
    baseline: Vec<f64>,
    /// For each rule, the positions in `order` of the meta rules that read it.
    readers: Vec<Vec<u32>>,
}

impl MetaPlan {
    fn new(rules: &[Rule], order: Vec<usize>) -> MetaPlan {
        let mut readers = vec![Vec::new(); rules.len()];
        for (position, &meta) in order.iter().enumerate() {
            if let Kind::Meta(expr) = &rules[meta].kind {
                let mut deps = Vec::new();
                expr.indices(&mut deps);
                deps.sort_unstable();
                deps.dedup();
                for dep in deps {
                    readers[dep].push(position as u32);
                }
            }
        }
        let mut baseline = vec![0.0; rules.len()];
        for &meta in &order {
            baseline[meta] = meta_value(&rules[meta], &baseline);
        }
        MetaPlan { order, baseline, readers }
    }

    /// Evaluates the metas that read a rule whose value moved from the baseline (`hit_tests`, and
    /// metas that changed in turn); `values` starts as the baseline with the tests' hits set.
    fn run(&self, rules: &[Rule], values: &mut [f64], hit_tests: &[usize]) {
        let mut dirty = vec![false; self.order.len()];
        let mut first = self.order.len();
        for &test in hit_tests {
            for &position in &self.readers[test] {
                dirty[position as usize] = true;
                first = first.min(position as usize);
            }
        }
        for position in first..self.order.len() {
            if !dirty[position] {
                continue;
            }
            let meta = self.order[position];
            let value = meta_value(&rules[meta], values);
            if value != values[meta] {
                values[meta] = value;
                // Readers come later in the order: they are evaluated in this same pass.
                for &reader in &self.readers[meta] {
                    dirty[reader as usize] = true;
                }
            }
        }
    }
}

/// A meta rule's value: 1 when its expression is not zero.
fn meta_value(rule: &Rule, values: &[f64]) -> f64 {
    match &rule.kind {
        Kind::Meta(expr) if expr.eval(values) != 0.0 => 1.0,
        _ => 0.0,
    }
}

/// Sampled per-rule timings.
#[derive(Debug)]
struct Timing {
    messages: AtomicU64,
    nanos: Vec<AtomicU64>,
    runs: Vec<AtomicU64>,
}

impl Timing {
    fn new(rules: usize) -> Timing {
        Timing {
            messages: AtomicU64::new(0),
            nanos: (0..rules).map(|_| AtomicU64::new(0)).collect(),
            runs: (0..rules).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Whether this message is one of the timed ones.
    fn sample(&self) -> bool {
        self.messages.fetch_add(1, Ordering::Relaxed).is_multiple_of(SAMPLE_EVERY)
    }

    fn record(&self, rule: usize, nanos: u64) {
        self.nanos[rule].fetch_add(nanos, Ordering::Relaxed);
        self.runs[rule].fetch_add(1, Ordering::Relaxed);
    }
}

impl RuleSet {
    /// The small default rule set shipped in the binary (`rules/default.cf`).
    pub fn builtin() -> RuleSet {
        // The shipped rules compile without errors: a unit test proves it.
        RuleSet::compile(&[RuleSet::builtin_file()]).0
    }

    /// The file of the default rule set, to compile with others.
    pub fn builtin_file() -> SourceFile {
        SourceFile { name: "default.cf".to_owned(), bytes: DEFAULT_RULES.as_bytes().to_vec() }
    }

    /// Compiles rule files in order. Every rule that compiles is loaded; each broken one is
    /// reported and skipped. The built-in default rules are not included.
    pub fn compile(files: &[SourceFile]) -> (RuleSet, Vec<RuleError>) {
        let mut loader = load::Loader::default();
        for file in files {
            let text = String::from_utf8_lossy(&file.bytes);
            for (index, line) in text.lines().enumerate() {
                loader.line(&file.name, index + 1, line);
            }
        }
        loader.finish()
    }

    /// The number of rules loaded, disabled ones included.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether no rule is loaded.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The number of rule lines skipped because they need a part of SpamAssassin this engine
    /// does not have; [`RuleSet::stats`] gives the reasons.
    pub fn skipped(&self) -> usize {
        self.skipped.values().sum()
    }

    /// What the set holds.
    pub fn stats(&self) -> RuleStats {
        let active: usize = self.prefilters.iter().map(|(_, p)| p.slots.len()).sum::<usize>()
            + self.metas.order.len()
            + self.evals.len();
        let prefiltered: usize = self.prefilters.iter().map(|(_, p)| p.prefiltered()).sum();
        let tests: usize = self.prefilters.iter().map(|(_, p)| p.slots.len()).sum();
        RuleStats {
            loaded: self.rules.len(),
            active,
            prefiltered,
            always: tests - prefiltered,
            backtracking: self.fancy,
            skipped: self.skipped.clone(),
            ignored_settings: self.ignored,
            errors: self.errors,
        }
    }

    /// The `n` rules that took the most time on the sampled messages so far.
    pub fn slowest(&self, n: usize) -> Vec<RuleTiming> {
        let mut timings: Vec<RuleTiming> = (0..self.rules.len())
            .filter_map(|i| {
                let runs = self.timing.runs[i].load(Ordering::Relaxed);
                let nanos = self.timing.nanos[i].load(Ordering::Relaxed);
                (runs > 0).then(|| RuleTiming {
                    rule: self.rules[i].name.clone(),
                    mean_us: nanos as f64 / runs as f64 / 1000.0,
                    runs,
                    total_us: nanos as f64 / 1000.0,
                    woken_by: self.woken_by(i),
                })
            })
            .collect();
        timings.sort_by(|a, b| b.total_us.total_cmp(&a.total_us));
        timings.truncate(n);
        timings
    }

    /// What lets rule `rule` run (see [`RuleTiming::woken_by`]); `every message` for a rule no
    /// prefilter serves (an `eval:` test).
    fn woken_by(&self, rule: usize) -> &'static str {
        self.prefilters
            .iter()
            .find_map(|(_, prefilter)| {
                prefilter.slots.iter().position(|&r| r == rule).map(|slot| prefilter.woken_by(slot))
            })
            .unwrap_or("every message")
    }

    /// The `describe` text of rule `name`.
    pub fn description(&self, name: &str) -> Option<&str> {
        self.rules.iter().find(|r| r.name == name)?.description.as_deref()
    }

    /// The score of rule `name`.
    pub fn score(&self, name: &str) -> Option<f64> {
        self.rules.iter().find(|r| r.name == name).map(|r| r.score)
    }

    /// Scores a raw message.
    pub fn check(&self, message: &[u8]) -> SpamVerdict {
        self.check_decoded(&mime::decode(message))
    }

    /// Scores a message already decoded, so that other engines can share the decoding.
    pub fn check_decoded(&self, decoded: &Decoded<'_>) -> SpamVerdict {
        let mut verdict = SpamVerdict { score: 0.0, scl: 0, gtube: false, hits: Vec::new() };
        if contains_gtube(decoded) {
            verdict.gtube = true;
            verdict.score += GTUBE_SCORE;
            verdict.hits.push("GTUBE".to_owned());
        }
        let view = View::with_headers(decoded, self.header_specs.len());
        let sample = self.timing.sample();
        let mut values = self.metas.baseline.clone();
        let mut hit_tests = Vec::new();
        let mut woken = Vec::new();
        for (over, prefilter) in &self.prefilters {
            let text = match *over {
                Over::Haystack(haystack) => view.haystack(haystack),
                Over::Header(slot) => view.header_in(slot, &self.header_specs[slot]).map_or(&[][..], str::as_bytes),
            };
            prefilter.woken(text, &mut woken);
            for (slot, &rule) in prefilter.slots.iter().enumerate() {
                if !woken[slot] {
                    continue;
                }
                let Kind::Test(test) = &self.rules[rule].kind else { continue };
                let started = sample.then(Instant::now);
                let hits = self.run(test, self.rules[rule].tflags, &view);
                if hits > 0 {
                    values[rule] = hits as f64;
                    hit_tests.push(rule);
                }
                if let Some(started) = started {
                    self.timing.record(rule, started.elapsed().as_nanos() as u64);
                }
            }
        }
        for &rule in &self.evals {
            if let Kind::Eval(eval) = &self.rules[rule].kind
                && eval.hits(&view)
            {
                values[rule] = 1.0;
                hit_tests.push(rule);
            }
        }
        self.metas.run(&self.rules, &mut values, &hit_tests);
        for (rule, value) in self.rules.iter().zip(&values) {
            if *value > 0.0 && rule.is_scored() {
                verdict.score += rule.score;
                verdict.hits.push(rule.name.clone());
            }
        }
        verdict.score = (verdict.score * 1000.0).round() / 1000.0;
        verdict.scl = if verdict.gtube { 9 } else { scl_of(verdict.score) };
        verdict
    }

    /// Runs one test: its hit count.
    fn run(&self, test: &Test, tflags: TFlags, view: &View<'_, '_>) -> usize {
        let max = if tflags.multiple { tflags.max_hits.unwrap_or(MAX_HITS) } else { 1 };
        let count = |pattern: &Pattern, haystack: &[u8]| {
            if max == 1 { usize::from(pattern.is_match(haystack)) } else { pattern.count(haystack, max) }
        };
        if let Some(spec) = &test.header {
            let value = view.header_in(test.header_slot, spec);
            let Some(pattern) = &test.pattern else { return usize::from(value.is_some()) };
            let value = match (value, &test.if_unset) {
                (Some(value), _) => value,
                (None, Some(unset)) => unset.as_str(),
                (None, None) => return 0,
            };
            let hits = count(pattern, value.as_bytes());
            return if test.negate { usize::from(hits == 0) } else { hits };
        }
        let Some(pattern) = &test.pattern else { return 0 };
        let haystack = match test.haystack {
            Haystack::Body if tflags.no_subject => {
                let (body, start) = view.body();
                &body.as_bytes()[*start..]
            }
            haystack => view.haystack(haystack),
        };
        count(pattern, haystack)
    }
}

fn contains_gtube(decoded: &Decoded<'_>) -> bool {
    let has = |text: &[u8]| memchr::memmem::find(text, GTUBE.as_bytes()).is_some();
    has(decoded.raw()) || has(decoded.body_text().as_bytes())
}

#[cfg(test)]
mod tests;
