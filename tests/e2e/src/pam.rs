//! Hosts for PAM, sshd and sudo tests ([`Host::new_pam`]).
//!
//! On top of [`Host::new`]'s files, such a host has its own copies of /etc/pam.d,
//! /etc/shadow, /etc/sudoers.d, /run, /var/log and /home, and an overlay over
//! /usr/lib/x86_64-linux-gnu whose upper layer holds `libnss_zt.so.2` and
//! `security/pam_zt.so` (copied from target/debug/libpam_zt.so when it has been built)
//! plus the test-only [`PAM_ZT_STANDIN`]. The overlay (not LD_LIBRARY_PATH) is what lets
//! setuid sudo and sshd's session children find the modules. Every command runs inside
//! the test binary's shared [`Net`] (see net.rs), so the agent, sshd and the HTTP servers
//! share one 127.0.0.1.
//!
//! Measured limits on Debian 12 (Linux-PAM 1.5.2, OpenSSH 9.2p1, sudo 1.9.13p3), by the
//! `answer_length_limits` test with the stand-in module:
//! - pamtester: answers up to 4,095 bytes reach the module (it reads one line of stdin).
//! - sshd (client side): 1,023 bytes, keyboard-interactive and password alike.
//! - pam-driver: any length (1 MiB tested).
//! - sudo -S: 511 bytes; from 512 on sudo's conversation fails ([`SUDO_MAX_ANSWER`]).
//! - su on a pseudo-terminal: 4,095 bytes; longer lines arrive cut to 4,095
//!   ([`SU_MAX_ANSWER`], measured by pam_zt.rs's `su_takes_a_token`).
//! - ssh keyboard-interactive and password: see `sshd::SSH_MAX_ANSWER`.

//!
//! A pam_zt test, once `target/debug/libpam_zt.so` exists (copied as `pam_zt.so`):
//! ```ignore
//! let h = Host::new_pam();
//! h.write_config(&format!("...[[issuers]] certs_url = \"{}\"...", keys.url(tokens::CF_CERTS_PATH)));
//! h.write_directory(&people); h.sync();
//! h.pam_service("sshd", "auth required pam_zt.so\naccount required pam_zt.so\n...");
//! let jwt = tokens::mint(TestKey::Rsa, &tokens::access_claims("acme", tokens::TEST_AUD, "alice@example.com", 300));
//! assert!(h.pam_driver("sshd", "alice", jwt.as_bytes(), &[], &["authenticate", "acct_mgmt"]).ok());
//! let d = Sshd::start(&h, "PasswordAuthentication no");
//! assert_eq!(d.ssh(&h, "alice", SshAuth::KeyboardInteractive, &[&jwt], "id -un").code, 0);
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;

use crate::{Host, Net, artifact, text};

/// File name of the test-only stand-in PAM module in the host's security directory.
/// It is NOT zt: it proves the harness until pam_zt.so exists (fixtures/standin/).
pub const PAM_ZT_STANDIN: &str = "pam_zt_standin.so";

/// Longest answer sudo 1.9.13 hands to a PAM module (measured, `sudo -S`): 511 bytes.
/// From 512 bytes on (PAM_MAX_RESP_SIZE) sudo's conversation fails instead, so the
/// module gets no answer at all (PAM_CONV_ERR): a token over 511 bytes needs several
/// prompts ([`Host::sudo_answers`] answers each with its own line).
pub const SUDO_MAX_ANSWER: usize = 511;

/// Longest answer su (util-linux 2.38.1) hands to a PAM module from its terminal
/// (measured, [`Host::su_answers`]): 4,095 bytes, the canonical tty line. su has no
/// -S; libpam_misc's conversation reads the answer from the tty. A longer line arrives
/// cut to its first 4,095 bytes and the conversation does not fail (unlike sudo's,
/// which fails from 512 bytes on): 4,094, 4,095, 4,096 and 5,000 bytes sent gave the
/// module 4,094, 4,095, 4,095 and 4,095.
pub const SU_MAX_ANSWER: usize = 4095;

/// Exit code and combined stdout + stderr of a PAM-driving program.
#[derive(Debug, Clone)]
pub struct PamResult {
    pub code: i32,
    pub output: String,
}

