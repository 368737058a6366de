//! The credential sources the login pipeline ([`crate::login::pipeline`]) drives, and the one
//! place that picks one for an identity ([`select`]).
//!
//! A source implements [`CredentialSource`]: how a cache entry of its kind is read and written,
//! how long it may be served, how it is renewed and how a login goes. [`oidc`] serves OpenID
//! Connect ID tokens (authorization code through the browser or a pasted code, the device grant,
//! refresh); [`github`] serves GitHub access tokens (web and device flow, refresh of GitHub App
//! tokens, the hourly check with GitHub). Both call the protocol adapters
//! ([`crate::login::oidc`], [`crate::login::github`], [`crate::login::loopback`],
//! [`crate::login::browser`]); what both logins show the person at the terminal is here
//! ([`LoginPage`], [`choose_grant`]).
//!
//! A cache entry names the source that wrote it in its metadata's `kind` ([`EntryKind`]): the
//! commands that handle entries of any identity (`whoami` reads them with [`read_entry`],
//! `logout` revokes them with [`revoke_entry`]) reach the source through it, not through flags.

pub mod github;
pub mod machine;
pub mod oidc;

use std::sync::Arc;

use anyhow::Context as _;
use secrecy::SecretString;

use crate::clock::Clock;
use crate::config::{Grant, Identity, LoginConfig};
use crate::login::browser::{Browser, BrowserChoice, BrowserError};
use crate::login::cache::{CacheKey, EntryMeta};
use crate::login::github::GithubUrls;
use crate::login::pipeline::CredentialSource;
use crate::login::token::{Credential, IdTokenInfo, TokenSet};
use crate::printer::Printer;
use crate::provider::ProviderKind;

/// What every source is built with.
#[derive(Clone)]
pub struct Context<'a> {
    /// Which identity.
    pub identity: &'a Identity,
    /// How to log in.
    pub login: &'a LoginConfig,
    /// Opens login pages.
    pub browser: &'a dyn Browser,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Messages.
    pub printer: Printer,
}

/// The source selected for an identity.
pub enum Selected<'a> {
    /// OpenID Connect.
    Oidc(oidc::OidcSource<'a>),
    /// GitHub (`--provider github`).
    Github(github::GithubSource<'a>),
    /// A pipeline (`--grant workload` or `client-credentials`).
    Machine(machine::MachineSource<'a>),
}

impl Selected<'_> {
    /// The source, for [`crate::login::pipeline::Authenticator::source`].
    pub fn source(&self) -> &dyn CredentialSource {
        match self {
            Selected::Oidc(source) => source,
            Selected::Github(source) => source,
            Selected::Machine(source) => source,
        }
    }
}

/// The source for `context.identity`: a pipeline's for `--grant workload` and
/// `client-credentials`, GitHub for `--provider github`, else OpenID Connect. Cheap (no network,
/// no runtime): the warm path selects one too.
pub fn select(context: Context<'_>) -> anyhow::Result<Selected<'_>> {
    if let Some(machine) = &context.identity.machine {
        return Ok(Selected::Machine(machine::MachineSource::new(context, machine)));
    }
    if context.identity.provider == ProviderKind::Github {
        let urls = context
            .identity
            .github
            .as_ref()
            .context("internal error: a GitHub identity without GitHub URLs; please report this")?;
        return Ok(Selected::Github(github::GithubSource::new(context, urls)));
    }
    Ok(Selected::Oidc(oidc::OidcSource::new(context)))
}

/// Which source wrote a cache entry, as its metadata says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// An OpenID Connect ID token (entries without a `kind`).
    Oidc,
    /// A GitHub access token (`kind` [`crate::login::github::KIND`]).
    Github,
    /// A pipeline's token (`kind` [`machine::WORKLOAD_KIND`] or
    /// [`machine::CLIENT_CREDENTIALS_KIND`]): nothing to revoke.
    Machine,
}

impl EntryKind {
    /// The kind `meta` names.
    pub fn of(meta: &EntryMeta) -> Self {
        match meta.kind.as_deref() {
            Some(crate::login::github::KIND) => EntryKind::Github,
            Some(machine::WORKLOAD_KIND | machine::CLIENT_CREDENTIALS_KIND) => EntryKind::Machine,
            _ => EntryKind::Oidc,
        }
    }
}

/// The credential of a cached entry, read offline by the source its kind names: a GitHub entry
/// with the account it was stored with, else the ID token and its claims.
pub fn read_entry(tokens: TokenSet, meta: &EntryMeta) -> anyhow::Result<Credential> {
    if EntryKind::of(meta) == EntryKind::Machine {
        return machine::read_entry(tokens);
    }
    if let Some(account) = github::account_of(meta) {
        return Ok(Credential::GithubAccess {
            token: tokens.id_token,
            account,
            expires_at: meta.expires_at,
            checked_at: meta.checked_at,
        });
    }
    let info = IdTokenInfo::decode_secret(&tokens.id_token)?;
    Ok(Credential::IdToken {
        token: tokens.id_token,
        info,
    })
}

/// What revoking a cached entry's token did at its provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// The entry holds nothing to revoke (no refresh token).
    Nothing,
    /// The provider revoked the token.
    Revoked,
    /// GitHub no longer knew the token.
    AlreadyGone,
    /// The issuer offers no revocation endpoint.
    NoEndpoint,
    /// A GitHub token not revoked: the API needs the app's client secret. The GitHub web address.
    NeedsSecret(String),
}

