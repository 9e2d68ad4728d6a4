//! Device-code sign-in end to end, as a person uses it: pamtester and the real sshd
//! (keyboard-interactive) show "open URL and enter the code CODE" from pam_zt.so
//! (module argument `device`), a scripted browser (`device_browser.py`) types the code at
//! the real OIDC provider, signs in and consents, the person presses Enter, and the
//! real zt-agent (`zt-agent run`, its control socket) hands pam_zt the ID token it
//! polled for. The provider's device codes live 8 s here (DEVICE_TTL) so the expired
//! case is quick; its logins carry `amr: ["pwd", "mfa"]`, a login name ending `+nomfa`
//! signs the same person in without MFA.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zt_e2e::device::{Then, device_login};
use zt_e2e::{AgentDaemon, CONFIG, Host, OidcProvider, SshAuth, Sshd};

const SERVICE: &str = "zt-device";

/// The README's device stack: a token, or Enter for a browser sign-in, with a local
/// break-glass password.
const STACK: &str = "\
auth     [success=done ignore=ignore default=die]  pam_zt.so device
auth     required                                   pam_unix.so try_first_pass
account  required   pam_zt.so
account  required   pam_unix.so
session  required   pam_zt.so
session  required   pam_unix.so
";

fn provider() -> &'static OidcProvider {
    static P: OnceLock<OidcProvider> = OnceLock::new();
    P.get_or_init(|| OidcProvider::start_with(&[("DEVICE_TTL", "8")]))
}

fn people() -> Value {
    json!({
        "users": [
            {"id": "u-alice", "email": "alice@example.com", "display_name": "Alice"},
            {"id": "u-bob", "email": "bob@example.com", "display_name": "Bob"},
            {"id": "u-carol", "email": "carol@example.com", "display_name": "Carol"},
            {"id": "u-dave", "email": "dave@example.com", "display_name": "Dave"},
            {"id": "u-erin", "email": "erin@example.com", "display_name": "Erin"}
        ],
        "groups": [
            {"id": "g-sre", "name": "SRE",
             "members": ["u-alice", "u-bob", "u-carol", "u-dave", "u-erin"]}
        ]
    })
}

fn issuer_toml(extra: &str) -> String {
    format!(
        "\n[[issuers]]\nkind = \"oidc\"\nissuer = \"{}\"\naudiences = [\"zt-ssh\"]\n\
         device_login = true\nclient_id = \"zt-ssh\"\nrequire_mfa = true\n{extra}",
        provider().issuer()
    )
}

/// A PAM host with the directory above, the device issuer, [`STACK`] as [`SERVICE`] and
/// sshd, and its agent running.
fn host(extra: &str) -> (Host, AgentDaemon) {
    assert!(
        Host::pam_zt_built().is_some(),
        "target/debug/libpam_zt.so is missing: run `cargo build --workspace`"
    );
    let h = Host::new_pam();
    h.write_config(&format!("{CONFIG}{}", issuer_toml(extra)));
    h.write_directory(&people());
    h.sync();
    h.pam_service(SERVICE, STACK);
    h.pam_service("sshd", STACK);
    let agent = AgentDaemon::start(&h);
    let socket = h.path("run/zt/control.sock");
    let start = Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no control socket: {}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (h, agent)
}

fn pamtester(user: &str) -> Vec<&str> {
    vec![
        "pamtester",
        "-v",
        SERVICE,
        user,
        "authenticate",
        "acct_mgmt",
    ]
}

/// The last auth record.
fn last_auth(h: &Host) -> Value {
    h.audit()
        .into_iter()
        .rev()
        .find(|r| r["stage"] == "auth")
        .expect("an auth record")
}

