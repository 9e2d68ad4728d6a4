//! The last phase, run by sync against what was published before: when a sync
//! would remove a large share of users because they are *missing* from the
//! directory (a half-broken export, a deleted or renamed group), those removals
//! are held back: the missing people keep their previous entries until an admin
//! forces the sync or the directory comes back. Everything else still applies at
//! once: additions, changes, explicit disables (`enabled: false`), and removal
//! from a group that is still in the directory. A frozen host must never keep a
//! disabled person: revocation does not wait for the directory to look healthy.

use std::collections::{BTreeSet, HashMap, HashSet};

use zt_snapshot::format::group_flags;
use zt_snapshot::{Content, GroupEntry};

use super::Resolution;
use crate::directory::Directory;

/// Fewer missing people than this are never held back (a normal day's leavers).
pub const MIN_HELD_BACK: usize = 3;

/// What was held back, for the log, status and the sync's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBack {
    /// Names of the missing people whose previous entries were kept.
    pub kept: Vec<String>,
    /// Missing people whose previous entry could not be kept (it now collides
    /// with someone published in this sync), with the reason.
    pub not_kept: Vec<(String, String)>,
    /// Newcomers withdrawn because their dotted name would shadow a kept
    /// person's in chown, with the reason.
    pub shadowing: Vec<(String, String)>,
    /// Users in the previous snapshot.
    pub previous_users: usize,
    pub max_removal_percent: u8,
}

impl HeldBack {
    pub fn message(&self) -> String {
        let missing = self.kept.len() + self.not_kept.len();
        let mut m = format!(
            "held back: {missing} of {} users are missing from the directory (more than \
             max_removal_percent = {}); their entries are kept until the directory has them \
             again or `zt-agent sync --once --force` confirms the removal. Other changes and \
             disables were applied",
            self.previous_users, self.max_removal_percent
        );
        for (name, why) in &self.not_kept {
            m.push_str(&format!("; {name:?} could not be kept: {why}"));
        }
        for (name, why) in &self.shadowing {
            m.push_str(&format!("; {name:?} not published: {why}"));
        }
        m
    }
}

/// Why a previously published user is no longer in `resolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Not in the directory at all, or every login group that admitted them
    /// vanished from it: the kind of removal a broken export causes.
    Missing,
    /// Disabled, removed from a login group that is still there, or changed so
    /// that a rule now refuses them: the directory said so, apply it.
    Explicit,
}

/// Classifies removals of previously published users; built once per sync so
/// each question is a few hash lookups (a mass removal is 100,000 questions).
pub struct Classifier<'a> {
    people: HashMap<&'a str, bool>,
    directory: &'a Directory,
    groups_present: HashSet<&'a str>,
    /// user name -> IdP ids of the login groups that admitted them before.
    login_groups: HashMap<&'a str, Vec<&'a str>>,
}

impl<'a> Classifier<'a> {
    pub fn new(previous: &'a Content, directory: &'a Directory) -> Self {
        let mut login_groups: HashMap<&str, Vec<&str>> = HashMap::new();
        for g in previous
            .groups
            .iter()
            .filter(|g| g.flags & group_flags::LOGIN != 0)
        {
            for m in &g.members {
                login_groups.entry(m).or_default().push(&g.idp_id);
            }
        }
        Classifier {
            people: directory
                .users
                .iter()
                .map(|u| (u.id.as_str(), u.enabled))
                .collect(),
            directory,
            groups_present: directory.groups.iter().map(|g| g.id.as_str()).collect(),
            login_groups,
        }
    }

    /// Why `name` (IdP id `idp_id`), published before, is gone now.
    pub fn classify(&self, name: &str, idp_id: &str) -> Removal {
        match self.people.get(idp_id) {
            // an entry left out as broken or ambiguous is not missing: if any
            // copy of it says disabled, that disable applies now
            None if self.directory.left_out(idp_id) == Some(true) => Removal::Explicit,
            None => Removal::Missing,
            Some(false) => Removal::Explicit,
            Some(true) => match self.login_groups.get(name) {
                Some(groups) if groups.iter().all(|g| !self.groups_present.contains(g)) => {
                    Removal::Missing
                }
                _ => Removal::Explicit,
            },
        }
    }
}

