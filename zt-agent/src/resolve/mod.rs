//! The whole identity decision as pure functions: directory + policy + the
//! host's accounts + what was handed out before -> the snapshot content, and a
//! reason for everyone left out.
//!
//! `resolve` runs the phases in order; each is a function with its own tests:
//! 1. [`login_groups`]: configured groups present in the directory, expanded.
//! 2. [`people`]: every person validated where they enter, one at a time; a bad
//!    field skips that person only, with a reason, never the whole sync.
//! 3. [`names`]: one name per person, one person per name, held names kept.
//! 4. [`user_ids`]: uids, never moved between people.
//! 5. [`group_gids`]: the configured groups' gids and members.
//! 6. [`private_groups`]: a group per user, gid = uid.
//!
//! [`hold_back::hold_back_removals`] then runs in sync against the previous
//! snapshot. Every directory string that reaches a message is `{:?}`-escaped.

pub mod grants;
pub mod hold_back;
pub mod policy;
pub mod ssh;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use zt_snapshot::format::group_flags;
use zt_snapshot::{Content, GroupEntry, UserEntry};

use crate::config::AgentConfig;
use crate::directory::nesting::Nesting;
use crate::directory::{DirUser, Directory};
use crate::identity::idmap::{self, Allocation, Claim};
use crate::identity::local::{HostNames, LocalAccounts};
use crate::identity::names;

pub use crate::identity::holders::IdState;
pub use policy::{GroupRule, Policy};

/// Longest IdP object id accepted (Entra/Okta/Google ids are under 64 bytes).
pub const MAX_ID_LEN: usize = 256;
/// Longest email accepted (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// gecos is cut (at a character boundary) beyond this many bytes: room for any
/// real display name, while a megabyte one cannot bloat every getpwnam answer.
pub const MAX_GECOS_LEN: usize = 1024;

/// Someone in the directory who is not a user on this host, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skip {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub reason: String,
    /// Worth logging and keeping in status (a collision, a bad name), as opposed to
    /// the ordinary "not in a login group" that applies to most of a company.
    pub notable: bool,
}

impl Skip {
    fn of(u: &DirUser, name: Option<String>, reason: String, notable: bool) -> Skip {
        Skip {
            id: u.id.clone(),
            email: u.email.clone(),
            name,
            reason,
            notable,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Resolution {
    pub content: Content,
    pub skipped: Vec<Skip>,
    /// Problems with the directory or config that are not about one person.
    pub problems: Vec<String>,
    pub ids: IdState,
}

/// A person who passed every per-person rule, with validated fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub user: &'a DirUser,
    /// Normalised (lowercase) and checked for the snapshot.
    pub email: String,
    pub name: String,
    pub gecos: String,
    pub created: Option<i64>,
}

fn age_key<'c>(c: &'c Candidate<'_>) -> (i64, &'c str) {
    (c.created.unwrap_or(i64::MAX), c.user.id.as_str())
}

/// gecos must not break the passwd line: ':' and control characters become
/// spaces, and an overlong display name is cut (gecos is informational).
pub fn clean_gecos(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_GECOS_LEN));
    for c in s.chars() {
        if out.len() + c.len_utf8() > MAX_GECOS_LEN {
            break;
        }
        // ':' would split the passwd line; control and invisible formatting
        // characters (bidi overrides, zero-width) would disguise the name every
        // program shows
        out.push(if c == ':' || crate::logging::is_deceptive(c) {
            ' '
        } else {
            c
        });
    }
    out
}

/// An IdP object id fit to be a key in the snapshot and in ids.json.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(format!(
            "IdP id {id:?} is empty, longer than {MAX_ID_LEN} bytes or has control characters"
        ));
    }
    Ok(())
}

/// An email fit for the snapshot (passwd-style fields: no ':', no control
/// characters) and for matching certificate principals (no whitespace). A
/// quoted local part such as `"m:x"@example.com` is a valid address but not one
/// we can store: that person is skipped, not the sync.
pub fn check_email(email: &str) -> Result<String, String> {
    let e = names::normalise_email(email)?;
    if e.len() > MAX_EMAIL_LEN {
        return Err(format!(
            "email {email:?} is longer than {MAX_EMAIL_LEN} bytes"
        ));
    }
    if let Some(bad) = e
        .chars()
        .find(|&c| c == ':' || c == '"' || crate::logging::is_deceptive(c) || c.is_whitespace())
    {
        return Err(format!(
            "email {email:?} contains {bad:?}, which zt cannot store or match safely"
        ));
    }
    Ok(e)
}

/// Phase 1 output: configured groups present in the directory.
#[derive(Debug, Default)]
pub struct LoginGroups<'a> {
    /// (index into `Policy::groups`, transitive member ids).
    pub present: Vec<(usize, Vec<&'a str>)>,
    /// Everyone in at least one login group.
    pub may_log_in: HashSet<&'a str>,
    pub problems: Vec<String>,
}

/// Phase 1: the configured groups the directory has, with their members.
pub fn login_groups<'a>(policy: &'a Policy, nesting: &Nesting<'a>) -> LoginGroups<'a> {
    let mut out = LoginGroups::default();
    for (i, g) in policy.groups.iter().enumerate() {
        if !nesting.contains_group(&g.id) {
            out.problems.push(format!(
                "configured group {:?} (id {:?}) is not in the directory; left out",
                g.name, g.id
            ));
            continue;
        }
        let e = nesting.expand(&g.id);
        out.problems.extend(e.problems);
        if g.login {
            out.may_log_in.extend(e.users.iter().copied());
        }
        out.present.push((i, e.users));
    }
    out
}

