//! `[[local_groups]]`: members of an IdP group get existing local groups
//! (adm, systemd-journal, docker) as supplementary groups. /etc/group is never
//! edited: the gids go into each member's list in the snapshot, and
//! libnss_zt's initgroups hands them out at login (`id alice` shows them).
//!
//! Some groups are as good as root; granting one of those needs
//! `allow_privileged = true`, and a grant of one without it is refused on its
//! own (the other grants, and the rest of the sync, still apply).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use zt_snapshot::LocalGrantEntry;

use crate::identity::local::LocalAccounts;

/// Local groups whose members are, or can make themselves, root. README.md
/// ("Local group grants") lists them with the reason; keep the two in step.
#[rustfmt::skip]
pub const PRIVILEGED: &[&str] = &[
    // gid 0 and the groups stock sudoers files grant sudo to (Debian/Ubuntu, RHEL, old Ubuntu)
    "root", "sudo", "wheel", "admin",
    // raw disks, kernel memory, password hashes
    "disk", "kmem", "shadow",
    // container and VM managers: a container or VM with the host's / mounted
    "docker", "lxd", "incus", "incus-admin", "libvirt", "libvirt-qemu",
    // Debian: /usr/local is writable by staff and comes first in root's PATH
    "staff",
    // keyboards and other input devices: reads what root types at the console
    "input",
    // Kubernetes on the host: a privileged pod is root
    "microk8s",
];

/// One `[[local_groups]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalGroupRule {
    /// Where it is written, "agent.toml:31".
    pub at: String,
    /// The IdP group id (a configured group).
    pub group_id: String,
    pub grant: Vec<String>,
    pub allow_privileged: bool,
}

/// What the host's own sudoers files name as groups: `%name` (sudo compares
/// group names case-insensitively by default, so these are lowercased) and
/// `%#gid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SudoersGroups {
    pub names: HashSet<String>,
    pub gids: HashSet<u32>,
}

/// Why the local group `gid` counts as privileged, if it does. Decided by
/// gid, not by name: two names in /etc/group may share a gid (`disk` and an
/// alias of it), and the kernel only knows the gid.
fn privileged(gid: u32, local: &LocalAccounts, in_sudoers: &SudoersGroups) -> Option<&'static str> {
    let names = || {
        local
            .gid_by_group
            .iter()
            .filter(move |(_, g)| **g == gid)
            .map(|(n, _)| n.as_str())
    };
    if gid == 0 {
        Some("it has gid 0")
    } else if names().any(|n| PRIVILEGED.contains(&n)) {
        Some("it is as good as root (see README, \"Local group grants\")")
    } else if in_sudoers.gids.contains(&gid)
        || names().any(|n| in_sudoers.names.contains(&n.to_lowercase()))
    {
        Some("this host's own sudoers rules name it (%group)")
    } else {
        None
    }
}

/// The grants for the published groups (`published`: IdP group id -> gid),
/// and a problem for each grant refused.
/// `served`: every gid the snapshot serves itself; a local group sharing one
/// is refused (the gid would mean two groups at once).
pub fn grants(
    rules: &[LocalGroupRule],
    local: &LocalAccounts,
    in_sudoers: &SudoersGroups,
    published: &HashMap<&str, u32>,
    served: &HashSet<u32>,
) -> (Vec<LocalGrantEntry>, Vec<String>) {
    let mut by_group: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut problems = Vec::new();
    for r in rules {
        let Some(&group_gid) = published.get(r.group_id.as_str()) else {
            // not published: no members here, nothing to grant (the group's own
            // problem says why)
            continue;
        };
        for name in &r.grant {
            let Some(&gid) = local.gid_by_group.get(name) else {
                problems.push(format!(
                    "{}: local group {name:?} not granted: /etc/group has no such group",
                    r.at
                ));
                continue;
            };
            if gid == 0 {
                problems.push(format!(
                    "{}: local group {name:?} not granted: it has gid 0, which zt never hands out",
                    r.at
                ));
                continue;
            }
            if served.contains(&gid) {
                problems.push(format!(
                    "{}: local group {name:?} not granted: its gid {gid} is also a zt group's",
                    r.at
                ));
                continue;
            }
            if let Some(why) = privileged(gid, local, in_sudoers)
                && !r.allow_privileged
            {
                problems.push(format!(
                    "{}: local group {name:?} not granted: {why}; add allow_privileged = true \
                     to this [[local_groups]] entry if its members should be root-equivalent",
                    r.at
                ));
                continue;
            }
            let list = by_group.entry(group_gid).or_default();
            if !list.contains(&gid) {
                list.push(gid);
            }
        }
    }
    let mut out: Vec<LocalGrantEntry> = by_group
        .into_iter()
        .map(|(group_gid, mut gids)| {
            gids.sort_unstable();
            LocalGrantEntry { group_gid, gids }
        })
        .collect();
    out.sort_by_key(|g| g.group_gid);
    (out, problems)
}