/// Keeps the previous entries of people missing from the directory when there
/// are too many of them (more than `max_percent` of the previous users, and at
/// least [`MIN_HELD_BACK`]) and the sync is not forced. `previous` is the last
/// published content (sync extracts it from the snapshot files). Returns what
/// was held back, or None when the sync applies in full.
pub fn hold_back_removals(
    resolution: &mut Resolution,
    previous: &Content,
    directory: &Directory,
    max_percent: u8,
    force: bool,
) -> Option<HeldBack> {
    let published: HashSet<&str> = resolution
        .content
        .users
        .iter()
        .map(|u| u.idp_id.as_str())
        .collect();
    let classifier = Classifier::new(previous, directory);
    let missing: Vec<usize> = previous
        .users
        .iter()
        .enumerate()
        .filter(|(_, u)| !published.contains(u.idp_id.as_str()))
        .filter(|(_, u)| classifier.classify(&u.name, &u.idp_id) == Removal::Missing)
        .map(|(i, _)| i)
        .collect();
    let total = previous.users.len();
    if force
        || missing.len() < MIN_HELD_BACK
        || missing.len() * 100 <= usize::from(max_percent) * total
    {
        return None;
    }
    let mut held = HeldBack {
        kept: Vec::new(),
        not_kept: Vec::new(),
        shadowing: Vec::new(),
        previous_users: total,
        max_removal_percent: max_percent,
    };
    let content = &mut resolution.content;
    let mut names: HashSet<String> = content.users.iter().map(|u| u.name.clone()).collect();
    names.extend(content.groups.iter().map(|g| g.name.clone()));
    let mut uids: HashSet<u32> = content.users.iter().map(|u| u.uid).collect();
    let mut gids: HashSet<u32> = content.groups.iter().map(|g| g.gid).collect();
    let mut emails: HashSet<String> = content.users.iter().map(|u| u.email.clone()).collect();
    for &i in &missing {
        let u = &previous.users[i];
        let clash = if names.contains(&u.name) {
            Some(format!("the name {:?} is now someone else's", u.name))
        } else if uids.contains(&u.uid) || gids.contains(&u.gid) {
            Some(format!("uid/gid {} is now someone else's", u.uid))
        } else if !u.email.is_empty() && emails.contains(&u.email) {
            Some(format!("the email {:?} is now someone else's", u.email))
        } else {
            None
        };
        if let Some(why) = clash {
            held.not_kept.push((u.name.clone(), why));
            continue;
        }
        names.insert(u.name.clone());
        uids.insert(u.uid);
        gids.insert(u.gid);
        emails.insert(u.email.clone());
        content.users.push(u.clone());
        content.groups.push(GroupEntry {
            name: u.name.clone(),
            gid: u.gid,
            flags: group_flags::USER_PRIVATE,
            idp_id: String::new(),
            members: Vec::new(),
        });
        held.kept.push(u.name.clone());
    }
    keep_memberships(content, previous, &held.kept, &mut names, &mut gids);
    held.shadowing = withdraw_shadowing(resolution, previous, &held.kept);
    resolution.content.users.sort_by(|a, b| a.name.cmp(&b.name));
    Some(held)
}

