//! GitHub as an identity provider (`--provider github`), for organisations whose people are
//! GitHub users and whose groups are GitHub teams.
//!
//! GitHub issues no OpenID Connect ID tokens to users, only OAuth access tokens, so the apiserver
//! cannot validate them itself. There are two ways to Kubernetes: Dex's `github` connector (Dex
//! turns the GitHub login into an ID token whose groups are `org:team`; koidc then talks to Dex as
//! to any OIDC provider), or this module: koidc logs in to GitHub directly and hands the GitHub
//! access token to kubectl, and the apiserver asks [`crate::cluster::webhook`] (a TokenReview webhook
//! authenticator that koidc also provides) who the token belongs to.
//!
//! This file holds what both sides need: where GitHub is ([`GithubUrls`]), the HTTP client, the
//! REST calls (`GET /user`, `/user/orgs`, `/user/teams`) that turn a token into an [`Account`], and
//! the mapping of teams to Kubernetes groups (`org:team-slug`, the names Dex uses with
//! `teamNameField: slug`). [`oauth`] runs GitHub's OAuth web and device flows; `crate::login::sources::github` is
//! the credential source that serves GitHub tokens to the login pipeline.
//!
//! GitHub answers token-endpoint errors with HTTP 200 and an `error` field, which generic OAuth
//! clients (the `oauth2` crate included) misread as a malformed token response ("missing field
//! access_token"). koidc therefore makes the HTTP requests itself with reqwest and reads the body
//! first for `error`; the `oauth2` crate provides the PKCE verifier, the `state` value and the
//! typed success responses.

pub mod oauth;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

pub(crate) use crate::http::Reply;
use crate::http::{CaError, ClientError, ExtraCas, HttpError, client_builder};
pub(crate) use crate::text::one_line;

/// GitHub's public web address, the default of `--github-url`.
pub const DEFAULT_URL: &str = "https://github.com";

/// The REST API of github.com (GitHub Enterprise Server serves it at `<url>/api/v3`).
pub const PUBLIC_API_URL: &str = "https://api.github.com";

/// The scope koidc asks an OAuth app for: reading the user's organisations and teams.
pub const SCOPE: &str = "read:org";

/// [`crate::login::cache::EntryMeta::kind`] of GitHub cache entries.
pub const KIND: &str = "github";

/// The largest response body koidc reads from GitHub (1 MiB).
const MAX_BODY: usize = 1 << 20;

/// Results per page of the list endpoints (GitHub's maximum).
const PER_PAGE: usize = 100;

/// Pages read at most from a list endpoint (1000 teams or organisations).
const MAX_PAGES: usize = 10;

