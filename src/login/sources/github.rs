//! The GitHub source (`--provider github`): GitHub access tokens from the web flow (through the
//! browser) or the device flow, refreshed when GitHub issued a refresh token (GitHub App user
//! tokens), and checked with GitHub every hour.
//!
//! A GitHub access token is opaque (not a JWT), so what koidc cannot read from it is stored in
//! the cache entry beside it ([`crate::login::cache::EntryMeta`]): the kind `github`, the expiry when
//! GitHub gave one, and the account (login, id, name, organisations, teams) read from the API at
//! login time, for `whoami`. Read back, the entry is a [`Credential::GithubAccess`]. Reading it
//! (the warm path) needs only the cache: no network, no runtime.
//!
//! GitHub can revoke a token at any time (the user revokes the app, an admin removes it), and a
//! token without expiry (OAuth apps) would otherwise be served forever. So the entry records when
//! GitHub last confirmed the token (`checked_at`, set at login and refresh), and a token is served
//! from the cache only within [`REVALIDATE_AFTER`] of that; kubectl is told it expires then, so
//! long-running clients come back in time. After that the renewal asks GitHub (`GET /user`) under
//! the cache lock: 200 renews the check, 401 drops the entry and a login follows. When GitHub
//! cannot be reached (or answers anything else), koidc cannot tell: within [`UNREACHABLE_GRACE`]
//! of the last successful check it serves the token with a warning (the cluster's webhook asks
//! GitHub about every token anyway, so a revoked one still gets nowhere), and reports it for
//! [`UNCHECKED_REPORT`] only, so kubectl comes back soon to try again; after that it fails rather
//! than hand out a token nobody could vouch for for a day. An entry without `checked_at` (written
//! before it existed) or with one in the future (a clock set back, an edited file) is checked at
//! once, and gets no grace. An expired token is refreshed when the entry holds a refresh token
//! that has not expired; a refresh token GitHub refuses (or a missing client secret) means a
//! login.
//!
//! After a login (not a refresh) the pipeline says which GitHub account logged in, and warns when
//! it is not the account cached before ([`crate::login::pipeline::announce_login`]).
//!
//! The token is handed to kubectl as the ExecCredential token; the apiserver verifies it through
//! `koidc webhook`.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::json;

use super::{Context, LoginPage, Revocation, RevokeRequest, choose_grant, headless};
use crate::clock::{relative, rfc3339};
use crate::config::{Grant, HTTP_TIMEOUT};
use crate::login::cache::{CacheKey, EntryMeta};
use crate::login::github::oauth::{Client, GithubTokens};
use crate::login::github::{Account, Api, GithubError, GithubUrls, KIND, http_client};
use crate::login::loopback::LoopbackServer;
use crate::login::pipeline::{Connection, CredentialSource, EXPIRY_MARGIN, Renewal, Source};
use crate::login::token::{Credential, CredentialEntry, TokenSet};
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

/// GitHub access tokens.
pub struct GithubSource<'a> {
    context: Context<'a>,
    urls: &'a GithubUrls,
}

impl<'a> GithubSource<'a> {
    /// The source for `context.identity`, at `urls`.
    pub fn new(context: Context<'a>, urls: &'a GithubUrls) -> Self {
        Self { context, urls }
    }
}

/// What a GitHub entry says about its token.
struct Facts {
    expires_at: Option<DateTime<Utc>>,
    checked_at: Option<DateTime<Utc>>,
}

impl Facts {
    fn of(entry: &CredentialEntry) -> Option<Self> {
        match &entry.credential {
            Credential::GithubAccess {
                expires_at,
                checked_at,
                ..
            } => Some(Self {
                expires_at: *expires_at,
                checked_at: *checked_at,
            }),
            Credential::IdToken { .. } => None,
        }
    }