/// Phase 2, one person: every field checked, the name derived. `Err` carries
/// the name (if known), the reason, and whether it is worth logging.
pub fn person<'a>(
    policy: &Policy,
    host: &HostNames<'_>,
    may_log_in: &HashSet<&str>,
    u: &'a DirUser,
) -> Result<Candidate<'a>, Skip> {
    if !u.enabled {
        return Err(Skip::of(u, None, "disabled in the directory".into(), false));
    }
    if !may_log_in.contains(u.id.as_str()) {
        return Err(Skip::of(
            u,
            None,
            "not a member of any login group for this host".into(),
            false,
        ));
    }
    let fail = |name: Option<String>, why: String| Skip::of(u, name, why, true);
    check_id(&u.id).map_err(|e| fail(None, e))?;
    let email = check_email(&u.email).map_err(|e| fail(None, e))?;
    if !names::domain_allowed(&email, &policy.domains) {
        return Err(fail(
            None,
            format!("email domain is not one of {:?}", policy.domains),
        ));
    }
    let created = u.created_at().map_err(|e| fail(None, e))?;
    let name = match policy.name_override(&u.id, &email) {
        Some(n) => n.to_string(),
        None => names::derive(policy.name_from, &email, u.username.as_deref())
            .map_err(|e| fail(None, e))?,
    };
    if let Some(why) = host.conflict(&name) {
        return Err(fail(Some(name), why));
    }
    if policy.group_names.contains(&name) {
        return Err(fail(
            Some(name.clone()),
            format!("name {name:?} is a configured group's name"),
        ));
    }
    Ok(Candidate {
        user: u,
        email,
        name,
        gecos: clean_gecos(u.display_name.as_deref().unwrap_or("")),
        created,
    })
}

/// Phase 2: everyone who may become a user here; a reason for everyone else.
pub fn people<'a>(
    policy: &Policy,
    host: &HostNames<'_>,
    may_log_in: &HashSet<&str>,
    dir: &'a Directory,
) -> (Vec<Candidate<'a>>, Vec<Skip>) {
    let mut ok = Vec::new();
    let mut skipped = Vec::new();
    for u in &dir.users {
        match person(policy, host, may_log_in, u) {
            Ok(c) => ok.push(c),
            Err(s) => skipped.push(s),
        }
    }
    (ok, skipped)
}

/// Phase 3 output.
#[derive(Debug, Default)]
pub struct Names<'a> {
    pub winners: Vec<Candidate<'a>>,
    pub skipped: Vec<Skip>,
}

/// Phase 3: one name, one person; one email, one person. A held name stays with
/// its holder, present or not (only `zt-agent release NAME` frees it); an
/// unheld contested name goes to the older account. Same decision on every host
/// that saw the same history. Last, a dotted name that chown would read as
/// another zt user and a zt group is refused (see [`chown_reading`]).
pub fn names<'a>(
    candidates: Vec<Candidate<'a>>,
    holders: &BTreeMap<String, String>,
    dir: &Directory,
    group_names: &HashSet<String>,
) -> Names<'a> {
    let mut out = Names::default();
    let mut by_name: BTreeMap<String, Vec<Candidate<'a>>> = BTreeMap::new();
    for c in candidates {
        by_name.entry(c.name.clone()).or_default().push(c);
    }
    let emails: HashMap<&str, &str> = dir
        .users
        .iter()
        .map(|u| (u.id.as_str(), u.email.as_str()))
        .collect();
    let who = |id: &str| match emails.get(id) {
        Some(e) => format!("{id:?} ({e:?})"),
        None => format!("{id:?}"),
    };
    for (name, mut claimants) in by_name {
        let holder = holders.get(&name);
        claimants.sort_by(|a, b| age_key(a).cmp(&age_key(b)));
        let winner_at = match holder {
            Some(h) => claimants.iter().position(|c| &c.user.id == h),
            None => Some(0),
        };
        if winner_at == Some(0) && claimants.len() == 1 {
            out.winners.extend(claimants);
            continue;
        }
        let reason = match (holder, winner_at) {
            (Some(h), None) => format!(
                "name {name:?} is held by {}, who is not a user here now; names never pass to \
                 someone else unless an admin runs `zt-agent release {name}`",
                who(h)
            ),
            (Some(h), Some(_)) => format!(
                "name {name:?} is held by {}; give this person a [users.name_overrides] entry",
                who(h)
            ),
            (None, _) => format!(
                "name {name:?} already belongs to {} (the older account); give this person a \
                 [users.name_overrides] entry",
                claimants.first().map_or("", |c| c.email.as_str())
            ),
        };
        for (i, c) in claimants.into_iter().enumerate() {
            if Some(i) == winner_at {
                out.winners.push(c);
            } else {
                out.skipped
                    .push(Skip::of(c.user, Some(name.clone()), reason.clone(), true));
            }
        }
    }
    out.winners.sort_by(|a, b| age_key(a).cmp(&age_key(b)));
    let mut seen_email: HashMap<String, String> = HashMap::new();
    let mut skipped = Vec::new();
    out.winners.retain(|c| match seen_email.get(&c.email) {
        Some(first) => {
            skipped.push(Skip::of(
                c.user,
                Some(c.name.clone()),
                format!(
                    "email {:?} is also used by the older account {first:?}",
                    c.email
                ),
                true,
            ));
            false
        }
        None => {
            seen_email.insert(c.email.clone(), c.user.id.clone());
            true
        }
    });
    out.skipped.extend(skipped);
    // Judged against the whole set of names this sync publishes, fixed before
    // any is refused: the decision does not depend on the order people come in,
    // so every host makes the same one.
    let published: HashSet<String> = out.winners.iter().map(|c| c.name.clone()).collect();
    let claimant: HashMap<&str, &str> = out
        .winners
        .iter()
        .map(|c| (c.name.as_str(), c.user.id.as_str()))
        .collect();
    // A name is held when this sync's claimant is the person who held it before.
    let held = |name: &str| {
        holders.get(name).map(String::as_str) == claimant.get(name).copied()
            && claimant.contains_key(name)
    };
    let by_name: HashMap<&str, &Candidate<'a>> =
        out.winners.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut refused: BTreeMap<String, String> = BTreeMap::new();
    for c in &out.winners {
        let Some(clash) = chown_reading(&c.name, &published, group_names) else {
            continue;
        };
        // Two people whose names chown would confuse: as for two people with
        // one name, the holder keeps theirs (names never move: creating "alice"
        // must not take "alice.sre" from its holder); when both or neither
        // hold, the older account wins, so a fresh host agrees with old ones
        // whenever the holder is the older account. A configured group (no
        // other person) always makes the dotted name yield.
        let dotted_wins =
            clash
                .other_person
                .as_deref()
                .is_some_and(|plain| match (held(&c.name), held(plain)) {
                    (true, false) => true,
                    (false, true) => false,
                    _ => by_name.get(plain).is_some_and(|p| age_key(c) < age_key(p)),
                });
        match clash.other_person {
            Some(plain) if dotted_wins => {
                refused.entry(plain.clone()).or_insert(format!(
                    "name {plain:?} would make {:?} (its holder, or the older account) read as \
                     {plain:?}.<group> in chown; give this person a [users.name_overrides] entry",
                    c.name
                ));
            }
            _ => {
                refused.insert(c.name.clone(), clash.why);
            }
        }
    }
    let mut dotted = Vec::new();
    out.winners.retain(|c| match refused.get(&c.name) {
        Some(why) => {
            dotted.push(Skip::of(c.user, Some(c.name.clone()), why.clone(), true));
            false
        }
        None => true,
    });
    out.skipped.extend(dotted);
    out
}

