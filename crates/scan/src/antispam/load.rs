//! Reading rule files: lines, `if`/`ifplugin` blocks, ReplaceTags, and compiling the rules.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;

use regex::Regex;

use super::eval::Eval;
use super::meta;
use super::perl::{self, Flags, Pattern};
use super::prefilter::{self, PrefilterBuilder};
use super::view::{Haystack, HeaderSpec, HeaderTarget};
use super::{Kind, MetaPlan, Over, Rule, RuleError, RuleSet, TFlags, Test, Timing};

/// The SpamAssassin version `if (version >= ...)` compares with: the rule syntax sluice reads
/// is SpamAssassin 4.0's.
const VERSION: f64 = 4.000001;

/// The plugins `ifplugin` and `plugin(...)` find: ReplaceTags, which sluice implements, and the plugins
/// a stock SpamAssassin loads whose blocks hold ordinary rules beside their `eval:` tests (the evals
/// are skipped one by one; the rest runs, as in spamd). MIMEHeader is left out: sluice does not run
/// `mimeheader` rules, so the `if !plugin(MIMEHeader)` fallbacks load instead.
const PLUGINS: &[&str] = &[
    "Mail::SpamAssassin::Plugin::ReplaceTags",
    "Mail::SpamAssassin::Plugin::Check",
    "Mail::SpamAssassin::Plugin::HTTPSMismatch",
    "Mail::SpamAssassin::Plugin::URIDetail",
    "Mail::SpamAssassin::Plugin::Bayes",
    "Mail::SpamAssassin::Plugin::BodyEval",
    "Mail::SpamAssassin::Plugin::DNSEval",
    "Mail::SpamAssassin::Plugin::HTMLEval",
    "Mail::SpamAssassin::Plugin::HeaderEval",
    "Mail::SpamAssassin::Plugin::MIMEEval",
    "Mail::SpamAssassin::Plugin::RelayEval",
    "Mail::SpamAssassin::Plugin::URIEval",
    "Mail::SpamAssassin::Plugin::WLBLEval",
    "Mail::SpamAssassin::Plugin::VBounce",
    "Mail::SpamAssassin::Plugin::ImageInfo",
    "Mail::SpamAssassin::Plugin::FreeMail",
    "Mail::SpamAssassin::Plugin::AskDNS",
    "Mail::SpamAssassin::Plugin::HashBL",
    "Mail::SpamAssassin::Plugin::DMARC",
    "Mail::SpamAssassin::Plugin::SPF",
    "Mail::SpamAssassin::Plugin::DKIM",
    "Mail::SpamAssassin::Plugin::URIDNSBL",
    "Mail::SpamAssassin::Plugin::WelcomeListSubject",
];

/// Configuration features `if can(...)` finds.
const FEATURES: &[&str] = &[
    "Mail::SpamAssassin::Conf::feature_bug6558_free",
    "Mail::SpamAssassin::Conf::feature_welcomelist_blocklist",
    "Mail::SpamAssassin::Conf::perl_min_version_5010000",
];

/// Rule types that only plugins provide: skipped, and counted.
const PLUGIN_RULE_TYPES: &[&str] = &[
    "mimeheader",
    "askdns",
    "urirhssub",
    "urirhsbl",
    "uridnssub",
    "uridnsbl",
    "uri_detail",
    "hashbl_acc_test",
    "check_hashbl_bodyre",
];

/// Why a line that defines a rule was not loaded.
pub(super) mod reason {
    pub const EVAL: &str = "eval: test (code in a Perl plugin)";
    pub const PLUGIN_TYPE: &str = "rule type provided by a plugin";
    pub const CONDITIONAL: &str = "inside an if/ifplugin block that is false here";
    pub const MODIFIER: &str = "header modifier not supported";
}