    /// Not expired: no expiry, or more than [`EXPIRY_MARGIN`] left.
    fn fresh(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|exp| exp - now > span(EXPIRY_MARGIN))
    }

    /// The last check by GitHub, when there is one and it is not in the future.
    fn last_check(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.checked_at.filter(|t| *t <= now)
    }

    /// Until when the token may be used without asking GitHub: the earlier of its expiry and
    /// [`REVALIDATE_AFTER`] after the last check (`None` when never checked).
    fn report_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let checked = self.last_check(now)? + span(REVALIDATE_AFTER);
        Some(self.expires_at.map_or(checked, |exp| exp.min(checked)))
    }
}

fn span(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_default()
}

impl CredentialSource for GithubSource<'_> {
    fn read(&self, tokens: TokenSet, meta: EntryMeta) -> Result<CredentialEntry, String> {
        if meta.kind.as_deref() != Some(KIND) {
            return Err("ignoring a cached token that was not issued by GitHub".to_owned());
        }
        match meta.info.map(serde_json::from_value::<Account>) {
            Some(Ok(account)) => Ok(CredentialEntry {
                credential: Credential::GithubAccess {
                    token: tokens.id_token,
                    account,
                    expires_at: meta.expires_at,
                    checked_at: meta.checked_at,
                },
                refresh_token: tokens.refresh_token,
                refresh_expires_at: meta.refresh_expires_at,
            }),
            _ => Err("ignoring a cached GitHub token without its account details".to_owned()),
        }
    }

    fn write(&self, entry: &CredentialEntry) -> (TokenSet, EntryMeta) {
        let tokens = entry.token_set();
        let (account, expires_at, checked_at) = match &entry.credential {
            Credential::GithubAccess {
                account,
                expires_at,
                checked_at,
                ..
            } => (serde_json::to_value(account).ok(), *expires_at, *checked_at),
            Credential::IdToken { .. } => (None, None, None),
        };
        let meta = EntryMeta {
            kind: Some(KIND.to_owned()),
            expires_at,
            refresh_expires_at: entry.refresh_expires_at,
            info: account,
            checked_at,
        };
        (tokens, meta)
    }

    fn valid_until(&self, entry: &CredentialEntry, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Facts::of(entry)?.report_until(now)
    }

    fn renewable(&self, entry: &CredentialEntry, now: DateTime<Utc>) -> bool {
        let Some(facts) = Facts::of(entry) else {
            return false;
        };
        // Not expired: GitHub can confirm it. Expired: a refresh token that has not expired.
        facts.fresh(now)
            || entry.refresh_token.is_some() && entry.refresh_expires_at.is_none_or(|exp| exp > now)
    }

    fn connect(&self) -> anyhow::Result<Box<dyn Connection + '_>> {
        let login = self.context.login;
        let runtime = crate::runtime()?;
        let http = http_client(
            HTTP_TIMEOUT,
            &login.certificate_authorities,
            login.certificate_authority_data.as_deref(),
        )?;
        let api = Api::new(http.clone(), self.urls, HTTP_TIMEOUT);
        Ok(Box::new(GithubConnection {
            source: self,
            runtime,
            http,
            api,
        }))
    }
}

/// An HTTP client for GitHub.
struct GithubConnection<'s, 'a> {
    source: &'s GithubSource<'a>,
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    api: Api,
}