/// Why chown would misread a name, and the other zt person involved, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChownClash {
    pub why: String,
    /// The published person whose name the dotted name shadows (as X in X.Y,
    /// or as the private group Y); None when Y is a configured group.
    pub other_person: Option<String>,
}

/// GNU chown reads "X.Y" as user X and group Y (it tries the whole string as a
/// user first, so `chown alice.sre FILE` would give the file to a person named
/// "alice.sre" instead of alice). The host's own names are refused by
/// [`HostNames::conflict`]; this finds X.Y, at any dot, where X is another
/// person zt publishes or Y a zt group: a configured group or a user's private
/// group (which carries the user's name).
pub fn chown_reading(
    name: &str,
    published: &HashSet<String>,
    group_names: &HashSet<String>,
) -> Option<ChownClash> {
    for (dot, _) in name.match_indices('.') {
        let (user, group) = (&name[..dot], &name[dot + 1..]);
        let (why, other_person) = if published.contains(user) {
            (format!("{user:?} is another zt user"), Some(user))
        } else if group_names.contains(group) {
            (format!("{group:?} is a zt group"), None)
        } else if published.contains(group) {
            (
                format!("{group:?} is a zt user's private group"),
                Some(group),
            )
        } else {
            continue;
        };
        return Some(ChownClash {
            why: format!(
                "name {name:?} reads as {user:?}.{group:?} (user.group) in chown, and {why}; \
                 give this person a [users.name_overrides] entry"
            ),
            other_person: other_person.map(str::to_string),
        });
    }
    None
}

/// Phase 4: uids for the name winners; users sorted by name, and the allocation
/// (to persist). Group gids handed out earlier are off limits to users too.
pub fn user_ids<'a>(
    policy: &Policy,
    local: &LocalAccounts,
    winners: &[Candidate<'a>],
    previous: &IdState,
) -> (Vec<UserEntry>, Vec<Skip>, Allocation<'a>) {
    let earlier_gids: HashSet<u32> = previous.groups.values().copied().collect();
    let claims: Vec<Claim<'a>> = winners
        .iter()
        .map(|c| Claim {
            key: &c.user.id,
            created: c.created,
            explicit: c.user.uid,
        })
        .collect();
    let in_use = |id: u32| local.id_in_use(id) || earlier_gids.contains(&id);
    let uids = idmap::allocate(&policy.user_ids, &claims, &previous.user_ids(), &in_use);
    let mut users = Vec::with_capacity(winners.len());
    let mut skipped = Vec::new();
    for c in winners {
        let Some(&uid) = uids.granted.get(c.user.id.as_str()) else {
            let reason = uids
                .refused
                .get(c.user.id.as_str())
                .cloned()
                .unwrap_or_else(|| "no uid".into());
            skipped.push(Skip::of(c.user, Some(c.name.clone()), reason, true));
            continue;
        };
        users.push(UserEntry {
            name: c.name.clone(),
            uid,
            gid: uid,
            gecos: c.gecos.clone(),
            home: policy.home_of(&c.name),
            shell: policy.shell.clone(),
            email: c.email.clone(),
            idp_id: c.user.id.clone(),
            principals: Vec::new(),
            ssh_keys: Vec::new(),
        });
    }
    users.sort_by(|a, b| a.name.cmp(&b.name));
    (users, skipped, uids)
}

/// Phase 5: the configured groups' entries. A name clash with the host is left
/// out, never shadowed; gids never meet a uid ever handed out (a departed
/// person's private group keeps its gid).
pub fn group_gids<'a>(
    policy: &'a Policy,
    host: &HostNames<'_>,
    local: &LocalAccounts,
    present: &[(usize, Vec<&str>)],
    users: &[UserEntry],
    uids: &Allocation<'_>,
    previous: &IdState,
) -> (Vec<GroupEntry>, Vec<String>, Allocation<'a>) {
    let mut problems = Vec::new();
    let mut usable = Vec::new();
    let mut claims = Vec::new();
    for (i, members) in present {
        let g = &policy.groups[*i];
        if let Some(why) = host.conflict(&g.name) {
            problems.push(format!("group {:?} left out: {why}", g.name));
            continue;
        }
        usable.push((g, members));
        claims.push(Claim {
            key: g.id.as_str(),
            created: None,
            explicit: None,
        });
    }
    let all_uids: HashSet<u32> = uids
        .persisted
        .values()
        .chain(uids.earlier.values().flatten())
        .copied()
        .collect();
    let in_use = |id: u32| local.id_in_use(id) || all_uids.contains(&id);
    let gids = idmap::allocate(&policy.group_ids, &claims, &previous.group_ids(), &in_use);
    let id_to_name: HashMap<&str, &str> = users
        .iter()
        .map(|u| (u.idp_id.as_str(), u.name.as_str()))
        .collect();
    let mut groups = Vec::new();
    for (g, members) in usable {
        let Some(&gid) = gids.granted.get(g.id.as_str()) else {
            let why = gids
                .refused
                .get(g.id.as_str())
                .map_or("no gid", String::as_str);
            problems.push(format!("group {:?} left out: {why}", g.name));
            continue;
        };
        let mut member_names: Vec<String> = members
            .iter()
            .filter_map(|id| id_to_name.get(id).map(|n| n.to_string()))
            .collect();
        member_names.sort();
        groups.push(GroupEntry {
            name: g.name.clone(),
            gid,
            flags: if g.login { group_flags::LOGIN } else { 0 },
            idp_id: g.id.clone(),
            members: member_names,
        });
    }
    (groups, problems, gids)
}

