//! The updater: brings each built-in engine's rule or signature set from `[updater] source` (a directory or
//! an HTTP(S) URL holding `<engine>/manifest.json` and the files it names), every `interval` and on demand
//! (`sluice update antispam|antivirus [--force]`).
//!
//! An update is downloaded into `<data_dir>/engines/<engine>/staging`, beside the set in force; each file is
//! checked against the manifest's size and SHA-256, and the set is compiled there. Only a set that arrived
//! whole replaces the running one (a rule in it that does not compile is named and left out; a set of which
//! nothing compiles is refused): the directory becomes `current`, the stage
//! pauses for the swap of one pointer, and the client manifest (`<engine>/manifest.json`) records the
//! version. Anything else (a wrong checksum, a truncated file, a set of which nothing compiles) leaves the old
//! set running, logs `Warning: <engine> update failed: <reason>` and raises a Warning alert. Each step is a
//! line in `<data_dir>/logs/updater.log` in the appliance's form.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_config::UpdateSource;
use sluice_scan::SourceFile;
use sluice_scan::manifest::Manifest;
use sluice_transport::workqueue::remote::Remote;
use sluice_transport::workqueue::{Installed, RuleSet, ScanStage, Signatures};
use sluice_transport::{AlertClass, Severity, Transport};
use tokio_util::sync::CancellationToken;

/// The largest file (manifest or rule file) the updater downloads.
const MAX_FILE: u64 = 256 << 20;
/// How long one download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// The updater log, `<data_dir>/logs/updater.log`.
pub struct UpdaterLog {
    file: Mutex<Option<std::fs::File>>,
}

impl UpdaterLog {
    pub fn open(data_dir: &Path) -> UpdaterLog {
        let path = data_dir.join("logs").join("updater.log");
        let file = std::fs::create_dir_all(path.parent().unwrap_or(data_dir))
            .and_then(|()| std::fs::OpenOptions::new().create(true).append(true).open(&path));
        if let Err(e) = &file {
            tracing::warn!(path = %path.display(), error = %e, "cannot open the updater log");
        }
        UpdaterLog { file: Mutex::new(file.ok()) }
    }

    /// Writes `Mon Aug 18 11:32:55 2014 <level>: <text>`.
    fn write(&self, level: &str, text: &str) {
        let line = line(sluice_queue_db::now_ms(), level, text);
        match level {
            "Warning" => tracing::warn!("updater: {text}"),
            _ => tracing::info!("updater: {text}"),
        }
        if let Some(f) = self.file.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            // Not synced: a log line is worth a write, not a disk flush.
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }

    fn info(&self, text: &str) {
        self.write("Info", text);
    }

    fn warning(&self, text: &str) {
        self.write("Warning", text);
    }
}

/// One updater log line, as the appliance writes it: `Mon Aug 18 11:32:55 2014 Info: antispam verifying applied
/// files` (UTC). Control characters in `text` become spaces: one call is one line.
fn line(ms: i64, level: &str, text: &str) -> String {
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    format!("{} {level}: {text}", sluice_queue_db::time::ctime(ms))
}

/// `<data_dir>/engines/<engine>`.
fn engine_dir(data_dir: &Path, stage: ScanStage) -> PathBuf {
    data_dir.join("engines").join(stage.as_str())
}

/// `<data_dir>/engines/clamd`: the client manifest of the files an update wrote into clamd's database
/// directory (apart from the built-in engine's, so that switching engines updates the new one).
fn clamd_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("engines").join("clamd")
}

/// The version of the signature files an update last wrote for clamd.
pub fn remote_antivirus_version(data_dir: &Path) -> Option<String> {
    let manifest = std::fs::read(clamd_dir(data_dir).join("manifest.json")).ok()?;
    Manifest::parse(&manifest).ok().map(|m| m.version)
}