impl PamResult {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

/// The extra mounts of a PAM host (run after Host's own; `r` is the host root).
pub(crate) fn mounts(r: &str) -> String {
    format!(
        "mount --bind {r}/etc/shadow /etc/shadow
         mount --bind {r}/etc/pam.d /etc/pam.d
         mount --bind {r}/run /run
         mount --bind {r}/var/log /var/log
         mount --bind {r}/home /home
         mount -t overlay overlay -o lowerdir=/usr/lib/x86_64-linux-gnu,upperdir={r}/ovl/upper,workdir={r}/ovl/work /usr/lib/x86_64-linux-gnu"
    )
}

/// Compiles the test-only stand-in module once per test binary (cc, libpam0g-dev).
pub fn standin_module() -> PathBuf {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let src =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/standin/pam_zt_standin.c");
        let out = crate::build_dir().join(format!("pam_zt_standin-{}.so", std::process::id()));
        let o = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-Wall", "-Werror", "-o"])
            .arg(&out)
            .arg(&src)
            .arg("-lpam")
            .output()
            .expect("cc (build-essential)");
        assert!(
            o.status.success(),
            "compiling the stand-in module (needs libpam0g-dev): {}",
            text(&o.stderr)
        );
        out
    })
    .clone()
}

/// Compiles the test-only LD_PRELOAD clock shim once per test binary
/// (fixtures/clockshift/clockshift.c): a process started with `LD_PRELOAD=<this>` and
/// `ZT_CLOCK_SHIFT=N` sees the wall clock N seconds off (N may be negative), e.g. a
/// `zt-agent sync` that publishes "ten minutes ago" for a `max_offline` test.
pub fn clock_shift_lib() -> PathBuf {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let src =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/clockshift/clockshift.c");
        let out = crate::build_dir().join(format!("zt_clockshift-{}.so", std::process::id()));
        let o = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-Wall", "-Werror", "-o"])
            .arg(&out)
            .arg(&src)
            .arg("-ldl")
            .output()
            .expect("cc (build-essential)");
        assert!(
            o.status.success(),
            "compiling the clock shim: {}",
            text(&o.stderr)
        );
        out
    })
    .clone()
}

/// `pw` hashed for /etc/shadow (SHA-512 crypt, which pam_unix verifies).
fn crypt(pw: &str) -> String {
    let o = std::process::Command::new("openssl")
        .args(["passwd", "-6", "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(pw.as_bytes())?;
            c.wait_with_output()
        })
        .expect("openssl passwd");
    assert!(o.status.success());
    text(&o.stdout).trim().to_string()
}

impl Host {
    /// A host for PAM, sshd and sudo tests (see this module's doc). Needs root,
    /// `cargo build --workspace`, cc and libpam0g-dev.
    pub fn new_pam() -> Host {
        let mut h = Host::new();
        h.pam = true;
        let r = h.root.clone();
        for d in ["etc/pam.d", "run/sshd", "run/sudo", "run/zt"] {
            std::fs::create_dir_all(r.join(d)).expect("mkdir");
        }
        for d in [
            "var/log/zt",
            "home",
            "ovl/upper/security",
            "ovl/work",
            "ssh",
        ] {
            std::fs::create_dir_all(r.join(d)).expect("mkdir");
        }
        let cp = |from: &str, to: &str| {
            let o = std::process::Command::new("cp")
                .args(["-a", from])
                .arg(r.join(to))
                .output()
                .expect("cp");
            assert!(o.status.success(), "cp {from}: {}", text(&o.stderr));
        };
        cp("/etc/pam.d/.", "etc/pam.d/");
        cp("/etc/shadow", "etc/shadow");
        if std::path::Path::new("/etc/sudoers.d").exists() {
            cp("/etc/sudoers.d/.", "etc/sudoers.d/");
        }
        // sshd wants its privilege-separation directory root-owned and not group/world
        // writable; the temp root is 0700, which the mount hides anyway.
        for d in ["run/sshd", "run/sudo", "run/zt"] {
            set_mode(&r.join(d), 0o755);
        }
        set_mode(&r.join("run"), 0o755);
        set_mode(&r.join("home"), 0o755);
        std::fs::copy(artifact("libnss_zt.so"), r.join("ovl/upper/libnss_zt.so.2"))
            .expect("copy nss module");
        if let Some(so) = Host::pam_zt_built() {
            std::fs::copy(so, r.join("ovl/upper/security/pam_zt.so")).expect("copy pam_zt");
        }
        std::fs::copy(
            standin_module(),
            r.join("ovl/upper/security").join(PAM_ZT_STANDIN),
        )
        .expect("copy stand-in");
        h
    }

