//! Bounds-checked, allocation-free views over the published files.
//!
//! `Snapshot` (public file) and `Private` (root-only companion): `parse` checks
//! the header and the section table (constant time); every later access checks
//! its own offsets and lengths and returns `FormatError` instead of reading
//! outside the file, so any byte sequence is safe to hand to either (the fuzz
//! target holds us to that). `verify_all` walks everything once; the agent runs
//! it before publishing. `Pair` is the two read together: it refuses a private
//! file that is not the twin of the public one (another generation, other counts).

use crate::format::{
    self, group, header, issuer, issuer_key, issuer_mfa, private_group, private_section,
    private_user, section, shared_account, user,
};

/// What is wrong with a snapshot, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatError {
    pub what: &'static str,
    pub offset: usize,
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "corrupt snapshot: {} (at byte {})",
            self.what, self.offset
        )
    }
}

impl std::error::Error for FormatError {}

fn err<T>(what: &'static str, offset: usize) -> Result<T, FormatError> {
    Err(FormatError { what, offset })
}

/// A section's place in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    offset: usize,
    len: usize,
}

/// Where the sections are: computed once per mapping by `Snapshot::parse`, then
/// reused with `Snapshot::with_layout` so a warm lookup does not re-read the
/// section table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    file_len: usize,
    generation: u64,
    synced_at: u64,
    strings: Span,
    users: Span,
    groups: Span,
    user_groups: Span,
    group_members: Span,
    user_by_name: Span,
    user_by_uid: Span,
    group_by_name: Span,
    group_by_gid: Span,
}

#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    bytes: &'a [u8],
    layout: Layout,
}