/// The `.cf` files of `[antispam] rules_dir`, sorted by name as SpamAssassin reads them; none when unset.
pub fn rules_dir_files(dir: Option<&Path>) -> anyhow::Result<Vec<SourceFile>> {
    let Some(dir) = dir else { return Ok(Vec::new()) };
    let files = read_dir_files(dir).map_err(|e| anyhow::anyhow!("antispam.rules_dir {}: {e}", dir.display()))?;
    Ok(files.into_iter().filter(|f| f.name.ends_with(".cf")).collect())
}

/// Compiles the anti-spam set to start with: the rules_dir files, then the set an earlier update installed
/// or the shipped one. The rules_dir's counts, and each rule of it that does not compile, go to the
/// updater log.
pub fn startup_antispam(data_dir: &Path, log: &UpdaterLog, extra: &[SourceFile]) -> Installed<RuleSet> {
    let installed = installed_antispam(data_dir, log, extra).unwrap_or_else(|| {
        let files: Vec<SourceFile> = extra.iter().cloned().chain([RuleSet::builtin_file()]).collect();
        let (set, errors) = RuleSet::compile(&files);
        for e in &errors {
            log.warning(&format!("antispam rules_dir: skipped {e}"));
        }
        Installed { set: set.into(), version: "builtin".into(), installed_ms: None }
    });
    if !extra.is_empty() {
        let stats = installed.set.stats();
        let skipped: Vec<String> = stats.skipped.iter().map(|(why, n)| format!("{n} {why}")).collect();
        log.info(&format!(
            "antispam loaded {} rules with rules_dir ({} files): {} active, {} did not compile, skipped: {}",
            stats.loaded,
            extra.len(),
            stats.active,
            stats.errors,
            if skipped.is_empty() { "none".to_owned() } else { skipped.join(", ") }
        ));
    }
    installed
}

/// Reads every regular file of `dir` whose name does not start with a dot, sorted by name.
pub(crate) fn read_dir_files(dir: &Path) -> std::io::Result<Vec<SourceFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            files.push(SourceFile { name, bytes: std::fs::read(entry.path())? });
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// A set compiled from files, or why it cannot be used.
enum Compiled {
    Antispam(Box<RuleSet>),
    Antivirus(Box<Signatures>),
}

/// Compiles an update's files: what compiles is the new set, with the rules or signature lines that did not
/// (each named, to be logged); an update of which nothing compiles is refused.
///
/// Anti-spam rules are compiled after `extra` (the files of `[antispam] rules_dir`), so that an update's
/// scores and rules override them; only the update's own rules count towards "nothing compiles".
fn compile(
    stage: ScanStage,
    files: &[SourceFile],
    extra: &[SourceFile],
) -> Result<(Compiled, usize, Vec<String>), String> {
    let (compiled, loaded, from_files, errors): (Compiled, usize, usize, Vec<String>) = match stage {
        ScanStage::Antispam if extra.is_empty() => {
            let (set, errors) = RuleSet::compile(files);
            let n = set.len();
            (Compiled::Antispam(Box::new(set)), n, n, errors.iter().map(ToString::to_string).collect())
        }
        ScanStage::Antispam => {
            let (own, own_errors) = RuleSet::compile(files);
            let all: Vec<SourceFile> = extra.iter().chain(files).cloned().collect();
            let (set, _) = RuleSet::compile(&all);
            let n = set.len();
            (Compiled::Antispam(Box::new(set)), n, own.len(), own_errors.iter().map(ToString::to_string).collect())
        }
        ScanStage::Antivirus => {
            let (set, errors) = Signatures::compile(files);
            let n = set.len();
            // The shipped EICAR signature is always in a set; only what the files add counts here.
            let own = n.saturating_sub(Signatures::builtin().len());
            (Compiled::Antivirus(Box::new(set)), n, own, errors.iter().map(ToString::to_string).collect())
        }
    };
    if from_files == 0 {
        return Err(match errors.as_slice() {
            [] => "the update holds no rules".to_owned(),
            [only] => format!("nothing in it compiles: {only}"),
            [first, rest @ ..] => format!("nothing in it compiles: {first} (and {} more)", rest.len()),
        });
    }
    Ok((compiled, loaded, errors))
}

