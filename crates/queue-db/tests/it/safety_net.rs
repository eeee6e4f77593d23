//! The Safety Net under disk pressure: delivered copies give way, oldest finish first, until the space asked
//! for is free; a generation still taking bodies is closed so that it can go; live messages stay.

use std::sync::Arc;
use std::time::Duration;

use sluice_queue_db::sim::SimStorage;
use sluice_queue_db::{Options, QueueDb, Record, SUBMISSION, Storage};

use crate::envelope;

/// Generation files holding frames (not the empty one the writer creates ahead of need).
fn generations(sim: &SimStorage) -> usize {
    let header = 32;
    sim.list()
        .unwrap()
        .iter()
        .filter(|n| n.ends_with(".que") && sim.contents(n).is_some_and(|c| c.len() > header))
        .count()
}

#[test]
fn disk_pressure_evicts_the_oldest_delivered_copies_first_and_never_a_live_message() {
    let opts = Options {
        // A new generation for each group of messages below (each takes far less than this, even on a loaded
        // machine); a hold no test waits for.
        generation_interval: Duration::from_secs(1),
        safety_net_hold: Duration::from_secs(2 * 86_400),
        // A small log, so that the checkpoint an eviction takes frees little beside the generations.
        logging_file_size: 64 << 10,
        ..Options::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sim = SimStorage::new();
    sim.set_capacity(Some(64 << 20));
    let (db, _, _) = QueueDb::open(Arc::new(sim.process()), opts).unwrap();
    let body = |mid: u64| vec![b'a' + (mid % 26) as u8; 100_000];
    rt.block_on(async {
        let group = || async {
            let mut mids = Vec::new();
            for _ in 0..20 {
                let mid = db.allocate_mid();
                let at = db.enqueue(mid, SUBMISSION, envelope(mid), body(mid)).await.unwrap();
                mids.push((mid, at));
            }
            tokio::time::sleep(Duration::from_millis(1_050)).await;
            mids
        };
        let (older, newer) = (group().await, group().await);
        let live = group().await;
        let generation_of = |mids: &[(u64, sluice_queue_db::BodyRef)]| {
            let gens: std::collections::BTreeSet<u32> = mids.iter().map(|(_, at)| at.generation).collect();
            assert_eq!(gens.len(), 1, "a group spans generations: {gens:?}");
            gens.into_iter().next().unwrap()
        };
        let (older_gen, newer_gen) = (generation_of(&older), generation_of(&newer));
        assert!(older_gen != newer_gen && newer_gen != generation_of(&live));
        let finish = |mids: Vec<(u64, sluice_queue_db::BodyRef)>| {
            let db = db.clone();
            async move {
                let done = mids.iter().map(|(m, _)| Record::CopyDone { mid: *m, queue: SUBMISSION }).collect();
                db.commit(done).await.unwrap();
            }
        };
        // The newer generation's copies are delivered first: they are the oldest Safety Net copies.
        let before_first_finish = sluice_queue_db::time::now_ms();
        finish(newer).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        finish(older).await;
        assert_eq!(generations(&sim), 3, "held for two days");

        // Room for half a generation (2 MB each): exactly one goes, the one delivered first.
        let free = db.free_space().unwrap();
        let ev = db.evict_safety_net(free + 1_000_000).await.unwrap();
        assert_eq!(ev.generations, 1, "{ev:?}");
        assert!(ev.bytes >= 2_000_000, "{ev:?}");
        assert!(ev.held_since >= before_first_finish && ev.held_since <= sluice_queue_db::time::now_ms(), "{ev:?}");
        assert!(!ev.empty);
        assert_eq!(generations(&sim), 2);
        let names = sim.list().unwrap();
        let has = |g: u32| names.iter().any(|n| n.ends_with(&format!("-{g}.que")));
        assert!(!has(newer_gen) && has(older_gen), "the generation delivered first went: {names:?}");

        // The rest: the live generation, still taking bodies and holding no delivered copy, stays open.
        let ev = db.evict_safety_net(u64::MAX).await.unwrap();
        assert_eq!(ev.generations, 1, "{ev:?}");
        assert!(ev.empty, "{ev:?}");
        assert_eq!(generations(&sim), 1);

        // One copy of the live generation delivered: it is closed, but kept while the others are live.
        finish(live[..1].to_vec()).await;
        let ev = db.evict_safety_net(u64::MAX).await.unwrap();
        assert_eq!(ev.generations, 0, "{ev:?}");
        for (mid, at) in &live[1..] {
            assert_eq!(db.read_body_of(*mid, at).unwrap(), body(*mid), "live message {mid}");
        }
        // Once they are delivered, it goes.
        finish(live[1..].to_vec()).await;
        let ev = db.evict_safety_net(u64::MAX).await.unwrap();
        assert_eq!(ev.generations, 1, "{ev:?}");
        assert_eq!(generations(&sim), 0);
    });
}

/// The Safety Net index: a delivered copy is found by a query, comes back after a crash (from the log) and
/// after a clean stop (from the checkpoint), and goes when its generation is evicted, also after a restart.
#[test]
fn the_safety_net_index_survives_restarts_and_goes_with_its_generation() {
    use sluice_queue_db::{RecipientIndices, SafetyNetFilter, time::now_ms};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sim = SimStorage::new();
    let open = || QueueDb::open(Arc::new(sim.process()), Options::default()).unwrap();
    let (db, _, _) = open();
    let start = now_ms();
    let mids = rt.block_on(async {
        let mut mids = Vec::new();
        for _ in 0..3 {
            let mid = db.allocate_mid();
            db.enqueue(mid, SUBMISSION, Arc::new(envelope(mid)), b"body".to_vec()).await.unwrap();
            mids.push(mid);
        }
        let delivered = RecipientIndices::from_slice(&[0]);
        db.commit(vec![
            Record::CopyDelivered { mid: mids[0], queue: SUBMISSION, at_ms: now_ms(), delivered: delivered.clone() },
            Record::CopyDelivered { mid: mids[1], queue: SUBMISSION, at_ms: now_ms(), delivered },
            // Failed, not delivered: not in the index.
            Record::CopyDone { mid: mids[2], queue: SUBMISSION },
        ])
        .await
        .unwrap();
        mids
    });
    let window = SafetyNetFilter { start_ms: start, end_ms: now_ms() + 1, ..SafetyNetFilter::default() };
    let found = |db: &QueueDb, filter: &SafetyNetFilter| -> Vec<u64> {
        rt.block_on(db.safety_net(filter.clone())).unwrap().into_iter().map(|c| c.mid).collect()
    };
    assert_eq!(found(&db, &window), mids[..2]);
    let of_sender = SafetyNetFilter { sender: Some(format!("SENDER{}@example.test", mids[1])), ..window.clone() };
    assert_eq!(found(&db, &of_sender), [mids[1]]);
    let copy = rt.block_on(db.safety_net(of_sender.clone())).unwrap().remove(0);
    assert_eq!(db.read_body_of(copy.mid, &copy.body).unwrap(), b"body");
    assert_eq!(copy.envelope.from_address(), format!("sender{}@example.test", mids[1]));

    // A power loss that keeps only what was synced: the deliveries are in the log, not in a checkpoint.
    sim.crash(|_, _| false);
    drop(db);
    let (db, state, _) = open();
    assert!(state.messages.is_empty());
    assert_eq!(state.safety_net.keys().copied().collect::<Vec<_>>(), mids[..2]);
    assert_eq!(found(&db, &of_sender), [mids[1]]);
    // A clean stop: from the checkpoint alone.
    rt.block_on(db.close());
    let (db, state, _) = open();
    assert_eq!(state.safety_net.keys().copied().collect::<Vec<_>>(), mids[..2]);
    assert_eq!(found(&db, &window), mids[..2]);

    // Disk pressure retires the generation: its copies leave the index, now and after a restart (the
    // checkpoint the eviction took first still listed them).
    let ev = rt.block_on(db.evict_safety_net(u64::MAX)).unwrap();
    assert!(ev.generations >= 1 && ev.empty, "{ev:?}");
    assert_eq!(found(&db, &window), Vec::<u64>::new());
    sim.crash(|_, _| false);
    drop(db);
    let (db, state, _) = open();
    assert!(state.safety_net.is_empty(), "{:?}", state.safety_net.keys());
    assert_eq!(found(&db, &window), Vec::<u64>::new());
    rt.block_on(db.close());
}
