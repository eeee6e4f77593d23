//! Delivery by next hop, in two parts: [`agent`], the seam a delivery agent (SMTP, LMTP, Maildir, in another
//! crate) implements, and [`worker`], the delivery queues' workers that drive it.

mod agent;
mod worker;

pub use agent::{
    BoxFuture, DeliveryAgent, DeliveryConnection, DeliveryError, Opening, Outbound, RecipientOutcome, reply_line,
};
pub(crate) use worker::{kick, release_due};
