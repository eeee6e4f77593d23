//! The server's status (ESA's `status detail`, `GET /api/v1/status`) and what the metrics read: the
//! counters, the ids handed out, the gauges of the moment, the rates and the back pressure readings.

use std::sync::Arc;

use sluice_api_types as api;
use sluice_queue_db::time::{now_ms, rfc3339};

use crate::Transport;
use crate::counters::{Columns, Counter, Counters};
use crate::pressure::Resource;

impl Transport {
    /// The counters (receive counts its sessions and refusals here).
    pub fn counters(&self) -> &Arc<Counters> {
        &self.inner.counters
    }

    /// The message tracking log (searched by `GET /api/v1/tracking`).
    pub fn tracking(&self) -> &crate::Tracking {
        &self.inner.tracking
    }

    /// The resource that puts back pressure at its level now (the `452 4.3.1` reply names it).
    pub fn back_pressure_resource(&self) -> Resource {
        self.inner.pressure.levels().cause()
    }

    /// The queue database writer's counters (commits, syncs, latency).
    pub fn db_stats(&self) -> &sluice_queue_db::Stats {
        self.inner.db.stats()
    }

    /// The queue database's generation files and their bytes.
    pub fn generation_files(&self) -> (u64, u64) {
        self.inner.db.generation_files()
    }

    /// Delivery connections open or being opened now.
    pub fn outbound_connections(&self) -> u64 {
        self.inner.connections.in_use() as u64
    }

    /// Bytes the queue database's files take, and bytes free on their file system (0 when unreadable).
    pub fn queue_database_space(&self) -> (u64, u64) {
        (self.inner.db.used_space().unwrap_or(0), self.inner.db.free_space().unwrap_or(0))
    }

    /// `GET /api/v1/status`. Walks the queued messages once, under the queues' lock, for the active
    /// recipients and the oldest message (tens of milliseconds for a million messages).
    pub fn status(&self) -> api::Status {
        let c = &self.inner.counters;
        let (active_recipients, oldest, submission) = {
            let qs = self.inner.lock();
            let mut active = 0u64;
            let mut oldest: Option<(i64, u64)> = None;
            for (mid, m) in qs.messages() {
                active += m.copies.iter().map(|c| c.recipients.len() as u64).sum::<u64>();
                let at = m.envelope.received_at_ms;
                if oldest.is_none_or(|o| (at, *mid) < o) {
                    oldest = Some((at, *mid));
                }
            }
            (active, oldest, qs.submission_len() as u64)
        };
        let now = now_ms();
        let (icid, dcid) = c.current_ids();
        let (used, free) = self.queue_database_space();
        let db = &self.inner.db;
        let [received, delivered, bounced] = c.rates().map(|r| api::Rate {
            one_minute: r.one_minute,
            five_minutes: r.five_minutes,
            fifteen_minutes: r.fifteen_minutes,
        });
        let wq = &self.inner.work_queue;
        let (quarantined, quarantined_bytes) = wq.quarantine_totals();
        api::Status {
            // A pause that outlasted `work_queue_stuck_after` is the system's status.
            system_status: if wq.stuck() { "Work Queue Paused" } else { "Online" }.to_owned(),
            up_since: rfc3339(c.started_ms()),
            last_counter_reset: rfc3339(c.last_reset_ms()),
            oldest_message: oldest.map(|(at, mid)| api::OldestMessage {
                mid,
                date_received: rfc3339(at),
                age_seconds: (now.saturating_sub(at) / 1000).max(0) as u64,
            }),
            counters: status_counters(c),
            current_ids: api::CurrentIds { mid: db.last_mid(), icid, dcid },
            gauges: api::Gauges {
                current_inbound_connections: c.inbound_connections(),
                current_outbound_connections: self.outbound_connections(),
                active_recipients,
                // Waiting in Submission, and taken by the work queue.
                messages_in_work_queue: submission + wq.messages_in_process(),
                kilobytes_used: used / 1024,
                kilobytes_free: free / 1024,
                messages_in_quarantine: quarantined,
                kilobytes_in_quarantine: quarantined_bytes.div_ceil(1024),
            },
            rates: api::Rates { received, delivered, bounced },
            back_pressure: self.back_pressure_status(),
            cluster: None,
        }
    }

    /// The back pressure level and each resource's reading now, with its thresholds.
    pub fn back_pressure_status(&self) -> api::BackPressureStatus {
        let inner = &self.inner;
        let t = inner.pressure.thresholds();
        let levels = inner.pressure.levels();
        let resources = Resource::ALL
            .into_iter()
            .map(|r| {
                let (value, unit, medium, high, normal) = match r {
                    Resource::Disk => (
                        inner.db.free_space().ok(),
                        "bytes_free",
                        t.disk_free_medium,
                        t.disk_free_high,
                        t.disk_free_normal,
                    ),
                    Resource::Memory => (
                        crate::pressure::memory_percent(),
                        "percent_of_physical_memory",
                        t.memory_medium_percent.into(),
                        t.memory_high_percent.into(),
                        t.memory_normal_percent.into(),
                    ),
                    Resource::Submission => (
                        Some(inner.lock().submission_len() as u64),
                        "messages",
                        t.submission_queue_medium,
                        t.submission_queue_high,
                        t.submission_queue_normal,
                    ),
                };
                api::BackPressureResource {
                    resource: r.as_str().to_owned(),
                    level: levels.of(r).as_str().to_owned(),
                    value,
                    unit: unit.to_owned(),
                    medium,
                    high,
                    normal,
                }
            })
            .collect();
        api::BackPressureStatus { level: levels.level().as_str().to_owned(), resources }
    }

    /// Resets the `reset` column of every counter (`POST /api/v1/counters/reset`); returns the time of the
    /// reset, RFC 3339.
    pub fn reset_counters(&self) -> String {
        self.inner.counters.reset();
        let at = rfc3339(self.inner.counters.last_reset_ms());
        tracing::info!(at = %at, "counters reset");
        at
    }
}

fn status_counters(c: &Counters) -> api::StatusCounters {
    let all = c.all();
    let get = |k: Counter| {
        let v = all.iter().find(|(c, _)| *c == k).map(|(_, v)| *v).unwrap_or_default();
        columns(v)
    };
    let completed = [Counter::DeliveredRecipients, Counter::HardBouncedRecipients, Counter::DeletedRecipients]
        .into_iter()
        .map(|k| all.iter().find(|(c, _)| *c == k).map(|(_, v)| *v).unwrap_or_default())
        .fold(Columns::default(), |a, b| Columns {
            reset: a.reset + b.reset,
            uptime: a.uptime + b.uptime,
            lifetime: a.lifetime + b.lifetime,
        });
    api::StatusCounters {
        messages_received: get(Counter::MessagesReceived),
        recipients_received: get(Counter::RecipientsReceived),
        generated_bounce_recipients: get(Counter::GeneratedBounceRecipients),
        rejected_recipients: get(Counter::RejectedRecipients),
        dropped_messages: get(Counter::DroppedMessages),
        soft_bounced_events: get(Counter::SoftBouncedEvents),
        completed_recipients: columns(completed),
        hard_bounced_recipients: get(Counter::HardBouncedRecipients),
        delivered_recipients: get(Counter::DeliveredRecipients),
        deleted_recipients: get(Counter::DeletedRecipients),
        quarantined_messages: get(Counter::QuarantinedMessages),
    }
}

fn columns(v: Columns) -> api::CounterColumns {
    api::CounterColumns { reset: v.reset, uptime: v.uptime, lifetime: v.lifetime }
}
