//! The token cache: where tokens live between kubectl calls, and the lock that makes parallel
//! kubectl calls share one login.
//!
//! INTERFACE (implemented in this module's files; `auth` and `commands` use only what is here):
//! - [`CacheKey`]: which identity an entry belongs to (issuer + client id + sorted scopes).
//! - [`TokenStore`]: load/save/delete/list entries (with [`EntryMeta`] for tokens koidc cannot
//!   read itself: [`TokenStore::load_with_meta`], [`TokenStore::save_with_meta`]). Backends: [`CacheKind::Keyring`],
//!   [`CacheKind::File`], [`CacheKind::None`], opened with [`open_store`].
//! - [`CacheLock`]: a cross-process lock per key; holders announce how long they may hold it,
//!   and waiters wait at least that long ([`lock_budget`]).
//!
//! On disk (the cache directory is 0700, every file 0600, written atomically):
//! - `<id>.json`: a plaintext entry ([`CacheKind::File`], or the keyring store's fallback);
//! - `<id>.enc`: an entry encrypted with a master key held in the OS keyring
//!   ([`CacheKind::Keyring`]); see `keyring.rs` for where the master key lives;
//! - `<id>.lock`: the lock file of [`CacheLock`], deleted only by its holder ([`CacheLock::remove`],
//!   [`remove_unheld_locks`]; deleting a lock file that another process holds would let a third
//!   process lock a new file);
//! - `<id>.cooldown`: the login cool-down marker (`crate::login::pipeline::cooldown`).
//!
//! `<id>` is [`CacheKey::id`]. A damaged entry makes [`TokenStore::load`] fail with
//! [`CacheError::Corrupt`] (see [`CacheError::is_corrupt`]); callers treat it as a miss, and the
//! next [`TokenStore::save`] replaces it. Other entries are never affected.

mod crypt;
mod entry;
mod file;
pub(crate) mod fuzz;
mod keyring;
mod lock;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::login::token::TokenSet;

pub use lock::{CacheLock, budget as lock_budget, remove_unheld as remove_unheld_locks};

/// Which store holds the tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    /// The OS keyring (default): entries are files encrypted with a master key kept in the
    /// keyring; without a usable keyring, plain files (see [`TokenStore::fallback_reason`]).
    Keyring,
    /// Plain files (0600) in the cache directory.
    File,
    /// No persistent cache: every call logs in.
    None,
}

/// Identifies one cache entry: everything that changes which token the IdP issues, and the
/// profile (two profiles for the same issuer, client and scopes are two accounts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// The issuer URL, exactly as configured.
    pub issuer: String,
    /// The OAuth client id.
    pub client_id: String,
    /// Requested scopes besides `openid`, sorted and deduplicated.
    pub scopes: Vec<String>,
    /// The config-file profile the entry belongs to; `None` without a profile (and for every
    /// entry written before profiles existed, whose ids are unchanged).
    pub profile: Option<String>,
    /// What a pipeline's identity adds (its grant, token source and audience; see
    /// `crate::config::Machine`); `None` for a person, whose ids are unchanged.
    pub machine: Option<String>,
    /// What `--token-type access` and a `login_hint` add (see `crate::config::Identity`);
    /// `None` for an ID token without a hint, whose ids are unchanged.
    pub variant: Option<String>,
}

impl CacheKey {
    /// The key of `issuer` and `client_id` with `scopes` sorted and deduplicated; `openid` and
    /// empty scopes are dropped (every request includes `openid`).
    pub fn new(issuer: &str, client_id: &str, scopes: &[String]) -> Self {
        Self {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            scopes: canonical_scopes(scopes),
            profile: None,
            machine: None,
            variant: None,
        }
    }

    /// This key for the token type and account `variant` (`None`: the ID token, no hint).
    pub fn with_variant(mut self, variant: Option<String>) -> Self {
        self.variant = variant;
        self
    }

    /// This key for a pipeline's identity `machine` (`None`: a person).
    pub fn with_machine(mut self, machine: Option<String>) -> Self {
        self.machine = machine;
        self
    }

    /// This key for the profile `profile` (`None`: no profile).
    pub fn with_profile(mut self, profile: Option<String>) -> Self {
        self.profile = profile;
        self
    }