/// The state of reading rule files.
#[derive(Debug, Default)]
pub(super) struct Loader {
    defs: Vec<Def>,
    by_name: HashMap<String, usize>,
    scores: HashMap<String, f64>,
    descriptions: HashMap<String, String>,
    tflags: HashMap<String, String>,
    tags: Tags,
    replace_rules: HashSet<String>,
    errors: Vec<RuleError>,
    skipped: BTreeMap<&'static str, usize>,
    ignored: usize,
    /// Open `if` blocks: whether each one's body is read.
    conditions: Vec<bool>,
    /// The files read, in order, for sorting errors.
    files: Vec<String>,
}

/// ReplaceTags settings.
#[derive(Debug, Default)]
struct Tags {
    tags: HashMap<String, String>,
    pre: HashMap<String, String>,
    inter: HashMap<String, String>,
    post: HashMap<String, String>,
}

/// A rule as written, compiled at the end (ReplaceTags may come after it).
#[derive(Debug)]
struct Def {
    name: String,
    file: String,
    line: usize,
    kind: DefKind,
}

#[derive(Debug)]
enum DefKind {
    Header { spec: HeaderSpec, negate: bool, source: String, flags: Flags, if_unset: Option<String> },
    Exists(HeaderSpec),
    Pattern { haystack: Haystack, source: String, flags: Flags },
    Meta(String),
    Eval(Eval),
}

/// A line that did not load: the rule's name when known, and why.
type LineError = (Option<String>, String);

/// The result of one line.
enum Outcome {
    Done,
    Skipped(&'static str),
}

impl Loader {
    pub(super) fn line(&mut self, file: &str, number: usize, line: &str) {
        if self.files.last().is_none_or(|last| last != file) {
            self.files.push(file.to_owned());
        }
        let line = strip_comment(line).trim();
        if line.is_empty() {
            return;
        }
        let (keyword, rest) = split_word(line);
        let keyword = keyword.to_ascii_lowercase();
        if self.conditional(&keyword, rest) {
            return;
        }
        if self.conditions.iter().any(|open| !open) {
            if is_rule_keyword(&keyword) {
                *self.skipped.entry(reason::CONDITIONAL).or_default() += 1;
            }
            return;
        }
        let outcome = match keyword.as_str() {
            "header" => self.header(file, number, rest),
            "body" => self.pattern(file, number, rest, Haystack::Body),
            "rawbody" => self.pattern(file, number, rest, Haystack::RawBody),
            "uri" => self.pattern(file, number, rest, Haystack::Uri),
            "full" => self.pattern(file, number, rest, Haystack::Full),
            "meta" => self.meta(file, number, rest),
            "score" => self.score(rest),
            "describe" => self.describe(rest),
            "tflags" => self.tflags(rest),
            "replace_tag" | "replace_pre" | "replace_inter" | "replace_post" => self.replace_tag(&keyword, rest),
            "replace_rules" => {
                self.replace_rules.extend(rest.split_whitespace().map(str::to_owned));
                Ok(Outcome::Done)
            }
            k if PLUGIN_RULE_TYPES.contains(&k) => Ok(Outcome::Skipped(reason::PLUGIN_TYPE)),
            _ => {
                self.ignored += 1;
                Ok(Outcome::Done)
            }
        };
        match outcome {
            Ok(Outcome::Done) => {}
            Ok(Outcome::Skipped(why)) => *self.skipped.entry(why).or_default() += 1,
            Err((rule, reason)) => {
                self.errors.push(RuleError { file: file.to_owned(), line: number, rule, reason });
            }
        }
    }

    /// Handles `if`, `ifplugin`, `else` and `endif`; whether the line was one of them.
    fn conditional(&mut self, keyword: &str, rest: &str) -> bool {
        match keyword {
            "if" => self.conditions.push(condition(rest)),
            "ifplugin" => self.conditions.push(PLUGINS.contains(&split_word(rest).0)),
            "else" => {
                if let Some(open) = self.conditions.last_mut() {
                    *open = !*open;
                }
            }
            "endif" => {
                self.conditions.pop();
            }
            _ => return false,
        }
        true
    }