/// Errors talking to GitHub. No message contains a token, a code, a verifier or the client
/// secret: only URLs (without query), status codes and GitHub's sanitised error codes.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    /// The request goes through a proxy (`HTTPS_PROXY`...) that failed it, or a proxy variable
    /// is unusable; the message names the proxy, never its password.
    #[error(transparent)]
    Proxy(crate::http::ProxyError),
    /// `--github-url` or `--github-api-url` is not usable.
    #[error("invalid --{flag} {url:?}: {reason}")]
    InvalidUrl {
        /// The flag, without dashes.
        flag: &'static str,
        /// The value given.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An extra CA (`--certificate-authority` file or `--certificate-authority-data`) cannot be
    /// used.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// The HTTP client cannot be built.
    #[error("cannot set up the HTTP client: {0}")]
    HttpClient(String),
    /// The connection failed.
    #[error("cannot reach GitHub at {url}: {reason}; check --github-url and the network")]
    Unreachable {
        /// The URL requested (no query).
        url: String,
        /// The innermost cause.
        reason: String,
    },
    /// No answer in time.
    #[error("GitHub did not answer {url} within {}s; try again later", .timeout.as_secs())]
    Timeout {
        /// The URL requested (no query).
        url: String,
        /// The per-request timeout.
        timeout: Duration,
    },
    /// The API refused the token (HTTP 401): it is invalid, expired or revoked.
    #[error(
        "GitHub does not accept the token (HTTP 401 from {url}): it is invalid, expired or revoked; log in again"
    )]
    BadCredentials {
        /// The URL requested.
        url: String,
    },
    /// The API forbade the request (HTTP 403): missing scope or permission, SAML SSO not
    /// authorised for the token, or the rate limit.
    #[error("GitHub refused {url} (HTTP 403{}); the token may lack the read:org scope (or the app the Members permission), need SAML SSO authorisation, or the rate limit was hit", msg(.message))]
    Forbidden {
        /// The URL requested.
        url: String,
        /// GitHub's `message`, sanitised.
        message: Option<String>,
    },
    /// Any other unexpected status.
    #[error("{url} answered HTTP {status}{}; check --github-url / --github-api-url", msg(.message))]
    HttpStatus {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
        /// GitHub's `message`, sanitised.
        message: Option<String>,
    },
    /// A response that is not the JSON koidc expects (the body is never shown).
    #[error("{url} returned a malformed response ({reason}); check --github-url / --github-api-url")]
    Malformed {
        /// The URL requested.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The web flow needs the OAuth app's client secret, and none was given.
    #[error(
        "GitHub's browser login needs the OAuth app's client secret: set KOIDC_CLIENT_SECRET (or \
         use --client-secret-file), or log in with --grant device-code, which needs none"
    )]
    MissingClientSecret,
    /// `--paste` is not supported for GitHub.
    #[error(
        "--paste is not supported with --provider github; use --grant device-code to log in from another device"
    )]
    PasteUnsupported,
    /// GitHub's token endpoint answered with an OAuth error (GitHub sends these with HTTP 200).
    #[error("GitHub refused the login: {error}{}; {}", msg(.description), hint(.error))]
    Refused {
        /// GitHub's `error` code, sanitised.
        error: String,
        /// `error_description`, sanitised and capped.
        description: Option<String>,
    },
    /// The refresh token is no longer valid (`bad_refresh_token`): log in again.
    #[error("GitHub rejected the refresh token ({error}); logging in again is needed")]
    RefreshRejected {
        /// GitHub's `error` code, sanitised.
        error: String,
    },
    /// The user denied the device login.
    #[error("the GitHub device login was denied (access_denied); run `koidc login` to try again")]
    DeviceDenied,
    /// The device code expired before the user entered it.
    #[error("the GitHub device code expired before the login was approved; run `koidc login` to try again")]
    DeviceExpired,
    /// The device login was not approved within `--timeout`.
    #[error(
        "the GitHub device login was not approved within {secs}s; run `koidc login` to try again (or raise --timeout)"
    )]
    DeviceTimeout {
        /// The timeout, in seconds.
        secs: u64,
    },
}

fn msg(m: &Option<String>) -> String {
    m.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
}

/// What to do about a GitHub token-endpoint `error`.
fn hint(error: &str) -> &'static str {
    match error {
        "incorrect_client_credentials" => {
            "check --client-id and the client secret (KOIDC_CLIENT_SECRET) of the GitHub OAuth app"
        }
        "redirect_uri_mismatch" => {
            "register http://127.0.0.1/callback as the OAuth app's callback URL (GitHub then accepts any loopback port)"
        }
        "bad_verification_code" => "the authorization code was invalid or already used; log in again",
        "unverified_user_email" => {
            "verify the primary email address of your GitHub account, then log in again"
        }
        "device_flow_disabled" => "enable Device Flow in the OAuth app's settings, or use --grant authcode",
        "incorrect_device_code" | "unsupported_grant_type" => {
            "log in again; if it repeats, check --github-url"
        }
        "application_suspended" => "the OAuth app is suspended; ask its owner",
        _ => "check the OAuth app's settings at GitHub, then log in again",
    }
}

impl GithubError {}

/// Where GitHub is: the web address (OAuth endpoints) and the REST API base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubUrls {
    /// `https://github.com` or a GitHub Enterprise Server address, without trailing slash.
    pub web: String,
    /// `https://api.github.com`, or `<web>/api/v3`, without trailing slash.
    pub api: String,
}

