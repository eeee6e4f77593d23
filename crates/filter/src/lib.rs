//! The filter language of the admin API, in Exchange's OPATH style:
//! `MessageCount -gt 100 -and Status -eq 'Retry'`,
//! `FromAddress -like '*@example.com' -or (Size -gt 1MB -and SCL -ge 7)`.
//!
//! A filter is parsed once against the properties of what it filters (queues, messages), each with a
//! [`Kind`], so that every value is checked and converted before anything is evaluated: an unknown
//! property, an enum value that does not exist (`Status -eq 'Bogus'`) or a size that is not one is an
//! error naming the token and its position, and nothing is acted on. Evaluation then only compares
//! integers and strings.
//!
//! - Operators: `-eq -ne -gt -ge -lt -le -like -notlike -contains -notcontains`, `-and -or -not`,
//!   parentheses. `-and` binds tighter than `-or`.
//! - Property names are case-insensitive and ignore `_` (`message_count` = `MessageCount`).
//! - String comparisons are case-insensitive; `*` is the wildcard of `-like`.
//! - Values: bare numbers, quoted strings (`'...'` or `"..."`, the quote doubled inside), sizes (`10KB`,
//!   `1MB`: powers of 1024), durations (`00:05:00`, `5m`, `2h`, `1d`), times (RFC 3339, parsed by the
//!   caller's function). `-contains` asks whether a list property (recipients) holds the value, or a
//!   string property contains it.
//!
//! The crate is pure (no I/O, no clock), so that it can be fuzzed and property-tested alone.

use std::fmt;

/// What a property holds, and so how its values are written and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text, compared without regard to case.
    Str,
    /// A list of texts (e.g. recipients): `-contains` asks for one equal to the value.
    List,
    /// A whole number.
    Int,
    /// Bytes, written with or without a unit (`10KB`).
    Size,
    /// Milliseconds, written `hh:mm:ss` or with a unit (`5m`).
    Duration,
    /// A wall-clock time in ms since the epoch, written in RFC 3339.
    Time,
    /// Messages per second, written with up to three decimals (`-2.5`) and held in thousandths (`-2500`).
    Rate,
    /// One of these names (compared without regard to case).
    Enum(&'static [&'static str]),
}

/// A property that filters may name.
#[derive(Debug, Clone, Copy)]
pub struct Property {
    /// Its name in PascalCase (`MessageCount`); also matched as snake_case.
    pub name: &'static str,
    pub kind: Kind,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Like,
    NotLike,
    Contains,
    NotContains,
}

const OPS: [(&str, Op); 10] = [
    ("eq", Op::Eq),
    ("ne", Op::Ne),
    ("gt", Op::Gt),
    ("ge", Op::Ge),
    ("lt", Op::Lt),
    ("le", Op::Le),
    ("like", Op::Like),
    ("notlike", Op::NotLike),
    ("contains", Op::Contains),
    ("notcontains", Op::NotContains),
];

impl Op {
    fn name(self) -> &'static str {
        OPS.iter().find(|(_, o)| *o == self).map_or("eq", |(n, _)| n)
    }
}

/// A value of a filter, converted for its property's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    /// Str, List and Enum values (an enum value in its declared spelling).
    Text(String),
    /// Int, Size (bytes), Duration (ms) and Time (ms since the epoch) values.
    Number(i64),
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Compare { property: usize, op: Op, value: Literal },
    Not(Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
}

