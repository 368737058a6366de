//! The format of cache entry files, kept apart from file handling and crypto so each can be read
//! and tested alone.
//!
//! Plaintext entry (`<id>.json`, and the plaintext inside `<id>.enc`):
//! `{"version":1,"issuer":…,"client_id":…,"scopes":[…],"id_token":…,"refresh_token":…}`
//! (`refresh_token` omitted when there is none). Entries of providers whose tokens koidc cannot
//! read (GitHub's opaque access tokens) add the optional [`EntryMeta`] fields `kind`,
//! `expires_at`, `refresh_expires_at` and `checked_at` (Unix seconds; when the provider last
//! confirmed the token) and `info` (a JSON object for display);
//! they are omitted when unset, so OpenID Connect entries look exactly as before, and readers that
//! do not know them ignore them (the version stays 1). An entry of a config-file profile adds
//! `"profile":…` (in both formats), omitted without a profile for the same reason.
//!
//! Encrypted entry (`<id>.enc`): `{"version":1,"cipher":"chacha20poly1305","issuer":…,
//! "client_id":…,"scopes":[…],"nonce":<base64>,"ciphertext":<base64>}`. The key fields are in
//! clear so that `list` (for `logout --all`) works without the keyring; they are not secret
//! (they are in the kubeconfig). The ciphertext holds the whole plaintext entry, which `load`
//! checks against the requested key, and the AEAD binds it to the file's key id.

use std::path::Path;

use base64::Engine as _;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{CacheError, CacheKey, EntryMeta};
use crate::login::token::TokenSet;

/// The entry format version written and accepted.
const VERSION: u64 = 1;
/// The only cipher of [`VERSION`] 1.
pub(super) const CIPHER: &str = "chacha20poly1305";

/// A decoded plaintext entry. No `Debug`: it holds tokens.
pub(super) struct Entry {
    pub key: CacheKey,
    pub tokens: TokenSet,
    pub meta: EntryMeta,
}

#[derive(Serialize)]
struct PlainOut<'a> {
    version: u64,
    issuer: &'a str,
    client_id: &'a str,
    scopes: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    machine: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    id_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checked_at: Option<i64>,
}

#[derive(Deserialize)]
struct PlainIn {
    issuer: String,
    client_id: String,
    scopes: Vec<String>,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    machine: Option<String>,
    #[serde(default)]
    variant: Option<String>,
    id_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default)]
    refresh_expires_at: Option<i64>,
    #[serde(default)]
    info: Option<serde_json::Value>,
    #[serde(default)]
    checked_at: Option<i64>,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u64,
}

#[derive(Serialize, Deserialize)]
struct SealedFile {
    version: u64,
    cipher: String,
    issuer: String,
    client_id: String,
    scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    machine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    variant: Option<String>,
    nonce: String,
    ciphertext: String,
}

/// A decoded encrypted entry: the key in clear and the sealed plaintext entry.
pub(super) struct Sealed {
    pub key: CacheKey,
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
}

/// The plaintext entry of `key` holding `tokens` and `meta`.
pub(super) fn encode_plain(key: &CacheKey, tokens: &TokenSet, meta: &EntryMeta) -> Zeroizing<Vec<u8>> {
    let out = PlainOut {
        version: VERSION,
        issuer: &key.issuer,
        client_id: &key.client_id,
        scopes: &key.scopes,
        profile: key.profile.as_deref(),
        machine: key.machine.as_deref(),
        variant: key.variant.as_deref(),
        id_token: tokens.id_token.expose_secret(),
        refresh_token: tokens.refresh_token.as_ref().map(|t| t.expose_secret()),
        kind: meta.kind.as_deref(),
        expires_at: meta.expires_at.map(|t| t.timestamp()),
        refresh_expires_at: meta.refresh_expires_at.map(|t| t.timestamp()),
        info: meta.info.as_ref(),
        checked_at: meta.checked_at.map(|t| t.timestamp()),
    };
    // Serializing strings into a Vec cannot fail.
    Zeroizing::new(serde_json::to_vec(&out).unwrap_or_default())
}

/// Decodes a plaintext entry read from `path` (named in errors).
pub(super) fn decode_plain(path: &Path, bytes: &[u8]) -> Result<Entry, CacheError> {
    check_version(path, bytes)?;
    let entry: PlainIn =
        serde_json::from_slice(bytes).map_err(|e| CacheError::corrupt(path, json_reason(&e)))?;
    Ok(Entry {
        key: CacheKey {
            issuer: entry.issuer,
            client_id: entry.client_id,
            scopes: entry.scopes,
            profile: entry.profile,
            machine: entry.machine,
            variant: entry.variant,
        },
        tokens: TokenSet {
            id_token: SecretString::from(entry.id_token),
            refresh_token: entry.refresh_token.map(SecretString::from),
        },
        meta: EntryMeta {
            kind: entry.kind,
            expires_at: entry.expires_at.and_then(from_unix),
            refresh_expires_at: entry.refresh_expires_at.and_then(from_unix),
            info: entry.info,
            checked_at: entry.checked_at.and_then(from_unix),
        },
    })
}

fn from_unix(secs: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::TimeZone::timestamp_opt(&chrono::Utc, secs, 0).single()
}

/// The encrypted entry file of `key`.
pub(super) fn encode_sealed(key: &CacheKey, nonce: &[u8; 12], ciphertext: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let file = SealedFile {
        version: VERSION,
        cipher: CIPHER.to_owned(),
        issuer: key.issuer.clone(),
        client_id: key.client_id.clone(),
        scopes: key.scopes.clone(),
        profile: key.profile.clone(),
        machine: key.machine.clone(),
        variant: key.variant.clone(),
        nonce: b64.encode(nonce),
        ciphertext: b64.encode(ciphertext),
    };
    serde_json::to_vec(&file).unwrap_or_default()
}

