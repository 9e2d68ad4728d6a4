//! The agent's control socket, client side, and its protocol (std only, so
//! pam_zt can ask without pulling in the agent's dependencies).
//!
//! zt-agent listens on `<run_dir>/control.sock` (run_dir /run/zt, 0700 root;
//! the socket 0600) and serves one request per connection, root peers only:
//!
//! ```text
//! -> refresh-keys <iss>\n
//! <- ok <generation>\n              the pair now published (keys refetched, or
//!                                   refetched less than 30 s ago: as published)
//! <- unavailable <reason>\n         nothing refreshed; verify with what is published
//! ```
//!
//! Lines are at most `MAX_LINE` bytes, newline included.

use std::io::{Read, Write};
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

/// Parses a request line (without its newline): the issuer of a refresh-keys.
pub fn parse_request(line: &str) -> Result<&str, String> {
    match line.split_once(' ') {
        Some((REFRESH_KEYS, iss))
            if !iss.is_empty() && !iss.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(iss)
        }
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
            Err(e) => return Err(format!("reading: {e}")),
        }
    }
    String::from_utf8(buf).map_err(|_| "line is not UTF-8".into())
}

/// Asks the agent under `run_dir` to refetch the keys of `iss` now, and
/// returns the generation published afterwards. Blocking, bounded by
/// `timeout` in all (a missing agent fails at once). An `Err` is a reason to
/// log ("unavailable"); the caller then verifies with the published keys.
///
/// The socket is root's (0600 in a 0700 directory), so only root can reach
/// it at all; a connect to a live listener does not wait on the agent.
pub fn request_key_refresh(run_dir: &Path, iss: &str, timeout: Duration) -> Result<u64, String> {
    let deadline = Instant::now() + timeout;
    let request = refresh_request(iss)?;
    let path = socket_path(run_dir);
    let mut stream = UnixStream::connect(&path)
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
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("writing to zt-agent: {e}"))?;
    // read in steps, each bounded by what is left of the deadline
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 256];
    loop {
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|e| format!("setting a timeout: {e}"))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
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
        if buf.contains(&b'\n') || buf.len() >= MAX_LINE {
            break;
        }
    }
    let line = buf
        .split(|&b| b == b'\n')
        .next()
        .filter(|_| buf.contains(&b'\n'))
        .ok_or_else(|| "zt-agent closed the connection without an answer".to_string())?;
    parse_answer(&String::from_utf8_lossy(line))
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
            Ok("https://acme.cloudflareaccess.com")
        );
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
