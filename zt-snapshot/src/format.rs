//! The on-disk layout of the two published files, shared by the writer and the reader.
//!
//! The agent publishes a *pair* of files with the same generation:
//!
//! - `snapshot` (0644, every process reads it): only what NSS answers. Names,
//!   uids/gids, gecos, home, shell, memberships and the indexes over them.
//!   Nothing else goes in: a compromised `www-data` must not learn who has
//!   access to the host, their emails or IdP object ids.
//! - `private` (0600 root, or 0640 root:zt when the host has a `zt` group): everything else, keyed by the public file's user
//!   and group indexes: emails, IdP ids, group flags (login groups), the email
//!   index, token issuers and their keys, host policy (2.1), SSH principals, public keys and shared accounts (2.2),
//!   and later sudo-relevant groups, a signature.
//!
//! Both files share one container layout and differ in their magic, so a
//! private file can never be parsed as a public one or the other way round.
//! All integers are little-endian.
//!
//! ```text
//! offset 0   header (64 bytes)
//!              0  magic            8 bytes  PUBLIC_MAGIC or PRIVATE_MAGIC
//!              8  version_major    u16      readers refuse any other major
//!             10  version_minor    u16      additions only; readers ignore what they do not know
//!             12  header_len       u32      64
//!             16  file_len         u64      must equal the file's size
//!             24  generation       u64      increases with every publish; equal in both files of a pair
//!             32  synced_at        u64      unix seconds of the sync that produced the content
//!             40  section_count    u32
//!             44  flags            u32      reserved, 0
//!             48  reserved         16 bytes
//! offset 64  section table: section_count entries of 16 bytes
//!              kind u32, offset u32, len u32, flags u32
//! then       sections, each starting on an 8-byte boundary
//! ```
//!
//! ## Growing the format
//!
//! New data goes in new sections (a minor version bump). A reader skips a
//! section kind it does not know, unless the section's flags carry
//! [`section_flags::MUST_UNDERSTAND`]: then it refuses the whole file. Use that
//! bit for data whose absence would make an old reader *less* strict than the
//! writer intended (host login policy, a signature that must be checked), never
//! for data an old reader can safely ignore (extra display fields). Each known
//! kind may appear at most once; a required section that is missing makes the
//! file unreadable. Kinds are u32s and never reused; the public and private
//! files number theirs in separate ranges (1.. and 0x100..) so that a mix-up is
//! visible in a hex dump too.
//!
//! ## Public sections ([`section`])
//!
//! | kind | contents |
//! |---|---|
//! | STRINGS | bytes referenced by `StrRef { offset: u32, len: u32 }` |
//! | USERS | `USER_RECORD_LEN`-byte user records |
//! | GROUPS | `GROUP_RECORD_LEN`-byte group records |
//! | USER_GROUPS | u32 gids: each user's supplementary groups, a slice per user, ascending; besides the snapshot's own groups it may hold gids of the host's local groups that `[[local_groups]]` grants (the snapshot has no record for those: `files` serves them) |
//! | GROUP_MEMBERS | u32 user indexes: each group's members, a slice per group |
//! | USER_BY_NAME, USER_BY_UID, GROUP_BY_NAME, GROUP_BY_GID | hash indexes |
//!
//! ## Private sections ([`private_section`])
//!
//! | kind | contents |
//! |---|---|
//! | STRINGS | this file's own strings (StrRefs in the private file point here) |
//! | USERS | `PRIVATE_USER_RECORD_LEN`-byte records, one per public user, same index |
//! | GROUPS | `PRIVATE_GROUP_RECORD_LEN`-byte records, one per public group, same index |
//! | USER_BY_EMAIL | hash index from lowercase email to a (public) user index |
//! | ISSUERS (2.1) | `ISSUER_RECORD_LEN`-byte issuer records (below) |
//! | ISSUER_AUDIENCES (2.1) | flat array of `StrRef`s: each issuer's accepted `aud` values, a slice per issuer |
//! | ISSUER_KEYS (2.1) | `ISSUER_KEY_RECORD_LEN`-byte key records, a slice per issuer |
//! | HOST_POLICY (2.1, MUST_UNDERSTAND) | `max_offline_secs: u64` (0 = no limit), 8 reserved bytes |
//!
//! The four 2.1 sections are optional: a 2.0 file has none of them, which
//! reads as no issuers and no policy limit. An issuer record is
//! `kind: u32` ([`issuer_kind`]), `reserved: u32`, `iss: StrRef`,
//! `claim: StrRef` (the token claim naming the person: `email`,
//! `preferred_username`, `upn` or `sub`), `audiences_start: u32,
//! audiences_count: u32` (into ISSUER_AUDIENCES) and `keys_start: u32,
//! keys_count: u32` (into ISSUER_KEYS). A key record is `kid: StrRef,
//! alg: StrRef` (the JWK's `alg` as published) and `jwk: StrRef` (the JWK's
//! JSON text as fetched; the verifier parses it). Issuers and keys are few, so
//! lookups by `iss` and `kid` scan; no index. Issuer sections carry flags 0: a
//! 2.0 reader verifies no tokens, so ignoring them is safe. HOST_POLICY carries
//! MUST_UNDERSTAND: a reader that ignored it would let in logins the policy
//! forbids.
//!
//! ISSUER_MFA (2.3, MUST_UNDERSTAND) holds one `ISSUER_MFA_RECORD_LEN`-byte
//! record per issuer, same index as ISSUERS: `flags: u32`
//! ([`issuer_mfa_flags`]), `reserved: u32`, `acr_values: StrRef` (the `acr`
//! values that count as MFA, separated by `\n`; may be empty). It is written
//! only when some issuer requires MFA, so files without that requirement
//! stay readable by 2.2 readers; a reader that ignored it would accept tokens
//! without MFA, hence MUST_UNDERSTAND. Absent = no issuer requires MFA.
//!
//! ### SSH (2.2)
//!
//! | kind | contents |
//! |---|---|
//! | USER_PRINCIPALS (2.2) | one `(start: u32, count: u32)` pair per public user index, into PRINCIPALS |
//! | PRINCIPALS (2.2) | flat array of `StrRef`s: each user's SSH certificate principals (lowercase) |
//! | USER_KEYS (2.2) | one `(start: u32, count: u32)` pair per public user index, into KEYS |
//! | KEYS (2.2) | flat array of `StrRef`s: each user's OpenSSH public key lines from the directory |
//! | SHARED_ACCOUNTS (2.2) | `SHARED_ACCOUNT_RECORD_LEN`-byte records: `name: StrRef, groups_start: u32, groups_count: u32` |
//! | SHARED_ACCOUNT_GROUPS (2.2) | flat array of `StrRef`s: each shared account's allowed IdP group ids, a slice per account |
//!
//! All six are optional and carry flags 0: a 2.0/2.1 file has none, which
//! reads as "no principals, no keys, no shared accounts" (an old reader that
//! ignores them grants less, never more). When USER_PRINCIPALS or USER_KEYS is
//! present it holds exactly one pair per public user. Shared accounts name
//! their groups by IdP group id (not by public group index): a reader finds the
//! private group records with those ids and takes the public groups' members at
//! the same indexes; an id no published group has simply has no members.
//! Shared accounts are few, so lookup by name scans.
//!
//! The last *successful* sync (distinct from `synced_at`, which is when the
//! content last changed) is not in the pair: it is the 8-byte `synced` file
//! beside it (`StateDir::write_last_good_sync`), rewritten after every good
//! sync, changed or not. Readers take the later of it and `synced_at`.
//!
//! Reserved for later (documented here so the layout is decided once):
//!
//! - More HOST_POLICY fields (who may log in here, as IdP group object ids)
//!   go after `max_offline_secs`, in the reserved bytes or a longer section.
//! - SUDO_GROUPS: group indexes that carry sudo rules or local group grants.
//! - SYNC_INFO: a *signed* last-successful-sync time, once snapshots are signed.
//! - SIGNATURE (MUST_UNDERSTAND once hosts require signed snapshots): a
//!   signature over the file's *content*: every byte of the file with the
//!   header's `generation` and `synced_at` fields (bytes 24..40) zeroed and
//!   the SIGNATURE section's body zeroed. Generation and time are per-host
//!   publication facts (a fleet host restamps a fetched snapshot with its own
//!   generation), so they must not be part of what is signed; freshness comes
//!   from a signed field inside SYNC_INFO instead.
//!
//! ## Hash indexes
//!
//! A hash index is `slot_count: u32, reserved: u32` followed by `slot_count`
//! slots of `tag: u32, index_plus_one: u32` (0 = empty slot). `slot_count` is a
//! power of two at least twice the number of entries; lookup probes linearly from
//! `hash & (slot_count - 1)` and stops at an empty slot or after `slot_count`
//! probes (so a corrupt, full table cannot loop forever). `tag` is the upper 32
//! bits of the 64-bit key hash, which spares most string comparisons.

