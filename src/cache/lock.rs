//! The cross-process lock per cache key, so that parallel kubectl calls cause one refresh or
//! login and the others reuse its result.
//!
//! `<dir>/<id>.lock` (0600) locked exclusively with `File::try_lock` (flock(2) on Unix,
//! LockFileEx on Windows), polled until the timeout. The OS releases the lock when the holder
//! exits or crashes, so a leftover lock file never blocks anyone. flock locks belong to the open
//! file description: two `File` handles opened separately conflict even inside one process, which
//! is how the tests exercise the cross-process behaviour. Lock files are never deleted (a process
//! waiting on the old inode would otherwise lock a different file than a newcomer).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::file::ensure_dir;
use super::{CacheError, CacheKey};

/// How often a waiting process retries.
const POLL: Duration = Duration::from_millis(25);

/// A held cross-process lock; released on drop.
#[derive(Debug)]
pub struct CacheLock {
    path: PathBuf,
    file: File,
}

impl CacheLock {
    /// Waits up to `timeout` for the lock of `key` under `dir` (created 0700 when missing; an
    /// insecure directory is refused like by [`super::open_store`]). A zero timeout tries once.
    pub fn acquire(dir: &Path, key: &CacheKey, timeout: Duration) -> Result<Self, CacheError> {
        ensure_dir(dir)?;
        Self::acquire_path(dir.join(format!("{}.lock", key.id())), timeout)
    }

    /// Waits up to `timeout` for the lock file `path`, in a directory already checked.
    pub(super) fn acquire_path(path: PathBuf, timeout: Duration) -> Result<Self, CacheError> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        let file = options
            .open(&path)
            .map_err(|e| CacheError::io("open lock file", &path, e))?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self { path, file }),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(CacheError::io("lock", &path, e)),
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(CacheError::LockTimeout {
                    path,
                    waited: timeout,
                });
            }
            std::thread::sleep(POLL.min(timeout - waited));
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for CacheLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first makes it immediate even if
        // a duplicated descriptor were alive.
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::super::test_support::*;
    use super::*;

    #[test]
    fn second_holder_times_out_with_a_clear_error() {
        let tmp = TempDir::new("lock-timeout");
        let held = CacheLock::acquire(tmp.path(), &key(1), Duration::ZERO).unwrap();
        let start = Instant::now();
        let err = CacheLock::acquire(tmp.path(), &key(1), Duration::from_millis(200)).unwrap_err();
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with("timed out after 0s waiting for another koidc process (lock "),
            "{msg}"
        );
        assert!(
            msg.contains(&held.path().display().to_string()) && msg.ends_with("delete the lock file"),
            "{msg}"
        );
        // Other keys are independent.
        CacheLock::acquire(tmp.path(), &key(2), Duration::ZERO).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(held.path()).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn lock_is_handed_over_when_the_holder_drops_it() {
        let tmp = TempDir::new("lock-handover");
        let dir = tmp.path().to_owned();
        let held = CacheLock::acquire(&dir, &key(1), Duration::ZERO).unwrap();
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let start = Instant::now();
            let lock = CacheLock::acquire(&dir, &key(1), Duration::from_secs(10));
            tx.send(()).unwrap();
            (lock.map(|_| ()), start.elapsed())
        });
        // The waiter is blocked while the lock is held.
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        drop(held);
        let (got, waited) = waiter.join().unwrap();
        got.unwrap();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        // And released again when the waiter's guard dropped.
        CacheLock::acquire(tmp.path(), &key(1), Duration::ZERO).unwrap();
    }
}
