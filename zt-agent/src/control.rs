//! The control socket: what needs the network at login time. pam_zt asks for
//! an issuer's keys to be refetched when a token names a kid the private file
//! does not have (a rotation since the last sync). Protocol and client:
//! `zt_published::control`.
//!
//! `<run_dir>/control.sock`: the directory 0700 and the socket 0600, both
//! root's; every peer is checked with SO_PEERCRED and only uid 0 is served.
//! One request per connection, read with a 2 s timeout; a connection whose
//! peer has already hung up (its caller gave up while it was queued) is
//! dropped unanswered. A refresh refetches that issuer's keys and publishes
//! them with the published users and groups (`sync::publish_keys_only`: the
//! directory is never read, `synced_at` is kept, no heartbeat), waiting at
//! most `LOCK_WAIT` for the state lock (busy: the published generation is the
//! answer). At most one refetch per issuer per 30 s (a request inside that
//! window, or during a refresh, gets that refresh's result) and one of any
//! issuer per 10 s (a request inside it is answered `unavailable`): a forged
//! token with a random kid cannot make the agent do more than that.
//!
//! `device <user>` starts a device-code sign-in (`crate::device`): the
//! connection is handed to its own thread for the minutes the person takes,
//! so the socket keeps serving everything else meanwhile.
use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use zt_published::control as proto;
use zt_snapshot::StateDir;

use crate::config::{AgentConfig, IssuerSpec};
use crate::device::Devices;
use crate::keys;
use crate::sync::{self, Paths};

