//! The `get-token` / `login` use case for `--provider github`: serve the cached GitHub token,
//! else refresh it (GitHub App user tokens), else log in (web flow through the browser, or the
//! device flow) — with the same cross-process lock and login cool-down as OpenID Connect logins.
//!
//! A GitHub access token is opaque (not a JWT), so what koidc cannot read from it is stored in
//! the cache entry beside it ([`crate::cache::EntryMeta`]): the kind `github`, the expiry when
//! GitHub gave one, and the account (login, id, name, organisations, teams) read from the API at
//! login time, for `whoami`. The warm path ([`cached`]) reads only the cache: no network, no
//! runtime. A token without expiry (OAuth apps) is served until `logout` or until GitHub refuses
//! it; kubectl is told it expires in [`NON_EXPIRING_REPORT`], so long-running clients come back
//! to koidc now and then. After a login (not a refresh) koidc says which GitHub account logged
//! in, and warns when it is not the account cached before ([`crate::auth::announce_login`]).
//!
//! The token is handed to kubectl as the ExecCredential token ([`crate::token::TokenSet::id_token`]
//! holds it); the apiserver verifies it through `koidc webhook`.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::json;

use super::oauth::{Client, GithubTokens};
use super::{Account, Api, GithubError, GithubUrls, KIND, http_client};
use crate::auth::cooldown::Cooldown;
use crate::auth::{Authenticator, EXPIRY_MARGIN, LoginIdentity, Obtained, Source, headless};
use crate::browser::{Browser, BrowserChoice};
use crate::cache::{CacheError, CacheKey, CacheKind, CacheLock, EntryMeta};
use crate::clock::{relative, rfc3339};
use crate::config::{Grant, HTTP_TIMEOUT, LoginConfig};
use crate::loopback::LoopbackServer;
use crate::printer::Printer;
use crate::provider::ProviderKind;
use crate::token::{IdTokenInfo, TokenSet};

/// What kubectl is told about a token that does not expire: it expires this long from now.
pub const NON_EXPIRING_REPORT: Duration = Duration::from_secs(3600);

/// A GitHub cache entry.
struct Cached {
    tokens: TokenSet,
    meta: EntryMeta,
    account: Account,
}

impl Cached {
    /// Usable: no expiry, or more than [`EXPIRY_MARGIN`] left.
    fn fresh(&self, now: DateTime<Utc>) -> bool {
        self.meta.expires_at.is_none_or(|exp| exp - now > margin())
    }
}

fn margin() -> chrono::Duration {
    chrono::Duration::from_std(EXPIRY_MARGIN).unwrap_or_default()
}

/// The GitHub URLs of the identity, which `--provider github` always sets.
fn urls<'a>(auth: &'a Authenticator<'_>) -> anyhow::Result<&'a GithubUrls> {
    auth.identity
        .github
        .as_ref()
        .context("internal error: a GitHub identity without GitHub URLs; please report this")
}

/// The cached GitHub token when it is usable. No network, no lock, no runtime.
pub fn cached(auth: &Authenticator<'_>) -> Result<Option<Obtained>, CacheError> {
    let now = auth.clock.now();
    match load(auth)? {
        Some(entry) if entry.fresh(now) => {
            auth.printer.debug(format_args!(
                "using the cached GitHub token ({})",
                entry
                    .meta
                    .expires_at
                    .map_or_else(|| "no expiry".to_owned(), |e| format!("expires {e}"))
            ));
            Ok(Some(obtained(
                auth,
                entry.tokens,
                &entry.meta,
                &entry.account,
                Source::Cache,
                now,
            )))
        }
        Some(_) => {
            auth.printer
                .debug("the cached GitHub token expires within the safety margin");
            Ok(None)
        }
        None => Ok(None),
    }
}

/// Reads the entry; a damaged, foreign or non-GitHub entry is reported and counts as a miss.
fn load(auth: &Authenticator<'_>) -> Result<Option<Cached>, CacheError> {
    let key = auth.identity.cache_key();
    let (tokens, meta) = match auth.store.load_with_meta(&key) {
        Ok(Some(entry)) => entry,
        Ok(None) => {
            auth.printer.debug("no cached token");
            return Ok(None);
        }
        Err(err) if err.is_corrupt() => {
            auth.printer
                .warn(format_args!("ignoring the cached token: {err}"));
            return Ok(None);
        }
        Err(err) => return Err(err),
    };
    if meta.kind.as_deref() != Some(KIND) {
        auth.printer
            .warn("ignoring a cached token that was not issued by GitHub");
        return Ok(None);
    }
    match meta.info.clone().map(serde_json::from_value::<Account>) {
        Some(Ok(account)) => Ok(Some(Cached {
            tokens,
            meta,
            account,
        })),
        _ => {
            auth.printer
                .warn("ignoring a cached GitHub token without its account details");
            Ok(None)
        }
    }
}

