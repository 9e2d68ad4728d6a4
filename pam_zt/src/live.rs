//! `Directory` over the published files, read through zt-published's trusted
//! read path (`open_pair`: owner/mode checks on the state directory and the
//! files, fd-relative opens, the twin check of public and private file).

use std::path::{Path, PathBuf};
use std::time::Duration;

use zt_published::Published;
use zt_snapshot::Pair;
use zt_snapshot::format::group_flags;

use crate::directory::{Claim, DirUser, Directory, Issuer, Key};
use crate::status::Failure;

/// How long a login waits for the agent to refetch keys for an unknown kid.
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(3);

/// The agent's control-socket call (`zt_published::control::request_key_refresh`;
/// a parameter so tests can stand in for the agent).
pub type RefreshFn = fn(run_dir: &Path, iss: &str, timeout: Duration) -> Result<u64, String>;

pub struct Live {
    state_dir: PathBuf,
    run_dir: PathBuf,
    published: Published,
    refresh: RefreshFn,
}

impl Live {
    pub fn open(state_dir: &Path, run_dir: &Path, refresh: RefreshFn) -> Result<Live, Failure> {
        Ok(Live {
            state_dir: state_dir.to_owned(),
            run_dir: run_dir.to_owned(),
            published: zt_published::open_pair(state_dir)?,
            refresh,
        })
    }

    fn pair(&self) -> Result<Pair<'_>, Failure> {
        self.published
            .pair()
            .map_err(|e| Failure::Unavailable(format!("snapshot and private file unusable: {e}")))
    }

    fn dir_user(pair: &Pair<'_>, u: zt_snapshot::User<'_>) -> Result<DirUser, Failure> {
        let p = pair.private.user(u.index)?;
        let mut in_login_group = false;
        for gid in std::iter::once(u.gid).chain(u.groups.iter()) {
            if let Some(g) = pair.public.group_by_gid(gid)?
                && pair.private.group(g.index)?.flags & group_flags::LOGIN != 0
            {
                in_login_group = true;
                break;
            }
        }
        Ok(DirUser {
            name: u.name.to_vec(),
            uid: u.uid,
            gid: u.gid,
            home: u.home.to_vec(),
            email: p.email.to_vec(),
            idp_id: p.idp_id.to_vec(),
            in_login_group,
        })
    }
}

fn text(b: &[u8]) -> Result<String, Failure> {
    String::from_utf8(b.to_vec())
        .map_err(|_| Failure::Unavailable("issuer data is not UTF-8".into()))
}

impl Directory for Live {
    fn issuer(&self, iss: &str) -> Result<Option<Issuer>, Failure> {
        let pair = self.pair()?;
        let Some(i) = pair.private.issuer_by_iss(iss.as_bytes())? else {
            return Ok(None);
        };
        let claim = Claim::parse(i.claim).ok_or_else(|| {
            Failure::Unavailable(format!(
                "issuer {iss}: unknown claim {:?}",
                String::from_utf8_lossy(i.claim)
            ))
        })?;
        let mut audiences = Vec::new();
        for a in i.audiences() {
            audiences.push(text(a?)?);
        }
        let mfa_acr = text(i.mfa_acr)?
            .split('\n')
            .filter(|a| !a.is_empty())
            .map(Into::into)
            .collect();
        Ok(Some(Issuer {
            kind: i.kind,
            iss: text(i.iss)?,
            claim,
            audiences,
            require_mfa: i.require_mfa,
            mfa_acr,
        }))
    }

    fn key(&self, iss: &str, kid: &str) -> Result<Option<Key>, Failure> {
        let pair = self.pair()?;
        let Some(i) = pair.private.issuer_by_iss(iss.as_bytes())? else {
            return Ok(None);
        };
        let Some(k) = i.key_by_kid(kid.as_bytes())? else {
            return Ok(None);
        };
        Ok(Some(Key {
            kid: text(k.kid)?,
            alg: text(k.alg)?,
            jwk: k.jwk.to_vec(),
        }))
    }

    fn refresh_keys(&mut self, iss: &str) -> Result<(), String> {
        (self.refresh)(&self.run_dir, iss, REFRESH_TIMEOUT)?;
        // The agent published new files: read them.
        self.published = zt_published::open_pair(&self.state_dir)
            .map_err(|e| format!("snapshot unusable after the refresh: {e}"))?;
        Ok(())
    }

    fn user_by_email(&self, email: &[u8]) -> Result<Option<DirUser>, Failure> {
        let pair = self.pair()?;
        match pair.user_by_email(email)? {
            Some((u, _)) => Ok(Some(Self::dir_user(&pair, u)?)),
            None => Ok(None),
        }
    }

    fn user_by_name(&self, name: &[u8]) -> Result<Option<DirUser>, Failure> {
        // The public snapshot alone says whether the name is a directory
        // user; the private file is needed to decide anything about one.
        let public = self.published.snapshot()?;
        if public.user_by_name(name)?.is_none() {
            return Ok(None);
        }
        let pair = self.pair()?;
        match pair.public.user_by_name(name)? {
            Some(u) => Ok(Some(Self::dir_user(&pair, u)?)),
            None => Ok(None),
        }
    }

    fn person(&self, user: &[u8], principals: &[String]) -> Result<Option<Vec<u8>>, Failure> {
        let pair = self.pair()?;
        let carries = |index: usize| -> Result<bool, Failure> {
            let list = pair.private.principals(index)?;
            for i in 0..list.len() {
                let p = list.get(i)?;
                if principals.iter().any(|c| c.as_bytes() == p) {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        // The usual case first: a person logging in as themselves.
        if let Some(u) = pair.public.user_by_name(user)?
            && carries(u.index)?
        {
            return Ok(Some(u.name.to_vec()));
        }
        for index in 0..pair.public.user_count() {
            if carries(index)? {
                return Ok(Some(pair.public.user(index)?.name.to_vec()));
            }
        }
        Ok(None)
    }

    fn max_offline_secs(&self) -> Result<u64, Failure> {
        Ok(self.pair()?.private.policy().max_offline_secs)
    }

    fn last_good_sync(&self) -> Result<u64, Failure> {
        // An unreadable heartbeat counts as none: the private file's own
        // time is older, so the check only gets stricter.
        let heartbeat = zt_snapshot::StateDir::open(&self.state_dir)
            .ok()
            .and_then(|s| s.read_last_good_sync().ok().flatten());
        Ok(zt_snapshot::last_good_sync(
            heartbeat,
            self.pair()?.private.synced_at(),
        ))
    }
}
