//! The daemon loop. A failed sync (directory down, bad answer, bad config) is
//! logged and the last good snapshot stays in force; the next attempt comes at
//! the next interval.

use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use std::sync::{Arc, RwLock};

use crate::config::AgentConfig;
use crate::control::{self, Refresher};
use crate::device::Devices;
use crate::notify;
use crate::outcome::Completed;
use crate::sync::{self, Paths};

/// Spreads a fleet's syncs over +-10% of the interval so hosts do not hit the
/// IdP in lockstep. std's RandomState is randomly seeded per process.
fn jittered(interval: Duration) -> Duration {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    let r = h.finish() % 2001; // 0..=2000 -> -10%..+10%
    interval.mul_f64(0.9 + r as f64 / 10000.0)
}

/// A fresh install: the packaged agent.toml names a directory file nobody has
/// written yet.
fn not_configured(config: &AgentConfig) -> bool {
    config
        .directory
        .path
        .as_ref()
        .is_some_and(|path| !path.exists())
}

pub fn run(config_path: &Path, paths: &Paths, run_dir: &Path) -> ExitCode {
    let config = match AgentConfig::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(78);
        }
    };
    tracing::info!(
        "zt-agent {} starting, syncing every {:?}",
        env!("CARGO_PKG_VERSION"),
        config.directory.sync_interval
    );
    let shared = Arc::new(RwLock::new(config.clone()));
    let services = control::Services {
        refresher: Arc::new(Refresher::new(shared.clone(), paths.clone())),
        devices: Some(Arc::new(Devices::new(shared.clone(), paths.clone()))),
    };
    match control::spawn_services(run_dir, services) {
        Ok(path) => tracing::info!("control socket at {}", path.display()),
        // logins still work with the keys of the last sync
        Err(e) => tracing::error!(
            "no control socket under {}: {e}; key refreshes at login are unavailable",
            run_dir.display()
        ),
    }
    // Ready once the control socket is up: lookups and logins never wait for
    // the agent (they read the last snapshot), and the first sync may take
    // the key servers' whole timeouts, which must not fail the start.
    notify::notify("READY=1\nSTATUS=first sync");
    let mut config = config;
    let mut first = true;
    loop {
        let mut wait = jittered(config.directory.sync_interval);
        let status = match sync::caught("the sync", || sync::sync(&config, paths, false)) {
            Ok(r) => {
                match r.completed {
                    Completed::Published => {}
                    Completed::Unchanged => {
                        tracing::debug!("no change (generation {})", r.generation)
                    }
                    Completed::HeldBack => tracing::warn!(
                        "removals held back; everything else published (generation {})",
                        r.generation
                    ),
                }
                format!(
                    "synced: generation {}, {} users, {} groups",
                    r.generation, r.users, r.groups
                )
            }
            Err(e) if first && not_configured(&config) => {
                tracing::error!(
                    "not configured: {e}; edit {} (see agent.toml(5))",
                    config_path.display()
                );
                format!("not configured: {e}")
            }
            Err(e) => {
                tracing::error!("sync failed, last good snapshot kept: {e}");
                wait = wait_after_failure(wait, e.retry_after);
                format!("last sync failed: {e}")
            }
        };
        crate::monitoring::after_sync(&config.monitoring, &paths.state_dir);
        notify::notify(&format!("STATUS={}", notify::status_line(&status)));
        first = false;
        std::thread::sleep(wait);
        // pick up config edits; a broken edit keeps the last good config
        match AgentConfig::load(config_path) {
            Ok(c) => {
                if let Ok(mut live) = shared.write() {
                    *live = c.clone();
                }
                config = c;
            }
            Err(e) => tracing::error!("config not reloaded, keeping the last good one: {e}"),
        }
    }
}

/// The IdP's Retry-After (only ever from a 429), when longer than the
/// interval, is waited out (a throttled fleet that came back every interval
/// anyway would stay throttled), but never longer than the interval or
/// [`MAX_THROTTLED_WAIT`], whichever is longer: a server's number must not
/// stop syncing (disables, removals) for long.
fn wait_after_failure(interval: Duration, retry_after: Option<Duration>) -> Duration {
    let most = interval.max(MAX_THROTTLED_WAIT);
    retry_after.map_or(interval, |after| interval.max(after.min(most)))
}

/// See [`wait_after_failure`].
const MAX_THROTTLED_WAIT: Duration = Duration::from_secs(15 * 60);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn a_longer_retry_after_is_waited_out() {
        let minute = Duration::from_secs(60);
        assert_eq!(super::wait_after_failure(minute, None), minute);
        assert_eq!(
            super::wait_after_failure(minute, Some(Duration::from_secs(5))),
            minute
        );
        assert_eq!(
            super::wait_after_failure(minute, Some(Duration::from_secs(600))),
            Duration::from_secs(600)
        );
        // bounded: 15 minutes, or the interval if that is longer
        assert_eq!(
            super::wait_after_failure(minute, Some(Duration::from_secs(10 * 86_400))),
            Duration::from_secs(900)
        );
        let hour = Duration::from_secs(3600);
        assert_eq!(
            super::wait_after_failure(hour, Some(Duration::from_secs(86_400))),
            hour
        );
    }

    #[test]
    fn a_panicking_sync_is_a_failed_sync_not_a_dead_daemon() {
        let e = crate::sync::caught::<()>("the sync", || {
            panic!("overflow when adding duration to instant")
        })
        .unwrap_err();
        assert_eq!(e.kind, crate::outcome::FailureKind::Host);
        assert!(e.message.contains("overflow when adding"), "{e:?}");
        let e =
            crate::sync::caught::<()>("the sync", || std::panic::panic_any(format!("owned {}", 7)))
                .unwrap_err();
        assert!(e.message.contains("owned 7"), "{e:?}");
        // and the next one runs as usual
        let e =
            crate::sync::caught::<()>("the sync", || Err(crate::outcome::SyncError::host("plain")))
                .unwrap_err();
        assert_eq!(e.message, "plain");
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let d = super::jittered(std::time::Duration::from_secs(60));
            assert!(
                d >= std::time::Duration::from_secs(54) && d <= std::time::Duration::from_secs(66),
                "{d:?}"
            );
        }
    }
}