    /// The entry's file name stem: 32 lowercase hex digits of a SHA-256 over a length-prefixed
    /// encoding of issuer, client id and the canonical scopes (so the same identity always gets
    /// the same id, however its scopes were ordered), followed by the profile name when there is
    /// one (so keys without a profile keep the ids they always had).
    pub fn id(&self) -> String {
        let mut hasher = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        };
        field(b"koidc-cache-key-v1");
        field(self.issuer.as_bytes());
        field(self.client_id.as_bytes());
        let scopes = canonical_scopes(&self.scopes);
        field(&(scopes.len() as u64).to_be_bytes());
        for scope in &scopes {
            field(scope.as_bytes());
        }
        if let Some(profile) = &self.profile {
            field(b"profile");
            field(profile.as_bytes());
        }
        if let Some(machine) = &self.machine {
            field(b"machine");
            field(machine.as_bytes());
        }
        if let Some(variant) = &self.variant {
            field(b"variant");
            field(variant.as_bytes());
        }
        let digest = hasher.finalize();
        hex::encode(&digest[..16])
    }

    /// True when `self` and `other` name the same entry (scope order and duplicates aside).
    fn same_entry(&self, other: &CacheKey) -> bool {
        self.issuer == other.issuer
            && self.client_id == other.client_id
            && canonical_scopes(&self.scopes) == canonical_scopes(&other.scopes)
            && self.profile == other.profile
            && self.machine == other.machine
            && self.variant == other.variant
    }
}

fn canonical_scopes(scopes: &[String]) -> Vec<String> {
    let mut out: Vec<String> = scopes
        .iter()
        .filter(|s| !s.is_empty() && s.as_str() != "openid")
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What an entry records besides the tokens, for tokens koidc cannot read itself (GitHub's opaque
/// access tokens): the provider kind, the expiry, who the token belongs to, and when the provider
/// last confirmed it. All `None` for OpenID Connect entries, whose ID token says all of it;
/// entries written before this existed read as the default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntryMeta {
    /// The provider that issued the tokens when they are not OpenID Connect tokens (`"github"`).
    pub kind: Option<String>,
    /// When the access token expires; `None` when the provider gave no expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the refresh token expires, when the provider said.
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// Who the token belongs to, for display (`whoami`); never a secret. Stored inside the
    /// encrypted part of keyring entries.
    pub info: Option<serde_json::Value>,
    /// When the provider last confirmed the token is still valid (GitHub: `GET /user`);
    /// `None` when never (entries written before this existed), which means "check now".
    pub checked_at: Option<DateTime<Utc>>,
}

/// Errors of the token cache. None of them contains a token or a key.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache directory can be read or entered by group or others.
    #[error(
        "cache directory {} is accessible by group or others (mode {mode:04o}); run `chmod 700 {}` and try again",
        path.display(),
        path.display()
    )]
    InsecureDir {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The cache directory, or an entry in it, belongs to another user.
    #[error("{} belongs to uid {owner}, not to you (uid {me}); use a cache directory of your own", path.display())]
    ForeignOwner {
        /// The directory or file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The effective uid of this process.
        me: u32,
    },
    /// The cache path exists but is not a directory.
    #[error("cache path {} is not a directory; remove it or choose another cache directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A cache entry can be read by group or others; it was not used.
    #[error(
        "cache entry {} is accessible by group or others (mode {mode:04o}) and was not used; delete it or run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    InsecureEntry {
        /// The entry file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file operation failed.
    #[error("cannot {action} {}: {error}", path.display())]
    Io {
        /// What koidc was doing, e.g. "read cache entry".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A cache entry is damaged (truncated, not koidc's format, undecryptable, or for another
    /// identity). Treat it as a miss; the next save replaces it.
    #[error("cache entry {} is unusable ({reason}); it will be replaced at the next login", path.display())]
    Corrupt {
        /// The entry file.
        path: PathBuf,
        /// What is wrong with it (never its content).
        reason: String,
    },
    /// Another process held the lock for longer than it announced (or, without an announcement,
    /// than this process's own budget). flock locks die with their holder, so a live process
    /// holds it: the message says how to find it (deleting the file would break the lock).
    #[error(
        "timed out after {}s waiting for another koidc process holding the lock {}; find it with `fuser {}` or `lsof {}` (do not delete the lock file: that lets two processes log in at once)",
        waited.as_secs(),
        path.display(),
        path.display(),
        path.display()
    )]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long koidc waited.
        waited: std::time::Duration,
    },
    /// The OS random number generator failed.
    #[error("cannot generate random bytes for the token cache: {0}")]
    Random(String),
}

