//! Issuers' keys end to end inside the agent: a local HTTP server answering in
//! Cloudflare's certs shape and as an OIDC provider (discovery + JWKS), real
//! syncs into a temporary state directory, and the control socket.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use zt_agent::config::AgentConfig;
use zt_agent::control::{self, Refresher};
use zt_agent::sync::{Paths, sync};
use zt_published::control::request_key_refresh;
use zt_snapshot::format::issuer_kind;
use zt_snapshot::{Private, StateDir};

/// path -> (status, body); every request counted by path.
#[derive(Default)]
struct Routes {
    answers: HashMap<String, (u16, String)>,
    hits: HashMap<String, usize>,
}

struct Server {
    base: String,
    routes: Arc<Mutex<Routes>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes = Arc::new(Mutex::new(Routes::default()));
        let r = routes.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                // skip the headers
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = request.split(' ').nth(1).unwrap_or("/").to_string();
                let (status, body) = {
                    let mut routes = r.lock().unwrap();
                    *routes.hits.entry(path.clone()).or_default() += 1;
                    routes
                        .answers
                        .get(&path)
                        .cloned()
                        .unwrap_or((404, "not found".into()))
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Server { base, routes }
    }

    fn answer(&self, path: &str, status: u16, body: &str) {
        let mut r = self.routes.lock().unwrap();
        r.answers.insert(path.into(), (status, body.into()));
    }

