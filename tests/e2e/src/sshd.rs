//! Real OpenSSH inside a PAM host: `sshd -D` in the shared [`Net`] and the host's mount
//! namespace (its NSS `files zt`, /etc/pam.d, library overlay), and an `ssh` client
//! driven by `expect` that answers password and keyboard-interactive prompts.
//!
//! Measured here (Debian 12, OpenSSH 9.2p1; test `ssh_answer_limits`): the longest
//! answer that reaches the PAM module intact is [`SSH_MAX_ANSWER`] = 1,023 bytes, for
//! keyboard-interactive and for password authentication alike. Longer answers are cut
//! by the client (its passphrase buffer is 1,024 bytes with the NUL), so the module sees
//! the first 1,023 bytes; sshd's own 1,024-byte `MAX_PASSWORD_LEN` is therefore never
//! reached from the OpenSSH client. A token longer than that needs a second prompt.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::net::children_of;
use crate::pam::PamResult;
use crate::{Host, Net, text};

/// Longest answer the OpenSSH client passes through, for password and
/// keyboard-interactive authentication (measured; see the module doc).
pub const SSH_MAX_ANSWER: usize = 1023;

/// How the client authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshAuth {
    KeyboardInteractive,
    Password,
}

/// A running sshd; stopped (by its pid) when dropped.
pub struct Sshd {
    pub port: u16,
    /// sshd's pid in the machine's PID namespace.
    pub pid: u32,
    /// The config file written for it.
    pub config: std::path::PathBuf,
    pub log: std::path::PathBuf,
    nsenter: Child,
}

