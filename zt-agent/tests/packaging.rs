//! The files the package ships are loaded as the agent loads them: the default
//! config parses, and the example directory, resolved with it, gives the users
//! its comments promise.

use std::path::{Path, PathBuf};

use zt_agent::config::AgentConfig;
use zt_agent::directory::Directory;
use zt_agent::identity::local::LocalAccounts;
use zt_agent::resolve::{IdState, Resolution, resolve};

fn shipped(rel: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging")
        .join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, text)
}

/// The one call to resolve (its signature is changing): a fresh host with no
/// local accounts and no ids handed out yet.
fn resolve_fresh(config: &AgentConfig, dir: &Directory) -> Resolution {
    resolve(config, dir, &LocalAccounts::default(), &IdState::default())
}

fn load() -> (AgentConfig, Directory) {
    let (path, text) = shipped("agent.toml");
    let config = AgentConfig::parse(&text, &path.display().to_string())
        .unwrap_or_else(|e| panic!("packaging/agent.toml: {e:?}"));
    let (path, text) = shipped("examples/directory.json");
    let dir = zt_agent::directory::file::parse(&text, &path.display().to_string())
        .unwrap_or_else(|e| panic!("packaging/examples/directory.json: {e}"));
    (config, dir)
}

#[test]
fn the_shipped_config_and_example_directory_resolve_to_users() {
    let (config, dir) = load();
    let r = resolve_fresh(&config, &dir);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let mut users: Vec<&str> = r.content.users.iter().map(|u| u.name.as_str()).collect();
    users.sort_unstable();
    // alice directly, bob.smith nested through "On call", both in the login group sre
    assert_eq!(users, ["alice", "bob.smith"], "skipped: {:#?}", r.skipped);
    let sre = r.content.groups.iter().find(|g| g.name == "sre");
    let mut members = sre.map(|g| g.members.clone()).unwrap_or_default();
    members.sort_unstable();
    assert_eq!(members, ["alice", "bob.smith"], "{:#?}", r.content.groups);
    assert!(
        r.content.groups.iter().any(|g| g.name == "developers"),
        "{:#?}",
        r.content.groups
    );
    // and what the example's display names say is left out, is
    for (email, why) in [
        ("carol@example.com", "disabled"),
        ("dave@example.com", "not in a login group"),
        ("erin@contractor.example.net", "other domain"),
        ("Root@example.com", "reserved name"),
    ] {
        assert!(
            r.skipped
                .iter()
                .any(|s| s.email.eq_ignore_ascii_case(email)),
            "{email} ({why}) not reported as skipped: {:#?}",
            r.skipped
        );
    }
}

/// The commented examples in the shipped config are valid too: an admin who
/// uncomments one must not be met with an error the file itself caused.
#[test]
fn the_shipped_configs_commented_examples_parse_when_uncommented() {
    let (path, text) = shipped("agent.toml");
    let mut uncommented = 0;
    let enabled: String = text
        .lines()
        .map(|line| {
            // "# key = value": a commented setting, not prose; "# [table]" and
            // "# [[table]]": the commented table it belongs to
            let is_key =
                |k: &str| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            let example = line.strip_prefix("# ").filter(|rest| {
                rest.split_once(" = ").is_some_and(|(k, _)| is_key(k))
                    || rest
                        .strip_prefix('[')
                        .and_then(|t| t.strip_suffix(']'))
                        .map(|t| t.trim_start_matches('[').trim_end_matches(']'))
                        .is_some_and(is_key)
            });
            match example {
                Some(setting) => {
                    uncommented += 1;
                    format!("{setting}\n")
                }
                None => format!("{line}\n"),
            }
        })
        .collect();
    assert!(
        uncommented >= 3,
        "expected commented examples, found {uncommented}"
    );
    AgentConfig::parse(&enabled, &path.display().to_string())
        .unwrap_or_else(|e| panic!("packaging/agent.toml with its examples enabled: {e:?}"));
}

/// Each connector block of the shipped config ("#   key = value" lines under
/// `[directory]`) parses as the kind it says, put in place of the file kind.
#[test]
fn each_shipped_directory_kind_example_parses() {
    let (path, text) = shipped("agent.toml");
    let file_kind = "kind = \"file\"\npath = \"/etc/zt/directory.json\"\n";
    assert!(text.contains(file_kind));
    let mut blocks: Vec<Vec<&str>> = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        match line.strip_prefix("#   ") {
            Some(setting) if setting.starts_with("kind = ") => {
                blocks.extend(current.take());
                current = Some(vec![setting]);
            }
            Some(setting) if current.is_some() => {
                if let Some(c) = current.as_mut() {
                    c.push(setting);
                }
            }
            _ => blocks.extend(current.take()),
        }
    }
    let kinds: Vec<&str> = blocks.iter().map(|b| b[0]).collect();
    assert_eq!(
        kinds,
        [
            "kind = \"entra\"",
            "kind = \"okta\"",
            "kind = \"google\"",
            "kind = \"scim\"",
            "kind = \"keycloak\""
        ]
    );
    for block in blocks {
        let settings = block.join("\n") + "\n";
        let config = AgentConfig::parse(
            &text.replace(file_kind, &settings),
            &path.display().to_string(),
        )
        .unwrap_or_else(|e| panic!("{}: {e:?}", block[0]));
        let kind = block[0].trim_start_matches("kind = ").trim_matches('"');
        let source = format!("{:?}", config.directory.source).to_lowercase();
        assert!(source.starts_with(kind), "{kind}: {source}");
    }
}
