//! Builds the published pair (public snapshot + private companion) from one
//! plain Rust model. Used only by zt-agent (and tests, benches).

use std::collections::HashMap;

use crate::format::{self, private_section, section, section_flags};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    pub name: String,
    pub uid: u32,
    /// Primary group (the user private group, gid = uid).
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
    /// Lowercase email; may be empty. Private file only.
    pub email: String,
    /// The IdP's immutable object id. Private file only.
    pub idp_id: String,
    /// SSH certificate principals that may log in as this user (lowercase,
    /// already checked by the agent's rules). Private file only.
    pub principals: Vec<String>,
    /// OpenSSH public key lines from the directory. Private file only.
    pub ssh_keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    /// `format::group_flags`. Private file only.
    pub flags: u32,
    /// The IdP's immutable object id; empty for user private groups. Private file only.
    pub idp_id: String,
    /// Names of member users; each must be one of the snapshot's users.
    pub members: Vec<String>,
}

/// A token issuer whose tokens pam_zt accepts (private file only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuerEntry {
    /// `format::issuer_kind`.
    pub kind: u32,
    /// The exact `iss` claim tokens carry.
    pub iss: String,
    /// The claim that names the person: "email", "preferred_username", "upn" or "sub".
    pub claim: String,
    /// Accepted `aud` values (Cloudflare AUD tags, OIDC client ids).
    pub audiences: Vec<String>,
    /// The issuer's signing keys as last fetched; may be empty.
    pub keys: Vec<KeyEntry>,
    /// Tokens must show MFA (`amr` contains "mfa", or an `acr` of `mfa_acr`).
    pub require_mfa: bool,
    /// `acr` values that count as MFA (only with `require_mfa`).
    pub mfa_acr: Vec<String>,
}

/// One signing key of an issuer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyEntry {
    pub kid: String,
    /// The JWK's `alg` as published ("RS256", "ES256", "EdDSA", ...).
    pub alg: String,
    /// The JWK's JSON text as fetched.
    pub jwk: String,
}

/// An account several people log in to with their own certificates: the
/// members of any of `groups` (IdP group ids). Private file only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedAccountEntry {
    /// The login name (a local account or a directory user).
    pub name: String,
    /// IdP group ids whose members may log in as it.
    pub groups: Vec<String>,
}

/// Existing local groups that the members of one published group get as
/// supplementary groups (`[[local_groups]]`): they go into each member's
/// USER_GROUPS list, which libnss_zt's initgroups answers. The local groups
/// themselves are not in the snapshot (`files` serves them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalGrantEntry {
    /// The published group whose members get them.
    pub group_gid: u32,
    /// Local gids; never 0, never a gid of the snapshot.
    pub gids: Vec<u32>,
}

/// Host login policy (private file only, a MUST_UNDERSTAND section).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyEntry {
    /// Past this many seconds since the last good sync, directory users cannot
    /// log in. 0 = no limit.
    pub max_offline_secs: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content {
    pub generation: u64,
    /// Unix seconds of the sync that produced this content.
    pub synced_at: u64,
    pub users: Vec<UserEntry>,
    pub groups: Vec<GroupEntry>,
    /// Token issuers and their keys. Private file only.
    pub issuers: Vec<IssuerEntry>,
    /// Host login policy. Private file only.
    pub policy: PolicyEntry,
    /// Shared accounts reachable by IdP group. Private file only.
    pub shared_accounts: Vec<SharedAccountEntry>,
    /// Local groups granted to the members of published groups.
    pub local_grants: Vec<LocalGrantEntry>,
}