fn read_u16(bytes: &[u8], at: usize) -> Result<u16, FormatError> {
    match at.checked_add(2).and_then(|end| bytes.get(at..end)) {
        Some(b) => Ok(u16::from_le_bytes([b[0], b[1]])),
        None => err("truncated u16", at),
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, FormatError> {
    match at.checked_add(4).and_then(|end| bytes.get(at..end)) {
        Some(b) => Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        None => err("truncated u32", at),
    }
}

/// A u32 at a constant offset of a fixed-size record (checked at compile time
/// when `at` is a constant, as at every call site).
fn field_u32<const N: usize>(rec: &[u8; N], at: usize) -> u32 {
    u32::from_le_bytes([rec[at], rec[at + 1], rec[at + 2], rec[at + 3]])
}

fn read_u64(bytes: &[u8], at: usize) -> Result<u64, FormatError> {
    match at.checked_add(8).and_then(|end| bytes.get(at..end)) {
        Some(b) => {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Ok(u64::from_le_bytes(a))
        }
        None => err("truncated u64", at),
    }
}

/// What the header and section table say, for either file.
struct Container<const N: usize> {
    generation: u64,
    synced_at: u64,
    /// Spans of the known kinds, in the order they were asked for; an absent
    /// optional section is an empty span.
    spans: [Span; N],
    /// Whether each known kind was present.
    present: [bool; N],
}

/// Checks the header (magic, version, lengths) and the section table, and
/// finds the sections of the `known` kinds. The first `required` known kinds
/// are required, the rest optional (added by a later minor version); each may
/// appear once; an unknown kind is skipped unless flagged MUST_UNDERSTAND.
fn parse_container<const N: usize>(
    bytes: &[u8],
    magic: [u8; 8],
    known: [u32; N],
    required: usize,
) -> Result<Container<N>, FormatError> {
    if bytes.len() < format::HEADER_LEN {
        return err("file shorter than the header", 0);
    }
    if bytes[..8] != magic {
        return err(
            if bytes[..8] == format::PUBLIC_MAGIC {
                "a public zt snapshot where the private file was expected"
            } else if bytes[..8] == format::PRIVATE_MAGIC {
                "a private zt file where the public snapshot was expected"
            } else {
                "not a zt snapshot (bad magic)"
            },
            0,
        );
    }
    if read_u16(bytes, header::VERSION_MAJOR)? != format::VERSION_MAJOR {
        return err("unsupported major version", header::VERSION_MAJOR);
    }
    let _minor = read_u16(bytes, header::VERSION_MINOR)?;
    let header_len = read_u32(bytes, header::HEADER_LEN)? as usize;
    if header_len != format::HEADER_LEN {
        return err("unexpected header length", header::HEADER_LEN);
    }
    let file_len = read_u64(bytes, header::FILE_LEN)?;
    if file_len != bytes.len() as u64 {
        return err(
            "file length differs from header (truncated?)",
            header::FILE_LEN,
        );
    }
    let count = read_u32(bytes, header::SECTION_COUNT)?;
    if count > format::MAX_SECTIONS {
        return err("too many sections", header::SECTION_COUNT);
    }
    let table_end = format::HEADER_LEN + count as usize * format::SECTION_ENTRY_LEN;
    if table_end > bytes.len() {
        return err(
            "section table runs past the end of the file",
            header::SECTION_COUNT,
        );
    }
    // Seen-ness is tracked per position in `known`, never as `1 << kind`: a
    // shift by the kind aliased kinds 32 and up onto small ones (and overflowed).
    let mut found: [Option<Span>; N] = [None; N];
    for i in 0..count as usize {
        let at = format::HEADER_LEN + i * format::SECTION_ENTRY_LEN;
        let kind = read_u32(bytes, at)?;
        let offset = read_u32(bytes, at + 4)? as usize;
        let len = read_u32(bytes, at + 8)? as usize;
        let flags = read_u32(bytes, at + 12)?;
        let Some(slot) = known.iter().position(|&k| k == kind) else {
            if flags & format::section_flags::MUST_UNDERSTAND != 0 {
                return err(
                    "a section this reader does not know is marked must-understand",
                    at,
                );
            }
            continue; // a later minor version's section: safe to ignore
        };
        if offset < table_end || offset.checked_add(len).is_none_or(|end| end > bytes.len()) {
            return err("section outside the file", at);
        }
        if !offset.is_multiple_of(8) {
            return err("section not 8-byte aligned", at);
        }
        if found[slot].is_some() {
            return err("section appears twice", at);
        }
        found[slot] = Some(Span { offset, len });
    }
    let mut spans = [Span::default(); N];
    let mut present = [false; N];
    for (i, f) in found.into_iter().enumerate() {
        match f {
            Some(s) => {
                spans[i] = s;
                present[i] = true;
            }
            None if i < required => {
                return err("a required section is missing", format::HEADER_LEN);
            }
            None => {}
        }
    }
    Ok(Container {
        generation: read_u64(bytes, header::GENERATION)?,
        synced_at: read_u64(bytes, header::SYNCED_AT)?,
        spans,
        present,
    })
}

/// The checked accessors both views share: strings, fixed records, u32 lists
/// and hash index probes, each confined to its section.
#[derive(Clone, Copy)]
struct Sections<'a> {
    bytes: &'a [u8],
    strings: Span,
}

impl<'a> Sections<'a> {
    fn string(&self, at: usize) -> Result<&'a [u8], FormatError> {
        let off = read_u32(self.bytes, at)?;
        let len = read_u32(self.bytes, at + 4)?;
        self.string_ref(off, len, at)
    }

    /// The string a `StrRef { off, len }` read from byte `at` points to.
    fn string_ref(&self, off: u32, len: u32, at: usize) -> Result<&'a [u8], FormatError> {
        let (off, len) = (off as usize, len as usize);
        let s = self.strings;
        match off.checked_add(len) {
            Some(end) if end <= s.len => Ok(&self.bytes[s.offset + off..s.offset + end]),
            _ => err("string outside the string section", at),
        }
    }

    /// The `N`-byte record at `at`, bounds-checked once, so its fields can be
    /// decoded at constant offsets without further checks.
    fn record<const N: usize>(&self, at: usize) -> Result<&'a [u8; N], FormatError> {
        at.checked_add(N)
            .and_then(|end| self.bytes.get(at..end))
            .and_then(|b| <&[u8; N]>::try_from(b).ok())
            .ok_or(FormatError {
                what: "record outside the file",
                offset: at,
            })
    }

    /// The string whose `StrRef` sits at offset `field` of the record `rec` (at byte `at`).
    fn record_string<const N: usize>(
        &self,
        rec: &[u8; N],
        at: usize,
        field: usize,
    ) -> Result<&'a [u8], FormatError> {
        self.string_ref(field_u32(rec, field), field_u32(rec, field + 4), at + field)
    }

    /// The `count` records of `rec_len` bytes from record `start` of `span`,
    /// as a span of their own.
    fn sub_span(
        &self,
        span: Span,
        start: u32,
        count: u32,
        rec_len: usize,
        at: usize,
    ) -> Result<Span, FormatError> {
        let start = start as usize * rec_len;
        let len = count as usize * rec_len;
        match start.checked_add(len) {
            Some(end) if end <= span.len => Ok(Span {
                offset: span.offset + start,
                len,
            }),
            _ => err("list outside its section", at),
        }
    }

    fn u32_slice(
        &self,
        span: Span,
        start: u32,
        count: u32,
        at: usize,
    ) -> Result<U32List<'a>, FormatError> {
        let start = start as usize * 4;
        let len = count as usize * 4;
        match start.checked_add(len) {
            Some(end) if end <= span.len => Ok(U32List {
                bytes: &self.bytes[span.offset + start..span.offset + end],
            }),
            _ => err("list outside its section", at),
        }
    }

    /// Probes a hash index; `matches` decides whether the entry at an index is the one sought.
    fn probe(
        &self,
        index: Span,
        hash: u64,
        mut matches: impl FnMut(usize) -> Result<bool, FormatError>,
    ) -> Result<Option<usize>, FormatError> {
        if index.len < format::INDEX_HEADER_LEN {
            return err("hash index shorter than its header", index.offset);
        }
        let slot_count = read_u32(self.bytes, index.offset)? as usize;
        if slot_count == 0 {
            return Ok(None);
        }
        if !slot_count.is_power_of_two()
            || format::INDEX_HEADER_LEN + slot_count * format::INDEX_SLOT_LEN > index.len
        {
            return err("hash index has a bad slot count", index.offset);
        }
        let mask = slot_count - 1;
        let tag = format::tag_of(hash);
        let mut slot = (hash as usize) & mask;
        for _ in 0..slot_count {
            let at = index.offset + format::INDEX_HEADER_LEN + slot * format::INDEX_SLOT_LEN;
            let entry = read_u32(self.bytes, at + 4)?;
            if entry == 0 {
                return Ok(None);
            }
            if read_u32(self.bytes, at)? == tag && matches(entry as usize - 1)? {
                return Ok(Some(entry as usize - 1));
            }
            slot = (slot + 1) & mask;
        }
        Ok(None)
    }
}

