//! A real S3-compatible server on 127.0.0.1: `s3s-fs` (crates.io `s3s-fs`,
//! the s3s project's file-system backed S3 service, which checks SigV4
//! signatures), one bucket, its data in a temp dir, ended by pid when dropped.
//! Installed by .ci/run (`cargo install s3s-fs --features binary`).

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const ACCESS_KEY: &str = "zt-test-access";
pub const SECRET_KEY: &str = "zt-test-secret-not-a-real-one";

pub struct S3Server {
    child: Child,
    dir: TempDir,
    pub port: u16,
}

fn binary() -> PathBuf {
    let in_cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|h| h.join("bin/s3s-fs"));
    match in_cargo_home {
        Some(p) if p.exists() => p,
        _ => PathBuf::from("s3s-fs"),
    }
}

impl S3Server {
    /// Starts the server with one (empty) bucket.
    pub fn start(bucket: &str) -> S3Server {
        let dir = tempfile::Builder::new()
            .prefix("zt-s3-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir(dir.path().join(bucket)).expect("bucket");
        let port = crate::nginx::free_port();
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs (cargo install s3s-fs --features binary; .ci/run does)");
        let server = S3Server { child, dir, port };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "s3s-fs did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where the server keeps an object (bucket/key).
    pub fn object_path(&self, bucket_and_key: &str) -> PathBuf {
        self.dir.path().join(bucket_and_key)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
