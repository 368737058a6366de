//! The cross-process lock per cache key, so that parallel kubectl calls cause one refresh or
//! login and the others reuse its result, and so that `logout` never races a refresh or login.
//!
//! `<dir>/<id>.lock` (0600) locked exclusively with `File::try_lock` (flock(2) on Unix,
//! LockFileEx on Windows), polled. The OS releases the lock when the holder exits or crashes, so
//! a leftover lock file never blocks anyone. flock locks belong to the open file description: two
//! `File` handles opened separately conflict even inside one process, which is how the tests
//! exercise the cross-process behaviour.
//!
//! Removing lock files (`logout`, [`CacheLock::remove`]): only a holder deletes its lock file,
//! and does so before releasing it. A process that opened the file earlier and locks it
//! afterwards would then hold a file no newcomer can see, so every locker checks after locking
//! that the path still names the file it locked (same device and inode) and otherwise opens the
//! path again. Deleting a lock file *without* holding it (by hand, or an older koidc without this
//! check waiting on it) can still let two processes in at once: the timeout message therefore
//! never suggests deleting one.
//!
//! How long to wait. A waiter must not give up while a holder may still legitimately work: the
//! holder may be a login with a far longer `--timeout` than the waiter's (a `koidc login
//! --timeout 3600` while kubectl runs `get-token` with the default). So every holder writes into
//! the lock file when it will be done at the latest — its deadline, Unix milliseconds as 20
//! decimal digits and a newline, written in place without truncating so a reader never sees an
//! empty file — and a waiter waits until the later of its own budget and the holder's deadline
//! plus [`GRACE`]. A deadline is believed only up to [`MAX_HOLD`] from when the waiter started (the
//! longest any koidc process announces), so a damaged or hostile file cannot make a waiter hang
//! for longer; unreadable content counts as no deadline (an older koidc holding the lock writes
//! none). When a holder overruns its own deadline the waiter gives up: with flock that means a
//! live process holds the lock, so the message says how to find it, never to delete the file
//! (deleting it would let the next process lock a new file while the holder still works).
//! (On Windows the holder's byte-range lock stops others from reading the file: waiters use their
//! own budget there.)

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::file::{self, ensure_dir};
use super::{CacheError, CacheKey};

/// Extension of lock files: `<id>.lock`.
const EXT: &str = "lock";

/// How often a waiting process retries.
const POLL: Duration = Duration::from_millis(25);

/// How long a waiter keeps waiting after the holder's announced deadline: the holder still saves
/// the entry and exits after it stops waiting for its login.
pub(super) const GRACE: Duration = Duration::from_secs(2);

/// Time a holder allows itself beyond its login `--timeout`: the HTTP requests around a login
/// or refresh (discovery, JWKS, refresh, code exchange, account lookups), each bounded by
/// [`crate::http::HTTP_TIMEOUT`].
const HTTP_ALLOWANCE: Duration = Duration::from_secs(6 * crate::http::HTTP_TIMEOUT.as_secs());

/// The longest `--timeout` koidc accepts.
const MAX_LOGIN_TIMEOUT: Duration = Duration::from_secs(86_400);

/// The longest hold any koidc process announces: a login with the longest `--timeout`.
pub(super) const MAX_HOLD: Duration =
    Duration::from_secs(MAX_LOGIN_TIMEOUT.as_secs() + HTTP_ALLOWANCE.as_secs());

/// How long a process that logs in or refreshes with a login `--timeout` of `login_timeout`
/// may hold the lock at worst, and so how long it waits for it at least: the budget to pass to
/// [`CacheLock::acquire`].
pub fn budget(login_timeout: Duration) -> Duration {
    login_timeout.min(MAX_LOGIN_TIMEOUT) + HTTP_ALLOWANCE
}

/// A held cross-process lock; released on drop.
#[derive(Debug)]
pub struct CacheLock {
    path: PathBuf,
    file: File,
}

impl CacheLock {
    /// The lock file.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the lock of `key` under `dir` (created 0700 when missing; an insecure directory is
    /// refused like by [`super::open_store`]). `budget` is both how long this process will hold
    /// the lock at most (announced to waiters, see the module doc; [`budget`] computes it) and
    /// how long it waits at least; it waits longer while the holder announced a later deadline.
    /// A zero budget tries once unless the holder announced more.
    pub fn acquire(dir: &Path, key: &CacheKey, budget: Duration) -> Result<Self, CacheError> {
        ensure_dir(dir)?;
        Self::acquire_path(dir.join(format!("{}.{EXT}", key.id())), budget)
    }