/// First eight bytes of every public snapshot.
pub const PUBLIC_MAGIC: [u8; 8] = *b"\x7fZTSNAP\n";
/// First eight bytes of every private companion file.
pub const PRIVATE_MAGIC: [u8; 8] = *b"\x7fZTPRIV\n";
/// Readers refuse a file with another major version. 2: the public/private split.
pub const VERSION_MAJOR: u16 = 2;
/// Bumped when sections are added; old readers skip unknown sections.
/// 1: token issuers and their keys, host policy.
/// 2: SSH principals, public keys and shared accounts.
/// 3: issuer MFA requirements.
pub const VERSION_MINOR: u16 = 3;
pub const HEADER_LEN: usize = 64;
pub const SECTION_ENTRY_LEN: usize = 16;
/// Bound on the section table, so a corrupt count cannot make a reader walk far.
pub const MAX_SECTIONS: u32 = 64;

pub const USER_RECORD_LEN: usize = 48;
pub const GROUP_RECORD_LEN: usize = 24;
pub const PRIVATE_USER_RECORD_LEN: usize = 16;
pub const PRIVATE_GROUP_RECORD_LEN: usize = 16;
pub const ISSUER_RECORD_LEN: usize = 40;
pub const ISSUER_KEY_RECORD_LEN: usize = 24;
pub const ISSUER_MFA_RECORD_LEN: usize = 16;
pub const STR_REF_LEN: usize = 8;
/// A `(start: u32, count: u32)` pair of USER_PRINCIPALS / USER_KEYS.
pub const LIST_REF_LEN: usize = 8;
pub const SHARED_ACCOUNT_RECORD_LEN: usize = 16;
/// The HOST_POLICY section's length as written; readers need its first 8 bytes.
pub const HOST_POLICY_LEN: usize = 16;
pub const INDEX_HEADER_LEN: usize = 8;
pub const INDEX_SLOT_LEN: usize = 8;

