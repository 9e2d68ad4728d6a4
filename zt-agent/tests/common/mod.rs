//! Fakes shared by the connector tests.
#![allow(dead_code)]

pub mod fake_http;
pub mod graph;

use std::path::Path;

use zt_agent::sync::Paths;

/// A host under `dir`: its own etc/passwd and etc/group (root only), state
/// directory and sudoers.d: never the machine's own.
pub fn host_paths(dir: &Path) -> Paths {
    let root = dir.join("host");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    Paths {
        state_dir: dir.join("state"),
        host_root: root,
        sudoers: zt_agent::sudo::install::Target {
            dir: dir.join("no-sudo"),
            visudo: None,
        },
    }
}
