//! The use case behind `get-token` and `login`: serve a cached token, else refresh, else log in
//! through the browser — with at most one refresh or login at a time across processes.
//!
//! The warm path ([`Authenticator::cached`]) reads the store and decodes the token's payload;
//! it builds no HTTP client, starts no async runtime and does no discovery. Only when the token
//! is missing or about to expire does [`Authenticator::obtain`] take the cross-process lock,
//! look again (another kubectl may have refreshed meanwhile), and talk to the IdP.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret as _;

use crate::browser::{Browser, BrowserChoice};
use crate::cache::{CacheError, CacheKind, CacheLock, TokenStore};
use crate::clock::Clock;
use crate::config::{CacheConfig, Identity, LoginConfig};
use crate::loopback::LoopbackServer;
use crate::oidc::{OidcError, Provider};
use crate::printer::Printer;
use crate::token::{IdTokenInfo, TokenSet};

/// A cached token with less than this left is refreshed before it is handed out; kubectl is told
/// the token expires this much earlier than it does (kubectl reuses it until then, with no margin
/// of its own).
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(90);

/// How a token was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Served from the cache.
    Cache,
    /// Renewed with the refresh token.
    Refresh,
    /// A fresh browser login.
    Login,
}

/// A usable token and what it says.
#[derive(Debug, Clone)]
pub struct Obtained {
    /// The tokens.
    pub tokens: TokenSet,
    /// The ID token's claims.
    pub info: IdTokenInfo,
    /// Where it came from.
    pub source: Source,
}

impl Obtained {
    /// The expiry to report to kubectl: [`EXPIRY_MARGIN`] before the token's `exp`, or halfway to
    /// it for a fresh token that lives shorter than the margin.
    pub fn report_expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        report_expiry(self.info.expiry, now)
    }
}

fn report_expiry(exp: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    let margin = chrono::Duration::from_std(EXPIRY_MARGIN).unwrap_or_default();
    if exp - margin > now {
        exp - margin
    } else {
        now + (exp - now) / 2
    }
}

/// The adapters the use case drives, wired in `main` (tests swap them).
pub struct Authenticator<'a> {
    /// Which identity.
    pub identity: &'a Identity,
    /// Where tokens live.
    pub cache: &'a CacheConfig,
    /// The store opened for `cache`.
    pub store: &'a dyn TokenStore,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Messages.
    pub printer: Printer,
}

