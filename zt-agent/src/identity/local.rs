//! The host's own accounts. Local accounts always win: a directory user or group
//! whose name or id a local one uses is skipped, never shadowed. Read straight
//! from /etc/passwd and /etc/group (never through NSS, which would ask us).

use std::collections::HashSet;
use std::path::Path;

/// Names never handed to a directory person or group, even if absent from this
/// host's files: well-known system accounts, and group names that carry privilege
/// in stock configurations (Ubuntu's default sudoers still grants `%admin`).
pub const RESERVED_NAMES: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "nogroup",
    "adm",
    "admin",
    "sudo",
    "wheel",
    "staff",
    "shadow",
    "disk",
    "kmem",
    "tty",
    "utmp",
    "operator",
    "users",
    "docker",
    "lxd",
    "libvirt",
    "kvm",
    "sshd",
    "messagebus",
    "syslog",
    "polkitd",
    "dialout",
    "video",
    "audio",
    "plugdev",
    "netdev",
    "input",
    "render",
    "crontab",
    "ssh",
    "_apt",
    "zt",
];

#[derive(Debug, Clone, Default)]
pub struct LocalAccounts {
    pub user_names: HashSet<String>,
    pub group_names: HashSet<String>,
    pub uids: HashSet<u32>,
    pub gids: HashSet<u32>,
    /// Subordinate id ranges (/etc/subuid, /etc/subgid): ids inside them belong to
    /// someone's user namespaces.
    pub sub_ranges: Vec<(u32, u32)>,
}

impl LocalAccounts {
    /// Reads `<root>/etc/{passwd,group,subuid,subgid}`. passwd and group must be readable.
    pub fn load(root: &Path) -> std::io::Result<LocalAccounts> {
        let etc = root.join("etc");
        let passwd = std::fs::read_to_string(etc.join("passwd"))?;
        let group = std::fs::read_to_string(etc.join("group"))?;
        let mut l = LocalAccounts::default();
        l.add_files(&passwd, &group);
        for f in ["subuid", "subgid"] {
            if let Ok(text) = std::fs::read_to_string(etc.join(f)) {
                l.add_sub_ranges(&text);
            }
        }
        Ok(l)
    }

    pub fn add_files(&mut self, passwd: &str, group: &str) {
        for line in passwd.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 3 && !f[0].is_empty() {
                self.user_names.insert(f[0].to_string());
                if let Ok(uid) = f[2].parse() {
                    self.uids.insert(uid);
                }
            }
        }
        for line in group.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 3 && !f[0].is_empty() {
                self.group_names.insert(f[0].to_string());
                if let Ok(gid) = f[2].parse() {
                    self.gids.insert(gid);
                }
            }
        }
    }

    pub fn add_sub_ranges(&mut self, text: &str) {
        for line in text.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if let [_, start, count] = f[..]
                && let (Ok(start), Ok(count)) = (start.parse::<u32>(), count.parse::<u32>())
                && count > 0
            {
                self.sub_ranges
                    .push((start, start.saturating_add(count - 1)));
            }
        }
    }

    /// Why a name cannot be given to a directory user or group here, if it cannot.
    pub fn name_conflict(&self, name: &str) -> Option<String> {
        if self.user_names.contains(name) {
            Some(format!("name {name:?} collides with local user"))
        } else if self.group_names.contains(name) {
            Some(format!("name {name:?} collides with local group"))
        } else if RESERVED_NAMES.contains(&name) || name.starts_with("systemd-") {
            Some(format!("name {name:?} is reserved for the system"))
        } else {
            None
        }
    }

    /// True if a local account or subordinate range uses this id (as uid or gid:
    /// a user private group makes every uid a gid too).
    pub fn id_in_use(&self, id: u32) -> bool {
        self.uids.contains(&id)
            || self.gids.contains(&id)
            || self.sub_ranges.iter().any(|&(a, b)| a <= id && id <= b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_from_files() {
        let mut l = LocalAccounts::default();
        l.add_files(
            "root:x:0:0:root:/root:/bin/bash\nbob:x:1000:1000::/home/bob:/bin/bash\n#c:x:5:5\n",
            "root:x:0:\nbob:x:1000:\ndevs:x:1001:bob\n",
        );
        l.add_sub_ranges("bob:100000:65536\n");
        assert_eq!(
            l.name_conflict("bob").unwrap(),
            "name \"bob\" collides with local user"
        );
        assert_eq!(
            l.name_conflict("devs").unwrap(),
            "name \"devs\" collides with local group"
        );
        assert!(l.name_conflict("admin").unwrap().contains("reserved"));
        assert!(l.name_conflict("systemd-network").is_some());
        assert!(l.name_conflict("alice").is_none());
        assert!(l.id_in_use(1001) && l.id_in_use(100000) && l.id_in_use(165535));
        assert!(!l.id_in_use(165536) && !l.id_in_use(5));
    }
}
