//! Keys that are part of the schema but whose feature is not built yet.
//!
//! Such keys are accepted, so files keep working across versions, and logged as a warning at start
//! ("not yet in effect"). The loader reports the ones a file actually sets; the caller logs them.

/// Dotted key paths (array tables without indices) that are accepted but not yet in effect. `table.*` stands
/// for every key of a table. Remove an entry when its feature lands.
pub const NOT_YET_IN_EFFECT: &[&str] =
    &["server.user", "queue_database.logging_buffer_size", "queue_database.max_background_cleanup_tasks"];

/// Every `table.key` path set in `document`, sorted and without duplicates; entries of array tables are
/// reported once, without their index. Only the two levels of the schema are walked: the contents of
/// inline values such as `aliases = { ... }` are data, not keys.
pub(crate) fn present_keys(document: &toml::Table) -> Vec<String> {
    let mut keys = Vec::new();
    for (table_name, value) in document {
        let mut add_table = |table: &toml::Table| {
            keys.extend(table.keys().map(|key| format!("{table_name}.{key}")));
        };
        match value {
            toml::Value::Table(table) => add_table(table),
            toml::Value::Array(entries) => {
                for entry in entries {
                    if let toml::Value::Table(table) = entry {
                        add_table(table);
                    }
                }
            }
            _ => keys.push(table_name.clone()),
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Whether `key` is listed in [`NOT_YET_IN_EFFECT`], directly or through a `table.*` entry.
pub fn is_not_yet_in_effect(key: &str) -> bool {
    NOT_YET_IN_EFFECT.iter().any(|entry| match entry.strip_suffix('*') {
        Some(table_prefix) => key.starts_with(table_prefix),
        None => *entry == key,
    })
}

/// The keys set in `document` that are not yet in effect.
pub(crate) fn not_yet_in_effect(document: &toml::Table) -> Vec<String> {
    present_keys(document).into_iter().filter(|key| is_not_yet_in_effect(key)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> toml::Table {
        toml::from_str(text).expect("valid TOML")
    }

    #[test]
    fn keys_are_collected_without_indices() {
        let document = parse(
            r#"
            [server]
            name = "mx1"
            [[receive_connectors]]
            name = "a"
            tls = { cert = "c", key = "k" }
            [[receive_connectors]]
            name = "b"
            max_errors = 3
            [[accepted_domains]]
            domain = "example.test"
            aliases = { postmaster = ["root@example.test"] }
            [antispam]
            "#,
        );
        assert_eq!(
            present_keys(&document),
            [
                "accepted_domains.aliases",
                "accepted_domains.domain",
                "receive_connectors.max_errors",
                "receive_connectors.name",
                "receive_connectors.tls",
                "server.name",
            ]
        );
    }

    #[test]
    fn listed_keys_and_wildcards_match() {
        let cases: &[(&str, bool)] = &[
            ("receive_connectors.tls", false),
            ("send_connectors.tls", false),
            ("send_connectors.auth", false),
            ("receive_connectors.listen", false),
            ("antispam.engine", false),
            ("antispam.address", false),
            ("antispamx.engine", false),
            ("tracking.max_age", false),
            ("transport.transient_failure_retry_interval", false),
            ("transport.max_per_domain_outbound_connections", false),
            ("transport.max_per_domain_messages_per_minute", false),
            ("transport.queue_glitch_retry_count", false),
            ("transport.message_expiration_timeout", false),
            ("transport.max_outbound_connections", false),
            ("transport.poison_threshold", false),
            ("debug.fault_injection", false),
            ("transport.digest_threshold", false),
            ("queue_database.batch_size", false),
            ("server.user", true),
            ("dns.servers", false),
            ("send_connectors.port", false),
        ];
        for (key, expected) in cases {
            assert_eq!(is_not_yet_in_effect(key), *expected, "{key}");
        }
    }

    #[test]
    fn every_entry_names_a_table_and_key() {
        for entry in NOT_YET_IN_EFFECT {
            let (table, key) = entry.split_once('.').expect(entry);
            assert!(!table.is_empty() && !key.is_empty() && !key.contains('.'), "{entry}");
        }
    }

    #[test]
    fn only_present_listed_keys_are_reported() {
        let document = parse(
            r#"
            [transport]
            poison_threshold = 3
            digest_threshold = 3
            transient_failure_retry_interval = "1m"
            [tracking]
            max_age = "7d"
            [work_queue]
            concurrency = 4
            [server]
            user = "sluice"
            [[send_connectors]]
            name = "x"
            port = 2525
            [dns]
            servers = ["127.0.0.1:5353"]
            "#,
        );
        assert_eq!(not_yet_in_effect(&document), ["server.user"]);
    }
}
