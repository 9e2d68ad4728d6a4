//! zt-agent + libnss_zt.so.2 through the real glibc (getent, id, getgrouplist),
//! each test in its own private host (see src/lib.rs).

use serde_json::{Value, json};
use zt_e2e::{Host, text};

fn people() -> Value {
    json!({
      "users": [
        {"id": "u-alice", "email": "alice@example.com", "display_name": "Alice Liddell", "created": "2024-02-01T10:00:00Z"},
        {"id": "u-bob", "email": "Bob@Example.com", "display_name": "Bob", "created": "2024-03-01T10:00:00Z"},
        {"id": "u-carol", "email": "carol.jones@example.com", "display_name": "Carol", "enabled": false},
        {"id": "u-dave", "email": "dave@example.com", "display_name": "Dave (not in a login group)"},
        {"id": "u-root", "email": "root@example.com"}
      ],
      "groups": [
        {"id": "g-sre", "name": "SRE", "members": ["u-alice", "g-oncall", "u-carol", "u-root"]},
        {"id": "g-oncall", "name": "On call", "members": ["u-bob"]},
        {"id": "g-dev", "name": "Developers", "members": ["u-alice", "u-dave"]}
      ]
    })
}

fn field(line: &str, n: usize) -> String {
    line.trim()
        .split(':')
        .nth(n)
        .unwrap_or_default()
        .to_string()
}

fn synced_host() -> Host {
    let h = Host::new();
    h.write_directory(&people());
    h.sync();
    h
}

#[test]
fn directory_people_resolve_like_local_users() {
    let h = synced_host();
    let (rc, alice) = h.getent(&["passwd", "alice"]);
    assert_eq!(rc, 0, "getent passwd alice");
    let uid = field(&alice, 2);
    assert_eq!(
        alice.trim(),
        format!("alice:*:{uid}:{uid}:Alice Liddell:/home/alice:/bin/bash")
    );
    let uid_n: u32 = uid.parse().unwrap();
    assert!(
        (1_879_048_192..=2_013_265_919).contains(&uid_n),
        "uid {uid_n} outside the user range"
    );

    let (rc, by_uid) = h.getent(&["passwd", &uid]);
    assert_eq!((rc, by_uid.clone()), (0, alice.clone()));

    let (rc, sre) = h.getent(&["group", "sre"]);
    assert_eq!(rc, 0);
    assert_eq!(
        field(&sre, 3),
        "alice,bob",
        "nested member bob through On call: {sre}"
    );
    let (_, dev) = h.getent(&["group", "developers"]);
    assert_eq!(
        field(&dev, 3),
        "alice",
        "dave is not a login member, so not listed: {dev}"
    );
    let (rc, by_gid) = h.getent(&["group", &field(&sre, 2)]);
    assert_eq!((rc, by_gid), (0, sre.clone()), "getent group <gid>");
    let (rc, upg) = h.getent(&["group", "alice"]);
    assert_eq!((rc, field(&upg, 2)), (0, uid.clone()), "user private group");

    // id goes through initgroups_dyn
    let o = h.run(&["id", "alice"]);
    let id = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        id.contains(&format!("uid={uid}(alice) gid={uid}(alice)")),
        "{id}"
    );
    assert!(id.contains("(sre)") && id.contains("(developers)"), "{id}");
    // getgrouplist with alice's own primary gid, as id, login and sshd call it
    let o = h.run(&["id", "-G", "alice"]);
    let (_, dev_line) = h.getent(&["group", "developers"]);
    let mut expect = vec![uid.clone(), field(&sre, 2), field(&dev_line, 2)];
    expect.sort();
    let ids = text(&o.stdout);
    let mut got: Vec<String> = ids.split_whitespace().map(str::to_string).collect();
    got.sort();
    assert_eq!(
        got, expect,
        "alice's groups: her own + sre + developers: {ids}"
    );
    // `getent initgroups` passes no primary gid ((gid_t)-1): zt answers only
    // for the primary gid of its own user, so it adds nothing there.
    let (_, ig) = h.getent(&["initgroups", "alice"]);
    assert_eq!(ig.split_whitespace().collect::<Vec<_>>(), ["alice"], "{ig}");

    // bob's name came from an upper-case email
    assert_eq!(h.getent(&["passwd", "bob"]).0, 0);
}

