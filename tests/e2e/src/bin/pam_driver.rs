//! pam-driver: drives the real Linux-PAM (libpam) like an application would, with its
//! own conversation function, so a module can be fed answers of any length (pamtester
//! stops at 4,095 bytes of stdin, sshd at 1,024, pam_exec at 511).
//!
//! ```text
//! pam-driver SERVICE USER [--rhost H] [--tty T] [--authtok] OP...   < answers
//! OP: authenticate | acct_mgmt | open_session | close_session | setcred
//! ```
//! stdin is read whole and split on NUL bytes into answers: the n-th prompt
//! (echo on or off) gets the n-th answer, the last answer repeats. No NUL: one
//! answer for every prompt, byte for byte (no newline is stripped). `--authtok`
//! also sets PAM_AUTHTOK to the first answer before the operations (for
//! `use_first_pass`/`try_first_pass` stacks).
//!
//! stdout: one line per conversation message (`prompt-echo-off: TEXT`,
//! `prompt-echo-on: TEXT`, `info: TEXT`, `error: TEXT`), one line per operation
//! (`OP: CODE MESSAGE`), then `env: NAME=VALUE` for the PAM environment after
//! the last operation. Exit status: 0 if every operation returned PAM_SUCCESS,
//! else the code of the first one that did not (the rest are not run).

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io::Read;

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = unsafe extern "C" fn(
    c_int,
    *mut *const PamMessage,
    *mut *mut PamResponse,
    *mut c_void,
) -> c_int;

#[repr(C)]
struct PamConv {
    conv: ConvFn,
    appdata_ptr: *mut c_void,
}

