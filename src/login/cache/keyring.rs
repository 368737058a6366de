//! The keyring store ([`super::CacheKind::Keyring`]): entries are files encrypted with a master
//! key, and only the master key lives in the OS keyring. Tokens can exceed what keyrings hold
//! (Windows: 2,560 bytes), and one small key keeps the keyring out of the per-token path.
//!
//! Where the master key lives, per cache directory (account `master:<first 16 hex digits of
//! sha256(canonical cache dir)>`, so different cache directories never share a key):
//! - Linux, front: a `user` key `koidc:<account>` in the session keyring `@s` (kernel keyutils:
//!   microseconds, no D-Bus, gone at reboot). A hit is the whole warm path.
//! - Linux, behind it: the Secret Service (service `koidc`, user `<account>`, default collection),
//!   persistent but a D-Bus round trip per call. Found there: copied to the front. Found nowhere:
//!   a new random key is stored there, then in front (under `<dir>/master-key.lock`, so two
//!   processes never create two keys).
//! - Elsewhere: the platform keyring of the `keyring` crate (macOS keychain, Windows credential
//!   manager), no front tier. A build whose `keyring` has no persistent store counts as "no
//!   keyring".
//!
//! No usable keyring (no session bus, daemon gone, locked or refused, slow): the store still
//! works, with plaintext `<id>.json` files like [`super::CacheKind::File`], and
//! [`TokenStore::fallback_reason`] says why. The Secret Service is asked at most once per
//! process, after a cheap check of `DBUS_SESSION_BUS_ADDRESS`, and each call is bounded by
//! [`SECRET_SERVICE_TIMEOUT`] (long enough to type an unlock password into a keyring prompt).
//!
//! The keyring access sits behind [`SecretTier`] so tests inject stores that are empty, full or
//! unavailable without touching the process environment.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::crypt::{self, MasterKey};
use super::entry;
use super::file::{self, FileStore, PLAIN_EXT, SEALED_EXT};
use super::lock::CacheLock;
use super::{CacheError, CacheKey, EntryMeta, TokenStore};
use crate::login::token::TokenSet;

mod tiers;

use self::tiers::{SERVICE, SecretTier, platform_tiers};

/// Longest wait for one Secret Service (or platform keyring) call.
pub(super) const SECRET_SERVICE_TIMEOUT: Duration = Duration::from_secs(25);
/// The lock file, in the cache directory, under which a new master key is created.
pub(super) const MASTER_LOCK: &str = "master-key.lock";

/// See the module documentation.
pub(super) struct KeyringStore {
    files: FileStore,
    master: MasterKeys,
}

impl KeyringStore {
    /// The store for `dir` with the platform's keyrings. Never touches the keyring itself.
    pub(super) fn open(dir: &Path) -> Result<Self, CacheError> {
        let (front, back) = platform_tiers();
        Self::with_tiers(dir, front, back)
    }

    /// The store for `dir` with the given master key tiers.
    pub(super) fn with_tiers(
        dir: &Path,
        front: Option<Box<dyn SecretTier>>,
        back: Box<dyn SecretTier>,
    ) -> Result<Self, CacheError> {
        let files = FileStore::open(dir)?;
        let master = MasterKeys {
            account: account_for(dir),
            lock_path: dir.join(MASTER_LOCK),
            front,
            back,
            state: Mutex::new(KeyState::Unknown),
        };
        Ok(Self { files, master })
    }

    /// Decrypts the sealed entry `bytes` read from `path` for `key`.
    fn open_sealed(
        &self,
        path: &Path,
        key: &CacheKey,
        bytes: &[u8],
        master: Arc<MasterKey>,
    ) -> Result<(TokenSet, EntryMeta), CacheError> {
        let sealed = entry::decode_sealed(path, bytes)?;
        let aad = key.id();
        let plain = match crypt::open(&master, aad.as_bytes(), &sealed.nonce, &sealed.ciphertext) {
            Some(plain) => plain,
            None => self
                .master
                .reload_from_back(&master)
                .and_then(|newer| crypt::open(&newer, aad.as_bytes(), &sealed.nonce, &sealed.ciphertext))
                .ok_or_else(|| {
                    CacheError::corrupt(
                        path,
                        "it does not decrypt with the master key in the keyring (damaged, or written with another key)",
                    )
                })?,
        };
        let entry = entry::decode_plain(path, &plain)?;
        file::check_key(path, key, entry)
    }
}

