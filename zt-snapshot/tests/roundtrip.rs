//! What the writer writes, the readers read; the public file holds nothing
//! private; and the readers survive damage.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use zt_snapshot::format::{self, group_flags, issuer_kind, section, section_flags};
use zt_snapshot::fuzzing::{exercise, pair_input};
use zt_snapshot::{
    BuildError, Content, GroupEntry, IssuerEntry, KeyEntry, Pair, PolicyEntry, Private, Snapshot,
    UserEntry, build,
};

fn user(name: &str, uid: u32, email: &str) -> UserEntry {
    UserEntry {
        name: name.into(),
        uid,
        gid: uid,
        gecos: format!("{name} gecos"),
        home: format!("/home/{name}"),
        shell: "/bin/bash".into(),
        email: email.into(),
        idp_id: format!("id-{name}"),
        principals: Vec::new(),
        ssh_keys: Vec::new(),
    }
}

fn sample() -> Content {
    Content {
        generation: 7,
        synced_at: 1_700_000_000,
        users: vec![
            user("alice", 1_879_048_200, "alice@example.com"),
            user("bob", 1_879_048_300, "bob@example.com"),
            user("carol.jones", 1_879_048_400, ""),
        ],
        groups: vec![
            GroupEntry {
                name: "sre".into(),
                gid: 2_013_265_920,
                flags: group_flags::LOGIN,
                idp_id: "g-sre".into(),
                members: vec!["alice".into(), "bob".into()],
            },
            GroupEntry {
                name: "alice".into(),
                gid: 1_879_048_200,
                flags: group_flags::USER_PRIVATE,
                idp_id: String::new(),
                members: vec![],
            },
        ],
        issuers: sample_issuers(),
        policy: PolicyEntry {
            max_offline_secs: 3 * 86_400,
        },
        shared_accounts: Vec::new(),
        local_grants: Vec::new(),
    }
}

