//! What a node of a cluster adds to the transport: per-next-hop connection leases shared with the other
//! nodes, a shadow copy of every message before it is acknowledged, word of each message's final
//! disposition (so that its shadow copy can go), and drain. The `sluice-cluster` crate implements
//! [`ClusterHooks`] over Redis and PostgreSQL; without `[cluster]` there are no hooks and none of this runs.

use std::sync::Arc;

use sluice_queue_db::{Envelope, Mid};

use crate::agent::BoxFuture;

/// A connection lease: held while a delivery connection to its next hop is open, given back when dropped.
pub type Lease = Box<dyn std::any::Any + Send>;

/// The cluster's side of the transport.
pub trait ClusterHooks: Send + Sync + std::fmt::Debug + 'static {
    /// Waits for one of the cluster's `limit` connections to next-hop `domain`.
    fn lease(&self, domain: &str, limit: usize) -> BoxFuture<'static, Lease>;

    /// Whether a worker (of any node) waits for one of `domain`'s connections: an idle one then closes.
    fn lease_wanted(&self, domain: &str) -> BoxFuture<'static, bool>;

    /// Takes the next slot of next-hop `domain` at `per_minute` messages a minute for the whole cluster: how
    /// long to wait for it.
    fn throttle(&self, domain: &str, per_minute: u32) -> BoxFuture<'static, std::time::Duration>;

    /// Whether messages get shadow copies (PostgreSQL is configured).
    fn shadows(&self) -> bool;

    /// Writes the shadow copy of a message just committed locally. `Err` says why it was not written.
    fn shadow(&self, mid: Mid, envelope: Arc<Envelope>, body: Vec<u8>) -> BoxFuture<'static, Result<(), String>>;

    /// `mid` was finally disposed of (delivered, bounced, expired or removed): its shadow copy may go. Called
    /// under the queues' lock: it must not block.
    fn disposed(&self, mid: Mid);

    /// Whether a message that could not be shadowed is refused (`451 4.4.0`) rather than accepted unshadowed.
    fn reject_on_shadow_failure(&self) -> bool;
}
