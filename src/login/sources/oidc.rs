//! The OpenID Connect source: ID tokens from the authorization code grant (browser, or a code
//! pasted on stdin with `--paste`) or the device grant (RFC 8628), renewed with the refresh token.
//!
//! A login uses the grant [`choose_grant`] picks. Before a browser opens or a device code is
//! shown, the authorization request is checked with the provider once, so that a client id or
//! redirect URI it refuses fails at once with its reason (see [`crate::login::oidc::probe`]); a
//! browser that cannot be opened is said in one line, with the URL to open by hand.
//!
//! A cache entry is served while its ID token has not expired and names the configured issuer
//! and client. A refresh must answer for the cached identity (same `iss`, `sub`, `aud`; otherwise
//! a login follows), and a refresh token the provider rotated is kept even when the new ID token
//! cannot be verified yet ([`Renewal::Failed`] with the entry to keep).

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::{Context, LoginPage, Revocation, RevokeRequest, choose_grant, headless};
use crate::config::{Grant, Identity, LoginConfig};
use crate::login::browser::{Browser, BrowserChoice};
use crate::login::cache::EntryMeta;
use crate::login::loopback::LoopbackServer;
use crate::login::oidc::paste::MAX_PASTE_LEN;
use crate::login::oidc::probe::LoginKind;
use crate::login::oidc::request::{AuthParams, TokenType};
use crate::login::oidc::{AccessAudience, AuthRequest, OidcError, PasteError, Provider, max_age_deadline};
use crate::login::pipeline::{Connection, CredentialSource, Renewal, Source};
use crate::login::token::{CredentialEntry, IdTokenInfo, TokenSet};
use crate::printer::Printer;
use crate::provider::ProviderKind;

/// ID tokens from an OpenID Connect provider.
pub struct OidcSource<'a> {
    context: Context<'a>,
}

impl<'a> OidcSource<'a> {
    /// The source for `context.identity`.
    pub fn new(context: Context<'a>) -> Self {
        Self { context }
    }
}

/// The kind of a cache entry holding an access token (`--token-type access`).
const ACCESS_TOKEN_KIND: &str = "oidc-access-token";

impl OidcSource<'_> {
    /// With `--token-type access`, the audience its access token must be for.
    fn access_audience(&self) -> Option<AccessAudience<'_>> {
        let identity = self.context.identity;
        match &identity.token_type {
            TokenType::Id => None,
            TokenType::Access { audience: Some(a) } => Some(AccessAudience::Contains(a)),
            TokenType::Access { audience: None } => Some(AccessAudience::IssuedTo(&identity.client_id)),
        }
    }
}

impl CredentialSource for OidcSource<'_> {
    fn read(&self, tokens: TokenSet, meta: EntryMeta) -> Result<CredentialEntry, String> {
        // An entry another source wrote (its kind says so) is not a token of this kind,
        // whatever its token looks like.
        let access = self.access_audience();
        let want = access.map(|_| ACCESS_TOKEN_KIND);
        if meta.kind.as_deref() != want {
            return Err(format!(
                "ignoring a cached token of kind {:?}, not {} of this issuer",
                crate::text::one_line(meta.kind.as_deref().unwrap_or("id-token"), 40),
                if want.is_some() {
                    "an access token"
                } else {
                    "an ID token"
                }
            ));
        }
        let entry = CredentialEntry::from_id_token(tokens)
            .map_err(|err| format!("ignoring the cached token: {err}"))?;
        let identity = self.context.identity;
        let fits = |info: &crate::login::token::IdTokenInfo| match access {
            None => info.belongs_to(&identity.issuer, &identity.client_id),
            Some(audience) => {
                let audiences: Vec<&str> = info.audiences.iter().map(String::as_str).collect();
                info.issuer == identity.issuer && audience.accepts(&audiences, &info.claims)
            }
        };
        match entry.credential.id_token_info() {
            Some(info) if fits(info) => Ok(entry),
            _ => Err("ignoring a cached token issued for another issuer or client".to_owned()),
        }
    }

    fn write(&self, entry: &CredentialEntry) -> (TokenSet, EntryMeta) {
        let meta = EntryMeta {
            kind: self.access_audience().map(|_| ACCESS_TOKEN_KIND.to_owned()),
            ..EntryMeta::default()
        };
        (entry.token_set(), meta)
    }

    fn valid_until(&self, entry: &CredentialEntry, _now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let info = entry.credential.id_token_info()?;
        let fresh_until = login_fresh_until(&self.context.identity.auth_params, info)?;
        Some(info.expiry.min(fresh_until))
    }

    fn renewable(&self, entry: &CredentialEntry, now: DateTime<Utc>) -> bool {
        entry.refresh_token.is_some() && recent_enough(&self.context.identity.auth_params, entry, now)
    }

    fn connect(&self) -> anyhow::Result<Box<dyn Connection + '_>> {
        let context = &self.context;
        let runtime = crate::runtime()?;
        let oidc = context.login.oidc(context.identity);
        if let Some(warning) = context.identity.provider.issuer_warning(&context.identity.issuer) {
            context.printer.warn(warning);
        }
        if !context.login.pkce {
            context.printer.warn(
                "--pkce=false: the login is not protected by PKCE (an intercepted authorization code could be redeemed); use it only for an identity provider that refuses PKCE",
            );
        }
        context
            .printer
            .debug(format_args!("discovering {}", context.identity.issuer));
        let provider = runtime.block_on(Provider::discover(&oidc, context.clock.clone()))?;
        Ok(Box::new(OidcConnection {
            context,
            runtime,
            provider,
        }))
    }
}