fn key(kid: &str, alg: &str) -> KeyEntry {
    KeyEntry {
        kid: kid.into(),
        alg: alg.into(),
        jwk: format!(r#"{{"kty":"RSA","kid":"{kid}","alg":"{alg}","n":"0vx7","e":"AQAB"}}"#),
    }
}

fn sample_issuers() -> Vec<IssuerEntry> {
    vec![
        IssuerEntry {
            kind: issuer_kind::CLOUDFLARE_ACCESS,
            iss: "https://acme.cloudflareaccess.com".into(),
            claim: "email".into(),
            audiences: vec!["4714c1aud".into(), "second-aud".into()],
            keys: vec![key("cf-1", "RS256"), key("cf-2", "RS256")],
            ..Default::default()
        },
        IssuerEntry {
            kind: issuer_kind::OIDC,
            iss: "https://id.example.com".into(),
            claim: "preferred_username".into(),
            audiences: vec!["zt-ssh".into()],
            keys: vec![key("oidc-ec", "ES256")],
            require_mfa: true,
            mfa_acr: vec!["urn:example:mfa".into(), "2".into()],
        },
        IssuerEntry {
            kind: issuer_kind::OIDC,
            iss: "https://never-fetched.example.com".into(),
            claim: "sub".into(),
            audiences: vec![],
            keys: vec![],
            ..Default::default()
        },
    ]
}

#[test]
fn lookups_find_what_was_written() {
    let built = build(&sample()).unwrap();
    let s = Snapshot::parse(&built.public).unwrap();
    s.verify_all().unwrap();
    assert_eq!(s.generation(), 7);
    assert_eq!(s.synced_at(), 1_700_000_000);
    let a = s.user_by_name(b"alice").unwrap().unwrap();
    assert_eq!(
        (a.uid, a.gid, a.home),
        (1_879_048_200, 1_879_048_200, &b"/home/alice"[..])
    );
    assert_eq!(a.groups.iter().collect::<Vec<_>>(), vec![2_013_265_920]);
    assert_eq!(s.user_by_uid(1_879_048_300).unwrap().unwrap().name, b"bob");
    assert!(s.user_by_name(b"Alice").unwrap().is_none());
    assert!(s.user_by_uid(0).unwrap().is_none());
    let g = s.group_by_name(b"sre").unwrap().unwrap();
    let names: Vec<_> = g
        .members
        .iter()
        .map(|i| s.user_name(i as usize).unwrap())
        .collect();
    assert_eq!(names, vec![&b"alice"[..], &b"bob"[..]]);
    assert_eq!(
        s.group_by_gid(1_879_048_200).unwrap().unwrap().name,
        b"alice"
    );
    // the user private group is the primary gid, not a supplementary one
    assert!(
        s.user_by_name(b"carol.jones")
            .unwrap()
            .unwrap()
            .groups
            .is_empty()
    );
}

#[test]
fn the_private_file_holds_emails_ids_and_flags_by_public_index() {
    let built = build(&sample()).unwrap();
    let pair = Pair::parse(&built.public, &built.private).unwrap();
    pair.verify_all().unwrap();
    assert_eq!(pair.generation(), 7);
    let (u, p) = pair.user_by_email(b"bob@example.com").unwrap().unwrap();
    assert_eq!((u.name, p.idp_id), (&b"bob"[..], &b"id-bob"[..]));
    assert!(pair.user_by_email(b"").unwrap().is_none());
    assert!(
        pair.user_by_email(b"mallory@example.com")
            .unwrap()
            .is_none()
    );
    let carol = pair.public.user_by_name(b"carol.jones").unwrap().unwrap();
    assert_eq!(pair.private.user(carol.index).unwrap().email, b"");
    let sre = pair.public.group_by_name(b"sre").unwrap().unwrap();
    let g = pair.private.group(sre.index).unwrap();
    assert_eq!((g.idp_id, g.flags), (&b"g-sre"[..], group_flags::LOGIN));
}

#[test]
fn issuers_keys_and_policy_round_trip() {
    let built = build(&sample()).unwrap();
    let pair = Pair::parse(&built.public, &built.private).unwrap();
    pair.verify_all().unwrap();
    let p = pair.private;
    assert_eq!(p.policy().max_offline_secs, 3 * 86_400);
    assert_eq!(p.issuer_count(), 3);
    for (i, want) in sample_issuers().iter().enumerate() {
        let got = p.issuer(i).unwrap();
        assert_eq!(got.kind, want.kind);
        assert_eq!(got.iss, want.iss.as_bytes());
        assert_eq!(got.claim, want.claim.as_bytes());
        let auds: Vec<&[u8]> = got.audiences().map(Result::unwrap).collect();
        let want_auds: Vec<&[u8]> = want.audiences.iter().map(|a| a.as_bytes()).collect();
        assert_eq!(auds, want_auds);
        assert_eq!(got.audience_count(), want.audiences.len());
        assert_eq!(got.key_count(), want.keys.len());
        for (k, wk) in want.keys.iter().enumerate() {
            let gk = got.key(k).unwrap();
            assert_eq!(
                (gk.kid, gk.alg, gk.jwk),
                (wk.kid.as_bytes(), wk.alg.as_bytes(), wk.jwk.as_bytes())
            );
        }
        assert!(got.key(want.keys.len()).is_err());
        assert!(got.audience(want.audiences.len()).is_err());
        assert_eq!(got.require_mfa, want.require_mfa);
        assert_eq!(got.mfa_acr, want.mfa_acr.join("\n").as_bytes());
    }
    let cf = p
        .issuer_by_iss(b"https://acme.cloudflareaccess.com")
        .unwrap()
        .unwrap();
    assert_eq!(cf.key_by_kid(b"cf-2").unwrap().unwrap().index, 1);
    assert!(
        cf.key_by_kid(b"oidc-ec").unwrap().is_none(),
        "keys are per issuer"
    );
    let oidc = p.issuer_by_iss(b"https://id.example.com").unwrap().unwrap();
    assert_eq!(oidc.key_by_kid(b"oidc-ec").unwrap().unwrap().alg, b"ES256");
    assert!(
        p.issuer_by_iss(b"https://acme.cloudflareaccess.com/")
            .unwrap()
            .is_none(),
        "iss matches exactly"
    );
    assert!(p.issuer(3).is_err());
    // none of it is public
    let contains = |needle: &[u8]| built.public.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(b"cloudflareaccess") && !contains(b"cf-1") && !contains(b"AQAB"));
}

#[test]
fn the_host_policy_section_must_be_understood_and_issuers_need_not() {
    use format::private_section;
    let built = build(&sample()).unwrap();
    let flags = |kind| {
        let (i, _) = table_entry(&built.private, kind);
        let at = format::HEADER_LEN + i * format::SECTION_ENTRY_LEN + 12;
        u32::from_le_bytes(built.private[at..at + 4].try_into().unwrap())
    };
    assert_eq!(
        flags(private_section::HOST_POLICY),
        section_flags::MUST_UNDERSTAND
    );
    for kind in [
        private_section::ISSUERS,
        private_section::ISSUER_AUDIENCES,
        private_section::ISSUER_KEYS,
    ] {
        assert_eq!(flags(kind), 0);
    }
    // A reader that did not know HOST_POLICY (its kind renamed to one this
    // reader does not know, flags kept) refuses the file.
    let (i, _) = table_entry(&built.private, private_section::HOST_POLICY);
    let mut b = built.private.clone();
    set_entry(&mut b, i, 0x1f0, section_flags::MUST_UNDERSTAND);
    assert!(Private::parse(&b).is_err());
    // ISSUER_MFA likewise: a reader ignoring it would take tokens without MFA.
    assert_eq!(
        flags(private_section::ISSUER_MFA),
        section_flags::MUST_UNDERSTAND
    );
    let (i, _) = table_entry(&built.private, private_section::ISSUER_MFA);
    let mut b = built.private.clone();
    set_entry(&mut b, i, 0x1f1, section_flags::MUST_UNDERSTAND);
    assert!(Private::parse(&b).is_err());
}

