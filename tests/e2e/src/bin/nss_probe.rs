//! A small process that resolves users through glibc (and so through whatever
//! nsswitch.conf names), for the end-to-end tests:
//!
//!   nss-probe serve
//!       reads commands on stdin, one answer line each, and stays alive (a
//!       long-running process such as sshd): `pw NAME`, `uid UID`, `gr NAME`,
//!       `groups NAME` (getgrouplist, sorted gids).
//!       `pwbuf SIZE NAME`: one getpwnam_r with a SIZE-byte buffer, "rc=N found=B".
//!   nss-probe forks COUNT NAME
//!       prints the parent's `pw NAME` and `groups NAME` answers; then two
//!       threads look NAME up in a loop and a third enumerates both databases
//!       through glibc while the main thread forks COUNT children. Each child
//!       must get the parent's answers and find NAME (and its private group) in
//!       zt's own enumeration (called directly: see `ZtEnt`), or be told
//!       UNAVAIL/EAGAIN ("busy") when zt's cursor lock was held at fork. A
//!       child that hangs (a lock held across fork) is killed and reported.
//!       Prints "child failure BITS: N" per kind of failure, "enumerations
//!       rounds=R missing=M" for the enumerating thread and last
//!       "forks ok=N busy=B hung=H failed=F".
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

/// Every name setpwent/getpwent/endpwent lists (glibc's lock and zt's cursor).
fn enumerate_users() -> Vec<String> {
    let mut names = Vec::new();
    // SAFETY: the non-reentrant enumeration API; glibc serialises it with its
    // own lock, and the entry is copied out before the next call.
    unsafe {
        libc::setpwent();
        loop {
            let pw = libc::getpwent();
            if pw.is_null() {
                break;
            }
            names.push(field((*pw).pw_name));
        }
        libc::endpwent();
    }
    names
}

/// Every (name, gid) setgrent/getgrent/endgrent lists.
fn enumerate_groups() -> Vec<(String, u32)> {
    let mut groups = Vec::new();
    // SAFETY: as in enumerate_users.
    unsafe {
        libc::setgrent();
        loop {
            let gr = libc::getgrent();
            if gr.is_null() {
                break;
            }
            groups.push((field((*gr).gr_name), (*gr).gr_gid));
        }
        libc::endgrent();
    }
    groups
}

/// Whether one pass of both enumerations lists `name` and its primary group
/// (the user private group, gid `gid`): answers only zt can give.
fn enumeration_has(name: &str, gid: u32) -> (bool, bool) {
    let users = enumerate_users().iter().any(|n| n == name);
    let groups = enumerate_groups()
        .iter()
        .any(|(n, g)| n == name && *g == gid);
    (users, groups)
}

/// libnss_zt's own enumeration entry points, found with dlsym in the parent.
///
/// A child cannot enumerate through glibc here: glibc's getpwent/getgrent
/// lock is not reset at fork (glibc 2.36, `files` alone), so a child forked
/// while the enumerating thread holds it hangs in glibc before reaching any
/// module. So children call zt's functions directly, which is where zt's own
/// cursor lock sits (nss_zt/src/enumerate.rs): held by the enumerating thread
/// at fork, it must make the child answer UNAVAIL/EAGAIN, never hang.
#[derive(Clone, Copy)]
struct ZtEnt {
    setpwent: SetEnt,
    getpwent_r: GetEntR<libc::passwd>,
    endpwent: EndEnt,
    setgrent: SetEnt,
    getgrent_r: GetEntR<libc::group>,
    endgrent: EndEnt,
}

type SetEnt = unsafe extern "C" fn(libc::c_int) -> libc::c_int;
type GetEntR<T> =
    unsafe extern "C" fn(*mut T, *mut libc::c_char, libc::size_t, *mut libc::c_int) -> libc::c_int;
type EndEnt = unsafe extern "C" fn() -> libc::c_int;
type Sym = *mut libc::c_void;

const NSS_SUCCESS: libc::c_int = 1;
const NSS_NOTFOUND: libc::c_int = 0;
const NSS_UNAVAIL: libc::c_int = -1;

impl ZtEnt {
    /// The module glibc loaded (found through LD_LIBRARY_PATH, as glibc does).
    fn load() -> Option<ZtEnt> {
        // SAFETY: dlopen/dlsym with NUL-terminated names; each symbol is
        // transmuted to the signature nss_zt exports it with (nss_zt/src/lib.rs).
        unsafe {
            let h = libc::dlopen(c"libnss_zt.so.2".as_ptr(), libc::RTLD_NOW);
            if h.is_null() {
                return None;
            }
            let sym = |n: &CStr| {
                let p = libc::dlsym(h, n.as_ptr());
                (!p.is_null()).then_some(p)
            };
            Some(ZtEnt {
                setpwent: std::mem::transmute::<Sym, SetEnt>(sym(c"_nss_zt_setpwent")?),
                getpwent_r: std::mem::transmute::<Sym, GetEntR<libc::passwd>>(sym(
                    c"_nss_zt_getpwent_r",
                )?),
                endpwent: std::mem::transmute::<Sym, EndEnt>(sym(c"_nss_zt_endpwent")?),
                setgrent: std::mem::transmute::<Sym, SetEnt>(sym(c"_nss_zt_setgrent")?),
                getgrent_r: std::mem::transmute::<Sym, GetEntR<libc::group>>(sym(
                    c"_nss_zt_getgrent_r",
                )?),
                endgrent: std::mem::transmute::<Sym, EndEnt>(sym(c"_nss_zt_endgrent")?),
            })
        }
    }

