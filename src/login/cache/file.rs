//! The file side of the cache: a private cache directory, private files written atomically,
//! and the plaintext store ([`super::CacheKind::File`]) that the keyring store falls back to.
//!
//! Security rules enforced here: the directory is created 0700 and refused when group or
//! others can access it or when it belongs to another user; files are created 0600 and a file
//! that group or others can access (or that is a symlink, or not ours) is refused, never read.
//! Writes go to a temporary 0600 file in the same directory, are fsynced, then renamed over the
//! entry, so a reader sees the old entry or the new one, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use secrecy::zeroize::Zeroizing;

use super::entry::{self, Entry};
use super::{CacheError, CacheKey, EntryMeta, TokenStore};
use crate::login::token::TokenSet;

/// Largest entry file koidc reads: two tokens of [`crate::login::token::MAX_TOKEN_LEN`] plus room.
const MAX_ENTRY_LEN: u64 = 4 * crate::login::token::MAX_TOKEN_LEN as u64;

/// Extension of plaintext entries.
pub(super) const PLAIN_EXT: &str = "json";
/// Extension of encrypted entries.
pub(super) const SEALED_EXT: &str = "enc";

/// Creates `dir` (0700) when missing, or checks that an existing one is a directory of ours that
/// group and others cannot access.
pub(super) fn ensure_dir(dir: &Path) -> Result<(), CacheError> {
    match fs::metadata(dir) {
        Ok(meta) => check_dir(dir, &meta),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent)
                    .map_err(|e| CacheError::io("create the parent of cache directory", dir, e))?;
            }
            let mut builder = fs::DirBuilder::new();
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            match builder.create(dir) {
                Ok(()) => {
                    // The mode given to mkdir is reduced by the umask; make it exactly 0700.
                    #[cfg(unix)]
                    {
                        use std::os::unix::fs::PermissionsExt;
                        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                            .map_err(|e| CacheError::io("set the mode of cache directory", dir, e))?;
                    }
                }
                // Another koidc process created it meanwhile: check it like any existing one.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(CacheError::io("create cache directory", dir, e)),
            }
            let meta = fs::metadata(dir).map_err(|e| CacheError::io("inspect cache directory", dir, e))?;
            check_dir(dir, &meta)
        }
        Err(err) => Err(CacheError::io("inspect cache directory", dir, err)),
    }
}

fn check_dir(dir: &Path, meta: &fs::Metadata) -> Result<(), CacheError> {
    if !meta.is_dir() {
        return Err(CacheError::NotADirectory { path: dir.to_owned() });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        check_owner(dir, meta.uid())?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(CacheError::InsecureDir {
                path: dir.to_owned(),
                mode,
            });
        }
    }
    Ok(())
}

#[cfg(unix)]
fn check_owner(path: &Path, owner: u32) -> Result<(), CacheError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if owner != me {
        return Err(CacheError::ForeignOwner {
            path: path.to_owned(),
            owner,
            me,
        });
    }
    Ok(())
}

/// Options for opening an existing file without following a symlink.
fn open_options_nofollow() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    options
}

/// Reads a private file: `Ok(None)` when it does not exist; refuses symlinks, files of other
/// users and files that group or others can access; at most [`MAX_ENTRY_LEN`] bytes.
pub(super) fn read_private(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, CacheError> {
    read_file(path, true)
}

/// Like [`read_private`] without the mode and owner checks (to read keys for `list`).
pub(super) fn read_unchecked(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, CacheError> {
    read_file(path, false)
}

fn read_file(path: &Path, private: bool) -> Result<Option<Zeroizing<Vec<u8>>>, CacheError> {
    let file = match open_options_nofollow().read(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(CacheError::corrupt(
                path,
                "it is a symbolic link, not a file koidc wrote",
            ));
        }
        Err(e) => return Err(CacheError::io("open cache entry", path, e)),
    };
    // Check the file we opened, not the path (which could be swapped meanwhile).
    let meta = file
        .metadata()
        .map_err(|e| CacheError::io("inspect cache entry", path, e))?;
    if !meta.is_file() {
        return Err(CacheError::corrupt(path, "it is not a regular file"));
    }
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::MetadataExt;
        check_owner(path, meta.uid())?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(CacheError::InsecureEntry {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = private;
    if meta.len() > MAX_ENTRY_LEN {
        return Err(CacheError::corrupt(
            path,
            format!("it is larger than {MAX_ENTRY_LEN} bytes"),
        ));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    file.take(MAX_ENTRY_LEN + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CacheError::io("read cache entry", path, e))?;
    if buf.len() as u64 > MAX_ENTRY_LEN {
        return Err(CacheError::corrupt(
            path,
            format!("it is larger than {MAX_ENTRY_LEN} bytes"),
        ));
    }
    Ok(Some(buf))
}

/// Replaces `path` (in directory `dir`) with `bytes` atomically: temp file 0600 in `dir`,
/// fsync, rename, fsync of the directory.
pub(super) fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
    let mut suffix = [0u8; 6];
    rand::RngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut suffix)
        .map_err(|e| CacheError::Random(e.to_string()))?;
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        hex::encode(suffix)
    ));

    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let mut file = options
        .open(&tmp)
        .map_err(|e| CacheError::io("create cache file", &tmp, e))?;
    let written = (|| {
        // The mode given to open() is reduced by the umask; make it exactly 0600.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(bytes)?;
        file.sync_all()
    })();
    drop(file);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(CacheError::io("write cache file", &tmp, e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(CacheError::io("replace cache entry", path, e));
    }
    sync_dir(dir);
    Ok(())
}

/// Makes a rename durable; best effort (a failure only risks losing the entry in a crash).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Removes `path`; true when it existed.
pub(super) fn remove(path: &Path) -> Result<bool, CacheError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CacheError::io("delete cache entry", path, e)),
    }
}

