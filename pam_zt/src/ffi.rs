//! A hand-written, minimal binding to Linux-PAM's module API (libpam).
//!
//! Why not a bindings crate: `pam-bindings` (0.3) is alive, but its
//! `pam_hooks!` macro generates the `extern "C"` entry points itself, so
//! they would not run under zt-published's guard (silent panic hook, one
//! status table); and this module runs inside sshd, sudo and su, where every
//! dependency is code in a root process. We need four functions and three
//! structs from `<security/pam_modules.h>` and `<security/_pam_types.h>`;
//! their ABI has not changed in twenty years. The values are pinned by
//! tests in `status` and here.

use std::ffi::{CStr, CString, c_char, c_int, c_void};

use crate::handler::{Item, PamHandler, Secret};
use crate::status::{Failure, code};

/// `pam_handle_t`: opaque.
#[repr(C)]
pub struct PamHandleT {
    _private: [u8; 0],
}

/// Overwrites the NUL-terminated string an application malloc'ed for an
/// answer, then frees it. Volatile writes: a plain memset right before
/// free() is a dead store the optimiser removes (seen in a release build).
///
/// # Safety
/// `s` is a valid, malloc'ed, NUL-terminated string that nothing else uses.
unsafe fn wipe_and_free(s: *mut c_char) {
    // SAFETY: per this function's contract; each write stays within the
    // string's `strlen` bytes.
    unsafe {
        let len = libc::strlen(s);
        for i in 0..len {
            std::ptr::write_volatile(s.add(i), 0);
        }
        libc::free(s.cast());
    }
}

/// `struct pam_message`.
#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

/// `struct pam_response`.
#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = unsafe extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

/// `struct pam_conv`.
#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

pub mod item {
    use std::ffi::c_int;
    pub const SERVICE: c_int = 1;
    pub const USER: c_int = 2;
    pub const TTY: c_int = 3;
    pub const RHOST: c_int = 4;
    pub const RUSER: c_int = 8;
    pub const CONV: c_int = 5;
    pub const AUTHTOK: c_int = 6;
}

const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_get_user(
        pamh: *mut PamHandleT,
        user: *mut *const c_char,
        prompt: *const c_char,
    ) -> c_int;
    fn pam_get_item(pamh: *const PamHandleT, item_type: c_int, item: *mut *const c_void) -> c_int;
    fn pam_set_item(pamh: *mut PamHandleT, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_getenv(pamh: *mut PamHandleT, name: *const c_char) -> *const c_char;
    fn pam_set_data(
        pamh: *mut PamHandleT,
        module_data_name: *const c_char,
        data: *mut c_void,
        cleanup: Option<CleanupFn>,
    ) -> c_int;
    fn pam_get_data(
        pamh: *const PamHandleT,
        module_data_name: *const c_char,
        data: *mut *const c_void,
    ) -> c_int;
}

/// `void (*cleanup)(pam_handle_t *, void *data, int error_status)`.
type CleanupFn = unsafe extern "C" fn(*mut PamHandleT, *mut c_void, c_int);

/// Frees a value stored by `set_data` (a `Box<Vec<u8>>`). libpam calls it
/// from pam_end or when the name is set again, outside any `pam_sm_*`
/// entry, so it carries its own guard: a panic must neither unwind into
/// libpam (an abort of sshd) nor print anything.
///
/// # Safety
/// `data` is null or a pointer made by `Box::into_raw` in `set_data`, and
/// libpam calls this once per stored value.
pub unsafe extern "C" fn free_data(_pamh: *mut PamHandleT, data: *mut c_void, _status: c_int) {
    let _ = zt_published::guard(|| {
        if !data.is_null() {
            // SAFETY: per this function's contract, we own the box now.
            drop(unsafe { Box::from_raw(data.cast::<Vec<u8>>()) });
        }
        Ok::<(), Failure>(())
    });
}

/// The module arguments as strings (non-UTF-8 ones become a config error).
///
/// # Safety
/// `argv` must be null or point to `argc` valid C strings.
pub unsafe fn args<'a>(argc: c_int, argv: *const *const c_char) -> Result<Vec<&'a str>, Failure> {
    let mut out = Vec::new();
    if argv.is_null() {
        return Ok(out);
    }
    for i in 0..usize::try_from(argc).unwrap_or(0) {
        // SAFETY: argv has argc entries per this function's contract.
        let p = unsafe { *argv.add(i) };
        if p.is_null() {
            continue;
        }
        // SAFETY: a valid C string per the contract.
        let s = unsafe { CStr::from_ptr(p) }
            .to_str()
            .map_err(|_| Failure::Config("module argument is not UTF-8".into()))?;
        out.push(s);
    }
    Ok(out)
}