impl Sshd {
    /// Starts sshd in `host` (made with [`Host::new_pam`]). `extra` comes first in
    /// sshd_config, so it overrides the defaults below (for most keywords sshd keeps the
    /// first value): `Port`, `ListenAddress 127.0.0.1`, a fresh ed25519 host key,
    /// `AuthorizedKeysFile none`, `UsePAM yes`, `KbdInteractiveAuthentication yes`,
    /// `PasswordAuthentication yes`, `PubkeyAuthentication yes`, `ExposeAuthInfo yes`,
    /// `PermitRootLogin no`, `LogLevel VERBOSE`. PAM service: /etc/pam.d/sshd of the host
    /// (write it with [`Host::pam_service`]). Panics with `sshd -t`'s message on a bad config.
    pub fn start(host: &Host, extra: &str) -> Sshd {
        assert!(host.pam, "Sshd::start needs a Host::new_pam()");
        let port = Net::shared().port();
        let config = Self::write_config(host, extra, port);
        let cfg = config.to_str().expect("utf8");
        let t = host.run(&["/usr/sbin/sshd", "-t", "-f", cfg]);
        assert!(
            t.status.success(),
            "sshd -t refused the config: {}",
            text(&t.stderr)
        );
        let log = host.path(&format!("var/log/sshd-{port}.log"));
        let logs = log.to_str().expect("utf8");
        // By absolute path: sshd re-executes itself.
        let nsenter = host
            .command(&["/usr/sbin/sshd", "-D", "-E", logs, "-f", cfg])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sshd");
        let started = Instant::now();
        let pid = loop {
            if let Some(p) = children_of(nsenter.id()).first() {
                break *p;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "sshd pid");
            std::thread::sleep(Duration::from_millis(5));
        };
        let sshd = Sshd {
            port,
            pid,
            config,
            log,
            nsenter,
        };
        while !sshd.log().contains("Server listening on 127.0.0.1") {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not start: {}",
                sshd.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        sshd
    }

    /// Writes the sshd_config [`Sshd::start`] uses (`extra` first, then the defaults
    /// listed there, with a fresh host key) for `port`, and returns its path.
    pub fn write_config(host: &Host, extra: &str, port: u16) -> std::path::PathBuf {
        let dir = host.path("ssh");
        let key = dir.join(format!("host_ed25519_{port}"));
        let o = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .output()
            .expect("ssh-keygen (openssh-client)");
        assert!(o.status.success(), "ssh-keygen: {}", text(&o.stderr));
        let config = dir.join(format!("sshd_config_{port}"));
        let run = host.path("run").display().to_string();
        std::fs::write(
            &config,
            format!(
                "{extra}\n\
                 Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {key}\n\
                 PidFile {run}/sshd-{port}.pid\n\
                 AuthorizedKeysFile none\n\
                 UsePAM yes\n\
                 KbdInteractiveAuthentication yes\n\
                 PasswordAuthentication yes\n\
                 PubkeyAuthentication yes\n\
                 ExposeAuthInfo yes\n\
                 PermitRootLogin no\n\
                 LogLevel VERBOSE\n",
                key = key.display()
            ),
        )
        .expect("sshd_config");
        config
    }

    /// `sshd -t` and `sshd -T` (the effective settings for a connection by `user`) of
    /// the config [`Sshd::start`] would write for `extra`, without starting sshd.
    /// Returns (`sshd -t` succeeded, its stderr, `sshd -T`'s lines "keyword value").
    pub fn check_config(host: &Host, extra: &str, user: &str) -> (bool, String, String) {
        assert!(host.pam, "Sshd::check_config needs a Host::new_pam()");
        let config = Self::write_config(host, extra, Net::shared().port());
        let cfg = config.to_str().expect("utf8");
        let t = host.run(&["/usr/sbin/sshd", "-t", "-f", cfg]);
        let spec = format!("user={user},host=client.test,addr=127.0.0.1");
        let big_t = host.run(&["/usr/sbin/sshd", "-T", "-f", cfg, "-C", &spec]);
        (t.status.success(), text(&t.stderr), text(&big_t.stdout))
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `ssh -p PORT USER@127.0.0.1 COMMAND` from inside `host`, with only `auth` allowed
    /// on the client side (no keys, `NumberOfPasswordPrompts 1`). Each prompt matching
    /// [`crate::pam::PROMPT`] is answered by `expect`: the n-th prompt with `answers[n]`, the last
    /// answer repeating (at most 8 prompts). Returns ssh's exit code (255: refused) and
    /// the transcript (prompts, then the command's output; `\r\n` made `\n`).
    /// Answers longer than [`SSH_MAX_ANSWER`] are cut by the client.
    pub fn ssh(
        &self,
        host: &Host,
        user: &str,
        auth: SshAuth,
        answers: &[&str],
        command: &str,
    ) -> PamResult {
        assert!(!answers.is_empty(), "at least one answer");
        let method = match auth {
            SshAuth::KeyboardInteractive => "keyboard-interactive",
            SshAuth::Password => "password",
        };
        let script = r#"
set timeout 30
log_user 1
set n 0
set last [expr {$env(ZT_ANSWERS) - 1}]
spawn -noecho ssh -F /dev/null -T -p $env(ZT_PORT) -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR -o PubkeyAuthentication=no -o IdentitiesOnly=yes -o GSSAPIAuthentication=no -o NumberOfPasswordPrompts=1 -o ConnectTimeout=10 -o PreferredAuthentications=$env(ZT_METHOD) $env(ZT_USER)@127.0.0.1 $env(ZT_COMMAND)
expect {
  -re $env(ZT_PROMPT) {
    if {$n >= 8} { exit 97 }
    set i [expr {$n < $last ? $n : $last}]
    send -- "$env(ZT_ANSWER_$i)\r"
    incr n
    exp_continue
  }
  timeout { exit 98 }
  eof
}
lassign [wait] pid spawnid os_error code
exit $code
"#;
        let mut c = host.command(&["expect", "-c", script]);
        c.env("ZT_PORT", self.port.to_string())
            .env("ZT_METHOD", method)
            .env("ZT_USER", user)
            .env("ZT_COMMAND", command)
            .env("ZT_PROMPT", crate::pam::PROMPT)
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
}

impl Sshd {
    /// `ssh` to this sshd as `user`, running `command`: no config file, no host
    /// key checks, errors only, then `options` (the authentication to use).
    pub fn client_argv(&self, user: &str, options: &[&str], command: &str) -> Vec<String> {
        let mut argv: Vec<String> = [
            "ssh",
            "-F",
            "/dev/null",
            "-T",
            "-p",
            &self.port.to_string(),
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "LogLevel=ERROR",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        argv.extend(options.iter().map(|a| a.to_string()));
        argv.push(format!("{user}@127.0.0.1"));
        argv.push(command.to_string());
        argv
    }

    /// `ssh -i KEY [-o CertificateFile=CERT] USER@127.0.0.1 COMMAND` from inside `host`,
    /// public key authentication only (`BatchMode yes`: no prompts). Returns ssh's exit
    /// code (255: refused) and its output.
    pub fn ssh_key(
        &self,
        host: &Host,
        user: &str,
        key: &std::path::Path,
        cert: Option<&std::path::Path>,
        command: &str,
    ) -> PamResult {
        let mut options = vec![
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "PreferredAuthentications=publickey",
            "-o",
            "ConnectTimeout=10",
            "-i",
            key.to_str().expect("utf8"),
        ];
        let cert_opt = cert.map(|c| format!("CertificateFile={}", c.display()));
        if let Some(c) = &cert_opt {
            options.extend(["-o", c]);
        }
        let argv = self.client_argv(user, &options, command);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let o = host.command(&argv).output().expect("ssh (openssh-client)");
        PamResult {
            code: o.status.code().unwrap_or(-1),
            output: format!("{}{}", text(&o.stdout), text(&o.stderr)).replace("\r\n", "\n"),
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of the sshd this struct started.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        let _ = self.nsenter.wait();
    }
}
