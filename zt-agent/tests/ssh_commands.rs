//! `zt-agent principals USER` and `zt-agent keys USER` as sshd runs them: a
//! whole process reading only the published pair.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use zt_snapshot::format::group_flags;
use zt_snapshot::{Content, GroupEntry, SharedAccountEntry, StateDir};

const ED: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";

fn content() -> Content {
    let mut alice = zt_published::testing::user("alice", 1_500_001);
    alice.principals = vec!["alice".into()];
    alice.ssh_keys = vec![ED.into()];
    let mut bob = zt_published::testing::user("bob", 1_500_002);
    bob.principals = vec!["bob".into(), "bob@example.com".into()];
    let mut carol = zt_published::testing::user("carol", 1_500_003);
    carol.principals = vec!["carol".into()];
    Content {
        generation: 1,
        synced_at: 1_700_000_000,
        users: vec![alice, bob, carol],
        groups: vec![
            zt_published::testing::upg("alice", 1_500_001),
            zt_published::testing::upg("bob", 1_500_002),
            zt_published::testing::upg("carol", 1_500_003),
            GroupEntry {
                name: "sre".into(),
                gid: 1_500_100,
                flags: group_flags::LOGIN,
                idp_id: "g-sre".into(),
                members: vec!["alice".into(), "bob".into()],
            },
            GroupEntry {
                name: "staff".into(),
                gid: 1_500_101,
                flags: group_flags::LOGIN,
                idp_id: "g-staff".into(),
                members: vec!["carol".into()],
            },
        ],
        shared_accounts: vec![SharedAccountEntry {
            name: "sysadmin".into(),
            groups: vec!["g-sre".into(), "g-gone".into()],
        }],
        ..Content::default()
    }
}

fn run(state: &Path, args: &[&str], as_nobody: bool) -> (String, String, i32) {
    let bin = env!("CARGO_BIN_EXE_zt-agent");
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            bin,
        ]);
        c
    } else {
        Command::new(bin)
    };
    let out = cmd
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        out.status.code().unwrap_or(-1),
    )
}

fn publish(reader_gid: Option<u32>) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = tmp.path().join("state");
    let dir = StateDir::open_or_create(&state).unwrap();
    let mut built = zt_snapshot::build(&content()).unwrap();
    built.restamp(1, 1_700_000_000);
    dir.publish_for(&built, reader_gid).unwrap();
    (tmp, state)
}

#[test]
fn principals_and_keys_from_the_published_pair() {
    let (_tmp, state) = publish(None);
    let meta = std::fs::metadata(state.join("private")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    // own principal
    assert_eq!(run(&state, &["principals", "alice"], false).0, "alice\n");
    assert_eq!(
        run(&state, &["principals", "bob"], false).0,
        "bob\nbob@example.com\n"
    );
    // a shared account: every current member of its groups
    assert_eq!(
        run(&state, &["principals", "sysadmin"], false).0,
        "alice\nbob\nbob@example.com\n"
    );
    // unknown: nothing, exit 0
    for who in ["nobody-here", "root", ""] {
        let (out, _, code) = run(&state, &["principals", who], false);
        assert_eq!((out.as_str(), code), ("", 0), "{who}");
    }
    // keys
    assert_eq!(run(&state, &["keys", "alice"], false).0, format!("{ED}\n"));
    assert_eq!(
        run(&state, &["keys", "bob"], false),
        (String::new(), String::new(), 0)
    );
    assert_eq!(run(&state, &["keys", "sysadmin"], false).0, "");
    // no published files: nothing, exit 0, the reason on stderr
    let (out, err, code) = run(&state.join("missing"), &["principals", "alice"], false);
    assert_eq!((out.as_str(), code), ("", 0));
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn an_unprivileged_reader_group_reads_a_0640_private_file() {
    // nogroup (65534) stands in for the .deb's `zt` group here
    let (_tmp, state) = publish(Some(65534));
    let meta = std::fs::metadata(state.join("private")).unwrap();
    assert_eq!(
        (meta.mode() & 0o777, meta.gid(), meta.uid()),
        (0o640, 65534, 0)
    );
    if unsafe { libc_geteuid() } != 0 {
        return; // setpriv needs root
    }
    assert_eq!(run(&state, &["principals", "alice"], true).0, "alice\n");
    assert_eq!(
        run(&state, &["principals", "sysadmin"], true).0,
        "alice\nbob\nbob@example.com\n"
    );
    assert_eq!(run(&state, &["keys", "alice"], true).0, format!("{ED}\n"));
    // 0600: the same user reads nothing and says why
    let (_tmp2, state2) = publish(None);
    let (out, err, code) = run(&state2, &["principals", "alice"], true);
    assert_eq!((out.as_str(), code), ("", 0));
    assert!(!err.is_empty());
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
