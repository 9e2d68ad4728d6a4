//! systemd's readiness protocol (sd_notify), for the packaged unit's
//! `Type=notify`: one datagram of `KEY=value` lines to the socket named by
//! `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). Not worth a
//! dependency; without the variable (not under systemd) every call is a no-op.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (for example `READY=1\nSTATUS=synced`) to systemd, if it is
/// listening. Failures are logged and otherwise ignored: readiness reporting
/// must never stop the agent.
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&socket.to_string_lossy(), state) {
        tracing::debug!("sd_notify to {socket:?} failed: {e}");
    }
}

fn send(socket: &str, state: &str) -> std::io::Result<()> {
    let datagram = UnixDatagram::unbound()?;
    if let Some(name) = socket.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        datagram.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        datagram.send_to(state.as_bytes(), socket)?;
    }
    Ok(())
}

/// `STATUS=` text is one line: a directory error may carry newlines.
pub fn status_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reaches_a_path_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        send(path.to_str().expect("utf-8"), "READY=1\nSTATUS=ok").expect("send");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=ok");
    }

    #[test]
    fn reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("zt-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract name");
        let listener = UnixDatagram::bind_addr(&addr).expect("bind");
        send(&format!("@{name}"), "READY=1").expect("send");
        let mut buf = [0u8; 16];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn status_stays_on_one_line() {
        assert_eq!(status_line("a\nb\tc"), "a b c");
    }
}
