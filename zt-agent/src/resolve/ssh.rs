//! Phase 7: SSH principals and public keys of the published users.
//!
//! The principal rule (README, "SSH certificates"):
//! - each configured form (`[ssh] principals`) gives a person one principal:
//!   the email's local part, the whole email, or the directory `username`;
//! - principals are folded to lowercase (compared case-insensitively);
//! - a principal that is not a valid zt name for its form (the email form may
//!   contain one '@') is refused, with a problem;
//! - a principal two people would get (alice@a.com and alice@b.com) goes to
//!   the one whose user NAME equals it, else to nobody, with a problem: never
//!   to two people.

use std::collections::BTreeMap;

use zt_snapshot::UserEntry;

use crate::config::NameFrom;
use crate::directory::DirUser;
use crate::identity::names;

/// Most keys kept per person; the rest are dropped with a problem.
pub const MAX_KEYS: usize = 32;
/// Longest key line accepted (an RSA 16384-bit key is about 2,800 bytes).
pub const MAX_KEY_LEN: usize = 8192;

/// The principal of `form` for a person, lowercase; None when the person has
/// no such field.
pub fn principal_of(form: NameFrom, email: &str, username: Option<&str>) -> Option<String> {
    let p = match form {
        NameFrom::EmailLocalPart => email.split_once('@').map(|(l, _)| l)?.to_string(),
        NameFrom::Email => email.to_string(),
        NameFrom::Username => username?.to_string(),
    };
    (!p.is_empty()).then(|| p.to_ascii_lowercase())
}

/// Fills `principals` and `ssh_keys` of every user (`dir_user` finds a user's
/// directory entry by IdP id); returns the problems.
pub fn assign<'d>(
    forms: &[NameFrom],
    users: &mut [UserEntry],
    dir_user: impl Fn(&str) -> Option<&'d DirUser>,
) -> Vec<String> {
    let mut problems = Vec::new();
    // principal -> indexes of the users who would get it
    let mut claims: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, u) in users.iter_mut().enumerate() {
        let d = dir_user(&u.idp_id);
        for &form in forms {
            let Some(p) = principal_of(form, &u.email, d.and_then(|d| d.username.as_deref()))
            else {
                continue;
            };
            if let Err(why) = names::validate(&p, form == NameFrom::Email) {
                problems.push(format!("user {:?}: SSH principal refused: {why}", u.name));
                continue;
            }
            let c = claims.entry(p).or_default();
            if !c.contains(&i) {
                c.push(i);
            }
        }
        u.ssh_keys = match d {
            Some(d) => keys_of(&u.name, &d.ssh_keys, &mut problems),
            None => Vec::new(),
        };
        u.principals.clear();
    }
    for (p, who) in claims {
        let winner = if who.len() == 1 {
            Some(who[0])
        } else {
            let w = who.iter().copied().find(|&i| users[i].name == p);
            let names: Vec<&str> = who.iter().map(|&i| users[i].name.as_str()).collect();
            problems.push(match w {
                Some(w) => format!(
                    "SSH principal {p:?} would belong to {names:?}; given to {:?}, whose user name it is",
                    users[w].name
                ),
                None => format!(
                    "SSH principal {p:?} would belong to {names:?}; given to nobody"
                ),
            });
            w
        };
        if let Some(i) = winner {
            users[i].principals.push(p);
        }
    }
    for u in users.iter_mut() {
        u.principals.sort();
    }
    problems
}

/// The usable key lines of a person, each checked; a bad one is dropped with a problem.
pub fn keys_of(user: &str, lines: &[String], problems: &mut Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if out.len() == MAX_KEYS {
            problems.push(format!(
                "user {user:?}: {} SSH keys; only the first {MAX_KEYS} usable ones are kept",
                lines.len()
            ));
            break;
        }
        match check_key(line) {
            Ok(k) => {
                if !out.contains(&k) {
                    out.push(k);
                }
            }
            Err(why) => problems.push(format!("user {user:?}: SSH key {} left out: {why}", i + 1)),
        }
    }
    out
}

const KEY_TYPES: [&str; 8] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-dss",
];

