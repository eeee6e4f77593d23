//! Integration tests of the queue database through its public API.

mod crash;
mod latency;
mod records;
mod safety_net;

use sluice_queue_db::{Envelope, EnvelopeParts, Recipient};

/// A one-recipient envelope named after its MID.
fn envelope(mid: u64) -> Envelope {
    Envelope::from(EnvelopeParts {
        from: format!("sender{mid}@example.test"),
        recipients: vec![Recipient { address: format!("rcpt{mid}@example.test"), notify: None, orcpt: None }],
        source_name: "SMTP:Default".into(),
        ..EnvelopeParts::default()
    })
}
