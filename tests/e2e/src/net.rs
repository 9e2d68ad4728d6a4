//! One private network + PID namespace per test binary, shared by every test in it.
//!
//! `unshare --net --pid --fork` starts a holder (`cat`, PID 1 of the new PID namespace)
//! whose stdin is a pipe that only this test process holds. When the test process ends
//! (normally, by panic or by SIGKILL) the pipe closes, `cat` exits, and the kernel kills
//! every process in the PID namespace: sshd, node, anything a test forgot. The network
//! namespace has only `lo` (127.0.0.1), so ports never collide with the machine or with
//! another test binary, and nothing in it can reach the outside.
//!
//! [`Net::command`] runs a program inside both namespaces (`nsenter`); hosts made with
//! [`crate::Host::new_pam`] run all their commands there, so the agent, sshd, sudo and
//! the HTTP servers of one test binary all see the same 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};

pub struct Net {
    /// PID (in the machine's PID namespace) of the holder, PID 1 inside.
    pub holder: u32,
    _stdin: ChildStdin,
    next_port: AtomicU16,
}

static SHARED: OnceLock<Net> = OnceLock::new();

/// The child pids of `pid` (its main thread's `children` file).
pub fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

impl Net {
    /// The test binary's namespace pair, created on first use.
    pub fn shared() -> &'static Net {
        SHARED.get_or_init(Net::start)
    }

    fn start() -> Net {
        let mut child = Command::new("unshare")
            .args(["--net", "--pid", "--fork", "--kill-child", "bash", "-c"])
            .arg("ip link set lo up && echo ready && exec cat >/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare --net --pid (needs root and util-linux)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("holder stdout");
        assert_eq!(
            line.trim(),
            "ready",
            "network namespace holder did not start"
        );
        let unshare = child.id();
        let holder = (0..100)
            .find_map(|_| {
                let c = children_of(unshare);
                if c.is_empty() {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                c.first().copied()
            })
            .expect("holder pid");
        // The Child is leaked on purpose: the holder lives as long as this process.
        let stdin = child.stdin.take().expect("stdin");
        std::mem::forget(child);
        Net {
            holder,
            _stdin: stdin,
            next_port: AtomicU16::new(20_000),
        }
    }

    /// A port nobody else in this namespace was given.
    pub fn port(&self) -> u16 {
        self.next_port.fetch_add(1, Ordering::Relaxed)
    }

    /// `nsenter` into the namespace pair, then `program`.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args([
            "-t",
            &self.holder.to_string(),
            "--net",
            "--pid",
            "--",
            program,
        ]);
        c
    }

    /// Runs `f` on a fresh thread that has joined the network namespace (sockets it
    /// opens live there). The test's own thread is not moved.
    pub fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/proc/{}/ns/net", self.holder);
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .expect("thread in the test network namespace")
    }

    /// A minimal HTTP/1.0 GET to 127.0.0.1:`port` inside the namespace:
    /// (status, headers, body).
    pub fn http_get(&self, port: u16, path: &str) -> (u16, String, String) {
        let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        self.within(move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.write_all(req.as_bytes()).expect("send");
            let mut raw = Vec::new();
            s.read_to_end(&mut raw).expect("read");
            let raw = String::from_utf8_lossy(&raw).into_owned();
            let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            (status, head.to_string(), body.to_string())
        })
    }

    /// Waits until something listens on 127.0.0.1:`port` inside the namespace.
    pub fn wait_port(&self, port: u16, what: &str) {
        let ok = self.within(move || {
            (0..300).any(|_| {
                TcpStream::connect(("127.0.0.1", port)).is_ok() || {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    false
                }
            })
        });
        assert!(ok, "{what} did not listen on 127.0.0.1:{port} within 6 s");
    }
}

/// Moves the calling thread into the network namespace at `path`.
pub(crate) fn enter(path: &str) {
    let f = std::fs::File::open(path).expect("open netns");
    // SAFETY: a valid namespace fd; CLONE_NEWNET applies to this thread only.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}
