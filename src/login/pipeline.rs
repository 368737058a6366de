//! The use case behind `get-token` and `login`: serve a cached token, else refresh, else log in
//! — with at most one refresh or login at a time across processes.
//!
//! The warm path ([`Authenticator::cached`]) reads the store and decodes the token's payload;
//! it builds no HTTP client, starts no async runtime and does no discovery. Only when the token
//! is missing or about to expire does [`Authenticator::obtain`] take the cross-process lock,
//! look again (another kubectl may have refreshed meanwhile), and talk to the IdP.
//!
//! A login uses the authorization code grant through the browser (optionally with the code pasted
//! on stdin, `--paste`) or the device grant (RFC 8628); [`choose_grant`] picks one. After a
//! failed or abandoned login, non-interactive kubectl calls fail fast for [`COOLDOWN`](cooldown::COOLDOWN) instead of
//! opening browser tabs again (see [`cooldown`]). Before a browser opens or a device code is
//! shown, the authorization request is checked with the provider once, so that a client id or
//! redirect URI it refuses fails at once with its reason (see [`crate::login::oidc::probe`]); a browser
//! that cannot be opened is said in one line, with the URL to open by hand.
//!
//! A refresh must answer for the cached identity (same `iss`, `sub`, `aud`; otherwise a login
//! follows), and a refresh token the provider rotated is kept even when the new ID token cannot be
//! verified yet. After a login, koidc says on stderr who logged in, and warns when it is not the
//! identity cached before for the same key ([`announce_login`]).

pub mod cooldown;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret as _;

use secrecy::SecretString;

use crate::clock::Clock;
use crate::config::{CacheConfig, Grant, Identity, LoginConfig};
use crate::login::browser::{Browser, BrowserChoice, BrowserError};
use crate::login::cache::{CacheError, CacheKind, CacheLock, TokenStore};
use crate::login::loopback::LoopbackServer;
use crate::login::oidc::paste::MAX_PASTE_LEN;
use crate::login::oidc::probe::LoginKind;
use crate::login::oidc::{AuthRequest, OidcError, PasteError, Provider};
use crate::login::token::{IdTokenInfo, TokenSet};
use crate::printer::Printer;
use crate::provider::ProviderKind;

