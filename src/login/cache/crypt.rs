//! Encryption of cache entries under a master key, separate from where the key comes from (see
//! `keyring.rs`) so it can be tested without a keyring.
//!
//! ChaCha20-Poly1305 with a fresh random 12-byte nonce per write (a few writes per key per day:
//! random nonces are far from the collision bound) and the entry's key id as associated data, so
//! an entry copied to another key's file fails to decrypt.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretBox, SecretString};

use super::CacheError;

/// The 32-byte key that encrypts cache entries. `Debug` shows no key material.
pub(super) struct MasterKey(SecretBox<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl PartialEq for MasterKey {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.expose_secret().ct_eq(other.0.expose_secret()).into()
    }
}

impl MasterKey {
    /// A new random key from the OS.
    pub(super) fn generate() -> Result<Self, CacheError> {
        let mut bytes = Box::new([0u8; 32]);
        rand::rngs::OsRng
            .try_fill_bytes(bytes.as_mut())
            .map_err(|e| CacheError::Random(e.to_string()))?;
        Ok(Self(SecretBox::new(bytes)))
    }

    /// A key from its stored text form (64 hex digits, surrounding whitespace ignored).
    pub(super) fn from_text(text: &str) -> Option<Self> {
        let mut bytes = Box::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), bytes.as_mut()).ok()?;
        Some(Self(SecretBox::new(bytes)))
    }

    /// The stored text form: 64 lowercase hex digits.
    pub(super) fn to_text(&self) -> SecretString {
        SecretString::from(hex::encode(self.0.expose_secret()))
    }

    #[cfg(test)]
    pub(super) fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(SecretBox::new(Box::new(bytes)))
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(self.0.expose_secret()))
    }
}

/// Encrypts `plaintext` bound to `aad`; returns the nonce and the ciphertext (with tag).
pub(super) fn seal(key: &MasterKey, aad: &[u8], plaintext: &[u8]) -> Result<([u8; 12], Vec<u8>), CacheError> {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng
        .try_fill_bytes(&mut nonce)
        .map_err(|e| CacheError::Random(e.to_string()))?;
    let ciphertext = key
        .cipher()
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
        // Only fails for plaintexts near 256 GiB; entries are capped far below.
        .map_err(|_| CacheError::Random("the entry is too large to encrypt".into()))?;
    Ok((nonce, ciphertext))
}

/// Decrypts and authenticates; `None` when the key, nonce, `aad` or ciphertext do not match.
pub(super) fn open(
    key: &MasterKey,
    aad: &[u8],
    nonce: &[u8; 12],
    ciphertext: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    key.cipher()
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad })
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_with_fresh_nonces() {
        let key = MasterKey::from_bytes([1; 32]);
        let (n1, c1) = seal(&key, b"id-a", b"hello").unwrap();
        let (n2, c2) = seal(&key, b"id-a", b"hello").unwrap();
        assert_ne!(n1, n2);
        assert_ne!(c1, c2);
        assert_eq!(open(&key, b"id-a", &n1, &c1).unwrap().as_slice(), b"hello");
        assert!(!c1.windows(5).any(|w| w == b"hello"));
    }

    #[test]
    fn tampering_wrong_aad_and_wrong_key_are_rejected() {
        let key = MasterKey::from_bytes([1; 32]);
        let (nonce, ct) = seal(&key, b"id-a", b"hello").unwrap();
        let mut flipped = ct.clone();
        flipped[0] ^= 1;
        assert!(open(&key, b"id-a", &nonce, &flipped).is_none());
        assert!(open(&key, b"id-a", &nonce, &ct[..ct.len() - 1]).is_none());
        assert!(open(&key, b"id-b", &nonce, &ct).is_none());
        assert!(open(&MasterKey::from_bytes([2; 32]), b"id-a", &nonce, &ct).is_none());
        let mut other_nonce = nonce;
        other_nonce[0] ^= 1;
        assert!(open(&key, b"id-a", &other_nonce, &ct).is_none());
    }

    #[test]
    fn text_form_round_trips_and_rejects_garbage() {
        let key = MasterKey::generate().unwrap();
        let text = key.to_text();
        assert_eq!(text.expose_secret().len(), 64);
        assert_eq!(MasterKey::from_text(text.expose_secret()).unwrap(), key);
        assert!(MasterKey::from_text("abc").is_none());
        assert!(MasterKey::from_text(&"zz".repeat(32)).is_none());
        assert!(MasterKey::from_text(&"ab".repeat(33)).is_none());
        assert_eq!(format!("{key:?}"), "MasterKey([redacted])");
    }
}
