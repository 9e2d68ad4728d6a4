//! Device-code sign-in (OAuth 2.0 device authorization grant, RFC 8628)
//! through the agent's control socket: the protocol, and the client pam_zt
//! uses. The agent holds the network side (it asks the IdP for a code and
//! polls its token endpoint); pam_zt shows the code and verifies the ID
//! token it gets like any other token.
//!
//! ```text
//! -> device <user> <source>\n           PAM_RHOST; -/<PAM_RUSER> for sudo or su; - for the console
//! <- code <expires_in> <user_code> <verification_uri> [<verification_uri_complete>]\n
//! <- unavailable <reason>\n            no sign-in was started
//! then, any number of times (the person says they have signed in):
//! -> poll\n
//! <- pending\n                         not signed in yet
//! and one final line, in answer to a poll or unasked (the agent's own poll
//! decided), after which the agent closes the connection:
//! <- token <id_token>\n                the IdP's ID token, to be verified
//! <- refused <reason>\n                denied, expired, timed out
//! <- unavailable <reason>\n            the IdP or the agent failed
//! ```
//!
//! Closing the connection cancels the sign-in: the agent stops polling at
//! once. Every write here uses `MSG_NOSIGNAL`: this code runs inside sshd,
//! and a write to a connection the agent has closed must be an error, not a
//! SIGPIPE that kills the host process.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::control::{Lines, MAX_LINE, UNAVAILABLE, connect_nonblocking, socket_path};

/// Start a device-code sign-in for a user.
pub const DEVICE: &str = "device";
/// The person says they have signed in: poll now.
pub const POLL: &str = "poll";
/// Answers.
pub const CODE: &str = "code";
pub const PENDING: &str = "pending";
pub const TOKEN: &str = "token";
pub const REFUSED: &str = "refused";
/// Bound on a token line: tokens are capped at 16 KiB by the verifier.
pub const MAX_TOKEN_LINE: usize = 20 * 1024;
/// Bound on a user code and on URLs shown to the person.
pub const MAX_CODE: usize = 64;
pub const MAX_URL: usize = 400;

/// What the person is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCode {
    pub expires_in: u64,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
}

/// One answer after the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceAnswer {
    Pending,
    Token(String),
    Refused(String),
    Unavailable(String),
}

fn word(w: &str, max: usize) -> bool {
    !w.is_empty() && w.len() <= max && !w.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// What a person is shown must be plain ASCII: no terminal escapes, no
/// right-to-left overrides or look-alike letters in a URL or code.
fn shown(w: &str, max: usize) -> bool {
    !w.is_empty() && w.len() <= max && w.bytes().all(|b| b.is_ascii_graphic())
}

/// Stands for "no remote host" (a local login) in a request.
pub const LOCAL: &str = "-";
/// Prefix of a local login's source when the invoking user is known:
/// `-/<PAM_RUSER>` (sudo, su). Neither an address nor a host name.
pub const LOCAL_BY: &str = "-/";
/// Stands for a remote host that cannot be sent (spaces, not UTF-8, too
/// long): such logins share one per-source limit.
pub const UNKNOWN_HOST: &str = "?";

/// The request line for `user` from `rhost`; refused when `user` could break
/// the line.
pub fn device_request(user: &[u8], rhost: Option<&[u8]>) -> Result<String, String> {
    let user = std::str::from_utf8(user).map_err(|_| "user name is not UTF-8".to_string())?;
    if !word(user, 256) {
        return Err("user name cannot be sent".into());
    }
    let rhost = match rhost {
        None => LOCAL,
        Some(r) => std::str::from_utf8(r)
            .ok()
            .filter(|r| word(r, 255) && *r != LOCAL)
            .unwrap_or(UNKNOWN_HOST),
    };
    Ok(format!("{DEVICE} {user} {rhost}\n"))
}

/// The `code` line (the agent writes it); `None` when a field could break
/// the line or the person's screen.
pub fn code_line(c: &DeviceCode) -> Option<String> {
    if !shown(&c.user_code, MAX_CODE) || !shown(&c.verification_uri, MAX_URL) {
        return None;
    }
    let mut line = format!(
        "{CODE} {} {} {}",
        c.expires_in, c.user_code, c.verification_uri
    );
    if let Some(full) = &c.verification_uri_complete {
        if !shown(full, MAX_URL) {
            return None;
        }
        line.push(' ');
        line.push_str(full);
    }
    line.push('\n');
    Some(line)
}

/// Parses the first answer (without its newline).
pub fn parse_code(line: &str) -> Result<DeviceCode, String> {
    if let Some(why) = line
        .strip_prefix(UNAVAILABLE)
        .and_then(|r| r.strip_prefix(' '))
    {
        return Err(why.to_string());
    }
    let mut parts = line.split(' ');
    let (Some(CODE), Some(exp), Some(code), Some(uri)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("bad answer from zt-agent: {:?}", cut(line)));
    };
    let complete = parts.next();
    if parts.next().is_some()
        || !shown(code, MAX_CODE)
        || !shown(uri, MAX_URL)
        || complete.is_some_and(|c| !shown(c, MAX_URL))
    {
        return Err(format!("bad answer from zt-agent: {:?}", cut(line)));
    }
    Ok(DeviceCode {
        expires_in: exp
            .parse()
            .map_err(|_| format!("bad answer from zt-agent: {:?}", cut(line)))?,
        user_code: code.into(),
        verification_uri: uri.into(),
        verification_uri_complete: complete.map(Into::into),
    })
}

