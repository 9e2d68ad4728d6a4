//! The agent's control socket, client side, and its protocol (std only, so
//! pam_zt can ask without pulling in the agent's dependencies).
//!
//! zt-agent listens on `<run_dir>/control.sock` (run_dir /run/zt, 0700 root;
//! the socket 0600) and serves one request per connection, root peers only:
//!
//! ```text
//! -> refresh-keys <iss>\n
//! <- ok <generation>\n              the pair now published (keys refetched, or
//!                                   refetched less than 30 s ago, or a sync
//!                                   holding the state lock: as published)
//! <- unavailable <reason>\n         nothing refreshed (fetch failed, rate
//!                                   limited...); verify with what is published
//! ```
//!
//! Lines are at most `MAX_LINE` bytes, newline included. Device-code
//! sign-ins (`device <user>`) use the same socket; their protocol and client
//! are in `crate::device`.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where zt-agent's runtime files live.
pub const RUN_DIR: &str = "/run/zt";
/// The control socket's name inside the run directory.
pub const SOCKET_NAME: &str = "control.sock";
/// Bound on a request or an answer line, newline included.
pub const MAX_LINE: usize = 1024;
/// Ask the agent to refetch an issuer's keys now.
pub const REFRESH_KEYS: &str = "refresh-keys";
/// Answer: done; the published generation follows.
pub const OK: &str = "ok";
/// Answer: not done; a reason follows.
pub const UNAVAILABLE: &str = "unavailable";

/// `<run_dir>/control.sock`.
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join(SOCKET_NAME)
}

/// The request line for `iss`; refused when `iss` could break the line.
pub fn refresh_request(iss: &str) -> Result<String, String> {
    if iss.is_empty() || iss.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("issuer {iss:?} cannot be sent"));
    }
    let line = format!("{REFRESH_KEYS} {iss}\n");
    if line.len() > MAX_LINE {
        return Err("issuer too long".into());
    }
    Ok(line)
}

/// What a connection asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// Refetch this issuer's keys.
    RefreshKeys(&'a str),
    /// Start a device-code sign-in for `user`, whose login comes from
    /// `rhost` (`crate::device::LOCAL` for a local one) (`crate::device`).
    Device { user: &'a str, rhost: &'a str },
}

/// Parses a request line (without its newline).
pub fn parse_request(line: &str) -> Result<Request<'_>, String> {
    let word = |w: &str| !w.is_empty() && !w.chars().any(|c| c.is_whitespace() || c.is_control());
    match line.split_once(' ') {
        Some((REFRESH_KEYS, iss)) if word(iss) => Ok(Request::RefreshKeys(iss)),
        Some((crate::device::DEVICE, rest)) => match rest.split_once(' ') {
            Some((user, rhost)) if word(user) && word(rhost) => Ok(Request::Device { user, rhost }),
            _ => Err("unknown request".into()),
        },
        _ => Err("unknown request".into()),
    }
}

/// Parses an answer line (without its newline): the generation, or the reason.
pub fn parse_answer(line: &str) -> Result<u64, String> {
    match line.split_once(' ') {
        Some((OK, g)) => g
            .parse()
            .map_err(|_| format!("bad answer from zt-agent: {line:?}")),
        Some((UNAVAILABLE, why)) => Err(why.to_string()),
        _ => Err(format!("bad answer from zt-agent: {line:?}")),
    }
}

/// Reads one line of at most `MAX_LINE` bytes (newline included) and returns
/// it without the newline; a longer line, EOF first or a timeout is an error.
pub fn read_line(stream: &mut impl Read) -> Result<String, String> {
    let mut buf = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return Err("connection closed before a full line".into()),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if buf.len() + 1 >= MAX_LINE => return Err("line too long".into()),
            Ok(_) => buf.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("timed out".into());
            }
            Err(e) => return Err(format!("reading: {e}")),
        }
    }
    String::from_utf8(buf).map_err(|_| "line is not UTF-8".into())
}

/// Connects to `path` without ever waiting: a full listen queue (the agent
/// serves one connection at a time) is an immediate "busy" error, as is a
/// missing socket or a refused connection. The stream returned is blocking.
pub(crate) fn connect_nonblocking(path: &Path) -> Result<UnixStream, String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;

    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    // room for the terminating NUL, which the zeroed tail provides
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err("path unusable for a unix socket".into());
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: socket takes no pointers; the result is checked below.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    loop {
        // SAFETY: fd is open; addr is an initialised sockaddr_un of `len` bytes.
        let rc = unsafe { libc::connect(fd.as_raw_fd(), (&raw const addr).cast(), len) };
        if rc == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => {
                return Err("zt-agent busy (its queue is full)".into());
            }
            // AF_UNIX stream connects complete or fail at once; anything
            // else (ENOENT, ECONNREFUSED, EINPROGRESS...) is "unavailable"
            _ => return Err(format!("unavailable: {e}")),
        }
    }
    let stream = UnixStream::from(fd);
    stream
        .set_nonblocking(false)
        .map_err(|e| format!("making the socket blocking: {e}"))?;
    Ok(stream)
}

/// The clients' reader of the agent's answers: lines, each read bounded by
/// what is left of a deadline; what arrived past a newline is kept for the
/// next line (a device sign-in's answers follow one another).
pub(crate) struct Lines {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Lines {
    pub(crate) fn new(stream: UnixStream) -> Lines {
        Lines {
            stream,
            buf: Vec::new(),
        }
    }

