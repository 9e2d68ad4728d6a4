//! What the module needs to know, behind one small trait so the logic is
//! tested with fixtures (`Fixture`) and runs against the published files in
//! production (`live::Live`).
//!
//! Values are owned copies: a login makes a handful of lookups, and owned
//! values keep the trait free of the mapping's lifetime.

use crate::status::Failure;

/// How a token's identity claim is matched with the directory user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// `email`, through the email index, case-insensitively (ASCII).
    Email,
    /// `preferred_username`: with an `@`, trusted as the person's email and
    /// matched like one; without, refused (the IdP's user names are not
    /// zt's).
    PreferredUsername,
    /// `upn`: as `preferred_username`.
    Upn,
    /// `sub`: must equal the directory user's IdP id exactly.
    Sub,
}

impl Claim {
    pub fn parse(b: &[u8]) -> Option<Claim> {
        match b {
            b"email" => Some(Claim::Email),
            b"preferred_username" => Some(Claim::PreferredUsername),
            b"upn" => Some(Claim::Upn),
            b"sub" => Some(Claim::Sub),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Claim::Email => "email",
            Claim::PreferredUsername => "preferred_username",
            Claim::Upn => "upn",
            Claim::Sub => "sub",
        }
    }
}

/// Issuer kinds as the private file stores them.
pub mod kind {
    pub const CLOUDFLARE_ACCESS: u32 = 1;
    pub const OIDC: u32 = 2;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    pub kind: u32,
    pub iss: String,
    pub claim: Claim,
    pub audiences: Vec<String>,
    /// Tokens must show MFA: `amr` contains "mfa", or `acr` is one of `mfa_acr`.
    pub require_mfa: bool,
    pub mfa_acr: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub kid: String,
    /// The alg the agent recorded for the key (may be empty).
    pub alg: String,
    /// The JWK JSON text.
    pub jwk: Vec<u8>,
}

/// A directory user with what the module decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirUser {
    pub name: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub home: Vec<u8>,
    /// Lowercase.
    pub email: Vec<u8>,
    pub idp_id: Vec<u8>,
    /// Some group among the user's (primary or supplementary) carries the
    /// LOGIN flag in the private file.
    pub in_login_group: bool,
}

pub trait Directory {
    /// The configured issuer whose `iss` is exactly this.
    fn issuer(&self, iss: &str) -> Result<Option<Issuer>, Failure>;
    /// The key `kid` of the issuer `iss`.
    fn key(&self, iss: &str, kid: &str) -> Result<Option<Key>, Failure>;
    /// Asks the agent to refetch the issuer's keys, then reads the newly
    /// published files. Bounded in time; `Err` says why not.
    fn refresh_keys(&mut self, iss: &str) -> Result<(), String>;
    /// `email` must be lowercase.
    fn user_by_email(&self, email: &[u8]) -> Result<Option<DirUser>, Failure>;
    fn user_by_name(&self, name: &[u8]) -> Result<Option<DirUser>, Failure>;
    /// `login.max_offline` in seconds; 0 = no limit.
    fn max_offline_secs(&self) -> Result<u64, Failure>;
    /// Unix seconds of the last good sync.
    fn last_good_sync(&self) -> Result<u64, Failure>;
    /// The directory user whose SSH principals include one of `principals`
    /// (a certificate's): `user` itself when it is one, else the first such
    /// user in directory order. For the audit record of a login to a shared
    /// account.
    fn person(&self, user: &[u8], principals: &[String]) -> Result<Option<Vec<u8>>, Failure>;
}

/// An in-memory directory for tests (and for anyone driving the logic
/// without published files).
#[derive(Debug, Clone, Default)]
pub struct Fixture {
    pub issuers: Vec<Issuer>,
    /// (iss, key)
    pub keys: Vec<(String, Key)>,
    /// Keys that appear when `refresh_keys` is called (a rotation).
    pub keys_after_refresh: Vec<(String, Key)>,
    pub users: Vec<DirUser>,
    pub max_offline: u64,
    pub last_sync: u64,
    /// None: the agent answers; Some(why): it does not.
    pub agent_down: Option<String>,
    pub refreshes: u32,
    /// (user name, its SSH principals)
    pub principals: Vec<(Vec<u8>, Vec<String>)>,
}

impl Directory for Fixture {
    fn issuer(&self, iss: &str) -> Result<Option<Issuer>, Failure> {
        Ok(self.issuers.iter().find(|i| i.iss == iss).cloned())
    }
    fn key(&self, iss: &str, kid: &str) -> Result<Option<Key>, Failure> {
        Ok(self
            .keys
            .iter()
            .find(|(i, k)| i == iss && k.kid == kid)
            .map(|(_, k)| k.clone()))
    }
    fn refresh_keys(&mut self, _iss: &str) -> Result<(), String> {
        self.refreshes += 1;
        if let Some(why) = &self.agent_down {
            return Err(why.clone());
        }
        self.keys.append(&mut self.keys_after_refresh);
        Ok(())
    }
    fn user_by_email(&self, email: &[u8]) -> Result<Option<DirUser>, Failure> {
        Ok(self.users.iter().find(|u| u.email == email).cloned())
    }
    fn user_by_name(&self, name: &[u8]) -> Result<Option<DirUser>, Failure> {
        Ok(self.users.iter().find(|u| u.name == name).cloned())
    }
    fn max_offline_secs(&self) -> Result<u64, Failure> {
        Ok(self.max_offline)
    }
    fn last_good_sync(&self) -> Result<u64, Failure> {
        Ok(self.last_sync)
    }
    fn person(&self, user: &[u8], principals: &[String]) -> Result<Option<Vec<u8>>, Failure> {
        let has = |ps: &[String]| ps.iter().any(|p| principals.contains(p));
        if let Some((n, _)) = self.principals.iter().find(|(n, ps)| n == user && has(ps)) {
            return Ok(Some(n.clone()));
        }
        Ok(self
            .principals
            .iter()
            .find(|(_, ps)| has(ps))
            .map(|(n, _)| n.clone()))
    }
}