/// A usable GitHub token: cached, refreshed, or from a login (`force_login` skips the first
/// two). Non-interactive kubectl calls obey the login cool-down like OpenID Connect logins.
pub fn obtain(
    auth: &Authenticator<'_>,
    login: &LoginConfig,
    browser: &dyn Browser,
    force_login: bool,
) -> anyhow::Result<Obtained> {
    let urls = urls(auth)?;
    if !force_login && let Some(hit) = cached(auth)? {
        return Ok(hit);
    }
    let key = auth.identity.cache_key();
    let _lock = if auth.cache.kind == CacheKind::None {
        None
    } else {
        auth.printer.debug("waiting for the cache lock");
        Some(CacheLock::acquire(
            &auth.cache.dir,
            &key,
            login.timeout + Duration::from_secs(30),
        )?)
    };
    let now = auth.clock.now();
    let previous = load(auth)?;
    if !force_login && let Some(entry) = previous.as_ref().filter(|e| e.fresh(now)) {
        auth.printer
            .debug("another koidc process renewed the token meanwhile");
        return Ok(obtained(
            auth,
            entry.tokens.clone(),
            &entry.meta,
            &entry.account,
            Source::Cache,
            now,
        ));
    }
    // Who was cached before (even expired), to warn when a login is for someone else.
    let before = previous.as_ref().map(|p| github_identity(&p.account));
    let refresh_token = if force_login {
        None
    } else {
        previous.and_then(|p| {
            let usable = p.meta.refresh_expires_at.is_none_or(|exp| exp > now);
            p.tokens.refresh_token.filter(|_| usable)
        })
    };

    let cooldown = Cooldown::new(&auth.cache.dir, &key.id());
    let non_interactive = login.kubectl_interactive == Some(false);
    let check_cooldown = || -> anyhow::Result<()> {
        match cooldown.check(auth.clock.now()) {
            Ok(()) => Ok(()),
            Err((cooling, reason)) => {
                auth.printer
                    .debug(format_args!("the last login failed: {reason}"));
                Err(cooling.into())
            }
        }
    };
    if non_interactive && refresh_token.is_none() {
        check_cooldown()?;
    }

    let runtime = crate::runtime()?;
    let http = http_client(HTTP_TIMEOUT, &login.certificate_authorities)?;
    let client = Client {
        urls,
        http: &http,
        timeout: HTTP_TIMEOUT,
        client_id: &auth.identity.client_id,
        client_secret: login.client_secret.as_ref(),
    };
    let api = Api::new(http.clone(), urls, HTTP_TIMEOUT);
    let result = runtime.block_on(async {
        if let Some(refresh_token) = &refresh_token {
            auth.printer.debug("refreshing the GitHub token");
            match client.refresh(refresh_token).await {
                Ok(mut tokens) => {
                    // GitHub rotates refresh tokens; keep the old one if none came back.
                    if tokens.refresh_token.is_none() {
                        tokens.refresh_token = Some(refresh_token.clone());
                    }
                    return finish(auth, &api, tokens, Source::Refresh).await;
                }
                Err(err @ (GithubError::RefreshRejected { .. } | GithubError::MissingClientSecret)) => {
                    auth.printer.info(format_args!(
                        "the refresh token was not usable ({err}); logging in again"
                    ));
                }
                Err(err) => return Err(anyhow::Error::new(err).context("cannot refresh the GitHub token")),
            }
            if non_interactive {
                check_cooldown()?;
            }
        }
        let outcome = async {
            let tokens = login_flow(auth, &client, login, browser).await?;
            finish(auth, &api, tokens, Source::Login).await
        }
        .await;
        if let Err(err) = &outcome {
            let reason = format!("{err:#}");
            if let Err(e) = cooldown.record(auth.clock.now(), &reason) {
                auth.printer.debug(format_args!(
                    "cannot write the cool-down marker {}: {e}",
                    cooldown.path().display()
                ));
            }
        }
        outcome
    });
    let (obtained, meta) = result?;
    cooldown.clear();
    if obtained.source == Source::Login
        && let Some(Ok(account)) = meta.info.clone().map(serde_json::from_value::<Account>)
    {
        crate::auth::announce_login(
            auth.printer,
            &auth.identity.issuer,
            &github_identity(&account),
            before.as_ref(),
        );
    }
    save(auth, &key, &obtained.tokens, &meta);
    Ok(obtained)
}

