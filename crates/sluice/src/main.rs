//! The `sluice` command: the server (`serve`) and the tools around it.

mod cli;
mod drop_dir;
mod http;
mod notify;
mod pickup;
mod replay;
mod scan;
mod sendmail;
mod serve;
mod updater;
mod wiring;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// mimalloc instead of the system allocator: no per-allocation header and size classes that fit the queue's
/// small records, and freed pages go back to the system instead of staying resident (B4: resident memory
/// per queued message; see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A mail transport server with a durable, controllable queue engine",
    after_help = cli::EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server.
    Serve {
        /// The configuration file (default: $SLUICE_CONFIG, /etc/sluice/sluice.toml, else built-in defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validates a configuration file and prints the effective configuration.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
        /// The configuration a server runs with (e.g. the file before an edit): names the keys that differ
        /// and that a reload would keep at their running value until a restart.
        #[arg(long, value_name = "FILE")]
        against: Option<PathBuf>,
    },
    /// Reads a password from standard input (one line) and prints its argon2id hash, for `users` of a
    /// receive connector.
    HashPassword,
    /// A sendmail-compatible command: reads a message and writes it into the pickup directory
    /// (`sluice sendmail --help` lists its flags and exit codes).
    #[command(disable_help_flag = true)]
    Sendmail {
        /// sendmail's options and recipients (`-t`, `-i`, `-f ADDR`, `-F NAME`, `-bs`, `-bp`, ...).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Scans message files with the built-in engines, as the work queue would, and prints each verdict
    /// (score, SCL, rules hit, virus). Without --rules or --signatures, the sets the server would start
    /// with (the configuration's rules_dir, the updater's installed set or the shipped one).
    Scan {
        #[arg(long)]
        config: Option<PathBuf>,
        /// SpamAssassin rule files, or directories of `.cf` files, to use instead (repeatable).
        #[arg(long, value_name = "PATH")]
        rules: Vec<PathBuf>,
        /// Signature files (.hdb, .hsb, .ndb), or directories of them, to use instead (repeatable).
        #[arg(long, value_name = "PATH")]
        signatures: Vec<PathBuf>,
        /// One JSON object per message: path, score, scl, spam, virus, hits.
        #[arg(long)]
        json: bool,
        /// After the verdicts, the N anti-spam rules that cost the most time (one message in 64 is timed rule
        /// by rule), on standard error.
        #[arg(long, value_name = "N")]
        slowest: Option<usize>,
        /// Message files, or directories of them (every file below, sorted).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Queue database tools (run them while the server is stopped).
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    #[command(flatten)]
    Admin(Box<cli::AdminCommand>),
    /// Prints a completion script: `sluice completions bash > /etc/bash_completion.d/sluice`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Prints the manual page, sluice(1), generated from these definitions: `sluice man | man -l -`.
    Man,
}

#[derive(Subcommand)]
enum DbCommand {
    /// Verifies every file of the queue database: frames and body checksums.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Writes every queued message of a healthy database to DIR as .eml files with `X-Sender:` and
    /// `X-Receiver:` headers, for the replay directory (drain, migration, backup).
    Export {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where the .eml files go (created if missing).
        #[arg(long)]
        to: PathBuf,
    },
    /// Like export, for a damaged database: writes every message that can be read and reports the damage.
    Salvage {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        to: PathBuf,
    },
}

/// The one error sink: every command runs in [`run`], and a failure is printed once, here, as `sluice: ` and
/// its message, with the exit code a [`Failure`] names (1 for any other error).
fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sluice: {err:#}");
            err.downcast_ref::<Failure>().map_or(ExitCode::FAILURE, |f| ExitCode::from(f.code))
        }
    }
}

/// Runs one command; its exit code when it finished, even with a finding (`db check` exits 1 on damage).
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => serve::run(config).map(|()| ExitCode::SUCCESS),
        Command::HashPassword => hash_password(),
        Command::Db { command: DbCommand::Check { config } } => db_check(config),
        Command::Db { command: DbCommand::Export { config, to } } => db_drain(config, &to, true),
        Command::Db { command: DbCommand::Salvage { config, to } } => db_drain(config, &to, false),
        Command::CheckConfig { config, against } => check_config(config, against),
        Command::Admin(command) => cli::run(*command),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "sluice", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sendmail { args } => sendmail::run(&args),
        Command::Scan { config, rules, signatures, json, slowest, paths } => {
            scan::run(scan::ScanArgs { config, rules, signatures, json, slowest, paths })
        }
    }
}

