//! The `get-token` / `login` use case for `--provider github`: serve the cached GitHub token,
//! else refresh it (GitHub App user tokens), else log in (web flow through the browser, or the
//! device flow) — with the same cross-process lock and login cool-down as OpenID Connect logins.
//!
//! A GitHub access token is opaque (not a JWT), so what koidc cannot read from it is stored in
//! the cache entry beside it ([`crate::login::cache::EntryMeta`]): the kind `github`, the expiry when
//! GitHub gave one, and the account (login, id, name, organisations, teams) read from the API at
//! login time, for `whoami`. The warm path ([`cached`]) reads only the cache: no network, no
//! runtime.
//!
//! GitHub can revoke a token at any time (the user revokes the app, an admin removes it), and a
//! token without expiry (OAuth apps) would otherwise be served forever. So the entry records when
//! GitHub last confirmed the token (`checked_at`, set at login and refresh), and a token is served
//! from the cache only within [`REVALIDATE_AFTER`] of that; kubectl is told it expires then, so
//! long-running clients come back in time. After that [`obtain`] asks GitHub (`GET /user`) under
//! the cache lock: 200 renews the check, 401 drops the entry and a login follows. When GitHub
//! cannot be reached (or answers anything else), koidc cannot tell: within [`UNREACHABLE_GRACE`]
//! of the last successful check it serves the token with a warning (the cluster's webhook asks
//! GitHub about every token anyway, so a revoked one still gets nowhere), and reports it for
//! [`UNCHECKED_REPORT`] only, so kubectl comes back soon to try again; after that it fails rather
//! than hand out a token nobody could vouch for for a day. An entry without `checked_at` (written
//! before it existed) or with one in the future (a clock set back, an edited file) is checked at
//! once, and gets no grace.
//! After a login (not a refresh) koidc says which GitHub account logged in, and warns when
//! it is not the account cached before ([`crate::login::pipeline::announce_login`]).
//!
//! The token is handed to kubectl as the ExecCredential token ([`crate::login::token::TokenSet::id_token`]
//! holds it); the apiserver verifies it through `koidc webhook`.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::json;

use super::oauth::{Client, GithubTokens};
use super::{Account, Api, GithubError, GithubUrls, KIND, http_client};
use crate::clock::{relative, rfc3339};
use crate::config::{Grant, HTTP_TIMEOUT, LoginConfig};
use crate::login::browser::Browser;
use crate::login::cache::{CacheError, CacheKey, CacheKind, CacheLock, EntryMeta};
use crate::login::loopback::LoopbackServer;
use crate::login::pipeline::cooldown::Cooldown;
use crate::login::pipeline::{Authenticator, EXPIRY_MARGIN, LoginIdentity, Obtained, Source, headless};
use crate::login::token::{IdTokenInfo, TokenSet};
use crate::printer::Printer;
use crate::provider::ProviderKind;

/// A cached GitHub token is served for this long after GitHub last confirmed it; kubectl is told
/// it expires then at the latest (a token that does not expire: this long after a login).
pub const REVALIDATE_AFTER: Duration = Duration::from_secs(3600);

/// When GitHub cannot be reached to check a cached token, it is still served (with a warning)
/// until this long after its last successful check.
pub const UNREACHABLE_GRACE: Duration = Duration::from_secs(24 * 3600);

/// How long the hourly check waits for GitHub (shorter than other requests: when GitHub is out
/// of reach, every kubectl call tries the check again).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// What kubectl is told about a token served unchecked (GitHub unreachable): it expires this long
/// from now, so the check is tried again soon.
pub const UNCHECKED_REPORT: Duration = Duration::from_secs(300);

/// A GitHub cache entry.
struct Cached {
    tokens: TokenSet,
    meta: EntryMeta,
    account: Account,
}

impl Cached {
    /// Not expired: no expiry, or more than [`EXPIRY_MARGIN`] left.
    fn fresh(&self, now: DateTime<Utc>) -> bool {
        self.meta.expires_at.is_none_or(|exp| exp - now > margin())
    }

    /// The last check by GitHub, when there is one and it is not in the future.
    fn last_check(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.meta.checked_at.filter(|t| *t <= now)
    }

    /// Servable from the cache without asking GitHub: fresh, and more than [`EXPIRY_MARGIN`]
    /// left before the check is due.
    fn usable(&self, now: DateTime<Utc>) -> bool {
        self.fresh(now) && self.report_until(now).is_some_and(|until| until - now > margin())
    }

    /// Until when the token may be used without asking GitHub: the earlier of its expiry and
    /// [`REVALIDATE_AFTER`] after the last check (`None` when never checked).
    fn report_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let checked = self.last_check(now)? + span(REVALIDATE_AFTER);
        Some(self.meta.expires_at.map_or(checked, |exp| exp.min(checked)))
    }
}

