//! What the fuzz target (zt-agent/fuzz) and the corpus replay test run on each
//! input: directory parse, then every identity phase, then the snapshot writer.
//! Directory data is hostile; for any input the agent must neither panic nor
//! exhaust its stack, and whatever `resolve` accepts the writer must accept too
//! (its checks are the last line of defence, never the first: a refusal there
//! fails the whole sync and freezes revocation).

use crate::config::AgentConfig;
use crate::directory::file;
use crate::identity::local::LocalAccounts;
use crate::resolve::{self, IdState, hold_back};

/// Two rule sets: derived names with nested groups, and directory usernames with
/// directory uids and id-keyed overrides (the paths that skip email-derived names).
const CONFIGS: [&str; 2] = [
    r#"
[directory]
kind = "file"
path = "/d.json"
[users]
domains = ["example.com"]
[[groups]]
id = "g-sre"
name = "sre"
login = true
[[groups]]
id = "00000000-0000-0000-0000-00000000a001"
name = "site"
login = true
[[groups]]
id = "g-dev"
name = "developers"
"#,
    r#"
[directory]
kind = "file"
path = "/d.json"
max_removal_percent = 0
[users]
name_from = "username"
directory_uid_range = "10000-59999"
reserved_names = ["acme"]
name_overrides = { "u-alice" = "alice", "u-root" = "root2" }
[[groups]]
id = "g-sre"
name = "sre"
login = true
"#,
];

/// Runs one input through everything; panics only on a broken invariant.
pub fn exercise_directory(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(directory) = file::parse(text, "fuzz.json") else {
        return;
    };
    let mut local = LocalAccounts::default();
    local.add_files(
        "root:x:0:0::/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n",
        "root:x:0:\nsudo:x:27:bob,carol\n",
    );
    for config in CONFIGS {
        let Ok(config) = AgentConfig::parse(config, "fuzz.toml") else {
            panic!("fuzz config must parse");
        };
        let first = resolve::resolve(&config, &directory, &local, &IdState::default());
        if let Err(e) = zt_snapshot::build(&first.content) {
            panic!("resolve produced content the writer refuses: {e}");
        }
        // a second sync against the first: holders and ids carried, and a
        // hold-back of the same directory changes nothing
        let mut second = resolve::resolve(&config, &directory, &local, &first.ids);
        assert_eq!(
            second.content, first.content,
            "a repeated sync changed content"
        );
        let held = hold_back::hold_back_removals(
            &mut second,
            &first.content,
            &directory,
            config.directory.max_removal_percent,
            false,
        );
        assert_eq!(held, None, "nothing is missing from an unchanged directory");
        // and against an empty directory: everyone is missing and kept
        let empty = crate::directory::Directory::default();
        let mut gone = resolve::resolve(&config, &empty, &local, &first.ids);
        let _ = hold_back::hold_back_removals(&mut gone, &first.content, &empty, 0, false);
        if let Err(e) = zt_snapshot::build(&gone.content) {
            panic!("held-back content the writer refuses: {e}");
        }
        let text = serde_json::to_string(&second.ids).unwrap_or_default();
        assert!(
            serde_json::from_str::<IdState>(&text).is_ok(),
            "ids.json must read back"
        );
    }
}