#[test]
fn a_local_account_sharing_a_zt_name_does_not_get_zt_groups() {
    let h = synced_host();
    let (_, sre) = h.getent(&["group", "sre"]);
    let sre_gid = field(&sre, 2);
    assert!(!sre_gid.is_empty(), "{sre}");
    // Positive control: zt's alice is in sre.
    let o = h.run(&["id", "alice"]);
    let id = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(id.contains(&format!("{sre_gid}(sre)")), "{id}");

    // A local alice appears (no re-sync): files answers getpwnam first, and id
    // calls getgrouplist with the local account's primary gid.
    h.add_local_user("alice", 4242);
    let o = h.run(&["id", "alice"]);
    let id = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(id.contains("uid=4242(alice) gid=4242(alice)"), "{id}");
    assert!(
        !id.contains("sre") && !id.contains(&sre_gid) && !id.contains("developers"),
        "the local alice got zt's groups: {id}"
    );
    let o = h.run(&["id", "-G", "alice"]);
    assert_eq!(text(&o.stdout).trim(), "4242");
}

#[test]
fn enumeration_lists_directory_users_after_local_ones() {
    let h = synced_host();
    let (rc, all) = h.getent(&["passwd"]);
    assert_eq!(rc, 0);
    let names: Vec<String> = all.lines().map(|l| field(l, 0)).collect();
    assert_eq!(names.first().map(String::as_str), Some("root"));
    let zt: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| ["alice", "bob"].contains(n))
        .collect();
    assert_eq!(zt, ["alice", "bob"]);
    let (_, groups) = h.getent(&["group"]);
    for g in ["sre", "developers", "alice", "bob"] {
        assert!(
            groups.lines().any(|l| field(l, 0) == g),
            "group {g} not enumerated"
        );
    }
}

#[test]
fn unknown_disabled_and_non_login_people_do_not_exist() {
    let h = synced_host();
    // positive control: zt answers in this host, so the misses below are zt's
    h.assert_zt_user("alice");
    for name in ["nosuchuser", "carol.jones", "dave"] {
        assert_eq!(
            h.getent(&["passwd", name]).0,
            2,
            "{name} should be unknown (exit 2)"
        );
    }
    // "root" from the directory never shadows the real root
    let (_, root) = h.getent(&["passwd", "root"]);
    assert_eq!(field(&root, 2), "0");
    assert_eq!(h.getent(&["passwd", "root"]).1.lines().count(), 1);
    // nor appears in enumeration, which does list zt's people
    let (_, all) = h.getent(&["passwd"]);
    let names: Vec<String> = all.lines().map(|l| field(l, 0)).collect();
    assert!(names.iter().any(|n| n == "alice"), "{all}");
    assert_eq!(names.iter().filter(|n| *n == "root").count(), 1, "{all}");
    for name in ["nosuchuser", "carol.jones", "dave"] {
        assert!(!names.iter().any(|n| n == name), "{name} enumerated: {all}");
    }
}

