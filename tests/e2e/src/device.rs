//! A person's device-code sign-in at a login, scripted with expect: the login program
//! (pamtester, ssh) shows "open URL and enter the code CODE", `device_browser.py` signs
//! in at the real OIDC provider, and Enter is pressed at each "signed in" prompt.

use std::os::unix::process::CommandExt;

use crate::{Host, OidcProvider, PamResult};

/// What the scripted person does once the code is shown.
#[derive(Clone, Copy, Debug)]
pub enum Then<'a> {
    /// Signs in at the IdP as this login name and consents, then presses Enter.
    SignIn(&'a str),
    /// Presses Abort at the IdP, then Enter.
    Deny,
    /// Waits this many seconds, then presses Enter (the code has expired).
    Late(u32),
    /// Closes the terminal.
    HangUp,
    /// Keeps the login waiting this many seconds, then closes the terminal.
    Hold(u32),
}

/// Runs `argv` (pamtester or ssh) in `h` under expect (which prints `ZT-T-ENTER <ms>`
/// before each Enter and `ZT-T-END <ms>` at the program's exit, for benchmarks): answers the
/// first prompt and the "get a sign-in code" question with Enter (no token: a browser sign-in), reads the URL and code the login shows, does
/// `then`, and presses Enter at each "signed in" prompt. Exit code: the program's (98:
/// a timeout in the script, 96: no code shown).
pub fn device_login(h: &Host, argv: &[&str], then: Then) -> PamResult {
    let script = r#"
set timeout 30
log_user 1
spawn -noecho {*}$env(ZT_SPAWN)
expect {
  -re {browser: $} { send "\r" }
  timeout { exit 98 }
  eof { lassign [wait] p s o c; exit $c }
}
expect {
  -re {sign-in code: $} { send "\r" }
  timeout { exit 98 }
  eof { lassign [wait] p s o c; exit $c }
}
expect {
  -re {open (\S+) and enter the code (\S+)} {
    set uri $expect_out(1,string); set code $expect_out(2,string)
  }
  timeout { exit 98 }
  eof { lassign [wait] p s o c; puts "\nZT: no code shown"; exit [expr {$c == 0 ? 96 : $c}] }
}
switch -- $env(ZT_THEN) {
  hangup { puts "\nZT: hanging up"; exit 0 }
  hold { sleep $env(ZT_ARG); exit 0 }
  late { sleep $env(ZT_ARG) }
  default {
    set cmd [list {*}$env(ZT_BROWSER) $uri $code $env(ZT_ARG)]
    if {$env(ZT_THEN) eq "deny"} { lappend cmd deny }
    if {[catch {exec {*}$cmd} out]} { puts "\nZT: browser failed: $out" } else { puts "\nZT: browser: $out" }
  }
}
set n 0
expect {
  -re {signed in: $} {
    if {$n >= 12} { exit 97 }
    incr n
    puts "\nZT-T-ENTER [clock milliseconds]"
    send "\r"
    exp_continue
  }
  timeout { exit 98 }
  eof
}
puts "\nZT-T-END [clock milliseconds]"
lassign [wait] pid spawnid os_error code
exit $code
"#;
    let (then_word, arg) = match then {
        Then::SignIn(login) => ("signin", login.to_string()),
        Then::Deny => ("deny", "alice".to_string()),
        Then::Late(s) => ("late", s.to_string()),
        Then::HangUp => ("hangup", String::new()),
        Then::Hold(s) => ("hold", s.to_string()),
    };
    let tcl_list = |v: &[String]| {
        v.iter()
            .map(|a| format!("{{{a}}}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let spawn: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let browser = OidcProvider::browser_argv("", "", "", false);
    let mut c = h.command(&["expect", "-c", script]);
    c.env("ZT_SPAWN", tcl_list(&spawn))
        .env("ZT_BROWSER", tcl_list(&browser[..2]))
        .env("ZT_THEN", then_word)
        .env("ZT_ARG", arg)
        .process_group(0);
    let o = c.output().expect("expect (package expect)");
    PamResult {
        code: o.status.code().unwrap_or(-1),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
        .replace("\r\n", "\n"),
    }
}
