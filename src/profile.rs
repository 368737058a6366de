//! Profiles: named sets of options in koidc's config file, so that a kubeconfig entry can be just
//! `koidc get-token --profile work` and several accounts can live side by side.
//!
//! The file is `$KOIDC_CONFIG`, else `$XDG_CONFIG_HOME/koidc/config.toml`, else
//! `~/.config/koidc/config.toml` (macOS too; `%APPDATA%\koidc\config.toml` on Windows):
//!
//! ```toml
//! default-profile = "work"          # used when neither --profile nor --issuer/--client-id is given
//!
//! [profiles.work]
//! issuer = "https://dex.example.com/dex"
//! client-id = "kubernetes"
//! scopes = ["email", "groups", "offline_access"]
//! ```
//!
//! Precedence: command-line flags, then `KOIDC_*` variables, then the profile, then koidc's
//! built-in defaults. The parser leaves an option the user did not set `None` (clap applies no
//! default to them), [`crate::config::apply_profile`] fills those from the profile, and the
//! constructors of [`crate::config`] apply the defaults to what is still `None`. A key is an option's, named by the option table
//! ([`crate::cli::options::OPTIONS`]; a test checks that the keys here are exactly its). The chosen
//! profile's name goes into [`crate::config::Identity::profile`] and from there into the cache key,
//! so two profiles for the same issuer and client (two accounts) keep separate tokens.
//!
//! The file decides which issuer koidc trusts and which command it runs as a browser, so a file
//! (or its directory) that other users can write is refused — judged by the opened file's own
//! `fstat`, and read from that descriptor — and so is an unknown key (a typo
//! silently ignored would log in with the wrong settings). Secrets are never read from the file:
//! a profile names the variable holding the client secret (`client-secret-env`).
//!
//! Only the commands that take identity options (get-token, login, logout, clean, whoami, setup)
//! use profiles, and the file is read only when a profile can matter: `get-token --issuer ...
//! --client-id ...` (the classic kubeconfig entry) never opens it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The variable naming the config file, overriding the default location.
pub const CONFIG_ENV: &str = "KOIDC_CONFIG";

/// A problem with the config file or the chosen profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// `--profile` was given but there is no config file.
    #[error("--profile {profile}: there is no config file {}; create it with a [profiles.{profile}] table (or set {CONFIG_ENV})", path.display())]
    NoConfigFile {
        /// The profile asked for.
        profile: String,
        /// Where the file was looked for.
        path: PathBuf,
    },
    /// No location for the config file can be derived.
    #[error(
        "--profile {profile}: cannot locate the config file (neither {CONFIG_ENV}, XDG_CONFIG_HOME nor HOME is set); set {CONFIG_ENV}"
    )]
    NoConfigDir {
        /// The profile asked for.
        profile: String,
    },
    /// The file cannot be read.
    #[error("cannot read the config file {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The path names something other than a regular file (a FIFO, a device, a directory).
    #[error("the config file {} is not a regular file; point {CONFIG_ENV} at a file", path.display())]
    NotAFile {
        /// The config file.
        path: PathBuf,
    },
    /// The file (or its directory) can be written by other users.
    #[error(
        "the config file {} is not safe: {what} is writable by group or others (mode {mode:04o}); it decides which issuer koidc trusts, so run `chmod go-w {}`",
        path.display(),
        target.display()
    )]
    Insecure {
        /// The config file.
        path: PathBuf,
        /// "it" or "its directory".
        what: &'static str,
        /// The file or directory whose mode is wrong.
        target: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file belongs to another user.
    #[error("the config file {} belongs to uid {owner}, not to you (uid {me}) or root; use a config file of your own", path.display())]
    ForeignOwner {
        /// The config file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        me: u32,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("invalid config file {}, line {line}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem (0 when unknown).
        line: usize,
        /// What is wrong, naming the key.
        message: String,
    },
    /// The profile asked for is not in the file.
    #[error("no profile {profile:?} in {}; {}", path.display(), available_text(available))]
    UnknownProfile {
        /// The profile asked for.
        profile: String,
        /// The file.
        path: PathBuf,
        /// The profiles the file defines.
        available: Vec<String>,
    },
    /// A value of the profile is not one koidc knows.
    #[error("invalid {key} {value:?} in profile {profile:?} of {}: expected one of {expected}", path.display())]
    Value {
        /// The profile.
        profile: String,
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// The accepted values, comma-separated.
        expected: String,
    },
    /// `client-secret-env` names a variable that is not set.
    #[error(
        "profile {profile:?} reads the client secret from the variable {var} (client-secret-env), which is not set; export it, or set KOIDC_CLIENT_SECRET"
    )]
    SecretEnv {
        /// The profile.
        profile: String,
        /// The variable's name.
        var: String,
    },
}

