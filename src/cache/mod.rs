//! The token cache: where tokens live between kubectl calls, and the lock that makes parallel
//! kubectl calls share one login.
//!
//! INTERFACE (implemented in this module's files; `auth` and `commands` use only what is here):
//! - [`CacheKey`]: which identity an entry belongs to (issuer + client id + sorted scopes).
//! - [`TokenStore`]: load/save/delete/list entries. Backends: [`CacheKind::Keyring`],
//!   [`CacheKind::File`], [`CacheKind::None`], opened with [`open_store`].
//! - [`CacheLock`]: a cross-process lock per key, with a timeout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::token::TokenSet;

/// Which store holds the tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    /// The OS keyring (default).
    Keyring,
    /// Plain files (0600) in the cache directory.
    File,
    /// No persistent cache: every call logs in.
    None,
}

/// Identifies one cache entry: everything that changes which token the IdP issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// The issuer URL, exactly as configured.
    pub issuer: String,
    /// The OAuth client id.
    pub client_id: String,
    /// Requested scopes besides `openid`, sorted and deduplicated.
    pub scopes: Vec<String>,
}

/// Errors of the token cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Placeholder until the module is implemented.
    #[error("{0}")]
    Other(String),
}

/// A store of token sets.
pub trait TokenStore {
    /// The entry for `key`, or `None` when there is none.
    fn load(&self, key: &CacheKey) -> Result<Option<TokenSet>, CacheError>;
    /// Stores `tokens` for `key`, replacing any earlier entry atomically.
    fn save(&self, key: &CacheKey, tokens: &TokenSet) -> Result<(), CacheError>;
    /// Removes the entry for `key`; true when there was one.
    fn delete(&self, key: &CacheKey) -> Result<bool, CacheError>;
    /// Every entry's key (for `logout --all`).
    fn list(&self) -> Result<Vec<CacheKey>, CacheError>;
}

/// Opens the store of `kind` with files under `dir`.
pub fn open_store(_kind: CacheKind, _dir: &Path) -> Result<Box<dyn TokenStore>, CacheError> {
    Err(CacheError::Other("not implemented".into()))
}

/// A held cross-process lock; released on drop.
pub struct CacheLock {
    _path: PathBuf,
}

impl CacheLock {
    /// Waits up to `timeout` for the lock of `key` under `dir`.
    pub fn acquire(_dir: &Path, _key: &CacheKey, _timeout: Duration) -> Result<Self, CacheError> {
        Err(CacheError::Other("not implemented".into()))
    }
}
