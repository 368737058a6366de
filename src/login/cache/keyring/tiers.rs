//! Where the keyring store's master key can live: the tiers behind [`SecretTier`].
//!
//! On Linux the kernel keyring (the front: microseconds, no D-Bus) and the Secret Service (the
//! back: persistent, a D-Bus round trip, asked only after a cheap check of the session bus
//! address); elsewhere the platform keyring of the `keyring` crate. Each call to a slow store is
//! bounded by a timeout on a helper thread, and every failure becomes a one-line reason that
//! holds no secret. The store itself ([`super::KeyringStore`]) decides which tier to ask when.

use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;

use super::SECRET_SERVICE_TIMEOUT;

/// Service name of the master key in the platform keyring.
pub(super) const SERVICE: &str = "koidc";

/// One place that can hold the master key, as text.
pub(in crate::login::cache) trait SecretTier: Send + Sync {
    /// The secret stored under `account`; `Ok(None)` when there is none; `Err(reason)` when the
    /// store cannot be used (the reason is shown to the user and must hold no secret).
    fn get(&self, account: &str) -> Result<Option<SecretString>, String>;
    /// Stores `value` under `account`, replacing any earlier value.
    fn set(&self, account: &str, value: &SecretString) -> Result<(), String>;
}

/// Runs `f` on a helper thread and gives up after `timeout` (the thread is left to finish on
/// its own; it holds no lock of ours).
pub(super) fn with_timeout<T: Send + 'static>(
    what: &str,
    timeout: Duration,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("koidc-keyring".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| format!("cannot start a thread to ask the {what}: {e}"))?;
    rx.recv_timeout(timeout)
        .unwrap_or_else(|_| Err(format!("the {what} did not answer within {}s", timeout.as_secs())))
}

/// A one-line reason from a `keyring` error (its messages hold no secret).
pub(super) fn describe(what: &str, err: &keyring::Error) -> String {
    let text = match err {
        keyring::Error::NoStorageAccess(e) => format!("the {what} refused access: {e}"),
        keyring::Error::PlatformFailure(e) => format!("the {what} failed: {e}"),
        keyring::Error::Ambiguous(_) => format!(
            "the {what} holds several koidc master keys (service {SERVICE}) for this cache directory; delete them"
        ),
        keyring::Error::BadEncoding(_) => {
            format!("the koidc master key in the {what} is not text; delete it")
        }
        other => format!("the {what} failed: {other}"),
    };
    text.replace(['\n', '\r'], " ")
}

#[cfg(target_os = "linux")]
pub(super) fn platform_tiers() -> (Option<Box<dyn SecretTier>>, Box<dyn SecretTier>) {
    let back = SecretService {
        bus_address: std::env::var_os("DBUS_SESSION_BUS_ADDRESS"),
        timeout: SECRET_SERVICE_TIMEOUT,
    };
    (Some(Box::new(KernelKeyring)), Box::new(back))
}

#[cfg(not(target_os = "linux"))]
pub(super) fn platform_tiers() -> (Option<Box<dyn SecretTier>>, Box<dyn SecretTier>) {
    (
        None,
        Box::new(PlatformKeyring {
            timeout: SECRET_SERVICE_TIMEOUT,
        }),
    )
}

/// The kernel keyring: a `user` key `koidc:<account>` in the session keyring.
#[cfg(target_os = "linux")]
pub(super) struct KernelKeyring;

#[cfg(target_os = "linux")]
impl KernelKeyring {
    pub(super) fn ring() -> Result<linux_keyutils::KeyRing, String> {
        // create = false: a process without a session keyring gets the user session keyring,
        // which all the user's processes share (a new anonymous one would be useless).
        linux_keyutils::KeyRing::from_special_id(linux_keyutils::KeyRingIdentifier::Session, false)
            .map_err(|e| format!("the kernel session keyring is not available: {e:?}"))
    }

    pub(super) fn description(account: &str) -> String {
        format!("{SERVICE}:{account}")
    }
}