/// The names phase refused names that chown would confuse with another zt
/// user's, but it could not see the people kept here. A newcomer whose name
/// reads as `kept.group` or `user.kept`, or whose plain name a kept dotted name
/// reads as (`newcomer.group`), would meet a held name in chown: the kept names
/// are held, so such newcomers (published now, not before) are withdrawn from
/// this publication and do not become the holders of their names; their ids
/// stay reserved to them. Returns (name, reason) for each.
fn withdraw_shadowing(
    resolution: &mut Resolution,
    previous: &Content,
    kept: &[String],
) -> Vec<(String, String)> {
    let kept: HashSet<&str> = kept.iter().map(String::as_str).collect();
    let published_before: HashSet<(&str, &str)> = previous
        .users
        .iter()
        .map(|u| (u.name.as_str(), u.idp_id.as_str()))
        .collect();
    // plain names that a kept dotted name reads as, in either position
    let shadowed_by_kept: HashMap<&str, &str> = kept
        .iter()
        .flat_map(|k| {
            k.match_indices('.')
                .flat_map(move |(dot, _)| [(&k[..dot], *k), (&k[dot + 1..], *k)])
        })
        .collect();
    let content = &mut resolution.content;
    let shadowing: Vec<(String, String, String)> = content
        .users
        .iter()
        .filter(|u| !kept.contains(u.name.as_str()))
        .filter(|u| !published_before.contains(&(u.name.as_str(), u.idp_id.as_str())))
        .filter_map(|u| {
            let name = u.name.as_str();
            let dotted = name.match_indices('.').find_map(|(dot, _)| {
                let (x, y) = (&name[..dot], &name[dot + 1..]);
                let held = [x, y].into_iter().find(|part| kept.contains(part))?;
                Some(format!(
                    "{name:?} reads as {x:?}.{y:?} in chown and {held:?} is held back for a \
                     missing person; give this person a [users.name_overrides] entry"
                ))
            });
            let why = dotted.or_else(|| {
                shadowed_by_kept.get(name).map(|k| {
                    format!(
                        "the held-back name {k:?} would read as {name:?}.<group> in chown; \
                         give this person a [users.name_overrides] entry"
                    )
                })
            })?;
            Some((name.to_string(), u.idp_id.clone(), why))
        })
        .collect();
    if shadowing.is_empty() {
        return Vec::new();
    }
    let gone: HashSet<&str> = shadowing.iter().map(|(n, _, _)| n.as_str()).collect();
    let gone_gids: HashSet<u32> = content
        .users
        .iter()
        .filter(|u| gone.contains(u.name.as_str()))
        .map(|u| u.gid)
        .collect();
    content.users.retain(|u| !gone.contains(u.name.as_str()));
    content
        .groups
        .retain(|g| !(g.flags & group_flags::USER_PRIVATE != 0 && gone_gids.contains(&g.gid)));
    for g in &mut content.groups {
        g.members.retain(|m| !gone.contains(m.as_str()));
    }
    // never published, so never the holder: the held names must still win
    // once the directory is whole again
    for (name, idp_id, _) in &shadowing {
        if resolution.ids.names.get(name) == Some(idp_id) {
            resolution.ids.names.remove(name);
        }
    }
    shadowing.into_iter().map(|(n, _, why)| (n, why)).collect()
}