fn available_text(available: &[String]) -> String {
    if available.is_empty() {
        "the file defines no profiles (add a [profiles.NAME] table)".to_owned()
    } else {
        format!("available: {}", available.join(", "))
    }
}

/// One `[profiles.NAME]` table. Every key is optional; names are the long flag names. Its `Debug`
/// form hides the values of `request-headers` (an API key, say).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Profile {
    /// `--issuer`.
    pub issuer: Option<String>,
    /// `--client-id`.
    pub client_id: Option<String>,
    /// `--scope`, as a list.
    pub scopes: Option<Vec<String>>,
    /// `--provider` (auto, generic, dex, okta, ...).
    pub provider: Option<String>,
    /// `--github-url`.
    pub github_url: Option<String>,
    /// `--github-api-url`.
    pub github_api_url: Option<String>,
    /// `--audience`.
    pub audience: Option<String>,
    /// `--token-source` (github-actions, file:PATH, env:VAR).
    pub token_source: Option<String>,
    /// `--connector-id`.
    pub connector_id: Option<String>,
    /// `--listen`, as a list.
    pub listen: Option<Vec<String>>,
    /// `--cache` (keyring, file, none).
    pub cache: Option<String>,
    /// `--cache-dir`; relative to the config file's directory, `~/` is the home directory.
    pub cache_dir: Option<String>,
    /// `--certificate-authority`, as a list; paths as for `cache-dir`.
    pub certificate_authority: Option<Vec<String>>,
    /// `--grant` (auto, authcode, device-code, client-credentials, workload).
    pub grant: Option<String>,
    /// `--browser-command`.
    pub browser_command: Option<String>,
    /// `--timeout` in seconds.
    pub timeout: Option<u64>,
    /// `--redirect-host` (localhost, 127.0.0.1, ::1).
    pub redirect_host: Option<String>,
    /// The name of the environment variable holding the client secret (never the secret).
    pub client_secret_env: Option<String>,
    /// `--token-type` (id, access).
    pub token_type: Option<String>,
    /// `--auth-param`, as a list of `KEY=VALUE`.
    #[serde(default, deserialize_with = "auth_params_list")]
    pub auth_params: Option<Vec<String>>,
    /// `--request-header`, as a list of `NAME=VALUE`.
    #[serde(default, deserialize_with = "request_headers_list")]
    pub request_headers: Option<HeaderList>,
    /// `--pkce` (true, false).
    pub pkce: Option<bool>,
}

/// The `request-headers` of a profile. Its `Debug` form shows the header names only: the values
/// may be keys.
#[derive(Clone, Default, PartialEq)]
pub struct HeaderList(pub Vec<String>);

impl std::ops::Deref for HeaderList {
    type Target = [String];
    fn deref(&self) -> &[String] {
        &self.0
    }
}

impl std::fmt::Debug for HeaderList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|h| {
                format!(
                    "{}=<redacted>",
                    h.split_once('=').map_or(h.as_str(), |(name, _)| name)
                )
            }))
            .finish()
    }
}

/// `request-headers`: see [`quiet_list`].
fn request_headers_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<HeaderList>, D::Error> {
    Ok(quiet_list("request-headers", "NAME=VALUE", d)?.map(HeaderList))
}

/// `auth-params`: see [`quiet_list`].
fn auth_params_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    quiet_list("auth-params", "KEY=VALUE", d)
}