/// With `--auth-param max_age=N`: until when a token from the login its `auth_time` names counts
/// as recent enough to be served or renewed (`None`: it has no `auth_time`, so never); without
/// `max_age`, for ever. A refresh keeps the original `auth_time` (OpenID Connect Core 12.2), so it
/// cannot stretch a login past `max_age`: a new login must.
fn login_fresh_until(params: &AuthParams, info: &IdTokenInfo) -> Option<DateTime<Utc>> {
    match params.max_age() {
        None => Some(DateTime::<Utc>::MAX_UTC),
        Some(max_age) => Some(max_age_deadline(info.auth_time()?, max_age)),
    }
}

/// Whether `entry` is an ID token still within `--auth-param max_age` of its login at `now`.
fn recent_enough(params: &AuthParams, entry: &CredentialEntry, now: DateTime<Utc>) -> bool {
    entry
        .credential
        .id_token_info()
        .and_then(|info| login_fresh_until(params, info))
        .is_some_and(|until| until > now)
}

/// A discovered provider.
struct OidcConnection<'s, 'a> {
    context: &'s Context<'a>,
    runtime: tokio::runtime::Runtime,
    provider: Provider,
}

impl Connection for OidcConnection<'_, '_> {
    fn renew(&mut self, entry: &CredentialEntry) -> Renewal {
        let printer = self.context.printer;
        let (Some(refresh_token), Some(info)) = (&entry.refresh_token, entry.credential.id_token_info())
        else {
            return Renewal::LogIn { forget: false };
        };
        printer.debug("refreshing the token");
        let refreshed = self.runtime.block_on(self.provider.refresh(refresh_token, info));
        match refreshed {
            Ok(tokens) => match CredentialEntry::from_id_token(tokens) {
                Ok(entry)
                    if !recent_enough(
                        &self.context.identity.auth_params,
                        &entry,
                        self.context.clock.now(),
                    ) =>
                {
                    printer.info("the login is older than --auth-param max_age allows; logging in again");
                    Renewal::LogIn { forget: false }
                }
                Ok(entry) => Renewal::Renewed {
                    entry,
                    source: Source::Refresh,
                },
                Err(err) => Renewal::Failed {
                    error: anyhow::Error::new(err)
                        .context("the identity provider returned an unreadable ID token"),
                    keep: None,
                },
            },
            // An answer for another identity is refused (OpenID Connect Core 12.2); a login
            // decides who this is.
            Err(err @ OidcError::RefreshIdentityChanged { .. }) => {
                printer.warn(format_args!("{err}; logging in again"));
                Renewal::LogIn { forget: false }
            }
            // The provider may have rotated the refresh token away: keep the new one (with the
            // last verified ID token, which is within the margin or expired, so never served)
            // for the next try, and report the failure.
            Err(OidcError::RefreshUnverified { cause, rotated }) => {
                let keep = rotated.map(|rotated| CredentialEntry {
                    credential: entry.credential.clone(),
                    refresh_token: Some(rotated),
                    refresh_expires_at: None,
                });
                let err = OidcError::RefreshUnverified { cause, rotated: None };
                Renewal::Failed {
                    error: anyhow::Error::new(err).context("cannot refresh the token"),
                    keep,
                }
            }
            // The IdP refused the refresh token (expired, revoked, rotated away by a new login)
            // or its answer cannot be used: a browser login can still succeed.
            Err(
                err @ (OidcError::RefreshRejected { .. }
                | OidcError::RefreshWithoutIdToken
                | OidcError::IdTokenRejected(_)),
            ) => {
                printer.info(format_args!(
                    "the refresh token was not accepted ({err}); logging in again"
                ));
                Renewal::LogIn { forget: false }
            }
            // Network trouble would fail a browser login too: report it.
            Err(err) => Renewal::Failed {
                error: anyhow::Error::new(err).context("cannot refresh the token"),
                keep: None,
            },
        }
    }

    fn login(&mut self) -> anyhow::Result<CredentialEntry> {
        let context = self.context;
        let tokens = self.runtime.block_on(login_flow(
            &self.provider,
            context.identity.provider,
            context.login,
            context.browser,
            context.printer,
        ))?;
        CredentialEntry::from_id_token(tokens)
            .context("the identity provider returned an unreadable ID token")
    }
}

