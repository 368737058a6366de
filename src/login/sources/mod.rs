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

pub mod github;
pub mod oidc;

use std::sync::Arc;

use anyhow::Context as _;

use crate::clock::Clock;
use crate::config::{Grant, Identity, LoginConfig};
use crate::login::browser::{Browser, BrowserChoice, BrowserError};
use crate::login::pipeline::CredentialSource;
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
}

impl Selected<'_> {
    /// The source, for [`crate::login::pipeline::Authenticator::source`].
    pub fn source(&self) -> &dyn CredentialSource {
        match self {
            Selected::Oidc(source) => source,
            Selected::Github(source) => source,
        }
    }
}

/// The source for `context.identity`: GitHub for `--provider github`, else OpenID Connect. Cheap
/// (no network, no runtime): the warm path selects one too.
pub fn select(context: Context<'_>) -> anyhow::Result<Selected<'_>> {
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
}
