//! The records of the transaction log: every state change of the queue database is one of these.

use crate::DecodeError;
use crate::codec::{Dec, Enc};
use crate::state::SharedText;

/// The integer message id, the same in every queue that holds a copy of the message. Never reused.
pub type Mid = u64;

/// A queue's number in the database. Persistent queues have fixed numbers; delivery queues are numbered
/// from [`FIRST_DELIVERY_QUEUE`] when they are created and keep their number for life.
pub type QueueId = u32;

/// The Submission queue.
pub const SUBMISSION: QueueId = 0;
/// The Unreachable queue.
pub const UNREACHABLE: QueueId = 1;
/// The Poison queue.
pub const POISON: QueueId = 2;
/// The quarantine: messages a scanning stage held back, kept until released, deleted or past retention.
/// Not a delivery queue: its copies are never delivered.
pub const QUARANTINE: QueueId = 3;
/// The first number given to a delivery queue.
pub const FIRST_DELIVERY_QUEUE: QueueId = 16;

pub use crate::envelope::{Envelope, EnvelopeParts, Priority, Recipient, RecipientRef};
pub use crate::state::{Deliveries, Delivery, RecipientIndices, SafetyNetEntry};

/// Where a message's body lives: a byte range of a generation file, with its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyRef {
    pub generation: u32,
    /// Offset of the body bytes (after the body header) in the generation file.
    pub offset: u64,
    pub len: u64,
    /// CRC32C of the body bytes.
    pub crc: u32,
}

/// The identity of a delivery queue, the reference design's NextHopSolutionKey, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueKey {
    pub delivery_type: String,
    pub next_hop_domain: String,
    pub next_hop_connector: String,
}

/// A state change. Every transaction is a list of these, committed atomically in one log frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// MIDs below `next` may have been handed out; recovery never allocates below it.
    MidHighWater { next: Mid },
    /// A delivery queue was created.
    QueueCreate { id: QueueId, key: QueueKey },
    /// A delivery queue was deleted (it was empty).
    QueueDelete { id: QueueId },
    /// A queue was suspended or resumed by an administrator.
    QueueSuspend { id: QueueId, suspended: bool },
    /// A message entered the database, with all its recipients in `queue`.
    /// The envelope is shared (one allocation for the writer's state and the transport's queues).
    Enqueue { mid: Mid, queue: QueueId, envelope: std::sync::Arc<Envelope>, body: BodyRef },
    /// The copy of `mid` in `from` was replaced by copies in other queues, each with a subset of recipients
    /// (indices into the envelope's recipient list).
    Route { mid: Mid, from: QueueId, copies: Vec<(QueueId, Vec<u32>)> },
    /// A delivery attempt of the copy in `queue` failed transiently.
    Defer { mid: Mid, queue: QueueId, retry_count: u32, next_retry_ms: i64, last_error: String },
    /// The copy in `queue` is finished (every recipient delivered or failed); it leaves the queue.
    CopyDone { mid: Mid, queue: QueueId },
    /// Online defragmentation copied the message's body forward; it now lives at `body`.
    Relocate { mid: Mid, body: BodyRef },
    /// The sender of `mid` was sent its one delay notice (`delay_notification_timeout` passed with
    /// recipients still undelivered); none is sent again, also not after a restart.
    DelayNotified { mid: Mid },
    /// An administrator suspended (or resumed) the copy of `mid` in `queue`: nothing delivers it until it
    /// is resumed. Also set on the copies that go to Poison.
    MessageSuspend { mid: Mid, queue: QueueId, suspended: bool },
    /// `mid` was in process when the server stopped uncleanly, or its processing panicked, `count` times
    /// in all (0 again when an administrator resumes it from Poison).
    CrashCount { mid: Mid, count: u32 },
    /// The copy in `queue` is finished, as `CopyDone`, and the recipients `delivered` (indices into the
    /// envelope's recipients) were delivered at `at_ms` (wall clock). Written instead of `CopyDone` when at
    /// least one recipient of the copy was delivered, so that the Safety Net index costs no record more.
    CopyDelivered { mid: Mid, queue: QueueId, at_ms: i64, delivered: RecipientIndices },
    /// A Safety Net entry as a checkpoint keeps it: a message whose delivered copies are still held in
    /// their generation, with each delivery (time and recipients). Only checkpoints write it.
    /// Boxed: the record stays as small as it was (checkpoints are its only writer).
    SafetyNetEntry { mid: Mid, entry: Box<SafetyNetEntry> },
    /// Recipients of a copy that goes on (others in it were deferred) were delivered at `at_ms`: only the
    /// Safety Net index changes.
    RecipientsDelivered { mid: Mid, at_ms: i64, delivered: RecipientIndices },
    /// The work queue's verdicts on `mid` so far (replaces the previous ones).
    Scanned { mid: Mid, scan: Scan },
    /// `mid` was quarantined by `stage` at `at_ms` (wall clock) for `reason`; its copy is in
    /// [`QUARANTINE`] (moved there by the `Route` that follows this record in the same commit).
    Quarantine { mid: Mid, at_ms: i64, stage: ScanStage, reason: String },
}

