//! Device-code sign-in, pam_zt's side (module argument `device`, and an
//! empty answer to the prompt): the agent asks the IdP for a code
//! (`zt_published::device`), this shows "open URL and enter CODE" with a
//! prompt to press Enter once signed in, and verifies the ID token the agent
//! gets exactly like a typed token (issuer keys, `aud`, times, MFA, the
//! person behind PAM_USER).
//!
//! sshd's keyboard-interactive shows info text only with the next prompt,
//! so the text and the "press Enter" prompt go in one conversation call.
//! Enter makes the agent poll at once; "not signed in yet" repeats the
//! prompt. Ctrl-C or a closed connection ends the conversation with an
//! error: the connection to the agent is dropped with it, and the agent
//! stops polling at once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zt_published::device::{DeviceAnswer, DeviceCode, DeviceSignIn};

use crate::audit::Record;
use crate::directory::Directory;
use crate::handler::{Item, PamHandler};
use crate::status::Failure;

/// The question before anything is asked of the agent (echo on).
pub const CONFIRM: &str = "Press Enter to get a sign-in code: ";
/// The prompt after the code.
pub const PRESS_ENTER: &str = "Press Enter once you have signed in: ";
/// Bound on the agent's answer with the code: its control socket may be busy
/// with a key refresh, a worker may be busy (20 s at most), then discovery
/// (5 s) and the request (10 s).
pub const START_TIMEOUT: Duration = Duration::from_secs(40);
/// Bound on the agent's answer to a poll: it polls when the IdP's interval
/// allows (60 s at most after `slow_down`s), after a worker is free, one
/// request of 10 s at most.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(90);
/// Beyond the code's lifetime, the agent gives up itself; this bounds the
/// conversation even if it did not.
pub const MAX_WAIT: Duration = Duration::from_secs(16 * 60);
/// What the person is told when the agent cannot help; the details (other
/// people's pending sign-ins, internal URLs, TLS errors) go to the audit log.
pub const UNAVAILABLE: &str = "Browser sign-in is unavailable right now.";

/// The agent's side of a sign-in, as this module sees it.
pub trait DeviceAgent {
    /// `rhost`: where the login comes from (PAM_RHOST), for the agent's
    /// per-source limit; `None` for a local login.
    fn start(&mut self, user: &[u8], rhost: Option<&[u8]>) -> Result<DeviceCode, String>;
    /// The person says they have signed in: the agent's answer.
    fn poll(&mut self) -> DeviceAnswer;
}

/// The agent's control socket under `run_dir`.
pub struct SocketAgent {
    run_dir: PathBuf,
    sign_in: Option<DeviceSignIn>,
}

impl SocketAgent {
    pub fn new(run_dir: &Path) -> Self {
        SocketAgent {
            run_dir: run_dir.to_path_buf(),
            sign_in: None,
        }
    }
}

impl DeviceAgent for SocketAgent {
    fn start(&mut self, user: &[u8], rhost: Option<&[u8]>) -> Result<DeviceCode, String> {
        let (sign_in, code) = DeviceSignIn::start(&self.run_dir, user, rhost, START_TIMEOUT)?;
        self.sign_in = Some(sign_in);
        Ok(code)
    }

    fn poll(&mut self) -> DeviceAnswer {
        match &mut self.sign_in {
            Some(s) => s.poll(POLL_TIMEOUT),
            None => DeviceAnswer::Unavailable("no sign-in started".into()),
        }
    }
}

/// Text for the person's terminal: no control characters (a reason may quote
/// an IdP's words or a token's claims).
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}

