//! A tiny HTTP/1.1 file server on 127.0.0.1 inside the shared [`Net`], for the
//! Cloudflare Access certs document (`/cdn-cgi/access/certs`), JWKS and OIDC discovery
//! documents written by the test. It is a thread of the test process (its socket was
//! opened after `setns` into the network namespace), so it needs no clean-up.
//!
//! Files are swapped atomically ([`KeysServer::put`]: temp file + rename) to simulate a
//! key rotation. Every response carries an `ETag` computed from the content (not from
//! the mtime, see recipes/README.md on nginx) and honours `If-None-Match` with 304.
//! [`KeysServer::fail_with`] makes every request answer a given status (an outage), and
//! [`KeysServer::hits`] lists the paths requested so far.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use tempfile::TempDir;

use crate::Net;

pub struct KeysServer {
    pub port: u16,
    dir: TempDir,
    hits: Arc<Mutex<Vec<String>>>,
    fail: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
}

impl KeysServer {
    /// Starts a server in [`Net::shared`] serving an empty temp directory.
    pub fn start() -> KeysServer {
        let net = Net::shared();
        let dir = tempfile::Builder::new()
            .prefix("zt-keys-")
            .tempdir()
            .expect("tempdir");
        let hits = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(AtomicU16::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (root, h, f, s) = (
            dir.path().to_path_buf(),
            hits.clone(),
            fail.clone(),
            stop.clone(),
        );
        let ns = format!("/proc/{}/ns/net", net.holder);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            crate::net::enter(&ns);
            let l = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
            tx.send(l.local_addr().expect("addr").port()).expect("port");
            for conn in l.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(c) = conn {
                    let _ = serve(c, &root, &h, f.load(Ordering::Relaxed));
                }
            }
        });
        let port = rx.recv().expect("keys server port");
        KeysServer {
            port,
            dir,
            hits,
            fail,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Serves `body` at `path` from now on (atomic swap).
    pub fn put(&self, path: &str, body: &str) {
        let f = self.dir.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        let tmp = f.with_extension("tmp-swap");
        std::fs::write(&tmp, body).expect("write");
        std::fs::rename(&tmp, &f).expect("rename");
    }

    /// Every request answers `status` (0: serve files again).
    pub fn fail_with(&self, status: u16) {
        self.fail.store(status, Ordering::Relaxed);
    }

    /// The paths requested so far, in order.
    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().expect("hits").clone()
    }
}

impl Drop for KeysServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn etag(body: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    body.hash(&mut h);
    format!("\"{:016x}\"", h.finish())
}

fn serve(c: TcpStream, root: &Path, hits: &Mutex<Vec<String>>, fail: u16) -> std::io::Result<()> {
    let mut r = BufReader::new(c.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut inm = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("if-none-match")
        {
            inm = Some(v.trim().to_string());
        }
    }
    hits.lock().expect("hits").push(path.clone());
    let file: PathBuf = root.join(path.split('?').next().unwrap_or("").trim_start_matches('/'));
    let (status, body) = if fail != 0 {
        (fail, b"simulated failure\n".to_vec())
    } else if path.contains("..") {
        (400, Vec::new())
    } else {
        match std::fs::read(&file) {
            Ok(b) => (200, b),
            Err(_) => (404, b"not found\n".to_vec()),
        }
    };
    let tag = etag(&body);
    let (status, body) = if status == 200 && inm.as_deref() == Some(tag.as_str()) {
        (304, Vec::new())
    } else {
        (status, body)
    };
    let mut w = c;
    write!(
        w,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nETag: {tag}\r\nCache-Control: max-age=0\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    w.write_all(&body)?;
    w.flush()
}