    fn header(&mut self, file: &str, line: usize, rest: &str) -> Result<Outcome, LineError> {
        let (name, test) = rule_name(rest)?;
        let fail = |reason: String| (Some(name.to_owned()), reason);
        if test.is_empty() {
            return Err(fail("missing header name and test".to_owned()));
        }
        if test.starts_with("eval:") {
            return Ok(match Eval::parse(test) {
                Some(eval) => {
                    self.define(name, file, line, DefKind::Eval(eval));
                    Outcome::Done
                }
                None => Outcome::Skipped(reason::EVAL),
            });
        }
        if let Some(header) = test.strip_prefix("exists:") {
            let header = header.trim();
            if header.is_empty() || header.contains(char::is_whitespace) {
                return Err(fail("exists: needs one header name".to_owned()));
            }
            let spec = match HeaderSpec::parse(header) {
                Ok(spec) => spec,
                Err(_) => return Ok(Outcome::Skipped(reason::MODIFIER)),
            };
            self.define(name, file, line, DefKind::Exists(spec));
            return Ok(Outcome::Done);
        }
        let (header, rest) = split_word(test);
        let spec = match HeaderSpec::parse(header) {
            Ok(spec) => spec,
            Err(reason) if reason.contains("modifier") => return Ok(Outcome::Skipped(reason::MODIFIER)),
            Err(reason) => return Err(fail(reason)),
        };
        let (op, rest) = split_word(rest);
        let negate = match op {
            "=~" => false,
            "!~" => true,
            _ => return Err(fail("expected =~ or !~ after the header name".to_owned())),
        };
        let (source, flags, rest) = perl::parse_literal(rest).map_err(fail)?;
        let if_unset = parse_if_unset(rest).map_err(fail)?;
        let kind = DefKind::Header { spec, negate, source: source.to_owned(), flags, if_unset };
        self.define(name, file, line, kind);
        Ok(Outcome::Done)
    }

    fn pattern(&mut self, file: &str, line: usize, rest: &str, haystack: Haystack) -> Result<Outcome, LineError> {
        let (name, test) = rule_name(rest)?;
        let fail = |reason: String| (Some(name.to_owned()), reason);
        if test.starts_with("eval:") {
            return Ok(Outcome::Skipped(reason::EVAL));
        }
        let (source, flags, rest) = perl::parse_literal(test).map_err(fail)?;
        if !rest.trim().is_empty() {
            return Err(fail("unexpected text after the regex".to_owned()));
        }
        self.define(name, file, line, DefKind::Pattern { haystack, source: source.to_owned(), flags });
        Ok(Outcome::Done)
    }

    fn meta(&mut self, file: &str, line: usize, rest: &str) -> Result<Outcome, LineError> {
        let (name, expr) = rule_name(rest)?;
        if expr.is_empty() {
            return Err((Some(name.to_owned()), "missing meta expression".to_owned()));
        }
        self.define(name, file, line, DefKind::Meta(expr.to_owned()));
        Ok(Outcome::Done)
    }

    fn score(&mut self, rest: &str) -> Result<Outcome, LineError> {
        let (name, values) = rule_name(rest)?;
        let fail = |reason: String| (Some(name.to_owned()), reason);
        let values: Vec<&str> = values.split_whitespace().collect();
        if values.len() != 1 && values.len() != 4 {
            return Err(fail("expected one or four scores".to_owned()));
        }
        // The first of four is the score set without Bayes and network tests: sluice's case.
        // SpamAssassin writes immutable scores in parentheses; they are scores all the same.
        let first = values[0].trim_start_matches('(').trim_end_matches(')');
        let score: f64 = first.parse().map_err(|_| fail(format!("score {first:?} is not a number")))?;
        if !score.is_finite() {
            return Err(fail("score is not finite".to_owned()));
        }
        self.scores.insert(name.to_owned(), score);
        Ok(Outcome::Done)
    }

    fn describe(&mut self, rest: &str) -> Result<Outcome, LineError> {
        let (name, text) = rule_name(rest)?;
        self.descriptions.insert(name.to_owned(), text.to_owned());
        Ok(Outcome::Done)
    }

    fn tflags(&mut self, rest: &str) -> Result<Outcome, LineError> {
        let (name, flags) = rule_name(rest)?;
        self.tflags.insert(name.to_owned(), flags.to_owned());
        Ok(Outcome::Done)
    }

