//! The command line: `run`, `sync --once`, `status`, `lookup`.

mod lookup;
pub mod release;
mod run;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{AgentConfig, DEFAULT_PATH};
use crate::sync::Paths;

#[derive(Parser, Debug)]
#[command(
    name = "zt-agent",
    version,
    about = "Users, groups and sudo rights from your identity provider"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// State directory (snapshot, ids, status). nss_zt always reads /var/lib/zt.
    #[arg(long, global = true, default_value = "/var/lib/zt")]
    state_dir: PathBuf,
    /// More detail in the log.
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run as a daemon: sync now, then every sync_interval (with jitter).
    Run,
    /// Sync once and exit (non-zero if the sync failed; the last good snapshot stays).
    Sync {
        /// Accepted for clarity: a sync is always one pass.
        #[arg(long)]
        once: bool,
        /// Publish even if many users would be removed at once.
        #[arg(long)]
        force: bool,
    },
    /// Snapshot age and counts, the last sync's outcome and who was skipped.
    Status,
    /// What NSS answers for a name, email or uid, and why someone is missing.
    Lookup { key: String },
    /// Free a held user name so the next sync may give it to someone else.
    Release { name: String },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::logging::init(cli.verbose);
    let paths = Paths {
        state_dir: cli.state_dir.clone(),
        ..Paths::default()
    };
    match cli.command {
        Command::Run => run::run(&cli.config, &paths),
        Command::Sync { once: _, force } => {
            let config = match AgentConfig::load(&cli.config) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("{e}");
                    return ExitCode::from(78); // EX_CONFIG
                }
            };
            match crate::sync::sync(&config, &paths, force) {
                Ok(r) => {
                    let what = if r.changed { "published" } else { "unchanged" };
                    println!(
                        "{what}: generation {}, {} users, {} groups",
                        r.generation, r.users, r.groups
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!("sync failed, last good snapshot kept: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Status => status::status(&paths),
        Command::Lookup { key } => lookup::lookup(&cli.config, &paths, &key),
        Command::Release { name } => release::release(&paths, &name),
    }
}
