//! `zt-agent run` under systemd's `Type=notify` (packaging/debian/zt-agent.service):
//! READY=1 as soon as the control socket is up, then each sync's outcome in
//! STATUS=, which on a fresh install (the directory file not written yet)
//! says "not configured". Runs the real binary with $NOTIFY_SOCKET pointing
//! at a datagram socket of the test, in a private mount namespace with a
//! tmpfs over /etc/sudoers.d (the agent's sudo step must never reach the
//! machine's). Needs root (unshare -m), as the end-to-end tests do.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn run_reports_ready_then_not_configured() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[directory]\nkind = \"file\"\npath = \"{}\"\n\n[users]\ndomains = [\"example.com\"]\n",
            tmp.path().join("directory.json").display()
        ),
    )
    .expect("write config");
    let socket_path = tmp.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");

    let mut agent = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs tmpfs /etc/sudoers.d && exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_zt-agent"))
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .arg("--run-dir")
        .arg(tmp.path().join("run"))
        .arg("run")
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare zt-agent run");

    let mut buf = [0u8; 4096];
    let mut next = || {
        let n = socket.recv(&mut buf).expect("a notification within 20 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = next();
    let second = next();
    let _ = agent.kill();
    let _ = agent.wait();

    assert_eq!(first, "READY=1\nSTATUS=first sync");
    assert!(
        second.starts_with("STATUS=not configured: ") && second.contains("directory.json"),
        "{second:?}"
    );
    assert!(!second.contains('\n'), "STATUS is one line: {second:?}");
}
