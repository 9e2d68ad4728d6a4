//! /var/lib/zt/status.json: what the last sync did, for `zt-agent status` and
//! `zt-agent lookup`. Informational; nothing security-relevant reads it.

use serde::{Deserialize, Serialize};

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
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