impl<'a> Snapshot<'a> {
    /// Checks the header and the section table. Constant time.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let c = parse_container(
            bytes,
            format::PUBLIC_MAGIC,
            [
                section::STRINGS,
                section::USERS,
                section::GROUPS,
                section::USER_GROUPS,
                section::GROUP_MEMBERS,
                section::USER_BY_NAME,
                section::USER_BY_UID,
                section::GROUP_BY_NAME,
                section::GROUP_BY_GID,
            ],
            9,
        )?;
        let [
            strings,
            users,
            groups,
            user_groups,
            group_members,
            user_by_name,
            user_by_uid,
            group_by_name,
            group_by_gid,
        ] = c.spans;
        let layout = Layout {
            file_len: bytes.len(),
            generation: c.generation,
            synced_at: c.synced_at,
            strings,
            users,
            groups,
            user_groups,
            group_members,
            user_by_name,
            user_by_uid,
            group_by_name,
            group_by_gid,
        };
        if !layout.users.len.is_multiple_of(format::USER_RECORD_LEN)
            || !layout.groups.len.is_multiple_of(format::GROUP_RECORD_LEN)
            || !layout.user_groups.len.is_multiple_of(4)
            || !layout.group_members.len.is_multiple_of(4)
        {
            return err(
                "section length is not a whole number of records",
                format::HEADER_LEN,
            );
        }
        Ok(Snapshot { bytes, layout })
    }

    /// Rebuilds a view from a layout computed earlier by `parse` over the same bytes.
    /// Returns None if the bytes are not the ones the layout was computed for.
    pub fn with_layout(bytes: &'a [u8], layout: Layout) -> Option<Self> {
        (bytes.len() == layout.file_len).then_some(Snapshot { bytes, layout })
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn generation(&self) -> u64 {
        self.layout.generation
    }

    /// Unix seconds of the sync that produced this snapshot.
    pub fn synced_at(&self) -> u64 {
        self.layout.synced_at
    }

    pub fn user_count(&self) -> usize {
        self.layout.users.len / format::USER_RECORD_LEN
    }

    pub fn group_count(&self) -> usize {
        self.layout.groups.len / format::GROUP_RECORD_LEN
    }

    fn sections(&self) -> Sections<'a> {
        Sections {
            bytes: self.bytes,
            strings: self.layout.strings,
        }
    }

    pub fn user(&self, index: usize) -> Result<User<'a>, FormatError> {
        let s = self.sections();
        let at = self.user_record(index)?;
        let r: &[u8; format::USER_RECORD_LEN] = s.record(at)?;
        let groups = s.u32_slice(
            self.layout.user_groups,
            field_u32(r, user::GROUPS_START),
            field_u32(r, user::GROUPS_COUNT),
            at + user::GROUPS_START,
        )?;
        Ok(User {
            index,
            uid: field_u32(r, user::UID),
            gid: field_u32(r, user::GID),
            name: s.record_string(r, at, user::NAME)?,
            gecos: s.record_string(r, at, user::GECOS)?,
            home: s.record_string(r, at, user::HOME)?,
            shell: s.record_string(r, at, user::SHELL)?,
            groups,
        })
    }

    pub fn group(&self, index: usize) -> Result<Group<'a>, FormatError> {
        let s = self.sections();
        let at = self.group_record(index)?;
        let r: &[u8; format::GROUP_RECORD_LEN] = s.record(at)?;
        let members = s.u32_slice(
            self.layout.group_members,
            field_u32(r, group::MEMBERS_START),
            field_u32(r, group::MEMBERS_COUNT),
            at + group::MEMBERS_START,
        )?;
        Ok(Group {
            index,
            gid: field_u32(r, group::GID),
            name: s.record_string(r, at, group::NAME)?,
            members,
        })
    }

    pub fn user_by_name(&self, name: &[u8]) -> Result<Option<User<'a>>, FormatError> {
        let found =
            self.sections()
                .probe(self.layout.user_by_name, format::hash_bytes(name), |i| {
                    Ok(self.user_name(i)? == name)
                })?;
        found.map(|i| self.user(i)).transpose()
    }

    pub fn user_by_uid(&self, uid: u32) -> Result<Option<User<'a>>, FormatError> {
        let found = self
            .sections()
            .probe(self.layout.user_by_uid, format::hash_id(uid), |i| {
                Ok(read_u32(self.bytes, self.user_record(i)? + user::UID)? == uid)
            })?;
        found.map(|i| self.user(i)).transpose()
    }

    pub fn group_by_name(&self, name: &[u8]) -> Result<Option<Group<'a>>, FormatError> {
        let s = self.sections();
        let found = s.probe(self.layout.group_by_name, format::hash_bytes(name), |i| {
            Ok(s.string(self.group_record(i)? + group::NAME)? == name)
        })?;
        found.map(|i| self.group(i)).transpose()
    }

    pub fn group_by_gid(&self, gid: u32) -> Result<Option<Group<'a>>, FormatError> {
        let found = self
            .sections()
            .probe(self.layout.group_by_gid, format::hash_id(gid), |i| {
                Ok(read_u32(self.bytes, self.group_record(i)? + group::GID)? == gid)
            })?;
        found.map(|i| self.group(i)).transpose()
    }

    fn user_record(&self, index: usize) -> Result<usize, FormatError> {
        if index >= self.user_count() {
            return err("user index out of range", self.layout.users.offset);
        }
        Ok(self.layout.users.offset + index * format::USER_RECORD_LEN)
    }

    fn group_record(&self, index: usize) -> Result<usize, FormatError> {
        if index >= self.group_count() {
            return err("group index out of range", self.layout.groups.offset);
        }
        Ok(self.layout.groups.offset + index * format::GROUP_RECORD_LEN)
    }

    /// Name of the user at `index` (a group member), without decoding the rest of the record.
    pub fn user_name(&self, index: usize) -> Result<&'a [u8], FormatError> {
        let at = self.user_record(index)?;
        self.sections().string(at + user::NAME)
    }

    /// Walks every record, list and index once. The agent calls this on what it
    /// wrote before publishing; readers rely on per-access checks instead.
    pub fn verify_all(&self) -> Result<(), FormatError> {
        for i in 0..self.user_count() {
            let u = self.user(i)?;
            for field in [u.name, u.gecos, u.home, u.shell] {
                if field.contains(&0) {
                    return err("NUL byte inside a string", i);
                }
            }
            if self.user_by_name(u.name)?.map(|f| f.index) != Some(i) {
                return err("user not reachable by name", i);
            }
            if self.user_by_uid(u.uid)?.map(|f| f.index) != Some(i) {
                return err("user not reachable by uid", i);
            }
        }
        for i in 0..self.group_count() {
            let g = self.group(i)?;
            if g.name.contains(&0) {
                return err("NUL byte inside a string", i);
            }
            for m in g.members.iter() {
                self.user_name(m as usize)?;
            }
            if self.group_by_name(g.name)?.map(|f| f.index) != Some(i) {
                return err("group not reachable by name", i);
            }
            if self.group_by_gid(g.gid)?.map(|f| f.index) != Some(i) {
                return err("group not reachable by gid", i);
            }
        }
        Ok(())
    }
}

