//! Device-code sign-in (RFC 8628) for logins that carry no certificate or
//! token: pam_zt asks over the control socket (`device <user>`), the agent
//! asks the IdP for a code, pam_zt shows it, the person signs in at the IdP
//! (with its MFA), the agent polls the token endpoint and hands the ID token
//! to pam_zt, which verifies it like any other token (issuer keys, `aud`,
//! times, MFA, the person behind PAM_USER). Protocol: `zt_published::device`.
//!
//! - One thread per pending sign-in, with a small stack; it ends when the
//!   sign-in does, or as soon as pam_zt's end of the connection closes (the
//!   person gave up, sshd's LoginGraceTime, Ctrl-C): no poller outlives its
//!   login. Its requests to the IdP run on a few shared worker threads
//!   (`IdpPool`): TLS needs a full-size stack, and a pending sign-in should
//!   cost a few KiB, not the stack pages its last request touched.
//! - Bounded before any IdP request: only published directory users, at
//!   most `DEVICE_MAX_PER_USER` pending sign-ins per user and the issuer's
//!   `device_max_pending` per host; anything more is refused at once.
//! - Polls every `interval` (5 s when the IdP names none), `slow_down` adds
//!   5 s, and a `poll` from pam_zt (the person pressed Enter) polls at once,
//!   at most once a second. Gives up after `device_timeout` or the code's
//!   `expires_in`, whichever is first.

pub mod grant;
pub mod idp;

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use zt_published::device::{self as proto, DeviceAnswer};
use zt_snapshot::Snapshot;
use zt_snapshot::state::names;

use crate::config::{AgentConfig, DEVICE_MAX_PER_USER, DeviceSpec};
use crate::http::Http;
use crate::sync::Paths;
use grant::Poll;

/// A poll pam_zt asks for waits at least this long after the previous one.
pub const MIN_POLL_GAP: Duration = Duration::from_secs(1);
/// Consecutive transport failures of token polls before giving up.
pub const MAX_POLL_FAILURES: u32 = 3;
/// Stack of a sign-in thread: it waits, logs and writes lines; its HTTP
/// requests run on the `IdpPool`.
pub const THREAD_STACK: usize = 128 * 1024;
/// Threads doing the IdP requests of all sign-ins.
pub const IDP_THREADS: usize = 4;

type Job = Box<dyn FnOnce() + Send>;

/// A few threads (default stacks) that run the IdP requests of every
/// sign-in, so sign-in threads can be small. At most `IDP_THREADS` requests
/// run at once; the rest queue (each is bounded by the HTTP timeouts).
pub struct IdpPool {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl IdpPool {
    pub fn new(threads: usize) -> std::io::Result<IdpPool> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name("device-idp".into())
                .spawn(move || {
                    loop {
                        let job = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        // A panic in one request must not take a worker away.
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                            tracing::error!("device sign-in: an IdP request panicked");
                        }
                    }
                })?;
        }
        Ok(IdpPool { jobs })
    }

    /// Runs `f` on a worker and waits for its result (`None`: it panicked or
    /// the pool is gone).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .ok()?;
        rx.recv().ok()
    }
}

/// Pending sign-ins, per user and in all.
#[derive(Debug, Default)]
pub struct Pending {
    per_user: HashMap<String, usize>,
    total: usize,
}

impl Pending {
    /// Takes a slot for `user`, or says why not.
    pub fn reserve(&mut self, user: &str, host_max: usize) -> Result<(), String> {
        let mine = self.per_user.get(user).copied().unwrap_or(0);
        if mine >= DEVICE_MAX_PER_USER {
            return Err(format!(
                "{user} already has {mine} device sign-ins pending (at most {DEVICE_MAX_PER_USER})"
            ));
        }
        if self.total >= host_max {
            return Err(format!(
                "{} device sign-ins pending on this host (device_max_pending = {host_max})",
                self.total
            ));
        }
        *self.per_user.entry(user.to_string()).or_default() += 1;
        self.total += 1;
        Ok(())
    }

    pub fn release(&mut self, user: &str) {
        if let Some(n) = self.per_user.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                self.per_user.remove(user);
            }
        }
        self.total = self.total.saturating_sub(1);
    }

    pub fn total(&self) -> usize {
        self.total
    }
}

/// A reserved slot, given back when the sign-in's thread ends (or when it
/// could not be started).
struct Slot {
    pending: Arc<Mutex<Pending>>,
    user: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut p) = self.pending.lock() {
            p.release(&self.user);
        }
    }
}

