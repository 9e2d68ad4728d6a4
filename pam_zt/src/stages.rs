//! The six PAM stages as functions over `PamHandler`: argument parsing, the
//! stage logic, the audit record and the PAM code, all testable with a mock
//! handle. `lib.rs` only turns libpam's raw arguments into these calls.

use std::ffi::c_int;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::args::{self, Args};
use crate::audit::{self, Record};
use crate::auth;
use crate::directory::Directory;
use crate::handler::PamHandler;
use crate::home::{self, Home};
use crate::live::{Live, RefreshFn};
use crate::status::{Failure, code, to_code};

/// The passwd file consulted for "is this a local account".
pub const PASSWD: &str = "/etc/passwd";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where stages get the directory from: the published files in production,
/// a fixture in tests.
pub trait Opener {
    type Dir: Directory;
    fn open(&self, args: &Args) -> Result<Self::Dir, Failure>;
    /// Does NSS resolve `name`? (getpwnam; a fixture in tests)
    fn resolves(&self, name: &[u8]) -> bool {
        crate::account::resolves_in_nss(name)
    }
}

/// The published files under `state_dir=`, with the agent's control socket
/// under `run_dir=` for key refreshes.
pub struct Published(pub RefreshFn);

impl Opener for Published {
    type Dir = Live;
    fn open(&self, args: &Args) -> Result<Live, Failure> {
        Live::open(&args.state_dir, &args.run_dir, self.0)
    }
}

fn parse_args(argv: &[&str]) -> Result<Args, Failure> {
    args::parse(argv.iter().copied()).inspect_err(|e| {
        audit::syslog(
            &format!("pam_zt: bad module arguments: {}", e.reason()),
            false,
        );
    })
}

/// What every stage starts with: its arguments (a bad one is the stage's
/// answer, logged) and an audit record with the PAM context filled in.
fn begin(
    pam: &mut dyn PamHandler,
    argv: &[&str],
    stage: &'static str,
    now: u64,
) -> Result<(Args, Record), c_int> {
    let args = parse_args(argv).map_err(|f| f.code())?;
    let mut record = Record {
        time: now,
        stage,
        ..Record::default()
    };
    auth::context(pam, &mut record);
    Ok((args, record))
}

fn finish(mut record: Record, outcome: Result<(), Failure>, args: &Args, always: bool) -> c_int {
    let code = to_code(&outcome);
    match &outcome {
        Ok(()) => {
            record.result = "success";
            record.reason = "ok".into();
        }
        Err(f) => {
            record.result = f.result();
            record.reason = f.reason().to_owned();
        }
    }
    let ignored = matches!(outcome, Err(Failure::Ignore(_)));
    if always || !ignored || args.debug {
        audit::emit(&record, &args.audit_log);
    }
    code
}

/// pam_sm_authenticate.
pub fn authenticate(
    pam: &mut dyn PamHandler,
    argv: &[&str],
    opener: &impl Opener,
    now: u64,
) -> c_int {
    let (args, mut record) = match begin(pam, argv, "auth", now) {
        Ok(b) => b,
        Err(code) => return code,
    };
    // Tokens are judged at the time they arrive, not when the stage began: a
    // prompt can wait for minutes (su has no timeout), a device sign-in too.
    // The time since entry is the larger of the monotonic clock's (immune to
    // the wall clock stepping back) and the wall clock's (which counts a
    // suspended laptop's night: CLOCK_MONOTONIC does not).
    let now_i = i64::try_from(now).unwrap_or(i64::MAX);
    let entered = std::time::Instant::now();
    let entered_wall = SystemTime::now();
    let clock = || {
        let wall = entered_wall.elapsed().unwrap_or_default();
        let since = entered.elapsed().max(wall).as_secs();
        now_i.saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
    };
    let mut agent = crate::device::SocketAgent::new(&args.run_dir);
    let outcome = auth::authenticate(
        pam,
        &args,
        || opener.open(&args),
        &mut agent,
        &clock,
        &mut record,
    );
    if let Ok(method) = outcome {
        // A token login the later stages cannot record is still a login.
        if let Err(f) = auth::remember_method(pam, method) {
            audit::syslog(&format!("pam_zt: {}", f.reason()), false);
        }
    }
    let outcome = outcome.map(|_| ());
    // Every attempt is recorded, including answers left to pam_unix.
    finish(record, outcome, &args, true)
}

