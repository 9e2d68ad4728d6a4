//! Where lookups get their snapshot: a per-thread, memory-mapped view that
//! notices a newly published snapshot without a system call.
//!
//! Each thread keeps a `Source` in a thread-local: the mapping of the snapshot
//! (with its `Layout`, so a lookup need not re-read the section table), a
//! read-only mapping of the 8-byte generation file, the generation it last
//! acted on and a recheck deadline. A warm lookup does one atomic load from the
//! generation mapping and reads `CLOCK_MONOTONIC_COARSE` (vDSO): no system
//! call. When the generation changes, or every `recheck_secs` (which covers an
//! agent that died between rename and generation write, a deleted snapshot, a
//! generation file created later, a state directory whose owner or mode
//! changed), it opens and checks the state directory and `fstatat`s the
//! snapshot name relative to it, remapping only if the file is a different
//! one. Nothing is shared between threads, so there are no locks on the lookup
//! path and a forked child simply inherits the parent thread's mappings.

use std::cell::RefCell;

use zt_snapshot::Snapshot;

use crate::error::ReadError;
use crate::files::{Config, SYSTEM};
use crate::sys::coarse_seconds;
use crate::trust::{GENERATION_LEN, GenerationMap, MIN_SNAPSHOT_LEN, Pinned, TrustedDir};

/// One thread's view of the published snapshot.
pub struct Source {
    cfg: Config,
    snap: Option<Pinned>,
    generation: Option<GenerationMap>,
    /// The published generation the current mapping was checked against.
    acted_on: u64,
    /// CLOCK_MONOTONIC_COARSE seconds; None = recheck on the next lookup.
    recheck_at: Option<i64>,
}

impl Source {
    pub const fn new(cfg: Config) -> Source {
        Source {
            cfg,
            snap: None,
            generation: None,
            acted_on: 0,
            recheck_at: None,
        }
    }

    /// The current snapshot, refreshed if the agent published a new one.
    #[inline]
    pub fn current(&mut self) -> Result<Snapshot<'_>, ReadError> {
        let now = coarse_seconds();
        let due = self.recheck_at.is_none_or(|at| now >= at);
        let published_changed = self
            .generation
            .as_ref()
            .is_some_and(|g| g.load() != self.acted_on);
        if due || published_changed || self.snap.is_none() {
            self.refresh(now, due)?;
        }
        self.snap.as_ref().ok_or(ReadError::Missing)?.snapshot()
    }

    #[inline(never)]
    fn refresh(&mut self, now: i64, due: bool) -> Result<(), ReadError> {
        if due {
            self.recheck_at = Some(now.saturating_add(self.cfg.recheck_secs));
        }
        let dir = match TrustedDir::open(self.cfg.dir, self.cfg.owner) {
            Ok(dir) => dir,
            Err(e) => {
                // Nothing in an untrusted (or vanished) directory is used.
                self.snap = None;
                self.generation = None;
                return Err(e);
            }
        };
        if due {
            self.refresh_generation(&dir);
        }
        // Read the published generation before looking at the snapshot name:
        // the agent renames first and bumps the generation second, so a value
        // read here is never newer than the file we are about to find.
        if let Some(g) = &self.generation {
            self.acted_on = g.load();
        }
        let result = self.refresh_snapshot(&dir);
        if result.is_err() {
            self.snap = None;
        }
        result
    }

    /// (Re)maps the generation file if it appeared or was replaced; drops the
    /// mapping if it is gone or no longer trusted.
    fn refresh_generation(&mut self, dir: &TrustedDir) {
        let name = self.cfg.generation;
        let same = self
            .generation
            .as_ref()
            .is_some_and(|g| dir.still(name, g.id, GENERATION_LEN) == Ok(true));
        if !same {
            self.generation = GenerationMap::open(dir, name).ok();
        }
    }

    fn refresh_snapshot(&mut self, dir: &TrustedDir) -> Result<(), ReadError> {
        // While we hold the mapping the old inode stays allocated, so its
        // number cannot have been reused by the new file.
        if let Some(p) = &self.snap
            && dir.still(self.cfg.snapshot, p.id, MIN_SNAPSHOT_LEN)?
        {
            return Ok(());
        }
        // Map the new file first, then drop the old mapping (munmap).
        self.snap = Some(dir.pin(self.cfg.snapshot)?);
        Ok(())
    }
}

thread_local! {
    static SOURCE: RefCell<Source> = const { RefCell::new(Source::new(SYSTEM)) };
}

/// Runs `f` over this thread's current snapshot of the system state directory.
/// `ReadError::Busy` if the thread-local is gone (thread teardown) or already
/// in use (re-entry from inside `f`).
#[inline]
pub fn with_snapshot<R, E: From<ReadError>>(
    f: impl FnOnce(&Snapshot<'_>) -> Result<R, E>,
) -> Result<R, E> {
    SOURCE
        .try_with(|cell| borrow_current(cell, f))
        .unwrap_or(Err(E::from(ReadError::Busy)))
}

/// `with_snapshot` over a given cell (tests use their own `Source`).
#[inline]
pub fn borrow_current<R, E: From<ReadError>>(
    cell: &RefCell<Source>,
    f: impl FnOnce(&Snapshot<'_>) -> Result<R, E>,
) -> Result<R, E> {
    let mut source = cell.try_borrow_mut().map_err(|_| ReadError::Busy)?;
    let snap = source.current()?;
    f(&snap)
}

#[cfg(test)]
mod tests;