/// What serves `device` requests.
pub struct Devices {
    pub config: Arc<RwLock<AgentConfig>>,
    pub paths: Paths,
    pending: Arc<Mutex<Pending>>,
    /// Built on first use and shared by all sign-ins (its CA roots are the
    /// larger part of its memory); rebuilt when `[http]` changes.
    http: Mutex<Option<(Option<std::path::PathBuf>, Http)>>,
    /// Started on first use.
    pool: std::sync::OnceLock<Arc<IdpPool>>,
}

impl Devices {
    pub fn new(config: Arc<RwLock<AgentConfig>>, paths: Paths) -> Self {
        Devices {
            config,
            paths,
            pending: Arc::default(),
            http: Mutex::new(None),
            pool: std::sync::OnceLock::new(),
        }
    }

    /// Sign-ins pending now.
    pub fn pending(&self) -> usize {
        self.pending.lock().map_or(0, |p| p.total())
    }

    fn http(&self, config: &AgentConfig) -> Result<Http, String> {
        let mut cached = self
            .http
            .lock()
            .map_err(|_| "agent state poisoned".to_string())?;
        if let Some((ca, http)) = cached.as_ref()
            && *ca == config.http.ca_file
        {
            return Ok(http.clone());
        }
        let http = Http::new(&config.http)?;
        *cached = Some((config.http.ca_file.clone(), http.clone()));
        Ok(http)
    }

    /// Is `user` a directory user in the published snapshot?
    fn is_directory_user(&self, user: &str) -> Result<bool, String> {
        let state =
            zt_snapshot::StateDir::open(&self.paths.state_dir).map_err(|e| e.to_string())?;
        let bytes = state
            .read_trusted(names::SNAPSHOT)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "nothing published yet".to_string())?;
        let snapshot = Snapshot::parse(&bytes).map_err(|e| e.to_string())?;
        Ok(snapshot
            .user_by_name(user.as_bytes())
            .map_err(|e| e.to_string())?
            .is_some())
    }

    /// Checks and reserves, then runs the sign-in on its own thread; any
    /// refusal is answered at once on `stream`.
    pub fn start(&self, stream: UnixStream, user: &str) {
        match self.begin(user) {
            Ok((slot, iss, spec, http)) => {
                let pool = match self.pool() {
                    Ok(p) => p,
                    Err(why) => {
                        tracing::error!("device sign-in for {user}: {why}");
                        let _ = proto::send_all(
                            &stream,
                            proto::answer_line(&DeviceAnswer::Unavailable(why)).as_bytes(),
                        );
                        return;
                    }
                };
                let owned = user.to_string();
                let spawned = std::thread::Builder::new()
                    .name("device".into())
                    .stack_size(THREAD_STACK)
                    .spawn(move || {
                        let _slot = slot;
                        session(stream, &owned, &iss, &spec, &http, &pool);
                    });
                if let Err(e) = spawned {
                    tracing::error!("device sign-in for {user}: cannot start a thread: {e}");
                }
            }
            Err(why) => {
                tracing::warn!("device sign-in for {user} refused: {why}");
                let _ = proto::send_all(
                    &stream,
                    proto::answer_line(&DeviceAnswer::Unavailable(why)).as_bytes(),
                );
            }
        }
    }

    fn pool(&self) -> Result<Arc<IdpPool>, String> {
        if let Some(p) = self.pool.get() {
            return Ok(p.clone());
        }
        let pool = Arc::new(
            IdpPool::new(IDP_THREADS).map_err(|e| format!("cannot start IdP workers: {e}"))?,
        );
        Ok(self.pool.get_or_init(|| pool).clone())
    }

    fn begin(&self, user: &str) -> Result<(Slot, String, DeviceSpec, Http), String> {
        let config = self
            .config
            .read()
            .map_err(|_| "agent state poisoned".to_string())?
            .clone();
        let Some((iss, spec)) = config
            .issuer_specs
            .iter()
            .find_map(|s| s.device.as_ref().map(|d| (s.iss.clone(), d.clone())))
        else {
            return Err("no [[issuers]] entry has device_login = true".into());
        };
        if !self.is_directory_user(user)? {
            return Err(format!("{user} is not a directory user"));
        }
        self.pending
            .lock()
            .map_err(|_| "agent state poisoned".to_string())?
            .reserve(user, spec.max_pending)?;
        let slot = Slot {
            pending: self.pending.clone(),
            user: user.to_string(),
        };
        let http = self.http(&config)?;
        Ok((slot, iss, spec, http))
    }
}