/// The set an earlier update installed (`<engine>/current` with its client manifest), to start with; `None`
/// when there is none or it cannot be used (then the shipped set runs, with a warning).
pub fn installed_antispam(data_dir: &Path, log: &UpdaterLog, extra: &[SourceFile]) -> Option<Installed<RuleSet>> {
    match load_installed(data_dir, ScanStage::Antispam, log, extra)? {
        (Compiled::Antispam(set), version, at) => Some(Installed { set: Arc::from(set), version, installed_ms: at }),
        _ => None,
    }
}

/// As [`installed_antispam`], for the anti-virus signatures.
pub fn installed_antivirus(data_dir: &Path, log: &UpdaterLog) -> Option<Installed<Signatures>> {
    match load_installed(data_dir, ScanStage::Antivirus, log, &[])? {
        (Compiled::Antivirus(set), version, at) => Some(Installed { set: Arc::from(set), version, installed_ms: at }),
        _ => None,
    }
}

fn load_installed(
    data_dir: &Path,
    stage: ScanStage,
    log: &UpdaterLog,
    extra: &[SourceFile],
) -> Option<(Compiled, String, Option<i64>)> {
    let dir = engine_dir(data_dir, stage);
    let manifest = std::fs::read(dir.join("manifest.json")).ok()?;
    let result = Manifest::parse(&manifest).and_then(|m| {
        let files = read_dir_files(&dir.join("current")).map_err(|e| e.to_string())?;
        let (compiled, _, _) = compile(stage, &files, extra)?;
        let at = std::fs::metadata(dir.join("manifest.json"))
            .and_then(|md| md.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64);
        Ok((compiled, m.version, at))
    });
    match result {
        Ok(r) => Some(r),
        Err(e) => {
            log.warning(&format!("{} installed set cannot be loaded, using the shipped set: {e}", stage.as_str()));
            None
        }
    }
}

/// Runs the updater until `shutdown`: every `[updater] interval`, and when the API asks.
pub fn run(
    transport: Transport,
    config: &sluice_config::Config,
    log: Arc<UpdaterLog>,
    extra_rules: Arc<Vec<SourceFile>>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let interval = config.updater.interval;
    let updater = Updater {
        transport,
        source: config.updater.source.clone(),
        data_dir: config.server.data_dir.clone(),
        log,
        extra_rules,
        clamd_database_dir: config.antivirus.database_dir.clone(),
    };
    updater.run(interval, shutdown)
}

impl Updater {
    async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let Some(mut requests) = self.transport.take_update_requests() else { return };
        let mut tick = tokio::time::interval(interval.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    for stage in ScanStage::ALL {
                        if self.transport.engine_on(stage) {
                            self.update(stage, false, false).await;
                        }
                    }
                }
                Some((stage, force)) = requests.recv() => self.update(stage, force, true).await,
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

struct Updater {
    /// The files of `[antispam] rules_dir`, compiled before every anti-spam update.
    extra_rules: Arc<Vec<SourceFile>>,
    /// `[antivirus] database_dir`: where an update for clamd writes its signature files.
    clamd_database_dir: Option<PathBuf>,
    transport: Transport,
    source: UpdateSource,
    data_dir: PathBuf,
    log: Arc<UpdaterLog>,
}

/// Why an update was not applied: a failure (logged as a warning, alerted) or nothing to do.
enum Skip {
    Failed(String),
    /// No manifest at the source: a scheduled check says nothing, an administrator's request is told.
    NoSource(String),
    UpToDate(String),
}

impl Updater {
    /// Checks `stage`'s source and applies a new set. `asked`: an administrator asked (always logged).
    async fn update(&self, stage: ScanStage, force: bool, asked: bool) {
        let engine = stage.as_str();
        match self.try_update(stage, force).await {
            Ok(()) => {
                self.transport.engine_checked(stage, None);
                self.log.info(&format!("{engine} update completed"));
                self.log.info(&format!("{engine} waiting for new updates"));
            }
            Err(Skip::UpToDate(v)) => {
                self.transport.engine_checked(stage, None);
                if asked {
                    self.log.info(&format!("{engine} version {v} is current"));
                    self.log.info(&format!("{engine} waiting for new updates"));
                }
            }
            Err(Skip::NoSource(why)) => {
                if asked {
                    self.fail(stage, &why);
                }
            }
            Err(Skip::Failed(why)) => self.fail(stage, &why),
        }
    }

