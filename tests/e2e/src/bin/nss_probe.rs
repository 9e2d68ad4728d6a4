//! A small process that resolves users through glibc (and so through whatever
//! nsswitch.conf names), for the end-to-end tests:
//!
//!   nss-probe serve
//!       reads commands on stdin, one answer line each, and stays alive (a
//!       long-running process such as sshd): `pw NAME`, `uid UID`, `gr NAME`,
//!       `groups NAME` (getgrouplist, sorted gids).
//!       `pwbuf SIZE NAME`: one getpwnam_r with a SIZE-byte buffer, "rc=N found=B".
//!   nss-probe forks COUNT NAME
//!       two threads look NAME up in a loop while the main thread forks COUNT
//!       children; each child resolves NAME, its groups and enumerates, then
//!       exits. A child that hangs (a lock held across fork) is killed and
//!       reported. Prints "forks ok=N hung=H failed=F".
//!   nss-probe hammer THREADS SECONDS NAME ALLOWED_FILE
//!       THREADS threads call getpwnam_r and getgrouplist in a loop; every answer
//!       must be one of the lines of ALLOWED_FILE. Prints a tally per answer.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::io::BufRead;
use std::time::{Duration, Instant};

fn field(p: *const libc::c_char) -> String {
    if p.is_null() {
        return "(null)".into();
    }
    // SAFETY: glibc set this to a NUL-terminated string inside our buffer.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn passwd_line(pw: &libc::passwd) -> String {
    format!(
        "{}:{}:{}:{}:{}:{}:{}",
        field(pw.pw_name),
        field(pw.pw_passwd),
        pw.pw_uid,
        pw.pw_gid,
        field(pw.pw_gecos),
        field(pw.pw_dir),
        field(pw.pw_shell)
    )
}

/// Who to look up in the passwd database.
#[derive(Clone, Copy)]
enum Key<'a> {
    Name(&'a str),
    Uid(u32),
}

/// One getpwnam_r / getpwuid_r into `buf`: glibc's return code and the entry found.
fn getpw_once(key: Key<'_>, buf: &mut [u8]) -> (i32, Option<String>) {
    // SAFETY: zeroed passwd is a valid all-null struct; glibc fills it.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut res: *mut libc::passwd = std::ptr::null_mut();
    let (ptr, len) = (buf.as_mut_ptr().cast(), buf.len());
    let rc = match key {
        Key::Name(n) => {
            let c = CString::new(n).unwrap_or_default();
            // SAFETY: valid pointers to our own buffers for the duration of the call.
            unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, ptr, len, &mut res) }
        }
        // SAFETY: as above.
        Key::Uid(u) => unsafe { libc::getpwuid_r(u, &mut pw, ptr, len, &mut res) },
    };
    (rc, (!res.is_null()).then(|| passwd_line(&pw)))
}

/// "pw <line>", "pw notfound" or "pw error <errno>", growing the buffer on ERANGE.
fn getpw(name: Option<&str>, uid: Option<u32>) -> String {
    let key = match (name, uid) {
        (Some(n), _) => Key::Name(n),
        (None, Some(u)) => Key::Uid(u),
        _ => return "pw error usage".into(),
    };
    let mut buf = vec![0u8; 256];
    loop {
        match getpw_once(key, &mut buf) {
            (libc::ERANGE, _) => buf.resize(buf.len() * 2, 0),
            (0, Some(line)) => return format!("pw {line}"),
            (0, None) => return "pw notfound".into(),
            (e, _) => return format!("pw error {e}"),
        }
    }
}

fn getgr(name: &str) -> String {
    let mut buf = vec![0u8; 64];
    let c = CString::new(name).unwrap_or_default();
    loop {
        // SAFETY: as in getpw.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut res: *mut libc::group = std::ptr::null_mut();
        // SAFETY: valid pointers to our own buffers.
        let rc = unsafe {
            libc::getgrnam_r(
                c.as_ptr(),
                &mut gr,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut res,
            )
        };
        if rc == libc::ERANGE {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return format!("gr error {rc}");
        }
        if res.is_null() {
            return "gr notfound".into();
        }
        let mut members = Vec::new();
        let mut p = gr.gr_mem;
        // SAFETY: gr_mem is a NULL-terminated array of C strings inside buf.
        unsafe {
            while !(*p).is_null() {
                members.push(field(*p));
                p = p.add(1);
            }
        }
        return format!(
            "gr {}:{}:{}:{}",
            field(gr.gr_name),
            field(gr.gr_passwd),
            gr.gr_gid,
            members.join(",")
        );
    }
}