fn margin() -> chrono::Duration {
    span(EXPIRY_MARGIN)
}

fn span(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_default()
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
        Some(entry) if entry.usable(now) => {
            auth.printer.debug(format_args!(
                "using the cached GitHub token ({})",
                entry
                    .meta
                    .expires_at
                    .map_or_else(|| "no expiry".to_owned(), |e| format!("expires {e}"))
            ));
            Ok(Some(served(auth, entry, now)))
        }
        Some(entry) if entry.fresh(now) => {
            auth.printer
                .debug("the cached GitHub token is due for its hourly check with GitHub");
            Ok(None)
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
            crate::login::cache::lock_budget(login.timeout),
        )?)
    };
    let now = auth.clock.now();
    let mut previous = load(auth)?;
    if !force_login && let Some(entry) = previous.take_if(|e| e.usable(now)) {
        auth.printer
            .debug("another koidc process renewed the token meanwhile");
        return Ok(served(auth, entry, now));
    }

    let runtime = crate::runtime()?;
    let http = http_client(
        HTTP_TIMEOUT,
        &login.certificate_authorities,
        login.certificate_authority_data.as_deref(),
    )?;
    let api = Api::new(http.clone(), urls, HTTP_TIMEOUT);
    if !force_login && let Some(entry) = previous.take_if(|e| e.fresh(now)) {
        match revalidate(auth, &runtime, &api, urls, &key, entry, now)? {
            Some(hit) => return Ok(hit),
            // GitHub refused it: the entry is gone, a login follows.
            None => previous = None,
        }
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

    let client = Client {
        urls,
        http: &http,
        timeout: HTTP_TIMEOUT,
        client_id: &auth.identity.client_id,
        client_secret: login.client_secret.as_ref(),
    };
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
        crate::login::pipeline::announce_login(
            auth.printer,
            &auth.identity.issuer,
            &github_identity(&account),
            before.as_ref(),
        );
    }
    save(auth, &key, &obtained.tokens, &meta);
    Ok(obtained)
}

/// The hourly check of a cached token that has not expired: `GET /user` with it. GitHub accepts
/// it: the check time is renewed and the token served. GitHub refuses it (401): the entry is
/// deleted and `None` returned (a login follows). GitHub unreachable or answering otherwise: the
/// token is served with a warning within [`UNREACHABLE_GRACE`] of its last check, else an error.
fn revalidate(
    auth: &Authenticator<'_>,
    runtime: &tokio::runtime::Runtime,
    api: &Api,
    urls: &GithubUrls,
    key: &CacheKey,
    mut entry: Cached,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<Obtained>> {
    auth.printer
        .debug("checking the cached GitHub token with GitHub (GET /user)");
    let answer = runtime
        .block_on(async { tokio::time::timeout(CHECK_TIMEOUT, api.user(&entry.tokens.id_token)).await })
        .unwrap_or_else(|_| {
            Err(GithubError::Timeout {
                url: format!("{}/user", urls.api),
                timeout: CHECK_TIMEOUT,
            })
        });
    match answer {
        Ok(_) => {
            entry.meta.checked_at = Some(now);
            save(auth, key, &entry.tokens, &entry.meta);
            Ok(Some(served(auth, entry, now)))
        }
        Err(GithubError::BadCredentials { .. }) => {
            auth.printer.info(
                "GitHub no longer accepts the cached token (revoked, or the app's access removed); logging in again",
            );
            if let Err(err) = auth.store.delete(key) {
                auth.printer
                    .warn(format_args!("could not delete the revoked token's cache entry: {err}"));
            }
            Ok(None)
        }
        Err(err) => match entry.last_check(now) {
            Some(last) if now - last < span(UNREACHABLE_GRACE) => {
                auth.printer.warn(format_args!(
                    "cannot check the cached GitHub token with GitHub ({err}); using it anyway (last \
                     confirmed {} ago; koidc stops using it {}h after that)",
                    ago(last, now),
                    UNREACHABLE_GRACE.as_secs() / 3600
                ));
                let until = now + span(UNCHECKED_REPORT);
                let expiry = entry.meta.expires_at.map_or(until, |exp| exp.min(until));
                Ok(Some(obtained(
                    auth,
                    entry.tokens,
                    &entry.account,
                    Source::Cache,
                    expiry,
                )))
            }
            _ => Err(anyhow::Error::new(err).context(format!(
                "cannot check the cached GitHub token with GitHub, and it was last confirmed more than {}h ago \
                 (or never); try again when GitHub is reachable, or run `koidc logout`",
                UNREACHABLE_GRACE.as_secs() / 3600
            ))),
        },
    }
}

/// How long ago `t` was, e.g. "2h5m".
fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    relative(t, now)
        .trim_start_matches("expired ")
        .trim_end_matches(" ago")
        .to_owned()
}