#[test]
fn without_an_mfa_requirement_there_is_no_issuer_mfa_section() {
    use format::private_section;
    let mut c = sample();
    for i in &mut c.issuers {
        i.require_mfa = false;
    }
    let built = build(&c).unwrap();
    let p = Private::parse(&built.private).unwrap();
    let count = u32::from_le_bytes(built.private[40..44].try_into().unwrap()) as usize;
    let kinds: Vec<u32> = (0..count)
        .map(|i| {
            let at = format::HEADER_LEN + i * format::SECTION_ENTRY_LEN;
            u32::from_le_bytes(built.private[at..at + 4].try_into().unwrap())
        })
        .collect();
    assert!(
        !kinds.contains(&private_section::ISSUER_MFA),
        "a file no issuer requires MFA in stays readable by 2.2 readers"
    );
    assert!((0..p.issuer_count()).all(|i| !p.issuer(i).unwrap().require_mfa));
    // one record per issuer, or the file is refused
    let built = build(&sample()).unwrap();
    let (i, _) = table_entry(&built.private, private_section::ISSUER_MFA);
    let mut b = built.private.clone();
    let len_at = format::HEADER_LEN + i * format::SECTION_ENTRY_LEN + 8;
    let len = u32::from_le_bytes(b[len_at..len_at + 4].try_into().unwrap());
    b[len_at..len_at + 4].copy_from_slice(&(len - 16).to_le_bytes());
    assert_eq!(
        Private::parse(&b).unwrap_err().what,
        "issuer MFA section does not have one record per issuer"
    );
    let mut c = sample();
    c.issuers[0].mfa_acr = vec!["a\nb".into()];
    assert!(
        build(&c).is_err(),
        "an acr value may not hold the separator"
    );
}

#[test]
fn a_2_0_private_file_has_no_issuers_and_no_limit() {
    use format::private_section;
    let built = build(&sample()).unwrap();
    // hide the 2.1 sections as kinds this reader skips: what a 2.0 file reads as
    let mut b = built.private.clone();
    for (n, kind) in [
        private_section::ISSUERS,
        private_section::ISSUER_AUDIENCES,
        private_section::ISSUER_KEYS,
        private_section::HOST_POLICY,
        private_section::ISSUER_MFA,
    ]
    .into_iter()
    .enumerate()
    {
        let (i, _) = table_entry(&b, kind);
        set_entry(&mut b, i, 0x1e0 + n as u32, 0);
    }
    let p = Private::parse(&b).unwrap();
    p.verify_all().unwrap();
    assert_eq!(p.issuer_count(), 0);
    assert_eq!(p.policy().max_offline_secs, 0);
    assert!(
        p.issuer_by_iss(b"https://id.example.com")
            .unwrap()
            .is_none()
    );
    assert_eq!(p.user_count(), 3);
}

