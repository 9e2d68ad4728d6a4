//! The key or certificate sshd accepted, from `SSH_AUTH_INFO_0` (sshd's
//! `ExposeAuthInfo yes`): lines like `publickey <type> <base64 blob>`.
//!
//! The OpenSSH certificate wire format (PROTOCOL.certkeys) is parsed by hand:
//! a bounded reader over the decoded blob that returns `None` on anything
//! short, overlong or inconsistent, and never panics. No SSH crate: the module
//! runs inside sshd, and this needs only length-prefixed strings; the
//! fingerprints use `sha2`, already in the module through jsonwebtoken's
//! rust_crypto backend (no new crate in the build).
//!
//! sshd has verified the key or certificate before PAM sees it: nothing here
//! is a security decision, only what the audit record says about the login.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};

/// The largest blob looked at (a 16k-bit RSA certificate is about 5 kB).
const BLOB_MAX: usize = 64 * 1024;
/// At most this many principals are recorded.
pub const PRINCIPALS_MAX: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthKey {
    /// A plain public key: `SHA256:...` of its blob.
    Key {
        fingerprint: String,
    },
    Certificate(Cert),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    pub key_id: String,
    pub serial: u64,
    pub principals: Vec<String>,
    /// `SHA256:...` of the signing CA's public key blob.
    pub ca: String,
    /// Validity window, seconds since the epoch.
    pub valid_after: u64,
    pub valid_before: u64,
}

/// OpenSSH's fingerprint: `SHA256:` and unpadded base64 of the blob's hash.
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

/// The key of the last `publickey` line of SSH_AUTH_INFO_0 (the one that
/// authenticated; earlier ones belong to partial successes). `None` when
/// there is none or it does not parse.
pub fn from_auth_info(info: &[u8]) -> Option<AuthKey> {
    let line = info
        .split(|&b| b == b'\n')
        .rfind(|l| l.starts_with(b"publickey "))?;
    let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    words.next()?;
    let key_type = words.next()?;
    let b64 = words.next()?;
    if b64.len() > BLOB_MAX * 4 / 3 + 4 {
        return None;
    }
    let blob = STANDARD.decode(b64).ok()?;
    parse(key_type, &blob)
}

