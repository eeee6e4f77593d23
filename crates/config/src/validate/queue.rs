//! `[dns]`, `[queue_database]`, `[transport]` and `[back_pressure]`.

use std::fmt::Display;

use super::Table;
use crate::error::ConfigError;
use crate::net::{DNS_PORT, parse_socket_addr};
use crate::paths::PathBase;
use crate::raw::{RawBackPressure, RawDns, RawQueueDatabase, RawTransport};
use crate::types::{BackPressureConfig, DnsConfig, QueueDatabaseConfig, TransportConfig};
use crate::units::TimeOfDay;

pub(super) fn dns(raw: RawDns) -> Result<DnsConfig, ConfigError> {
    let table = Table::new("dns");
    let servers = raw
        .servers
        .unwrap_or_default()
        .iter()
        .map(|text| parse_socket_addr(text, DNS_PORT))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| table.err("servers", why))?;
    Ok(DnsConfig { servers })
}

pub(super) fn queue_database(raw: RawQueueDatabase, paths: &PathBase) -> Result<QueueDatabaseConfig, ConfigError> {
    let t = Table::new("queue_database");
    let path = t.path("path", raw.path, "{data_dir}/queue", paths)?;
    let log_path = match raw.log_path {
        Some(log_path) => paths.resolve(&log_path).map_err(|why| t.err("log_path", why))?,
        None => path.clone(),
    };
    let schedule = raw.online_defrag_schedule.as_deref().unwrap_or("01:00:00");
    let online_defrag_schedule = TimeOfDay::parse(schedule).map_err(|why| t.err("online_defrag_schedule", why))?;
    Ok(QueueDatabaseConfig {
        path,
        log_path,
        batch_size: t.at_least_one("batch_size", raw.batch_size, 40)?,
        batch_timeout: t.duration("batch_timeout", raw.batch_timeout, "100ms")?,
        logging_buffer_size: t.size("logging_buffer_size", raw.logging_buffer_size, "5MB")?,
        logging_file_size: t.nonzero_size("logging_file_size", raw.logging_file_size, "5MB")?,
        generation_interval: t.nonzero_duration("generation_interval", raw.generation_interval, "1h")?,
        checkpoint_interval: t.nonzero_duration("checkpoint_interval", raw.checkpoint_interval, "30s")?,
        max_background_cleanup_tasks: t.at_least_one(
            "max_background_cleanup_tasks",
            raw.max_background_cleanup_tasks,
            32,
        )?,
        online_defrag_enabled: raw.online_defrag_enabled.unwrap_or(true),
        online_defrag_schedule,
        online_defrag_time_to_run: t.duration("online_defrag_time_to_run", raw.online_defrag_time_to_run, "3h")?,
    })
}

pub(super) fn transport(raw: RawTransport) -> Result<TransportConfig, ConfigError> {
    let t = Table::new("transport");
    Ok(TransportConfig {
        queue_glitch_retry_count: raw.queue_glitch_retry_count.unwrap_or(4),
        queue_glitch_retry_interval: t.duration(
            "queue_glitch_retry_interval",
            raw.queue_glitch_retry_interval,
            "1m",
        )?,
        transient_failure_retry_count: raw.transient_failure_retry_count.unwrap_or(6),
        transient_failure_retry_interval: t.nonzero_duration(
            "transient_failure_retry_interval",
            raw.transient_failure_retry_interval,
            "5m",
        )?,
        outbound_connection_failure_retry_interval: t.nonzero_duration(
            "outbound_connection_failure_retry_interval",
            raw.outbound_connection_failure_retry_interval,
            "10m",
        )?,
        message_retry_interval: t.nonzero_duration("message_retry_interval", raw.message_retry_interval, "15m")?,
        message_expiration_timeout: t.nonzero_duration(
            "message_expiration_timeout",
            raw.message_expiration_timeout,
            "2d",
        )?,
        delay_notification_timeout: t.duration("delay_notification_timeout", raw.delay_notification_timeout, "4h")?,
        queue_max_idle_time: t.duration("queue_max_idle_time", raw.queue_max_idle_time, "3m")?,
        max_idle_time_before_resubmit: t.nonzero_duration(
            "max_idle_time_before_resubmit",
            raw.max_idle_time_before_resubmit,
            "12h",
        )?,
        max_outbound_connections: t.at_least_one("max_outbound_connections", raw.max_outbound_connections, 1000)?,
        max_per_domain_outbound_connections: t.at_least_one(
            "max_per_domain_outbound_connections",
            raw.max_per_domain_outbound_connections,
            40,
        )?,
        max_per_domain_messages_per_minute: raw.max_per_domain_messages_per_minute.unwrap_or(0),
        poison_threshold: t.in_range("poison_threshold", raw.poison_threshold, 2, 1, 10)?,
        safety_net_hold_time: t.duration("safety_net_hold_time", raw.safety_net_hold_time, "2d")?,
        digest_threshold: raw.digest_threshold.unwrap_or(10),
    })
}