/// The root-only companion file: per public user and group index, what NSS
/// must not show every process. Read it only together with its public twin
/// (`Pair`), or at least check `generation()` against it.
#[derive(Clone, Copy)]
pub struct Private<'a> {
    bytes: &'a [u8],
    generation: u64,
    synced_at: u64,
    strings: Span,
    users: Span,
    groups: Span,
    user_by_email: Span,
    issuers: Span,
    issuer_audiences: Span,
    issuer_keys: Span,
    policy: Policy,
    user_principals: Span,
    principals: Span,
    user_keys: Span,
    keys: Span,
    shared_accounts: Span,
    shared_account_groups: Span,
    /// Empty when absent (no issuer requires MFA).
    issuer_mfa: Span,
}

/// Counts only: a `{:?}` in a log line must not dump emails.
impl std::fmt::Debug for Private<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Private")
            .field("generation", &self.generation)
            .field("users", &self.user_count())
            .field("groups", &self.group_count())
            .finish_non_exhaustive()
    }
}

impl<'a> Private<'a> {
    /// Checks the header and the section table. Constant time.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let c = parse_container(
            bytes,
            format::PRIVATE_MAGIC,
            [
                private_section::STRINGS,
                private_section::USERS,
                private_section::GROUPS,
                private_section::USER_BY_EMAIL,
                private_section::ISSUERS,
                private_section::ISSUER_AUDIENCES,
                private_section::ISSUER_KEYS,
                private_section::HOST_POLICY,
                private_section::USER_PRINCIPALS,
                private_section::PRINCIPALS,
                private_section::USER_KEYS,
                private_section::KEYS,
                private_section::SHARED_ACCOUNTS,
                private_section::SHARED_ACCOUNT_GROUPS,
                private_section::ISSUER_MFA,
            ],
            4,
        )?;
        let [
            strings,
            users,
            groups,
            user_by_email,
            issuers,
            issuer_audiences,
            issuer_keys,
            policy,
            user_principals,
            principals,
            user_keys,
            keys,
            shared_accounts,
            shared_account_groups,
            issuer_mfa,
        ] = c.spans;
        if !users.len.is_multiple_of(format::PRIVATE_USER_RECORD_LEN)
            || !groups.len.is_multiple_of(format::PRIVATE_GROUP_RECORD_LEN)
            || !issuers.len.is_multiple_of(format::ISSUER_RECORD_LEN)
            || !issuer_audiences.len.is_multiple_of(format::STR_REF_LEN)
            || !issuer_keys
                .len
                .is_multiple_of(format::ISSUER_KEY_RECORD_LEN)
            || !principals.len.is_multiple_of(format::STR_REF_LEN)
            || !keys.len.is_multiple_of(format::STR_REF_LEN)
            || !shared_accounts
                .len
                .is_multiple_of(format::SHARED_ACCOUNT_RECORD_LEN)
            || !shared_account_groups
                .len
                .is_multiple_of(format::STR_REF_LEN)
        {
            return err(
                "section length is not a whole number of records",
                format::HEADER_LEN,
            );
        }
        // ISSUER_MFA, when present, has one record per issuer.
        if c.present[14]
            && issuer_mfa.len
                != issuers.len / format::ISSUER_RECORD_LEN * format::ISSUER_MFA_RECORD_LEN
        {
            return err(
                "issuer MFA section does not have one record per issuer",
                issuer_mfa.offset,
            );
        }
        // A per-user list section, when present, has one pair per user.
        let user_lists_len = users.len / format::PRIVATE_USER_RECORD_LEN * format::LIST_REF_LEN;
        if (c.present[8] && user_principals.len != user_lists_len)
            || (c.present[10] && user_keys.len != user_lists_len)
        {
            return err(
                "per-user list section does not have one entry per user",
                format::HEADER_LEN,
            );
        }
        let policy = if c.present[7] {
            if policy.len < 8 {
                return err("host policy section too short", policy.offset);
            }
            Policy {
                max_offline_secs: read_u64(bytes, policy.offset)?,
            }
        } else {
            Policy::default()
        };
        Ok(Private {
            bytes,
            generation: c.generation,
            synced_at: c.synced_at,
            strings,
            users,
            groups,
            user_by_email,
            issuers,
            issuer_audiences,
            issuer_keys,
            policy,
            user_principals,
            principals,
            user_keys,
            keys,
            shared_accounts,
            shared_account_groups,
            issuer_mfa,
        })
    }

    /// The `StrRef` list of user `index` in a USER_* / list section pair; an
    /// absent pair (a 2.0/2.1 file) is an empty list.
    fn user_list(&self, refs: Span, items: Span, index: usize) -> Result<StrList<'a>, FormatError> {
        let s = self.sections();
        if index >= self.user_count() {
            return err("user index out of range", self.users.offset);
        }
        if refs.len == 0 {
            return Ok(StrList {
                sections: s,
                span: Span::default(),
            });
        }
        let at = refs.offset + index * format::LIST_REF_LEN;
        let r: &[u8; format::LIST_REF_LEN] = s.record(at)?;
        let span = s.sub_span(
            items,
            field_u32(r, 0),
            field_u32(r, 4),
            format::STR_REF_LEN,
            at,
        )?;
        Ok(StrList { sections: s, span })
    }

    /// The SSH certificate principals that may log in as the public user at
    /// `index` (lowercase). Empty in files without the section.
    pub fn principals(&self, index: usize) -> Result<StrList<'a>, FormatError> {
        self.user_list(self.user_principals, self.principals, index)
    }

    /// The OpenSSH public key lines the directory holds for the user at `index`.
    pub fn keys(&self, index: usize) -> Result<StrList<'a>, FormatError> {
        self.user_list(self.user_keys, self.keys, index)
    }

    pub fn shared_account_count(&self) -> usize {
        self.shared_accounts.len / format::SHARED_ACCOUNT_RECORD_LEN
    }

    /// The shared account at `index` (in configuration order).
    pub fn shared_account_at(&self, index: usize) -> Result<SharedAccount<'a>, FormatError> {
        if index >= self.shared_account_count() {
            return err(
                "shared account index out of range",
                self.shared_accounts.offset,
            );
        }
        let s = self.sections();
        let at = self.shared_accounts.offset + index * format::SHARED_ACCOUNT_RECORD_LEN;
        let r: &[u8; format::SHARED_ACCOUNT_RECORD_LEN] = s.record(at)?;
        let span = s.sub_span(
            self.shared_account_groups,
            field_u32(r, shared_account::GROUPS_START),
            field_u32(r, shared_account::GROUPS_COUNT),
            format::STR_REF_LEN,
            at + shared_account::GROUPS_START,
        )?;
        Ok(SharedAccount {
            index,
            name: s.record_string(r, at, shared_account::NAME)?,
            groups: StrList { sections: s, span },
        })
    }

    /// The shared account named exactly `name` (a short scan: they are few).
    pub fn shared_account(&self, name: &[u8]) -> Result<Option<SharedAccount<'a>>, FormatError> {
        for i in 0..self.shared_account_count() {
            let a = self.shared_account_at(i)?;
            if a.name == name {
                return Ok(Some(a));
            }
        }
        Ok(None)
    }

    /// The host login policy; a file without the section (2.0) has no limit.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    pub fn issuer_count(&self) -> usize {
        self.issuers.len / format::ISSUER_RECORD_LEN
    }

    /// The issuer at `index` (in the order the agent's configuration lists them).
    pub fn issuer(&self, index: usize) -> Result<Issuer<'a>, FormatError> {
        if index >= self.issuer_count() {
            return err("issuer index out of range", self.issuers.offset);
        }
        let s = self.sections();
        let at = self.issuers.offset + index * format::ISSUER_RECORD_LEN;
        let r: &[u8; format::ISSUER_RECORD_LEN] = s.record(at)?;
        let audiences = s.sub_span(
            self.issuer_audiences,
            field_u32(r, issuer::AUDIENCES_START),
            field_u32(r, issuer::AUDIENCES_COUNT),
            format::STR_REF_LEN,
            at + issuer::AUDIENCES_START,
        )?;
        let keys = s.sub_span(
            self.issuer_keys,
            field_u32(r, issuer::KEYS_START),
            field_u32(r, issuer::KEYS_COUNT),
            format::ISSUER_KEY_RECORD_LEN,
            at + issuer::KEYS_START,
        )?;
        let (require_mfa, mfa_acr) = if self.issuer_mfa.len == 0 {
            (false, &[][..])
        } else {
            let at = self.issuer_mfa.offset + index * format::ISSUER_MFA_RECORD_LEN;
            let m: &[u8; format::ISSUER_MFA_RECORD_LEN] = s.record(at)?;
            (
                field_u32(m, issuer_mfa::FLAGS) & format::issuer_mfa_flags::REQUIRED != 0,
                s.record_string(m, at, issuer_mfa::ACR_VALUES)?,
            )
        };
        Ok(Issuer {
            index,
            require_mfa,
            mfa_acr,
            kind: field_u32(r, issuer::KIND),
            iss: s.record_string(r, at, issuer::ISS)?,
            claim: s.record_string(r, at, issuer::CLAIM)?,
            sections: s,
            audiences,
            keys,
        })
    }

    /// The issuer whose `iss` is exactly `iss` (a short scan: issuers are few).
    pub fn issuer_by_iss(&self, iss: &[u8]) -> Result<Option<Issuer<'a>>, FormatError> {
        for i in 0..self.issuer_count() {
            let found = self.issuer(i)?;
            if found.iss == iss {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn synced_at(&self) -> u64 {
        self.synced_at
    }

    pub fn user_count(&self) -> usize {
        self.users.len / format::PRIVATE_USER_RECORD_LEN
    }

    pub fn group_count(&self) -> usize {
        self.groups.len / format::PRIVATE_GROUP_RECORD_LEN
    }

    fn sections(&self) -> Sections<'a> {
        Sections {
            bytes: self.bytes,
            strings: self.strings,
        }
    }

    fn user_record(&self, index: usize) -> Result<usize, FormatError> {
        if index >= self.user_count() {
            return err("user index out of range", self.users.offset);
        }
        Ok(self.users.offset + index * format::PRIVATE_USER_RECORD_LEN)
    }

    fn group_record(&self, index: usize) -> Result<usize, FormatError> {
        if index >= self.group_count() {
            return err("group index out of range", self.groups.offset);
        }
        Ok(self.groups.offset + index * format::PRIVATE_GROUP_RECORD_LEN)
    }

    /// The private part of the public user at `index`.
    pub fn user(&self, index: usize) -> Result<PrivateUser<'a>, FormatError> {
        let s = self.sections();
        let at = self.user_record(index)?;
        let r: &[u8; format::PRIVATE_USER_RECORD_LEN] = s.record(at)?;
        Ok(PrivateUser {
            index,
            email: s.record_string(r, at, private_user::EMAIL)?,
            idp_id: s.record_string(r, at, private_user::IDP_ID)?,
        })
    }

    /// The private part of the public group at `index`.
    pub fn group(&self, index: usize) -> Result<PrivateGroup<'a>, FormatError> {
        let s = self.sections();
        let at = self.group_record(index)?;
        let r: &[u8; format::PRIVATE_GROUP_RECORD_LEN] = s.record(at)?;
        Ok(PrivateGroup {
            index,
            idp_id: s.record_string(r, at, private_group::IDP_ID)?,
            flags: field_u32(r, private_group::FLAGS),
        })
    }

    /// Emails are stored lowercase; pass a lowercase email. The result's
    /// `index` is the user's index in the public twin.
    pub fn user_by_email(&self, email: &[u8]) -> Result<Option<PrivateUser<'a>>, FormatError> {
        let s = self.sections();
        let found = s.probe(self.user_by_email, format::hash_bytes(email), |i| {
            Ok(s.string(self.user_record(i)? + private_user::EMAIL)? == email)
        })?;
        found.map(|i| self.user(i)).transpose()
    }

    /// Walks every record and the email index once.
    pub fn verify_all(&self) -> Result<(), FormatError> {
        for i in 0..self.user_count() {
            let u = self.user(i)?;
            if u.email.contains(&0) || u.idp_id.contains(&0) {
                return err("NUL byte inside a string", i);
            }
            if !u.email.is_empty() && self.user_by_email(u.email)?.map(|f| f.index) != Some(i) {
                return err("user not reachable by email", i);
            }
        }
        for i in 0..self.group_count() {
            if self.group(i)?.idp_id.contains(&0) {
                return err("NUL byte inside a string", i);
            }
        }
        for i in 0..self.user_count() {
            for list in [self.principals(i)?, self.keys(i)?] {
                for p in list.iter() {
                    if p?.contains(&0) {
                        return err("NUL byte inside a string", i);
                    }
                }
            }
        }
        for i in 0..self.shared_account_count() {
            let a = self.shared_account_at(i)?;
            if self.shared_account(a.name)?.map(|f| f.index) != Some(i) {
                return err("shared account listed twice", i);
            }
            for g in a.groups.iter() {
                if g?.contains(&0) {
                    return err("NUL byte inside a string", i);
                }
            }
        }
        for i in 0..self.issuer_count() {
            let iss = self.issuer(i)?;
            if self.issuer_by_iss(iss.iss)?.map(|f| f.index) != Some(i) {
                return err("issuer listed twice", i);
            }
            for a in iss.audiences() {
                if a?.contains(&0) {
                    return err("NUL byte inside a string", i);
                }
            }
            for k in 0..iss.key_count() {
                let key = iss.key(k)?;
                if key.kid.contains(&0) || key.alg.contains(&0) || key.jwk.contains(&0) {
                    return err("NUL byte inside a string", i);
                }
                if iss.key_by_kid(key.kid)?.map(|f| f.index) != Some(k) {
                    return err("key id listed twice for one issuer", i);
                }
            }
        }
        Ok(())
    }
}

