//! uid/gid allocation.
//!
//! Ranges (see docs/ids.md): users 1879048192..=2013265919 (0x70000000..0x77FFFFFF),
//! groups 2013265920..=2147352575 (0x78000000..0x7FFDFFFF). Above systemd's
//! container range (524288..=1879048191), below its "foreign" range (from
//! 0x7FFE0000) and below 2^31 (some software still treats uid_t as signed), far
//! above system (<1000), regular local (1000..=60000), systemd-homed (60001..),
//! dynamic users (61184..=65519), nobody (65534) and the default subordinate ids
//! (100000..=600100000). Users and groups get separate halves, so a user private
//! group (gid = uid) can never meet a directory group's gid.
//!
//! An object's id is derived from its immutable IdP id: candidate n is
//! SHA-256("zt-id-v1", kind, id, n) reduced into the range. The first candidate
//! not taken wins. Contested candidates go to the older account (created, then
//! id), so every host reaches the same answer whatever order it read the
//! directory in. Every assignment is persisted and never moves: a departed
//! person's id stays reserved to them, so their files never become someone
//! else's. A directory-provided id (uidNumber-style) wins over the hash.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;

use sha2::{Digest, Sha256};

pub const USER_IDS: RangeInclusive<u32> = 0x7000_0000..=0x77FF_FFFF;
pub const GROUP_IDS: RangeInclusive<u32> = 0x7800_0000..=0x7FFD_FFFF;
/// A person whose first 64 candidates are all taken is refused (and logged), not
/// given a far-away id: with 134M ids per half this means something is wrong.
pub const MAX_PROBES: u32 = 64;

/// Ranges a directory-provided id may never fall in, with the owner to name in
/// the refusal. systemd's documented ranges (systemd.io/UIDS-GID): an id there
/// belongs to the system, to a dynamic service user, to a container's user
/// namespace, or to a "foreign" image's files.
pub const FORBIDDEN_RANGES: &[(RangeInclusive<u32>, &str)] = &[
    (0..=999, "system accounts"),
    (60001..=60513, "systemd-homed"),
    (61184..=65519, "systemd dynamic users"),
    (65534..=65535, "nobody and the 16-bit -1"),
    (524_288..=1_879_048_191, "systemd containers"),
    (0x7FFE_0000..=0x7FFF_FFFF, "systemd foreign ids"),
    (0x8000_0000..=u32::MAX, "ids at or above 2^31"),
];

/// The forbidden range `id` falls in, if any.
pub fn forbidden_range(id: u32) -> Option<&'static str> {
    FORBIDDEN_RANGES
        .iter()
        .find(|(r, _)| r.contains(&id))
        .map(|(_, what)| *what)
}

/// Parses `"10000-59999"`; refuses ranges that touch a forbidden range or zt's
/// own group half (a directory uid there could meet a group's gid).
pub fn parse_directory_range(s: &str) -> Result<RangeInclusive<u32>, String> {
    let (a, b) = s
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?)))
        .filter(|(a, b)| a <= b)
        .ok_or_else(|| format!("{s:?} is not a range like \"10000-59999\""))?;
    for (r, what) in FORBIDDEN_RANGES.iter().chain([
        &(USER_IDS, "zt's hashed user ids"),
        &(GROUP_IDS, "zt's group ids"),
    ]) {
        if a <= *r.end() && *r.start() <= b {
            return Err(format!("{s:?} overlaps {}-{} ({what})", r.start(), r.end()));
        }
    }
    Ok(a..=b)
}

/// Where one kind of id comes from.
#[derive(Debug, Clone)]
pub struct Pool {
    /// "user" or "group", for the hash and for messages.
    pub kind: &'static str,
    /// zt's own range for this kind: hashed ids only. A directory-provided id is
    /// never accepted here: anyone who can set one could compute another
    /// person's hashed id from their IdP id and take it on every new host.
    pub range: RangeInclusive<u32>,
    /// Where else a directory-provided id is accepted (`[users] directory_uid_range`).
    pub directory_range: Option<RangeInclusive<u32>>,
}

/// One object asking for an id.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    /// The IdP's immutable object id.
    pub key: &'a str,
    /// Creation time in the IdP (unix seconds); unknown sorts as youngest.
    pub created: Option<i64>,
    /// An id the directory itself assigns (uidNumber-style).
    pub explicit: Option<u32>,
}