impl GithubConnection<'_, '_> {
    fn client(&self) -> Client<'_> {
        let context = &self.source.context;
        Client {
            urls: self.source.urls,
            http: &self.http,
            timeout: HTTP_TIMEOUT,
            client_id: &context.identity.client_id,
            client_secret: context.login.client_secret.as_ref(),
        }
    }

    /// The hourly check of a cached token that has not expired: `GET /user` with it. GitHub
    /// accepts it: the check time is renewed and the token served. GitHub refuses it (401): the
    /// entry is dropped and a login follows. GitHub unreachable or answering otherwise: the token
    /// is served with a warning within [`UNREACHABLE_GRACE`] of its last check, else an error.
    fn revalidate(&self, entry: &CredentialEntry, facts: &Facts) -> Renewal {
        let context = &self.source.context;
        let now = context.clock.now();
        context
            .printer
            .debug("checking the cached GitHub token with GitHub (GET /user)");
        let token = entry.credential.token();
        let answer = self
            .runtime
            .block_on(async { tokio::time::timeout(CHECK_TIMEOUT, self.api.user(token)).await })
            .unwrap_or_else(|_| {
                Err(GithubError::Timeout {
                    url: format!("{}/user", self.source.urls.api),
                    timeout: CHECK_TIMEOUT,
                })
            });
        match answer {
            Ok(_) => {
                let mut entry = entry.clone();
                if let Credential::GithubAccess { checked_at, .. } = &mut entry.credential {
                    *checked_at = Some(now);
                }
                Renewal::Renewed {
                    entry,
                    source: Source::Cache,
                }
            }
            Err(GithubError::BadCredentials { .. }) => {
                context.printer.info(
                    "GitHub no longer accepts the cached token (revoked, or the app's access removed); logging in again",
                );
                Renewal::LogIn { forget: true }
            }
            Err(err) => match facts.last_check(now) {
                Some(last) if now - last < span(UNREACHABLE_GRACE) => {
                    context.printer.warn(format_args!(
                        "cannot check the cached GitHub token with GitHub ({err}); using it anyway (last \
                         confirmed {} ago; koidc stops using it {}h after that)",
                        ago(last, now),
                        UNREACHABLE_GRACE.as_secs() / 3600
                    ));
                    let until = now + span(UNCHECKED_REPORT);
                    Renewal::Unconfirmed {
                        entry: entry.clone(),
                        until: facts.expires_at.map_or(until, |exp| exp.min(until)),
                    }
                }
                _ => Renewal::Failed {
                    error: anyhow::Error::new(err).context(format!(
                        "cannot check the cached GitHub token with GitHub, and it was last confirmed more than {}h ago \
                         (or never); try again when GitHub is reachable, or run `koidc logout`",
                        UNREACHABLE_GRACE.as_secs() / 3600
                    )),
                    keep: None,
                },
            },
        }
    }

    /// Renews an expired token with `refresh_token` (GitHub App user tokens).
    fn refresh(&self, refresh_token: &SecretString) -> Renewal {
        let context = &self.source.context;
        context.printer.debug("refreshing the GitHub token");
        let client = self.client();
        let refreshed = self.runtime.block_on(async {
            match client.refresh(refresh_token).await {
                Ok(mut tokens) => {
                    // GitHub rotates refresh tokens; keep the old one if none came back.
                    if tokens.refresh_token.is_none() {
                        tokens.refresh_token = Some(refresh_token.clone());
                    }
                    Ok(Some(finish(context, &self.api, tokens).await?))
                }
                Err(err @ (GithubError::RefreshRejected { .. } | GithubError::MissingClientSecret)) => {
                    context.printer.info(format_args!(
                        "the refresh token was not usable ({err}); logging in again"
                    ));
                    Ok(None)
                }
                Err(err) => Err(anyhow::Error::new(err).context("cannot refresh the GitHub token")),
            }
        });
        match refreshed {
            Ok(Some(entry)) => Renewal::Renewed {
                entry,
                source: Source::Refresh,
            },
            Ok(None) => Renewal::LogIn { forget: false },
            Err(error) => Renewal::Failed { error, keep: None },
        }
    }
}

impl Connection for GithubConnection<'_, '_> {
    fn renew(&mut self, entry: &CredentialEntry) -> Renewal {
        let now = self.source.context.clock.now();
        let Some(facts) = Facts::of(entry) else {
            return Renewal::LogIn { forget: false };
        };
        if facts.fresh(now) {
            return self.revalidate(entry, &facts);
        }
        match &entry.refresh_token {
            Some(refresh_token) if entry.refresh_expires_at.is_none_or(|exp| exp > now) => {
                self.refresh(refresh_token)
            }
            _ => Renewal::LogIn { forget: false },
        }
    }

    fn login(&mut self) -> anyhow::Result<CredentialEntry> {
        let context = &self.source.context;
        let client = self.client();
        self.runtime.block_on(async {
            let tokens = login_flow(context, &client).await?;
            finish(context, &self.api, tokens).await
        })
    }
}

