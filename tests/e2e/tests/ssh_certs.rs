//! SSH certificates and keys end to end: the sshd drop-in zt ships
//! (packaging/sshd/zt.conf) with real sshd inside a PAM host ([`Host::new_pam`]).

use std::collections::BTreeMap;

use zt_e2e::{Host, Sshd};

/// packaging/sshd/zt.conf of this checkout.
fn dropin() -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/sshd/zt.conf");
    let p = p.canonicalize().expect("packaging/sshd/zt.conf");
    p.to_str().expect("utf8").to_owned()
}

/// `sshd -T` lines as keyword -> values.
fn settings(t: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for line in t.lines() {
        if let Some((k, v)) = line.split_once(' ') {
            m.entry(k.to_owned())
                .and_modify(|e: &mut String| {
                    e.push('\n');
                    e.push_str(v);
                })
                .or_insert_with(|| v.to_owned());
        }
    }
    m
}

/// What a Debian admin's sshd_config might say about local accounts; the drop-in is
/// included first, as Debian's main file does with sshd_config.d/*.conf.
const ADMIN: &str = "\
PasswordAuthentication no
PermitRootLogin prohibit-password
AuthorizedKeysFile .ssh/authorized_keys
";

#[test]
fn sshd_accepts_the_dropin_and_it_changes_nothing_for_local_accounts() {
    let h = Host::new_pam();
    let dropin = dropin();
    let (ok, err, with) = Sshd::check_config(&h, &format!("Include {dropin}\n{ADMIN}"), "root");
    assert!(ok, "sshd -t refused the drop-in: {err}");
    let with = settings(&with);
    // the drop-in's settings are the effective ones
    for (k, v) in [
        ("trustedusercakeys", "/etc/ssh/zt_trusted_user_ca_keys"),
        (
            "authorizedprincipalscommand",
            "/usr/sbin/zt-agent principals %u",
        ),
        ("authorizedprincipalscommanduser", "zt"),
        ("authorizedkeyscommand", "/usr/sbin/zt-agent keys %u"),
        ("authorizedkeyscommanduser", "zt"),
        ("exposeauthinfo", "yes"),
        ("kbdinteractiveauthentication", "yes"),
        ("usepam", "yes"),
    ] {
        assert_eq!(with.get(k).map(String::as_str), Some(v), "{k}: {with:?}");
    }
    // without it: the same config otherwise (positive control that -T reflects it)
    let (ok, err, without) = Sshd::check_config(&h, ADMIN, "root");
    assert!(ok, "{err}");
    let without = settings(&without);
    assert_eq!(
        without.get("trustedusercakeys").map(String::as_str),
        Some("none")
    );
    // every difference is one of the drop-in's own keywords; the local-account rules
    // (passwords, root, authorized_keys files) are the admin's
    let dropin_keys = [
        "trustedusercakeys",
        "authorizedprincipalscommand",
        "authorizedprincipalscommanduser",
        "authorizedkeyscommand",
        "authorizedkeyscommanduser",
    ];
    // (each check_config has a port, host key and pid file of its own)
    let harness = ["port", "hostkey", "pidfile", "listenaddress"];
    for (k, v) in &with {
        if without.get(k) != Some(v) && !harness.contains(&k.as_str()) {
            assert!(
                dropin_keys.contains(&k.as_str()),
                "the drop-in changed {k}: {v}"
            );
        }
    }
    for k in [
        "passwordauthentication",
        "permitrootlogin",
        "authorizedkeysfile",
        "pubkeyauthentication",
    ] {
        assert_eq!(with.get(k), without.get(k), "{k}");
        assert!(with.contains_key(k), "{k}");
    }
    assert_eq!(with["passwordauthentication"], "no");
    assert_eq!(with["authorizedkeysfile"], ".ssh/authorized_keys");
    // negative control: sshd -t does check what it is given
    let (ok, _, _) = Sshd::check_config(
        &h,
        &format!("Include {dropin}\nNoSuchKeyword yes\n"),
        "root",
    );
    assert!(!ok, "sshd -t accepted an unknown keyword");
}
