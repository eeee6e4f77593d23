//! Listings: the queues and message copies as the admin API's Get-Queue and Get-Message show them, and the
//! resolution of a queue identity such as `<server>\3` or `Submission`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use sluice_api_types as api;
use sluice_queue_db::time::rfc3339;
use sluice_queue_db::{
    Envelope, FIRST_DELIVERY_QUEUE, Mid, POISON, QueueId, RecipientIndices, SUBMISSION, SharedError, UNREACHABLE,
};

use crate::queue::{Copy, Message, MessageStatus, QueueStatus, Queues};
use crate::routing::{SendSession, Target, TlsPolicy};
use crate::{NoSuchQueue, Transport};

impl Transport {
    /// The queues, as Get-Queue lists them: Submission, the delivery queues, and Unreachable and Poison
    /// when they are not empty.
    pub fn queues(&self) -> Vec<api::Queue> {
        let qs = self.inner.lock();
        let priorities = qs.priority_counts();
        let mut out = vec![self.persistent_queue(&qs, SUBMISSION, &priorities)];
        for (id, q) in qs.delivery_queues() {
            let key = q.key();
            let rates = qs.rates(id);
            let required = |s: &SendSession| s.tls == TlsPolicy::Required;
            let tls_domain = match q.target() {
                Target::SmartHosts { session, .. } | Target::Dns { session, .. } if required(session) => {
                    Some(key.next_hop_domain.clone())
                }
                _ => None,
            };
            out.push(api::Queue {
                identity: self.inner.queue_identity(id),
                delivery_type: key.delivery_type.as_str().to_owned(),
                next_hop_domain: key.next_hop_domain.clone(),
                next_hop_connector: key.next_hop_connector.clone(),
                next_hop_category: key.delivery_type.category().to_owned(),
                status: q.status().as_str().to_owned(),
                message_count: q.message_count() as u64,
                deferred_message_count: q.deferred_count() as u64,
                locked_message_count: 0,
                retry_count: q.retry_count(),
                last_error: q.last_error().map(str::to_owned),
                first_retry_time: q.first_retry_ms().map(rfc3339),
                last_retry_time: q.last_retry_ms().map(rfc3339),
                next_retry_time: q.next_retry_ms().map(rfc3339),
                incoming_rate: rounded(rates.incoming),
                outgoing_rate: rounded(rates.outgoing),
                velocity: rounded(rates.velocity()),
                tls_domain,
                message_counts_per_priority: per_priority(q.message_count() as u64, priorities.get(&id)),
            });
        }
        for id in [UNREACHABLE, POISON] {
            let q = self.persistent_queue(&qs, id, &priorities);
            if q.message_count > 0 {
                out.push(q);
            }
        }
        out
    }

    /// One queue by identity (`Submission`, `<server>\3`, `mx1/Unreachable`, ...).
    pub fn queue(&self, identity: &str) -> Result<api::Queue, NoSuchQueue> {
        let qid = self.parse_queue(identity)?;
        let name = self.inner.queue_identity(qid);
        if matches!(qid, SUBMISSION | UNREACHABLE | POISON) {
            let qs = self.inner.lock();
            return Ok(self.persistent_queue(&qs, qid, &qs.priority_counts()));
        }
        self.queues().into_iter().find(|q| q.identity == name).ok_or_else(|| NoSuchQueue(identity.to_owned()))
    }

    fn persistent_queue(&self, qs: &Queues, id: QueueId, priorities: &HashMap<QueueId, [u64; 2]>) -> api::Queue {
        let rates = qs.rates(id);
        let (delivery_type, domain, count, suspended) = match id {
            // Messages the work queue holds are still in Submission.
            SUBMISSION => (
                "Undefined",
                "Submission",
                qs.submission_len() + self.inner.work_queue.messages_in_process() as usize,
                qs.submission_suspended(),
            ),
            UNREACHABLE => ("Unreachable", "Unreachable Domain", qs.unreachable_len(), qs.unreachable_suspended()),
            _ => ("Undefined", "Poison Message", qs.poison_len(), false),
        };
        api::Queue {
            identity: self.inner.queue_identity(id),
            delivery_type: delivery_type.to_owned(),
            next_hop_domain: domain.to_owned(),
            next_hop_connector: String::new(),
            next_hop_category: "Internal".to_owned(),
            // Submission is Active while the categorizer has work; Unreachable and Poison deliver nothing, so
            // they are never Active.
            status: if suspended {
                "Suspended"
            } else if count > 0 && id == SUBMISSION {
                "Active"
            } else {
                "Ready"
            }
            .to_owned(),
            message_count: count as u64,
            deferred_message_count: if id == POISON { count as u64 } else { 0 },
            locked_message_count: 0,
            retry_count: 0,
            last_error: None,
            first_retry_time: None,
            last_retry_time: None,
            next_retry_time: None,
            incoming_rate: rounded(rates.incoming),
            outgoing_rate: rounded(rates.outgoing),
            velocity: rounded(rates.velocity()),
            tls_domain: None,
            message_counts_per_priority: per_priority(count as u64, priorities.get(&id)),
        }
    }

