//! The on-disk layout of a snapshot, shared by the writer and the reader.
//!
//! All integers are little-endian. A snapshot is:
//!
//! ```text
//! offset 0   header (64 bytes)
//!              0  magic            8 bytes  b"\x7fZTSNAP\n"
//!              8  version_major    u16      readers refuse any other major
//!             10  version_minor    u16      additions only; readers ignore what they do not know
//!             12  header_len       u32      64
//!             16  file_len         u64      must equal the file's size
//!             24  generation       u64      increases with every publish (see generation file)
//!             32  synced_at        u64      unix seconds of the sync that produced this snapshot
//!             40  section_count    u32
//!             44  flags            u32      reserved, 0
//!             48  reserved         16 bytes
//! offset 64  section table: section_count entries of 16 bytes
//!              kind u32, offset u32, len u32, reserved u32
//! then       sections, each starting on an 8-byte boundary
//! ```
//!
//! Sections of version 1 (unknown kinds are skipped, so later versions can add
//! host policy, token issuers, keys and a signature without breaking old readers):
//!
//! | kind | contents |
//! |---|---|
//! | STRINGS | bytes referenced by `StrRef { offset: u32, len: u32 }` |
//! | USERS | `USER_RECORD_LEN`-byte user records |
//! | GROUPS | `GROUP_RECORD_LEN`-byte group records |
//! | USER_GROUPS | u32 gids: each user's supplementary groups, a slice per user |
//! | GROUP_MEMBERS | u32 user indexes: each group's members, a slice per group |
//! | USER_BY_NAME, USER_BY_UID, USER_BY_EMAIL, GROUP_BY_NAME, GROUP_BY_GID | hash indexes |
//!
//! A hash index is `slot_count: u32, reserved: u32` followed by `slot_count`
//! slots of `tag: u32, index_plus_one: u32` (0 = empty slot). `slot_count` is a
//! power of two at least twice the number of entries; lookup probes linearly from
//! `hash & (slot_count - 1)` and stops at an empty slot or after `slot_count`
//! probes (so a corrupt, full table cannot loop forever). `tag` is the upper 32
//! bits of the 64-bit key hash, which spares most string comparisons.

/// First eight bytes of every snapshot.
pub const MAGIC: [u8; 8] = *b"\x7fZTSNAP\n";
/// Readers refuse a snapshot with another major version.
pub const VERSION_MAJOR: u16 = 1;
/// Bumped when sections are added; old readers ignore unknown sections.
pub const VERSION_MINOR: u16 = 0;
pub const HEADER_LEN: usize = 64;
pub const SECTION_ENTRY_LEN: usize = 16;
/// Bound on the section table, so a corrupt count cannot make a reader walk far.
pub const MAX_SECTIONS: u32 = 64;

pub const USER_RECORD_LEN: usize = 64;
pub const GROUP_RECORD_LEN: usize = 32;
pub const INDEX_HEADER_LEN: usize = 8;
pub const INDEX_SLOT_LEN: usize = 8;

/// Where zt-agent publishes the snapshot and where nss_zt/pam_zt read it.
pub const SNAPSHOT_PATH: &str = "/var/lib/zt/snapshot";
/// An 8-byte file holding the generation of the snapshot currently published.
/// Readers map it once and compare it with their snapshot's generation on every
/// lookup: one memory load, no system call, tells them a new snapshot exists.
pub const GENERATION_PATH: &str = "/var/lib/zt/generation";

/// Section kinds.
pub mod section {
    pub const STRINGS: u32 = 1;
    pub const USERS: u32 = 2;
    pub const GROUPS: u32 = 3;
    pub const USER_GROUPS: u32 = 4;
    pub const GROUP_MEMBERS: u32 = 5;
    pub const USER_BY_NAME: u32 = 6;
    pub const USER_BY_UID: u32 = 7;
    pub const USER_BY_EMAIL: u32 = 8;
    pub const GROUP_BY_NAME: u32 = 9;
    pub const GROUP_BY_GID: u32 = 10;
}

/// Group flags.
pub mod group_flags {
    /// The group is a user private group (gid = the user's uid, same name).
    pub const USER_PRIVATE: u32 = 1;
    /// Members of this IdP group may log in on this host.
    pub const LOGIN: u32 = 2;
}

/// Header field offsets.
pub(crate) mod header {
    pub const VERSION_MAJOR: usize = 8;
    pub const VERSION_MINOR: usize = 10;
    pub const HEADER_LEN: usize = 12;
    pub const FILE_LEN: usize = 16;
    pub const GENERATION: usize = 24;
    pub const SYNCED_AT: usize = 32;
    pub const SECTION_COUNT: usize = 40;
}

/// User record field offsets.
pub(crate) mod user {
    pub const UID: usize = 0;
    pub const GID: usize = 4;
    pub const NAME: usize = 8;
    pub const GECOS: usize = 16;
    pub const HOME: usize = 24;
    pub const SHELL: usize = 32;
    pub const EMAIL: usize = 40;
    pub const IDP_ID: usize = 48;
    pub const GROUPS_START: usize = 56;
    pub const GROUPS_COUNT: usize = 60;
}

/// Group record field offsets.
pub(crate) mod group {
    pub const GID: usize = 0;
    pub const FLAGS: usize = 4;
    pub const NAME: usize = 8;
    pub const IDP_ID: usize = 16;
    pub const MEMBERS_START: usize = 24;
    pub const MEMBERS_COUNT: usize = 28;
}

/// FNV-1a, 64 bit: the hash of name and email keys. Part of the format: changing
/// it is a major version change.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's low bits mix poorly for short keys; finish with a multiply-xorshift
    // so that `hash & mask` spreads well.
    finish(h)
}

/// Hash of numeric keys (uid, gid). Part of the format.
pub fn hash_id(id: u32) -> u64 {
    finish(u64::from(id) ^ 0x9e37_79b9_7f4a_7c15)
}

fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

pub(crate) fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}
