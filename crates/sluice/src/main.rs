//! The `sluice` command: the server (`serve`) and the tools around it.

mod replay;
mod serve;
mod wiring;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: no per-allocation header and size classes that fit the queue's
/// small records, and freed pages go back to the system instead of staying resident (B4: resident memory
/// per queued message; see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "sluice", version, about = "A mail transport server with a durable, controllable queue engine")]
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
    },
    /// Reads a password from standard input (one line) and prints its argon2id hash, for `users` of a
    /// receive connector.
    HashPassword,
    /// Queue database tools (run them while the server is stopped).
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => match serve::run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sluice: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::HashPassword => hash_password(),
        Command::Db { command: DbCommand::Check { config } } => db_check(config),
        Command::Db { command: DbCommand::Export { config, to } } => db_drain(config, &to, true),
        Command::Db { command: DbCommand::Salvage { config, to } } => db_drain(config, &to, false),
        Command::CheckConfig { config } => match sluice_config::Config::discover(config.as_deref()) {
            Ok(loaded) => {
                print!("{}", loaded.config.to_toml_string());
                for key in &loaded.not_yet_in_effect {
                    eprintln!("sluice: note: {key} is accepted but not yet in effect in this release");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sluice: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// `sluice hash-password`: the argon2id PHC string of the password on standard input (the line end is not
/// part of it), with a random salt.
fn hash_password() -> ExitCode {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("sluice: cannot read the password: {e}");
        return ExitCode::from(74);
    }
    let password = line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(&line);
    if password.is_empty() {
        eprintln!("sluice: the password is empty");
        return ExitCode::from(64);
    }
    let mut salt = [0u8; 16];
    if let Err(e) = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut salt)) {
        eprintln!("sluice: cannot read random bytes for the salt: {e}");
        return ExitCode::from(71);
    }
    let hashed = SaltString::encode_b64(&salt).map_err(|e| e.to_string()).and_then(|salt| {
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    });
    match hashed {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice: cannot hash the password: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The queue database's storage, from the configuration; the error is a message and an exit code.
fn db_storage(config: Option<PathBuf>) -> Result<sluice_queue_db::FsStorage, ExitCode> {
    let loaded = sluice_config::Config::discover(config.as_deref()).map_err(|e| {
        eprintln!("sluice: {e}");
        ExitCode::from(2)
    })?;
    let dir = &loaded.config.queue_database.path;
    if !dir.is_dir() {
        eprintln!("sluice: no queue database at {}", dir.display());
        return Err(ExitCode::from(2));
    }
    sluice_queue_db::FsStorage::new(dir).map_err(|e| {
        eprintln!("sluice: {}: {e}", dir.display());
        ExitCode::from(2)
    })
}

/// `sluice db export` (`strict`) and `sluice db salvage`: one .eml file per message in `to`.
fn db_drain(config: Option<PathBuf>, to: &std::path::Path, strict: bool) -> ExitCode {
    let storage = match db_storage(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Err(e) = std::fs::create_dir_all(to) {
        eprintln!("sluice: {}: {e}", to.display());
        return ExitCode::from(2);
    }
    let result = sluice_queue_db::drain(&storage, strict, |m| write_eml(to, &m));
    let synced = std::fs::File::open(to).and_then(|d| d.sync_all());
    match (result, synced) {
        (Ok(report), Ok(())) => {
            for p in &report.problems {
                println!("DAMAGED  {p}");
            }
            println!(
                "{} messages written to {}{}",
                report.messages,
                to.display(),
                if report.problems.is_empty() {
                    String::new()
                } else {
                    format!(", {} problems", report.problems.len())
                }
            );
            ExitCode::SUCCESS
        }
        (Err(e), _) => {
            eprintln!("sluice: {e}");
            ExitCode::FAILURE
        }
        (_, Err(e)) => {
            eprintln!("sluice: syncing {}: {e}", to.display());
            ExitCode::FAILURE
        }
    }
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
fn db_check(config: Option<PathBuf>) -> ExitCode {
    let storage = match db_storage(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let dir = storage.dir().to_owned();
    match sluice_queue_db::check(&storage) {
        Ok(files) => {
            let damaged = files.iter().filter(|f| f.problem.is_some()).count();
            for f in &files {
                match &f.problem {
                    None => println!("ok       {}: {}", f.file, f.summary),
                    Some(p) => println!("DAMAGED  {}: {p}", f.file),
                }
            }
            println!("{} files checked, {damaged} damaged", files.len());
            if damaged > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        Err(e) => {
            eprintln!("sluice: checking {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
