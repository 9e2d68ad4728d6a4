//! The .deb (issue 10): built by scripts/package.sh, checked by lintian, its ELF
//! files checked for stripping and their glibc symbol baseline, then installed,
//! exercised, upgraded, removed, purged and installed again inside Debian 12
//! and Debian 11 chroots by tests/deb/chroot-test.sh (see there for every step).
//! Each chroot is unpacked from a tarball tests/deb/make-chroot.sh makes once
//! (debootstrap, ~50 s), so later runs take seconds. Nothing outside a fresh
//! directory under /var/tmp changes: the script runs in a private mount
//! namespace and in this test binary's network namespace, where the key
//! server for the token issuer listens.

use std::path::{Path, PathBuf};
use std::process::Command;

use zt_e2e::tokens::{self, CF_CERTS_PATH, TEST_AUD, TestKey};
use zt_e2e::{KeysServer, Net};

const TEAM: &str = "zt-test";
/// Debian 12 (glibc 2.36, OpenSSH 9.2), and Debian 11 (glibc 2.31, OpenSSH
/// 8.4, sudo 1.9.5: the oldest release Debian's mirror serves; Ubuntu's archive
/// cannot be reached from here), each unpacked from its own cached tarball.
const SUITES: [(&str, &str); 2] = [
    ("bookworm", "/var/tmp/zt-deb-chroot-bookworm-2.tar"),
    ("bullseye", "/var/tmp/zt-deb-chroot-bullseye-2.tar"),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}",
        out.status
    );
    text
}