pub(super) fn back_pressure(raw: RawBackPressure) -> Result<BackPressureConfig, ConfigError> {
    let t = Table::new("back_pressure");
    let config = BackPressureConfig {
        check_interval: t.nonzero_duration("check_interval", raw.check_interval, "2s")?,
        disk_free_medium: t.size("disk_free_medium", raw.disk_free_medium, "2GB")?,
        disk_free_high: t.size("disk_free_high", raw.disk_free_high, "500MB")?,
        disk_free_normal: t.size("disk_free_normal", raw.disk_free_normal, "3GB")?,
        memory_medium_percent: t.in_range("memory_medium_percent", raw.memory_medium_percent, 73, 1, 100)?,
        memory_high_percent: t.in_range("memory_high_percent", raw.memory_high_percent, 75, 1, 100)?,
        memory_normal_percent: t.in_range("memory_normal_percent", raw.memory_normal_percent, 71, 1, 100)?,
        submission_queue_medium: raw.submission_queue_medium.unwrap_or(4000),
        submission_queue_high: raw.submission_queue_high.unwrap_or(10000),
        submission_queue_normal: raw.submission_queue_normal.unwrap_or(2000),
    };

    // Free disk space falls as pressure rises: Normal is left below `normal`, Medium starts below
    // `medium`, High below `high`. A zero disables that threshold and is left out of the comparison.
    let disk = [
        ("disk_free_normal", config.disk_free_normal),
        ("disk_free_medium", config.disk_free_medium),
        ("disk_free_high", config.disk_free_high),
    ];
    let enabled: Vec<_> = disk.into_iter().filter(|(_, bytes)| *bytes != 0).collect();
    for pair in enabled.windows(2) {
        if pair[0].1 < pair[1].1 {
            return Err(order_error(&t, pair[0], pair[1], "at least", crate::units::render_size));
        }
    }
    // Memory use and queue length rise with pressure: normal <= medium <= high.
    let memory = [
        ("memory_normal_percent", config.memory_normal_percent),
        ("memory_medium_percent", config.memory_medium_percent),
        ("memory_high_percent", config.memory_high_percent),
    ];
    for pair in memory.windows(2) {
        if pair[0].1 > pair[1].1 {
            return Err(order_error(&t, pair[0], pair[1], "at most", |p| format!("{p}%")));
        }
    }
    let queue = [
        ("submission_queue_normal", config.submission_queue_normal),
        ("submission_queue_medium", config.submission_queue_medium),
        ("submission_queue_high", config.submission_queue_high),
    ];
    for pair in queue.windows(2) {
        if pair[0].1 > pair[1].1 {
            return Err(order_error(&t, pair[0], pair[1], "at most", |n| n.to_string()));
        }
    }
    Ok(config)
}

fn order_error<T: Copy + Display>(
    table: &Table,
    (key, value): (&str, T),
    (other_key, other): (&str, T),
    relation: &str,
    show: impl Fn(T) -> String,
) -> ConfigError {
    table.err(key, format!("{} must be {relation} {other_key} ({})", show(value), show(other)))
}
