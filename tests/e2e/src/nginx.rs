//! A real nginx (Debian's nginx-light) on 127.0.0.1 serving one folder, as a
//! fleet's web server would: its own config, pid, logs and temp paths in a
//! temp dir, `daemon off`, ended by pid when dropped. Runs as root (the test
//! folders are root-only temp dirs), workers too (`user root`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct Nginx {
    child: Child,
    _dir: TempDir,
    pub port: u16,
    /// The access log: one line per request with the bytes sent.
    pub access_log: PathBuf,
}

/// A port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Nginx {
    /// Serves `root` at http://127.0.0.1:PORT/fleet/.
    pub fn serve(root: &Path) -> Nginx {
        let dir = tempfile::Builder::new()
            .prefix("zt-nginx-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path().display().to_string();
        let port = free_port();
        let access_log = dir.path().join("access.log");
        let conf = format!(
            "daemon off;
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {d}/access.log combined;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    types {{ application/json json; }}
    default_type application/octet-stream;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        location /fleet/ {{ alias {root}/; }}
    }}
}}
",
            root = root.display()
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let child = Command::new("nginx")
            .args(["-p", &d, "-c"])
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nginx (apt-get install nginx-light; .ci/run does)");
        let n = Nginx {
            child,
            _dir: dir,
            port,
            access_log,
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nginx did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/fleet/", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of the child we started; SIGQUIT is
        // nginx's graceful stop, the wait below reaps it.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGQUIT);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