/// scripts/package.sh's .deb (it prints the path last).
fn package() -> PathBuf {
    let out = Command::new(repo().join("scripts/package.sh"))
        .output()
        .expect("scripts/package.sh");
    assert!(
        out.status.success(),
        "scripts/package.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let deb = repo().join(stdout.lines().last().expect("package path").trim());
    assert!(deb.exists(), "{} missing", deb.display());
    deb
}

/// The newest GLIBC_x.y version the ELF file needs, as (x, y).
fn newest_glibc(elf: &Path) -> (u32, u32) {
    run(Command::new("objdump").arg("-T").arg(elf))
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .expect("no GLIBC_ symbol versions")
}

#[test]
fn package_installs_upgrades_removes_and_purges_cleanly() {
    let deb = package();

    // lintian: no errors; each remaining warning has an override with its reason
    // (packaging/debian/lintian-overrides).
    let lintian = Command::new("lintian")
        .args(["--fail-on", "error,warning", "--display-info"])
        .arg(&deb)
        .output()
        .expect("lintian (apt-get install lintian; .ci/run does)");
    let report = String::from_utf8_lossy(&lintian.stdout);
    println!("lintian:\n{report}");
    assert!(
        lintian.status.success(),
        "lintian reports errors or warnings:\n{report}{}",
        String::from_utf8_lossy(&lintian.stderr)
    );

    // What the package installs: stripped release builds whose glibc baseline
    // Ubuntu 18.04 (2.27) meets; glibc skips a module it cannot load silently.
    let unpacked = tempfile::tempdir().expect("tempdir");
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(unpacked.path()));
    // DEBIAN/md5sums (cargo-deb writes it): debsums and dpkg --verify check
    // the installed files against it.
    let control = tempfile::tempdir().expect("tempdir");
    run(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(control.path().join("DEBIAN")));
    let md5sums = std::fs::read_to_string(control.path().join("DEBIAN/md5sums"))
        .expect("the package has DEBIAN/md5sums");
    for file in [
        "usr/sbin/zt-agent",
        "lib/x86_64-linux-gnu/security/pam_zt.so",
        "usr/share/zt/sshd_config.d-zt.conf",
    ] {
        assert!(
            md5sums
                .lines()
                .any(|l| l.len() > 34 && l.as_bytes()[32] == b' ' && l.ends_with(file)),
            "md5sums does not cover {file}:\n{md5sums}"
        );
    }
    for elf in [
        "usr/sbin/zt-agent",
        "lib/x86_64-linux-gnu/libnss_zt.so.2",
        "lib/x86_64-linux-gnu/security/pam_zt.so",
    ] {
        let path = unpacked.path().join(elf);
        let sections = run(Command::new("objdump").arg("-h").arg(&path));
        assert!(
            !sections.contains(".debug_") && !sections.contains(".symtab"),
            "{elf} is not stripped"
        );
        let newest = newest_glibc(&path);
        println!("{elf}: newest glibc symbol GLIBC_{}.{}", newest.0, newest.1);
        assert!(
            newest <= (2, 34),
            "{elf} needs GLIBC_{}.{}",
            newest.0,
            newest.1
        );
    }

    // The man pages render without a groff warning.
    for page in ["zt-agent.8", "pam_zt.8", "libnss_zt.8", "agent.toml.5"] {
        let warnings = run(Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(repo().join("packaging/man").join(page)));
        assert!(warnings.trim().is_empty(), "{page}:\n{warnings}");
    }

    // The unit as systemd reads it (every directive known, the sandbox
    // settings valid); ExecStart must name an existing file, so it points at
    // the unpacked binary.
    let unit = std::fs::read_to_string(unpacked.path().join("lib/systemd/system/zt-agent.service"))
        .expect("the package has zt-agent.service");
    // Every writable path is optional ("-"): a host without sudo or
    // node_exporter has no such directory, and a missing path without "-"
    // fails the unit with 226/NAMESPACE.
    let rw: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("ReadWritePaths="))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(rw.contains(&"-/etc/sudoers.d"), "{rw:?}");
    assert!(rw.iter().all(|p| p.starts_with('-')), "{rw:?}");
    let units = tempfile::tempdir().expect("tempdir");
    let agent = unpacked.path().join("usr/sbin/zt-agent");
    std::fs::write(
        units.path().join("zt-agent.service"),
        unit.replace("/usr/sbin/zt-agent", &agent.to_string_lossy()),
    )
    .expect("write unit");
    let verify = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(units.path().join("zt-agent.service")));
    assert!(
        verify.trim().is_empty(),
        "systemd-analyze verify:\n{verify}"
    );

    let keys = KeysServer::start();
    keys.put(CF_CERTS_PATH, &tokens::cf_certs(&[TestKey::Rsa]));
    let token_file = tempfile::NamedTempFile::new().expect("token file");
    let token = tokens::mint(
        TestKey::Rsa,
        &tokens::access_claims(TEAM, TEST_AUD, "alice@example.com", 600),
    );
    std::fs::write(token_file.path(), format!("{token}\n")).expect("write token");

    for (suite, tarball) in SUITES {
        run(Command::new(repo().join("tests/deb/make-chroot.sh"))
            .arg(tarball)
            .arg(suite));
        let net = Net::shared();
        let out = Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", net.holder))
            .args(["unshare", "-m", "--propagation", "private", "bash"])
            .arg(repo().join("tests/deb/chroot-test.sh"))
            .arg(tarball)
            .arg(&deb)
            .arg(keys.url(CF_CERTS_PATH))
            .arg(token_file.path())
            .arg(repo().join("packaging/examples/directory.json"))
            .output()
            .expect("tests/deb/chroot-test.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("=== {suite}\n{stdout}\n{stderr}");
        assert!(
            out.status.success() && stdout.contains("ALL DEB CHECKS PASSED"),
            "tests/deb/chroot-test.sh failed in {suite} ({}):\n{stdout}\n{stderr}",
            out.status
        );
    }
}

