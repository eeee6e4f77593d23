//! The work queue (the mail security appliance's): between Submission and the categorizer, every message
//! goes through the `antispam` and then the `antivirus` stage. Scanning happens after the message is durably
//! queued, so a slow, paused or updating engine never blocks SMTP intake: messages wait in Submission.
//!
//! A message is taken from Submission by `run` when one of `concurrency` permits is free, and keeps its
//! Submission copy (in the queue database too) until the categorizer routes it: a crash during scanning
//! means the message is scanned again, never skipped. The verdicts so far are one [`Scan`] beside the
//! message (`Record::Scanned`, written before the categorizer's `Route`), so a stage that is done (or whose
//! quarantine an administrator released the message from) is not run again.
//!
//! A stage pauses while its engine's rule set is swapped (`Transport::install_antispam` and `install_antivirus`, for the swap only), while
//! an administrator pauses it, or while its engine is offline. A pause longer than
//! `work_queue_pause_alert_after` raises `work queue paused, <N> msgs, <stage>`, its end then raises
//! `work queue resumed, <N> msgs`, and one longer than `work_queue_stuck_after` raises
//! `work queue still paused after <time>, <N> msgs, <stage>` and makes the system status `Work Queue Paused`.

mod health;
mod pause;
mod quarantine;
mod rate;
pub mod remote;
mod run;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sluice_api_types as api;
use sluice_queue_db::Scan;
use sluice_queue_db::time::rfc3339;

pub(crate) use quarantine::Held;
pub(crate) use run::run;

use pause::StageCtl;
use remote::Remote;

/// What to do with a message that carries a virus (`[antivirus] virus_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirusAction {
    Quarantine,
    Drop,
    /// Replace each infected part with a notice and deliver the rest.
    Strip,
}

/// A rule or signature set in force, with its version.
#[derive(Debug)]
pub struct Installed<T> {
    pub set: Arc<T>,
    /// `builtin` for the set shipped in the binary, else the update's version.
    pub version: String,
    /// When it was installed (wall clock, ms); `None` for the shipped set.
    pub installed_ms: Option<i64>,
}

impl<T> Clone for Installed<T> {
    fn clone(&self) -> Self {
        Installed { set: self.set.clone(), version: self.version.clone(), installed_ms: self.installed_ms }
    }
}

/// The work queue's configuration (`[work_queue]`, `[antispam]`, `[antivirus]`, `[quarantine]`, and the
/// work-queue keys of `[alerts]`), with the sets the built-in engines start with, or the network engines
/// the stages use instead. A stage with neither is off.
#[derive(Debug, Clone)]
pub struct Settings {
    pub antispam: Option<Installed<RuleSet>>,
    pub antivirus: Option<Installed<Signatures>>,
    /// spamd or rspamd, instead of the built-in anti-spam engine.
    pub antispam_remote: Option<Arc<Remote>>,
    /// clamd, instead of the built-in anti-virus engine.
    pub antivirus_remote: Option<Arc<Remote>>,
    /// The version of the signature files an update last wrote for the network anti-virus engine.
    pub antivirus_remote_version: Option<String>,
    /// Messages scanned at once.
    pub concurrency: usize,
    /// `on_engine_failure = "pass"`: an engine that fails lets the message through, stamped unscanned.
    pub pass_on_failure: bool,
    pub scl_quarantine: u8,
    pub scl_delete: Option<u8>,
    pub virus_action: VirusAction,
    pub pause_alert_after: Duration,
    pub stuck_after: Duration,
    pub quarantine_retention: Duration,
}

impl Settings {
    /// Both stages off: the categorizer takes from Submission directly.
    pub fn off() -> Settings {
        Settings {
            antispam: None,
            antivirus: None,
            antispam_remote: None,
            antivirus_remote: None,
            antivirus_remote_version: None,
            concurrency: 1,
            pass_on_failure: false,
            scl_quarantine: 7,
            scl_delete: None,
            virus_action: VirusAction::Quarantine,
            pause_alert_after: Duration::from_secs(10),
            stuck_after: Duration::from_secs(15 * 60),
            quarantine_retention: Duration::from_secs(30 * 86_400),
        }
    }
}

