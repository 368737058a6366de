//! `setup --write-kubeconfig`: puts the user entry into the user's kubeconfig file.
//!
//! The file is found as kubectl finds the file it writes (`--kubeconfig`, else the first file of
//! `KUBECONFIG`, else `~/.kube/config`), rewritten atomically with mode 0600 while client-go's
//! `<kubeconfig>.lock` is held (as `kubectl config` does, so a concurrent change is not lost),
//! and followed when it is a symlink (dotfile managers). Everything else in the file is kept.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::kubeconfig::{Kubeconfig, NamedUser};

/// Why the kubeconfig cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// No `--kubeconfig`, no `KUBECONFIG` and no `HOME` to find `~/.kube/config` in.
    #[error("HOME is not set; pass --kubeconfig")]
    NoHome,
    /// The path given is empty.
    #[error("the kubeconfig path is empty; pass --kubeconfig FILE")]
    EmptyPath,
    /// The kubeconfig's directory cannot be created.
    #[error("cannot create {}", dir.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another program holds the lock for longer than koidc waits.
    #[error(
        "the kubeconfig {} is locked: {} still exists after {wait_secs}s (kubectl and koidc \
         create it while they change the file); if no kubectl or koidc is running, the lock is \
         stale: delete {} and run the command again",
        kubeconfig.display(),
        lock.display(),
        lock.display()
    )]
    Locked {
        /// The kubeconfig.
        kubeconfig: PathBuf,
        /// Its lock file.
        lock: PathBuf,
        /// How long koidc waited, in seconds.
        wait_secs: u64,
    },
    /// The lock file cannot be created (not because it exists).
    #[error("cannot create the kubeconfig lock {}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The kubeconfig is a symlink that cannot be followed.
    #[error("cannot follow the kubeconfig symlink {}", path.display())]
    Symlink {
        /// The symlink.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The kubeconfig exists but cannot be read.
    #[error("cannot read the kubeconfig {}", path.display())]
    Read {
        /// The kubeconfig.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The kubeconfig is not YAML, or not a kubeconfig (not a mapping, `users` not a list...).
    #[error(
        "cannot parse the kubeconfig {}: {reason}; fix the file (kubectl cannot read it either), or \
         name another one with --kubeconfig",
        path.display()
    )]
    Parse {
        /// The kubeconfig.
        path: PathBuf,
        /// The first line of the parser's error (the rest is a picture of the input).
        reason: String,
    },
    /// The new content cannot be rendered.
    #[error(transparent)]
    Render(#[from] super::SetupError),
    /// The temporary file cannot be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The temporary file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The temporary file cannot replace the kubeconfig.
    #[error("cannot replace {}", path.display())]
    Replace {
        /// The kubeconfig.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// `--kubeconfig`, else the first file of `KUBECONFIG`, else `~/.kube/config`.
pub fn kubeconfig_path(flag: Option<&Path>) -> Result<PathBuf, WriteError> {
    if let Some(path) = flag {
        return Ok(path.to_owned());
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty())
        && let Some(first) = std::env::split_paths(&list).next()
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or(WriteError::NoHome)?;
    Ok(PathBuf::from(home).join(".kube/config"))
}

/// How long `setup` waits for another program's `<kubeconfig>.lock` to go away; kubectl holds
/// it for milliseconds.
const KUBECONFIG_LOCK_WAIT: Duration = Duration::from_secs(5);

/// client-go's lock on a kubeconfig (`lockFile` in `k8s.io/client-go/tools/clientcmd`, which
/// `kubectl config` uses): the file `<kubeconfig>.lock`, created with `O_CREAT|O_EXCL` before the
/// kubeconfig is read and removed after it was written. Removed on drop.
#[derive(Debug)]
struct KubeconfigLock {
    path: PathBuf,
}

impl KubeconfigLock {
    /// Takes the lock of `kubeconfig`, waiting up to `wait` for another holder; a lock still
    /// there after that is reported with the file to delete if it is stale.
    fn acquire(kubeconfig: &Path, wait: Duration) -> Result<Self, WriteError> {
        let mut name = kubeconfig.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let deadline = Instant::now() + wait;
        loop {
            let mut options = std::fs::OpenOptions::new();
            // create_new: O_CREAT|O_EXCL, which also refuses to follow a planted symlink.
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(&path) {
                Ok(_) => return Ok(Self { path }),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    if Instant::now() >= deadline {
                        return Err(WriteError::Locked {
                            kubeconfig: kubeconfig.to_owned(),
                            lock: path,
                            wait_secs: wait.as_secs(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(source) => return Err(WriteError::Lock { path, source }),
            }
        }
    }
}

impl Drop for KubeconfigLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The directory of `path` (`.` for a bare file name), created when missing.
fn create_parent(path: &Path) -> Result<&Path, WriteError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| WriteError::CreateDir {
        dir: dir.to_owned(),
        source,
    })?;
    Ok(dir)
}

/// `--write-kubeconfig`: writes `user` (the entry of the kubeconfig user `name`) into the
/// kubeconfig (`flag`, else as [`kubeconfig_path`] finds it) and returns what to tell the admin:
/// that it was written, and the kubectl commands that add what the file still lacks for that
/// user (a cluster, a context).
pub fn write_user(flag: Option<&Path>, name: &str, user: NamedUser) -> Result<Vec<String>, WriteError> {
    let path = kubeconfig_path(flag)?;
    let written = write_kubeconfig_user(&path, user)?;
    let mut notes = vec![format!("wrote user {name:?} to {}", path.display())];
    let commands = super::completion_commands(&written, name, &path);
    if !commands.is_empty() {
        notes.push(format!(
            "no context in {} uses user {name:?} yet; add {} with kubectl{}:\n{}",
            path.display(),
            if commands.len() == 3 {
                "the cluster and a context"
            } else {
                "a context"
            },
            if commands.iter().any(|c| c.contains('<')) {
                " (fill in the <...> parts)"
            } else {
                ""
            },
            commands
                .iter()
                .map(|c| format!("  {c}"))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    Ok(notes)
}

/// Adds (or replaces) the user in the kubeconfig at `path` and returns the file's new content,
/// written atomically and with mode 0600,
/// holding client-go's `<kubeconfig>.lock` ([`KubeconfigLock`]) so that a concurrent
/// `kubectl config` change is not lost. A symlinked kubeconfig (dotfile managers) is updated
/// where it points, as kubectl does, instead of being replaced by a regular file; the lock is
/// taken on the name given (as kubectl does) and on the file it points to.
pub fn write_kubeconfig_user(path: &Path, user: NamedUser) -> Result<Kubeconfig, WriteError> {
    write_kubeconfig_user_waiting(path, user, KUBECONFIG_LOCK_WAIT)
}

fn write_kubeconfig_user_waiting(
    path: &Path,
    user: NamedUser,
    wait: Duration,
) -> Result<Kubeconfig, WriteError> {
    if path.as_os_str().is_empty() {
        return Err(WriteError::EmptyPath);
    }
    create_parent(path)?;
    let _given_lock = KubeconfigLock::acquire(path, wait)?;
    let resolved = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            std::fs::canonicalize(path).map_err(|source| WriteError::Symlink {
                path: path.to_owned(),
                source,
            })?
        }
        _ => path.to_owned(),
    };
    let _resolved_lock = if resolved.as_path() == path {
        None
    } else {
        Some(KubeconfigLock::acquire(&resolved, wait)?)
    };
    let path = resolved.as_path();
    let existing = match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => None,
        // A document that is only `null` (`~`) is an empty kubeconfig too.
        Ok(text) => serde_saphyr::from_str::<Option<Kubeconfig>>(&text).map_err(|err| WriteError::Parse {
            path: path.to_owned(),
            reason: crate::text::one_line(
                err.to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("error: "),
                200,
            ),
        })?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(WriteError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let merged = super::merge_user(existing, user);
    let text = super::yaml(&merged)?;
    let dir = create_parent(path)?;
    let tmp = dir.join(format!(
        ".{}.koidc-tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("config")
    ));
    // A leftover from an interrupted run may have another mode: start afresh.
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    })();
    written.map_err(|source| WriteError::Write {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| WriteError::Replace {
        path: path.to_owned(),
        source,
    })?;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::super::{ExecUser, kubeconfig_user};
    use super::*;

    use serde_json::Value;

    fn user(name: &str) -> NamedUser {
        kubeconfig_user(&ExecUser {
            name: name.into(),
            command: "koidc".into(),
            args: vec!["get-token".into()],
        })
    }
    #[test]
    fn writing_the_user_keeps_clusters_contexts_and_other_users_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: https://127.0.0.1:1}\n\
             contexts:\n- name: x\n  context: {cluster: c, user: oidc}\ncurrent-context: x\n\
             users:\n- name: other\n  user: {token: t}\n",
        )
        .unwrap();
        write_kubeconfig_user(&path, user("oidc")).unwrap();
        let written: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(written["clusters"][0]["name"], "c");
        assert_eq!(written["contexts"][0]["name"], "x");
        assert_eq!(written["current-context"], "x");
        assert_eq!(written["users"][0]["name"], "other");
        assert_eq!(written["users"][1], serde_json::to_value(user("oidc")).unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn writing_the_user_keeps_what_koidc_does_not_know_and_refuses_what_is_not_a_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let before = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://a:1\n    \
                      proxy-url: http://proxy:3128\n    extensions: [{name: x, extension: {a: 1}}]\n\
                      contexts:\n- name: x\n  context: {cluster: c, user: oidc, namespace: apps}\n\
                      users:\n- name: other\n  user:\n    exec: {command: other-plugin, env: [{name: K, value: v}], \
                      provideClusterInfo: true, interactiveMode: Never}\n\
                      extensions: [{name: e, extension: {b: 2}}]\n";
        std::fs::write(&path, before).unwrap();
        write_kubeconfig_user(&path, user("oidc")).unwrap();
        let mut written: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let added = written["users"].as_array_mut().unwrap().pop().unwrap();
        assert_eq!(added, serde_json::to_value(user("oidc")).unwrap());
        let before: Value = serde_saphyr::from_str(before).unwrap();
        assert_eq!(written, before, "something besides the user changed");

        for not_a_kubeconfig in ["- 1\n", "users: 5\n"] {
            std::fs::write(&path, not_a_kubeconfig).unwrap();
            let err = write_kubeconfig_user(&path, user("oidc")).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("cannot parse the kubeconfig {}", path.display())),
                "{err}"
            );
            let line = err.to_string();
            assert!(
                !line.contains(['\n', '|']) && line.ends_with("name another one with --kubeconfig"),
                "one line with the way out, not the parser's picture of the input: {line}"
            );
            assert_eq!(std::fs::read_to_string(&path).unwrap(), not_a_kubeconfig);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_kubeconfig_is_updated_where_it_points() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("dotfiles-kubeconfig");
        std::fs::write(&real, "apiVersion: v1\nkind: Config\nusers: []\n").unwrap();
        let link = dir.path().join("config");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_kubeconfig_user(&link, user("oidc")).unwrap();
        assert!(
            std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(),
            "the symlink was replaced by a file"
        );
        let written: Value = serde_saphyr::from_str(&std::fs::read_to_string(&real).unwrap()).unwrap();
        assert_eq!(written["users"][0]["name"], "oidc");
    }

    #[test]
    fn a_held_kubeconfig_lock_makes_the_write_fail_naming_the_lock_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let lock = dir.path().join("config.lock");
        std::fs::write(&path, "apiVersion: v1\nkind: Config\nusers: []\n").unwrap();
        std::fs::write(&lock, "").unwrap();
        let err = write_kubeconfig_user_waiting(&path, user("oidc"), Duration::from_millis(200))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("delete {}", lock.display())), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "apiVersion: v1\nkind: Config\nusers: []\n"
        );
        assert!(lock.exists(), "another program's lock was removed");
    }

    #[test]
    fn an_empty_kubeconfig_path_is_refused_without_creating_a_lock() {
        let err = write_kubeconfig_user(Path::new(""), user("oidc")).unwrap_err();
        assert!(err.to_string().contains("--kubeconfig"), "{err}");
        assert!(!Path::new(".lock").exists());
    }

    #[cfg(unix)]
    #[test]
    fn the_kubeconfig_lock_is_removed_after_a_write_and_after_a_failed_one() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("dotfiles-kubeconfig");
        let link = dir.path().join("config");
        std::fs::write(&real, "apiVersion: v1\nkind: Config\nusers: []\n").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        // The file the link points to is locked by someone using that name: wait for it too.
        std::fs::write(dir.path().join("dotfiles-kubeconfig.lock"), "").unwrap();
        assert!(write_kubeconfig_user_waiting(&link, user("oidc"), Duration::from_millis(200)).is_err());
        assert!(
            !dir.path().join("config.lock").exists(),
            "our lock was left behind"
        );
        std::fs::remove_file(dir.path().join("dotfiles-kubeconfig.lock")).unwrap();

        write_kubeconfig_user(&link, user("oidc")).unwrap();
        std::fs::write(&real, "users: [unclosed").unwrap();
        assert!(write_kubeconfig_user(&link, user("oidc")).is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".lock"))
            .collect();
        assert!(left.is_empty(), "lock files left behind: {left:?}");
    }

    #[cfg(unix)]
    #[test]
    fn a_stale_temporary_file_does_not_lend_its_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let tmp = dir.path().join(".config.koidc-tmp");
        std::fs::write(&tmp, "leftover").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_kubeconfig_user(&path, user("oidc")).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!tmp.exists());
    }
}
