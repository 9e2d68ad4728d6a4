//! The pointer (`current.json`) is signed too: a host checks it before it
//! downloads anything (a forged size or an older serial costs nothing), and
//! a publisher trusts a served pointer's serial and validity only when its
//! own key signed it (a forged `"serial": 2^64-2` must not become the
//! fleet's next serial, nor a forged `valid_until` stop publications).
//!
//! The signature is Ed25519 over a fixed context and the fields, one per
//! line, in a fixed order: no JSON canonicalisation is needed, and a field
//! holding a line break is refused outright.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::publish::Pointer;

const CONTEXT: &str = "zt-fleet-pointer-v1";

/// The bytes a pointer's signature covers; `None` when a field could be
/// confused with the next one.
fn signed_text(p: &Pointer) -> Option<String> {
    let fields = [&p.object, &p.sha256, &p.content, &p.key];
    if fields.iter().any(|f| f.contains('\n')) {
        return None;
    }
    Some(format!(
        "{CONTEXT}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
        p.format,
        p.serial,
        p.object,
        p.sha256,
        p.size,
        p.published_at,
        p.valid_until,
        p.content,
        p.key
    ))
}

/// Signs `p` (its `key` must already name `key`'s public half).
pub fn sign(p: &mut Pointer, key: &SigningKey) -> Result<(), String> {
    let text = signed_text(p).ok_or("a pointer field holds a line break")?;
    p.sig = STANDARD.encode(key.sign(text.as_bytes()).to_bytes());
    Ok(())
}

/// Checks that one of `trusted` signed `p`, and that `p.key` names it.
pub fn verify(p: &Pointer, trusted: &[VerifyingKey]) -> Result<(), String> {
    let text = signed_text(p).ok_or("a field holds a line break")?;
    let sig = STANDARD
        .decode(p.sig.as_bytes())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or("it is not signed (no 64-byte signature)")?;
    let key = trusted
        .iter()
        .find(|k| super::sign::encode_public(k.as_bytes()) == p.key)
        .ok_or_else(|| {
            format!(
                "it is signed by an unknown key {:?} (not one of public_keys)",
                p.key
            )
        })?;
    key.verify(text.as_bytes(), &sig)
        .map_err(|_| "its signature does not verify".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointer(key: &SigningKey) -> Pointer {
        Pointer {
            format: 1,
            serial: 1_800_000_000,
            object: "objects/1800000000-abcd.ztf".into(),
            sha256: "ab".repeat(32),
            size: 1234,
            published_at: 1_800_000_000,
            valid_until: 1_800_604_800,
            content: "cd".repeat(32),
            key: super::super::sign::encode_public(key.verifying_key().as_bytes()),
            sig: String::new(),
        }
    }

    #[test]
    fn every_field_is_covered_and_only_trusted_keys_sign() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let mut p = pointer(&key);
        assert!(verify(&p, &[key.verifying_key()]).is_err(), "unsigned");
        sign(&mut p, &key).unwrap();
        verify(&p, &[other.verifying_key(), key.verifying_key()]).unwrap();
        assert!(verify(&p, &[other.verifying_key()]).is_err());
        let changes: [fn(&mut Pointer); 9] = [
            |p| p.format += 1,
            |p| p.serial = u64::MAX - 1,
            |p| p.object.push('x'),
            |p| p.sha256.replace_range(0..1, "0"),
            |p| p.size = 512 << 20,
            |p| p.published_at += 1,
            |p| p.valid_until = u64::MAX,
            |p| p.content.push('0'),
            |p| p.key = super::super::sign::encode_public(&[9; 32]),
        ];
        for change in changes {
            let mut q = p.clone();
            change(&mut q);
            assert!(verify(&q, &[key.verifying_key()]).is_err(), "{q:?}");
        }
        let mut q = p.clone();
        q.object = "objects/a\n1".into();
        assert!(sign(&mut q, &key).is_err());
    }
}
