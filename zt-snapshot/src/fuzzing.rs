//! One function that calls every reader entry point, shared by the cargo-fuzz
//! target (`fuzz/fuzz_targets/snapshot_reader.rs`) and the corpus replay in
//! `cargo test`, so both exercise the same paths. Not part of the API.

use crate::{Pair, Private, Snapshot};

/// Prefix of a fuzz input that holds a pair: `PAIR_MAGIC`, the public file's
/// length as a little-endian u32, the public file, then the private file.
pub const PAIR_MAGIC: [u8; 8] = *b"ZTPAIR\0\0";

/// Encodes a pair as one fuzz input (see `PAIR_MAGIC`).
pub fn pair_input(public: &[u8], private: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + public.len() + private.len());
    v.extend_from_slice(&PAIR_MAGIC);
    v.extend_from_slice(&(public.len() as u32).to_le_bytes());
    v.extend_from_slice(public);
    v.extend_from_slice(private);
    v
}

/// Calls every reader entry point on `bytes` read as a public snapshot, as a
/// private file, and (when it is a pair input) as a pair. The results do not
/// matter, only that every call returns.
pub fn exercise(bytes: &[u8]) {
    if let Some(rest) = bytes.strip_prefix(&PAIR_MAGIC[..])
        && let Some((len, rest)) = rest.split_first_chunk::<4>()
        && let Some((public, private)) = rest.split_at_checked(u32::from_le_bytes(*len) as usize)
    {
        exercise_public(public);
        exercise_private(private);
        if let Ok(p) = Pair::parse(public, private) {
            let _ = p.verify_all();
            for i in 0..p.private.user_count().min(64) {
                if let Ok(u) = p.private.user(i) {
                    let _ = p.user_by_email(u.email);
                }
            }
        }
        return;
    }
    exercise_public(bytes);
    exercise_private(bytes);
}

fn exercise_public(bytes: &[u8]) {
    let Ok(s) = Snapshot::parse(bytes) else {
        return;
    };
    let _ = s.verify_all();
    for i in 0..s.user_count().min(64) {
        if let Ok(u) = s.user(i) {
            let _ = s.user_by_name(u.name);
            let _ = s.user_by_uid(u.uid);
            for gid in u.groups.iter().take(64) {
                let _ = s.group_by_gid(gid);
            }
        }
    }
    for i in 0..s.group_count().min(64) {
        if let Ok(g) = s.group(i) {
            let _ = s.group_by_name(g.name);
            let _ = s.group_by_gid(g.gid);
            for m in g.members.iter().take(64) {
                let _ = s.user_name(m as usize);
            }
        }
    }
    let _ = s.user_by_name(b"alice");
    let _ = s.user_by_uid(1_879_048_200);
    let _ = s.group_by_gid(0);
}

fn exercise_private(bytes: &[u8]) {
    let Ok(p) = Private::parse(bytes) else {
        return;
    };
    let _ = p.verify_all();
    for i in 0..p.user_count().min(64) {
        if let Ok(u) = p.user(i) {
            let _ = p.user_by_email(u.email);
        }
    }
    for i in 0..p.group_count().min(64) {
        let _ = p.group(i);
    }
    let _ = p.user_by_email(b"alice@example.com");
    let _ = p.policy();
    for i in 0..p.issuer_count().min(16) {
        let Ok(iss) = p.issuer(i) else { continue };
        let _ = p.issuer_by_iss(iss.iss);
        for a in iss.audiences().take(16) {
            let _ = a;
        }
        let _ = iss.audience(iss.audience_count());
        for k in 0..iss.key_count().min(16) {
            if let Ok(key) = iss.key(k) {
                let _ = iss.key_by_kid(key.kid);
            }
        }
        let _ = iss.key(iss.key_count());
        let _ = iss.key_by_kid(b"no-such-kid");
    }
    let _ = p.issuer(p.issuer_count());
    for i in 0..p.user_count().min(64) {
        for list in [p.principals(i), p.keys(i)].into_iter().flatten() {
            for s in list.iter().take(16) {
                let _ = s;
            }
            let _ = list.get(list.len());
        }
    }
    let _ = p.principals(p.user_count());
    let _ = p.keys(p.user_count());
    for i in 0..p.shared_account_count().min(16) {
        if let Ok(a) = p.shared_account_at(i) {
            let _ = p.shared_account(a.name);
            for g in a.groups.iter().take(16) {
                let _ = g;
            }
        }
    }
    let _ = p.shared_account_at(p.shared_account_count());
    let _ = p.shared_account(b"sysadmin");
    let _ = p.issuer_by_iss(b"https://acme.cloudflareaccess.com");
}