impl CacheError {
    /// True for [`CacheError::Corrupt`]: the entry is damaged and should be treated as a miss.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, CacheError::Corrupt { .. })
    }

    fn io(action: &'static str, path: &Path, error: std::io::Error) -> Self {
        CacheError::Io {
            action,
            path: path.to_owned(),
            error,
        }
    }

    fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        CacheError::Corrupt {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A store of token sets. Implementations are cheap to open; they touch the OS keyring only
/// when an operation needs the master key.
pub trait TokenStore: Send + Sync {
    /// The entry for `key`, or `None` when there is none. A damaged entry gives
    /// [`CacheError::Corrupt`]; an entry readable by others gives [`CacheError::InsecureEntry`].
    fn load(&self, key: &CacheKey) -> Result<Option<TokenSet>, CacheError>;
    /// Stores `tokens` for `key`, replacing any earlier entry (damaged or not) atomically.
    fn save(&self, key: &CacheKey, tokens: &TokenSet) -> Result<(), CacheError>;
    /// Like [`TokenStore::load`], with the entry's metadata (the default when it has none).
    fn load_with_meta(&self, key: &CacheKey) -> Result<Option<(TokenSet, EntryMeta)>, CacheError> {
        Ok(self.load(key)?.map(|tokens| (tokens, EntryMeta::default())))
    }
    /// Like [`TokenStore::save`], recording `meta` with the tokens. (The default, for stores
    /// that keep nothing, drops it.)
    fn save_with_meta(&self, key: &CacheKey, tokens: &TokenSet, meta: &EntryMeta) -> Result<(), CacheError> {
        let _ = meta;
        self.save(key, tokens)
    }
    /// Removes the entry for `key` (encrypted and plaintext files); true when there was one.
    fn delete(&self, key: &CacheKey) -> Result<bool, CacheError>;
    /// The key of every readable entry (for `logout --all`), whatever the store kind; damaged
    /// entries are skipped. Works without the keyring (keys are stored in clear beside the
    /// encrypted tokens).
    fn list(&self) -> Result<Vec<CacheKey>, CacheError>;
    /// Why a keyring store used plain files instead of the keyring in this process (e.g. "no
    /// D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)"); `None` when it did not, and
    /// always `None` for the other kinds. Meant for one warning line after a save.
    fn fallback_reason(&self) -> Option<String> {
        None
    }
}

/// Opens the store of `kind` with files under `dir`. For [`CacheKind::File`] and
/// [`CacheKind::Keyring`], creates `dir` (0700) when missing and refuses a directory that group
/// or others can access. Succeeds without a usable keyring (see [`TokenStore::fallback_reason`]).
/// [`CacheKind::None`] does not touch `dir`.
pub fn open_store(kind: CacheKind, dir: &Path) -> Result<Box<dyn TokenStore>, CacheError> {
    match kind {
        CacheKind::None => Ok(Box::new(NoStore)),
        CacheKind::File => Ok(Box::new(file::FileStore::open(dir)?)),
        CacheKind::Keyring => Ok(Box::new(keyring::KeyringStore::open(dir)?)),
    }
}

/// [`CacheKind::None`]: remembers nothing.
struct NoStore;

impl TokenStore for NoStore {
    fn load(&self, _key: &CacheKey) -> Result<Option<TokenSet>, CacheError> {
        Ok(None)
    }
    fn save(&self, _key: &CacheKey, _tokens: &TokenSet) -> Result<(), CacheError> {
        Ok(())
    }
    fn delete(&self, _key: &CacheKey) -> Result<bool, CacheError> {
        Ok(false)
    }
    fn list(&self) -> Result<Vec<CacheKey>, CacheError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers shared by the cache tests (and the login pipeline's: [`MemoryStore`]).
    use std::path::PathBuf;

    use secrecy::SecretString;

    use super::{CacheError, CacheKey, EntryMeta, TokenStore};
    use crate::login::token::TokenSet;

    /// A fresh 0700 directory under the system temp dir, removed on drop.
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "koidc-cache-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&path);
            Self(path)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Writes a file with mode 0600 (as koidc would), whatever the umask.
    pub fn write_private(path: &std::path::Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }

    /// A store in memory; saves fail while `fail_saves` is set.
    #[derive(Default)]
    pub struct MemoryStore {
        entries: std::sync::Mutex<std::collections::HashMap<String, (CacheKey, TokenSet, EntryMeta)>>,
        /// Makes every save fail (as a full disk would).
        pub fail_saves: std::sync::atomic::AtomicBool,
    }

    impl TokenStore for MemoryStore {
        fn load(&self, key: &CacheKey) -> Result<Option<TokenSet>, CacheError> {
            Ok(self.load_with_meta(key)?.map(|(tokens, _)| tokens))
        }
        fn save(&self, key: &CacheKey, tokens: &TokenSet) -> Result<(), CacheError> {
            self.save_with_meta(key, tokens, &EntryMeta::default())
        }
        fn load_with_meta(&self, key: &CacheKey) -> Result<Option<(TokenSet, EntryMeta)>, CacheError> {
            let entries = self.entries.lock().unwrap();
            Ok(entries
                .get(&key.id())
                .map(|(_, tokens, meta)| (tokens.clone(), meta.clone())))
        }
        fn save_with_meta(
            &self,
            key: &CacheKey,
            tokens: &TokenSet,
            meta: &EntryMeta,
        ) -> Result<(), CacheError> {
            if self.fail_saves.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(CacheError::io(
                    "write cache entry",
                    std::path::Path::new("memory"),
                    std::io::Error::other("no space left"),
                ));
            }
            self.entries
                .lock()
                .unwrap()
                .insert(key.id(), (key.clone(), tokens.clone(), meta.clone()));
            Ok(())
        }
        fn delete(&self, key: &CacheKey) -> Result<bool, CacheError> {
            Ok(self.entries.lock().unwrap().remove(&key.id()).is_some())
        }
        fn list(&self) -> Result<Vec<CacheKey>, CacheError> {
            Ok(self
                .entries
                .lock()
                .unwrap()
                .values()
                .map(|(key, ..)| key.clone())
                .collect())
        }
    }

    pub fn key(n: u32) -> CacheKey {
        CacheKey::new(
            "https://idp.example",
            &format!("client-{n}"),
            &["groups".into(), "email".into()],
        )
    }

    pub fn tokens(tag: &str) -> TokenSet {
        TokenSet {
            id_token: SecretString::from(format!("id-token-{tag}")),
            refresh_token: Some(SecretString::from(format!("refresh-token-{tag}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::test_support::*;
    use super::*;

    #[test]
    fn key_new_sorts_dedups_and_drops_openid() {
        let k = CacheKey::new(
            "https://i",
            "c",
            &["b".into(), "openid".into(), "a".into(), "b".into(), "".into()],
        );
        assert_eq!(k.scopes, vec!["a", "b"]);
    }

    #[test]
    fn key_id_is_stable_and_separates_identities() {
        let a = CacheKey::new("https://i", "c", &["x".into(), "y".into()]);
        let b = CacheKey::new("https://i", "c", &["y".into(), "x".into(), "openid".into()]);
        assert_eq!(a.id(), b.id());
        assert_eq!(a.id().len(), 32);
        assert!(
            a.id()
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        // Length prefixes: moving characters between fields changes the id.
        let c = CacheKey::new("https://ic", "", &["x".into(), "y".into()]);
        let d = CacheKey::new("https://i", "c", &["xy".into()]);
        let e = CacheKey::new("https://i", "c", &[]);
        let ids = [a.id(), c.id(), d.id(), e.id()];
        for i in 0..ids.len() {
            for j in i + 1..ids.len() {
                assert_ne!(ids[i], ids[j]);
            }
        }
        // A hand-built key with unsorted scopes maps to the same entry.
        let raw = CacheKey {
            issuer: "https://i".into(),
            client_id: "c".into(),
            scopes: vec!["y".into(), "x".into()],
            profile: None,
            machine: None,
            variant: None,
        };
        assert_eq!(raw.id(), a.id());
    }

    #[test]
    fn a_profile_makes_a_separate_entry_and_no_profile_keeps_the_old_id() {
        let plain = CacheKey::new("https://i", "c", &["x".into()]);
        // The id of this key before profiles existed (koidc-cache-key-v1 encoding).
        assert_eq!(plain.id(), "c05cc6967cc3324271b0a8ea7d2decbd");
        let work = plain.clone().with_profile(Some("work".into()));
        let home = plain.clone().with_profile(Some("home".into()));
        assert_ne!(work.id(), plain.id());
        assert_ne!(work.id(), home.id());
        assert_eq!(work.id(), plain.clone().with_profile(Some("work".into())).id());
        assert!(!work.same_entry(&plain));
        assert!(work.same_entry(&work.clone()));
    }

    #[test]
    fn none_store_remembers_nothing() {
        let dir = TempDir::new("none");
        let store = open_store(CacheKind::None, dir.path()).unwrap();
        store.save(&key(1), &tokens("a")).unwrap();
        assert!(store.load(&key(1)).unwrap().is_none());
        assert!(!store.delete(&key(1)).unwrap());
        assert!(store.list().unwrap().is_empty());
        assert!(store.fallback_reason().is_none());
        assert!(
            !dir.path().exists(),
            "the none store must not create the cache directory"
        );
    }

    #[test]
    fn file_store_via_open_store_round_trips() {
        let dir = TempDir::new("open-file");
        let store = open_store(CacheKind::File, &dir.path().join("nested")).unwrap();
        store.save(&key(1), &tokens("a")).unwrap();
        let got = store.load(&key(1)).unwrap().unwrap();
        assert_eq!(got.id_token.expose_secret(), "id-token-a");
        assert!(store.fallback_reason().is_none());
    }

    #[test]
    fn file_store_keeps_metadata_and_plain_save_clears_it() {
        let dir = TempDir::new("meta");
        let store = open_store(CacheKind::File, dir.path()).unwrap();
        let meta = EntryMeta {
            kind: Some("github".into()),
            expires_at: None,
            refresh_expires_at: None,
            info: Some(serde_json::json!({"login": "octocat", "groups": ["acme:sre"]})),
            checked_at: None,
        };
        store.save_with_meta(&key(1), &tokens("a"), &meta).unwrap();
        let (got, got_meta) = store.load_with_meta(&key(1)).unwrap().unwrap();
        assert_eq!(got.id_token.expose_secret(), "id-token-a");
        assert_eq!(got_meta, meta);
        // `load` still serves the tokens; a save without metadata leaves none behind.
        assert!(store.load(&key(1)).unwrap().is_some());
        store.save(&key(1), &tokens("b")).unwrap();
        assert_eq!(
            store.load_with_meta(&key(1)).unwrap().unwrap().1,
            EntryMeta::default()
        );
        // The store that keeps nothing drops it.
        let none = open_store(CacheKind::None, dir.path()).unwrap();
        none.save_with_meta(&key(1), &tokens("a"), &meta).unwrap();
        assert!(none.load_with_meta(&key(1)).unwrap().is_none());
    }

    #[test]
    fn fuzz_entry_point_round_trips_real_entries_and_survives_damage() {
        let plain = entry::encode_plain(
            &key(1).with_profile(Some("p".into())),
            &tokens("a"),
            &EntryMeta::default(),
        );
        fuzz::decode_entry(&plain);
        let master = crypt::MasterKey::from_text(&"5a".repeat(32)).unwrap();
        let (nonce, ciphertext) = crypt::seal(&master, key(2).id().as_bytes(), &plain).unwrap();
        let sealed = entry::encode_sealed(&key(2), &nonce, &ciphertext);
        fuzz::decode_entry(&sealed);
        for cut in [0, 1, plain.len() / 2, sealed.len() - 1] {
            fuzz::decode_entry(&plain[..cut.min(plain.len())]);
            fuzz::decode_entry(&sealed[..cut]);
        }
        fuzz::decode_entry(br#"{"version":1,"issuer":"i","client_id":"c","scopes":[],"id_token":"t","expires_at":-9223372036854775808}"#);
    }

    #[test]
    fn errors_and_debug_carry_no_secret() {
        let t = tokens("s3cr3t");
        assert!(!format!("{t:?}").contains("s3cr3t"));
        let err = CacheError::corrupt(Path::new("/x/y.json"), "truncated JSON at line 1 column 9");
        assert!(err.is_corrupt());
        assert!(err.to_string().starts_with("cache entry /x/y.json is unusable"));
    }
}