/// The libpam handle behind `PamHandler`.
pub struct Handle {
    pamh: *mut PamHandleT,
}

impl Handle {
    /// # Safety
    /// `pamh` must be the handle libpam passed to the current `pam_sm_*`
    /// call, used only during that call.
    pub unsafe fn new(pamh: *mut PamHandleT) -> Result<Handle, Failure> {
        if pamh.is_null() {
            return Err(Failure::System("null PAM handle".into()));
        }
        Ok(Handle { pamh })
    }

    /// One call of the application's conversation with `msgs` (style,
    /// text): the answer to each, or why there is none. Every answer the
    /// application allocated is wiped and freed here (someone may type a
    /// password at any prompt); the copies live in `Secret`s, wiped on drop.
    fn converse(&self, msgs: &[(c_int, &CStr)]) -> Result<Vec<Option<Secret>>, Failure> {
        let conv = self.raw_item(item::CONV)?.cast::<PamConv>();
        if conv.is_null() {
            return Err(Failure::Conversation("no conversation function"));
        }
        // SAFETY: PAM_CONV is a `struct pam_conv` owned by libpam.
        let (Some(f), appdata) = (unsafe { (*conv).conv }, unsafe { (*conv).appdata_ptr }) else {
            return Err(Failure::Conversation("no conversation function"));
        };
        let messages: Vec<PamMessage> = msgs
            .iter()
            .map(|(style, text)| PamMessage {
                msg_style: *style,
                msg: text.as_ptr(),
            })
            .collect();
        // Linux-PAM reads `msg` as an array of pointers (Solaris as a
        // pointer to an array): with one pointer per message both agree.
        let mut ptrs: Vec<*const PamMessage> = messages.iter().map(std::ptr::from_ref).collect();
        let count = c_int::try_from(ptrs.len())
            .map_err(|_| Failure::System("too many conversation messages".into()))?;
        let mut resp: *mut PamResponse = std::ptr::null_mut();
        // SAFETY: `count` valid messages whose texts outlive the call; the
        // application allocates `resp` as an array of `count` pam_response
        // with malloc and hands it (and its strings) to us.
        let r = unsafe { f(count, ptrs.as_mut_ptr(), &mut resp, appdata) };
        if resp.is_null() {
            return Err(Failure::Conversation("conversation gave no answer"));
        }
        // SAFETY: resp points to `count` malloc'ed pam_response; each
        // non-null resp string is a malloc'ed C string. All are freed here,
        // each once.
        let answers = unsafe {
            let answers = (0..ptrs.len())
                .map(|i| {
                    let s = (*resp.add(i)).resp;
                    (!s.is_null()).then(|| {
                        let v = CStr::from_ptr(s).to_bytes().to_vec();
                        wipe_and_free(s);
                        Secret::new(v)
                    })
                })
                .collect();
            libc::free(resp.cast());
            answers
        };
        if r != code::SUCCESS {
            return Err(Failure::Conversation("conversation failed"));
        }
        Ok(answers)
    }

    fn raw_item(&self, which: c_int) -> Result<*const c_void, Failure> {
        let mut p: *const c_void = std::ptr::null();
        // SAFETY: a live handle (see `new`), a valid out pointer.
        let r = unsafe { pam_get_item(self.pamh, which, &mut p) };
        if r != code::SUCCESS {
            return Err(Failure::System(format!(
                "pam_get_item({which}) failed: {r}"
            )));
        }
        Ok(p)
    }
}

fn copy_c(p: *const c_void) -> Option<Vec<u8>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: string items are NUL-terminated strings owned by libpam.
    Some(unsafe { CStr::from_ptr(p.cast()) }.to_bytes().to_vec())
}

impl PamHandler for Handle {
    fn user(&mut self) -> Result<Vec<u8>, Failure> {
        let mut u: *const c_char = std::ptr::null();
        // SAFETY: a live handle, a valid out pointer, null prompt = default.
        let r = unsafe { pam_get_user(self.pamh, &mut u, std::ptr::null()) };
        if r != code::SUCCESS || u.is_null() {
            return Err(Failure::Conversation("no user name"));
        }
        // SAFETY: libpam returns a NUL-terminated string it owns.
        Ok(unsafe { CStr::from_ptr(u) }.to_bytes().to_vec())
    }