/// Checks one OpenSSH public key line (`type base64 [comment]`, no options)
/// and returns it trimmed. The key blob must decode and name the same type.
pub fn check_key(line: &str) -> Result<String, String> {
    let line = line.trim();
    if line.len() > MAX_KEY_LEN {
        return Err(format!("longer than {MAX_KEY_LEN} bytes"));
    }
    if line.chars().any(|c| c.is_control()) {
        return Err("contains a control character or newline".into());
    }
    let mut parts = line.splitn(3, ' ');
    let kind = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    if !KEY_TYPES[..7].contains(&kind) {
        return Err(format!(
            "key type {:?} is not one of ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa, sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com",
            kind.chars().take(40).collect::<String>()
        ));
    }
    let blob = base64_decode(body).ok_or("the key is not valid base64")?;
    let named = blob
        .get(..4)
        .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
        .and_then(|n| blob.get(4..4 + n));
    if named != Some(kind.as_bytes()) {
        return Err(format!("the key blob is not a {kind} key"));
    }
    Ok(line.to_string())
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.is_empty() || !b.len().is_multiple_of(4) {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    let chunks = b.len() / 4;
    for (ci, c) in b.chunks(4).enumerate() {
        let pad = c.iter().rev().take_while(|&&x| x == b'=').count();
        if pad > 2 || (pad > 0 && ci + 1 != chunks) {
            return None;
        }
        let mut n = 0u32;
        for &x in &c[..4 - pad] {
            n = (n << 6) | val(x)?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";

    fn user(name: &str, email: &str, id: &str) -> UserEntry {
        UserEntry {
            name: name.into(),
            uid: 1,
            gid: 1,
            gecos: String::new(),
            home: String::new(),
            shell: String::new(),
            email: email.into(),
            idp_id: id.into(),
            principals: Vec::new(),
            ssh_keys: Vec::new(),
        }
    }

    #[test]
    fn key_lines_are_checked() {
        assert_eq!(check_key(&format!("  {ED}\n")).unwrap(), ED);
        for bad in [
            "ssh-foo AAAA",
            "ssh-ed25519 !!!!",
            "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ== x",
            "ssh-ed25519",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a\rb",
            "command=\"x\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5",
        ] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
        assert!(check_key(&format!("{ED} {}", "x".repeat(MAX_KEY_LEN))).is_err());
        let mut problems = Vec::new();
        let many: Vec<String> = (0..40).map(|i| format!("{ED}{i}")).collect();
        assert_eq!(keys_of("a", &many, &mut problems).len(), MAX_KEYS);
        assert_eq!(problems.len(), 1);
        let mut problems = Vec::new();
        let kept = keys_of("a", &["junk".into(), ED.into()], &mut problems);
        assert_eq!((kept.len(), problems.len()), (1, 1));
    }

    #[test]
    fn principals_follow_the_rule() {
        let dir = [DirUser {
            id: "u-ann".into(),
            email: "ann@a.com".into(),
            display_name: None,
            enabled: true,
            username: Some("Ann.Smith".into()),
            uid: None,
            created: None,
            ssh_keys: vec!["junk".into(), ED.into()],
        }];
        let find = |id: &str| dir.iter().find(|d| d.id == id);
        // one local part on two domains: the person named "alice" keeps it
        let mut users = vec![
            user("alice", "alice@a.com", "u-1"),
            user("alice2", "Alice@b.com", "u-2"),
            user("bob", "bob@a.com", "u-3"),
            user("bob2", "bob@b.com", "u-4"),
            user("ann", "ann@a.com", "u-ann"),
            user("weird", "We!rd@a.com", "u-5"),
        ];
        let problems = assign(
            &[
                NameFrom::EmailLocalPart,
                NameFrom::Email,
                NameFrom::Username,
            ],
            &mut users,
            find,
        );
        let p = |i: usize| users[i].principals.clone();
        assert_eq!(p(0), ["alice", "alice@a.com"]);
        assert_eq!(p(1), ["alice@b.com"]);
        // bob on two domains and nobody is named "bob"... bob is: users[2]
        assert_eq!(p(2), ["bob", "bob@a.com"]);
        assert_eq!(p(3), ["bob@b.com"]);
        assert_eq!(p(4), ["ann", "ann.smith", "ann@a.com"]);
        assert!(p(5).is_empty());
        assert_eq!(users[4].ssh_keys, [ED]);
        assert!(
            problems
                .iter()
                .any(|m| m.contains("\"alice\"") && m.contains("user name"))
        );
        assert!(problems.iter().any(|m| m.contains("refused")));
        // nobody is named after the contested principal: nobody gets it
        let mut users = vec![
            user("carol1", "carol@a.com", "u-1"),
            user("carol2", "carol@b.com", "u-2"),
        ];
        let problems = assign(&[NameFrom::EmailLocalPart], &mut users, |_| None);
        assert!(users.iter().all(|u| u.principals.is_empty()));
        assert!(problems[0].contains("nobody"));
    }
}
