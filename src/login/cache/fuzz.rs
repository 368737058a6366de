//! The fuzzing entry point of the cache entry decoders (`fuzz/fuzz_targets/cache_entry.rs`,
//! reached through [`crate::fuzz`]). Not part of the cache: it lives here only to reach the
//! decoders' internals.

use std::path::Path;

use super::{TokenSet, crypt, entry, file};

/// Fuzzing entry point, not API (`fuzz/fuzz_targets/cache_entry.rs`): decodes `bytes` as a cache
/// entry file the way `load` does — as a plaintext entry, and as an encrypted entry opened with a
/// fixed key — and panics if a decoded entry does not survive being written and read again.
pub fn decode_entry(bytes: &[u8]) {
    use secrecy::ExposeSecret as _;
    let path = Path::new("fuzz.json");
    let same_tokens = |a: &TokenSet, b: &TokenSet| {
        a.id_token.expose_secret() == b.id_token.expose_secret()
            && a.refresh_token.as_ref().map(|t| t.expose_secret())
                == b.refresh_token.as_ref().map(|t| t.expose_secret())
    };
    let plain = |bytes: &[u8]| {
        let Ok(decoded) = entry::decode_plain(path, bytes) else {
            return;
        };
        let again = entry::encode_plain(&decoded.key, &decoded.tokens, &decoded.meta);
        let back = match entry::decode_plain(path, &again) {
            Ok(back) => back,
            Err(err) => panic!("a re-encoded entry does not decode: {err}"),
        };
        assert!(back.key == decoded.key && back.meta == decoded.meta);
        assert!(same_tokens(&back.tokens, &decoded.tokens));
        let (tokens, _) = file::check_key(path, &decoded.key, back).unwrap_or_else(|e| panic!("{e}"));
        // The warm path reads the cached ID token next.
        let _ = crate::login::token::IdTokenInfo::decode_secret(&tokens.id_token);
    };
    plain(bytes);
    if let Ok(sealed) = entry::decode_sealed(path, bytes) {
        let again = entry::encode_sealed(&sealed.key, &sealed.nonce, &sealed.ciphertext);
        match entry::decode_sealed(path, &again) {
            Ok(back) => assert!(
                back.key == sealed.key && back.nonce == sealed.nonce && back.ciphertext == sealed.ciphertext
            ),
            Err(err) => panic!("a re-encoded sealed entry does not decode: {err}"),
        }
        let Some(key) = crypt::MasterKey::from_text(&"5a".repeat(32)) else {
            panic!("the fuzzing key is malformed");
        };
        if let Some(opened) = crypt::open(
            &key,
            sealed.key.id().as_bytes(),
            &sealed.nonce,
            &sealed.ciphertext,
        ) {
            plain(&opened);
        }
    }
}