/// Logs out of an OpenID Connect entry: revokes its refresh token at the issuer (RFC 7009), with
/// the client secret when the request carries the one configured for this client.
pub fn revoke_entry(
    refresh_token: Option<&SecretString>,
    request: RevokeRequest<'_>,
) -> anyhow::Result<Revocation> {
    let Some(refresh_token) = refresh_token else {
        return Ok(Revocation::Nothing);
    };
    let key = request.key;
    let identity = Identity {
        issuer: key.issuer.clone(),
        client_id: key.client_id.clone(),
        scopes: key.scopes.clone(),
        provider: ProviderKind::detect(&key.issuer),
        github: None,
        profile: key.profile.clone(),
        machine: None,
        audience: None,
        token_type: Default::default(),
        auth_params: Default::default(),
    };
    let mut oidc = request.login.oidc(&identity);
    oidc.client_secret = request.client_secret.cloned();
    let revoked = crate::runtime()?.block_on(async {
        let provider = Provider::discover(&oidc, request.clock).await?;
        provider.revoke(refresh_token).await
    })?;
    Ok(if revoked {
        Revocation::Revoked
    } else {
        Revocation::NoEndpoint
    })
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
        let request = provider.authorization_request(&login.redirect_uri(*addr))?;
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
    let server = LoopbackServer::bind_for(&login.listen_for(kind), login.redirect_host).await?;
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
    use std::sync::Arc;

    use base64::Engine as _;
    use chrono::TimeZone as _;

    use super::*;
    use crate::clock::Clock;
    use crate::login::token::Credential;

    const ISSUER: &str = "https://idp.example";

    struct FixedClock(DateTime<Utc>);
    impl Clock for FixedClock {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn identity(auth_params: &[&str]) -> Identity {
        let raw: Vec<String> = auth_params.iter().map(|s| (*s).to_owned()).collect();
        Identity {
            issuer: ISSUER.into(),
            client_id: "kubectl".into(),
            scopes: vec!["openid".into()],
            provider: ProviderKind::Generic,
            github: None,
            profile: None,
            machine: None,
            token_type: Default::default(),
            auth_params: AuthParams::parse(&raw).unwrap(),
            audience: None,
        }
    }

    /// An ID token entry expiring at `exp`, from a login at `auth_time` when given, with a
    /// refresh token.
    fn entry(exp: DateTime<Utc>, auth_time: Option<DateTime<Utc>>) -> CredentialEntry {
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims = serde_json::json!({
            "iss": ISSUER, "aud": "kubectl", "sub": "alice", "exp": exp.timestamp(),
        });
        if let Some(t) = auth_time {
            claims["auth_time"] = t.timestamp().into();
        }
        let jwt = format!(
            "{}.{}.sig",
            enc.encode(r#"{"alg":"RS256"}"#),
            enc.encode(claims.to_string())
        );
        CredentialEntry {
            credential: Credential::IdToken {
                info: IdTokenInfo::decode(&jwt).unwrap(),
                token: SecretString::from(jwt),
            },
            refresh_token: Some(SecretString::from("rt")),
            refresh_expires_at: None,
        }
    }

    /// Runs `check` with the OpenID Connect source of an identity with `auth_params`.
    fn with_source(auth_params: &[&str], check: impl FnOnce(&OidcSource<'_>)) {
        let identity = identity(auth_params);
        let login = super::super::test_support::login_config();
        let browser = BrowserChoice::None.into_browser();
        let clock: Arc<dyn Clock> = Arc::new(FixedClock(now()));
        let source = OidcSource::new(Context {
            identity: &identity,
            login: &login,
            browser: browser.as_ref(),
            clock,
            printer: Printer::new(0),
        });
        check(&source);
    }

    fn seconds(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    #[test]
    fn a_refresh_does_not_outlive_max_age() {
        with_source(&["max_age=300"], |source| {
            // A token whose login was 100000 s ago: neither served nor renewed (a login follows),
            // however long its own expiry.
            let old = entry(now() + seconds(3600), Some(now() - seconds(100_000)));
            assert!(!source.renewable(&old, now()));
            let until = source.valid_until(&old, now()).unwrap();
            assert!(until <= now(), "{until}");
            // A recent login: served until max_age (and the leeway) runs out, renewed until then.
            let recent = entry(now() + seconds(3600), Some(now() - seconds(60)));
            assert!(source.renewable(&recent, now()));
            assert_eq!(
                source.valid_until(&recent, now()),
                Some(now() - seconds(60) + seconds(300 + 120))
            );
            assert!(!source.renewable(&recent, now() + seconds(361)));
        });
        // Without max_age nothing changes.
        with_source(&[], |source| {
            let old = entry(now() + seconds(3600), Some(now() - seconds(100_000)));
            assert!(source.renewable(&old, now()));
            assert_eq!(source.valid_until(&old, now()), Some(now() + seconds(3600)));
        });
    }

    #[test]
    fn a_cached_token_without_a_recent_auth_time_is_not_served_under_max_age() {
        with_source(&["max_age=60"], |source| {
            // Cached by a login without max_age: no auth_time, so nothing says the login is
            // recent.
            let unknown = entry(now() + seconds(3600), None);
            assert_eq!(source.valid_until(&unknown, now()), None);
            assert!(!source.renewable(&unknown, now()));
        });
        with_source(&[], |source| {
            let unknown = entry(now() + seconds(3600), None);
            assert_eq!(source.valid_until(&unknown, now()), Some(now() + seconds(3600)));
        });
    }
}