    fn replace_tag(&mut self, keyword: &str, rest: &str) -> Result<Outcome, LineError> {
        let (name, value) = split_word(rest);
        if name.is_empty() || value.is_empty() {
            return Err((None, format!("{keyword} needs a name and a value")));
        }
        let table = match keyword {
            "replace_tag" => &mut self.tags.tags,
            "replace_pre" => &mut self.tags.pre,
            "replace_inter" => &mut self.tags.inter,
            _ => &mut self.tags.post,
        };
        table.insert(name.to_owned(), value.to_owned());
        Ok(Outcome::Done)
    }

    fn define(&mut self, name: &str, file: &str, line: usize, kind: DefKind) {
        let def = Def { name: name.to_owned(), file: file.to_owned(), line, kind };
        match self.by_name.get(name) {
            Some(&index) => self.defs[index] = def,
            None => {
                self.by_name.insert(name.to_owned(), self.defs.len());
                self.defs.push(def);
            }
        }
    }

    /// Compiles every definition into a rule set.
    pub(super) fn finish(mut self) -> (RuleSet, Vec<RuleError>) {
        let defs = std::mem::take(&mut self.defs);
        let mut rules = Vec::with_capacity(defs.len());
        let mut fancy = 0;
        for def in defs {
            let fail = |reason: String| RuleError {
                file: def.file.clone(),
                line: def.line,
                rule: Some(def.name.clone()),
                reason,
            };
            let kind = match self.compile(&def) {
                Ok(kind) => kind,
                Err(reason) => {
                    self.errors.push(fail(reason));
                    continue;
                }
            };
            if let Kind::Test(test) = &kind
                && test.pattern.as_ref().is_some_and(Pattern::is_fancy)
            {
                fancy += 1;
            }
            let tflags_text = self.tflags.get(&def.name).map_or("", String::as_str);
            let nice = tflags_text.split_whitespace().any(|f| f == "nice");
            let score = self.scores.get(&def.name).copied().unwrap_or_else(|| default_score(&def.name, nice));
            let tflags = TFlags::parse(tflags_text);
            let description = self.descriptions.remove(&def.name);
            rules.push(Rule { name: def.name, score, description, tflags, kind });
        }
        let index: HashMap<String, usize> = rules.iter().enumerate().map(|(i, r)| (r.name.clone(), i)).collect();
        for rule in &mut rules {
            if let Kind::Meta(expr) = &mut rule.kind {
                expr.resolve(&|name| index.get(name).copied());
            }
        }
        let (meta_order, cyclic) = meta_order(&rules);
        for i in cyclic {
            let rule = &rules[i];
            self.errors.push(RuleError {
                file: String::new(),
                line: 0,
                rule: Some(rule.name.clone()),
                reason: "meta rule depends on itself".to_owned(),
            });
            rules[i].kind = Kind::Disabled;
        }
        // Rules reading the same header the same way share its value (`View::header_in`).
        let mut slots: HashMap<HeaderSpec, usize> = HashMap::new();
        let mut header_specs = Vec::new();
        for rule in &mut rules {
            if let Kind::Test(test) = &mut rule.kind
                && let Some(spec) = &test.header
            {
                test.header_slot = *slots.entry(spec.clone()).or_insert_with(|| {
                    header_specs.push(spec.clone());
                    header_specs.len() - 1
                });
            }
        }
        let needed = needed_rules(&rules);
        let mut builders: BTreeMap<Over, PrefilterBuilder> = BTreeMap::new();
        for (i, rule) in rules.iter().enumerate() {
            let Kind::Test(test) = &rule.kind else { continue };
            if !needed[i] {
                continue;
            }
            // A negated or if-unset header test can hit without a match: it always runs.
            let unmatched = test.negate || test.if_unset.is_some();
            // A header rule's value joins occurrences with newlines that the all-headers haystack
            // does not have between them: a literal spanning lines cannot prefilter it there.
            let spans_lines = |set: &Vec<Vec<u8>>| set.iter().any(|l| l.contains(&b'\n') || l.contains(&b'\r'));
            let header = matches!(test.haystack, Haystack::Headers | Haystack::RawHeaders);
            // The relay pseudo-headers are not in the message's headers: no literal of theirs is.
            let pseudo = test.header.as_ref().is_some_and(|h| matches!(h.target, HeaderTarget::Relays(_)));
            let literals = match &test.literals {
                _ if unmatched || pseudo => None,
                Some(set) if header && spans_lines(set) => None,
                literals => literals.clone(),
            };
            // A header rule without a literal in the header block is prefiltered over its header's
            // value: the bytes a match needs and the regex sets shared by the rules on that header.
            let over = match &test.header {
                Some(_) if literals.is_none() => Over::Header(test.header_slot),
                _ => Over::Haystack(test.haystack),
            };
            let needs = if unmatched { Vec::new() } else { test.bytes.clone() };
            // A rule joins a regex set when a match is what makes it hit, once (not `multiple`, which counts).
            let set_source = test.set_source.clone().filter(|_| !rule.tflags.multiple && !unmatched);
            builders.entry(over).or_default().add(i, literals, set_source, needs);
        }
        let prefilters = builders.into_iter().map(|(haystack, b)| (haystack, b.build())).collect();
        let meta_order = meta_order.into_iter().filter(|&i| needed[i]).collect();
        let metas = MetaPlan::new(&rules, meta_order);
        let evals = (0..rules.len()).filter(|&i| needed[i] && matches!(rules[i].kind, Kind::Eval(_))).collect();
        let timing = Timing::new(rules.len());
        let order = |file: &str| self.files.iter().position(|f| f == file).unwrap_or(usize::MAX);
        self.errors.sort_by_key(|e| (order(&e.file), e.line));
        let set = RuleSet {
            errors: self.errors.len(),
            rules,
            prefilters,
            metas,
            evals,
            header_specs,
            timing,
            skipped: self.skipped,
            ignored: self.ignored,
            fancy,
        };
        (set, self.errors)
    }