#[test]
fn pamtester_shows_the_code_and_only_the_right_sign_in_logs_in() {
    let (h, agent) = host("");
    let code_shown = format!("open {}/device and enter the code ", provider().issuer());

    // alice signs in as herself, with MFA
    let r = device_login(&h, &pamtester("alice"), Then::SignIn("alice"));
    assert_eq!(r.code, 0, "{r:?}\n{}", agent.log());
    assert!(r.output.contains(&code_shown), "{r:?}");
    assert!(r.output.contains("To sign in as alice"), "{r:?}");
    let a = last_auth(&h);
    assert_eq!(a["result"], "success", "{a}");
    assert_eq!(a["method"], "device", "{a}");
    assert_eq!(a["issuer"], provider().issuer(), "{a}");
    assert_eq!(a["mfa"], "amr=pwd,mfa", "{a}");
    assert_eq!(a["email"], "alice@example.com", "{a}");
    let acct = h
        .audit()
        .into_iter()
        .rev()
        .find(|r| r["stage"] == "account")
        .unwrap();
    assert_eq!(acct["result"], "success", "{acct}");

    // refusals, each with its reason in the audit log and on the person's screen
    // (one user each: a user may start 4 sign-ins a minute)
    for (user, then, want) in [
        ("bob", Then::SignIn("alice"), "used for bob"),
        ("carol", Then::SignIn("carol+nomfa"), "no multi-factor"),
        ("dave", Then::Deny, "declined"),
        ("erin", Then::Late(10), "expired"),
    ] {
        let r = device_login(&h, &pamtester(user), then);
        assert_ne!(r.code, 0, "{then:?}: {r:?}");
        assert!(r.output.contains(&code_shown), "{then:?}: {r:?}");
        let a = last_auth(&h);
        assert_eq!(a["result"], "failure", "{then:?}: {a}");
        assert_eq!(a["method"], "device", "{then:?}: {a}");
        assert!(
            a["reason"].as_str().unwrap_or_default().contains(want),
            "{then:?}: {a}"
        );
        let told = match want {
            "declined" | "expired" => want.to_string(),
            _ => format!("does not let {user} in here"),
        };
        assert!(
            r.output.contains("Sign-in refused") && r.output.contains(&told),
            "{then:?}: the person is told: {r:?}"
        );
    }
    // the agent is back to no pending sign-in
    assert!(!agent.log().contains("panicked"), "{}", agent.log());
}

