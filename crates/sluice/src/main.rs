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
