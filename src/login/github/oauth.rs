//! GitHub's OAuth flows: the web flow (authorization code + PKCE S256 + state, redirected to
//! koidc's loopback listener), the device flow, refreshing GitHub App user tokens, and revoking a
//! token at logout.
//!
//! GitHub differs from RFC 6749 in ways that matter here: the token endpoint answers errors with
//! HTTP 200 and an `error` field (so every body is read for `error` before anything else); it
//! answers JSON only when asked with `Accept: application/json`; the web flow needs the client
//! secret even with PKCE (the device flow does not); OAuth app tokens do not expire, GitHub App
//! user tokens do (`expires_in`, with a `refresh_token` and `refresh_token_expires_in`).
//!
//! The device flow's polling rules are [`crate::login::device_poll`]'s (shared with OpenID
//! Connect); this module sends each request and reads GitHub's answer.
//!
//! Requests are made with reqwest directly (see the module comment of [`crate::login::github`]); the
//! `oauth2` crate supplies the PKCE pair, the `state` value and the typed success responses
//! ([`oauth2::StandardTokenResponse`], [`oauth2::StandardDeviceAuthorizationResponse`]).

use std::time::Duration;

use base64::Engine as _;
use oauth2::basic::BasicTokenType;
use oauth2::{CsrfToken, ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, TokenResponse as _};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{GithubError, GithubUrls, Reply, display_url, one_line, send};
use crate::login::device_poll::{self, DEVICE_CODE_GRANT, Schedule, Stop, TokioPacer};

/// The OAuth app (or GitHub App) koidc logs in with.
pub struct Client<'a> {
    /// Where GitHub is.
    pub urls: &'a GithubUrls,
    /// The HTTP client ([`super::http_client`]).
    pub http: &'a reqwest::Client,
    /// The per-request timeout the client was built with (for messages).
    pub timeout: Duration,
    /// The client id.
    pub client_id: &'a str,
    /// The client secret (required by the web flow and by refreshes).
    pub client_secret: Option<&'a SecretString>,
}

/// Tokens GitHub issued.
pub struct GithubTokens {
    /// The access token: what kubectl sends and the webhook checks.
    pub access_token: SecretString,
    /// The refresh token (GitHub App user tokens with expiration enabled).
    pub refresh_token: Option<SecretString>,
    /// Lifetime of the access token, when it expires.
    pub expires_in: Option<Duration>,
    /// Lifetime of the refresh token, when given.
    pub refresh_token_expires_in: Option<Duration>,
}

impl std::fmt::Debug for GithubTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubTokens")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_in", &self.expires_in)
            .field("refresh_token_expires_in", &self.refresh_token_expires_in)
            .finish()
    }
}

/// GitHub's extra token response field.
#[derive(Debug, Clone, Deserialize, Serialize)]
struct GithubTokenFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token_expires_in: Option<u64>,
}

impl ExtraTokenFields for GithubTokenFields {}

type TokenBody = oauth2::StandardTokenResponse<GithubTokenFields, BasicTokenType>;

/// An error body (GitHub sends it with HTTP 200, or 4xx for some requests).
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
    /// With `slow_down`: the new minimum interval.
    #[serde(default)]
    interval: Option<u64>,
}

/// A started web login: the URL to open and what is needed to redeem the code.
pub struct WebLogin {
    /// The authorization URL for the browser (holds no secret: only the PKCE challenge).
    pub url: String,
    /// The `state` the callback must carry.
    pub state: String,
    redirect_uri: String,
    verifier: PkceCodeVerifier,
}