    /// target/debug/libpam_zt.so, if the workspace has built it.
    pub fn pam_zt_built() -> Option<PathBuf> {
        let p = crate::build_dir().join("libpam_zt.so");
        p.exists().then_some(p)
    }

    /// pam_zt's audit log of this host (/var/log/zt/auth.jsonl), one JSON
    /// object per record; empty before the first record.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path("var/log/zt/auth.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
            .collect()
    }

    /// Writes /etc/pam.d/`service` of this host.
    pub fn pam_service(&self, service: &str, stack: &str) {
        std::fs::write(self.path("etc/pam.d").join(service), stack).expect("pam.d");
    }

    /// Adds (or replaces) a local user with a password pam_unix checks (/etc/shadow).
    pub fn add_local_user_with_password(&self, name: &str, uid: u32, password: &str) {
        self.add_local_user(name, uid);
        let shadow = self.path("etc/shadow");
        let old = std::fs::read_to_string(&shadow).expect("shadow");
        let mut s: String = old
            .lines()
            .filter(|l| !l.starts_with(&format!("{name}:")))
            .map(|l| format!("{l}\n"))
            .collect();
        s.push_str(&format!("{name}:{}:19000:0:99999:7:::\n", crypt(password)));
        std::fs::write(&shadow, s).expect("write shadow");
        std::fs::create_dir_all(self.path("home").join(name)).expect("home");
        let o = std::process::Command::new("chown")
            .arg(format!("{uid}:{uid}"))
            .arg(self.path("home").join(name))
            .output()
            .expect("chown");
        assert!(o.status.success());
    }

    /// `pamtester -v SERVICE USER OPS...` with `answer` and a newline on stdin (pamtester
    /// answers every prompt with that one line, at most 4,095 bytes).
    pub fn pamtester(&self, service: &str, user: &str, answer: &str, ops: &[&str]) -> PamResult {
        let mut argv = vec!["pamtester", "-v", service, user];
        argv.extend_from_slice(ops);
        self.run_with_stdin(&argv, format!("{answer}\n").as_bytes())
    }

    /// `pam-driver SERVICE USER [extra args] OPS...` (src/bin/pam_driver.rs) with `answer`
    /// on stdin, byte for byte: answers of any length; NUL-separated answers go to
    /// successive prompts. `extra` may hold `--rhost H`, `--tty T`, `--authtok`.
    pub fn pam_driver(
        &self,
        service: &str,
        user: &str,
        answer: &[u8],
        extra: &[&str],
        ops: &[&str],
    ) -> PamResult {
        let exe = artifact("pam-driver");
        let mut argv = vec![exe.to_str().expect("utf8"), service, user];
        argv.extend_from_slice(extra);
        argv.extend_from_slice(ops);
        self.run_with_stdin(&argv, answer)
    }

    /// Runs `argv` in the host feeding `input` on stdin; stdout and stderr combined.
    pub fn run_with_stdin(&self, argv: &[&str], input: &[u8]) -> PamResult {
        let mut c = self
            .command(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut stdin = c.stdin.take().expect("stdin");
        let input = input.to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&input); // the program may stop reading early
        });
        let o = c.wait_with_output().expect("wait");
        feeder.join().expect("stdin feeder");
        PamResult {
            code: o.status.code().unwrap_or(-1),
            output: format!("{}{}", text(&o.stdout), text(&o.stderr)),
        }
    }

    /// Writes the sudoers drop-in /etc/sudoers.d/zt-test (root:root 0440), checked with
    /// `visudo -cf` (panics with visudo's message if it is refused).
    pub fn sudoers(&self, rules: &str) {
        let f = self.path("etc/sudoers.d/zt-test");
        std::fs::write(&f, rules).expect("sudoers.d");
        set_mode(&f, 0o440);
        let o = std::process::Command::new("visudo")
            .arg("-cf")
            .arg(&f)
            .output()
            .expect("visudo (sudo package)");
        assert!(
            o.status.success(),
            "visudo -cf refused the rule: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
    }

    /// As `user` (uid, gid and groups from NSS in the host, through `setpriv`), runs
    /// `sudo -S -k -p 'sudo-prompt: ' -u root id -u`, answering the password prompt with
    /// `answer` (sudo -S reads one line; see [`SUDO_MAX_ANSWER`]). On success the
    /// output holds the line `0`.
    pub fn sudo(&self, user: &str, answer: &str) -> PamResult {
        self.sudo_answers(user, &[answer])
    }

    /// Like [`Host::sudo`], one stdin line per prompt (sudo -S reads a line per prompt;
    /// after a failed attempt it asks again, up to 3 times).
    pub fn sudo_answers(&self, user: &str, answers: &[&str]) -> PamResult {
        let input: String = answers.iter().map(|a| format!("{a}\n")).collect();
        let script = format!(
            "cd / && exec setpriv --reuid=$(id -u {user}) --regid=$(id -g {user}) --init-groups \
             sudo -S -k -p 'sudo-prompt: ' -u root id -u"
        );
        self.run_with_stdin(&["bash", "-c", &script], input.as_bytes())
    }

    /// As `user` (uid, gid and groups from NSS in the host, through `setpriv`), runs
    /// `su TARGET -c 'COMMAND'` on a pseudo-terminal driven by `expect`: su has no -S,
    /// it reads each answer from its terminal through libpam_misc's conversation. Each
    /// prompt matching [`PROMPT`] gets the next of `answers` and Enter. Answers are sent
    /// echo off and never appear in the output; a prompt beyond the last answer ends
    /// the run with exit code 97 (98: a 20 s timeout). Returns su's exit code (1:
    /// refused, "su: Authentication failure") and the transcript (prompts, then the
    /// command's output; `\r\n` made `\n`). See [`SU_MAX_ANSWER`].
    pub fn su_answers(
        &self,
        user: &str,
        target: &str,
        command: &str,
        answers: &[&str],
    ) -> PamResult {
        assert!(!command.contains('\''), "no ' in the command: {command}");
        let script = r#"
set timeout 20
log_user 1
set n 0
spawn -noecho bash -c $env(ZT_SU)
expect {
  -re $env(ZT_PROMPT) {
    if {$n >= $env(ZT_ANSWERS)} { exit 97 }
    send -- "$env(ZT_ANSWER_$n)\r"
    incr n
    exp_continue
  }
  timeout { exit 98 }
  eof
}
lassign [wait] pid spawnid os_error code
exit $code
"#;
        let su = format!(
            "cd / && exec setpriv --reuid=$(id -u {user}) --regid=$(id -g {user}) --init-groups \
             su {target} -c '{command}'"
        );
        let mut c = self.command(&["expect", "-c", script]);
        c.env("ZT_SU", su)
            .env("ZT_PROMPT", PROMPT)
            .env("ZT_ANSWERS", answers.len().to_string());
        for (i, a) in answers.iter().enumerate() {
            c.env(format!("ZT_ANSWER_{i}"), a);
        }
        let o = c.output().expect("expect (package expect)");
        PamResult {
            code: o.status.code().unwrap_or(-1),
            output: format!("{}{}", text(&o.stdout), text(&o.stderr)).replace("\r\n", "\n"),
        }
    }

    /// The shared network namespace (always [`Net::shared`]).
    pub fn net(&self) -> &'static Net {
        Net::shared()
    }
}

/// The prompts the `expect` scripts of [`Host::su_answers`] and [`crate::sshd::Sshd::ssh`]
/// answer (a Tcl regular expression): pam_zt's first prompt and pam_unix's ("...password: "),
/// the stand-in module's ("Token: ") and pam_zt's continuation prompt ("...finish): "). Not
/// any ": ": su's "su: Authentication failure" and ssh's "user@127.0.0.1: Permission denied"
/// start with one, and a terminal may deliver them in two reads.
pub const PROMPT: &str = r"([Pp]assword|Token|finish\)): $";

pub(crate) fn set_mode(p: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
