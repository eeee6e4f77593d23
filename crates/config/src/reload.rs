//! Reloading (SIGHUP, `POST /api/v1/config/reload`): which changes need a restart, and the configuration a
//! running server switches to.
//!
//! Keys that need a restart (listen addresses, `data_dir`, `[queue_database]` paths, `debug.fault_injection`,
//! which the transport reads once at start) are reported
//! and keep their old value; everything else takes effect.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::types::{Config, ReceiveConnector};

/// The keys [`Config::restart_required_changes`] can report.
pub const RESTART_KEYS: &[&str] = &[
    "server.data_dir",
    "receive_connectors.listen",
    "admin.listen",
    "queue_database.path",
    "queue_database.log_path",
    "debug.fault_injection",
];

fn listen_set(connectors: &[ReceiveConnector]) -> BTreeSet<SocketAddr> {
    connectors.iter().map(|connector| connector.listen).collect()
}

impl Config {
    /// The keys whose value differs in `new` but only takes effect after a restart, from [`RESTART_KEYS`].
    /// `receive_connectors.listen` is reported when the set of listen addresses changes (a connector keeping
    /// its address under new settings is not a restart change).
    pub fn restart_required_changes(&self, new: &Config) -> Vec<String> {
        let changed = [
            self.server.data_dir != new.server.data_dir,
            listen_set(&self.receive_connectors) != listen_set(&new.receive_connectors),
            self.admin.listen != new.admin.listen,
            self.queue_database.path != new.queue_database.path,
            self.queue_database.log_path != new.queue_database.log_path,
            self.debug.fault_injection != new.debug.fault_injection,
        ];
        RESTART_KEYS.iter().zip(changed).filter(|(_, changed)| *changed).map(|(key, _)| (*key).to_owned()).collect()
    }

    /// This (newly loaded) configuration with the restart-only values of the running one, `old`, kept: what a
    /// server applies on reload.
    ///
    /// - `server.data_dir`, the `[queue_database]` paths and `debug.fault_injection` are taken from `old`. (Other paths that were
    ///   written with `{data_dir}`, such as a Maildir template, keep the value the new file gives them.)
    /// - Receive connectors: the listeners stay those bound at start. Each old listener takes the settings of
    ///   the new connector with the same `listen` address, or keeps its old settings when the new file has
    ///   none there; new addresses wait for a restart. Should that mix give two connectors the same name,
    ///   the old connectors are kept unchanged.
    /// - `admin.listen` is taken from `old`; if that address is not loopback and the new `[admin]` lacks a
    ///   token or TLS, the whole old `[admin]` is kept, so that an exposed API is never left unprotected.
    pub fn with_restart_keys_from(mut self, old: &Config) -> Config {
        self.server.data_dir = old.server.data_dir.clone();
        self.queue_database.path = old.queue_database.path.clone();
        self.queue_database.log_path = old.queue_database.log_path.clone();
        self.debug.fault_injection = old.debug.fault_injection;
        self.receive_connectors = merge_listeners(&old.receive_connectors, &self.receive_connectors);
        if self.admin.listen != old.admin.listen {
            self.admin.listen = old.admin.listen;
            if !self.admin.is_loopback() && (self.admin.token.is_none() || self.admin.tls.is_none()) {
                self.admin = old.admin.clone();
            }
        }
        self
    }
}

fn merge_listeners(old: &[ReceiveConnector], new: &[ReceiveConnector]) -> Vec<ReceiveConnector> {
    let merged: Vec<ReceiveConnector> = old
        .iter()
        .map(|old_connector| {
            new.iter()
                .find(|new_connector| new_connector.listen == old_connector.listen)
                .unwrap_or(old_connector)
                .clone()
        })
        .collect();
    let names: BTreeSet<String> = merged.iter().map(|c| c.name.to_lowercase()).collect();
    if names.len() == merged.len() { merged } else { old.to_vec() }
}