/// A property's value on one object, as the caller gives it to [`Filter::matches`].
#[derive(Debug, Clone)]
pub enum Value<'a> {
    Text(&'a str),
    List(Vec<&'a str>),
    Number(i64),
    /// The object has no value for it (e.g. no last error): only `-ne`, `-notlike` and `-notcontains` hold.
    Missing,
}

/// Why a filter was refused: what, and where (a byte offset into the filter, and the token found there).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at position {position} ({token:?})")]
pub struct FilterError {
    pub what: String,
    pub position: usize,
    pub token: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Dash(String),
    Quoted(String),
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<(usize, Tok, String)>, FilterError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let tok = match c {
            b'(' => {
                i += 1;
                Tok::Open
            }
            b')' => {
                i += 1;
                Tok::Close
            }
            b'\'' | b'"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(ch) = text[i..].chars().next() else {
                        return Err(FilterError {
                            what: "a quoted value is not closed".into(),
                            position: start,
                            token: text[start..].to_owned(),
                        });
                    };
                    i += ch.len_utf8();
                    if ch as u32 == u32::from(c) {
                        if bytes.get(i) == Some(&c) {
                            s.push(ch);
                            i += 1;
                            continue;
                        }
                        break;
                    }
                    s.push(ch);
                }
                Tok::Quoted(s)
            }
            _ => {
                while i < bytes.len()
                    && !bytes[i].is_ascii_whitespace()
                    && !matches!(bytes[i], b'(' | b')' | b'\'' | b'"')
                {
                    i += 1;
                }
                let word = &text[start..i];
                match word.strip_prefix('-') {
                    Some(rest) if rest.chars().next().is_some_and(|ch| ch.is_ascii_alphabetic()) => {
                        Tok::Dash(rest.to_ascii_lowercase())
                    }
                    _ => Tok::Word(word.to_owned()),
                }
            }
        };
        out.push((start, tok, text[start..i].to_owned()));
    }
    Ok(out)
}

/// A property name as matched: lower case, without `_`.
fn normalize(name: &str) -> String {
    name.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect()
}

/// How deep parentheses and `-not` may nest: the parser recurses, and a filter is client input.
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    toks: Vec<(usize, Tok, String)>,
    at: usize,
    depth: usize,
    end: usize,
    properties: &'a [Property],
    parse_time: fn(&str) -> Option<i64>,
}

/// Parses `text` against `properties`; `parse_time` reads an RFC 3339 time (ms since the epoch).
pub fn parse(text: &str, properties: &[Property], parse_time: fn(&str) -> Option<i64>) -> Result<Filter, FilterError> {
    let mut p = Parser { toks: tokenize(text)?, at: 0, depth: 0, end: text.len(), properties, parse_time };
    if p.toks.is_empty() {
        return Err(FilterError { what: "the filter is empty".into(), position: 0, token: String::new() });
    }
    let f = p.or()?;
    if let Some((pos, _, raw)) = p.toks.get(p.at) {
        return Err(FilterError { what: "expected -and, -or or the end".into(), position: *pos, token: raw.clone() });
    }
    Ok(f)
}

impl Parser<'_> {
    fn error(&self, what: &str) -> FilterError {
        match self.toks.get(self.at) {
            Some((pos, _, raw)) => FilterError { what: what.to_owned(), position: *pos, token: raw.clone() },
            None => FilterError { what: format!("{what}, found the end"), position: self.end, token: String::new() },
        }
    }

    fn peek_dash(&self, word: &str) -> bool {
        matches!(self.toks.get(self.at), Some((_, Tok::Dash(d), _)) if d == word)
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.and()?;
        while self.peek_dash("or") {
            self.at += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.not()?;
        while self.peek_dash("and") {
            self.at += 1;
            left = Filter::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Filter, FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(&format!("nested deeper than {MAX_DEPTH}")));
        }
        let f = if self.peek_dash("not") {
            self.at += 1;
            self.not().map(|f| Filter::Not(Box::new(f)))
        } else {
            self.primary()
        };
        self.depth -= 1;
        f
    }

    fn primary(&mut self) -> Result<Filter, FilterError> {
        match self.toks.get(self.at).map(|t| t.1.clone()) {
            Some(Tok::Open) => {
                self.at += 1;
                let f = self.or()?;
                if !matches!(self.toks.get(self.at), Some((_, Tok::Close, _))) {
                    return Err(self.error("expected )"));
                }
                self.at += 1;
                Ok(f)
            }
            Some(Tok::Word(name)) => {
                let wanted = normalize(&name);
                let Some(property) = self.properties.iter().position(|p| normalize(p.name) == wanted) else {
                    return Err(self.error("unknown property"));
                };
                self.at += 1;
                let op = match self.toks.get(self.at) {
                    Some((_, Tok::Dash(d), _)) => OPS.iter().find(|(n, _)| n == d).map(|(_, o)| *o),
                    _ => None,
                };
                let Some(op) = op else { return Err(self.error("expected an operator such as -eq")) };
                self.at += 1;
                let kind = self.properties[property].kind;
                let value = self.value(kind, op)?;
                self.at += 1;
                Ok(Filter::Compare { property, op, value })
            }
            _ => Err(self.error("expected a property name, -not or (")),
        }
    }

    /// The value token at `self.at`, converted for `kind` (not consumed).
    fn value(&self, kind: Kind, op: Op) -> Result<Literal, FilterError> {
        let text = match self.toks.get(self.at) {
            Some((_, Tok::Word(w), _)) => w.clone(),
            Some((_, Tok::Quoted(q), _)) => q.clone(),
            _ => return Err(self.error("expected a value")),
        };
        let textual = matches!(op, Op::Like | Op::NotLike | Op::Contains | Op::NotContains);
        let bad = |what: String| self.error(&what);
        Ok(match kind {
            Kind::Str | Kind::List => Literal::Text(text),
            _ if textual => return Err(bad(format!("{} applies to text, not to this property", op.name()))),
            Kind::Enum(names) => match names.iter().find(|n| n.eq_ignore_ascii_case(&text)) {
                Some(n) => Literal::Text((*n).to_owned()),
                None => return Err(bad(format!("not one of {}", names.join(", ")))),
            },
            Kind::Int => Literal::Number(text.parse().map_err(|_| bad("not a whole number".into()))?),
            Kind::Size => Literal::Number(size(&text).ok_or_else(|| bad("not a size such as 10KB".into()))?),
            Kind::Duration => {
                Literal::Number(duration(&text).ok_or_else(|| bad("not a duration such as 00:05:00 or 5m".into()))?)
            }
            Kind::Rate => Literal::Number(rate(&text).ok_or_else(|| bad("not a rate such as 2.5".into()))?),
            Kind::Time => Literal::Number(
                (self.parse_time)(&text)
                    .ok_or_else(|| bad("not an RFC 3339 time such as 2026-12-01T15:00:00Z".into()))?,
            ),
        })
    }
}

