//! The fleet benchmark (issue 12), as root:
//!
//!     cargo run --release -p zt-bench --bin fleet-bench
//!
//! Runs in a network namespace of its own (loopback only), so the loopback
//! counters count this run's packets alone: "bytes on the wire" are IP
//! packets as the kernel sent them (TCP handshakes, headers, ACKs included),
//! besides the HTTP bytes. Prints a Markdown report; no figure is asserted.
//!
//! 1. The publisher's cost for ZT_FLEET_PEOPLE (100,000) people: reading the
//!    directory file, the first publication (every id allocated), an
//!    unchanged cycle, and a one-person change; object size; peak RSS.
//! 2. A host's fetch-verify-publish: `sync` of a fleet host (download,
//!    verify, resolve, build and publish the snapshot), then an unchanged one.
//! 3. ZT_FLEET_HOSTS (10,000) simulated hosts polling one nginx with
//!    conditional GETs, each on its own TCP connection (as separate hosts
//!    are): requests, statuses, bytes per poll.
//! 4. One person changed: what each host then fetches (pointer + object),
//!    measured on ZT_FLEET_SAMPLE (200) hosts (every host fetches the same).
//! 5. TLS with the agent's own client (`zt_agent::http::Http`): wire bytes of
//!    an unchanged poll with a new client per poll (a full handshake) and with
//!    the one client a daemon keeps (a reused connection, back to back and
//!    16 s apart).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zt_agent::config::{AgentConfig, HttpConfig};
use zt_agent::directory::file;
use zt_agent::fleet::publish;
use zt_agent::http::{Got, Http, Validators};
use zt_agent::sync::Paths;
use zt_snapshot::StateDir;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(cmd: &mut Command) {
    let o = cmd.output().expect("spawn");
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Bytes and packets sent on loopback so far (each counted once), from this
/// network namespace's /proc/self/net/dev (sysfs shows the namespace it was
/// mounted in).
fn lo() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/net/dev").unwrap_or_default();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("lo:"))
        .unwrap_or_default();
    let f: Vec<u64> = line
        .split_once(':')
        .map(|(_, r)| {
            r.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    // receive: bytes packets errs drop fifo frame compressed multicast; then transmit
    (
        f.get(8).copied().unwrap_or(0),
        f.get(9).copied().unwrap_or(0),
    )
}

fn max_rss_mb() -> f64 {
    // SAFETY: getrusage writes into the struct we pass; zeroed is a valid rusage.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u.ru_maxrss as f64 / 1024.0
}

fn directory(people: usize, changed: Option<usize>) -> serde_json::Value {
    let users: Vec<serde_json::Value> = (0..people)
        .map(|i| {
            let name = if Some(i) == changed {
                format!("Person {i} (renamed)")
            } else {
                format!("Person {i}")
            };
            serde_json::json!({"id": format!("u-{i:07}"), "email": format!("p{i}@example.com"), "display_name": name})
        })
        .collect();
    let mut groups = vec![serde_json::json!({
        "id": "g-all", "name": "All",
        "members": (0..people).map(|i| format!("u-{i:07}")).collect::<Vec<_>>()
    })];
    for t in 0..10 {
        groups.push(serde_json::json!({
            "id": format!("g-team{t}"), "name": format!("Team {t}"),
            "members": (0..people).filter(|i| i % 10 == t).map(|i| format!("u-{i:07}")).collect::<Vec<_>>()
        }));
    }
    serde_json::json!({"users": users, "groups": groups})
}

const GROUPS: &str = r#"
[users]
domains = ["example.com"]

[[groups]]
id = "g-all"
name = "fleetstaff"
login = true
"#;

fn team_groups() -> String {
    (0..10)
        .map(|t| format!("\n[[groups]]\nid = \"g-team{t}\"\nname = \"team{t}\"\n"))
        .collect()
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of the nginx this program started.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGQUIT) };
        let _ = self.0.wait();
    }
}

fn nginx(dir: &Path, www: &Path, cert: &Path, key: &Path) -> Nginx {
    let d = dir.display();
    let conf = format!(
        "daemon off;
user root;
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    types {{ application/json json; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:8080;
        listen 127.0.0.1:8443 ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location /fleet/ {{ alias {www}/; }}
    }}
}}
",
        cert = cert.display(),
        key = key.display(),
        www = www.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .args(["-p", &d.to_string(), "-c"])
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .spawn()
        .expect("nginx (apt-get install nginx-light)");
    let start = Instant::now();
    while TcpStream::connect("127.0.0.1:8080").is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nginx did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Nginx(child)
}

