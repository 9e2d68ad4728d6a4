//! Packing `struct passwd` and `struct group` into the caller's buffer.
//!
//! glibc hands every `_r` call a buffer; all strings (and `gr_mem`'s pointer
//! array) must live in it, so the returned struct stays valid after the module
//! returns. These functions are pure: they write only into `buf` and the
//! returned struct, and report `PackError::Range` when `buf` is too small
//! (glibc then retries with a larger buffer).

use std::ffi::c_char;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ptr;

use zt_snapshot::FormatError;

/// What `pw_passwd` / `gr_passwd` say. Not "x": "x" sends pam_unix to shadow,
/// which has no entry for these users; "*" means "no password login".
pub const NO_PASSWORD: &[u8] = b"*";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackError {
    /// The buffer is too small.
    Range,
    /// The data cannot be a C string (an embedded NUL) or a member is unreadable.
    Corrupt,
}

impl From<FormatError> for PackError {
    fn from(_: FormatError) -> Self {
        PackError::Corrupt
    }
}

/// The fields of a passwd entry, borrowed from wherever they live.
#[derive(Debug, Clone, Copy)]
pub struct PwEntry<'a> {
    pub name: &'a [u8],
    pub uid: u32,
    pub gid: u32,
    pub gecos: &'a [u8],
    pub dir: &'a [u8],
    pub shell: &'a [u8],
}

impl<'a> From<&zt_snapshot::User<'a>> for PwEntry<'a> {
    fn from(u: &zt_snapshot::User<'a>) -> Self {
        PwEntry {
            name: u.name,
            uid: u.uid,
            gid: u.gid,
            gecos: u.gecos,
            dir: u.home,
            shell: u.shell,
        }
    }
}

/// Fills a `struct passwd` whose strings live in `buf`.
pub fn passwd(e: &PwEntry<'_>, buf: &mut [u8]) -> Result<libc::passwd, PackError> {
    let mut out = Out::new(buf);
    let pw_name = out.c_string(e.name)?;
    let pw_passwd = out.c_string(NO_PASSWORD)?;
    let pw_gecos = out.c_string(e.gecos)?;
    let pw_dir = out.c_string(e.dir)?;
    let pw_shell = out.c_string(e.shell)?;
    Ok(libc::passwd {
        pw_name,
        pw_passwd,
        pw_uid: e.uid,
        pw_gid: e.gid,
        pw_gecos,
        pw_dir,
        pw_shell,
    })
}

/// Fills a `struct group` whose strings and NULL-terminated `gr_mem` array
/// live in `buf`. `members` yields `member_count` names (the snapshot's member
/// list); a different number of names means the snapshot is inconsistent.
pub fn group<'m>(
    name: &[u8],
    gid: u32,
    member_count: usize,
    members: impl Iterator<Item = Result<&'m [u8], FormatError>>,
    buf: &mut [u8],
) -> Result<libc::group, PackError> {
    let mut out = Out::new(buf);
    let slots = member_count.checked_add(1).ok_or(PackError::Range)?;
    let mut gr_mem = out.pointer_array(slots)?;
    let gr_name = out.c_string(name)?;
    let gr_passwd = out.c_string(NO_PASSWORD)?;
    let mut n = 0;
    for m in members {
        if n == member_count {
            return Err(PackError::Corrupt);
        }
        let p = out.c_string(m?)?;
        gr_mem.set(n, p)?;
        n += 1;
    }
    if n != member_count {
        return Err(PackError::Corrupt);
    }
    gr_mem.set(n, ptr::null_mut())?;
    Ok(libc::group {
        gr_name,
        gr_passwd,
        gr_gid: gid,
        gr_mem: gr_mem.start,
    })
}

/// Whether `s` contains a NUL byte. Eight bytes at a time: for the short
/// strings of a passwd entry this costs a third of `<[u8]>::contains`, whose
/// generic memchr showed up as the largest single cost of a warm lookup.
fn has_nul(s: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        let x = u64::from_ne_bytes(b);
        // the classic "has a zero byte" test: exact (no false positives) as
        // a yes/no answer for the whole word
        if x.wrapping_sub(LO) & !x & HI != 0 {
            return true;
        }
    }
    words.remainder().contains(&0)
}