impl TokenStore for KeyringStore {
    fn load(&self, key: &CacheKey) -> Result<Option<TokenSet>, CacheError> {
        Ok(self.load_with_meta(key)?.map(|(tokens, _)| tokens))
    }

    fn save(&self, key: &CacheKey, tokens: &TokenSet) -> Result<(), CacheError> {
        self.save_with_meta(key, tokens, &EntryMeta::default())
    }

    fn load_with_meta(&self, key: &CacheKey) -> Result<Option<(TokenSet, EntryMeta)>, CacheError> {
        let sealed_path = self.files.path(key, SEALED_EXT);
        let mut key_missing = false;
        // Ask for the master key only when there is something to decrypt.
        if let Some(bytes) = file::read_private(&sealed_path)? {
            match self.master.get(false) {
                Ok(Some(master)) => return self.open_sealed(&sealed_path, key, &bytes, master).map(Some),
                Ok(None) => key_missing = true,
                Err(_unavailable) => {} // recorded for fallback_reason; try the plaintext entry
            }
        }
        match self.files.load_plain(key)? {
            Some(entry) => Ok(Some(entry)),
            None if key_missing => Err(CacheError::corrupt(
                &sealed_path,
                "its master key is no longer in the keyring",
            )),
            None => Ok(None),
        }
    }

    fn save_with_meta(&self, key: &CacheKey, tokens: &TokenSet, meta: &EntryMeta) -> Result<(), CacheError> {
        let sealed_path = self.files.path(key, SEALED_EXT);
        match self.master.get(true) {
            Ok(Some(master)) => {
                let plain = entry::encode_plain(key, tokens, meta);
                let (nonce, ciphertext) = crypt::seal(&master, key.id().as_bytes(), &plain)?;
                let bytes = entry::encode_sealed(key, &nonce, &ciphertext);
                file::write_atomic(self.files.dir(), &sealed_path, &bytes)?;
                // No plaintext copy may linger next to the encrypted entry.
                file::remove(&self.files.path(key, PLAIN_EXT))?;
            }
            Ok(None) | Err(_) => {
                self.files.save_plain(key, tokens, meta)?;
                // The encrypted entry (if any) is older than the one just written.
                file::remove(&sealed_path)?;
            }
        }
        Ok(())
    }

    fn delete(&self, key: &CacheKey) -> Result<bool, CacheError> {
        self.files.delete_both(key)
    }

    fn list(&self) -> Result<Vec<CacheKey>, CacheError> {
        file::list_keys(self.files.dir())
    }

    fn fallback_reason(&self) -> Option<String> {
        match &*self.master.state() {
            KeyState::Unavailable(reason) => Some(reason.clone()),
            _ => None,
        }
    }
}

/// The account naming the master key of `dir`.
fn account_for(dir: &Path) -> String {
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(canonical.as_os_str()).to_vec();
    #[cfg(not(unix))]
    let bytes = canonical.to_string_lossy().as_bytes().to_vec();
    let digest = Sha256::digest(&bytes);
    format!("master:{}", &hex::encode(digest)[..16])
}

/// What this process knows about the master key.
enum KeyState {
    /// Not asked yet.
    Unknown,
    /// Found or created; `from_front` when it came from the front tier without checking the back.
    Have { key: Arc<MasterKey>, from_front: bool },
    /// The back tier works but holds no key (reads only; a save creates one).
    Missing,
    /// No usable keyring, with the reason.
    Unavailable(String),
}