    fn compile(&self, def: &Def) -> Result<Kind, String> {
        let replace = |source: &str| {
            if self.replace_rules.contains(&def.name) { self.tags.apply(source) } else { source.to_owned() }
        };
        let compile = |source: &str, flags: Flags, line_targets: bool| {
            let source = replace(source);
            let mut compiled = Pattern::compile(&source, flags, line_targets)?;
            let needs = prefilter::requirements(&compiled.skeleton, Flags { multi_line: line_targets, ..flags });
            if needs.short {
                compiled.set_source = None;
            }
            Ok::<_, String>((compiled, needs.literals, needs.bytes))
        };
        Ok(match &def.kind {
            DefKind::Header { spec, negate, source, flags, if_unset } => {
                let (compiled, literals, bytes) = compile(source, *flags, false)?;
                let haystack = if spec.raw { Haystack::RawHeaders } else { Haystack::Headers };
                Kind::Test(Box::new(Test {
                    haystack,
                    header: Some(spec.clone()),
                    header_slot: 0,
                    pattern: Some(compiled.pattern),
                    set_source: compiled.set_source,
                    literals,
                    bytes,
                    negate: *negate,
                    if_unset: if_unset.clone(),
                }))
            }
            DefKind::Exists(spec) => Kind::Test(Box::new(Test {
                haystack: Haystack::Headers,
                header: Some(spec.clone()),
                header_slot: 0,
                pattern: None,
                set_source: None,
                literals: None,
                bytes: Vec::new(),
                negate: false,
                if_unset: None,
            })),
            DefKind::Pattern { haystack, source, flags } => {
                let line_targets = matches!(haystack, Haystack::Body | Haystack::RawBody | Haystack::Uri);
                let (compiled, literals, bytes) = compile(source, *flags, line_targets)?;
                Kind::Test(Box::new(Test {
                    haystack: *haystack,
                    header: None,
                    header_slot: 0,
                    pattern: Some(compiled.pattern),
                    set_source: compiled.set_source,
                    literals,
                    bytes,
                    negate: false,
                    if_unset: None,
                }))
            }
            DefKind::Meta(text) => Kind::Meta(meta::parse(text)?),
            DefKind::Eval(eval) => Kind::Eval(eval.clone()),
        })
    }
}

impl Tags {
    /// Applies ReplaceTags to a rule's regex: `<pre N>`, `<inter N>` and `<post N>` pick the
    /// text put before each tag, between adjacent tags and after each tag; every `<TAG>` becomes
    /// its value.
    fn apply(&self, source: &str) -> String {
        static MARKER: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"<(pre|inter|post) (\w+)>").expect("static regex"));
        static TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<(\w+)>").expect("static regex"));
        let (mut pre, mut inter, mut post) = ("", "", "");
        for captures in MARKER.captures_iter(source) {
            let table = match &captures[1] {
                "pre" => &self.pre,
                "inter" => &self.inter,
                _ => &self.post,
            };
            let value = table.get(&captures[2]).map_or("", String::as_str);
            match &captures[1] {
                "pre" => pre = value,
                "inter" => inter = value,
                _ => post = value,
            }
        }
        let source = MARKER.replace_all(source, "");
        let mut out = String::with_capacity(source.len() * 4);
        let mut last = 0;
        let mut previous_tag_end = None;
        for captures in TAG.captures_iter(&source) {
            let whole = captures.get(0).expect("group 0 always matches");
            let Some(value) = self.tags.get(&captures[1]) else { continue };
            out.push_str(&source[last..whole.start()]);
            if previous_tag_end == Some(whole.start()) {
                out.push_str(inter);
            }
            out.push_str(pre);
            out.push_str(value);
            out.push_str(post);
            last = whole.end();
            previous_tag_end = Some(whole.end());
        }
        out.push_str(&source[last..]);
        out
    }
}

