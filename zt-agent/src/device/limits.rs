//! What bounds device sign-ins before the IdP is asked anything: pending
//! sign-ins per user, per source address and per host, and how many may be
//! started per minute (a login that asks for a code and goes away at once
//! frees its slot, but still cost two IdP requests).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::config::DEVICE_MAX_PER_USER;

/// Pending sign-ins from one source: a remote address (sshd's PAM_RHOST), or
/// a local account running sudo or su. The console and loopback addresses
/// (an access proxy such as cloudflared in front of sshd: everyone comes
/// from 127.0.0.1) are not counted per source.
pub const MAX_PER_SOURCE: usize = 4;
/// Starts are counted over this window.
pub const START_WINDOW: Duration = Duration::from_secs(60);
/// Starts per user per window.
pub const STARTS_PER_USER: usize = 4;
/// Starts per remote address per window.
pub const STARTS_PER_SOURCE: usize = 8;
/// Starts per host per window, as a multiple of `device_max_pending`.
pub const STARTS_PER_PENDING_SLOT: usize = 3;

/// Where a login comes from, as pam_zt sends it: `-` (the console) and
/// `-/<user>` (sudo, su) are local.
pub fn is_local(rhost: &str) -> bool {
    rhost == zt_published::device::LOCAL || rhost.starts_with(zt_published::device::LOCAL_BY)
}

/// Sources not limited one by one: the console, and loopback (a proxy in
/// front of sshd makes every person one address).
fn shared_source(rhost: &str) -> bool {
    rhost == zt_published::device::LOCAL
        || rhost
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
        || rhost == "localhost"
}

/// Pending sign-ins local logins can always have: a quarter of the host's
/// `device_max_pending` (at least one) is kept from remote ones.
pub fn local_reserve(host_max: usize) -> usize {
    if host_max > 1 {
        (host_max / 4).max(1)
    } else {
        0
    }
}

/// The key a remote address is counted under: an IPv6 address by its /64
/// (one subscriber holds a whole /64, so counting addresses would count
/// nothing), anything else as sent.
pub fn source_key(rhost: &str) -> String {
    match rhost.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(std::net::IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map_or_else(|| rhost.to_string(), |v4| v4.to_string()),
        _ => rhost.to_string(),
    }
}

/// Local logins (sudo, su, the console) and remote ones (sshd) have budgets
/// of their own: remote strangers cannot use up what the console needs.
fn class(rhost: &str) -> &'static str {
    if is_local(rhost) { "local" } else { "remote" }
}