    fn fail(&self, stage: ScanStage, why: &str) {
        let engine = stage.as_str();
        self.log.warning(&format!("{engine} update failed: {why}"));
        self.transport.engine_checked(stage, Some(why.to_owned()));
        self.transport.alerts().raise(AlertClass::Updater, Severity::Warning, format!("{engine} update failed: {why}"));
        self.log.info(&format!("{engine} waiting for new updates"));
    }

    async fn fetch(&self, stage: ScanStage, name: &str) -> Result<Vec<u8>, String> {
        match &self.source {
            UpdateSource::Directory(dir) => {
                let path = dir.join(stage.as_str()).join(name);
                tokio::fs::read(&path).await.map_err(|e| format!("{}: {e}", path.display()))
            }
            UpdateSource::Url(url) => {
                let url = format!("{}/{}/{name}", url.trim_end_matches('/'), stage.as_str());
                crate::http::get(&url, DOWNLOAD_TIMEOUT, MAX_FILE).await.map_err(|e| format!("{url}: {e}"))
            }
        }
    }

    async fn try_update(&self, stage: ScanStage, force: bool) -> Result<(), Skip> {
        let engine = stage.as_str();
        // clamd takes signature files; spamd and rspamd keep their own rules.
        let clamd = match self.transport.remote_engine(stage).as_deref() {
            None => false,
            Some(Remote::Clamd(_)) => true,
            Some(other) => {
                return Err(Skip::NoSource(format!("{} keeps its own rules (sa-update, rspamd's maps)", other.kind())));
            }
        };
        let manifest =
            self.fetch(stage, "manifest.json").await.map_err(|e| Skip::NoSource(format!("no manifest: {e}")))?;
        let manifest = Manifest::parse(&manifest).map_err(|e| Skip::Failed(format!("bad manifest: {e}")))?;
        if !force && self.transport.engine_version(stage).as_deref() == Some(manifest.version.as_str()) {
            return Err(Skip::UpToDate(manifest.version));
        }
        self.log.info(&format!("{engine} downloading version {}", manifest.version));
        let dir = if clamd { clamd_dir(&self.data_dir) } else { engine_dir(&self.data_dir, stage) };
        let staging = dir.join("staging");
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(|e| Skip::Failed(format!("{}: {e}", staging.display())))?;
        let mut downloaded = Vec::with_capacity(manifest.files.len());
        for f in &manifest.files {
            let bytes = self.fetch(stage, &f.name).await.map_err(Skip::Failed)?;
            downloaded.push((f, bytes));
        }
        self.log.info(&format!("{engine} verifying applied files"));
        let mut files = Vec::with_capacity(downloaded.len());
        for (f, bytes) in downloaded {
            f.verify(&bytes).map_err(|e| Skip::Failed(format!("{}: {e}", f.name)))?;
            std::fs::write(staging.join(&f.name), &bytes).map_err(|e| Skip::Failed(format!("{}: {e}", f.name)))?;
            files.push(SourceFile { name: f.name.clone(), bytes });
        }
        if clamd {
            return self.update_clamd(&dir, &manifest, files).await;
        }
        // Compiled beside the running set, off the runtime (a large set takes a while).
        let extra = if stage == ScanStage::Antispam { self.extra_rules.clone() } else { Arc::default() };
        let compiled = tokio::task::spawn_blocking(move || compile(stage, &files, &extra))
            .await
            .map_err(|e| Skip::Failed(e.to_string()))?
            .map_err(Skip::Failed)?;
        let (compiled, rules, skipped) = compiled;
        // A broken rule does not hold back the rest: it is named, and the update goes on without it.
        for e in &skipped {
            self.log.warning(&format!("{engine} update: skipped {e}"));
        }
        if let Some(first) = skipped.first() {
            self.transport.alerts().raise(
                AlertClass::Updater,
                Severity::Warning,
                format!(
                    "{engine} version {}: {} skipped, the rest installed: {first}",
                    manifest.version,
                    skipped.len()
                ),
            );
        }
        // The staged set becomes `current`; the old one is removed after the swap.
        let current = dir.join("current");
        let old = dir.join("old");
        let _ = std::fs::remove_dir_all(&old);
        if current.exists() {
            std::fs::rename(&current, &old).map_err(|e| Skip::Failed(format!("{}: {e}", current.display())))?;
        }
        std::fs::rename(&staging, &current).map_err(|e| Skip::Failed(format!("{}: {e}", staging.display())))?;
        let installed_ms = Some(sluice_queue_db::now_ms());
        let version = manifest.version.clone();
        let paused = match compiled {
            Compiled::Antispam(set) => {
                self.transport.install_antispam(Installed { set: Arc::from(set), version, installed_ms })
            }
            Compiled::Antivirus(set) => {
                self.transport.install_antivirus(Installed { set: Arc::from(set), version, installed_ms })
            }
        };
        self.log.info(&format!(
            "{engine} switched to version {} ({rules} rules): the stage paused for {} us",
            manifest.version,
            paused.as_micros()
        ));
        let _ = std::fs::remove_dir_all(&old);
        self.client_manifest(stage, &dir, &manifest)
    }