/// How long ago `t` was, e.g. "2h5m".
fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    relative(t, now)
        .trim_start_matches("expired ")
        .trim_end_matches(" ago")
        .to_owned()
}

/// Reads the account behind fresh tokens: the entry to cache, confirmed by GitHub now.
async fn finish(context: &Context<'_>, api: &Api, tokens: GithubTokens) -> anyhow::Result<CredentialEntry> {
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
        (Err(err), _) | (_, Err(err)) => context.printer.warn(format_args!(
            "cannot read your GitHub organisations and teams ({err}); the cluster will not see your groups"
        )),
    }
    let now = context.clock.now();
    let after = |d: Duration| chrono::Duration::from_std(d).ok().map(|d| now + d);
    Ok(CredentialEntry {
        credential: Credential::GithubAccess {
            token: tokens.access_token,
            account,
            expires_at: tokens.expires_in.and_then(after),
            // GitHub just accepted the token (`GET /user` above).
            checked_at: Some(now),
        },
        refresh_token: tokens.refresh_token,
        refresh_expires_at: tokens.refresh_token_expires_in.and_then(after),
    })
}

/// Runs the web or the device flow: `--grant device-code`, or `auto` without a client secret
/// (the web flow needs one) or on a machine without a display, uses the device flow.
async fn login_flow(context: &Context<'_>, client: &Client<'_>) -> anyhow::Result<GithubTokens> {
    let login = context.login;
    if login.paste {
        return Err(GithubError::PasteUnsupported.into());
    }
    let device = match login.grant {
        Grant::DeviceCode => true,
        Grant::AuthCode => false,
        Grant::Auto => {
            login.client_secret.is_none()
                || choose_grant(Grant::Auto, false, &login.browser, headless(), true) == Grant::DeviceCode
        }
    };
    if device {
        device_login(context, client).await
    } else {
        web_login(context, client).await
    }
}