/// What the updater last did for an engine.
#[derive(Debug, Clone, Default)]
struct Checked {
    at_ms: Option<i64>,
    error: Option<String>,
}

/// The work queue's state, shared by its runner, the categorizer, the updater and the admin API.
pub(crate) struct WorkQueue {
    settings: Settings,
    antispam: RwLock<Option<Installed<RuleSet>>>,
    antivirus: RwLock<Option<Installed<Signatures>>>,
    /// The version of the files an update gave each network engine (clamd's database directory).
    remote_version: Mutex<[Option<String>; 2]>,
    stages: [StageCtl; 2],
    checked: Mutex<[Checked; 2]>,
    /// Messages scanned and passed, for the categorizer, with their verdicts when they changed (the
    /// categorizer records them before the message's Route).
    scanned: Mutex<Vec<(crate::categorizer::Taken, Option<Scan>)>>,
    pub(crate) scanned_wake: tokio::sync::Notify,
    permits: Arc<tokio::sync::Semaphore>,
    /// Messages taken from Submission that the categorizer has not taken yet (scanning, waiting for a paused
    /// stage, or scanned): Submission's copies all the same.
    in_process: AtomicU64,
    /// Messages that entered and left the work queue since start.
    entered: AtomicU64,
    left: AtomicU64,
    rate: Mutex<rate::History>,
    quarantine: Mutex<quarantine::Quarantine>,
    /// Update requests (`POST /api/v1/engines/{engine}/update`), for the updater.
    update_tx: tokio::sync::mpsc::UnboundedSender<(ScanStage, bool)>,
    update_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<(ScanStage, bool)>>>,
}

impl std::fmt::Debug for WorkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkQueue").finish_non_exhaustive()
    }
}

impl WorkQueue {
    pub(crate) fn new(settings: Settings, quarantined: Vec<(sluice_queue_db::Mid, Held)>) -> WorkQueue {
        let (update_tx, update_rx) = tokio::sync::mpsc::unbounded_channel();
        WorkQueue {
            antispam: RwLock::new(settings.antispam.clone()),
            antivirus: RwLock::new(settings.antivirus.clone()),
            remote_version: Mutex::new([None, settings.antivirus_remote_version.clone()]),
            stages: [StageCtl::new(ScanStage::Antispam), StageCtl::new(ScanStage::Antivirus)],
            checked: Mutex::new(Default::default()),
            scanned: Mutex::new(Vec::new()),
            scanned_wake: tokio::sync::Notify::new(),
            permits: Arc::new(tokio::sync::Semaphore::new(settings.concurrency.max(1))),
            in_process: AtomicU64::new(0),
            entered: AtomicU64::new(0),
            left: AtomicU64::new(0),
            rate: Mutex::new(rate::History::default()),
            quarantine: Mutex::new(quarantine::Quarantine::new(quarantined)),
            update_tx,
            update_rx: Mutex::new(Some(update_rx)),
            settings,
        }
    }

    /// Whether any stage scans: when none does, the categorizer takes from Submission itself.
    pub(crate) fn enabled(&self) -> bool {
        ScanStage::ALL.into_iter().any(|s| self.engine_on(s))
    }

    /// The network engine `stage` uses, if it uses one.
    pub(crate) fn remote(&self, stage: ScanStage) -> Option<&Arc<Remote>> {
        match stage {
            ScanStage::Antispam => self.settings.antispam_remote.as_ref(),
            ScanStage::Antivirus => self.settings.antivirus_remote.as_ref(),
        }
    }

    fn stage(&self, stage: ScanStage) -> &StageCtl {
        &self.stages[stage as usize]
    }

    /// Messages scanned and passed, for the categorizer (up to `n`), and the `Scanned` records of the
    /// verdicts that changed.
    pub(crate) fn take_scanned(&self, n: usize) -> (Vec<crate::categorizer::Taken>, Vec<sluice_queue_db::Record>) {
        let mut scanned = self.scanned.lock().unwrap_or_else(|e| e.into_inner());
        let n = scanned.len().min(n);
        let mut records = Vec::new();
        let taken = scanned
            .drain(..n)
            .map(|(t, scan)| {
                if let Some(scan) = scan {
                    records.push(sluice_queue_db::Record::Scanned { mid: t.0, scan });
                }
                t
            })
            .collect();
        (taken, records)
    }