/// Group names the host's own sudoers files grant rights to (`%name`), read
/// from `main` (/etc/sudoers) and the files sudo reads in `dir`
/// (/etc/sudoers.d; not zt's own `own_file`). A loose scan: a false match only
/// means a grant of that group needs `allow_privileged`.
pub fn sudoers_groups(main: &Path, dir: &Path, own_file: &str) -> SudoersGroups {
    let mut texts = Vec::new();
    let mut seen = HashSet::new();
    read_sudoers(main, dir, own_file, &mut texts, &mut seen, 0);
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            read_sudoers(&f, dir, own_file, &mut texts, &mut seen, 0);
        }
    }
    let mut out = SudoersGroups::default();
    for text in &texts {
        for line in text.lines() {
            let line = line.trim_start();
            if line.starts_with('#') && !line.starts_with("#include") {
                continue;
            }
            for (i, _) in line.match_indices('%') {
                let rest = &line[i + 1..];
                if let Some(digits) = rest.strip_prefix('#') {
                    let digits: String = digits.chars().take_while(char::is_ascii_digit).collect();
                    if let Ok(gid) = digits.parse() {
                        out.gids.insert(gid);
                    }
                    continue;
                }
                let rest = rest.strip_prefix(':').unwrap_or(rest);
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                    .collect();
                if !name.is_empty() {
                    out.names.insert(name.to_lowercase());
                }
            }
        }
    }
    out
}

