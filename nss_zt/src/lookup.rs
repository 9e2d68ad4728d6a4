//! Answers over one snapshot view: find the entry, refuse what must never be
//! served, pack it into the caller's buffer.

use zt_snapshot::{Group, Snapshot, User};

use crate::pack::{self, PwEntry};
use crate::status::Failure;

/// Defence in depth: whatever the snapshot says (an agent bug, a bad
/// uidNumber override in the IdP), this module never hands out uid 0 or gid 0.
/// Such entries are "not found" and skipped by enumeration and initgroups.
pub fn user_allowed(u: &User<'_>) -> bool {
    u.uid != 0 && u.gid != 0
}

pub fn gid_allowed(gid: u32) -> bool {
    gid != 0
}

/// The user called exactly `name` (bytes compared as they are: no case folding).
pub fn user_by_name<'s>(snap: &Snapshot<'s>, name: &[u8]) -> Result<User<'s>, Failure> {
    snap.user_by_name(name)?
        .filter(user_allowed)
        .ok_or(Failure::NotFound)
}

pub fn passwd_by_name(
    snap: &Snapshot<'_>,
    name: &[u8],
    buf: &mut [u8],
) -> Result<libc::passwd, Failure> {
    pack_user(&user_by_name(snap, name)?, buf)
}

pub fn passwd_by_uid(
    snap: &Snapshot<'_>,
    uid: u32,
    buf: &mut [u8],
) -> Result<libc::passwd, Failure> {
    let u = snap
        .user_by_uid(uid)?
        .filter(user_allowed)
        .ok_or(Failure::NotFound)?;
    pack_user(&u, buf)
}

pub fn group_by_name(
    snap: &Snapshot<'_>,
    name: &[u8],
    buf: &mut [u8],
) -> Result<libc::group, Failure> {
    let g = snap
        .group_by_name(name)?
        .filter(|g| gid_allowed(g.gid))
        .ok_or(Failure::NotFound)?;
    pack_group(snap, &g, buf)
}

pub fn group_by_gid(snap: &Snapshot<'_>, gid: u32, buf: &mut [u8]) -> Result<libc::group, Failure> {
    let g = snap
        .group_by_gid(gid)?
        .filter(|g| gid_allowed(g.gid))
        .ok_or(Failure::NotFound)?;
    pack_group(snap, &g, buf)
}

/// Enumeration: the user at `index`, or None if it must be skipped.
pub fn passwd_at(
    snap: &Snapshot<'_>,
    index: usize,
    buf: &mut [u8],
) -> Result<Option<libc::passwd>, Failure> {
    let u = snap.user(index)?;
    if !user_allowed(&u) {
        return Ok(None);
    }
    pack_user(&u, buf).map(Some)
}

/// Enumeration: the group at `index`, or None if it must be skipped.
pub fn group_at(
    snap: &Snapshot<'_>,
    index: usize,
    buf: &mut [u8],
) -> Result<Option<libc::group>, Failure> {
    let g = snap.group(index)?;
    if !gid_allowed(g.gid) {
        return Ok(None);
    }
    pack_group(snap, &g, buf).map(Some)
}

fn pack_user(u: &User<'_>, buf: &mut [u8]) -> Result<libc::passwd, Failure> {
    Ok(pack::passwd(&PwEntry::from(u), buf)?)
}

