//! The worker's identity: an ed25519 key kept in the [`SecretStore`] (secret `peer-key`), its
//! peer id in libp2p's form (`12D3KooW…`: base58btc of the identity multihash of the
//! protobuf-encoded public key), and signatures over canonical JSON.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use ipfs_accelerate_common::secrets::{Secret, SecretStore};

use crate::error::{Error, Result};

/// The secret holding the key's 32-byte seed (base64).
pub const KEY_SECRET: &str = "peer-key";

/// A worker's signing identity.
pub struct Identity {
    key: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("peer_id", &self.peer_id()).finish_non_exhaustive()
    }
}

impl Identity {
    /// The identity in `store`, created (from the OS's randomness) on first use.
    pub fn load_or_create(store: &SecretStore) -> Result<Identity> {
        if let Some(secret) = store.get(KEY_SECRET)? {
            let seed = BASE64
                .decode(secret.expose().trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    Error::Config(format!("secret {KEY_SECRET:?} is not a base64 ed25519 seed"))
                })?;
            return Ok(Identity { key: SigningKey::from_bytes(&seed) });
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| Error::Config(format!("no randomness for a new peer key: {e}")))?;
        store.set(KEY_SECRET, &Secret::new(BASE64.encode(seed)))?;
        Ok(Identity { key: SigningKey::from_bytes(&seed) })
    }

    /// An identity from a seed (tests, imports).
    pub fn from_seed(seed: [u8; 32]) -> Identity {
        Identity { key: SigningKey::from_bytes(&seed) }
    }

    /// The peer id (`12D3KooW…`).
    pub fn peer_id(&self) -> String {
        peer_id_of(&self.key.verifying_key())
    }

    /// The public key, base64.
    pub fn public_key(&self) -> String {
        BASE64.encode(self.key.verifying_key().as_bytes())
    }

    /// The signature of `message`, base64.
    pub fn sign(&self, message: &[u8]) -> String {
        BASE64.encode(self.key.sign(message).to_bytes())
    }
}

/// libp2p's peer id of an ed25519 key.
pub fn peer_id_of(key: &VerifyingKey) -> String {
    // PublicKey { Type = Ed25519 (1), Data = key }, protobuf-encoded (36 bytes), in an
    // identity multihash (code 0, length 36).
    let mut bytes = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
    bytes.extend_from_slice(key.as_bytes());
    bs58::encode(bytes).into_string()
}

/// Checks that `public_key` (base64) belongs to `peer_id` and signed `message`.
pub fn verify(
    peer_id: &str,
    public_key: &str,
    message: &[u8],
    signature: &str,
) -> std::result::Result<(), String> {
    let key_bytes: [u8; 32] = BASE64
        .decode(public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the public key is not 32 base64 bytes")?;
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|e| format!("public key: {e}"))?;
    if peer_id_of(&key) != peer_id {
        return Err("the public key is not the peer id's".into());
    }
    let signature: [u8; 64] = BASE64
        .decode(signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the signature is not 64 base64 bytes")?;
    key.verify(message, &Signature::from_bytes(&signature))
        .map_err(|_| "the signature does not verify".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_have_libp2p_form_and_signatures_verify() {
        let identity = Identity::from_seed([7; 32]);
        let peer_id = identity.peer_id();
        assert!(peer_id.starts_with("12D3KooW"), "{peer_id}");
        let signature = identity.sign(b"record");
        assert_eq!(verify(&peer_id, &identity.public_key(), b"record", &signature), Ok(()));
        assert!(verify(&peer_id, &identity.public_key(), b"other", &signature).is_err());
        let other = Identity::from_seed([8; 32]);
        let err = verify(&peer_id, &other.public_key(), b"record", &other.sign(b"record"));
        assert_eq!(err, Err("the public key is not the peer id's".into()));
    }
}