fn grouplist(name: &str) -> String {
    let c = CString::new(name).unwrap_or_default();
    let base = match getpw(Some(name), None).strip_prefix("pw ") {
        Some(line) if line.contains(':') => line
            .split(':')
            .nth(3)
            .and_then(|g| g.parse::<u32>().ok())
            .unwrap_or(0),
        _ => return "groups notfound".into(),
    };
    let mut n: libc::c_int = 8;
    loop {
        let mut gids = vec![0 as libc::gid_t; n as usize];
        let cap = n;
        // SAFETY: gids has room for n entries; glibc writes at most n and updates n.
        let rc = unsafe { libc::getgrouplist(c.as_ptr(), base, gids.as_mut_ptr(), &mut n) };
        if rc < 0 {
            if n <= cap {
                n = cap * 2;
            }
            continue;
        }
        gids.truncate(n as usize);
        gids.sort_unstable();
        return format!(
            "groups {}",
            gids.iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
}

/// One getpwnam_r with exactly `size` bytes of buffer: glibc's ERANGE contract.
fn pw_with_buffer(size: usize, name: &str) -> String {
    let (rc, found) = getpw_once(Key::Name(name), &mut vec![0u8; size]);
    format!("rc={rc} found={}", found.is_some())
}

fn enumerate_count() -> usize {
    let mut n = 0;
    // SAFETY: the non-reentrant enumeration API, used from one thread here.
    unsafe {
        libc::setpwent();
        while !libc::getpwent().is_null() {
            n += 1;
        }
        libc::endpwent();
    }
    n
}

fn forks(count: usize, name: &str) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (stop, name) = (stop.clone(), name.to_string());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = getpw(Some(&name), None);
                    let _ = grouplist(&name);
                }
            })
        })
        .collect();
    let expect = (getpw(Some(name), None), grouplist(name));
    let (mut ok, mut hung, mut failed) = (0, 0, 0);
    for _ in 0..count {
        // SAFETY: fork; the child only resolves names and calls _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let good =
                (getpw(Some(name), None), grouplist(name)) == expect && enumerate_count() > 0;
            // SAFETY: _exit skips atexit handlers that could touch the parent's state.
            unsafe { libc::_exit(if good { 0 } else { 1 }) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                    ok += 1;
                } else {
                    failed += 1;
                }
                break;
            }
            if Instant::now() > deadline {
                // SAFETY: our own child, by pid.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                hung += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    println!("forks ok={ok} hung={hung} failed={failed}");
}

fn serve() {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines().map_while(Result::ok) {
        let mut it = line.splitn(2, ' ');
        let answer = match (it.next(), it.next()) {
            (Some("pw"), Some(n)) => getpw(Some(n), None),
            (Some("uid"), Some(u)) => getpw(None, u.parse().ok()),
            (Some("gr"), Some(n)) => getgr(n),
            (Some("groups"), Some(n)) => grouplist(n),
            (Some("pwbuf"), Some(rest)) => match rest.split_once(' ') {
                Some((size, n)) => pw_with_buffer(size.parse().unwrap_or(0), n),
                None => "error usage: pwbuf SIZE NAME".into(),
            },
            _ => "error unknown command".into(),
        };
        println!("{answer}");
    }
}

fn hammer(threads: usize, seconds: u64, name: String, allowed_file: &str) {
    let allowed: Vec<String> = std::fs::read_to_string(allowed_file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let name = name.clone();
            std::thread::spawn(move || {
                let mut tally: BTreeMap<String, u64> = BTreeMap::new();
                while Instant::now() < deadline {
                    *tally.entry(getpw(Some(&name), None)).or_default() += 1;
                    *tally.entry(grouplist(&name)).or_default() += 1;
                }
                tally
            })
        })
        .collect();
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for h in handles {
        if let Ok(t) = h.join() {
            for (k, v) in t {
                *total.entry(k).or_default() += v;
            }
        }
    }
    for (answer, count) in &total {
        let verdict = if allowed.contains(answer) {
            "ok"
        } else {
            "WRONG"
        };
        println!("{verdict} {count} {answer}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(),
        Some("forks") if args.len() == 4 => forks(args[2].parse().unwrap_or(20), &args[3]),
        Some("hammer") if args.len() == 6 => hammer(
            args[2].parse().unwrap_or(2),
            args[3].parse().unwrap_or(5),
            args[4].clone(),
            &args[5],
        ),
        _ => {
            eprintln!(
                "usage: nss-probe serve | nss-probe hammer THREADS SECONDS NAME ALLOWED_FILE"
            );
            std::process::exit(64);
        }
    }
}
