//! A small process that resolves users through glibc (and so through whatever
//! nsswitch.conf names), for the end-to-end tests:
//!
//!   nss-probe serve
//!       reads commands on stdin, one answer line each, and stays alive (a
//!       long-running process such as sshd): `pw NAME`, `uid UID`, `gr NAME`,
//!       `groups NAME` (getgrouplist, sorted gids).
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

/// "pw <line>", "pw notfound" or "pw error <errno>".
fn getpw(name: Option<&str>, uid: Option<u32>) -> String {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: zeroed passwd is a valid all-null struct; glibc fills it.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut res: *mut libc::passwd = std::ptr::null_mut();
        let rc = match (name, uid) {
            (Some(n), _) => {
                let c = CString::new(n).unwrap_or_default();
                // SAFETY: valid pointers to our own buffers for the duration of the call.
                unsafe {
                    libc::getpwnam_r(
                        c.as_ptr(),
                        &mut pw,
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        &mut res,
                    )
                }
            }
            // SAFETY: as above.
            (None, Some(u)) => unsafe {
                libc::getpwuid_r(u, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut res)
            },
            _ => return "pw error usage".into(),
        };
        if rc == libc::ERANGE {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        return match (rc, res.is_null()) {
            (0, false) => format!("pw {}", passwd_line(&pw)),
            (0, true) => "pw notfound".into(),
            (e, _) => format!("pw error {e}"),
        };
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

fn serve() {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines().map_while(Result::ok) {
        let mut it = line.splitn(2, ' ');
        let answer = match (it.next(), it.next()) {
            (Some("pw"), Some(n)) => getpw(Some(n), None),
            (Some("uid"), Some(u)) => getpw(None, u.parse().ok()),
            (Some("gr"), Some(n)) => getgr(n),
            (Some("groups"), Some(n)) => grouplist(n),
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
