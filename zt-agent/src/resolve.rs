//! The whole identity decision, as one pure function: directory + config + the
//! host's accounts + what was handed out before -> the snapshot content, and a
//! reason for everyone left out.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use zt_snapshot::format::group_flags;
use zt_snapshot::{Content, GroupEntry, UserEntry};

use crate::config::AgentConfig;
use crate::directory::nesting::Nesting;
use crate::directory::{DirUser, Directory};
use crate::identity::idmap::{self, Claim};
use crate::identity::local::LocalAccounts;
use crate::identity::names;

/// What the agent remembers between syncs (/var/lib/zt/ids.json): every id ever
/// handed out, and who holds each name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdState {
    pub users: BTreeMap<String, u32>,
    pub groups: BTreeMap<String, u32>,
    /// POSIX name -> IdP id of the person holding it.
    pub names: BTreeMap<String, String>,
}

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

#[derive(Debug, Clone, Default)]
pub struct Resolution {
    pub content: Content,
    pub skipped: Vec<Skip>,
    /// Problems with the directory or config that are not about one person.
    pub problems: Vec<String>,
    pub ids: IdState,
}

struct Candidate<'a> {
    user: &'a DirUser,
    email: String,
    name: String,
    created: Option<i64>,
}

fn age_key<'c>(c: &'c Candidate<'_>) -> (i64, &'c str) {
    (c.created.unwrap_or(i64::MAX), c.user.id.as_str())
}

/// gecos must not break the passwd line: ':' and control characters become spaces.
fn clean_gecos(s: &str) -> String {
    s.chars()
        .map(|c| if c == ':' || c.is_control() { ' ' } else { c })
        .collect()
}