/// A GitHub account as a login identity: its numeric id (logins are recycled), shown as its
/// login name.
fn github_identity(account: &Account) -> LoginIdentity {
    LoginIdentity {
        subject: account.id.to_string(),
        shown: crate::http::one_line(&account.login, 100),
    }
}

/// Reads the account behind fresh tokens and builds the entry's metadata.
async fn finish(
    auth: &Authenticator<'_>,
    api: &Api,
    tokens: GithubTokens,
    source: Source,
) -> anyhow::Result<(Obtained, EntryMeta)> {
    let mut account = api
        .user(&tokens.access_token)
        .await
        .context("GitHub does not accept the token it just issued")?;
    let (orgs, teams) = tokio::join!(api.orgs(&tokens.access_token), api.teams(&tokens.access_token));
    match (orgs, teams) {
        (Ok(orgs), Ok(teams)) => {
            account.orgs = orgs;
            account.teams = teams;
        }
        (Err(err), _) | (_, Err(err)) => auth.printer.warn(format_args!(
            "cannot read your GitHub organisations and teams ({err}); the cluster will not see your groups"
        )),
    }
    let now = auth.clock.now();
    let after = |d: Duration| chrono::Duration::from_std(d).ok().map(|d| now + d);
    let meta = EntryMeta {
        kind: Some(KIND.to_owned()),
        expires_at: tokens.expires_in.and_then(after),
        refresh_expires_at: tokens.refresh_token_expires_in.and_then(after),
        info: serde_json::to_value(&account).ok(),
    };
    let set = TokenSet {
        id_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
    };
    Ok((obtained(auth, set, &meta, &account, source, now), meta))
}

/// Stores the tokens; a failure is a warning (the token is still handed out).
fn save(auth: &Authenticator<'_>, key: &CacheKey, tokens: &TokenSet, meta: &EntryMeta) {
    if let Err(err) = auth.store.save_with_meta(key, tokens, meta) {
        let forgotten = auth.store.delete(key).is_ok();
        auth.printer.warn(format_args!(
            "could not cache the token ({err}); the next call will log in again{}",
            if forgotten {
                ""
            } else {
                " (and could not delete the old cache entry)"
            }
        ));
        return;
    }
    if let Some(reason) = auth.store.fallback_reason() {
        auth.printer.warn(format_args!(
            "no usable keyring ({reason}); tokens are cached in files (mode 0600) under {}",
            auth.cache.dir.display()
        ));
    }
}

/// The [`Obtained`] for a GitHub token: an [`IdTokenInfo`] made from the account (GitHub's
/// token has no claims), whose expiry is the token's, or [`NON_EXPIRING_REPORT`] from `now`.
fn obtained(
    auth: &Authenticator<'_>,
    tokens: TokenSet,
    meta: &EntryMeta,
    account: &Account,
    source: Source,
    now: DateTime<Utc>,
) -> Obtained {
    let report = chrono::Duration::from_std(NON_EXPIRING_REPORT).unwrap_or_default();
    let expiry = meta.expires_at.unwrap_or(now + report);
    Obtained {
        tokens,
        info: account_info(&auth.identity.issuer, &auth.identity.client_id, account, expiry),
        source,
    }
}

/// Claims describing a GitHub account, in the shape of an ID token's (for `login` and `setup`).
pub fn account_info(issuer: &str, client_id: &str, account: &Account, expiry: DateTime<Utc>) -> IdTokenInfo {
    IdTokenInfo {
        issuer: issuer.to_owned(),
        audiences: vec![client_id.to_owned()],
        expiry,
        issued_at: None,
        claims: json!({
            "iss": issuer,
            "aud": client_id,
            "sub": account.id.to_string(),
            "preferred_username": account.login,
            "name": account.name,
            "groups": account.groups(&[]),
            "exp": expiry.timestamp(),
        }),
    }
}

/// Runs the web or the device flow: `--grant device-code`, or `auto` without a client secret
/// (the web flow needs one) or on a machine without a display, uses the device flow.
async fn login_flow(
    auth: &Authenticator<'_>,
    client: &Client<'_>,
    login: &LoginConfig,
    browser: &dyn Browser,
) -> anyhow::Result<GithubTokens> {
    if login.paste {
        return Err(GithubError::PasteUnsupported.into());
    }
    let device = match login.grant {
        Grant::DeviceCode => true,
        Grant::AuthCode => false,
        Grant::Auto => {
            login.client_secret.is_none()
                || crate::auth::choose_grant(Grant::Auto, false, &login.browser, headless(), true)
                    == Grant::DeviceCode
        }
    };
    if device {
        device_login(auth, client, login, browser).await
    } else {
        web_login(auth, client, login, browser).await
    }
}