const PTR_SIZE: usize = size_of::<*mut c_char>();
const PTR_ALIGN: usize = align_of::<*mut c_char>();

/// A bump writer over the caller's buffer. Every write goes through the one raw
/// pointer taken when it was created, so the pointers it hands out (which end
/// up in the returned struct) all derive from that same pointer.
struct Out<'b> {
    base: *mut u8,
    len: usize,
    pos: usize,
    _buf: PhantomData<&'b mut [u8]>,
}

impl<'b> Out<'b> {
    fn new(buf: &'b mut [u8]) -> Self {
        Out {
            base: buf.as_mut_ptr(),
            len: buf.len(),
            pos: 0,
            _buf: PhantomData,
        }
    }

    /// Reserves `n` bytes starting `pad` bytes from the current position;
    /// returns the offset of the reservation.
    fn reserve(&mut self, pad: usize, n: usize) -> Result<usize, PackError> {
        let start = self.pos.checked_add(pad).ok_or(PackError::Range)?;
        let end = start.checked_add(n).ok_or(PackError::Range)?;
        if end > self.len {
            return Err(PackError::Range);
        }
        self.pos = end;
        Ok(start)
    }

    /// Copies `s` plus a terminating NUL; returns the C string's address.
    fn c_string(&mut self, s: &[u8]) -> Result<*mut c_char, PackError> {
        if has_nul(s) {
            return Err(PackError::Corrupt);
        }
        let size = s.len().checked_add(1).ok_or(PackError::Range)?;
        let at = self.reserve(0, size)?;
        // SAFETY: `reserve` checked at + s.len() + 1 <= len, and base is valid
        // for writes of len bytes for 'b (it came from a `&'b mut [u8]`).
        // `ptr::copy` tolerates overlap, so `s` may come from anywhere.
        unsafe {
            let dst = self.base.add(at);
            ptr::copy(s.as_ptr(), dst, s.len());
            dst.add(s.len()).write(0);
            Ok(dst.cast())
        }
    }

    /// Reserves an array of `slots` pointers, aligned for `*mut c_char`.
    fn pointer_array(&mut self, slots: usize) -> Result<PtrArray<'b>, PackError> {
        let addr = self.base.addr().wrapping_add(self.pos);
        let pad = (PTR_ALIGN - addr % PTR_ALIGN) % PTR_ALIGN;
        let size = slots.checked_mul(PTR_SIZE).ok_or(PackError::Range)?;
        let at = self.reserve(pad, size)?;
        // SAFETY: at <= len (checked by `reserve`), so the result stays within
        // (or one past the end of) the buffer.
        let start = unsafe { self.base.add(at) }.cast::<*mut c_char>();
        Ok(PtrArray {
            start,
            slots,
            _buf: PhantomData,
        })
    }
}

/// An aligned array of `slots` pointers reserved inside the caller's buffer.
struct PtrArray<'b> {
    start: *mut *mut c_char,
    slots: usize,
    _buf: PhantomData<&'b mut [u8]>,
}