const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;
const PAM_TTY: c_int = 3;
const PAM_RHOST: c_int = 4;
const PAM_AUTHTOK: c_int = 6;
const PAM_RUSER: c_int = 8;

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_start(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        pamh: *mut *mut c_void,
    ) -> c_int;
    fn pam_end(pamh: *mut c_void, status: c_int) -> c_int;
    fn pam_authenticate(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_open_session(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_close_session(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_setcred(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_set_item(pamh: *mut c_void, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_strerror(pamh: *mut c_void, errnum: c_int) -> *const c_char;
    fn pam_getenvlist(pamh: *mut c_void) -> *mut *mut c_char;
}

struct Answers {
    answers: Vec<Vec<u8>>,
    next: usize,
}

impl Answers {
    fn take(&mut self) -> &[u8] {
        let i = self.next.min(self.answers.len() - 1);
        self.next += 1;
        &self.answers[i]
    }
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\n', "\\n")
}

/// The conversation: Linux-PAM passes an array of pointers to messages.
unsafe extern "C" fn conv(
    n: c_int,
    msgs: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    let Ok(n) = usize::try_from(n) else {
        return PAM_CONV_ERR;
    };
    if n == 0 || msgs.is_null() || resp.is_null() || appdata.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: appdata is the &mut Answers given to pam_start, alive for the whole run.
    let answers = unsafe { &mut *(appdata as *mut Answers) };
    // SAFETY: calloc of n zeroed responses; libpam frees them (and each resp) with free().
    let out = unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) } as *mut PamResponse;
    if out.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..n {
        // SAFETY: libpam hands n valid message pointers.
        let m = unsafe { &**msgs.add(i) };
        let text = if m.msg.is_null() {
            String::new()
        } else {
            // SAFETY: a NUL-terminated message from the module.
            show(unsafe { CStr::from_ptr(m.msg) }.to_bytes())
        };
        match m.msg_style {
            PAM_PROMPT_ECHO_OFF | PAM_PROMPT_ECHO_ON => {
                let kind = if m.msg_style == PAM_PROMPT_ECHO_OFF {
                    "prompt-echo-off"
                } else {
                    "prompt-echo-on"
                };
                println!("{kind}: {text}");
                let a = answers.take();
                // SAFETY: malloc of len+1 bytes, filled and NUL-terminated below.
                let p = unsafe { libc::malloc(a.len() + 1) } as *mut u8;
                if p.is_null() {
                    return PAM_BUF_ERR;
                }
                // SAFETY: p has room for a.len() + 1 bytes; out has n entries.
                unsafe {
                    std::ptr::copy_nonoverlapping(a.as_ptr(), p, a.len());
                    *p.add(a.len()) = 0;
                    (*out.add(i)).resp = p as *mut c_char;
                }
            }
            PAM_ERROR_MSG => println!("error: {text}"),
            PAM_TEXT_INFO => println!("info: {text}"),
            other => println!("message-style-{other}: {text}"),
        }
    }
    // SAFETY: resp is libpam's out pointer.
    unsafe { *resp = out };
    PAM_SUCCESS
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!(
            "usage: pam-driver SERVICE USER [--rhost H] [--tty T] [--authtok] OP... < answers"
        );
        std::process::exit(2);
    }
    let service = CString::new(args[0].as_str()).expect("service");
    let user = CString::new(args[1].as_str()).expect("user");
    let mut rhost = None;
    let mut tty = None;
    let mut set_authtok = false;
    let mut ops = Vec::new();
    let mut it = args[2..].iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rhost" => rhost = it.next().cloned(),
            "--tty" => tty = it.next().cloned(),
            "--authtok" => set_authtok = true,
            op => ops.push(op.to_string()),
        }
    }
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).expect("stdin");
    let mut answers = Answers {
        answers: input.split(|b| *b == 0).map(<[u8]>::to_vec).collect(),
        next: 0,
    };
    let first = CString::new(answers.answers[0].clone()).expect("no NUL");
    let c = PamConv {
        conv,
        appdata_ptr: &mut answers as *mut Answers as *mut c_void,
    };
    let mut h: *mut c_void = std::ptr::null_mut();
    // SAFETY: valid C strings and conversation; h receives the handle.
    let rc = unsafe { pam_start(service.as_ptr(), user.as_ptr(), &c, &mut h) };
    if rc != PAM_SUCCESS {
        println!("pam_start: {rc}");
        std::process::exit(rc);
    }
    let set = |item: c_int, v: &str| {
        let v = CString::new(v).expect("item");
        // SAFETY: libpam copies the string.
        unsafe { pam_set_item(h, item, v.as_ptr() as *const c_void) };
    };
    set(PAM_RUSER, "zt-e2e");
    if let Some(r) = &rhost {
        set(PAM_RHOST, r);
    }
    if let Some(t) = &tty {
        set(PAM_TTY, t);
    }
    if set_authtok {
        // SAFETY: libpam copies the string.
        unsafe { pam_set_item(h, PAM_AUTHTOK, first.as_ptr() as *const c_void) };
    }
    let mut status = PAM_SUCCESS;
    for op in &ops {
        // SAFETY: h is a live handle.
        let rc = unsafe {
            match op.as_str() {
                "authenticate" => pam_authenticate(h, 0),
                "acct_mgmt" => pam_acct_mgmt(h, 0),
                "open_session" => pam_open_session(h, 0),
                "close_session" => pam_close_session(h, 0),
                "setcred" => pam_setcred(h, 2), // PAM_ESTABLISH_CRED
                other => {
                    eprintln!("unknown operation {other}");
                    std::process::exit(2);
                }
            }
        };
        // SAFETY: pam_strerror returns a static string.
        let msg = unsafe { CStr::from_ptr(pam_strerror(h, rc)) }.to_string_lossy();
        println!("{op}: {rc} {msg}");
        if rc != PAM_SUCCESS {
            status = rc;
            break;
        }
    }
    // SAFETY: h is live; the list and its strings are ours to free.
    unsafe {
        let env = pam_getenvlist(h);
        if !env.is_null() {
            let mut p = env;
            while !(*p).is_null() {
                println!("env: {}", CStr::from_ptr(*p).to_string_lossy());
                libc::free(*p as *mut c_void);
                p = p.add(1);
            }
            libc::free(env as *mut c_void);
        }
        pam_end(h, status);
    }
    std::process::exit(status);
}
