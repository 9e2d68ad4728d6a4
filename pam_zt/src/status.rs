//! PAM return codes and the one table that maps every outcome of this module
//! to one of them (as nss_zt/src/status.rs does for NSS).
//!
//! Values are Linux-PAM's (`security/_pam_types.h`); a test pins them.
//!
//! Why these codes:
//! - `Ignore` (PAM_IGNORE) is "this module has no opinion": the answer is not
//!   a token, or the user is a local account. With
//!   `auth [success=done ignore=ignore default=die] pam_zt.so` followed by
//!   `auth required pam_unix.so try_first_pass`, pam_unix then checks the
//!   same answer as a local (break-glass) password. With `sufficient` any
//!   non-success code falls through too, but only PAM_IGNORE is neutral under
//!   `required`/`requisite` and the bracket syntax, so it is the one to use.
//! - A token that was checked and refused is PAM_AUTH_ERR: it must not fall
//!   through to a password check (a JWT is never anyone's password).
//! - "Cannot decide right now" (no usable snapshot, no issuer keys, a panic)
//!   is PAM_AUTHINFO_UNAVAIL in auth and account: never success for a name the
//!   snapshot cannot vouch for.

use std::ffi::c_int;

use zt_published::{FromPanic, ReadError};
use zt_snapshot::FormatError;

/// Linux-PAM return codes used by this module.
pub mod code {
    use std::ffi::c_int;
    pub const SUCCESS: c_int = 0;
    pub const SERVICE_ERR: c_int = 3;
    pub const SYSTEM_ERR: c_int = 4;
    pub const BUF_ERR: c_int = 5;
    pub const PERM_DENIED: c_int = 6;
    pub const AUTH_ERR: c_int = 7;
    pub const AUTHINFO_UNAVAIL: c_int = 9;
    pub const USER_UNKNOWN: c_int = 10;
    pub const SESSION_ERR: c_int = 14;
    pub const CONV_ERR: c_int = 19;
    pub const IGNORE: c_int = 25;
    pub const BAD_ITEM: c_int = 29;
}

/// Why a stage did not succeed. Each variant maps to exactly one PAM code;
/// the reason string goes to the audit log, never to the user's terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Not this module's business: the answer is not a token, or the user is
    /// a local account. PAM_IGNORE.
    Ignore(&'static str),
    /// A token (or a directory user) was examined and refused. PAM_AUTH_ERR.
    Refused(String),
    /// The account stage refuses a directory user (no login group, offline
    /// for too long). PAM_PERM_DENIED.
    Denied(String),
    /// The token names a user this host does not know as a directory user.
    /// PAM_USER_UNKNOWN.
    UnknownUser(String),
    /// The module cannot decide: no usable snapshot, no private file, a
    /// corrupt file, no issuer configured. PAM_AUTHINFO_UNAVAIL.
    Unavailable(String),
    /// The application's conversation failed or gave no answer. PAM_CONV_ERR.
    Conversation(&'static str),
    /// Bad module arguments (a typo in /etc/pam.d). PAM_SERVICE_ERR.
    Config(String),
    /// The session stage could not create the home directory. PAM_SESSION_ERR.
    Session(String),
    /// A libpam call failed in a way that is not the user's doing, or a panic
    /// was caught at the boundary. PAM_SYSTEM_ERR.
    System(String),
}

impl Failure {
    /// The one table.
    pub fn code(&self) -> c_int {
        match self {
            Failure::Ignore(_) => code::IGNORE,
            Failure::Refused(_) => code::AUTH_ERR,
            Failure::Denied(_) => code::PERM_DENIED,
            Failure::UnknownUser(_) => code::USER_UNKNOWN,
            Failure::Unavailable(_) => code::AUTHINFO_UNAVAIL,
            Failure::Conversation(_) => code::CONV_ERR,
            Failure::Config(_) => code::SERVICE_ERR,
            Failure::Session(_) => code::SESSION_ERR,
            Failure::System(_) => code::SYSTEM_ERR,
        }
    }

    /// The audit log's `reason`.
    pub fn reason(&self) -> &str {
        match self {
            Failure::Ignore(r) | Failure::Conversation(r) => r,
            Failure::Refused(r)
            | Failure::Denied(r)
            | Failure::UnknownUser(r)
            | Failure::Unavailable(r)
            | Failure::Config(r)
            | Failure::Session(r)
            | Failure::System(r) => r,
        }
    }

    /// The audit log's `result`: an ignore is neither a success nor a refusal.
    pub fn result(&self) -> &'static str {
        match self {
            Failure::Ignore(_) => "ignored",
            _ => "failure",
        }
    }
}

/// The outcome of a stage as the PAM code to return.
pub fn to_code(outcome: &Result<(), Failure>) -> c_int {
    match outcome {
        Ok(()) => code::SUCCESS,
        Err(f) => f.code(),
    }
}

impl From<FormatError> for Failure {
    /// A corrupt file is "cannot decide", never "no such user".
    fn from(e: FormatError) -> Self {
        Failure::Unavailable(format!("snapshot unusable: {e}"))
    }
}

impl From<ReadError> for Failure {
    fn from(e: ReadError) -> Self {
        Failure::Unavailable(format!("snapshot unusable: {e}"))
    }
}

impl FromPanic for Failure {
    /// A panic caught at the boundary: a system error, never success.
    fn from_panic() -> Self {
        Failure::System("internal error (panic caught)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_linux_pam() {
        // security/_pam_types.h
        assert_eq!(code::SUCCESS, 0);
        assert_eq!(code::SERVICE_ERR, 3);
        assert_eq!(code::SYSTEM_ERR, 4);
        assert_eq!(code::BUF_ERR, 5);
        assert_eq!(code::PERM_DENIED, 6);
        assert_eq!(code::AUTH_ERR, 7);
        assert_eq!(code::AUTHINFO_UNAVAIL, 9);
        assert_eq!(code::USER_UNKNOWN, 10);
        assert_eq!(code::SESSION_ERR, 14);
        assert_eq!(code::CONV_ERR, 19);
        assert_eq!(code::IGNORE, 25);
        assert_eq!(code::BAD_ITEM, 29);
    }

    #[test]
    fn every_failure_has_one_code() {
        let table = [
            (Failure::Ignore("x"), code::IGNORE),
            (Failure::Refused("x".into()), code::AUTH_ERR),
            (Failure::Denied("x".into()), code::PERM_DENIED),
            (Failure::UnknownUser("x".into()), code::USER_UNKNOWN),
            (Failure::Unavailable("x".into()), code::AUTHINFO_UNAVAIL),
            (Failure::Conversation("x"), code::CONV_ERR),
            (Failure::Config("x".into()), code::SERVICE_ERR),
            (Failure::Session("x".into()), code::SESSION_ERR),
            (Failure::System("x".into()), code::SYSTEM_ERR),
        ];
        for (f, c) in table {
            assert_eq!(f.code(), c, "{f:?}");
            assert_eq!(f.reason(), "x");
        }
        assert_eq!(Failure::from_panic().code(), code::SYSTEM_ERR);
        assert_eq!(
            Failure::from(ReadError::Missing).code(),
            code::AUTHINFO_UNAVAIL
        );
        assert_eq!(to_code(&Ok(())), code::SUCCESS);
    }
}
