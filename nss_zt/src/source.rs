//! Where lookups get their snapshot: zt-published's per-thread `Source` over
//! the system state directory (trusted directory fd, `O_NOFOLLOW` files, one
//! atomic load per warm lookup, a recheck every 5 s). This module only maps
//! its errors onto the module's `Failure` (status.rs).

use zt_snapshot::Snapshot;

use crate::status::Failure;

pub use zt_published::{Config, Pinned, SYSTEM};

/// Runs `f` over this thread's current snapshot. UNAVAIL (EAGAIN) if the
/// thread-local is gone (thread teardown) or already in use (re-entry).
#[inline]
pub fn with_snapshot<R>(f: impl FnOnce(&Snapshot<'_>) -> Result<R, Failure>) -> Result<R, Failure> {
    zt_published::with_snapshot(f)
}

/// Maps the snapshot for an enumeration, with every trust check.
pub fn open_snapshot(cfg: &Config) -> Result<Pinned, Failure> {
    Ok(zt_published::open_snapshot(cfg)?)
}
