//! The auth stage: get the answer, decide whether it is a token, verify it,
//! and check that the person it names is the directory user behind PAM_USER.

use crate::args::Args;
use crate::audit::Record;
use crate::device::DeviceAgent;
use crate::directory::{Claim, DirUser, Directory};
use crate::handler::{Item, PamHandler, Secret};
use crate::status::Failure;
use crate::token::{self, Facts, Verified};

/// The prompt for the rest of a token that arrived cut or in pieces.
pub const CONTINUE_PROMPT: &str = "Token (continued, empty line to finish): ";
/// Answer lengths at which a client is known to cut silently: 511 bytes
/// (sudo's answer buffer), 1,023 bytes (the OpenSSH client's
/// keyboard-interactive and password answers) and 4,095 bytes (su on a tty,
/// pamtester), all measured in tests/e2e. An answer of exactly such a length
/// may have lost its tail even if it looks complete.
pub const CUT_LENGTHS: [usize; 3] = [511, 1023, 4095];
/// At most this many continuation prompts (32 x 511 bytes is past the size
/// cap anyway; the cap bounds a conversation that never sends an empty line).
pub const MAX_CONTINUATIONS: usize = 32;
/// The whole token, all pieces together, is capped like a one-shot token.
pub const MAX_JOINED: usize = token::MAX_TOKEN_LEN;

/// Gets the answer: the stored PAM_AUTHTOK with `use_first_pass` (and with
/// `try_first_pass` when there is one), else one echo-off prompt, whose
/// answer is then stored as PAM_AUTHTOK so a following
/// `pam_unix.so try_first_pass` checks the same answer as a password.
/// A token that arrived incomplete is completed with continuation prompts
/// (see `complete`); PAM_AUTHTOK then holds the whole token.
pub fn answer(pam: &mut dyn PamHandler, args: &Args) -> Result<Secret, Failure> {
    let first = 'first: {
        if args.use_first_pass || args.try_first_pass {
            if let Some(stored) = pam.item_authtok()? {
                break 'first stored;
            }
            if args.use_first_pass {
                return Err(Failure::Ignore("no earlier answer (use_first_pass)"));
            }
        }
        let answer = pam.prompt_secret(&args.prompt)?;
        pam.set_authtok(&answer)?;
        answer
    };
    if !token::looks_like_jwt(first.bytes()) || !incomplete(trim(first.bytes()), first.len()) {
        return Ok(first);
    }
    if args.use_first_pass {
        // No conversation allowed: say why rather than fail on "truncated".
        return Err(Failure::Refused(format!(
            "incomplete token in PAM_AUTHTOK ({} bytes; use_first_pass never \
             prompts for the rest)",
            first.len()
        )));
    }
    let whole = complete(pam, first)?;
    pam.set_authtok(&whole)?;
    Ok(whole)
}

