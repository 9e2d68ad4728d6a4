//! One `[[sudo]]` entry as a sudoers line: checked when agent.toml is read,
//! rendered as `%<group> <right-hand side>`.
//!
//! The checks refuse what would make the line mean something other than "the
//! members of this group may run these commands": a line break or a trailing
//! backslash (a continuation would join the next rule), a leading comma (it
//! would extend the user list: `%sre , bob ALL=...` gives bob the rule), and
//! control characters. Everything else is left to `visudo -cf`, which sees the
//! whole file before it is installed.

/// Longest right-hand side accepted; sudoers has no limit, this only keeps a
/// runaway value out of the file and the log.
pub const MAX_RULE_LEN: usize = 4096;

/// How an entry says what its members may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rights {
    /// `rule = "..."`: the sudoers right-hand side, written as given.
    Line(String),
    /// `run_as`, `commands`, `authenticate`.
    Commands {
        run_as: String,
        commands: Vec<String>,
        authenticate: bool,
    },
}

/// Checks a one-line `rule` (the part after `%group`).
pub fn check_line(rule: &str) -> Result<(), String> {
    let trimmed = rule.trim();
    if trimmed.is_empty() {
        return Err(
            "is empty; write a sudoers right-hand side such as \"ALL=(ALL:ALL) ALL\"".into(),
        );
    }
    if rule.len() > MAX_RULE_LEN {
        return Err(format!("is longer than {MAX_RULE_LEN} bytes"));
    }
    if let Some(c) = rule.chars().find(|c| c.is_control()) {
        return Err(format!(
            "contains the control character {c:?} (one rule is one line)"
        ));
    }
    if trimmed.ends_with('\\') {
        return Err("ends with a backslash, which would continue it onto the next rule".into());
    }
    if rule.split_whitespace().any(|w| w.starts_with('#')) {
        return Err(
            "has a '#' after a space: sudoers reads the rest of the line as a comment (a command \
             would lose its arguments and allow any); write runas ids as (alice,#1000)"
                .into(),
        );
    }
    if trimmed.starts_with(',') {
        return Err(
            "starts with ',', which would add more users to the rule; name the group only".into(),
        );
    }
    if !trimmed.contains('=') {
        return Err(
            "has no '=': a sudoers rule is HOSTS=(RUNAS) COMMANDS, e.g. \"ALL=(ALL:ALL) ALL\""
                .into(),
        );
    }
    Ok(())
}

/// Checks `run_as`: `user`, `user:group` or `:group`, each a plain name,
/// `#<id>` or `ALL`.
pub fn check_run_as(run_as: &str) -> Result<(), String> {
    let (user, group) = match run_as.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (run_as, None),
    };
    if user.is_empty() && group.is_none_or(str::is_empty) {
        return Err("is empty; write a user such as \"root\", or \"user:group\"".into());
    }
    for part in [Some(user), group].into_iter().flatten() {
        if part.is_empty() && group.is_some() {
            continue;
        }
        let id = part.strip_prefix('#').map(|d| d.parse::<u32>().is_ok());
        let plain = !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            && !part.starts_with(['-', '.']);
        if id != Some(true) && !plain {
            return Err(format!(
                "{part:?} is not a user or group name (letters, digits, '_', '-', '.'), \
                 a #id or ALL"
            ));
        }
    }
    Ok(())
}

/// Checks one entry of `commands`: `ALL`, `sudoedit FILE...`, or an absolute
/// path, optionally followed by arguments (then only exactly those arguments
/// are allowed; `""` allows none).
pub fn check_command(command: &str) -> Result<(), String> {
    if command.len() > MAX_RULE_LEN {
        return Err(format!("is longer than {MAX_RULE_LEN} bytes"));
    }
    if let Some(c) = command.chars().find(|c| c.is_control()) {
        return Err(format!("contains the control character {c:?}"));
    }
    let command = command.trim();
    if command == "ALL" {
        return Ok(());
    }
    let (path, args) = split_command(command);
    if path == "sudoedit" {
        return match args {
            Some(a) if a.split_whitespace().all(|f| f.starts_with('/')) => Ok(()),
            _ => Err("sudoedit needs the absolute paths of the files it may edit".into()),
        };
    }
    if !path.starts_with('/') {
        return Err(format!(
            "{path:?} is not an absolute path (sudo would refuse it; write e.g. \"/usr/bin/systemctl restart app\")"
        ));
    }
    if path.contains(['\\', ',', ':', '=']) {
        return Err(format!(
            "the path {path:?} has one of \\ , : = (sudoers would split or escape it)"
        ));
    }
    if path.contains(['*', '?', '[']) {
        return Err(format!(
            "{path:?} has a wildcard: it would allow every matching program (shells too); \
             list the programs"
        ));
    }
    if path.ends_with('/') {
        return Err(format!(
            "{path:?} ends with '/': that allows every program in the directory; list the programs"
        ));
    }
    Ok(())
}

fn split_command(command: &str) -> (&str, Option<&str>) {
    match command.split_once(char::is_whitespace) {
        Some((p, a)) => (p, Some(a.trim()).filter(|a| !a.is_empty())),
        None => (command, None),
    }
}

