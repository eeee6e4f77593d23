//! The health of the network engines: an engine that fails a scan (refused, timed out, answered garbage)
//! takes its stage Offline with an alert, and a probe tries it with growing intervals until it scans again,
//! then the stage resumes by itself. Messages wait in Submission meanwhile (or pass stamped unscanned with
//! `on_engine_failure = "pass"`). Each engine is checked once at start, so a stage whose engine is down
//! shows Offline before the first message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_queue_db::ScanStage;

use super::pause::{self, Cause};
use super::remote::{EngineError, Envelope, Remote};
use crate::Inner;
use crate::alerts::{AlertClass, Severity};

/// The first wait before a probe, doubled after each failed probe up to [`PROBE_MAX`].
const PROBE_FIRST: Duration = Duration::from_millis(500);
const PROBE_MAX: Duration = Duration::from_secs(15);

/// What a probe scans: a small clean message.
const PROBE_MESSAGE: &[u8] =
    b"From: <probe@sluice.invalid>\r\nTo: <probe@sluice.invalid>\r\nSubject: sluice engine probe\r\n\
Message-ID: <probe@sluice.invalid>\r\n\r\nsluice checks that the engine scans.\r\n";

/// Checks each network engine once, at start.
pub(crate) async fn check_at_start(inner: Arc<Inner>) {
    for stage in ScanStage::ALL {
        let Some(engine) = inner.work_queue.remote(stage).cloned() else { continue };
        if let Err(e) = probe(&engine).await {
            failed(&inner, stage, &engine, &e);
        }
    }
}

/// One scan of a small message: `Ok` when the engine gave a verdict.
async fn probe(engine: &Remote) -> Result<(), EngineError> {
    engine.ping().await?;
    engine.scan(PROBE_MESSAGE, &Envelope::default()).await.map(|_| ())
}

/// `stage`'s engine failed: the stage goes Offline with an alert (once per outage) and a probe starts.
pub(crate) fn failed(inner: &Arc<Inner>, stage: ScanStage, engine: &Arc<Remote>, error: &EngineError) {
    let what = engine.describe();
    let text = format!("{what}: {error}");
    if !pause::pause_for(inner, stage, Cause::Offline, &text).1 {
        // Already offline, with a probe running: the reason is refreshed only.
        return;
    }
    tracing::error!(stage = stage.as_str(), engine = %what, %error, "engine offline; messages wait in Submission");
    let class = match stage {
        ScanStage::Antispam => AlertClass::AntiSpam,
        ScanStage::Antivirus => AlertClass::AntiVirus,
    };
    let waits = if inner.work_queue.settings.pass_on_failure {
        "messages pass unscanned (on_engine_failure = \"pass\")"
    } else {
        "messages wait in Submission"
    };
    inner.alerts.raise(class, Severity::Critical, format!("{} engine offline: {text}; {waits}", stage.as_str()));
    let inner = inner.clone();
    let engine = engine.clone();
    inner.tasks.clone().spawn(watch(inner, stage, engine));
}

/// Probes the engine until it scans again, then resumes the stage.
async fn watch(inner: Arc<Inner>, stage: ScanStage, engine: Arc<Remote>) {
    let mut wait = PROBE_FIRST;
    let started = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = inner.shutdown.cancelled() => return,
        }
        match probe(&engine).await {
            Ok(()) => break,
            Err(e) => {
                tracing::debug!(stage = stage.as_str(), error = %e, "engine still offline");
                wait = (wait * 2).min(PROBE_MAX);
            }
        }
    }
    tracing::info!(
        stage = stage.as_str(),
        engine = %engine.describe(),
        offline_ms = started.elapsed().as_millis() as u64,
        "engine answers again"
    );
    pause::resume(&inner, stage, Cause::Offline);
}

/// Asks clamd to load the signature files an update wrote into its database directory: the stage pauses
/// from the `RELOAD` until clamd scans again. Returns how long it was paused.
pub(crate) async fn reload(inner: &Arc<Inner>, stage: ScanStage, engine: &Remote) -> Result<Duration, String> {
    let Remote::Clamd(clamd) = engine else { return Err(format!("{} takes no signature files", engine.kind())) };
    let start = Instant::now();
    pause::pause(inner, stage, Cause::Update, "clamd reloading signatures");
    let reloaded = async {
        clamd.reload().await.map_err(|e| format!("RELOAD: {e}"))?;
        // clamd answers scans with the old signatures while it loads the new ones (ConcurrentDatabaseReload),
        // else once they are loaded: either way the stage runs again as soon as a scan is answered.
        let deadline = Instant::now() + RELOAD_LIMIT;
        loop {
            match probe(engine).await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(format!("no scan answered after RELOAD: {e}")),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    .await;
    pause::resume(inner, stage, Cause::Update);
    reloaded.map(|()| start.elapsed())
}

/// How long clamd may take to answer scans after `RELOAD` before the update counts as failed (the stage
/// then goes on; a clamd that stays down is found Offline by the next message).
const RELOAD_LIMIT: Duration = Duration::from_secs(120);
