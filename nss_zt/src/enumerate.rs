//! setpwent/getpwent_r/endpwent and the group trio: walk the snapshot in index
//! order.
//!
//! The cursor is process-global (glibc calls the *ent functions of one
//! database under its own lock, from any thread) and pins its own mapping of
//! the snapshot for the length of one enumeration, so a refresh by the
//! per-thread lookup path never pulls the file out from under it. The lock is
//! only ever tried, never waited for: if a thread held it when another forked,
//! the child answers UNAVAIL instead of deadlocking.

use std::sync::{Mutex, TryLockError};

use zt_snapshot::Snapshot;

use crate::source::{self, Config, Pinned};
use crate::status::{BUSY, Failure};

pub struct Cursor {
    cfg: Config,
    pinned: Option<Pinned>,
    next: usize,
}

pub static PASSWD: Mutex<Cursor> = Mutex::new(Cursor::new(source::SYSTEM));
pub static GROUP: Mutex<Cursor> = Mutex::new(Cursor::new(source::SYSTEM));

impl Cursor {
    pub const fn new(cfg: Config) -> Cursor {
        Cursor {
            cfg,
            pinned: None,
            next: 0,
        }
    }

    /// set*ent: map the current snapshot and start from the first entry.
    pub fn rewind(&mut self) -> Result<(), Failure> {
        self.close();
        self.pinned = Some(source::open_snapshot(&self.cfg)?);
        Ok(())
    }

    /// end*ent: release the mapping.
    pub fn close(&mut self) {
        self.pinned = None;
        self.next = 0;
    }