    /// The categorizer routed `n` messages it took with [`WorkQueue::take_scanned`]: they are counted in their
    /// new queues now.
    pub(crate) fn routed(&self, n: usize) {
        self.in_process.fetch_sub(n as u64, Ordering::Relaxed);
    }

    /// Whether `stage` has an engine (it is not `off`); fixed for the process's life.
    pub(crate) fn engine_on(&self, stage: ScanStage) -> bool {
        self.remote(stage).is_some()
            || match stage {
                ScanStage::Antispam => self.settings.antispam.is_some(),
                ScanStage::Antivirus => self.settings.antivirus.is_some(),
            }
    }

    fn engine_kind(&self, stage: ScanStage) -> &'static str {
        match self.remote(stage) {
            Some(r) => r.kind(),
            None if self.engine_on(stage) => "builtin",
            None => "off",
        }
    }

    fn version_and_rules(&self, stage: ScanStage) -> Option<(String, u64, Option<i64>)> {
        if let Some(r) = self.remote(stage) {
            // A network engine's rules are its own; the version is that of the files an update wrote for it.
            let version = self.remote_version.lock().unwrap_or_else(|e| e.into_inner())[stage as usize].clone();
            return Some((version.unwrap_or_else(|| r.kind().to_owned()), 0, None));
        }
        match stage {
            ScanStage::Antispam => self
                .antispam
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|i| (i.version.clone(), i.set.len() as u64, i.installed_ms)),
            ScanStage::Antivirus => self
                .antivirus
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|i| (i.version.clone(), i.set.len() as u64, i.installed_ms)),
        }
    }

    /// The version of the set in force, `None` when the stage is off.
    pub(crate) fn version(&self, stage: ScanStage) -> Option<String> {
        self.version_and_rules(stage).map(|(v, _, _)| v)
    }

    pub(crate) fn messages_in_process(&self) -> u64 {
        self.in_process.load(Ordering::Relaxed)
    }

    /// Quarantine counts: messages and bytes.
    pub(crate) fn quarantine_totals(&self) -> (u64, u64) {
        self.quarantine.lock().unwrap_or_else(|e| e.into_inner()).totals()
    }

    /// `Work Queue Paused` once a pause outlasted `work_queue_stuck_after`.
    pub(crate) fn stuck(&self) -> bool {
        self.stages.iter().any(StageCtl::stuck)
    }
}

/// The engines as `GET /api/v1/engines` shows them.
pub(crate) fn engines(wq: &WorkQueue) -> Vec<api::Engine> {
    let checked = wq.checked.lock().unwrap_or_else(|e| e.into_inner()).clone();
    ScanStage::ALL
        .into_iter()
        .map(|stage| {
            let (version, rules, installed) = wq.version_and_rules(stage).unwrap_or(("-".into(), 0, None));
            let c = &checked[stage as usize];
            api::Engine {
                engine: stage.as_str().into(),
                kind: wq.engine_kind(stage).into(),
                version,
                rules,
                last_update: installed.map(rfc3339),
                last_check: c.at_ms.map(rfc3339),
                last_error: c.error.clone(),
                status: wq.stage(stage).state_name(wq.engine_on(stage)).into(),
            }
        })
        .collect()
}

/// The header lines a delivered message carries for the work queue's verdicts: `X-Sluice-SCL` and
/// `X-Spam-Status` (with the rules or the network engine's symbols that hit, as SpamAssassin writes it) once
/// the anti-spam stage scanned it, `X-Sluice-Scan: unscanned` when an engine failure let it pass unscanned;
/// `None` when there is nothing to say.
pub(crate) fn headers(scan: &Scan) -> Option<String> {
    let mut out = String::new();
    if scan.done & Scan::UNSCANNED != 0 {
        out.push_str("X-Sluice-Scan: unscanned (engine failure)\r\n");
    }
    if scan.scl >= 0 {
        let score = f64::from(scan.score_tenths) / 10.0;
        let spam = if score >= sluice_scan::antispam::REQUIRED_SCORE { "Yes" } else { "No" };
        out.push_str(&format!("X-Sluice-SCL: {}\r\n", scan.scl));
        let status = format!(
            "X-Spam-Status: {spam}, score={score:.1} required={:.1} tests={}",
            sluice_scan::antispam::REQUIRED_SCORE,
            scan.tests.as_deref().map_or("none", String::as_str)
        );
        fold(&status, &mut out);
    }
    (!out.is_empty()).then_some(out)
}

