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
    #[error("{}line {line}, column {column}: {message}", FileLabel(path.as_deref()))]
    Parse {
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column (in characters) of the offending text.
        column: usize,
        /// What is wrong, naming the key where there is one.
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
            message: error.message().trim_end().to_owned(),
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