impl GithubUrls {
    /// From `--github-url` (default [`DEFAULT_URL`]) and `--github-api-url` (default
    /// [`PUBLIC_API_URL`] for github.com, else `<github-url>/api/v3`). Both must be https, or http
    /// on a loopback address (for tests).
    pub fn new(web: Option<&str>, api: Option<&str>) -> Result<Self, GithubError> {
        let web = normalize(
            "github-url",
            web.filter(|w| !w.trim().is_empty()).unwrap_or(DEFAULT_URL),
        )?;
        let api = match api.filter(|a| !a.trim().is_empty()) {
            Some(api) => normalize("github-api-url", api)?,
            None => default_api(&web),
        };
        Ok(Self { web, api })
    }

    /// `<web>/login/oauth/authorize`
    pub fn authorize(&self) -> String {
        format!("{}/login/oauth/authorize", self.web)
    }

    /// `<web>/login/oauth/access_token`
    pub fn access_token(&self) -> String {
        format!("{}/login/oauth/access_token", self.web)
    }

    /// `<web>/login/device/code`
    pub fn device_code(&self) -> String {
        format!("{}/login/device/code", self.web)
    }

    /// `<api><path>`
    pub fn api(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }
}

/// The API base for a web address: api.github.com for github.com, `<web>/api/v3` otherwise.
fn default_api(web: &str) -> String {
    let host = Url::parse(web)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    if host.as_deref() == Some("github.com") {
        PUBLIC_API_URL.to_owned()
    } else {
        format!("{web}/api/v3")
    }
}

fn normalize(flag: &'static str, raw: &str) -> Result<String, GithubError> {
    let bad = |reason| GithubError::InvalidUrl {
        flag,
        url: raw.to_owned(),
        reason,
    };
    let url = Url::parse(raw.trim()).map_err(|_| bad("not an absolute URL"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must have no query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("it must have no user name or password"));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(bad(
                "it must be an https URL (http only on loopback addresses, for tests)",
            ));
        }
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Builds the HTTP client for GitHub: no redirects, `timeout` per request, the extra CA files
/// and `ca_data` (`--certificate-authority-data`) trusted besides the system roots (for GitHub
/// Enterprise Server behind a private CA).
pub fn http_client(
    timeout: Duration,
    extra_ca_files: &[PathBuf],
    ca_data: Option<&str>,
) -> Result<reqwest::Client, GithubError> {
    let cas = ExtraCas::load(extra_ca_files, ca_data)?;
    cas.client(|| client_builder(timeout)).map_err(|err| match err {
        ClientError::Ca(err) => GithubError::Ca(err),
        ClientError::Build { reason } => GithubError::HttpClient(reason),
    })
}

/// Sends `req` (for `url`, named in errors) and reads at most [`MAX_BODY`] bytes of the answer.
pub(crate) async fn send(
    req: reqwest::RequestBuilder,
    url: &str,
    timeout: Duration,
) -> Result<Reply, GithubError> {
    crate::http::send(req, timeout, MAX_BODY)
        .await
        .map_err(|err| from_http(err, url))
}

/// GitHub's words for a failed exchange with `url`: a timeout, a response too large, or GitHub
/// out of reach (with the reason) and what to check.
fn from_http(err: HttpError, url: &str) -> GithubError {
    let url = display_url(url);
    match err {
        HttpError::Timeout { timeout, .. } => GithubError::Timeout { url, timeout },
        err @ HttpError::TooLarge { .. } => GithubError::Malformed {
            url,
            reason: err.to_string(),
        },
        HttpError::Proxy(err) => GithubError::Proxy(err),
        err => GithubError::Unreachable {
            url,
            reason: err.reason(),
        },
    }
}

/// The URL without query or fragment, for messages ([`crate::http::display_url`]); a URL that
/// does not parse, sanitised.
pub(crate) fn display_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => crate::http::display_url(&u),
        Err(_) => one_line(url, 200),
    }
}

/// A GitHub user as koidc and the webhook see them: who, and in which organisations and teams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The numeric user id (stable across renames): the Kubernetes uid.
    pub id: u64,
    /// The login (user name).
    pub login: String,
    /// The display name, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Logins of the organisations the user belongs to, lowercase, sorted.
    #[serde(default)]
    pub orgs: Vec<String>,
    /// The user's teams as `org:team-slug`, lowercase, sorted.
    #[serde(default)]
    pub teams: Vec<String>,
}