/// Entry files in `dir`: `(path, id, extension)` for names `<32 hex>.json` / `<32 hex>.enc`.
pub(super) fn entry_files(dir: &Path) -> Result<Vec<(PathBuf, String, &'static str)>, CacheError> {
    id_files(dir, &[PLAIN_EXT, SEALED_EXT])
}

/// Files in `dir` named `<32 hex>.<ext>` for one of `exts`: `(path, id, extension)`, sorted.
pub(super) fn id_files(
    dir: &Path,
    exts: &[&'static str],
) -> Result<Vec<(PathBuf, String, &'static str)>, CacheError> {
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CacheError::io("list cache directory", dir, e)),
    };
    let mut out = Vec::new();
    for item in read {
        let item = item.map_err(|e| CacheError::io("list cache directory", dir, e))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        let Some(ext) = exts.iter().copied().find(|known| *known == ext) else {
            continue;
        };
        if stem.len() == 32
            && stem
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            out.push((item.path(), stem.to_owned(), ext));
        }
    }
    out.sort();
    Ok(out)
}

/// Keys of the readable entries in `dir`, deduplicated; damaged files are skipped. The key must
/// hash to the file's name (so a renamed file is not reported under a wrong key).
pub(super) fn list_keys(dir: &Path) -> Result<Vec<CacheKey>, CacheError> {
    let mut keys: Vec<CacheKey> = Vec::new();
    for (path, id, ext) in entry_files(dir)? {
        let Ok(Some(bytes)) = read_unchecked(&path) else {
            continue;
        };
        let key = if ext == PLAIN_EXT {
            entry::decode_plain(&path, &bytes).map(|e| e.key)
        } else {
            entry::decode_sealed(&path, &bytes).map(|s| s.key)
        };
        if let Ok(key) = key
            && key.id() == id
            && !keys.iter().any(|k| k.id() == id)
        {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// The plaintext store: `<dir>/<id>.json`, mode 0600.
pub(super) struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// Creates or checks `dir` (see [`ensure_dir`]).
    pub(super) fn open(dir: &Path) -> Result<Self, CacheError> {
        ensure_dir(dir)?;
        Ok(Self { dir: dir.to_owned() })
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn path(&self, key: &CacheKey, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", key.id()))
    }

    /// Reads the plaintext entry of `key`.
    pub(super) fn load_plain(&self, key: &CacheKey) -> Result<Option<(TokenSet, EntryMeta)>, CacheError> {
        let path = self.path(key, PLAIN_EXT);
        let Some(bytes) = read_private(&path)? else {
            return Ok(None);
        };
        let entry = entry::decode_plain(&path, &bytes)?;
        check_key(&path, key, entry).map(Some)
    }

    /// Writes the plaintext entry of `key`.
    pub(super) fn save_plain(
        &self,
        key: &CacheKey,
        tokens: &TokenSet,
        meta: &EntryMeta,
    ) -> Result<(), CacheError> {
        let bytes = entry::encode_plain(key, tokens, meta);
        write_atomic(&self.dir, &self.path(key, PLAIN_EXT), &bytes)
    }

    /// Removes both files of `key`; true when one existed.
    pub(super) fn delete_both(&self, key: &CacheKey) -> Result<bool, CacheError> {
        let plain = remove(&self.path(key, PLAIN_EXT))?;
        let sealed = remove(&self.path(key, SEALED_EXT))?;
        Ok(plain || sealed)
    }
}

/// The tokens (and metadata) of `entry` when it belongs to `key`.
pub(super) fn check_key(
    path: &Path,
    key: &CacheKey,
    entry: Entry,
) -> Result<(TokenSet, EntryMeta), CacheError> {
    if !entry.key.same_entry(key) {
        return Err(CacheError::corrupt(
            path,
            "it belongs to another issuer, client, scope set or profile",
        ));
    }
    Ok((entry.tokens, entry.meta))
}

impl TokenStore for FileStore {
    fn load(&self, key: &CacheKey) -> Result<Option<TokenSet>, CacheError> {
        Ok(self.load_plain(key)?.map(|(tokens, _)| tokens))
    }

    fn save(&self, key: &CacheKey, tokens: &TokenSet) -> Result<(), CacheError> {
        self.save_with_meta(key, tokens, &EntryMeta::default())
    }

    fn load_with_meta(&self, key: &CacheKey) -> Result<Option<(TokenSet, EntryMeta)>, CacheError> {
        self.load_plain(key)
    }

    fn save_with_meta(&self, key: &CacheKey, tokens: &TokenSet, meta: &EntryMeta) -> Result<(), CacheError> {
        self.save_plain(key, tokens, meta)?;
        // An encrypted entry left by the keyring store is now stale.
        remove(&self.path(key, SEALED_EXT))?;
        Ok(())
    }

    fn delete(&self, key: &CacheKey) -> Result<bool, CacheError> {
        self.delete_both(key)
    }

    fn list(&self) -> Result<Vec<CacheKey>, CacheError> {
        list_keys(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use secrecy::{ExposeSecret, SecretString};

    use super::super::test_support::*;
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn round_trip_with_private_modes() {
        let tmp = TempDir::new("rt");
        let dir = tmp.path().join("cache");
        let store = FileStore::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        store.save(&key(1), &tokens("a")).unwrap();
        let path = store.path(&key(1), PLAIN_EXT);
        assert_eq!(mode(&path), 0o600);
        let got = store.load(&key(1)).unwrap().unwrap();
        assert_eq!(got.id_token.expose_secret(), "id-token-a");
        assert_eq!(got.refresh_token.unwrap().expose_secret(), "refresh-token-a");
        // No refresh token.
        let only_id = TokenSet {
            id_token: SecretString::from("only".to_owned()),
            refresh_token: None,
        };
        store.save(&key(2), &only_id).unwrap();
        assert!(store.load(&key(2)).unwrap().unwrap().refresh_token.is_none());
        assert!(store.load(&key(3)).unwrap().is_none());
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#""version":1"#), "{text}");
    }

    #[test]
    fn save_replaces_atomically_and_leaves_no_temp_files() {
        let tmp = TempDir::new("atomic");
        let store = FileStore::open(tmp.path()).unwrap();
        store.save(&key(1), &tokens("old")).unwrap();
        let path = store.path(&key(1), PLAIN_EXT);
        // A reader holding the old file keeps seeing the old content: a new inode replaced it.
        let mut old_handle = File::open(&path).unwrap();
        store.save(&key(1), &tokens("new")).unwrap();
        let mut old = String::new();
        old_handle.read_to_string(&mut old).unwrap();
        assert!(old.contains("id-token-old"));
        assert_eq!(
            store.load(&key(1)).unwrap().unwrap().id_token.expose_secret(),
            "id-token-new"
        );
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn refuses_entry_readable_by_others() {
        let tmp = TempDir::new("worldread");
        let store = FileStore::open(tmp.path()).unwrap();
        store.save(&key(1), &tokens("a")).unwrap();
        let path = store.path(&key(1), PLAIN_EXT);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = store.load(&key(1)).unwrap_err();
        assert!(
            matches!(err, CacheError::InsecureEntry { mode: 0o644, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("chmod 600") && msg.contains(&path.display().to_string()),
            "{msg}"
        );
        assert!(!msg.contains("id-token"));
        // Saving replaces it with a private file.
        store.save(&key(1), &tokens("b")).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert!(store.load(&key(1)).unwrap().is_some());
    }

    #[test]
    fn refuses_group_readable_dir() {
        let tmp = TempDir::new("groupdir");
        fs::create_dir(tmp.path()).unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o750)).unwrap();
        let err = FileStore::open(tmp.path()).err().unwrap();
        assert!(
            matches!(err, CacheError::InsecureDir { mode: 0o750, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("chmod 700 {}", tmp.path().display())),
            "{msg}"
        );
        // The directory was left alone.
        assert_eq!(mode(tmp.path()), 0o750);
    }

    #[test]
    fn refuses_a_file_as_cache_dir() {
        let tmp = TempDir::new("notdir");
        fs::write(tmp.path(), b"x").unwrap();
        let err = FileStore::open(tmp.path()).err().unwrap();
        assert!(matches!(err, CacheError::NotADirectory { .. }), "{err:?}");
        let _ = fs::remove_file(tmp.path());
    }

    #[test]
    fn corrupt_and_truncated_entries_are_reported_and_isolated() {
        let tmp = TempDir::new("corrupt");
        let store = FileStore::open(tmp.path()).unwrap();
        for n in 1..=4 {
            store.save(&key(n), &tokens(&n.to_string())).unwrap();
        }
        let full = fs::read(store.path(&key(1), PLAIN_EXT)).unwrap();
        fs::write(store.path(&key(1), PLAIN_EXT), &full[..full.len() / 2]).unwrap();
        fs::write(store.path(&key(2), PLAIN_EXT), b"\x00\xffgarbage").unwrap();
        fs::write(store.path(&key(3), PLAIN_EXT), b"").unwrap();
        for n in 1..=3 {
            let err = store.load(&key(n)).unwrap_err();
            assert!(err.is_corrupt(), "{n}: {err:?}");
            assert!(!err.to_string().contains("token-"), "{err}");
        }
        assert_eq!(
            store.load(&key(4)).unwrap().unwrap().id_token.expose_secret(),
            "id-token-4"
        );
        // list skips the damaged ones; save replaces a damaged entry.
        assert_eq!(store.list().unwrap(), vec![key(4)]);
        store.save(&key(1), &tokens("fixed")).unwrap();
        assert_eq!(
            store.load(&key(1)).unwrap().unwrap().id_token.expose_secret(),
            "id-token-fixed"
        );
    }

    #[test]
    fn entry_copied_to_another_key_is_rejected() {
        let tmp = TempDir::new("copied");
        let store = FileStore::open(tmp.path()).unwrap();
        store.save(&key(1), &tokens("a")).unwrap();
        fs::copy(store.path(&key(1), PLAIN_EXT), store.path(&key(2), PLAIN_EXT)).unwrap();
        assert!(store.load(&key(2)).unwrap_err().is_corrupt());
        // list reports each key once and only under its own id.
        assert_eq!(store.list().unwrap(), vec![key(1)]);
    }

    #[test]
    fn refuses_symlinked_entry() {
        let tmp = TempDir::new("symlink");
        let store = FileStore::open(tmp.path()).unwrap();
        // A valid entry (koidc's own, 0600) moved elsewhere: only the link can be refused.
        store.save(&key(1), &tokens("a")).unwrap();
        let entry = store.path(&key(1), PLAIN_EXT);
        let target = tmp.path().join("elsewhere");
        fs::rename(&entry, &target).unwrap();
        fs::hard_link(&target, &entry).unwrap();
        let loaded = store
            .load(&key(1))
            .unwrap()
            .expect("the entry, hard-linked, loads");
        assert_eq!(loaded.id_token.expose_secret(), "id-token-a");
        fs::remove_file(&entry).unwrap();
        std::os::unix::fs::symlink(&target, &entry).unwrap();
        let err = store.load(&key(1)).unwrap_err();
        assert!(err.is_corrupt(), "{err:?}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[test]
    fn delete_removes_both_files_and_list_reads_keys() {
        let tmp = TempDir::new("delete");
        let store = FileStore::open(tmp.path()).unwrap();
        store.save(&key(1), &tokens("a")).unwrap();
        store.save(&key(2), &tokens("b")).unwrap();
        fs::write(store.path(&key(1), SEALED_EXT), b"stale").unwrap();
        let mut listed = store.list().unwrap();
        listed.sort_by_key(|k| k.client_id.clone());
        assert_eq!(listed, vec![key(1), key(2)]);
        assert!(store.delete(&key(1)).unwrap());
        assert!(!store.path(&key(1), PLAIN_EXT).exists());
        assert!(!store.path(&key(1), SEALED_EXT).exists());
        assert!(!store.delete(&key(1)).unwrap());
        assert_eq!(store.list().unwrap(), vec![key(2)]);
    }
}