pub fn resolve(
    config: &AgentConfig,
    dir: &Directory,
    local: &LocalAccounts,
    previous: &IdState,
) -> Resolution {
    let mut out = Resolution::default();
    let nesting = Nesting::new(dir);

    // Configured groups present in the directory, with their transitive members.
    let mut group_members: Vec<(usize, Vec<&str>)> = Vec::new();
    let mut may_log_in: HashSet<&str> = HashSet::new();
    for (i, g) in config.groups.iter().enumerate() {
        let id = g.id.get_ref();
        if !nesting.contains_group(id) {
            out.problems.push(format!(
                "configured group {:?} (id {id:?}) is not in the directory; left out",
                g.name.get_ref()
            ));
            continue;
        }
        let e = nesting.expand(id);
        out.problems.extend(e.problems);
        if g.login {
            may_log_in.extend(e.users.iter().copied());
        }
        group_members.push((i, e.users));
    }
    let configured_names: HashSet<&str> = config
        .groups
        .iter()
        .map(|g| g.name.get_ref().as_str())
        .collect();

    let overrides: HashMap<String, &str> = config
        .users
        .name_overrides
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.get_ref().as_str()))
        .collect();

    // 1. Per-person rules.
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    for u in &dir.users {
        let mut skip = |name: Option<String>, reason: String, notable: bool| {
            out.skipped.push(Skip {
                id: u.id.clone(),
                email: u.email.clone(),
                name,
                reason,
                notable,
            });
        };
        if !u.enabled {
            skip(None, "disabled in the directory".into(), false);
            continue;
        }
        if !may_log_in.contains(u.id.as_str()) {
            skip(
                None,
                "not a member of any login group for this host".into(),
                false,
            );
            continue;
        }
        let email = match names::normalise_email(&u.email) {
            Ok(e) => e,
            Err(e) => {
                skip(None, e, true);
                continue;
            }
        };
        if !names::domain_allowed(&email, config.domains()) {
            skip(
                None,
                format!("email domain is not one of {:?}", config.domains()),
                true,
            );
            continue;
        }
        let created = match u.created_at() {
            Ok(c) => c,
            Err(e) => {
                skip(None, e, true);
                continue;
            }
        };
        let name = match overrides
            .get(&u.id.to_ascii_lowercase())
            .or_else(|| overrides.get(&email))
        {
            Some(n) => Ok(n.to_string()),
            None => names::derive(config.users.name_from, &email, u.username.as_deref()),
        };
        let name = match name {
            Ok(n) => n,
            Err(e) => {
                skip(None, e, true);
                continue;
            }
        };
        if let Some(why) = local.name_conflict(&name) {
            skip(Some(name), why, true);
            continue;
        }
        if configured_names.contains(name.as_str()) {
            skip(
                Some(name.clone()),
                format!("name {name:?} is a configured group's name"),
                true,
            );
            continue;
        }
        candidates.push(Candidate {
            user: u,
            email,
            name,
            created,
        });
    }

    // 2. One name, one person; one email, one person. The current holder keeps a
    // name; otherwise the older account wins. Same decision on every host.
    let mut by_name: BTreeMap<String, Vec<Candidate<'_>>> = BTreeMap::new();
    for c in candidates {
        by_name.entry(c.name.clone()).or_default().push(c);
    }
    let mut winners: Vec<Candidate<'_>> = Vec::new();
    for (name, mut claimants) in by_name {
        let holder = previous.names.get(&name);
        claimants.sort_by(|a, b| {
            let a_holds = Some(&a.user.id) == holder;
            let b_holds = Some(&b.user.id) == holder;
            b_holds
                .cmp(&a_holds)
                .then_with(|| age_key(a).cmp(&age_key(b)))
        });
        let mut rest = claimants.into_iter();
        let Some(winner) = rest.next() else { continue };
        for loser in rest {
            out.skipped.push(Skip {
                id: loser.user.id.clone(),
                email: loser.user.email.clone(),
                name: Some(name.clone()),
                reason: format!(
                    "name {name:?} already belongs to {} (the older account, or its current holder); \
                     give this person a [users.name_overrides] entry",
                    winner.email
                ),
                notable: true,
            });
        }
        winners.push(winner);
    }
    winners.sort_by(|a, b| age_key(a).cmp(&age_key(b)));
    let mut seen_email: HashMap<String, String> = HashMap::new();
    winners.retain(|c| match seen_email.get(&c.email) {
        Some(first) => {
            out.skipped.push(Skip {
                id: c.user.id.clone(),
                email: c.user.email.clone(),
                name: Some(c.name.clone()),
                reason: format!(
                    "email {} is also used by the older account {first}",
                    c.email
                ),
                notable: true,
            });
            false
        }
        None => {
            seen_email.insert(c.email.clone(), c.user.id.clone());
            true
        }
    });

    // 3. uids. Group gids handed out earlier are off limits to users too.
    let earlier_gids: HashSet<u32> = previous.groups.values().copied().collect();
    let claims: Vec<Claim<'_>> = winners
        .iter()
        .map(|c| Claim {
            key: &c.user.id,
            created: c.created,
            explicit: c.user.uid,
        })
        .collect();
    let users_in_use = |id: u32| local.id_in_use(id) || earlier_gids.contains(&id);
    let uids = idmap::allocate(
        "user",
        &claims,
        &idmap::USER_IDS,
        &previous.users,
        &users_in_use,
    );
    let mut users: Vec<UserEntry> = Vec::new();
    let mut visible: HashSet<&str> = HashSet::new();
    for c in &winners {
        let Some(&uid) = uids.granted.get(c.user.id.as_str()) else {
            let reason = uids
                .refused
                .get(c.user.id.as_str())
                .cloned()
                .unwrap_or_else(|| "no uid".into());
            out.skipped.push(Skip {
                id: c.user.id.clone(),
                email: c.user.email.clone(),
                name: Some(c.name.clone()),
                reason,
                notable: true,
            });
            continue;
        };
        visible.insert(&c.user.id);
        out.ids.names.insert(c.name.clone(), c.user.id.clone());
        users.push(UserEntry {
            name: c.name.clone(),
            uid,
            gid: uid,
            gecos: clean_gecos(c.user.display_name.as_deref().unwrap_or("")),
            home: config.users.home.replace("{name}", &c.name),
            shell: config.users.shell.clone(),
            email: c.email.clone(),
            idp_id: c.user.id.clone(),
        });
    }
    users.sort_by(|a, b| a.name.cmp(&b.name));
    let id_to_name: HashMap<&str, &str> = users
        .iter()
        .map(|u| (u.idp_id.as_str(), u.name.as_str()))
        .collect();

    // 4. Directory groups: a name clash with the host is skipped, never shadowed.
    let mut group_claims = Vec::new();
    let mut usable: Vec<&(usize, Vec<&str>)> = Vec::new();
    for entry in &group_members {
        let g = &config.groups[entry.0];
        if let Some(why) = local.name_conflict(g.name.get_ref()) {
            out.problems
                .push(format!("group {:?} left out: {why}", g.name.get_ref()));
            continue;
        }
        usable.push(entry);
        group_claims.push(Claim {
            key: g.id.get_ref(),
            created: None,
            explicit: None,
        });
    }
    // every uid ever handed out, departed people's too: their private group's gid
    let all_uids: HashSet<u32> = uids
        .persisted
        .values()
        .chain(uids.granted.values())
        .copied()
        .collect();
    let groups_in_use = |id: u32| local.id_in_use(id) || all_uids.contains(&id);
    let gids = idmap::allocate(
        "group",
        &group_claims,
        &idmap::GROUP_IDS,
        &previous.groups,
        &groups_in_use,
    );
    let mut groups: Vec<GroupEntry> = Vec::new();
    for (i, members) in usable {
        let g = &config.groups[*i];
        let Some(&gid) = gids.granted.get(g.id.get_ref().as_str()) else {
            out.problems.push(format!(
                "group {:?} left out: {}",
                g.name.get_ref(),
                gids.refused
                    .get(g.id.get_ref().as_str())
                    .map_or("no gid", String::as_str)
            ));
            continue;
        };
        let mut member_names: Vec<String> = members
            .iter()
            .filter_map(|id| id_to_name.get(id).map(|n| n.to_string()))
            .collect();
        member_names.sort();
        groups.push(GroupEntry {
            name: g.name.get_ref().clone(),
            gid,
            flags: if g.login { group_flags::LOGIN } else { 0 },
            idp_id: g.id.get_ref().clone(),
            members: member_names,
        });
    }
    // 5. User private groups, as Debian does: group named after the user, gid = uid.
    for u in &users {
        groups.push(GroupEntry {
            name: u.name.clone(),
            gid: u.gid,
            flags: group_flags::USER_PRIVATE,
            idp_id: String::new(),
            members: Vec::new(),
        });
    }

    out.ids.users = uids.persisted;
    out.ids.groups = gids.persisted;
    out.content = Content {
        generation: 0,
        synced_at: 0,
        users,
        groups,
    };
    out
}

#[cfg(test)]
mod tests {
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