/// At most one refetch per issuer in this window.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// At most one refetch of any issuer in this window.
pub const GLOBAL_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Bound on a refresh's wait for the state lock (a sync holding it fetches
/// the keys itself); past it, the answer is the generation published.
pub const LOCK_WAIT: Duration = Duration::from_millis(500);
/// Bound on reading a request and writing an answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Creates `run_dir` (0700, root's; an existing one must be a real directory
/// owned by us, and is set to 0700), replaces a stale socket and listens.
pub fn bind(run_dir: &Path) -> io::Result<UnixListener> {
    match std::fs::create_dir(run_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(run_dir)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me {
        return Err(io::Error::other(format!(
            "{}: must be a directory owned by uid {me} (not a symlink)",
            run_dir.display()
        )));
    }
    std::fs::set_permissions(run_dir, std::fs::Permissions::from_mode(0o700))?;
    let path = proto::socket_path(run_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The uid of the process at the other end of `stream`.
pub fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the fd is open for the call; cred and len point to writable
    // memory of the sizes given, which getsockopt fills at most.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Only root may ask the agent for anything.
pub fn peer_allowed(uid: u32) -> bool {
    uid == 0
}

/// One refresh's outcome, kept to answer the requests that follow it.
struct Recent {
    at: Instant,
    result: Result<u64, String>,
}

#[derive(Default)]
struct Limits {
    /// The last refresh of each issuer (configured issuers only).
    per_issuer: HashMap<String, Recent>,
    /// When the last refresh of any issuer ended.
    any: Option<Instant>,
}

/// What serves refresh requests: the live config (the daemon swaps it on
/// reload), the paths, the rate limits and the last refreshes.
pub struct Refresher {
    pub config: Arc<RwLock<AgentConfig>>,
    pub paths: Paths,
    /// At most one refetch per issuer in this window.
    pub interval: Duration,
    /// At most one refetch of any issuer in this window.
    pub global_interval: Duration,
    /// Bound on waiting for the state lock before publishing.
    pub lock_wait: Duration,
    /// Held through a whole refresh: one at a time, and a request arriving
    /// during a refresh is answered with its result.
    limits: Mutex<Limits>,
}

impl Refresher {
    pub fn new(config: Arc<RwLock<AgentConfig>>, paths: Paths) -> Self {
        Refresher {
            config,
            paths,
            interval: REFRESH_INTERVAL,
            global_interval: GLOBAL_REFRESH_INTERVAL,
            lock_wait: LOCK_WAIT,
            limits: Mutex::new(Limits::default()),
        }
    }

    fn published_generation(&self) -> Result<u64, String> {
        StateDir::open(&self.paths.state_dir)
            .and_then(|s| s.read_generation())
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "nothing published yet".into())
    }

    /// Refetches `iss`'s keys and publishes them with the published users
    /// and groups (`sync::publish_keys_only`; the directory is never read):
    /// the generation now published, or why not.
    pub fn refresh(&self, iss: &str) -> Result<u64, String> {
        let config = self
            .config
            .read()
            .map_err(|_| "agent state poisoned".to_string())?
            .clone();
        let Some(spec) = config.issuer_specs.iter().find(|s| s.iss == iss) else {
            return Err("unknown issuer".into());
        };
        let mut limits = self
            .limits
            .lock()
            .map_err(|_| "agent state poisoned".to_string())?;
        if let Some(recent) = limits.per_issuer.get(iss)
            && recent.at.elapsed() < self.interval
        {
            tracing::info!(
                "key refresh for {iss} asked again within {:?}: answered with the last refresh's result",
                self.interval
            );
            return match &recent.result {
                Ok(generation) => self.published_generation().or(Ok(*generation)),
                Err(why) => Err(why.clone()),
            };
        }
        if let Some(at) = limits.any
            && at.elapsed() < self.global_interval
        {
            tracing::warn!(
                "key refresh for {iss} refused: another issuer was refreshed less than {:?} ago",
                self.global_interval
            );
            return Err(format!(
                "rate limited (one key refresh per {} s); verify with what is published",
                self.global_interval.as_secs()
            ));
        }
        let result = self.fetch_and_publish(&config, spec);
        let now = Instant::now();
        limits.any = Some(now);
        limits.per_issuer.insert(
            iss.to_string(),
            Recent {
                at: now,
                result: result.clone(),
            },
        );
        result
    }

    fn fetch_and_publish(&self, config: &AgentConfig, spec: &IssuerSpec) -> Result<u64, String> {
        let iss = &spec.iss;
        let fetched = vec![keys::Fetched {
            iss: spec.iss.clone(),
            result: keys::Http::new(&config.http)
                .map_err(|e| keys::KeysError::new(keys::KeysFailure::Refused, e))
                .and_then(|h| keys::fetch(&h, spec)),
        }];
        if let Some(Err(e)) = fetched.first().map(|f| &f.result) {
            tracing::warn!("key refresh for {iss}: {e}");
            return Err(e.to_string());
        }
        match sync::publish_keys_only(config, &self.paths, &fetched, Some(self.lock_wait)) {
            Ok(Some(generation)) => {
                tracing::info!("keys of {iss} refreshed on request (generation {generation})");
                Ok(generation)
            }
            Ok(None) => {
                // a sync holds the lock; it fetches every issuer's keys itself
                tracing::info!(
                    "key refresh for {iss}: the state lock is busy (a sync running); answered with what is published"
                );
                self.published_generation()
            }
            Err(e) => {
                tracing::warn!("key refresh for {iss}: {e}");
                Err(format!("keys-only publish failed: {e}"))
            }
        }
    }
}

/// Whether the peer has hung up (closed, or shut down its side): its caller
/// gave up waiting, so its request is not worth any work.
pub fn peer_gone(stream: &UnixStream) -> bool {
    let mut p = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: p is one valid pollfd for an fd open during the call; timeout 0.
    let rc = unsafe { libc::poll(&raw mut p, 1, 0) };
    rc > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// Everything the socket serves.
#[derive(Clone)]
pub struct Services {
    pub refresher: Arc<Refresher>,
    /// Device-code sign-ins; `None` answers them `unavailable`.
    pub devices: Option<Arc<Devices>>,
}

/// Serves one connection with key refreshes only (no device sign-ins).
pub fn handle(stream: UnixStream, refresher: &Refresher) {
    handle_with(stream, refresher, None);
}

/// Serves one connection: checks the peer, reads one request line, answers
/// (a device sign-in goes on on its own thread). A connection whose peer has
/// already hung up (queued while the agent was busy, its caller gone) is
/// dropped without any work.
pub fn handle_with(mut stream: UnixStream, refresher: &Refresher, devices: Option<&Devices>) {
    let gone = |stream: &UnixStream| {
        let gone = peer_gone(stream);
        if gone {
            tracing::debug!("control socket: the peer hung up; request skipped");
        }
        gone
    };
    if gone(&stream) {
        return;
    }
    let answer = match peer_uid(&stream) {
        Ok(uid) if peer_allowed(uid) => {
            let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
            let line = proto::read_line(&mut stream);
            match line
                .as_deref()
                .map_err(Clone::clone)
                .and_then(proto::parse_request)
            {
                Ok(_) if gone(&stream) => return,
                Ok(proto::Request::RefreshKeys(iss)) => refresher.refresh(iss),
                Ok(proto::Request::Device { user, rhost }) => match devices {
                    Some(d) => {
                        let _ = stream.set_read_timeout(None);
                        d.start(stream, user, rhost);
                        return;
                    }
                    None => Err("device sign-in is not served here".into()),
                },
                Err(why) => Err(why),
            }
        }
        Ok(uid) => {
            tracing::warn!("control socket: refused a request from uid {uid}");
            Err("refused: root only".into())
        }
        Err(e) => Err(format!("cannot tell who is asking: {e}")),
    };
    let line = match answer {
        Ok(generation) => format!("{} {generation}\n", proto::OK),
        Err(why) => {
            let why: String = why
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(proto::MAX_LINE - proto::UNAVAILABLE.len() - 2)
                .collect();
            format!("{} {why}\n", proto::UNAVAILABLE)
        }
    };
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.write_all(line.as_bytes());
}

/// Accepts connections forever, one at a time (refreshes are serialised by
/// the state lock anyway; device sign-ins go on on their own threads).
pub fn serve(listener: UnixListener, services: Services) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => handle_with(stream, &services.refresher, services.devices.as_deref()),
            Err(e) => {
                tracing::warn!("control socket: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Binds `<run_dir>/control.sock` and serves key refreshes on its own thread.
pub fn spawn(run_dir: &Path, refresher: Arc<Refresher>) -> io::Result<PathBuf> {
    spawn_services(
        run_dir,
        Services {
            refresher,
            devices: None,
        },
    )
}

/// Binds `<run_dir>/control.sock` and serves `services` on its own thread.
pub fn spawn_services(run_dir: &Path, services: Services) -> io::Result<PathBuf> {
    let listener = bind(run_dir)?;
    let path = proto::socket_path(run_dir);
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || serve(listener, services))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_is_served() {
        assert!(peer_allowed(0));
        assert!(!peer_allowed(1000));
        assert!(!peer_allowed(65534));
    }

    #[test]
    fn the_run_dir_is_0700_and_the_socket_0600() {
        let t = tempfile::tempdir().unwrap();
        let run = t.path().join("run");
        std::fs::create_dir(&run).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
        let _l = bind(&run).unwrap();
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&run), 0o700);
        assert_eq!(mode(&proto::socket_path(&run)), 0o600);
        // a stale socket is replaced
        drop(_l);
        bind(&run).unwrap();
        // a symlinked run dir is refused
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&run, &link).unwrap();
        assert!(bind(&link).is_err());
    }

    #[test]
    fn peer_uid_is_ours() {
        let (a, _b) = UnixStream::pair().unwrap();
        // SAFETY: geteuid has no preconditions.
        assert_eq!(peer_uid(&a).unwrap(), unsafe { libc::geteuid() });
    }
}