/// Appends a header line folded after a space or a comma so that its lines stay within 78 characters where
/// it can (a rule name is never split), continued lines starting with a tab.
fn fold(line: &str, out: &mut String) {
    const WIDTH: usize = 78;
    let mut rest = line;
    while rest.len() > WIDTH {
        // The last break that keeps this line within the width; else the first one after it.
        let cut = rest[..=WIDTH]
            .rfind([' ', ','])
            .filter(|&i| i > 0)
            .or_else(|| rest[WIDTH..].find([' ', ',']).map(|i| WIDTH + i));
        let Some(cut) = cut else { break };
        let (head, tail) = rest.split_at(cut + 1);
        let tail = tail.trim_start();
        if tail.is_empty() {
            break;
        }
        out.push_str(head.trim_end());
        out.push_str("\r\n\t");
        rest = tail;
    }
    out.push_str(rest);
    out.push_str("\r\n");
}

pub use quarantine::QuarantineError;
pub use sluice_queue_db::ScanStage;
pub use sluice_scan::antispam::RuleSet;
pub use sluice_scan::antivirus::Signatures;

impl crate::Transport {
    /// Messages in the work queue, and each stage's state (`1` paused or offline), for the metrics.
    pub fn work_queue_gauges(&self) -> (u64, Vec<(ScanStage, bool)>) {
        let wq = &self.inner.work_queue;
        let stages = ScanStage::ALL.into_iter().map(|s| (s, wq.stage(s).paused().is_some())).collect();
        (pause::messages(&self.inner), stages)
    }

    /// `GET /api/v1/workqueue`.
    pub fn work_queue(&self) -> api::WorkQueue {
        let inner = &self.inner;
        let wq = &inner.work_queue;
        let stages: Vec<api::Stage> = ScanStage::ALL
            .into_iter()
            .map(|s| {
                let in_process = if !wq.engine_on(s) { 0 } else { wq.messages_in_process() };
                wq.stage(s).status(wq.engine_kind(s), wq.settings.concurrency as u32, in_process)
            })
            .collect();
        let paused_stages: Vec<api::PausedStage> = wq.stages.iter().filter_map(StageCtl::paused).collect();
        let status = if stages.iter().any(|s| s.state == "Offline") {
            "Offline"
        } else if !paused_stages.is_empty() {
            "Paused"
        } else {
            "Operational"
        };
        api::WorkQueue {
            time: rfc3339(sluice_queue_db::time::now_ms()),
            status: status.into(),
            paused_stages,
            messages: pause::messages(inner),
            stages,
        }
    }

    /// `GET /api/v1/workqueue/rate`: `samples` rows of `interval` seconds, oldest first.
    pub fn work_queue_rate(&self, interval: u64, samples: usize) -> Vec<api::WorkQueueRate> {
        let now = run::now_sample(&self.inner);
        self.inner.work_queue.rate.lock().unwrap_or_else(|e| e.into_inner()).rows(now, interval, samples)
    }

    /// An administrator pauses `stage` (every stage when `None`); messages wait in Submission.
    pub fn pause_work_queue(&self, stage: Option<ScanStage>, reason: &str) -> api::WorkQueue {
        for s in stage.map_or(ScanStage::ALL.to_vec(), |s| vec![s]) {
            pause::pause(&self.inner, s, pause::Cause::Admin, reason);
        }
        self.work_queue()
    }

    /// Ends an administrator's pause of `stage` (every stage when `None`).
    pub fn resume_work_queue(&self, stage: Option<ScanStage>) -> api::WorkQueue {
        for s in stage.map_or(ScanStage::ALL.to_vec(), |s| vec![s]) {
            pause::resume(&self.inner, s, pause::Cause::Admin);
        }
        self.work_queue()
    }

    /// `GET /api/v1/engines`.
    pub fn engines(&self) -> Vec<api::Engine> {
        engines(&self.inner.work_queue)
    }