/// A command as sudoers wants it: the arguments' `,` `:` `=` `\` `#` escaped
/// (they are sudoers syntax; `#` starts a comment), and a leading `^` escaped (it would make the
/// arguments a regular expression). Wildcards stay: an admin who writes `*`
/// means it.
fn command_text(command: &str) -> String {
    let (path, args) = split_command(command.trim());
    let Some(args) = args else {
        return path.to_string();
    };
    let mut out = format!("{path} ");
    if args.starts_with('^') {
        out.push('\\');
    }
    for c in args.chars() {
        // '#' after a space would start a comment: the command would lose
        // its arguments and allow any
        if matches!(c, ',' | ':' | '=' | '\\' | '#') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A group name as a sudoers word, `%` prefixed. The agent's names are
/// already plain (lowercase letters, digits, `_`, `-`, `.`); anything sudoers
/// treats as syntax is escaped all the same, so the line can never name
/// another principal.
pub fn group_word(name: &str) -> String {
    let mut out = String::from("%");
    for c in name.chars() {
        if matches!(
            c,
            '!' | '=' | ':' | ',' | '(' | ')' | '\\' | '#' | '"' | ' '
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The sudoers line for `group_name`'s members.
pub fn render(group_name: &str, rights: &Rights) -> String {
    let who = group_word(group_name);
    match rights {
        Rights::Line(rule) => format!("{who} {}", rule.trim()),
        Rights::Commands {
            run_as,
            commands,
            authenticate,
        } => {
            let tag = if *authenticate { "" } else { "NOPASSWD: " };
            let list: Vec<String> = commands.iter().map(|c| command_text(c)).collect();
            format!("{who} ALL=({run_as}) {tag}{}", list.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_that_could_reach_past_its_group_is_refused() {
        assert!(check_line("ALL=(ALL:ALL) ALL").is_ok());
        assert!(check_line("ALL = (root) NOPASSWD: /usr/bin/id").is_ok());
        for (bad, why) in [
            ("", "is empty"),
            ("   ", "is empty"),
            ("ALL=(ALL) ALL\nbob ALL=(ALL) ALL", "control character"),
            ("ALL=(ALL) ALL\r", "control character"),
            ("ALL=(ALL) ALL \\", "backslash"),
            (", bob ALL=(ALL) NOPASSWD: ALL", "more users"),
            ("ALL=(root) NOPASSWD: /usr/bin/cat #x", "comment"),
            ("  ,bob ALL=(ALL) ALL", "more users"),
            ("ALL", "no '='"),
        ] {
            let e = check_line(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(check_line(&format!("ALL=(ALL) {}", "a".repeat(MAX_RULE_LEN))).is_err());
    }

    #[test]
    fn run_as_is_a_user_a_group_or_both() {
        for ok in [
            "root", "ALL", "root:adm", ":adm", "ALL:ALL", "#0", "www-data", "app.svc",
        ] {
            assert!(check_run_as(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ":",
            "root,bob",
            "root) ALL, (bob",
            "-x",
            "root:a b",
            "#x",
        ] {
            assert!(check_run_as(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commands_are_absolute_paths_all_or_sudoedit() {
        for ok in [
            "/usr/bin/systemctl restart app",
            "/usr/bin/journalctl -u app",
            "/usr/bin/id",
            "/usr/bin/id \"\"",
            "ALL",
            "sudoedit /etc/app.conf",
        ] {
            assert!(check_command(ok).is_ok(), "{ok}");
        }
        for bad in [
            "systemctl restart app",
            "./run",
            "/usr/bin/",
            "/usr/bin/*",
            "/usr/bin/s?",
            "/usr/bin/a,b",
            "sudoedit",
            "sudoedit app.conf",
            "/usr/bin/id\n/bin/sh",
        ] {
            assert!(check_command(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rendering_names_the_group_and_escapes_sudoers_syntax_in_arguments() {
        let line = render("sre", &Rights::Line(" ALL=(ALL:ALL) ALL ".into()));
        assert_eq!(line, "%sre ALL=(ALL:ALL) ALL");
        let line = render(
            "app-ops",
            &Rights::Commands {
                run_as: "root".into(),
                commands: vec![
                    "/usr/bin/systemctl restart app".into(),
                    "/usr/bin/journalctl -u app".into(),
                    "/usr/bin/env A=1,B:2\\x".into(),
                    "/usr/bin/grep ^root /etc/passwd".into(),
                    "/usr/bin/cat #x".into(),
                ],
                authenticate: false,
            },
        );
        assert_eq!(
            line,
            "%app-ops ALL=(root) NOPASSWD: /usr/bin/systemctl restart app, \
             /usr/bin/journalctl -u app, /usr/bin/env A\\=1\\,B\\:2\\\\x, \
             /usr/bin/grep \\^root /etc/passwd, /usr/bin/cat \\#x"
        );
        let line = render(
            "dev",
            &Rights::Commands {
                run_as: "ALL:ALL".into(),
                commands: vec!["ALL".into()],
                authenticate: true,
            },
        );
        assert_eq!(line, "%dev ALL=(ALL:ALL) ALL");
        assert_eq!(group_word("a,b=c"), "%a\\,b\\=c");
    }
}
