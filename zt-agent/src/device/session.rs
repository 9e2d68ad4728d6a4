//! One sign-in, from the IdP's code to the final answer, on its own thread.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use zt_published::device::{self as proto, DeviceAnswer};

use super::grant::{self, Poll};
use super::pool::IdpPool;
use super::{Discovered, idp};
use crate::config::DeviceSpec;
use crate::http::Http;

/// Consecutive transport failures of token polls before giving up.
pub const MAX_POLL_FAILURES: u32 = 3;
/// A start that waited this long for a worker is dropped: pam_zt waits 40 s
/// for the code, and discovery plus the request may take 15 s more.
pub const START_QUEUE_LIMIT: Duration = Duration::from_secs(20);

/// What pam_zt's end of the connection did while the agent waited.
pub enum Peer {
    /// Nothing within the wait.
    Quiet,
    /// This many `poll` requests.
    Asked(usize),
    /// Closed, or sent something that is not a poll: the sign-in ends.
    Gone,
}

/// Waits at most `wait` for pam_zt to ask or hang up.
pub fn wait_for_peer(stream: &mut UnixStream, inbox: &mut Vec<u8>, wait: Duration) -> Peer {
    let mut p = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    let ms = wait.as_millis().clamp(0, i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd for an fd open during the call.
    let rc = unsafe { libc::poll(&raw mut p, 1, ms) };
    if rc == 0
        || (rc < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted)
    {
        return Peer::Quiet;
    }
    if rc < 0 || p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
    {
        return Peer::Gone;
    }
    let mut chunk = [0u8; 256];
    match stream.read(&mut chunk) {
        Ok(0) | Err(_) => return Peer::Gone,
        Ok(n) => inbox.extend_from_slice(&chunk[..n]),
    }
    let mut asked = 0;
    while let Some(at) = inbox.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = inbox.drain(..=at).collect();
        if &line[..line.len() - 1] != proto::POLL.as_bytes() {
            return Peer::Gone;
        }
        asked += 1;
    }
    if inbox.len() > 64 {
        return Peer::Gone;
    }
    if asked == 0 {
        Peer::Quiet
    } else {
        Peer::Asked(asked)
    }
}

/// When the next poll of the token endpoint may go out: RFC 8628 asks for
/// `interval` between polls, whoever asks for them.
pub fn next_poll(last: Option<Instant>, interval: Duration, now: Instant) -> Instant {
    last.map_or(now, |l| (l + interval).max(now))
}

pub struct Session<'a> {
    pub stream: UnixStream,
    pub user: &'a str,
    pub iss: &'a str,
    pub spec: &'a DeviceSpec,
    pub http: &'a Http,
    pub pool: &'a IdpPool,
    pub discovered: &'a std::sync::Arc<Discovered>,
}

/// Writes one answer line to pam_zt; false when it has gone.
pub fn send(stream: &UnixStream, a: &DeviceAnswer) -> bool {
    proto::send_all(stream, proto::answer_line(a).as_bytes()).is_ok()
}

