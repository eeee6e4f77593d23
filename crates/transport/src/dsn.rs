//! Delivery status notifications (RFC 3464): what the sender of a message is told when a recipient fails,
//! is delayed, or (asked with `NOTIFY=SUCCESS`) is delivered or relayed.
//!
//! SEAM: the builder and the submission of notices are being written; until then `notify` only logs.
#![allow(dead_code)]

use std::sync::Arc;

use sluice_queue_db::{BodyRef, Envelope, Mid};
use sluice_smtp::Reply;

use crate::Inner;

/// What became of a recipient, as a notice's `Action:` field says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Failed for good (a 5xx, no route, or expired).
    Failed,
    /// Not delivered yet (`delay_notification_timeout` passed); still tried.
    Delayed,
    /// Delivered to its mailbox.
    Delivered,
    /// Handed to a next hop that does not take DSN parameters.
    Relayed,
}

/// One recipient a notice covers.
#[derive(Debug, Clone)]
pub(crate) struct RecipientStatus {
    /// Its index among the envelope's recipients.
    pub(crate) index: u32,
    pub(crate) action: Action,
    /// The reply behind the status: the next hop's, or sluice's own (e.g. `4.4.7` for an expired message).
    pub(crate) reply: Reply,
    /// The next hop that gave the reply, if one did.
    pub(crate) remote_mta: Option<String>,
}

/// Tells the sender of `mid` what became of `statuses`' recipients: one notice per call, covering those of
/// them whose `NOTIFY=` asks for it. Nothing is sent for a message from the null sender.
pub(crate) async fn notify(
    inner: &Arc<Inner>,
    mid: Mid,
    envelope: &Arc<Envelope>,
    body: BodyRef,
    statuses: Vec<RecipientStatus>,
) {
    let _ = (inner, envelope, body);
    tracing::debug!(mid, recipients = statuses.len(), "delivery status notice not yet built");
}
