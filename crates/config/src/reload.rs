//! Reloading (SIGHUP, `POST /api/v1/config/reload`): which changes need a restart, and the configuration a
//! running server switches to.
//!
//! Keys that need a restart are those a part of the server reads once at start: listen addresses,
//! `data_dir`, `server.name` (queue identities), `server.hostname` (the delivery agent's EHLO; the receive
//! side keeps the running one too, so both sides always name the server alike), `[log]` (the log writer),
//! `[dns]` (the resolver), `transport.safety_net_hold_time` and `alerts.max_repeat_interval` (their keepers
//! are made at start), all of `[queue_database]` (the database and the scheduled defragmentation are set up
//! from it at start), a receive connector's `tls`, `tls_mode` and `max_connections` (its TLS identity and its
//! connection slots are made when it starts listening), `[admin]` (the API's listener, TLS identity, token
//! and accepted hosts are made at start) and `debug.fault_injection`. They are reported by key and keep
//! their old value; everything else takes effect.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::types::{ClusterConfig, Config, ReceiveConnector};

/// The keys [`Config::restart_required_changes`] can report, in the order it reports them.
pub const RESTART_KEYS: &[&str] = &[
    "server.data_dir",
    "server.name",
    "server.hostname",
    "log.level",
    "log.format",
    "dns.servers",
    "transport.safety_net_hold_time",
    "alerts.max_repeat_interval",
    "receive_connectors.listen",
    "receive_connectors.tls",
    "receive_connectors.tls_mode",
    "receive_connectors.max_connections",
    "admin.listen",
    "admin.token",
    "admin.tls",
    "admin.allowed_hosts",
    "queue_database.path",
    "queue_database.log_path",
    "queue_database.batch_size",
    "queue_database.batch_timeout",
    "queue_database.logging_buffer_size",
    "queue_database.logging_file_size",
    "queue_database.generation_interval",
    "queue_database.checkpoint_interval",
    "queue_database.max_background_cleanup_tasks",
    "queue_database.online_defrag_enabled",
    "queue_database.online_defrag_schedule",
    "queue_database.online_defrag_time_to_run",
    "debug.fault_injection",
    // The work queue's engines, actions and alert delivery are set up once, at start.
    "work_queue.concurrency",
    "work_queue.on_engine_failure",
    // The engine with its address (`url`, `address`).
    "antispam.engine",
    "antispam.scl_quarantine",
    "antispam.scl_delete",
    "antispam.rules_dir",
    "antispam.timeout",
    "antivirus.engine",
    "antivirus.virus_action",
    "antivirus.database_dir",
    "antivirus.timeout",
    "quarantine.retention",
    "updater.source",
    "updater.interval",
    "alerts.work_queue_pause_alert_after",
    "alerts.work_queue_stuck_after",
    "alerts.email_to",
    "alerts.smtp_host",
    "alerts.webhook_url",
    // A node joins the cluster, with its name and engines, at start.
    "cluster.node",
    "cluster.redis",
    "cluster.postgres",
    "cluster.admin_url",
    "cluster.heartbeat_interval",
    "cluster.shadow_takeover_after",
    "cluster.reject_on_shadow_failure",
];

/// The keys set in `document` that are in [`RESTART_KEYS`], in its order.
pub(crate) fn restart_only(document: &toml::Table) -> Vec<String> {
    let present = crate::effect::present_keys(document);
    RESTART_KEYS.iter().filter(|key| present.iter().any(|p| p == *key)).map(|key| (*key).to_owned()).collect()
}

fn listen_set(connectors: &[ReceiveConnector]) -> BTreeSet<SocketAddr> {
    connectors.iter().map(|connector| connector.listen).collect()
}

/// Whether a connector listening in both configurations has a different `what` in `new`.
fn connector_changed<T: PartialEq>(
    old: &[ReceiveConnector],
    new: &[ReceiveConnector],
    what: impl Fn(&ReceiveConnector) -> &T,
) -> bool {
    old.iter().any(|o| new.iter().any(|n| n.listen == o.listen && what(n) != what(o)))
}

