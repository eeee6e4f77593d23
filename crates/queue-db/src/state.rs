//! The live state that the log describes: the queues and the messages in them. Recovery rebuilds it by
//! applying every record in log order; the same `apply` is used by tests as the reference.

use std::collections::BTreeMap;

use crate::record::{BodyRef, Envelope, Mid, QueueId, QueueKey, Record};

/// A message with at least one copy still in a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub mid: Mid,
    pub envelope: std::sync::Arc<Envelope>,
    pub body: BodyRef,
    pub copies: Vec<StoredCopy>,
}

/// The copy of a message in one queue, with the recipients it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCopy {
    pub queue: QueueId,
    /// Indices into the envelope's recipients.
    pub recipients: Vec<u32>,
    pub retry_count: u32,
    /// Wall-clock time of the next attempt (ms since the epoch); 0 = now.
    pub next_retry_ms: i64,
    pub last_error: String,
}

/// A delivery queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredQueue {
    pub key: QueueKey,
}

/// Everything recovery rebuilt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub messages: BTreeMap<Mid, StoredMessage>,
    pub queues: BTreeMap<QueueId, StoredQueue>,
    /// Queues (persistent or delivery) that an administrator suspended.
    pub suspended: BTreeMap<QueueId, bool>,
    /// No MID below this has ever been handed out.
    pub next_mid: Mid,
}

impl State {
    /// Applies one committed record.
    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::MidHighWater { next } => self.next_mid = self.next_mid.max(*next),
            Record::QueueCreate { id, key } => {
                self.queues.insert(*id, StoredQueue { key: key.clone() });
            }
            Record::QueueDelete { id } => {
                self.queues.remove(id);
                self.suspended.remove(id);
            }
            Record::QueueSuspend { id, suspended } => {
                if *suspended {
                    self.suspended.insert(*id, true);
                } else {
                    self.suspended.remove(id);
                }
            }
            Record::Enqueue { mid, queue, envelope, body } => {
                self.next_mid = self.next_mid.max(mid + 1);
                let copy = StoredCopy {
                    queue: *queue,
                    recipients: (0..envelope.recipients.len() as u32).collect(),
                    retry_count: 0,
                    next_retry_ms: 0,
                    last_error: String::new(),
                };
                self.messages.insert(
                    *mid,
                    StoredMessage { mid: *mid, envelope: envelope.clone(), body: *body, copies: vec![copy] },
                );
            }
            Record::Route { mid, from, copies } => {
                if let Some(m) = self.messages.get_mut(mid) {
                    m.copies.retain(|c| c.queue != *from);
                    for (queue, recipients) in copies {
                        m.copies.push(StoredCopy {
                            queue: *queue,
                            recipients: recipients.clone(),
                            retry_count: 0,
                            next_retry_ms: 0,
                            last_error: String::new(),
                        });
                    }
                    if m.copies.is_empty() {
                        self.messages.remove(mid);
                    }
                }
            }
            Record::Defer { mid, queue, retry_count, next_retry_ms, last_error } => {
                if let Some(c) =
                    self.messages.get_mut(mid).and_then(|m| m.copies.iter_mut().find(|c| c.queue == *queue))
                {
                    c.retry_count = *retry_count;
                    c.next_retry_ms = *next_retry_ms;
                    c.last_error.clone_from(last_error);
                }
            }
            Record::Relocate { mid, body } => {
                if let Some(m) = self.messages.get_mut(mid) {
                    m.body = *body;
                }
            }
            Record::CopyDone { mid, queue } => {
                if let Some(m) = self.messages.get_mut(mid) {
                    m.copies.retain(|c| c.queue != *queue);
                    if m.copies.is_empty() {
                        self.messages.remove(mid);
                    }
                }
            }
        }
    }

    /// Records that recreate this state from nothing, in an order `apply` accepts.
    pub(crate) fn to_records(&self, high_water: Mid) -> Vec<Record> {
        let mut out = vec![Record::MidHighWater { next: high_water }];
        for (id, q) in &self.queues {
            out.push(Record::QueueCreate { id: *id, key: q.key.clone() });
        }
        for id in self.suspended.keys() {
            out.push(Record::QueueSuspend { id: *id, suspended: true });
        }
        for m in self.messages.values() {
            // Enqueue into a queue no copy uses, then route to the real copies.
            let staging = QueueId::MAX;
            out.push(Record::Enqueue { mid: m.mid, queue: staging, envelope: m.envelope.clone(), body: m.body });
            out.push(Record::Route {
                mid: m.mid,
                from: staging,
                copies: m.copies.iter().map(|c| (c.queue, c.recipients.clone())).collect(),
            });
            for c in m.copies.iter().filter(|c| c.retry_count > 0 || !c.last_error.is_empty() || c.next_retry_ms != 0) {
                out.push(Record::Defer {
                    mid: m.mid,
                    queue: c.queue,
                    retry_count: c.retry_count,
                    next_retry_ms: c.next_retry_ms,
                    last_error: c.last_error.clone(),
                });
            }
        }
        out
    }
}