/// A public snapshot and its private twin, checked to belong together: same
/// generation, same user and group counts (private records are indexed by the
/// public file's indexes, so a mismatched pair would attach one person's email
/// to another's account). pam_zt and `zt-agent lookup` read the pair this way.
#[derive(Debug, Clone, Copy)]
pub struct Pair<'a> {
    pub public: Snapshot<'a>,
    pub private: Private<'a>,
}

impl<'a> Pair<'a> {
    /// Parses both files and checks they are twins. Constant time.
    pub fn parse(public: &'a [u8], private: &'a [u8]) -> Result<Self, FormatError> {
        Pair::new(Snapshot::parse(public)?, Private::parse(private)?)
    }

    /// Checks that two parsed views are twins.
    pub fn new(public: Snapshot<'a>, private: Private<'a>) -> Result<Self, FormatError> {
        if public.generation() != private.generation() {
            return err(
                "the private file's generation differs from the public snapshot's (published half-way? retry)",
                header::GENERATION,
            );
        }
        if public.user_count() != private.user_count()
            || public.group_count() != private.group_count()
        {
            return err(
                "the private file's user or group count differs from the public snapshot's",
                format::HEADER_LEN,
            );
        }
        Ok(Pair { public, private })
    }

    pub fn generation(&self) -> u64 {
        self.public.generation()
    }

