//! The real OIDC provider (npm `oidc-provider` 9, tests/e2e/oidc-provider/server.mjs)
//! on 127.0.0.1 inside the shared [`Net`], started once per test binary.
//!
//! The provider has no password or client-credentials shortcut: the simplest real flow
//! that yields an ID token is the device authorization grant, driven end to end by
//! `device_flow.py` (stdlib Python): device code request, a scripted browser that submits
//! the dev login form as the given user and consents, then one token poll (the browser
//! finishes before the first poll, so there is no 5 s wait). About 0.3 s per token.
//! The ID token (RS256 by default, kid `rsa1`; keys generated at each start) has
//! `iss` = [`OidcProvider::issuer`], `aud` = the client id (`zt-agent` or `zt-ssh`),
//! `sub` = the login name, `email` = NAME@example.com (a login name with '@' is the email;
//! one starting `unverified-` gets `email_verified: false`), `exp` 300 s after issue.
//!
//! Needs node and `npm ci --prefix tests/e2e/oidc-provider` (.ci/run does it).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{ChildStdin, Stdio};
use std::sync::OnceLock;

use crate::{Net, text};

pub struct OidcProvider {
    pub port: u16,
    /// node's pid in the machine's PID namespace.
    pub pid: u32,
    _stdin: ChildStdin,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc-provider")
}

/// python3 for the helper scripts: Debian's, not a user's pyenv shim.
pub(crate) fn python3() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

impl OidcProvider {
    /// The provider of this test binary, started on first use (about 1 s).
    pub fn shared() -> &'static OidcProvider {
        static P: OnceLock<OidcProvider> = OnceLock::new();
        P.get_or_init(|| OidcProvider::start_with(&[]))
    }

    /// A provider of its own, with `env` for server.mjs (e.g. `DEVICE_TTL`); it
    /// lives as long as the test binary.
    pub fn start_with(env: &[(&str, &str)]) -> OidcProvider {
        assert!(
            dir().join("node_modules/oidc-provider").exists(),
            "run `npm ci --prefix tests/e2e/oidc-provider` first (.ci/run does)"
        );
        let net = Net::shared();
        let port = net.port();
        let mut child = net
            .command("node")
            .arg(dir().join("server.mjs"))
            .env("PORT", port.to_string())
            .env("EXIT_ON_STDIN_END", "1")
            .env("NODE_NO_WARNINGS", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        out.read_line(&mut line).expect("node stdout");
        // Keep draining: node dies of EPIPE if its stdout closes.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        assert!(
            line.contains("listening"),
            "oidc-provider did not start: {line}"
        );
        let pid = crate::net::children_of(child.id())
            .first()
            .copied()
            .unwrap_or(0);
        let stdin = child.stdin.take().expect("stdin");
        // It lives as long as the test binary (stdin closes, or the PID namespace ends).
        std::mem::forget(child);
        OidcProvider {
            port,
            pid,
            _stdin: stdin,
        }
    }

    /// `http://127.0.0.1:PORT` (what the ID tokens carry as `iss`).
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The person's side of a device-code sign-in shown at a login: `device_browser.py`
    /// opens `uri`, types `code`, signs in as `login` and consents (or aborts, with
    /// `deny`). The argv, for running inside a host (the provider's network).
    pub fn browser_argv(uri: &str, code: &str, login: &str, deny: bool) -> Vec<String> {
        let mut v = vec![
            python3().to_string(),
            dir().join("device_browser.py").display().to_string(),
            uri.to_string(),
            code.to_string(),
            login.to_string(),
        ];
        if deny {
            v.push("deny".into());
        }
        v
    }

    /// An ID token for login name `user`, audience `client_id` (`zt-agent` or `zt-ssh`),
    /// through the device authorization grant (see the module doc).
    pub fn id_token(&self, user: &str, client_id: &str) -> String {
        let out = tempfile::NamedTempFile::new().expect("tmp");
        let o = Net::shared()
            .command(python3())
            .arg(dir().join("device_flow.py"))
            .arg(self.issuer())
            .arg(user)
            .arg(out.path())
            .env("CLIENT_ID", client_id)
            .output()
            .expect("python3");
        assert!(
            o.status.success(),
            "device flow failed: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        std::fs::read_to_string(out.path())
            .expect("id token")
            .trim()
            .to_string()
    }
}
