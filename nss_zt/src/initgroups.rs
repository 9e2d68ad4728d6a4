//! `initgroups_dyn`: a user's supplementary groups in one lookup.
//!
//! glibc's getgrouplist/initgroups pass a malloc'ed gid array with `*start`
//! entries used out of `*size`; a module appends its groups, growing the array
//! with realloc. Without this entry point glibc would enumerate every group.

use std::ffi::c_long;
use std::mem::size_of;

use libc::gid_t;
use zt_snapshot::Snapshot;

use crate::lookup;
use crate::status::Failure;

/// The caller's gid list, as far as the appending logic needs it.
pub trait GidList {
    /// Entries in use (`*start`).
    fn in_use(&self) -> usize;
    /// Entries allocated (`*size`).
    fn capacity(&self) -> usize;
    /// The entries in use.
    fn entries(&self) -> &[gid_t];
    /// Appends; only called when `in_use() < capacity()`.
    fn push(&mut self, gid: gid_t);
    /// Reallocates to `capacity` entries; false if the allocation failed (the
    /// list is then unchanged).
    fn grow_to(&mut self, capacity: usize) -> bool;
}

/// Adds `user`'s supplementary groups. NOTFOUND for an unknown user.
pub fn for_user(
    snap: &Snapshot<'_>,
    user: &[u8],
    primary: gid_t,
    list: &mut impl GidList,
    limit: c_long,
) -> Result<(), Failure> {
    let u = lookup::user_by_name(snap, user)?;
    append(list, primary, u.groups.iter(), limit)
}

/// Appends `gids` to `list`, skipping the primary group, gid 0 and gids already
/// present; doubles the list when full, never beyond `limit` when `limit > 0`,
/// and stops adding once `limit` entries are in use.
///
/// Duplicate checks stay linear for sorted input (the writer stores each user's
/// gids sorted): a gid is compared with the entries that were there before
/// this call (glibc passes the primary group, plus what earlier modules found),
/// and with what this call appended only when it is not above the largest gid
/// appended so far. Unsorted input (a damaged snapshot) is still de-duplicated,
/// just in quadratic time.
pub fn append(
    list: &mut impl GidList,
    primary: gid_t,
    gids: impl Iterator<Item = gid_t>,
    limit: c_long,
) -> Result<(), Failure> {
    let limit = usize::try_from(limit).ok().filter(|&l| l > 0);
    let before = list.in_use();
    // the range of the earlier entries: most gids fall outside it (glibc's
    // list usually holds just the primary group) and need no search there
    let (lo, hi) = list
        .entries()
        .iter()
        .fold((gid_t::MAX, gid_t::MIN), |(lo, hi), &g| {
            (lo.min(g), hi.max(g))
        });
    // gid 0 is never appended (not allowed), so 0 doubles as "nothing yet"
    let mut max_appended: gid_t = 0;
    let stop_at = limit.unwrap_or(usize::MAX);
    for gid in gids {
        if gid == primary || !lookup::gid_allowed(gid) {
            continue;
        }
        let maybe_earlier = lo <= gid && gid <= hi;
        let maybe_ours = gid <= max_appended;
        if (maybe_earlier || maybe_ours)
            && already_listed(list.entries(), before, gid, maybe_earlier, maybe_ours)
        {
            continue;
        }
        let used = list.in_use();
        if used >= stop_at {
            break;
        }
        if used >= list.capacity() {
            let mut capacity = list.capacity().saturating_mul(2).max(1);
            if let Some(l) = limit {
                capacity = capacity.min(l);
            }
            if !list.grow_to(capacity) {
                return Err(Failure::NoMem);
            }
        }
        list.push(gid);
        max_appended = max_appended.max(gid);
    }
    Ok(())
}

/// Whether `gid` is among the entries present before this call (`earlier`)
/// or among those it appended (`ours`). Out of line: kept off the loop above,
/// where the slice set-up alone cost more than the rest of an iteration.
#[cold]
#[inline(never)]
fn already_listed(entries: &[gid_t], before: usize, gid: gid_t, earlier: bool, ours: bool) -> bool {
    let (e, o) = entries.split_at(before.min(entries.len()));
    (earlier && e.contains(&gid)) || (ours && o.contains(&gid))
}

/// The list glibc passed in: `*start`, `*size`, `*groupsp` (malloc'ed).
/// Every change is written back at once, so whatever happens next (an
/// allocation failure, a panic caught at the boundary) the caller sees a
/// consistent list.
pub struct CallerGids {
    start: *mut c_long,
    size: *mut c_long,
    groupsp: *mut *mut gid_t,
    len: usize,
    capacity: usize,
    groups: *mut gid_t,
}