/// The line for an answer after the code (the agent writes it).
pub fn answer_line(a: &DeviceAnswer) -> String {
    let clean = |why: &str| -> String {
        why.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(MAX_LINE - 32)
            .collect()
    };
    match a {
        DeviceAnswer::Pending => format!("{PENDING}\n"),
        DeviceAnswer::Token(t) => format!("{TOKEN} {t}\n"),
        DeviceAnswer::Refused(why) => format!("{REFUSED} {}\n", clean(why)),
        DeviceAnswer::Unavailable(why) => format!("{UNAVAILABLE} {}\n", clean(why)),
    }
}

/// Parses an answer after the code (without its newline).
pub fn parse_answer(line: &str) -> DeviceAnswer {
    let (head, rest) = line.split_once(' ').unwrap_or((line, ""));
    match head {
        PENDING if rest.is_empty() => DeviceAnswer::Pending,
        TOKEN if word(rest, MAX_TOKEN_LINE) => DeviceAnswer::Token(rest.into()),
        REFUSED => DeviceAnswer::Refused(rest.into()),
        UNAVAILABLE => DeviceAnswer::Unavailable(rest.into()),
        _ => DeviceAnswer::Unavailable(format!("bad answer from zt-agent: {:?}", cut(line))),
    }
}

fn cut(s: &str) -> &str {
    let mut end = s.len().min(80);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Writes all of `bytes` with `MSG_NOSIGNAL` (see the module doc).
pub fn send_all(stream: &UnixStream, mut bytes: &[u8]) -> Result<(), String> {
    while !bytes.is_empty() {
        // SAFETY: the fd is open for the call; `bytes` is valid for its length.
        let n = unsafe {
            libc::send(
                stream.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("writing to zt-agent: {e}"));
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// A sign-in in progress; dropping it closes the connection, which cancels
/// the sign-in at the agent.
pub struct DeviceSignIn {
    lines: Lines,
}

impl DeviceSignIn {
    /// Asks the agent under `run_dir` to start a sign-in for `user`; waits
    /// at most `timeout` for the code (a missing or busy agent fails at once).
    pub fn start(
        run_dir: &Path,
        user: &[u8],
        rhost: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<(DeviceSignIn, DeviceCode), String> {
        let request = device_request(user, rhost)?;
        let path = socket_path(run_dir);
        let stream = connect_nonblocking(&path)
            .map_err(|e| format!("zt-agent control socket {}: {e}", path.display()))?;
        send_all(&stream, request.as_bytes())?;
        let mut lines = Lines::new(stream);
        let code = parse_code(&lines.line_by(Instant::now() + timeout, MAX_LINE)?)?;
        Ok((DeviceSignIn { lines }, code))
    }

    /// Asks the agent to poll now and waits at most `timeout` for the
    /// answer. A final answer the agent sent unasked is returned first.
    pub fn poll(&mut self, timeout: Duration) -> DeviceAnswer {
        // The agent may have closed after a final line: that line is still
        // to be read, so a failed write is not the answer.
        let _ = send_all(self.lines.stream(), format!("{POLL}\n").as_bytes());
        match self.lines.line_by(Instant::now() + timeout, MAX_TOKEN_LINE) {
            Ok(line) => parse_answer(&line),
            Err(why) => DeviceAnswer::Unavailable(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixListener;

    #[test]
    fn lines_round_trip() {
        assert_eq!(device_request(b"alice", None).unwrap(), "device alice -\n");
        assert_eq!(
            device_request(b"alice", Some(b"203.0.113.9")).unwrap(),
            "device alice 203.0.113.9\n"
        );
        assert_eq!(
            device_request(b"alice", Some(b"evil host")).unwrap(),
            "device alice ?\n"
        );
        assert_eq!(
            device_request(b"alice", Some(b"-")).unwrap(),
            "device alice ?\n"
        );
        assert!(device_request(b"a b", None).is_err());
        assert!(device_request(b"a\npoll", None).is_err());
        assert!(device_request(b"", None).is_err());
        let c = DeviceCode {
            expires_in: 600,
            user_code: "ABCD-EFGH".into(),
            verification_uri: "https://microsoft.com/devicelogin".into(),
            verification_uri_complete: Some("https://x/device?user_code=ABCD-EFGH".into()),
        };
        let line = code_line(&c).unwrap();
        assert_eq!(parse_code(line.trim_end()), Ok(c.clone()));
        let plain = DeviceCode {
            verification_uri_complete: None,
            ..c.clone()
        };
        assert_eq!(parse_code(code_line(&plain).unwrap().trim_end()), Ok(plain));
        // an IdP's code with a space or a line break never reaches a screen
        for bad in ["AB CD", "AB\nCD", "", "AB\u{1b}[2J", "AB\u{202e}DC"] {
            let mut b = c.clone();
            b.user_code = bad.into();
            assert!(code_line(&b).is_none(), "{bad:?}");
        }
        assert_eq!(parse_code("unavailable idp down"), Err("idp down".into()));
        assert!(parse_code("code x ABCD https://u").is_err());
        assert!(parse_code("code 5 ABCD").is_err());
        assert!(parse_code("code 5 ABCD https://u https://v extra").is_err());
        for a in [
            DeviceAnswer::Pending,
            DeviceAnswer::Token("aaa.bbb.ccc".into()),
            DeviceAnswer::Refused("access denied".into()),
            DeviceAnswer::Unavailable("idp down".into()),
        ] {
            assert_eq!(parse_answer(answer_line(&a).trim_end()), a);
        }
        assert_eq!(
            parse_answer(answer_line(&DeviceAnswer::Refused("a\nb".into())).trim_end()),
            DeviceAnswer::Refused("a b".into())
        );
        assert!(matches!(
            parse_answer("token a b"),
            DeviceAnswer::Unavailable(_)
        ));
        assert!(matches!(parse_answer("ok 5"), DeviceAnswer::Unavailable(_)));
    }

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("zt-device-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_sign_in_against_a_scripted_agent() {
        let d = dir("scripted");
        let listener = UnixListener::bind(socket_path(&d)).unwrap();
        let agent = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut r = Lines::new(s.try_clone().unwrap());
            assert_eq!(
                r.line_by(Instant::now() + Duration::from_secs(2), MAX_LINE)
                    .unwrap(),
                "device alice -"
            );
            s.write_all(b"code 600 ABCD-EFGH https://idp/device\n")
                .unwrap();
            assert_eq!(
                r.line_by(Instant::now() + Duration::from_secs(2), MAX_LINE)
                    .unwrap(),
                "poll"
            );
            s.write_all(b"pending\n").unwrap();
            // a final line unasked, then close
            let token = format!("token {}\n", "t".repeat(5000));
            s.write_all(token.as_bytes()).unwrap();
        });
        let (mut sign_in, code) =
            DeviceSignIn::start(&d, b"alice", None, Duration::from_secs(2)).unwrap();
        assert_eq!(code.user_code, "ABCD-EFGH");
        assert_eq!(sign_in.poll(Duration::from_secs(2)), DeviceAnswer::Pending);
        agent.join().unwrap();
        // the agent has closed: the write fails quietly (no SIGPIPE), the
        // buffered final line is the answer
        assert_eq!(
            sign_in.poll(Duration::from_secs(2)),
            DeviceAnswer::Token("t".repeat(5000))
        );
        assert!(matches!(
            sign_in.poll(Duration::from_secs(2)),
            DeviceAnswer::Unavailable(_)
        ));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_missing_agent_fails_at_once_and_a_silent_one_in_time() {
        let d = dir("missing");
        let start = Instant::now();
        let e = DeviceSignIn::start(&d, b"alice", None, Duration::from_secs(5))
            .err()
            .unwrap();
        assert!(e.contains("control socket"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(1));
        let listener = UnixListener::bind(socket_path(&d)).unwrap();
        let held = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_millis(600));
            drop(s);
        });
        let start = Instant::now();
        let e = DeviceSignIn::start(&d, b"alice", None, Duration::from_millis(200))
            .err()
            .unwrap();
        assert!(e.contains("in time"), "{e}");
        assert!(start.elapsed() < Duration::from_millis(550));
        held.join().unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }
}