async fn device_login(context: &Context<'_>, client: &Client<'_>) -> anyhow::Result<GithubTokens> {
    let (login, browser) = (context.login, context.browser);
    let printer: Printer = context.printer;
    printer.debug("requesting a GitHub device code");
    let device = client.start_device(&context.identity.scopes).await?;
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

async fn web_login(context: &Context<'_>, client: &Client<'_>) -> anyhow::Result<GithubTokens> {
    let (login, browser) = (context.login, context.browser);
    let printer = context.printer;
    // Before any browser: GitHub would show the login, then refuse the code without the secret.
    if login.client_secret.is_none() {
        return Err(GithubError::MissingClientSecret.into());
    }
    let server =
        LoopbackServer::bind_for(&login.listen_for(ProviderKind::Github), login.redirect_host).await?;
    let request = client.web_login(&server.redirect_uri(), &context.identity.scopes)?;
    printer.debug(format_args!(
        "listening for the GitHub callback on {}",
        server.redirect_uri()
    ));
    let page = LoginPage {
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

/// Logs out of a GitHub entry: revokes `token` at GitHub when the request carries the client
/// secret configured for this entry's app (the API needs it; without it nothing is sent and the
/// answer names GitHub's web address, for the manual revocation hint). The request's GitHub URLs
/// are the identity's when the flags name this entry, else derived from the entry's issuer.
pub fn revoke_entry(token: &SecretString, request: RevokeRequest<'_>) -> anyhow::Result<Revocation> {
    let key = request.key;
    let urls = request
        .github
        .map_or_else(|| GithubUrls::new(Some(&key.issuer), None), Ok)?;
    let Some(client_secret) = request.client_secret else {
        return Ok(Revocation::NeedsSecret(urls.web));
    };
    let runtime = crate::runtime()?;
    let login = request.login;
    let http = http_client(
        HTTP_TIMEOUT,
        &login.certificate_authorities,
        login.certificate_authority_data.as_deref(),
    )?;
    let client = Client {
        urls: &urls,
        http: &http,
        timeout: HTTP_TIMEOUT,
        client_id: &key.client_id,
        client_secret: Some(client_secret),
    };
    Ok(match runtime.block_on(client.revoke(token))? {
        true => Revocation::Revoked,
        false => Revocation::AlreadyGone,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone as _;
    use secrecy::ExposeSecret as _;

    use super::*;
    use crate::clock::Clock;
    use crate::config::{CacheConfig, Identity};
    use crate::login::browser::BrowserChoice;
    use crate::login::cache::{CacheKind, TokenStore, open_store};
    use crate::login::pipeline::{Authenticator, Obtained};

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
            machine: None,
            audience: None,
            token_type: Default::default(),
            auth_params: Default::default(),
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

    fn with_entry(
        tag: &str,
        expires_at: Option<DateTime<Utc>>,
        check: impl FnOnce(&Authenticator<'_>, DateTime<Utc>),
    ) {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        with_checked_entry(tag, expires_at, Some(now - chrono::Duration::minutes(10)), check);
    }

    fn with_checked_entry(
        tag: &str,
        expires_at: Option<DateTime<Utc>>,
        checked_at: Option<DateTime<Utc>>,
        check: impl FnOnce(&Authenticator<'_>, DateTime<Utc>),
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
        let login = super::super::test_support::login_config();
        let browser = BrowserChoice::None.into_browser();
        let clock: Arc<dyn Clock> = Arc::new(FixedClock(now));
        let source = GithubSource::new(
            Context {
                identity: &identity,
                login: &login,
                browser: browser.as_ref(),
                clock: clock.clone(),
                printer: Printer::new(0),
            },
            identity.github.as_ref().unwrap(),
        );
        let auth = Authenticator {
            identity: &identity,
            cache: &cache,
            store: store.as_ref(),
            clock,
            printer: Printer::new(0),
            source: &source,
        };
        check(&auth, now);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn account_in(hit: &Obtained) -> &Account {
        match &hit.entry.credential {
            Credential::GithubAccess { account, .. } => account,
            other => panic!("not a GitHub credential: {other:?}"),
        }
    }

    #[test]
    fn a_non_expiring_token_is_served_from_the_cache_until_its_check_is_due() {
        with_entry("noexp", None, |auth, now| {
            let hit = auth.cached().unwrap().expect("a cache hit");
            assert_eq!(hit.token().expose_secret(), "gho_cached");
            assert_eq!(hit.source, Source::Cache);
            // Checked ten minutes ago: kubectl is told it expires when the next check is due.
            assert_eq!(hit.expiry, now + chrono::Duration::minutes(50));
            assert_eq!(account_in(&hit).login, "octocat");
            assert_eq!(account_in(&hit).groups(&[]), ["acme", "acme:sre"]);
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
            with_checked_entry(&format!("check-{i}"), expires_at, checked_at, |auth, _now| {
                let hit = auth.cached().unwrap();
                assert_eq!(hit.is_some(), served, "{expires_at:?} {checked_at:?}");
                if let Some(hit) = hit {
                    assert_eq!(hit.expiry, checked_at.unwrap() + chrono::Duration::hours(1));
                }
            });
        }
    }

    #[test]
    fn an_expiring_token_is_served_only_with_more_than_the_margin_left() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        with_entry("fresh", Some(now + chrono::Duration::hours(8)), |auth, now| {
            let hit = auth.cached().unwrap().expect("a cache hit");
            // Reported until the next check (an hour after the last), before the 8 h expiry.
            assert_eq!(hit.expiry, now + chrono::Duration::minutes(50));
        });
        with_entry("soon", Some(now + chrono::Duration::minutes(20)), |auth, now| {
            let hit = auth.cached().unwrap().expect("a cache hit");
            assert_eq!(hit.expiry, now + chrono::Duration::minutes(20));
        });
        with_entry(
            "stale",
            Some(now + chrono::Duration::seconds(60)),
            |auth, _now| {
                assert!(auth.cached().unwrap().is_none());
            },
        );
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
