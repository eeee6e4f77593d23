//! The delivery seam: the traits a delivery agent (SMTP, LMTP, Maildir, in another crate) implements, and the
//! message copy and per-recipient outcomes that cross it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sluice_queue_db::{Envelope, Mid, RecipientRef};

use crate::routing::Target;

/// A boxed future, for the object-safe agent traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One message copy on its way out.
#[derive(Debug)]
pub struct Outbound {
    pub mid: Mid,
    pub envelope: Arc<Envelope>,
    /// The envelope recipients this copy is for: indices into the envelope's recipients.
    pub indices: Vec<u32>,
    /// Read a piece at a time while it is sent: a delivery never holds a large body whole.
    pub body: sluice_queue_db::BodySource,
}

impl Outbound {
    /// The recipients this copy is for, with their DSN parameters, in the order of `indices`.
    pub fn recipients(&self) -> impl ExactSizeIterator<Item = RecipientRef<'_>> + '_ {
        self.indices.iter().map(|i| {
            self.envelope.recipient(*i as usize).unwrap_or(RecipientRef { address: "", notify: None, orcpt: None })
        })
    }
}

/// What the next hop said about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientOutcome {
    Delivered(String),
    Transient(String),
    Permanent(String),
}

/// Opens connections to next hops.
pub trait DeliveryAgent: Send + Sync + 'static {
    /// Connects to the target; an error is a queue-level transient failure.
    fn connect<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Box<dyn DeliveryConnection>, String>>;
}

/// An open connection that can deliver messages one after another.
pub trait DeliveryConnection: Send {
    /// Delivers one copy; one outcome per recipient in order. An error means the session failed as a whole
    /// (nothing was delivered by this call) and the connection is unusable.
    fn deliver<'a>(&'a mut self, msg: &'a Outbound) -> BoxFuture<'a, Result<Vec<RecipientOutcome>, String>>;
    /// Ends the session politely.
    fn quit(self: Box<Self>) -> BoxFuture<'static, ()>;
}
