//! The update manifest: `<engine>/manifest.json` in an update source.
//!
//! The updater fetches the manifest first, then each file it lists, and checks every file's
//! size and SHA-256 against it before applying anything. The manifest is also written back, as
//! the client's record of what is applied, by [`Manifest::to_json`].
//!
//! ```json
//! {
//!   "version": "2024.06.01-1",
//!   "files": [ { "name": "main.hdb", "sha256": "…64 hex digits…", "size": 1234 } ]
//! }
//! ```
//!
//! [`Manifest::parse`] rejects anything that could escape the engine's directory or confuse the
//! updater: file names with path separators, NUL or a leading dot, repeated names, and versions
//! with characters outside `[A-Za-z0-9._-]`.

use ring::digest;
use serde::{Deserialize, Serialize};

/// A parsed, validated update manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The update's version: `[A-Za-z0-9._-]+`.
    pub version: String,
    /// The files of the update, at least one.
    pub files: Vec<ManifestFile>,
}

/// One file listed in a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// The file's name in the engine's directory: no path separators, no leading dot.
    pub name: String,
    /// The file's SHA-256, 64 lowercase hex digits.
    pub sha256: String,
    /// The file's size in bytes.
    pub size: u64,
}

impl Manifest {
    /// Parses and validates a manifest. Errors are one-line reasons.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        let mut manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
        check_version(&manifest.version)?;
        if manifest.files.is_empty() {
            return Err("manifest lists no files".to_owned());
        }
        let mut seen = std::collections::HashSet::new();
        for file in &mut manifest.files {
            check_file_name(&file.name)?;
            if !seen.insert(file.name.clone()) {
                return Err(format!("file {:?} is listed twice", file.name));
            }
            file.sha256 = normalize_sha256(&file.name, &file.sha256)?;
        }
        Ok(manifest)
    }

    /// The manifest as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain strings and integers cannot fail; the fallback keeps this total.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl ManifestFile {
    /// Checks downloaded `bytes` against the listed size, then the listed SHA-256.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), String> {
        let got = bytes.len() as u64;
        if got < self.size {
            return Err(format!("truncated: got {got} of {} bytes", self.size));
        }
        if got > self.size {
            return Err(format!("size mismatch: got {got} bytes, expected {}", self.size));
        }
        if !sha256_hex(bytes).eq_ignore_ascii_case(&self.sha256) {
            return Err("checksum mismatch".to_owned());
        }
        Ok(())
    }
}

/// The SHA-256 of `bytes` as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let hash = digest::digest(&digest::SHA256, bytes);
    hash.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn check_version(version: &str) -> Result<(), String> {
    if version.is_empty() {
        return Err("version is empty".to_owned());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !version.chars().all(allowed) {
        return Err(format!("version {version:?} has characters outside [A-Za-z0-9._-]"));
    }
    Ok(())
}

fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a file name is empty".to_owned());
    }
    if name.contains(['/', '\\', '\0']) {
        return Err(format!("file name {name:?} contains a path separator or NUL"));
    }
    if name.starts_with('.') {
        return Err(format!("file name {name:?} starts with a dot"));
    }
    Ok(())
}

fn normalize_sha256(name: &str, sha256: &str) -> Result<String, String> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("file {name:?}: sha256 is not 64 hex digits"));
    }
    Ok(sha256.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn manifest_json(version: &str, files: &str) -> Vec<u8> {
        format!(r#"{{"version": "{version}", "files": [{files}]}}"#).into_bytes()
    }

    fn file_json(name: &str, sha256: &str, size: u64) -> String {
        format!(r#"{{"name": "{name}", "sha256": "{sha256}", "size": {size}}}"#)
    }

    #[test]
    fn sha256_hex_of_hello() {
        assert_eq!(sha256_hex(b"hello"), HELLO_SHA256);
    }

    #[test]
    fn parses_and_lowercases_the_checksum() {
        let json = manifest_json("2024.06.01-1_a", &file_json("main.hdb", &HELLO_SHA256.to_uppercase(), 5));
        let manifest = Manifest::parse(&json).expect("valid manifest");
        assert_eq!(manifest.version, "2024.06.01-1_a");
        assert_eq!(manifest.files[0].sha256, HELLO_SHA256);
        assert_eq!(Manifest::parse(manifest.to_json().as_bytes()), Ok(manifest.clone()));
        assert!(manifest.to_json().contains("\n  \"version\""));
    }

    #[test]
    fn rejects_bad_manifests() {
        let good = file_json("a.cf", HELLO_SHA256, 5);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "not valid JSON"),
            (manifest_json("", &good), "version is empty"),
            (manifest_json("1 2", &good), "characters outside"),
            (manifest_json("1/2", &good), "characters outside"),
            (manifest_json("1", ""), "no files"),
            (manifest_json("1", &file_json("", HELLO_SHA256, 5)), "empty"),
            (manifest_json("1", &file_json("a/b", HELLO_SHA256, 5)), "path separator"),
            (manifest_json("1", &file_json("a\\\\b", HELLO_SHA256, 5)), "path separator"),
            (manifest_json("1", &file_json("a\\u0000b", HELLO_SHA256, 5)), "NUL"),
            (manifest_json("1", &file_json(".hidden", HELLO_SHA256, 5)), "starts with a dot"),
            (manifest_json("1", &file_json("..", HELLO_SHA256, 5)), "starts with a dot"),
            (manifest_json("1", &format!("{good},{good}")), "listed twice"),
            (manifest_json("1", &file_json("a.cf", "abc", 5)), "64 hex digits"),
            (manifest_json("1", &file_json("a.cf", &"g".repeat(64), 5)), "64 hex digits"),
        ];
        for (json, want) in cases {
            let err = Manifest::parse(&json).expect_err(&String::from_utf8_lossy(&json));
            assert!(err.contains(want), "{err:?} should contain {want:?}");
            assert!(!err.contains('\n'), "{err:?} is one line");
        }
    }

    #[test]
    fn verify_checks_size_then_checksum() {
        let file = ManifestFile { name: "a".into(), sha256: HELLO_SHA256.into(), size: 5 };
        assert_eq!(file.verify(b"hello"), Ok(()));
        assert_eq!(file.verify(b"hell"), Err("truncated: got 4 of 5 bytes".to_owned()));
        assert_eq!(file.verify(b"hello!"), Err("size mismatch: got 6 bytes, expected 5".to_owned()));
        assert_eq!(file.verify(b"jello"), Err("checksum mismatch".to_owned()));
    }
}