/// pam_sm_acct_mgmt.
pub fn account(
    pam: &mut dyn PamHandler,
    argv: &[&str],
    opener: &impl Opener,
    passwd: &Path,
    now: u64,
) -> c_int {
    let (args, mut record) = match begin(pam, argv, "account", now) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let outcome = pam.user().and_then(|user| {
        record.user = Some(String::from_utf8_lossy(&user).into_owned());
        crate::account::account(
            &user,
            |u| crate::account::in_passwd_file(passwd, u),
            || opener.open(&args),
            |u| opener.resolves(u),
            now,
        )
    });
    let outcome = outcome.map(|u| {
        record.directory_user(&u);
    });
    person(&mut record, opener, &args);
    // Local users are not recorded (not this module's business) unless debug,
    // or a directory person's certificate got them in (a shared account).
    let always = record.person.is_some();
    finish(record, outcome, &args, always)
}

/// pam_sm_open_session: the home directory on first login.
pub fn open_session(
    pam: &mut dyn PamHandler,
    argv: &[&str],
    opener: &impl Opener,
    passwd: &Path,
    now: u64,
) -> c_int {
    let (args, mut record) = match begin(pam, argv, "session", now) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let outcome = (|| {
        let user = pam.user()?;
        record.user = Some(String::from_utf8_lossy(&user).into_owned());
        if crate::account::in_passwd_file(passwd, &user) {
            return Err(Failure::Ignore("local user"));
        }
        // The account stage already refused names nobody vouches for.
        let dir = opener
            .open(&args)
            .map_err(|_| Failure::Ignore("no usable snapshot"))?;
        let Some(u) = dir.user_by_name(&user)? else {
            return Err(Failure::Ignore("not a directory user"));
        };
        record.directory_user(&u);
        match home::create_home(&u.home, u.uid, u.gid, args.home_mode, &args.skel) {
            Ok(Home::Created) => Ok(true),
            Ok(Home::Existed) => Ok(false),
            Err(e) => Err(Failure::Session(e)),
        }
    })();
    // sshd (OpenSSH 9.2, measured) exposes SSH_AUTH_INFO_0 to PAM only from
    // here on after a publickey login: the session record is the one that
    // carries the key or certificate.
    let ssh_key = record.cert_ca.is_some() || record.key_fingerprint.is_some();
    match outcome {
        // Otherwise only a creation is worth a record; an existing home is the
        // usual case.
        Ok(false) if !ssh_key => code::SUCCESS,
        Ok(created) => {
            person(&mut record, opener, &args);
            if created {
                record.reason = "home directory created".into();
            }
            finish(record, Ok(()), &args, true)
        }
        Err(f) => {
            // A local (shared) account reached with a directory person's
            // certificate is recorded, naming the person.
            person(&mut record, opener, &args);
            let always = record.person.is_some();
            finish(record, Err(f), &args, always)
        }
    }
}

/// After a certificate login: the directory user whose principal it
/// carries (the real person behind a shared account). Best effort: an
/// unreadable directory leaves `person` unset.
fn person(record: &mut Record, opener: &impl Opener, args: &Args) {
    let (Some(user), Some(principals)) = (&record.user, &record.cert_principals) else {
        return;
    };
    let Ok(dir) = opener.open(args) else {
        return;
    };
    if let Ok(Some(p)) = dir.person(user.as_bytes(), principals) {
        record.person = Some(String::from_utf8_lossy(&p).into_owned());
    }
}

/// pam_sm_setcred: tokens carry no credentials to establish.
pub fn setcred() -> c_int {
    code::SUCCESS
}

/// pam_sm_close_session: nothing to undo.
pub fn close_session() -> c_int {
    code::SUCCESS
}

/// pam_sm_chauthtok: directory passwords are the IdP's business.
pub fn chauthtok() -> c_int {
    code::IGNORE
}