    /// Resolves a queue identity: the full `<server>\<queue>`, `<server>/<queue>` or just `<queue>`.
    pub fn parse_queue(&self, identity: &str) -> Result<QueueId, NoSuchQueue> {
        let not_found = || NoSuchQueue(identity.to_owned());
        let s = identity.replace('/', "\\");
        let local = match s.split_once('\\') {
            Some((server, rest)) if server.eq_ignore_ascii_case(&self.inner.server_name) => rest.to_owned(),
            Some(_) => return Err(not_found()),
            None => s,
        };
        let qid = match local.to_ascii_lowercase().as_str() {
            "submission" => SUBMISSION,
            "unreachable" => UNREACHABLE,
            "poison" => POISON,
            n => n.parse::<QueueId>().ok().filter(|n| *n >= FIRST_DELIVERY_QUEUE).ok_or_else(not_found)?,
        };
        if qid >= FIRST_DELIVERY_QUEUE && self.inner.lock().delivery_queue(qid).is_none() {
            return Err(not_found());
        }
        Ok(qid)
    }

    /// Message copies, in one queue or in all, oldest MID first, as Get-Message shows them.
    pub fn messages(&self, queue: Option<&str>, include_recipients: bool) -> Result<Vec<api::Message>, NoSuchQueue> {
        let mut rows = self.copy_rows(queue)?;
        in_listing_order(&mut rows);
        Ok(rows.iter().map(|r| r.to_api(include_recipients)).collect())
    }

    /// Message copies, in one queue or in all, in no particular order, as rows to filter and sort (see
    /// [`in_listing_order`]) before any is turned into JSON. The queues' lock is held for one pass that
    /// copies a few words and pointers per copy, so that listing a million messages does not hold up the
    /// mail going through.
    pub fn copy_rows(&self, queue: Option<&str>) -> Result<Vec<CopyRow>, NoSuchQueue> {
        self.copy_rows_where(queue, |_| true)
    }

    /// The rows of [`Transport::copy_rows`] that `keep` keeps, tested in the same pass, so that a filter
    /// over a million copies keeps only its matches rather than a row for each. The rows come out in MID
    /// order.
    ///
    /// A listing of a million messages is bound by memory latency: each copy is reached through its
    /// message, the message's envelope and the envelope's strings, three cache misses deep. So the pass goes
    /// in MID order, about the order all three were allocated in, which the processor's prefetcher follows;
    /// takes the messages 32 at a time, reading each level for the whole batch before the next, so
    /// that the misses of a level overlap instead of waiting one chain at a time; and splits a large listing
    /// between two threads. A filter by sender over a million messages received over SMTP took 700 ms in
    /// the map's order, 370 ms in MID order, 230 ms with the batches (docs/benchmarks.md has the rest).
    pub fn copy_rows_where(
        &self,
        queue: Option<&str>,
        keep: impl Fn(&CopyRow) -> bool + Sync,
    ) -> Result<Vec<CopyRow>, NoSuchQueue> {
        let only = queue.map(|q| self.parse_queue(q)).transpose()?;
        let context = self.row_context();
        let qs = self.inner.lock();
        let mut messages: Vec<(Mid, &Message)> = qs.messages().map(|(mid, m)| (*mid, m)).collect();
        messages.sort_unstable_by_key(|(mid, _)| *mid);
        let rows_of = |part: &[(Mid, &Message)]| {
            let mut names = QueueNames::new(self, &qs);
            let mut rows = Vec::new();
            for batch in part.chunks(WARM_BATCH) {
                warm(batch);
                for (mid, m) in batch {
                    for c in m.copies.iter().filter(|c| only.is_none_or(|q| q == c.queue)) {
                        let row = CopyRow::new(&qs, &mut names, *mid, m, c, &context);
                        if keep(&row) {
                            rows.push(row);
                        }
                    }
                }
            }
            rows
        };
        let rows = in_halves(&messages, PARALLEL_FROM, rows_of);
        drop(messages);
        drop(qs);
        Ok(rows)
    }

