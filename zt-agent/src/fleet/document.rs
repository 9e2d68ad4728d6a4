//! The fleet document and its signed, compressed envelope.
//!
//! An object is `MAGIC` (8 bytes), the signer's Ed25519 public key (32), the
//! signature (64), then the payload: the document as JSON, deflate-compressed
//! (zlib framing). The signature covers `CONTEXT || payload`, the exact
//! compressed bytes, so a host checks it before it inflates anything: an
//! unsigned object never reaches the decompressor or the JSON parser. The
//! inflated size is capped too ([`MAX_INFLATED`]), against a signed bomb.

use std::collections::BTreeMap;
use std::io::Read;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::resolve::IdState;

pub const MAGIC: &[u8; 8] = b"ztfleet1";
/// Domain separation: a signature over a fleet payload is never valid as
/// anything else the same key might sign.
pub const CONTEXT: &[u8] = b"zt-fleet-document-v1\0";
const HEADER: usize = 8 + 32 + 64;
/// The largest inflated document a host accepts (100,000 people are ~40 MB).
pub const MAX_INFLATED: u64 = 1 << 30;
pub const FORMAT: u32 = 1;

/// One person as the fleet publishes them: the fields a host's rules need,
/// with the name and uid the publisher allocated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// The IdP's immutable object id.
    pub id: String,
    pub email: String,
    /// The fleet's user name for this person (every host uses it).
    pub name: String,
    pub uid: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gecos: String,
    /// The directory's own user name, for `[ssh] principals = ["username"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// OpenSSH public keys, already checked by the publisher.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<String>,
}

/// One of the publisher's configured groups, with its gid and its members
/// (IdP ids of people, nesting already expanded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub id: String,
    /// The publisher's name for it; hosts name groups in their own config.
    pub name: String,
    pub gid: u32,
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    pub format: u32,
    /// Only grows: a host refuses a document with a lower serial than it holds.
    pub serial: u64,
    /// Unix seconds.
    pub published_at: u64,
    /// Unix seconds; a host refuses the document after this.
    pub valid_until: u64,
    pub people: Vec<Person>,
    pub groups: Vec<Group>,
    /// IdP ids of members of the configured groups disabled in the directory:
    /// a host applies a disable at once (never mistaken for a mass removal).
    #[serde(default)]
    pub disabled: Vec<String>,
    /// Every id and name the fleet ever handed out (departed people's too):
    /// a host never gives them to anyone else.
    pub ids: IdState,
    /// The token issuers' keys the publisher fetched, by `iss`.
    #[serde(default)]
    pub issuer_keys: BTreeMap<String, Vec<IssuerKey>>,
}

/// One issuer signing key (`zt_snapshot::KeyEntry` as plain JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerKey {
    pub kid: String,
    /// The JWK's `alg` ("RS256", "EdDSA", ...).
    pub alg: String,
    /// The JWK's JSON text as fetched.
    pub jwk: String,
}

/// Why an object is refused. Every refusal keeps the host's last good state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Shorter than the header or not our magic.
    NotAnObject(String),
    /// Signed by a key that is not in `public_keys`.
    UnknownKey(String),
    /// The signature does not match the bytes (a changed byte).
    BadSignature,
    /// Signed, but not a document this agent reads.
    Unreadable(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotAnObject(why) => write!(f, "not a fleet document: {why}"),
            Refusal::UnknownKey(k) => write!(
                f,
                "signed by the unknown key {k} (not one of [directory] public_keys)"
            ),
            Refusal::BadSignature => f.write_str(
                "bad signature: the document was changed after it was signed (or damaged on the way)",
            ),
            Refusal::Unreadable(why) => write!(f, "signed document unreadable: {why}"),
        }
    }
}