#[test]
fn a_local_user_beats_a_directory_user_of_the_same_name() {
    let h = Host::new();
    h.add_local_user("alice", 4242);
    h.write_directory(&people());
    h.sync();
    // positive control: zt serves this host (bob comes from the directory)
    h.assert_zt_user("bob");
    let (_, alice) = h.getent(&["passwd", "alice"]);
    assert_eq!(field(&alice, 2), "4242", "{alice}");
    assert_eq!(h.getent(&["passwd", "alice"]).1.lines().count(), 1);
    let o = h.agent(&["lookup", "alice@example.com"]);
    let said = text(&o.stdout);
    assert!(
        said.contains("name \"alice\" collides with local user"),
        "{said}"
    );
    let o = h.agent(&["status"]);
    assert!(
        text(&o.stdout).contains("collides with local user"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn removal_reaches_a_long_running_process_on_its_next_lookup() {
    let h = synced_host();
    let mut p = h.probe();
    let alice = p.ask("pw alice");
    let bob = p.ask("pw bob");
    assert!(
        alice.starts_with("pw alice:") && bob.starts_with("pw bob:"),
        "{alice} / {bob}"
    );
    let groups_before = p.ask("groups alice");

    // bob leaves the company; erin joins
    let mut d = people();
    d["users"]
        .as_array_mut()
        .unwrap()
        .retain(|u| u["id"] != "u-bob");
    d["users"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "u-erin", "email": "erin@example.com", "display_name": "Erin"}));
    for g in d["groups"].as_array_mut().unwrap() {
        let is_sre = g["id"] == "g-sre";
        let m = g["members"].as_array_mut().unwrap();
        m.retain(|x| x != "u-bob");
        if is_sre {
            m.push(json!("u-erin"));
        }
    }
    h.write_directory(&d);
    h.sync();

    assert_eq!(p.ask("pw bob"), "pw notfound");
    assert_eq!(
        p.ask("pw alice"),
        alice,
        "alice unchanged in the same process"
    );
    assert!(p.ask("pw erin").starts_with("pw erin:"));
    assert_eq!(p.ask("groups alice"), groups_before);
    let sre = p.ask("gr sre");
    assert!(sre.ends_with(":alice,erin"), "{sre}");
    // the uid bob had is not given to erin
    assert_ne!(field(&p.ask("pw erin"), 2), field(&bob, 2));
}

#[test]
fn without_a_snapshot_local_users_resolve_and_directory_lookups_fail_fast() {
    let h = synced_host();
    let mut p = h.probe();
    assert!(p.ask("pw alice").starts_with("pw alice:"));
    std::fs::remove_file(h.path("var/lib/zt/snapshot")).unwrap();

    let started = std::time::Instant::now();
    let (rc, root) = h.getent(&["passwd", "root"]);
    assert_eq!((rc, field(&root, 0)), (0, "root".into()));
    assert_eq!(h.getent(&["passwd", "alice"]).0, 2);
    let o = h.run(&["id", "root"]);
    assert!(o.status.success());
    // liveness, not speed: a missing snapshot must never make lookups wait
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "lookups hung"
    );

    // a running process notices the deletion at its next periodic check (5 s)
    std::thread::sleep(std::time::Duration::from_millis(5500));
    let a = p.ask("pw alice");
    assert!(a == "pw notfound" || a.starts_with("pw error"), "{a}");
    assert!(p.ask("pw root").starts_with("pw root:"));
}

