//! Module arguments from the /etc/pam.d line. Parsed on every call (there is
//! no configuration file: the agent is the only component that parses one).
//! An unknown or malformed argument is a configuration error
//! (PAM_SERVICE_ERR), reported in syslog: a typo must not silently change
//! behaviour.

use std::path::PathBuf;

use crate::status::Failure;

pub const DEFAULT_PROMPT: &str = "Access token or password: ";
/// The prompt with `device` (unless `prompt=` says otherwise).
pub const DEVICE_PROMPT: &str = "Access token, password, or Enter to sign in with your browser: ";
pub const STATE_DIR: &str = "/var/lib/zt";
pub const RUN_DIR: &str = "/run/zt";
pub const AUDIT_LOG: &str = "/var/log/zt/auth.jsonl";
pub const SKEL: &str = "/etc/skel";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub debug: bool,
    pub use_first_pass: bool,
    pub try_first_pass: bool,
    /// An empty answer starts a device-code sign-in through the agent.
    pub device: bool,
    pub prompt: String,
    pub home_mode: u32,
    /// For tests and packaging only: where the published files are.
    pub state_dir: PathBuf,
    /// For tests and packaging only: where the agent's control socket is.
    pub run_dir: PathBuf,
    /// For tests and packaging only: the JSON-lines audit file.
    pub audit_log: PathBuf,
    /// For tests and packaging only: the skeleton copied into new homes.
    pub skel: PathBuf,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            debug: false,
            use_first_pass: false,
            try_first_pass: false,
            device: false,
            prompt: DEFAULT_PROMPT.into(),
            home_mode: 0o750,
            state_dir: STATE_DIR.into(),
            run_dir: RUN_DIR.into(),
            audit_log: AUDIT_LOG.into(),
            skel: SKEL.into(),
        }
    }
}

fn absolute(key: &str, v: &str) -> Result<PathBuf, Failure> {
    // Relative paths would depend on the host process's working directory.
    if !v.starts_with('/') || v.split('/').any(|c| c == "..") {
        return Err(Failure::Config(format!(
            "{key}= must be an absolute path without '..'"
        )));
    }
    Ok(PathBuf::from(v))
}

/// Parses the arguments (`argv` of `pam_sm_*`, already as strings).
pub fn parse<'a>(argv: impl IntoIterator<Item = &'a str>) -> Result<Args, Failure> {
    let mut a = Args::default();
    let mut prompt_set = false;
    for arg in argv {
        match arg.split_once('=') {
            None => match arg {
                "debug" => a.debug = true,
                "use_first_pass" => a.use_first_pass = true,
                "try_first_pass" => a.try_first_pass = true,
                "device" => a.device = true,
                _ => return Err(Failure::Config(format!("unknown argument {arg:?}"))),
            },
            Some(("prompt", v)) => {
                if v.is_empty() || v.len() > 200 || v.chars().any(char::is_control) {
                    return Err(Failure::Config(
                        "prompt= must be 1-200 printable characters".into(),
                    ));
                }
                a.prompt = v.into();
                prompt_set = true;
            }
            Some(("home_mode", v)) => {
                let mode = u32::from_str_radix(v, 8)
                    .map_err(|_| Failure::Config(format!("home_mode={v}: not an octal mode")))?;
                // Never group/other writable, never setuid/setgid/sticky.
                if mode & !0o755 != 0 {
                    return Err(Failure::Config(format!(
                        "home_mode={v}: only permission bits within 0755 are allowed"
                    )));
                }
                a.home_mode = mode;
            }
            Some(("state_dir", v)) => a.state_dir = absolute("state_dir", v)?,
            Some(("run_dir", v)) => a.run_dir = absolute("run_dir", v)?,
            Some(("audit_log", v)) => a.audit_log = absolute("audit_log", v)?,
            Some(("skel", v)) => a.skel = absolute("skel", v)?,
            Some((k, _)) => return Err(Failure::Config(format!("unknown argument {k}="))),
        }
    }
    if a.device && !prompt_set {
        a.prompt = DEVICE_PROMPT.into();
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse() {
        assert_eq!(parse([]).unwrap(), Args::default());
        let a = parse([
            "debug",
            "try_first_pass",
            "device",
            "prompt=Token: ",
            "home_mode=0700",
            "state_dir=/tmp/s",
            "run_dir=/tmp/r",
            "audit_log=/tmp/a/auth.jsonl",
            "skel=/tmp/skel",
        ])
        .unwrap();
        assert!(a.debug && a.try_first_pass && !a.use_first_pass && a.device);
        assert_eq!(a.prompt, "Token: ");
        assert_eq!(a.home_mode, 0o700);
        assert_eq!(a.state_dir, PathBuf::from("/tmp/s"));
        assert_eq!(a.audit_log, PathBuf::from("/tmp/a/auth.jsonl"));
    }

    #[test]
    fn bad_arguments_are_config_errors() {
        for bad in [
            "degub",
            "state_dir=var/lib/zt",
            "audit_log=/var/log/../x",
            "home_mode=0777",
            "home_mode=4750",
            "home_mode=abc",
            "prompt=",
            "colour=red",
        ] {
            assert!(matches!(parse([bad]), Err(Failure::Config(_))), "{bad}");
        }
    }
}