    fn item(&self, item: Item) -> Result<Option<Vec<u8>>, Failure> {
        let which = match item {
            Item::Service => item::SERVICE,
            Item::Tty => item::TTY,
            Item::Rhost => item::RHOST,
            Item::Ruser => item::RUSER,
            Item::Authtok => item::AUTHTOK,
        };
        Ok(copy_c(self.raw_item(which)?))
    }

    fn item_authtok(&self) -> Result<Option<Secret>, Failure> {
        Ok(copy_c(self.raw_item(item::AUTHTOK)?).map(Secret::new))
    }

    fn set_authtok(&mut self, answer: &Secret) -> Result<(), Failure> {
        // Checked first: CString::new's error would carry (and drop unwiped)
        // a copy of the secret.
        if answer.bytes().contains(&0) {
            return Err(Failure::Refused("answer contains a NUL byte".into()));
        }
        let c = CString::new(answer.bytes().to_vec())
            .map_err(|_| Failure::Refused("answer contains a NUL byte".into()))?;
        // SAFETY: a live handle; libpam copies the string.
        let r = unsafe { pam_set_item(self.pamh, item::AUTHTOK, c.as_ptr().cast()) };
        // Wipe our copy; libpam keeps (and later wipes) its own.
        let mut bytes = c.into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        drop(Secret::new(bytes));
        if r != code::SUCCESS {
            return Err(Failure::System(format!(
                "pam_set_item(PAM_AUTHTOK) failed: {r}"
            )));
        }
        Ok(())
    }

    fn prompt_secret(&mut self, prompt: &str) -> Result<Secret, Failure> {
        let text = CString::new(prompt).map_err(|_| Failure::Config("NUL in prompt".into()))?;
        self.converse(&[(PAM_PROMPT_ECHO_OFF, &text)])?
            .pop()
            .flatten()
            .ok_or(Failure::Conversation("conversation gave no answer"))
    }

    fn info_prompt(&mut self, info: &str, prompt: &str) -> Result<Option<Secret>, Failure> {
        let info = CString::new(info).map_err(|_| Failure::System("NUL in text".into()))?;
        let prompt = CString::new(prompt).map_err(|_| Failure::System("NUL in prompt".into()))?;
        // NULL: the application gave no answer at all (python-pam's
        // conversation does that for echo-on prompts); Enter is "".
        Ok(self
            .converse(&[(PAM_TEXT_INFO, &info), (PAM_PROMPT_ECHO_ON, &prompt)])?
            .pop()
            .flatten())
    }

    fn error_msg(&mut self, text: &str) {
        if let Ok(text) = CString::new(text) {
            // best effort: an application that shows nothing is no failure
            let _ = self.converse(&[(PAM_ERROR_MSG, &text)]);
        }
    }

    fn set_data(&mut self, name: &str, value: &[u8]) -> Result<(), Failure> {
        let n = CString::new(name).map_err(|_| Failure::System("NUL in data name".into()))?;
        let data = Box::into_raw(Box::new(value.to_vec()));
        // SAFETY: a live handle; libpam copies the name and keeps `data`
        // until it calls `free_data` (pam_end, or a later set of this name).
        let r = unsafe { pam_set_data(self.pamh, n.as_ptr(), data.cast(), Some(free_data)) };
        if r != code::SUCCESS {
            // libpam did not take it: free it here.
            // SAFETY: made by Box::into_raw just above, not stored.
            drop(unsafe { Box::from_raw(data) });
            return Err(Failure::System(format!("pam_set_data failed: {r}")));
        }
        Ok(())
    }

    fn data(&self, name: &str) -> Option<Vec<u8>> {
        let n = CString::new(name).ok()?;
        let mut p: *const c_void = std::ptr::null();
        // SAFETY: a live handle, a valid out pointer.
        let r = unsafe { pam_get_data(self.pamh, n.as_ptr(), &mut p) };
        if r != code::SUCCESS || p.is_null() {
            return None;
        }
        // SAFETY: names under this module's prefix are only ever set by
        // `set_data`, so `p` is the `Vec<u8>` it boxed, alive until pam_end.
        Some(unsafe { &*p.cast::<Vec<u8>>() }.clone())
    }

    fn env(&self, name: &str) -> Option<Vec<u8>> {
        let n = CString::new(name).ok()?;
        // SAFETY: a live handle and a valid C string; the result is owned by
        // libpam's environment.
        copy_c(unsafe { pam_getenv(self.pamh, n.as_ptr()) }.cast())
    }
}
