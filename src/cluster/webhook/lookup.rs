//! How the webhook learns who a token belongs to, and that koidc's GitHub app issued it.
//!
//! `GET /user` answers for any token of the user: one they gave a third-party service, a
//! personal access token, a leaked one. So the webhook first asks GitHub's "check a token" API
//! (`POST {api}/applications/{client_id}/token`, HTTP Basic with the app's client id and secret,
//! body `{"access_token": …}`): only a 200 there means the token was issued to koidc's app. Then
//! `/user`, `/user/orgs` and `/user/teams` with the token give the account, organisations and
//! teams.
//!
//! The check's answer is not taken on trust beyond what it must say: it must name the same app,
//! the same token (when it echoes it) and the same user (id and login) as `/user`, and the login
//! must look like a GitHub login; any disagreement is an error (answered as "cannot check", never
//! cached), so a confused or hostile answer cannot make one user's token act as another user or
//! forge a user name such as `system:…`.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderValue};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::{Lookup, LookupError, LookupFuture};
use crate::login::github::{Account, Api, GithubError, GithubUrls, display_url, one_line, send};

/// The GitHub app whose tokens the webhook accepts, and the API to ask.
pub struct AppLookup {
    api: Api,
    http: reqwest::Client,
    base: String,
    client_id: String,
    client_secret: SecretString,
    timeout: Duration,
}

impl std::fmt::Debug for AppLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppLookup")
            .field("base", &self.base)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish()
    }
}

#[derive(Deserialize)]
struct CheckBody {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    app: Option<CheckApp>,
    user: Option<CheckUser>,
}

#[derive(Deserialize)]
struct CheckApp {
    #[serde(default)]
    client_id: Option<String>,
}

#[derive(Deserialize)]
struct CheckUser {
    id: u64,
    login: String,
}

/// What the check says about a token.
#[derive(Debug, PartialEq, Eq)]
enum Checked {
    /// Issued to the app, to the user with this id and login.
    Issued { id: u64, login: String },
    /// Not a token of the app (404), or not a token at all (422).
    NotIssued(u16),
}

impl AppLookup {
    /// Checks tokens against the app `client_id` (with its `client_secret`) at `urls.api`, with
    /// `http` (see [`crate::login::github::http_client`], built with `timeout`).
    pub fn new(
        http: reqwest::Client,
        urls: &GithubUrls,
        timeout: Duration,
        client_id: &str,
        client_secret: SecretString,
    ) -> Self {
        Self {
            api: Api::new(http.clone(), urls, timeout),
            http,
            base: urls.api.clone(),
            client_id: client_id.to_owned(),
            client_secret,
            timeout,
        }
    }

    fn check_url(&self) -> String {
        let id: String = url::form_urlencoded::byte_serialize(self.client_id.as_bytes()).collect();
        format!("{}/applications/{id}/token", self.base)
    }

    /// `POST /applications/{client_id}/token`.
    async fn check(&self, token: &SecretString) -> Result<Checked, GithubError> {
        let url = self.check_url();
        let shown = display_url(&url);
        let req = self
            .http
            .post(&url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
            .header(ACCEPT, HeaderValue::from_static("application/vnd.github+json"))
            .header("X-GitHub-Api-Version", HeaderValue::from_static("2022-11-28"))
            .json(&json!({ "access_token": token.expose_secret() }));
        let reply = send(req, &url, self.timeout).await?;
        parse_check(reply.status, &reply.body, &shown, token, &self.client_id)
    }

    async fn account(&self, token: &SecretString) -> Result<Account, LookupError> {
        let checked = match self.check(token).await {
            Err(GithubError::HttpStatus { url, status: 401, .. }) => {
                return Err(LookupError::Unavailable(format!(
                    "GitHub refused the app's credentials for the token check (HTTP 401 from {url}): \
                     check --client-id and the client secret"
                )));
            }
            other => other.map_err(from_github)?,
        };
        let (id, login) = match checked {
            Checked::Issued { id, login } => (id, login),
            Checked::NotIssued(422) => {
                return Err(LookupError::Declined(format!(
                    "GitHub declined to check the token for app {} (HTTP 422: validation failed, or \
                     the check is being throttled); not authenticated, not remembered",
                    self.client_id
                )));
            }
            Checked::NotIssued(status) => {
                return Err(LookupError::NotAccepted(format!(
                    "GitHub's token check for app {} answered HTTP {status}: not a token of this app \
                     (another app's, a personal access token, revoked or invalid)",
                    self.client_id
                )));
            }
        };
        let account = self.api.account(token).await.map_err(from_github)?;
        if !valid_login(&account.login) {
            return Err(LookupError::Unavailable(format!(
                "GitHub named a login koidc does not accept as a user name ({:?})",
                one_line(&account.login, 40)
            )));
        }
        if account.id != id || !account.login.eq_ignore_ascii_case(&login) {
            return Err(LookupError::Unavailable(format!(
                "GitHub's answers disagree: the token check names user {} (id {id}), /user names {} (id {})",
                one_line(&login, 40),
                one_line(&account.login, 40),
                account.id
            )));
        }
        Ok(account)
    }
}

/// Reads GitHub's answer to "check a token" (for `token`, asked as app `client_id`; `shown` is
/// the URL for messages): only a 200 about this token, this app and a user is [`Checked::Issued`].
fn parse_check(
    status: StatusCode,
    body: &[u8],
    shown: &str,
    token: &SecretString,
    client_id: &str,
) -> Result<Checked, GithubError> {
    let malformed = |reason: &str| GithubError::Malformed {
        url: shown.to_owned(),
        reason: reason.to_owned(),
    };
    match status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND | StatusCode::UNPROCESSABLE_ENTITY => {
            return Ok(Checked::NotIssued(status.as_u16()));
        }
        // The app's credentials refused, GitHub down, any other answer: not a verdict.
        s => {
            return Err(GithubError::HttpStatus {
                url: shown.to_owned(),
                status: s.as_u16(),
                message: serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(|m| one_line(m, 200))),
            });
        }
    }
    let body: CheckBody =
        serde_json::from_slice(body).map_err(|_| malformed("the token check is not the expected JSON"))?;
    if let Some(echoed) = &body.token
        && !bool::from(subtle::ConstantTimeEq::ct_eq(
            echoed.as_bytes(),
            token.expose_secret().as_bytes(),
        ))
    {
        return Err(malformed("the token check answered about another token"));
    }
    if let Some(app) = body.app.as_ref().and_then(|a| a.client_id.as_deref())
        && app != client_id
    {
        return Err(malformed("the token check answered for another app"));
    }
    let user = body
        .user
        .ok_or_else(|| malformed("the token check names no user"))?;
    Ok(Checked::Issued {
        id: user.id,
        login: user.login,
    })
}