#[test]
fn damaged_issuer_records_are_errors_not_panics() {
    use format::private_section;
    let built = build(&sample()).unwrap();
    let (_, issuers) = table_entry(&built.private, private_section::ISSUERS);
    // keys_count of the first issuer far past its section
    let mut b = built.private.clone();
    b[issuers + 36..issuers + 40].copy_from_slice(&u32::MAX.to_le_bytes());
    let p = Private::parse(&b).unwrap();
    assert_eq!(p.issuer(0).unwrap_err().what, "list outside its section");
    assert!(p.issuer_by_iss(b"https://id.example.com").is_err());
    assert!(p.verify_all().is_err());
    // iss string past the string section
    let mut b = built.private.clone();
    b[issuers + 12..issuers + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    let p = Private::parse(&b).unwrap();
    assert!(p.issuer(0).is_err());
    // a short policy section is refused at parse
    let (i, _) = table_entry(&built.private, private_section::HOST_POLICY);
    let mut b = built.private.clone();
    let at = format::HEADER_LEN + i * format::SECTION_ENTRY_LEN + 8;
    b[at..at + 4].copy_from_slice(&4u32.to_le_bytes());
    assert!(Private::parse(&b).is_err());
}

#[test]
fn writer_refuses_duplicate_issuers_and_kids() {
    let mut c = sample();
    c.issuers[1].iss = c.issuers[0].iss.clone();
    assert!(matches!(build(&c), Err(BuildError::DuplicateIssuer(_))));
    let mut c = sample();
    c.issuers[0].keys[1].kid = "cf-1".into();
    assert!(matches!(build(&c), Err(BuildError::DuplicateKid { .. })));
    let mut c = sample();
    c.issuers[0].keys[0].jwk.push('\0');
    assert!(matches!(build(&c), Err(BuildError::BadString { .. })));
}

#[test]
fn the_public_file_holds_no_email_idp_id_or_login_flag() {
    let built = build(&sample()).unwrap();
    let contains = |needle: &[u8]| built.public.windows(needle.len()).any(|w| w == needle);
    for secret in [&b"@example.com"[..], b"id-alice", b"id-bob", b"g-sre"] {
        assert!(
            !contains(secret),
            "{:?} in the public file",
            String::from_utf8_lossy(secret)
        );
    }
    let s = Snapshot::parse(&built.public).unwrap();
    let sre = s.group_by_name(b"sre").unwrap().unwrap();
    let at = table_entry(&built.public, section::GROUPS).1 + sre.index * format::GROUP_RECORD_LEN;
    assert_eq!(
        built.public[at + 4..at + 8],
        [0; 4],
        "group flags are private"
    );
}

#[test]
fn one_file_cannot_be_read_as_the_other() {
    let built = build(&sample()).unwrap();
    let e = Private::parse(&built.public).unwrap_err();
    assert!(e.what.contains("public zt snapshot"), "{e}");
    let e = Snapshot::parse(&built.private).unwrap_err();
    assert!(e.what.contains("private zt file"), "{e}");
}

#[test]
fn a_pair_must_be_twins() {
    let mut built = build(&sample()).unwrap();
    zt_snapshot::restamp(&mut built.private, 8, 1);
    let e = Pair::parse(&built.public, &built.private).unwrap_err();
    assert!(e.what.contains("generation"), "{e}");
    let mut other = sample();
    other.users.pop();
    let other = build(&other).unwrap();
    let e = Pair::parse(&build(&sample()).unwrap().public, &other.private).unwrap_err();
    assert!(e.what.contains("count"), "{e}");
}

#[test]
fn restamping_equals_building_with_the_new_stamp() {
    let mut c = sample();
    let mut built = build(&c).unwrap();
    built.restamp(99, 1_800_000_000);
    assert_eq!(built.generation(), 99);
    c.generation = 99;
    c.synced_at = 1_800_000_000;
    assert_eq!(built, build(&c).unwrap());
}

#[test]
fn empty_snapshot_is_valid_and_finds_nothing() {
    let built = build(&Content::default()).unwrap();
    let pair = Pair::parse(&built.public, &built.private).unwrap();
    pair.verify_all().unwrap();
    assert!(pair.public.user_by_name(b"alice").unwrap().is_none());
    assert!(pair.public.group_by_gid(5).unwrap().is_none());
    assert!(pair.user_by_email(b"alice@example.com").unwrap().is_none());
}

/// (index in the section table, section offset) of the section `kind`.
fn table_entry(bytes: &[u8], kind: u32) -> (usize, usize) {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let count = u32_at(40) as usize;
    (0..count)
        .map(|i| (i, format::HEADER_LEN + i * format::SECTION_ENTRY_LEN))
        .find(|&(_, at)| u32_at(at) == kind)
        .map(|(i, at)| (i, u32_at(at + 4) as usize))
        .unwrap()
}

/// Rewrites the kind and flags of the section-table entry `i`.
fn set_entry(bytes: &mut [u8], i: usize, kind: u32, flags: u32) {
    let at = format::HEADER_LEN + i * format::SECTION_ENTRY_LEN;
    bytes[at..at + 4].copy_from_slice(&kind.to_le_bytes());
    bytes[at + 12..at + 16].copy_from_slice(&flags.to_le_bytes());
}

/// Appends one more section-table entry (an unknown kind, empty body at the
/// end of the file): the table grows by 16 bytes, so everything after it is
/// shifted and its offsets fixed up.
fn with_extra_section(bytes: &[u8], kind: u32, flags: u32) -> Vec<u8> {
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let count = u32_at(bytes, 40) as usize;
    let table_end = format::HEADER_LEN + count * format::SECTION_ENTRY_LEN;
    let mut out = bytes[..table_end].to_vec();
    let new_len = bytes.len() + format::SECTION_ENTRY_LEN;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&(new_len as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&bytes[table_end..]);
    for i in 0..count {
        let at = format::HEADER_LEN + i * format::SECTION_ENTRY_LEN + 4;
        let off = u32_at(&out, at) + format::SECTION_ENTRY_LEN as u32;
        out[at..at + 4].copy_from_slice(&off.to_le_bytes());
    }
    out[40..44].copy_from_slice(&(count as u32 + 1).to_le_bytes());
    out[16..24].copy_from_slice(&(new_len as u64).to_le_bytes());
    out
}

#[test]
fn unknown_sections_are_skipped_unless_they_must_be_understood() {
    let built = build(&sample()).unwrap();
    let skipped = with_extra_section(&built.public, 77, 0);
    let s = Snapshot::parse(&skipped).unwrap();
    s.verify_all().unwrap();
    assert_eq!(s.user_by_name(b"bob").unwrap().unwrap().uid, 1_879_048_300);
    let refused = with_extra_section(&built.public, 77, section_flags::MUST_UNDERSTAND);
    let e = Snapshot::parse(&refused).unwrap_err();
    assert!(e.what.contains("must-understand"), "{e}");
    // the same rule in the private file
    let refused = with_extra_section(&built.private, 0x1ff, section_flags::MUST_UNDERSTAND);
    assert!(Private::parse(&refused).is_err());
    let skipped = with_extra_section(&built.private, 0x1ff, 0);
    Private::parse(&skipped).unwrap().verify_all().unwrap();
}

/// Version 1 tracked seen kinds as `1u32 << kind`: kinds of 32 and up aliased
/// small ones (the shift wraps: 33 counted as 1) or overflowed. The private
/// file's kinds are all >= 0x100, so a duplicate must be caught by kind, and
/// different kinds must never collide.
#[test]
fn section_kinds_of_32_and_up_do_not_alias() {
    use format::private_section;
    let built = build(&sample()).unwrap();
    let (users_entry, _) = table_entry(&built.private, private_section::USERS);
    let (groups_entry, _) = table_entry(&built.private, private_section::GROUPS);
    // USERS listed twice (the GROUPS entry relabelled): a duplicate
    let mut b = built.private.clone();
    set_entry(&mut b, groups_entry, private_section::USERS, 0);
    assert_eq!(
        Private::parse(&b).unwrap_err().what,
        "section appears twice"
    );
    // 0x102 + 32 is a different, unknown kind: skipped, so GROUPS is missing
    let mut b = built.private.clone();
    set_entry(&mut b, groups_entry, private_section::USERS + 32, 0);
    assert_eq!(
        Private::parse(&b).unwrap_err().what,
        "a required section is missing"
    );
    let _ = users_entry;
    Private::parse(&built.private).unwrap();
}

#[test]
fn writer_refuses_inconsistent_content() {
    let mut c = sample();
    c.users[1].uid = c.users[0].uid;
    assert_eq!(
        build(&c),
        Err(zt_snapshot::BuildError::DuplicateUid(1_879_048_200))
    );
    let mut c = sample();
    c.groups[0].members.push("mallory".into());
    assert!(matches!(
        build(&c),
        Err(zt_snapshot::BuildError::UnknownMember { .. })
    ));
    let mut c = sample();
    c.users[0].gecos = "evil:0:0".into();
    assert!(matches!(
        build(&c),
        Err(zt_snapshot::BuildError::BadString { .. })
    ));
    let mut c = sample();
    c.users[2].home = "/home/x\nroot::0:0::/:/bin/sh".into();
    assert!(matches!(
        build(&c),
        Err(zt_snapshot::BuildError::BadString { .. })
    ));
}

#[test]
fn truncated_or_bad_headers_are_refused() {
    let bytes = build(&sample()).unwrap().public;
    for cut in [0, 8, 63, 64, bytes.len() / 2, bytes.len() - 1] {
        assert!(Snapshot::parse(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut b = bytes.clone();
    b[0] = b'X';
    assert_eq!(
        Snapshot::parse(&b).unwrap_err().what,
        "not a zt snapshot (bad magic)"
    );
    let mut b = bytes.clone();
    b[8] = 1; // major version 1: before the public/private split
    assert_eq!(
        Snapshot::parse(&b).unwrap_err().what,
        "unsupported major version"
    );
}

/// Every single-byte change leaves the reader answering (possibly wrongly, or with
/// an error) but never panicking or reading out of bounds.
#[test]
fn every_single_byte_corruption_is_survived() {
    let built = build(&sample()).unwrap();
    for bytes in [&built.public, &built.private] {
        for i in 0..bytes.len() {
            for v in [0u8, 0xff, 0x7f, 1] {
                let mut b = bytes.clone();
                b[i] = v;
                exercise(&b);
                exercise(&pair_input(&built.public, &b));
                exercise(&pair_input(&b, &built.private));
            }
        }
    }
}

fn arb_content() -> impl Strategy<Value = Content> {
    (1usize..40, 0usize..12, any::<u64>()).prop_flat_map(|(nu, ng, generation)| {
        (
            proptest::collection::btree_set("[a-z][a-z0-9._-]{0,12}", nu..=nu),
            proptest::collection::btree_set(0x7000_0000u32..0x7800_0000, nu..=nu),
            proptest::collection::btree_set("[a-z][a-z0-9_]{0,10}", ng..=ng),
            proptest::collection::vec(
                proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
                ng..=ng,
            ),
            "[ -~&&[^:]]{0,20}",
        )
            .prop_map(move |(names, uids, gnames, members, gecos)| {
                let users: Vec<UserEntry> = names
                    .iter()
                    .zip(&uids)
                    .map(|(n, &uid)| UserEntry {
                        name: n.clone(),
                        uid,
                        gid: uid,
                        gecos: gecos.clone(),
                        home: format!("/home/{n}"),
                        shell: "/bin/sh".into(),
                        email: format!("{n}@example.com"),
                        idp_id: format!("id:{n}"),
                        principals: Vec::new(),
                        ssh_keys: Vec::new(),
                    })
                    .collect();
                let groups = gnames
                    .iter()
                    .zip(members)
                    .enumerate()
                    .map(|(i, (g, ms))| GroupEntry {
                        name: format!("g-{g}"),
                        gid: 0x7800_0000 + i as u32,
                        flags: group_flags::LOGIN,
                        idp_id: format!("gid:{g}"),
                        members: ms
                            .iter()
                            .map(|ix| users[ix.index(users.len())].name.clone())
                            .collect(),
                    })
                    .collect();
                let issuers = (0..ng % 3)
                    .map(|i| IssuerEntry {
                        kind: issuer_kind::OIDC,
                        iss: format!("https://issuer{i}.example.com"),
                        claim: "email".into(),
                        audiences: (0..i).map(|a| format!("aud{a}")).collect(),
                        keys: (0..ng % 4)
                            .map(|k| key(&format!("k{i}-{k}"), "ES256"))
                            .collect(),
                        require_mfa: i % 2 == 1,
                        mfa_acr: (0..i % 3).map(|a| format!("acr{a}")).collect(),
                    })
                    .collect();
                Content {
                    generation,
                    synced_at: 1,
                    users,
                    groups,
                    issuers,
                    policy: PolicyEntry {
                        max_offline_secs: generation % 1000,
                    },
                    shared_accounts: Vec::new(),
                    local_grants: Vec::new(),
                }
            })
    })
}

proptest! {
    #[test]
    fn what_the_writer_writes_the_reader_reads(c in arb_content()) {
        let built = build(&c).unwrap();
        let pair = Pair::parse(&built.public, &built.private).unwrap();
        pair.verify_all().unwrap();
        let s = pair.public;
        prop_assert_eq!(s.generation(), c.generation);
        prop_assert_eq!(pair.private.policy().max_offline_secs, c.policy.max_offline_secs);
        prop_assert_eq!(pair.private.issuer_count(), c.issuers.len());
        for i in &c.issuers {
            let r = pair.private.issuer_by_iss(i.iss.as_bytes()).unwrap().unwrap();
            prop_assert_eq!(r.audiences().count(), i.audiences.len());
            for k in &i.keys {
                let rk = r.key_by_kid(k.kid.as_bytes()).unwrap().unwrap();
                prop_assert_eq!(rk.jwk, k.jwk.as_bytes());
            }
        }
        prop_assert_eq!(s.user_count(), c.users.len());
        for u in &c.users {
            let r = s.user_by_name(u.name.as_bytes()).unwrap().unwrap();
            prop_assert_eq!(r.uid, u.uid);
            prop_assert_eq!(r.gecos, u.gecos.as_bytes());
            prop_assert_eq!(r.home, u.home.as_bytes());
            prop_assert_eq!(s.user_by_uid(u.uid).unwrap().unwrap().name, u.name.as_bytes());
            let (by_email, private) = pair.user_by_email(u.email.as_bytes()).unwrap().unwrap();
            prop_assert_eq!(by_email.name, u.name.as_bytes());
            prop_assert_eq!(private.idp_id, u.idp_id.as_bytes());
            // supplementary groups = the groups listing this user, sorted, deduplicated
            let mut expect: Vec<u32> = c.groups.iter().filter(|g| g.members.contains(&u.name)).map(|g| g.gid).collect();
            expect.sort_unstable();
            expect.dedup();
            prop_assert_eq!(r.groups.iter().collect::<Vec<_>>(), expect);
        }
        for g in &c.groups {
            let r = s.group_by_gid(g.gid).unwrap().unwrap();
            prop_assert_eq!(r.name, g.name.as_bytes());
            let p = pair.private.group(r.index).unwrap();
            prop_assert_eq!((p.idp_id, p.flags), (g.idp_id.as_bytes(), g.flags));
            let mut names: Vec<Vec<u8>> = r.members.iter().map(|i| s.user_name(i as usize).unwrap().to_vec()).collect();
            let mut expect: Vec<Vec<u8>> = g.members.iter().map(|m| m.as_bytes().to_vec()).collect();
            names.sort(); expect.sort(); expect.dedup();
            prop_assert_eq!(names, expect);
        }
    }

    /// Random bytes alone never get past the magic check, so damage real
    /// writer output: a few random bytes overwritten in either file of a pair.
    #[test]
    fn damaged_writer_output_never_panics(
        c in arb_content(),
        damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        which in 0u8..3,
    ) {
        let built = build(&c).unwrap();
        let (mut public, mut private) = (built.public, built.private);
        for (at, v) in damage {
            let target = if which == 0 { &mut public } else { &mut private };
            let i = at.index(target.len());
            target[i] = v;
        }
        exercise(&public);
        exercise(&private);
        exercise(&pair_input(&public, &private));
    }
}

/// The committed fuzz corpus (and any crash a fuzzer once found, once added
/// there) is replayed on stable in every test run.
#[test]
fn fuzz_corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/snapshot_reader");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        exercise(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= 12, "corpus seeds missing from {}", dir.display());
}

/// The one place this file turns content into snapshot bytes for the damage
/// tests below (when the writer's API changes, only this changes).
fn real_snapshot_bytes() -> Vec<u8> {
    build(&sample()).unwrap().public
}

/// One change to a real snapshot. Positions are fractions of the current
/// length, so every mutation lands inside whatever the file is by then.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte with a non-zero mask.
    Flip(prop::sample::Index, u8),
    /// Overwrite 1-8 bytes with one value (0, 0xff and friends make huge
    /// counts, offsets and lengths).
    Fill(prop::sample::Index, u8, usize),
    /// Cut the file at a position.
    Truncate(prop::sample::Index),
    /// Append bytes.
    Extend(Vec<u8>),
    /// Insert bytes in the middle, shifting everything after them.
    Insert(prop::sample::Index, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, m)| Mutation::Flip(i, m)),
        3 => (any::<prop::sample::Index>(), prop_oneof![Just(0u8), Just(0xff), Just(0x7f), Just(0x80), any::<u8>()], 1usize..=8)
            .prop_map(|(i, v, n)| Mutation::Fill(i, v, n)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        1 => proptest::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Extend),
        1 => (any::<prop::sample::Index>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
    ]
}

/// A real snapshot with `muts` applied. With `fix_len`, the header's file
/// length is rewritten after a truncation or extension (found by value, not by
/// offset, so this survives layout changes), so the damage gets past the
/// "truncated?" check into the sections.
fn mutated(muts: &[Mutation], fix_len: bool) -> Vec<u8> {
    let mut b = real_snapshot_bytes();
    let len_at = b
        .windows(8)
        .take(64)
        .position(|w| w == (b.len() as u64).to_le_bytes());
    for m in muts {
        if b.is_empty() {
            break;
        }
        match m {
            Mutation::Flip(i, mask) => {
                let at = i.index(b.len());
                b[at] ^= mask;
            }
            Mutation::Fill(i, v, n) => {
                let at = i.index(b.len());
                let end = (at + n).min(b.len());
                b[at..end].fill(*v);
            }
            Mutation::Truncate(i) => b.truncate(i.index(b.len())),
            Mutation::Extend(more) => b.extend_from_slice(more),
            Mutation::Insert(i, more) => {
                let at = i.index(b.len());
                b.splice(at..at, more.iter().copied());
            }
        }
    }
    if let (true, Some(at)) = (fix_len, len_at)
        && b.len() >= at + 8
    {
        let n = b.len() as u64;
        b[at..at + 8].copy_from_slice(&n.to_le_bytes());
    }
    b
}

fn damage() -> impl Strategy<Value = (Vec<Mutation>, bool)> {
    (proptest::collection::vec(mutation(), 1..6), any::<bool>())
}

/// The damage test below must really reach the reader's lookups: if the
/// mutations stopped getting past the header (as random bytes never get past
/// the magic), it would pass whatever the reader did.
#[test]
fn damaged_real_snapshots_reach_past_the_header() {
    let mut runner = TestRunner::deterministic();
    let strategy = damage();
    let mut tally = [0usize; 3];
    const N: usize = 2000;
    for _ in 0..N {
        let (muts, fix_len) = strategy.new_tree(&mut runner).unwrap().current();
        tally[reach(&mutated(&muts, fix_len)) as usize] += 1;
    }
    let [refused, parsed, verified] = tally;
    assert!(
        parsed + verified >= N / 4,
        "only {} of {N} damaged snapshots parsed: {tally:?}",
        parsed + verified
    );
    assert!(
        parsed >= N / 20 && verified >= N / 20,
        "damage must reach both verify_all's refusals and lookups over a file that verifies: refused={refused} parsed={parsed} verified={verified}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Flips, fills, truncations, extensions and insertions at random
    /// positions of a real snapshot: every lookup and verify_all return.
    #[test]
    fn damaged_real_snapshots_never_panic((muts, fix_len) in damage()) {
        exercise(&mutated(&muts, fix_len));
    }
}

/// How far into the public reader an input got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reach {
    /// `parse` refused the header or the section table.
    Refused,
    /// Parsed, but `verify_all` found damage.
    Parsed,
    /// Parsed and verified: every lookup ran over a consistent-looking file.
    Verified,
}

/// Exercises the input (as `exercise` does) and says how far it got.
fn reach(bytes: &[u8]) -> Reach {
    exercise(bytes);
    match Snapshot::parse(bytes) {
        Err(_) => Reach::Refused,
        Ok(s) if s.verify_all().is_ok() => Reach::Verified,
        Ok(_) => Reach::Parsed,
    }
}

fn ssh_sample() -> Content {
    let mut c = sample();
    c.users[0].principals = vec!["alice".into(), "alice@example.com".into()];
    c.users[0].ssh_keys = vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice@laptop".into()];
    c.users[1].principals = vec!["bob".into()];
    c.shared_accounts = vec![
        zt_snapshot::SharedAccountEntry {
            name: "sysadmin".into(),
            groups: vec!["g-sre".into(), "g-none".into()],
        },
        zt_snapshot::SharedAccountEntry {
            name: "deploy".into(),
            groups: vec![],
        },
    ];
    c
}

fn strs(l: zt_snapshot::StrList<'_>) -> Vec<Vec<u8>> {
    l.iter().map(|s| s.unwrap().to_vec()).collect()
}

#[test]
fn principals_keys_and_shared_accounts_round_trip() {
    let built = build(&ssh_sample()).unwrap();
    let pair = Pair::parse(&built.public, &built.private).unwrap();
    pair.verify_all().unwrap();
    let p = pair.private;
    assert_eq!(
        strs(p.principals(0).unwrap()),
        [b"alice".to_vec(), b"alice@example.com".to_vec()]
    );
    assert_eq!(strs(p.principals(1).unwrap()), [b"bob".to_vec()]);
    assert!(p.principals(2).unwrap().is_empty());
    assert!(p.principals(3).is_err());
    assert_eq!(p.keys(0).unwrap().len(), 1);
    assert!(p.keys(1).unwrap().is_empty());
    let a = p.shared_account(b"sysadmin").unwrap().unwrap();
    assert_eq!(a.name, b"sysadmin");
    assert_eq!(strs(a.groups), [b"g-sre".to_vec(), b"g-none".to_vec()]);
    assert!(
        p.shared_account(b"deploy")
            .unwrap()
            .unwrap()
            .groups
            .is_empty()
    );
    assert!(p.shared_account(b"alice").unwrap().is_none());
    // none of it is public
    let contains = |needle: &[u8]| built.public.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(b"sysadmin") && !contains(b"ssh-ed25519"));
    exercise(&pair_input(&built.public, &built.private));
}

