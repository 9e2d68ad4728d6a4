//! The host's own accounts. Local accounts always win: a directory user or group
//! whose name or id a local one uses is skipped, never shadowed. Read straight
//! from /etc/passwd and /etc/group (never through NSS, which would ask us).

use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Names never handed to a directory person or group, even if absent from this
/// host's files today: packages create their service accounts later with
/// `getent passwd X || useradd X`, and would silently adopt a zt user of that
/// name (and its files, sudo rules, database roles). The list is Debian's
/// base-passwd users and groups, the accounts common server packages create,
/// cloud images' default users, and group names that carry privilege in stock
/// configurations (Ubuntu's default sudoers still grants `%admin`). Also
/// reserved: every name starting with `systemd-` or `_` (Debian's and the BSDs'
/// convention for service accounts), and `[users] reserved_names` in agent.toml.
/// README.md ("The rules") summarises this list: keep the two in step.
#[rustfmt::skip]
pub const RESERVED_NAMES: &[&str] = &[
    // Debian base-passwd: users
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
    "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody",
    // Debian base-passwd: groups
    "adm", "tty", "disk", "kmem", "dialout", "fax", "voice", "cdrom", "floppy", "tape", "sudo",
    "audio", "dip", "operator", "src", "shadow", "utmp", "video", "sasl", "plugdev", "staff",
    "users", "nogroup", "input", "sgx", "kvm", "render", "netdev", "crontab", "ssh",
    // privileged or administrative groups elsewhere
    "admin", "wheel", "docker", "lxd", "libvirt", "libvirt-qemu", "lpadmin", "sambashare",
    // base system services (Debian/Ubuntu)
    "sshd", "messagebus", "syslog", "polkitd", "uuidd", "tcpdump", "tss", "landscape",
    "pollinate", "usbmux", "fwupd-refresh", "dnsmasq", "avahi", "avahi-autoipd", "colord",
    "geoclue", "pulse", "pulse-access", "rtkit", "saned", "whoopsie", "kernoops",
    "speech-dispatcher", "cups-pk-helper", "hplip", "gdm", "sddm", "lightdm", "nm-openvpn",
    "statd", "rpc", "dhcpcd", "ntp", "ntpsec", "chrony", "bind", "named", "ftp", "zt",
    // common server packages
    "postgres", "mysql", "mariadb", "redis", "nginx", "apache", "httpd", "postfix", "postdrop",
    "dovecot", "dovenull", "exim", "opendkim", "clamav", "amavis", "debian-spamd", "squid",
    "mongodb", "elasticsearch", "kibana", "logstash", "grafana", "prometheus",
    "node-exporter", "jenkins", "gitlab-runner", "gitlab", "git", "tomcat", "tomcat9",
    "tomcat10", "rabbitmq", "memcache", "memcached", "haproxy", "varnish", "couchdb",
    "cassandra", "zookeeper", "kafka", "consul", "vault", "nomad", "etcd", "influxdb",
    "telegraf", "zabbix", "nagios", "icinga", "munin", "puppet", "salt", "vsftpd", "proftpd",
    "containerd", "podman", "qemu", "libvirt-dnsmasq", "ceph", "mosquitto", "minio",
    // cloud images' default users
    "ubuntu", "debian", "centos", "fedora", "ec2-user", "cloud-user", "azureuser", "opc",
];

/// True if `name` is reserved by [`RESERVED_NAMES`] or a reserved prefix.
pub fn is_reserved(name: &str) -> bool {
    RESERVED_NAMES.contains(&name) || name.starts_with("systemd-") || name.starts_with('_')
}

/// The system group that may read the private file.
pub const ZT_GROUP: &str = "zt";