    /// Emails are stored lowercase; pass a lowercase email.
    pub fn user_by_email(
        &self,
        email: &[u8],
    ) -> Result<Option<(User<'a>, PrivateUser<'a>)>, FormatError> {
        match self.private.user_by_email(email)? {
            Some(p) => Ok(Some((self.public.user(p.index)?, p))),
            None => Ok(None),
        }
    }

    /// Both files' `verify_all`, after the twin check `new` made.
    pub fn verify_all(&self) -> Result<(), FormatError> {
        self.public.verify_all()?;
        self.private.verify_all()
    }
}

/// A list of little-endian u32 values inside the snapshot (gids or user indexes).
#[derive(Debug, Clone, Copy)]
pub struct U32List<'a> {
    bytes: &'a [u8],
}

impl<'a> U32List<'a> {
    pub fn len(&self) -> usize {
        self.bytes.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The values as little-endian 4-byte arrays, for loops that want to see
    /// the whole list at once (and let the compiler vectorise them).
    pub fn as_le_chunks(&self) -> &'a [[u8; 4]] {
        self.bytes.as_chunks::<4>().0
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        // as_chunks: whole 4-byte arrays, so no per-element bounds checks
        self.bytes
            .as_chunks::<4>()
            .0
            .iter()
            .map(|c| u32::from_le_bytes(*c))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct User<'a> {
    pub index: usize,
    pub uid: u32,
    pub gid: u32,
    pub name: &'a [u8],
    pub gecos: &'a [u8],
    pub home: &'a [u8],
    pub shell: &'a [u8],
    /// Supplementary gids (not including `gid`).
    pub groups: U32List<'a>,
}

#[derive(Debug, Clone, Copy)]
pub struct Group<'a> {
    pub index: usize,
    pub gid: u32,
    pub name: &'a [u8],
    /// Indexes of member users; `Snapshot::user_name` gives their names.
    pub members: U32List<'a>,
}