    fn hits(&self, path: &str) -> usize {
        self.routes
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

/// Test-only JWKs: the agent checks their shape and an RSA modulus's size,
/// never their numbers (a 2048-bit `n`, test-only text then zero bits).
fn rsa_jwk(kid: &str) -> String {
    let n = format!("test-only-not-a-real-modulus-{kid}");
    let n = format!("{n}{}", "A".repeat(342 - n.len()));
    format!(r#"{{"kid":"{kid}","kty":"RSA","alg":"RS256","use":"sig","e":"AQAB","n":"{n}"}}"#)
}

fn ec_jwk(kid: &str) -> String {
    format!(
        r#"{{"kty":"EC","crv":"P-256","kid":"{kid}","use":"sig","x":"test-only-x","y":"test-only-y"}}"#
    )
}

/// Cloudflare's documented certs shape: `keys`, `public_cert`, `public_certs`.
fn cloudflare_certs(kids: &[&str]) -> String {
    let keys: Vec<String> = kids.iter().map(|k| rsa_jwk(k)).collect();
    let certs: Vec<String> = kids
        .iter()
        .map(|k| format!(r#"{{"kid":"{k}","cert":"-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n"}}"#))
        .collect();
    format!(
        r#"{{"keys":[{}],"public_cert":{},"public_certs":[{}]}}"#,
        keys.join(","),
        certs[0],
        certs.join(",")
    )
}

struct Host {
    _tmp: tempfile::TempDir,
    server: Server,
    paths: Paths,
    config: AgentConfig,
    oidc_iss: String,
    cf_iss: &'static str,
}

impl Host {
    fn new() -> Host {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("host");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\nadm:x:4:\n").unwrap();
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/examples/directory.json");
        let directory = tmp.path().join("directory.json");
        std::fs::copy(example, &directory).unwrap();
        let server = Server::start();
        let oidc_iss = format!("{}/realms/zt", server.base);
        server.answer("/cf/certs", 200, &cloudflare_certs(&["cf-a", "cf-b"]));
        server.answer(
            "/realms/zt/.well-known/openid-configuration",
            200,
            &format!(
                r#"{{"issuer":"{oidc_iss}","jwks_uri":"{}/realms/zt/jwks","authorization_endpoint":"x"}}"#,
                server.base
            ),
        );
        server.answer(
            "/realms/zt/jwks",
            200,
            &format!(
                r#"{{"keys":[{},{{"kid":"hmac","kty":"oct","alg":"HS256","k":"c2VjcmV0"}}]}}"#,
                ec_jwk("oidc-1")
            ),
        );
        let text = format!(
            r#"
[directory]
kind = "file"
path = "{}"

[users]
domains = ["example.com"]

[[groups]]
id = "00000000-0000-0000-0000-00000000a001"
name = "sre"
login = true

[[local_groups]]
group = "00000000-0000-0000-0000-00000000a001"
grant = ["adm"]

[[issuers]]
kind = "cloudflare-access"
team = "acme"
audiences = ["aud-tag-1"]
certs_url = "{base}/cf/certs"

[[issuers]]
kind = "oidc"
issuer = "{oidc_iss}"
audiences = ["zt-ssh"]
claim = "preferred_username"

[login]
max_offline = "3d"
"#,
            directory.display(),
            base = server.base,
        );
        let config = AgentConfig::parse(&text, "agent.toml").unwrap();
        let paths = Paths {
            state_dir: tmp.path().join("state"),
            host_root: root,
            // never the machine's own /etc/sudoers.d
            sudoers: zt_agent::sudo::install::Target {
                dir: tmp.path().join("no-sudo"),
                visudo: None,
            },
        };
        Host {
            _tmp: tmp,
            server,
            paths,
            config,
            oidc_iss,
            cf_iss: "https://acme.cloudflareaccess.com",
        }
    }

    fn private(&self) -> Vec<u8> {
        std::fs::read(self.paths.state_dir.join("private")).unwrap()
    }

    /// Kids of `iss` in the published private file.
    fn kids(&self, iss: &str) -> Vec<String> {
        let bytes = self.private();
        let p = Private::parse(&bytes).unwrap();
        let i = p.issuer_by_iss(iss.as_bytes()).unwrap().unwrap();
        (0..i.key_count())
            .map(|k| String::from_utf8(i.key(k).unwrap().kid.to_vec()).unwrap())
            .collect()
    }

    fn run_dir(&self) -> PathBuf {
        self._tmp.path().join("run")
    }
}

#[test]
fn keys_issuers_and_policy_land_in_the_private_file() {
    let h = Host::new();
    let r = sync(&h.config, &h.paths, false).unwrap();
    assert!(r.changed);
    let bytes = h.private();
    let p = Private::parse(&bytes).unwrap();
    p.verify_all().unwrap();
    assert_eq!(p.policy().max_offline_secs, 3 * 86_400);
    assert_eq!(p.issuer_count(), 2);
    let cf = p.issuer_by_iss(h.cf_iss.as_bytes()).unwrap().unwrap();
    assert_eq!(cf.kind, issuer_kind::CLOUDFLARE_ACCESS);
    assert_eq!(cf.claim, b"email");
    assert_eq!(
        cf.audiences().map(Result::unwrap).collect::<Vec<_>>(),
        [b"aud-tag-1"]
    );
    let key = cf.key_by_kid(b"cf-b").unwrap().unwrap();
    assert_eq!(key.alg, b"RS256");
    assert_eq!(
        key.jwk,
        rsa_jwk("cf-b").as_bytes(),
        "the JWK text as served"
    );
    let oidc = p.issuer_by_iss(h.oidc_iss.as_bytes()).unwrap().unwrap();
    assert_eq!(oidc.kind, issuer_kind::OIDC);
    assert_eq!(oidc.claim, b"preferred_username");
    assert_eq!(
        h.kids(&h.oidc_iss),
        ["oidc-1"],
        "the HMAC key is never kept"
    );
    assert_eq!(
        oidc.key(0).unwrap().alg,
        b"ES256",
        "alg from kty/crv when left out"
    );
    // nothing of it in the public file
    let public = std::fs::read(h.paths.state_dir.join("snapshot")).unwrap();
    assert!(!public.windows(4).any(|w| w == b"cf-a"));
    // the heartbeat
    let state = StateDir::open(&h.paths.state_dir).unwrap();
    let beat = state.read_last_good_sync().unwrap().unwrap();
    assert!(beat >= p.synced_at());
}

#[test]
fn an_unchanged_sync_keeps_the_generation_and_still_beats() {
    let h = Host::new();
    let first = sync(&h.config, &h.paths, false).unwrap();
    let state = StateDir::open(&h.paths.state_dir).unwrap();
    std::fs::write(h.paths.state_dir.join("synced"), 5u64.to_le_bytes()).unwrap();
    let second = sync(&h.config, &h.paths, false).unwrap();
    assert!(
        !second.changed,
        "keys served in another order are the same keys"
    );
    assert_eq!(first.generation, second.generation);
    assert!(state.read_last_good_sync().unwrap().unwrap() > 5);
}

#[test]
fn a_failed_fetch_keeps_the_previous_keys_and_never_fails_the_sync() {
    let h = Host::new();
    sync(&h.config, &h.paths, false).unwrap();
    h.server.answer("/cf/certs", 503, "down");
    h.server.answer(
        "/realms/zt/jwks",
        200,
        r#"{"keys":[{"kid":"h","kty":"oct","k":"x"}]}"#,
    );
    let r = sync(&h.config, &h.paths, false).unwrap();
    assert!(!r.changed, "same keys kept, nothing to republish");
    assert_eq!(h.kids(h.cf_iss), ["cf-a", "cf-b"]);
    assert_eq!(h.kids(&h.oidc_iss), ["oidc-1"]);
}

#[test]
fn an_issuer_never_fetched_is_published_without_keys() {
    let h = Host::new();
    h.server.answer("/cf/certs", 500, "");
    sync(&h.config, &h.paths, false).unwrap();
    assert!(h.kids(h.cf_iss).is_empty());
    assert_eq!(h.kids(&h.oidc_iss), ["oidc-1"]);
}

#[test]
fn a_rotated_key_is_picked_up_by_the_next_sync() {
    let h = Host::new();
    let first = sync(&h.config, &h.paths, false).unwrap();
    h.server
        .answer("/cf/certs", 200, &cloudflare_certs(&["cf-b", "cf-c"]));
    let second = sync(&h.config, &h.paths, false).unwrap();
    assert!(second.changed && second.generation > first.generation);
    assert_eq!(h.kids(h.cf_iss), ["cf-b", "cf-c"]);
}

#[test]
fn a_discovery_document_for_another_issuer_is_not_trusted() {
    let h = Host::new();
    h.server.answer(
        "/realms/zt/.well-known/openid-configuration",
        200,
        &format!(
            r#"{{"issuer":"https://evil.example.com","jwks_uri":"{}/realms/zt/jwks"}}"#,
            h.server.base
        ),
    );
    sync(&h.config, &h.paths, false).unwrap();
    assert!(h.kids(&h.oidc_iss).is_empty());
    assert_eq!(h.server.hits("/realms/zt/jwks"), 0);
}

#[test]
fn the_control_socket_refreshes_keys_at_once_and_rate_limits() {
    let h = Host::new();
    let first = sync(&h.config, &h.paths, false).unwrap();
    let shared = Arc::new(RwLock::new(h.config.clone()));
    let mut refresher = Refresher::new(shared, h.paths.clone());
    refresher.global_interval = Duration::ZERO;
    control::spawn(&h.run_dir(), Arc::new(refresher)).unwrap();
    let timeout = Duration::from_secs(10);

    // a key rotated since the last sync
    h.server
        .answer("/cf/certs", 200, &cloudflare_certs(&["cf-b", "cf-new"]));
    let generation = request_key_refresh(&h.run_dir(), h.cf_iss, timeout).unwrap();
    assert!(generation > first.generation);
    assert_eq!(h.kids(h.cf_iss), ["cf-b", "cf-new"]);
    let state = StateDir::open(&h.paths.state_dir).unwrap();
    assert_eq!(state.read_generation().unwrap(), Some(generation));
    let fetches = h.server.hits("/cf/certs");

    // again within 30 s: answered at once with what is published, no fetch
    h.server
        .answer("/cf/certs", 200, &cloudflare_certs(&["cf-newer"]));
    let again = request_key_refresh(&h.run_dir(), h.cf_iss, timeout).unwrap();
    assert_eq!(again, generation);
    assert_eq!(h.server.hits("/cf/certs"), fetches);
    assert_eq!(h.kids(h.cf_iss), ["cf-b", "cf-new"]);

    // the other issuer is rate-limited on its own
    request_key_refresh(&h.run_dir(), &h.oidc_iss, timeout).unwrap();

    let e = request_key_refresh(&h.run_dir(), "https://unknown.example.com", timeout).unwrap_err();
    assert_eq!(e, "unknown issuer");
}

#[test]
fn a_refresh_that_cannot_fetch_says_unavailable() {
    let h = Host::new();
    sync(&h.config, &h.paths, false).unwrap();
    let shared = Arc::new(RwLock::new(h.config.clone()));
    let refresher = Arc::new(Refresher::new(shared, h.paths.clone()));
    control::spawn(&h.run_dir(), refresher).unwrap();
    h.server.answer("/cf/certs", 502, "bad gateway");
    let e = request_key_refresh(&h.run_dir(), h.cf_iss, Duration::from_secs(10)).unwrap_err();
    assert!(e.contains("HTTP 502"), "{e}");
    assert_eq!(
        h.kids(h.cf_iss),
        ["cf-a", "cf-b"],
        "published keys untouched"
    );
    // asked again at once: the same answer, no second fetch
    let fetches = h.server.hits("/cf/certs");
    let again = request_key_refresh(&h.run_dir(), h.cf_iss, Duration::from_secs(10)).unwrap_err();
    assert_eq!(again, e);
    assert_eq!(h.server.hits("/cf/certs"), fetches);
}

fn refresher(h: &Host) -> Refresher {
    Refresher::new(Arc::new(RwLock::new(h.config.clone())), h.paths.clone())
}

#[test]
fn refreshes_are_rate_limited_across_issuers() {
    let h = Host::new();
    sync(&h.config, &h.paths, false).unwrap();
    let r = refresher(&h);
    r.refresh(h.cf_iss).unwrap();
    let jwks = h.server.hits("/realms/zt/jwks");
    let e = r.refresh(&h.oidc_iss).unwrap_err();
    assert!(e.contains("rate limited"), "{e}");
    assert_eq!(h.server.hits("/realms/zt/jwks"), jwks, "no fetch");
}

#[test]
fn a_request_whose_caller_hung_up_is_skipped() {
    let h = Host::new();
    sync(&h.config, &h.paths, false).unwrap();
    let r = refresher(&h);
    let fetches = h.server.hits("/cf/certs");
    let (mut client, server) = std::os::unix::net::UnixStream::pair().unwrap();
    client
        .write_all(format!("refresh-keys {}\n", h.cf_iss).as_bytes())
        .unwrap();
    drop(client);
    control::handle(server, &r);
    assert_eq!(
        h.server.hits("/cf/certs"),
        fetches,
        "no fetch for a gone caller"
    );
    // a caller still there is served
    let (mut client, server) = std::os::unix::net::UnixStream::pair().unwrap();
    client
        .write_all(format!("refresh-keys {}\n", h.cf_iss).as_bytes())
        .unwrap();
    control::handle(server, &r);
    assert_eq!(h.server.hits("/cf/certs"), fetches + 1);
    let answer = zt_published::control::read_line(&mut client).unwrap();
    assert!(answer.starts_with("ok "), "{answer}");
}

#[test]
fn a_refresh_publishes_keys_only_and_never_reads_the_directory() {
    let h = Host::new();
    let first = sync(&h.config, &h.paths, false).unwrap();
    let public_before = std::fs::read(h.paths.state_dir.join("snapshot")).unwrap();
    let beat = 1_600_000_000u64;
    std::fs::write(h.paths.state_dir.join("synced"), beat.to_le_bytes()).unwrap();
    // the directory readable but changed: a refresh must not pick that up
    let dir = h.config.directory.path.clone().unwrap();
    let text = std::fs::read_to_string(&dir).unwrap();
    std::fs::write(&dir, text.replace("Alice", "Alicia")).unwrap();
    h.server
        .answer("/cf/certs", 200, &cloudflare_certs(&["cf-rotated"]));
    let generation = refresher(&h).refresh(h.cf_iss).unwrap();
    assert!(generation > first.generation);
    assert_eq!(h.kids(h.cf_iss), ["cf-rotated"]);
    let public_after = std::fs::read(h.paths.state_dir.join("snapshot")).unwrap();
    assert_eq!(
        public_after[32..],
        public_before[32..],
        "synced_at and users kept"
    );
    // ... with the local group grants (adm, gid 4) the sync gave sre's members
    let snap = zt_snapshot::Snapshot::parse(&public_after).unwrap();
    let alice = snap.user_by_name(b"alice").unwrap().unwrap();
    assert!(alice.groups.iter().any(|g| g == 4), "adm granted");
    let state = StateDir::open(&h.paths.state_dir).unwrap();
    assert_eq!(
        state.read_last_good_sync().unwrap(),
        Some(beat),
        "no heartbeat"
    );

    // the directory file gone: still a keys-only publish and an ok
    std::fs::remove_file(&dir).unwrap();
    h.server
        .answer("/cf/certs", 200, &cloudflare_certs(&["cf-again"]));
    let again = refresher(&h).refresh(h.cf_iss).unwrap();
    assert!(again > generation);
    assert_eq!(h.kids(h.cf_iss), ["cf-again"]);
}

#[test]
fn a_busy_state_lock_answers_with_what_is_published() {
    let h = Host::new();
    let first = sync(&h.config, &h.paths, false).unwrap();
    let state = StateDir::open(&h.paths.state_dir).unwrap();
    let held = state.lock().unwrap();
    let mut r = refresher(&h);
    r.lock_wait = Duration::from_millis(100);
    h.server
        .answer("/cf/certs", 200, &cloudflare_certs(&["cf-rotated"]));
    let start = std::time::Instant::now();
    assert_eq!(r.refresh(h.cf_iss).unwrap(), first.generation);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(h.kids(h.cf_iss), ["cf-a", "cf-b"]);
    drop(held);
}

#[test]
fn with_the_directory_down_a_refresh_publishes_the_keys_alone() {
    let h = Host::new();
    let first = sync(&h.config, &h.paths, false).unwrap();
    let state = StateDir::open(&h.paths.state_dir).unwrap();
    let public_before = std::fs::read(h.paths.state_dir.join("snapshot")).unwrap();
    let beat = 1_600_000_000u64;
    std::fs::write(h.paths.state_dir.join("synced"), beat.to_le_bytes()).unwrap();
    std::fs::remove_file(h.config.directory.path.as_ref().unwrap()).unwrap();
    assert!(sync(&h.config, &h.paths, false).is_err(), "directory down");

    let shared = Arc::new(RwLock::new(h.config.clone()));
    control::spawn(
        &h.run_dir(),
        Arc::new(Refresher::new(shared, h.paths.clone())),
    )
    .unwrap();
    h.server
        .answer("/cf/certs", 200, &cloudflare_certs(&["cf-rotated"]));
    let generation = request_key_refresh(&h.run_dir(), h.cf_iss, Duration::from_secs(10)).unwrap();
    assert!(generation > first.generation);
    assert_eq!(h.kids(h.cf_iss), ["cf-rotated"]);
    assert_eq!(
        h.kids(&h.oidc_iss),
        ["oidc-1"],
        "the other issuer keeps its keys"
    );
    // users and groups as they were, and no extension of max_offline
    let public_after = std::fs::read(h.paths.state_dir.join("snapshot")).unwrap();
    assert_eq!(
        public_after[40..],
        public_before[40..],
        "same content after the header stamps"
    );
    assert_eq!(
        public_after[32..40],
        public_before[32..40],
        "synced_at kept"
    );
    let bytes = h.private();
    let p = Private::parse(&bytes).unwrap();
    assert_eq!(
        p.synced_at(),
        zt_snapshot::Snapshot::parse(&public_before)
            .unwrap()
            .synced_at()
    );
    assert_eq!(
        state.read_last_good_sync().unwrap(),
        Some(beat),
        "no heartbeat"
    );
    assert_eq!(state.read_generation().unwrap(), Some(generation));
}
