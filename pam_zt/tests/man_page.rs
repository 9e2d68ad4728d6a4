//! packaging/man/pam_zt.8 renders without warnings and documents every
//! module argument the parser accepts. Needs groff (groff-base; .ci/run
//! installs it).

use std::path::PathBuf;
use std::process::Command;

fn page() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../packaging/man/pam_zt.8")
}

#[test]
fn man_page_renders_without_warnings() {
    // -t: the RETURN VALUES table; -ww: every warning; -z: no output.
    let o = Command::new("groff")
        .args(["-man", "-t", "-ww", "-z", "-Tutf8"])
        .arg(page())
        .output()
        .expect("groff (package groff-base) is needed for this test");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.is_empty(), "groff: {err}");
    // man-db's own check (line width of the table, for one) when present.
    if let Ok(o) = Command::new("man")
        .args(["--warnings", "-l", "-Tutf8"])
        .arg(page())
        .env("MANWIDTH", "80")
        .output()
    {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && err.is_empty(), "man: {err}");
    }
}

#[test]
fn man_page_has_every_section_and_argument() {
    let text = std::fs::read_to_string(page()).unwrap();
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "MODULE TYPES PROVIDED",
        "RETURN VALUES",
        "EXAMPLES",
        "FILES",
        "SEE ALSO",
    ] {
        assert!(text.contains(&format!(".SH {section}\n")), "{section}");
    }
    let options = &text[text.find(".SH OPTIONS").unwrap()..text.find(".SH MODULE").unwrap()];
    for flag in ["debug", "use_first_pass", "try_first_pass", "device"] {
        assert!(options.contains(&format!(".B {flag}\n")), "{flag}");
        assert!(pam_zt::args::parse([flag]).is_ok(), "{flag} is an argument");
    }
    for (key, example) in [
        ("prompt", "prompt=T: "),
        ("home_mode", "home_mode=0700"),
        ("state_dir", "state_dir=/x"),
        ("run_dir", "run_dir=/x"),
        ("audit_log", "audit_log=/x/a"),
        ("skel", "skel=/x"),
    ] {
        assert!(options.contains(&format!(".BI {key}= ")), "{key}");
        assert!(pam_zt::args::parse([example]).is_ok(), "{example}");
    }
    for file in [
        "/var/lib/zt/snapshot",
        "/var/lib/zt/private",
        "/var/lib/zt/synced",
        "/run/zt/control.sock",
        "/var/log/zt/auth.jsonl",
    ] {
        assert!(text.contains(&format!(".I {file}\n")), "{file}");
    }
    assert!(text.contains(pam_zt::auth::CONTINUE_PROMPT.trim_end()));
}