/// Reads one sudoers file (not UTF-8 bytes replaced) and what it includes
/// (`@include`/`#include` files, `@includedir`/`#includedir` directories, as
/// sudo would: names with `.` or ending in `~` skipped), at most 8 deep.
fn read_sudoers(
    path: &Path,
    zt_dir: &Path,
    own_file: &str,
    texts: &mut Vec<String>,
    seen: &mut HashSet<std::path::PathBuf>,
    depth: usize,
) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let skipped = |n: &str| n.contains('.') || n.ends_with('~');
    if depth > 8
        || !seen.insert(path.to_path_buf())
        || (path.parent() == Some(zt_dir) && name.as_deref() == Some(own_file))
        || (depth > 0 || path.parent() == Some(zt_dir)) && name.as_deref().is_some_and(skipped)
    {
        return;
    }
    let Ok(bytes) = std::fs::read(path) else {
        return;
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(directive), Some(target)) = (words.next(), words.next()) else {
            continue;
        };
        let target = Path::new(target);
        match directive {
            "@include" | "#include" => {
                read_sudoers(target, zt_dir, own_file, texts, seen, depth + 1)
            }
            "@includedir" | "#includedir" if target != zt_dir => {
                if let Ok(entries) = std::fs::read_dir(target) {
                    let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
                    files.sort();
                    for f in files {
                        read_sudoers(&f, zt_dir, own_file, texts, seen, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }
    texts.push(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalAccounts {
        let mut l = LocalAccounts::default();
        l.add_files(
            "",
            "root:x:0:\nadm:x:4:syslog\ndisk:x:6:\nsystemd-journal:x:101:\ndocker:x:998:\nops:x:1200:\n\
             rawdisk:x:6:\nweb:x:1300:\nwheelish:x:1400:\n",
        );
        l
    }

    fn rule(grant: &[&str], allow_privileged: bool) -> LocalGroupRule {
        LocalGroupRule {
            at: "agent.toml:30".into(),
            group_id: "g-dev".into(),
            grant: grant.iter().map(|s| s.to_string()).collect(),
            allow_privileged,
        }
    }

    #[test]
    fn plain_groups_are_granted_and_privileged_ones_need_the_opt_in() {
        let published = HashMap::from([("g-dev", 70001)]);
        let (g, problems) = grants(
            &[rule(&["systemd-journal", "adm", "docker", "disk"], false)],
            &local(),
            &SudoersGroups::default(),
            &published,
            &HashSet::new(),
        );
        assert_eq!(
            g,
            vec![LocalGrantEntry {
                group_gid: 70001,
                gids: vec![4, 101]
            }]
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| p.contains("allow_privileged")));
        assert!(problems[0].contains("agent.toml:30"), "{problems:?}");

        let (g, problems) = grants(
            &[rule(&["docker", "disk", "root"], true)],
            &local(),
            &SudoersGroups::default(),
            &published,
            &HashSet::new(),
        );
        assert_eq!(g[0].gids, vec![6, 998]);
        assert!(problems[0].contains("gid 0"), "{problems:?}");
    }

    #[test]
    fn a_missing_group_is_reported_and_an_unpublished_group_grants_nothing() {
        let (g, problems) = grants(
            &[rule(&["nosuch", "adm"], false)],
            &local(),
            &SudoersGroups::default(),
            &HashMap::from([("g-dev", 70001)]),
            &HashSet::new(),
        );
        assert_eq!(g[0].gids, vec![4]);
        assert!(problems[0].contains("no such group"), "{problems:?}");
        let (g, problems) = grants(
            &[rule(&["adm"], false)],
            &local(),
            &SudoersGroups::default(),
            &HashMap::new(),
            &HashSet::new(),
        );
        assert!(g.is_empty() && problems.is_empty());
    }

    #[test]
    fn a_group_the_hosts_sudoers_names_is_privileged() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/sudoers.d")).unwrap();
        std::fs::write(
            d.path().join("etc/sudoers"),
            "# %commented ALL=(ALL) ALL\nDefaults env_reset\n%sudo ALL=(ALL:ALL) ALL\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/sudoers.d/ops"),
            "%OPS, %:web, %#1400 ALL=(ALL) ALL\n",
        )
        .unwrap();
        std::fs::write(d.path().join("etc/sudoers.d/zt"), "%sre ALL=(ALL) ALL\n").unwrap();
        std::fs::write(d.path().join("etc/sudoers.d/x.bak"), "%bak ALL=(ALL) ALL\n").unwrap();
        // an include outside sudoers.d, with a byte that is not UTF-8
        std::fs::write(
            d.path().join("extra"),
            b"%extraadm ALL=(ALL) ALL # caf\xe9\n",
        )
        .unwrap();
        let mut main = std::fs::read(d.path().join("etc/sudoers")).unwrap();
        main.extend_from_slice(
            format!("@include {}\n", d.path().join("extra").display()).as_bytes(),
        );
        std::fs::write(d.path().join("etc/sudoers"), main).unwrap();
        let found = sudoers_groups(
            &d.path().join("etc/sudoers"),
            &d.path().join("etc/sudoers.d"),
            "zt",
        );
        let want: HashSet<String> = ["sudo", "ops", "web", "extraadm"].map(String::from).into();
        assert_eq!(found.names, want);
        assert_eq!(found.gids, HashSet::from([1400]));
        let (g, problems) = grants(
            &[rule(&["ops", "adm", "wheelish", "web"], false)],
            &local(),
            &found,
            &HashMap::from([("g-dev", 70001)]),
            &HashSet::new(),
        );
        assert_eq!(g[0].gids, vec![4]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems.iter().all(|p| p.contains("sudoers")),
            "{problems:?}"
        );
    }

    #[test]
    fn privilege_follows_the_gid_and_a_zt_gid_is_never_granted() {
        // rawdisk shares disk's gid: as privileged as disk
        let published = HashMap::from([("g-dev", 70001)]);
        let (g, problems) = grants(
            &[rule(&["rawdisk", "ops"], false)],
            &local(),
            &SudoersGroups::default(),
            &published,
            &HashSet::from([1200]),
        );
        assert!(g.is_empty(), "{g:?}");
        assert!(problems[0].contains("as good as root"), "{problems:?}");
        assert!(problems[1].contains("also a zt group"), "{problems:?}");
    }
}