    /// How old each queue's message copies are: for each queue identity, how many copies were received less
    /// than `bounds_ms[0]` milliseconds ago, then between each bound and the next, and the last count at
    /// least the last bound ago. One pass under the queues' lock that reads two words per copy.
    pub fn copy_ages(&self, bounds_ms: &[i64]) -> HashMap<String, Vec<u64>> {
        let now = sluice_queue_db::now_ms();
        let mut by_queue: HashMap<QueueId, Vec<u64>> = HashMap::new();
        {
            let qs = self.inner.lock();
            for (_, m) in qs.messages() {
                let age = now.saturating_sub(m.envelope.received_at_ms);
                let bucket = bounds_ms.iter().position(|b| age < *b).unwrap_or(bounds_ms.len());
                for c in &m.copies {
                    by_queue.entry(c.queue).or_insert_with(|| vec![0; bounds_ms.len() + 1])[bucket] += 1;
                }
            }
        }
        by_queue.into_iter().map(|(qid, counts)| (self.inner.queue_identity(qid), counts)).collect()
    }

    /// `[transport] digest_threshold`, as last loaded.
    pub fn digest_threshold(&self) -> u32 {
        self.inner.routing().limits.digest_threshold
    }

    /// `message_expiration_timeout` in milliseconds.
    pub(crate) fn expiration_ms(&self) -> i64 {
        let expiration = self.inner.routing().limits.message_expiration_timeout;
        expiration.as_millis().min(i64::MAX as u128) as i64
    }

    fn row_context(&self) -> RowContext {
        RowContext { expiration_ms: self.expiration_ms(), listed_at_ms: sluice_queue_db::now_ms() }
    }

    /// The copies of `mid` in `queues`, as Get-Message shows them (with their recipients).
    pub(crate) fn copies_json(&self, qs: &Queues, mid: Mid, queues: &[QueueId]) -> Vec<api::Message> {
        let Some(m) = qs.message(mid) else { return Vec::new() };
        let context = self.row_context();
        let mut names = QueueNames::new(self, qs);
        m.copies
            .iter()
            .filter(|c| queues.contains(&c.queue))
            .map(|c| CopyRow::new(qs, &mut names, mid, m, c, &context).to_api(true))
            .collect()
    }
}

/// How many messages a listing reads a level at a time ([`Transport::copy_rows_where`]): enough misses to
/// overlap, few enough that the batch is still in the cache when its rows are made.
const WARM_BATCH: usize = 32;

/// From how many messages a listing is split between two threads.
const PARALLEL_FROM: usize = 100_000;

/// `map` over `items`, or from `parallel_from` items over each half on its own thread: the results in
/// `items`' order either way.
fn in_halves<T: Sync, R: Send>(items: &[T], parallel_from: usize, map: impl Fn(&[T]) -> Vec<R> + Sync) -> Vec<R> {
    if items.len() < parallel_from {
        return map(items);
    }
    let (first, second) = items.split_at(items.len() / 2);
    std::thread::scope(|scope| {
        let other = scope.spawn(|| map(second));
        let mut out = map(first);
        match other.join() {
            Ok(more) => out.extend(more),
            Err(panic) => std::panic::resume_unwind(panic),
        }
        out
    })
}

/// Reads, for each message of `batch`, the message and its copy, then the envelope, then the start of the
/// envelope's strings: one level for every message before the next, so that the loads of a level are
/// independent and their cache misses overlap.
fn warm(batch: &[(Mid, &Message)]) {
    let mut seen = 0usize;
    for (_, m) in batch {
        // The copy is kept inline in the message, a line or two after the envelope's pointer.
        seen ^= Arc::as_ptr(&m.envelope) as usize ^ m.copies.first().map_or(0, |c| c.queue as usize);
    }
    for (_, m) in batch {
        seen ^= m.envelope.received_at_ms as usize;
    }
    for (_, m) in batch {
        seen ^= m.envelope.from_address().len();
    }
    std::hint::black_box(seen);
}

