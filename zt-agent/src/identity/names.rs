//! User and group names: derivation from the directory and the POSIX-safety rules.

use crate::config::NameFrom;

/// Longest name we hand out: utmp's ut_user is 32 bytes, and useradd's limit.
pub const MAX_NAME_LEN: usize = 32;

/// Checks a name we are about to hand out. Lowercase ASCII letters, digits, `_`,
/// `-` and `.` (first.last, as Cloudflare puts in certificates); must start with a
/// letter or `_`; at most 32 bytes, longer names are refused, never truncated
/// (a truncated name could equal someone else's). `@` only when the whole email
/// is the name.
pub fn validate(name: &str, allow_at: bool) -> Result<(), String> {
    if name.is_empty() {
        return Err("name is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "name {name:?} is longer than {MAX_NAME_LEN} bytes (names are never truncated)"
        ));
    }
    if !name.is_ascii() {
        return Err(format!("name {name:?} has non-ASCII characters"));
    }
    let first = name.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first == b'_') {
        return Err(format!(
            "name {name:?} must start with a lowercase letter or '_'"
        ));
    }
    if let Some(bad) = name.chars().find(|&c| {
        !(c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(c, '_' | '-' | '.')
            || (allow_at && c == '@'))
    }) {
        return Err(format!(
            "name {name:?} contains {bad:?}, which is not POSIX-safe"
        ));
    }
    if name.ends_with('.') || name.contains("..") {
        return Err(format!("name {name:?} has a trailing or doubled '.'"));
    }
    Ok(())
}

/// Lowercases and trims an email; checks it has one '@' with something on both sides.
pub fn normalise_email(email: &str) -> Result<String, String> {
    let e = email.trim().to_ascii_lowercase();
    match e.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            Ok(e)
        }
        _ => Err(format!("email {email:?} is not of the form local@domain")),
    }
}

/// True if the (normalised) email's domain is one of `domains` (or `domains` is empty).
pub fn domain_allowed(email: &str, domains: &[String]) -> bool {
    if domains.is_empty() {
        return true;
    }
    let domain = email.rsplit_once('@').map_or("", |(_, d)| d);
    domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
}

/// The POSIX name for a directory person, before collision checks. Uppercase is
/// folded to lowercase (IdPs are case-insensitive); everything else that is not
/// POSIX-safe is refused, not rewritten, so two people can never be squeezed
/// into one name by rewriting.
pub fn derive(from: NameFrom, email: &str, username: Option<&str>) -> Result<String, String> {
    let (name, allow_at) = match from {
        NameFrom::EmailLocalPart => (
            email.split_once('@').map_or(email, |(l, _)| l).to_string(),
            false,
        ),
        NameFrom::Email => (email.to_string(), true),
        NameFrom::Username => match username {
            Some(u) if !u.trim().is_empty() => (u.trim().to_string(), false),
            _ => {
                return Err(
                    "the directory has no username for this person (name_from = \"username\")"
                        .into(),
                );
            }
        },
    };
    if !name.is_ascii() {
        return Err(format!("name {name:?} has non-ASCII characters"));
    }
    let name = name.to_ascii_lowercase();
    validate(&name, allow_at)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_part_is_lowercased_and_keeps_dots() {
        assert_eq!(
            derive(NameFrom::EmailLocalPart, "first.last@example.com", None).unwrap(),
            "first.last"
        );
        assert_eq!(
            derive(NameFrom::EmailLocalPart, "alice@example.com", None).unwrap(),
            "alice"
        );
        assert_eq!(
            derive(
                NameFrom::EmailLocalPart,
                &normalise_email(" Alice.Liddell@Example.COM ").unwrap(),
                None
            )
            .unwrap(),
            "alice.liddell"
        );
    }

    #[test]
    fn unsafe_names_are_refused_not_rewritten() {
        for bad in [
            "al ice", "al+ice", "1alice", "-alice", "al/ice", "al:ice", ".alice", "alice.", "a..b",
            "al$",
        ] {
            assert!(
                derive(
                    NameFrom::EmailLocalPart,
                    &format!("{bad}@example.com"),
                    None
                )
                .is_err(),
                "{bad}"
            );
        }
        let e = derive(NameFrom::EmailLocalPart, "zoë@example.com", None).unwrap_err();
        assert!(e.contains("non-ASCII"), "{e}");
    }

    #[test]
    fn length_limit_is_32_bytes_and_never_truncates() {
        let ok = "a".repeat(32);
        assert_eq!(
            derive(NameFrom::EmailLocalPart, &format!("{ok}@x.com"), None).unwrap(),
            ok
        );
        let long = "a".repeat(33);
        let e = derive(NameFrom::EmailLocalPart, &format!("{long}@x.com"), None).unwrap_err();
        assert!(e.contains("longer than 32"), "{e}");
    }

    #[test]
    fn email_and_username_modes() {
        assert_eq!(
            derive(NameFrom::Email, "alice@ex.com", None).unwrap(),
            "alice@ex.com"
        );
        assert_eq!(
            derive(NameFrom::Username, "alice@ex.com", Some("ALiddell")).unwrap(),
            "aliddell"
        );
        assert!(derive(NameFrom::Username, "alice@ex.com", None).is_err());
        assert!(validate("alice@ex.com", false).is_err());
    }

    #[test]
    fn emails_and_domains() {
        assert!(normalise_email("nobody").is_err());
        assert!(normalise_email("a@b@c").is_err());
        assert!(domain_allowed("a@example.com", &["Example.com".into()]));
        assert!(!domain_allowed(
            "a@example.com.evil.org",
            &["example.com".into()]
        ));
        assert!(!domain_allowed(
            "a@sub.example.com",
            &["example.com".into()]
        ));
        assert!(domain_allowed("a@anything.org", &[]));
    }
}
