//! Device-code sign-in (RFC 8628) for logins that carry no certificate or
//! token: pam_zt asks over the control socket (`device <user> <rhost>`), the
//! agent asks the IdP for a code, pam_zt shows it, the person signs in at the
//! IdP (with its MFA), the agent polls the token endpoint and hands the ID
//! token to pam_zt, which verifies it like any other token (issuer keys,
//! `aud`, times, MFA, the person behind PAM_USER). Protocol:
//! `zt_published::device`.
//!
//! - One thread per pending sign-in (`session`), with a small stack; it ends
//!   when the sign-in does, or as soon as pam_zt's end of the connection
//!   closes (the person gave up, sshd's LoginGraceTime, Ctrl-C): no poller
//!   outlives its login. Its requests to the IdP run on a few shared worker
//!   threads (`pool`): TLS needs a full-size stack, and a pending sign-in
//!   should cost a few KiB, not the stack pages its last request touched.
//! - Bounded before any IdP request (`limits`): only published directory
//!   users; pending sign-ins per user, per remote address and per host; and
//!   starts per minute, since a login that asks and leaves at once still
//!   costs two IdP requests.
//! - Polls every `interval` (5 s when the IdP names none), `slow_down` adds
//!   5 s; a `poll` from pam_zt (the person pressed Enter) polls at once when
//!   the interval since the last poll has passed, else at the end of it.
//!   Gives up one interval after the code's `expires_in` (the IdP then says
//!   `expired_token` itself) or after `device_timeout`, whichever is first.

pub mod grant;
pub mod idp;
pub mod limits;
pub mod pool;
pub mod session;

use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use zt_published::device::DeviceAnswer;
use zt_snapshot::Snapshot;
use zt_snapshot::state::names;

use crate::config::{AgentConfig, DeviceSpec};
use crate::http::Http;
use crate::sync::Paths;
use limits::Limits;
use pool::IdpPool;

/// Stack of a sign-in thread: it waits, logs and writes lines; its HTTP
/// requests run on the `IdpPool`.
pub const THREAD_STACK: usize = 128 * 1024;
/// Threads doing the IdP requests of all sign-ins: one per 5 pending
/// sign-ins the issuer allows, within these bounds.
pub const IDP_THREADS: (usize, usize) = (4, 32);
/// A discovery document's endpoints are reused this long.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(600);

/// A reserved slot, given back when the sign-in's thread ends (or when it
/// could not be started).
struct Slot {
    limits: Arc<Mutex<Limits>>,
    user: String,
    rhost: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut l) = self.limits.lock() {
            l.release(&self.user, &self.rhost);
        }
    }
}

/// Discovery documents, cached (as discovered: the configured endpoints are
/// applied after the lookup, so a config reload takes effect at once).
#[derive(Default)]
pub struct Discovered {
    /// By discovery URL: when fetched, and what it said.
    by_url: Mutex<HashMap<String, (Instant, idp::Discovery)>>,
}

impl Discovered {
    /// The device and token endpoints for `spec`: configured, or from a
    /// cached or freshly fetched discovery (on the caller's thread: run it on
    /// the pool).
    pub fn endpoints(
        &self,
        http: &Http,
        iss: &str,
        spec: &DeviceSpec,
    ) -> Result<(String, String), String> {
        idp::merge(spec, || {
            if let Ok(cache) = self.by_url.lock()
                && let Some((at, found)) = cache.get(&spec.discovery)
                && at.elapsed() < DISCOVERY_TTL
            {
                return Ok(found.clone());
            }
            let found = idp::discover(http, iss, spec)?;
            if let Ok(mut cache) = self.by_url.lock() {
                cache.insert(spec.discovery.clone(), (Instant::now(), found.clone()));
            }
            Ok(found)
        })
    }
}

/// What serves `device` requests.
pub struct Devices {
    pub config: Arc<RwLock<AgentConfig>>,
    pub paths: Paths,
    limits: Arc<Mutex<Limits>>,
    /// Built on first use and shared by all sign-ins (its CA roots are the
    /// larger part of its memory); rebuilt when `[http]` changes.
    http: Mutex<Option<(Option<std::path::PathBuf>, Http)>>,
    /// Started on first use.
    pool: OnceLock<Arc<IdpPool>>,
    discovered: Arc<Discovered>,
}

impl Devices {
    pub fn new(config: Arc<RwLock<AgentConfig>>, paths: Paths) -> Self {
        Devices {
            config,
            paths,
            limits: Arc::default(),
            http: Mutex::new(None),
            pool: OnceLock::new(),
            discovered: Arc::default(),
        }
    }

    /// Sign-ins pending now.
    pub fn pending(&self) -> usize {
        self.limits.lock().map_or(0, |l| l.total())
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

    fn pool(&self, max_pending: usize) -> Result<Arc<IdpPool>, String> {
        if let Some(p) = self.pool.get() {
            return Ok(p.clone());
        }
        let threads = (max_pending / 5).clamp(IDP_THREADS.0, IDP_THREADS.1);
        let pool =
            Arc::new(IdpPool::new(threads).map_err(|e| format!("cannot start IdP workers: {e}"))?);
        Ok(self.pool.get_or_init(|| pool).clone())
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
    pub fn start(&self, stream: UnixStream, user: &str, rhost: &str) {
        // A person who stops reading (a stopped `su`) must not hold a thread
        // and a slot past the sign-in's end: writes give up after this.
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let refuse = |why: String| {
            tracing::warn!("device sign-in for {user} from {rhost} refused: {why}");
            session::send(&stream, &DeviceAnswer::Unavailable(why));
        };
        let (slot, iss, spec, http) = match self.begin(user, rhost) {
            Ok(b) => b,
            Err(why) => return refuse(why),
        };
        let pool = match self.pool(spec.max_pending) {
            Ok(p) => p,
            Err(why) => return refuse(why),
        };
        let discovered = self.discovered.clone();
        let owned = user.to_string();
        let spawned = std::thread::Builder::new()
            .name("device".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let _slot = slot;
                session::run(session::Session {
                    stream,
                    user: &owned,
                    iss: &iss,
                    spec: &spec,
                    http: &http,
                    pool: &pool,
                    discovered: &discovered,
                });
            });
        if let Err(e) = spawned {
            // the closure (stream and slot with it) is dropped: the slot is
            // given back and pam_zt sees the connection close
            tracing::error!("device sign-in for {user}: cannot start a thread: {e}");
        }
    }

    fn begin(&self, user: &str, rhost: &str) -> Result<(Slot, String, DeviceSpec, Http), String> {
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
        self.limits
            .lock()
            .map_err(|_| "agent state poisoned".to_string())?
            .reserve(user, rhost, spec.max_pending, Instant::now())?;
        let slot = Slot {
            limits: self.limits.clone(),
            user: user.to_string(),
            rhost: rhost.to_string(),
        };
        let http = self.http(&config)?;
        Ok((slot, iss, spec, http))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_given_back_when_dropped() {
        let limits: Arc<Mutex<Limits>> = Arc::default();
        limits
            .lock()
            .unwrap()
            .reserve("alice", "203.0.113.9", 5, Instant::now())
            .unwrap();
        let slot = Slot {
            limits: limits.clone(),
            user: "alice".into(),
            rhost: "203.0.113.9".into(),
        };
        assert_eq!(limits.lock().unwrap().total(), 1);
        drop(slot);
        assert_eq!(limits.lock().unwrap().total(), 0);
    }
}
