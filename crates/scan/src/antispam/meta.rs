//! `meta` rule expressions: boolean and arithmetic over other rules' hit counts.
//!
//! The grammar is Perl's expression subset SpamAssassin allows: rule names (a rule's value is
//! its hit count: 0 or 1, more with `tflags multiple`), decimal numbers, parentheses, unary `!`
//! and `-`, `*` `/`, `+` `-`, `<` `<=` `>` `>=`, `==` `!=`, `&&`, `||`, in Perl's precedence
//! order. A meta rule hits when its expression is not zero. A name no rule defines is 0.

/// A parsed expression; rule names are resolved to indices by the caller.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Expr {
    Number(f64),
    /// A rule, by index once resolved ([`Expr::resolve`]); by name until then.
    Rule(RuleRef),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary(Op, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum RuleRef {
    Name(String),
    Index(usize),
    /// A name no rule defines.
    Undefined,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Mul,
    Div,
    Add,
    Sub,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

impl Op {
    /// Binding strength: higher binds tighter.
    fn precedence(self) -> u8 {
        match self {
            Op::Mul | Op::Div => 6,
            Op::Add | Op::Sub => 5,
            Op::Lt | Op::Le | Op::Gt | Op::Ge => 4,
            Op::Eq | Op::Ne => 3,
            Op::And => 2,
            Op::Or => 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Name(String),
    Op(Op),
    Not,
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let two = bytes.get(i..i + 2).unwrap_or_default();
        let (token, len) = match (b, two) {
            (_, b"&&") => (Token::Op(Op::And), 2),
            (_, b"||") => (Token::Op(Op::Or), 2),
            (_, b"<=") => (Token::Op(Op::Le), 2),
            (_, b">=") => (Token::Op(Op::Ge), 2),
            (_, b"==") => (Token::Op(Op::Eq), 2),
            (_, b"!=") => (Token::Op(Op::Ne), 2),
            (b' ' | b'\t', _) => {
                i += 1;
                continue;
            }
            (b'<', _) => (Token::Op(Op::Lt), 1),
            (b'>', _) => (Token::Op(Op::Gt), 1),
            (b'+', _) => (Token::Op(Op::Add), 1),
            (b'-', _) => (Token::Op(Op::Sub), 1),
            (b'*', _) => (Token::Op(Op::Mul), 1),
            (b'/', _) => (Token::Op(Op::Div), 1),
            (b'!', _) => (Token::Not, 1),
            (b'(', _) => (Token::Open, 1),
            (b')', _) => (Token::Close, 1),
            (b'0'..=b'9' | b'.', _) => {
                let len = bytes[i..].iter().take_while(|c| c.is_ascii_digit() || **c == b'.').count();
                let number = text[i..i + len].parse().map_err(|_| format!("bad number {:?}", &text[i..i + len]))?;
                (Token::Number(number), len)
            }
            (c, _) if c.is_ascii_alphabetic() || c == b'_' => {
                let len = bytes[i..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count();
                (Token::Name(text[i..i + len].to_owned()), len)
            }
            (c, _) => return Err(format!("unexpected {:?} in meta expression", char::from(c))),
        };
        tokens.push(token);
        i += len;
    }
    Ok(tokens)
}

/// Parses a meta expression.
pub(super) fn parse(text: &str) -> Result<Expr, String> {
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, at: 0, depth: 0 };
    let expr = parser.expr(0)?;
    if parser.at != parser.tokens.len() {
        return Err("unexpected text after the meta expression".to_owned());
    }
    Ok(expr)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

/// Deeper nesting than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 200;

impl Parser {
    fn expr(&mut self, min_precedence: u8) -> Result<Expr, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("meta expression nested too deeply".to_owned());
        }
        let mut left = self.unary()?;
        while let Some(Token::Op(op)) = self.tokens.get(self.at) {
            let op = *op;
            if op.precedence() < min_precedence {
                break;
            }
            self.at += 1;
            let right = self.expr(op.precedence() + 1)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("meta expression nested too deeply".to_owned());
        }
        let expr = self.unary_inner();
        self.depth -= 1;
        expr
    }

    fn unary_inner(&mut self) -> Result<Expr, String> {
        let token = self.tokens.get(self.at).cloned().ok_or("meta expression ends too early")?;
        self.at += 1;
        match token {
            Token::Number(n) => Ok(Expr::Number(n)),
            Token::Name(name) => Ok(Expr::Rule(RuleRef::Name(name))),
            Token::Not => Ok(Expr::Not(Box::new(self.unary()?))),
            Token::Op(Op::Sub) => Ok(Expr::Neg(Box::new(self.unary()?))),
            Token::Open => {
                let inner = self.expr(0)?;
                match self.tokens.get(self.at) {
                    Some(Token::Close) => {
                        self.at += 1;
                        Ok(inner)
                    }
                    _ => Err("missing ) in meta expression".to_owned()),
                }
            }
            other => Err(format!("unexpected {other:?} in meta expression")),
        }
    }
}

impl Expr {
    /// Every rule name the expression mentions.
    pub(super) fn names(&self, out: &mut Vec<String>) {
        match self {
            Expr::Rule(RuleRef::Name(name)) => out.push(name.clone()),
            Expr::Number(_) | Expr::Rule(_) => {}
            Expr::Not(e) | Expr::Neg(e) => e.names(out),
            Expr::Binary(_, a, b) => {
                a.names(out);
                b.names(out);
            }
        }
    }

    /// Replaces names by indices (`lookup`), or marks them undefined.
    pub(super) fn resolve(&mut self, lookup: &dyn Fn(&str) -> Option<usize>) {
        match self {
            Expr::Rule(rule) => {
                if let RuleRef::Name(name) = rule {
                    *rule = lookup(name).map_or(RuleRef::Undefined, RuleRef::Index);
                }
            }
            Expr::Number(_) => {}
            Expr::Not(e) | Expr::Neg(e) => e.resolve(lookup),
            Expr::Binary(_, a, b) => {
                a.resolve(lookup);
                b.resolve(lookup);
            }
        }
    }

    /// The rule indices the expression reads.
    pub(super) fn indices(&self, out: &mut Vec<usize>) {
        match self {
            Expr::Rule(RuleRef::Index(i)) => out.push(*i),
            Expr::Number(_) | Expr::Rule(_) => {}
            Expr::Not(e) | Expr::Neg(e) => e.indices(out),
            Expr::Binary(_, a, b) => {
                a.indices(out);
                b.indices(out);
            }
        }
    }

    /// The expression's value, with `values[i]` the hit count of rule `i`.
    pub(super) fn eval(&self, values: &[f64]) -> f64 {
        let truth = |b: bool| if b { 1.0 } else { 0.0 };
        match self {
            Expr::Number(n) => *n,
            Expr::Rule(RuleRef::Index(i)) => values.get(*i).copied().unwrap_or(0.0),
            Expr::Rule(_) => 0.0,
            Expr::Not(e) => truth(e.eval(values) == 0.0),
            Expr::Neg(e) => -e.eval(values),
            Expr::Binary(op, a, b) => {
                let a = a.eval(values);
                // && and || short-circuit and give Perl's 1/0 for the rule's hit.
                match op {
                    Op::And => return truth(a != 0.0 && b.eval(values) != 0.0),
                    Op::Or => return truth(a != 0.0 || b.eval(values) != 0.0),
                    _ => {}
                }
                let b = b.eval(values);
                match op {
                    Op::Mul => a * b,
                    Op::Div if b == 0.0 => 0.0,
                    Op::Div => a / b,
                    Op::Add => a + b,
                    Op::Sub => a - b,
                    Op::Lt => truth(a < b),
                    Op::Le => truth(a <= b),
                    Op::Gt => truth(a > b),
                    Op::Ge => truth(a >= b),
                    Op::Eq => truth(a == b),
                    Op::Ne => truth(a != b),
                    Op::And | Op::Or => unreachable!("handled above"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str, names: &[(&str, f64)]) -> f64 {
        let mut expr = parse(text).unwrap();
        expr.resolve(&|n| names.iter().position(|(name, _)| *name == n));
        let values: Vec<f64> = names.iter().map(|(_, v)| *v).collect();
        expr.eval(&values)
    }

    #[test]
    fn boolean_and_arithmetic() {
        let names = [("A", 1.0), ("B", 0.0), ("C", 1.0), ("M", 3.0)];
        assert_eq!(eval("A && !B", &names), 1.0);
        assert_eq!(eval("A && B || C", &names), 1.0);
        assert_eq!(eval("A && (B || !C)", &names), 0.0);
        assert_eq!(eval("(A + B + C) > 1", &names), 1.0);
        assert_eq!(eval("A + B + C >= 3", &names), 0.0);
        assert_eq!(eval("M > 2 && UNDEFINED_RULE == 0", &names), 1.0);
        assert_eq!(eval("2 * M - 1", &names), 5.0);
        assert_eq!(eval("-1 + A", &names), 0.0);
        assert_eq!(eval("M / 0", &names), 0.0);
    }

    #[test]
    fn broken_expressions_are_errors() {
        for text in ["A &&", "(A", "A B", "A % B", "", "A ) B"] {
            assert!(parse(text).is_err(), "{text:?}");
        }
        let deep = format!("{}A{}", "(".repeat(500), ")".repeat(500));
        assert!(parse(&deep).is_err());
        assert!(parse(&format!("{}A", "!".repeat(100_000))).is_err());
    }
}
