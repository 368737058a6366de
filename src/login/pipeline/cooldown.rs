//! The login cool-down: after a login failed or was abandoned, background (non-interactive)
//! kubectl calls fail fast for a while instead of opening one browser tab after another or
//! hanging until their timeout.
//!
//! The marker is `<cache dir>/<id>.cooldown` (0600), holding only the Unix time of the failure
//! and a one-line reason (koidc's error messages carry no secret). Only a non-interactive
//! `get-token` that would need a login reads it; a successful login or refresh deletes it, and so
//! does `logout` (under the entry's lock; `logout --all` also for identities no longer cached).
//! A damaged, unreadable or future-dated marker counts as none.

use std::fs::OpenOptions;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Extension of the marker files: `<id>.cooldown`.
pub const EXT: &str = "cooldown";

/// How long non-interactive calls refuse to start a login after a failed one.
pub const COOLDOWN: Duration = Duration::from_secs(60);

/// Longest marker koidc reads (a timestamp and a reason line).
const MAX_MARKER: u64 = 4096;

/// A non-interactive call met a recent failed login.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a login failed or was abandoned {secs_ago}s ago; run `koidc login` to log in (non-interactive calls do not open the browser again for {}s)",
    COOLDOWN.as_secs()
)]
pub struct CoolingDown {
    /// Seconds since the failed login.
    pub secs_ago: u64,
}

/// A non-interactive call of a pipeline (`--grant workload` asking a token service or an issuer,
/// `--grant client-credentials`) met a recent failure: no browser to protect, but the token
/// service and the issuer are not asked by every parallel kubectl call again. The reason is the
/// failure's own message, so the job's log says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "getting this pipeline's token failed {secs_ago}s ago: {reason}; koidc asks again {}s after a failure (so that parallel kubectl calls do not flood the token service); run `koidc login` to ask now",
    COOLDOWN.as_secs()
)]
pub struct PipelineCoolingDown {
    /// Seconds since the failure.
    pub secs_ago: u64,
    /// The failure's message, as recorded.
    pub reason: String,
}

/// The marker of one cache key.
#[derive(Debug, Clone)]
pub struct Cooldown {
    path: PathBuf,
}

impl Cooldown {
    /// The marker `<dir>/<id>.cooldown`.
    pub fn new(dir: &Path, id: &str) -> Self {
        Self {
            path: dir.join(format!("{id}.{EXT}")),
        }
    }

    /// The marker file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `Err` while a failure recorded less than [`COOLDOWN`] before `now` is on record; the
    /// reason recorded with it is returned alongside for a debug line.
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), (CoolingDown, String)> {
        let Some((at, reason)) = self.read() else {
            return Ok(());
        };
        let age = now.timestamp() - at;
        match u64::try_from(age) {
            Ok(secs) if secs < COOLDOWN.as_secs() => Err((CoolingDown { secs_ago: secs }, reason)),
            _ => Ok(()),
        }
    }

    /// Records a failed login at `now` (best effort: a marker that cannot be written only
    /// means no cool-down). Creates the directory 0700 when it is missing.
    pub fn record(&self, now: DateTime<Utc>, reason: &str) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt as _;
                builder.mode(0o700);
            }
            builder.create(dir)?;
        }
        // On one line (line breaks folded, escape sequences defused), capped.
        let reason = crate::text::cap(
            &crate::text::single_line(&crate::text::fold_whitespace(reason)),
            300,
        )
        .into_owned();
        let text = format!("{}\n{reason}\n", now.timestamp());
        // Written to a private temporary file and renamed into place: a reader never sees half a
        // marker, and a symlink planted at the marker's name is replaced, not followed.
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            self.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        let _ = std::fs::remove_file(&tmp);
        let result = options
            .open(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Forgets any recorded failure.
    pub fn clear(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    fn read(&self) -> Option<(i64, String)> {
        let mut options = OpenOptions::new();
        options.read(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.custom_flags(libc::O_NOFOLLOW);
        }
        let file = options.open(&self.path).ok()?;
        if !file.metadata().ok()?.is_file() {
            return None;
        }
        let mut text = String::new();
        file.take(MAX_MARKER).read_to_string(&mut text).ok()?;
        let mut lines = text.lines();
        let at = lines.next()?.trim().parse().ok()?;
        Some((at, lines.next().unwrap_or_default().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "koidc-cooldown-{tag}-{}-{}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(2_000_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn recorded_failure_blocks_for_sixty_seconds_then_expires() {
        let dir = temp_dir("window");
        let marker = Cooldown::new(&dir.join("sub"), "abc");
        assert!(marker.check(at(0)).is_ok(), "no marker, no cool-down");
        marker
            .record(at(0), "no login callback arrived within 2s")
            .unwrap();
        let (err, reason) = marker.check(at(7)).unwrap_err();
        assert_eq!(err, CoolingDown { secs_ago: 7 });
        assert_eq!(reason, "no login callback arrived within 2s");
        assert_eq!(
            err.to_string(),
            "a login failed or was abandoned 7s ago; run `koidc login` to log in \
             (non-interactive calls do not open the browser again for 60s)"
        );
        assert!(marker.check(at(59)).is_err());
        assert!(marker.check(at(60)).is_ok(), "over after 60 s");
        assert!(marker.check(at(-5)).is_ok(), "a future-dated marker is ignored");
        marker.clear();
        assert!(marker.check(at(1)).is_ok(), "cleared");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn marker_is_private_and_holds_only_time_and_reason() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = temp_dir("mode");
        let marker = Cooldown::new(&dir, "abc");
        marker.record(at(0), "failed:\nsecond line\x1b[2J").unwrap();
        let meta = std::fs::metadata(marker.path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let text = std::fs::read_to_string(marker.path()).unwrap();
        assert_eq!(text, format!("{}\nfailed: second line?[2J\n", at(0).timestamp()));
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_marker_counts_as_none() {
        let dir = temp_dir("damaged");
        std::fs::create_dir_all(&dir).unwrap();
        let marker = Cooldown::new(&dir, "abc");
        std::fs::write(marker.path(), "not a time\n").unwrap();
        assert!(marker.check(at(1)).is_ok());
        std::fs::remove_file(marker.path()).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", marker.path()).unwrap();
        assert!(marker.check(at(1)).is_ok(), "a symlink is not followed");
        marker.record(at(0), "x").unwrap();
        assert!(
            !std::fs::symlink_metadata(marker.path())
                .unwrap()
                .file_type()
                .is_symlink(),
            "recording replaces a planted symlink"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