/// Puts the kept people back into the groups they were in: groups still
/// published get them as members again; groups that vanished from the directory
/// come back as they were, with the kept people only.
fn keep_memberships(
    content: &mut Content,
    previous: &Content,
    kept: &[String],
    names: &mut HashSet<String>,
    gids: &mut HashSet<u32>,
) {
    let kept: HashSet<&str> = kept.iter().map(String::as_str).collect();
    let by_idp_id: HashMap<String, usize> = content
        .groups
        .iter()
        .enumerate()
        .filter(|(_, g)| !g.idp_id.is_empty())
        .map(|(i, g)| (g.idp_id.clone(), i))
        .collect();
    for g in previous.groups.iter().filter(|g| !g.idp_id.is_empty()) {
        let returning: Vec<String> = g
            .members
            .iter()
            .filter(|m| kept.contains(m.as_str()))
            .cloned()
            .collect();
        if returning.is_empty() {
            continue;
        }
        match by_idp_id.get(&g.idp_id) {
            Some(&i) => {
                let members: BTreeSet<String> = content.groups[i]
                    .members
                    .drain(..)
                    .chain(returning)
                    .collect();
                content.groups[i].members = members.into_iter().collect();
            }
            None if !names.contains(&g.name) && !gids.contains(&g.gid) => {
                names.insert(g.name.clone());
                gids.insert(g.gid);
                content.groups.push(GroupEntry {
                    members: returning,
                    ..g.clone()
                });
            }
            // the group's name or gid went to another group: the people stay,
            // without this membership
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentConfig;
    use crate::directory::file;
    use crate::identity::local::LocalAccounts;
    use crate::resolve::{IdState, Policy, resolve_with};

    const CONFIG: &str = r#"
[directory]
kind = "file"
path = "/d.json"
[users]
domains = ["example.com"]
[[groups]]
id = "g-sre"
name = "sre"
login = true
[[groups]]
id = "g-ops"
name = "ops"
login = true
"#;

    /// ten people: u0..u6 in sre, u7..u9 in ops (each its only login group)
    fn directory(
        users: &[usize],
        disabled: &[usize],
        sre: &[usize],
        ops: Option<&[usize]>,
    ) -> String {
        let users: Vec<_> = users
            .iter()
            .map(|i| {
                serde_json::json!({"id": format!("u{i}"), "email": format!("p{i}@example.com"),
                                        "enabled": !disabled.contains(i)})
            })
            .collect();
        let ids = |l: &[usize]| l.iter().map(|i| format!("u{i}")).collect::<Vec<_>>();
        let mut groups =
            vec![serde_json::json!({"id": "g-sre", "name": "SRE", "members": ids(sre)})];
        if let Some(ops) = ops {
            groups.push(serde_json::json!({"id": "g-ops", "name": "Ops", "members": ids(ops)}));
        }
        serde_json::json!({"users": users, "groups": groups}).to_string()
    }

    fn resolve(d: &str, prev: &IdState) -> (Resolution, Directory) {
        let policy = Policy::from_config(&AgentConfig::parse(CONFIG, "a").unwrap());
        let d = file::parse(d, "d.json").unwrap();
        (
            resolve_with(&policy, &d, &LocalAccounts::default(), prev),
            d,
        )
    }

    const ALL: [usize; 10] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
    const SRE: [usize; 7] = [0, 1, 2, 3, 4, 5, 6];

    fn names(r: &Resolution) -> Vec<&str> {
        r.content.users.iter().map(|u| u.name.as_str()).collect()
    }

    #[test]
    fn missing_people_are_kept_while_everything_else_applies() {
        let (before, _) = resolve(
            &directory(&ALL, &[], &SRE, Some(&[7, 8, 9])),
            &IdState::default(),
        );
        // u3..u6 vanish, u0 is disabled, u1 leaves sre (still present), u10 arrives
        let mut now = vec![0, 1, 2, 7, 8, 9, 10];
        now.sort();
        let (mut r, d) = resolve(
            &directory(&now, &[0], &[0, 2, 10], Some(&[7, 8, 9])),
            &before.ids,
        );
        assert_eq!(names(&r), ["p10", "p2", "p7", "p8", "p9"]);
        let held = hold_back_removals(&mut r, &before.content, &d, 30, false).unwrap();
        assert_eq!(held.kept, ["p3", "p4", "p5", "p6"]);
        assert_eq!(
            names(&r),
            ["p10", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"]
        );
        // kept exactly as published before, and back in their group
        for name in ["p3", "p6"] {
            let old = before
                .content
                .users
                .iter()
                .find(|u| u.name == name)
                .unwrap();
            assert_eq!(r.content.users.iter().find(|u| u.name == name), Some(old));
        }
        let sre = r.content.groups.iter().find(|g| g.name == "sre").unwrap();
        assert_eq!(sre.members, ["p10", "p2", "p3", "p4", "p5", "p6"]);
        assert!(
            held.message().contains("4 of 10 users are missing"),
            "{}",
            held.message()
        );
        zt_snapshot::build(&r.content).expect("the kept content is publishable");
        // forced, or under the limit: nothing is kept
        let (mut forced, d) = resolve(
            &directory(&now, &[0], &[0, 2, 10], Some(&[7, 8, 9])),
            &before.ids,
        );
        assert_eq!(
            hold_back_removals(&mut forced, &before.content, &d, 30, true),
            None
        );
        assert_eq!(
            hold_back_removals(&mut forced, &before.content, &d, 50, false),
            None
        );
        assert!(!names(&forced).contains(&"p3"));
    }

    #[test]
    fn a_newcomer_whose_dotted_name_shadows_a_kept_person_is_withdrawn() {
        let (before, _) = resolve(
            &directory(&ALL, &[], &SRE, Some(&[7, 8, 9])),
            &IdState::default(),
        );
        // p3..p6 vanish (held back) while "p3.x" arrives: chown p3.x would
        // give p3's files to the newcomer
        let mut doc: serde_json::Value = serde_json::from_str(&directory(
            &[0, 1, 2, 7, 8, 9],
            &[],
            &[0, 1, 2],
            Some(&[7, 8, 9]),
        ))
        .unwrap();
        doc["users"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"id": "u-dot", "email": "p3.x@example.com"}));
        doc["groups"][0]["members"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!("u-dot"));
        let (mut r, d) = resolve(&doc.to_string(), &before.ids);
        assert!(
            names(&r).contains(&"p3.x"),
            "the names phase could not know"
        );
        let held = hold_back_removals(&mut r, &before.content, &d, 30, false).unwrap();
        assert_eq!(held.kept, ["p3", "p4", "p5", "p6"]);
        assert_eq!(held.shadowing.len(), 1, "{held:?}");
        assert!(
            held.message().contains("\"p3.x\" not published"),
            "{}",
            held.message()
        );
        assert!(!names(&r).contains(&"p3.x"));
        assert!(
            r.content
                .groups
                .iter()
                .all(|g| g.name != "p3.x" && !g.members.iter().any(|m| m == "p3.x"))
        );
        zt_snapshot::build(&r.content).expect("still publishable");
    }

    #[test]
    fn a_newcomer_to_the_plain_name_a_kept_dotted_name_reads_as_is_withdrawn() {
        // before: u3 is "p3.x"
        let mut doc: serde_json::Value =
            serde_json::from_str(&directory(&ALL, &[], &SRE, Some(&[7, 8, 9]))).unwrap();
        doc["users"][3]["email"] = serde_json::json!("p3.x@example.com");
        let (before, _) = resolve(&doc.to_string(), &IdState::default());
        assert!(names(&before).contains(&"p3.x"));
        // u3..u6 vanish (held back) while a newcomer "p3" arrives: chown p3.x
        // would read as p3:x, and "p3" would become the holder of its name
        let mut doc: serde_json::Value = serde_json::from_str(&directory(
            &[0, 1, 2, 7, 8, 9],
            &[],
            &[0, 1, 2],
            Some(&[7, 8, 9]),
        ))
        .unwrap();
        doc["users"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"id": "u-new", "email": "p3@example.com"}));
        doc["groups"][0]["members"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!("u-new"));
        let (mut r, d) = resolve(&doc.to_string(), &before.ids);
        assert!(names(&r).contains(&"p3"));
        let held = hold_back_removals(&mut r, &before.content, &d, 30, false).unwrap();
        assert!(held.kept.contains(&"p3.x".to_string()), "{held:?}");
        assert!(!names(&r).contains(&"p3"), "{:?}", names(&r));
        assert_eq!(
            r.ids.names.get("p3"),
            None,
            "not the holder of a name never published"
        );
        assert_eq!(r.ids.names.get("p3.x").map(String::as_str), Some("u3"));
        zt_snapshot::build(&r.content).expect("still publishable");
    }

    #[test]
    fn disables_in_broken_or_duplicated_entries_are_not_taken_for_missing_people() {
        let (before, _) = resolve(
            &directory(&ALL, &[], &SRE, Some(&[7, 8, 9])),
            &IdState::default(),
        );
        // The admin disables u0..u3. u0..u2's entries also carry a field zt does
        // not know (so they do not parse), and u3 appears twice (so it is
        // ambiguous): none of them is missing, and every disable applies now.
        let mut doc: serde_json::Value =
            serde_json::from_str(&directory(&ALL, &[0, 1, 2, 3], &SRE, Some(&[7, 8, 9]))).unwrap();
        for i in 0..3 {
            doc["users"][i]["department"] = serde_json::json!("x");
        }
        let dup = doc["users"][3].clone();
        doc["users"].as_array_mut().unwrap().push(dup);
        let (mut r, d) = resolve(&doc.to_string(), &before.ids);
        assert_eq!(d.left_out("u0"), Some(true), "{:?}", d.problems);
        assert_eq!(d.left_out("u3"), Some(true), "{:?}", d.problems);
        assert_eq!(
            hold_back_removals(&mut r, &before.content, &d, 30, false),
            None,
            "nobody is missing"
        );
        for gone in ["p0", "p1", "p2", "p3"] {
            assert!(
                !names(&r).contains(&gone),
                "{gone} disabled: {:?}",
                names(&r)
            );
        }
        // a broken entry that does not say disabled is not an explicit removal:
        // a broken export of many such entries is still held back
        let mut doc: serde_json::Value =
            serde_json::from_str(&directory(&ALL, &[], &SRE, Some(&[7, 8, 9]))).unwrap();
        for i in 0..5 {
            doc["users"][i]["department"] = serde_json::json!("x");
        }
        let (mut r, d) = resolve(&doc.to_string(), &before.ids);
        let held = hold_back_removals(&mut r, &before.content, &d, 30, false).unwrap();
        assert_eq!(held.kept, ["p0", "p1", "p2", "p3", "p4"]);
    }

    #[test]
    fn a_vanished_login_group_holds_its_people_and_comes_back_as_it_was() {
        let (before, _) = resolve(
            &directory(&ALL, &[], &SRE, Some(&[7, 8, 9])),
            &IdState::default(),
        );
        // the ops group disappears from the export; its three people are still there
        let (mut r, d) = resolve(&directory(&ALL, &[], &SRE, None), &before.ids);
        assert_eq!(names(&r).len(), 7);
        let held = hold_back_removals(&mut r, &before.content, &d, 20, false).unwrap();
        assert_eq!(held.kept, ["p7", "p8", "p9"]);
        let ops_before = before
            .content
            .groups
            .iter()
            .find(|g| g.name == "ops")
            .unwrap();
        let ops_now = r.content.groups.iter().find(|g| g.name == "ops").unwrap();
        assert_eq!(ops_now, ops_before);
        zt_snapshot::build(&r.content).unwrap();
    }

    #[test]
    fn removals_the_directory_states_are_never_held() {
        let (before, _) = resolve(
            &directory(&ALL, &[], &SRE, Some(&[7, 8, 9])),
            &IdState::default(),
        );
        // everyone disabled, or removed from groups that are still there
        let (mut r, d) = resolve(
            &directory(&ALL, &[0, 1, 2, 3, 4, 5, 6], &SRE, Some(&[])),
            &before.ids,
        );
        assert!(names(&r).is_empty());
        assert_eq!(
            hold_back_removals(&mut r, &before.content, &d, 0, false),
            None
        );
        let c = Classifier::new(&before.content, &d);
        assert_eq!(c.classify("p0", "u0"), Removal::Explicit);
        assert_eq!(c.classify("p7", "u7"), Removal::Explicit);
        assert_eq!(c.classify("px", "u-gone"), Removal::Missing);
    }
}