impl CallerGids {
    /// # Safety
    /// `start`, `size` and `groupsp` must be null or valid for reads and
    /// writes, and `*groupsp` must be null or a malloc'ed array of at least
    /// `*size` gids of which the first `*start` are initialised — what glibc's
    /// internal_getgrouplist passes. They must stay valid while `self` lives.
    pub unsafe fn new(
        start: *mut c_long,
        size: *mut c_long,
        groupsp: *mut *mut gid_t,
    ) -> Result<Self, Failure> {
        let invalid = Failure::Unavail(libc::EINVAL);
        if start.is_null() || size.is_null() || groupsp.is_null() {
            return Err(invalid);
        }
        // SAFETY: non-null and valid per this function's contract.
        let (s, z, g) = unsafe { (*start, *size, *groupsp) };
        let len = usize::try_from(s).map_err(|_| invalid)?;
        let capacity = usize::try_from(z).map_err(|_| invalid)?;
        if len > capacity || (g.is_null() && capacity > 0) {
            return Err(invalid);
        }
        Ok(CallerGids {
            start,
            size,
            groupsp,
            len,
            capacity,
            groups: g,
        })
    }
}

impl GidList for CallerGids {
    fn in_use(&self) -> usize {
        self.len
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn entries(&self) -> &[gid_t] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: groups is non-null when capacity > 0 (checked in new, kept by
        // grow_to) and its first len <= capacity entries are initialised.
        unsafe { std::slice::from_raw_parts(self.groups, self.len) }
    }

    fn push(&mut self, gid: gid_t) {
        if self.len >= self.capacity {
            return;
        }
        // SAFETY: len < capacity, so the slot is inside the allocation; start
        // is valid for writes (contract of `new`) and len + 1 fits in c_long
        // because capacity came from (or was grown within) c_long.
        unsafe {
            self.groups.add(self.len).write(gid);
            self.len += 1;
            *self.start = self.len as c_long;
        }
    }

    fn grow_to(&mut self, capacity: usize) -> bool {
        let Some(bytes) = capacity.checked_mul(size_of::<gid_t>()) else {
            return false;
        };
        let Ok(as_long) = c_long::try_from(capacity) else {
            return false;
        };
        if capacity < self.len {
            return false;
        }
        // SAFETY: groups is null or the caller's malloc'ed array (contract of
        // `new`), so realloc may resize it; on failure it is left untouched.
        let p = unsafe { libc::realloc(self.groups.cast(), bytes) }.cast::<gid_t>();
        if p.is_null() {
            return false;
        }
        self.groups = p;
        self.capacity = capacity;
        // SAFETY: groupsp and size are valid for writes (contract of `new`);
        // the old pointer is dead now, so the caller must get the new one.
        unsafe {
            *self.groupsp = p;
            *self.size = as_long;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fail;
    use crate::lookup::tests::sample;

    /// A Vec-backed list that can be told to fail allocation.
    struct VecGids {
        v: Vec<gid_t>,
        capacity: usize,
        fail_alloc: bool,
        grows: Vec<usize>,
    }

    impl VecGids {
        fn new(initial: &[gid_t], capacity: usize) -> Self {
            VecGids {
                v: initial.to_vec(),
                capacity,
                fail_alloc: false,
                grows: vec![],
            }
        }
    }

    impl GidList for VecGids {
        fn in_use(&self) -> usize {
            self.v.len()
        }
        fn capacity(&self) -> usize {
            self.capacity
        }
        fn entries(&self) -> &[gid_t] {
            &self.v
        }
        fn push(&mut self, gid: gid_t) {
            assert!(self.v.len() < self.capacity, "push beyond capacity");
            self.v.push(gid);
        }
        fn grow_to(&mut self, capacity: usize) -> bool {
            assert!(capacity > self.capacity);
            if self.fail_alloc {
                return false;
            }
            self.grows.push(capacity);
            self.capacity = capacity;
            true
        }
    }

    #[test]
    fn skips_primary_duplicates_and_gid_zero() {
        let mut l = VecGids::new(&[100, 7], 10);
        append(&mut l, 100, [7, 100, 8, 0, 8, 9].into_iter(), -1).unwrap();
        assert_eq!(l.v, [100, 7, 8, 9]);
        assert!(l.grows.is_empty());
    }

    #[test]
    fn unsorted_input_is_still_deduplicated() {
        let mut l = VecGids::new(&[100, 50], 4);
        append(&mut l, 100, [9, 3, 9, 50, 3, 12, 7, 12, 3].into_iter(), -1).unwrap();
        assert_eq!(l.v, [100, 50, 9, 3, 12, 7]);
        // sorted input with repeats, and one earlier entry in the middle of it
        let mut l = VecGids::new(&[100, 5], 2);
        append(&mut l, 100, [1, 2, 2, 5, 6, 6, 6, 100].into_iter(), -1).unwrap();
        assert_eq!(l.v, [100, 5, 1, 2, 6]);
    }

    #[test]
    fn grows_by_doubling() {
        let mut l = VecGids::new(&[100], 1);
        append(&mut l, 100, 1..=5, 0).unwrap();
        assert_eq!(l.v, [100, 1, 2, 3, 4, 5]);
        assert_eq!(l.grows, [2, 4, 8]);
        let mut l = VecGids::new(&[], 0);
        append(&mut l, 100, 1..=2, -1).unwrap();
        assert_eq!(
            (l.v.as_slice(), l.grows.as_slice()),
            (&[1, 2][..], &[1, 2][..])
        );
    }

    #[test]
    fn limit_caps_growth_and_stops_adding() {
        let mut l = VecGids::new(&[100], 2);
        append(&mut l, 100, 1..=10, 5).unwrap();
        assert_eq!(l.v, [100, 1, 2, 3, 4]);
        assert_eq!(l.grows, [4, 5]);
        // Already at the limit: nothing added, no growth.
        let mut l = VecGids::new(&[100, 1], 2);
        append(&mut l, 100, 5..=6, 2).unwrap();
        assert_eq!(l.v, [100, 1]);
        assert!(l.grows.is_empty());
        // A caller buffer larger than the limit never fills past the limit.
        let mut l = VecGids::new(&[100], 8);
        append(&mut l, 100, 1..=10, 3).unwrap();
        assert_eq!(l.v, [100, 1, 2]);
    }

    #[test]
    fn allocation_failure_is_nomem() {
        let mut l = VecGids::new(&[100], 1);
        l.fail_alloc = true;
        assert_eq!(fail(append(&mut l, 100, 1..=3, -1)), Failure::NoMem);
        assert_eq!(l.v, [100]);
    }

    #[test]
    fn for_user_from_snapshot() {
        let bytes = sample();
        let snap = Snapshot::parse(&bytes).unwrap();
        let mut l = VecGids::new(&[1_500_001], 1);
        for_user(&snap, b"alice", 1_500_001, &mut l, -1).unwrap();
        // engineers, admins; never the gid-0 group alice is listed in.
        assert_eq!(l.v, [1_500_001, 1_600_001, 1_600_002]);
        let mut l = VecGids::new(&[1_500_002], 1);
        for_user(&snap, b"bob", 1_500_002, &mut l, -1).unwrap();
        assert_eq!(l.v, [1_500_002, 1_600_001]);
        let mut l = VecGids::new(&[5], 1);
        assert_eq!(
            fail(for_user(&snap, b"nosuch", 5, &mut l, -1)),
            Failure::NotFound
        );
        assert_eq!(
            fail(for_user(&snap, b"Alice", 5, &mut l, -1)),
            Failure::NotFound
        );
        assert_eq!(
            fail(for_user(&snap, b"evil", 5, &mut l, -1)),
            Failure::NotFound
        );
    }

    #[test]
    fn caller_gids_with_real_malloc() {
        // SAFETY: test: a malloc'ed array of 1 gid, as glibc passes it.
        let mut groups = unsafe { libc::malloc(size_of::<gid_t>()) }.cast::<gid_t>();
        assert!(!groups.is_null());
        // SAFETY: test: groups has room for one gid.
        unsafe { groups.write(42) };
        let (mut start, mut size): (c_long, c_long) = (1, 1);
        {
            // SAFETY: test: all pointers are valid locals / the malloc'ed array.
            let mut l = unsafe { CallerGids::new(&mut start, &mut size, &mut groups) }.unwrap();
            append(&mut l, 42, [1, 2, 42, 3, 2].into_iter(), -1).unwrap();
        }
        assert_eq!((start, size), (4, 4));
        // SAFETY: test: the list now holds `start` initialised gids.
        let got = unsafe { std::slice::from_raw_parts(groups, start as usize) }.to_vec();
        assert_eq!(got, [42, 1, 2, 3]);
        // SAFETY: test: groups is the (realloc'ed) malloc array.
        unsafe { libc::free(groups.cast()) };
    }

    #[test]
    fn caller_gids_rejects_inconsistent_arguments() {
        let mut groups: *mut gid_t = std::ptr::null_mut();
        let (mut start, mut size): (c_long, c_long) = (2, 1);
        // SAFETY: test: valid locals.
        let r = unsafe { CallerGids::new(&mut start, &mut size, &mut groups) };
        assert!(r.is_err());
        let (mut start, mut size): (c_long, c_long) = (0, 4);
        // SAFETY: test: valid locals; null array with size 4 must be refused.
        let r = unsafe { CallerGids::new(&mut start, &mut size, &mut groups) };
        assert!(r.is_err());
        // SAFETY: test: null pointers are refused, not dereferenced.
        let r = unsafe { CallerGids::new(std::ptr::null_mut(), &mut size, &mut groups) };
        assert!(r.is_err());
    }
}