    fn client_manifest(&self, stage: ScanStage, dir: &Path, manifest: &Manifest) -> Result<(), Skip> {
        self.log.info(&format!("{} updating the client manifest", stage.as_str()));
        let tmp = dir.join("manifest.json.tmp");
        std::fs::write(&tmp, manifest.to_json())
            .and_then(|()| std::fs::rename(&tmp, dir.join("manifest.json")))
            .map_err(|e| Skip::Failed(format!("writing the client manifest: {e}")))?;
        Ok(())
    }

    /// clamd's update: the verified files go into its database directory (each written aside, synced and
    /// renamed into place, so clamd never reads half a file), then `RELOAD`; the stage pauses from the
    /// `RELOAD` until clamd scans again.
    async fn update_clamd(&self, dir: &Path, manifest: &Manifest, files: Vec<SourceFile>) -> Result<(), Skip> {
        let Some(db) = self.clamd_database_dir.clone() else {
            return Err(Skip::Failed(
                "clamd's signature files have nowhere to go: set [antivirus] database_dir".into(),
            ));
        };
        let written = tokio::task::spawn_blocking(move || write_into(&db, &files))
            .await
            .map_err(|e| Skip::Failed(e.to_string()))?;
        written.map_err(Skip::Failed)?;
        let paused = self
            .transport
            .reload_antivirus(manifest.version.clone())
            .await
            .map_err(|e| Skip::Failed(format!("clamd: {e}")))?;
        self.log.info(&format!(
            "antivirus switched to version {} (clamd RELOAD): the stage paused for {} us",
            manifest.version,
            paused.as_micros()
        ));
        let _ = std::fs::remove_dir_all(dir.join("staging"));
        self.client_manifest(ScanStage::Antivirus, dir, manifest)
    }
}

/// Writes `files` into `dir`, each as a hidden temporary file (an extension clamd does not load), synced,
/// then renamed over the old one; the directory is synced last.
fn write_into(dir: &Path, files: &[SourceFile]) -> Result<(), String> {
    for f in files {
        let tmp = dir.join(format!(".{}.sluice-tmp", f.name));
        let mut out = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        out.write_all(&f.bytes).and_then(|()| out.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let to = dir.join(&f.name);
        std::fs::rename(&tmp, &to).map_err(|e| format!("{}: {e}", to.display()))?;
    }
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("{}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::line;

    #[test]
    fn log_lines_are_the_appliances() {
        assert_eq!(
            line(1_408_361_575_000, "Info", "antispam verifying applied files"),
            "Mon Aug 18 11:32:55 2014 Info: antispam verifying applied files"
        );
        assert_eq!(line(0, "Warning", "a\r\nb"), "Thu Jan  1 00:00:00 1970 Warning: a  b");
    }
}
