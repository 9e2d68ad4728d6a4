//! The PAM handle as a trait (kanidm's `PamHandler` idea): the stage logic
//! asks for the user, items, the environment and the conversation through
//! it, so it runs against a mock in tests and against libpam in `ffi`.

use crate::status::Failure;

/// The string items this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    Service,
    Tty,
    Rhost,
    /// The invoking user (sudo and su set it).
    Ruser,
    Authtok,
}

/// A secret answer (token or password): zeroed when dropped.
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(v: Vec<u8>) -> Secret {
        Secret(v)
    }
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // SAFETY: `b` is a valid, exclusive reference; volatile so the
            // wipe of memory about to be freed is not optimised away.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// Never print a secret, not even in a debug log.
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

pub trait PamHandler {
    /// PAM_USER (pam_get_user: may prompt for it).
    fn user(&mut self) -> Result<Vec<u8>, Failure>;
    /// A string item; `None` when unset.
    fn item(&self, item: Item) -> Result<Option<Vec<u8>>, Failure>;
    /// The stored answer, for the next module (`try_first_pass`).
    fn item_authtok(&self) -> Result<Option<Secret>, Failure>;
    fn set_authtok(&mut self, answer: &Secret) -> Result<(), Failure>;
    /// One PAM_PROMPT_ECHO_OFF prompt through the application's conversation.
    fn prompt_secret(&mut self, prompt: &str) -> Result<Secret, Failure>;
    /// PAM_TEXT_INFO `info` and a PAM_PROMPT_ECHO_ON `prompt` in one
    /// conversation call (sshd's keyboard-interactive shows info text only
    /// together with a prompt); the answer, `None` when the application
    /// gave none (a NULL response, as non-interactive services do).
    fn info_prompt(&mut self, info: &str, prompt: &str) -> Result<Option<Secret>, Failure>;
    /// One PAM_ERROR_MSG (best effort: an application may not show it).
    fn error_msg(&mut self, text: &str);
    /// pam_getenv (the PAM environment, where sshd puts SSH_AUTH_INFO_0).
    fn env(&self, name: &str) -> Option<Vec<u8>>;
    /// pam_set_data: a value kept with the handle for this module's later
    /// stages (account, session) in the same process.
    fn set_data(&mut self, name: &str, value: &[u8]) -> Result<(), Failure>;
    /// pam_get_data: a value an earlier stage stored with `set_data`.
    fn data(&self, name: &str) -> Option<Vec<u8>>;
}