impl Config {
    /// The keys whose value differs in `new` but only takes effect after a restart, from [`RESTART_KEYS`]
    /// and in its order.
    ///
    /// `receive_connectors.listen` is reported when the set of listen addresses changes (a connector keeping
    /// its address under new settings is not a restart change); `receive_connectors.tls`, `tls_mode` and
    /// `max_connections` when a connector that keeps its address changes them (a connector at a new address
    /// waits for the restart as a whole).
    pub fn restart_required_changes(&self, new: &Config) -> Vec<String> {
        let (old_c, new_c) = (&self.receive_connectors, &new.receive_connectors);
        let (a, b) = (&self.admin, &new.admin);
        let (q, r) = (&self.queue_database, &new.queue_database);
        let changed = [
            self.server.data_dir != new.server.data_dir,
            self.server.name != new.server.name,
            self.server.hostname != new.server.hostname,
            self.log.level != new.log.level,
            self.log.format != new.log.format,
            self.dns != new.dns,
            self.transport.safety_net_hold_time != new.transport.safety_net_hold_time,
            self.alerts.max_repeat_interval != new.alerts.max_repeat_interval,
            listen_set(old_c) != listen_set(new_c),
            connector_changed(old_c, new_c, |c| &c.tls),
            connector_changed(old_c, new_c, |c| &c.tls_mode),
            connector_changed(old_c, new_c, |c| &c.max_connections),
            a.listen != b.listen,
            a.token != b.token,
            a.tls != b.tls,
            a.allowed_hosts != b.allowed_hosts,
            q.path != r.path,
            q.log_path != r.log_path,
            q.batch_size != r.batch_size,
            q.batch_timeout != r.batch_timeout,
            q.logging_buffer_size != r.logging_buffer_size,
            q.logging_file_size != r.logging_file_size,
            q.generation_interval != r.generation_interval,
            q.checkpoint_interval != r.checkpoint_interval,
            q.max_background_cleanup_tasks != r.max_background_cleanup_tasks,
            q.online_defrag_enabled != r.online_defrag_enabled,
            q.online_defrag_schedule != r.online_defrag_schedule,
            q.online_defrag_time_to_run != r.online_defrag_time_to_run,
            self.debug.fault_injection != new.debug.fault_injection,
            self.work_queue.concurrency != new.work_queue.concurrency,
            self.work_queue.on_engine_failure != new.work_queue.on_engine_failure,
            self.antispam.engine != new.antispam.engine,
            self.antispam.scl_quarantine != new.antispam.scl_quarantine,
            self.antispam.scl_delete != new.antispam.scl_delete,
            self.antispam.rules_dir != new.antispam.rules_dir,
            self.antispam.timeout != new.antispam.timeout,
            self.antivirus.engine != new.antivirus.engine,
            self.antivirus.virus_action != new.antivirus.virus_action,
            self.antivirus.database_dir != new.antivirus.database_dir,
            self.antivirus.timeout != new.antivirus.timeout,
            self.quarantine.retention != new.quarantine.retention,
            self.updater.source != new.updater.source,
            self.updater.interval != new.updater.interval,
            self.alerts.work_queue_pause_alert_after != new.alerts.work_queue_pause_alert_after,
            self.alerts.work_queue_stuck_after != new.alerts.work_queue_stuck_after,
            self.alerts.email_to != new.alerts.email_to,
            self.alerts.smtp_host != new.alerts.smtp_host,
            self.alerts.webhook_url != new.alerts.webhook_url,
            cluster_changed(self, new, |c| &c.node),
            cluster_changed(self, new, |c| &c.redis),
            cluster_changed(self, new, |c| &c.postgres),
            cluster_changed(self, new, |c| &c.admin_url),
            cluster_changed(self, new, |c| &c.heartbeat_interval),
            cluster_changed(self, new, |c| &c.shadow_takeover_after),
            cluster_changed(self, new, |c| &c.reject_on_shadow_failure),
        ];
        RESTART_KEYS.iter().zip(changed).filter(|(_, changed)| *changed).map(|(key, _)| (*key).to_owned()).collect()
    }

    /// This (newly loaded) configuration with the restart-only values of the running one, `old`, kept: what a
    /// server applies on reload.
    ///
    /// - `server.data_dir`, `server.name`, `server.hostname`, `[log]`, `[dns]`,
    ///   `transport.safety_net_hold_time`, all of `[alerts]`, `[work_queue]`, `[antispam]`, `[antivirus]`,
    ///   `[quarantine]`, `[updater]` and `[queue_database]`, all of
    ///   `[admin]`, `[cluster]` and `debug.fault_injection` are taken from `old`. (Other paths that were written with `{data_dir}`, such as a Maildir template, keep the
    ///   value the new file gives them.) Keeping `[admin]` whole also means an exposed API is never left
    ///   unprotected by a reload.
    /// - Receive connectors: the listeners stay those bound at start. Each old listener takes the settings of
    ///   the new connector with the same `listen` address, except its `tls`, `tls_mode` and
    ///   `max_connections`, which stay the running ones (a TLS identity is all old or all new, never half);
    ///   it keeps its old settings when the new file has none there; new addresses wait for a restart.
    ///   Should that mix give two connectors the same name, the old connectors are kept unchanged.
    pub fn with_restart_keys_from(mut self, old: &Config) -> Config {
        self.server.data_dir = old.server.data_dir.clone();
        self.server.name = old.server.name.clone();
        self.server.hostname = old.server.hostname.clone();
        self.log = old.log.clone();
        self.dns = old.dns.clone();
        self.transport.safety_net_hold_time = old.transport.safety_net_hold_time;
        self.alerts = old.alerts.clone();
        self.work_queue = old.work_queue;
        self.antispam = old.antispam.clone();
        self.antivirus = old.antivirus.clone();
        self.quarantine = old.quarantine;
        self.updater = old.updater.clone();
        self.queue_database = old.queue_database.clone();
        self.admin = old.admin.clone();
        self.debug.fault_injection = old.debug.fault_injection;
        self.cluster = old.cluster.clone();
        self.receive_connectors = merge_listeners(&old.receive_connectors, &self.receive_connectors);
        self
    }
}

/// Whether `[cluster]`'s `what` differs (or the table came or went).
fn cluster_changed<T: PartialEq>(old: &Config, new: &Config, what: impl Fn(&ClusterConfig) -> &T) -> bool {
    old.cluster.as_ref().map(&what) != new.cluster.as_ref().map(&what)
}

fn merge_listeners(old: &[ReceiveConnector], new: &[ReceiveConnector]) -> Vec<ReceiveConnector> {
    let merged: Vec<ReceiveConnector> = old
        .iter()
        .map(|old_connector| match new.iter().find(|new_connector| new_connector.listen == old_connector.listen) {
            Some(new_connector) => ReceiveConnector {
                tls: old_connector.tls.clone(),
                tls_mode: old_connector.tls_mode,
                max_connections: old_connector.max_connections,
                ..new_connector.clone()
            },
            None => old_connector.clone(),
        })
        .collect();
    let names: BTreeSet<String> = merged.iter().map(|c| c.name.to_lowercase()).collect();
    if names.len() == merged.len() { merged } else { old.to_vec() }
}
