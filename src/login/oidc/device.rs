//! The device authorization grant (RFC 8628), for machines where no browser can reach the
//! loopback redirect: koidc asks the provider for a user code, the person enters it on any device,
//! and koidc polls the token endpoint until the login is approved, denied, expired or timed out.
//!
//! The polling rules (the provider's `interval`, 5 s when absent; 5 s more on every `slow_down`;
//! never a poll after the deadline, the caller's timeout or the code's `expires_in`, whichever
//! comes first) are [`crate::login::device_poll`]'s, shared with GitHub's device flow; this module
//! sends one token request and reads its answer. The ID token is verified like the authorization
//! code flow's, except for the nonce: the device grant has no nonce parameter, so none is
//! expected.
//!
//! The device authorization request carries a PKCE (RFC 7636, S256) challenge and every poll
//! its verifier: Keycloak refuses the device grant to a client that enforces PKCE without them
//! ("Missing parameter: code_challenge_method"), and providers that know no PKCE for this
//! grant ignore the extra parameters (RFC 6749 3.1, 3.2).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use openidconnect::PkceCodeChallenge;
use openidconnect::core::CoreClientAuthMethod;

use super::client::{OAuthErrorBody, Provider, TokenResponseBody, sanitize_oauth_error};
use super::error::OidcError;
use super::http::{self, ClientAuth, display_url, one_line};
use crate::login::device_poll::{
    self, Answer, DEVICE_CODE_GRANT, Pacer, Schedule, Stop, TokioPacer, bounded_interval,
};
use crate::login::token::TokenSet;

/// Longest user code koidc shows (they are meant to be typed: 8-ish characters).
const MAX_USER_CODE: usize = 64;

/// A started device authorization: what to show the user, and the device code to poll with.
pub struct DeviceAuthorization {
    /// The code the user enters at [`Self::verification_uri`].
    pub user_code: String,
    /// Where the user enters the code.
    pub verification_uri: String,
    /// The verification URI with the code already filled in, when the provider gives one.
    pub verification_uri_complete: Option<String>,
    /// How long the device code is valid, when the provider says.
    pub expires_in: Option<Duration>,
    /// The initial polling interval.
    pub interval: Duration,
    device_code: SecretString,
    /// The PKCE verifier whose S256 challenge the authorization request carried.
    pkce_verifier: SecretString,
}

impl std::fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("verification_uri_complete", &self.verification_uri_complete)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// The device authorization response (RFC 8628 3.2). No `Debug`: it holds the device code.
#[derive(Deserialize)]
struct DeviceAuthorizationBody {
    #[serde(default)]
    device_code: Option<String>,
    #[serde(default)]
    user_code: Option<String>,
    /// Google spells it `verification_url`.
    #[serde(default, alias = "verification_url")]
    verification_uri: Option<String>,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    interval: Option<serde_json::Value>,
}

impl Provider {
    /// True when discovery advertises a device authorization endpoint.
    pub fn supports_device_flow(&self) -> bool {
        self.device_authorization_endpoint().is_some()
    }

