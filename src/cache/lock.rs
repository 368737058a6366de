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
    fn a_lock_timeout_says_to_find_the_holder_instead_of_deleting_the_lock_file() {
        let tmp = TempDir::new("lock-timeout");
        let held = CacheLock::acquire(tmp.path(), &key(1), Duration::ZERO).unwrap();
        let start = Instant::now();
        let err = CacheLock::acquire(tmp.path(), &key(1), Duration::from_millis(200)).unwrap_err();
        let waited = start.elapsed();
        // The holder said it would be done at once: the waiter gives up after its own 200 ms
        // plus the grace a holder gets after its deadline.
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_millis(200) + GRACE + Duration::from_secs(2),
            "{waited:?}"
        );
        let msg = err.to_string();
        let path = held.path().display().to_string();
        assert!(
            msg.starts_with("timed out after ") && msg.contains("waiting for another koidc process"),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("fuser {path}")) && msg.contains(&format!("lsof {path}")),
            "the message names the commands that find the holder: {msg}"
        );
        assert!(
            !msg.contains("delete the lock file"),
            "deleting a held lock file breaks mutual exclusion: {msg}"
        );
        assert!(!msg.contains('\n'), "one line: {msg:?}");
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
    fn a_waiter_with_a_short_timeout_waits_for_a_holder_with_a_longer_one() {
        let tmp = TempDir::new("lock-wait-rule");
        let dir = tmp.path().to_owned();
        // A login with a long --timeout holds the lock ...
        let held = CacheLock::acquire(&dir, &key(1), Duration::from_secs(30)).unwrap();
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let start = Instant::now();
            // ... and a call with a much shorter one waits for it.
            let lock = CacheLock::acquire(&dir, &key(1), Duration::from_millis(100));
            tx.send(()).unwrap();
            (lock.map(|_| ()), start.elapsed())
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(1500)).is_err(),
            "the waiter gave up before the holder's deadline"
        );
        drop(held);
        let (got, waited) = waiter.join().unwrap();
        got.unwrap();
        assert!(waited >= Duration::from_millis(1500), "{waited:?}");
    }

    #[test]
    fn a_holder_deadline_in_the_lock_file_is_capped_and_garbage_is_ignored() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let start = Instant::now();
        let own = start + Duration::from_secs(1);
        // No deadline, garbage, a deadline in the past: the waiter's own budget.
        for text in ["", "x", "-5", "12345678901234567890123", "1000\n"] {
            assert_eq!(wait_until(text.as_bytes(), now, start, own), own, "{text:?}");
        }
        // A later deadline extends the wait (plus the grace) ...
        let holder = unix_ms(now + Duration::from_secs(60));
        assert_eq!(
            wait_until(format!("{holder}\n").as_bytes(), now, start, own),
            start + Duration::from_secs(60) + GRACE
        );
        // ... but never beyond the longest hold any koidc process may announce.
        let far = unix_ms(now + Duration::from_secs(10 * 86_400));
        assert_eq!(
            wait_until(far.to_string().as_bytes(), now, start, own),
            start + MAX_HOLD + GRACE
        );
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
