//! `zt-agent run` inside a host: the daemon with its control socket, ended by
//! its pid. Its log (stderr) is collected as it is written, so a test can wait
//! for a line while the agent runs.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Host;

pub struct AgentDaemon {
    child: Child,
    /// The agent's pid in the machine's PID namespace.
    pub pid: u32,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl AgentDaemon {
    /// Starts `zt-agent run` in `h` and waits for its pid.
    pub fn start(h: &Host) -> AgentDaemon {
        let mut argv = h.agent_argv();
        argv.push("run".into());
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut child = h.spawn(&argv);
        let started = Instant::now();
        let pid = loop {
            // nsenter forks; unshare and bash exec: its one child is the agent.
            if let Some(p) = crate::net::children_of(child.id()).first() {
                break *p;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "agent pid");
            std::thread::sleep(Duration::from_millis(10));
        };
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().expect("log");
                l.push_str(&line);
                l.push('\n');
            }
        });
        AgentDaemon {
            child,
            pid,
            log,
            reader: Some(reader),
        }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// Waits at most `timeout` for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// How many threads the agent has now.
    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// How many of its threads are named `name` (Linux's 15-character comm).
    pub fn threads_named(&self, name: &str) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|t| {
                        std::fs::read_to_string(t.path().join("comm"))
                            .is_ok_and(|c| c.trim_end() == name)
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    /// Its resident memory now, in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Stops it (SIGTERM by pid) and returns its log.
    pub fn stop(mut self) -> String {
        self.end();
        self.log()
    }

    pub fn kill(&self) {
        // SAFETY: kill(2) on the pid of the agent this struct started.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
    }

    fn end(&mut self) {
        self.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for AgentDaemon {
    fn drop(&mut self) {
        self.end();
    }
}
