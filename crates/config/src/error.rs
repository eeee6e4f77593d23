//! Errors of loading a configuration.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a configuration could not be loaded. Every message names the file and line, or the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or does not fit the schema (unknown key, wrong type).
    #[error("{}line {line}, column {column}: {}{message}", FileLabel(path.as_deref()), KeyLabel(key.as_deref()))]
    Parse {
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column (in characters) of the offending text.
        column: usize,
        /// The dotted key on that line, e.g. `receive_connectors[1].max_errors`, when the line is a plain
        /// `key = value` (best effort, for the message).
        key: Option<String>,
        /// What is wrong, as the TOML parser says it (an unknown key is named in it).
        message: String,
    },
    /// A value is well-formed TOML but not acceptable, or entries contradict each other.
    #[error("{key}: {message}")]
    Invalid {
        /// The dotted key, with array indices, e.g. `receive_connectors[0].listen`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The working directory, needed to resolve relative paths, is unknown.
    #[error("cannot determine the working directory: {0}")]
    WorkingDirectory(#[source] std::io::Error),
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] for `key`.
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid { key: key.into(), message: message.into() }
    }

    /// A [`ConfigError::Parse`] from a TOML error, with the span turned into a line and column of `text`.
    pub(crate) fn from_toml(error: &toml::de::Error, text: &str, path: Option<&Path>) -> Self {
        let offset = error.span().map_or(0, |span| span.start).min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        let column = before[line_start..].chars().count() + 1;
        ConfigError::Parse {
            path: path.map(Path::to_path_buf),
            line,
            column,
            key: key_at(text, line_start),
            message: error.message().trim_end().to_owned(),
        }
    }
}

/// The dotted key set on the line starting at `line_start`, with the table it is in: `server.name`, or
/// `receive_connectors[1].max_errors` inside the second `[[receive_connectors]]`. `None` when the line is not
/// a simple `key = value` line (a table header, or a continuation of a multi-line value).
fn key_at(text: &str, line_start: usize) -> Option<String> {
    let line = text[line_start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = bare_key(key)?;
    let mut table: Option<String> = None;
    let mut array_count = 0usize;
    for previous in text[..line_start].lines().rev() {
        let Some(header) = header(previous) else { continue };
        match &table {
            None => {
                if !header.array {
                    return Some(format!("{}.{key}", header.name));
                }
                table = Some(header.name);
                array_count = 1;
            }
            Some(name) if header.array && header.name == *name => array_count += 1,
            Some(_) => {}
        }
    }
    Some(match table {
        Some(name) => format!("{name}[{}].{key}", array_count - 1),
        None => key,
    })
}

/// A `[table]` or `[[array]]` header line.
struct Header {
    name: String,
    array: bool,
}

fn header(line: &str) -> Option<Header> {
    let line = line.split('#').next().unwrap_or(line).trim();
    let (inner, array) = match line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
        Some(inner) => (inner, true),
        None => (line.strip_prefix('[')?.strip_suffix(']')?, false),
    };
    Some(Header { name: bare_key(inner)?, array })
}

/// A dotted key of bare or quoted parts, without blanks or quotes; `None` for anything more unusual.
fn bare_key(text: &str) -> Option<String> {
    let parts: Option<Vec<&str>> = text
        .split('.')
        .map(|part| {
            let part = part.trim();
            let part = part.strip_prefix('"').and_then(|p| p.strip_suffix('"')).unwrap_or(part);
            let bare = !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            bare.then_some(part)
        })
        .collect();
    Some(parts?.join("."))
}

/// Prints `key: ` before a parse message, or nothing.
struct KeyLabel<'a>(Option<&'a str>);

impl fmt::Display for KeyLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(key) => write!(f, "{key}: "),
            None => Ok(()),
        }
    }
}

/// Prints `path: ` before a parse position, or nothing for text that did not come from a file.
struct FileLabel<'a>(Option<&'a Path>);

impl fmt::Display for FileLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, "{}: ", path.display()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::key_at;

    #[test]
    fn keys_are_named_with_their_table() {
        let text = "top = 1\n[server]\nname = \"x\" # c\n[[rc]]\na = 1\n[[rc]]\n\n  b.c = 2\n[rc.tls]\ncert = 1\n\
                    [[other]]\n[[rc]]\n\"d\" = 3\nlist = [\n  1,\n]\n";
        let cases: &[(usize, Option<&str>)] = &[
            (1, Some("top")),
            (2, None),
            (3, Some("server.name")),
            (5, Some("rc[0].a")),
            (8, Some("rc[1].b.c")),
            (10, Some("rc.tls.cert")),
            (13, Some("rc[2].d")),
            (15, None),
        ];
        for (line, key) in cases {
            let start: usize = text.split_inclusive('\n').take(line - 1).map(str::len).sum();
            assert_eq!(key_at(text, start).as_deref(), *key, "line {line}");
        }
    }
}