/// `sluice check-config`: the effective configuration on standard output, notes on standard error.
fn check_config(config: Option<PathBuf>, against: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let loaded = sluice_config::Config::discover(config.as_deref()).map_err(|e| fail(2, e))?;
    print!("{}", loaded.config.to_toml_string());
    for key in &loaded.not_yet_in_effect {
        eprintln!("sluice: note: {key} is accepted but not yet in effect in this release");
    }
    match against {
        // Exactly what a reload from that configuration to this one reports in `restart_required`.
        Some(path) => {
            let running = sluice_config::Config::from_file(&path).map_err(|e| fail(2, e))?;
            for key in running.config.restart_required_changes(&loaded.config) {
                eprintln!(
                    "sluice: note: {key} differs from {} and takes effect only at a restart \
                     (a reload keeps the running value)",
                    path.display()
                );
            }
        }
        // Without the running configuration, every restart-only key the file sets: what a reload cannot
        // change, known before it is asked for.
        None => {
            for key in &loaded.restart_only {
                eprintln!("sluice: note: {key} takes effect only at a restart (a reload keeps the running value)");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A command's failure with the exit code it owes its caller: 2 for a configuration or queue database that
/// cannot be used (`db`, `check-config`); otherwise from sysexits.h, as each command documents them (the
/// administrator's commands in `cli::exit`, `sendmail` in its module). The message is rendered when the
/// failure is made, so that it prints as the error's own `Display`, without a source chain.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// A [`Failure`] with exit `code`, ready for `?`.
fn fail(code: u8, message: impl std::fmt::Display) -> anyhow::Error {
    Failure { code, message: message.to_string() }.into()
}

/// `sluice hash-password`: the argon2id PHC string of the password on standard input (the line end is not
/// part of it), with a random salt.
fn hash_password() -> anyhow::Result<ExitCode> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| fail(74, format!("cannot read the password: {e}")))?;
    let password = line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(&line);
    if password.is_empty() {
        return Err(fail(64, "the password is empty"));
    }
    let mut salt = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut salt))
        .map_err(|e| fail(71, format!("cannot read random bytes for the salt: {e}")))?;
    let hash = SaltString::encode_b64(&salt)
        .map_err(|e| e.to_string())
        .and_then(|salt| {
            argon2::Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| e.to_string())
        })
        .map_err(|e| fail(1, format!("cannot hash the password: {e}")))?;
    println!("{hash}");
    Ok(ExitCode::SUCCESS)
}

/// The queue database's storage, from the configuration; every failure exits 2.
fn db_storage(config: Option<PathBuf>) -> anyhow::Result<sluice_queue_db::FsStorage> {
    let loaded = sluice_config::Config::discover(config.as_deref()).map_err(|e| fail(2, e))?;
    let dir = &loaded.config.queue_database.path;
    if !dir.is_dir() {
        return Err(fail(2, format!("no queue database at {}", dir.display())));
    }
    sluice_queue_db::FsStorage::new(dir).map_err(|e| fail(2, format!("{}: {e}", dir.display())))
}

/// `sluice db export` (`strict`) and `sluice db salvage`: one .eml file per message in `to`.
fn db_drain(config: Option<PathBuf>, to: &std::path::Path, strict: bool) -> anyhow::Result<ExitCode> {
    let storage = db_storage(config)?;
    std::fs::create_dir_all(to).map_err(|e| fail(2, format!("{}: {e}", to.display())))?;
    let result = sluice_queue_db::drain(&storage, strict, |m| write_eml(to, &m));
    let synced = std::fs::File::open(to).and_then(|d| d.sync_all());
    let report = match (result, synced) {
        (Ok(report), Ok(())) => report,
        (Err(e), _) => return Err(fail(1, e)),
        (_, Err(e)) => return Err(fail(1, format!("syncing {}: {e}", to.display()))),
    };
    for p in &report.problems {
        println!("DAMAGED  {p}");
    }
    println!(
        "{} messages written to {}{}",
        report.messages,
        to.display(),
        if report.problems.is_empty() { String::new() } else { format!(", {} problems", report.problems.len()) }
    );
    Ok(ExitCode::SUCCESS)
}

/// `<mid>.eml`: `X-Sender:`, one `X-Receiver:` per pending recipient, then the message; written beside
/// and renamed into place after an fsync, so that a replay directory never sees half a file.
fn write_eml(dir: &std::path::Path, m: &sluice_queue_db::Drained) -> std::io::Result<()> {
    use std::io::Write;
    let mut text = format!("X-Sender: <{}>\r\n", m.envelope.from_address()).into_bytes();
    for r in &m.pending {
        text.extend_from_slice(format!("X-Receiver: <{r}>\r\n").as_bytes());
    }
    text.extend_from_slice(&m.body);
    let tmp = dir.join(format!("{}.eml.tmp", m.mid));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&text)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(format!("{}.eml", m.mid)))
}

/// `sluice db check`: one line per file, exit 1 when anything is damaged.
fn db_check(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let storage = db_storage(config)?;
    let files =
        sluice_queue_db::check(&storage).map_err(|e| fail(1, format!("checking {}: {e}", storage.dir().display())))?;
    let damaged = files.iter().filter(|f| f.problem.is_some()).count();
    for f in &files {
        match &f.problem {
            None => println!("ok       {}: {}", f.file, f.summary),
            Some(p) => println!("DAMAGED  {}: {p}", f.file),
        }
    }
    println!("{} files checked, {damaged} damaged", files.len());
    Ok(if damaged > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