/// Where the login comes from, for the agent's limits: PAM_RHOST for a
/// remote login; for a local one (sudo, su) the invoking user as
/// `-/<PAM_RUSER>` (`zt_published::device::LOCAL_BY`), so one local account
/// cannot take the whole local budget; `None` for the console.
fn source(pam: &dyn PamHandler) -> Option<Vec<u8>> {
    let item = |i| {
        pam.item(i)
            .ok()
            .flatten()
            .filter(|v: &Vec<u8>| !v.is_empty())
    };
    if let Some(rhost) = item(Item::Rhost) {
        return Some(rhost);
    }
    item(Item::Ruser).map(|ruser| [zt_published::device::LOCAL_BY.as_bytes(), &ruser].concat())
}

/// What the person is shown.
pub fn instructions(user: &str, code: &DeviceCode) -> String {
    let mut text = format!(
        "To sign in as {user}, open {} and enter the code {}",
        code.verification_uri, code.user_code
    );
    if let Some(full) = &code.verification_uri_complete {
        text.push_str(&format!("\n(or open {full})"));
    }
    text
}

/// The device-code sign-in for `user`, from the code to a verified token,
/// judged at `clock()` when it arrives.
pub fn sign_in(
    pam: &mut dyn PamHandler,
    dir: &mut dyn Directory,
    user: &[u8],
    agent: &mut dyn DeviceAgent,
    clock: &dyn Fn() -> i64,
    record: &mut Record,
) -> Result<(), Failure> {
    let shown = String::from_utf8_lossy(user).into_owned();
    // Local accounts (and names nobody publishes) are left to the next
    // module: no IdP is asked for them.
    if dir.user_by_name(user)?.is_none() {
        return Err(Failure::Ignore("not a directory user"));
    }
    // One echo-on question first, before the agent asks the IdP anything:
    // sshd's password authentication cannot answer it (its conversation has
    // only the password, for echo-off prompts), so an empty password there
    // costs nothing; and a stray Enter costs one more keypress, not two IdP
    // requests.
    let confirmed = pam.info_prompt(
        &format!("Sign in as {shown} with your browser and your identity provider."),
        CONFIRM,
    )?;
    // Only Enter: a service whose conversation answers every prompt (a
    // mail daemon giving the user name), or none (a NULL response), must not
    // start a sign-in nobody sees.
    if !confirmed.is_some_and(|a| a.is_empty()) {
        return Err(Failure::Ignore(
            "the sign-in question was not answered with Enter",
        ));
    }
    let code = agent.start(user, source(pam).as_deref()).map_err(|why| {
        pam.error_msg(UNAVAILABLE);
        Failure::Unavailable(format!("device sign-in unavailable: {why}"))
    })?;
    let text = instructions(&shown, &code);
    let mut info = text.clone();
    let started = Instant::now();
    let limit = Duration::from_secs(code.expires_in).min(MAX_WAIT);
    loop {
        // The answer is only "go on": whatever was typed is ignored.
        pam.info_prompt(&info, PRESS_ENTER)?;
        match agent.poll() {
            DeviceAnswer::Pending if started.elapsed() < limit => {
                info = format!("Not signed in yet.\n{text}");
            }
            DeviceAnswer::Pending => {
                return Err(Failure::Refused(format!(
                    "nobody signed in within {} s",
                    limit.as_secs()
                )));
            }
            DeviceAnswer::Token(token) => {
                // The reason (whose sign-in it was, which claim failed) goes
                // to the audit log only: whoever is at this login may not be
                // the person who signed in.
                return crate::auth::verify_for(dir, token.as_bytes(), user, clock(), record)
                    .map(|_| ())
                    .inspect_err(|_| {
                        pam.error_msg(&format!(
                            "Sign-in refused: that sign-in does not let {shown} in here."
                        ));
                    });
            }
            DeviceAnswer::Refused(why) => {
                pam.error_msg(&printable(&format!("Sign-in refused: {why}")));
                return Err(Failure::Refused(format!("device sign-in: {why}")));
            }
            DeviceAnswer::Unavailable(why) => {
                pam.error_msg(UNAVAILABLE);
                return Err(Failure::Unavailable(format!("device sign-in: {why}")));
            }
        }
    }
}