async fn device_login(
    auth: &Authenticator<'_>,
    client: &Client<'_>,
    login: &LoginConfig,
    browser: &dyn Browser,
) -> anyhow::Result<GithubTokens> {
    let printer: Printer = auth.printer;
    printer.debug("requesting a GitHub device code");
    let device = client.start_device(&auth.identity.scopes).await?;
    printer.info(format_args!(
        "to log in, open {} and enter the code {} (waiting up to {}s)",
        device.verification_uri,
        device.user_code,
        login.timeout.as_secs()
    ));
    if login.browser.can_show(headless())
        && let Err(err) = browser.open(&device.verification_uri)
    {
        printer.debug(format_args!("could not open a browser: {err}"));
    }
    printer.debug(format_args!(
        "polling GitHub every {}s",
        device.interval.as_secs()
    ));
    Ok(client.wait_for_device(&device, login.timeout).await?)
}

async fn web_login(
    auth: &Authenticator<'_>,
    client: &Client<'_>,
    login: &LoginConfig,
    browser: &dyn Browser,
) -> anyhow::Result<GithubTokens> {
    let printer = auth.printer;
    // Before any browser: GitHub would show the login, then refuse the code without the secret.
    if login.client_secret.is_none() {
        return Err(GithubError::MissingClientSecret.into());
    }
    let server = LoopbackServer::bind(&login.listen_for(ProviderKind::Github)).await?;
    let request = client.web_login(&server.redirect_uri(), &auth.identity.scopes)?;
    printer.debug(format_args!(
        "listening for the GitHub callback on {}",
        server.redirect_uri()
    ));
    let wait = login.timeout.as_secs();
    if login.browser == BrowserChoice::None {
        printer.info(format_args!(
            "open this URL in a browser to log in to GitHub (waiting up to {wait}s): {}",
            request.url
        ));
    } else {
        match browser.open(&request.url) {
            Ok(()) => printer.info(format_args!(
                "opened a browser to log in to GitHub (waiting up to {wait}s); if none appeared, open: {}",
                request.url
            )),
            Err(err) => printer.info(format_args!(
                "could not open a browser ({err}); open this URL to log in to GitHub (waiting up to {wait}s): {}",
                request.url
            )),
        }
    }
    let state = request.state.clone();
    let code: SecretString = server.wait_for_code(&state, login.timeout).await?;
    printer.debug("received the authorization code; redeeming it");
    Ok(client.exchange_code(request, code).await?)
}

/// The account stored in a GitHub entry's metadata, when it is one.
pub fn account_of(meta: &EntryMeta) -> Option<Account> {
    if meta.kind.as_deref() != Some(KIND) {
        return None;
    }
    serde_json::from_value(meta.info.clone()?).ok()
}