pub use crate::state::{GENERATION_PATH, PRIVATE_PATH, SNAPSHOT_PATH, SYNCED_PATH};

/// Section kinds of the public file.
pub mod section {
    pub const STRINGS: u32 = 1;
    pub const USERS: u32 = 2;
    pub const GROUPS: u32 = 3;
    pub const USER_GROUPS: u32 = 4;
    pub const GROUP_MEMBERS: u32 = 5;
    pub const USER_BY_NAME: u32 = 6;
    pub const USER_BY_UID: u32 = 7;
    // 8 was USER_BY_EMAIL in version 1; the email index is private now.
    pub const GROUP_BY_NAME: u32 = 9;
    pub const GROUP_BY_GID: u32 = 10;
}

/// Section kinds of the private file.
pub mod private_section {
    pub const STRINGS: u32 = 0x101;
    pub const USERS: u32 = 0x102;
    pub const GROUPS: u32 = 0x103;
    pub const USER_BY_EMAIL: u32 = 0x104;
    /// Since 2.1; optional (absent in 2.0 files = no issuers).
    pub const ISSUERS: u32 = 0x105;
    /// Since 2.1; optional.
    pub const ISSUER_AUDIENCES: u32 = 0x106;
    /// Since 2.1; optional.
    pub const ISSUER_KEYS: u32 = 0x107;
    /// Since 2.1; optional (absent = no limit); written MUST_UNDERSTAND.
    pub const HOST_POLICY: u32 = 0x108;
    /// Since 2.2; optional (absent = nobody has principals).
    pub const USER_PRINCIPALS: u32 = 0x109;
    /// Since 2.2; optional.
    pub const PRINCIPALS: u32 = 0x10a;
    /// Since 2.2; optional (absent = nobody has keys).
    pub const USER_KEYS: u32 = 0x10b;
    /// Since 2.2; optional.
    pub const KEYS: u32 = 0x10c;
    /// Since 2.2; optional (absent = no shared accounts).
    pub const SHARED_ACCOUNTS: u32 = 0x10d;
    /// Since 2.2; optional.
    pub const SHARED_ACCOUNT_GROUPS: u32 = 0x10e;
    /// Since 2.3; optional (absent = no issuer requires MFA); written
    /// MUST_UNDERSTAND, and only when some issuer requires MFA.
    pub const ISSUER_MFA: u32 = 0x10f;
}

