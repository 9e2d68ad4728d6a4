//! `initgroups_dyn`: a user's supplementary groups in one lookup.
//!
//! glibc's getgrouplist/initgroups pass a malloc'ed gid array with `*start`
//! entries used out of `*size`; a module appends its groups, growing the array
//! with realloc. Without this entry point glibc would enumerate every group.

use std::ffi::c_long;
use std::mem::{MaybeUninit, size_of};

use libc::gid_t;
use zt_snapshot::Snapshot;

use crate::lookup;
use crate::status::Failure;

/// The caller's gid list, as far as the appending logic needs it.
pub trait GidList {
    /// The entries in use (`*start` of them).
    fn entries(&self) -> &[gid_t];
    /// Entries allocated (`*size`).
    fn capacity(&self) -> usize;
    /// Reallocates to `capacity` entries; false if the allocation failed (the
    /// list is then unchanged).
    fn grow_to(&mut self, capacity: usize) -> bool;
    /// The entries in use and, after them, the allocated spare room.
    fn parts(&mut self) -> (&[gid_t], &mut [MaybeUninit<gid_t>]);
    /// Marks the first `n` spare entries, now written, as in use.
    fn commit(&mut self, n: usize);
}

/// Adds `user`'s supplementary groups. NOTFOUND for an unknown user, and
/// NOTFOUND without touching the list when `primary` is not that zt user's own
/// gid (its user private group): glibc passes the primary gid of the account
/// it found, so a local (or other NSS source's) account that merely shares a
/// name with a zt user is not that user and must not get zt's groups.
pub fn for_user(
    snap: &Snapshot<'_>,
    user: &[u8],
    primary: gid_t,
    list: &mut impl GidList,
    limit: c_long,
) -> Result<(), Failure> {
    let u = lookup::user_by_name(snap, user)?;
    if u.gid != primary {
        return Err(Failure::NotFound);
    }
    let gids = u.groups.as_le_chunks();
    reserve(list, gids.len(), limit)?;
    if append_whole_sorted(list, primary, gids, limit) {
        return Ok(());
    }
    append(list, primary, u.groups.iter(), limit)
}

/// The positive `limit` glibc passes (0 or less: none).
fn limit_of(limit: c_long) -> Option<usize> {
    usize::try_from(limit).ok().filter(|&l| l > 0)
}

/// Grows the list once so `more` entries fit after those in use: at least
/// doubling, never beyond a positive `limit`. NOMEM if realloc fails (the list
/// is then unchanged).
fn reserve(list: &mut impl GidList, more: usize, limit: c_long) -> Result<(), Failure> {
    let room_wanted = list.entries().len().saturating_add(more);
    if room_wanted > list.capacity() {
        let mut capacity = room_wanted.max(list.capacity().saturating_mul(2));
        if let Some(l) = limit_of(limit) {
            capacity = capacity.min(l);
        }
        if capacity > list.capacity() && !list.grow_to(capacity) {
            return Err(Failure::NoMem);
        }
    }
    Ok(())
}

/// The usual case in one pass with no per-element branches: the user's gids
/// (as the writer stores them: strictly ascending, none 0) are all new to the
/// list (none is the primary gid, none falls within the range of the entries
/// already there) and all fit, in the spare room and under `limit`. They are
/// checked with branch-free folds and copied, which the compiler vectorises:
/// a few instructions per group instead of about 20. Returns false, having
/// changed nothing, when any condition fails; `append` then handles every case.
fn append_whole_sorted(
    list: &mut impl GidList,
    primary: gid_t,
    gids: &[[u8; 4]],
    limit: c_long,
) -> bool {
    let (n, before) = (gids.len(), list.entries().len());
    let under_limit = limit_of(limit).is_none_or(|l| before + n <= l);
    if n == 0 || n > list.capacity() - before || !under_limit {
        return false;
    }
    let (lo, hi) = range_of(list.entries());
    let gid = |c: &[u8; 4]| gid_t::from_le_bytes(*c);
    let mut usual = lookup::gid_allowed(gid(&gids[0]));
    // strictly ascending (so no duplicates, and none 0 after a first non-zero)
    for (prev, next) in gids.iter().zip(&gids[1..]) {
        usual &= gid(next) > gid(prev);
    }
    for c in gids {
        let g = gid(c);
        usual &= (g != primary) & ((g < lo) | (g > hi));
    }
    if !usual {
        return false;
    }
    let (_, spare) = list.parts();
    for (slot, c) in spare.iter_mut().zip(gids) {
        slot.write(gid(c));
    }
    list.commit(n);
    true
}

