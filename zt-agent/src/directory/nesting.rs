//! Nested group expansion: which users does a group contain, directly or through
//! groups inside it. Cycles and dangling ids are reported, not fatal.
//!
//! Directory data is hostile (in many IdPs group owners may create and nest
//! groups), so the walk is iterative with an explicit stack: a chain of 100,000
//! nested groups must not overflow the agent's stack (a crash-looping agent never
//! publishes a removal). Work and memory are linear in the directory's size: each
//! group is entered once, "is it on the current path" is a hash lookup, and
//! problem reports are capped in number and length.

use std::collections::{HashMap, HashSet};

use super::Directory;

/// At most this many problems are reported per expansion; the rest are counted.
pub const MAX_PROBLEMS: usize = 50;
/// A reported cycle shows at most this many groups at each end of its path.
const CYCLE_ENDS_SHOWN: usize = 3;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expansion<'a> {
    /// Transitive user ids, sorted, each once (borrowed from the directory).
    pub users: Vec<&'a str>,
    /// Human-readable problems met on the way (directory strings `{:?}`-escaped).
    pub problems: Vec<String>,
}

pub struct Nesting<'a> {
    groups: HashMap<&'a str, &'a [String]>,
    users: HashSet<&'a str>,
}

/// One group being walked: its id, members, and the next member to look at.
struct Frame<'a> {
    id: &'a str,
    members: &'a [String],
    next: usize,
}

/// Collects problems up to [`MAX_PROBLEMS`], then only counts them.
#[derive(Default)]
struct Problems {
    shown: Vec<String>,
    dropped: usize,
}

impl Problems {
    fn push(&mut self, make: impl FnOnce() -> String) {
        if self.shown.len() < MAX_PROBLEMS {
            self.shown.push(make());
        } else {
            self.dropped += 1;
        }
    }

    fn finish(mut self, root: &str) -> Vec<String> {
        if self.dropped > 0 {
            self.shown.push(format!(
                "... and {} more problems under group {root:?}",
                self.dropped
            ));
        }
        self.shown
    }
}

/// "a -> b -> c -> a", with long paths shortened to their ends.
fn render_cycle(path: &[&str], back_to: &str) -> String {
    let quoted = |ids: &[&str]| ids.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>();
    let mut parts = if path.len() > 2 * CYCLE_ENDS_SHOWN {
        let mut p = quoted(&path[..CYCLE_ENDS_SHOWN]);
        p.push(format!("({} more)", path.len() - 2 * CYCLE_ENDS_SHOWN));
        p.extend(quoted(&path[path.len() - CYCLE_ENDS_SHOWN..]));
        p
    } else {
        quoted(path)
    };
    parts.push(format!("{back_to:?}"));
    parts.join(" -> ")
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
        let mut problems = Problems::default();
        let Some(&members) = self.groups.get(id) else {
            return out;
        };
        // The current path from the root: frames, and each id's position in it.
        let mut stack = vec![Frame {
            id,
            members,
            next: 0,
        }];
        let mut on_path: HashMap<&'a str, usize> = HashMap::from([(id, 0)]);
        let mut entered: HashSet<&'a str> = HashSet::new();
        while let Some(top) = stack.last_mut() {
            let Some(m) = top.members.get(top.next) else {
                on_path.remove(top.id);
                stack.pop();
                continue;
            };
            top.next += 1;
            let (parent, m) = (top.id, m.as_str());
            if self.users.contains(m) {
                out.users.push(m);
            } else if let Some(&inner) = self.groups.get(m) {
                if let Some(&at) = on_path.get(m) {
                    problems.push(|| {
                        let path: Vec<&str> = stack[at..].iter().map(|f| f.id).collect();
                        format!("group cycle {} (ignored)", render_cycle(&path, m))
                    });
                } else if entered.insert(m) {
                    on_path.insert(m, stack.len());
                    stack.push(Frame {
                        id: m,
                        members: inner,
                        next: 0,
                    });
                }
            } else {
                problems.push(|| {
                    format!("group {parent:?} lists {m:?}, which is neither a user nor a group")
                });
            }
        }
        out.users.sort_unstable();
        out.users.dedup();
        out.problems = problems.finish(id);
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::directory::file::parse;
    use crate::directory::{DirGroup, DirUser};

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
                .any(|p| p.contains(r#"cycle "sre" -> "oncall" -> "inner" -> "sre""#)),
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

    /// g0 -> g1 -> ... -> g{n-1} -> user, and every group also lists g0 (a cycle
    /// back to the root at every depth) and a dangling id.
    pub(crate) fn hostile_chain(n: usize) -> Directory {
        let groups = (0..n)
            .map(|i| DirGroup {
                id: format!("g{i}"),
                name: format!("G{i}"),
                members: if i + 1 < n {
                    vec![format!("g{}", i + 1), "g0".into(), format!("ghost{i}")]
                } else {
                    vec!["u".into(), "g0".into()]
                },
            })
            .collect();
        Directory {
            users: vec![DirUser {
                id: "u".into(),
                email: "u@example.com".into(),
                display_name: None,
                enabled: true,
                username: None,
                uid: None,
                created: None,
                ssh_keys: Vec::new(),
            }],
            groups,
            problems: Vec::new(),
            left_out: Default::default(),
        }
    }

    #[test]
    fn a_100k_deep_chain_expands_on_a_small_stack_in_linear_time() {
        let d = hostile_chain(100_000);
        let started = std::time::Instant::now();
        let e = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let n = Nesting::new(&d);
                let e = n.expand("g0");
                (e.users.len(), e.problems)
            })
            .unwrap()
            .join()
            .expect("expansion must not overflow a 256 KiB stack");
        assert_eq!(e.0, 1);
        // 100,000 cycles and 99,999 dangling ids: reported, but capped and short
        assert_eq!(e.1.len(), MAX_PROBLEMS + 1, "{:?}", &e.1[..3]);
        assert!(e.1.iter().all(|p| p.len() < 300), "{:?}", e.1);
        assert!(e.1.last().unwrap().contains("more problems"));
        // a path.contains() cycle check made this quadratic (minutes in debug)
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }
}