    /// Like [`CacheLock::acquire`], for the lock file `path` in a directory already checked.
    pub(super) fn acquire_path(path: PathBuf, budget: Duration) -> Result<Self, CacheError> {
        let mut file = open(&path)?;
        let start = Instant::now();
        let own = start + budget;
        let mut until = own;
        loop {
            match file.try_lock() {
                Ok(()) if names(&path, &file) => {
                    announce(&file, SystemTime::now() + budget);
                    return Ok(Self { path, file });
                }
                // Its holder removed the file meanwhile (`remove`): lock the one at the path now
                // (dropping this one releases it).
                Ok(()) => {
                    file = open(&path)?;
                    continue;
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(CacheError::io("lock", &path, e)),
            }
            let mut now = Instant::now();
            if now >= until {
                // Our time is up: wait on while the current holder announced a later deadline.
                until = wait_until(&read_announcement(&file), SystemTime::now(), now, start, own);
                now = Instant::now();
                if now >= until {
                    return Err(CacheError::LockTimeout {
                        path,
                        waited: now - start,
                    });
                }
            }
            std::thread::sleep(POLL.min(until - now));
        }
    }

    /// One try at the lock file `path` in a directory already checked: the lock when no other
    /// process holds it, `None` at once when one does (however long it announced).
    pub(super) fn try_acquire_path(path: PathBuf) -> Result<Option<Self>, CacheError> {
        loop {
            let file = open(&path)?;
            match file.try_lock() {
                Ok(()) if names(&path, &file) => return Ok(Some(Self { path, file })),
                Ok(()) => continue,
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => return Err(CacheError::io("lock", &path, e)),
            }
        }
    }

    /// Deletes the lock file while holding it, then releases it. A process that opened the file
    /// before and locks it afterwards notices that the file is gone and locks the one at the path
    /// then (see the module doc), so the lock stays exclusive.
    pub fn remove(self) -> Result<(), CacheError> {
        super::file::remove(&self.path).map(|_| ())
    }
}

/// False when `path` no longer names the open lock `file`: its holder removed it (or it was
/// replaced) after this process opened it. True when that cannot be told.
fn names(path: &Path, file: &File) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let Ok(open) = file.metadata() else {
            return true;
        };
        match std::fs::symlink_metadata(path) {
            Ok(now) => now.dev() == open.dev() && now.ino() == open.ino(),
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, file);
        true
    }
}

/// What [`remove_unheld`] did.
#[derive(Debug, Default)]
pub struct Swept {
    /// How many files it removed (lock files and their companions).
    pub removed: usize,
    /// Lock files left because a process holds them: a login or refresh in flight.
    pub held: Vec<PathBuf>,
    /// What could not be taken or removed (a lock file that is a symlink or a directory, a
    /// permission problem), one error each; the others were still removed.
    pub failed: Vec<CacheError>,
}

/// Removes the lock files in `dir` that no process holds, without waiting: `<id>.lock` of every
/// id with a lock file or a `<id>.<ext>` file for one of `companions` (those are deleted first,
/// while the lock is held: e.g. the cool-down markers, which are written under it), and the
/// keyring store's master-key lock. A held lock is left, with its companions (see [`Swept`]).
pub fn remove_unheld(dir: &Path, companions: &[&'static str]) -> Result<Swept, CacheError> {
    ensure_dir(dir)?;
    let exts: Vec<&'static str> = std::iter::once(EXT).chain(companions.iter().copied()).collect();
    let mut ids: Vec<String> = file::id_files(dir, &exts)?
        .into_iter()
        .map(|(_, id, _)| id)
        .collect();
    ids.sort();
    ids.dedup();
    let mut targets: Vec<(PathBuf, Vec<PathBuf>)> = ids
        .iter()
        .map(|id| {
            let companions = companions.iter().map(|ext| dir.join(format!("{id}.{ext}")));
            (dir.join(format!("{id}.{EXT}")), companions.collect())
        })
        .collect();
    let master = dir.join(super::keyring::MASTER_LOCK);
    if std::fs::symlink_metadata(&master).is_ok() {
        targets.push((master, Vec::new()));
    }
    let mut swept = Swept::default();
    for (path, companions) in targets {
        let existed = std::fs::symlink_metadata(&path).is_ok();
        let lock = match CacheLock::try_acquire_path(path.clone()) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                swept.held.push(path);
                continue;
            }
            Err(err) => {
                swept.failed.push(err);
                continue;
            }
        };
        for companion in companions {
            match file::remove(&companion) {
                Ok(removed) => swept.removed += usize::from(removed),
                Err(err) => swept.failed.push(err),
            }
        }
        match lock.remove() {
            Ok(()) => swept.removed += usize::from(existed),
            Err(err) => swept.failed.push(err),
        }
    }
    Ok(swept)
}