impl Client<'_> {
    /// The authorization URL for a login redirected to `redirect_uri`, with fresh PKCE (S256)
    /// and `state`.
    pub fn web_login(&self, redirect_uri: &str, scopes: &[String]) -> Result<WebLogin, GithubError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = CsrfToken::new_random().secret().clone();
        let mut url = Url::parse(&self.urls.authorize()).map_err(|_| GithubError::InvalidUrl {
            flag: "github-url",
            url: self.urls.web.clone(),
            reason: "it does not make a valid authorization URL",
        })?;
        url.query_pairs_mut()
            .append_pair("client_id", self.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("code_challenge", challenge.as_str())
            .append_pair("code_challenge_method", "S256")
            .append_pair("allow_signup", "false");
        Ok(WebLogin {
            url: url.into(),
            state,
            redirect_uri: redirect_uri.to_owned(),
            verifier,
        })
    }

    /// Redeems the authorization code of `login` (client secret required).
    pub async fn exchange_code(
        &self,
        login: WebLogin,
        code: SecretString,
    ) -> Result<GithubTokens, GithubError> {
        let secret = self.client_secret.ok_or(GithubError::MissingClientSecret)?;
        let params = [
            ("client_id", self.client_id),
            ("client_secret", secret.expose_secret()),
            ("code", code.expose_secret()),
            ("redirect_uri", login.redirect_uri.as_str()),
            ("code_verifier", login.verifier.secret().as_str()),
        ];
        let reply = self.post_form(&self.urls.access_token(), &params).await?;
        match parse_token_reply(&self.urls.access_token(), &reply)? {
            Answer::Tokens(tokens) => Ok(tokens),
            Answer::Error(err) => Err(refusal(err)),
        }
    }

    /// Renews a GitHub App user token with its refresh token (client secret required).
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<GithubTokens, GithubError> {
        let secret = self.client_secret.ok_or(GithubError::MissingClientSecret)?;
        let params = [
            ("client_id", self.client_id),
            ("client_secret", secret.expose_secret()),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
        ];
        let reply = self.post_form(&self.urls.access_token(), &params).await?;
        match parse_token_reply(&self.urls.access_token(), &reply)? {
            Answer::Tokens(tokens) => Ok(tokens),
            Answer::Error(err) if err.error == "bad_refresh_token" => Err(GithubError::RefreshRejected {
                error: sanitize_code(&err.error),
            }),
            Answer::Error(err) => Err(refusal(err)),
        }
    }

    /// Starts the device flow: GitHub's user code and verification address.
    pub async fn start_device(&self, scopes: &[String]) -> Result<DeviceLogin, GithubError> {
        let url = self.urls.device_code();
        let scope = scopes.join(" ");
        let params = [("client_id", self.client_id), ("scope", scope.as_str())];
        let reply = self.post_form(&url, &params).await?;
        if let Ok(err) = serde_json::from_slice::<ErrorBody>(&reply.body) {
            return Err(refusal(err));
        }
        if !reply.status.is_success() {
            return Err(GithubError::HttpStatus {
                url: display_url(&url),
                status: reply.status.as_u16(),
                message: None,
            });
        }
        let body: oauth2::StandardDeviceAuthorizationResponse =
            serde_json::from_slice(&reply.body).map_err(|e| GithubError::Malformed {
                url: display_url(&url),
                reason: format!(
                    "not a device authorization response (line {} column {})",
                    e.line(),
                    e.column()
                ),
            })?;
        Ok(DeviceLogin {
            device_code: SecretString::from(body.device_code().secret().clone()),
            user_code: one_line(body.user_code().secret(), 64),
            verification_uri: one_line(body.verification_uri().as_str(), 500),
            expires_in: body.expires_in(),
            interval: device_poll::bounded_interval(Some(body.interval())),
        })
    }

    /// Polls the token endpoint until the user approves `device` (or denies it, or it expires,
    /// or `timeout` passes), with the rules of [`device_poll`]: the interval, `slow_down` (5 s
    /// more, or GitHub's new `interval` when longer), no poll after the deadline.
    pub async fn wait_for_device(
        &self,
        device: &DeviceLogin,
        timeout: Duration,
    ) -> Result<GithubTokens, GithubError> {
        let url = self.urls.access_token();
        let schedule = Schedule {
            interval: device.interval,
            expires_in: Some(device.expires_in),
            timeout,
        };
        let request = async || {
            let params = [
                ("client_id", self.client_id),
                ("device_code", device.device_code.expose_secret()),
                ("grant_type", DEVICE_CODE_GRANT),
            ];
            let reply = self.post_form(&url, &params).await?;
            device_answer(&url, &reply)
        };
        device_poll::poll(schedule, &mut TokioPacer::new(), request)
            .await
            .map_err(|stop| match stop {
                Stop::Denied => GithubError::DeviceDenied,
                Stop::Expired => GithubError::DeviceExpired,
                Stop::TimedOut => GithubError::DeviceTimeout {
                    secs: timeout.as_secs(),
                },
                Stop::Failed(err) => err,
            })
    }

    /// Revokes `token` (`DELETE <api>/applications/{client_id}/token`, HTTP Basic with the client
    /// id and secret). True when GitHub revoked it, false when it did not know it (already
    /// revoked or expired).
    pub async fn revoke(&self, token: &SecretString) -> Result<bool, GithubError> {
        let secret = self.client_secret.ok_or(GithubError::MissingClientSecret)?;
        let id: String = url::form_urlencoded::byte_serialize(self.client_id.as_bytes()).collect();
        let url = self.urls.api(&format!("/applications/{id}/token"));
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.client_id,
            secret.expose_secret()
        ));
        let mut auth = HeaderValue::from_str(&format!("Basic {basic}"))
            .map_err(|_| GithubError::HttpClient("cannot encode the client credentials".into()))?;
        auth.set_sensitive(true);
        let body = serde_json::json!({ "access_token": token.expose_secret() }).to_string();
        let req = self
            .http
            .delete(&url)
            .header(AUTHORIZATION, auth)
            .header(ACCEPT, HeaderValue::from_static("application/vnd.github+json"))
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
        let reply = send(req, &url, self.timeout).await?;
        match reply.status.as_u16() {
            200..=299 => Ok(true),
            404 | 422 => Ok(false),
            401 => Err(GithubError::Refused {
                error: "incorrect_client_credentials".into(),
                description: None,
            }),
            status => Err(GithubError::HttpStatus {
                url: display_url(&url),
                status,
                message: None,
            }),
        }
    }

    async fn post_form(&self, url: &str, params: &[(&str, &str)]) -> Result<Reply, GithubError> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.extend_pairs(params.iter().copied());
        let req = self
            .http
            .post(url)
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(form.finish());
        send(req, url, self.timeout).await
    }
}