impl PtrArray<'_> {
    fn set(&mut self, i: usize, value: *mut c_char) -> Result<(), PackError> {
        if i >= self.slots {
            return Err(PackError::Corrupt);
        }
        // SAFETY: `start` is aligned for pointers and `slots` pointers were
        // reserved inside the buffer by `Out::pointer_array`; i < slots.
        unsafe { self.start.add(i).write(value) };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fail;
    use std::ffi::CStr;

    #[test]
    fn has_nul_agrees_with_contains() {
        // every length up to 3 words, a NUL (or none) at every position, over
        // fillers that trip naive zero-byte tricks (0x01, 0x80, 0xff, 0x100-borrow)
        for fill in [0x01u8, 0x80, 0xff, 0x7f, b'a'] {
            for len in 0..=24 {
                let clean = vec![fill; len];
                assert!(!has_nul(&clean), "fill {fill:#x} len {len}");
                for at in 0..len {
                    let mut v = clean.clone();
                    v[at] = 0;
                    assert!(has_nul(&v), "fill {fill:#x} len {len} at {at}");
                }
            }
        }
        let mixed: Vec<u8> = (1..=255u8).collect();
        assert!(!has_nul(&mixed));
        assert!(has_nul(&[1, 0, 1, 1, 1, 1, 1, 1, 0x80]));
    }

    /// A buffer whose usable part starts `misalign` bytes past an 8-byte boundary.
    struct Buf {
        words: Vec<u64>,
        misalign: usize,
        len: usize,
    }

    impl Buf {
        fn new(len: usize, misalign: usize) -> Buf {
            Buf {
                words: vec![0xa5a5_a5a5_a5a5_a5a5; (len + misalign) / 8 + 2],
                misalign,
                len,
            }
        }
        fn bytes(&mut self) -> &mut [u8] {
            let all = self.words.as_mut_slice();
            // SAFETY: test helper; u8 has no alignment or validity requirement.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(all.as_mut_ptr().cast::<u8>(), all.len() * 8)
            };
            &mut bytes[self.misalign..self.misalign + self.len]
        }
    }

    fn s(p: *const c_char) -> &'static [u8] {
        // SAFETY: test: p points to a NUL-terminated string in a live test buffer.
        unsafe { CStr::from_ptr(p) }.to_bytes()
    }

    fn inside(p: *const c_char, buf: &[u8]) -> bool {
        let r = buf.as_ptr_range();
        (p as *const u8) >= r.start && (p as *const u8) < r.end
    }

    const ALICE: PwEntry<'static> = PwEntry {
        name: b"alice",
        uid: 1_500_001,
        gid: 1_500_001,
        gecos: b"Alice Liddell",
        dir: b"/home/alice",
        shell: b"/bin/bash",
    };

    fn passwd_size(e: &PwEntry<'_>) -> usize {
        e.name.len() + e.gecos.len() + e.dir.len() + e.shell.len() + NO_PASSWORD.len() + 5
    }

    #[test]
    fn passwd_fields_and_strings_in_buffer() {
        let mut b = Buf::new(256, 3);
        let buf = b.bytes();
        let pw = passwd(&ALICE, buf).unwrap();
        assert_eq!(s(pw.pw_name), b"alice");
        assert_eq!(s(pw.pw_passwd), b"*");
        assert_eq!(s(pw.pw_gecos), b"Alice Liddell");
        assert_eq!(s(pw.pw_dir), b"/home/alice");
        assert_eq!(s(pw.pw_shell), b"/bin/bash");
        assert_eq!((pw.pw_uid, pw.pw_gid), (1_500_001, 1_500_001));
        let buf = b.bytes();
        for p in [
            pw.pw_name,
            pw.pw_passwd,
            pw.pw_gecos,
            pw.pw_dir,
            pw.pw_shell,
        ] {
            assert!(inside(p, buf));
        }
    }

    #[test]
    fn passwd_exact_size_fits_one_short_is_erange() {
        let need = passwd_size(&ALICE);
        for misalign in 0..8 {
            let mut b = Buf::new(need, misalign);
            assert!(
                passwd(&ALICE, b.bytes()).is_ok(),
                "exact size, misalign {misalign}"
            );
            let mut b = Buf::new(need - 1, misalign);
            assert_eq!(fail(passwd(&ALICE, b.bytes())), PackError::Range);
        }
        assert_eq!(fail(passwd(&ALICE, &mut [])), PackError::Range);
    }

    #[test]
    fn passwd_empty_fields_are_empty_strings() {
        let e = PwEntry {
            name: b"x",
            uid: 7,
            gid: 8,
            gecos: b"",
            dir: b"",
            shell: b"",
        };
        let mut b = Buf::new(passwd_size(&e), 0);
        let pw = passwd(&e, b.bytes()).unwrap();
        assert_eq!(s(pw.pw_gecos), b"");
        assert_eq!(s(pw.pw_shell), b"");
    }

    #[test]
    fn embedded_nul_is_corrupt_not_truncated() {
        let e = PwEntry {
            name: b"ro\0ot",
            ..ALICE
        };
        let mut b = Buf::new(256, 0);
        assert_eq!(fail(passwd(&e, b.bytes())), PackError::Corrupt);
    }

    fn names<'a>(v: &'a [&'a [u8]]) -> impl Iterator<Item = Result<&'a [u8], FormatError>> {
        v.iter().map(|n| Ok(*n))
    }

    fn group_size(name: &[u8], members: &[&[u8]], misalign: usize) -> usize {
        let pad = (8 - misalign % 8) % 8;
        pad + (members.len() + 1) * 8
            + name.len()
            + 1
            + 2
            + members.iter().map(|m| m.len() + 1).sum::<usize>()
    }

    fn members_of(gr: &libc::group) -> Vec<&'static [u8]> {
        let mut v = Vec::new();
        let mut p = gr.gr_mem;
        // SAFETY: test: gr_mem is a NULL-terminated array inside a live buffer.
        unsafe {
            while !(*p).is_null() {
                v.push(s(*p));
                p = p.add(1);
            }
        }
        v
    }

    #[test]
    fn group_members_aligned_and_null_terminated() {
        let mem: [&[u8]; 3] = [b"alice", b"bob", b"carol"];
        for misalign in 0..8 {
            let mut b = Buf::new(512, misalign);
            let gr = group(b"engineers", 1_600_000, mem.len(), names(&mem), b.bytes()).unwrap();
            assert_eq!(
                gr.gr_mem.addr() % align_of::<*mut c_char>(),
                0,
                "misalign {misalign}"
            );
            assert_eq!(s(gr.gr_name), b"engineers");
            assert_eq!(s(gr.gr_passwd), b"*");
            assert_eq!(gr.gr_gid, 1_600_000);
            assert_eq!(members_of(&gr), mem);
            let buf = b.bytes();
            assert!(inside(gr.gr_mem.cast(), buf));
            assert!(inside(gr.gr_name, buf));
        }
    }

    #[test]
    fn group_exact_size_fits_one_short_is_erange() {
        let mem: [&[u8]; 2] = [b"alice", b"bob"];
        for misalign in 0..8 {
            let need = group_size(b"eng", &mem, misalign);
            let mut b = Buf::new(need, misalign);
            let gr = group(b"eng", 5, mem.len(), names(&mem), b.bytes()).unwrap();
            assert_eq!(members_of(&gr), mem);
            let mut b = Buf::new(need - 1, misalign);
            assert_eq!(
                fail(group(b"eng", 5, mem.len(), names(&mem), b.bytes())),
                PackError::Range
            );
        }
    }

    #[test]
    fn group_without_members() {
        for misalign in 0..8 {
            let need = group_size(b"alice", &[], misalign);
            let mut b = Buf::new(need, misalign);
            let gr = group(b"alice", 9, 0, names(&[]), b.bytes()).unwrap();
            assert!(members_of(&gr).is_empty());
            let mut b = Buf::new(need - 1, misalign);
            assert_eq!(
                fail(group(b"alice", 9, 0, names(&[]), b.bytes())),
                PackError::Range
            );
        }
    }

    #[test]
    fn group_member_count_mismatch_or_unreadable_member_is_corrupt() {
        let mem: [&[u8]; 2] = [b"alice", b"bob"];
        let mut b = Buf::new(512, 0);
        assert_eq!(
            fail(group(b"g", 1, 1, names(&mem), b.bytes())),
            PackError::Corrupt
        );
        assert_eq!(
            fail(group(b"g", 1, 3, names(&mem), b.bytes())),
            PackError::Corrupt
        );
        let bad = [
            Ok(&b"alice"[..]),
            Err(FormatError {
                what: "x",
                offset: 0,
            }),
        ];
        assert_eq!(
            fail(group(b"g", 1, 2, bad.into_iter(), b.bytes())),
            PackError::Corrupt
        );
        let huge = usize::MAX;
        assert_eq!(
            fail(group(b"g", 1, huge, names(&mem), b.bytes())),
            PackError::Range
        );
    }
}
