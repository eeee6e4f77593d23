//! `GET /metrics`: the server's figures in the Prometheus text exposition format (version 0.0.4), every name
//! prefixed `sluice_`. Written by hand: a few dozen series do not need a metrics library.
//!
//! **Label cardinality is bounded**: per-queue series exist only for the [`TOP_QUEUES`] largest queues (by
//! message count, then identity); the others are summed into one series labelled `queue="other"`, always
//! present. SMTP refusals are labelled by reply code (400 to 599), alerts by class and severity (fixed lists).
//! Counters (`_total`) count since the process started, as Prometheus expects of counters.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use sluice_api_types as api;
use sluice_transport::{Counter, Transport};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AdminState;

/// Queues with series of their own; the rest are summed as `queue="other"`.
pub const TOP_QUEUES: usize = 20;

/// The Content-Type of the text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// The server's figures in the Prometheus text exposition format (version 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "server",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String), crate::openapi::Errors))]
async fn metrics(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, crate::ApiError> {
    crate::status::no_query(&q)?;
    let transport = s.transport.clone();
    // Reading the free space and the database's files touches the disk: off the runtime's threads.
    let text = tokio::task::spawn_blocking(move || render(&transport)).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "the metrics could not be rendered");
        String::new()
    });
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text))
}

/// Text in the exposition format, one metric family after another.
#[derive(Default)]
struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a family: its `# HELP` and `# TYPE` lines.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family of one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A histogram family from a snapshot, its bounds and sum divided by `scale` (e.g. µs to seconds).
    fn histogram(&mut self, name: &str, help: &str, h: &sluice_transport::HistogramSnapshot, scale: f64) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (bound, n) in &h.buckets {
            self.sample(&bucket, &[("le", &float(*bound as f64 / scale))], n);
        }
        self.sample(&bucket, &[("le", "+Inf")], h.count);
        self.sample(&format!("{name}_sum"), &[], float(h.sum as f64 / scale));
        self.sample(&format!("{name}_count"), &[], h.count);
    }
}

/// A label value with `\`, `"` and line feeds escaped, as the format requires.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A float as Go's `strconv` would print it for Prometheus: no exponent for the values used here.
fn float(v: f64) -> String {
    let s = format!("{v}");
    if s.contains('.') || s.contains("inf") || s.contains("NaN") { s } else { format!("{s}.0") }
}

/// The back pressure level as a number: 0 Normal, 1 Medium, 2 High.
fn level_number(level: &str) -> u8 {
    match level {
        "High" => 2,
        "Medium" => 1,
        _ => 0,
    }
}

/// Every metric, rendered.
pub(crate) fn render(t: &Transport) -> String {
    let mut e = Exposition::default();
    let counters = t.counters();
    e.single(
        "sluice_start_time_seconds",
        "gauge",
        "When this process started, seconds since the epoch.",
        counters.started_ms() / 1000,
    );

    let listed = t.queues();
    queues(&mut e, &listed.iter().map(QueueFigures::from).collect::<Vec<_>>());

    for (name, counter, help) in [
        ("sluice_messages_received_total", Counter::MessagesReceived, "Messages received from clients (SMTP, replay)."),
        ("sluice_recipients_received_total", Counter::RecipientsReceived, "Recipients of the messages received."),
        ("sluice_recipients_delivered_total", Counter::DeliveredRecipients, "Recipients delivered."),
        (
            "sluice_recipients_deferred_total",
            Counter::SoftBouncedEvents,
            "Deferrals: recipient attempts that ended in a transient failure.",
        ),
        (
            "sluice_recipients_bounced_total",
            Counter::HardBouncedRecipients,
            "Recipients that failed for good (5xx, no route, expiry).",
        ),
        ("sluice_recipients_rejected_total", Counter::RejectedRecipients, "Recipients refused at RCPT."),
        ("sluice_recipients_deleted_total", Counter::DeletedRecipients, "Recipients removed by an administrator."),
        (
            "sluice_bounce_recipients_generated_total",
            Counter::GeneratedBounceRecipients,
            "Recipients of the delivery status notices generated.",
        ),
        ("sluice_messages_dropped_total", Counter::DroppedMessages, "Messages dropped by the work queue (none yet)."),
        ("sluice_messages_quarantined_total", Counter::QuarantinedMessages, "Messages quarantined."),
    ] {
        e.single(name, "counter", help, counters.get(counter).uptime);
    }
    e.single(
        "sluice_messages_expired_total",
        "counter",
        "Messages (or copies) expired, each with a failure notice.",
        t.expired_since_start(),
    );
    e.single("sluice_delay_notices_total", "counter", "Delay notices sent.", t.delay_notices_since_start());

    e.single("sluice_smtp_sessions_total", "counter", "SMTP sessions accepted.", counters.sessions_since_start());
    e.single("sluice_smtp_sessions", "gauge", "SMTP sessions open now.", counters.inbound_connections());
    let status_outbound = t.outbound_connections();
    e.single("sluice_delivery_connections", "gauge", "Delivery connections open or being opened now.", status_outbound);
    e.family("sluice_smtp_rejections_total", "counter", "Replies 4xx and 5xx sent to SMTP clients, by code.");
    for (code, n) in counters.smtp_refusals() {
        e.sample("sluice_smtp_rejections_total", &[("code", &code.to_string())], n);
    }

    queue_database(&mut e, t);
    back_pressure(&mut e, &t.back_pressure_status());

    e.family("sluice_alerts_total", "counter", "Alerts raised, suppressed repeats included, by class and severity.");
    for (class, severity, n) in t.alerts().raised_since_start() {
        e.sample("sluice_alerts_total", &[("class", class.as_str()), ("severity", severity.as_str())], n);
    }

    let (messages, stages) = t.work_queue_gauges();
    e.single("sluice_work_queue_messages", "gauge", "Messages in the work queue.", messages);
    e.family("sluice_work_queue_paused", "gauge", "1 while the stage is paused or offline.");
    for (stage, paused) in stages {
        e.sample("sluice_work_queue_paused", &[("stage", stage.as_str())], u64::from(paused));
    }
    e.family("sluice_engine_info", "gauge", "The version of each engine's rule or signature set in force.");
    for engine in t.engines() {
        e.sample("sluice_engine_info", &[("engine", &engine.engine), ("version", &engine.version)], 1);
    }
    e.out
}