/// Why content cannot become a snapshot. The agent's rules should make these
/// impossible; the writer checks anyway because readers trust the indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    DuplicateUserName(String),
    DuplicateUid(u32),
    DuplicateEmail(String),
    DuplicateGroupName(String),
    DuplicateGid(u32),
    UnknownMember {
        group: String,
        member: String,
    },
    /// Two issuers with the same `iss`, or an empty `iss`.
    DuplicateIssuer(String),
    /// Two shared accounts with the same name, or an empty name.
    DuplicateSharedAccount(String),
    /// A local grant names a group the snapshot does not have, gid 0, or a
    /// gid the snapshot itself serves.
    BadLocalGrant {
        group_gid: u32,
        gid: u32,
    },
    /// One issuer lists a `kid` twice, or an empty `kid`.
    DuplicateKid {
        iss: String,
        kid: String,
    },
    BadString {
        field: &'static str,
        value: String,
    },
    TooLarge,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::DuplicateUserName(n) => write!(f, "two users named {n:?}"),
            BuildError::DuplicateUid(u) => write!(f, "two users with uid {u}"),
            BuildError::DuplicateEmail(e) => write!(f, "two users with email {e:?}"),
            BuildError::DuplicateGroupName(n) => write!(f, "two groups named {n:?}"),
            BuildError::DuplicateGid(g) => write!(f, "two groups with gid {g}"),
            BuildError::UnknownMember { group, member } => {
                write!(
                    f,
                    "group {group:?} lists {member:?}, who is not a user of the snapshot"
                )
            }
            BuildError::DuplicateIssuer(i) => {
                write!(f, "two issuers (or an empty one) named {i:?}")
            }
            BuildError::DuplicateSharedAccount(n) => {
                write!(f, "two shared accounts (or an empty one) named {n:?}")
            }
            BuildError::DuplicateKid { iss, kid } => {
                write!(
                    f,
                    "issuer {iss:?} lists key id {kid:?} twice (or an empty one)"
                )
            }
            BuildError::BadLocalGrant { group_gid, gid } => write!(
                f,
                "local grant of gid {gid} to the members of group {group_gid}: the group is not \
                 in the snapshot, or the gid is 0 or one of the snapshot's"
            ),
            BuildError::BadString { field, value } => {
                write!(
                    f,
                    "{field} {value:?} contains a byte not allowed in passwd/group fields (NUL, ':' or newline)"
                )
            }
            BuildError::TooLarge => write!(f, "snapshot or private file would exceed 4 GiB"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Characters that would corrupt a passwd/group line (getent prints them
/// verbatim) or a C string.
fn check_field(field: &'static str, value: &str, allow_colon: bool) -> Result<(), BuildError> {
    if value
        .bytes()
        .any(|b| b == 0 || b == b'\n' || (!allow_colon && b == b':'))
    {
        return Err(BuildError::BadString {
            field,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// The string section; each distinct string is stored once. Keys borrow from
/// the content being built (no copy per string).
struct Strings<'c> {
    bytes: Vec<u8>,
    dedup: HashMap<&'c str, (u32, u32)>,
}

impl<'c> Strings<'c> {
    fn add(&mut self, s: &'c str) -> Result<(u32, u32), BuildError> {
        if let Some(r) = self.dedup.get(s) {
            return Ok(*r);
        }
        let off = u32::try_from(self.bytes.len()).map_err(|_| BuildError::TooLarge)?;
        let len = u32::try_from(s.len()).map_err(|_| BuildError::TooLarge)?;
        self.bytes.extend_from_slice(s.as_bytes());
        self.dedup.insert(s, (off, len));
        Ok((off, len))
    }
}

fn put_u32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}

fn put_str(v: &mut Vec<u8>, r: (u32, u32)) {
    put_u32(v, r.0);
    put_u32(v, r.1);
}

/// An open-addressing hash index over every entry, keyed by `hash(entry)`.
fn build_index(keys: impl Iterator<Item = u64>) -> Vec<u8> {
    let entries: Vec<(usize, u64)> = keys.enumerate().collect();
    build_sparse_index(&entries)
}

/// The two files of one publication, built from the same content and stamped
/// with the same generation. Publish them together (`StateDir::publish`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The world-readable snapshot (0644): what NSS answers.
    pub public: Vec<u8>,
    /// The root-only companion (0600): emails, IdP ids, group flags, ...
    pub private: Vec<u8>,
}

impl Built {
    /// The generation both files carry.
    pub fn generation(&self) -> u64 {
        header_u64(&self.public, format::header::GENERATION)
    }

    /// Restamps both files with a new generation and sync time, so a caller can
    /// compare content with the previous pair and publish without building twice.
    pub fn restamp(&mut self, generation: u64, synced_at: u64) {
        restamp(&mut self.public, generation, synced_at);
        restamp(&mut self.private, generation, synced_at);
    }
}

fn header_u64(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

/// Checks the content and builds both files. Users and groups keep the order
/// given (enumeration order); the private file's records follow the same order,
/// so a public index is also a private index.
pub fn build(content: &Content) -> Result<Built, BuildError> {
    if content.users.len() >= u32::MAX as usize / 2 || content.groups.len() >= u32::MAX as usize / 2
    {
        return Err(BuildError::TooLarge);
    }
    let mut user_index: HashMap<&str, u32> = HashMap::with_capacity(content.users.len());
    let mut uids = HashMap::with_capacity(content.users.len());
    let mut emails = HashMap::with_capacity(content.users.len());
    for (i, u) in content.users.iter().enumerate() {
        check_field("user name", &u.name, false)?;
        check_field("gecos", &u.gecos, false)?;
        check_field("home", &u.home, false)?;
        check_field("shell", &u.shell, false)?;
        check_field("email", &u.email, false)?;
        check_field("idp id", &u.idp_id, true)?;
        for p in &u.principals {
            check_field("principal", p, true)?;
        }
        for k in &u.ssh_keys {
            check_field("ssh key", k, true)?;
        }
        if u.name.is_empty() || user_index.insert(&u.name, i as u32).is_some() {
            return Err(BuildError::DuplicateUserName(u.name.clone()));
        }
        if uids.insert(u.uid, i).is_some() {
            return Err(BuildError::DuplicateUid(u.uid));
        }
        if !u.email.is_empty() && emails.insert(u.email.as_str(), i).is_some() {
            return Err(BuildError::DuplicateEmail(u.email.clone()));
        }
    }
    let mut group_names = HashMap::with_capacity(content.groups.len());
    let mut gids: HashMap<u32, usize> = HashMap::with_capacity(content.groups.len());
    // user index -> supplementary gids, derived from group members so the two
    // directions can never disagree.
    let mut user_groups: Vec<Vec<u32>> = vec![Vec::new(); content.users.len()];
    let mut group_members: Vec<Vec<u32>> = Vec::with_capacity(content.groups.len());
    // member_of[user] = 1 + index of the last group that listed the user: finds
    // a name listed twice in one group in constant time (a linear search of
    // the members so far made a 100,000-member group cost seconds).
    let mut member_of: Vec<u32> = vec![0; content.users.len()];
    for (gi, g) in content.groups.iter().enumerate() {
        let stamp = gi as u32 + 1;
        check_field("group name", &g.name, false)?;
        check_field("group idp id", &g.idp_id, true)?;
        if g.name.is_empty() || group_names.insert(g.name.as_str(), ()).is_some() {
            return Err(BuildError::DuplicateGroupName(g.name.clone()));
        }
        if gids.insert(g.gid, gi).is_some() {
            return Err(BuildError::DuplicateGid(g.gid));
        }
        let mut members = Vec::with_capacity(g.members.len());
        for m in &g.members {
            let Some(&ui) = user_index.get(m.as_str()) else {
                return Err(BuildError::UnknownMember {
                    group: g.name.clone(),
                    member: m.clone(),
                });
            };
            let ui = ui as usize;
            if member_of[ui] == stamp {
                continue;
            }
            member_of[ui] = stamp;
            members.push(ui as u32);
            let list = &mut user_groups[ui];
            if content.users[ui].gid != g.gid && !list.contains(&g.gid) {
                list.push(g.gid);
            }
        }
        group_members.push(members);
    }
    for grant in &content.local_grants {
        let bad = |gid| BuildError::BadLocalGrant {
            group_gid: grant.group_gid,
            gid,
        };
        let Some(&gi) = gids.get(&grant.group_gid) else {
            return Err(bad(0));
        };
        for &gid in &grant.gids {
            if gid == 0 || gids.contains_key(&gid) {
                return Err(bad(gid));
            }
            for &ui in &group_members[gi] {
                let list = &mut user_groups[ui as usize];
                if content.users[ui as usize].gid != gid && !list.contains(&gid) {
                    list.push(gid);
                }
            }
        }
    }
    check_issuers(&content.issuers)?;
    check_shared_accounts(&content.shared_accounts)?;
    let public = build_public(content, &mut user_groups, &group_members)?;
    let private = build_private(content)?;
    Ok(Built { public, private })
}

fn build_public(
    content: &Content,
    user_groups: &mut [Vec<u32>],
    group_members: &[Vec<u32>],
) -> Result<Vec<u8>, BuildError> {
    let mut strings = Strings {
        bytes: Vec::new(),
        dedup: HashMap::with_capacity(content.users.len() * 4 + content.groups.len()),
    };
    let mut users = Vec::with_capacity(content.users.len() * format::USER_RECORD_LEN);
    let mut ug = Vec::new();
    let mut ug_count: u32 = 0;
    for (u, list) in content.users.iter().zip(user_groups.iter_mut()) {
        put_u32(&mut users, u.uid);
        put_u32(&mut users, u.gid);
        for s in [&u.name, &u.gecos, &u.home, &u.shell] {
            put_str(&mut users, strings.add(s)?);
        }
        list.sort_unstable();
        put_u32(&mut users, ug_count);
        put_u32(&mut users, list.len() as u32);
        for &gid in list.iter() {
            put_u32(&mut ug, gid);
        }
        ug_count = ug_count
            .checked_add(list.len() as u32)
            .ok_or(BuildError::TooLarge)?;
    }
    let mut groups = Vec::with_capacity(content.groups.len() * format::GROUP_RECORD_LEN);
    let mut gm = Vec::new();
    let mut gm_count: u32 = 0;
    for (g, members) in content.groups.iter().zip(group_members) {
        put_u32(&mut groups, g.gid);
        put_u32(&mut groups, 0); // reserved: group flags are private
        put_str(&mut groups, strings.add(&g.name)?);
        put_u32(&mut groups, gm_count);
        put_u32(&mut groups, members.len() as u32);
        for &m in members {
            put_u32(&mut gm, m);
        }
        gm_count = gm_count
            .checked_add(members.len() as u32)
            .ok_or(BuildError::TooLarge)?;
    }
    let sections: Vec<(u32, Vec<u8>)> = vec![
        (section::USERS, users),
        (section::GROUPS, groups),
        (section::USER_GROUPS, ug),
        (section::GROUP_MEMBERS, gm),
        (
            section::USER_BY_NAME,
            build_index(
                content
                    .users
                    .iter()
                    .map(|u| format::hash_bytes(u.name.as_bytes())),
            ),
        ),
        (
            section::USER_BY_UID,
            build_index(content.users.iter().map(|u| format::hash_id(u.uid))),
        ),
        (
            section::GROUP_BY_NAME,
            build_index(
                content
                    .groups
                    .iter()
                    .map(|g| format::hash_bytes(g.name.as_bytes())),
            ),
        ),
        (
            section::GROUP_BY_GID,
            build_index(content.groups.iter().map(|g| format::hash_id(g.gid))),
        ),
        (section::STRINGS, strings.bytes),
    ];
    let sections: Vec<(u32, Vec<u8>, u32)> = sections.into_iter().map(|(k, b)| (k, b, 0)).collect();
    assemble(format::PUBLIC_MAGIC, content, &sections)
}

/// Issuer strings are looked up byte for byte and handed to C-minded code:
/// no NUL anywhere (the JWK text is JSON, which never holds a raw NUL either).
fn check_issuers(issuers: &[IssuerEntry]) -> Result<(), BuildError> {
    let no_nul = |field: &'static str, value: &str| {
        if value.as_bytes().contains(&0) {
            return Err(BuildError::BadString {
                field,
                value: value.to_string(),
            });
        }
        Ok(())
    };
    let mut seen = HashMap::with_capacity(issuers.len());
    for i in issuers {
        no_nul("issuer", &i.iss)?;
        no_nul("issuer claim", &i.claim)?;
        for a in &i.mfa_acr {
            if a.is_empty() || a.contains('\n') {
                return Err(BuildError::BadString {
                    field: "issuer acr value",
                    value: a.clone(),
                });
            }
            no_nul("issuer acr value", a)?;
        }
        for a in &i.audiences {
            no_nul("issuer audience", a)?;
        }
        if i.iss.is_empty() || seen.insert(i.iss.as_str(), ()).is_some() {
            return Err(BuildError::DuplicateIssuer(i.iss.clone()));
        }
        let mut kids = HashMap::with_capacity(i.keys.len());
        for k in &i.keys {
            no_nul("key id", &k.kid)?;
            no_nul("key algorithm", &k.alg)?;
            no_nul("key", &k.jwk)?;
            if k.kid.is_empty() || kids.insert(k.kid.as_str(), ()).is_some() {
                return Err(BuildError::DuplicateKid {
                    iss: i.iss.clone(),
                    kid: k.kid.clone(),
                });
            }
        }
    }
    Ok(())
}

fn check_shared_accounts(accounts: &[SharedAccountEntry]) -> Result<(), BuildError> {
    let mut seen = HashMap::with_capacity(accounts.len());
    for a in accounts {
        check_field("shared account", &a.name, false)?;
        for g in &a.groups {
            check_field("shared account group", g, true)?;
        }
        if a.name.is_empty() || seen.insert(a.name.as_str(), ()).is_some() {
            return Err(BuildError::DuplicateSharedAccount(a.name.clone()));
        }
    }
    Ok(())
}

/// A per-user list section pair (USER_PRINCIPALS -> PRINCIPALS, USER_KEYS -> KEYS).
fn build_user_lists<'c>(
    users: &'c [UserEntry],
    list: impl Fn(&'c UserEntry) -> &'c [String],
    strings: &mut Strings<'c>,
) -> Result<[Vec<u8>; 2], BuildError> {
    let mut refs = Vec::with_capacity(users.len() * format::LIST_REF_LEN);
    let mut items = Vec::new();
    let mut count = 0usize;
    for u in users {
        let l = list(u);
        put_u32(&mut refs, count_u32(count)?);
        put_u32(&mut refs, count_u32(l.len())?);
        for s in l {
            put_str(&mut items, strings.add(s)?);
        }
        count += l.len();
    }
    Ok([refs, items])
}

/// The SHARED_ACCOUNTS and SHARED_ACCOUNT_GROUPS section bodies.
fn build_shared_accounts<'c>(
    accounts: &'c [SharedAccountEntry],
    strings: &mut Strings<'c>,
) -> Result<[Vec<u8>; 2], BuildError> {
    let mut records = Vec::with_capacity(accounts.len() * format::SHARED_ACCOUNT_RECORD_LEN);
    let mut groups = Vec::new();
    let mut count = 0usize;
    for a in accounts {
        put_str(&mut records, strings.add(&a.name)?);
        put_u32(&mut records, count_u32(count)?);
        put_u32(&mut records, count_u32(a.groups.len())?);
        for g in &a.groups {
            put_str(&mut groups, strings.add(g)?);
        }
        count += a.groups.len();
    }
    Ok([records, groups])
}

fn count_u32(n: usize) -> Result<u32, BuildError> {
    u32::try_from(n).map_err(|_| BuildError::TooLarge)
}

/// ISSUERS, ISSUER_AUDIENCES and ISSUER_KEYS, and ISSUER_MFA if written.
type IssuerSections = ([Vec<u8>; 3], Option<Vec<u8>>);

/// The ISSUERS, ISSUER_AUDIENCES, ISSUER_KEYS and ISSUER_MFA section bodies;
/// ISSUER_MFA is `None` when no issuer requires MFA (the section is then not
/// written: it is MUST_UNDERSTAND, and a file without it stays 2.2-readable).
fn build_issuers<'c>(
    issuers: &'c [IssuerEntry],
    acr_lists: &'c [String],
    strings: &mut Strings<'c>,
) -> Result<IssuerSections, BuildError> {
    let mut records = Vec::with_capacity(issuers.len() * format::ISSUER_RECORD_LEN);
    let mut audiences = Vec::new();
    let mut keys = Vec::new();
    let mut mfa = Vec::with_capacity(issuers.len() * format::ISSUER_MFA_RECORD_LEN);
    let (mut aud_count, mut key_count) = (0usize, 0usize);
    for (i, acr) in issuers.iter().zip(acr_lists) {
        put_u32(
            &mut mfa,
            if i.require_mfa {
                format::issuer_mfa_flags::REQUIRED
            } else {
                0
            },
        );
        put_u32(&mut mfa, 0);
        put_str(&mut mfa, strings.add(acr)?);
        put_u32(&mut records, i.kind);
        put_u32(&mut records, 0);
        put_str(&mut records, strings.add(&i.iss)?);
        put_str(&mut records, strings.add(&i.claim)?);
        put_u32(&mut records, count_u32(aud_count)?);
        put_u32(&mut records, count_u32(i.audiences.len())?);
        put_u32(&mut records, count_u32(key_count)?);
        put_u32(&mut records, count_u32(i.keys.len())?);
        for a in &i.audiences {
            put_str(&mut audiences, strings.add(a)?);
        }
        for k in &i.keys {
            put_str(&mut keys, strings.add(&k.kid)?);
            put_str(&mut keys, strings.add(&k.alg)?);
            put_str(&mut keys, strings.add(&k.jwk)?);
        }
        aud_count += i.audiences.len();
        key_count += i.keys.len();
    }
    let any_mfa = issuers.iter().any(|i| i.require_mfa);
    Ok(([records, audiences, keys], any_mfa.then_some(mfa)))
}

fn build_private(content: &Content) -> Result<Vec<u8>, BuildError> {
    let mut strings = Strings {
        bytes: Vec::new(),
        dedup: HashMap::with_capacity(content.users.len() * 2 + content.groups.len()),
    };
    let mut users = Vec::with_capacity(content.users.len() * format::PRIVATE_USER_RECORD_LEN);
    for u in &content.users {
        put_str(&mut users, strings.add(&u.email)?);
        put_str(&mut users, strings.add(&u.idp_id)?);
    }
    let mut groups = Vec::with_capacity(content.groups.len() * format::PRIVATE_GROUP_RECORD_LEN);
    for g in &content.groups {
        put_str(&mut groups, strings.add(&g.idp_id)?);
        put_u32(&mut groups, g.flags);
        put_u32(&mut groups, 0);
    }
    // Users without an email get no entry in the email index.
    let with_email: Vec<(usize, u64)> = content
        .users
        .iter()
        .enumerate()
        .filter(|(_, u)| !u.email.is_empty())
        .map(|(i, u)| (i, format::hash_bytes(u.email.as_bytes())))
        .collect();
    // `acr_values` StrRefs point into the strings: the joined lists must
    // outlive them.
    let acr_lists: Vec<String> = content
        .issuers
        .iter()
        .map(|i| i.mfa_acr.join("\n"))
        .collect();
    let ([issuers, audiences, keys], issuer_mfa) =
        build_issuers(&content.issuers, &acr_lists, &mut strings)?;
    let [user_principals, principals] =
        build_user_lists(&content.users, |u| &u.principals, &mut strings)?;
    let [user_keys, keys_list] = build_user_lists(&content.users, |u| &u.ssh_keys, &mut strings)?;
    let [shared, shared_groups] = build_shared_accounts(&content.shared_accounts, &mut strings)?;
    let mut policy = Vec::with_capacity(format::HOST_POLICY_LEN);
    policy.extend_from_slice(&content.policy.max_offline_secs.to_le_bytes());
    policy.resize(format::HOST_POLICY_LEN, 0);
    let flags = section_flags::MUST_UNDERSTAND;
    let mut sections: Vec<(u32, Vec<u8>, u32)> = vec![
        (private_section::USERS, users, 0),
        (private_section::GROUPS, groups, 0),
        (
            private_section::USER_BY_EMAIL,
            build_sparse_index(&with_email),
            0,
        ),
        (private_section::ISSUERS, issuers, 0),
        (private_section::ISSUER_AUDIENCES, audiences, 0),
        (private_section::ISSUER_KEYS, keys, 0),
        (private_section::HOST_POLICY, policy, flags),
        (private_section::USER_PRINCIPALS, user_principals, 0),
        (private_section::PRINCIPALS, principals, 0),
        (private_section::USER_KEYS, user_keys, 0),
        (private_section::KEYS, keys_list, 0),
        (private_section::SHARED_ACCOUNTS, shared, 0),
        (private_section::SHARED_ACCOUNT_GROUPS, shared_groups, 0),
    ];
    if let Some(mfa) = issuer_mfa {
        sections.push((private_section::ISSUER_MFA, mfa, flags));
    }
    sections.push((private_section::STRINGS, strings.bytes, 0));
    assemble(format::PRIVATE_MAGIC, content, &sections)
}

/// Header, section table and 8-byte aligned section bodies: `(kind, body,
/// flags)`; flags are `format::section_flags` (MUST_UNDERSTAND only where an
/// older reader ignoring the section would be less strict than intended).
fn assemble(
    magic: [u8; 8],
    content: &Content,
    sections: &[(u32, Vec<u8>, u32)],
) -> Result<Vec<u8>, BuildError> {
    let table_end = format::HEADER_LEN + sections.len() * format::SECTION_ENTRY_LEN;
    let mut offset = table_end.next_multiple_of(8);
    let mut table = Vec::with_capacity(sections.len() * format::SECTION_ENTRY_LEN);
    for (kind, body, flags) in sections {
        put_u32(&mut table, *kind);
        put_u32(
            &mut table,
            u32::try_from(offset).map_err(|_| BuildError::TooLarge)?,
        );
        put_u32(
            &mut table,
            u32::try_from(body.len()).map_err(|_| BuildError::TooLarge)?,
        );
        put_u32(&mut table, *flags);
        offset = (offset + body.len()).next_multiple_of(8);
    }
    let file_len = offset;
    u32::try_from(file_len).map_err(|_| BuildError::TooLarge)?;

    let mut out = Vec::with_capacity(file_len);
    out.extend_from_slice(&magic);
    out.extend_from_slice(&format::VERSION_MAJOR.to_le_bytes());
    out.extend_from_slice(&format::VERSION_MINOR.to_le_bytes());
    put_u32(&mut out, format::HEADER_LEN as u32);
    out.extend_from_slice(&(file_len as u64).to_le_bytes());
    out.extend_from_slice(&content.generation.to_le_bytes());
    out.extend_from_slice(&content.synced_at.to_le_bytes());
    put_u32(&mut out, sections.len() as u32);
    put_u32(&mut out, 0);
    out.resize(format::HEADER_LEN, 0);
    out.extend_from_slice(&table);
    for (_, body, _) in sections {
        out.resize(out.len().next_multiple_of(8), 0);
        out.extend_from_slice(body);
    }
    out.resize(file_len, 0);
    Ok(out)
}

/// A hash index over a subset of entries: `(entry index, hash)` pairs.
fn build_sparse_index(entries: &[(usize, u64)]) -> Vec<u8> {
    let n = entries.len();
    let slot_count = if n == 0 {
        0
    } else {
        (n * 2).next_power_of_two()
    };
    let mut slots = vec![(0u32, 0u32); slot_count];
    let mask = slot_count.wrapping_sub(1);
    for &(i, h) in entries {
        let mut s = (h as usize) & mask;
        while slots[s].1 != 0 {
            s = (s + 1) & mask;
        }
        slots[s] = (format::tag_of(h), i as u32 + 1);
    }
    let mut out =
        Vec::with_capacity(format::INDEX_HEADER_LEN + slot_count * format::INDEX_SLOT_LEN);
    put_u32(&mut out, slot_count as u32);
    put_u32(&mut out, 0);
    for (tag, entry) in slots {
        put_u32(&mut out, tag);
        put_u32(&mut out, entry);
    }
    out
}

/// Restamps built bytes (either file) with a new generation and sync time
/// (fixed header fields, outside everything else, and outside what a later
/// signature covers).
pub fn restamp(bytes: &mut [u8], generation: u64, synced_at: u64) {
    use crate::format::header;
    if bytes.len() >= format::HEADER_LEN {
        bytes[header::GENERATION..header::GENERATION + 8]
            .copy_from_slice(&generation.to_le_bytes());
        bytes[header::SYNCED_AT..header::SYNCED_AT + 8].copy_from_slice(&synced_at.to_le_bytes());
    }
}