/// Is this token text (surrounding whitespace already trimmed) possibly
/// only a prefix? `raw_len` is the length of the last answer as received:
/// an answer of exactly a cut length may have been cut after a dot-complete
/// looking prefix (e.g. inside the signature).
pub fn incomplete(token: &[u8], raw_len: usize) -> bool {
    let mut parts = token.split(|&b| b == b'.');
    let (_, _, third) = (parts.next(), parts.next(), parts.next());
    match third {
        None => true,
        Some(sig) => sig.is_empty() || CUT_LENGTHS.contains(&raw_len),
    }
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// Asks `CONTINUE_PROMPT` (echo off) and appends each trimmed answer until
/// an empty answer, or until the whole is a complete token whose last piece
/// is not of a cut length. Bounded by `MAX_JOINED` bytes and
/// `MAX_CONTINUATIONS` prompts.
pub fn complete(pam: &mut dyn PamHandler, first: Secret) -> Result<Secret, Failure> {
    let mut whole = Secret::new(trim(first.bytes()).to_vec());
    for _ in 0..MAX_CONTINUATIONS {
        let piece = pam.prompt_secret(CONTINUE_PROMPT)?;
        // sshd's password authentication answers every echo-off prompt with
        // the one password it has: the same text again means nobody can send
        // the rest, so stop instead of doubling the input 32 times.
        if piece.bytes() == first.bytes() {
            // A token of exactly a cut length may well be whole: let the
            // signature decide rather than refuse it unseen.
            if !incomplete(whole.bytes(), 0) {
                return Ok(whole);
            }
            return Err(Failure::Refused(format!(
                "incomplete token ({} bytes) and the application repeats the \
                 first answer to every prompt (sshd password authentication \
                 has one password): no way to send the rest",
                whole.len()
            )));
        }
        let part = trim(piece.bytes());
        if part.is_empty() {
            return Ok(whole);
        }
        if whole.len() + part.len() > MAX_JOINED {
            return Err(Failure::Refused(format!(
                "token pieces exceed {MAX_JOINED} bytes"
            )));
        }
        let mut joined = Vec::with_capacity(whole.len() + part.len());
        joined.extend_from_slice(whole.bytes());
        joined.extend_from_slice(part);
        // `whole` (and its copy of the secret) is wiped on drop.
        whole = Secret::new(joined);
        if !incomplete(whole.bytes(), piece.len()) && !CUT_LENGTHS.contains(&whole.len()) {
            return Ok(whole);
        }
    }
    Err(Failure::Refused(format!(
        "token still incomplete after {MAX_CONTINUATIONS} continuation prompts ({} bytes)",
        whole.len()
    )))
}

/// The whole stage; on success, how the person got in ("token" or
/// "device"). `clock` is the time now (tokens are judged when they arrive). `open` gives the directory (the published files) only once
/// the answer is known to be a token (or a device sign-in starts): a
/// password login never reads them. `agent` is asked only for a device
/// sign-in (module argument `device` and an empty answer). `record` is
/// filled in for the audit log whatever the outcome.
pub fn authenticate<D: Directory>(
    pam: &mut dyn PamHandler,
    args: &Args,
    open: impl FnOnce() -> Result<D, Failure>,
    agent: &mut dyn DeviceAgent,
    clock: &dyn Fn() -> i64,
    record: &mut Record,
) -> Result<&'static str, Failure> {
    let user = pam.user()?;
    record.user = Some(String::from_utf8_lossy(&user).into_owned());
    let answer = answer(pam, args)?;
    // Exactly empty: an answer of spaces is a (bad) password, and must not
    // make the agent ask the IdP for anything.
    if args.device && !args.use_first_pass && answer.is_empty() {
        record.method = Some("device".into());
        let mut dir = open()?;
        crate::device::sign_in(pam, &mut dir, &user, agent, clock, record)?;
        return Ok("device");
    }
    if !token::looks_like_jwt(answer.bytes()) {
        record.method = Some("password".into());
        return Err(Failure::Ignore("not a token"));
    }
    record.method = Some("token".into());
    let mut dir = open()?;
    verify_for(&mut dir, answer.bytes(), &user, clock(), record)?;
    Ok("token")
}

/// Verifies `token` and ties it to the directory user `user`, filling in
/// the audit record: what every token goes through, typed or from a device
/// sign-in.
pub fn verify_for(
    dir: &mut dyn Directory,
    token: &[u8],
    user: &[u8],
    now: i64,
    record: &mut Record,
) -> Result<DirUser, Failure> {
    let mut facts = Facts::default();
    let verified = token::verify(token, dir, now, &mut facts);
    record.kid = facts.kid;
    if facts.verified {
        record.issuer = facts.issuer;
        record.jti = facts.jti;
        record.email = facts.email;
        record.sid = facts.sid;
        record.mfa = facts.mfa;
    } else {
        // Anyone can write these into a payload: not facts until signed.
        record.claimed_issuer = facts.issuer;
        record.claimed_email = facts.email;
    }
    let verified = verified?;
    let found = match_identity(dir, &verified, user)?;
    record.directory_user(&found);
    Ok(found)
}