/// Human-readable lines about a GitHub identity (for `login` and `whoami`).
pub fn describe(
    issuer: &str,
    account: &Account,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> String {
    let none = |list: &[String]| {
        if list.is_empty() {
            "(none)".to_owned()
        } else {
            list.join(", ")
        }
    };
    let mut lines = vec![
        format!("issuer:   {issuer} (GitHub)"),
        format!("login:    {} (id {})", account.login, account.id),
    ];
    if let Some(name) = &account.name {
        lines.push(format!("name:     {name}"));
    }
    lines.push(format!("orgs:     {}", none(&account.all_orgs())));
    lines.push(format!("teams:    {}", none(&account.teams)));
    lines.push(match expires_at {
        Some(exp) => format!("expires:  {} ({})", rfc3339(exp), relative(exp, now)),
        None => "expires:  never (an OAuth app token is valid until revoked)".to_owned(),
    });
    lines.join("\n")
}

/// The `whoami -o json` object of a GitHub identity.
pub fn to_json(
    key: &CacheKey,
    account: &Account,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> serde_json::Value {
    json!({
        "issuer": key.issuer,
        "provider": KIND,
        "clientId": key.client_id,
        "scopes": key.scopes,
        "subject": account.id.to_string(),
        "login": account.login,
        "name": account.name,
        "orgs": account.all_orgs(),
        "teams": account.teams,
        "groups": account.groups(&[]),
        "expiry": expires_at.map(rfc3339),
        "expired": expires_at.is_some_and(|e| e <= now),
    })
}

/// Logs out of a GitHub entry: revokes the token at GitHub when a client secret is given (the
/// API needs it), best effort. Returns what happened, for a debug line; the caller deletes the
/// entry whatever the outcome.
pub fn revoke(
    urls: &GithubUrls,
    client_id: &str,
    client_secret: Option<&SecretString>,
    token: &SecretString,
    extra_ca_files: &[std::path::PathBuf],
) -> anyhow::Result<Option<bool>> {
    if client_secret.is_none() {
        return Ok(None);
    }
    let runtime = crate::runtime()?;
    let http = http_client(HTTP_TIMEOUT, extra_ca_files)?;
    let client = Client {
        urls,
        http: &http,
        timeout: HTTP_TIMEOUT,
        client_id,
        client_secret,
    };
    Ok(Some(runtime.block_on(client.revoke(token))?))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone as _;
    use secrecy::ExposeSecret as _;

    use super::*;
    use crate::cache::{TokenStore, open_store};
    use crate::clock::Clock;
    use crate::config::{CacheConfig, Identity};

    struct FixedClock(DateTime<Utc>);
    impl Clock for FixedClock {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    fn identity() -> Identity {
        Identity {
            issuer: "https://github.com".into(),
            client_id: "cid".into(),
            scopes: vec!["read:org".into()],
            provider: ProviderKind::Github,
            github: Some(GithubUrls::new(None, None).unwrap()),
            profile: None,
        }
    }

    fn account() -> Account {
        Account {
            id: 42,
            login: "octocat".into(),
            name: Some("The Octocat".into()),
            orgs: vec!["acme".into()],
            teams: vec!["acme:sre".into()],
        }
    }

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("koidc-gh-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn with_entry(tag: &str, expires_at: Option<DateTime<Utc>>, check: impl FnOnce(&Authenticator<'_>)) {
        let dir = temp_dir(tag);
        let cache = CacheConfig {
            kind: CacheKind::File,
            dir: dir.clone(),
        };
        let store: Box<dyn TokenStore> = open_store(CacheKind::File, &dir).unwrap();
        let identity = identity();
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let meta = EntryMeta {
            kind: Some(KIND.into()),
            expires_at,
            refresh_expires_at: None,
            info: serde_json::to_value(account()).ok(),
        };
        let tokens = TokenSet {
            id_token: SecretString::from("gho_cached".to_owned()),
            refresh_token: None,
        };
        store
            .save_with_meta(&identity.cache_key(), &tokens, &meta)
            .unwrap();
        let auth = Authenticator {
            identity: &identity,
            cache: &cache,
            store: store.as_ref(),
            clock: Arc::new(FixedClock(now)),
            printer: Printer::new(0),
        };
        check(&auth);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_non_expiring_token_is_served_from_the_cache_and_reported_for_an_hour() {
        with_entry("noexp", None, |auth| {
            let hit = cached(auth).unwrap().expect("a cache hit");
            assert_eq!(hit.tokens.id_token.expose_secret(), "gho_cached");
            assert_eq!(hit.source, Source::Cache);
            let now = auth.clock.now();
            assert_eq!(hit.info.expiry, now + chrono::Duration::hours(1));
            assert_eq!(hit.info.str_claim("preferred_username"), Some("octocat"));
            assert_eq!(hit.info.groups(), ["acme", "acme:sre"]);
        });
    }

    #[test]
    fn an_expiring_token_is_served_only_with_more_than_the_margin_left() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        with_entry("fresh", Some(now + chrono::Duration::hours(8)), |auth| {
            let hit = cached(auth).unwrap().expect("a cache hit");
            assert_eq!(hit.info.expiry, now + chrono::Duration::hours(8));
        });
        with_entry("stale", Some(now + chrono::Duration::seconds(60)), |auth| {
            assert!(cached(auth).unwrap().is_none());
        });
    }

    #[test]
    fn describe_shows_login_teams_and_expiry() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let text = describe("https://github.com", &account(), None, now);
        assert!(text.contains("login:    octocat (id 42)"), "{text}");
        assert!(text.contains("teams:    acme:sre"), "{text}");
        assert!(text.contains("never"), "{text}");
        let text = describe(
            "https://github.com",
            &account(),
            Some(now + chrono::Duration::hours(2)),
            now,
        );
        assert!(text.contains("in 2h0m"), "{text}");
        let meta = EntryMeta {
            kind: Some(KIND.into()),
            info: serde_json::to_value(account()).ok(),
            ..EntryMeta::default()
        };
        assert_eq!(account_of(&meta), Some(account()));
        assert_eq!(account_of(&EntryMeta::default()), None);
    }
}
