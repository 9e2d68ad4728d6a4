//! The audit trail: one record per attempt, to syslog (authpriv) and as one
//! JSON object per line appended to /var/log/zt/auth.jsonl.
//!
//! Strings in a record come from tokens and clients (hostile): serde_json
//! escapes them, and every field is capped. The token itself is never
//! recorded, only its issuer, kid and jti.
//!
//! syslog: `syslog(LOG_AUTHPRIV | LOG_NOTICE, "%s", line)` without
//! `openlog`: openlog in a module would change the host process's (sshd's)
//! own ident and facility for everything it logs afterwards.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde_json::{Map, Value};

use crate::token::cap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub time: u64,
    /// "auth", "account", "session".
    pub stage: &'static str,
    pub service: Option<String>,
    pub user: Option<String>,
    pub email: Option<String>,
    pub idp_id: Option<String>,
    /// "token", "device", "password", "key", "certificate".
    pub method: Option<String>,
    pub issuer: Option<String>,
    pub kid: Option<String>,
    pub jti: Option<String>,
    /// The IdP's session id and the MFA evidence of a verified token
    /// (`amr=pwd,mfa`, `acr=...`); written only when set.
    pub sid: Option<String>,
    pub mfa: Option<String>,
    /// From a token whose signature did not verify: what it claims, not
    /// facts. Written only when set; `email`/`issuer`/`jti` stay null then.
    pub claimed_email: Option<String>,
    pub claimed_issuer: Option<String>,
    /// The key or certificate sshd accepted (SSH_AUTH_INFO_0); written
    /// only when set.
    pub key_fingerprint: Option<String>,
    pub cert_key_id: Option<String>,
    pub cert_serial: Option<u64>,
    pub cert_principals: Option<Vec<String>>,
    pub cert_ca: Option<String>,
    /// The directory user a certificate names, where that is not `user`
    /// (a login to a shared account); written only when set.
    pub person: Option<String>,
    pub rhost: Option<String>,
    pub tty: Option<String>,
    /// "success", "failure", "ignored".
    pub result: &'static str,
    pub reason: String,
}

const FIELD_MAX: usize = 256;

impl Record {
    /// The directory user the attempt is about: their email and IdP id.
    pub fn directory_user(&mut self, u: &crate::directory::DirUser) {
        self.email = Some(String::from_utf8_lossy(&u.email).into_owned());
        self.idp_id = Some(String::from_utf8_lossy(&u.idp_id).into_owned());
    }

    pub fn to_json(&self) -> String {
        let mut m = Map::new();
        m.insert("time".into(), self.time.into());
        m.insert("stage".into(), self.stage.into());
        let mut opt = |k: &str, v: &Option<String>| {
            let v = v
                .as_deref()
                .map_or(Value::Null, |s| Value::String(cap(s, FIELD_MAX)));
            m.insert(k.into(), v);
        };
        opt("service", &self.service);
        opt("user", &self.user);
        opt("email", &self.email);
        opt("idp_id", &self.idp_id);
        opt("method", &self.method);
        opt("issuer", &self.issuer);
        opt("kid", &self.kid);
        opt("jti", &self.jti);
        opt("rhost", &self.rhost);
        opt("tty", &self.tty);
        for (k, v) in [
            ("sid", &self.sid),
            ("mfa", &self.mfa),
            ("claimed_email", &self.claimed_email),
            ("claimed_issuer", &self.claimed_issuer),
            ("key_fingerprint", &self.key_fingerprint),
            ("cert_key_id", &self.cert_key_id),
            ("cert_ca", &self.cert_ca),
            ("person", &self.person),
        ] {
            if v.is_some() {
                opt(k, v);
            }
        }
        if let Some(s) = self.cert_serial {
            m.insert("cert_serial".into(), s.into());
        }
        if let Some(ps) = &self.cert_principals {
            let ps: Vec<Value> = ps
                .iter()
                .take(crate::sshkey::PRINCIPALS_MAX)
                .map(|p| Value::String(cap(p, FIELD_MAX)))
                .collect();
            m.insert("cert_principals".into(), Value::Array(ps));
        }
        m.insert("result".into(), self.result.into());
        m.insert("reason".into(), cap(&self.reason, 512).into());
        Value::Object(m).to_string()
    }

