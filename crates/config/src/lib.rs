//! sluice's configuration: one TOML file, read once at start and on reload, validated into a typed
//! [`Config`].
//!
//! The file is deserialised into raw serde structs that mirror the schema key for key and refuse unknown
//! keys (naming the key and line); `validate` then applies defaults, parses units (`30s`, `35MB`), resolves
//! paths (relative to the file's directory, `{data_dir}` expanded), and checks entries against each other.
//! Nothing else in sluice reads the file or knows its defaults.
//!
//! ```
//! # use sluice_config::Config;
//! let text = "[transport]\ndigest_threshold = 3\n[server]\nuser = \"sluice\"\n";
//! let loaded = Config::from_toml(text, std::path::Path::new("/etc/sluice"))?;
//! assert_eq!(loaded.config.transport.digest_threshold, 3);
//! assert_eq!(loaded.not_yet_in_effect, ["server.user"]);
//! # Ok::<(), sluice_config::ConfigError>(())
//! ```

mod address;
mod effect;
mod error;
mod guid;
mod net;
mod paths;
mod raw;
mod reload;
mod render;
mod types;
mod units;
mod validate;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use address::AddressSpace;
pub use effect::{NOT_YET_IN_EFFECT, is_not_yet_in_effect};
pub use error::ConfigError;
pub use net::{HostPort, IpNet};
pub use reload::RESTART_KEYS;
pub use types::*;
pub use units::{TimeOfDay, parse_duration, parse_size, render_duration, render_size};

/// The configuration file used when neither `--config` nor `SLUICE_CONFIG` names one, if it exists.
pub const SYSTEM_CONFIG_PATH: &str = "/etc/sluice/sluice.toml";

/// The environment variable that names the configuration file.
pub const CONFIG_ENV: &str = "SLUICE_CONFIG";

/// A loaded configuration and what the caller should report about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// Keys the file sets whose feature is not built yet (see [`NOT_YET_IN_EFFECT`]); log each as a warning.
    pub not_yet_in_effect: Vec<String>,
    /// Keys the file sets that a reload does not change (see [`RESTART_KEYS`]): a server keeps their running
    /// value until it restarts.
    pub restart_only: Vec<String>,
    /// The file it came from; `None` for built-in defaults and [`Config::from_toml`].
    pub source: Option<PathBuf>,
}

impl Config {
    /// The built-in defaults; relative default paths are resolved against the working directory.
    pub fn builtin() -> Result<Loaded, ConfigError> {
        let base = std::env::current_dir().map_err(ConfigError::WorkingDirectory)?;
        let config = validate::validate(raw::RawConfig::default(), &base)?;
        Ok(Loaded { config, not_yet_in_effect: Vec::new(), restart_only: Vec::new(), source: None })
    }

    /// Reads, parses and validates the file at `path`; relative paths in it are relative to its directory.
    pub fn from_file(path: &Path) -> Result<Loaded, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        let base = path.parent().unwrap_or(Path::new(""));
        let mut loaded = load(&text, base, Some(path))?;
        loaded.source = Some(path.to_path_buf());
        Ok(loaded)
    }

    /// Parses and validates configuration text; relative paths in it are relative to `base_dir` (itself
    /// relative to the working directory when not absolute).
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Loaded, ConfigError> {
        load(text, base_dir, None)
    }

    /// Finds and loads the configuration the way `sluice serve` and `sluice sendmail` do: `explicit`
    /// (`--config`), else the file named by `$SLUICE_CONFIG`, else `/etc/sluice/sluice.toml` when it exists,
    /// else the built-in defaults. A named file that cannot be read is an error, never a silent fallback.
    pub fn discover(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
        discover_in(explicit, std::env::var_os(CONFIG_ENV), Path::new(SYSTEM_CONFIG_PATH))
    }

    /// The effective configuration as TOML, every key explicit (what `sluice check-config` prints). Loading
    /// it gives back an equal `Config`. It includes secrets (`[admin] token`, send connector passwords).
    pub fn to_toml_string(&self) -> String {
        render::render(self)
    }
}

/// [`Config::discover`] with its environment passed in, so tests need not change the process's.
fn discover_in(explicit: Option<&Path>, env: Option<OsString>, system: &Path) -> Result<Loaded, ConfigError> {
    if let Some(path) = explicit {
        tracing::debug!(path = %path.display(), "loading configuration named on the command line");
        return Config::from_file(path);
    }
    if let Some(path) = env.filter(|value| !value.is_empty()) {
        let path = PathBuf::from(path);
        tracing::debug!(path = %path.display(), "loading configuration named by {CONFIG_ENV}");
        return Config::from_file(&path);
    }
    if system.is_file() {
        tracing::debug!(path = %system.display(), "loading the system configuration");
        return Config::from_file(system);
    }
    tracing::debug!("no configuration file; using built-in defaults");
    Config::builtin()
}

fn load(text: &str, base_dir: &Path, path: Option<&Path>) -> Result<Loaded, ConfigError> {
    let base = if base_dir.is_absolute() {
        base_dir.to_path_buf()
    } else {
        std::env::current_dir().map_err(ConfigError::WorkingDirectory)?.join(base_dir)
    };
    // Parsed twice: once into the schema (whose errors carry the span of the offending key), once as a plain
    // table to see which keys the file actually sets.
    let raw: raw::RawConfig = toml::from_str(text).map_err(|error| ConfigError::from_toml(&error, text, path))?;
    let document: toml::Table = toml::from_str(text).map_err(|error| ConfigError::from_toml(&error, text, path))?;
    let config = validate::validate(raw, &base)?;
    Ok(Loaded {
        config,
        not_yet_in_effect: effect::not_yet_in_effect(&document),
        restart_only: reload::restart_only(&document),
        source: None,
    })
}
