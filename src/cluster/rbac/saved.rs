//! The groups prefix the cluster's apiserver was set up with, remembered in
//! `<config dir>/koidc/cluster.json` (`{"groupsPrefix": "oidc:"}`) so that `koidc bind-group`
//! puts it in front of every group without the admin having to remember it.
//!
//! `koidc setup` writes it ([`save_group_prefix`]); `bind-group` reads it ([`saved_group_prefix`])
//! unless `--group-prefix` is given. Other keys in the file are kept as they are, so the file can
//! grow. The config directory is `$XDG_CONFIG_HOME/koidc`, else `~/.config/koidc`
//! (`%APPDATA%\koidc` on Windows); the file is written 0600 in a 0700 directory.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::RbacError;

/// The key in `cluster.json`.
const KEY: &str = "groupsPrefix";

/// A prefix read from the settings file, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedPrefix {
    /// The groups prefix (may be empty).
    pub prefix: String,
    /// The file it was read from.
    pub path: PathBuf,
}

/// `<config dir>/koidc/cluster.json`, or None when neither XDG_CONFIG_HOME nor HOME is set.
pub fn cluster_config_path() -> Option<PathBuf> {
    let non_empty = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let dir = if cfg!(windows) {
        non_empty("APPDATA")?
    } else if let Some(xdg) = non_empty("XDG_CONFIG_HOME").filter(|p| p.is_absolute()) {
        xdg
    } else {
        non_empty("HOME")?.join(".config")
    };
    Some(dir.join("koidc").join("cluster.json"))
}

/// The saved groups prefix, if `koidc setup` recorded one.
pub fn saved_group_prefix() -> Result<Option<SavedPrefix>, RbacError> {
    match cluster_config_path() {
        Some(path) => saved_group_prefix_at(&path),
        None => Ok(None),
    }
}

/// The groups prefix saved in `path`; None when the file or the key does not exist.
pub fn saved_group_prefix_at(path: &Path) -> Result<Option<SavedPrefix>, RbacError> {
    let Some(settings) = read_settings(path)? else {
        return Ok(None);
    };
    match settings.get(KEY) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(prefix)) => {
            super::names::validate_group_prefix(prefix).map_err(|e| read_error(path, e.to_string()))?;
            Ok(Some(SavedPrefix {
                prefix: prefix.clone(),
                path: path.to_owned(),
            }))
        }
        Some(_) => Err(read_error(path, format!("{KEY} is not a string"))),
    }
}

/// Records the groups prefix in the default settings file; returns the file written.
pub fn save_group_prefix(prefix: &str) -> Result<PathBuf, RbacError> {
    let path = cluster_config_path().ok_or(RbacError::NoConfigDir)?;
    save_group_prefix_at(&path, prefix)?;
    Ok(path)
}

/// Records the groups prefix in `path`, keeping the file's other keys.
pub fn save_group_prefix_at(path: &Path, prefix: &str) -> Result<(), RbacError> {
    super::names::validate_group_prefix(prefix)?;
    let mut settings = read_settings(path)?.unwrap_or_default();
    settings.insert(KEY.to_owned(), Value::String(prefix.to_owned()));
    let mut text = serde_json::to_string_pretty(&Value::Object(settings))
        .map_err(|e| write_error(path, e.to_string()))?;
    text.push('\n');
    write_private(path, text.as_bytes()).map_err(|e| write_error(path, e.to_string()))
}

fn read_settings(path: &Path) -> Result<Option<Map<String, Value>>, RbacError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(path, e.to_string())),
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(read_error(path, "it is not a JSON object".to_owned())),
        Err(e) => Err(read_error(path, format!("invalid JSON: {e}"))),
    }
}

fn read_error(path: &Path, message: String) -> RbacError {
    RbacError::ReadSaved {
        path: path.display().to_string(),
        message,
    }
}

fn write_error(path: &Path, message: String) -> RbacError {
    RbacError::WriteSaved {
        path: path.display().to_string(),
        message,
    }
}

/// Writes `bytes` to `path` atomically (temporary file + rename), 0600 in a 0700 directory.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_means_no_saved_prefix() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            saved_group_prefix_at(&dir.path().join("cluster.json")).unwrap(),
            None
        );
    }

    #[test]
    fn a_saved_prefix_is_read_back_and_other_keys_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("koidc").join("cluster.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, r#"{"issuer": "https://dex.example.com"}"#).unwrap();
        save_group_prefix_at(&path, "oidc:").unwrap();
        let saved = saved_group_prefix_at(&path).unwrap().unwrap();
        assert_eq!(
            saved,
            SavedPrefix {
                prefix: "oidc:".into(),
                path: path.clone()
            }
        );
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["issuer"], "https://dex.example.com");
        save_group_prefix_at(&path, "").unwrap();
        assert_eq!(saved_group_prefix_at(&path).unwrap().unwrap().prefix, "");
    }

    #[cfg(unix)]
    #[test]
    fn the_settings_file_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new").join("cluster.json");
        save_group_prefix_at(&path, "oidc:").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn a_malformed_settings_file_is_an_error_and_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.json");
        for bad in ["{not json", "[1]", r#"{"groupsPrefix": 3}"#] {
            std::fs::write(&path, bad).unwrap();
            let err = saved_group_prefix_at(&path).unwrap_err();
            assert!(matches!(err, RbacError::ReadSaved { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("--group-prefix"), "{err}");
        }
        std::fs::write(&path, "{not json").unwrap();
        assert!(save_group_prefix_at(&path, "oidc:").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{not json");
    }
}