/// What revoking a cached entry needs besides its tokens.
pub struct RevokeRequest<'a> {
    /// The entry's key: its issuer and client.
    pub key: &'a CacheKey,
    /// The GitHub URLs of the identity the flags name, when they name this entry's client.
    pub github: Option<GithubUrls>,
    /// The client secret configured for this entry's client, if any.
    pub client_secret: Option<&'a SecretString>,
    /// The CA and timeout settings.
    pub login: &'a LoginConfig,
    /// Time, for the ID token checks of discovery.
    pub clock: Arc<dyn Clock>,
}

/// Revokes a cached entry's token (best effort) at the provider of the source its kind names:
/// GitHub's token API, or the OpenID Connect issuer's revocation endpoint.
pub fn revoke_entry(
    tokens: TokenSet,
    meta: &EntryMeta,
    request: RevokeRequest<'_>,
) -> anyhow::Result<Revocation> {
    match EntryKind::of(meta) {
        EntryKind::Github => github::revoke_entry(&tokens.id_token, request),
        EntryKind::Oidc => oidc::revoke_entry(tokens.refresh_token.as_ref(), request),
        EntryKind::Machine => Ok(Revocation::Nothing),
    }
}

/// The grant a login uses. `auto` means the authorization code grant, except the device grant
/// when koidc would use the system browser on a machine without a display (`headless`: Linux
/// with neither DISPLAY nor WAYLAND_DISPLAY) and the provider advertises a device endpoint.
/// `--paste` asks for the authorization code grant.
pub fn choose_grant(
    grant: Grant,
    paste: bool,
    browser: &BrowserChoice,
    headless: bool,
    device_advertised: bool,
) -> Grant {
    match grant {
        Grant::Auto if !paste && *browser == BrowserChoice::System && headless && device_advertised => {
            Grant::DeviceCode
        }
        Grant::Auto => Grant::AuthCode,
        explicit => explicit,
    }
}

/// True on Linux when no graphical session is reachable (neither DISPLAY nor WAYLAND_DISPLAY),
/// so the system browser cannot be shown.
pub fn headless() -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    cfg!(target_os = "linux") && !set("DISPLAY") && !set("WAYLAND_DISPLAY")
}

/// The page a browser login starts at, and how it is shown to the person at the terminal.
pub struct LoginPage<'a> {
    /// The authorization URL.
    pub url: &'a str,
    /// The login timeout, in seconds.
    pub wait: u64,
    /// Where the login goes, for the messages (`" to GitHub"`, or empty).
    pub place: &'a str,
}