/// The smallest and largest entry ((MAX, MIN) for none): a gid outside this
/// range cannot be one of them.
fn range_of(entries: &[gid_t]) -> (gid_t, gid_t) {
    entries
        .iter()
        .fold((gid_t::MAX, gid_t::MIN), |(lo, hi), &g| {
            (lo.min(g), hi.max(g))
        })
}

/// Appends `gids` to `list`, skipping the primary group, gid 0 and gids already
/// present. Grows the list once, to fit everything (at least doubling, never
/// beyond `limit` when `limit > 0`), and never fills it past `limit`.
///
/// The writer stores each user's gids sorted, so the loop is built for that:
/// a gid above the previous one and outside the range of the entries that were
/// there before (glibc passes the primary group and what earlier modules found)
/// is appended with no search at all. Anything else takes the out-of-line slow
/// path, which still de-duplicates unsorted input (a damaged snapshot) correctly.
pub fn append(
    list: &mut impl GidList,
    primary: gid_t,
    gids: impl ExactSizeIterator<Item = gid_t>,
    limit: c_long,
) -> Result<(), Failure> {
    reserve(list, gids.len(), limit)?;
    let before = list.entries().len();
    let (lo, hi) = range_of(list.entries());
    let allowed = limit_of(limit).map_or(usize::MAX, |l| l.saturating_sub(before));
    let appended = {
        let (entries_before, spare) = list.parts();
        let room = spare.len().min(allowed);
        let spare = &mut spare[..room];
        let mut n = 0;
        // gid 0 is never appended, so "previous = 0" also sends gid 0 to the slow path
        let mut previous: gid_t = 0;
        for gid in gids {
            if n == room {
                break;
            }
            let usual = gid > previous && gid != primary && (gid < lo || gid > hi);
            if usual || keep_unusual(gid, primary, entries_before, spare, n) {
                spare[n].write(gid);
                n += 1;
                previous = previous.max(gid);
            }
        }
        n
    };
    list.commit(appended);
    Ok(())
}

