//! A private "host" for end-to-end tests. Each command runs in a new private
//! mount namespace (`unshare -m --propagation private`) where the test's own
//! copies are bind-mounted over /etc/passwd, /etc/group, /etc/nsswitch.conf
//! (`files zt`) and /var/lib (so /var/lib/zt is the test's). The machine's
//! own files are never touched. glibc finds libnss_zt.so.2 through
//! LD_LIBRARY_PATH. Commands started separately share the same files, so a
//! long-running reader and the agent see one /var/lib/zt.
//!
//! Needs root (for unshare -m) and `cargo build --workspace` beforehand
//! (scripts/test.sh does both checks).
//!
//! [`Host::new_pam`] (pam.rs) adds what PAM, sshd and sudo tests need: private
//! /etc/pam.d, /etc/shadow, /etc/sudoers.d, /run, /var/log, /home, a library overlay
//! with the modules, and the shared network + PID namespace of net.rs; sshd.rs,
//! keys_server.rs, oidc.rs and tokens.rs build on it.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};

use tempfile::TempDir;

pub mod agent;
pub mod device;
pub mod keys_server;
pub mod net;
pub mod nginx;
pub mod oidc;
pub mod pam;
pub mod s3;
pub mod scim;
pub mod sshd;
pub mod tokens;

pub use agent::AgentDaemon;
pub use keys_server::KeysServer;
pub use net::Net;
pub use oidc::OidcProvider;
pub use pam::{
    PAM_ZT_STANDIN, PamResult, SU_MAX_ANSWER, SUDO_MAX_ANSWER, clock_shift_lib, standin_module,
};
pub use sshd::{SSH_MAX_ANSWER, SshAuth, Sshd};

/// target/debug (or wherever this test binary was built).
pub fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