/// The document as a signed object.
pub fn seal(doc: &Document, key: &SigningKey) -> Result<Vec<u8>, String> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
    serde_json::to_writer(&mut z, doc).map_err(|e| format!("encoding the document: {e}"))?;
    let payload = z
        .finish()
        .map_err(|e| format!("compressing the document: {e}"))?;
    let mut signed = Vec::with_capacity(CONTEXT.len() + payload.len());
    signed.extend_from_slice(CONTEXT);
    signed.extend_from_slice(&payload);
    let signature = key.sign(&signed);
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(key.verifying_key().as_bytes());
    out.extend_from_slice(&signature.to_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Checks the signature with one of `trusted`, then inflates and parses.
pub fn open(object: &[u8], trusted: &[VerifyingKey]) -> Result<Document, Refusal> {
    if object.len() < HEADER {
        return Err(Refusal::NotAnObject(format!(
            "{} bytes, shorter than the {HEADER}-byte header",
            object.len()
        )));
    }
    if &object[..8] != MAGIC {
        return Err(Refusal::NotAnObject(
            "it does not start with \"ztfleet1\"".into(),
        ));
    }
    let mut signer = [0u8; 32];
    signer.copy_from_slice(&object[8..40]);
    let Some(key) = trusted.iter().find(|k| k.as_bytes() == &signer) else {
        return Err(Refusal::UnknownKey(super::sign::encode_public(&signer)));
    };
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&object[40..HEADER]);
    let payload = &object[HEADER..];
    let mut signed = Vec::with_capacity(CONTEXT.len() + payload.len());
    signed.extend_from_slice(CONTEXT);
    signed.extend_from_slice(payload);
    key.verify(&signed, &Signature::from_bytes(&sig))
        .map_err(|_| Refusal::BadSignature)?;
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(payload)
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut json)
        .map_err(|e| Refusal::Unreadable(format!("inflating: {e}")))?;
    if json.len() as u64 > MAX_INFLATED {
        return Err(Refusal::Unreadable(format!(
            "larger than {MAX_INFLATED} bytes inflated"
        )));
    }
    let doc: Document = serde_json::from_slice(&json).map_err(|e| {
        Refusal::Unreadable(format!("line {} column {}: {e}", e.line(), e.column()))
    })?;
    if doc.format != FORMAT {
        return Err(Refusal::Unreadable(format!(
            "format {} (this agent reads format {FORMAT})",
            doc.format
        )));
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn doc(serial: u64) -> Document {
        Document {
            format: FORMAT,
            serial,
            published_at: 100,
            valid_until: 200,
            people: vec![Person {
                id: "u-alice".into(),
                email: "alice@example.com".into(),
                name: "alice".into(),
                uid: 0x7000_1234,
                gecos: "Alice".into(),
                username: None,
                ssh_keys: Vec::new(),
            }],
            groups: vec![Group {
                id: "g-sre".into(),
                name: "sre".into(),
                gid: 0x7800_0001,
                members: vec!["u-alice".into()],
            }],
            disabled: Vec::new(),
            ids: IdState::default(),
            issuer_keys: BTreeMap::new(),
        }
    }

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn a_sealed_document_opens_with_its_key_only() {
        let object = seal(&doc(7), &key(1)).unwrap();
        let trusted = [key(2).verifying_key(), key(1).verifying_key()];
        assert_eq!(open(&object, &trusted).unwrap(), doc(7));
        let e = open(&object, &[key(2).verifying_key()]).unwrap_err();
        assert!(matches!(e, Refusal::UnknownKey(_)), "{e}");
        assert!(e.to_string().contains("unknown key"), "{e}");
    }

    #[test]
    fn every_changed_byte_is_refused() {
        let object = seal(&doc(7), &key(1)).unwrap();
        let trusted = [key(1).verifying_key()];
        for i in 0..object.len() {
            let mut bad = object.clone();
            bad[i] ^= 0x01;
            assert!(
                open(&bad, &trusted).is_err(),
                "byte {i} changed, still opened"
            );
        }
        for len in [0, 10, HEADER, object.len() - 1] {
            let e = open(&object[..len], &trusted).unwrap_err();
            assert!(!e.to_string().is_empty());
        }
    }
}