#[test]
fn a_2_1_private_file_has_no_principals_keys_or_shared_accounts() {
    use format::private_section;
    let built = build(&ssh_sample()).unwrap();
    let mut b = built.private.clone();
    for (n, kind) in [
        private_section::USER_PRINCIPALS,
        private_section::PRINCIPALS,
        private_section::USER_KEYS,
        private_section::KEYS,
        private_section::SHARED_ACCOUNTS,
        private_section::SHARED_ACCOUNT_GROUPS,
    ]
    .into_iter()
    .enumerate()
    {
        let (i, _) = table_entry(&b, kind);
        assert_eq!(
            u32::from_le_bytes(
                b[format::HEADER_LEN + i * format::SECTION_ENTRY_LEN + 12..][..4]
                    .try_into()
                    .unwrap()
            ),
            0
        );
        set_entry(&mut b, i, 0x1e0 + n as u32, 0);
    }
    let p = Private::parse(&b).unwrap();
    p.verify_all().unwrap();
    assert!(p.principals(0).unwrap().is_empty());
    assert!(p.keys(0).unwrap().is_empty());
    assert_eq!(p.shared_account_count(), 0);
    assert!(p.shared_account(b"sysadmin").unwrap().is_none());
}

#[test]
fn damaged_ssh_sections_are_errors_not_panics() {
    use format::private_section;
    let built = build(&ssh_sample()).unwrap();
    // alice's principal count far past PRINCIPALS
    let (_, up) = table_entry(&built.private, private_section::USER_PRINCIPALS);
    let mut b = built.private.clone();
    b[up + 4..up + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    let p = Private::parse(&b).unwrap();
    assert_eq!(
        p.principals(0).unwrap_err().what,
        "list outside its section"
    );
    assert!(p.verify_all().is_err());
    exercise(&b);
    // a principal's string past the string section
    let (_, pr) = table_entry(&built.private, private_section::PRINCIPALS);
    let mut b = built.private.clone();
    b[pr..pr + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let p = Private::parse(&b).unwrap();
    assert!(p.principals(0).unwrap().iter().next().unwrap().is_err());
    assert!(p.verify_all().is_err());
    // USER_KEYS one pair short of one per user: refused at parse
    let (i, _) = table_entry(&built.private, private_section::USER_KEYS);
    let mut b = built.private.clone();
    let at = format::HEADER_LEN + i * format::SECTION_ENTRY_LEN + 8;
    b[at..at + 4].copy_from_slice(&16u32.to_le_bytes());
    assert!(Private::parse(&b).is_err());
    // a shared account's group list past its section
    let (_, sa) = table_entry(&built.private, private_section::SHARED_ACCOUNTS);
    let mut b = built.private.clone();
    b[sa + 12..sa + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    let p = Private::parse(&b).unwrap();
    assert!(p.shared_account(b"sysadmin").is_err());
    assert!(p.verify_all().is_err());
    exercise(&b);
}

#[test]
fn writer_refuses_bad_shared_accounts_and_principals() {
    let mut c = ssh_sample();
    c.shared_accounts[1].name = "sysadmin".into();
    assert!(matches!(
        build(&c),
        Err(BuildError::DuplicateSharedAccount(_))
    ));
    let mut c = ssh_sample();
    c.users[0].principals.push("a\nb".into());
    assert!(matches!(build(&c), Err(BuildError::BadString { .. })));
    let mut c = ssh_sample();
    c.users[0].ssh_keys.push("ssh-ed25519 A\0".into());
    assert!(matches!(build(&c), Err(BuildError::BadString { .. })));
}