/// Opens (creating, 0600) the lock file `path`, never through a symlink.
fn open(path: &Path) -> Result<File, CacheError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options
        .open(path)
        .map_err(|e| CacheError::io("open lock file", path, e))
}

/// Writes the holder's `deadline` into the lock file (best effort: without it, waiters use their
/// own budget).
fn announce(mut file: &File, deadline: SystemTime) {
    let text = format!("{:020}\n", unix_ms(deadline));
    let _ = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.write_all(text.as_bytes()));
}

/// The first bytes of the lock file (empty when unreadable).
fn read_announcement(mut file: &File) -> Vec<u8> {
    let mut buf = Vec::with_capacity(32);
    if file.seek(SeekFrom::Start(0)).is_err() || file.take(32).read_to_end(&mut buf).is_err() {
        buf.clear();
    }
    buf
}

/// When a waiter that started at `start` with its own deadline `own` gives up, given the lock
/// file's content `text` read at `now` (wall-clock time `wall`): the holder's announced deadline
/// plus [`GRACE`] when that is later, believed up to [`MAX_HOLD`] after `start`.
fn wait_until(text: &[u8], wall: SystemTime, now: Instant, start: Instant, own: Instant) -> Instant {
    let announced = std::str::from_utf8(text)
        .ok()
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<u64>().ok());
    let Some(deadline_ms) = announced else {
        return own;
    };
    let wall_ms = unix_ms(wall);
    if deadline_ms <= wall_ms {
        return own;
    }
    let left = Duration::from_millis(deadline_ms - wall_ms).min(MAX_HOLD);
    let holder = (now + left).min(start + MAX_HOLD) + GRACE;
    holder.max(own)
}

