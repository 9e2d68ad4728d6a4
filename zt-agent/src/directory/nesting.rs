//! Nested group expansion: which users does a group contain, directly or through
//! groups inside it. Cycles and dangling ids are reported, not fatal.

use std::collections::{HashMap, HashSet};

use super::Directory;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expansion<'a> {
    /// Transitive user ids, sorted, each once (borrowed from the directory).
    pub users: Vec<&'a str>,
    /// Human-readable problems met on the way.
    pub problems: Vec<String>,
}

pub struct Nesting<'a> {
    groups: HashMap<&'a str, &'a [String]>,
    users: HashSet<&'a str>,
}

impl<'a> Nesting<'a> {
    pub fn new(d: &'a Directory) -> Self {
        Nesting {
            groups: d
                .groups
                .iter()
                .map(|g| (g.id.as_str(), g.members.as_slice()))
                .collect(),
            users: d.users.iter().map(|u| u.id.as_str()).collect(),
        }
    }

    pub fn contains_group(&self, id: &str) -> bool {
        self.groups.contains_key(id)
    }

    /// All users inside group `id`, following nested groups.
    pub fn expand(&self, id: &'a str) -> Expansion<'a> {
        let mut out = Expansion::default();
        let mut path: Vec<&str> = Vec::new();
        let mut done: HashSet<&str> = HashSet::new();
        self.walk(id, &mut path, &mut done, &mut out);
        out.users.sort_unstable();
        out.users.dedup();
        out
    }

    fn walk(
        &self,
        id: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut HashSet<&'a str>,
        out: &mut Expansion<'a>,
    ) {
        let Some(&members) = self.groups.get(id) else {
            return;
        };
        path.push(id);
        for m in members.iter() {
            let m = m.as_str();
            if self.users.contains(m) {
                out.users.push(m);
            } else if self.groups.contains_key(m) {
                if path.contains(&m) {
                    let mut cycle: Vec<&str> =
                        path[path.iter().position(|p| *p == m).unwrap_or(0)..].to_vec();
                    cycle.push(m);
                    out.problems
                        .push(format!("group cycle {} (ignored)", cycle.join(" -> ")));
                } else if done.insert(m) {
                    self.walk(m, path, done, out);
                }
            } else {
                out.problems.push(format!(
                    "group {id:?} lists {m:?}, which is neither a user nor a group"
                ));
            }
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::file::parse;

    #[test]
    fn nested_groups_expand_and_problems_are_reported() {
        let d = parse(
            r#"{"users": [{"id": "a", "email": "a@x"}, {"id": "b", "email": "b@x"}, {"id": "c", "email": "c@x"}],
                "groups": [{"id": "sre", "name": "SRE", "members": ["a", "oncall", "ghost"]},
                           {"id": "oncall", "name": "On call", "members": ["b", "inner"]},
                           {"id": "inner", "name": "Inner", "members": ["c", "sre"]}]}"#,
            "d",
        )
        .unwrap();
        let n = Nesting::new(&d);
        let e = n.expand("sre");
        assert_eq!(e.users, ["a", "b", "c"]);
        assert!(
            e.problems
                .iter()
                .any(|p| p.contains("cycle sre -> oncall -> inner -> sre")),
            "{:?}",
            e.problems
        );
        assert!(
            e.problems.iter().any(|p| p.contains("\"ghost\"")),
            "{:?}",
            e.problems
        );
        assert_eq!(n.expand("inner").users.len(), 3);
        assert!(n.expand("nope").users.is_empty());
    }
}