pub(crate) fn artifact(name: &str) -> PathBuf {
    let p = build_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` first (scripts/test.sh does)",
        p.display()
    );
    p
}

/// The uids (and user private gids) zt hands out from its hash (docs/ids.md):
/// an answer in this range came from zt, not from /etc/passwd.
pub const ZT_USER_IDS: std::ops::RangeInclusive<u32> = 0x7000_0000..=0x77FF_FFFF;

/// The uid of a passwd line `name:pw:uid:...` (None if there is none).
pub fn uid_of(line: &str) -> Option<u32> {
    line.trim().split(':').nth(2)?.parse().ok()
}

pub struct Host {
    _dir: TempDir,
    pub root: PathBuf,
    /// Set by [`Host::new_pam`]: PAM, shadow, sudoers, /run, /var/log, /home and the
    /// library overlay are the host's own too, and commands run in the shared [`Net`].
    pub(crate) pam: bool,
}

pub const CONFIG: &str = r#"
[directory]
kind = "file"
path = "ROOT/etc/zt/directory.json"
sync_interval = "60s"

[users]
name_from = "email-local-part"
domains = ["example.com"]
home = "/home/{name}"
shell = "/bin/bash"

[[groups]]
id = "g-sre"
name = "sre"
login = true

[[groups]]
id = "g-dev"
name = "developers"
login = false
"#;

impl Host {
    #[allow(clippy::new_without_default)] // creating a host makes temp dirs: not a Default
    pub fn new() -> Host {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "end-to-end tests need root (for private mount namespaces)"
        );
        let dir = tempfile::Builder::new()
            .prefix("zt-e2e-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().to_path_buf();
        for d in ["etc/zt", "etc/sudoers.d", "var/lib/zt", "lib"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        // the agent installs [[sudo]] rules there: never into the machine's own
        pam::set_mode(&root.join("etc/sudoers.d"), 0o755);
        std::fs::copy("/etc/passwd", root.join("etc/passwd")).expect("copy passwd");
        std::fs::copy("/etc/group", root.join("etc/group")).expect("copy group");
        let nss = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
        let mut out: String = nss
            .lines()
            .filter(|l| !l.starts_with("passwd:") && !l.starts_with("group:"))
            .map(|l| format!("{l}\n"))
            .collect();
        out.push_str("passwd: files zt\ngroup: files zt\n");
        std::fs::write(root.join("etc/nsswitch.conf"), out).expect("nsswitch");
        std::fs::copy(artifact("libnss_zt.so"), root.join("lib/libnss_zt.so.2"))
            .expect("copy module");
        let host = Host {
            _dir: dir,
            root,
            pam: false,
        };
        host.write_config(CONFIG);
        host
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(
            self.path("etc/zt/agent.toml"),
            text.replace("ROOT", &self.root.display().to_string()),
        )
        .expect("config");
    }

    pub fn write_directory(&self, d: &serde_json::Value) {
        std::fs::write(
            self.path("etc/zt/directory.json"),
            serde_json::to_vec_pretty(d).expect("json"),
        )
        .expect("directory");
    }

    pub fn add_local_user(&self, name: &str, uid: u32) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.path("etc/passwd"))
            .expect("passwd");
        writeln!(f, "{name}:x:{uid}:{uid}::/home/{name}:/bin/sh").expect("write");
        let mut g = std::fs::OpenOptions::new()
            .append(true)
            .open(self.path("etc/group"))
            .expect("group");
        writeln!(g, "{name}:x:{uid}:").expect("write");
    }

    /// The private-namespace prologue, then `exec "$@"`.
    pub fn command(&self, argv: &[&str]) -> Command {
        let r = self.root.display().to_string();
        let pam = if self.pam {
            pam::mounts(&r)
        } else {
            String::new()
        };
        let script = format!(
            "set -e
             mount --bind {r}/etc/passwd /etc/passwd
             mount --bind {r}/etc/group /etc/group
             mount --bind {r}/etc/nsswitch.conf /etc/nsswitch.conf
             mount --bind {r}/var/lib /var/lib
             for f in subuid subgid; do
                 [ ! -e {r}/etc/$f ] || mount --bind {r}/etc/$f /etc/$f
             done
             [ -d /etc/sudoers.d ] && mount --bind {r}/etc/sudoers.d /etc/sudoers.d
             [ -d /run/nscd ] && mount -t tmpfs tmpfs /run/nscd
             {pam}
             export LD_LIBRARY_PATH={r}/lib
             exec \"$@\""
        );
        let mut c = if self.pam {
            Net::shared().command("unshare")
        } else {
            Command::new("unshare")
        };
        c.args([
            "-m",
            "--propagation",
            "private",
            "bash",
            "-c",
            &script,
            "zt-host",
        ])
        .args(argv);
        c
    }

    /// Starts a command inside the host without waiting (the caller ends it by pid).
    pub fn spawn(&self, argv: &[&str]) -> Child {
        self.command(argv)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    }

    /// As [`Host::spawn`], in a process group of its own (its id is the child's
    /// pid): `kill(-pid)` then ends the command and everything it started, as
    /// systemd ends a service's whole cgroup.
    pub fn spawn_group(&self, argv: &[&str]) -> Child {
        use std::os::unix::process::CommandExt;
        self.command(argv)
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn")
    }

    pub fn agent_argv(&self) -> Vec<String> {
        vec![
            artifact("zt-agent").display().to_string(),
            "--config".into(),
            self.path("etc/zt/agent.toml").display().to_string(),
        ]
    }

    /// Runs a command inside the host and waits for it.
    pub fn run(&self, argv: &[&str]) -> Output {
        self.command(argv).output().expect("unshare")
    }

    /// Runs a shell snippet inside the host.
    pub fn sh(&self, script: &str) -> Output {
        self.run(&["bash", "-c", script])
    }

    pub fn agent(&self, args: &[&str]) -> Output {
        let agent = artifact("zt-agent");
        let config = self.path("etc/zt/agent.toml");
        let mut argv = vec![
            agent.to_str().expect("utf8"),
            "--config",
            config.to_str().expect("utf8"),
        ];
        argv.extend_from_slice(args);
        self.run(&argv)
    }

    /// `zt-agent sync --once`, asserting it worked.
    pub fn sync(&self) {
        let o = self.agent(&["sync", "--once"]);
        assert!(o.status.success(), "sync failed: {}", text(&o.stderr));
    }

    pub fn getent(&self, args: &[&str]) -> (i32, String) {
        let mut argv = vec!["getent"];
        argv.extend_from_slice(args);
        let o = self.run(&argv);
        (o.status.code().unwrap_or(-1), text(&o.stdout))
    }

    /// The positive control of a negative test: `name` resolves through zt in
    /// this host (getent exits 0 with a uid from zt's range). Returns the line.
    pub fn assert_zt_user(&self, name: &str) -> String {
        let (rc, line) = self.getent(&["passwd", name]);
        assert_eq!(rc, 0, "getent passwd {name}: zt answered nothing");
        assert!(
            uid_of(&line).is_some_and(|u| ZT_USER_IDS.contains(&u)),
            "{name} did not come from zt: {line}"
        );
        line
    }

    /// Starts a long-running resolver process inside the host.
    pub fn probe(&self) -> Probe {
        let exe = artifact("nss-probe");
        let mut child = self
            .command(&[exe.to_str().expect("utf8"), "serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn probe");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Probe {
            child,
            stdin,
            stdout,
        }
    }

    pub fn probe_path(&self) -> PathBuf {
        artifact("nss-probe")
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A process that stays alive across syncs, as sshd does.
pub struct Probe {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Probe {
    pub fn ask(&mut self, q: &str) -> String {
        writeln!(self.stdin, "{q}").expect("probe stdin");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("probe stdout");
        line.trim_end().to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // closing stdin ends the probe; wait for our own child only
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