    /// `GET /api/v1/engines/antispam/rules`: the built-in anti-spam rule set's statistics, `None` when the
    /// stage has no built-in engine.
    pub fn antispam_rules(&self, slowest: usize) -> Option<api::RuleReport> {
        let guard = self.inner.work_queue.antispam.read().unwrap_or_else(|e| e.into_inner());
        let installed = guard.as_ref()?;
        let stats = installed.set.stats();
        let skipped_total = stats.skipped.values().sum::<usize>() as u64;
        Some(api::RuleReport {
            version: installed.version.clone(),
            loaded: stats.loaded as u64,
            active: stats.active as u64,
            prefiltered: stats.prefiltered as u64,
            always: stats.always as u64,
            backtracking: stats.backtracking as u64,
            errors: stats.errors as u64,
            skipped: stats.skipped.iter().map(|(k, v)| ((*k).to_owned(), *v as u64)).collect(),
            skipped_total,
            ignored_settings: stats.ignored_settings as u64,
            slowest: installed
                .set
                .slowest(slowest)
                .into_iter()
                .map(|t| api::RuleTime {
                    rule: t.rule,
                    mean_us: t.mean_us,
                    runs: t.runs,
                    total_us: t.total_us,
                    woken_by: t.woken_by.to_owned(),
                })
                .collect(),
        })
    }

    /// Asks the updater for an update of `stage`'s engine now. False when the stage's engine is off (nothing
    /// to update).
    pub fn request_update(&self, stage: ScanStage, force: bool) -> bool {
        let wq = &self.inner.work_queue;
        wq.engine_on(stage) && wq.update_tx.send((stage, force)).is_ok()
    }

