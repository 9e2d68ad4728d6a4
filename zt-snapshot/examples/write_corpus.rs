//! Writes real files as the fuzz corpus seed: each built pair as a public
//! seed, a private seed and a pair seed (see `zt_snapshot::fuzzing`):
//! `cargo run -p zt-snapshot --example write_corpus -- zt-snapshot/fuzz/corpus/snapshot_reader`
use zt_snapshot::format::{group_flags, issuer_kind};
use zt_snapshot::fuzzing::pair_input;
use zt_snapshot::{Content, GroupEntry, IssuerEntry, KeyEntry, PolicyEntry, UserEntry, build};

fn user(name: &str, uid: u32) -> UserEntry {
    UserEntry {
        name: name.into(),
        uid,
        gid: uid,
        gecos: format!("{name} gecos"),
        home: format!("/home/{name}"),
        shell: "/bin/bash".into(),
        email: format!("{name}@example.com"),
        idp_id: format!("id-{name}"),
        principals: Vec::new(),
        ssh_keys: Vec::new(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "corpus".into());
    std::fs::create_dir_all(&dir)?;
    let mut sets = vec![Content::default()];
    for n in [1usize, 3, 12] {
        let users: Vec<UserEntry> = (0..n)
            .map(|i| user(&format!("u{i}"), 0x7000_0000 + i as u32))
            .collect();
        let mut groups = vec![GroupEntry {
            name: "sre".into(),
            gid: 0x7800_0000,
            flags: group_flags::LOGIN,
            idp_id: "g-sre".into(),
            members: users.iter().map(|u| u.name.clone()).collect(),
        }];
        groups.extend(users.iter().map(|u| GroupEntry {
            name: u.name.clone(),
            gid: u.gid,
            flags: group_flags::USER_PRIVATE,
            idp_id: String::new(),
            members: vec![],
        }));
        let issuers = (0..n.min(3))
            .map(|i| IssuerEntry {
                kind: if i == 0 {
                    issuer_kind::CLOUDFLARE_ACCESS
                } else {
                    issuer_kind::OIDC
                },
                iss: format!("https://team{i}.cloudflareaccess.com"),
                claim: "email".into(),
                audiences: (0..=i).map(|a| format!("aud-{i}-{a}")).collect(),
                keys: (0..i + 1)
                    .map(|k| KeyEntry {
                        kid: format!("kid-{i}-{k}"),
                        alg: "RS256".into(),
                        jwk: format!(
                            r#"{{"kty":"RSA","kid":"kid-{i}-{k}","alg":"RS256","n":"AQAB","e":"AQAB"}}"#
                        ),
                    })
                    .collect(),
                require_mfa: i == 1,
                mfa_acr: if i == 1 { vec!["2".into()] } else { vec![] },
            })
            .collect();
        sets.push(Content {
            generation: n as u64,
            synced_at: 1_700_000_000,
            users,
            groups,
            issuers,
            policy: PolicyEntry {
                max_offline_secs: 3 * 86_400,
            },
            shared_accounts: Vec::new(),
            local_grants: Vec::new(),
        });
    }
    for (i, c) in sets.iter().enumerate() {
        let built = build(c)?;
        std::fs::write(format!("{dir}/seed-{i}"), &built.public)?;
        std::fs::write(format!("{dir}/private-{i}"), &built.private)?;
        std::fs::write(
            format!("{dir}/pair-{i}"),
            pair_input(&built.public, &built.private),
        )?;
    }
    Ok(())
}