/// A rule without a `score` line scores 1.0, as in SpamAssassin; `T_` rules (in testing) 0.01;
/// negative for a `nice` rule.
fn default_score(name: &str, nice: bool) -> f64 {
    let score = if name.starts_with("T_") { 0.01 } else { 1.0 };
    if nice { -score } else { score }
}

/// Whether a keyword defines a rule (for counting the ones a false `if` block skips).
fn is_rule_keyword(keyword: &str) -> bool {
    matches!(keyword, "header" | "body" | "rawbody" | "uri" | "full" | "meta") || PLUGIN_RULE_TYPES.contains(&keyword)
}

/// Evaluates an `if` condition: `version`, numbers, `plugin(Name)`, `can(Name)`, `!`, `&&`,
/// `||`, comparisons and parentheses. Anything else makes the condition false.
fn condition(text: &str) -> bool {
    static CALL: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\b(plugin|can)\(\s*([\w:]+)\s*\)").expect("static regex"));
    let substituted = CALL.replace_all(text, |captures: &regex::Captures<'_>| {
        let name = &captures[2];
        let known = match &captures[1] {
            "plugin" => PLUGINS.contains(&name),
            _ => FEATURES.contains(&name),
        };
        if known { "1" } else { "0" }
    });
    let substituted = substituted.replace("version", &VERSION.to_string());
    let Ok(mut expr) = meta::parse(&substituted) else { return false };
    let mut names = Vec::new();
    expr.names(&mut names);
    if !names.is_empty() {
        return false;
    }
    expr.resolve(&|_| None);
    expr.eval(&[]) != 0.0
}