/// Phase 6: user private groups, as Debian does: named after the user, gid = uid.
pub fn private_groups(users: &[UserEntry]) -> Vec<GroupEntry> {
    users
        .iter()
        .map(|u| GroupEntry {
            name: u.name.clone(),
            gid: u.gid,
            flags: group_flags::USER_PRIVATE,
            idp_id: String::new(),
            members: Vec::new(),
        })
        .collect()
}

/// Resolves with the rules of `config` (see [`resolve_with`]).
pub fn resolve(
    config: &AgentConfig,
    dir: &Directory,
    local: &LocalAccounts,
    previous: &IdState,
) -> Resolution {
    resolve_with(&Policy::from_config(config), dir, local, previous)
}

/// All phases in order.
pub fn resolve_with(
    policy: &Policy,
    dir: &Directory,
    local: &LocalAccounts,
    previous: &IdState,
) -> Resolution {
    let host = HostNames::new(local, &policy.reserved_names);
    let nesting = Nesting::new(dir);
    let groups = login_groups(policy, &nesting);
    let (candidates, mut skipped) = people(policy, &host, &groups.may_log_in, dir);
    let named = names(candidates, &previous.names, dir, &policy.group_names);
    skipped.extend(named.skipped);
    let (mut users, id_skips, uids) = user_ids(policy, local, &named.winners, previous);
    let by_id: HashMap<&str, &DirUser> = dir.users.iter().map(|u| (u.id.as_str(), u)).collect();
    let ssh_problems = ssh::assign(&policy.principal_forms, &mut users, |id| {
        by_id.get(id).copied()
    });
    skipped.extend(id_skips);
    let (mut entries, group_problems, gids) = group_gids(
        policy,
        &host,
        local,
        &groups.present,
        &users,
        &uids,
        previous,
    );
    entries.extend(private_groups(&users));

    // Holders are persisted, never rebuilt: a name stays with a holder who is
    // absent, disabled or renamed in this sync.
    let mut ids = previous.clone();
    for u in &users {
        ids.names
            .entry(u.name.clone())
            .or_insert_with(|| u.idp_id.clone());
    }
    ids.users = uids.persisted;
    ids.earlier_users = uids.earlier;
    ids.groups = gids.persisted;

    let mut problems = dir.problems.clone();
    problems.extend(groups.problems);
    problems.extend(group_problems);
    problems.extend(ssh_problems);
    Resolution {
        content: Content {
            generation: 0,
            synced_at: 0,
            users,
            groups: entries,
            shared_accounts: policy.shared_accounts.clone(),
            ..Content::default()
        },
        skipped,
        problems,
        ids,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn emails_and_gecos_lose_their_disguises() {
        // a right-to-left override makes "eve@evil.example" display as something else
        for bad in [
            "eve\u{202E}@example.com",
            "e\u{200B}ve@example.com",
            "eve@ex\u{2028}ample.com",
        ] {
            let e = check_email(bad).unwrap_err();
            assert!(e.contains("cannot store or match safely"), "{e}");
        }
        assert_eq!(check_email("Zoë@Example.com").unwrap(), "zoë@example.com");
        assert_eq!(clean_gecos("Eve\u{202E}lizaB: x\u{200B}"), "Eve lizaB  x ");
    }

    use super::*;
    use crate::directory::file;

    const CONFIG: &str = r#"
[directory]
kind = "file"
path = "/d.json"
[users]
domains = ["example.com"]
name_overrides = { "u-alice2" = "alice2" }
[[groups]]
id = "g-sre"
name = "sre"
login = true
[[groups]]
id = "g-dev"
name = "developers"
"#;

    fn run(dir: &str, local: &LocalAccounts, prev: &IdState) -> Resolution {
        let c = AgentConfig::parse(CONFIG, "agent.toml").unwrap();
        let d = file::parse(dir, "d.json").unwrap();
        resolve(&c, &d, local, prev)
    }

    fn names(r: &Resolution) -> Vec<&str> {
        r.content.users.iter().map(|u| u.name.as_str()).collect()
    }

    fn reason<'a>(r: &'a Resolution, id: &str) -> &'a str {
        &r.skipped.iter().find(|s| s.id == id).unwrap().reason
    }

    const DIR: &str = r#"{"users": [
        {"id": "u-alice", "email": "Alice@Example.com", "display_name": "Alice: Liddell", "created": "2020-01-01T00:00:00Z"},
        {"id": "u-bob", "email": "bob@example.com", "created": "2021-01-01T00:00:00Z"},
        {"id": "u-carol", "email": "carol@example.com", "enabled": false},
        {"id": "u-dave", "email": "dave@example.com"},
        {"id": "u-erin", "email": "erin@other.org"},
        {"id": "u-root", "email": "root@example.com"},
        {"id": "u-alice-b", "email": "alice@example.com.", "created": "2019-01-01T00:00:00Z"},
        {"id": "u-alice3", "email": "ALICE@example.com", "created": "2023-01-01T00:00:00Z"},
        {"id": "u-alice2", "email": "alice@sub.example.com"}
      ],
      "groups": [
        {"id": "g-sre", "name": "Site Reliability", "members": ["u-alice", "u-carol", "g-oncall", "u-erin", "u-root", "u-alice3"]},
        {"id": "g-oncall", "name": "On call", "members": ["u-bob"]},
        {"id": "g-dev", "name": "Developers", "members": ["u-dave", "u-bob"]}
      ]}"#;

    #[test]
    fn only_login_group_members_become_users() {
        let r = run(DIR, &LocalAccounts::default(), &IdState::default());
        assert_eq!(names(&r), ["alice", "bob"]);
        assert_eq!(
            reason(&r, "u-dave"),
            "not a member of any login group for this host"
        );
        assert_eq!(reason(&r, "u-carol"), "disabled in the directory");
        assert!(reason(&r, "u-erin").contains("domain"));
        assert!(reason(&r, "u-root").contains("reserved"));
        // nested: bob is in sre through oncall; developers is visible but not a login group
        let dev = r
            .content
            .groups
            .iter()
            .find(|g| g.name == "developers")
            .unwrap();
        assert_eq!(dev.members, ["bob"]);
        let sre = r.content.groups.iter().find(|g| g.name == "sre").unwrap();
        assert_eq!(sre.members, ["alice", "bob"]);
        let alice = &r.content.users[0];
        assert_eq!(
            (
                alice.gecos.as_str(),
                alice.home.as_str(),
                alice.email.as_str()
            ),
            ("Alice  Liddell", "/home/alice", "alice@example.com")
        );
        // user private group
        assert!(r.content.groups.iter().any(|g| g.name == "alice"
            && g.gid == alice.uid
            && g.flags == group_flags::USER_PRIVATE));
    }

    #[test]
    fn same_name_goes_to_the_older_account_then_stays_with_its_holder() {
        let r = run(DIR, &LocalAccounts::default(), &IdState::default());
        // u-alice3 also maps to "alice"; u-alice (2020) is older than u-alice3 (2023)
        assert!(
            reason(&r, "u-alice3").contains("already belongs to alice@example.com"),
            "{}",
            reason(&r, "u-alice3")
        );
        // now an even older account takes the name from nobody: the holder keeps it
        let older = DIR.replace(
            "\"created\": \"2023-01-01T00:00:00Z\"",
            "\"created\": \"2001-01-01T00:00:00Z\"",
        );
        let r2 = run(&older, &LocalAccounts::default(), &r.ids);
        assert_eq!(r2.content.users[0].idp_id, "u-alice");
        // ...while a host that never saw u-alice hold it decides by age, and says so
        let fresh = run(&older, &LocalAccounts::default(), &IdState::default());
        assert_eq!(fresh.content.users[0].idp_id, "u-alice3");
    }

    #[test]
    fn local_accounts_win() {
        let mut local = LocalAccounts::default();
        local.add_files(
            "alice:x:1000:1000::/home/alice:/bin/bash\n",
            "alice:x:1000:\nsre:x:1001:\n",
        );
        let r = run(DIR, &local, &IdState::default());
        assert_eq!(names(&r), ["bob"]);
        assert_eq!(
            reason(&r, "u-alice"),
            "name \"alice\" collides with local user"
        );
        assert!(
            r.problems.iter().any(|p| p.contains("\"sre\" left out")),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn input_order_does_not_matter() {
        let a = run(DIR, &LocalAccounts::default(), &IdState::default());
        let mut d: serde_json::Value = serde_json::from_str(DIR).unwrap();
        d["users"].as_array_mut().unwrap().reverse();
        d["groups"].as_array_mut().unwrap().reverse();
        let b = run(
            &d.to_string(),
            &LocalAccounts::default(),
            &IdState::default(),
        );
        assert_eq!(a.content, b.content);
        assert_eq!(a.ids, b.ids);
    }

    #[test]
    fn ids_persist_and_departed_people_keep_theirs_reserved() {
        let a = run(DIR, &LocalAccounts::default(), &IdState::default());
        let bob_uid = a.content.users[1].uid;
        let mut d: serde_json::Value = serde_json::from_str(DIR).unwrap();
        d["users"]
            .as_array_mut()
            .unwrap()
            .retain(|u| u["id"] != "u-bob");
        for g in d["groups"].as_array_mut().unwrap() {
            g["members"]
                .as_array_mut()
                .unwrap()
                .retain(|m| m != "u-bob");
        }
        let b = run(&d.to_string(), &LocalAccounts::default(), &a.ids);
        assert_eq!(names(&b), ["alice"]);
        assert_eq!(b.ids.users.get("u-bob"), Some(&bob_uid));
        let c = run(DIR, &LocalAccounts::default(), &b.ids);
        assert_eq!(c.content.users[1].uid, bob_uid);
    }
}

#[cfg(test)]
mod phase_tests {
    use super::*;
    use crate::config::NameFrom;
    use crate::directory::file;
    use crate::identity::idmap::Pool;

    fn policy() -> Policy {
        Policy {
            name_from: NameFrom::EmailLocalPart,
            domains: vec!["example.com".into()],
            home: "/home/{name}".into(),
            shell: "/bin/bash".into(),
            name_overrides: HashMap::new(),
            reserved_names: vec!["acme".into()],
            user_ids: Pool {
                kind: "user",
                range: idmap::USER_IDS,
                directory_range: Some(10_000..=99_999),
            },
            group_ids: Pool {
                kind: "group",
                range: idmap::GROUP_IDS,
                directory_range: None,
            },
            groups: vec![GroupRule {
                id: "g-sre".into(),
                name: "sre".into(),
                login: true,
            }],
            group_names: HashSet::from(["sre".to_string()]),
            max_removal_percent: 50,
            principal_forms: vec![NameFrom::EmailLocalPart],
            shared_accounts: Vec::new(),
        }
    }

    fn user(id: &str, email: &str) -> DirUser {
        DirUser {
            id: id.into(),
            email: email.into(),
            display_name: None,
            enabled: true,
            username: None,
            uid: None,
            created: None,
            ssh_keys: Vec::new(),
        }
    }

    fn dir(users: Vec<DirUser>) -> Directory {
        let members = users.iter().map(|u| u.id.clone()).collect();
        Directory {
            users,
            groups: vec![crate::directory::DirGroup {
                id: "g-sre".into(),
                name: "SRE".into(),
                members,
            }],
            ..Directory::default()
        }
    }

    fn run(p: &Policy, d: &Directory, prev: &IdState) -> Resolution {
        resolve_with(p, d, &LocalAccounts::default(), prev)
    }

    fn reason<'a>(r: &'a Resolution, id: &str) -> &'a str {
        r.skipped
            .iter()
            .find(|s| s.id == id)
            .map_or("(not skipped)", |s| s.reason.as_str())
    }

    fn names_of(r: &Resolution) -> Vec<&str> {
        r.content.users.iter().map(|u| u.name.as_str()).collect()
    }

    #[test]
    fn login_groups_report_missing_configured_groups() {
        let mut p = policy();
        p.groups.push(GroupRule {
            id: "g-gone".into(),
            name: "gone".into(),
            login: false,
        });
        let d = dir(vec![user("u-a", "a@example.com")]);
        let n = Nesting::new(&d);
        let g = login_groups(&p, &n);
        assert_eq!(g.present, [(0, vec!["u-a"])]);
        assert!(g.may_log_in.contains("u-a"));
        assert!(g.problems[0].contains("\"g-gone\""), "{:?}", g.problems);
    }

    #[test]
    fn every_field_is_checked_where_it_enters() {
        let p = policy();
        let local = LocalAccounts::default();
        let host = HostNames::new(&local, &p.reserved_names);
        let mut bad = vec![
            user("u-colon", "\"m:x\"@example.com"),
            user("u-nl", "a\n<0>emerg@example.com"),
            user("u-space", "a b@example.com"),
            user("u-long", &format!("{}@example.com", "a".repeat(260))),
            user("u-\u{7}", "bell@example.com"),
            user(&"x".repeat(300), "longid@example.com"),
            user("u-acme", "acme@example.com"),
            user("u-dotted", "root.root@example.com"),
        ];
        bad.push(DirUser {
            created: Some("yesterday".into()),
            ssh_keys: Vec::new(),
            ..user("u-created", "c@example.com")
        });
        let may: HashSet<&str> = bad.iter().map(|u| u.id.as_str()).collect();
        for u in &bad {
            let e = person(&p, &host, &may, u).unwrap_err();
            assert!(e.notable, "{e:?}");
        }
        let good = DirUser {
            display_name: Some(format!("Ann: {}\n", "é".repeat(1000))),
            ..user("u-ann", "Ann@Example.com")
        };
        let may: HashSet<&str> = HashSet::from(["u-ann"]);
        let c = person(&p, &host, &may, &good).unwrap();
        assert_eq!(
            (c.name.as_str(), c.email.as_str()),
            ("ann", "ann@example.com")
        );
        assert!(
            c.gecos.starts_with("Ann  é")
                && c.gecos.len() <= MAX_GECOS_LEN
                && c.gecos.len() > MAX_GECOS_LEN - 2
        );
        assert!(!c.gecos.contains(['\n', ':']));
    }

    #[test]
    fn one_bad_email_skips_that_person_not_the_sync() {
        // issue 5 §1: with name_from = "username" (or an id-keyed override) the
        // email never passes through name derivation, and "m:x"@example.com (a
        // valid address) used to reach the snapshot writer and fail every sync
        let mut p = policy();
        p.name_from = NameFrom::Username;
        p.domains.clear();
        p.name_overrides.insert("u-over".into(), "over".into());
        let d = dir(vec![
            DirUser {
                username: Some("mx".into()),
                ..user("u-bad", "\"m:x\"@example.com")
            },
            DirUser {
                username: Some("good".into()),
                ..user("u-good", "good@example.com")
            },
            user("u-over", "\"o:v\"@example.com"),
        ]);
        let r = run(&p, &d, &IdState::default());
        assert_eq!(names_of(&r), ["good"]);
        assert!(
            reason(&r, "u-bad").contains("cannot store"),
            "{}",
            reason(&r, "u-bad")
        );
        assert!(reason(&r, "u-over").contains("cannot store"));
        zt_snapshot::build(&r.content).expect("the good person publishes");
    }

    #[test]
    fn a_held_name_waits_for_its_holder_until_released() {
        let p = policy();
        let alice = DirUser {
            created: Some("2020-01-01T00:00:00Z".into()),
            ssh_keys: Vec::new(),
            ..user("u-alice", "alice@example.com")
        };
        // an older account with the same local part on a subdomain-free alias
        let claimant = DirUser {
            created: Some("2001-01-01T00:00:00Z".into()),
            ssh_keys: Vec::new(),
            ..user("u-alice2", "Alice@example.com ")
        };
        let first = run(&p, &dir(vec![alice.clone()]), &IdState::default());
        assert_eq!(first.ids.names["alice"], "u-alice");
        // alice is disabled for one sync, and a claimant appears
        let d = dir(vec![
            DirUser {
                enabled: false,
                ..alice.clone()
            },
            DirUser {
                email: "alice@example.com".into(),
                ..claimant.clone()
            },
        ]);
        // (two people with one email are refused anyway: use a distinct one)
        let d = Directory {
            users: d
                .users
                .into_iter()
                .map(|mut u| {
                    if u.id == "u-alice2" {
                        u.email = "alice@example.com".into();
                        u.username = None;
                    }
                    u
                })
                .collect(),
            ..d
        };
        let second = run(&p, &d, &first.ids);
        assert!(names_of(&second).is_empty(), "{:?}", names_of(&second));
        let why = reason(&second, "u-alice2");
        assert!(
            why.contains("held by \"u-alice\"") && why.contains("zt-agent release alice"),
            "{why}"
        );
        assert_eq!(second.ids.names["alice"], "u-alice", "the holder keeps it");
        // the next sync too, with alice gone entirely
        let d3 = Directory {
            users: d
                .users
                .iter()
                .filter(|u| u.id != "u-alice")
                .cloned()
                .collect(),
            ..d.clone()
        };
        let third = run(&p, &d3, &second.ids);
        assert!(names_of(&third).is_empty());
        // an admin releases the name: the claimant gets it
        let mut released = third.ids.clone();
        assert_eq!(released.release_name("alice").as_deref(), Some("u-alice"));
        let fourth = run(&p, &d3, &released);
        assert_eq!(names_of(&fourth), ["alice"]);
        assert_eq!(fourth.content.users[0].idp_id, "u-alice2");
        assert_eq!(fourth.ids.names["alice"], "u-alice2");
    }

    #[test]
    fn a_directory_uid_never_moves_to_someone_else() {
        let p = policy();
        let with_uid = |u: DirUser, uid| DirUser {
            uid: Some(uid),
            ..u
        };
        let alice = user("u-alice", "alice@example.com");
        let bob = user("u-bob", "bob@example.com");
        let first = run(
            &p,
            &dir(vec![with_uid(alice.clone(), 70000)]),
            &IdState::default(),
        );
        assert_eq!(first.content.users[0].uid, 70000);
        let second = run(&p, &dir(vec![with_uid(alice.clone(), 70001)]), &first.ids);
        assert_eq!(second.content.users[0].uid, 70001);
        assert_eq!(second.ids.earlier_users["u-alice"], [70000]);
        let third = run(
            &p,
            &dir(vec![with_uid(alice, 70001), with_uid(bob, 70000)]),
            &second.ids,
        );
        assert_eq!(names_of(&third), ["alice"]);
        assert!(
            reason(&third, "u-bob").contains("already belongs to \"u-alice\""),
            "{}",
            reason(&third, "u-bob")
        );
        // and the persisted file says so
        let text = serde_json::to_string(&third.ids).unwrap();
        let back: IdState = serde_json::from_str(&text).unwrap();
        assert_eq!(back.earlier_users["u-alice"], [70000]);
    }

    fn candidate<'a>(u: &'a DirUser, name: &str, created: i64) -> Candidate<'a> {
        Candidate {
            user: u,
            email: u.email.clone(),
            name: name.into(),
            gecos: String::new(),
            created: Some(created),
        }
    }

    #[test]
    fn names_phase_holder_then_age_then_one_email_per_person() {
        let (a, b, c, d) = (
            user("u-a", "a@example.com"),
            user("u-b", "b@example.com"),
            user("u-c", "c@example.com"),
            user("u-d", "a@example.com"),
        );
        let directory = Directory::default();
        // unheld "x": the older claimant wins; held "y": its holder, though younger
        let holders = BTreeMap::from([("y".to_string(), "u-c".to_string())]);
        let out = names(
            vec![
                candidate(&a, "x", 20),
                candidate(&b, "x", 10),
                candidate(&c, "y", 30),
                candidate(&d, "z", 5),
            ],
            &holders,
            &directory,
            &HashSet::new(),
        );
        let won: Vec<(&str, &str)> = out
            .winners
            .iter()
            .map(|c| (c.name.as_str(), c.user.id.as_str()))
            .collect();
        // u-d (older) takes a@example.com from u-a; oldest first
        assert_eq!(won, [("z", "u-d"), ("x", "u-b"), ("y", "u-c")]);
        let skipped: Vec<&str> = out.skipped.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(skipped, ["u-a"]);
        assert!(
            out.skipped[0]
                .reason
                .contains("already belongs to b@example.com")
        );
        // a held name whose holder is absent goes to nobody
        let out = names(
            vec![candidate(&a, "y", 1)],
            &holders,
            &directory,
            &HashSet::new(),
        );
        assert!(out.winners.is_empty());
        assert!(out.skipped[0].reason.contains("zt-agent release y"));
    }

    /// `chown alice.sre FILE` must not give the file to a person named
    /// "alice.sre" when alice is a zt user or sre a zt group; in any order.
    #[test]
    fn a_held_dotted_name_is_not_taken_away_by_a_newcomer_to_the_plain_name() {
        let holder = user("u-as", "alice.sre@example.com");
        let newcomer = user("u-alice", "alice@example.com");
        let groups = HashSet::from(["ops".to_string()]);
        let run = |holders: &BTreeMap<String, String>| {
            let cands = vec![
                candidate(&holder, "alice.sre", 10),
                candidate(&newcomer, "alice", 5),
            ];
            let out = names(cands, holders, &Directory::default(), &groups);
            let won: Vec<String> = out.winners.iter().map(|c| c.name.clone()).collect();
            (won, out.skipped)
        };
        // alice.sre held it before: the newcomer "alice" is refused, not the holder
        let mut holders = BTreeMap::from([("alice.sre".to_string(), "u-as".to_string())]);
        let (won, skipped) = run(&holders);
        assert_eq!(won, ["alice.sre"]);
        assert!(
            skipped[0].id == "u-alice"
                && skipped[0]
                    .reason
                    .contains("would make \"alice.sre\" (its holder"),
            "{skipped:?}"
        );
        // both new: the older account (here the plain "alice") keeps its name
        let (won, _) = run(&BTreeMap::new());
        assert_eq!(won, ["alice"]);
        // both held (published before this rule): the older account keeps its name
        holders.insert("alice".into(), "u-alice".into());
        let (won, _) = run(&holders);
        assert_eq!(won, ["alice"]);
        // neither held, the dotted account older: it wins, as on every fresh host
        let older_dotted = vec![
            candidate(&holder, "alice.sre", 1),
            candidate(&newcomer, "alice", 5),
        ];
        let out = names(
            older_dotted,
            &BTreeMap::new(),
            &Directory::default(),
            &groups,
        );
        let won: Vec<&str> = out.winners.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(won, ["alice.sre"]);
    }

    #[test]
    fn names_phase_refuses_dotted_names_chown_reads_as_zt_user_and_group() {
        let people: Vec<DirUser> = [
            "u-alice", "u-bob", "u-as", "u-bd", "u-xb", "u-xy", "u-ab", "u-abc",
        ]
        .iter()
        .map(|id| user(id, &format!("{id}@example.com")))
        .collect();
        let named = [
            "alice",
            "bob",
            "alice.sre",
            "bob.dev",
            "x.bob",
            "x.y",
            "a.b",
            "a.b.c",
        ];
        let groups = HashSet::from(["sre".to_string()]);
        let mut order: Vec<usize> = (0..people.len()).collect();
        let mut seen = None;
        for round in 0..people.len() {
            order.rotate_left(1);
            if round % 2 == 1 {
                order.reverse();
            }
            // plain names are the older accounts here (the age rule is tested
            // below), so every dotted clash resolves against the dotted name
            let cands = order
                .iter()
                .map(|&i| {
                    candidate(
                        &people[i],
                        named[i],
                        if named[i].contains('.') { 10 } else { 5 },
                    )
                })
                .collect();
            let out = names(cands, &BTreeMap::new(), &Directory::default(), &groups);
            let mut won: Vec<&str> = out.winners.iter().map(|c| c.name.as_str()).collect();
            won.sort();
            // alice.sre: alice is a zt user (and sre a zt group); bob.dev: bob
            // is; x.bob: bob's private group; a.b.c: "a.b" is published. x.y
            // and a.b read as nothing of zt's
            assert_eq!(won, ["a.b", "alice", "bob", "x.y"], "order {order:?}");
            let mut why: Vec<(String, String)> = out
                .skipped
                .iter()
                .map(|s| (s.id.clone(), s.reason.clone()))
                .collect();
            why.sort();
            if let Some(first) = &seen {
                assert_eq!(&why, first, "same decision in any order");
            }
            seen = Some(why);
        }
        let why = seen.unwrap();
        assert!(
            why.iter()
                .any(|(id, r)| id == "u-as" && r.contains("\"alice\" is another zt user")),
            "{why:?}"
        );
        assert!(
            why.iter()
                .any(|(id, r)| id == "u-xb" && r.contains("private group")),
            "{why:?}"
        );
        // a zt group alone is enough
        let p = user("u-p", "p@example.com");
        let out = names(
            vec![candidate(&p, "nobody.sre", 1)],
            &BTreeMap::new(),
            &Directory::default(),
            &groups,
        );
        assert!(out.winners.is_empty());
        assert!(out.skipped[0].reason.contains("\"sre\" is a zt group"));
    }

    #[test]
    fn ids_phase_gives_each_winner_a_uid_and_gid_phase_avoids_them() {
        let p = policy();
        let (a, b) = (user("u-a", "a@example.com"), user("u-b", "b@example.com"));
        let b = DirUser {
            uid: Some(999),
            ..b
        };
        let winners = [candidate(&a, "a", 1), candidate(&b, "b", 2)];
        let local = LocalAccounts::default();
        let (users, skipped, uids) = user_ids(&p, &local, &winners, &IdState::default());
        assert_eq!(users.len(), 1);
        assert_eq!(
            (users[0].name.as_str(), users[0].home.as_str()),
            ("a", "/home/a")
        );
        assert!(skipped[0].reason.contains("reserved for the system"));
        let host = HostNames::new(&local, &p.reserved_names);
        let present = [(0, vec!["u-a", "u-b"])];
        let (groups, problems, _) = group_gids(
            &p,
            &host,
            &local,
            &present,
            &users,
            &uids,
            &IdState::default(),
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(groups[0].members, ["a"], "only published users are members");
        assert!(idmap::GROUP_IDS.contains(&groups[0].gid));
    }

    #[test]
    fn private_groups_mirror_users() {
        let d = dir(vec![user("u-a", "a@example.com")]);
        let r = run(&policy(), &d, &IdState::default());
        let pg = private_groups(&r.content.users);
        assert_eq!(pg.len(), 1);
        assert_eq!(
            (pg[0].name.as_str(), pg[0].gid),
            ("a", r.content.users[0].uid)
        );
        assert_eq!(pg[0].flags, group_flags::USER_PRIVATE);
    }

    #[test]
    fn hostile_directories_resolve_on_a_small_stack() {
        // a 100,000-deep nesting chain with cycles, through parse and resolve,
        // on a 256 KiB stack: the agent must never crash-loop on directory data
        let chain = crate::directory::nesting::tests::hostile_chain(100_000);
        let json = serde_json::json!({
            "users": [{"id": "u", "email": "u@example.com"}],
            "groups": chain.groups.iter().map(|g| serde_json::json!({
                "id": g.id, "name": g.name, "members": g.members})).collect::<Vec<_>>(),
        })
        .to_string();
        let deep_json = format!(
            "{{\"users\": {}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let out = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut p = policy();
                p.groups[0].id = "g0".into();
                let d = file::parse(&json, "d.json").unwrap();
                let r = resolve_with(&p, &d, &LocalAccounts::default(), &IdState::default());
                // a deep entry is skipped without recursion (serde_json ignores
                // raw values iteratively) and fails its own typed parse at the
                // first level the schema does not expect: only it is left out
                let deep = file::parse(&deep_json, "deep.json").unwrap();
                assert!(deep.users.is_empty());
                let deep = deep.problems.join("\n");
                // connectors parsing untyped JSON rely on the limit itself: it must
                // stay on (no `unbounded_depth` feature)
                let limit = serde_json::from_str::<serde_json::Value>(&deep_json).unwrap_err();
                assert!(limit.to_string().contains("recursion limit"), "{limit}");
                (r.content.users.len(), r.problems.len(), deep)
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert_eq!(out.0, 1);
        assert!(out.1 <= crate::directory::nesting::MAX_PROBLEMS + 1);
        assert!(out.2.starts_with("deep.json:1:"), "{}", out.2);
    }
}
