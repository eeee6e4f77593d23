//! `sluice scan`: runs the built-in engines over message files, without a server, as the work queue
//! would (anti-spam, then anti-virus, on one decoding of each message). For trying rules before an
//! update, explaining a verdict, and benchmarking (bench/b5).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use sluice_scan::SourceFile;
use sluice_scan::antispam::{REQUIRED_SCORE, RuleSet};
use sluice_scan::antivirus::Signatures;

use crate::fail;

/// What to scan with and how to answer.
pub struct ScanArgs {
    pub config: Option<PathBuf>,
    pub rules: Vec<PathBuf>,
    pub signatures: Vec<PathBuf>,
    pub json: bool,
    /// List this many of the costliest rules at the end.
    pub slowest: Option<usize>,
    pub paths: Vec<PathBuf>,
}

/// Exit codes (sysexits.h): a path that cannot be read is 66, a configuration that cannot be 78.
const NOINPUT: u8 = 66;
const CONFIG: u8 = 78;

pub fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    if args.paths.is_empty() {
        return Err(fail(64, "name at least one message file or directory"));
    }
    let started = Instant::now();
    let (rules, signatures) = engines(&args)?;
    let stats = rules.stats();
    let skipped: usize = stats.skipped.values().sum();
    eprintln!(
        "sluice: antispam: {} rules loaded, {} active, {} did not compile, {skipped} skipped; antivirus: {} signatures \
         ({:.2} s)",
        stats.loaded,
        stats.active,
        stats.errors,
        signatures.len(),
        started.elapsed().as_secs_f64()
    );
    let mut files = Vec::new();
    for path in &args.paths {
        collect(path, &mut files).map_err(|e| fail(NOINPUT, format!("{}: {e}", path.display())))?;
    }
    let started = Instant::now();
    let mut spam = 0;
    let mut infected = 0;
    for path in &files {
        let bytes = std::fs::read(path).map_err(|e| fail(NOINPUT, format!("{}: {e}", path.display())))?;
        let message = without_mbox_line(&bytes);
        let decoded = sluice_scan::mime::decode(message);
        let verdict = rules.check_decoded(&decoded);
        let virus = signatures.scan_decoded(&decoded).map(|d| d.name);
        spam += usize::from(verdict.score >= REQUIRED_SCORE);
        infected += usize::from(virus.is_some());
        let line = if args.json {
            serde_json::json!({
                "path": path.display().to_string(),
                "score": verdict.score,
                "scl": verdict.scl,
                "spam": verdict.score >= REQUIRED_SCORE,
                "virus": virus,
                "hits": verdict.hits,
            })
            .to_string()
        } else {
            let virus = virus.map(|v| format!(" virus={v}")).unwrap_or_default();
            format!(
                "{}: scl={} score={}{virus} hits={}",
                path.display(),
                verdict.scl,
                verdict.score,
                verdict.hits.join(",")
            )
        };
        crate::cli::write_out(&format!("{line}\n"));
    }
    eprintln!(
        "sluice: {} messages scanned in {:.2} s: {spam} spam (score >= {REQUIRED_SCORE}), {infected} with a virus",
        files.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(n) = args.slowest {
        eprintln!("sluice: the costliest rules (one message in {} timed):", sluice_scan::antispam::SAMPLE_EVERY);
        for t in rules.slowest(n) {
            eprintln!(
                "  {:<32} {:>10.1} us in {:>6} runs ({:.2} us a run; runs on {})",
                t.rule, t.total_us, t.runs, t.mean_us, t.woken_by
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The rule and signature sets: the ones named, or what the server would start with.
fn engines(args: &ScanArgs) -> anyhow::Result<(RuleSet, Signatures)> {
    let configured = if args.rules.is_empty() || args.signatures.is_empty() {
        Some(sluice_config::Config::discover(args.config.as_deref()).map_err(|e| fail(CONFIG, e))?.config)
    } else {
        None
    };
    let installed = |engine: &str| {
        let config = configured.as_ref()?;
        let dir = config.server.data_dir.join("engines").join(engine).join("current");
        let files = crate::updater::read_dir_files(&dir).ok()?;
        (!files.is_empty()).then_some(files)
    };
    let rule_files = if args.rules.is_empty() {
        let config = configured.as_ref().expect("read when no rules are named");
        let mut files = crate::updater::rules_dir_files(config.antispam.rules_dir.as_deref())
            .map_err(|e| fail(CONFIG, format!("{e:#}")))?;
        files.extend(installed("antispam").unwrap_or_else(|| vec![RuleSet::builtin_file()]));
        files
    } else {
        named_files(&args.rules, |name| name.ends_with(".cf"))?
    };
    let (rules, errors) = RuleSet::compile(&rule_files);
    for e in &errors {
        eprintln!("sluice: note: rule skipped: {e}");
    }
    let signatures = if args.signatures.is_empty() {
        match installed("antivirus") {
            Some(files) => Signatures::compile(&files).0,
            None => Signatures::builtin(),
        }
    } else {
        let files = named_files(&args.signatures, |_| true)?;
        let (set, errors) = Signatures::compile(&files);
        for e in &errors {
            eprintln!("sluice: note: signature skipped: {e}");
        }
        set
    };
    Ok((rules, signatures))
}

/// The files named: a file as it is, a directory's files whose names `keep` (sorted by name).
fn named_files(paths: &[PathBuf], keep: impl Fn(&str) -> bool) -> anyhow::Result<Vec<SourceFile>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let found =
                crate::updater::read_dir_files(path).map_err(|e| fail(NOINPUT, format!("{}: {e}", path.display())))?;
            files.extend(found.into_iter().filter(|f| keep(&f.name)));
        } else {
            let bytes = std::fs::read(path).map_err(|e| fail(NOINPUT, format!("{}: {e}", path.display())))?;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            files.push(SourceFile { name, bytes });
        }
    }
    Ok(files)
}

/// Message files under `path`: the file itself, or every regular file below a directory, sorted.
fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for entry in entries {
        collect(&entry, out)?;
    }
    Ok(())
}

/// The message without the mbox `From ` line some files start with.
fn without_mbox_line(bytes: &[u8]) -> &[u8] {
    if !bytes.starts_with(b"From ") {
        return bytes;
    }
    match bytes.iter().position(|&b| b == b'\n') {
        Some(end) => &bytes[end + 1..],
        None => bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_from_line_is_dropped() {
        assert_eq!(without_mbox_line(b"From a@b Mon Jul 22 19:00:00 2002\nSubject: x\n\nb"), b"Subject: x\n\nb");
        assert_eq!(without_mbox_line(b"From: a@b\n\nb"), b"From: a@b\n\nb");
    }
}