/// A started device login.
pub struct DeviceLogin {
    device_code: SecretString,
    /// The code the user types at [`DeviceLogin::verification_uri`].
    pub user_code: String,
    /// Where the user enters the code (`https://github.com/login/device`).
    pub verification_uri: String,
    /// How long the code is valid.
    pub expires_in: Duration,
    /// The polling interval GitHub asked for.
    pub interval: Duration,
}

enum Answer {
    Tokens(GithubTokens),
    Error(ErrorBody),
}

/// Reads a token endpoint answer: an `error` body (whatever the status: GitHub uses 200), else a
/// token response; anything else is [`GithubError::Malformed`] or [`GithubError::HttpStatus`].
fn parse_token_reply(url: &str, reply: &Reply) -> Result<Answer, GithubError> {
    if let Ok(err) = serde_json::from_slice::<ErrorBody>(&reply.body) {
        return Ok(Answer::Error(err));
    }
    if !reply.status.is_success() {
        return Err(GithubError::HttpStatus {
            url: display_url(url),
            status: reply.status.as_u16(),
            message: None,
        });
    }
    let body: TokenBody = serde_json::from_slice(&reply.body).map_err(|e| GithubError::Malformed {
        url: display_url(url),
        // Never the body: it may hold a token.
        reason: format!(
            "neither a token response nor an error (JSON {} at line {} column {}); GitHub answers JSON only to `Accept: application/json`",
            match e.classify() {
                serde_json::error::Category::Data => "without the expected fields",
                _ => "unreadable",
            },
            e.line(),
            e.column()
        ),
    })?;
    let access = body.access_token().secret();
    if access.is_empty() {
        return Err(GithubError::Malformed {
            url: display_url(url),
            reason: "the access token is empty".into(),
        });
    }
    Ok(Answer::Tokens(GithubTokens {
        access_token: SecretString::from(access.clone()),
        refresh_token: body
            .refresh_token()
            .map(|t| SecretString::from(t.secret().clone()))
            .filter(|t| !t.expose_secret().is_empty()),
        expires_in: body.expires_in().filter(|d| !d.is_zero()),
        refresh_token_expires_in: body
            .extra_fields()
            .refresh_token_expires_in
            .filter(|s| *s > 0)
            .map(Duration::from_secs),
    }))
}

/// Reads the answer to a device access token request for the poller: GitHub's own `interval`
/// comes with `slow_down`; an error other than the RFC 8628 ones ends the wait.
fn device_answer(url: &str, reply: &Reply) -> Result<device_poll::Answer<GithubTokens>, GithubError> {
    Ok(match parse_token_reply(url, reply)? {
        Answer::Tokens(tokens) => device_poll::Answer::Tokens(tokens),
        Answer::Error(err) => match err.error.as_str() {
            "authorization_pending" => device_poll::Answer::Pending,
            "slow_down" => device_poll::Answer::SlowDown {
                interval: err.interval.map(Duration::from_secs),
            },
            "expired_token" => device_poll::Answer::Expired,
            "access_denied" => device_poll::Answer::Denied,
            _ => return Err(refusal(err)),
        },
    })
}

fn sanitize_code(code: &str) -> String {
    one_line(code, 80)
}

