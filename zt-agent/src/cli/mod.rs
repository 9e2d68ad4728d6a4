//! The command line: `run`, `sync --once`, `status`, `doctor`, `lookup`, `principals`, `keys`.

pub mod doctor;
mod lookup;
pub mod release;
mod run;
pub mod ssh;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{AgentConfig, DEFAULT_PATH};
use crate::outcome::{self, Completed};
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
    /// Runtime directory of `run`: the control socket (control.sock) that
    /// pam_zt asks for key refreshes. Created 0700.
    #[arg(long, global = true, default_value = zt_published::control::RUN_DIR)]
    run_dir: PathBuf,
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
    /// Sync once and exit. Exit 0 published or unchanged, 3 removals held back,
    /// 65 directory answer malformed, 69 directory unavailable, 75 throttled,
    /// 77 credentials refused, 78 bad config, 1 other failure (including sudo
    /// rules visudo refused: the installed ones stay). The last good snapshot
    /// stays whenever the sync fails.
    Sync {
        /// Accepted for clarity: a sync is always one pass.
        #[arg(long)]
        once: bool,
        /// Publish even if many users would be removed at once.
        #[arg(long)]
        force: bool,
        /// Exit 2 when a new snapshot was published, 0 only when nothing changed.
        #[arg(long)]
        detailed_exitcodes: bool,
    },
    /// Snapshot age and counts, the last sync's outcome and who was skipped.
    Status {
        /// One JSON object for monitoring (same health verdict and exit code).
        #[arg(long)]
        json: bool,
    },
    /// Check this host end to end (nsswitch, PAM stacks of sshd and sudo,
    /// sshd -T, CA file, snapshot age, clock, sudoers, IdP and key endpoints)
    /// and say what to fix. Exit 0 only when all is well.
    Doctor,
    /// What NSS answers for a name, email or uid, and why someone is missing.
    Lookup { key: String },
    /// Free a held user name so the next sync may give it to someone else.
    Release { name: String },
    /// sshd's AuthorizedPrincipalsCommand (%u): the certificate principals
    /// allowed to log in as USER, one per line (a directory user's own; for a
    /// shared account, every current member's). Reads only the published
    /// files. Unknown user or any error: prints nothing, exits 0.
    Principals { user: String },
    /// sshd's AuthorizedKeysCommand (%u): the public keys the directory holds
    /// for USER, one per line. Reads only the published files. Unknown user or
    /// any error: prints nothing, exits 0.
    Keys { user: String },
    /// Fleet signing keys for `[publish]`.
    FleetKey {
        #[command(subcommand)]
        action: FleetKeyAction,
    },
}

#[derive(Subcommand, Debug)]
enum FleetKeyAction {
    /// Write a new Ed25519 key to FILE (0600) and its public half to
    /// FILE.pub, and print the public key for the hosts' `public_keys`.
    /// Never replaces an existing FILE.
    New { file: PathBuf },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // sshd runs these on every login: no logging setup, no config.
    match &cli.command {
        Command::Principals { user } => return ssh::principals(&cli.state_dir, user),
        Command::Keys { user } => return ssh::keys(&cli.state_dir, user),
        Command::FleetKey {
            action: FleetKeyAction::New { file },
        } => {
            return match crate::fleet::sign::new_key(file) {
                Ok(public) => {
                    println!("{public}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("zt-agent: {e}");
                    ExitCode::from(outcome::exit::HOST)
                }
            };
        }
        _ => {}
    }
    crate::logging::init(cli.verbose);
    let paths = Paths {
        state_dir: cli.state_dir.clone(),
        ..Paths::default()
    };
    match cli.command {
        Command::Run => run::run(&cli.config, &paths, &cli.run_dir),
        Command::Sync {
            once: _,
            force,
            detailed_exitcodes,
        } => {
            let config = match AgentConfig::load(&cli.config) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("{e}");
                    return ExitCode::from(outcome::exit::CONFIG);
                }
            };
            let result = crate::sync::sync(&config, &paths, force);
            crate::monitoring::after_sync(&config.monitoring, &paths.state_dir);
            match &result {
                Ok(r) => {
                    let what = match r.completed {
                        Completed::Published => "published",
                        Completed::Unchanged => "unchanged",
                        Completed::HeldBack => "held back (removals; the rest published)",
                    };
                    println!(
                        "{what}: generation {}, {} users, {} groups",
                        r.generation, r.users, r.groups
                    );
                }
                Err(e) => tracing::error!("sync failed, last good snapshot kept: {e}"),
            }
            // the directory synced, but the sudo rules could not be installed:
            // the previous ones stay in force, and a script must notice
            let sudo_error = zt_snapshot::StateDir::open(&paths.state_dir)
                .ok()
                .and_then(|s| crate::sync::load_status(&s).sudo)
                .and_then(|s| s.error);
            if result.is_ok()
                && let Some(e) = sudo_error
            {
                tracing::error!("sudo rules not updated: {e}");
                return ExitCode::from(outcome::exit::HOST);
            }
            outcome::exit(&result.map(|r| r.completed), detailed_exitcodes)
        }
        Command::Status { json: false } => status::status(&paths),
        Command::Status { json: true } => status::status_json(&paths),
        Command::Doctor => doctor::doctor(&cli.config, &paths),
        Command::Lookup { key } => lookup::lookup(&cli.config, &paths, &key),
        Command::Release { name } => release::release(&paths, &name),
        Command::Principals { .. } | Command::Keys { .. } | Command::FleetKey { .. } => {
            unreachable!("answered above")
        }
    }
}