/// Milliseconds since the Unix epoch (0 before it).
fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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
            waited >= Duration::from_millis(200)
                && waited < Duration::from_millis(200) + GRACE + Duration::from_secs(2),
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
            !msg.contains("running, delete the lock file") && msg.contains("do not delete the lock file"),
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
            assert_eq!(
                wait_until(text.as_bytes(), now, start, start, own),
                own,
                "{text:?}"
            );
        }
        // A later deadline extends the wait (plus the grace) ...
        let holder = unix_ms(now + Duration::from_secs(60));
        assert_eq!(
            wait_until(format!("{holder}\n").as_bytes(), now, start, start, own),
            start + Duration::from_secs(60) + GRACE
        );
        // ... but never beyond the longest hold any koidc process may announce.
        let far = unix_ms(now + Duration::from_secs(10 * 86_400));
        assert_eq!(
            wait_until(far.to_string().as_bytes(), now, start, start, own),
            start + MAX_HOLD + GRACE
        );
    }

    /// How many descriptors of this process are open on `path` (Linux: `/proc/self/fd`).
    #[cfg(target_os = "linux")]
    fn open_on(path: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd").map_or(0, |fds| {
            fds.flatten()
                .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
                .count()
        })
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_lock_file_removed_by_its_holder_is_never_held_by_a_waiter_and_a_newcomer_at_once() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let tmp = TempDir::new("lock-remove");
        let dir = tmp.path().to_owned();
        let held = CacheLock::acquire(&dir, &key(1), Duration::ZERO).unwrap();
        let path = std::fs::canonicalize(held.path()).unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let overlaps = Arc::new(AtomicUsize::new(0));
        let contender = || {
            let (dir, inside, overlaps) = (dir.clone(), inside.clone(), overlaps.clone());
            std::thread::spawn(move || {
                let lock = CacheLock::acquire(&dir, &key(1), Duration::from_secs(30)).unwrap();
                if inside.fetch_add(1, SeqCst) != 0 {
                    overlaps.fetch_add(1, SeqCst);
                }
                std::thread::sleep(Duration::from_millis(300));
                inside.fetch_sub(1, SeqCst);
                drop(lock);
            })
        };
        // A waiter that opened the lock file before its holder removed it ...
        let waiter = contender();
        let deadline = Instant::now() + Duration::from_secs(20);
        while open_on(&path) < 2 {
            assert!(Instant::now() < deadline, "the waiter never opened the lock file");
            std::thread::sleep(Duration::from_millis(5));
        }
        // ... the holder removes the file and releases it ...
        held.remove().unwrap();
        assert!(!path.exists());
        // ... and a newcomer creates a new one: they must not both hold the lock.
        let newcomer = contender();
        waiter.join().unwrap();
        newcomer.join().unwrap();
        assert_eq!(
            overlaps.load(SeqCst),
            0,
            "the waiter (on the removed file) and the newcomer held the lock at once"
        );
    }

    #[test]
    #[cfg(unix)]
    fn remove_unheld_leaves_held_locks_and_follows_no_symlink() {
        let tmp = TempDir::new("lock-sweep");
        let dir = tmp.path();
        let held = CacheLock::acquire(dir, &key(1), Duration::from_secs(600)).unwrap();
        let free = CacheLock::acquire(dir, &key(2), Duration::ZERO).unwrap();
        let free_path = free.path().to_owned();
        drop(free);
        let marker = |k: u32| dir.join(format!("{}.cooldown", key(k).id()));
        for k in [1, 2, 3] {
            write_private(&marker(k), b"1\nreason\n");
        }
        write_private(&dir.join(super::super::keyring::MASTER_LOCK), b"");
        // A lock file planted as a symlink to a file outside, and one that is a directory.
        let outside = dir.join("outside");
        std::fs::create_dir(&outside).unwrap();
        write_private(&outside.join("victim"), b"keep");
        let planted = dir.join(format!("{}.lock", key(4).id()));
        std::os::unix::fs::symlink(outside.join("victim"), &planted).unwrap();
        std::fs::create_dir(dir.join(format!("{}.lock", key(5).id()))).unwrap();
        write_private(&dir.join("unrelated.lock"), b"");

        let swept = remove_unheld(dir, &["cooldown"]).unwrap();
        // key 2's lock and marker, key 3's marker (its lock file made to hold it), the
        // master-key lock.
        assert_eq!(swept.removed, 4, "{swept:?}");
        assert_eq!(swept.held, [held.path().to_owned()]);
        assert_eq!(swept.failed.len(), 2, "the symlink and the directory: {swept:?}");
        assert!(!free_path.exists() && !marker(2).exists() && !marker(3).exists());
        assert!(
            held.path().exists() && marker(1).exists(),
            "a held lock keeps its marker"
        );
        assert!(!dir.join(format!("{}.lock", key(3).id())).exists());
        assert!(!dir.join(super::super::keyring::MASTER_LOCK).exists());
        assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"keep");
        assert!(
            std::fs::symlink_metadata(&planted)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(
            dir.join("unrelated.lock").exists(),
            "only koidc's names are touched"
        );
    }

    #[test]
    fn try_acquire_takes_a_free_lock_and_leaves_a_held_one_at_once() {
        let tmp = TempDir::new("lock-try");
        let held = CacheLock::acquire(tmp.path(), &key(1), Duration::from_secs(600)).unwrap();
        let start = Instant::now();
        assert!(
            CacheLock::try_acquire_path(held.path().to_owned())
                .unwrap()
                .is_none()
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "it waited for the holder"
        );
        drop(held);
        let path = tmp.path().join(format!("{}.lock", key(1).id()));
        assert!(CacheLock::try_acquire_path(path).unwrap().is_some());
    }

    #[test]
    fn lock_is_handed_over_when_the_holder_drops_it() {
        let tmp = TempDir::new("lock-handover");
        let dir = tmp.path().to_owned();
        let held = CacheLock::acquire(&dir, &key(1), Duration::ZERO).unwrap();
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            tx.send(Instant::now()).unwrap();
            let lock = CacheLock::acquire(&dir, &key(1), Duration::from_secs(60));
            let acquired = Instant::now();
            tx.send(acquired).unwrap();
            lock.map(|_| acquired)
        });
        // Ordered by events, not by durations (a loaded machine may start the waiter late): the
        // waiter starts asking while the lock is held, gets nothing meanwhile, and gets the lock
        // once it is released.
        let asked = rx.recv().unwrap();
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "got a held lock"
        );
        let released = Instant::now();
        drop(held);
        let acquired = waiter.join().unwrap().unwrap();
        assert!(asked < released && released <= acquired);
        // And released again when the waiter's guard dropped.
        CacheLock::acquire(tmp.path(), &key(1), Duration::ZERO).unwrap();
    }
}