#[test]
fn sshd_keyboard_interactive_shows_the_code_and_logs_in() {
    let (h, agent) = host("");
    let d = Sshd::start(&h, "");
    let ssh = d.client_argv(
        "alice",
        &[
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=keyboard-interactive",
            "-o",
            "NumberOfPasswordPrompts=1",
        ],
        "id -un",
    );
    let ssh: Vec<&str> = ssh.iter().map(String::as_str).collect();
    let r = device_login(&h, &ssh, Then::SignIn("alice"));
    assert_eq!(r.code, 0, "{r:?}\n{}\n{}", d.log(), agent.log());
    assert!(
        r.output.contains("To sign in as alice, open ") && r.output.contains("enter the code"),
        "{r:?}"
    );
    assert!(r.output.lines().any(|l| l.trim() == "alice"), "{r:?}");
    assert!(
        d.log()
            .contains("Accepted keyboard-interactive/pam for alice"),
        "{}",
        d.log()
    );
    let a = h
        .audit()
        .into_iter()
        .find(|r| r["stage"] == "auth" && r["service"] == "sshd")
        .expect("sshd auth record");
    assert_eq!(
        (a["method"].as_str(), a["result"].as_str()),
        (Some("device"), Some("success")),
        "{a}"
    );
    // sshd's password authentication cannot show a code: an empty password
    // (or spaces) never reaches the agent, so costs the IdP nothing
    let asked = || agent.log().matches("device sign-in for alice").count();
    let before = asked();
    for pw in ["", "   "] {
        let r = d.ssh(&h, "alice", SshAuth::Password, &[pw], "true");
        assert_eq!(r.code, 255, "{r:?}");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(asked(), before, "{}", agent.log());
    // (OpenSSH 9.2 never hands an empty password to PAM; spaces are a
    // password to pam_zt, left to pam_unix)
    assert!(
        h.audit().iter().any(|r| r["service"] == "sshd"
            && r["method"] == "password"
            && r["reason"] == "not a token"),
        "{:#?}",
        h.audit()
    );
    // bob's sign-in does not open alice's account over ssh either
    let r = device_login(&h, &ssh, Then::SignIn("bob"));
    assert_eq!(r.code, 255, "{r:?}");
}

#[test]
fn a_login_that_goes_away_leaves_no_poller_and_pending_sign_ins_are_bounded() {
    let (h, agent) = host("device_max_pending = 3\n");
    // the sign-in threads (the IdP worker threads stay)
    let signing_in = || agent.threads_named("device");
    assert_eq!(signing_in(), 0);
    // the person closes the terminal while the code is shown
    let r = device_login(&h, &pamtester("alice"), Then::HangUp);
    assert!(r.output.contains("enter the code"), "{r:?}");
    assert!(
        agent.wait_for_log("cancelled (the login went away)", Duration::from_secs(5)),
        "{}",
        agent.log()
    );
    let settle = || {
        let start = Instant::now();
        while signing_in() != 0 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        signing_in()
    };
    assert_eq!(settle(), 0, "the sign-in's thread ended");

    // two pending sign-ins for alice (held open), a third is refused at once; bob
    // gets the host's last slot, and a fourth sign-in on the host is refused
    let waiting = || agent.log().matches("waiting up to").count();
    let before = waiting();
    std::thread::scope(|scope| {
        let holders: Vec<_> = ["alice", "alice", "bob"]
            .iter()
            .map(|u| {
                let h = &h;
                scope.spawn(move || device_login(h, &pamtester(u), Then::Hold(6)))
            })
            .collect();
        let start = Instant::now();
        while waiting() < before + 3 && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            waiting(),
            before + 3,
            "three sign-ins pending: {}",
            agent.log()
        );
        let t = Instant::now();
        let r = device_login(&h, &pamtester("alice"), Then::SignIn("alice"));
        assert_ne!(r.code, 0, "{r:?}");
        assert!(r.output.contains("unavailable right now"), "{r:?}");
        let a = last_auth(&h);
        assert!(
            a["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("alice already has 2"),
            "the reason is in the audit log, not on the screen: {a}"
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        // bob has one pending, but the host's three slots are taken
        let r = device_login(&h, &pamtester("bob"), Then::SignIn("bob"));
        assert_ne!(r.code, 0, "{r:?}");
        let a = last_auth(&h);
        assert!(
            a["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("device_max_pending = 3"),
            "{a}"
        );
        // a local account gets no sign-in at all
        let r = device_login(&h, &pamtester("root"), Then::SignIn("alice"));
        assert!(!r.output.contains("enter the code"), "{r:?}");
        for holder in holders {
            let r = holder.join().unwrap();
            assert!(r.output.contains("enter the code"), "{r:?}");
        }
    });
    assert_eq!(settle(), 0, "no poller outlives its login: {}", agent.log());
}

#[test]
fn with_the_agent_stopped_a_browser_sign_in_is_refused_at_once() {
    let (h, agent) = host("");
    let _ = agent.stop();
    let t = Instant::now();
    let r = device_login(&h, &pamtester("alice"), Then::SignIn("alice"));
    assert_ne!(r.code, 0, "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(
        r.output.contains("Browser sign-in is unavailable"),
        "the person is told: {r:?}"
    );
    let a = last_auth(&h);
    assert_eq!(a["method"], "device", "{a}");
    assert!(
        a["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("control socket"),
        "{a}"
    );
}

#[test]
fn sudo_takes_a_fresh_proof_through_the_browser() {
    let (h, agent) = host("");
    h.pam_service(
        "sudo",
        "auth     [success=done ignore=ignore default=die]  pam_zt.so device\n\
         auth     required   pam_unix.so try_first_pass\n\
         account  required   pam_zt.so\n\
         account  required   pam_unix.so\n\
         session  required   pam_unix.so\n",
    );
    // one try: a refused sign-in ends sudo (it would ask again twice)
    h.sudoers("Defaults passwd_tries=1\nalice ALL=(ALL:ALL) ALL\nbob ALL=(ALL:ALL) ALL\n");
    // sudo on a terminal (expect's), as alice. No -p: a prompt given with -p
    // replaces every PAM prompt (sudo's passprompt_override), and the
    // question would read like a password prompt.
    let sudo_as = |user: &str| {
        format!(
            "cd / && exec setpriv --reuid=$(id -u {user}) --regid=$(id -g {user}) --init-groups \
             sudo -k id -u"
        )
    };
    let alice = sudo_as("alice");
    let r = device_login(&h, &["bash", "-c", &alice], Then::SignIn("alice"));
    assert_eq!(r.code, 0, "{r:?}\n{}", agent.log());
    assert!(r.output.contains("enter the code"), "{r:?}");
    assert!(r.output.lines().any(|l| l.trim() == "0"), "root: {r:?}");
    let a = last_auth(&h);
    assert_eq!(
        (
            a["service"].as_str(),
            a["method"].as_str(),
            a["result"].as_str()
        ),
        (Some("sudo"), Some("device"), Some("success")),
        "{a}"
    );
    // sudo is a local login: counted for the invoking user, not as the console
    assert!(
        agent.log().contains("device sign-in for alice"),
        "{}",
        agent.log()
    );
    // bob's sudo with alice's sign-in: refused
    let bob = sudo_as("bob");
    let r = device_login(&h, &["bash", "-c", &bob], Then::SignIn("alice"));
    assert_ne!(r.code, 0, "{r:?}");
    assert!(!r.output.lines().any(|l| l.trim() == "0"), "{r:?}");
}
