//! The `sluice` command: the server (`serve`) and the tools around it.

mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
        Command::Db { command: DbCommand::Check { config } } => db_check(config),
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

/// `sluice db check`: one line per file, exit 1 when anything is damaged.
fn db_check(config: Option<PathBuf>) -> ExitCode {
    let loaded = match sluice_config::Config::discover(config.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sluice: {e}");
            return ExitCode::from(2);
        }
    };
    let dir = &loaded.config.queue_database.path;
    if !dir.is_dir() {
        eprintln!("sluice: no queue database at {}", dir.display());
        return ExitCode::from(2);
    }
    let storage = match sluice_queue_db::FsStorage::new(dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sluice: {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
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