/// A work-queue stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScanStage {
    Antispam,
    Antivirus,
}

impl ScanStage {
    /// Every stage, in the order a message goes through them.
    pub const ALL: [ScanStage; 2] = [ScanStage::Antispam, ScanStage::Antivirus];

    /// `antispam` or `antivirus`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScanStage::Antispam => "antispam",
            ScanStage::Antivirus => "antivirus",
        }
    }

    /// Parses a stage name (ASCII case ignored).
    pub fn parse(s: &str) -> Option<ScanStage> {
        ScanStage::ALL.into_iter().find(|st| st.as_str().eq_ignore_ascii_case(s))
    }

    /// This stage's bit in [`Scan::done`].
    pub fn bit(self) -> u8 {
        match self {
            ScanStage::Antispam => 1,
            ScanStage::Antivirus => 2,
        }
    }

    fn from_u8(v: u8) -> Result<ScanStage, DecodeError> {
        match v {
            0 => Ok(ScanStage::Antispam),
            1 => Ok(ScanStage::Antivirus),
            t => Err(DecodeError::BadTag(t)),
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            ScanStage::Antispam => 0,
            ScanStage::Antivirus => 1,
        }
    }
}

/// What the work queue found in a message, kept beside the message until it leaves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scan {
    /// The spam confidence level 0..9; -1 until the anti-spam stage has scanned the message.
    pub scl: i8,
    /// The anti-spam score in tenths (`52` is 5.2), saturated to the i16 range.
    pub score_tenths: i16,
    /// [`ScanStage::bit`]s of the stages that are done with the message (scanned it, or an administrator
    /// released it from their quarantine), and [`Scan::UNSCANNED`].
    pub done: u8,
    /// The anti-spam rules (an engine's symbols) that hit, comma-separated ([`crate::intern_tests`]).
    pub tests: Option<SharedText>,
}

impl Scan {
    /// Set when an engine failed and `on_engine_failure = "pass"` let the message through unscanned.
    pub const UNSCANNED: u8 = 0x80;

    /// Not scanned by any stage yet.
    pub const NONE: Scan = Scan { scl: -1, score_tenths: 0, done: 0, tests: None };

    /// Whether `stage` is done with the message.
    pub fn is_done(&self, stage: ScanStage) -> bool {
        self.done & stage.bit() != 0
    }
}