/// The person the token names must be the directory user PAM_USER.
///
/// - `email` (and `preferred_username`/`upn` values with an `@`, trusted
///   as the person's email): looked up through the private file's email
///   index, ASCII case-insensitively (the agent stores emails lowercased the
///   same way); the user found must be named PAM_USER.
/// - `preferred_username`/`upn` without `@`: refused. The IdP's user names
///   are its own namespace (often self-chosen, not unique per OIDC), never
///   zt's user names.
/// - `sub`: must equal the IdP id of the directory user PAM_USER exactly.
pub fn match_identity(
    dir: &dyn Directory,
    v: &Verified,
    pam_user: &[u8],
) -> Result<DirUser, Failure> {
    let value = v.identity.as_bytes();
    let shown = token::cap(&v.identity, 128);
    let by_email = match v.issuer.claim {
        Claim::Email => true,
        Claim::PreferredUsername | Claim::Upn if value.contains(&b'@') => true,
        Claim::PreferredUsername | Claim::Upn => {
            return Err(Failure::Refused(format!(
                "claim {} = {:?} has no '@': zt can only tie an email-shaped \
                 identity or the IdP object id (claim = \"sub\") to a directory user",
                v.issuer.claim.name(),
                shown
            )));
        }
        Claim::Sub => false,
    };
    if by_email {
        let email = value.to_ascii_lowercase();
        let Some(u) = dir.user_by_email(&email)? else {
            return Err(Failure::UnknownUser(format!(
                "no directory user has the email {shown}"
            )));
        };
        if u.name != pam_user {
            return Err(Failure::Refused(format!(
                "token of {shown} (user {}) used for {}",
                String::from_utf8_lossy(&u.name),
                String::from_utf8_lossy(pam_user)
            )));
        }
        return Ok(u);
    }
    let Some(u) = dir.user_by_name(pam_user)? else {
        return Err(Failure::UnknownUser(format!(
            "{} is not a directory user",
            String::from_utf8_lossy(pam_user)
        )));
    };
    if u.idp_id != value {
        return Err(Failure::Refused(format!(
            "token's {} {shown} is not {}",
            v.issuer.claim.name(),
            String::from_utf8_lossy(pam_user)
        )));
    }
    Ok(u)
}

/// The pam_set_data name under which the auth stage leaves the method of a
/// successful login for the account and session stages of the same handle.
pub const METHOD_DATA: &str = "pam_zt_method";

/// Tells the later stages how the user got in. Only the auth stage knows a
/// token from a password; sshd's SSH_AUTH_INFO_0 says "keyboard-interactive"
/// for both. Where the later stages run in another process (sshd runs the
/// keyboard-interactive conversation in a child), they fall back to the
/// SSH_AUTH_INFO_0 guess.
pub fn remember_method(pam: &mut dyn PamHandler, method: &str) -> Result<(), Failure> {
    pam.set_data(METHOD_DATA, method.as_bytes())
}

/// Fills in the request's context for the audit record.
pub fn context(pam: &dyn PamHandler, record: &mut Record) {
    let s = |i| {
        pam.item(i)
            .ok()
            .flatten()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    };
    record.service = s(Item::Service);
    record.rhost = s(Item::Rhost);
    record.tty = s(Item::Tty);
    let known = pam
        .data(METHOD_DATA)
        .and_then(|m| String::from_utf8(m).ok())
        .filter(|m| ["token", "device", "password", "key", "certificate"].contains(&m.as_str()));
    let info = pam.env("SSH_AUTH_INFO_0");
    if let Some(m) = known {
        record.method = Some(m);
    } else if let Some(info) = &info {
        record.method = ssh_method(info).map(Into::into);
    }
    if let Some(info) = &info {
        ssh_key(info, record);
    }
}

/// The key or certificate of SSH_AUTH_INFO_0's last `publickey` line.
pub fn ssh_key(info: &[u8], record: &mut Record) {
    match crate::sshkey::from_auth_info(info) {
        Some(crate::sshkey::AuthKey::Key { fingerprint }) => {
            record.key_fingerprint = Some(fingerprint);
        }
        Some(crate::sshkey::AuthKey::Certificate(c)) => {
            record.cert_key_id = Some(c.key_id);
            record.cert_serial = Some(c.serial);
            record.cert_principals = Some(c.principals);
            record.cert_ca = Some(c.ca);
        }
        None => {}
    }
}

/// The method from sshd's SSH_AUTH_INFO_0 (one line per method used, e.g.
/// `publickey ssh-ed25519-cert-v01@openssh.com AAAA...`); the last line is
/// the method that completed.
pub fn ssh_method(info: &[u8]) -> Option<&'static str> {
    let line = info.split(|&b| b == b'\n').rfind(|l| !l.is_empty())?;
    let mut words = line.split(|&b| b == b' ');
    match words.next()? {
        b"publickey" => {
            let key_type = words.next().unwrap_or_default();
            if key_type.windows(9).any(|w| w == b"-cert-v01") {
                Some("certificate")
            } else {
                Some("key")
            }
        }
        b"password" => Some("password"),
        // A typed answer: only the auth stage knows whether it was a token.
        b"keyboard-interactive" => Some("password"),
        _ => None,
    }
}
