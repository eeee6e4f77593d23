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