/// A list of strings whose values may be secret (a header's API key) or personal (a
/// `login_hint`): anything else is refused naming the key and the shape expected, never quoting
/// the value as serde's own type errors do.
fn quiet_list<'de, D: serde::Deserializer<'de>>(
    key: &str,
    shape: &str,
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    let refused = || {
        <D::Error as serde::de::Error>::custom(format!(
            "{key} must be a list of \"{shape}\" strings, e.g. {key} = [\"{shape}\"] (value not shown)"
        ))
    };
    match toml::Value::deserialize(d).map_err(|_| refused())? {
        toml::Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s),
                _ => Err(refused()),
            })
            .collect::<Result<_, _>>()
            .map(Some),
        _ => Err(refused()),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileFormat {
    default_profile: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// A parsed config file.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// Where it was read from (named in errors; relative paths in it start at its directory).
    pub path: PathBuf,
    /// `default-profile`.
    pub default_profile: Option<String>,
    /// The profiles by name.
    pub profiles: BTreeMap<String, Profile>,
}

impl ConfigFile {
    /// Parses the text of the file at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ProfileError> {
        let raw: FileFormat = toml::from_str(text).map_err(|e| ProfileError::Parse {
            path: path.to_owned(),
            line: e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(0),
            message: e.message().trim().replace('\n', " "),
        })?;
        Ok(Self {
            path: path.to_owned(),
            default_profile: raw.default_profile.filter(|p| !p.is_empty()),
            profiles: raw.profiles,
        })
    }

    /// Reads and parses the file at `path`; `None` when it does not exist. Refuses a file that
    /// others can write (see [`ProfileError::Insecure`]).
    pub fn load(path: &Path) -> Result<Option<Self>, ProfileError> {
        Self::load_with(path, || {})
    }

    /// [`Self::load`], running `after_open` once the file is open (tests swap the file there).
    ///
    /// The owner, mode and type are those of the opened file (`fstat` on the descriptor), and
    /// the text is read from that same descriptor: replacing the file by its path after the
    /// check changes nothing.
    fn load_with(path: &Path, after_open: impl FnOnce()) -> Result<Option<Self>, ProfileError> {
        let read_err = |error| ProfileError::Read {
            path: path.to_owned(),
            error,
        };
        let file = match open_config(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(read_err(error)),
        };
        after_open();
        check_opened(&file, path, effective_uid())?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(&file, MAX_CONFIG_LEN + 1), &mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_CONFIG_LEN {
            return Err(read_err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "larger than 1 MiB",
            )));
        }
        check_directories(path, &file)?;
        let config = Self::parse(path, &text)?;
        // Every profile's secret variable, not only the chosen profile's: the shell may export
        // several, and none of them is for the browser's eyes.
        for var in config
            .profiles
            .values()
            .filter_map(|p| p.client_secret_env.as_deref())
        {
            crate::login::browser::withhold_from_browser(var);
        }
        Ok(Some(config))
    }

    /// The profile `name`, or an error listing the available ones.
    pub fn profile(&self, name: &str) -> Result<&Profile, ProfileError> {
        self.profiles
            .get(name)
            .ok_or_else(|| ProfileError::UnknownProfile {
                profile: name.to_owned(),
                path: self.path.clone(),
                available: self.profiles.keys().cloned().collect(),
            })
    }
}

/// `$KOIDC_CONFIG`, else `$XDG_CONFIG_HOME/koidc/config.toml`, else `~/.config/koidc/config.toml`
/// (`%APPDATA%\koidc\config.toml` on Windows); `None` when none of these variables is set.
pub fn config_path() -> Option<PathBuf> {
    let non_empty = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(path) = non_empty(CONFIG_ENV) {
        return Some(path);
    }
    if cfg!(windows) {
        return non_empty("APPDATA").map(|d| d.join("koidc").join("config.toml"));
    }
    if let Some(xdg) = non_empty("XDG_CONFIG_HOME").filter(|p| p.is_absolute()) {
        return Some(xdg.join("koidc/config.toml"));
    }
    non_empty("HOME").map(|home| home.join(".config/koidc/config.toml"))
}

/// The largest config file koidc reads.
const MAX_CONFIG_LEN: u64 = 1024 * 1024;

/// Opens the config file for reading, following symlinks (dotfile managers link it), without
/// blocking on a FIFO (the type check refuses it afterwards).
fn open_config(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    options.open(path)
}

#[cfg(unix)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(not(unix))]
fn effective_uid() -> u32 {
    0
}