impl LoginPage<'_> {
    /// Opens the page in `browser` (printing it instead for `--no-browser`) and says so on
    /// stderr. When the browser cannot be opened, says that in one short line and returns the
    /// error without printing the URL: the caller prints it ([`Self::print`]) or logs in another
    /// way.
    pub fn open(
        &self,
        printer: Printer,
        choice: &BrowserChoice,
        browser: &dyn Browser,
    ) -> Result<(), BrowserError> {
        if *choice == BrowserChoice::None {
            self.print(printer);
            return Ok(());
        }
        match browser.open(self.url) {
            Ok(()) => {
                printer.info(format_args!(
                    "opened a browser to log in{} (waiting up to {}s); if none appeared, open: {}",
                    self.place, self.wait, self.url
                ));
                Ok(())
            }
            Err(err) => {
                printer.info(format_args!("could not open a browser: {}", err.short()));
                Err(err)
            }
        }
    }

    /// Prints the URL for the person to open.
    pub fn print(&self, printer: Printer) {
        printer.info(format_args!(
            "open this URL in a browser to log in{} (waiting up to {}s): {}",
            self.place, self.wait, self.url
        ));
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! What the tests of the sources and of the pipeline build on.
    use std::time::Duration;

    use crate::config::{Grant, LoginConfig};
    use crate::login::browser::BrowserChoice;

    /// Login settings as the flags' defaults give them, without a browser.
    pub fn login_config() -> LoginConfig {
        LoginConfig {
            client_secret: None,
            listen: Vec::new(),
            browser: BrowserChoice::None,
            timeout: Duration::from_secs(300),
            certificate_authorities: Vec::new(),
            certificate_authority_data: None,
            grant: Grant::Auto,
            paste: false,
            kubectl_interactive: None,
            redirect_host: crate::login::loopback::RedirectHost::Address,
            redirect_ip: None,
            force_refresh: false,
            request_headers: Default::default(),
            pkce: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_uses_the_device_grant_only_for_a_headless_system_browser_and_an_advertised_endpoint() {
        let system = BrowserChoice::System;
        let none = BrowserChoice::None;
        let command = BrowserChoice::Command("firefox".into());
        // (browser, headless, device advertised, paste) -> grant for `auto`
        let cases = [
            (&system, true, true, false, Grant::DeviceCode),
            (&system, false, true, false, Grant::AuthCode),
            (&system, true, false, false, Grant::AuthCode),
            (&system, true, true, true, Grant::AuthCode),
            (&none, true, true, false, Grant::AuthCode),
            (&command, true, true, false, Grant::AuthCode),
        ];
        for (browser, headless, device, paste, want) in cases {
            assert_eq!(
                choose_grant(Grant::Auto, paste, browser, headless, device),
                want,
                "{browser:?} headless={headless} device={device} paste={paste}"
            );
        }
        // Explicit grants are kept whatever the environment.
        assert_eq!(
            choose_grant(Grant::AuthCode, false, &system, true, true),
            Grant::AuthCode
        );
        assert_eq!(
            choose_grant(Grant::DeviceCode, false, &command, false, false),
            Grant::DeviceCode
        );
    }

    #[test]
    fn a_cached_entry_is_read_by_the_source_its_kind_names() {
        let github = EntryMeta {
            kind: Some(crate::login::github::KIND.to_owned()),
            info: Some(serde_json::json!({"id": 7, "login": "octocat"})),
            ..EntryMeta::default()
        };
        assert_eq!(EntryKind::of(&github), EntryKind::Github);
        assert_eq!(EntryKind::of(&EntryMeta::default()), EntryKind::Oidc);
        let tokens = || TokenSet {
            id_token: SecretString::from("gho_opaque"),
            refresh_token: None,
        };
        match read_entry(tokens(), &github).unwrap() {
            Credential::GithubAccess { account, .. } => assert_eq!(account.login, "octocat"),
            Credential::IdToken { .. } => panic!("a GitHub entry read as an ID token"),
        }
        // Without a kind, the entry holds an ID token: an opaque token is no JWT.
        assert!(read_entry(tokens(), &EntryMeta::default()).is_err());
    }
}
