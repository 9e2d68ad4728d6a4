//! snapshot-from-files PASSWD GROUP OUT
//!
//! Builds a zt snapshot holding exactly the non-system users (uid >= 1000,
//! except 65534) of PASSWD and the non-system groups (gid >= 1000, except
//! 65534) of GROUP: same names, uids, gids (a user keeps the primary gid the
//! file gives it, even a system one such as 100 "users"), gecos, home, shell
//! and group member lists. It lets the glibc benchmark (bench/nss/run.sh) have
//! zt serve the very data set `files` serves.
//!
//! OUT is written atomically (temp file in the same directory, fsync, rename)
//! with mode 0644, like zt-agent publishes. If OUT's file name is `snapshot`,
//! it is published as the agent does (`StateDir::publish`: the `private` twin,
//! then the snapshot, then the `generation` file), so nss_zt finds the
//! published layout of /var/lib/zt.
//!
//! Group members that are not users of the snapshot (a system user listed in a
//! non-system group) are left out and counted on stderr.

use std::collections::HashSet;
use std::path::Path;
use std::process::ExitCode;

use zt_snapshot::{Content, GroupEntry, UserEntry};

const GENERATION: u64 = 1;

fn regular_id(id: u32) -> bool {
    id >= 1000 && id != 65534
}

fn users_from(passwd: &str) -> Result<Vec<UserEntry>, String> {
    let mut users = Vec::new();
    for (n, line) in passwd.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(':').collect();
        let [name, _pw, uid, gid, gecos, home, shell] = f[..] else {
            return Err(format!("passwd line {}: expected 7 fields", n + 1));
        };
        let uid: u32 = uid
            .parse()
            .map_err(|_| format!("passwd line {}: bad uid {uid:?}", n + 1))?;
        let gid: u32 = gid
            .parse()
            .map_err(|_| format!("passwd line {}: bad gid {gid:?}", n + 1))?;
        if !regular_id(uid) {
            continue;
        }
        users.push(UserEntry {
            name: name.to_string(),
            uid,
            gid,
            gecos: gecos.to_string(),
            home: home.to_string(),
            shell: shell.to_string(),
            email: String::new(),
            idp_id: format!("files:{name}"),
            principals: Vec::new(),
            ssh_keys: Vec::new(),
        });
    }
    Ok(users)
}

/// Groups and the number of member names left out (not users of the snapshot).
fn groups_from(group: &str, users: &HashSet<&str>) -> Result<(Vec<GroupEntry>, usize), String> {
    let mut groups = Vec::new();
    let mut dropped = 0;
    for (n, line) in group.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(':').collect();
        let [name, _pw, gid, members] = f[..] else {
            return Err(format!("group line {}: expected 4 fields", n + 1));
        };
        let gid: u32 = gid
            .parse()
            .map_err(|_| format!("group line {}: bad gid {gid:?}", n + 1))?;
        if !regular_id(gid) {
            continue;
        }
        let mut kept = Vec::new();
        for m in members.split(',').filter(|m| !m.is_empty()) {
            if users.contains(m) {
                kept.push(m.to_string());
            } else {
                dropped += 1;
            }
        }
        groups.push(GroupEntry {
            name: name.to_string(),
            gid,
            flags: 0,
            idp_id: format!("files:{name}"),
            members: kept,
        });
    }
    Ok((groups, dropped))
}

fn run(passwd: &Path, group: &Path, out: &Path) -> Result<String, String> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let users = users_from(&read(passwd)?)?;
    let names: HashSet<&str> = users.iter().map(|u| u.name.as_str()).collect();
    let (groups, dropped) = groups_from(&read(group)?, &names)?;
    let synced_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let content = Content {
        generation: GENERATION,
        synced_at,
        users,
        groups,
        ..Content::default()
    };
    let built = zt_snapshot::build(&content).map_err(|e| format!("cannot build: {e}"))?;
    zt_snapshot::Pair::parse(&built.public, &built.private)
        .and_then(|p| p.verify_all())
        .map_err(|e| format!("built snapshot does not read back: {e}"))?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: not a file name", out.display()))?;
    // The benchmark's directory is its own (and may belong to the user running it).
    // SAFETY: geteuid has no preconditions.
    let state = zt_snapshot::StateDir::open_or_create_owned_by(dir, unsafe { libc::geteuid() })
        .map_err(|e| e.to_string())?;
    if name == "snapshot" {
        state.publish(&built)
    } else {
        state.write_atomic(name, &built.public, 0o644)
    }
    .map_err(|e| format!("{}: {e}", out.display()))?;
    let bytes = built.public;
    Ok(format!(
        "{}: {} users, {} groups, {} bytes{}",
        out.display(),
        content.users.len(),
        content.groups.len(),
        bytes.len(),
        if dropped > 0 {
            format!(" ({dropped} member names that are not snapshot users left out)")
        } else {
            String::new()
        }
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, passwd, group, out] = &args[..] else {
        eprintln!("usage: snapshot-from-files PASSWD GROUP OUT");
        return ExitCode::from(2);
    };
    match run(Path::new(passwd), Path::new(group), Path::new(out)) {
        Ok(msg) => {
            eprintln!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("snapshot-from-files: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_regular_ids_and_known_members() {
        let users = users_from(
            "root:x:0:0:root:/root:/bin/bash\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
             u1:x:100001:100:Bench User 1:/home/u1:/bin/bash\n\
             u2:x:100002:100::/home/u2:/bin/sh\n",
        )
        .unwrap();
        assert_eq!(
            users
                .iter()
                .map(|u| (u.name.as_str(), u.uid, u.gid))
                .collect::<Vec<_>>(),
            [("u1", 100001, 100), ("u2", 100002, 100)]
        );
        assert_eq!(users[0].gecos, "Bench User 1");
        let names: HashSet<&str> = users.iter().map(|u| u.name.as_str()).collect();
        let (groups, dropped) = groups_from(
            "users:x:100:u1\nnogroup:x:65534:\ng1:x:300001:u1,root,u2\ng2:x:300002:\n",
            &names,
        )
        .unwrap();
        assert_eq!(dropped, 1);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].members, ["u1", "u2"]);
        assert!(groups[1].members.is_empty());
        let content = Content {
            generation: 1,
            synced_at: 0,
            users,
            groups,
            ..Content::default()
        };
        let bytes = zt_snapshot::build(&content).unwrap().public;
        let s = zt_snapshot::Snapshot::parse(&bytes).unwrap();
        let u1 = s.user_by_name(b"u1").unwrap().unwrap();
        assert_eq!(u1.groups.iter().collect::<Vec<_>>(), [300001]);
    }
}