/// What pam_zt's end of the connection did while the agent waited.
enum Peer {
    /// Nothing within the wait.
    Quiet,
    /// This many `poll` requests.
    Asked(usize),
    /// Closed, or sent something that is not a poll: the sign-in ends.
    Gone,
}

/// Waits at most `wait` for pam_zt to ask or hang up.
fn wait_for_peer(stream: &mut UnixStream, inbox: &mut Vec<u8>, wait: Duration) -> Peer {
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

/// One sign-in, from the IdP's code to the final answer.
pub fn session(
    mut stream: UnixStream,
    user: &str,
    iss: &str,
    spec: &DeviceSpec,
    http: &Http,
    pool: &IdpPool,
) {
    let send = |stream: &UnixStream, a: &DeviceAnswer| {
        proto::send_all(stream, proto::answer_line(a).as_bytes()).is_ok()
    };
    let started = {
        let (http, iss, spec) = (http.clone(), iss.to_string(), spec.clone());
        pool.run(move || {
            idp::endpoints(&http, &iss, &spec).and_then(|(device_url, token_url)| {
                idp::authorize(&http, &device_url, &spec).map(|s| (s, token_url))
            })
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
    let limit = spec.timeout.min(started.expires_in + started.interval);
    tracing::info!(
        "device sign-in for {user}: code {} at {}, waiting up to {} s",
        started.code.user_code,
        started.code.verification_uri,
        limit.as_secs()
    );
    let deadline = Instant::now() + limit;
    let mut interval = started.interval;
    let mut next = Instant::now() + interval;
    let mut last_poll: Option<Instant> = None;
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
        let asked = match wait_for_peer(&mut stream, &mut inbox, next.min(deadline) - now) {
            Peer::Gone => {
                tracing::info!("device sign-in for {user}: cancelled (the login went away)");
                return;
            }
            Peer::Asked(n) => n,
            Peer::Quiet if Instant::now() < next => continue,
            Peer::Quiet => 0,
        };
        if let Some(gap) = last_poll.map(|l| l.elapsed())
            && gap < MIN_POLL_GAP
        {
            std::thread::sleep(MIN_POLL_GAP - gap);
        }
        let asked_at = Instant::now();
        last_poll = Some(asked_at);
        let polled = {
            let (http, url, spec) = (http.clone(), token_url.clone(), spec.clone());
            let code = started.device_code.clone();
            pool.run(move || idp::poll(&http, &url, &spec, &code))
                .unwrap_or_else(|| Err("the request failed inside the agent".into()))
        };
        let idp_ms = asked_at.elapsed().as_secs_f64() * 1000.0;
        next = Instant::now() + interval;
        let pending = match polled {
            Ok(Poll::Token(token)) => {
                tracing::info!(
                    "device sign-in for {user}: signed in at the IdP (token endpoint answered in \
                     {idp_ms:.1} ms); token handed to pam_zt"
                );
                send(&stream, &DeviceAnswer::Token(token));
                return;
            }
            Ok(Poll::Pending) => {
                failures = 0;
                true
            }
            Ok(Poll::SlowDown) => {
                failures = 0;
                interval = (interval + grant::SLOW_DOWN_STEP).min(grant::MAX_INTERVAL);
                next = Instant::now() + interval;
                true
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
                true
            }
        };
        if pending {
            for _ in 0..asked {
                if !send(&stream, &DeviceAnswer::Pending) {
                    tracing::info!("device sign-in for {user}: cancelled (the login went away)");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_sign_ins_are_bounded_per_user_and_per_host() {
        let mut p = Pending::default();
        p.reserve("alice", 3).unwrap();
        p.reserve("alice", 3).unwrap();
        let e = p.reserve("alice", 3).unwrap_err();
        assert!(e.contains("alice already has 2"), "{e}");
        p.reserve("bob", 3).unwrap();
        let e = p.reserve("carol", 3).unwrap_err();
        assert!(e.contains("device_max_pending = 3"), "{e}");
        p.release("alice");
        p.reserve("carol", 3).unwrap();
        assert_eq!(p.total(), 3);
        for u in ["alice", "bob", "carol"] {
            p.release(u);
        }
        assert_eq!(p.total(), 0);
        assert!(p.per_user.is_empty());
    }

    #[test]
    fn a_slot_is_given_back_when_dropped() {
        let pending: Arc<Mutex<Pending>> = Arc::default();
        pending.lock().unwrap().reserve("alice", 5).unwrap();
        let slot = Slot {
            pending: pending.clone(),
            user: "alice".into(),
        };
        assert_eq!(pending.lock().unwrap().total(), 1);
        drop(slot);
        assert_eq!(pending.lock().unwrap().total(), 0);
    }

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
}
