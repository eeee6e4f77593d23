//! What a commit waits for: at a low, steady rate each commit should cost its own frame's fdatasync and
//! nothing else. A file created and two syncs on the commit path (a new generation opened when the first
//! body needed it) made about one acceptance in a hundred wait for far longer than a sync (B2's tail).

use std::sync::Arc;
use std::time::Duration;

use sluice_queue_db::sim::SimStorage;
use sluice_queue_db::{Options, QueueDb, SUBMISSION, Storage};

use crate::envelope;

#[test]
fn a_commit_that_opens_a_generation_waits_for_one_sync_only() {
    // No maintenance while the test counts: whatever is synced is the commit's.
    let opts = Options { maintenance_interval: Duration::from_secs(3600), ..Options::default() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sim = SimStorage::new();
    let (db, _, _) = QueueDb::open(Arc::new(sim.process()), opts).unwrap();
    rt.block_on(async {
        // The writer's start, with what it prepares (the spare generation), is over once the syncs settle.
        db.commit(vec![]).await.unwrap();
        let generations = || sim.list().unwrap().iter().filter(|n| n.ends_with(".que")).count();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let seen = sim.syncs();
            tokio::time::sleep(Duration::from_millis(50)).await;
            if generations() > 0 && sim.syncs() == seen {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the writer's start never settled");
        }
        let (files_before, dir_before) = sim.syncs();
        let before = generations();
        let mid = db.allocate_mid();
        // The first body: its generation is opened now.
        db.enqueue(mid, SUBMISSION, envelope(mid), b"Subject: first\r\n\r\nbody\r\n".to_vec()).await.unwrap();
        let (files, dirs) = sim.syncs();
        assert_eq!(files - files_before, 1, "one fdatasync: the frame's");
        assert_eq!(dirs - dir_before, 0, "no directory sync");
        assert_eq!(generations(), before, "no file created");
    });
}