const T_MID_HIGH_WATER: u8 = 1;
const T_QUEUE_CREATE: u8 = 2;
const T_QUEUE_DELETE: u8 = 3;
const T_QUEUE_SUSPEND: u8 = 4;
const T_ENQUEUE: u8 = 5;
const T_ROUTE: u8 = 6;
const T_DEFER: u8 = 7;
const T_COPY_DONE: u8 = 8;
const T_RELOCATE: u8 = 9;
const T_DELAY_NOTIFIED: u8 = 10;
const T_MESSAGE_SUSPEND: u8 = 11;
const T_CRASH_COUNT: u8 = 12;
const T_COPY_DELIVERED: u8 = 13;
const T_SAFETY_NET_ENTRY: u8 = 14;
const T_RECIPIENTS_DELIVERED: u8 = 15;
const T_SCANNED: u8 = 16;
const T_QUARANTINE: u8 = 17;
/// `Scanned` with the rules hit (a record of 16 has none).
const T_SCANNED_TESTS: u8 = 18;

impl Record {
    /// Appends the record's encoding to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let mut e = Enc(out);
        match self {
            Record::MidHighWater { next } => {
                e.u8(T_MID_HIGH_WATER);
                e.u64(*next);
            }
            Record::QueueCreate { id, key } => {
                e.u8(T_QUEUE_CREATE);
                e.u32(*id);
                e.str(&key.delivery_type);
                e.str(&key.next_hop_domain);
                e.str(&key.next_hop_connector);
            }
            Record::QueueDelete { id } => {
                e.u8(T_QUEUE_DELETE);
                e.u32(*id);
            }
            Record::QueueSuspend { id, suspended } => {
                e.u8(T_QUEUE_SUSPEND);
                e.u32(*id);
                e.u8(u8::from(*suspended));
            }
            Record::Enqueue { mid, queue, envelope, body } => {
                e.u8(T_ENQUEUE);
                e.u64(*mid);
                e.u32(*queue);
                encode_envelope(&mut e, envelope);
                e.u32(body.generation);
                e.u64(body.offset);
                e.u64(body.len);
                e.u32(body.crc);
            }
            Record::Route { mid, from, copies } => {
                e.u8(T_ROUTE);
                e.u64(*mid);
                e.u32(*from);
                e.u32(copies.len() as u32);
                for (q, rcpts) in copies {
                    e.u32(*q);
                    e.u32(rcpts.len() as u32);
                    for r in rcpts {
                        e.u32(*r);
                    }
                }
            }
            Record::Defer { mid, queue, retry_count, next_retry_ms, last_error } => {
                e.u8(T_DEFER);
                e.u64(*mid);
                e.u32(*queue);
                e.u32(*retry_count);
                e.i64(*next_retry_ms);
                e.str(last_error);
            }
            Record::CopyDone { mid, queue } => {
                e.u8(T_COPY_DONE);
                e.u64(*mid);
                e.u32(*queue);
            }
            Record::Relocate { mid, body } => {
                e.u8(T_RELOCATE);
                e.u64(*mid);
                e.u32(body.generation);
                e.u64(body.offset);
                e.u64(body.len);
                e.u32(body.crc);
            }
            Record::DelayNotified { mid } => {
                e.u8(T_DELAY_NOTIFIED);
                e.u64(*mid);
            }
            Record::MessageSuspend { mid, queue, suspended } => {
                e.u8(T_MESSAGE_SUSPEND);
                e.u64(*mid);
                e.u32(*queue);
                e.u8(u8::from(*suspended));
            }
            Record::CrashCount { mid, count } => {
                e.u8(T_CRASH_COUNT);
                e.u64(*mid);
                e.u32(*count);
            }
            Record::CopyDelivered { mid, queue, at_ms, delivered } => {
                e.u8(T_COPY_DELIVERED);
                e.u64(*mid);
                e.u32(*queue);
                e.i64(*at_ms);
                encode_indices(&mut e, delivered);
            }
            Record::SafetyNetEntry { mid, entry } => {
                let SafetyNetEntry { envelope, body, delivered } = entry.as_ref();
                e.u8(T_SAFETY_NET_ENTRY);
                e.u64(*mid);
                encode_envelope(&mut e, envelope);
                e.u32(body.generation);
                e.u64(body.offset);
                e.u64(body.len);
                e.u32(body.crc);
                e.u32(delivered.len() as u32);
                for d in delivered {
                    e.i64(d.at_ms);
                    encode_indices(&mut e, &d.recipients);
                }
            }
            Record::RecipientsDelivered { mid, at_ms, delivered } => {
                e.u8(T_RECIPIENTS_DELIVERED);
                e.u64(*mid);
                e.i64(*at_ms);
                encode_indices(&mut e, delivered);
            }
            Record::Scanned { mid, scan } => {
                e.u8(if scan.tests.is_some() { T_SCANNED_TESTS } else { T_SCANNED });
                e.u64(*mid);
                e.u8(scan.scl as u8);
                e.u32(scan.score_tenths as u16 as u32);
                e.u8(scan.done);
                if let Some(tests) = &scan.tests {
                    e.str(tests);
                }
            }
            Record::Quarantine { mid, at_ms, stage, reason } => {
                e.u8(T_QUARANTINE);
                e.u64(*mid);
                e.i64(*at_ms);
                e.u8(stage.to_u8());
                e.str(reason);
            }
        }
    }

    /// Decodes one record from the front of `d`.
    pub(crate) fn decode(d: &mut Dec<'_>) -> Result<Record, DecodeError> {
        let tag = d.u8()?;
        Ok(match tag {
            T_MID_HIGH_WATER => Record::MidHighWater { next: d.u64()? },
            T_QUEUE_CREATE => Record::QueueCreate {
                id: d.u32()?,
                key: QueueKey { delivery_type: d.str()?, next_hop_domain: d.str()?, next_hop_connector: d.str()? },
            },
            T_QUEUE_DELETE => Record::QueueDelete { id: d.u32()? },
            T_QUEUE_SUSPEND => Record::QueueSuspend { id: d.u32()?, suspended: d.u8()? != 0 },
            T_ENQUEUE => Record::Enqueue {
                mid: d.u64()?,
                queue: d.u32()?,
                envelope: decode_envelope(d)?.into(),
                body: BodyRef { generation: d.u32()?, offset: d.u64()?, len: d.u64()?, crc: d.u32()? },
            },
            T_ROUTE => {
                let mid = d.u64()?;
                let from = d.u32()?;
                let n = d.u32()? as usize;
                let mut copies = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let q = d.u32()?;
                    let m = d.u32()? as usize;
                    let mut rcpts = Vec::with_capacity(m.min(1024));
                    for _ in 0..m {
                        rcpts.push(d.u32()?);
                    }
                    copies.push((q, rcpts));
                }
                Record::Route { mid, from, copies }
            }
            T_DEFER => Record::Defer {
                mid: d.u64()?,
                queue: d.u32()?,
                retry_count: d.u32()?,
                next_retry_ms: d.i64()?,
                last_error: d.str()?,
            },
            T_COPY_DONE => Record::CopyDone { mid: d.u64()?, queue: d.u32()? },
            T_RELOCATE => Record::Relocate {
                mid: d.u64()?,
                body: BodyRef { generation: d.u32()?, offset: d.u64()?, len: d.u64()?, crc: d.u32()? },
            },
            T_DELAY_NOTIFIED => Record::DelayNotified { mid: d.u64()? },
            T_MESSAGE_SUSPEND => Record::MessageSuspend { mid: d.u64()?, queue: d.u32()?, suspended: d.u8()? != 0 },
            T_CRASH_COUNT => Record::CrashCount { mid: d.u64()?, count: d.u32()? },
            T_COPY_DELIVERED => {
                Record::CopyDelivered { mid: d.u64()?, queue: d.u32()?, at_ms: d.i64()?, delivered: decode_indices(d)? }
            }
            T_SAFETY_NET_ENTRY => {
                let mid = d.u64()?;
                let envelope = decode_envelope(d)?.into();
                let body = BodyRef { generation: d.u32()?, offset: d.u64()?, len: d.u64()?, crc: d.u32()? };
                let n = d.u32()? as usize;
                let mut delivered = Deliveries::new();
                for _ in 0..n {
                    delivered.push(Delivery { at_ms: d.i64()?, recipients: decode_indices(d)? });
                }
                Record::SafetyNetEntry { mid, entry: Box::new(SafetyNetEntry { envelope, body, delivered }) }
            }
            T_RECIPIENTS_DELIVERED => {
                Record::RecipientsDelivered { mid: d.u64()?, at_ms: d.i64()?, delivered: decode_indices(d)? }
            }
            T_SCANNED | T_SCANNED_TESTS => {
                let mid = d.u64()?;
                let mut scan =
                    Scan { scl: d.u8()? as i8, score_tenths: d.u32()? as u16 as i16, done: d.u8()?, tests: None };
                if tag == T_SCANNED_TESTS {
                    scan.tests = crate::intern_tests(d.str()?.split(','));
                }
                Record::Scanned { mid, scan }
            }
            T_QUARANTINE => Record::Quarantine {
                mid: d.u64()?,
                at_ms: d.i64()?,
                stage: ScanStage::from_u8(d.u8()?)?,
                reason: d.str()?,
            },
            t => return Err(DecodeError::BadTag(t)),
        })
    }
}