impl Account {
    /// Organisations of the user: those listed by `/user/orgs` and those of the user's teams.
    pub fn all_orgs(&self) -> Vec<String> {
        let mut orgs = self.orgs.clone();
        orgs.extend(
            self.teams
                .iter()
                .filter_map(|t| t.split_once(':').map(|(org, _)| org.to_owned())),
        );
        orgs.sort();
        orgs.dedup();
        orgs
    }

    /// The Kubernetes groups for the user, restricted to `allowed_orgs` (lowercase; empty means
    /// every organisation): each allowed organisation the user belongs to (`acme`) and each team
    /// in one (`acme:sre`), in that order.
    pub fn groups(&self, allowed_orgs: &[String]) -> Vec<String> {
        let allowed = |org: &str| allowed_orgs.is_empty() || allowed_orgs.iter().any(|a| a == org);
        let mut groups: Vec<String> = self.all_orgs().into_iter().filter(|o| allowed(o)).collect();
        groups.extend(
            self.teams
                .iter()
                .filter(|t| t.split_once(':').is_some_and(|(org, _)| allowed(org)))
                .cloned(),
        );
        groups
    }
}

/// Calls GitHub's REST API with a user's token.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
}

#[derive(Deserialize)]
struct UserBody {
    id: u64,
    login: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct OrgBody {
    login: String,
}

#[derive(Deserialize)]
struct TeamBody {
    slug: String,
    organization: OrgBody,
}

#[derive(Deserialize)]
struct MessageBody {
    #[serde(default)]
    message: Option<String>,
}

impl Api {
    /// An API client for `urls.api` using `http` (see [`http_client`]); `timeout` is the one the
    /// client was built with, for messages.
    pub fn new(http: reqwest::Client, urls: &GithubUrls, timeout: Duration) -> Self {
        Self {
            http,
            base: urls.api.clone(),
            timeout,
        }
    }