fn read_lossy(path: &Path) -> std::io::Result<String> {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The gid of `<root>/etc/group`'s `zt` group, if it has one.
pub fn zt_gid(root: &Path) -> Option<u32> {
    let group = read_lossy(&root.join("etc/group")).ok()?;
    let mut l = LocalAccounts::default();
    l.add_files("", &group);
    l.zt_gid
}

#[derive(Debug, Clone, Default)]
pub struct LocalAccounts {
    pub user_names: HashSet<String>,
    pub group_names: HashSet<String>,
    pub uids: HashSet<u32>,
    pub gids: HashSet<u32>,
    /// Local group name -> gid, for `[[local_groups]]` grants.
    pub gid_by_group: HashMap<String, u32>,
    /// Names listed as members in /etc/group: accounts that exist somewhere
    /// (another NSS source, a package about to create them) even if not in passwd.
    pub member_names: HashSet<String>,
    /// Subordinate id ranges (/etc/subuid, /etc/subgid): ids inside them belong to
    /// someone's user namespaces.
    pub sub_ranges: Vec<(u32, u32)>,
    /// The gid of the host's `zt` group (the .deb's system group that sshd's
    /// `AuthorizedPrincipalsCommandUser` runs as), when /etc/group has one: the
    /// private file is then published 0640 root:zt.
    pub zt_gid: Option<u32>,
}

impl LocalAccounts {
    /// Reads `<root>/etc/{passwd,group,subuid,subgid}`. passwd and group must be readable.
    /// A byte that is not UTF-8 (a Latin-1 gecos from an old `chfn`) is replaced, never
    /// an error: one odd byte must not stop every sync. Names zt hands out are
    /// ASCII, so a replaced byte cannot hide a clash.
    pub fn load(root: &Path) -> std::io::Result<LocalAccounts> {
        let etc = root.join("etc");
        let passwd = read_lossy(&etc.join("passwd"))?;
        let group = read_lossy(&etc.join("group"))?;
        let mut l = LocalAccounts::default();
        l.add_files(&passwd, &group);
        for f in ["subuid", "subgid"] {
            if let Ok(text) = read_lossy(&etc.join(f)) {
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
                    self.gid_by_group.entry(f[0].to_string()).or_insert(gid);
                    if f[0] == ZT_GROUP {
                        self.zt_gid = Some(gid);
                    }
                }
                if let Some(members) = f.get(3) {
                    self.member_names.extend(
                        members
                            .split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(String::from),
                    );
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
        HostNames::new(self, &[]).conflict(name)
    }

    /// True if a local account or subordinate range uses this id (as uid or gid:
    /// a user private group makes every uid a gid too).
    pub fn id_in_use(&self, id: u32) -> bool {
        self.uids.contains(&id)
            || self.gids.contains(&id)
            || self.sub_ranges.iter().any(|&(a, b)| a <= id && id <= b)
    }
}

/// The names that belong to this host: its accounts plus the reserved names,
/// including the ones agent.toml adds.
#[derive(Debug, Clone, Copy)]
pub struct HostNames<'a> {
    local: &'a LocalAccounts,
    extra_reserved: &'a [String],
}

impl<'a> HostNames<'a> {
    pub fn new(local: &'a LocalAccounts, extra_reserved: &'a [String]) -> Self {
        HostNames {
            local,
            extra_reserved,
        }
    }

    fn reserved(&self, name: &str) -> bool {
        is_reserved(name) || self.extra_reserved.iter().any(|r| r == name)
    }

    /// A user name of the host's (or one it will have).
    fn user_taken(&self, name: &str) -> bool {
        self.local.user_names.contains(name)
            || self.local.member_names.contains(name)
            || self.reserved(name)
    }

    /// A group name of the host's (or one it will have).
    fn group_taken(&self, name: &str) -> bool {
        self.local.group_names.contains(name) || self.reserved(name)
    }

    /// Why `name` cannot be given to a directory user or group, if it cannot.
    pub fn conflict(&self, name: &str) -> Option<String> {
        if self.local.user_names.contains(name) {
            return Some(format!("name {name:?} collides with local user"));
        }
        if self.local.group_names.contains(name) {
            return Some(format!("name {name:?} collides with local group"));
        }
        if self.local.member_names.contains(name) {
            return Some(format!(
                "name {name:?} is listed as a member in /etc/group (an account of this host)"
            ));
        }
        if self.reserved(name) {
            return Some(format!("name {name:?} is reserved for the system"));
        }
        // GNU chown/chgrp read "X.Y" as user X, group Y once no user "X.Y" exists
        // (and some tools skip that first try): a directory person "root.root"
        // must not become that user.
        for (dot, _) in name.match_indices('.') {
            let (user, group) = (&name[..dot], &name[dot + 1..]);
            if self.user_taken(user) {
                return Some(format!(
                    "name {name:?} reads as {user:?}.{group:?} (user.group) in chown, and {user:?} is a user of this host"
                ));
            }
            if self.group_taken(group) {
                return Some(format!(
                    "name {name:?} reads as {user:?}.{group:?} (user.group) in chown, and {group:?} is a group of this host"
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_that_is_not_utf8_does_not_stop_the_read() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            b"bob:x:1000:1000:Jos\xe9,,,:/home/bob:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(d.path().join("etc/group"), b"adm:x:4:bob\nzt:x:990:\n").unwrap();
        let l = LocalAccounts::load(d.path()).unwrap();
        assert!(l.user_names.contains("bob") && l.uids.contains(&1000));
        assert_eq!(l.gid_by_group.get("adm"), Some(&4));
        assert_eq!(zt_gid(d.path()), Some(990));
    }

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

    #[test]
    fn dotted_names_that_chown_reads_as_host_user_or_group_are_refused() {
        let mut l = LocalAccounts::default();
        l.add_files(
            "root:x:0:0::/root:/bin/sh
bob:x:1000:1000::/home/bob:/bin/sh
",
            "root:x:0:
devs:x:1001:carol
",
        );
        let extra = ["acme-backup".to_string()];
        let h = HostNames::new(&l, &extra);
        for bad in [
            "root.root",
            "root.x",
            "x.root",
            "bob.anything",
            "any.devs",
            "carol.x",
            "a.b.wheel",
            "postgres.x",
            "x.acme-backup",
            "acme-backup",
        ] {
            assert!(h.conflict(bad).is_some(), "{bad} was allowed");
        }
        let e = h.conflict("root.root").unwrap();
        assert!(e.contains("chown"), "{e}");
        for good in ["first.last", "alice", "alice.liddell", "j.r.r.tolkien"] {
            assert_eq!(h.conflict(good), None, "{good}");
        }
    }

    #[test]
    fn service_accounts_and_group_members_are_taken() {
        let mut l = LocalAccounts::default();
        l.add_files(
            "",
            "docker:x:999:ghost, mallory
",
        );
        for taken in [
            "ghost",
            "mallory",
            "postgres",
            "www-data",
            "nginx",
            "_apt",
            "_chrony",
            "systemd-coredump",
            "gitlab-runner",
            "fwupd-refresh",
            "ubuntu",
        ] {
            assert!(l.name_conflict(taken).is_some(), "{taken}");
        }
    }
}
