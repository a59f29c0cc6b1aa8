//! Signed notifications (Ed25519): who may pop a dialog on every desktop.
//!
//! A signed notification travels in an envelope `{"id","ts","kid","payload","sig"}` whose signature
//! covers the raw bytes `id.ts.payload` — the payload is signed as the exact string sent, never as
//! re-serialised JSON, so no two JSON libraries can disagree about what was signed. The payload's own
//! `id` must equal the envelope's, `ts` must be within the allowed skew, and an id is accepted once
//! (the caller keeps the replay memory, on disk, so a restart does not reopen the window).

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The signed envelope on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub id: String,
    pub ts: i64,
    pub kid: String,
    /// The notification JSON, as the exact string that was signed.
    pub payload: String,
    /// Standard base64 of the 64-byte Ed25519 signature.
    pub sig: String,
}

/// Why a signed notification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("not a signed envelope, and this subscription requires a signature")]
    Unsigned,
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("unknown key id `{0}`")]
    UnknownKey(String),
    #[error("timestamp {ts} is {skew} s from now, outside the allowed {max} s")]
    Stale { ts: i64, skew: i64, max: i64 },
    #[error("bad signature")]
    BadSignature,
    #[error("payload id `{payload}` differs from envelope id `{envelope}`")]
    IdMismatch { envelope: String, payload: String },
    #[error("replay: id `{0}` was already accepted")]
    Replay(String),
}

/// The publishers' public keys, by key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keyring {
    keys: HashMap<String, VerifyingKey>,
}

impl Keyring {
    /// Parses `kid = "<base64 public key>"` pairs.
    pub fn from_base64(pairs: &[(String, String)]) -> Result<Keyring, String> {
        let mut keys = HashMap::new();
        for (kid, b64) in pairs {
            keys.insert(
                kid.clone(),
                public_key(b64).map_err(|e| format!("key `{kid}`: {e}"))?,
            );
        }
        Ok(Keyring { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies a base64 signature by key `kid` over `bytes`.
    pub fn verify_bytes(&self, kid: &str, bytes: &[u8], sig_b64: &str) -> Result<(), TrustError> {
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| TrustError::UnknownKey(kid.to_owned()))?;
        let sig = STANDARD
            .decode(sig_b64)
            .map_err(|e| TrustError::Malformed(format!("sig: {e}")))?;
        let sig =
            Signature::from_slice(&sig).map_err(|e| TrustError::Malformed(format!("sig: {e}")))?;
        key.verify_strict(bytes, &sig)
            .map_err(|_| TrustError::BadSignature)
    }
}

/// A verified notification: its payload bytes and the key id that signed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub payload: String,
    pub kid: String,
    pub id: String,
}

/// Whether `json` is a signed envelope (it has `sig` and `payload`).
pub fn looks_signed(json: &serde_json::Value) -> bool {
    json.get("sig").is_some() && json.get("payload").is_some_and(|p| p.is_string())
}

/// Checks an envelope's key, time and signature (not replay: see the caller). `now` in unix seconds.
pub fn verify(
    envelope_json: serde_json::Value,
    keys: &Keyring,
    now: i64,
    max_skew: i64,
) -> Result<Verified, TrustError> {
    let env: Envelope =
        serde_json::from_value(envelope_json).map_err(|e| TrustError::Malformed(e.to_string()))?;
    let key = keys
        .keys
        .get(&env.kid)
        .ok_or_else(|| TrustError::UnknownKey(env.kid.clone()))?;
    // abs_diff: a publisher's `ts` may be anything an i64 holds; a subtraction could overflow.
    let skew = now.abs_diff(env.ts);
    if skew > max_skew.unsigned_abs() {
        return Err(TrustError::Stale {
            ts: env.ts,
            skew: i64::try_from(skew).unwrap_or(i64::MAX),
            max: max_skew,
        });
    }
    let sig = STANDARD
        .decode(&env.sig)
        .map_err(|e| TrustError::Malformed(format!("sig: {e}")))?;
    let sig =
        Signature::from_slice(&sig).map_err(|e| TrustError::Malformed(format!("sig: {e}")))?;
    key.verify_strict(&signed_bytes(&env.id, env.ts, &env.payload), &sig)
        .map_err(|_| TrustError::BadSignature)?;
    let inner_id = serde_json::from_str::<serde_json::Value>(&env.payload)
        .ok()
        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned))
        .unwrap_or_default();
    if inner_id != env.id {
        return Err(TrustError::IdMismatch {
            envelope: env.id,
            payload: inner_id,
        });
    }
    Ok(Verified {
        payload: env.payload,
        kid: env.kid,
        id: env.id,
    })
}

/// What the signature covers.
fn signed_bytes(id: &str, ts: i64, payload: &str) -> Vec<u8> {
    format!("{id}.{ts}.{payload}").into_bytes()
}