    /// get*ent_r: the next entry that `at` does not skip (`Ok(None)`), or
    /// NOTFOUND at the end. The position advances only past entries returned
    /// or skipped: on ERANGE (or any error) the same entry comes next time.
    pub fn next<T>(
        &mut self,
        count: impl Fn(&Snapshot<'_>) -> usize,
        mut at: impl FnMut(&Snapshot<'_>, usize) -> Result<Option<T>, Failure>,
    ) -> Result<T, Failure> {
        if self.pinned.is_none() {
            // get*ent_r without set*ent starts from the beginning.
            self.rewind()?;
        }
        let Cursor { pinned, next, .. } = self;
        let snap = pinned.as_ref().ok_or(BUSY)?.snapshot()?;
        while *next < count(&snap) {
            let entry = at(&snap, *next)?;
            *next += 1;
            if let Some(entry) = entry {
                return Ok(entry);
            }
        }
        Err(Failure::NotFound)
    }
}

/// Runs `f` with the cursor locked; UNAVAIL (EAGAIN) if the lock is taken.
pub fn with_cursor<R>(
    cursor: &Mutex<Cursor>,
    f: impl FnOnce(&mut Cursor) -> Result<R, Failure>,
) -> Result<R, Failure> {
    let mut guard = match cursor.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::WouldBlock) => return Err(BUSY),
        Err(TryLockError::Poisoned(p)) => {
            // A panic (caught at the boundary) interrupted an earlier call:
            // start over rather than trust a half-updated cursor.
            let mut guard = p.into_inner();
            guard.close();
            cursor.clear_poison();
            guard
        }
    };
    f(&mut guard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fail;
    use crate::lookup;
    use crate::status::MISSING;
    use std::ffi::CStr;
    use zt_published::testing::{TempStateDir as Dir, content};

    fn name(p: *const std::ffi::c_char) -> String {
        // SAFETY: test: p points into a live test buffer, NUL-terminated.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    fn next_user(c: &mut Cursor, buf: &mut [u8]) -> Result<String, Failure> {
        c.next(|s| s.user_count(), |s, i| lookup::passwd_at(s, i, buf))
            .map(|p| name(p.pw_name))
    }

    fn next_group(c: &mut Cursor, buf: &mut [u8]) -> Result<String, Failure> {
        c.next(|s| s.group_count(), |s, i| lookup::group_at(s, i, buf))
            .map(|g| name(g.gr_name))
    }

    #[test]
    fn walks_users_in_order_then_notfound() {
        let d = Dir::new("enum");
        d.publish(&content(
            1,
            &[
                ("alice", 1_500_001),
                ("bob", 1_500_002),
                ("carol", 1_500_003),
            ],
        ));
        let mut c = Cursor::new(d.config(5));
        let mut buf = [0u8; 1024];
        // No set*ent first: starts at the beginning.
        assert_eq!(next_user(&mut c, &mut buf).unwrap(), "alice");
        assert_eq!(next_user(&mut c, &mut buf).unwrap(), "bob");
        // rewind starts over.
        c.rewind().unwrap();
        assert_eq!(next_user(&mut c, &mut buf).unwrap(), "alice");
        assert_eq!(next_user(&mut c, &mut buf).unwrap(), "bob");
        assert_eq!(next_user(&mut c, &mut buf).unwrap(), "carol");
        assert_eq!(fail(next_user(&mut c, &mut buf)), Failure::NotFound);
        assert_eq!(fail(next_user(&mut c, &mut buf)), Failure::NotFound);
        c.close();
        assert_eq!(next_user(&mut c, &mut buf).unwrap(), "alice");
        assert_eq!(
            next_group(&mut Cursor::new(d.config(5)), &mut buf).unwrap(),
            "alice"
        );
    }

    #[test]
    fn erange_does_not_advance() {
        let d = Dir::new("enum-erange");
        d.publish(&content(1, &[("alice", 1_500_001), ("bob", 1_500_002)]));
        let mut c = Cursor::new(d.config(5));
        let mut big = [0u8; 1024];
        let mut small = [0u8; 8];
        assert_eq!(next_user(&mut c, &mut big).unwrap(), "alice");
        assert_eq!(fail(next_user(&mut c, &mut small)), Failure::Range);
        assert_eq!(fail(next_user(&mut c, &mut small)), Failure::Range);
        assert_eq!(next_user(&mut c, &mut big).unwrap(), "bob");
        assert_eq!(fail(next_user(&mut c, &mut big)), Failure::NotFound);
    }

    #[test]
    fn enumeration_keeps_its_mapping_across_a_publish() {
        let d = Dir::new("enum-pin");
        d.publish(&content(1, &[("alice", 1_500_001), ("bob", 1_500_002)]));
        let mut c = Cursor::new(d.config(5));
        let mut buf = [0u8; 1024];
        c.rewind().unwrap();
        assert_eq!(next_user(&mut c, &mut buf).unwrap(), "alice");
        d.publish(&content(2, &[("xavier", 1_500_010)]));
        std::fs::remove_file(d.file("snapshot")).unwrap();
        assert_eq!(next_user(&mut c, &mut buf).unwrap(), "bob");
        assert_eq!(fail(next_user(&mut c, &mut buf)), Failure::NotFound);
        assert_eq!(fail(c.rewind()), MISSING);
        assert_eq!(fail(next_user(&mut c, &mut buf)), MISSING);
    }

    #[test]
    fn skips_root_ids() {
        let d = Dir::new("enum-root");
        d.publish(&content(
            1,
            &[("alice", 1_500_001), ("evil", 0), ("bob", 1_500_002)],
        ));
        let mut c = Cursor::new(d.config(5));
        let mut buf = [0u8; 1024];
        assert_eq!(next_user(&mut c, &mut buf).unwrap(), "alice");
        assert_eq!(next_user(&mut c, &mut buf).unwrap(), "bob");
        assert_eq!(fail(next_user(&mut c, &mut buf)), Failure::NotFound);
        let mut c = Cursor::new(d.config(5));
        assert_eq!(next_group(&mut c, &mut buf).unwrap(), "alice");
        assert_eq!(next_group(&mut c, &mut buf).unwrap(), "bob");
    }

    #[test]
    fn lock_is_tried_not_waited_for_and_poison_resets() {
        let d = Dir::new("enum-lock");
        d.publish(&content(1, &[("alice", 1_500_001), ("bob", 1_500_002)]));
        let m = Mutex::new(Cursor::new(d.config(5)));
        let mut buf = [0u8; 1024];
        let held = m.lock().unwrap();
        assert_eq!(fail(with_cursor(&m, |c| next_user(c, &mut buf))), BUSY);
        drop(held);
        assert_eq!(
            with_cursor(&m, |c| next_user(c, &mut buf)).unwrap(),
            "alice"
        );
        let r = std::panic::catch_unwind(|| {
            with_cursor(&m, |_| -> Result<(), Failure> { panic!("boom") })
        });
        assert!(r.is_err());
        assert_eq!(
            with_cursor(&m, |c| next_user(c, &mut buf)).unwrap(),
            "alice",
            "poison resets the cursor"
        );
    }
}
