//! Any byte sequence handed to the snapshot reader must produce answers or
//! errors, never a panic or an out-of-bounds read (nss_zt runs inside every
//! process on the host).
#![no_main]

use libfuzzer_sys::fuzz_target;
use zt_snapshot::Snapshot;

fuzz_target!(|bytes: &[u8]| {
    let Ok(s) = Snapshot::parse(bytes) else { return };
    let _ = s.verify_all();
    for i in 0..s.user_count().min(256) {
        if let Ok(u) = s.user(i) {
            let _ = s.user_by_name(u.name);
            let _ = s.user_by_uid(u.uid);
            let _ = s.user_by_email(u.email);
            for gid in u.groups.iter().take(256) {
                let _ = s.group_by_gid(gid);
            }
        }
    }
    for i in 0..s.group_count().min(256) {
        if let Ok(g) = s.group(i) {
            let _ = s.group_by_name(g.name);
            for m in g.members.iter().take(256) {
                let _ = s.user_name(m as usize);
            }
        }
    }
    let _ = s.user_by_name(b"alice");
    let _ = s.user_by_uid(1_879_048_200);
});
