//! A service started with `UMask=0077` must still publish a world-readable
//! snapshot and a 0755 state directory (and a 0600 private file). In its own
//! test binary: the umask is per process and would leak into other tests.

use std::os::unix::fs::MetadataExt;

use zt_snapshot::state::names;
use zt_snapshot::{Content, StateDir, build};

#[test]
fn modes_are_exact_under_umask_0077() {
    // SAFETY: umask only changes this process's file creation mask.
    let old = unsafe { libc::umask(0o077) };
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("zt");
    let s = StateDir::open_or_create(&dir).unwrap();
    let mut built = build(&Content::default()).unwrap();
    built.restamp(1, 1);
    s.publish(&built).unwrap();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&dir), 0o755);
    assert_eq!(mode(&dir.join(names::SNAPSHOT)), 0o644);
    assert_eq!(mode(&dir.join(names::GENERATION)), 0o644);
    assert_eq!(mode(&dir.join(names::PRIVATE)), 0o600);
}