/// Puts rows in the order listings show them: oldest MID first, a message's copies by queue. Sorting after a
/// filter rather than before costs only what the filter kept.
pub fn in_listing_order(rows: &mut [CopyRow]) {
    rows.sort_unstable_by_key(|r| (r.mid, r.queue));
}

/// What every row of one listing shares.
struct RowContext {
    expiration_ms: i64,
    /// When the listing was taken: `message_latency` is counted to it.
    listed_at_ms: i64,
}

/// The identity and next hop of each queue, made once per listing and shared by its rows.
struct QueueNames<'a> {
    transport: &'a Transport,
    qs: &'a Queues,
    names: HashMap<QueueId, (Arc<str>, Arc<str>)>,
}

impl<'a> QueueNames<'a> {
    fn new(transport: &'a Transport, qs: &'a Queues) -> QueueNames<'a> {
        QueueNames { transport, qs, names: HashMap::new() }
    }

    fn get(&mut self, qid: QueueId) -> (Arc<str>, Arc<str>) {
        let (transport, qs) = (self.transport, self.qs);
        let (identity, next_hop) = self.names.entry(qid).or_insert_with(|| {
            let next_hop = qs.delivery_queue(qid).map_or("", |q| q.key().next_hop_domain.as_str());
            (transport.inner.queue_identity(qid).into(), next_hop.into())
        });
        (identity.clone(), next_hop.clone())
    }
}

/// A message copy as listed: what Get-Message shows and filters read, taken from the queues under their
/// lock; text is read from the shared envelope, and the JSON is made only for the copies that are shown.
#[derive(Debug)]
pub struct CopyRow {
    pub mid: Mid,
    queue: QueueId,
    queue_identity: Arc<str>,
    next_hop: Arc<str>,
    /// As shown: a Ready copy in a queue that waits for its retry is listed as Retry.
    status: MessageStatus,
    deferred_reason: Option<&'static str>,
    envelope: Arc<Envelope>,
    size: u64,
    retry_count: u32,
    last_error: Option<SharedError>,
    recipients: RecipientIndices,
    expiration_ms: i64,
    listed_at_ms: i64,
    scl: i8,
    /// `<queue identity>\<mid>`, made when first asked for.
    identity: OnceLock<String>,
}

impl CopyRow {
    fn new(qs: &Queues, names: &mut QueueNames<'_>, mid: Mid, m: &Message, c: &Copy, context: &RowContext) -> CopyRow {
        let queue = qs.delivery_queue(c.queue);
        let queue_retrying = queue.is_some_and(|q| q.held());
        let status = if c.status == MessageStatus::Ready && queue_retrying { MessageStatus::Retry } else { c.status };
        let deferred_reason = match (c.queue, status) {
            (POISON, _) => Some("Poison"),
            (_, MessageStatus::Suspended) => Some("Suspended"),
            (UNREACHABLE, _) => Some("NoRoute"),
            (_, MessageStatus::Retry) if c.status == MessageStatus::Retry => Some("TransientFailure"),
            (_, MessageStatus::Retry) if queue.is_some_and(|q| q.status() == QueueStatus::Suspended) => {
                Some("QueueSuspended")
            }
            (_, MessageStatus::Retry) => Some("QueueRetry"),
            _ => None,
        };
        let (queue_identity, next_hop) = names.get(c.queue);
        CopyRow {
            mid,
            queue: c.queue,
            queue_identity,
            next_hop,
            status,
            deferred_reason,
            envelope: m.envelope.clone(),
            size: m.body.len,
            retry_count: c.retry_count,
            last_error: c.last_error.clone(),
            recipients: c.recipients.clone(),
            expiration_ms: m.envelope.received_at_ms.saturating_add(context.expiration_ms),
            scl: c.scan.scl,
            listed_at_ms: context.listed_at_ms,
            identity: OnceLock::new(),
        }
    }

    /// `<server>\<queue>\<mid>`.
    pub fn identity(&self) -> &str {
        self.identity.get_or_init(|| format!("{}\\{}", self.queue_identity, self.mid))
    }

    pub fn queue(&self) -> &str {
        &self.queue_identity
    }

