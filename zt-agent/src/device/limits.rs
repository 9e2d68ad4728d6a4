//! What bounds device sign-ins before the IdP is asked anything: pending
//! sign-ins per user, per source address and per host, and how many may be
//! started per minute (a login that asks for a code and goes away at once
//! frees its slot, but still cost two IdP requests).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::config::DEVICE_MAX_PER_USER;

/// Pending sign-ins from one remote address (sshd's PAM_RHOST); local logins
/// (sudo, su, the console) are not counted here.
pub const MAX_PER_SOURCE: usize = 4;
/// Starts are counted over this window.
pub const START_WINDOW: Duration = Duration::from_secs(60);
/// Starts per user per window.
pub const STARTS_PER_USER: usize = 4;
/// Starts per remote address per window.
pub const STARTS_PER_SOURCE: usize = 8;
/// Starts per host per window, as a multiple of `device_max_pending`.
pub const STARTS_PER_PENDING_SLOT: usize = 3;

/// Where a login comes from, as pam_zt sends it (`-`: a local login).
pub fn is_local(rhost: &str) -> bool {
    rhost == zt_published::device::LOCAL
}

#[derive(Debug, Default)]
pub struct Limits {
    per_user: HashMap<String, usize>,
    per_source: HashMap<String, usize>,
    total: usize,
    /// Start times in the last window: all, per user, per source.
    starts: VecDeque<(Instant, String, String)>,
}

impl Limits {
    /// Takes a slot for `user` from `rhost` at `now`, or says why not.
    pub fn reserve(
        &mut self,
        user: &str,
        rhost: &str,
        host_max: usize,
        now: Instant,
    ) -> Result<(), String> {
        while self
            .starts
            .front()
            .is_some_and(|(at, _, _)| now.duration_since(*at) >= START_WINDOW)
        {
            self.starts.pop_front();
        }
        let mine = self.per_user.get(user).copied().unwrap_or(0);
        if mine >= DEVICE_MAX_PER_USER {
            return Err(format!(
                "{user} already has {mine} device sign-ins pending (at most {DEVICE_MAX_PER_USER})"
            ));
        }
        let remote = !is_local(rhost);
        let from_there = self.per_source.get(rhost).copied().unwrap_or(0);
        if remote && from_there >= MAX_PER_SOURCE {
            return Err(format!(
                "{from_there} device sign-ins pending from {rhost} (at most {MAX_PER_SOURCE})"
            ));
        }
        if self.total >= host_max {
            return Err(format!(
                "{} device sign-ins pending on this host (device_max_pending = {host_max})",
                self.total
            ));
        }
        let window = START_WINDOW.as_secs();
        let user_starts = self.starts.iter().filter(|(_, u, _)| u == user).count();
        if user_starts >= STARTS_PER_USER {
            return Err(format!(
                "{user} started {user_starts} device sign-ins in the last {window} s (at most {STARTS_PER_USER})"
            ));
        }
        let source_starts = self.starts.iter().filter(|(_, _, r)| r == rhost).count();
        if remote && source_starts >= STARTS_PER_SOURCE {
            return Err(format!(
                "{rhost} started {source_starts} device sign-ins in the last {window} s (at most {STARTS_PER_SOURCE})"
            ));
        }
        let host_starts = host_max.saturating_mul(STARTS_PER_PENDING_SLOT);
        if self.starts.len() >= host_starts {
            return Err(format!(
                "{} device sign-ins started on this host in the last {window} s (at most {host_starts})",
                self.starts.len()
            ));
        }
        *self.per_user.entry(user.to_string()).or_default() += 1;
        if remote {
            *self.per_source.entry(rhost.to_string()).or_default() += 1;
        }
        self.total += 1;
        self.starts
            .push_back((now, user.to_string(), rhost.to_string()));
        Ok(())
    }

    /// Gives back the slot of a sign-in that ended (its start still counts).
    pub fn release(&mut self, user: &str, rhost: &str) {
        fn down(map: &mut HashMap<String, usize>, key: &str) {
            if let Some(n) = map.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
        down(&mut self.per_user, user);
        if !is_local(rhost) {
            down(&mut self.per_source, rhost);
        }
        self.total = self.total.saturating_sub(1);
    }

    pub fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_sign_ins_are_bounded_per_user_source_and_host() {
        let t = Instant::now();
        let mut l = Limits::default();
        l.reserve("alice", "-", 3, t).unwrap();
        l.reserve("alice", "-", 3, t).unwrap();
        let e = l.reserve("alice", "-", 3, t).unwrap_err();
        assert!(e.contains("alice already has 2"), "{e}");
        l.reserve("bob", "-", 3, t).unwrap();
        let e = l.reserve("carol", "-", 3, t).unwrap_err();
        assert!(e.contains("device_max_pending = 3"), "{e}");
        l.release("alice", "-");
        l.reserve("carol", "-", 3, t).unwrap();
        assert_eq!(l.total(), 3);
        for u in ["alice", "bob", "carol"] {
            l.release(u, "-");
        }
        assert_eq!(l.total(), 0);
        assert!(l.per_user.is_empty());
    }

    #[test]
    fn one_source_cannot_take_every_slot() {
        let t = Instant::now();
        let mut l = Limits::default();
        for u in ["a", "b", "c", "d"] {
            l.reserve(u, "203.0.113.9", 20, t).unwrap();
        }
        let e = l.reserve("e", "203.0.113.9", 20, t).unwrap_err();
        assert!(e.contains("from 203.0.113.9"), "{e}");
        // another address, and local logins, still get theirs
        l.reserve("e", "198.51.100.7", 20, t).unwrap();
        l.reserve("f", "-", 20, t).unwrap();
        l.release("a", "203.0.113.9");
        l.reserve("g", "203.0.113.9", 20, t).unwrap();
    }

    #[test]
    fn starts_are_bounded_per_minute_even_when_each_ends_at_once() {
        let t = Instant::now();
        let mut l = Limits::default();
        for _ in 0..STARTS_PER_USER {
            l.reserve("alice", "-", 20, t).unwrap();
            l.release("alice", "-");
        }
        let e = l.reserve("alice", "-", 20, t).unwrap_err();
        assert!(e.contains("started 4"), "{e}");
        // a minute later it may start again
        l.reserve("alice", "-", 20, t + START_WINDOW).unwrap();
        l.release("alice", "-");
        // a source spreading over many names is bounded too
        let mut l = Limits::default();
        for i in 0..STARTS_PER_SOURCE {
            l.reserve(&format!("u{i}"), "203.0.113.9", 20, t).unwrap();
            l.release(&format!("u{i}"), "203.0.113.9");
        }
        let e = l.reserve("u99", "203.0.113.9", 20, t).unwrap_err();
        assert!(e.contains("203.0.113.9 started"), "{e}");
        // and the host as a whole
        let mut l = Limits::default();
        for i in 0..3 * STARTS_PER_PENDING_SLOT {
            l.reserve(&format!("u{i}"), "-", 3, t).unwrap();
            l.release(&format!("u{i}"), "-");
        }
        let e = l.reserve("u99", "-", 3, t).unwrap_err();
        assert!(e.contains("started on this host"), "{e}");
    }
}