/// Signs `payload` (a notification JSON string whose `id` is `id`) into an envelope.
pub fn sign(key: &SigningKey, kid: &str, id: &str, ts: i64, payload: &str) -> Envelope {
    let sig = key.sign(&signed_bytes(id, ts, payload));
    Envelope {
        id: id.to_owned(),
        ts,
        kid: kid.to_owned(),
        payload: payload.to_owned(),
        sig: STANDARD.encode(sig.to_bytes()),
    }
}

/// A fresh private key.
pub fn generate() -> Result<SigningKey, String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| e.to_string())?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A private key file's text: the base64 seed.
pub fn private_key_text(key: &SigningKey) -> String {
    format!("{}\n", STANDARD.encode(key.to_bytes()))
}

pub fn public_key_text(key: &SigningKey) -> String {
    STANDARD.encode(key.verifying_key().to_bytes())
}

/// Reads a private key file written by `herald keygen`.
pub fn read_private_key(text: &str) -> Result<SigningKey, String> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "a private key is 32 bytes".to_owned())?;
    Ok(SigningKey::from_bytes(&seed))
}

fn public_key(b64: &str) -> Result<VerifyingKey, String> {
    let bytes = STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let raw: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "a public key is 32 bytes".to_owned())?;
    VerifyingKey::from_bytes(&raw).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (SigningKey, Keyring) {
        let key = generate().unwrap();
        let ring = Keyring::from_base64(&[("ops".into(), public_key_text(&key))]).unwrap();
        (key, ring)
    }

    fn envelope(key: &SigningKey, id: &str, ts: i64) -> serde_json::Value {
        let payload = format!(r#"{{"id":"{id}","title":"t","message":"m"}}"#);
        serde_json::to_value(sign(key, "ops", id, ts, &payload)).unwrap()
    }

    #[test]
    fn a_valid_envelope_verifies() {
        let (key, ring) = setup();
        let v = verify(envelope(&key, "n1", 1000), &ring, 1100, 300).unwrap();
        assert_eq!((v.kid.as_str(), v.id.as_str()), ("ops", "n1"));
    }

    #[test]
    fn every_kind_of_forgery_is_refused() {
        let (key, ring) = setup();
        let other = generate().unwrap();
        assert_eq!(
            verify(envelope(&other, "n", 1000), &ring, 1000, 300),
            Err(TrustError::BadSignature)
        );
        let mut tampered = envelope(&key, "n", 1000);
        tampered["payload"] = r#"{"id":"n","title":"T","message":"m"}"#.into();
        assert_eq!(
            verify(tampered, &ring, 1000, 300),
            Err(TrustError::BadSignature)
        );
        let mut unknown = envelope(&key, "n", 1000);
        unknown["kid"] = "eve".into();
        assert_eq!(
            verify(unknown, &ring, 1000, 300),
            Err(TrustError::UnknownKey("eve".into()))
        );
        assert!(matches!(
            verify(envelope(&key, "n", 1000), &ring, 1301, 300),
            Err(TrustError::Stale { .. })
        ));
        let payload = r#"{"id":"other","title":"t","message":"m"}"#;
        let swapped = serde_json::to_value(sign(&key, "ops", "n", 1000, payload)).unwrap();
        assert!(matches!(
            verify(swapped, &ring, 1000, 300),
            Err(TrustError::IdMismatch { .. })
        ));
    }

    #[test]
    fn timestamps_at_the_ends_of_the_range_are_stale_not_a_panic() {
        let (key, ring) = setup();
        for ts in [i64::MIN, i64::MIN + 1, i64::MAX] {
            let mut env = envelope(&key, "n", 1000);
            env["ts"] = ts.into();
            assert!(
                matches!(verify(env, &ring, 1000, 300), Err(TrustError::Stale { .. })),
                "ts {ts}"
            );
        }
    }

    #[test]
    fn any_one_bit_change_fails_verification() {
        let (key, ring) = setup();
        let original = serde_json::to_string(&envelope(&key, "n", 1000)).unwrap();
        let bytes = original.as_bytes();
        let mut accepted = 0;
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.to_vec();
                flipped[i] ^= 1 << bit;
                let Ok(text) = String::from_utf8(flipped) else {
                    continue;
                };
                let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                if text != original && verify(json.clone(), &ring, 1000, 300).is_ok() {
                    // The only harmless flips are to JSON syntax that parses to the same envelope.
                    if json != serde_json::from_str::<serde_json::Value>(&original).unwrap() {
                        accepted += 1;
                    }
                }
            }
        }
        assert_eq!(accepted, 0);
    }

    #[test]
    fn keys_round_trip_through_their_files() {
        let key = generate().unwrap();
        let back = read_private_key(&private_key_text(&key)).unwrap();
        assert_eq!(public_key_text(&key), public_key_text(&back));
    }
}