    /// zt's users and (name, gid) groups, or Err(status, errno) for the first
    /// answer that is neither an entry nor the end.
    #[allow(clippy::type_complexity)]
    fn enumerate(&self) -> Result<(Vec<String>, Vec<(String, u32)>), (libc::c_int, libc::c_int)> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut errno: libc::c_int = 0;
        let mut users = Vec::new();
        let mut groups = Vec::new();
        // SAFETY: zt's exported functions with valid pointers to our own buffers.
        unsafe {
            let rc = (self.setpwent)(0);
            if rc != NSS_SUCCESS {
                return Err((rc, libc::EAGAIN));
            }
            loop {
                let mut pw: libc::passwd = std::mem::zeroed();
                match (self.getpwent_r)(&mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut errno) {
                    NSS_SUCCESS => users.push(field(pw.pw_name)),
                    NSS_NOTFOUND => break,
                    rc => return Err((rc, errno)),
                }
            }
            (self.endpwent)();
            let rc = (self.setgrent)(0);
            if rc != NSS_SUCCESS {
                return Err((rc, libc::EAGAIN));
            }
            loop {
                let mut gr: libc::group = std::mem::zeroed();
                match (self.getgrent_r)(&mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut errno) {
                    NSS_SUCCESS => groups.push((field(gr.gr_name), gr.gr_gid)),
                    NSS_NOTFOUND => break,
                    rc => return Err((rc, errno)),
                }
            }
            (self.endgrent)();
        }
        Ok((users, groups))
    }
}

/// Why a child failed, as bits of its exit status.
const CHILD_PW: i32 = 1;
const CHILD_GROUPS: i32 = 2;
const CHILD_ENUM_USERS: i32 = 4;
const CHILD_ENUM_GROUPS: i32 = 8;
/// zt's enumeration answered something other than entries or the lock case.
const CHILD_ENUM_ERROR: i32 = 16;
/// zt's enumeration answered UNAVAIL/EAGAIN: its cursor lock was held at fork
/// (the documented answer, counted as "busy", not a failure).
const CHILD_BUSY: i32 = 32;

fn forks(count: usize, name: &str) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

    let expect = (getpw(Some(name), None), grouplist(name));
    // the parent's own answer, for the test to check it is zt's
    println!("parent {}", expect.0);
    println!("parent {}", expect.1);
    let gid: u32 = expect
        .0
        .split(':')
        .nth(3)
        .and_then(|g| g.parse().ok())
        .unwrap_or(u32::MAX);

    let zt = ZtEnt::load();
    println!(
        "parent zt module {}",
        if zt.is_some() { "loaded" } else { "missing" }
    );

    let stop = Arc::new(AtomicBool::new(false));
    let mut threads: Vec<_> = (0..2)
        .map(|_| {
            let (stop, name) = (stop.clone(), name.to_string());
            std::thread::spawn(move || {
                while !stop.load(Relaxed) {
                    let _ = getpw(Some(&name), None);
                    let _ = grouplist(&name);
                }
            })
        })
        .collect();
    // a third thread enumerates both databases in a loop, so forks land while
    // it holds glibc's and zt's enumeration locks (nss_zt/src/enumerate.rs)
    let (rounds, misses) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    threads.push({
        let (stop, rounds, misses, name) = (
            stop.clone(),
            rounds.clone(),
            misses.clone(),
            name.to_string(),
        );
        std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                if enumeration_has(&name, gid) != (true, true) {
                    misses.fetch_add(1, Relaxed);
                }
                rounds.fetch_add(1, Relaxed);
            }
        })
    });
    let (mut ok, mut busy, mut hung, mut failed) = (0, 0, 0, 0);
    let mut reasons: BTreeMap<i32, usize> = BTreeMap::new();
    for _ in 0..count {
        // SAFETY: fork; the child only resolves names and calls _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut why = 0;
            if getpw(Some(name), None) != expect.0 {
                why |= CHILD_PW;
            }
            if grouplist(name) != expect.1 {
                why |= CHILD_GROUPS;
            }
            match zt.map(|z| z.enumerate()) {
                Some(Ok((users, groups))) => {
                    if !users.iter().any(|n| n == name) {
                        why |= CHILD_ENUM_USERS;
                    }
                    if !groups.iter().any(|(n, g)| n == name && *g == gid) {
                        why |= CHILD_ENUM_GROUPS;
                    }
                }
                Some(Err((NSS_UNAVAIL, libc::EAGAIN))) => why |= CHILD_BUSY,
                _ => why |= CHILD_ENUM_ERROR,
            }
            // SAFETY: _exit skips atexit handlers that could touch the parent's state.
            unsafe { libc::_exit(why) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                    ok += 1;
                } else if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == CHILD_BUSY {
                    busy += 1;
                } else {
                    failed += 1;
                    let why = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        -libc::WTERMSIG(status)
                    };
                    *reasons.entry(why).or_default() += 1;
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
    stop.store(true, Relaxed);
    for t in threads {
        let _ = t.join();
    }
    // exit bits: 1 getpwnam differs, 2 getgrouplist differs, 4 the user missing
    // from zt's getpwent, 8 its private group missing from zt's getgrent, 16 zt's
    // enumeration failed otherwise (or the module is missing), 32 busy; -N signal N
    for (why, n) in &reasons {
        println!("child failure {why}: {n}");
    }
    println!(
        "enumerations rounds={} missing={}",
        rounds.load(Relaxed),
        misses.load(Relaxed)
    );
    println!("forks ok={ok} busy={busy} hung={hung} failed={failed}");
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
                "usage: nss-probe serve | nss-probe forks COUNT NAME | nss-probe hammer THREADS SECONDS NAME ALLOWED_FILE"
            );
            std::process::exit(64);
        }
    }
}