/// A CA and a server certificate for 127.0.0.1, made with openssl.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n);
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .args(["-subj", "/CN=zt bench CA", "-keyout"])
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem")));
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(p("server.key"))
        .arg("-out")
        .arg(p("server.csr")));
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-in"])
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .args(["-CAcreateserial", "-extfile"])
        .arg(p("ext.cnf"))
        .arg("-out")
        .arg(p("server.pem")));
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

/// One poll as a separate host makes it: a new TCP connection, one GET.
/// Returns (status, bytes sent, bytes received, body).
fn poll(path: &str, validators: &Validators) -> (u16, usize, usize, Vec<u8>) {
    let mut s = TcpStream::connect("127.0.0.1:8080").expect("connect");
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: zt-agent/0.1.0\r\nAccept: */*\r\n"
    );
    if let Some(e) = &validators.etag {
        req.push_str(&format!("If-None-Match: {e}\r\n"));
    }
    if let Some(d) = &validators.last_modified {
        req.push_str(&format!("If-Modified-Since: {d}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let status = std::str::from_utf8(&resp[9..12])
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let body_at = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(resp.len(), |i| i + 4);
    (status, req.len(), resp.len(), resp[body_at..].to_vec())
}

fn validators_of(path: &str) -> Validators {
    let http = Http::new(&HttpConfig::default()).unwrap();
    match http
        .get_conditional(
            &format!("http://127.0.0.1:8080{path}"),
            &Validators::default(),
            &[],
            1 << 20,
        )
        .unwrap()
    {
        Got::Body { validators, .. } => validators,
        other => panic!("{other:?}"),
    }
}

fn main() {
    // SAFETY: unshare(2) with a flag; affects only this process (no threads yet).
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        panic!(
            "unshare(CLONE_NEWNET): {} (run as root)",
            std::io::Error::last_os_error()
        );
    }
    run(Command::new("ip").args(["link", "set", "lo", "up"]));
    let people = env_usize("ZT_FLEET_PEOPLE", 100_000);
    let hosts = env_usize("ZT_FLEET_HOSTS", 10_000);
    let sample = env_usize("ZT_FLEET_SAMPLE", 200);
    let threads = env_usize("ZT_FLEET_THREADS", 16);
    let tmp = tempfile::Builder::new()
        .prefix("zt-fleet-bench-")
        .tempdir()
        .unwrap();
    let t = tmp.path();
    let www = t.join("www");
    let dir_path = t.join("directory.json");
    std::fs::write(
        &dir_path,
        serde_json::to_vec(&directory(people, None)).unwrap(),
    )
    .unwrap();
    let key = t.join("fleet.key");
    let public = zt_agent::fleet::sign::new_key(&key).unwrap();
    let config = AgentConfig::parse(
        &format!(
            "[directory]\nkind = \"file\"\npath = \"{}\"\n{GROUPS}{}\n[publish]\nto = \"{}\"\nsigning_key_file = \"{}\"\nvalid_for = \"7d\"\n",
            dir_path.display(),
            team_groups(),
            www.display(),
            key.display()
        ),
        "publisher.toml",
    )
    .unwrap();
    let target = config.publish_target.clone().unwrap();
    std::fs::create_dir(t.join("pub-state")).unwrap();
    let state = StateDir::open_or_create(&t.join("pub-state")).unwrap();

    println!("## Fleet benchmark: {people} people, {hosts} hosts\n");
    println!("### Publisher\n");
    let start = Instant::now();
    let dir = file::load(&dir_path).unwrap();
    let read_t = start.elapsed();
    let start = Instant::now();
    let first = publish::publish(&config, &target, &state, &dir, &[]).unwrap();
    let first_t = start.elapsed();
    let start = Instant::now();
    let unchanged = publish::publish(&config, &target, &state, &dir, &[]).unwrap();
    let unchanged_t = start.elapsed();
    assert!(!unchanged.published);
    let json_len = std::fs::metadata(&dir_path).unwrap().len();
    println!("| step | time | note |\n|---|---|---|");
    println!(
        "| read the directory file ({:.1} MB JSON) | {:.2} s | what any sync costs |",
        json_len as f64 / 1e6,
        read_t.as_secs_f64()
    );
    println!(
        "| first publication (every id allocated) | {:.2} s | object {:.2} MB ({:.1} bytes/person) |",
        first_t.as_secs_f64(),
        first.object_bytes as f64 / 1e6,
        first.object_bytes as f64 / people as f64
    );
    println!(
        "| unchanged cycle (resolve, compare, nothing written) | {:.2} s | |",
        unchanged_t.as_secs_f64()
    );

    // nginx, and a host's fetch-verify-publish
    let (ca, cert, cert_key) = certificates(t);
    let _nginx = nginx(t, &www, &cert, &cert_key);
    let host_root = t.join("host-root");
    std::fs::create_dir_all(host_root.join("etc")).unwrap();
    std::fs::copy("/etc/passwd", host_root.join("etc/passwd")).unwrap();
    std::fs::copy("/etc/group", host_root.join("etc/group")).unwrap();
    std::fs::create_dir(t.join("sudoers")).unwrap();
    std::fs::create_dir(t.join("host-state")).unwrap();
    let host_config = AgentConfig::parse(
        &format!(
            "[directory]\nkind = \"fleet\"\nurl = \"http://127.0.0.1:8080/fleet/\"\npublic_keys = [\"{public}\"]\n{GROUPS}"
        ),
        "host.toml",
    )
    .unwrap();
    let paths = Paths {
        state_dir: t.join("host-state"),
        host_root,
        sudoers: zt_agent::sudo::install::Target {
            dir: t.join("sudoers"),
            visudo: None,
        },
    };
    let start = Instant::now();
    let r = zt_agent::sync::sync(&host_config, &paths, false).unwrap();
    let host_first = start.elapsed();
    let start = Instant::now();
    let r2 = zt_agent::sync::sync(&host_config, &paths, false).unwrap();
    let host_again = start.elapsed();
    if r.users == 0 {
        eprintln!(
            "host resolved nobody: {:?} {:?}",
            r.resolution.problems,
            r.resolution.skipped.first()
        );
    }
    println!(
        "| host: fetch, verify, resolve, publish the snapshot | {:.2} s | {} users, generation {} |",
        host_first.as_secs_f64(),
        r.users,
        r.generation
    );
    println!(
        "| host: unchanged poll (304, held document re-verified, resolved, nothing published) | {:.2} s | {:?} |",
        host_again.as_secs_f64(),
        r2.completed
    );

    // 10,000 hosts polling, nothing changed
    let current = validators_of("/fleet/current.json");
    let polls = |n: usize, validators: Validators| {
        let per = n.div_ceil(threads);
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let v = validators.clone();
                std::thread::spawn(move || {
                    let mut out = (0usize, 0usize, 0usize, 0usize); // 304s, sent, received, polls
                    for _ in (k * per)..((k + 1) * per).min(n) {
                        let (status, sent, received, _) = poll("/fleet/current.json", &v);
                        out.0 += usize::from(status == 304);
                        out.1 += sent;
                        out.2 += received;
                        out.3 += 1;
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0, 0, 0), |a, b| {
                (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3)
            })
    };
    let (b0, p0) = lo();
    let start = Instant::now();
    let (not_modified, sent, received, n) = polls(hosts, current.clone());
    let wall = start.elapsed();
    let (b1, p1) = lo();
    println!("\n### {hosts} hosts poll, nothing changed (one TCP connection per poll)\n");
    println!("| figure | value |\n|---|---|");
    println!("| polls | {n} ({not_modified} answered 304) |");
    println!(
        "| wall time | {:.2} s ({:.0} polls/s, {threads} client threads) |",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64()
    );
    println!(
        "| HTTP bytes per poll (request + response) | {} + {} = {} |",
        sent / n,
        received / n,
        (sent + received) / n
    );
    println!(
        "| bytes on the wire per poll (IP packets incl. TCP handshake and close) | {} in {:.1} packets |",
        (b1 - b0) / n as u64,
        (p1 - p0) as f64 / n as f64
    );
    println!(
        "| IdP requests made by the hosts | 0 (the publisher reads the IdP once per interval, whatever the number of hosts) |"
    );

    // one person changed
    let dir2 = file::parse(
        &serde_json::to_string(&directory(people, Some(people / 2))).unwrap(),
        "d",
    )
    .unwrap();
    let start = Instant::now();
    let changed = publish::publish(&config, &target, &state, &dir2, &[]).unwrap();
    let changed_t = start.elapsed();
    assert!(changed.published);
    let (b0, _) = lo();
    let start = Instant::now();
    let (mut pointer_bytes, mut object_bytes) = (0usize, 0usize);
    for _ in 0..sample {
        let (status, s1, r1, body) = poll("/fleet/current.json", &current);
        assert_eq!(status, 200);
        let p: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let (status, s2, r2, _) = poll(
            &format!("/fleet/{}", p["object"].as_str().unwrap()),
            &Validators::default(),
        );
        assert_eq!(status, 200);
        pointer_bytes += s1 + r1;
        object_bytes += s2 + r2;
    }
    let sample_t = start.elapsed();
    let (b1, _) = lo();
    println!("\n### One person changed\n");
    println!("| figure | value |\n|---|---|");
    println!(
        "| publisher: the new publication | {:.2} s, object {:.2} MB |",
        changed_t.as_secs_f64(),
        changed.object_bytes as f64 / 1e6
    );
    println!(
        "| each host then fetches: pointer + object (HTTP bytes, {sample} hosts measured) | {} + {} bytes |",
        pointer_bytes / sample,
        object_bytes / sample
    );
    println!(
        "| bytes on the wire per host | {} |",
        (b1 - b0) / sample as u64
    );
    println!(
        "| {hosts} hosts, all of them | {:.2} GB; at the measured rate {:.1} s of one nginx on loopback |",
        ((b1 - b0) / sample as u64) as f64 * hosts as f64 / 1e9,
        sample_t.as_secs_f64() / sample as f64 * hosts as f64
    );

    // TLS with the agent's client
    let https = "https://127.0.0.1:8443/fleet/current.json";
    let http_config = HttpConfig { ca_file: Some(ca) };
    let tls_current = {
        let h = Http::new(&http_config).unwrap();
        match h
            .get_conditional(https, &Validators::default(), &[], 1 << 20)
            .unwrap()
        {
            Got::Body { validators, .. } => validators,
            other => panic!("{other:?}"),
        }
    };
    let rounds = 100;
    let (b0, _) = lo();
    for _ in 0..rounds {
        let h = Http::new(&http_config).unwrap();
        let got = h
            .get_conditional(https, &tls_current, &[], 1 << 20)
            .unwrap();
        assert_eq!(got, Got::NotModified);
    }
    let (b1, _) = lo();
    // as zt_agent::fleet::fetch keeps it
    let shared = Http::for_polls(&http_config, zt_agent::fleet::fetch::POLL_IDLE).unwrap();
    let (b2, _) = lo();
    for _ in 0..rounds {
        let got = shared
            .get_conditional(https, &tls_current, &[], 1 << 20)
            .unwrap();
        assert_eq!(got, Got::NotModified);
    }
    let (b3, _) = lo();
    // a daemon polls every sync_interval: the connection stays open while
    // the server keeps it (nginx: keepalive_timeout, 75 s by default)
    let idle_rounds = env_usize("ZT_FLEET_IDLE_ROUNDS", 3) as u64;
    let mut resumed = 0;
    for _ in 0..idle_rounds {
        std::thread::sleep(Duration::from_secs(16));
        let (a, _) = lo();
        let got = shared
            .get_conditional(https, &tls_current, &[], 1 << 20)
            .unwrap();
        assert_eq!(got, Got::NotModified);
        let (b, _) = lo();
        resumed += b - a;
    }
    println!("\n### An unchanged poll over TLS with the agent's client (`zt_agent::http::Http`)\n");
    println!("| client | bytes on the wire per poll |\n|---|---|");
    println!(
        "| a new client per poll (full TLS 1.3 handshake, ECDSA P-256 chain of 1) | {} |",
        (b1 - b0) / rounds
    );
    println!(
        "| the one client a daemon keeps (connection reused) | {} |",
        (b3 - b2) / rounds
    );
    if let Some(per) = resumed.checked_div(idle_rounds) {
        println!("| the one client a daemon keeps, each poll 16 s after the last | {per} |");
    }
    println!("\npeak RSS of this process: {:.0} MB", max_rss_mb());
}
