//! Path resolution: `{data_dir}` expansion and relative paths.
//!
//! A relative path is relative to the directory of the configuration file (to the working directory for the
//! built-in defaults), so that a file means the same thing whichever directory the server is started from.
//! `data_dir` is resolved first; every other path may start with, or contain, `{data_dir}`. Results are
//! absolute and lexically tidied (`a/./b` becomes `a/b`; `..` is kept, since symbolic links give it meaning).

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// The placeholder every path may use.
pub(crate) const DATA_DIR: &str = "{data_dir}";

/// Directories that relative paths and `{data_dir}` are resolved against.
#[derive(Debug, Clone)]
pub(crate) struct PathBase {
    /// Absolute: the configuration file's directory, or the working directory.
    pub base: PathBuf,
    /// The resolved `[server] data_dir`.
    pub data_dir: PathBuf,
}

/// Resolves `[server] data_dir`, which cannot refer to itself or to any other placeholder.
pub(crate) fn resolve_data_dir(text: &str, base: &Path) -> Result<PathBuf, String> {
    check_placeholders(text, &[])?;
    if text.is_empty() {
        return Err("the path is empty".to_owned());
    }
    Ok(tidy(&base.join(text)))
}

impl PathBase {
    /// Resolves a path that may contain `{data_dir}`.
    pub(crate) fn resolve(&self, text: &str) -> Result<PathBuf, String> {
        check_placeholders(text, &[DATA_DIR])?;
        if text.is_empty() {
            return Err("the path is empty".to_owned());
        }
        Ok(tidy(&self.base.join(self.expand(text))))
    }

    /// Resolves a path template: `{data_dir}` is expanded, the placeholders in `kept` stay as they are.
    pub(crate) fn resolve_template(&self, text: &str, kept: &[&str]) -> Result<String, String> {
        let mut allowed = vec![DATA_DIR];
        allowed.extend_from_slice(kept);
        check_placeholders(text, &allowed)?;
        if text.is_empty() {
            return Err("the path is empty".to_owned());
        }
        tidy(&self.base.join(self.expand(text)))
            .into_os_string()
            .into_string()
            .map_err(|path| format!("the resolved path {} is not valid UTF-8", PathBuf::from(path).display()))
    }

    /// Replaces every `{data_dir}` with the data directory, byte for byte (the directory need not be UTF-8).
    fn expand(&self, text: &str) -> PathBuf {
        let mut expanded = OsString::new();
        let mut pieces = text.split(DATA_DIR);
        if let Some(first) = pieces.next() {
            expanded.push(first);
        }
        for piece in pieces {
            expanded.push(self.data_dir.as_os_str());
            expanded.push(piece);
        }
        PathBuf::from(expanded)
    }
}

/// Refuses `{name}` placeholders other than `allowed`, so that a typo such as `{datadir}` is not taken as a
/// directory name.
fn check_placeholders(text: &str, allowed: &[&str]) -> Result<(), String> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open..];
        match after.find('}') {
            Some(close) => {
                let placeholder = &after[..=close];
                let is_word = placeholder[1..close].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if is_word && !allowed.contains(&placeholder) {
                    let known = if allowed.is_empty() {
                        "no placeholders are allowed here".to_owned()
                    } else {
                        format!("allowed here: {}", allowed.join(", "))
                    };
                    return Err(format!("unknown placeholder {placeholder} in {text:?} ({known})"));
                }
                rest = &after[close + 1..];
            }
            None => break,
        }
    }
    Ok(())
}

/// Drops `.` components and redundant separators.
fn tidy(path: &Path) -> PathBuf {
    path.components().filter(|component| *component != Component::CurDir).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> PathBase {
        PathBase { base: PathBuf::from("/etc/sluice"), data_dir: PathBuf::from("/var/lib/sluice") }
    }

    #[test]
    fn data_dir_resolves_against_the_base() {
        let base = Path::new("/etc/sluice");
        let cases: &[(&str, &str)] = &[
            ("./sluice-data", "/etc/sluice/sluice-data"),
            ("data", "/etc/sluice/data"),
            ("/var/lib/sluice/", "/var/lib/sluice"),
            ("../data", "/etc/sluice/../data"),
        ];
        for (text, expected) in cases {
            assert_eq!(resolve_data_dir(text, base), Ok(PathBuf::from(expected)), "{text}");
        }
        assert!(resolve_data_dir("{data_dir}/x", base).is_err());
        assert!(resolve_data_dir("", base).is_err());
    }

    #[test]
    fn paths_expand_data_dir() {
        let cases: &[(&str, &str)] = &[
            ("{data_dir}/queue", "/var/lib/sluice/queue"),
            ("queue", "/etc/sluice/queue"),
            ("/srv/queue", "/srv/queue"),
            ("./q/./log", "/etc/sluice/q/log"),
        ];
        for (text, expected) in cases {
            assert_eq!(base().resolve(text), Ok(PathBuf::from(expected)), "{text}");
        }
        let error = base().resolve("{datadir}/queue").expect_err("typo");
        assert!(error.contains("{datadir}"), "{error}");
    }

    #[test]
    fn templates_keep_their_placeholders() {
        let kept = ["{domain}", "{local}"];
        assert_eq!(
            base().resolve_template("{data_dir}/mail/{domain}/{local}", &kept).as_deref(),
            Ok("/var/lib/sluice/mail/{domain}/{local}")
        );
        assert_eq!(
            base().resolve_template("mail/{domain}/{local}", &kept).as_deref(),
            Ok("/etc/sluice/mail/{domain}/{local}")
        );
        assert!(base().resolve_template("{data_dir}/{user}", &kept).is_err());
    }
}
