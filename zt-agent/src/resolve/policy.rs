//! The identity rules' view of agent.toml: built once from a validated
//! `AgentConfig`, as plain values (no toml spans), so every phase of `resolve`
//! can be tested with a `Policy` written in a few lines.

use std::collections::{HashMap, HashSet};

use crate::config::{AgentConfig, NameFrom};
use crate::identity::idmap::{self, Pool};

/// One configured directory group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRule {
    /// The IdP's immutable object id.
    pub id: String,
    /// Its POSIX name on this host.
    pub name: String,
    /// Members may log in here.
    pub login: bool,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name_from: NameFrom,
    /// Allowed email domains; empty = any.
    pub domains: Vec<String>,
    /// Home directory template containing `{name}`.
    pub home: String,
    pub shell: String,
    /// Lowercased IdP id or email -> user name.
    pub name_overrides: HashMap<String, String>,
    /// Names reserved by agent.toml on top of the built-in list.
    pub reserved_names: Vec<String>,
    /// Where uids come from (zt's range, and the accepted directory range).
    pub user_ids: Pool,
    /// Where gids of configured groups come from.
    pub group_ids: Pool,
    pub groups: Vec<GroupRule>,
    /// The configured groups' POSIX names, for the per-person "is this a group's
    /// name" check (a config may list 20,000 groups: no linear scan per person).
    pub group_names: HashSet<String>,
    /// Share of users a sync may remove as missing before removals are held back.
    pub max_removal_percent: u8,
    /// `[ssh] principals`: the principal forms each user gets.
    pub principal_forms: Vec<NameFrom>,
    /// `[[shared_accounts]]`: name and IdP group ids.
    pub shared_accounts: Vec<zt_snapshot::SharedAccountEntry>,
}

impl Policy {
    pub fn from_config(config: &AgentConfig) -> Policy {
        let users = &config.users;
        Policy {
            name_from: users.name_from,
            domains: config.domains().to_vec(),
            home: users.home.clone(),
            shell: users.shell.clone(),
            name_overrides: users
                .name_overrides
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.get_ref().clone()))
                .collect(),
            reserved_names: users
                .reserved_names
                .iter()
                .map(|n| n.get_ref().clone())
                .collect(),
            user_ids: Pool {
                kind: "user",
                range: idmap::USER_IDS,
                directory_range: config.directory_uid_range(),
            },
            group_ids: Pool {
                kind: "group",
                range: idmap::GROUP_IDS,
                directory_range: None,
            },
            groups: config
                .groups
                .iter()
                .map(|g| GroupRule {
                    id: g.id.get_ref().clone(),
                    name: g.name.get_ref().clone(),
                    login: g.login,
                })
                .collect(),
            group_names: config
                .groups
                .iter()
                .map(|g| g.name.get_ref().clone())
                .collect(),
            max_removal_percent: config.directory.max_removal_percent,
            principal_forms: config.ssh.principals.get_ref().clone(),
            shared_accounts: config
                .shared_accounts
                .iter()
                .map(|a| zt_snapshot::SharedAccountEntry {
                    name: a.name.get_ref().clone(),
                    groups: a
                        .groups
                        .get_ref()
                        .iter()
                        .map(|g| g.get_ref().clone())
                        .collect(),
                })
                .collect(),
        }
    }

    /// The override for a person, by IdP id first, then by (normalised) email.
    pub fn name_override(&self, idp_id: &str, email: &str) -> Option<&str> {
        self.name_overrides
            .get(&idp_id.to_ascii_lowercase())
            .or_else(|| self.name_overrides.get(email))
            .map(String::as_str)
    }

    /// The home directory for a user name.
    pub fn home_of(&self, name: &str) -> String {
        self.home.replace("{name}", name)
    }
}