fn refusal(err: ErrorBody) -> GithubError {
    match err.error.as_str() {
        "access_denied" => GithubError::DeviceDenied,
        "expired_token" => GithubError::DeviceExpired,
        _ => GithubError::Refused {
            error: sanitize_code(&err.error),
            description: err
                .error_description
                .map(|d| one_line(d.trim().trim_end_matches('.'), 200))
                .filter(|d| !d.is_empty()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            location: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn http_200_error_bodies_are_errors_not_malformed_tokens() {
        let r = reply(
            200,
            r#"{"error":"incorrect_client_credentials","error_description":"The client_id and/or client_secret passed are incorrect.","error_uri":"https://docs.github.com"}"#,
        );
        let Ok(Answer::Error(err)) = parse_token_reply("https://github.com/login/oauth/access_token", &r)
        else {
            panic!("expected an error answer");
        };
        let text = refusal(err).to_string();
        assert!(text.contains("incorrect_client_credentials"), "{text}");
        assert!(!text.contains("missing field"), "{text}");
    }

    #[test]
    fn oauth_app_tokens_do_not_expire_and_app_tokens_do() {
        let r = reply(
            200,
            r#"{"access_token":"gho_abc","token_type":"bearer","scope":"read:org"}"#,
        );
        let Ok(Answer::Tokens(t)) = parse_token_reply("u", &r) else {
            panic!()
        };
        assert_eq!(t.access_token.expose_secret(), "gho_abc");
        assert!(t.expires_in.is_none() && t.refresh_token.is_none());

        let r = reply(
            200,
            r#"{"access_token":"ghu_x","expires_in":28800,"refresh_token":"ghr_y","refresh_token_expires_in":15897600,"token_type":"bearer","scope":""}"#,
        );
        let Ok(Answer::Tokens(t)) = parse_token_reply("u", &r) else {
            panic!()
        };
        assert_eq!(t.expires_in, Some(Duration::from_secs(28800)));
        assert_eq!(t.refresh_token.unwrap().expose_secret(), "ghr_y");
        assert_eq!(t.refresh_token_expires_in, Some(Duration::from_secs(15_897_600)));
    }

    #[test]
    fn non_json_bodies_are_malformed_without_quoting_them() {
        let r = reply(200, "access_token=gho_secret&scope=read%3Aorg&token_type=bearer");
        let err = parse_token_reply("https://github.com/login/oauth/access_token", &r)
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(text.contains("Accept: application/json"), "{text}");
        assert!(!text.contains("gho_secret"), "{text}");
        let err = parse_token_reply("u", &reply(502, "<html>bad gateway</html>"))
            .err()
            .unwrap();
        assert!(
            matches!(err, GithubError::HttpStatus { status: 502, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn device_errors_map_to_their_own_variants() {
        let body = |e: &str| ErrorBody {
            error: e.into(),
            error_description: None,
            interval: None,
        };
        assert!(matches!(
            refusal(body("access_denied")),
            GithubError::DeviceDenied
        ));
        assert!(matches!(
            refusal(body("expired_token")),
            GithubError::DeviceExpired
        ));
        let text = refusal(body("device_flow_disabled")).to_string();
        assert!(text.contains("enable Device Flow"), "{text}");
    }

    #[test]
    fn device_answers_are_read_for_the_poller_with_githubs_slow_down_interval() {
        let url = "https://github.com/login/oauth/access_token";
        let answer = |body: &str| device_answer(url, &reply(200, body));
        assert!(matches!(
            answer(r#"{"error":"authorization_pending"}"#),
            Ok(device_poll::Answer::Pending)
        ));
        assert!(matches!(
            answer(r#"{"error":"slow_down","interval":10}"#),
            Ok(device_poll::Answer::SlowDown { interval: Some(i) }) if i == Duration::from_secs(10)
        ));
        assert!(matches!(
            answer(r#"{"error":"slow_down"}"#),
            Ok(device_poll::Answer::SlowDown { interval: None })
        ));
        assert!(matches!(
            answer(r#"{"error":"access_denied"}"#),
            Ok(device_poll::Answer::Denied)
        ));
        assert!(matches!(
            answer(r#"{"error":"expired_token"}"#),
            Ok(device_poll::Answer::Expired)
        ));
        let Ok(device_poll::Answer::Tokens(tokens)) =
            answer(r#"{"access_token":"gho_abc","token_type":"bearer","scope":""}"#)
        else {
            panic!("expected tokens")
        };
        assert_eq!(tokens.access_token.expose_secret(), "gho_abc");
        let err = answer(r#"{"error":"device_flow_disabled"}"#).err().unwrap();
        assert!(err.to_string().contains("enable Device Flow"), "{err}");
    }

    #[test]
    fn web_login_url_carries_pkce_s256_state_and_scope() {
        let urls = GithubUrls::new(Some("http://127.0.0.1:1"), None).unwrap();
        let http = reqwest::Client::new();
        let client = Client {
            urls: &urls,
            http: &http,
            timeout: Duration::from_secs(1),
            client_id: "cid",
            client_secret: None,
        };
        let login = client
            .web_login("http://127.0.0.1:5000/callback", &["read:org".into()])
            .unwrap();
        let url = Url::parse(&login.url).unwrap();
        assert_eq!(url.path(), "/login/oauth/authorize");
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["client_id"], "cid");
        assert_eq!(q["scope"], "read:org");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["state"], login.state);
        assert_eq!(q["redirect_uri"], "http://127.0.0.1:5000/callback");
        // The challenge is the S256 of the verifier kept for the exchange.
        let digest = <sha2::Sha256 as sha2::Digest>::digest(login.verifier.secret().as_bytes());
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
        assert_eq!(q["code_challenge"], expected);
    }
}