fn encode_indices(e: &mut Enc<'_>, indices: &[u32]) {
    e.u32(indices.len() as u32);
    for i in indices {
        e.u32(*i);
    }
}

fn decode_indices(d: &mut Dec<'_>) -> Result<RecipientIndices, DecodeError> {
    let n = d.u32()? as usize;
    let mut indices = RecipientIndices::with_capacity(n.min(1024));
    for _ in 0..n {
        indices.push(d.u32()?);
    }
    Ok(indices)
}

impl Envelope {
    /// The envelope in the queue database's own encoding (a cluster node's shadow copies carry it).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        encode_envelope(&mut Enc(&mut out), self);
        out
    }

    /// An envelope from [`Envelope::to_bytes`]; `None` when the bytes are not one, whole.
    pub fn from_bytes(bytes: &[u8]) -> Option<Envelope> {
        let mut d = Dec::new(bytes);
        let envelope = decode_envelope(&mut d).ok()?;
        d.is_empty().then_some(envelope)
    }
}

fn encode_envelope(e: &mut Enc<'_>, env: &Envelope) {
    e.str(env.from_address());
    e.u32(env.recipient_count() as u32);
    for r in env.recipients() {
        e.str(r.address);
        e.opt_str(r.notify);
        e.opt_str(r.orcpt);
    }
    e.opt_str(env.ret());
    e.opt_str(env.env_id());
    // Bits 2-3 the priority, bit 4 originating: envelopes written before those were kept read as Normal
    // and Incoming.
    let traits = (env.priority().bits() << 2) | (u8::from(env.originating()) << 4);
    e.u8(u8::from(env.smtputf8) | (u8::from(env.body_8bit) << 1) | traits);
    e.str(env.source_name());
    e.str(env.source_ip());
    e.i64(env.received_at_ms);
    e.opt_str(env.internet_message_id());
    e.opt_str(env.subject());
}