/// The order to evaluate meta rules in (each after the metas it reads), and the metas caught in
/// a cycle.
fn meta_order(rules: &[Rule]) -> (Vec<usize>, Vec<usize>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks = vec![Mark::New; rules.len()];
    let mut order = Vec::new();
    let mut cyclic = Vec::new();
    for start in 0..rules.len() {
        if !matches!(rules[start].kind, Kind::Meta(_)) || marks[start] != Mark::New {
            continue;
        }
        // Depth-first, with an explicit stack: (rule, its dependencies, next one to visit).
        let mut stack: Vec<(usize, Vec<usize>, usize)> = vec![(start, deps(&rules[start]), 0)];
        marks[start] = Mark::Active;
        while let Some((rule, children, next)) = stack.last_mut() {
            if let Some(&child) = children.get(*next) {
                *next += 1;
                if !matches!(rules[child].kind, Kind::Meta(_)) {
                    continue;
                }
                match marks[child] {
                    Mark::New => {
                        marks[child] = Mark::Active;
                        let grandchildren = deps(&rules[child]);
                        stack.push((child, grandchildren, 0));
                    }
                    Mark::Active => cyclic.push(child),
                    Mark::Done => {}
                }
            } else {
                marks[*rule] = Mark::Done;
                order.push(*rule);
                stack.pop();
            }
        }
    }
    cyclic.sort_unstable();
    cyclic.dedup();
    order.retain(|i| !cyclic.contains(i));
    (order, cyclic)
}

fn deps(rule: &Rule) -> Vec<usize> {
    let mut out = Vec::new();
    if let Kind::Meta(expr) = &rule.kind {
        expr.indices(&mut out);
    }
    out
}

/// The rules to run for each message: every scored rule, and whatever the scored metas read.
fn needed_rules(rules: &[Rule]) -> Vec<bool> {
    let mut needed = vec![false; rules.len()];
    let mut pending: Vec<usize> = (0..rules.len()).filter(|&i| rules[i].is_scored()).collect();
    while let Some(i) = pending.pop() {
        if std::mem::replace(&mut needed[i], true) {
            continue;
        }
        for dep in deps(&rules[i]) {
            // A rule scored 0 is disabled, as in SpamAssassin: metas see it as 0.
            let disabled = rules[dep].score == 0.0 && !rules[dep].name.starts_with("__");
            if !needed[dep] && !disabled {
                pending.push(dep);
            }
        }
    }
    needed
}

/// Cuts a comment off `line`: a `#` at the start or after whitespace, unless escaped.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

/// Splits off the first whitespace-separated word; the rest is trimmed.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(end) => (&text[..end], text[end..].trim()),
        None => (text, ""),
    }
}

/// Reads a rule name, checking its syntax.
fn rule_name(rest: &str) -> Result<(&str, &str), LineError> {
    let (name, rest) = split_word(rest);
    if name.is_empty() {
        return Err((None, "missing rule name".to_owned()));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err((Some(name.to_owned()), "a rule name is letters, digits and _".to_owned()));
    }
    Ok((name, rest))
}

/// Parses the optional `[if-unset: TEXT]` after a header regex.
fn parse_if_unset(rest: &str) -> Result<Option<String>, String> {
    let rest = rest.trim();
    if rest.is_empty() {
        return Ok(None);
    }
    let inner =
        rest.strip_prefix("[if-unset:").and_then(|r| r.strip_suffix(']')).ok_or("unexpected text after the regex")?;
    Ok(Some(inner.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions() {
        assert!(condition("(version >= 3.004000)"));
        assert!(!condition("(version >= 4.001000)"));
        assert!(condition("can(Mail::SpamAssassin::Conf::feature_bug6558_free)"));
        assert!(!condition("can(Mail::SpamAssassin::Conf::feature_capture_rules)"));
        assert!(condition("!plugin(Mail::SpamAssassin::Plugin::MIMEHeader)"));
        assert!(condition("plugin(Mail::SpamAssassin::Plugin::ReplaceTags) && version > 3"));
        assert!(!condition("perl_version >= 5"), "an unknown word is false");
        assert!(!condition("((("), "a broken condition is false");
    }

    #[test]
    fn replace_tags() {
        let mut tags = Tags::default();
        tags.tags.insert("A".into(), "[a@]".into());
        tags.tags.insert("B".into(), "(?:b|8)".into());
        tags.inter.insert("W1".into(), r"\W?".into());
        tags.post.insert("P2".into(), "{1,2}".into());
        assert_eq!(tags.apply("<inter W1><post P2>x<A><B>y"), r"x[a@]{1,2}\W?(?:b|8){1,2}y");
        assert_eq!(tags.apply("<A> <B> <href>"), "[a@] (?:b|8) <href>");
    }
}