/// `2`, `-0.25`: thousandths, rounded.
fn rate(text: &str) -> Option<i64> {
    let n: f64 = text.parse().ok()?;
    let thousandths = (n * 1000.0).round();
    (n.is_finite() && thousandths.abs() < i64::MAX as f64 / 2.0).then_some(thousandths as i64)
}

/// `1048576`, `10KB`, `1.5MB` (powers of 1024) in bytes.
fn size(text: &str) -> Option<i64> {
    let upper = text.to_ascii_uppercase();
    let (number, unit) = match upper.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => upper.split_at(i),
        None => (upper.as_str(), "B"),
    };
    let shift = match unit {
        "B" => 0,
        "KB" => 10,
        "MB" => 20,
        "GB" => 30,
        "TB" => 40,
        _ => return None,
    };
    // A whole number is exact, however large; a fraction (`1.5MB`) goes through a float.
    if let Ok(n) = number.parse::<i64>() {
        return (n >= 0).then(|| n.checked_mul(1 << shift)).flatten();
    }
    let n: f64 = number.parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    let bytes = n * (1u64 << shift) as f64;
    (bytes < 9.0e18).then_some(bytes as i64)
}

/// `hh:mm:ss`, `d.hh:mm:ss`, or a number with `ms`, `s`, `m`, `h` or `d`, in milliseconds.
fn duration(text: &str) -> Option<i64> {
    if text.contains(':') {
        let (days, clock) = match text.split_once('.') {
            Some((d, rest)) if !d.contains(':') => (d.parse::<i64>().ok()?, rest),
            _ => (0, text),
        };
        let parts: Vec<i64> = clock.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
        let [h, m, s] = parts[..] else { return None };
        if m > 59 || s > 59 || h < 0 || m < 0 || s < 0 || days < 0 {
            return None;
        }
        return Some((((days * 24 + h) * 60 + m) * 60 + s) * 1000);
    }
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().ok().filter(|n| *n >= 0)?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters, compared without regard to
/// case: the `-like` of filters, and the wildcard of other searches (the tracking log's addresses).
pub fn like(pattern: &str, text: &str) -> bool {
    // Mail addresses and names are ASCII nearly always: compared byte by byte, without allocating (a filter
    // over a million messages spends its time here).
    if pattern.is_ascii() && text.is_ascii() {
        return wildcard(pattern.as_bytes(), text.as_bytes(), b'*', u8::eq_ignore_ascii_case);
    }
    let p: Vec<char> = pattern.chars().flat_map(char::to_lowercase).collect();
    let t: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
    wildcard(&p, &t, '*', |a, b| a == b)
}

/// Whether `t` matches `p`, where `star` in `p` stands for any run and `same` compares the rest.
fn wildcard<T: Copy + PartialEq>(p: &[T], t: &[T], star: T, same: impl Fn(&T, &T) -> bool) -> bool {
    // Greedy matching with one backtrack point: linear in practice, never exponential.
    let (mut pi, mut ti, mut backtrack, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == star {
            backtrack = Some(pi);
            pi += 1;
            mark = ti;
        } else if pi < p.len() && same(&p[pi], &t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some(s) = backtrack {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == star)
}

fn eq_text(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() { a.eq_ignore_ascii_case(b) } else { a.to_lowercase() == b.to_lowercase() }
}

impl Filter {
    /// Whether an object matches; `get` gives the value of the property at an index of the slice the
    /// filter was parsed with.
    pub fn matches<'a>(&self, get: &impl Fn(usize) -> Value<'a>) -> bool {
        match self {
            Filter::Not(f) => !f.matches(get),
            Filter::And(a, b) => a.matches(get) && b.matches(get),
            Filter::Or(a, b) => a.matches(get) || b.matches(get),
            Filter::Compare { property, op, value } => compare(&get(*property), *op, value),
        }
    }

    /// The filter written back in the language: parsing it gives the same filter.
    pub fn render(&self, properties: &[Property], render_time: fn(i64) -> String) -> String {
        let mut out = String::new();
        self.write(&mut out, properties, render_time);
        out
    }

    fn write(&self, out: &mut String, properties: &[Property], render_time: fn(i64) -> String) {
        use fmt::Write;
        match self {
            Filter::Not(f) => {
                out.push_str("-not (");
                f.write(out, properties, render_time);
                out.push(')');
            }
            Filter::And(a, b) | Filter::Or(a, b) => {
                out.push('(');
                a.write(out, properties, render_time);
                out.push_str(if matches!(self, Filter::And(..)) { " -and " } else { " -or " });
                b.write(out, properties, render_time);
                out.push(')');
            }
            Filter::Compare { property, op, value } => {
                let p = &properties[*property];
                let _ = write!(out, "{} -{} ", p.name, op.name());
                match (value, p.kind) {
                    (Literal::Number(n), Kind::Time) => {
                        let _ = write!(out, "'{}'", render_time(*n));
                    }
                    (Literal::Number(n), Kind::Duration) => {
                        let _ = write!(out, "{n}ms");
                    }
                    (Literal::Number(n), Kind::Rate) => {
                        let sign = if *n < 0 { "-" } else { "" };
                        let _ = write!(out, "{sign}{}.{:03}", n.unsigned_abs() / 1000, n.unsigned_abs() % 1000);
                    }
                    (Literal::Number(n), _) => {
                        let _ = write!(out, "{n}");
                    }
                    (Literal::Text(t), _) => {
                        let _ = write!(out, "'{}'", t.replace('\'', "''"));
                    }
                }
            }
        }
    }
}

fn compare(actual: &Value<'_>, op: Op, value: &Literal) -> bool {
    let negated = matches!(op, Op::Ne | Op::NotLike | Op::NotContains);
    let holds = match (actual, value) {
        (Value::Missing, _) => false,
        (Value::Number(a), Literal::Number(b)) => match op {
            Op::Eq | Op::Ne => a == b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Lt => a < b,
            Op::Le => a <= b,
            _ => false,
        },
        (Value::Text(a), Literal::Text(b)) => match op {
            Op::Eq | Op::Ne => eq_text(a, b),
            Op::Like | Op::NotLike => like(b, a),
            Op::Contains | Op::NotContains => a.to_lowercase().contains(&b.to_lowercase()),
            Op::Gt => a.to_lowercase() > b.to_lowercase(),
            Op::Ge => a.to_lowercase() >= b.to_lowercase(),
            Op::Lt => a.to_lowercase() < b.to_lowercase(),
            Op::Le => a.to_lowercase() <= b.to_lowercase(),
        },
        (Value::List(items), Literal::Text(b)) => match op {
            Op::Like | Op::NotLike => items.iter().any(|a| like(b, a)),
            _ => items.iter().any(|a| eq_text(a, b)),
        },
        _ => false,
    };
    holds != negated
}

#[cfg(test)]
mod tests;