struct MasterKeys {
    account: String,
    lock_path: PathBuf,
    front: Option<Box<dyn SecretTier>>,
    back: Box<dyn SecretTier>,
    state: Mutex<KeyState>,
}

impl MasterKeys {
    fn state(&self) -> MutexGuard<'_, KeyState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The master key: `Ok(None)` when the keyring works but has none and `create` is false;
    /// `Err(reason)` when no keyring is usable (remembered for the rest of the process).
    fn get(&self, create: bool) -> Result<Option<Arc<MasterKey>>, String> {
        let mut state = self.state();
        match &*state {
            KeyState::Have { key, .. } => return Ok(Some(key.clone())),
            KeyState::Unavailable(reason) => return Err(reason.clone()),
            KeyState::Missing if !create => return Ok(None),
            KeyState::Missing => {}
            KeyState::Unknown => {
                if let Some(key) = self.front_get() {
                    let key = Arc::new(key);
                    *state = KeyState::Have {
                        key: key.clone(),
                        from_front: true,
                    };
                    return Ok(Some(key));
                }
            }
        }
        let result = self.back_get().and_then(|found| match found {
            Some(key) => Ok(Some(key)),
            None if !create => Ok(None),
            None => self.create().map(Some),
        });
        match result {
            Ok(Some(key)) => {
                self.front_set(&key);
                let key = Arc::new(key);
                *state = KeyState::Have {
                    key: key.clone(),
                    from_front: false,
                };
                Ok(Some(key))
            }
            Ok(None) => {
                *state = KeyState::Missing;
                Ok(None)
            }
            Err(reason) => {
                *state = KeyState::Unavailable(reason.clone());
                Err(reason)
            }
        }
    }

    /// After `failed` (from the front tier) could not decrypt: the back tier's key when it
    /// differs (another session replaced the master key), also copied to the front.
    fn reload_from_back(&self, failed: &MasterKey) -> Option<Arc<MasterKey>> {
        let mut state = self.state();
        if !matches!(&*state, KeyState::Have { from_front: true, .. }) {
            return None;
        }
        let newer = self.back_get().ok().flatten().filter(|k| k != failed)?;
        self.front_set(&newer);
        let newer = Arc::new(newer);
        *state = KeyState::Have {
            key: newer.clone(),
            from_front: false,
        };
        Some(newer)
    }

    fn front_get(&self) -> Option<MasterKey> {
        let text = self.front.as_ref()?.get(&self.account).ok()??;
        MasterKey::from_text(secrecy::ExposeSecret::expose_secret(&text))
    }

    /// Best effort: without the front tier every process asks the back tier.
    fn front_set(&self, key: &MasterKey) {
        if let Some(front) = &self.front {
            let _ = front.set(&self.account, &key.to_text());
        }
    }