    pub fn status(&self) -> &'static str {
        self.status.as_str()
    }

    pub fn from_address(&self) -> &str {
        self.envelope.from_address()
    }

    pub fn internet_message_id(&self) -> Option<&str> {
        self.envelope.internet_message_id()
    }

    pub fn subject(&self) -> Option<&str> {
        self.envelope.subject()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Milliseconds since the epoch.
    pub fn received_ms(&self) -> i64 {
        self.envelope.received_at_ms
    }

    /// Milliseconds since the epoch.
    pub fn expiration_ms(&self) -> i64 {
        self.expiration_ms
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref().map(String::as_str)
    }

    pub fn retry_count(&self) -> u32 {
        self.retry_count
    }

    pub fn source_ip(&self) -> &str {
        self.envelope.source_ip()
    }

    pub fn source_name(&self) -> &str {
        self.envelope.source_name()
    }

    /// The spam confidence level: -1 until the anti-spam stage scanned the message.
    pub fn scl(&self) -> i32 {
        i32::from(self.scl)
    }

    pub fn priority(&self) -> &'static str {
        self.envelope.priority().as_str()
    }

    pub fn directionality(&self) -> &'static str {
        if self.envelope.originating() { "Originating" } else { "Incoming" }
    }

    pub fn deferred_reason(&self) -> Option<&'static str> {
        self.deferred_reason
    }

    /// Milliseconds from receipt to the listing.
    pub fn latency_ms(&self) -> i64 {
        self.listed_at_ms.saturating_sub(self.envelope.received_at_ms).max(0)
    }

    /// The copy's recipients' addresses.
    pub fn recipients(&self) -> impl Iterator<Item = &str> {
        self.recipients.iter().filter_map(|i| self.envelope.recipient(*i as usize)).map(|r| r.address)
    }

    /// The copy as Get-Message shows it.
    pub fn to_api(&self, include_recipients: bool) -> api::Message {
        let status = self.status();
        api::Message {
            identity: self.identity().to_owned(),
            mid: self.mid,
            queue: self.queue().to_owned(),
            status: status.to_owned(),
            from_address: self.from_address().to_owned(),
            original_from_address: self.from_address().to_owned(),
            internet_message_id: self.internet_message_id().map(str::to_owned),
            subject: self.subject().map(str::to_owned),
            size: self.size,
            date_received: rfc3339(self.received_ms()),
            expiration_time: rfc3339(self.expiration_ms),
            source_ip: self.source_ip().to_owned(),
            message_source_name: self.source_name().to_owned(),
            last_error: self.last_error().map(str::to_owned),
            retry_count: self.retry_count,
            scl: self.scl(),
            priority: self.priority().to_owned(),
            directionality: self.directionality().to_owned(),
            deferred_reason: self.deferred_reason.map(str::to_owned),
            message_latency: (self.latency_ms() / 1000) as u64,
            recipients: include_recipients.then(|| {
                self.recipients()
                    .map(|address| api::Recipient {
                        address: address.to_owned(),
                        status: status.to_owned(),
                        last_error: self.last_error().map(str::to_owned),
                        retry_count: self.retry_count,
                        next_hop: self.next_hop.to_string(),
                    })
                    .collect()
            }),
        }
    }
}

/// A rate as the API shows it: three decimals.
fn rounded(rate: f64) -> f64 {
    (rate * 1000.0).round() / 1000.0
}

/// A queue's counts per priority from its message count and its High and Low counts.
fn per_priority(count: u64, high_low: Option<&[u64; 2]>) -> api::PriorityCounts {
    let [high, low] = high_low.copied().unwrap_or_default();
    api::PriorityCounts { high, normal: count.saturating_sub(high + low), low }
}

#[cfg(test)]
mod tests {
    use super::in_halves;

    #[test]
    fn a_listing_split_in_halves_keeps_every_row_in_order() {
        let items: Vec<u32> = (0..1001).collect();
        let evens = |part: &[u32]| part.iter().copied().filter(|n| n % 2 == 0).collect::<Vec<u32>>();
        let expected: Vec<u32> = (0..1001).filter(|n| n % 2 == 0).collect();
        assert_eq!(in_halves(&items, 10, evens), expected, "split");
        assert_eq!(in_halves(&items, 2000, evens), expected, "one thread");
        let threads = std::sync::Mutex::new(std::collections::HashSet::new());
        let _ = in_halves(&items, 10, |part: &[u32]| {
            threads.lock().unwrap().insert(std::thread::current().id());
            part.to_vec()
        });
        assert_eq!(threads.lock().unwrap().len(), 2, "each half on its own thread");
    }
}
