//! Where the published files are: the only place this crate names them.
//!
//! The names come from the publish protocol (`zt_snapshot::state`), so the
//! writer and every reader agree by construction; the C strings and `SYSTEM`
//! derive from them at compile time.

use std::ffi::CStr;

/// The state directory zt-agent publishes into.
pub const STATE_DIR: &str = zt_snapshot::state::STATE_DIR;
/// The public snapshot (0644): only what NSS serves.
pub const SNAPSHOT: &str = zt_snapshot::state::names::SNAPSHOT;
/// The 8-byte generation counter, bumped in place after each publish.
pub const GENERATION: &str = zt_snapshot::state::names::GENERATION;
/// The root-only companion (0600): emails, IdP ids, login flags, later keys.
pub const PRIVATE: &str = zt_snapshot::state::names::PRIVATE;

/// Where the files are and who must own them. Readers use `SYSTEM`; tests
/// point one at a temporary directory.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// The state directory (absolute path).
    pub dir: &'static CStr,
    /// File names inside `dir`.
    pub snapshot: &'static CStr,
    pub generation: &'static CStr,
    /// The only uid allowed to own the directory and the files.
    pub owner: libc::uid_t,
    /// Seconds between unconditional rechecks (directory, files).
    pub recheck_secs: i64,
}

pub const SYSTEM: Config = Config {
    dir: c_str(&STATE_DIR_Z),
    snapshot: c_str(&SNAPSHOT_Z),
    generation: c_str(&GENERATION_Z),
    owner: 0,
    recheck_secs: 5,
};

const STATE_DIR_Z: [u8; STATE_DIR.len() + 1] = nul_terminated(STATE_DIR);
const SNAPSHOT_Z: [u8; SNAPSHOT.len() + 1] = nul_terminated(SNAPSHOT);
const GENERATION_Z: [u8; GENERATION.len() + 1] = nul_terminated(GENERATION);
const PRIVATE_Z: [u8; PRIVATE.len() + 1] = nul_terminated(PRIVATE);
/// `PRIVATE` as a C string.
pub const PRIVATE_C: &CStr = c_str(&PRIVATE_Z);

/// The `&str` constants NUL-terminated at compile time, so the lookup path
/// never allocates a CString.
const fn nul_terminated<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        out[i] = b[i];
        i += 1;
    }
    out
}

// Evaluated at compile time only: a name with an interior NUL fails the build.
#[allow(clippy::panic)]
const fn c_str(bytes: &'static [u8]) -> &'static CStr {
    match CStr::from_bytes_with_nul(bytes) {
        Ok(c) => c,
        Err(_) => panic!("state file name contains a NUL byte"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_snapshot_contract() {
        let join = |name: &CStr| {
            format!(
                "{}/{}",
                SYSTEM.dir.to_str().unwrap(),
                name.to_str().unwrap()
            )
        };
        assert_eq!(join(SYSTEM.snapshot), zt_snapshot::SNAPSHOT_PATH);
        assert_eq!(join(SYSTEM.generation), zt_snapshot::GENERATION_PATH);
        assert_eq!(PRIVATE_C.to_str().unwrap(), PRIVATE);
        assert_eq!((SYSTEM.owner, SYSTEM.recheck_secs), (0, 5));
    }
}