/// A GitHub login as GitHub allows them (letters, digits, hyphens; GitHub Enterprise Server
/// also underscores), which becomes part of a Kubernetes user name: nothing that could read as
/// another name (`system:…`) or break a log line.
fn valid_login(login: &str) -> bool {
    !login.is_empty()
        && login.len() <= 100
        && login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A GitHub failure as a lookup result: a refused token (401) is a verdict, anything else says
/// nothing about the token.
fn from_github(err: GithubError) -> LookupError {
    match err {
        GithubError::BadCredentials { .. } => {
            LookupError::NotAccepted("GitHub does not accept the token (invalid, expired or revoked)".into())
        }
        err => LookupError::Unavailable(format!("cannot check the token with GitHub: {err}")),
    }
}

impl Lookup for AppLookup {
    fn account<'a>(&'a self, token: &'a SecretString) -> LookupFuture<'a> {
        Box::pin(AppLookup::account(self, token))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(status: u16, body: serde_json::Value) -> Result<Checked, GithubError> {
        parse_check(
            StatusCode::from_u16(status).unwrap(),
            body.to_string().as_bytes(),
            "https://api.github.com/applications/app/token",
            &SecretString::from("gho_mine"),
            "app",
        )
    }

    #[test]
    fn only_a_200_about_this_token_of_this_app_names_a_user() {
        let good =
            json!({"token": "gho_mine", "app": {"client_id": "app"}, "user": {"login": "alice", "id": 7}});
        assert_eq!(
            check(200, good.clone()).unwrap(),
            Checked::Issued {
                id: 7,
                login: "alice".into()
            }
        );
        assert_eq!(
            check(404, json!({"message": "Not Found"})).unwrap(),
            Checked::NotIssued(404)
        );
        assert_eq!(check(422, json!({})).unwrap(), Checked::NotIssued(422));
        // Not verdicts: the app's credentials refused, GitHub down, other successes.
        for status in [401, 403, 429, 500, 502, 503, 201, 204] {
            let err = check(status, good.clone()).unwrap_err();
            assert!(
                matches!(err, GithubError::HttpStatus { status: s, .. } if s == status),
                "{status}: {err}"
            );
        }
        // Hostile or confused 200s.
        for (body, why) in [
            (
                json!({"token": "gho_other", "app": {"client_id": "app"}, "user": {"login": "a", "id": 1}}),
                "another token",
            ),
            (
                json!({"token": "gho_mine", "app": {"client_id": "other"}, "user": {"login": "a", "id": 1}}),
                "another app",
            ),
            (
                json!({"token": "gho_mine", "app": {"client_id": "app"}}),
                "no user",
            ),
            (
                json!({"token": "gho_mine", "user": {"login": "a", "id": "1"}}),
                "expected JSON",
            ),
            (json!("yes"), "expected JSON"),
        ] {
            let err = check(200, body).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
            assert!(!err.contains("gho_mine"), "the token shows in {err}");
        }
        let err = parse_check(StatusCode::OK, b"not json", "u", &SecretString::from("t"), "app").unwrap_err();
        assert!(matches!(err, GithubError::Malformed { .. }));
    }

    #[test]
    fn only_logins_github_could_give_become_user_names() {
        for good in ["alice", "Bob-2", "ghe_user"] {
            assert!(valid_login(good), "{good}");
        }
        for bad in ["", "system:masters", "a\nb", "a b", "ä", &"a".repeat(101)] {
            assert!(!valid_login(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_lookup_never_shows_the_secret_in_debug() {
        let urls = GithubUrls::new(None, None).unwrap();
        let lookup = AppLookup::new(
            reqwest::Client::new(),
            &urls,
            Duration::from_secs(1),
            "app",
            SecretString::from("very-secret"),
        );
        let debug = format!("{lookup:?}");
        assert!(!debug.contains("very-secret") && debug.contains("app"), "{debug}");
    }
}
