//! /var/lib/zt/status.json: what the last sync did, for `zt-agent status` and
//! `zt-agent lookup`. Informational; nothing security-relevant reads it.

use serde::{Deserialize, Serialize};

use crate::outcome::{Completed, FailureKind};
use crate::resolve::Skip;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub last_attempt: u64,
    pub last_success: Option<u64>,
    pub last_error: Option<String>,
    pub users: usize,
    pub groups: usize,
    /// Notable skips only (collisions, bad names): not the whole company.
    pub skipped: Vec<Skip>,
    pub problems: Vec<String>,
    /// How the last sync ended.
    #[serde(default)]
    pub outcome: Option<Result<Completed, FailureKind>>,
    /// The configured interval at the last sync: `status` calls a host whose
    /// last good sync is older than three intervals frozen.
    #[serde(default)]
    pub sync_interval_secs: Option<u64>,
    /// The `[[sudo]]` step after the last attempt.
    #[serde(default)]
    pub sudo: Option<SudoStatus>,
}

/// What the last attempt did to /etc/sudoers.d/zt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SudoStatus {
    /// Rules in force from zt's file.
    pub rules: usize,
    /// Why the file could not be updated (the previous one stays in force).
    pub error: Option<String>,
    /// Rules left out.
    pub problems: Vec<String>,
}

/// A host is frozen when its last good sync is older than this many intervals:
/// removals in the IdP no longer reach it, and monitoring must say so.
pub const FROZEN_AFTER_INTERVALS: u64 = 3;

/// Why this host's directory data may be out of date, if it may be.
pub fn frozen(st: &Status, now: u64) -> Option<String> {
    let interval = st.sync_interval_secs?;
    let limit = interval.saturating_mul(FROZEN_AFTER_INTERVALS);
    match st.last_success {
        Some(t) if now.saturating_sub(t) > limit => Some(format!(
            "the last good sync was {} s ago, more than {FROZEN_AFTER_INTERVALS} sync intervals ({limit} s): \
             removals in the directory are not reaching this host",
            now.saturating_sub(t)
        )),
        Some(_) => None,
        None => Some("a sync has never succeeded on this host".into()),
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_frozen_after_three_intervals_without_a_good_sync() {
        let st = Status {
            last_success: Some(1000),
            sync_interval_secs: Some(60),
            ..Status::default()
        };
        assert_eq!(frozen(&st, 1000 + 180), None);
        let why = frozen(&st, 1000 + 181).unwrap();
        assert!(why.contains("181 s ago"), "{why}");
        let never = Status {
            sync_interval_secs: Some(60),
            ..Status::default()
        };
        assert!(frozen(&never, 5).unwrap().contains("never"));
    }
}
