//! Publishes a small demo snapshot the way zt-agent does (temp file, fsync,
//! rename, then the generation file updated in place), for trying the module
//! against real glibc and for benchmarks.
//!
//!   cargo run -p nss_zt --example demo_snapshot -- DIR [GENERATION] [EXTRA_USER...]
//!
//! Users alice (1500001) and bob (1500002), each with a private group; groups
//! engineers {alice, bob} (1600001) and admins {alice} (1600002). Each extra
//! user gets the next uid, a private group and membership in engineers.

use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zt_snapshot::{Content, GroupEntry, UserEntry};

fn user(name: &str, uid: u32) -> UserEntry {
    UserEntry {
        name: name.into(),
        uid,
        gid: uid,
        gecos: format!("{name} (demo)"),
        home: format!("/home/{name}"),
        shell: "/bin/bash".into(),
        email: format!("{name}@example.com"),
        idp_id: format!("00000000-0000-0000-0000-{uid:012}"),
    }
}

fn group(name: &str, gid: u32, flags: u32, members: &[String]) -> GroupEntry {
    let idp_id = if flags & zt_snapshot::format::group_flags::USER_PRIVATE != 0 {
        String::new()
    } else {
        format!("grp-{gid}")
    };
    GroupEntry {
        name: name.into(),
        gid,
        flags,
        idp_id,
        members: members.to_vec(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = Path::new(
        args.first()
            .ok_or("usage: demo_snapshot DIR [GENERATION] [EXTRA_USER...]")?,
    );
    let generation: u64 = args.get(1).map(|g| g.parse()).transpose()?.unwrap_or(1);
    let mut names = vec!["alice".to_string(), "bob".to_string()];
    names.extend(args.iter().skip(2).cloned());

    let upg = zt_snapshot::format::group_flags::USER_PRIVATE;
    let mut users = Vec::new();
    let mut groups = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let uid = 1_500_001 + i as u32;
        users.push(user(n, uid));
        groups.push(group(n, uid, upg, &[]));
    }
    groups.push(group("engineers", 1_600_001, 0, &names));
    groups.push(group("admins", 1_600_002, 0, &names[..1]));
    let bytes = zt_snapshot::build(&Content {
        generation,
        synced_at: 1_700_000_000,
        users,
        groups,
    })?;
    zt_snapshot::Snapshot::parse(&bytes)?.verify_all()?;

    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(".snapshot.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("snapshot"))?;

    let g = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(dir.join("generation"))?;
    g.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    g.write_all_at(&generation.to_le_bytes(), 0)?;
    let shown = if names.len() > 4 {
        format!("{} ... {}", names[..3].join(" "), names[names.len() - 1])
    } else {
        names.join(" ")
    };
    println!(
        "published generation {generation} to {} ({} bytes, {} users: {shown})",
        dir.display(),
        bytes.len(),
        names.len()
    );
    Ok(())
}