fn pack_group(snap: &Snapshot<'_>, g: &Group<'_>, buf: &mut [u8]) -> Result<libc::group, Failure> {
    let members = g.members.iter().map(|m| snap.user_name(m as usize));
    Ok(pack::group(g.name, g.gid, g.members.len(), members, buf)?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fail;
    use crate::status::UNUSABLE;
    use std::ffi::{CStr, c_char};
    use zt_snapshot::{Content, GroupEntry, UserEntry};

    pub fn user(name: &str, uid: u32) -> UserEntry {
        UserEntry {
            name: name.into(),
            uid,
            gid: uid,
            gecos: format!("{name} gecos"),
            home: format!("/home/{name}"),
            shell: "/bin/bash".into(),
            email: format!("{name}@example.com"),
            idp_id: format!("oid-{name}"),
            principals: Vec::new(),
            ssh_keys: Vec::new(),
        }
    }

    pub fn group(name: &str, gid: u32, members: &[&str]) -> GroupEntry {
        GroupEntry {
            name: name.into(),
            gid,
            flags: 0,
            idp_id: format!("gid-{name}"),
            members: members.iter().map(|m| m.to_string()).collect(),
        }
    }

    /// alice and bob with private groups, engineers {alice, bob}, admins {alice},
    /// empty {}; plus entries with id 0 that must never be served.
    pub fn sample() -> Vec<u8> {
        let mut evil = user("evil", 0);
        evil.gid = 0;
        let mut sneaky = user("sneaky", 1_500_009);
        sneaky.gid = 0;
        zt_snapshot::build(&Content {
            generation: 1,
            synced_at: 1_700_000_000,
            users: vec![
                user("alice", 1_500_001),
                user("bob", 1_500_002),
                evil,
                sneaky,
            ],
            groups: vec![
                group("alice", 1_500_001, &[]),
                group("bob", 1_500_002, &[]),
                group("engineers", 1_600_001, &["alice", "bob"]),
                group("admins", 1_600_002, &["alice"]),
                group("empty", 1_600_003, &[]),
                group("wheel0", 0, &["alice"]),
            ],
            ..Content::default()
        })
        .unwrap()
        .public
    }

    fn s(p: *const c_char) -> String {
        // SAFETY: test: p points into a live test buffer, NUL-terminated.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    fn members(gr: &libc::group) -> Vec<String> {
        let mut v = Vec::new();
        // SAFETY: test: gr_mem is a NULL-terminated array in a live buffer.
        unsafe {
            let mut p = gr.gr_mem;
            while !(*p).is_null() {
                v.push(s(*p));
                p = p.add(1);
            }
        }
        v
    }

    #[test]
    fn passwd_by_name_and_uid() {
        let bytes = sample();
        let snap = Snapshot::parse(&bytes).unwrap();
        let mut buf = [0u8; 1024];
        let pw = passwd_by_name(&snap, b"alice", &mut buf).unwrap();
        assert_eq!(s(pw.pw_name), "alice");
        assert_eq!(s(pw.pw_passwd), "*");
        assert_eq!(s(pw.pw_gecos), "alice gecos");
        assert_eq!(s(pw.pw_dir), "/home/alice");
        assert_eq!(s(pw.pw_shell), "/bin/bash");
        assert_eq!((pw.pw_uid, pw.pw_gid), (1_500_001, 1_500_001));
        let pw = passwd_by_uid(&snap, 1_500_002, &mut buf).unwrap();
        assert_eq!(s(pw.pw_name), "bob");
    }

    #[test]
    fn names_are_not_case_folded_and_unknowns_are_not_found() {
        let bytes = sample();
        let snap = Snapshot::parse(&bytes).unwrap();
        let mut buf = [0u8; 1024];
        for name in [&b"Alice"[..], b"ALICE", b"alic", b"alice ", b"", b"nosuch"] {
            assert_eq!(
                fail(passwd_by_name(&snap, name, &mut buf)),
                Failure::NotFound
            );
            assert_eq!(
                fail(group_by_name(&snap, name, &mut buf)),
                Failure::NotFound
            );
        }
        assert_eq!(fail(passwd_by_uid(&snap, 42, &mut buf)), Failure::NotFound);
        assert_eq!(fail(group_by_gid(&snap, 42, &mut buf)), Failure::NotFound);
    }

    #[test]
    fn root_ids_are_never_served() {
        let bytes = sample();
        let snap = Snapshot::parse(&bytes).unwrap();
        let mut buf = [0u8; 1024];
        assert_eq!(
            fail(passwd_by_name(&snap, b"evil", &mut buf)),
            Failure::NotFound
        );
        assert_eq!(
            fail(passwd_by_name(&snap, b"sneaky", &mut buf)),
            Failure::NotFound
        );
        assert_eq!(fail(passwd_by_uid(&snap, 0, &mut buf)), Failure::NotFound);
        assert_eq!(fail(group_by_gid(&snap, 0, &mut buf)), Failure::NotFound);
        assert_eq!(
            fail(group_by_name(&snap, b"wheel0", &mut buf)),
            Failure::NotFound
        );
        assert_eq!(passwd_at(&snap, 2, &mut buf).map(|p| p.is_none()), Ok(true));
        assert_eq!(group_at(&snap, 5, &mut buf).map(|g| g.is_none()), Ok(true));
    }

    #[test]
    fn groups_with_members() {
        let bytes = sample();
        let snap = Snapshot::parse(&bytes).unwrap();
        let mut buf = [0u8; 1024];
        let gr = group_by_name(&snap, b"engineers", &mut buf).unwrap();
        assert_eq!(
            (s(gr.gr_name), s(gr.gr_passwd), gr.gr_gid),
            ("engineers".into(), "*".into(), 1_600_001)
        );
        assert_eq!(members(&gr), ["alice", "bob"]);
        let gr = group_by_gid(&snap, 1_600_002, &mut buf).unwrap();
        assert_eq!(members(&gr), ["alice"]);
        let gr = group_by_name(&snap, b"empty", &mut buf).unwrap();
        assert!(members(&gr).is_empty());
    }

    #[test]
    fn small_buffer_is_erange() {
        let bytes = sample();
        let snap = Snapshot::parse(&bytes).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            fail(passwd_by_name(&snap, b"alice", &mut buf)),
            Failure::Range
        );
        assert_eq!(
            fail(group_by_name(&snap, b"engineers", &mut buf)),
            Failure::Range
        );
    }

    #[test]
    fn corrupt_records_never_panic_and_surface_as_unavail() {
        let good = sample();
        let mut buf = [0u8; 4096];
        // Flip every byte after the header/section table, one at a time; every
        // answer must be a clean Result. Corruption reached by a lookup must
        // surface as UNAVAIL or a (different) valid answer, never a panic.
        let mut seen_unavail = false;
        for at in 64..good.len() {
            let mut bytes = good.clone();
            bytes[at] ^= 0xff;
            let Ok(snap) = Snapshot::parse(&bytes) else {
                continue;
            };
            let mut results = vec![
                passwd_by_name(&snap, b"alice", &mut buf).map(|_| ()),
                passwd_by_uid(&snap, 1_500_002, &mut buf).map(|_| ()),
                group_by_name(&snap, b"engineers", &mut buf).map(|_| ()),
                group_by_gid(&snap, 1_600_002, &mut buf).map(|_| ()),
            ];
            for i in 0..snap.user_count() + 1 {
                results.push(passwd_at(&snap, i, &mut buf).map(|_| ()));
            }
            for i in 0..snap.group_count() + 1 {
                results.push(group_at(&snap, i, &mut buf).map(|_| ()));
            }
            seen_unavail |= results.contains(&Err(UNUSABLE));
        }
        assert!(seen_unavail);
    }

    #[test]
    fn out_of_range_index_is_unavail() {
        let bytes = sample();
        let snap = Snapshot::parse(&bytes).unwrap();
        let mut buf = [0u8; 1024];
        assert_eq!(fail(passwd_at(&snap, 99, &mut buf)), UNUSABLE);
        assert_eq!(fail(group_at(&snap, 99, &mut buf)), UNUSABLE);
    }
}