/// A key or certificate blob of the given type (as named on the line).
pub fn parse(key_type: &[u8], blob: &[u8]) -> Option<AuthKey> {
    if blob.len() > BLOB_MAX {
        return None;
    }
    let mut r = Reader(blob);
    // The blob names its own type; it must agree with the line.
    if r.string()? != key_type {
        return None;
    }
    if !key_type.ends_with(b"-cert-v01@openssh.com") {
        return Some(AuthKey::Key {
            fingerprint: fingerprint(blob),
        });
    }
    let base = &key_type[..key_type.len() - b"-cert-v01@openssh.com".len()];
    // The key-specific public fields, all length-prefixed (mpints too).
    let fields = match base {
        b"ssh-rsa" => 2,
        b"ssh-dss" => 4,
        b"ecdsa-sha2-nistp256" | b"ecdsa-sha2-nistp384" | b"ecdsa-sha2-nistp521" => 2,
        b"ssh-ed25519" => 1,
        b"sk-ecdsa-sha2-nistp256@openssh.com" => 3,
        b"sk-ssh-ed25519@openssh.com" => 2,
        _ => return None,
    };
    r.string()?; // nonce
    for _ in 0..fields {
        r.string()?;
    }
    let serial = r.u64()?;
    let _cert_type = r.u32()?;
    let key_id = text(r.string()?);
    let mut packed = Reader(r.string()?);
    let mut principals = Vec::new();
    while !packed.0.is_empty() {
        let p = packed.string()?;
        if principals.len() < PRINCIPALS_MAX {
            principals.push(text(p));
        }
    }
    let valid_after = r.u64()?;
    let valid_before = r.u64()?;
    r.string()?; // critical options
    r.string()?; // extensions
    r.string()?; // reserved
    let ca_key = r.string()?;
    if ca_key.is_empty() {
        return None;
    }
    r.string()?; // signature
    if !r.0.is_empty() {
        return None;
    }
    Some(AuthKey::Certificate(Cert {
        key_id,
        serial,
        principals,
        ca: fingerprint(ca_key),
        valid_after,
        valid_before,
    }))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    struct Tmp(std::path::PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn keygen(args: &[&str]) {
        let out = Command::new("ssh-keygen").args(args).output().unwrap();
        assert!(out.status.success(), "ssh-keygen {args:?}: {out:?}");
    }

    /// ssh-keygen's own fingerprint of a public key file.
    fn keygen_fingerprint(pubfile: &std::path::Path) -> String {
        let out = Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(pubfile)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .to_owned()
    }

    /// A CA, a user key of `kind`, and a certificate like Cloudflare's.
    fn certificate(kind: &str, tag: &str) -> (Tmp, String, String, String) {
        let d = std::env::temp_dir().join(format!("pam-zt-sshkey-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        let p = |n: &str| d.join(n).to_str().unwrap().to_owned();
        keygen(&["-q", "-t", "ed25519", "-N", "", "-f", &p("ca")]);
        keygen(&["-q", "-t", kind, "-N", "", "-f", &p("user")]);
        keygen(&[
            "-q",
            "-s",
            &p("ca"),
            "-I",
            "0123456789abcdef0123456789abcdef",
            "-n",
            "alice,alice.admin",
            "-z",
            "4242",
            "-V",
            "+3m",
            &p("user.pub"),
        ]);
        let cert = std::fs::read_to_string(p("user-cert.pub")).unwrap();
        let ca_fp = keygen_fingerprint(&d.join("ca.pub"));
        let user_fp = keygen_fingerprint(&d.join("user.pub"));
        let plain = std::fs::read_to_string(p("user.pub")).unwrap();
        let info_cert = format!("publickey {}", cert.trim());
        let info_key = format!("publickey {}", plain.trim());
        (Tmp(d), info_cert, info_key, format!("{ca_fp} {user_fp}"))
    }

    #[test]
    fn certificates_from_ssh_keygen_parse() {
        for kind in ["ecdsa", "ed25519", "rsa"] {
            let (_t, info_cert, info_key, fps) = certificate(kind, kind);
            let (ca_fp, user_fp) = fps.split_once(' ').unwrap();
            let info = format!("keyboard-interactive\n{info_cert}\n");
            let Some(AuthKey::Certificate(c)) = from_auth_info(info.as_bytes()) else {
                panic!("{kind}: not a certificate: {info}");
            };
            assert_eq!(c.key_id, "0123456789abcdef0123456789abcdef");
            assert_eq!(c.serial, 4242);
            assert_eq!(c.principals, ["alice", "alice.admin"]);
            assert_eq!(c.ca, ca_fp, "{kind}");
            let now = crate::stages::now();
            assert!(c.valid_after <= now && now < c.valid_before && c.valid_before <= now + 240);
            // the plain key: ssh-keygen's fingerprint
            assert_eq!(
                from_auth_info(info_key.as_bytes()),
                Some(AuthKey::Key {
                    fingerprint: user_fp.to_owned()
                }),
                "{kind}"
            );
        }
    }

    #[test]
    fn damaged_blobs_are_refused_without_panicking() {
        let (_t, info_cert, _, _) = certificate("ecdsa", "damaged");
        let mut w = info_cert.split(' ');
        let (_, ty, b64) = (w.next(), w.next().unwrap(), w.next().unwrap());
        let blob = STANDARD.decode(b64).unwrap();
        assert!(matches!(
            parse(ty.as_bytes(), &blob),
            Some(AuthKey::Certificate(_))
        ));
        // every truncation
        for n in 0..blob.len() {
            assert_eq!(parse(ty.as_bytes(), &blob[..n]), None, "cut at {n}");
        }
        // trailing bytes
        let mut long = blob.clone();
        long.push(0);
        assert_eq!(parse(ty.as_bytes(), &long), None);
        // a type on the line that differs from the blob's
        assert_eq!(parse(b"ssh-ed25519-cert-v01@openssh.com", &blob), None);
        // every single byte set to 0xff (huge lengths), and flipped: never a panic
        for i in 0..blob.len() {
            for v in [0xff, blob[i] ^ 0x80] {
                let mut b = blob.clone();
                b[i] = v;
                let _ = parse(ty.as_bytes(), &b);
            }
        }
        // not base64, no blob, nothing
        for info in [
            &b"publickey ecdsa-sha2-nistp256-cert-v01@openssh.com !!!"[..],
            b"publickey ecdsa-sha2-nistp256-cert-v01@openssh.com",
            b"publickey",
            b"keyboard-interactive",
            b"",
            b"publickey ssh-foo-cert-v01@openssh.com AAAAF3NzaC1mb28tY2VydC12MDFAb3BlbnNzaC5jb20=",
        ] {
            assert_eq!(
                from_auth_info(info),
                None,
                "{}",
                String::from_utf8_lossy(info)
            );
        }
    }
}
