//! Records beside the messages through recovery: the delay notice's mark and the work queue's verdicts (with
//! the rules that hit) come back from the log after a crash and from the checkpoint after a clean stop, and
//! go with their message.

use std::sync::Arc;

use sluice_queue_db::sim::SimStorage;
use sluice_queue_db::{Options, QueueDb, Record, SUBMISSION, Scan, intern_tests};

use crate::envelope;

#[test]
fn a_delay_mark_comes_back_from_the_log_after_a_crash_and_from_the_checkpoint_and_goes_with_its_message() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sim = SimStorage::new();
    let (db, _, _) = QueueDb::open(Arc::new(sim.process()), Options::default()).unwrap();
    let (first, second) = rt.block_on(async {
        let mut mids = Vec::new();
        for _ in 0..2 {
            let mid = db.allocate_mid();
            db.enqueue(mid, SUBMISSION, Arc::new(envelope(mid)), b"body".to_vec()).await.unwrap();
            mids.push(mid);
        }
        db.commit(vec![Record::DelayNotified { mid: mids[0] }]).await.unwrap();
        (mids[0], mids[1])
    });
    // A power loss that keeps only what was synced: the mark is in the log, not in a checkpoint.
    sim.crash(|_, _| false);
    drop(db);
    let (db, state, _) = QueueDb::open(Arc::new(sim.process()), Options::default()).unwrap();
    assert_eq!(state.delay_notified.iter().copied().collect::<Vec<_>>(), [first]);
    assert!(state.messages.contains_key(&second));
    // A clean stop writes a checkpoint, which keeps the mark.
    rt.block_on(db.close());
    let (db, state, _) = QueueDb::open(Arc::new(sim.process()), Options::default()).unwrap();
    assert_eq!(state.delay_notified.iter().copied().collect::<Vec<_>>(), [first]);
    rt.block_on(async {
        db.commit(vec![Record::CopyDone { mid: first, queue: SUBMISSION }]).await.unwrap();
        db.close().await;
    });
    let (db, state, _) = QueueDb::open(Arc::new(sim.process()), Options::default()).unwrap();
    assert!(state.delay_notified.is_empty(), "the mark went with its message");
    assert!(!state.messages.contains_key(&first));
    rt.block_on(db.close());
}

#[test]
fn the_verdicts_and_the_rules_hit_come_back_from_the_log_and_the_checkpoint_and_go_with_their_message() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sim = SimStorage::new();
    let (db, _, _) = QueueDb::open(Arc::new(sim.process()), Options::default()).unwrap();
    let hit = Scan { scl: 6, score_tenths: 61, done: 3, tests: intern_tests(["BAYES_99", "R_SPF_FAIL"]) };
    let none = Scan { scl: 0, score_tenths: -9, done: 1, tests: None };
    let mids = rt.block_on(async {
        let mut mids = Vec::new();
        for _ in 0..2 {
            let mid = db.allocate_mid();
            db.enqueue(mid, SUBMISSION, Arc::new(envelope(mid)), b"body".to_vec()).await.unwrap();
            mids.push(mid);
        }
        db.commit(vec![
            Record::Scanned { mid: mids[0], scan: hit.clone() },
            Record::Scanned { mid: mids[1], scan: none.clone() },
        ])
        .await
        .unwrap();
        mids
    });
    let expect = |state: &sluice_queue_db::State| {
        assert_eq!(state.messages[&mids[0]].scan, hit);
        assert_eq!(state.messages[&mids[0]].scan.tests.as_deref().map(String::as_str), Some("BAYES_99,R_SPF_FAIL"));
        assert_eq!(state.messages[&mids[1]].scan, none);
    };
    sim.crash(|_, _| false);
    drop(db);
    let (db, state, _) = QueueDb::open(Arc::new(sim.process()), Options::default()).unwrap();
    expect(&state);
    rt.block_on(db.close());
    let (db, state, _) = QueueDb::open(Arc::new(sim.process()), Options::default()).unwrap();
    expect(&state);
    rt.block_on(async {
        db.commit(vec![Record::CopyDone { mid: mids[0], queue: SUBMISSION }]).await.unwrap();
        db.close().await;
    });
    let (db, state, _) = QueueDb::open(Arc::new(sim.process()), Options::default()).unwrap();
    assert!(!state.messages.contains_key(&mids[0]), "the verdicts went with their message");
    assert_eq!(state.messages[&mids[1]].scan, none);
    rt.block_on(db.close());
}