    pub(crate) fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// The next line (without its newline), at most `max` bytes, by `deadline`.
    pub(crate) fn line_by(&mut self, deadline: Instant, max: usize) -> Result<String, String> {
        loop {
            if let Some(at) = self.buf.iter().position(|&b| b == b'\n') {
                let rest = self.buf.split_off(at + 1);
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.pop();
                return String::from_utf8(line).map_err(|_| "answer is not UTF-8".into());
            }
            if self.buf.len() >= max {
                return Err("answer too long".into());
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| "zt-agent did not answer in time".to_string())?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| format!("setting a timeout: {e}"))?;
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("zt-agent closed the connection without an answer".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err("zt-agent did not answer in time".into());
                }
                Err(e) => return Err(format!("reading from zt-agent: {e}")),
            }
        }
    }
}

/// Asks the agent under `run_dir` to refetch the keys of `iss` now, and
/// returns the generation published afterwards. Blocking, bounded by
/// `timeout` in all (a missing agent fails at once). An `Err` is a reason to
/// log ("unavailable"); the caller then verifies with the published keys.
///
/// The socket is root's (0600 in a 0700 directory), so only root can reach
/// it at all. The connect never waits on the agent: a full listen queue (the
/// agent busy with other connections) fails at once, like a missing agent.
pub fn request_key_refresh(run_dir: &Path, iss: &str, timeout: Duration) -> Result<u64, String> {
    let deadline = Instant::now() + timeout;
    let request = refresh_request(iss)?;
    let path = socket_path(run_dir);
    let stream = connect_nonblocking(&path)
        .map_err(|e| format!("zt-agent control socket {}: {e}", path.display()))?;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| "zt-agent did not answer in time".to_string())
    };
    stream
        .set_write_timeout(Some(left()?))
        .map_err(|e| format!("setting a timeout: {e}"))?;
    // MSG_NOSIGNAL: this runs inside sshd and su, where a SIGPIPE from an
    // agent that closed the connection would kill the host process.
    crate::device::send_all(&stream, request.as_bytes())?;
    let line = Lines::new(stream).line_by(deadline, MAX_LINE)?;
    parse_answer(&line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn requests_and_answers_round_trip() {
        let line = refresh_request("https://acme.cloudflareaccess.com").unwrap();
        assert_eq!(line, "refresh-keys https://acme.cloudflareaccess.com\n");
        assert_eq!(
            parse_request(line.trim_end_matches('\n')),
            Ok(Request::RefreshKeys("https://acme.cloudflareaccess.com"))
        );
        assert_eq!(
            parse_request("device alice 203.0.113.9"),
            Ok(Request::Device {
                user: "alice",
                rhost: "203.0.113.9"
            })
        );
        assert!(parse_request("device alice").is_err());
        assert!(parse_request("device ").is_err());
        assert!(parse_request("device a b c").is_err());
        assert!(refresh_request("a b").is_err());
        assert!(refresh_request("a\nok 5").is_err());
        assert!(refresh_request(&"x".repeat(MAX_LINE)).is_err());
        assert!(parse_request("refresh-keys").is_err());
        assert!(parse_request("refresh-keys a b").is_err());
        assert!(parse_request("shutdown now").is_err());
        assert_eq!(parse_answer("ok 42"), Ok(42));
        assert_eq!(
            parse_answer("unavailable directory down"),
            Err("directory down".into())
        );
        assert!(parse_answer("ok x").is_err());
        assert!(parse_answer("").is_err());
    }

    #[test]
    fn read_line_caps_the_length() {
        assert_eq!(read_line(&mut &b"ok 1\nrest"[..]), Ok("ok 1".into()));
        assert!(read_line(&mut &b"no newline"[..]).is_err());
        let long = vec![b'a'; MAX_LINE + 5];
        assert_eq!(read_line(&mut &long[..]), Err("line too long".into()));
    }

    #[test]
    fn a_missing_agent_fails_at_once() {
        let t = std::env::temp_dir().join(format!("zt-control-missing-{}", std::process::id()));
        let start = Instant::now();
        let e = request_key_refresh(&t, "https://i", Duration::from_secs(5)).unwrap_err();
        assert!(e.contains("control socket"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_full_listen_queue_fails_at_once() {
        use std::os::fd::AsRawFd;
        let dir = std::env::temp_dir().join(format!("zt-control-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let listener = UnixListener::bind(socket_path(&dir)).unwrap();
        // SAFETY: listen on a bound socket we own; Linux lets it shrink the backlog.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 1) }, 0);
        // never accepted: two connections fill a backlog of 1
        let _held: Vec<UnixStream> = (0..2)
            .map(|_| UnixStream::connect(socket_path(&dir)).unwrap())
            .collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let r = request_key_refresh(&d, "https://i", Duration::from_secs(2));
            let _ = tx.send((r, start.elapsed()));
        });
        let (r, took) = rx
            .recv_timeout(Duration::from_secs(4))
            .expect("request_key_refresh hung on a full listen queue");
        let e = r.unwrap_err();
        assert!(e.contains("busy"), "{e}");
        assert!(took < Duration::from_secs(1), "{took:?}");
        drop(listener);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_silent_agent_times_out() {
        let dir = std::env::temp_dir().join(format!("zt-control-silent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let listener = UnixListener::bind(socket_path(&dir)).unwrap();
        let held = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_millis(600));
            drop(s);
        });
        let start = Instant::now();
        let e = request_key_refresh(&dir, "https://i", Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("in time"), "{e}");
        assert!(start.elapsed() < Duration::from_millis(550));
        held.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