fn decode_envelope(d: &mut Dec<'_>) -> Result<Envelope, DecodeError> {
    let from = d.str()?;
    let n = d.u32()? as usize;
    let mut recipients = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        recipients.push(Recipient { address: d.str()?, notify: d.opt_str()?, orcpt: d.opt_str()? });
    }
    let ret = d.opt_str()?;
    let env_id = d.opt_str()?;
    let flags = d.u8()?;
    Ok(Envelope::from(EnvelopeParts {
        from,
        recipients,
        ret,
        env_id,
        smtputf8: flags & 1 != 0,
        body_8bit: flags & 2 != 0,
        source_name: d.str()?,
        source_ip: d.str()?,
        received_at_ms: d.i64()?,
        internet_message_id: d.opt_str()?,
        subject: d.opt_str()?,
        priority: Priority::from_bits(flags >> 2),
        originating: flags & (1 << 4) != 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_records() -> Vec<Record> {
        vec![
            Record::MidHighWater { next: 10_000 },
            Record::QueueCreate {
                id: 16,
                key: QueueKey {
                    delivery_type: "SmartHostConnectorDelivery".into(),
                    next_hop_domain: "[127.0.0.1]:2526".into(),
                    next_hop_connector: "4520e633-d83d-411a-bbe4-6a84648674ee".into(),
                },
            },
            Record::QueueDelete { id: 17 },
            Record::QueueSuspend { id: 16, suspended: true },
            Record::Enqueue {
                mid: 7,
                queue: SUBMISSION,
                envelope: std::sync::Arc::new(Envelope::from(crate::envelope::tests::sample())),
                body: BodyRef { generation: 3, offset: 4096, len: 100, crc: 0xdead_beef },
            },
            Record::Route { mid: 7, from: SUBMISSION, copies: vec![(16, vec![0]), (UNREACHABLE, vec![1])] },
            Record::Defer { mid: 7, queue: 16, retry_count: 2, next_retry_ms: -5, last_error: "421 busy".into() },
            Record::CopyDone { mid: 7, queue: 16 },
            Record::Relocate { mid: 7, body: BodyRef { generation: 9, offset: 28, len: 100, crc: 1 } },
            Record::DelayNotified { mid: 7 },
            Record::MessageSuspend { mid: 7, queue: 16, suspended: true },
            Record::CrashCount { mid: 7, count: 2 },
            Record::Scanned {
                mid: 7,
                scan: Scan { scl: 9, score_tenths: -32768, done: 3 | Scan::UNSCANNED, tests: None },
            },
            Record::Scanned {
                mid: 7,
                scan: Scan { scl: 9, score_tenths: 52, done: 1, tests: crate::intern_tests(["GTUBE", "MISSING_DATE"]) },
            },
            Record::Scanned { mid: 7, scan: Scan::NONE },
            Record::Quarantine { mid: 7, at_ms: -5, stage: ScanStage::Antivirus, reason: "virus Eicar".into() },
            Record::CopyDelivered {
                mid: 7,
                queue: 16,
                at_ms: 1_795_326_845_000,
                delivered: RecipientIndices::from_slice(&[0, 2]),
            },
            Record::CopyDelivered { mid: 8, queue: 17, at_ms: -1, delivered: (0..9).collect() },
            Record::SafetyNetEntry {
                mid: 7,
                entry: Box::new(SafetyNetEntry {
                    envelope: std::sync::Arc::new(Envelope::from(crate::envelope::tests::sample())),
                    body: BodyRef { generation: 3, offset: 4096, len: 100, crc: 0xdead_beef },
                    delivered: [
                        Delivery { at_ms: 5, recipients: RecipientIndices::from_slice(&[1]) },
                        Delivery { at_ms: 6, recipients: RecipientIndices::from_slice(&[0, 2]) },
                    ]
                    .into_iter()
                    .collect(),
                }),
            },
            Record::RecipientsDelivered { mid: 7, at_ms: 9, delivered: RecipientIndices::from_slice(&[3]) },
        ]
    }

    #[test]
    fn every_record_round_trips() {
        for r in sample_records() {
            let mut buf = Vec::new();
            r.encode(&mut buf);
            let mut d = Dec::new(&buf);
            assert_eq!(Record::decode(&mut d).unwrap(), r);
            assert!(d.is_empty());
        }
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        for r in sample_records() {
            let mut buf = Vec::new();
            r.encode(&mut buf);
            for cut in 0..buf.len() {
                let mut d = Dec::new(&buf[..cut]);
                assert!(Record::decode(&mut d).is_err(), "{r:?} cut at {cut}");
            }
        }
    }
}