/// What the metrics show of one queue.
struct QueueFigures<'a> {
    identity: &'a str,
    delivery_type: &'a str,
    next_hop: &'a str,
    messages: u64,
    deferred: u64,
    /// Messages per second in and out, averaged over the last minute.
    incoming_rate: f64,
    outgoing_rate: f64,
}

impl<'a> From<&'a api::Queue> for QueueFigures<'a> {
    fn from(q: &'a api::Queue) -> QueueFigures<'a> {
        QueueFigures {
            identity: &q.identity,
            delivery_type: &q.delivery_type,
            next_hop: &q.next_hop_domain,
            messages: q.message_count,
            deferred: q.deferred_message_count,
            incoming_rate: q.incoming_rate,
            outgoing_rate: q.outgoing_rate,
        }
    }
}

/// A per-queue family: its name, its help and how a queue's value is read.
type Family<T> = (&'static str, &'static str, fn(&QueueFigures<'_>) -> T);

/// The labels of the series that sums the queues outside the largest.
const OTHER: [(&str, &str); 3] = [("queue", "other"), ("delivery_type", ""), ("next_hop", "")];

fn queue_labels<'a>(q: &QueueFigures<'a>) -> [(&'static str, &'a str); 3] {
    [("queue", q.identity), ("delivery_type", q.delivery_type), ("next_hop", q.next_hop)]
}

/// Per-queue message counts and rates, bounded to the largest queues plus `other`.
fn queues(e: &mut Exposition, all: &[QueueFigures<'_>]) {
    let mut sorted: Vec<&QueueFigures<'_>> = all.iter().collect();
    sorted.sort_by(|a, b| b.messages.cmp(&a.messages).then_with(|| a.identity.cmp(b.identity)));
    let (top, rest) = sorted.split_at(sorted.len().min(TOP_QUEUES));
    let counts: [Family<u64>; 2] = [
        ("sluice_queue_messages", "Messages in a queue (the largest queues; the rest as queue=\"other\").", |q| {
            q.messages
        }),
        ("sluice_queue_deferred_messages", "Messages in a queue waiting for a retry.", |q| q.deferred),
    ];
    for (name, help, of) in counts {
        e.family(name, "gauge", help);
        for q in top {
            e.sample(name, &queue_labels(q), of(q));
        }
        e.sample(name, &OTHER, rest.iter().map(|q| of(q)).sum::<u64>());
    }
    let rates: [Family<f64>; 2] = [
        ("sluice_queue_incoming_rate", "Messages per second entering a queue, over the last minute.", |q| {
            q.incoming_rate
        }),
        ("sluice_queue_outgoing_rate", "Messages per second leaving a queue, over the last minute.", |q| {
            q.outgoing_rate
        }),
    ];
    for (name, help, of) in rates {
        e.family(name, "gauge", help);
        for q in top {
            e.sample(name, &queue_labels(q), float(of(q)));
        }
        e.sample(name, &OTHER, float(rest.iter().map(|q| of(q)).sum::<f64>()));
    }
    e.single("sluice_queues", "gauge", "Queues listed (delivery queues and the non-empty system ones).", all.len());
    e.single(
        "sluice_messages_queued",
        "gauge",
        "Message copies in all queues.",
        all.iter().map(|q| q.messages).sum::<u64>(),
    );
}

fn queue_database(e: &mut Exposition, t: &Transport) {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = t.db_stats();
    e.histogram(
        "sluice_queue_database_commit_latency_seconds",
        "From the start of a queue database flush until its commits were answered (durable).",
        &stats.commit_latency_us.snapshot(),
        1e6,
    );
    e.histogram("sluice_queue_database_batch_size", "Operations per flushed frame.", &stats.batch_size.snapshot(), 1.0);
    e.single(
        "sluice_queue_database_flushes_total",
        "counter",
        "Frames written and answered.",
        stats.flushes.load(Relaxed),
    );
    e.single(
        "sluice_queue_database_operations_total",
        "counter",
        "Enqueues and commits carried by those frames.",
        stats.operations.load(Relaxed),
    );
    e.single("sluice_queue_database_fsyncs_total", "counter", "fdatasyncs of frames.", stats.frame_syncs.load(Relaxed));
    e.single(
        "sluice_queue_database_safety_net_evicted_total",
        "counter",
        "Generations retired before their Safety Net hold ended, for disk space.",
        stats.safety_net_evicted.load(Relaxed),
    );
    let (generations, bytes) = t.generation_files();
    e.single("sluice_queue_database_generations", "gauge", "Generation files.", generations);
    e.single("sluice_queue_database_generation_bytes", "gauge", "Bytes in generation files.", bytes);
    let (used, free) = t.queue_database_space();
    e.single("sluice_queue_database_used_bytes", "gauge", "Disk space the queue database's files take.", used);
    e.single("sluice_queue_database_free_bytes", "gauge", "Free space on the queue database's file system.", free);
}

fn back_pressure(e: &mut Exposition, bp: &api::BackPressureStatus) {
    e.single(
        "sluice_back_pressure_level",
        "gauge",
        "Back pressure: 0 Normal, 1 Medium (clients outside relay_networks refused), 2 High (all refused).",
        level_number(&bp.level),
    );
    e.family("sluice_back_pressure_resource_level", "gauge", "Each resource's back pressure level (0, 1, 2).");
    for r in &bp.resources {
        e.sample("sluice_back_pressure_resource_level", &[("resource", &r.resource)], level_number(&r.level));
    }
    e.family(
        "sluice_back_pressure_resource_value",
        "gauge",
        "Each resource's reading: free bytes (disk), percent of physical memory (memory), messages (Submission).",
    );
    for r in bp.resources.iter().filter(|r| r.value.is_some()) {
        e.sample("sluice_back_pressure_resource_value", &[("resource", &r.resource)], r.value.unwrap_or(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_largest_queues_have_series_of_their_own() {
        let names: Vec<String> = (0..30).map(|i| format!("mx\\{}", 16 + i)).collect();
        let all: Vec<QueueFigures<'_>> = names
            .iter()
            .zip(0..)
            .map(|(identity, n)| QueueFigures {
                identity,
                delivery_type: "SmtpRelayToRemoteAdSite",
                next_hop: "remote.test",
                messages: n,
                deferred: 0,
                incoming_rate: 0.5,
                outgoing_rate: 0.0,
            })
            .collect();
        let mut e = Exposition::default();
        queues(&mut e, &all);
        let lines: Vec<&str> = e.out.lines().filter(|l| l.starts_with("sluice_queue_messages{")).collect();
        assert_eq!(lines.len(), TOP_QUEUES + 1, "{}", e.out);
        assert!(lines[0].contains(r#"queue="mx\\45""#) && lines[0].ends_with(" 29"), "largest first: {}", lines[0]);
        // The ten smallest hold 0 + 1 + ... + 9.
        assert_eq!(lines[TOP_QUEUES], r#"sluice_queue_messages{queue="other",delivery_type="",next_hop=""} 45"#);
        let other = r#"sluice_queue_incoming_rate{queue="other",delivery_type="",next_hop=""} 5.0"#;
        assert!(e.out.lines().any(|l| l == other), "{}", e.out);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::default();
        e.sample("m", &[("a", "x\\y\"z\nw")], 1);
        assert_eq!(e.out, "m{a=\"x\\\\y\\\"z\\nw\"} 1\n");
    }

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        let h = sluice_transport::HistogramSnapshot { buckets: vec![(250, 1), (500, 3)], sum: 1500, count: 4 };
        let mut e = Exposition::default();
        e.histogram("h_seconds", "help", &h, 1e6);
        let want = "# HELP h_seconds help\n# TYPE h_seconds histogram\nh_seconds_bucket{le=\"0.00025\"} 1\n\
                    h_seconds_bucket{le=\"0.0005\"} 3\nh_seconds_bucket{le=\"+Inf\"} 4\nh_seconds_sum 0.0015\n\
                    h_seconds_count 4\n";
        assert_eq!(e.out, want);
    }
}
