//! Fleet signing keys: `zt-agent fleet-key new FILE` writes the Ed25519 seed
//! (base64, one line) to FILE (0600, created, never overwritten) and the public
//! key to FILE.pub (0644); hosts list the public key in `public_keys`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::trusted_file;

/// A public key as configs and messages show it: standard base64 of its 32 bytes.
pub fn encode_public(key: &[u8; 32]) -> String {
    STANDARD.encode(key)
}

/// Parses one `public_keys` entry.
pub fn parse_public(text: &str) -> Result<VerifyingKey, String> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|e| format!("{text:?} is not base64: {e}"))?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
        format!(
            "{text:?} is {} bytes, an Ed25519 public key is 32 (the line of FILE.pub)",
            b.len()
        )
    })?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("{text:?} is not an Ed25519 key: {e}"))
}

/// Reads the signing key (a secret: root-owned, not readable by others).
pub fn load(path: &Path) -> Result<SigningKey, String> {
    let text = trusted_file::read(path, trusted_file::Kind::Secret)?;
    let bytes = STANDARD.decode(text.trim()).map_err(|e| {
        format!(
            "{}: not a key written by `zt-agent fleet-key new`: {e}",
            path.display()
        )
    })?;
    let seed: [u8; 32] = bytes.try_into().map_err(|_| {
        format!(
            "{}: not a key written by `zt-agent fleet-key new` (not 32 bytes)",
            path.display()
        )
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// `FILE.pub` beside `FILE`.
pub fn public_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Makes a new key: FILE (0600) and FILE.pub (0644). Refuses to replace an
/// existing FILE (a lost key locks every host out until they are given the
/// new public key). Returns the public key as hosts configure it.
pub fn new_key(path: &Path) -> Result<String, String> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| format!("no randomness from the kernel: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let public = encode_public(key.verifying_key().as_bytes());
    let write = |p: &Path, text: &str, mode: u32| -> Result<(), String> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(p)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => format!(
                    "{}: already exists; refusing to replace a key (move it away first)",
                    p.display()
                ),
                _ => format!("{}: cannot create: {e}", p.display()),
            })?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("{}: cannot write: {e}", p.display()))
    };
    let pub_path = public_path(path);
    if pub_path.exists() {
        return Err(format!(
            "{}: already exists; refusing to replace a key (move it away first)",
            pub_path.display()
        ));
    }
    write(path, &format!("{}\n", STANDARD.encode(seed)), 0o600)?;
    write(&pub_path, &format!("{public}\n"), 0o644)?;
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_key_loads_and_matches_its_public_half() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("fleet.key");
        let public = new_key(&p).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(&public_path(&p)), 0o644);
        let key = load(&p).unwrap();
        assert_eq!(parse_public(&public).unwrap(), key.verifying_key());
        let on_disk = std::fs::read_to_string(public_path(&p)).unwrap();
        assert_eq!(on_disk.trim(), public);
        let e = new_key(&p).unwrap_err();
        assert!(e.contains("refusing to replace"), "{e}");
    }

    #[test]
    fn bad_public_keys_say_why() {
        assert!(
            parse_public("not base64!")
                .unwrap_err()
                .contains("not base64")
        );
        assert!(parse_public("AAAA").unwrap_err().contains("32"));
    }
}
