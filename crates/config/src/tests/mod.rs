//! Tests of loading whole configurations: defaults, files, errors, rendering and reloading.

mod checks;
mod defaults;
mod files;
mod reload;

use std::path::{Path, PathBuf};

use crate::{Config, ConfigError, Loaded};

/// The published example configuration, which writes out every key at its default.
const SPEC_EXAMPLE: &str = include_str!("../../tests/fixtures/spec-07-example.toml");

/// Every key of the schema, most set to a value other than the default.
const EVERY_KEY: &str = include_str!("../../tests/fixtures/every-key.toml");

/// The base directory used for text that does not come from a file.
const BASE: &str = "/etc/sluice";

fn load(text: &str) -> Loaded {
    match Config::from_toml(text, Path::new(BASE)) {
        Ok(loaded) => loaded,
        Err(error) => panic!("configuration refused: {error}\n{text}"),
    }
}

fn config(text: &str) -> Config {
    load(text).config
}

fn error(text: &str) -> ConfigError {
    match Config::from_toml(text, Path::new(BASE)) {
        Ok(_) => panic!("configuration accepted but should not be:\n{text}"),
        Err(error) => error,
    }
}

/// A directory under the system temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sluice-config-{}-{name}", std::process::id()));
        // A leftover from an earlier run with the same process id would only hold stale files.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temporary directory");
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temporary file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a file left in the temporary directory is harmless.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