/// The private part of a user; `index` is the public user index.
#[derive(Debug, Clone, Copy)]
pub struct PrivateUser<'a> {
    pub index: usize,
    /// Lowercase; empty if the directory had none.
    pub email: &'a [u8],
    pub idp_id: &'a [u8],
}

/// The private part of a group; `index` is the public group index.
#[derive(Debug, Clone, Copy)]
pub struct PrivateGroup<'a> {
    pub index: usize,
    /// Empty for user private groups.
    pub idp_id: &'a [u8],
    /// `format::group_flags`.
    pub flags: u32,
}

/// A list of strings of the private file (principals, keys, group ids).
#[derive(Clone, Copy)]
pub struct StrList<'a> {
    sections: Sections<'a>,
    span: Span,
}

/// Counts only: a `{:?}` in a log line stays short.
impl std::fmt::Debug for StrList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrList")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<'a> StrList<'a> {
    pub fn len(&self) -> usize {
        self.span.len / format::STR_REF_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.span.len == 0
    }

    pub fn get(&self, index: usize) -> Result<&'a [u8], FormatError> {
        if index >= self.len() {
            return err("list index out of range", self.span.offset);
        }
        self.sections
            .string(self.span.offset + index * format::STR_REF_LEN)
    }

    /// Each string; a damaged reference is an error item.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Result<&'a [u8], FormatError>> + 'a {
        let me = *self;
        (0..self.len()).map(move |i| me.get(i))
    }
}