#[test]
fn a_bad_directory_or_config_keeps_the_last_good_snapshot() {
    let h = synced_host();
    let before = std::fs::read(h.path("var/lib/zt/snapshot")).unwrap();

    // a document that is not a directory at all (truncated mid-write) fails the
    // whole read, says where, and keeps the last good snapshot
    let good = serde_json::to_string_pretty(&people()).unwrap();
    std::fs::write(h.path("etc/zt/directory.json"), &good[..good.len() / 2]).unwrap();
    let o = h.agent(&["sync", "--once"]);
    assert_eq!(o.status.code(), Some(65), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("directory.json:") && err.contains("EOF"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(h.path("var/lib/zt/snapshot")).unwrap(),
        before
    );
    assert_eq!(h.getent(&["passwd", "alice"]).0, 0);
    let st = h.agent(&["status"]);
    assert!(!st.status.success(), "status reports the failure");
    assert!(
        text(&st.stdout).contains("last sync: FAILED"),
        "{}",
        text(&st.stdout)
    );

    // one hostile entry (a self-edited display name with a lone surrogate, as
    // Python's json.dumps writes it) next to good people: only that entry is
    // left out, everyone else syncs, and status names the problem. A whole-sync
    // failure here would freeze revocation for everyone.
    let mut d = people();
    d["users"]
        .as_array_mut()
        .unwrap()
        .retain(|u| u["id"] != "u-bob");
    let hostile =
        r#"{"id": "u-mallory", "email": "mallory@example.com", "display_name": "x\ud800y"},"#;
    let doc = serde_json::to_string_pretty(&d).unwrap().replacen(
        "\"users\": [",
        &format!("\"users\": [\n    {hostile}"),
        1,
    );
    assert!(doc.contains("\\ud800"), "{doc}");
    // problems name the document's line, not the entry's
    let line = 1 + doc.lines().position(|l| l.contains("u-mallory")).unwrap();
    std::fs::write(h.path("etc/zt/directory.json"), &doc).unwrap();
    let o = h.agent(&["sync", "--once"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(h.getent(&["passwd", "alice"]).0, 0);
    // the sync really applied: bob's removal went through
    assert_eq!(h.getent(&["passwd", "bob"]).0, 2);
    assert_eq!(h.getent(&["passwd", "mallory"]).0, 2);
    let st = h.agent(&["status"]);
    let out = text(&st.stdout);
    assert!(st.status.success(), "{out}");
    assert!(
        out.contains("problem: ")
            && out.contains(&format!("directory.json:{line}:"))
            && out.contains("\"u-mallory\"")
            && out.contains("left out"),
        "{out}"
    );
    let after_entry = std::fs::read(h.path("var/lib/zt/snapshot")).unwrap();
    assert_ne!(after_entry, before);

    h.write_directory(&people());
    std::fs::write(
        h.path("etc/zt/agent.toml"),
        "[directory]\nkind = \"file\"\npath = \"/x\"\nsync_intervall = \"1m\"\n",
    )
    .unwrap();
    let o = h.agent(&["sync", "--once"]);
    assert_eq!(o.status.code(), Some(78));
    let err = text(&o.stderr);
    assert!(
        err.contains("agent.toml:4:1") && err.contains("sync_intervall"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(h.path("var/lib/zt/snapshot")).unwrap(),
        after_entry
    );
}

#[test]
fn a_mass_removal_is_held_back_unless_forced() {
    let h = Host::new();
    let mut d = json!({"users": [], "groups": [{"id": "g-sre", "name": "SRE", "members": []}]});
    for i in 0..10 {
        d["users"]
            .as_array_mut()
            .unwrap()
            .push(json!({"id": format!("u-{i}"), "email": format!("user{i}@example.com")}));
        d["groups"][0]["members"]
            .as_array_mut()
            .unwrap()
            .push(json!(format!("u-{i}")));
    }
    h.write_directory(&d);
    h.sync();
    // 7 of 10 people vanish from the directory (a broken export), while user0 is
    // disabled, user1 leaves the login group and a newcomer arrives: the missing
    // are kept, everything else applies in the same sync
    d["users"].as_array_mut().unwrap().truncate(3);
    d["users"][0]["enabled"] = json!(false);
    d["users"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "u-new", "email": "newcomer@example.com"}));
    d["groups"][0]["members"] = json!(["u-0", "u-2", "u-new"]);
    h.write_directory(&d);
    let o = h.agent(&["sync", "--once"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "held back has its own exit code: {}",
        text(&o.stderr)
    );
    assert!(
        text(&o.stderr).contains("held back: 7 of 10 users are missing"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(h.getent(&["passwd", "user9"]).0, 0, "the missing are kept");
    assert_eq!(
        h.getent(&["passwd", "user0"]).0,
        2,
        "a disable applies at once"
    );
    assert_eq!(
        h.getent(&["passwd", "user1"]).0,
        2,
        "leaving the group applies"
    );
    assert_eq!(h.getent(&["passwd", "newcomer"]).0, 0, "additions publish");
    let st = h.agent(&["status"]);
    assert_eq!(st.status.code(), Some(1), "monitoring sees it");
    assert!(
        text(&st.stdout).contains("HELD BACK"),
        "{}",
        text(&st.stdout)
    );
    let o = h.agent(&["sync", "--once", "--force"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(h.getent(&["passwd", "user9"]).0, 2);
    assert_eq!(h.getent(&["passwd", "user2"]).0, 0);
}

#[test]
fn the_same_directory_gives_the_same_ids_on_every_host() {
    let a = synced_host();
    let b = Host::new();
    let mut d = people();
    d["users"].as_array_mut().unwrap().reverse();
    b.write_directory(&d);
    b.sync();
    // the same non-empty zt answers: both hosts resolve through zt
    for name in ["alice", "bob"] {
        assert_eq!(a.assert_zt_user(name), b.assert_zt_user(name));
    }
    let (sre_a, sre_b) = (a.getent(&["group", "sre"]), b.getent(&["group", "sre"]));
    assert_eq!(sre_a.0, 0, "getent group sre");
    assert_eq!(field(&sre_a.1, 3), "alice,bob", "{}", sre_a.1);
    assert_eq!(sre_a, sre_b);
}

#[test]
fn a_corrupt_or_untrusted_snapshot_is_refused_and_local_users_still_resolve() {
    let h = synced_host();
    let snap = h.path("var/lib/zt/snapshot");
    let good = std::fs::read(&snap).unwrap();
    use std::os::unix::fs::PermissionsExt;

    // anyone able to write the snapshot could invent users: refuse it
    std::fs::set_permissions(&snap, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(
        h.getent(&["passwd", "alice"]).0,
        2,
        "group/world-writable snapshot refused"
    );
    std::fs::set_permissions(&snap, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(&snap, Some(65534), None).unwrap();
    assert_eq!(
        h.getent(&["passwd", "alice"]).0,
        2,
        "snapshot not owned by root refused"
    );
    std::os::unix::fs::chown(&snap, Some(0), None).unwrap();
    assert_eq!(h.getent(&["passwd", "alice"]).0, 0);

    // the state directory itself: whoever can write it can swap the files, so
    // glibc (through the module) and the agent's read commands refuse it when
    // it is group/world-writable, not root-owned, or a symlink
    let dir = h.path("var/lib/zt");
    let refused = |what: &str| {
        assert_eq!(h.getent(&["passwd", "alice"]).0, 2, "{what}: getent");
        let st = text(&h.agent(&["status"]).stdout);
        assert!(st.contains("not trusted"), "{what}: status says {st}");
        let said = text(&h.agent(&["lookup", "alice"]).stdout);
        assert!(!said.starts_with("alice:*:"), "{what}: lookup says {said}");
    };
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused("world-writable state dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
    refused("user-owned state dir");
    std::os::unix::fs::chown(&dir, Some(0), None).unwrap();
    std::fs::rename(&dir, h.path("var/lib/zt-real")).unwrap();
    std::os::unix::fs::symlink("zt-real", &dir).unwrap();
    refused("symlinked state dir");
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(h.path("var/lib/zt-real"), &dir).unwrap();
    // positive control: the same files, trusted again
    assert_eq!(h.getent(&["passwd", "alice"]).0, 0);
    let st = text(&h.agent(&["status"]).stdout);
    assert!(st.contains("snapshot: generation"), "{st}");
    assert!(text(&h.agent(&["lookup", "alice"]).stdout).starts_with("alice:*:"));

    // garbage in the snapshot: directory lookups fail, nothing crashes
    let mut bad = good.clone();
    for b in bad.iter_mut().skip(64).step_by(7) {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
    for (what, bytes) in [
        ("truncated", &good[..good.len() / 2]),
        ("scrambled", &bad[..]),
        ("empty", &[][..]),
    ] {
        std::fs::write(&snap, bytes).unwrap();
        let (rc, _) = h.getent(&["passwd", "alice"]);
        assert!(rc == 2, "{what}: getent exit {rc}");
        let o = h.run(&["id", "root"]);
        assert!(o.status.success(), "{what}: local users must still resolve");
        let (rc, _) = h.getent(&["group"]);
        assert!(
            rc == 0 || rc == 2,
            "{what}: enumeration must not crash (exit {rc})"
        );
    }
    // the agent notices and replaces it at the next sync
    let o = h.agent(&["sync", "--once"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("unreadable and will be replaced"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(h.getent(&["passwd", "alice"]).0, 0);
}

#[test]
fn generations_only_go_up_even_after_an_unreadable_snapshot() {
    let h = synced_host();
    let generation = || {
        u64::from_le_bytes(
            std::fs::read(h.path("var/lib/zt/generation")).unwrap()[..8]
                .try_into()
                .unwrap(),
        )
    };
    let mut p = h.probe();
    assert!(p.ask("pw bob").starts_with("pw bob:"));
    let g1 = generation();
    std::fs::write(h.path("var/lib/zt/snapshot"), b"garbage").unwrap();
    let mut d = people();
    d["users"]
        .as_array_mut()
        .unwrap()
        .retain(|u| u["id"] != "u-bob");
    h.write_directory(&d);
    h.sync();
    assert!(
        generation() > g1,
        "generation went from {g1} to {}",
        generation()
    );
    assert_eq!(
        p.ask("pw bob"),
        "pw notfound",
        "the running process picked up the new snapshot at once"
    );
}

#[test]
fn small_buffers_get_erange_and_big_groups_come_through_whole() {
    let h = Host::new();
    let mut d = json!({"users": [], "groups": [{"id": "g-sre", "name": "SRE", "members": []}]});
    for i in 0..300 {
        d["users"].as_array_mut().unwrap().push(
            json!({"id": format!("u-{i}"), "email": format!("member.number{i:03}@example.com")}),
        );
        d["groups"][0]["members"]
            .as_array_mut()
            .unwrap()
            .push(json!(format!("u-{i}")));
    }
    h.write_directory(&d);
    h.sync();
    // glibc starts getgrnam with a 1 KiB buffer: 300 members need ERANGE and retries
    let (rc, sre) = h.getent(&["group", "sre"]);
    assert_eq!(rc, 0);
    assert_eq!(field(&sre, 3).split(',').count(), 300, "all members listed");
    // ERANGE must come from zt, not from files: a buffer roomy enough for every
    // /etc/passwd line, too small for this person's long gecos
    let longest_local = std::fs::read_to_string(h.path("etc/passwd"))
        .unwrap()
        .lines()
        .map(str::len)
        .max()
        .unwrap();
    let gecos = "G".repeat(longest_local + 400);
    d["users"][7]["display_name"] = json!(gecos);
    h.write_directory(&d);
    h.sync();
    let mut p = h.probe();
    let line = p.ask("pw member.number007");
    assert!(line.contains(&gecos), "{line}");
    let roomy_for_files = longest_local + 64;
    assert_eq!(
        p.ask(&format!("pwbuf {roomy_for_files} member.number007")),
        format!("rc={} found=false", libc_erange())
    );
    assert_eq!(
        p.ask(&format!("pwbuf {} member.number007", line.len() + 8)),
        "rc=0 found=true"
    );
    assert_eq!(
        p.ask(&format!("pwbuf {roomy_for_files} nosuchuser")),
        "rc=0 found=false",
        "a miss is not ERANGE"
    );
}

fn libc_erange() -> i32 {
    34
}

#[test]
fn losing_ids_json_moves_nobody() {
    let h = Host::new();
    h.write_config(&zt_e2e::CONFIG.replace(
        "shell = \"/bin/bash\"",
        "shell = \"/bin/bash\"\ndirectory_uid_range = \"10000-59999\"",
    ));
    // alice's uid came from a directory attribute, not from the hash
    let mut d = people();
    d["users"][0]["uid"] = json!(50000);
    h.write_directory(&d);
    h.sync();
    assert_eq!(field(&h.getent(&["passwd", "alice"]).1, 2), "50000");
    // ids.json is lost (restored backup, careless cleanup) and the attribute
    // is dropped in the IdP: the published snapshot still says who had what
    std::fs::remove_file(h.path("var/lib/zt/ids.json")).unwrap();
    h.write_directory(&people());
    h.sync();
    assert_eq!(
        field(&h.getent(&["passwd", "alice"]).1, 2),
        "50000",
        "uid moved"
    );
    let ids: serde_json::Value =
        serde_json::from_slice(&std::fs::read(h.path("var/lib/zt/ids.json")).unwrap()).unwrap();
    assert_eq!(ids["users"]["u-alice"], json!(50000));
}

#[test]
fn the_world_readable_snapshot_holds_no_email_or_idp_id() {
    use std::os::unix::fs::MetadataExt;
    let h = synced_host();
    // positive control: alice is served, so the snapshot holds her
    assert_eq!(h.getent(&["passwd", "alice"]).0, 0);
    let public = std::fs::read(h.path("var/lib/zt/snapshot")).unwrap();
    assert!(public.windows(5).any(|w| w == b"alice"));
    // (a lone b'@' is 0x40, which integers in the header contain)
    for secret in [&b"@example"[..], b"example.com", b"u-alice", b"g-sre"] {
        assert!(
            !public.windows(secret.len()).any(|w| w == secret),
            "{:?} in the world-readable snapshot",
            text(secret)
        );
    }
    let mode = |rel: &str| std::fs::metadata(h.path(rel)).unwrap().mode() & 0o7777;
    assert_eq!(mode("var/lib/zt/snapshot"), 0o644);
    assert_eq!(mode("var/lib/zt/private"), 0o600);
    assert_eq!(mode("var/lib/zt"), 0o755);
    let private = std::fs::read(h.path("var/lib/zt/private")).unwrap();
    assert!(private.windows(17).any(|w| w == b"alice@example.com"));
    // root's lookup by email goes through the private twin
    let o = h.agent(&["lookup", "alice@example.com"]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        text(&o.stdout).contains("idp id u-alice"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn the_agent_refuses_a_state_directory_someone_else_owns() {
    let h = synced_host();
    let dir = h.path("var/lib/zt");
    std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
    let o = h.agent(&["sync", "--once"]);
    assert!(
        !o.status.success(),
        "sync must refuse an untrusted state dir"
    );
    let err = text(&o.stderr);
    assert!(err.contains("owned by uid 65534"), "{err}");
    std::os::unix::fs::chown(&dir, Some(0), None).unwrap();
    h.sync();
}