    /// Starts a device authorization (RFC 8628 3.1): POSTs the client id (authenticated like at
    /// the token endpoint, but with `client_secret_post` when advertised) and the scopes to the
    /// advertised endpoint.
    pub async fn start_device_authorization(&self) -> Result<DeviceAuthorization, OidcError> {
        let endpoint = self
            .device_authorization_endpoint()
            .ok_or(OidcError::NoDeviceEndpoint)?;
        let url = Url::parse(endpoint).map_err(|_| OidcError::Malformed {
            url: self.issuer().to_owned(),
            reason: "its device_authorization_endpoint is not a URL".into(),
        })?;
        let scope = self.scope();
        // A confidential client authenticates as at the token endpoint, except that the secret
        // goes in the form whenever the provider accepts it there: Dex reads it only from the
        // form at this endpoint (and checks it again when the user approves).
        let post_advertised = self
            .metadata
            .token_endpoint_auth_methods_supported()
            .is_some_and(|m| m.contains(&CoreClientAuthMethod::ClientSecretPost));
        let client = http::ClientCredentials {
            auth: if post_advertised && self.cfg.client_secret.is_some() {
                ClientAuth::Post
            } else {
                self.auth
            },
            id: &self.cfg.client_id,
            secret: self.cfg.client_secret.as_ref(),
        };
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        // The `--auth-param` parameters too (RFC 8628 3.1 allows extensions; a provider that
        // does not know one ignores it, as RFC 6749 3.1 asks).
        let mut params = vec![
            ("scope", scope.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        params.extend(self.cfg.request.auth_params.pairs());
        let reply = http::post_form(&self.http, &url, self.cfg.http_timeout, &params, &client).await?;
        let malformed = |reason: &str| OidcError::Malformed {
            url: display_url(&url),
            reason: reason.into(),
        };
        // Some providers (GitHub) send OAuth errors with HTTP 200.
        if let Ok(err) = serde_json::from_slice::<OAuthErrorBody>(&reply.body) {
            let (error, description) = sanitize_oauth_error(&err, &self.client_secret_list());
            return Err(OidcError::DeviceAuthorizationRefused { error, description });
        }
        if reply.status.is_client_error() {
            // Refused without an OAuth error body: the page's words are the provider's reason.
            let text = super::page::page_text(&String::from_utf8_lossy(&reply.body));
            return Err(OidcError::DeviceAuthorizationRefused {
                error: format!("HTTP {}", reply.status.as_u16()),
                description: Some(one_line(&text, 200)).filter(|t| !t.is_empty()),
            });
        }
        if reply.status != reqwest::StatusCode::OK {
            return Err(OidcError::HttpStatus {
                url: display_url(&url),
                status: reply.status.as_u16(),
            });
        }
        let body: DeviceAuthorizationBody = serde_json::from_slice(&reply.body)
            .map_err(|_| malformed("not a JSON device authorization response"))?;
        let device_code = body
            .device_code
            .filter(|c| !c.is_empty())
            .ok_or_else(|| malformed("it has no device_code"))?;
        let user_code = body
            .user_code
            .filter(|c| {
                !c.is_empty()
                    && c.len() <= MAX_USER_CODE
                    && c.chars().all(|ch| ch.is_ascii_graphic() || ch == ' ')
            })
            .ok_or_else(|| malformed("it has no usable user_code"))?;
        let verification_uri = body
            .verification_uri
            .as_deref()
            .and_then(web_url)
            .ok_or_else(|| malformed("it has no http(s) verification_uri"))?;
        let verification_uri_complete = body.verification_uri_complete.as_deref().and_then(web_url);
        let interval = bounded_interval(seconds(body.interval.as_ref()).map(Duration::from_secs));
        let expires_in = seconds(body.expires_in.as_ref())
            .filter(|s| *s > 0)
            .map(Duration::from_secs);
        Ok(DeviceAuthorization {
            user_code,
            verification_uri,
            verification_uri_complete,
            expires_in,
            interval,
            device_code: SecretString::from(device_code),
            pkce_verifier: SecretString::from(verifier.secret().clone()),
        })
    }

    /// Polls the token endpoint until the user approves the login (then verifies the ID token,
    /// without a nonce), or it is denied ([`OidcError::DeviceAccessDenied`]), the code expires
    /// ([`OidcError::DeviceCodeExpired`]) or `timeout` passes ([`OidcError::DeviceTimeout`],
    /// counted from this call, which follows [`Self::start_device_authorization`]).
    pub async fn wait_for_device_token(
        &self,
        auth: &DeviceAuthorization,
        timeout: Duration,
    ) -> Result<TokenSet, OidcError> {
        self.poll_device_token(auth, timeout, &mut TokioPacer::new())
            .await
    }

    /// [`Self::wait_for_device_token`] with an explicit pacer.
    pub(crate) async fn poll_device_token(
        &self,
        auth: &DeviceAuthorization,
        timeout: Duration,
        pacer: &mut impl Pacer,
    ) -> Result<TokenSet, OidcError> {
        let schedule = Schedule {
            interval: auth.interval,
            expires_in: auth.expires_in,
            timeout,
        };
        device_poll::poll(schedule, pacer, async || self.poll_device_once(auth).await)
            .await
            .map_err(|stop| match stop {
                Stop::Denied => OidcError::DeviceAccessDenied,
                Stop::Expired => OidcError::DeviceCodeExpired,
                Stop::TimedOut => OidcError::DeviceTimeout {
                    secs: timeout.as_secs(),
                },
                Stop::Failed(err) => err,
            })
    }

    /// One device access token request (RFC 8628 3.4, 3.5).
    async fn poll_device_once(&self, auth: &DeviceAuthorization) -> Result<Answer<TokenSet>, OidcError> {
        let params = [
            ("grant_type", DEVICE_CODE_GRANT),
            ("device_code", auth.device_code.expose_secret()),
            ("code_verifier", auth.pkce_verifier.expose_secret()),
        ];
        let reply = self.post(&self.token_url, &params).await?;
        // OAuth errors, including the ones sent with HTTP 200 (GitHub).
        if let Ok(err) = serde_json::from_slice::<OAuthErrorBody>(&reply.body) {
            return match err.error.as_str() {
                "authorization_pending" => Ok(Answer::Pending),
                "slow_down" => Ok(Answer::SlowDown { interval: None }),
                "access_denied" => Ok(Answer::Denied),
                "expired_token" => Ok(Answer::Expired),
                _ => {
                    let mut secrets = self.client_secret_list();
                    secrets.push(auth.device_code.expose_secret());
                    secrets.push(auth.pkce_verifier.expose_secret());
                    let (error, description) = sanitize_oauth_error(&err, &secrets);
                    Err(OidcError::TokenRequest { error, description })
                }
            };
        }
        if reply.status != reqwest::StatusCode::OK {
            return Err(OidcError::HttpStatus {
                url: display_url(&self.token_url),
                status: reply.status.as_u16(),
            });
        }
        let body: TokenResponseBody = serde_json::from_slice(&reply.body)
            .map_err(|_| OidcError::BadTokenResponse(display_url(&self.token_url)))?;
        // The device grant sends no nonce, so the ID token carries none to compare.
        Ok(Answer::Tokens(self.login_tokens(body, None).await?))
    }

    fn client_secret_list(&self) -> Vec<&str> {
        self.cfg.client_secret.iter().map(|s| s.expose_secret()).collect()
    }
}

/// `raw` when it is an absolute http(s) URL fit to print on one line.
fn web_url(raw: &str) -> Option<String> {
    let url = Url::parse(raw).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return None;
    }
    let shown = one_line(raw, 2000);
    (shown == raw).then_some(shown)
}

/// A number of seconds given as a JSON number or a numeric string.
fn seconds(v: Option<&serde_json::Value>) -> Option<u64> {
    match v? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}