/// Decodes an encrypted entry file read from `path`.
pub(super) fn decode_sealed(path: &Path, bytes: &[u8]) -> Result<Sealed, CacheError> {
    check_version(path, bytes)?;
    let file: SealedFile =
        serde_json::from_slice(bytes).map_err(|e| CacheError::corrupt(path, json_reason(&e)))?;
    if file.cipher != CIPHER {
        return Err(CacheError::corrupt(path, "it uses an unknown cipher"));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let nonce: [u8; 12] = b64
        .decode(&file.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| CacheError::corrupt(path, "its nonce is not 12 base64-encoded bytes"))?;
    let ciphertext = b64
        .decode(&file.ciphertext)
        .map_err(|_| CacheError::corrupt(path, "its ciphertext is not base64"))?;
    Ok(Sealed {
        key: CacheKey {
            issuer: file.issuer,
            client_id: file.client_id,
            scopes: file.scopes,
            profile: file.profile,
            machine: file.machine,
            variant: file.variant,
        },
        nonce,
        ciphertext,
    })
}

fn check_version(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let v: VersionOnly =
        serde_json::from_slice(bytes).map_err(|e| CacheError::corrupt(path, json_reason(&e)))?;
    if v.version != VERSION {
        return Err(CacheError::corrupt(
            path,
            format!(
                "it has format version {} and this koidc reads version {VERSION}",
                v.version
            ),
        ));
    }
    Ok(())
}

/// Describes a JSON error by kind and position only: serde messages can quote values, and a
/// value here can be a token.
fn json_reason(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Eof => "truncated JSON",
        Category::Syntax => "not valid JSON",
        Category::Data => "not a koidc cache entry",
        Category::Io => "unreadable JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn plain_round_trip_and_shape() {
        let bytes = encode_plain(&key(1), &tokens("a"), &EntryMeta::default());
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["client_id"], "client-1");
        assert_eq!(v["scopes"], serde_json::json!(["email", "groups"]));
        let e = decode_plain(Path::new("x"), &bytes).unwrap();
        assert_eq!(e.key, key(1));
        assert_eq!(e.tokens.id_token.expose_secret(), "id-token-a");
        // Without metadata the entry has exactly the fields of the original format.
        let fields: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            fields,
            [
                "client_id",
                "id_token",
                "issuer",
                "refresh_token",
                "scopes",
                "version"
            ]
        );
        assert_eq!(e.meta, EntryMeta::default());
    }

    #[test]
    fn the_profile_round_trips_in_both_formats_and_old_entries_have_none() {
        let key = key(1).with_profile(Some("work".into()));
        let plain = decode_plain(
            Path::new("x"),
            &encode_plain(&key, &tokens("a"), &EntryMeta::default()),
        )
        .unwrap();
        assert_eq!(plain.key, key);
        let sealed = decode_sealed(Path::new("x"), &encode_sealed(&key, &[7; 12], b"ct")).unwrap();
        assert_eq!(sealed.key, key);
        let old = br#"{"version":1,"issuer":"i","client_id":"c","scopes":[],"id_token":"t"}"#;
        assert_eq!(decode_plain(Path::new("x"), old).unwrap().key.profile, None);
    }

    #[test]
    fn metadata_round_trips_and_old_entries_have_none() {
        use chrono::TimeZone as _;
        let meta = EntryMeta {
            kind: Some("github".into()),
            expires_at: Some(chrono::Utc.timestamp_opt(2_000_000_000, 0).unwrap()),
            refresh_expires_at: None,
            info: Some(serde_json::json!({"login": "octocat"})),
            checked_at: Some(chrono::Utc.timestamp_opt(1_900_000_000, 0).unwrap()),
        };
        let bytes = encode_plain(&key(1), &tokens("a"), &meta);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["expires_at"], 2_000_000_000);
        assert_eq!(v["checked_at"], 1_900_000_000);
        assert!(v.get("refresh_expires_at").is_none());
        let e = decode_plain(Path::new("x"), &bytes).unwrap();
        assert_eq!(e.meta, meta);
        // An entry written before the metadata existed reads with none.
        let old = br#"{"version":1,"issuer":"i","client_id":"c","scopes":[],"id_token":"t"}"#;
        assert_eq!(
            decode_plain(Path::new("x"), old).unwrap().meta,
            EntryMeta::default()
        );
    }

    #[test]
    fn json_errors_never_quote_values() {
        // A token in a position of the wrong type would be quoted by serde's message.
        let bytes = br#"{"version":1,"issuer":"i","client_id":"c","scopes":"SECRET-TOKEN","id_token":"t"}"#;
        let err = decode_plain(Path::new("x"), bytes).err().unwrap();
        assert!(err.is_corrupt());
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }

    #[test]
    fn other_versions_are_corrupt() {
        let err = decode_plain(Path::new("x"), br#"{"version":2}"#).err().unwrap();
        assert!(err.to_string().contains("format version 2"), "{err}");
    }

    #[test]
    fn sealed_round_trip() {
        let bytes = encode_sealed(&key(1), &[7; 12], b"ct");
        let s = decode_sealed(Path::new("x"), &bytes).unwrap();
        assert_eq!(s.key, key(1));
        assert_eq!(s.nonce, [7; 12]);
        assert_eq!(s.ciphertext, b"ct");
    }
}