/// packaging/debian/zt-nsswitch, the maintainer scripts' nsswitch.conf editor:
/// zt right after files/compat, the rest of each line byte for byte, a second
/// add changes nothing, and remove gives back the exact file.
#[test]
fn nsswitch_editor_adds_zt_after_files_and_removes_exactly_that() {
    let helper = repo().join("packaging/debian/zt-nsswitch");
    let cases = [
        // Debian 12
        (
            "passwd:         files\ngroup:          files\nshadow:         files\n",
            "passwd:         files zt\ngroup:          files zt\nshadow:         files\n",
        ),
        // Ubuntu 18.04: compat, systemd after it
        (
            "passwd:         compat systemd\ngroup:          compat systemd\n",
            "passwd:         compat zt systemd\ngroup:          compat zt systemd\n",
        ),
        // sss, tabs, no blank after the colon, comments untouched; an action
        // block right after files belongs to files: that line is left alone
        (
            "# passwd: files\npasswd:\tfiles sss\ngroup:files [SUCCESS=merge] sss\n",
            "# passwd: files\npasswd:\tfiles zt sss\ngroup:files [SUCCESS=merge] sss\n",
        ),
        (
            "passwd: files [NOTFOUND=return] sss\ngroup: files  [!UNAVAIL=return] sss\n",
            "passwd: files [NOTFOUND=return] sss\ngroup: files  [!UNAVAIL=return] sss\n",
        ),
        // an action block elsewhere on the line is no obstacle
        (
            "group: files sss [SUCCESS=merge] systemd\n",
            "group: files zt sss [SUCCESS=merge] systemd\n",
        ),
        // a comment is never edited, nor read as naming files or zt
        (
            "passwd: sss # files later\ngroup: files # zt later\n",
            "passwd: sss # files later\ngroup: files zt # zt later\n",
        ),
        (
            "passwd: files#no blank before the comment\n",
            "passwd: files zt#no blank before the comment\n",
        ),
        // zt already there (a hand install): that line is not ours to take out
        (
            "passwd: files zt\ngroup: files\n",
            "passwd: files zt\ngroup: files zt\n",
        ),
        // no files/compat on a line: left alone (and said so)
        (
            "passwd: sss\ngroup: files ztx\n",
            "passwd: sss\ngroup: files zt ztx\n",
        ),
    ];
    let lock_dir = tempfile::tempdir().expect("tempdir");
    let lock = lock_dir.path().join("zt-nsswitch.lock");
    for (before, after) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("nsswitch.conf");
        let marker = dir.path().join("marker");
        std::fs::write(&file, before).expect("write");
        let edit = |action: &str| {
            run(Command::new(&helper)
                .env("ZT_NSSWITCH_LOCK", &lock)
                .arg(action)
                .arg(&file)
                .arg(&marker));
            std::fs::read_to_string(&file).expect("read")
        };
        assert_eq!(edit("add"), after, "add to {before:?}");
        assert_eq!(edit("add"), after, "a second add of {before:?}");
        assert_eq!(edit("remove"), before, "remove from {after:?}");
        assert!(!marker.exists(), "marker left after remove");
    }
}

/// zt-nsswitch says why it left a line with an action block alone, and edits
/// a symlinked nsswitch.conf where it points (the link stays a link).
#[test]
fn nsswitch_editor_explains_action_blocks_and_follows_a_symlink() {
    let helper = repo().join("packaging/debian/zt-nsswitch");
    let dir = tempfile::tempdir().expect("tempdir");
    let lock = dir.path().join("lock");
    let marker = dir.path().join("marker");
    let real_dir = dir.path().join("real");
    std::fs::create_dir(&real_dir).expect("mkdir");
    let target = real_dir.join("nsswitch.conf");
    let link = dir.path().join("nsswitch.conf");
    let before = "passwd: files sss\ngroup: files [SUCCESS=merge] sss\n";
    std::fs::write(&target, before).expect("write");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let edit = |action: &str| {
        run(Command::new(&helper)
            .env("ZT_NSSWITCH_LOCK", &lock)
            .arg(action)
            .arg(&link)
            .arg(&marker))
    };
    let said = edit("add");
    assert!(
        said.contains("the group line of") && said.contains("action block"),
        "{said}"
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("stat")
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_to_string(&target).expect("read"),
        "passwd: files zt sss\ngroup: files [SUCCESS=merge] sss\n"
    );
    edit("remove");
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("stat")
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&target).expect("read"), before);
    let left: Vec<_> = std::fs::read_dir(&real_dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("nsswitch.conf")],
        "temp files left"
    );
}