/// A shared account of the private file; `index` is its position.
#[derive(Debug, Clone, Copy)]
pub struct SharedAccount<'a> {
    pub index: usize,
    /// The login name.
    pub name: &'a [u8],
    /// IdP group ids whose members may log in as it.
    pub groups: StrList<'a>,
}

/// The host login policy of the private file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Past this many seconds since the last good sync, directory users cannot
    /// log in. 0 = no limit.
    pub max_offline_secs: u64,
}

/// A token issuer of the private file; `index` is its position.
#[derive(Clone, Copy)]
pub struct Issuer<'a> {
    pub index: usize,
    /// `format::issuer_kind`.
    pub kind: u32,
    /// The exact `iss` tokens carry.
    pub iss: &'a [u8],
    /// The claim that names the person ("email", "preferred_username", "upn", "sub").
    pub claim: &'a [u8],
    /// Tokens must show MFA (2.3): `amr` contains "mfa", or `acr` is one of
    /// `mfa_acr`.
    pub require_mfa: bool,
    /// `acr` values that count as MFA, separated by `\n` (may be empty).
    pub mfa_acr: &'a [u8],
    sections: Sections<'a>,
    audiences: Span,
    keys: Span,
}

/// Key ids only: a `{:?}` in a log line stays short.
impl std::fmt::Debug for Issuer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("kind", &self.kind)
            .field("iss", &String::from_utf8_lossy(self.iss))
            .field("claim", &String::from_utf8_lossy(self.claim))
            .field("require_mfa", &self.require_mfa)
            .field("keys", &self.key_count())
            .finish_non_exhaustive()
    }
}

impl<'a> Issuer<'a> {
    pub fn audience_count(&self) -> usize {
        self.audiences.len / format::STR_REF_LEN
    }

    pub fn audience(&self, index: usize) -> Result<&'a [u8], FormatError> {
        if index >= self.audience_count() {
            return err("audience index out of range", self.audiences.offset);
        }
        self.sections
            .string(self.audiences.offset + index * format::STR_REF_LEN)
    }

    /// The accepted `aud` values.
    pub fn audiences(&self) -> impl ExactSizeIterator<Item = Result<&'a [u8], FormatError>> + 'a {
        let me = *self;
        (0..self.audience_count()).map(move |i| me.audience(i))
    }

    pub fn key_count(&self) -> usize {
        self.keys.len / format::ISSUER_KEY_RECORD_LEN
    }

    pub fn key(&self, index: usize) -> Result<IssuerKey<'a>, FormatError> {
        if index >= self.key_count() {
            return err("key index out of range", self.keys.offset);
        }
        let s = self.sections;
        let at = self.keys.offset + index * format::ISSUER_KEY_RECORD_LEN;
        let r: &[u8; format::ISSUER_KEY_RECORD_LEN] = s.record(at)?;
        Ok(IssuerKey {
            index,
            kid: s.record_string(r, at, issuer_key::KID)?,
            alg: s.record_string(r, at, issuer_key::ALG)?,
            jwk: s.record_string(r, at, issuer_key::JWK)?,
        })
    }

    /// The key whose `kid` is exactly `kid` (a short scan).
    pub fn key_by_kid(&self, kid: &[u8]) -> Result<Option<IssuerKey<'a>>, FormatError> {
        for i in 0..self.key_count() {
            let k = self.key(i)?;
            if k.kid == kid {
                return Ok(Some(k));
            }
        }
        Ok(None)
    }
}

/// One signing key; `index` is its position among its issuer's keys.
#[derive(Debug, Clone, Copy)]
pub struct IssuerKey<'a> {
    pub index: usize,
    pub kid: &'a [u8],
    /// The JWK's `alg` as published.
    pub alg: &'a [u8],
    /// The JWK's JSON text as fetched.
    pub jwk: &'a [u8],
}