#[derive(Debug, Default)]
pub struct Limits {
    /// Pending per (user, class).
    per_user: HashMap<(String, &'static str), usize>,
    /// Pending per remote source key.
    per_source: HashMap<String, usize>,
    /// Pending per class.
    per_class: HashMap<&'static str, usize>,
    /// Starts in the last window: when, (user, class), source key.
    starts: VecDeque<(Instant, (String, &'static str), String)>,
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
        let class = class(rhost);
        let remote = !is_local(rhost);
        let per_source = !shared_source(rhost);
        let who = (user.to_string(), class);
        let source = source_key(rhost);
        let mine = self.per_user.get(&who).copied().unwrap_or(0);
        if mine >= DEVICE_MAX_PER_USER {
            return Err(format!(
                "{user} already has {mine} {class} device sign-ins pending (at most {DEVICE_MAX_PER_USER})"
            ));
        }
        let from_there = self.per_source.get(&source).copied().unwrap_or(0);
        if per_source && from_there >= MAX_PER_SOURCE {
            return Err(format!(
                "{from_there} device sign-ins pending from {source} (at most {MAX_PER_SOURCE})"
            ));
        }
        let total: usize = self.per_class.values().sum();
        if total >= host_max {
            return Err(format!(
                "{total} device sign-ins pending on this host (device_max_pending = {host_max})"
            ));
        }
        let in_class = self.per_class.get(class).copied().unwrap_or(0);
        let remote_max = host_max - local_reserve(host_max);
        if remote && in_class >= remote_max {
            return Err(format!(
                "{in_class} remote device sign-ins pending on this host (device_max_pending = \
                 {host_max}, {} kept for local logins)",
                local_reserve(host_max)
            ));
        }
        let window = START_WINDOW.as_secs();
        let user_starts = self.starts.iter().filter(|(_, w, _)| *w == who).count();
        if user_starts >= STARTS_PER_USER {
            return Err(format!(
                "{user} started {user_starts} {class} device sign-ins in the last {window} s (at most {STARTS_PER_USER})"
            ));
        }
        let source_starts = self.starts.iter().filter(|(_, _, r)| *r == source).count();
        if per_source && source_starts >= STARTS_PER_SOURCE {
            return Err(format!(
                "{source} started {source_starts} device sign-ins in the last {window} s (at most {STARTS_PER_SOURCE})"
            ));
        }
        let class_starts = self
            .starts
            .iter()
            .filter(|(_, (_, c), _)| *c == class)
            .count();
        let host_starts = host_max.saturating_mul(STARTS_PER_PENDING_SLOT);
        if class_starts >= host_starts {
            return Err(format!(
                "{class_starts} {class} device sign-ins started on this host in the last {window} s (at most {host_starts})"
            ));
        }
        *self.per_user.entry(who.clone()).or_default() += 1;
        if per_source {
            *self.per_source.entry(source.clone()).or_default() += 1;
        }
        *self.per_class.entry(class).or_default() += 1;
        self.starts.push_back((now, who, source));
        Ok(())
    }

    /// Gives back the slot of a sign-in that ended (its start still counts).
    pub fn release(&mut self, user: &str, rhost: &str) {
        fn down<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
            if let Some(n) = map.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
        let class = class(rhost);
        down(&mut self.per_user, &(user.to_string(), class));
        if !shared_source(rhost) {
            down(&mut self.per_source, &source_key(rhost));
        }
        down(&mut self.per_class, &class);
    }

    pub fn total(&self) -> usize {
        self.per_class.values().sum()
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
        assert!(e.contains("alice already has 2 local"), "{e}");
        l.reserve("bob", "-", 3, t).unwrap();
        let e = l.reserve("carol", "-", 3, t).unwrap_err();
        assert!(e.contains("3 device sign-ins pending on this host"), "{e}");
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
    fn remote_strangers_cannot_use_up_the_local_budget() {
        let t = Instant::now();
        let mut l = Limits::default();
        // of 8, remote logins get 6: 2 stay for sudo, su and the console
        for i in 0..6 {
            l.reserve(&format!("u{i}"), &format!("203.0.113.{i}"), 8, t)
                .unwrap();
        }
        let e = l.reserve("u9", "203.0.113.9", 8, t).unwrap_err();
        assert!(
            e.contains("6 remote") && e.contains("2 kept for local"),
            "{e}"
        );
        l.reserve("alice", "-", 8, t).unwrap();
        l.reserve("bob", "-/carol", 8, t).unwrap();
        let e = l.reserve("dave", "-", 8, t).unwrap_err();
        assert!(e.contains("8 device sign-ins pending on this host"), "{e}");
        // alice's two remote sign-ins do not stop her at the console
        let mut l = Limits::default();
        l.reserve("alice", "203.0.113.1", 20, t).unwrap();
        l.reserve("alice", "203.0.113.2", 20, t).unwrap();
        assert!(l.reserve("alice", "203.0.113.3", 20, t).is_err());
        l.reserve("alice", "-", 20, t).unwrap();
        l.reserve("bob", "-", 20, t).unwrap();
        assert_eq!(l.total(), 4);
    }

    #[test]
    fn one_local_account_cannot_take_the_local_budget_but_a_proxy_is_not_one_source() {
        let t = Instant::now();
        let mut l = Limits::default();
        // eve runs `su` for one directory user after another
        for i in 0..MAX_PER_SOURCE {
            l.reserve(&format!("u{i}"), "-/eve", 20, t).unwrap();
        }
        let e = l.reserve("u9", "-/eve", 20, t).unwrap_err();
        assert!(e.contains("from -/eve"), "{e}");
        l.reserve("u9", "-/frank", 20, t).unwrap();
        l.reserve("u10", "-", 20, t).unwrap();
        // everyone behind cloudflared comes from 127.0.0.1
        let mut l = Limits::default();
        for i in 0..8 {
            l.reserve(&format!("u{i}"), "127.0.0.1", 20, t).unwrap();
        }
        l.reserve("u8", "::1", 20, t).unwrap();
        for i in 0..8 {
            l.release(&format!("u{i}"), "127.0.0.1");
        }
        l.release("u8", "::1");
        assert_eq!(l.total(), 0);
        assert!(l.per_source.is_empty());
    }

    #[test]
    fn an_ipv6_subscriber_is_one_source() {
        assert_eq!(source_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(source_key("2001:db8:1:2:ffff::9"), "2001:db8:1:2::/64");
        assert_eq!(source_key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(source_key("192.0.2.7"), "192.0.2.7");
        assert_eq!(source_key("host.example.com"), "host.example.com");
        let t = Instant::now();
        let mut l = Limits::default();
        for i in 0..MAX_PER_SOURCE {
            l.reserve(&format!("u{i}"), &format!("2001:db8:1:2::{i}"), 20, t)
                .unwrap();
        }
        assert!(l.reserve("u9", "2001:db8:1:2::99", 20, t).is_err());
        l.reserve("u9", "2001:db8:1:3::1", 20, t).unwrap();
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