#[cfg(target_os = "linux")]
impl SecretTier for KernelKeyring {
    fn get(&self, account: &str) -> Result<Option<SecretString>, String> {
        use linux_keyutils::KeyError;
        use secrecy::zeroize::Zeroizing;
        let key = match Self::ring()?.search(&Self::description(account)) {
            Ok(key) => key,
            Err(KeyError::KeyDoesNotExist | KeyError::KeyExpired | KeyError::KeyRevoked) => return Ok(None),
            Err(e) => return Err(format!("the kernel keyring search failed: {e:?}")),
        };
        let mut buf = Zeroizing::new([0u8; 256]);
        let len = key
            .read(&mut *buf)
            .map_err(|e| format!("the kernel keyring read failed: {e:?}"))?;
        let text = buf
            .get(..len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or("the kernel keyring holds a malformed koidc key")?;
        Ok(Some(SecretString::from(text.to_owned())))
    }

    fn set(&self, account: &str, value: &SecretString) -> Result<(), String> {
        let bytes = secrecy::ExposeSecret::expose_secret(value).as_bytes();
        Self::ring()?
            .add_key(&Self::description(account), bytes)
            .map(|_| ())
            .map_err(|e| format!("the kernel keyring refused the key: {e:?}"))
    }
}

#[cfg(target_os = "linux")]
/// Why the session bus is surely unusable, judged from `DBUS_SESSION_BUS_ADDRESS` alone (so a
/// missing bus costs no D-Bus call); `None` when it may work.
pub(super) fn session_bus_problem(address: Option<&std::ffi::OsStr>) -> Option<String> {
    let address = address.and_then(|a| a.to_str()).unwrap_or("");
    if address.trim().is_empty() {
        return Some("no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)".into());
    }
    // Every listed address is a unix socket path that does not exist: the bus is gone.
    let mut missing = Vec::new();
    for candidate in address.split(';').filter(|a| !a.is_empty()) {
        let path = candidate
            .strip_prefix("unix:")
            .and_then(|params| params.split(',').find_map(|p| p.strip_prefix("path=")));
        match path {
            Some(path) if !Path::new(path).exists() => missing.push(path),
            _ => return None,
        }
    }
    match missing.first() {
        Some(path) => Some(format!("the D-Bus session bus socket {path} does not exist")),
        None => Some("DBUS_SESSION_BUS_ADDRESS lists no address".into()),
    }
}

/// The freedesktop Secret Service (gnome-keyring, KWallet, KeePassXC) over D-Bus.
#[cfg(target_os = "linux")]
pub(super) struct SecretService {
    /// `DBUS_SESSION_BUS_ADDRESS` when the store was opened.
    pub bus_address: Option<std::ffi::OsString>,
    /// Longest wait per call.
    pub timeout: Duration,
}

#[cfg(target_os = "linux")]
impl SecretService {
    const WHAT: &'static str = "Secret Service";

    pub(super) fn entry(account: &str) -> Result<keyring::Entry, String> {
        let credential = keyring::secret_service::SsCredential::new_with_target(None, SERVICE, account)
            .map_err(|e| describe(Self::WHAT, &e))?;
        Ok(keyring::Entry::new_with_credential(Box::new(credential)))
    }

    fn check_bus(&self) -> Result<(), String> {
        match session_bus_problem(self.bus_address.as_deref()) {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }
}

#[cfg(target_os = "linux")]
impl SecretTier for SecretService {
    fn get(&self, account: &str) -> Result<Option<SecretString>, String> {
        self.check_bus()?;
        let account = account.to_owned();
        with_timeout(Self::WHAT, self.timeout, move || {
            match Self::entry(&account)?.get_password() {
                Ok(text) => Ok(Some(SecretString::from(text))),
                Err(keyring::Error::NoEntry) => Ok(None),
                Err(e) => Err(describe(Self::WHAT, &e)),
            }
        })
    }

    fn set(&self, account: &str, value: &SecretString) -> Result<(), String> {
        self.check_bus()?;
        let account = account.to_owned();
        let value = value.clone();
        with_timeout(Self::WHAT, self.timeout, move || {
            Self::entry(&account)?
                .set_password(secrecy::ExposeSecret::expose_secret(&value))
                .map_err(|e| describe(Self::WHAT, &e))
        })
    }
}

/// The `keyring` crate's default store (macOS keychain, Windows credential manager).
#[cfg(not(target_os = "linux"))]
pub(super) struct PlatformKeyring {
    pub(super) timeout: Duration,
}

#[cfg(not(target_os = "linux"))]
impl PlatformKeyring {
    const WHAT: &'static str = "OS keyring";

    pub(super) fn entry(account: &str) -> Result<keyring::Entry, String> {
        use keyring::credential::CredentialPersistence;
        // Without a platform feature, `keyring` silently keeps secrets in memory only.
        if matches!(
            keyring::default::default_credential_builder().persistence(),
            CredentialPersistence::EntryOnly | CredentialPersistence::ProcessOnly
        ) {
            return Err("this koidc build has no OS keyring support".into());
        }
        keyring::Entry::new(SERVICE, account).map_err(|e| describe(Self::WHAT, &e))
    }
}

#[cfg(not(target_os = "linux"))]
impl SecretTier for PlatformKeyring {
    fn get(&self, account: &str) -> Result<Option<SecretString>, String> {
        let account = account.to_owned();
        with_timeout(Self::WHAT, self.timeout, move || {
            match Self::entry(&account)?.get_password() {
                Ok(text) => Ok(Some(SecretString::from(text))),
                Err(keyring::Error::NoEntry) => Ok(None),
                Err(e) => Err(describe(Self::WHAT, &e)),
            }
        })
    }

    fn set(&self, account: &str, value: &SecretString) -> Result<(), String> {
        let account = account.to_owned();
        let value = value.clone();
        with_timeout(Self::WHAT, self.timeout, move || {
            Self::entry(&account)?
                .set_password(secrecy::ExposeSecret::expose_secret(&value))
                .map_err(|e| describe(Self::WHAT, &e))
        })
    }
}