use self::cooldown::Cooldown;

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
    /// A fresh login (browser or device).
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
        if self.identity.provider == ProviderKind::Github {
            return crate::login::github::session::cached(self);
        }
        let Some(entry) = self.load_entry(true)? else {
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

    /// Reads the cache entry. A damaged entry counts as a miss (the next save replaces it) and is
    /// reported when `report` is set; an entry or directory other users could read stops koidc.
    fn load_entry(&self, report: bool) -> Result<Option<Obtained>, CacheError> {
        let key = self.identity.cache_key();
        let tokens = match self.store.load(&key) {
            Ok(Some(tokens)) => tokens,
            Ok(None) => {
                self.printer.debug("no cached token");
                return Ok(None);
            }
            Err(err) if err.is_corrupt() => {
                if report {
                    self.printer
                        .warn(format_args!("ignoring the cached token: {err}"));
                }
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
                if report {
                    self.printer
                        .warn("ignoring a cached token issued for another issuer or client");
                }
                Ok(None)
            }
            Err(err) => {
                if report {
                    self.printer
                        .warn(format_args!("ignoring the cached token: {err}"));
                }
                Ok(None)
            }
        }
    }

    /// A usable token: cached, refreshed, or from a login (`force_login` skips the first two).
    ///
    /// A non-interactive kubectl call (`login.kubectl_interactive == Some(false)`) that needs a
    /// login within [`COOLDOWN`](cooldown::COOLDOWN) of a failed one fails with [`CoolingDown`](cooldown::CoolingDown) instead.
    pub fn obtain(
        &self,
        login: &LoginConfig,
        browser: &dyn Browser,
        force_login: bool,
    ) -> anyhow::Result<Obtained> {
        if self.identity.provider == ProviderKind::Github {
            return crate::login::github::session::obtain(self, login, browser, force_login);
        }
        if !force_login && let Some(hit) = self.cached()? {
            return Ok(hit);
        }
        // One refresh or login at a time per identity; the others wait and then reuse its result.
        let _lock = if self.cache.kind == CacheKind::None {
            None
        } else {
            let wait = crate::login::cache::lock_budget(login.timeout);
            self.printer.debug("waiting for the cache lock");
            Some(CacheLock::acquire(
                &self.cache.dir,
                &self.identity.cache_key(),
                wait,
            )?)
        };
        // Read again under the lock; a damaged entry was already reported by `cached` unless
        // that was skipped.
        let previous = self.load_entry(force_login)?;
        if !force_login
            && let Some(entry) = &previous
            && entry.info.expiry - self.clock.now() > margin()
        {
            self.printer
                .debug("another koidc process renewed the token meanwhile");
            return Ok(entry.clone());
        }
        // The refresh token, with the cached entry whose identity the refresh must keep.
        let refresh_from = if force_login {
            None
        } else {
            previous
                .as_ref()
                .and_then(|p| p.tokens.refresh_token.clone().map(|rt| (rt, p)))
        };

        let cooldown = Cooldown::new(&self.cache.dir, &self.identity.cache_key().id());
        let non_interactive = login.kubectl_interactive == Some(false);
        if non_interactive && refresh_from.is_none() {
            // Only a login can help: decide before any network traffic.
            self.check_cooldown(&cooldown)?;
        }

        let runtime = crate::runtime()?;
        let oidc = login.oidc(self.identity);
        if let Some(warning) = self.identity.provider.issuer_warning(&self.identity.issuer) {
            self.printer.warn(warning);
        }
        let obtained = runtime.block_on(async {
            self.printer
                .debug(format_args!("discovering {}", self.identity.issuer));
            let provider = Provider::discover(&oidc, self.clock.clone()).await?;
            if let Some((refresh_token, cached)) = &refresh_from {
                self.printer.debug("refreshing the token");
                match provider.refresh(refresh_token, &cached.info).await {
                    Ok(tokens) => return self.finish(tokens, Source::Refresh),
                    // An answer for another identity is refused (OpenID Connect Core 12.2); a
                    // login decides who this is.
                    Err(err @ OidcError::RefreshIdentityChanged { .. }) => {
                        self.printer.warn(format_args!("{err}; logging in again"));
                    }
                    // The provider may have rotated the refresh token away: keep the new one
                    // (with the last verified ID token, which is within the margin or expired,
                    // so never served) for the next try, and report the failure.
                    Err(OidcError::RefreshUnverified { cause, rotated }) => {
                        if let Some(rotated) = rotated {
                            self.printer
                                .debug("keeping the renewed refresh token for the next try");
                            self.save(&TokenSet {
                                id_token: cached.tokens.id_token.clone(),
                                refresh_token: Some(rotated),
                            });
                        }
                        let err = OidcError::RefreshUnverified { cause, rotated: None };
                        return Err(anyhow::Error::new(err).context("cannot refresh the token"));
                    }
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
                if non_interactive {
                    self.check_cooldown(&cooldown)?;
                }
            }
            match login_flow(&provider, self.identity.provider, login, browser, self.printer).await {
                Ok(tokens) => self.finish(tokens, Source::Login),
                Err(err) => {
                    let reason = format!("{err:#}");
                    if let Err(e) = cooldown.record(self.clock.now(), &reason) {
                        self.printer.debug(format_args!(
                            "cannot write the cool-down marker {}: {e}",
                            cooldown.path().display()
                        ));
                    }
                    Err(err)
                }
            }
        });
        // Okta (and any provider koidc has presets for) gets messages naming its own settings.
        let obtained = obtained.map_err(|err| {
            crate::provider::explain(self.identity.provider, err, None, login.client_secret.is_some())
        })?;
        cooldown.clear();
        if obtained.source == Source::Login {
            let before = previous.as_ref().map(|p| oidc_identity(&p.info));
            announce_login(
                self.printer,
                &self.identity.issuer,
                &oidc_identity(&obtained.info),
                before.as_ref(),
            );
        }
        self.save(&obtained.tokens);
        Ok(obtained)
    }

    /// Fails with [`CoolingDown`](cooldown::CoolingDown) while a failed login is on record.
    fn check_cooldown(&self, cooldown: &Cooldown) -> anyhow::Result<()> {
        match cooldown.check(self.clock.now()) {
            Ok(()) => Ok(()),
            Err((cooling, reason)) => {
                self.printer
                    .debug(format_args!("the last login failed: {reason}"));
                Err(cooling.into())
            }
        }
    }

    fn finish(&self, tokens: TokenSet, source: Source) -> anyhow::Result<Obtained> {
        let info = IdTokenInfo::decode(tokens.id_token.expose_secret())
            .context("the identity provider returned an unreadable ID token")?;
        Ok(Obtained { tokens, info, source })
    }

    fn save(&self, tokens: &TokenSet) {
        let key = self.identity.cache_key();
        if let Err(err) = self.store.save(&key, tokens) {
            // The entry still holds the previous refresh token, which the IdP may just have
            // rotated away: using it again would look like token theft (Okta then revokes the
            // whole token family). Forget it so that the next call logs in instead.
            let forgotten = self.store.delete(&key).is_ok();
            self.printer.warn(format_args!(
                "could not cache the token ({err}); the next call will log in again{}",
                if forgotten {
                    ""
                } else {
                    " (and could not delete the old cache entry)"
                }
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

/// Who a login was for: the stable subject to compare, and how to name it to a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoginIdentity {
    /// The stable identifier (`sub`, GitHub's numeric user id).
    pub subject: String,
    /// What to show (the email, the GitHub login, else the subject), on one line.
    pub shown: String,
}

/// The identity of an ID token: its `sub`, shown as its email when it has one.
fn oidc_identity(info: &IdTokenInfo) -> LoginIdentity {
    let subject = info.str_claim("sub").unwrap_or_default().to_owned();
    let shown = match info.str_claim("email").filter(|e| !e.is_empty()) {
        Some(email) => crate::http::one_line(email, 200),
        None => format!("subject {:?}", crate::http::one_line(&subject, 200)),
    };
    LoginIdentity { subject, shown }
}

/// After a browser or device login (never a refresh or a cache hit): says on stderr who logged
/// in, and warns when that is not the identity cached before for the same issuer and client
/// (`before`, even an expired entry). On a shared host another local user can see the
/// authorization URL in the browser's command line and reach the loopback port, and so complete
/// a login started here with their own account: the person at the terminal must be told.
pub(crate) fn announce_login(
    printer: Printer,
    issuer: &str,
    now: &LoginIdentity,
    before: Option<&LoginIdentity>,
) {
    printer.info(format_args!("logged in as {} at {issuer}", now.shown));
    if let Some(before) = before
        && before.subject != now.subject
    {
        let full = |id: &LoginIdentity| {
            if id.shown.starts_with("subject ") {
                id.shown.clone()
            } else {
                format!(
                    "{} (subject {:?})",
                    id.shown,
                    crate::http::one_line(&id.subject, 200)
                )
            }
        };
        printer.warn(format_args!(
            "this login is for {}, but the cached identity for this issuer and client was {}; if you did not log in as {} yourself, run `koidc logout` (on a shared host another local user can complete a login started here)",
            full(now),
            full(before),
            now.shown
        ));
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
pub(crate) fn headless() -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    cfg!(target_os = "linux") && !set("DISPLAY") && !set("WAYLAND_DISPLAY")
}

/// Runs the login with the grant [`choose_grant`] picks.
async fn login_flow(
    provider: &Provider,
    kind: ProviderKind,
    login: &LoginConfig,
    browser: &dyn Browser,
    printer: Printer,
) -> anyhow::Result<TokenSet> {
    let headless = headless();
    let grant = choose_grant(
        login.grant,
        login.paste,
        &login.browser,
        headless,
        provider.supports_device_flow(),
    );
    match grant {
        Grant::DeviceCode => {
            if login.grant == Grant::Auto {
                printer.info(
                    "no display to open a browser on; logging in with a code instead \
                     (--grant authcode keeps the browser flow)",
                );
            }
            device_login(provider, kind, login, browser, headless, false, printer).await
        }
        Grant::AuthCode | Grant::Auto => {
            match browser_login(provider, kind, login, browser, printer).await? {
                BrowserLogin::Done(tokens) => Ok(tokens),
                BrowserLogin::NoBrowser => {
                    printer.info("logging in with a code instead (--grant authcode keeps the browser flow)");
                    device_login(provider, kind, login, browser, true, true, printer).await
                }
            }
        }
    }
}

/// Checks the login request with the identity provider before a browser opens or a device code
/// is shown, so that a client or redirect URI it refuses fails at once with its reason instead of
/// after the login timeout.
async fn preflight(
    provider: &Provider,
    request: &AuthRequest,
    what: LoginKind,
    printer: Printer,
) -> Result<(), OidcError> {
    printer.debug("checking the login request with the identity provider");
    provider.preflight_authorization(request, what).await
}

/// The device authorization grant: show the code, optionally open the page, poll.
/// `client_checked`: a browser login's preflight already found the client known.
async fn device_login(
    provider: &Provider,
    kind: ProviderKind,
    login: &LoginConfig,
    browser: &dyn Browser,
    headless: bool,
    client_checked: bool,
    printer: Printer,
) -> anyhow::Result<TokenSet> {
    // Some providers (Dex) hand out a code to any client id and refuse an unknown one only once
    // the user has entered it: ask the authorization endpoint about the client first. Only the
    // client matters here, so the redirect URI is the one a browser login would use.
    if !client_checked && let Some(addr) = login.listen_for(kind).first() {
        let request = provider.authorization_request(&crate::login::loopback::redirect_uri_for(*addr))?;
        preflight(provider, &request, LoginKind::Device, printer).await?;
    }
    printer.debug("requesting a device code");
    let auth = provider.start_device_authorization().await?;
    let wait = login.timeout.as_secs();
    printer.info(format_args!(
        "to log in, open {} and enter the code {} (waiting up to {wait}s)",
        auth.verification_uri, auth.user_code
    ));
    if let Some(complete) = &auth.verification_uri_complete {
        printer.info(format_args!("or open {complete}"));
        if login.browser.can_show(headless)
            && let Err(err) = browser.open(complete)
        {
            printer.debug(format_args!("could not open a browser: {err}"));
        }
    }
    printer.debug(format_args!(
        "polling the token endpoint every {}s",
        auth.interval.as_secs()
    ));
    Ok(provider.wait_for_device_token(&auth, login.timeout).await?)
}

/// The page a browser login starts at, and how it is shown to the person at the terminal.
pub(crate) struct LoginPage<'a> {
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

/// How a browser login ended, short of an error.
enum BrowserLogin {
    /// The tokens.
    Done(TokenSet),
    /// The system browser could not be opened and the device grant can stand in: `--grant auto`,
    /// no `--paste`, and the provider advertises a device endpoint.
    NoBrowser,
}

/// Authorization code + PKCE through the loopback server and the browser; with `--paste`, the
/// code may also come from stdin.
async fn browser_login(
    provider: &Provider,
    kind: ProviderKind,
    login: &LoginConfig,
    browser: &dyn Browser,
    printer: Printer,
) -> anyhow::Result<BrowserLogin> {
    let server = LoopbackServer::bind(&login.listen_for(kind)).await?;
    let request = provider.authorization_request(&server.redirect_uri())?;
    printer.debug(format_args!(
        "listening for the login callback on {}",
        server.redirect_uri()
    ));
    // Fail fast, before a browser shows an error page koidc never sees (an unknown client, an
    // unregistered redirect URI) and koidc waits for its timeout.
    preflight(provider, &request, LoginKind::Browser, printer).await?;
    let page = LoginPage {
        url: &request.url,
        wait: login.timeout.as_secs(),
        place: "",
    };
    if page.open(printer, &login.browser, browser).is_err() {
        let device_instead = login.grant == Grant::Auto
            && !login.paste
            && login.browser == BrowserChoice::System
            && provider.supports_device_flow();
        if device_instead {
            return Ok(BrowserLogin::NoBrowser);
        }
        page.print(printer);
    }
    let paste = login.paste
        && if login.kubectl_interactive == Some(false) {
            printer.warn(
                "--paste: kubectl runs koidc non-interactively, so stdin is not connected; \
                 waiting for the browser's redirect only",
            );
            false
        } else {
            true
        };
    let callback = server
        .with_iss_required(request.iss_required)
        .wait_for_code_with_issuer(&request.state, Some(&request.issuer), login.timeout);
    let code = if paste {
        printer.info(
            "if the browser cannot reach this machine, paste the address it was sent to after \
             logging in (or the code it shows) here and press Enter",
        );
        tokio::select! {
            code = callback => code?,
            code = read_pasted_code(&request, printer) => code?,
        }
    } else {
        callback.await?
    };
    printer.debug("received the authorization code; redeeming it");
    Ok(BrowserLogin::Done(provider.exchange_code(request, code).await?))
}

/// The code from the first usable line on stdin; a line that is not usable is reported and the
/// user may paste again. When stdin ends first, waits forever (the loopback callback or the
/// timeout ends the login).
async fn read_pasted_code(request: &AuthRequest, printer: Printer) -> Result<SecretString, PasteError> {
    let mut lines = stdin_lines();
    while let Some(line) = lines.recv().await {
        if line.trim().is_empty() {
            continue;
        }
        match request.code_from_pasted(&line) {
            Ok(code) => return Ok(code),
            Err(err) if err.is_final() => return Err(err),
            Err(err) => printer.warn(err),
        }
    }
    printer.debug("stdin closed; waiting for the login callback only");
    std::future::pending().await
}

/// Lines of stdin, read by a helper thread (blocking reads cannot be cancelled; the thread ends
/// with the process). Each line is capped at [`MAX_PASTE_LEN`] + 1 bytes.
fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    use std::io::{BufRead as _, Read as _};
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let spawned = std::thread::Builder::new()
        .name("koidc-paste".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            loop {
                let mut buf = Vec::new();
                match (&mut stdin)
                    .take(MAX_PASTE_LEN as u64 + 1)
                    .read_until(b'\n', &mut buf)
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if tx
                    .blocking_send(String::from_utf8_lossy(&buf).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        });
    // Without a thread the channel is closed at once: only the callback can finish the login.
    drop(spawned);
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

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
