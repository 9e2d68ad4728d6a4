//! How a sync ends, as types: published, unchanged, held back or failed (and
//! why). `zt-agent sync --once` turns each into its own exit code, the daemon
//! into a log line, and status.json keeps the last one for monitoring.

use std::process::ExitCode;

use serde::{Deserialize, Serialize};

use crate::directory::error::{DirectoryError, DirectoryFailure};

/// A sync that went through. Held back still published everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Completed {
    /// A new snapshot is live.
    Published,
    /// The directory matched what is published: nothing to do.
    Unchanged,
    /// Additions, changes and disables are live, but removals of people missing
    /// from the directory were held back (too many at once) until forced.
    HeldBack,
}

/// Why a sync failed. The last good snapshot stays in force in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// agent.toml is missing, unreadable, untrusted or invalid.
    Config,
    /// The directory could not be read, throttled us, refused us or answered garbage.
    Directory(DirectoryFailure),
    /// This host: the state directory, the account files, writing or verifying
    /// the snapshot.
    Host,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncError {
    pub kind: FailureKind,
    pub message: String,
    /// The directory said when to come back (Retry-After); the daemon waits
    /// at least that long before its next sync.
    pub retry_after: Option<std::time::Duration>,
}

impl SyncError {
    pub fn host(message: impl Into<String>) -> Self {
        SyncError {
            kind: FailureKind::Host,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        SyncError {
            kind: FailureKind::Config,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<DirectoryError> for SyncError {
    fn from(e: DirectoryError) -> Self {
        SyncError {
            kind: FailureKind::Directory(e.kind),
            message: e.to_string(),
            retry_after: e.retry_after,
        }
    }
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SyncError {}

/// `zt-agent sync --once` exit codes (documented in README.md). Failures use
/// sysexits.h values so they read the same as other daemons' codes.
pub mod exit {
    /// Published, or unchanged (without --detailed-exitcodes).
    pub const OK: u8 = 0;
    /// A generic failure of this host (state directory, publish).
    pub const HOST: u8 = 1;
    /// --detailed-exitcodes: a new snapshot was published (0 then means unchanged).
    pub const PUBLISHED_DETAILED: u8 = 2;
    /// Removals held back; everything else published. Needs an admin's look.
    pub const HELD_BACK: u8 = 3;
    /// EX_DATAERR: the directory's answer is unusable.
    pub const MALFORMED: u8 = 65;
    /// EX_UNAVAILABLE: the directory could not be reached or read.
    pub const UNAVAILABLE: u8 = 69;
    /// EX_TEMPFAIL: the directory throttled us; try later.
    pub const THROTTLED: u8 = 75;
    /// EX_NOPERM: the directory refused our credentials.
    pub const UNAUTHORISED: u8 = 77;
    /// EX_CONFIG: agent.toml is invalid or untrusted.
    pub const CONFIG: u8 = 78;
}

/// The exit code for a sync's result. `detailed` (like puppet's and
/// terraform's --detailed-exitcodes) tells "published" (2) from "unchanged" (0);
/// without it both are 0, so `zt-agent sync --once && ...` and cron jobs treat an
/// up-to-date host as the success it is.
pub fn exit_code(result: &Result<Completed, SyncError>, detailed: bool) -> u8 {
    match result {
        Ok(Completed::Published) if detailed => exit::PUBLISHED_DETAILED,
        Ok(Completed::Published | Completed::Unchanged) => exit::OK,
        Ok(Completed::HeldBack) => exit::HELD_BACK,
        Err(e) => match e.kind {
            FailureKind::Config => exit::CONFIG,
            FailureKind::Host => exit::HOST,
            FailureKind::Directory(DirectoryFailure::Malformed) => exit::MALFORMED,
            FailureKind::Directory(DirectoryFailure::Unavailable) => exit::UNAVAILABLE,
            FailureKind::Directory(DirectoryFailure::Throttled) => exit::THROTTLED,
            FailureKind::Directory(DirectoryFailure::Unauthorised) => exit::UNAUTHORISED,
        },
    }
}

pub fn exit(result: &Result<Completed, SyncError>, detailed: bool) -> ExitCode {
    ExitCode::from(exit_code(result, detailed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_own_exit_code() {
        let dir = |k| Err(SyncError::from(DirectoryError::new(k, "x")));
        let cases: Vec<(Result<Completed, SyncError>, u8)> = vec![
            (Ok(Completed::Published), 2),
            (Ok(Completed::Unchanged), 0),
            (Ok(Completed::HeldBack), 3),
            (Err(SyncError::config("x")), 78),
            (Err(SyncError::host("x")), 1),
            (dir(DirectoryFailure::Malformed), 65),
            (dir(DirectoryFailure::Unavailable), 69),
            (dir(DirectoryFailure::Throttled), 75),
            (dir(DirectoryFailure::Unauthorised), 77),
        ];
        let mut seen = std::collections::HashSet::new();
        for (result, code) in &cases {
            assert_eq!(exit_code(result, true), *code, "{result:?}");
            assert!(seen.insert(*code), "exit code {code} used twice");
        }
        // without --detailed-exitcodes an up-to-date host is plain success
        assert_eq!(exit_code(&Ok(Completed::Published), false), 0);
        assert_eq!(exit_code(&Ok(Completed::Unchanged), false), 0);
    }

    #[test]
    fn directory_errors_keep_their_kind_and_say_what() {
        let mut e = DirectoryError::new(DirectoryFailure::Throttled, "GET /users: HTTP 429");
        e.retry_after = Some(std::time::Duration::from_secs(30));
        let s = SyncError::from(e);
        assert_eq!(s.kind, FailureKind::Directory(DirectoryFailure::Throttled));
        assert_eq!(s.retry_after, Some(std::time::Duration::from_secs(30)));
        assert_eq!(
            s.message,
            "directory throttled us: GET /users: HTTP 429 (retry after 30s)"
        );
    }
}
