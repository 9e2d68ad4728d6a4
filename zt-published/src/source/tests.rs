use super::*;
use crate::testing::{TempStateDir as Dir, content};
use std::ffi::CString;
use std::os::unix::fs::{PermissionsExt, chown, symlink};

const NOBODY: u32 = 65534;
const UNUSABLE: fn(ReadError) -> bool = |e| e.errno() == libc::EIO;

fn names_in(src: &mut Source) -> Result<Vec<String>, ReadError> {
    let snap = src.current()?;
    (0..snap.user_count())
        .map(|i| Ok(String::from_utf8_lossy(snap.user(i)?.name).into_owned()))
        .collect()
}

fn mode(p: &std::path::Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn missing_snapshot_is_missing_and_retried_every_lookup() {
    let d = Dir::new("missing");
    let mut src = Source::new(d.config(3600));
    assert_eq!(names_in(&mut src).unwrap_err(), ReadError::Missing);
    assert_eq!(names_in(&mut src).unwrap_err(), ReadError::Missing);
    // Appears later: the very next lookup finds it (no cached absence).
    d.publish(&content(1, &[("alice", 1_500_001)]));
    assert_eq!(names_in(&mut src).unwrap(), ["alice"]);
}

#[test]
fn missing_state_dir_is_missing() {
    let d = Dir::new("nodir");
    let cfg = d.config(0);
    std::fs::remove_dir(&d.path).unwrap();
    assert_eq!(
        names_in(&mut Source::new(cfg)).unwrap_err(),
        ReadError::Missing
    );
}

#[test]
fn new_generation_is_seen_on_next_lookup() {
    let d = Dir::new("gen");
    d.publish(&content(1, &[("alice", 1_500_001)]));
    let mut src = Source::new(d.config(3600));
    assert_eq!(names_in(&mut src).unwrap(), ["alice"]);
    d.publish(&content(2, &[("alice", 1_500_001), ("bob", 1_500_002)]));
    assert_eq!(names_in(&mut src).unwrap(), ["alice", "bob"]);
}

#[test]
fn without_generation_bump_the_old_mapping_stays_until_recheck() {
    let d = Dir::new("nobump");
    d.publish(&content(1, &[("alice", 1_500_001)]));
    let mut src = Source::new(d.config(3600));
    assert_eq!(names_in(&mut src).unwrap(), ["alice"]);
    // An agent that crashed between rename and generation write.
    d.publish_snapshot_only(&content(2, &[("bob", 1_500_002)]));
    assert_eq!(
        names_in(&mut src).unwrap(),
        ["alice"],
        "no syscall, so no news yet"
    );
    // Recheck due (as after 5 s): the new file is found.
    src.recheck_at = Some(0);
    assert_eq!(names_in(&mut src).unwrap(), ["bob"]);
}

#[test]
fn absent_generation_file_relies_on_recheck_and_is_mapped_later() {
    let d = Dir::new("nogenfile");
    d.publish_snapshot_only(&content(1, &[("alice", 1_500_001)]));
    let mut src = Source::new(d.config(3600));
    assert_eq!(names_in(&mut src).unwrap(), ["alice"]);
    assert!(src.generation.is_none());
    d.publish(&content(2, &[("bob", 1_500_002)]));
    assert_eq!(names_in(&mut src).unwrap(), ["alice"]);
    src.recheck_at = Some(0);
    assert_eq!(names_in(&mut src).unwrap(), ["bob"]);
    assert!(
        src.generation.is_some(),
        "generation file mapped at recheck time"
    );
    d.publish(&content(3, &[("carol", 1_500_003)]));
    assert_eq!(names_in(&mut src).unwrap(), ["carol"]);
}

#[test]
fn deleted_snapshot_is_dropped_at_recheck() {
    let d = Dir::new("deleted");
    d.publish(&content(1, &[("alice", 1_500_001)]));
    let mut src = Source::new(d.config(0)); // recheck on every lookup
    assert_eq!(names_in(&mut src).unwrap(), ["alice"]);
    std::fs::remove_file(d.file("snapshot")).unwrap();
    assert_eq!(names_in(&mut src).unwrap_err(), ReadError::Missing);
    assert!(src.snap.is_none());
}

#[test]
fn unchanged_file_keeps_its_mapping() {
    let d = Dir::new("same");
    d.publish(&content(1, &[("alice", 1_500_001)]));
    let mut src = Source::new(d.config(0));
    let first = src.current().unwrap().layout();
    let p1 = src.snap.as_ref().unwrap().map.addr();
    // Generation bumped without a new file: same inode, mapping kept.
    d.write_generation(7);
    assert_eq!(src.current().unwrap().layout(), first);
    assert_eq!(src.snap.as_ref().unwrap().map.addr(), p1);
    assert_eq!(src.acted_on, 7);
}

#[test]
fn group_or_world_writable_snapshot_is_refused() {
    let d = Dir::new("mode");
    d.publish(&content(1, &[("alice", 1_500_001)]));
    for m in [0o664, 0o646] {
        mode(&d.file("snapshot"), m);
        let mut src = Source::new(d.config(0));
        assert!(UNUSABLE(names_in(&mut src).unwrap_err()), "mode {m:o}");
    }
    // A mapping already held is dropped when a recheck sees the change.
    mode(&d.file("snapshot"), 0o644);
    let mut src = Source::new(d.config(0));
    assert!(names_in(&mut src).is_ok());
    mode(&d.file("snapshot"), 0o666);
    assert!(UNUSABLE(names_in(&mut src).unwrap_err()));
    assert!(src.snap.is_none());
}

#[test]
fn wrong_owner_is_refused() {
    let d = Dir::new("owner");
    d.publish(&content(1, &[("alice", 1_500_001)]));
    let mut cfg = d.config(0);
    cfg.owner = cfg.owner.wrapping_add(12345);
    assert_eq!(
        names_in(&mut Source::new(cfg)).unwrap_err(),
        ReadError::Untrusted("wrong owner")
    );
}

#[test]
fn user_owned_snapshot_is_refused() {
    let d = Dir::new("file-owner");
    d.publish(&content(1, &[("alice", 1_500_001)]));
    chown(d.file("snapshot"), Some(NOBODY), Some(NOBODY)).unwrap();
    assert_eq!(
        names_in(&mut Source::new(d.config(0))).unwrap_err(),
        ReadError::Untrusted("wrong owner")
    );
}

#[test]
fn user_owned_state_dir_is_refused() {
    let d = Dir::new("dir-owner");
    d.publish(&content(1, &[("alice", 1_500_001)]));
    let mut src = Source::new(d.config(0));
    assert_eq!(names_in(&mut src).unwrap(), ["alice"]);
    chown(&d.path, Some(NOBODY), Some(NOBODY)).unwrap();
    // A fresh reader refuses it, and a reader holding a mapping drops it at
    // its recheck.
    assert_eq!(
        names_in(&mut Source::new(d.config(0))).unwrap_err(),
        ReadError::Untrusted("wrong owner")
    );
    assert_eq!(
        names_in(&mut src).unwrap_err(),
        ReadError::Untrusted("wrong owner")
    );
    assert!(src.snap.is_none() && src.generation.is_none());
    assert!(crate::open_snapshot(&d.config(0)).is_err());
}

#[test]
fn group_or_world_writable_state_dir_is_refused() {
    let d = Dir::new("dir-mode");
    d.publish(&content(1, &[("alice", 1_500_001)]));
    for m in [0o775, 0o757, 0o1777] {
        mode(&d.path, m);
        assert_eq!(
            names_in(&mut Source::new(d.config(0))).unwrap_err(),
            ReadError::Untrusted("writable by group or others"),
            "mode {m:o}"
        );
    }
    mode(&d.path, 0o755);
    assert_eq!(names_in(&mut Source::new(d.config(0))).unwrap(), ["alice"]);
    mode(&d.path, 0o700);
    assert_eq!(names_in(&mut Source::new(d.config(0))).unwrap(), ["alice"]);
}

#[test]
fn symlinked_state_dir_is_refused() {
    let d = Dir::new("dir-link");
    d.publish(&content(1, &[("alice", 1_500_001)]));
    let link = Dir::new("dir-link-to");
    std::fs::remove_dir(&link.path).unwrap();
    symlink(&d.path, &link.path).unwrap();
    // Everything behind the link is root-owned and fine: only the link is wrong.
    let e = names_in(&mut Source::new(link.config(0))).unwrap_err();
    assert_eq!(e, ReadError::Untrusted(crate::trust::NOT_A_REAL_DIR));
    assert_eq!(names_in(&mut Source::new(d.config(0))).unwrap(), ["alice"]);
}

#[test]
fn symlinked_snapshot_is_refused() {
    let d = Dir::new("snap-link");
    let elsewhere = Dir::new("snap-link-target");
    elsewhere.publish(&content(1, &[("mallory", 1_500_666)]));
    symlink(elsewhere.file("snapshot"), d.file("snapshot")).unwrap();
    d.write_generation(1);
    assert_eq!(
        names_in(&mut Source::new(d.config(0))).unwrap_err(),
        ReadError::Untrusted("a symlink")
    );
    assert!(crate::open_snapshot(&d.config(0)).is_err());
}

#[test]
fn symlinked_generation_file_is_refused() {
    let d = Dir::new("gen-link");
    let elsewhere = Dir::new("gen-link-target");
    elsewhere.write_generation(9);
    d.publish_snapshot_only(&content(1, &[("alice", 1_500_001)]));
    symlink(elsewhere.file("generation"), d.file("generation")).unwrap();
    let mut src = Source::new(d.config(3600));
    assert_eq!(names_in(&mut src).unwrap(), ["alice"]);
    assert!(
        src.generation.is_none(),
        "a symlinked generation file is not mapped"
    );
}

#[test]
fn generation_replaced_by_a_symlink_is_unmapped_at_recheck() {
    let d = Dir::new("gen-relink");
    d.publish(&content(1, &[("alice", 1_500_001)]));
    let mut src = Source::new(d.config(3600));
    assert_eq!(names_in(&mut src).unwrap(), ["alice"]);
    assert!(src.generation.is_some());
    let elsewhere = Dir::new("gen-relink-target");
    elsewhere.write_generation(9);
    std::fs::remove_file(d.file("generation")).unwrap();
    symlink(elsewhere.file("generation"), d.file("generation")).unwrap();
    src.recheck_at = Some(0);
    assert_eq!(names_in(&mut src).unwrap(), ["alice"]);
    assert!(src.generation.is_none());
}

#[test]
fn snapshot_replaced_by_a_symlink_is_dropped_at_recheck() {
    let d = Dir::new("snap-relink");
    d.publish(&content(1, &[("alice", 1_500_001)]));
    let mut src = Source::new(d.config(3600));
    assert_eq!(names_in(&mut src).unwrap(), ["alice"]);
    // The link points at a perfectly good root-owned snapshot: still refused.
    let elsewhere = Dir::new("snap-relink-target");
    elsewhere.publish(&content(2, &[("mallory", 1_500_666)]));
    std::fs::remove_file(d.file("snapshot")).unwrap();
    symlink(elsewhere.file("snapshot"), d.file("snapshot")).unwrap();
    assert_eq!(
        names_in(&mut src).unwrap(),
        ["alice"],
        "warm path: no syscall"
    );
    src.recheck_at = Some(0);
    assert_eq!(
        names_in(&mut src).unwrap_err(),
        ReadError::Untrusted("a symlink")
    );
    assert!(src.snap.is_none());
}

#[test]
fn corrupt_short_or_odd_files_are_unusable() {
    let d = Dir::new("corrupt");
    let snap = d.file("snapshot");
    let cfg = d.config(0);
    std::fs::write(&snap, b"").unwrap();
    assert!(UNUSABLE(names_in(&mut Source::new(cfg)).unwrap_err()));
    std::fs::write(&snap, [0x7fu8; 200]).unwrap();
    assert!(UNUSABLE(names_in(&mut Source::new(cfg)).unwrap_err()));
    let mut bytes = zt_snapshot::build(&content(1, &[("alice", 1)]))
        .unwrap()
        .public;
    bytes.pop();
    std::fs::write(&snap, &bytes).unwrap();
    assert!(UNUSABLE(names_in(&mut Source::new(cfg)).unwrap_err()));
    std::fs::remove_file(&snap).unwrap();
    std::fs::create_dir(&snap).unwrap();
    assert!(UNUSABLE(names_in(&mut Source::new(cfg)).unwrap_err()));
    std::fs::remove_dir(&snap).unwrap();
    let fifo = CString::new(snap.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid path string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    assert!(
        UNUSABLE(names_in(&mut Source::new(cfg)).unwrap_err()),
        "a FIFO must not hang open()"
    );
}

#[test]
fn short_generation_file_is_ignored() {
    let d = Dir::new("shortgen");
    d.publish_snapshot_only(&content(1, &[("alice", 1_500_001)]));
    std::fs::write(d.file("generation"), [1u8, 2, 3]).unwrap();
    let mut src = Source::new(d.config(3600));
    assert_eq!(names_in(&mut src).unwrap(), ["alice"]);
    assert!(src.generation.is_none());
}

#[test]
fn reentry_is_busy_not_a_panic() {
    let d = Dir::new("reentry");
    d.publish(&content(1, &[("alice", 1_500_001)]));
    let cell = RefCell::new(Source::new(d.config(3600)));
    assert_eq!(borrow_current::<_, ReadError>(&cell, |_| Ok(1)), Ok(1));
    assert_eq!(
        borrow_current::<_, ReadError>(&cell, |_| borrow_current(&cell, |_| Ok(2))),
        Err(ReadError::Busy)
    );
}

#[test]
fn open_pair_checks_like_the_source() {
    let d = Dir::new("pair");
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    let open = |p: &std::path::Path| crate::published::open_pair_owned_by(p, me);
    assert_eq!(open(&d.path).err(), Some(ReadError::Missing));
    d.publish(&content(4, &[("alice", 1_500_001)]));
    let p = open(&d.path).unwrap();
    assert_eq!(p.snapshot().unwrap().generation(), 4);
    mode(&d.path, 0o777);
    assert!(open(&d.path).is_err());
    mode(&d.path, 0o755);
    let link = d.path.with_extension("link");
    symlink(&d.path, &link).unwrap();
    assert_eq!(
        open(&link).err(),
        Some(ReadError::Untrusted(crate::trust::NOT_A_REAL_DIR))
    );
    std::fs::remove_file(&link).unwrap();
}