impl Authenticator<'_> {
    /// The cached token when it has more than [`EXPIRY_MARGIN`] left. No network, no lock.
    pub fn cached(&self) -> Result<Option<Obtained>, CacheError> {
        let Some(entry) = self.load_entry()? else {
            return Ok(None);
        };
        if entry.info.expiry - self.clock.now() > margin() {
            self.printer.debug(format_args!(
                "using the cached token (expires {})",
                entry.info.expiry
            ));
            Ok(Some(entry))
        } else {
            self.printer
                .debug("the cached token expires within the safety margin");
            Ok(None)
        }
    }

    /// Reads the cache entry. A damaged entry is reported and counts as a miss (the next save
    /// replaces it); an entry or directory other users could read stops koidc.
    fn load_entry(&self) -> Result<Option<Obtained>, CacheError> {
        let key = self.identity.cache_key();
        let tokens = match self.store.load(&key) {
            Ok(Some(tokens)) => tokens,
            Ok(None) => {
                self.printer.debug("no cached token");
                return Ok(None);
            }
            Err(err) if err.is_corrupt() => {
                self.printer
                    .warn(format_args!("ignoring the cached token: {err}"));
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        match IdTokenInfo::decode_secret(&tokens.id_token) {
            Ok(info) if info.belongs_to(&self.identity.issuer, &self.identity.client_id) => {
                Ok(Some(Obtained {
                    tokens,
                    info,
                    source: Source::Cache,
                }))
            }
            Ok(_) => {
                self.printer
                    .warn("ignoring a cached token issued for another issuer or client");
                Ok(None)
            }
            Err(err) => {
                self.printer
                    .warn(format_args!("ignoring the cached token: {err}"));
                Ok(None)
            }
        }
    }

    /// A usable token: cached, refreshed, or from a browser login (`force_login` skips the first
    /// two).
    pub fn obtain(
        &self,
        login: &LoginConfig,
        browser: &dyn Browser,
        force_login: bool,
    ) -> anyhow::Result<Obtained> {
        if !force_login && let Some(hit) = self.cached()? {
            return Ok(hit);
        }
        // One refresh or login at a time per identity; the others wait and then reuse its result.
        let _lock = if self.cache.kind == CacheKind::None {
            None
        } else {
            let wait = login.timeout + Duration::from_secs(30);
            self.printer.debug("waiting for the cache lock");
            Some(CacheLock::acquire(
                &self.cache.dir,
                &self.identity.cache_key(),
                wait,
            )?)
        };
        let previous = self.load_entry()?;
        if !force_login
            && let Some(entry) = &previous
            && entry.info.expiry - self.clock.now() > margin()
        {
            self.printer
                .debug("another koidc process renewed the token meanwhile");
            return Ok(entry.clone());
        }
        let refresh_token = if force_login {
            None
        } else {
            previous.and_then(|p| p.tokens.refresh_token)
        };

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let oidc = login.oidc(self.identity);
        let obtained = runtime.block_on(async {
            self.printer
                .debug(format_args!("discovering {}", self.identity.issuer));
            let provider = Provider::discover(&oidc, self.clock.clone()).await?;
            if let Some(refresh_token) = refresh_token {
                self.printer.debug("refreshing the token");
                match provider.refresh(&refresh_token).await {
                    Ok(tokens) => return self.finish(tokens, Source::Refresh),
                    // The IdP refused the refresh token (expired, revoked, rotated away by a new
                    // login) or its answer cannot be used: a browser login can still succeed.
                    Err(
                        err @ (OidcError::RefreshRejected { .. }
                        | OidcError::RefreshWithoutIdToken
                        | OidcError::IdTokenRejected(_)),
                    ) => {
                        self.printer.info(format_args!(
                            "the refresh token was not accepted ({err}); logging in again"
                        ));
                    }
                    // Network trouble would fail a browser login too: report it.
                    Err(err) => return Err(anyhow::Error::new(err).context("cannot refresh the token")),
                }
            }
            let tokens = browser_login(&provider, login, browser, self.printer).await?;
            self.finish(tokens, Source::Login)
        })?;
        self.save(&obtained.tokens);
        Ok(obtained)
    }

    fn finish(&self, tokens: TokenSet, source: Source) -> anyhow::Result<Obtained> {
        let info = IdTokenInfo::decode(tokens.id_token.expose_secret())
            .context("the identity provider returned an unreadable ID token")?;
        Ok(Obtained { tokens, info, source })
    }

    fn save(&self, tokens: &TokenSet) {
        let key = self.identity.cache_key();
        if let Err(err) = self.store.save(&key, tokens) {
            self.printer.warn(format_args!(
                "could not cache the token ({err}); the next call will log in again"
            ));
            return;
        }
        if let Some(reason) = self.store.fallback_reason() {
            self.printer.warn(format_args!(
                "no usable keyring ({reason}); tokens are cached in files (mode 0600) under {}",
                self.cache.dir.display()
            ));
        }
    }
}

fn margin() -> chrono::Duration {
    chrono::Duration::from_std(EXPIRY_MARGIN).unwrap_or_default()
}

/// Authorization code + PKCE through the loopback server and the browser.
async fn browser_login(
    provider: &Provider,
    login: &LoginConfig,
    browser: &dyn Browser,
    printer: Printer,
) -> anyhow::Result<TokenSet> {
    let server = LoopbackServer::bind(&login.listen).await?;
    let request = provider.authorization_request(&server.redirect_uri())?;
    printer.debug(format_args!(
        "listening for the login callback on {}",
        server.redirect_uri()
    ));
    let wait = login.timeout.as_secs();
    if login.browser == BrowserChoice::None {
        printer.info(format_args!(
            "open this URL in a browser to log in (waiting up to {wait}s): {}",
            request.url
        ));
    } else {
        match browser.open(&request.url) {
            Ok(()) => printer.info(format_args!(
                "opened a browser to log in (waiting up to {wait}s); if none appeared, open: {}",
                request.url
            )),
            Err(err) => printer.info(format_args!(
                "could not open a browser ({err}); open this URL to log in (waiting up to {wait}s): {}",
                request.url
            )),
        }
    }
    let code = server
        .with_iss_required(request.iss_required)
        .wait_for_code_with_issuer(&request.state, Some(&request.issuer), login.timeout)
        .await?;
    printer.debug("received the authorization code; redeeming it");
    Ok(provider.exchange_code(request, code).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn reported_expiry_keeps_the_margin() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let exp = now + chrono::Duration::seconds(3600);
        assert_eq!(report_expiry(exp, now), exp - chrono::Duration::seconds(90));
    }

    #[test]
    fn short_lived_fresh_token_reports_halfway() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let exp = now + chrono::Duration::seconds(60);
        assert_eq!(report_expiry(exp, now), now + chrono::Duration::seconds(30));
    }
}