    /// The update requests, for the updater (once; `None` after).
    pub fn take_update_requests(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<(ScanStage, bool)>> {
        self.inner.work_queue.update_rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Whether `stage` has an engine (it is not off).
    pub fn engine_on(&self, stage: ScanStage) -> bool {
        self.inner.work_queue.engine_on(stage)
    }

    /// The version of `stage`'s set in force.
    pub fn engine_version(&self, stage: ScanStage) -> Option<String> {
        self.inner.work_queue.version(stage)
    }

    /// The updater checked `stage`'s source: `error` is why the update failed, `None` for success.
    pub fn engine_checked(&self, stage: ScanStage, error: Option<String>) {
        let mut checked = self.inner.work_queue.checked.lock().unwrap_or_else(|e| e.into_inner());
        checked[stage as usize] = Checked { at_ms: Some(sluice_queue_db::time::now_ms()), error };
    }

    /// Swaps in a new anti-spam rule set: the stage pauses for the swap only (scans in progress finish with
    /// the set they started with). Returns how long the stage was paused.
    pub fn install_antispam(&self, set: Installed<RuleSet>) -> Duration {
        self.swap(ScanStage::Antispam, || {
            *self.inner.work_queue.antispam.write().unwrap_or_else(|e| e.into_inner()) = Some(set);
        })
    }

    /// Swaps in a new anti-virus signature set, as [`Transport::install_antispam`].
    ///
    /// [`Transport::install_antispam`]: crate::Transport::install_antispam
    pub fn install_antivirus(&self, set: Installed<Signatures>) -> Duration {
        self.swap(ScanStage::Antivirus, || {
            *self.inner.work_queue.antivirus.write().unwrap_or_else(|e| e.into_inner()) = Some(set);
        })
    }

    fn swap(&self, stage: ScanStage, f: impl FnOnce()) -> Duration {
        let start = std::time::Instant::now();
        pause::pause(&self.inner, stage, pause::Cause::Update, "updating rules");
        f();
        pause::resume(&self.inner, stage, pause::Cause::Update);
        start.elapsed()
    }

    /// Quarantined messages in MID order after `after`, at most `n`, and the MID to continue after.
    pub fn quarantine(&self, after: Option<sluice_queue_db::Mid>, n: usize) -> (Vec<api::Quarantined>, Option<u64>) {
        quarantine::list(&self.inner, after, n)
    }

    /// Releases a quarantined message (past the stage that quarantined it).
    pub async fn release_quarantined(&self, mid: sluice_queue_db::Mid) -> Result<api::Quarantined, QuarantineError> {
        quarantine::release(&self.inner, mid).await
    }

    /// Deletes a quarantined message.
    pub async fn delete_quarantined(&self, mid: sluice_queue_db::Mid) -> Result<api::Quarantined, QuarantineError> {
        quarantine::delete(&self.inner, mid, "deleted by the administrator").await
    }
}

impl crate::Transport {
    /// Makes the network anti-virus engine (clamd) load the signature files an update wrote into its
    /// database directory (`RELOAD`); the stage pauses until clamd scans again. Returns how long it was
    /// paused; `version` is then the engine's version.
    pub async fn reload_antivirus(&self, version: String) -> Result<Duration, String> {
        let wq = &self.inner.work_queue;
        let Some(engine) = wq.remote(ScanStage::Antivirus).cloned() else {
            return Err("the anti-virus stage has no network engine".into());
        };
        let paused = health::reload(&self.inner, ScanStage::Antivirus, &engine).await?;
        wq.remote_version.lock().unwrap_or_else(|e| e.into_inner())[ScanStage::Antivirus as usize] = Some(version);
        Ok(paused)
    }

    /// The network engine of `stage`, if it uses one.
    pub fn remote_engine(&self, stage: ScanStage) -> Option<Arc<Remote>> {
        self.inner.work_queue.remote(stage).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(score_tenths: i16, names: &[&str]) -> Scan {
        Scan { scl: 3, score_tenths, done: 1, tests: sluice_queue_db::intern_tests(names.iter().copied()) }
    }

    #[test]
    fn spam_status_names_the_rules_that_hit() {
        let h = headers(&scan(7, &["MISSING_SUBJECT", "FROM_NO_NAME"])).unwrap();
        assert_eq!(
            h,
            "X-Sluice-SCL: 3\r\nX-Spam-Status: No, score=0.7 required=5.0 tests=MISSING_SUBJECT,FROM_NO_NAME\r\n"
        );
        let h = headers(&scan(-9, &[])).unwrap();
        assert!(h.ends_with("X-Spam-Status: No, score=-0.9 required=5.0 tests=none\r\n"), "{h}");
        assert_eq!(headers(&Scan::NONE), None);
    }

    #[test]
    fn a_long_list_is_folded_at_commas_and_nothing_from_an_engine_breaks_the_header() {
        let names: Vec<String> = (0..40).map(|i| format!("RSPAMD_SYMBOL_{i}")).collect();
        let mut with_evil: Vec<&str> = names.iter().map(String::as_str).collect();
        with_evil.push("EVIL\r\nBcc: victim@example.com");
        let h = headers(&scan(95, &with_evil)).unwrap();
        let lines: Vec<&str> = h.strip_suffix("\r\n").unwrap().split("\r\n").collect();
        assert!(lines.len() > 3, "{h}");
        for (i, l) in lines.iter().enumerate() {
            assert!(l.len() <= 78, "line {i} too long: {l:?}");
            assert!(i < 2 || l.starts_with('\t'), "continuation without a tab: {l:?}");
            assert!(!l.trim().is_empty() && !l.contains('\n') && !l.contains('\r'));
        }
        // Unfolded, the list is the names in order, joined by commas, with the engine's text made harmless.
        let unfolded = h.replace("\r\n\t", "");
        let tests = unfolded.split("tests=").nth(1).unwrap().trim_end();
        assert!(tests.starts_with("RSPAMD_SYMBOL_0,RSPAMD_SYMBOL_1,"), "{tests}");
        assert!(tests.ends_with("RSPAMD_SYMBOL_39,EVILBccvictimexample.com"), "{tests}");
        assert!(!h.contains("Bcc:"));
    }

    #[test]
    fn a_very_long_list_is_cut_at_a_name() {
        let names: Vec<String> = (0..500).map(|i| format!("SYMBOL_{i}")).collect();
        let tests = sluice_queue_db::intern_tests(names.iter().map(String::as_str)).unwrap();
        assert!(tests.len() <= sluice_queue_db::TESTS_MAX, "{}", tests.len());
        assert!(tests.ends_with(",..."));
        let kept: Vec<&str> = tests.trim_end_matches(",...").split(',').collect();
        assert!(kept.iter().zip(&names).all(|(k, n)| k == n), "a name was cut");
    }
}
