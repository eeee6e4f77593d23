//! What the queue database's live state costs per queued message, counted by the allocator (B4 in
//! docs/benchmarks.md: ≤ 512 B resident per queued one-recipient message, of which this state is one part and the
//! transport's queues the other). A test binary of its own: the counter sees only this test.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use sluice_queue_db::{BodyRef, Envelope, EnvelopeParts, Recipient, Record, SUBMISSION, State};

/// Bytes requested and not yet freed.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is passed to the system allocator unchanged; only a counter is kept beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The counter is global: the tests take turns, or each counts the other's allocations too.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_queued_message_costs_the_state_about_300_bytes() {
    const N: u64 = 20_000;
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut state = State::default();
    let before = LIVE.load(Ordering::Relaxed);
    for mid in 1..=N {
        let envelope = Envelope::from(EnvelopeParts {
            from: format!("sender{mid}@source.example"),
            recipients: vec![Recipient { address: format!("rcpt{mid}@dest.example"), notify: None, orcpt: None }],
            source_name: "SMTP:Default".into(),
            source_ip: "192.0.2.1".into(),
            internet_message_id: Some(format!("<{mid}.abc@source.example>")),
            ..EnvelopeParts::default()
        });
        let body = BodyRef { generation: 1, offset: mid * 1400, len: 1300, crc: 0 };
        state.apply(&Record::Enqueue { mid, queue: SUBMISSION, envelope: Arc::new(envelope), body });
        state.apply(&Record::Route { mid, from: SUBMISSION, copies: vec![(16, vec![0])] });
        state.apply(&Record::Defer {
            mid,
            queue: 16,
            retry_count: 1,
            next_retry_ms: 1,
            last_error: "451 4.4.1 connection refused by the next hop".into(),
        });
    }
    let per_message = (LIVE.load(Ordering::Relaxed) - before) / N as isize;
    // 291 B when written: the envelope's Arc (48) and buffer (111 here: long test addresses), the boxed
    // record (96), the map (~30). A recipient Vec with spare capacity, as before, would add 200.
    eprintln!("live state: {per_message} B per queued message");
    assert!(per_message <= 320, "the live state costs {per_message} B per queued message");
    assert_eq!(state.messages.len(), N as usize);
}

/// What a delivered message costs while the Safety Net holds it (for `safety_net_hold_time`, two days by
/// default): docs/queue-database.md, "The Safety Net index", gives the figure and what it means per day of
/// mail.
#[test]
fn a_safety_net_entry_costs_the_state_about_270_bytes() {
    const N: u64 = 20_000;
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut state = State::default();
    let before = LIVE.load(Ordering::Relaxed);
    for mid in 1..=N {
        let envelope = Envelope::from(EnvelopeParts {
            from: format!("sender{mid}@source.example"),
            recipients: vec![Recipient { address: format!("rcpt{mid}@dest.example"), notify: None, orcpt: None }],
            source_name: "SMTP:Default".into(),
            source_ip: "192.0.2.1".into(),
            internet_message_id: Some(format!("<{mid}.abc@source.example>")),
            ..EnvelopeParts::default()
        });
        let body = BodyRef { generation: 1, offset: mid * 1400, len: 1300, crc: 0 };
        state.apply(&Record::Enqueue { mid, queue: SUBMISSION, envelope: Arc::new(envelope), body });
        state.apply(&Record::Route { mid, from: SUBMISSION, copies: vec![(16, vec![0])] });
        let delivered = sluice_queue_db::RecipientIndices::from_slice(&[0]);
        state.apply(&Record::CopyDelivered { mid, queue: 16, at_ms: 1_795_326_845_000, delivered });
    }
    assert!(state.messages.is_empty());
    assert_eq!(state.safety_net.len(), N as usize);
    let per_entry = (LIVE.load(Ordering::Relaxed) - before) / N as isize;
    // 267 B when written: the envelope the message had (its Arc, 48, and buffer, 111 here), the boxed
    // entry (72) and the map (~35); the live message's record (96) and copy are freed.
    eprintln!("Safety Net: {per_entry} B per delivered message");
    assert!(per_entry <= 290, "a Safety Net entry costs {per_entry} B");
}