/// The slow path: is `gid` (out of order, the primary, 0, or inside the range of
/// earlier entries) one to append? Out of line, off the hot loop.
#[cold]
#[inline(never)]
fn keep_unusual(
    gid: gid_t,
    primary: gid_t,
    earlier: &[gid_t],
    ours: &[MaybeUninit<gid_t>],
    n: usize,
) -> bool {
    if gid == primary || !lookup::gid_allowed(gid) || earlier.contains(&gid) {
        return false;
    }
    // SAFETY: the first n spare entries were written by `append`.
    !ours[..n].iter().any(|g| unsafe { g.assume_init() } == gid)
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

    fn parts(&mut self) -> (&[gid_t], &mut [MaybeUninit<gid_t>]) {
        if self.capacity == 0 {
            return (&[], &mut []);
        }
        // SAFETY: groups is a live allocation of capacity entries (non-null when
        // capacity > 0); the first len are initialised, the rest are handed out
        // as MaybeUninit. The two slices do not overlap and both borrow self.
        unsafe {
            let used = std::slice::from_raw_parts(self.groups, self.len);
            let spare = std::slice::from_raw_parts_mut(
                self.groups.add(self.len).cast::<MaybeUninit<gid_t>>(),
                self.capacity - self.len,
            );
            (used, spare)
        }
    }

    fn commit(&mut self, n: usize) {
        let n = n.min(self.capacity - self.len);
        self.len += n;
        // SAFETY: start is valid for writes (contract of `new`); len <= capacity,
        // which came from (or was grown within) a c_long.
        unsafe { *self.start = self.len as c_long };
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
        buf: Vec<MaybeUninit<gid_t>>,
        len: usize,
        fail_alloc: bool,
        grows: Vec<usize>,
    }

    impl VecGids {
        fn new(initial: &[gid_t], capacity: usize) -> Self {
            let mut buf = vec![MaybeUninit::uninit(); capacity];
            for (slot, g) in buf.iter_mut().zip(initial) {
                slot.write(*g);
            }
            VecGids {
                buf,
                len: initial.len(),
                fail_alloc: false,
                grows: vec![],
            }
        }

        fn v(&self) -> Vec<gid_t> {
            self.entries().to_vec()
        }
    }

    impl GidList for VecGids {
        fn capacity(&self) -> usize {
            self.buf.len()
        }
        fn entries(&self) -> &[gid_t] {
            // SAFETY: test: the first len entries were written.
            unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<gid_t>(), self.len) }
        }
        fn parts(&mut self) -> (&[gid_t], &mut [MaybeUninit<gid_t>]) {
            let (used, spare) = self.buf.split_at_mut(self.len);
            // SAFETY: test: the first len entries were written.
            (
                unsafe { std::slice::from_raw_parts(used.as_ptr().cast::<gid_t>(), used.len()) },
                spare,
            )
        }
        fn commit(&mut self, n: usize) {
            assert!(self.len + n <= self.buf.len(), "commit beyond capacity");
            self.len += n;
        }
        fn grow_to(&mut self, capacity: usize) -> bool {
            assert!(capacity > self.buf.len());
            if self.fail_alloc {
                return false;
            }
            self.grows.push(capacity);
            self.buf.resize(capacity, MaybeUninit::uninit());
            true
        }
    }

    #[test]
    fn skips_primary_duplicates_and_gid_zero() {
        let mut l = VecGids::new(&[100, 7], 10);
        append(&mut l, 100, [7, 100, 8, 0, 8, 9].into_iter(), -1).unwrap();
        assert_eq!(l.v(), [100, 7, 8, 9]);
        assert!(l.grows.is_empty());
    }

    #[test]
    fn unsorted_input_is_still_deduplicated() {
        let mut l = VecGids::new(&[100, 50], 4);
        append(&mut l, 100, [9, 3, 9, 50, 3, 12, 7, 12, 3].into_iter(), -1).unwrap();
        assert_eq!(l.v(), [100, 50, 9, 3, 12, 7]);
        // sorted input with repeats, and one earlier entry in the middle of it
        let mut l = VecGids::new(&[100, 5], 2);
        append(&mut l, 100, [1, 2, 2, 5, 6, 6, 6, 100].into_iter(), -1).unwrap();
        assert_eq!(l.v(), [100, 5, 1, 2, 6]);
    }

    #[test]
    fn grows_once_to_fit() {
        let mut l = VecGids::new(&[100], 1);
        append(&mut l, 100, 1..6, 0).unwrap();
        assert_eq!(l.v(), [100, 1, 2, 3, 4, 5]);
        assert_eq!(l.grows, [6]);
        let mut l = VecGids::new(&[], 0);
        append(&mut l, 100, 1..3, -1).unwrap();
        assert_eq!(
            (l.v().as_slice(), l.grows.as_slice()),
            (&[1, 2][..], &[2][..])
        );
    }

    #[test]
    fn limit_caps_growth_and_stops_adding() {
        let mut l = VecGids::new(&[100], 2);
        append(&mut l, 100, 1..11, 5).unwrap();
        assert_eq!(l.v(), [100, 1, 2, 3, 4]);
        assert_eq!(l.grows, [5]);
        // Already at the limit: nothing added, no growth.
        let mut l = VecGids::new(&[100, 1], 2);
        append(&mut l, 100, 5..7, 2).unwrap();
        assert_eq!(l.v(), [100, 1]);
        assert!(l.grows.is_empty());
        // A caller buffer larger than the limit never fills past the limit.
        let mut l = VecGids::new(&[100], 8);
        append(&mut l, 100, 1..11, 3).unwrap();
        assert_eq!(l.v(), [100, 1, 2]);
    }

    /// for_user's composition (reserve, bulk path, general loop) over plain gids.
    fn bulk_then_general(l: &mut VecGids, primary: gid_t, gids: &[gid_t], limit: c_long) -> bool {
        let chunks: Vec<[u8; 4]> = gids.iter().map(|g| g.to_le_bytes()).collect();
        reserve(l, chunks.len(), limit).unwrap();
        let bulk = append_whole_sorted(l, primary, &chunks, limit);
        if !bulk {
            append(l, primary, gids.iter().copied(), limit).unwrap();
        }
        bulk
    }

    #[test]
    fn the_bulk_path_takes_the_usual_case_and_agrees_with_the_general_loop() {
        // the usual case: sorted, new, fits
        let mut l = VecGids::new(&[100], 1);
        assert!(bulk_then_general(&mut l, 100, &[200, 300, 400], -1));
        assert_eq!(l.v(), [100, 200, 300, 400]);
        // each unusual case falls back and still gives the general answer
        for (initial, gids, limit) in [
            (vec![100], vec![100, 200], -1),      // the primary gid
            (vec![100, 250], vec![200, 300], -1), // inside earlier entries' range
            (vec![100], vec![300, 200], -1),      // unsorted
            (vec![100], vec![200, 200], -1),      // repeated
            (vec![100], vec![0, 200], -1),        // gid 0
            (vec![100], vec![200, 300, 400], 3),  // over the limit
        ] {
            let mut a = VecGids::new(&initial, initial.len());
            assert!(!bulk_then_general(&mut a, 100, &gids, limit), "{gids:?}");
            let mut b = VecGids::new(&initial, initial.len());
            append(&mut b, 100, gids.iter().copied(), limit).unwrap();
            assert_eq!(a.v(), b.v(), "{initial:?} {gids:?} {limit}");
        }
        // and on many pseudo-random lists (xorshift: no dependency needed)
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m) as gid_t
        };
        for _ in 0..2000 {
            let initial: Vec<gid_t> = (0..next(4)).map(|_| next(40)).collect();
            let mut gids: Vec<gid_t> = (0..next(12)).map(|_| next(40)).collect();
            if next(2) == 0 {
                gids.sort_unstable();
                gids.dedup();
            }
            let (primary, limit) = (next(40), next(12) as c_long - 2);
            let mut a = VecGids::new(&initial, initial.len());
            bulk_then_general(&mut a, primary, &gids, limit);
            let mut b = VecGids::new(&initial, initial.len());
            append(&mut b, primary, gids.iter().copied(), limit).unwrap();
            assert_eq!(
                a.v(),
                b.v(),
                "{initial:?} {gids:?} p={primary} limit={limit}"
            );
        }
    }

    #[test]
    fn allocation_failure_is_nomem() {
        let mut l = VecGids::new(&[100], 1);
        l.fail_alloc = true;
        assert_eq!(fail(append(&mut l, 100, 1..4, -1)), Failure::NoMem);
        assert_eq!(l.v(), [100]);
    }

    #[test]
    fn for_user_from_snapshot() {
        let bytes = sample();
        let snap = Snapshot::parse(&bytes).unwrap();
        let mut l = VecGids::new(&[1_500_001], 1);
        for_user(&snap, b"alice", 1_500_001, &mut l, -1).unwrap();
        // engineers, admins; never the gid-0 group alice is listed in.
        assert_eq!(l.v(), [1_500_001, 1_600_001, 1_600_002]);
        let mut l = VecGids::new(&[1_500_002], 1);
        for_user(&snap, b"bob", 1_500_002, &mut l, -1).unwrap();
        assert_eq!(l.v(), [1_500_002, 1_600_001]);
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
    fn same_name_with_another_primary_gid_gets_nothing() {
        let bytes = sample();
        let snap = Snapshot::parse(&bytes).unwrap();
        // Positive control: zt's own alice (primary gid = her private group).
        let mut l = VecGids::new(&[1_500_001], 1);
        for_user(&snap, b"alice", 1_500_001, &mut l, -1).unwrap();
        assert_eq!(l.v(), [1_500_001, 1_600_001, 1_600_002]);
        // A local alice (gid 4242) and one with bob's zt gid: not zt's alice.
        for primary in [4242, 1_500_002, 0, 1_600_001] {
            let mut l = VecGids::new(&[primary, 7], 2);
            assert_eq!(
                fail(for_user(&snap, b"alice", primary, &mut l, -1)),
                Failure::NotFound,
                "primary {primary}"
            );
            assert_eq!(l.v(), [primary, 7], "list untouched");
            assert!(l.grows.is_empty(), "no reallocation");
        }
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
        assert_eq!((start, size), (4, 6));
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
