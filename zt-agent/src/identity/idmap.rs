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

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocation<'a> {
    /// key -> id for every claim granted (keys borrowed from the claims).
    pub granted: HashMap<&'a str, u32>,
    /// key -> why no id was given.
    pub refused: HashMap<&'a str, String>,
    /// Everything ever assigned (the persisted state to write back).
    pub persisted: BTreeMap<String, u32>,
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

/// Allocates ids for `claims` of one kind ("user" or "group") in `range`.
/// `in_use` says whether an id is unavailable for reasons outside this kind
/// (local accounts, subordinate ranges, the other kind's ids).
pub fn allocate<'a>(
    kind: &str,
    claims: &[Claim<'a>],
    range: &RangeInclusive<u32>,
    persisted: &BTreeMap<String, u32>,
    in_use: &dyn Fn(u32) -> bool,
) -> Allocation<'a> {
    let mut sorted: Vec<&Claim<'a>> = claims.iter().collect();
    sorted.sort_by(|a, b| {
        (a.created.unwrap_or(i64::MAX), a.key).cmp(&(b.created.unwrap_or(i64::MAX), b.key))
    });

    let mut owner: HashMap<u32, &str> = persisted.iter().map(|(k, &v)| (v, k.as_str())).collect();
    let mut out = Allocation {
        granted: HashMap::with_capacity(claims.len()),
        refused: HashMap::new(),
        persisted: persisted.clone(),
    };

    // 1. Ids the directory assigns itself.
    for c in sorted.iter().filter(|c| c.explicit.is_some()) {
        let id = c.explicit.unwrap_or_default();
        let refusal = if is_special(id) {
            Some(format!(
                "{kind} id {id} from the directory is reserved for the system"
            ))
        } else if in_use(id) {
            Some(format!(
                "{kind} id {id} from the directory is used by a local account"
            ))
        } else {
            match owner.get(&id) {
                Some(&other) if other != c.key => Some(format!(
                    "{kind} id {id} from the directory already belongs to {other}"
                )),
                _ => None,
            }
        };
        match refusal {
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
        if let Some(&id) = persisted.get(c.key) {
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
        .filter(|c| c.explicit.is_none() && !persisted.contains_key(c.key))
    {
        let free = (0..MAX_PROBES)
            .map(|n| candidate(kind, c.key, n, range))
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
        if out.persisted.get(k) != Some(&v) {
            out.persisted.insert(k.to_string(), v);
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
            allocate("user", &a, &r, &empty, &none),
            allocate("user", &b, &r, &empty, &none)
        );
        let big = allocate("user", &a, &USER_IDS, &empty, &none);
        assert_eq!(big, allocate("user", &b, &USER_IDS, &empty, &none));
        assert!(big.granted.values().all(|id| USER_IDS.contains(id)));
    }

    #[test]
    fn the_older_account_keeps_a_contested_slot() {
        // with a one-slot range both want 7000: the older one gets it
        let r = 7000..=7000;
        let out = allocate(
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
        let first = allocate("user", &[claim("bob", 20)], &r, &BTreeMap::new(), &none);
        let bob = first.granted["bob"];
        // carol is *older* in the IdP but arrives later; bob keeps his id
        let who_wants_bobs = (0..1000)
            .map(|i| format!("c{i}"))
            .find(|k| candidate("user", k, 0, &r) == bob)
            .unwrap();
        let second = allocate(
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
        let first = allocate("user", &[claim("gone", 1)], &r, &BTreeMap::new(), &none);
        let second = allocate("user", &[claim("new", 2)], &r, &first.persisted, &none);
        assert!(second.granted.is_empty());
        assert_eq!(second.persisted.get("gone"), Some(&7000));
    }

    #[test]
    fn local_ids_are_never_used() {
        let r = 8000..=8002;
        let local = |id: u32| id == 8000 || id == 8001;
        let out = allocate("user", &[claim("a", 1)], &r, &BTreeMap::new(), &local);
        // with 64 probes over 3 slots the one free slot is found
        assert_eq!(out.granted["a"], 8002);
        // and an earlier assignment now taken locally is refused, not moved
        let mut p = BTreeMap::new();
        p.insert("b".to_string(), 8001);
        let out = allocate("user", &[claim("b", 1)], &r, &p, &local);
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
        let out = allocate("user", &[c.clone()], &r, &BTreeMap::new(), &none);
        assert_eq!(out.granted["a"], 12345);
        // a local account has it
        let out = allocate("user", &[c.clone()], &r, &BTreeMap::new(), &|id| {
            id == 12345
        });
        assert!(out.refused["a"].contains("local account"));
        // someone else was given it before
        let mut p = BTreeMap::new();
        p.insert("z".to_string(), 12345);
        let out = allocate("user", &[c.clone()], &r, &p, &none);
        assert!(out.refused["a"].contains("already belongs to z"));
        // system ids are refused
        c.explicit = Some(0);
        assert!(
            allocate("user", &[c], &r, &BTreeMap::new(), &none).refused["a"].contains("reserved")
        );
    }

    #[test]
    fn ids_are_stable_across_releases() {
        // Changing the derivation would move every uid in every fleet: pin it.
        assert_eq!(
            candidate("user", "u-7f3a", 0, &USER_IDS),
            candidate("user", "u-7f3a", 0, &USER_IDS)
        );
        let pinned = candidate("user", "u-7f3a", 0, &USER_IDS);
        assert_eq!(pinned, PINNED_U7F3A, "uid derivation changed: {pinned}");
    }

    const PINNED_U7F3A: u32 = 1_882_047_031;
}