/// Runs the sign-in to its end.
pub fn run(s: Session<'_>) {
    let Session {
        mut stream,
        user,
        iss,
        spec,
        http,
        pool,
        discovered,
    } = s;
    let started = {
        let (http, iss, spec) = (http.clone(), iss.to_string(), spec.clone());
        let discovered = discovered.clone();
        let local = crate::config::is_loopback_url(&iss);
        let watch = stream.try_clone();
        let queued = Instant::now();
        // (a failed dup cannot tell: go on, the code line's write will)
        let left = move || watch.as_ref().is_ok_and(crate::control::peer_gone);
        pool.run(move || {
            // A code nobody will see is not worth asking for: pam_zt gave up
            // while this waited for a worker, or it waited too long.
            let late = "pam_zt stopped waiting before the IdP was asked".to_string();
            if left() || queued.elapsed() > START_QUEUE_LIMIT {
                return Err(late);
            }
            let (device_url, token_url) = discovered.endpoints(&http, &iss, &spec)?;
            if left() {
                return Err(late);
            }
            idp::authorize(&http, &device_url, &spec, local).map(|s| (s, token_url))
        })
        .unwrap_or_else(|| Err("the request failed inside the agent".into()))
    };
    let (started, token_url) = match started {
        Ok(s) => s,
        Err(why) => {
            tracing::warn!("device sign-in for {user}: the IdP did not start one: {why}");
            send(
                &stream,
                &DeviceAnswer::Unavailable(format!("the IdP did not start a sign-in: {why}")),
            );
            return;
        }
    };
    let Some(line) = proto::code_line(&started.code) else {
        return; // parse_authorization checked it
    };
    if proto::send_all(&stream, line.as_bytes()).is_err() {
        tracing::info!("device sign-in for {user}: pam_zt left before the code was shown");
        return;
    }
    // One interval past the code's lifetime: the poll after it gets the
    // IdP's own expired_token, a clearer answer than our timeout.
    let limit = spec
        .timeout
        .min(started.expires_in.saturating_add(started.interval));
    tracing::info!(
        "device sign-in for {user}: code {} at {}, waiting up to {} s",
        started.code.user_code,
        started.code.verification_uri,
        limit.as_secs()
    );
    let deadline = Instant::now() + limit;
    let mut interval = started.interval;
    let mut last_poll: Option<Instant> = None;
    let mut scheduled = Instant::now() + interval;
    // polls pam_zt asked for that have no answer yet
    let mut asked = 0usize;
    let mut failures = 0;
    let mut inbox = Vec::new();
    loop {
        let now = Instant::now();
        if now >= deadline {
            let why = format!("nobody signed in within {} s", limit.as_secs());
            tracing::info!("device sign-in for {user}: {why}");
            send(&stream, &DeviceAnswer::Refused(why));
            return;
        }
        // an asked poll goes out as soon as the interval allows
        let due = if asked > 0 {
            scheduled.min(next_poll(last_poll, interval, now))
        } else {
            scheduled
        };
        if now < due {
            match wait_for_peer(&mut stream, &mut inbox, due.min(deadline) - now) {
                Peer::Gone => {
                    tracing::info!("device sign-in for {user}: cancelled (the login went away)");
                    return;
                }
                Peer::Asked(n) => asked += n,
                Peer::Quiet => {}
            }
            continue;
        }
        let (sent, polled) = {
            let (http, url, spec) = (http.clone(), token_url.clone(), spec.clone());
            let code = started.device_code.clone();
            pool.run(move || {
                // the interval counts from when the request left, not from
                // when it was queued
                let sent = Instant::now();
                (sent, idp::poll(&http, &url, &spec, &code))
            })
            .unwrap_or_else(|| {
                (
                    Instant::now(),
                    Err("the request failed inside the agent".into()),
                )
            })
        };
        last_poll = Some(sent);
        let idp_ms = sent.elapsed().as_secs_f64() * 1000.0;
        match polled {
            Ok(Poll::Token(token)) => {
                tracing::info!(
                    "device sign-in for {user}: signed in at the IdP (token endpoint answered in \
                     {idp_ms:.1} ms); token handed to pam_zt"
                );
                send(&stream, &DeviceAnswer::Token(token));
                return;
            }
            Ok(Poll::Pending) => failures = 0,
            Ok(Poll::SlowDown) => {
                failures = 0;
                interval = (interval + grant::SLOW_DOWN_STEP).min(grant::MAX_INTERVAL);
            }
            Ok(Poll::Refused(why)) => {
                tracing::info!("device sign-in for {user}: {why}");
                send(&stream, &DeviceAnswer::Refused(why));
                return;
            }
            Ok(Poll::Failed(why)) => {
                tracing::warn!("device sign-in for {user}: {why}");
                send(&stream, &DeviceAnswer::Unavailable(why));
                return;
            }
            Err(why) => {
                failures += 1;
                tracing::warn!("device sign-in for {user}: poll {failures}: {why}");
                if failures >= MAX_POLL_FAILURES {
                    send(
                        &stream,
                        &DeviceAnswer::Unavailable(format!("the IdP cannot be reached: {why}")),
                    );
                    return;
                }
            }
        }
        scheduled = Instant::now() + interval;
        for _ in 0..std::mem::take(&mut asked) {
            if !send(&stream, &DeviceAnswer::Pending) {
                tracing::info!("device sign-in for {user}: cancelled (the login went away)");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_asks_or_leaves() {
        use std::io::Write;
        let (mut agent, mut pam) = UnixStream::pair().unwrap();
        let mut inbox = Vec::new();
        assert!(matches!(
            wait_for_peer(&mut agent, &mut inbox, Duration::from_millis(10)),
            Peer::Quiet
        ));
        pam.write_all(b"poll\npoll\npo").unwrap();
        assert!(matches!(
            wait_for_peer(&mut agent, &mut inbox, Duration::from_millis(100)),
            Peer::Asked(2)
        ));
        pam.write_all(b"ll\n").unwrap();
        assert!(matches!(
            wait_for_peer(&mut agent, &mut inbox, Duration::from_millis(100)),
            Peer::Asked(1)
        ));
        pam.write_all(b"shutdown\n").unwrap();
        assert!(matches!(
            wait_for_peer(&mut agent, &mut inbox, Duration::from_millis(100)),
            Peer::Gone
        ));
        let (mut agent, pam) = UnixStream::pair().unwrap();
        drop(pam);
        assert!(matches!(
            wait_for_peer(&mut agent, &mut Vec::new(), Duration::from_millis(100)),
            Peer::Gone
        ));
    }

    #[test]
    fn asked_polls_keep_the_interval() {
        let t = Instant::now();
        let i = Duration::from_secs(5);
        // the first poll goes out at once
        assert_eq!(next_poll(None, i, t), t);
        // Enter 2 s after a poll: at the end of the interval, not before
        assert_eq!(next_poll(Some(t), i, t + Duration::from_secs(2)), t + i);
        // Enter 7 s after: now
        let later = t + Duration::from_secs(7);
        assert_eq!(next_poll(Some(t), i, later), later);
    }
}