/// `flags` of an ISSUER_MFA record.
pub mod issuer_mfa_flags {
    /// The issuer's tokens must show MFA: `amr` contains "mfa", or `acr` is
    /// one of the record's `acr_values`.
    pub const REQUIRED: u32 = 1;
}

/// `kind` of an issuer record.
pub mod issuer_kind {
    pub const CLOUDFLARE_ACCESS: u32 = 1;
    pub const OIDC: u32 = 2;
}

/// The 4th u32 of a section table entry.
pub mod section_flags {
    /// A reader that does not know this section's kind must refuse the file.
    pub const MUST_UNDERSTAND: u32 = 1;
}

/// Group flags (private file only).
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

/// Public user record field offsets.
pub(crate) mod user {
    pub const UID: usize = 0;
    pub const GID: usize = 4;
    pub const NAME: usize = 8;
    pub const GECOS: usize = 16;
    pub const HOME: usize = 24;
    pub const SHELL: usize = 32;
    pub const GROUPS_START: usize = 40;
    pub const GROUPS_COUNT: usize = 44;
}

/// Public group record field offsets. Bytes 4..8 are reserved (0).
pub(crate) mod group {
    pub const GID: usize = 0;
    pub const NAME: usize = 8;
    pub const MEMBERS_START: usize = 16;
    pub const MEMBERS_COUNT: usize = 20;
}

/// Private user record field offsets.
pub(crate) mod private_user {
    pub const EMAIL: usize = 0;
    pub const IDP_ID: usize = 8;
}

/// Issuer record field offsets. Bytes 4..8 are reserved (0).
pub(crate) mod issuer {
    pub const KIND: usize = 0;
    pub const ISS: usize = 8;
    pub const CLAIM: usize = 16;
    pub const AUDIENCES_START: usize = 24;
    pub const AUDIENCES_COUNT: usize = 28;
    pub const KEYS_START: usize = 32;
    pub const KEYS_COUNT: usize = 36;
}

/// ISSUER_MFA record field offsets. Bytes 4..8 are reserved (0).
pub(crate) mod issuer_mfa {
    pub const FLAGS: usize = 0;
    pub const ACR_VALUES: usize = 8;
}

/// Issuer key record field offsets.
pub(crate) mod issuer_key {
    pub const KID: usize = 0;
    pub const ALG: usize = 8;
    pub const JWK: usize = 16;
}

/// Shared account record field offsets.
pub(crate) mod shared_account {
    pub const NAME: usize = 0;
    pub const GROUPS_START: usize = 8;
    pub const GROUPS_COUNT: usize = 12;
}

/// Private group record field offsets. Bytes 12..16 are reserved (0).
pub(crate) mod private_group {
    pub const IDP_ID: usize = 0;
    pub const FLAGS: usize = 8;
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