    fn back_get(&self) -> Result<Option<MasterKey>, String> {
        match self.back.get(&self.account)? {
            None => Ok(None),
            Some(text) => MasterKey::from_text(secrecy::ExposeSecret::expose_secret(&text))
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "the koidc master key in the keyring (service {SERVICE}, user {}) is malformed; delete it",
                        self.account
                    )
                }),
        }
    }

    /// Creates and stores a new master key, unless another process just did.
    fn create(&self) -> Result<MasterKey, String> {
        // Without the lock two processes could each store a key, and the loser's entries would
        // become undecryptable; failing to lock only re-opens that small window.
        let _lock = CacheLock::acquire_path(self.lock_path.clone(), Duration::from_secs(10)).ok();
        if let Some(key) = self.back_get()? {
            return Ok(key);
        }
        let key = MasterKey::generate().map_err(|e| e.to_string())?;
        self.back.set(&self.account, &key.to_text())?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fs;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use secrecy::{ExposeSecret, SecretString};

    use super::super::test_support::*;
    use super::tiers::*;
    use super::*;

    /// An in-memory tier; `down` makes it unavailable. Shared between stores through `Arc`.
    #[derive(Default)]
    struct MemTier {
        values: Mutex<HashMap<String, String>>,
        down: Option<String>,
        gets: AtomicUsize,
    }

    impl MemTier {
        fn down(reason: &str) -> Arc<Self> {
            Arc::new(Self {
                down: Some(reason.into()),
                ..Self::default()
            })
        }
        fn value(&self, account: &str) -> Option<String> {
            self.values.lock().unwrap().get(account).cloned()
        }
        fn put(&self, account: &str, value: &str) {
            self.values.lock().unwrap().insert(account.into(), value.into());
        }
    }

    impl SecretTier for Arc<MemTier> {
        fn get(&self, account: &str) -> Result<Option<SecretString>, String> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            if let Some(reason) = &self.down {
                return Err(reason.clone());
            }
            Ok(self.value(account).map(SecretString::from))
        }
        fn set(&self, account: &str, value: &SecretString) -> Result<(), String> {
            if let Some(reason) = &self.down {
                return Err(reason.clone());
            }
            self.put(account, value.expose_secret());
            Ok(())
        }
    }

    fn store(dir: &Path, front: &Arc<MemTier>, back: &Arc<MemTier>) -> KeyringStore {
        KeyringStore::with_tiers(dir, Some(Box::new(front.clone())), Box::new(back.clone())).unwrap()
    }

    #[test]
    fn saves_encrypted_and_loads_back() {
        let tmp = TempDir::new("kr-rt");
        let (front, back) = (Arc::new(MemTier::default()), Arc::new(MemTier::default()));
        let s = store(tmp.path(), &front, &back);
        s.save(&key(1), &tokens("a")).unwrap();
        let sealed = s.files.path(&key(1), SEALED_EXT);
        assert!(sealed.exists() && !s.files.path(&key(1), PLAIN_EXT).exists());
        let raw = fs::read_to_string(&sealed).unwrap();
        assert!(
            !raw.contains("id-token-a") && !raw.contains("refresh-token-a"),
            "{raw}"
        );
        // The master key was created in the back tier and copied to the front.
        let account = account_for(tmp.path());
        assert_eq!(back.value(&account).unwrap().len(), 64);
        assert_eq!(front.value(&account), back.value(&account));
        assert!(s.fallback_reason().is_none());
        // A new process (new store) decrypts.
        let got = store(tmp.path(), &front, &back).load(&key(1)).unwrap().unwrap();
        assert_eq!(got.id_token.expose_secret(), "id-token-a");
        assert_eq!(got.refresh_token.unwrap().expose_secret(), "refresh-token-a");
        assert_eq!(s.list().unwrap(), vec![key(1)]);
    }

    #[test]
    fn metadata_is_sealed_with_the_tokens() {
        let tmp = TempDir::new("kr-meta");
        let (front, back) = (Arc::new(MemTier::default()), Arc::new(MemTier::default()));
        let s = store(tmp.path(), &front, &back);
        let meta = EntryMeta {
            kind: Some("github".into()),
            info: Some(serde_json::json!({"login": "octocat-secret-org"})),
            ..EntryMeta::default()
        };
        s.save_with_meta(&key(1), &tokens("a"), &meta).unwrap();
        let raw = fs::read_to_string(s.files.path(&key(1), SEALED_EXT)).unwrap();
        assert!(!raw.contains("octocat-secret-org"), "{raw}");
        let (_, got) = store(tmp.path(), &front, &back)
            .load_with_meta(&key(1))
            .unwrap()
            .unwrap();
        assert_eq!(got, meta);
    }

    #[test]
    fn warm_path_never_asks_the_back_tier() {
        let tmp = TempDir::new("kr-warm");
        let (front, back) = (Arc::new(MemTier::default()), Arc::new(MemTier::default()));
        store(tmp.path(), &front, &back)
            .save(&key(1), &tokens("a"))
            .unwrap();
        let before = back.gets.load(Ordering::SeqCst);
        let s = store(tmp.path(), &front, &back);
        assert!(s.load(&key(1)).unwrap().is_some());
        s.save(&key(1), &tokens("b")).unwrap();
        assert_eq!(back.gets.load(Ordering::SeqCst), before);
        // A miss (no entry file) does not even ask the front tier.
        let gets = front.gets.load(Ordering::SeqCst);
        assert!(store(tmp.path(), &front, &back).load(&key(2)).unwrap().is_none());
        assert_eq!(front.gets.load(Ordering::SeqCst), gets);
    }

    #[test]
    fn back_tier_key_is_copied_to_an_empty_front() {
        let tmp = TempDir::new("kr-copy");
        let (front, back) = (Arc::new(MemTier::default()), Arc::new(MemTier::default()));
        store(tmp.path(), &front, &back)
            .save(&key(1), &tokens("a"))
            .unwrap();
        let fresh_front = Arc::new(MemTier::default()); // e.g. after a reboot
        assert!(
            store(tmp.path(), &fresh_front, &back)
                .load(&key(1))
                .unwrap()
                .is_some()
        );
        let account = account_for(tmp.path());
        assert_eq!(fresh_front.value(&account), back.value(&account));
    }

    #[test]
    fn without_keyring_falls_back_to_files_and_says_why() {
        let tmp = TempDir::new("kr-fallback");
        let (front, back) = (
            Arc::new(MemTier::default()),
            MemTier::down("no D-Bus session bus"),
        );
        let s = store(tmp.path(), &front, &back);
        assert!(s.fallback_reason().is_none());
        s.save(&key(1), &tokens("a")).unwrap();
        assert_eq!(s.fallback_reason().as_deref(), Some("no D-Bus session bus"));
        assert!(s.files.path(&key(1), PLAIN_EXT).exists());
        assert!(!s.files.path(&key(1), SEALED_EXT).exists());
        assert_eq!(
            s.load(&key(1)).unwrap().unwrap().id_token.expose_secret(),
            "id-token-a"
        );
        // The keyring was asked once in this process, not on every call.
        s.save(&key(2), &tokens("b")).unwrap();
        assert_eq!(back.gets.load(Ordering::SeqCst), 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn real_secret_service_without_session_bus_falls_back_fast() {
        let tmp = TempDir::new("kr-nobus");
        let back = SecretService {
            bus_address: None,
            timeout: Duration::from_secs(1),
        };
        let s = KeyringStore::with_tiers(tmp.path(), None, Box::new(back)).unwrap();
        let start = std::time::Instant::now();
        s.save(&key(1), &tokens("a")).unwrap();
        assert!(start.elapsed() < Duration::from_millis(500));
        let reason = s.fallback_reason().unwrap();
        assert!(reason.contains("DBUS_SESSION_BUS_ADDRESS"), "{reason}");
        assert!(s.load(&key(1)).unwrap().is_some());
        // A socket path that does not exist is detected without D-Bus as well.
        let gone = SecretService {
            bus_address: Some(format!("unix:path={}/nope", tmp.path().display()).into()),
            timeout: Duration::from_secs(1),
        };
        let err = gone.get("x").unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn encrypted_entry_wins_then_plaintext_when_keyring_is_gone() {
        let tmp = TempDir::new("kr-both");
        let (front, back) = (Arc::new(MemTier::default()), Arc::new(MemTier::default()));
        store(tmp.path(), &front, &back)
            .save(&key(1), &tokens("sealed"))
            .unwrap();
        // A plaintext entry written by a fallback run.
        FileStore::open(tmp.path())
            .unwrap()
            .save_plain(&key(1), &tokens("plain"), &EntryMeta::default())
            .unwrap();
        let got = store(tmp.path(), &front, &back).load(&key(1)).unwrap().unwrap();
        assert_eq!(got.id_token.expose_secret(), "id-token-sealed");
        let nothing = (Arc::new(MemTier::default()), MemTier::down("gone"));
        let s = store(tmp.path(), &nothing.0, &nothing.1);
        assert_eq!(
            s.load(&key(1)).unwrap().unwrap().id_token.expose_secret(),
            "id-token-plain"
        );
        assert_eq!(s.fallback_reason().as_deref(), Some("gone"));
        // Without a plaintext entry, an unreadable encrypted one is a plain miss.
        fs::remove_file(s.files.path(&key(1), PLAIN_EXT)).unwrap();
        assert!(
            store(tmp.path(), &nothing.0, &nothing.1)
                .load(&key(1))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn tampered_ciphertext_is_corrupt_and_isolated() {
        let tmp = TempDir::new("kr-tamper");
        let (front, back) = (Arc::new(MemTier::default()), Arc::new(MemTier::default()));
        let s = store(tmp.path(), &front, &back);
        s.save(&key(1), &tokens("a")).unwrap();
        s.save(&key(2), &tokens("b")).unwrap();
        let path = s.files.path(&key(1), SEALED_EXT);
        let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        let ct = v["ciphertext"].as_str().unwrap().to_owned();
        let flipped = match ct.strip_prefix('A') {
            Some(rest) => format!("B{rest}"),
            None => format!("A{}", &ct[1..]),
        };
        v["ciphertext"] = flipped.into();
        fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        let err = s.load(&key(1)).unwrap_err();
        assert!(err.is_corrupt(), "{err:?}");
        assert!(err.to_string().contains("does not decrypt"), "{err}");
        // Truncated encrypted file.
        let other = s.files.path(&key(2), SEALED_EXT);
        let full = fs::read(&other).unwrap();
        s.save(&key(3), &tokens("c")).unwrap();
        fs::write(s.files.path(&key(3), SEALED_EXT), &full[..full.len() - 10]).unwrap();
        assert!(s.load(&key(3)).unwrap_err().is_corrupt());
        assert_eq!(
            s.load(&key(2)).unwrap().unwrap().id_token.expose_secret(),
            "id-token-b"
        );
        // Saving over the damaged entry repairs it.
        s.save(&key(1), &tokens("a2")).unwrap();
        assert_eq!(
            s.load(&key(1)).unwrap().unwrap().id_token.expose_secret(),
            "id-token-a2"
        );
    }

    #[test]
    fn entry_copied_to_another_keys_file_fails_authentication() {
        let tmp = TempDir::new("kr-aad");
        let (front, back) = (Arc::new(MemTier::default()), Arc::new(MemTier::default()));
        let s = store(tmp.path(), &front, &back);
        s.save(&key(1), &tokens("a")).unwrap();
        // Copy the file, and even rewrite its clear key fields to the victim's.
        let mut v: serde_json::Value =
            serde_json::from_slice(&fs::read(s.files.path(&key(1), SEALED_EXT)).unwrap()).unwrap();
        v["client_id"] = key(2).client_id.into();
        write_private(
            &s.files.path(&key(2), SEALED_EXT),
            &serde_json::to_vec(&v).unwrap(),
        );
        let err = s.load(&key(2)).unwrap_err();
        assert!(
            err.is_corrupt() && err.to_string().contains("does not decrypt"),
            "{err}"
        );
    }

    #[test]
    fn stale_front_key_is_replaced_by_the_back_key() {
        let tmp = TempDir::new("kr-stale");
        let (front, back) = (Arc::new(MemTier::default()), Arc::new(MemTier::default()));
        store(tmp.path(), &front, &back)
            .save(&key(1), &tokens("a"))
            .unwrap();
        let account = account_for(tmp.path());
        let stale = MasterKey::from_bytes([9; 32]).to_text();
        front.put(&account, stale.expose_secret());
        let got = store(tmp.path(), &front, &back).load(&key(1)).unwrap().unwrap();
        assert_eq!(got.id_token.expose_secret(), "id-token-a");
        assert_eq!(front.value(&account), back.value(&account));
    }

    #[test]
    fn lost_master_key_makes_entry_corrupt_until_next_save() {
        let tmp = TempDir::new("kr-lost");
        let (front, back) = (Arc::new(MemTier::default()), Arc::new(MemTier::default()));
        store(tmp.path(), &front, &back)
            .save(&key(1), &tokens("a"))
            .unwrap();
        let (front2, back2) = (Arc::new(MemTier::default()), Arc::new(MemTier::default()));
        let s = store(tmp.path(), &front2, &back2);
        let err = s.load(&key(1)).unwrap_err();
        assert!(
            err.is_corrupt() && err.to_string().contains("no longer in the keyring"),
            "{err}"
        );
        assert!(s.fallback_reason().is_none());
        s.save(&key(1), &tokens("b")).unwrap();
        assert_eq!(
            s.load(&key(1)).unwrap().unwrap().id_token.expose_secret(),
            "id-token-b"
        );
    }

    #[test]
    fn malformed_back_key_is_reported_as_unusable_keyring() {
        let tmp = TempDir::new("kr-malformed");
        let (front, back) = (Arc::new(MemTier::default()), Arc::new(MemTier::default()));
        back.put(&account_for(tmp.path()), "not hex");
        let s = store(tmp.path(), &front, &back);
        s.save(&key(1), &tokens("a")).unwrap();
        assert!(s.fallback_reason().unwrap().contains("malformed"));
        assert!(s.files.path(&key(1), PLAIN_EXT).exists());
    }

    #[test]
    fn cache_dirs_get_distinct_master_keys() {
        let (a, b) = (TempDir::new("kr-dir-a"), TempDir::new("kr-dir-b"));
        fs::create_dir(a.path()).unwrap();
        fs::create_dir(b.path()).unwrap();
        assert_ne!(account_for(a.path()), account_for(b.path()));
        // The same directory through another spelling maps to the same account.
        let dotted = a.path().join(".");
        assert_eq!(account_for(&dotted), account_for(a.path()));
        assert!(account_for(a.path()).starts_with("master:") && account_for(a.path()).len() == 23);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn session_bus_problem_is_judged_from_the_address() {
        assert!(session_bus_problem(None).unwrap().contains("not set"));
        assert!(
            session_bus_problem(Some("".as_ref()))
                .unwrap()
                .contains("not set")
        );
        let gone = session_bus_problem(Some("unix:path=/nonexistent/bus,guid=1".as_ref())).unwrap();
        assert!(gone.contains("/nonexistent/bus does not exist"), "{gone}");
        assert!(session_bus_problem(Some("unix:abstract=/tmp/dbus-x".as_ref())).is_none());
        assert!(session_bus_problem(Some("unix:path=/nonexistent;unix:path=/".as_ref())).is_none());
    }

    /// Gives the calling thread (the test's own) a new, empty session keyring, so that a test
    /// never writes into the session keyring of whoever runs the tests. Session keyrings belong
    /// to a thread's credentials (Linux 3.8 and later), and `KEYCTL_JOIN_SESSION_KEYRING`
    /// without a name replaces only the caller's. A kernel that refuses fails the test, loudly.
    #[cfg(target_os = "linux")]
    fn private_session_keyring() {
        let session_id = || {
            // SAFETY: keyctl(KEYCTL_GET_KEYRING_ID, id, create) takes plain integers.
            unsafe {
                libc::syscall(
                    libc::SYS_keyctl,
                    libc::c_long::from(libc::KEYCTL_GET_KEYRING_ID),
                    libc::c_long::from(libc::KEY_SPEC_SESSION_KEYRING),
                    libc::c_long::from(0u8),
                )
            }
        };
        let before = session_id();
        // SAFETY: a null name asks for a new anonymous keyring.
        let joined = unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                libc::c_long::from(libc::KEYCTL_JOIN_SESSION_KEYRING),
                std::ptr::null::<libc::c_char>(),
            )
        };
        assert!(
            joined > 0,
            "the kernel gave this test no private session keyring ({}); it would otherwise write into yours",
            std::io::Error::last_os_error()
        );
        assert_eq!(session_id(), joined);
        assert_ne!(joined, before, "still the shared session keyring");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn private_session_keyring_is_the_test_threads_own() {
        let account = format!("test:{}:{}", std::process::id(), rand::random::<u64>());
        let key = MasterKey::generate().unwrap();
        let account = std::thread::spawn(move || {
            private_session_keyring();
            KernelKeyring.set(&account, &key.to_text()).unwrap();
            assert!(KernelKeyring.get(&account).unwrap().is_some());
            account
        })
        .join()
        .unwrap();
        // Only read here: this thread's session keyring is the one of whoever runs the tests.
        assert!(
            KernelKeyring.get(&account).unwrap().is_none(),
            "the key reached the shared session keyring"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn kernel_keyring_round_trip() {
        private_session_keyring();
        let account = format!("test:{}:{}", std::process::id(), rand::random::<u64>());
        assert!(KernelKeyring.get(&account).unwrap().is_none());
        let key = MasterKey::generate().unwrap();
        KernelKeyring.set(&account, &key.to_text()).unwrap();
        let got = KernelKeyring.get(&account).unwrap().unwrap();
        assert_eq!(MasterKey::from_text(got.expose_secret()).unwrap(), key);
        // Replacing updates in place.
        let key2 = MasterKey::generate().unwrap();
        KernelKeyring.set(&account, &key2.to_text()).unwrap();
        let got = KernelKeyring.get(&account).unwrap().unwrap();
        assert_eq!(MasterKey::from_text(got.expose_secret()).unwrap(), key2);
        let ring = KernelKeyring::ring().unwrap();
        ring.search(&KernelKeyring::description(&account))
            .unwrap()
            .invalidate()
            .unwrap();
    }

    /// Needs a running, unlocked Secret Service, e.g.
    /// `dbus-run-session -- sh -c 'echo pw | gnome-keyring-daemon --components=secrets
    /// --daemonize --unlock >/dev/null; cargo test --lib cache::keyring -- --ignored'`.
    #[cfg(target_os = "linux")]
    #[test]
    #[ignore = "needs a D-Bus session with an unlocked Secret Service"]
    fn secret_service_round_trip() {
        private_session_keyring();
        let service = SecretService {
            bus_address: std::env::var_os("DBUS_SESSION_BUS_ADDRESS"),
            timeout: SECRET_SERVICE_TIMEOUT,
        };
        let account = format!("test:{}:{}", std::process::id(), rand::random::<u64>());
        assert!(service.get(&account).unwrap().is_none());
        let mk = MasterKey::generate().unwrap();
        service.set(&account, &mk.to_text()).unwrap();
        let got = service.get(&account).unwrap().unwrap();
        assert_eq!(MasterKey::from_text(got.expose_secret()).unwrap(), mk);
        SecretService::entry(&account)
            .unwrap()
            .delete_credential()
            .unwrap();

        // The whole store with the real tiers: first save creates the master key.
        let tmp = TempDir::new("kr-ss");
        let s = KeyringStore::open(tmp.path()).unwrap();
        s.save(&key(1), &tokens("a")).unwrap();
        assert!(s.fallback_reason().is_none(), "{:?}", s.fallback_reason());
        assert!(s.files.path(&key(1), SEALED_EXT).exists());
        let account = account_for(tmp.path());
        assert!(service.get(&account).unwrap().is_some());
        // Another process after a reboot: empty kernel keyring, key from the Secret Service.
        let ring = KernelKeyring::ring().unwrap();
        if let Ok(k) = ring.search(&KernelKeyring::description(&account)) {
            k.invalidate().unwrap();
        }
        let again = KeyringStore::open(tmp.path()).unwrap();
        assert_eq!(
            again.load(&key(1)).unwrap().unwrap().id_token.expose_secret(),
            "id-token-a"
        );
        assert!(KernelKeyring.get(&account).unwrap().is_some());
        SecretService::entry(&account)
            .unwrap()
            .delete_credential()
            .unwrap();
        ring.search(&KernelKeyring::description(&account))
            .unwrap()
            .invalidate()
            .unwrap();
    }
}