/// A cached token handed out until its expiry or its next check.
fn served(auth: &Authenticator<'_>, entry: Cached, now: DateTime<Utc>) -> Obtained {
    let until = entry.report_until(now).unwrap_or(now + span(REVALIDATE_AFTER));
    obtained(auth, entry.tokens, &entry.account, Source::Cache, until)
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
        // GitHub just accepted the token (`GET /user` above).
        checked_at: Some(now),
    };
    let set = TokenSet {
        id_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
    };
    let checked = now + span(REVALIDATE_AFTER);
    let expiry = meta.expires_at.map_or(checked, |exp| exp.min(checked));
    Ok((obtained(auth, set, &account, source, expiry), meta))
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
/// token has no claims) with `expiry` (what kubectl is told, before the margin).
fn obtained(
    auth: &Authenticator<'_>,
    tokens: TokenSet,
    account: &Account,
    source: Source,
    expiry: DateTime<Utc>,
) -> Obtained {
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
                || crate::login::pipeline::choose_grant(Grant::Auto, false, &login.browser, headless(), true)
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
    let page = crate::login::pipeline::LoginPage {
        url: &request.url,
        wait: login.timeout.as_secs(),
        place: " to GitHub",
    };
    if page.open(printer, &login.browser, browser).is_err() {
        page.print(printer);
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
    ca_data: Option<&str>,
) -> anyhow::Result<Option<bool>> {
    if client_secret.is_none() {
        return Ok(None);
    }
    let runtime = crate::runtime()?;
    let http = http_client(HTTP_TIMEOUT, extra_ca_files, ca_data)?;
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
    use crate::clock::Clock;
    use crate::config::{CacheConfig, Identity};
    use crate::login::cache::{TokenStore, open_store};

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
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        with_checked_entry(tag, expires_at, Some(now - chrono::Duration::minutes(10)), check);
    }

    fn with_checked_entry(
        tag: &str,
        expires_at: Option<DateTime<Utc>>,
        checked_at: Option<DateTime<Utc>>,
        check: impl FnOnce(&Authenticator<'_>),
    ) {
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
            checked_at,
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
    fn a_non_expiring_token_is_served_from_the_cache_until_its_check_is_due() {
        with_entry("noexp", None, |auth| {
            let hit = cached(auth).unwrap().expect("a cache hit");
            assert_eq!(hit.tokens.id_token.expose_secret(), "gho_cached");
            assert_eq!(hit.source, Source::Cache);
            let now = auth.clock.now();
            // Checked ten minutes ago: kubectl is told it expires when the next check is due.
            assert_eq!(hit.info.expiry, now + chrono::Duration::minutes(50));
            assert_eq!(hit.info.str_claim("preferred_username"), Some("octocat"));
            assert_eq!(hit.info.groups(), ["acme", "acme:sre"]);
        });
    }

    #[test]
    fn a_github_token_not_checked_within_the_hour_is_not_served_from_the_cache() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let minutes = chrono::Duration::minutes;
        // (expiry, last check, served from the cache)
        let cases = [
            (None, Some(now - minutes(30)), true),
            (None, Some(now - minutes(59)), false), // within the margin of the check
            (None, Some(now - minutes(61)), false),
            (None, None, false),                   // an entry from before the check existed
            (None, Some(now + minutes(5)), false), // a check time in the future
            (Some(now + minutes(480)), Some(now - minutes(61)), false),
            (Some(now + minutes(480)), Some(now - minutes(1)), true),
        ];
        for (i, (expires_at, checked_at, served)) in cases.into_iter().enumerate() {
            with_checked_entry(&format!("check-{i}"), expires_at, checked_at, |auth| {
                let hit = cached(auth).unwrap();
                assert_eq!(hit.is_some(), served, "{expires_at:?} {checked_at:?}");
                if let Some(hit) = hit {
                    assert_eq!(hit.info.expiry, checked_at.unwrap() + chrono::Duration::hours(1));
                }
            });
        }
    }

    #[test]
    fn an_expiring_token_is_served_only_with_more_than_the_margin_left() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        with_entry("fresh", Some(now + chrono::Duration::hours(8)), |auth| {
            let hit = cached(auth).unwrap().expect("a cache hit");
            // Reported until the next check (an hour after the last), before the 8 h expiry.
            assert_eq!(hit.info.expiry, now + chrono::Duration::minutes(50));
        });
        with_entry("soon", Some(now + chrono::Duration::minutes(20)), |auth| {
            let hit = cached(auth).unwrap().expect("a cache hit");
            assert_eq!(hit.info.expiry, now + chrono::Duration::minutes(20));
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
