//! Calls getpwnam_r in a loop: for strace (a warm lookup makes no system call
//! of its own), for benchmarks, and for watching a long-running process pick up
//! a newly published snapshot.
//!
//!   lookup_loop NAME [COUNT] [libc|direct] [INTERVAL_MS]
//!
//! `libc` goes through glibc (nsswitch.conf, then every listed module);
//! `direct` calls this crate's `_nss_zt_getpwnam_r` in-process, which is what
//! glibc reaches after its own work. With INTERVAL_MS it sleeps between calls
//! and prints a line whenever the answer changes.

use std::ffi::{CStr, CString, c_char, c_int};
use std::time::{Duration, Instant};

/// One lookup. Ok(true) = found (then `pw` is filled), Ok(false) = not found,
/// Err(errno) = the source is unavailable. Allocation-free, for benchmarks.
fn lookup(direct: bool, name: &CStr, pw: &mut libc::passwd, buf: &mut [u8]) -> Result<bool, c_int> {
    if direct {
        let mut errno = 0;
        // SAFETY: name is a C string; pw, buf and errno are live locals.
        let status = unsafe {
            nss_zt::_nss_zt_getpwnam_r(
                name.as_ptr(),
                pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut errno,
            )
        };
        return match status {
            nss_zt::NssStatus::Success => Ok(true),
            nss_zt::NssStatus::NotFound => Ok(false),
            _ => Err(errno),
        };
    }
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: name is a C string; pw, buf and result are live locals.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            pw,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    match (rc, result.is_null()) {
        (0, false) => Ok(true),
        (0, true) => Ok(false),
        (e, _) => Err(e),
    }
}

fn describe(pw: &libc::passwd) -> (String, u32) {
    // SAFETY: on success pw_name points to a C string in our buffer.
    let name = unsafe { CStr::from_ptr(pw.pw_name as *const c_char) };
    (name.to_string_lossy().into_owned(), pw.pw_uid)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = CString::new(
        args.first()
            .ok_or("usage: lookup_loop NAME [COUNT] [libc|direct] [INTERVAL_MS]")?
            .as_str(),
    )?;
    let count: u64 = args.get(1).map(|c| c.parse()).transpose()?.unwrap_or(2);
    let direct = match args.get(2).map(String::as_str) {
        None | Some("libc") => false,
        Some("direct") => true,
        Some(other) => return Err(format!("unknown mode {other:?}").into()),
    };
    let interval = args
        .get(3)
        .map(|i| i.parse())
        .transpose()?
        .map(Duration::from_millis);
    let mut buf = vec![0u8; 1024];

    // SAFETY: an all-zero passwd is a valid value (null pointers, zero ids).
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut last = None;
    let started = Instant::now();
    let mut found = 0u64;
    for i in 0..count {
        let answer = lookup(direct, &name, &mut pw, &mut buf);
        found += u64::from(answer == Ok(true));
        if interval.is_some() || i + 1 == count {
            let shown = answer.map(|ok| ok.then(|| describe(&pw)));
            if interval.is_some() && last.as_ref() != Some(&shown) {
                println!(
                    "{:>8.3}s call {i}: {shown:?}",
                    started.elapsed().as_secs_f64()
                );
            }
            last = Some(shown);
        }
        if let Some(d) = interval {
            std::thread::sleep(d);
        }
    }
    let elapsed = started.elapsed();
    if interval.is_none() {
        println!(
            "{} x getpwnam_r({:?}) via {}: last {:?}, found {found}, {:.0} ns/call",
            count,
            name,
            if direct { "nss_zt directly" } else { "glibc" },
            last,
            elapsed.as_nanos() as f64 / count.max(1) as f64
        );
    }
    Ok(())
}