    /// The syslog line: the same JSON behind a fixed prefix, so it stays one
    /// line and every hostile byte is escaped.
    pub fn to_syslog(&self) -> String {
        format!("pam_zt: {}", self.to_json())
    }
}

/// Appends one line to `path`, creating its directory (0700) and the file
/// (0600) if missing. The directory must be root-owned (or owned by our
/// euid) and not a symlink; the file is opened relative to it with
/// O_APPEND|O_NOFOLLOW|O_CLOEXEC, and the line goes out in one write, so
/// concurrent logins never interleave within a line.
pub fn append(path: &Path, line: &str) -> Result<(), String> {
    let dir = path.parent().ok_or("audit log path has no directory")?;
    let name = path.file_name().ok_or("audit log path has no file name")?;
    let dir_c = CString::new(dir.as_os_str().as_bytes()).map_err(|_| "NUL in path")?;
    let name_c = CString::new(name.as_bytes()).map_err(|_| "NUL in path")?;
    // SAFETY: valid C strings; the fds opened here are owned by the Files below.
    unsafe {
        if libc::mkdir(dir_c.as_ptr(), 0o700) != 0
            && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
        {
            return Err(format!(
                "mkdir {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            ));
        }
        let dfd = libc::open(
            dir_c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        );
        if dfd < 0 {
            return Err(format!(
                "open {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            ));
        }
        let dir_file = std::fs::File::from_raw_fd(dfd);
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(dfd, &mut st) != 0 || st.st_uid != libc::geteuid() || st.st_mode & 0o022 != 0
        {
            return Err(format!(
                "{} is not ours or is writable by others",
                dir.display()
            ));
        }
        let fd = libc::openat(
            dfd,
            name_c.as_ptr(),
            libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        );
        drop(dir_file);
        if fd < 0 {
            return Err(format!(
                "open {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        let mut file = std::fs::File::from_raw_fd(fd);
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        file.write_all(&buf)
            .map_err(|e| format!("write {}: {e}", path.display()))
    }
}

/// To syslog, authpriv.notice (authpriv.info for ignored attempts).
pub fn syslog(line: &str, ignored: bool) {
    let Ok(msg) = CString::new(line.replace('\0', " ")) else {
        return;
    };
    let level = if ignored {
        libc::LOG_INFO
    } else {
        libc::LOG_NOTICE
    };
    // SAFETY: a fixed "%s" format with one valid C string argument.
    unsafe { libc::syslog(libc::LOG_AUTHPRIV | level, c"%s".as_ptr(), msg.as_ptr()) };
}

/// Both sinks; a failing audit file is reported to syslog, never to the
/// user and never a reason to change the outcome.
pub fn emit(record: &Record, log: &Path) {
    syslog(&record.to_syslog(), record.result == "ignored");
    if let Err(e) = append(log, &record.to_json()) {
        syslog(&format!("pam_zt: audit log not written: {e}"), false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_one_escaped_line_without_the_token() {
        let r = Record {
            time: 1,
            stage: "auth",
            user: Some("alice\n{\"evil\":1}".into()),
            rhost: Some("x".repeat(10_000)),
            result: "failure",
            reason: "bad signature".into(),
            ..Record::default()
        };
        let j = r.to_json();
        assert!(!j.contains('\n'));
        let v: Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["user"], "alice\n{\"evil\":1}");
        assert!(v["rhost"].as_str().unwrap().len() < 300);
        assert_eq!(v["jti"], Value::Null);
        for k in [
            "time", "service", "user", "email", "idp_id", "method", "issuer", "kid", "jti",
            "rhost", "tty", "result", "reason",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
    }

    #[test]
    fn append_creates_dir_0700_and_file_0600() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("pam-zt-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir(&base).unwrap();
        let log = base.join("zt").join("auth.jsonl");
        append(&log, "{\"a\":1}").unwrap();
        append(&log, "{\"a\":2}").unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"a\":2}\n");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&base.join("zt")), 0o700);
        assert_eq!(mode(&log), 0o600);
        // a symlink planted as the log file is not followed
        let target = base.join("target");
        std::fs::write(&target, "").unwrap();
        let log2 = base.join("zt").join("link.jsonl");
        std::os::unix::fs::symlink(&target, &log2).unwrap();
        assert!(append(&log2, "x").is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