/// Checks the opened `file` (named `path` in errors) through its descriptor: a regular file,
/// owned by `me` or root, not writable by group or others.
#[cfg(unix)]
fn check_opened(file: &std::fs::File, path: &Path, me: u32) -> Result<(), ProfileError> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = file.metadata().map_err(|error| ProfileError::Read {
        path: path.to_owned(),
        error,
    })?;
    if !meta.is_file() {
        return Err(ProfileError::NotAFile {
            path: path.to_owned(),
        });
    }
    if meta.uid() != me && meta.uid() != 0 {
        return Err(ProfileError::ForeignOwner {
            path: path.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(ProfileError::Insecure {
            path: path.to_owned(),
            what: "it",
            target: path.to_owned(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_opened(file: &std::fs::File, path: &Path, _me: u32) -> Result<(), ProfileError> {
    match file.metadata() {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(ProfileError::NotAFile {
            path: path.to_owned(),
        }),
        Err(error) => Err(ProfileError::Read {
            path: path.to_owned(),
            error,
        }),
    }
}

/// Others who can write a directory could have replaced the file in it, unless the sticky bit
/// stops them (as in /tmp): checks the directory of the opened file (found through
/// `/proc/self/fd`, else by resolving `path`) and, when `path` is a symlink, the link's own.
#[cfg(unix)]
fn check_directories(path: &Path, file: &std::fs::File) -> Result<(), ProfileError> {
    use std::os::unix::fs::MetadataExt as _;
    use std::os::unix::io::AsRawFd as _;
    let read_err = |error| ProfileError::Read {
        path: path.to_owned(),
        error,
    };
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()
        .filter(|p| p.is_absolute())
        .map_or_else(|| std::fs::canonicalize(path), Ok)
        .map_err(read_err)?;
    let mut dirs: Vec<PathBuf> = real.parent().map(Path::to_owned).into_iter().collect();
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if is_link {
        let parent = path.parent().filter(|d| !d.as_os_str().is_empty());
        dirs.push(parent.unwrap_or(Path::new(".")).to_owned());
    }
    for dir in dirs {
        let mode = std::fs::metadata(&dir).map_err(read_err)?.mode();
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(ProfileError::Insecure {
                path: path.to_owned(),
                what: "its directory",
                target: dir,
                mode: mode & 0o7777,
            });
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_directories(_path: &Path, _file: &std::fs::File) -> Result<(), ProfileError> {
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A config file with two profiles, one of them the default (also read by the tests of
    /// [`crate::config`], which applies profiles).
    pub(crate) const FILE: &str = r#"
default-profile = "work"

[profiles.work]
issuer = "https://dex.example.com/dex"
client-id = "kubernetes"
scopes = ["email", "groups"]
provider = "dex"
cache = "file"
cache-dir = "cache/work"
certificate-authority = ["~/ca.pem", "/etc/ca.pem"]
listen = ["127.0.0.1:8000"]
grant = "device-code"
browser-command = "firefox"
timeout = 30

[profiles.work2]
issuer = "https://dex.example.com/dex"
client-id = "kubernetes"
client-secret-env = "WORK2_SECRET"
"#;

    /// [`FILE`], as if read from `/cfg/koidc/config.toml`.
    pub(crate) fn file() -> ConfigFile {
        ConfigFile::parse(Path::new("/cfg/koidc/config.toml"), FILE).unwrap()
    }

    /// The keys of a `[profiles.NAME]` table, as serde knows them (the fields it asks for).
    fn profile_keys() -> std::collections::BTreeSet<String> {
        /// A deserializer that only records the field names a struct asks for.
        struct Fields(Vec<&'static str>);
        impl<'de> serde::Deserializer<'de> for &mut Fields {
            type Error = serde::de::value::Error;
            fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
                Err(serde::de::Error::custom("fields only"))
            }
            fn deserialize_struct<V: serde::de::Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Self::Error> {
                self.0.extend(fields);
                Err(serde::de::Error::custom("fields only"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
                option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
                ignored_any
            }
        }
        let mut fields = Fields(Vec::new());
        let _ = Profile::deserialize(&mut fields);
        fields.0.into_iter().map(str::to_owned).collect()
    }

    #[test]
    fn a_profile_has_a_key_exactly_for_the_options_the_option_table_gives_one() {
        use crate::cli::options::OPTIONS;
        let table: std::collections::BTreeSet<String> = OPTIONS
            .iter()
            .filter_map(|o| o.profile_key)
            .map(str::to_owned)
            .collect();
        assert!(table.contains("issuer") && table.contains("client-secret-env"));
        assert_eq!(profile_keys(), table);
    }

    #[test]
    fn unknown_keys_are_named_with_the_file_and_line() {
        let text = "[profiles.work]\nissuer = \"https://i\"\nisuer = \"https://typo\"\n";
        let err = ConfigFile::parse(Path::new("/c/config.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid config file /c/config.toml, line 3: "),
            "{err}"
        );
        assert!(err.contains("unknown field `isuer`"), "{err}");
        assert!(!err.contains('\n'));
        let top = ConfigFile::parse(Path::new("/c/config.toml"), "default_profile = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(top.contains("unknown field `default_profile`"), "{top}");
        let typed = ConfigFile::parse(Path::new("/c/config.toml"), "[profiles.a]\nscopes = \"email\"\n")
            .unwrap_err()
            .to_string();
        assert!(typed.contains("line 2"), "{typed}");
    }

    #[test]
    fn a_request_header_given_as_a_string_is_refused_without_its_value() {
        let hostile = [
            "request-headers = \"X-Api-Key=TOPSECRET123\"",
            "request-headers = [\"X-A=b\", 7654321]",
            "request-headers = { X-Api-Key = \"TOPSECRET123\" }",
            "auth-params = \"login_hint=TOPSECRET123\"",
            "auth-params = [[\"login_hint=TOPSECRET123\"]]",
        ];
        for line in hostile {
            let text = format!("[profiles.work]\nissuer = \"https://i\"\nclient-id = \"k\"\n{line}\n");
            let err = ConfigFile::parse(Path::new("/c/config.toml"), &text)
                .unwrap_err()
                .to_string();
            assert!(err.contains("line 4"), "{line}: {err}");
            assert!(err.contains("must be a list of"), "{line}: {err}");
            assert!(
                !err.contains("TOPSECRET123") && !err.contains("7654321"),
                "{line}: {err}"
            );
            assert!(!err.contains('\n'), "{line}: {err}");
        }
        // A list of strings is read as before, and Debug shows header names only.
        let text = "[profiles.work]\nrequest-headers = [\"X-Api-Key=TOPSECRET123\"]\nauth-params = [\"prompt=login\"]\n";
        let file = ConfigFile::parse(Path::new("/c/config.toml"), text).unwrap();
        let work = &file.profiles["work"];
        assert_eq!(
            work.request_headers.as_deref(),
            Some(&["X-Api-Key=TOPSECRET123".to_owned()][..])
        );
        assert_eq!(
            work.auth_params.as_deref(),
            Some(&["prompt=login".to_owned()][..])
        );
        for shown in [format!("{work:?}"), format!("{file:?}")] {
            assert!(!shown.contains("TOPSECRET123"), "{shown}");
            assert!(
                shown.contains("X-Api-Key=<redacted>") && shown.contains("prompt=login"),
                "{shown}"
            );
        }
        let empty = ConfigFile::parse(
            Path::new("/c/config.toml"),
            "[profiles.work]\nissuer = \"https://i\"\n",
        )
        .unwrap();
        assert_eq!(empty.profiles["work"].request_headers, None);
    }

    #[cfg(unix)]
    #[test]
    fn a_config_file_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, FILE).unwrap();
        for mode in [0o600, 0o644, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let f = ConfigFile::load(&path).unwrap().unwrap();
            assert_eq!(f.default_profile.as_deref(), Some("work"));
        }
        for mode in [0o620, 0o602, 0o666] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = ConfigFile::load(&path).unwrap_err().to_string();
            assert!(err.contains("writable by group or others"), "{mode:o}: {err}");
            assert!(err.contains("chmod go-w"), "{err}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ConfigFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("its directory"), "{err}");
        // A sticky shared directory (like /tmp) is fine: others cannot replace the file.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(ConfigFile::load(&path).is_ok());
        assert!(
            ConfigFile::load(&dir.path().join("missing.toml"))
                .unwrap()
                .is_none()
        );
    }

    /// A private directory holding `config.toml` with `text` and `mode`.
    #[cfg(unix)]
    fn private_config(text: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    /// Replaces `path` (by rename, as an attacker with a writable path would) with a file of
    /// `text` and `mode`.
    #[cfg(unix)]
    fn swap_in(path: &Path, text: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = path.with_extension("swap");
        std::fs::write(&tmp, text).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn config_file_check_uses_the_opened_file_not_the_path_swapped_after_opening() {
        // Opened: a safe file. Then the path is swapped for a group-writable one: what was read
        // (and checked) is the safe file, so it is used.
        let (_dir, path) = private_config("default-profile = \"opened\"\n", 0o600);
        let f = ConfigFile::load_with(&path, || swap_in(&path, "default-profile = \"swapped\"\n", 0o666))
            .unwrap()
            .unwrap();
        assert_eq!(f.default_profile.as_deref(), Some("opened"));

        // Opened: a group-writable file (anyone in the group chose its text). Swapping a safe
        // file in afterwards must not launder it.
        let (_dir, path) = private_config("default-profile = \"planted\"\n", 0o664);
        let err = ConfigFile::load_with(&path, || swap_in(&path, "default-profile = \"safe\"\n", 0o600))
            .unwrap_err();
        assert!(matches!(err, ProfileError::Insecure { what: "it", .. }), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn config_file_symlinked_to_an_unsafe_file_is_refused_and_to_a_safe_one_accepted() {
        use std::os::unix::fs::PermissionsExt as _;
        let (dir, target) = private_config(FILE, 0o600);
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let f = ConfigFile::load(&link).unwrap().unwrap();
        assert_eq!(f.default_profile.as_deref(), Some("work"));
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o620)).unwrap();
        let err = ConfigFile::load(&link).unwrap_err();
        assert!(matches!(err, ProfileError::Insecure { what: "it", .. }), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn every_profiles_secret_variable_is_kept_from_the_browser_not_only_the_chosen_ones() {
        let text = "[profiles.a]\nissuer = \"https://a\"\nclient-secret-env = \"KOIDC_TEST_A_SECRET\"\n\
                    [profiles.b]\nissuer = \"https://b\"\nclient-secret-env = \"KOIDC_TEST_B_SECRET\"\n";
        let (_dir, path) = private_config(text, 0o600);
        assert!(!crate::login::browser::is_withheld("KOIDC_TEST_A_SECRET"));
        let config = ConfigFile::load(&path).unwrap().unwrap();
        config.profile("b").unwrap();
        assert!(crate::login::browser::is_withheld("KOIDC_TEST_A_SECRET"));
        assert!(crate::login::browser::is_withheld("KOIDC_TEST_B_SECRET"));
    }

    #[cfg(unix)]
    #[test]
    fn config_file_of_another_user_is_refused_by_its_descriptor() {
        use std::os::unix::fs::MetadataExt as _;
        let (_dir, path) = private_config(FILE, 0o600);
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        let (owner, as_uid) = if me == 0 {
            // root may give the file away; checked as root, it is foreign.
            std::os::unix::fs::chown(&path, Some(12345), None).unwrap();
            (12345, 0)
        } else {
            // Checked as if by another (non-root) user.
            (me, me + 1)
        };
        assert_eq!(std::fs::metadata(&path).unwrap().uid(), owner);
        let file = std::fs::File::open(&path).unwrap();
        let err = check_opened(&file, &path, as_uid).unwrap_err();
        assert!(
            matches!(err, ProfileError::ForeignOwner { owner: o, me: m, .. } if o == owner && m == as_uid),
            "{err}"
        );
        if me == 0 {
            let err = ConfigFile::load(&path).unwrap_err();
            assert!(matches!(err, ProfileError::ForeignOwner { .. }), "{err}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn config_file_that_is_a_fifo_or_a_device_is_refused_without_blocking() {
        let (dir, _) = private_config(FILE, 0o600);
        let fifo = dir.path().join("fifo.toml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for path in [fifo, PathBuf::from("/dev/zero")] {
            let (tx, rx) = std::sync::mpsc::channel();
            let p = path.clone();
            std::thread::spawn(move || {
                let _ = tx.send(ConfigFile::load(&p).map(|_| ()).map_err(|e| e.to_string()));
            });
            let got = rx
                .recv_timeout(std::time::Duration::from_secs(5))
                .unwrap_or_else(|_| panic!("loading {} hung", path.display()));
            let err = got.unwrap_err();
            assert!(err.contains("not a regular file"), "{}: {err}", path.display());
        }
    }
}