/// Every id of one kind handed out so far: the one each key holds now, and the
/// ones it held before. Both stay reserved to their key for good.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    pub current: BTreeMap<String, u32>,
    pub earlier: BTreeMap<String, Vec<u32>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocation<'a> {
    /// key -> id for every claim granted (keys borrowed from the claims).
    pub granted: HashMap<&'a str, u32>,
    /// key -> why no id was given.
    pub refused: HashMap<&'a str, String>,
    /// Everything ever assigned (the persisted state to write back): each key's
    /// current id...
    pub persisted: BTreeMap<String, u32>,
    /// ...and the ids it held before (a directory uid that changed).
    pub earlier: BTreeMap<String, Vec<u32>>,
}

/// Ids no one may have, wherever they come from.
pub fn is_special(id: u32) -> bool {
    id < 1000 || id == 65534 || id == 65535 || id == u32::MAX
}

pub fn candidate(kind: &str, key: &str, attempt: u32, range: &RangeInclusive<u32>) -> u32 {
    let mut h = Sha256::new();
    h.update(b"zt-id-v1\0");
    h.update(kind.as_bytes());
    h.update(b"\0");
    h.update(key.as_bytes());
    h.update(b"\0");
    h.update(attempt.to_le_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    let span = u64::from(range.end() - range.start()) + 1;
    range.start() + (u64::from_le_bytes(first) % span) as u32
}

/// Why a directory-provided id cannot be accepted for `key`, if it cannot.
fn explicit_refusal(
    pool: &Pool,
    key: &str,
    id: u32,
    owner: &HashMap<u32, &str>,
    in_use: &dyn Fn(u32) -> bool,
) -> Option<String> {
    let kind = pool.kind;
    let held_by_key = owner.get(&id) == Some(&key);
    if is_special(id) {
        return Some(format!(
            "{kind} id {id} from the directory is reserved for the system"
        ));
    }
    if let Some(what) = forbidden_range(id) {
        return Some(format!(
            "{kind} id {id} from the directory is in the range reserved for {what}"
        ));
    }
    // An id this person already holds stays theirs even if the range shrank.
    // zt's own (hashed) range is never open to directory ids: a directory uid
    // equal to someone's hashed uid would take it from them on every new host.
    let allowed = pool
        .directory_range
        .as_ref()
        .is_some_and(|r| r.contains(&id));
    if !allowed && !held_by_key {
        return Some(match &pool.directory_range {
            Some(r) => format!(
                "{kind} id {id} from the directory is outside directory_uid_range ({}-{})",
                r.start(),
                r.end()
            ),
            None => format!(
                "{kind} id {id} from the directory is refused: no [users] directory_uid_range is configured"
            ),
        });
    }
    if in_use(id) {
        return Some(format!(
            "{kind} id {id} from the directory is used by a local account"
        ));
    }
    match owner.get(&id) {
        Some(&other) if other != key => Some(format!(
            "{kind} id {id} from the directory already belongs to {other:?} (ids never move between people)"
        )),
        _ => None,
    }
}

/// Allocates ids for `claims` of one kind in `pool`. `held` is every id handed
/// out before; `in_use` says whether an id is unavailable for reasons outside
/// this kind (local accounts, subordinate ranges, the other kind's ids).
pub fn allocate<'a>(
    pool: &Pool,
    claims: &[Claim<'a>],
    held: &Held,
    in_use: &dyn Fn(u32) -> bool,
) -> Allocation<'a> {
    let kind = pool.kind;
    let mut sorted: Vec<&Claim<'a>> = claims.iter().collect();
    sorted.sort_by(|a, b| {
        (a.created.unwrap_or(i64::MAX), a.key).cmp(&(b.created.unwrap_or(i64::MAX), b.key))
    });

    // every id ever handed out, current or earlier, with its one owner
    let mut owner: HashMap<u32, &str> = held
        .earlier
        .iter()
        .flat_map(|(k, ids)| ids.iter().map(move |&id| (id, k.as_str())))
        .chain(held.current.iter().map(|(k, &v)| (v, k.as_str())))
        .collect();
    let mut out = Allocation {
        granted: HashMap::with_capacity(claims.len()),
        refused: HashMap::new(),
        persisted: held.current.clone(),
        earlier: held.earlier.clone(),
    };

    // 1. Ids the directory assigns itself.
    for c in sorted.iter() {
        let Some(id) = c.explicit else { continue };
        match explicit_refusal(pool, c.key, id, &owner, in_use) {
            Some(why) => {
                out.refused.insert(c.key, why);
            }
            None => {
                owner.insert(id, c.key);
                out.granted.insert(c.key, id);
            }
        }
    }
    // 2. Ids handed out before: they never move.
    for c in sorted.iter().filter(|c| c.explicit.is_none()) {
        if let Some(&id) = held.current.get(c.key) {
            if in_use(id) {
                out.refused.insert(
                    c.key,
                    format!("{kind} id {id} (assigned earlier) is now used by a local account"),
                );
            } else {
                out.granted.insert(c.key, id);
            }
        }
    }
    // 3. Newcomers, oldest first, each taking its first free candidate.
    for c in sorted
        .iter()
        .filter(|c| c.explicit.is_none() && !held.current.contains_key(c.key))
    {
        let free = (0..MAX_PROBES)
            .map(|n| candidate(kind, c.key, n, &pool.range))
            .find(|id| !is_special(*id) && !in_use(*id) && !owner.contains_key(id));
        match free {
            Some(id) => {
                owner.insert(id, c.key);
                out.granted.insert(c.key, id);
            }
            None => {
                out.refused.insert(
                    c.key,
                    format!("no free {kind} id after {MAX_PROBES} candidates"),
                );
            }
        }
    }
    for (&k, &v) in &out.granted {
        // most grants are ids handed out before: no new key to copy
        match out.persisted.get(k) {
            Some(&old) if old == v => {}
            Some(&old) => {
                // a directory id changed: the old one stays this person's
                let earlier = out.earlier.entry(k.to_string()).or_default();
                if !earlier.contains(&old) {
                    earlier.push(old);
                }
                earlier.retain(|&e| e != v);
                if earlier.is_empty() {
                    out.earlier.remove(k);
                }
                out.persisted.insert(k.to_string(), v);
            }
            None => {
                out.persisted.insert(k.to_string(), v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(key: &str, created: i64) -> Claim<'_> {
        Claim {
            key,
            created: Some(created),
            explicit: None,
        }
    }

    fn none(_: u32) -> bool {
        false
    }

    /// The pre-history signature: current ids only, zt's own range only.
    fn alloc<'a>(
        kind: &'static str,
        claims: &[Claim<'a>],
        range: &RangeInclusive<u32>,
        persisted: &BTreeMap<String, u32>,
        in_use: &dyn Fn(u32) -> bool,
    ) -> Allocation<'a> {
        let pool = Pool {
            kind,
            range: range.clone(),
            directory_range: Some(10_000..=59_999),
        };
        let held = Held {
            current: persisted.clone(),
            earlier: BTreeMap::new(),
        };
        allocate(&pool, claims, &held, in_use)
    }

    #[test]
    fn same_answer_whatever_the_input_order() {
        let a = [
            claim("u-1", 10),
            claim("u-2", 20),
            claim("u-3", 30),
            claim("u-4", 5),
        ];
        let mut b = a.to_vec();
        b.reverse();
        let empty = BTreeMap::new();
        // a tiny range forces collisions, which is where order could matter
        let r = 5000..=5003;
        assert_eq!(
            alloc("user", &a, &r, &empty, &none),
            alloc("user", &b, &r, &empty, &none)
        );
        let big = alloc("user", &a, &USER_IDS, &empty, &none);
        assert_eq!(big, alloc("user", &b, &USER_IDS, &empty, &none));
        assert!(big.granted.values().all(|id| USER_IDS.contains(id)));
    }

    #[test]
    fn the_older_account_keeps_a_contested_slot() {
        // with a one-slot range both want 7000: the older one gets it
        let r = 7000..=7000;
        let out = alloc(
            "user",
            &[claim("young", 20), claim("old", 10)],
            &r,
            &BTreeMap::new(),
            &none,
        );
        assert_eq!(out.granted.get("old"), Some(&7000));
        assert!(out.refused.contains_key("young"));
    }

    #[test]
    fn a_newcomer_never_moves_an_existing_person() {
        let r = 7000..=7001;
        let first = alloc("user", &[claim("bob", 20)], &r, &BTreeMap::new(), &none);
        let bob = first.granted["bob"];
        // carol is *older* in the IdP but arrives later; bob keeps his id
        let who_wants_bobs = (0..1000)
            .map(|i| format!("c{i}"))
            .find(|k| candidate("user", k, 0, &r) == bob)
            .unwrap();
        let second = alloc(
            "user",
            &[claim("bob", 20), claim(&who_wants_bobs, 1)],
            &r,
            &first.persisted,
            &none,
        );
        assert_eq!(second.granted["bob"], bob);
        assert_ne!(second.granted[who_wants_bobs.as_str()], bob);
    }

    #[test]
    fn departed_people_keep_their_id_reserved() {
        let r = 7000..=7000;
        let first = alloc("user", &[claim("gone", 1)], &r, &BTreeMap::new(), &none);
        let second = alloc("user", &[claim("new", 2)], &r, &first.persisted, &none);
        assert!(second.granted.is_empty());
        assert_eq!(second.persisted.get("gone"), Some(&7000));
    }

    #[test]
    fn local_ids_are_never_used() {
        let r = 8000..=8002;
        let local = |id: u32| id == 8000 || id == 8001;
        let out = alloc("user", &[claim("a", 1)], &r, &BTreeMap::new(), &local);
        // with 64 probes over 3 slots the one free slot is found
        assert_eq!(out.granted["a"], 8002);
        // and an earlier assignment now taken locally is refused, not moved
        let mut p = BTreeMap::new();
        p.insert("b".to_string(), 8001);
        let out = alloc("user", &[claim("b", 1)], &r, &p, &local);
        assert!(out.refused["b"].contains("now used by a local account"));
    }

    #[test]
    fn range_edges_are_inclusive() {
        let r = u32::MAX - 2..=u32::MAX - 1;
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..200 {
            seen.insert(candidate("user", &format!("k{i}"), 0, &r));
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            vec![u32::MAX - 2, u32::MAX - 1]
        );
        for i in 0..200 {
            assert!(USER_IDS.contains(&candidate("user", &format!("k{i}"), i, &USER_IDS)));
            assert!(GROUP_IDS.contains(&candidate("group", &format!("k{i}"), i, &GROUP_IDS)));
        }
        assert!(USER_IDS.end() < GROUP_IDS.start());
        assert!(
            *GROUP_IDS.end() < 0x7FFE_0000,
            "systemd's foreign range starts at 0x7FFE0000"
        );
        assert!(
            *USER_IDS.start() > 1_879_048_191,
            "systemd's container range ends at 1879048191"
        );
    }

    #[test]
    fn directory_ids_win_but_never_over_someone_else() {
        let r = USER_IDS;
        let mut c = claim("a", 1);
        c.explicit = Some(12345);
        let out = alloc("user", &[c.clone()], &r, &BTreeMap::new(), &none);
        assert_eq!(out.granted["a"], 12345);
        // a local account has it
        let out = alloc("user", &[c.clone()], &r, &BTreeMap::new(), &|id| {
            id == 12345
        });
        assert!(out.refused["a"].contains("local account"));
        // someone else was given it before
        let mut p = BTreeMap::new();
        p.insert("z".to_string(), 12345);
        let out = alloc("user", &[c.clone()], &r, &p, &none);
        assert!(out.refused["a"].contains("already belongs to \"z\""));
        // system ids are refused
        c.explicit = Some(0);
        assert!(alloc("user", &[c], &r, &BTreeMap::new(), &none).refused["a"].contains("reserved"));
    }

    #[test]
    fn ids_are_stable_across_releases() {
        // Changing the derivation would move every uid in every fleet: pin it.
        let pinned = candidate("user", "u-7f3a", 0, &USER_IDS);
        assert_eq!(pinned, PINNED_U7F3A, "uid derivation changed: {pinned}");
    }

    const PINNED_U7F3A: u32 = 1_882_047_031;

    fn explicit(key: &str, id: u32) -> Claim<'_> {
        Claim {
            key,
            created: Some(1),
            explicit: Some(id),
        }
    }

    #[test]
    fn a_changed_directory_uid_keeps_the_old_one_reserved_to_its_holder() {
        let pool = Pool {
            kind: "user",
            range: USER_IDS,
            directory_range: Some(10_000..=99_999),
        };
        let first = allocate(&pool, &[explicit("alice", 70000)], &Held::default(), &none);
        let held = Held {
            current: first.persisted,
            earlier: first.earlier,
        };
        let second = allocate(&pool, &[explicit("alice", 70001)], &held, &none);
        assert_eq!(second.granted["alice"], 70001);
        assert_eq!(second.earlier["alice"], [70000]);
        let held = Held {
            current: second.persisted,
            earlier: second.earlier,
        };
        let third = allocate(
            &pool,
            &[explicit("alice", 70001), explicit("bob", 70000)],
            &held,
            &none,
        );
        assert!(
            third.refused["bob"].contains("already belongs to \"alice\""),
            "{:?}",
            third.refused
        );
        // nor does the hash ever land on it: alice's earlier id is owned
        assert_eq!(third.earlier["alice"], [70000]);
        // and alice may go back to her earlier id
        let back = allocate(&pool, &[explicit("alice", 70000)], &held, &none);
        assert_eq!(back.granted["alice"], 70000);
        assert_eq!(back.earlier["alice"], [70001]);
    }

    #[test]
    fn a_directory_uid_cannot_take_someones_hashed_uid_on_a_new_host() {
        let pool = Pool {
            kind: "user",
            range: USER_IDS,
            directory_range: Some(10_000..=59_999),
        };
        // whoever sets uids in the IdP computes the victim's hashed uid...
        let victims = candidate("user", "u-victim", 0, &USER_IDS);
        let attacker = Claim {
            key: "u-attacker",
            created: Some(1), // and is older, which wins contested hashed ids
            explicit: Some(victims),
        };
        let victim = Claim {
            key: "u-victim",
            created: Some(2),
            explicit: None,
        };
        // ...but on a fresh host the victim still gets it and the attacker nothing
        let fresh = allocate(&pool, &[attacker, victim], &Held::default(), &none);
        assert_eq!(fresh.granted.get("u-victim"), Some(&victims));
        assert!(fresh.refused.contains_key("u-attacker"), "{fresh:?}");
    }

    #[test]
    fn directory_uids_only_inside_the_configured_range() {
        let mut pool = Pool {
            kind: "user",
            range: USER_IDS,
            directory_range: None,
        };
        let refused = |pool: &Pool, id: u32| {
            allocate(pool, &[explicit("a", id)], &Held::default(), &none)
                .refused
                .get("a")
                .cloned()
        };
        assert!(
            refused(&pool, 20000)
                .unwrap()
                .contains("no [users] directory_uid_range")
        );
        // zt's own (hashed) range is never open to directory ids: a directory
        // uid equal to someone's hashed uid would take it on every new host
        let victims_uid = candidate("user", "u-victim", 0, &USER_IDS);
        assert!(
            refused(&pool, victims_uid)
                .unwrap()
                .contains("no [users] directory_uid_range"),
        );
        pool.directory_range = Some(10_000..=59_999);
        assert_eq!(refused(&pool, 20000), None);
        assert!(
            refused(&pool, 60000)
                .unwrap()
                .contains("outside directory_uid_range (10000-59999)")
        );
        for (id, what) in [
            (61184, "dynamic"),
            (65519, "dynamic"),
            (524_288, "containers"),
            (1_879_048_191, "containers"),
            (0x7FFE_0000, "foreign"),
            (0x7FFF_FFFF, "foreign"),
            (999, "system"),
        ] {
            assert!(refused(&pool, id).unwrap().contains(what), "{id}");
        }
    }

    #[test]
    fn directory_ranges_are_checked_when_configured() {
        assert_eq!(parse_directory_range("10000-59999"), Ok(10_000..=59_999));
        for bad in ["", "1-2-3", "59999-10000", "x-y", "10000"] {
            assert!(parse_directory_range(bad).is_err(), "{bad}");
        }
        for (bad, why) in [
            ("500-2000", "system"),
            ("61000-61184", "dynamic"),
            ("100000-600000", "containers"),
            ("2013265920-2013265930", "group ids"),
        ] {
            let e = parse_directory_range(bad).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }
}