    /// GETs `path` with `token`, expecting a JSON document of type `T`.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        token: &SecretString,
    ) -> Result<T, GithubError> {
        let url = format!("{}{path}", self.base);
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())).map_err(|_| {
            GithubError::BadCredentials {
                url: display_url(&url),
            }
        })?;
        auth.set_sensitive(true);
        let req = self
            .http
            .get(&url)
            .header(AUTHORIZATION, auth)
            .header(ACCEPT, HeaderValue::from_static("application/vnd.github+json"))
            .header("X-GitHub-Api-Version", HeaderValue::from_static("2022-11-28"));
        let reply = send(req, &url, self.timeout).await?;
        let shown = display_url(&url);
        let message = || {
            serde_json::from_slice::<MessageBody>(&reply.body)
                .ok()
                .and_then(|m| m.message)
                .map(|m| one_line(&m, 200))
        };
        match reply.status {
            s if s.is_success() => serde_json::from_slice(&reply.body).map_err(|e| GithubError::Malformed {
                url: shown,
                reason: format!("not the expected JSON at line {} column {}", e.line(), e.column()),
            }),
            StatusCode::UNAUTHORIZED => Err(GithubError::BadCredentials { url: shown }),
            StatusCode::FORBIDDEN => Err(GithubError::Forbidden {
                url: shown,
                message: message(),
            }),
            s => Err(GithubError::HttpStatus {
                url: shown,
                status: s.as_u16(),
                message: message(),
            }),
        }
    }

    /// Every item of a list endpoint (`per_page=100`, at most [`MAX_PAGES`] pages).
    async fn get_all<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        token: &SecretString,
    ) -> Result<Vec<T>, GithubError> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let items: Vec<T> = self
                .get(&format!("{path}?per_page={PER_PAGE}&page={page}"), token)
                .await?;
            let n = items.len();
            all.extend(items);
            if n < PER_PAGE {
                break;
            }
        }
        Ok(all)
    }

    /// `GET /user`: id, login and name. Fails with [`GithubError::BadCredentials`] for an
    /// invalid token.
    pub async fn user(&self, token: &SecretString) -> Result<Account, GithubError> {
        let user: UserBody = self.get("/user", token).await?;
        Ok(Account {
            id: user.id,
            login: user.login,
            name: user.name.filter(|n| !n.is_empty()),
            orgs: Vec::new(),
            teams: Vec::new(),
        })
    }

    /// `GET /user/orgs`: the user's organisations (lowercase, sorted).
    pub async fn orgs(&self, token: &SecretString) -> Result<Vec<String>, GithubError> {
        let orgs: Vec<OrgBody> = self.get_all("/user/orgs", token).await?;
        let mut orgs: Vec<String> = orgs.into_iter().map(|o| o.login.to_ascii_lowercase()).collect();
        orgs.sort();
        orgs.dedup();
        Ok(orgs)
    }

    /// `GET /user/teams`: the user's teams as `org:team-slug` (lowercase, sorted).
    pub async fn teams(&self, token: &SecretString) -> Result<Vec<String>, GithubError> {
        let teams: Vec<TeamBody> = self.get_all("/user/teams", token).await?;
        let mut teams: Vec<String> = teams
            .into_iter()
            .map(|t| {
                format!(
                    "{}:{}",
                    t.organization.login.to_ascii_lowercase(),
                    t.slug.to_ascii_lowercase()
                )
            })
            .collect();
        teams.sort();
        teams.dedup();
        Ok(teams)
    }

    /// The whole [`Account`]: user, organisations and teams (the last two asked concurrently).
    pub async fn account(&self, token: &SecretString) -> Result<Account, GithubError> {
        let mut account = self.user(token).await?;
        let (orgs, teams) = tokio::join!(self.orgs(token), self.teams(token));
        account.orgs = orgs?;
        account.teams = teams?;
        Ok(account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_com_uses_the_public_api_and_enterprise_uses_api_v3() {
        let public = GithubUrls::new(None, None).unwrap();
        assert_eq!(public.web, "https://github.com");
        assert_eq!(public.api, "https://api.github.com");
        assert_eq!(public.authorize(), "https://github.com/login/oauth/authorize");
        assert_eq!(
            public.access_token(),
            "https://github.com/login/oauth/access_token"
        );
        assert_eq!(public.device_code(), "https://github.com/login/device/code");

        let ghe = GithubUrls::new(Some("https://git.example.com/"), None).unwrap();
        assert_eq!(ghe.web, "https://git.example.com");
        assert_eq!(ghe.api, "https://git.example.com/api/v3");
        assert_eq!(ghe.api("/user"), "https://git.example.com/api/v3/user");

        let explicit =
            GithubUrls::new(Some("http://127.0.0.1:1234"), Some("http://127.0.0.1:99/api/")).unwrap();
        assert_eq!(explicit.api, "http://127.0.0.1:99/api");
    }

    #[test]
    fn urls_must_be_https_except_on_loopback() {
        for bad in [
            "http://github.example.com",
            "ftp://github.com",
            "github.com",
            "https://github.com/?x=1",
            "https://user:pw@github.com",
        ] {
            let err = GithubUrls::new(Some(bad), None).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid --github-url"),
                "{bad}: {err}"
            );
        }
        assert!(GithubUrls::new(None, Some("http://api.example.com")).is_err());
        assert!(GithubUrls::new(Some("http://localhost:8080"), None).is_ok());
    }

    fn account() -> Account {
        Account {
            id: 1,
            login: "alice".into(),
            name: None,
            orgs: vec!["acme".into(), "hobby".into()],
            teams: vec!["acme:sre".into(), "evil:admins".into(), "hobby:fun".into()],
        }
    }

    #[test]
    fn groups_are_orgs_then_org_team_restricted_to_allowed_orgs() {
        let a = account();
        assert_eq!(a.all_orgs(), ["acme", "evil", "hobby"]);
        assert_eq!(a.groups(&["acme".into()]), ["acme", "acme:sre"]);
        assert_eq!(
            a.groups(&[]),
            ["acme", "evil", "hobby", "acme:sre", "evil:admins", "hobby:fun"]
        );
        assert!(a.groups(&["other".into()]).is_empty());
    }

    #[test]
    fn refusals_name_the_fix_and_no_description_control_characters() {
        let err = GithubError::Refused {
            error: "incorrect_client_credentials".into(),
            description: Some(one_line(
                "The client_id and/or client_secret passed are incorrect.\n",
                200,
            )),
        };
        let text = err.to_string();
        assert!(text.contains("incorrect_client_credentials"), "{text}");
        assert!(text.contains("KOIDC_CLIENT_SECRET"), "{text}");
        assert!(!text.contains('\n'));
    }
}
