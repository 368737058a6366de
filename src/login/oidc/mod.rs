//! The identity provider: discovery, authorization code + PKCE, refresh, ID token verification,
//! revocation.
//!
//! Everything here needs the network, so none of it runs on the warm path: [`Provider::discover`]
//! builds the HTTP client and fetches the discovery document and the JWKS; the other methods
//! use them. Discovery types, PKCE, state/nonce generation and ID token verification come from the
//! `openidconnect` crate (see [`verify`]); the token and revocation requests are plain form
//! POSTs made here, so that status codes, body limits and secret-free error messages stay under
//! koidc's control (and because `oauth2`'s revocation refuses `http` endpoints, which the loopback
//! test IdPs use). Discovery refuses every endpoint that is not https (plain http only on loopback
//! addresses behind an http loopback issuer), before anything is sent to it.
//!
//! INTERFACE: [`OidcConfig`], [`Provider::discover`], [`Provider::authorization_request`],
//! [`Provider::preflight_authorization`] (see [`probe`]), [`Provider::exchange_code`],
//! [`Provider::refresh`], [`Provider::revoke`]; the device grant
//! ([`Provider::start_device_authorization`], [`Provider::wait_for_device_token`], see
//! [`device`]); keyboard mode ([`AuthRequest::code_from_pasted`], see [`paste`]). Transport
//! errors say in the user's terms when an https server answered plain HTTP or its certificate
//! needs `--certificate-authority`.

pub mod device;
mod http;
pub mod paste;
pub mod probe;
mod verify;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey,
    CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, ProviderMetadata,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::clock::Clock;
use crate::login::callback::Expected;
use crate::login::token::{IdTokenInfo, TokenSet};

use self::http::{ClientAuth, Reply, display_url, one_line};
pub use self::paste::PasteError;
pub use self::verify::{ASYMMETRIC_ALGS, Rejection};

/// Where an issuer's discovery document is, below the issuer URL.
pub(crate) const DISCOVERY_SUFFIX: &str = "/.well-known/openid-configuration";

/// Errors talking to the identity provider. Messages never contain a token, the authorization
/// code, the PKCE verifier or the client secret.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The configured issuer is not an absolute http(s) URL.
    #[error("the issuer {issuer:?} is not a valid http(s) URL ({reason}); fix the issuer setting")]
    InvalidIssuer {
        /// The configured issuer.
        issuer: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The redirect URI passed to [`Provider::authorization_request`] is not a valid URL.
    #[error("the redirect URI {0:?} is not a valid URL")]
    InvalidRedirectUri(String),
    /// An extra CA (`--certificate-authority` file or `--certificate-authority-data`) cannot be
    /// used.
    #[error(transparent)]
    Ca(#[from] crate::http::CaError),
    /// The HTTP client cannot be built (TLS backend failure).
    #[error("cannot set up the HTTP client: {0}")]
    HttpClient(String),
    /// The connection failed (refused, DNS, TLS...).
    #[error(
        "cannot reach the issuer {url}: {reason}; check the issuer URL and that the identity provider is running"
    )]
    Unreachable {
        /// The URL requested.
        url: String,
        /// The innermost cause.
        reason: String,
    },
    /// An https request was answered in plain HTTP: the port serves http, not TLS.
    #[error(
        "the server at {url} answered plain HTTP, not HTTPS; check the port in the issuer URL (http:// is accepted only for a test server on this machine)"
    )]
    PlainHttp {
        /// The URL requested.
        url: String,
    },
    /// An http:// request was answered by a server that speaks HTTPS on that port (Go servers
    /// answer 400 "Client sent an HTTP request to an HTTPS server.", others a TLS record).
    #[error("the server at {url} speaks HTTPS, not plain HTTP: use {hint}")]
    ServerSpeaksHttps {
        /// The URL requested.
        url: String,
        /// The https:// address to use instead (`--issuer https://…` for the discovery URL).
        hint: String,
    },
    /// The server's certificate is signed by a CA koidc does not trust (a private CA).
    #[error(
        "the certificate of {url} is not signed by a CA koidc trusts (the system's, or those given with --certificate-authority); for a private CA, pass its PEM file with --certificate-authority"
    )]
    UntrustedCertificate {
        /// The URL requested.
        url: String,
    },
    /// No answer within the configured HTTP timeout.
    #[error(
        "the identity provider did not answer {url} within {timeout:?}; try again or raise the HTTP timeout"
    )]
    Timeout {
        /// The URL requested.
        url: String,
        /// The per-request timeout.
        timeout: Duration,
    },
    /// An unexpected HTTP status (redirects included: they are never followed).
    #[error("{url} answered HTTP {status}{}; check the issuer URL", redirect_hint(.status))]
    HttpStatus {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
    },
    /// A response that is not the expected JSON document.
    #[error(
        "{url} returned a malformed response ({reason}); check that the issuer is an OpenID Connect provider"
    )]
    Malformed {
        /// The URL requested.
        url: String,
        /// What is wrong with it (never the body of a token response).
        reason: String,
    },
    /// The discovery document names another issuer than the configured one.
    #[error(
        "the discovery document names the issuer {discovered:?} but the configured issuer is {expected:?}; set the issuer exactly as the provider names it (a trailing slash matters)"
    )]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The `issuer` of the discovery document.
        discovered: String,
    },
    /// The discovery document names an endpoint koidc would talk to (or send the browser to) over
    /// plain http although the issuer is https — or, for an http loopback issuer, an http
    /// endpoint off this machine: codes, the PKCE verifier, the client secret and tokens would
    /// cross the network in cleartext.
    #[error(
        "the discovery document of {issuer} names {member} {url}, which is not https: koidc would send codes, secrets or tokens there in cleartext, so it refuses; configure the identity provider to publish https endpoints (plain http is accepted only on loopback addresses, for an http loopback issuer)"
    )]
    InsecureEndpoint {
        /// The configured issuer.
        issuer: String,
        /// The discovery member (`token_endpoint`, `jwks_uri`, ...).
        member: &'static str,
        /// The endpoint, without query.
        url: String,
    },
    /// The provider advertises no ID token signing algorithm koidc accepts.
    #[error(
        "the identity provider signs ID tokens only with {0}, which koidc does not accept; configure it to use an asymmetric algorithm such as RS256"
    )]
    NoAcceptableAlgorithm(String),
    /// The token endpoint answered with an OAuth error.
    #[error("the token endpoint refused the request: {error}{}; check the client id, secret and redirect URI settings, then log in again", desc(.description))]
    TokenRequest {
        /// The OAuth `error` code (sanitised).
        error: String,
        /// The `error_description` (sanitised, capped).
        description: Option<String>,
    },
    /// The refresh token is no longer valid (`invalid_grant`; Dex also answers `invalid_request`
    /// for a reused or expired refresh token). The caller should log in again.
    #[error("the identity provider rejected the refresh token ({error}{}); log in again", desc(.description))]
    RefreshRejected {
        /// The OAuth `error` code (sanitised).
        error: String,
        /// The `error_description` (sanitised, capped).
        description: Option<String>,
    },
    /// The authorization code exchange returned no ID token.
    #[error("the token response has no ID token; check that the client is allowed the openid scope")]
    MissingIdToken,
    /// The refresh response returned no ID token: a full login is needed.
    #[error(
        "the refresh response has no ID token, so the credential cannot be renewed; a full login is needed"
    )]
    RefreshWithoutIdToken,
    /// A refresh answered with an ID token for another identity than the cached one: OpenID
    /// Connect Core 12.2 requires the same `iss`, `sub` and `aud`. The answer is refused; the
    /// caller should fall back to a full login.
    #[error(
        "the identity provider answered the refresh for another identity ({claim} {got} instead of {cached}); refusing it (OpenID Connect Core 12.2)"
    )]
    RefreshIdentityChanged {
        /// The claim that differs (`iss`, `sub` or `aud`).
        claim: &'static str,
        /// Its value in the cached ID token (quoted, capped).
        cached: String,
        /// Its value in the refreshed one (quoted, capped).
        got: String,
    },
    /// The refresh succeeded but its ID token cannot be verified now, for a reason that may
    /// pass (the provider's signing keys could not be fetched). `rotated` is the new refresh
    /// token when the provider issued one: the old one may already be invalid (Okta revokes the
    /// whole token family when a rotated-away refresh token is used again), so the caller must
    /// keep it for the next try. The unverified ID token is dropped.
    #[error("the identity provider renewed the token, but the new ID token cannot be verified yet: {cause}")]
    RefreshUnverified {
        /// Why the ID token could not be verified.
        cause: Box<OidcError>,
        /// The refresh token to use next, when the provider rotated it.
        rotated: Option<SecretString>,
    },
    /// A token response that is not valid JSON (the body is never shown).
    #[error("the token endpoint {0} returned a response that is not a JSON token response; check the issuer")]
    BadTokenResponse(String),
    /// The ID token failed verification. The rejection is part of the message, so it is not
    /// also the error's `source()` (an error chain would print it twice).
    #[error("ID token rejected: {0}")]
    IdTokenRejected(Rejection),
    /// The provider advertises no device authorization endpoint (RFC 8628).
    #[error(
        "the identity provider advertises no device authorization endpoint (device_authorization_endpoint in its discovery document); use the authorization code grant (--grant authcode)"
    )]
    NoDeviceEndpoint,
    /// The device authorization endpoint answered with an OAuth error.
    #[error("the device authorization endpoint refused the request: {error}{}; check --client-id and that the client is allowed the device grant", desc(.description))]
    DeviceAuthorizationRefused {
        /// The OAuth `error` code (sanitised).
        error: String,
        /// The `error_description` (sanitised, capped).
        description: Option<String>,
    },
    /// The user (or the provider) denied the device login (`access_denied`).
    #[error(
        "the device login was denied at the identity provider (access_denied); run `koidc login` to try again"
    )]
    DeviceAccessDenied,
    /// The device code expired before the user approved the login (`expired_token`, or the
    /// code's `expires_in` passed).
    #[error("the device code expired before the login was approved; run `koidc login` to try again")]
    DeviceCodeExpired,
    /// The user did not approve the device login within the configured timeout.
    #[error(
        "the device login was not approved within {secs}s; run `koidc login` to try again (or raise --timeout)"
    )]
    DeviceTimeout {
        /// The timeout, in whole seconds.
        secs: u64,
    },
    /// Asked before the browser opens ([`Provider::preflight_authorization`]), the authorization
    /// endpoint sent the login request straight back to the redirect URI with an OAuth error.
    #[error("the identity provider refused the login request: {error}{}; check the client settings at the identity provider", desc(.description))]
    AuthorizeRefused {
        /// The OAuth `error` code (sanitised).
        error: String,
        /// The `error_description` (sanitised, capped).
        description: Option<String>,
    },
    /// Asked before the browser opens ([`Provider::preflight_authorization`]), the authorization
    /// endpoint answered with an error page: it cannot even redirect back (an unknown client or an
    /// unregistered redirect URI).
    #[error("{}", authorize_page_message(self))]
    AuthorizeErrorPage {
        /// The HTTP status.
        status: u16,
        /// The OAuth error code found on the page, if any.
        error: Option<String>,
        /// The page's text, on one line, capped.
        text: String,
        /// The redirect URI koidc sent.
        redirect_uri: String,
        /// The client id koidc sent (one line, capped).
        client_id: String,
        /// Whether the page objects to the redirect URI rather than to the client.
        about_redirect: bool,
    },
    /// The revocation endpoint answered with an OAuth error.
    #[error("the revocation endpoint refused the request: {error}{}; the local tokens can still be deleted", desc(.description))]
    RevocationRefused {
        /// The OAuth `error` code (sanitised).
        error: String,
        /// The `error_description` (sanitised, capped).
        description: Option<String>,
    },
}

fn redirect_hint(status: &u16) -> &'static str {
    if (300..400).contains(status) {
        " (a redirect; koidc does not follow redirects)"
    } else {
        ""
    }
}

/// The message of [`OidcError::AuthorizeErrorPage`]: the provider's page, and what to check.
fn authorize_page_message(err: &OidcError) -> String {
    let OidcError::AuthorizeErrorPage {
        status,
        error,
        text,
        redirect_uri,
        client_id,
        about_redirect,
    } = err
    else {
        return String::new();
    };
    let page = probe::describe_page(*status, error.as_deref(), text);
    if *about_redirect {
        format!(
            "the identity provider refused the redirect URI {redirect_uri} ({page}); register it as a redirect URI of client {client_id:?} at the identity provider, or listen on a registered one (--listen)"
        )
    } else {
        format!(
            "the identity provider refused the login request of client {client_id:?} ({page}); check --client-id against the client's registration at the identity provider (and its redirect URIs)"
        )
    }
}

fn desc(d: &Option<String>) -> String {
    d.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
}

impl From<Rejection> for OidcError {
    fn from(rejection: Rejection) -> Self {
        Self::IdTokenRejected(rejection)
    }
}

/// What koidc needs to know about the IdP and the client.
#[derive(Clone)]
pub struct OidcConfig {
    /// Issuer URL, compared byte for byte with discovery and tokens.
    pub issuer: String,
    /// OAuth client id (the token's audience).
    pub client_id: String,
    /// Client secret, for confidential clients.
    pub client_secret: Option<SecretString>,
    /// Scopes besides `openid`.
    pub scopes: Vec<String>,
    /// Extra trusted CA certificates (PEM files).
    pub extra_ca_files: Vec<PathBuf>,
    /// Extra trusted CA certificates as the base64 of PEM text (`--certificate-authority-data`).
    pub extra_ca_data: Option<String>,
    /// Timeout of each HTTP request.
    pub http_timeout: Duration,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("scopes", &self.scopes)
            .field("extra_ca_files", &self.extra_ca_files)
            .field(
                "extra_ca_data",
                &self.extra_ca_data.as_ref().map(|_| "<base64 PEM>"),
            )
            .field("http_timeout", &self.http_timeout)
            .finish()
    }
}

/// Discovery metadata koidc reads beyond what the `openidconnect` crate models.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraProviderMetadata {
    /// RFC 7009 token revocation endpoint.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// RFC 8628 device authorization endpoint.
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    /// RFC 9207: the authorization response carries `iss`.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// OpenID Connect RP-initiated logout endpoint.
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}
impl AdditionalProviderMetadata for ExtraProviderMetadata {}

/// The discovery document.
type Metadata = ProviderMetadata<
    ExtraProviderMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// A started authorization request: the URL for the browser and what to check the answer with.
pub struct AuthRequest {
    /// The authorization URL to open.
    pub url: String,
    /// The `state` value the callback must carry.
    pub state: String,
    /// The redirect URI used.
    pub redirect_uri: String,
    /// The issuer; when the callback carries `iss` (RFC 9207) it must equal this byte for byte.
    pub issuer: String,
    /// True when discovery advertises `authorization_response_iss_parameter_supported`: then a
    /// callback without `iss` must be rejected.
    pub iss_required: bool,
    nonce: SecretString,
    pkce_verifier: SecretString,
}

impl AuthRequest {
    /// What the authorization response must carry: this request's `state`, and its issuer as
    /// `iss` (RFC 9207), required when the provider advertises it. Checked by
    /// [`crate::login::callback`], for the loopback redirect and for keyboard mode alike.
    pub fn expected(&self) -> Expected<'_> {
        Expected {
            state: &self.state,
            issuer: Some(&self.issuer),
            iss_required: self.iss_required,
        }
    }
}

impl std::fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthRequest")
            .field("url", &self.url)
            .field("state", &self.state)
            .field("redirect_uri", &self.redirect_uri)
            .field("issuer", &self.issuer)
            .field("iss_required", &self.iss_required)
            .finish_non_exhaustive()
    }
}

/// A discovered identity provider.
pub struct Provider {
    cfg: OidcConfig,
    issuer: IssuerUrl,
    metadata: Metadata,
    token_url: Url,
    revocation_url: Option<Url>,
    http: reqwest::Client,
    jwks: Mutex<CoreJsonWebKeySet>,
    algs: Vec<CoreJwsSigningAlgorithm>,
    auth: ClientAuth,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.cfg.issuer)
            .finish_non_exhaustive()
    }
}

/// The fields of a successful token response koidc uses. No `Debug`: it holds tokens.
#[derive(Deserialize)]
struct TokenResponseBody {
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// An OAuth error response (RFC 6749 5.2).
#[derive(Deserialize)]
struct OAuthErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl Provider {
    /// Fetches discovery metadata and the JWKS.
    ///
    /// Builds the HTTP client (no redirects, `cfg.http_timeout` per request, `cfg.extra_ca_files`
    /// trusted), checks that the document's `issuer` equals `cfg.issuer` byte for byte, and picks
    /// the accepted ID token algorithms (asymmetric ones, narrowed to those advertised).
    pub async fn discover(cfg: &OidcConfig, clock: Arc<dyn Clock>) -> Result<Self, OidcError> {
        let invalid = |reason: String| OidcError::InvalidIssuer {
            issuer: cfg.issuer.clone(),
            reason,
        };
        let issuer = IssuerUrl::new(cfg.issuer.clone()).map_err(|e| invalid(e.to_string()))?;
        if !matches!(issuer.url().scheme(), "http" | "https") {
            return Err(invalid(
                "the scheme must be https (or http for a local test IdP)".into(),
            ));
        }
        let discovery_url = issuer
            .join(DISCOVERY_SUFFIX.trim_start_matches('/'))
            .map_err(|e| invalid(e.to_string()))?;

        let http = http::build_client(cfg)?;
        let reply = http::get(&http, &discovery_url, cfg.http_timeout).await?;
        let metadata: Metadata = parse_document(&reply, &discovery_url)?;
        if metadata.issuer().as_str() != cfg.issuer {
            return Err(OidcError::IssuerMismatch {
                expected: cfg.issuer.clone(),
                discovered: one_line(metadata.issuer().as_str(), 200),
            });
        }
        let malformed = |reason: &str| OidcError::Malformed {
            url: display_url(&discovery_url),
            reason: reason.into(),
        };
        check_endpoints(&cfg.issuer, issuer.url(), &metadata)?;
        let token_url = metadata
            .token_endpoint()
            .map(|t| t.url().clone())
            .ok_or_else(|| malformed("it has no token_endpoint"))?;
        let revocation_url = match metadata.additional_metadata().revocation_endpoint.as_deref() {
            Some(s) => Some(Url::parse(s).map_err(|_| malformed("its revocation_endpoint is not a URL"))?),
            None => None,
        };

        let advertised = metadata.id_token_signing_alg_values_supported();
        let algs: Vec<_> = if advertised.is_empty() {
            ASYMMETRIC_ALGS.to_vec()
        } else {
            ASYMMETRIC_ALGS
                .iter()
                .filter(|a| advertised.contains(a))
                .cloned()
                .collect()
        };
        if algs.is_empty() {
            let names: Vec<_> = advertised.iter().map(verify::alg_name).collect();
            return Err(OidcError::NoAcceptableAlgorithm(names.join(", ")));
        }

        let auth = match (
            &cfg.client_secret,
            metadata.token_endpoint_auth_methods_supported(),
        ) {
            (None, _) => ClientAuth::None,
            (Some(_), Some(methods))
                if !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                    && methods.contains(&CoreClientAuthMethod::ClientSecretPost) =>
            {
                ClientAuth::Post
            }
            (Some(_), _) => ClientAuth::Basic,
        };

        let jwks = fetch_jwks(&http, metadata.jwks_uri().url(), cfg.http_timeout).await?;
        Ok(Self {
            cfg: cfg.clone(),
            issuer,
            metadata,
            token_url,
            revocation_url,
            http,
            jwks: Mutex::new(jwks),
            algs,
            auth,
            clock,
        })
    }

    /// The issuer, as configured (and as discovery confirmed it).
    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// True when the provider advertises `authorization_response_iss_parameter_supported`.
    pub fn iss_parameter_supported(&self) -> bool {
        self.metadata
            .additional_metadata()
            .authorization_response_iss_parameter_supported
            == Some(true)
    }

    #[cfg(test)]
    /// The RFC 7009 revocation endpoint, when advertised.
    pub fn revocation_endpoint(&self) -> Option<&str> {
        self.metadata.additional_metadata().revocation_endpoint.as_deref()
    }

    /// The RFC 8628 device authorization endpoint, when advertised.
    pub fn device_authorization_endpoint(&self) -> Option<&str> {
        self.metadata
            .additional_metadata()
            .device_authorization_endpoint
            .as_deref()
    }

    #[cfg(test)]
    /// The RP-initiated logout endpoint, when advertised.
    pub fn end_session_endpoint(&self) -> Option<&str> {
        self.metadata
            .additional_metadata()
            .end_session_endpoint
            .as_deref()
    }

    /// The scope parameter: `openid` then the configured scopes, without duplicates.
    fn scope(&self) -> String {
        let mut scopes: Vec<&str> = vec!["openid"];
        for s in self.cfg.scopes.iter().flat_map(|s| s.split_whitespace()) {
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        scopes.join(" ")
    }

    /// Starts an authorization code + PKCE (S256) request with fresh state and nonce.
    ///
    /// The verifier is 32 random bytes (base64url), state and nonce 32 random bytes each.
    pub fn authorization_request(&self, redirect_uri: &str) -> Result<AuthRequest, OidcError> {
        Url::parse(redirect_uri).map_err(|_| OidcError::InvalidRedirectUri(one_line(redirect_uri, 200)))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = CsrfToken::new_random_len(32);
        let nonce = Nonce::new_random_len(32);
        let mut url = self.metadata.authorization_endpoint().url().clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.cfg.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.scope())
            .append_pair("state", state.secret())
            .append_pair("nonce", nonce.secret())
            .append_pair("code_challenge", challenge.as_str())
            .append_pair("code_challenge_method", "S256");
        Ok(AuthRequest {
            url: url.into(),
            state: state.secret().clone(),
            redirect_uri: redirect_uri.to_owned(),
            issuer: self.cfg.issuer.clone(),
            iss_required: self.iss_parameter_supported(),
            nonce: SecretString::from(nonce.secret().clone()),
            pkce_verifier: SecretString::from(verifier.secret().clone()),
        })
    }

    /// Redeems `code` and verifies the ID token (with the request's nonce).
    pub async fn exchange_code(&self, req: AuthRequest, code: SecretString) -> Result<TokenSet, OidcError> {
        let params = [
            ("grant_type", "authorization_code"),
            ("code", code.expose_secret()),
            ("redirect_uri", req.redirect_uri.as_str()),
            ("code_verifier", req.pkce_verifier.expose_secret()),
        ];
        let reply = self.post(&self.token_url, &params).await?;
        let body = self.token_body(
            reply,
            &[code.expose_secret(), req.pkce_verifier.expose_secret()],
            false,
        )?;
        let id_token = body
            .id_token
            .filter(|t| !t.is_empty())
            .ok_or(OidcError::MissingIdToken)?;
        let nonce = Nonce::new(req.nonce.expose_secret().to_owned());
        self.verify_id_token(&id_token, Some(&nonce)).await?;
        Ok(TokenSet {
            id_token: SecretString::from(id_token),
            refresh_token: body
                .refresh_token
                .filter(|t| !t.is_empty())
                .map(SecretString::from),
        })
    }

    /// Uses `refresh_token`; verifies the new ID token and checks that it is for the identity of
    /// `cached` (the cached ID token's claims). Keeps the old refresh token when the IdP returns
    /// none.
    ///
    /// The refreshed ID token must pass every check of a login except the nonce: OpenID Connect
    /// lets a refreshed ID token omit it (Dex repeats the login's), so a nonce, present or not, is
    /// ignored. It must also name the same `iss`, `sub` and `aud` as `cached` (OpenID Connect
    /// Core 12.2), else [`OidcError::RefreshIdentityChanged`]. `invalid_grant` (and Dex's
    /// `invalid_request`) give [`OidcError::RefreshRejected`], a response without ID token gives
    /// [`OidcError::RefreshWithoutIdToken`]: in these cases the caller should fall back to a full
    /// login. When the new ID token cannot be verified for a reason that may pass (the JWKS
    /// cannot be fetched), [`OidcError::RefreshUnverified`] carries the rotated refresh token.
    pub async fn refresh(
        &self,
        refresh_token: &SecretString,
        cached: &IdTokenInfo,
    ) -> Result<TokenSet, OidcError> {
        let params = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
        ];
        let reply = self.post(&self.token_url, &params).await?;
        let body = self.token_body(reply, &[refresh_token.expose_secret()], true)?;
        let id_token = body
            .id_token
            .filter(|t| !t.is_empty())
            .ok_or(OidcError::RefreshWithoutIdToken)?;
        let rotated = body
            .refresh_token
            .filter(|t| !t.is_empty() && t != refresh_token.expose_secret())
            .map(SecretString::from);
        match self.verify_id_token(&id_token, None).await {
            Ok(()) => {}
            Err(err @ OidcError::IdTokenRejected(_)) => return Err(err),
            Err(cause) => {
                return Err(OidcError::RefreshUnverified {
                    cause: Box::new(cause),
                    rotated,
                });
            }
        }
        check_continuity(cached, &id_token)?;
        Ok(TokenSet {
            id_token: SecretString::from(id_token),
            refresh_token: Some(rotated.unwrap_or_else(|| refresh_token.clone())),
        })
    }

    /// Revokes `refresh_token` (RFC 7009). `Ok(false)` when the IdP has no revocation endpoint.
    pub async fn revoke(&self, refresh_token: &SecretString) -> Result<bool, OidcError> {
        let Some(url) = &self.revocation_url else {
            return Ok(false);
        };
        let params = [
            ("token", refresh_token.expose_secret()),
            ("token_type_hint", "refresh_token"),
        ];
        let reply = self.post(url, &params).await?;
        if reply.status.is_success() {
            return Ok(true);
        }
        Err(match serde_json::from_slice::<OAuthErrorBody>(&reply.body) {
            Ok(e) => {
                let (error, description) = sanitize_oauth_error(&e, &[refresh_token.expose_secret()]);
                OidcError::RevocationRefused { error, description }
            }
            Err(_) => OidcError::HttpStatus {
                url: display_url(url),
                status: reply.status.as_u16(),
            },
        })
    }

    async fn post(&self, url: &Url, params: &[(&str, &str)]) -> Result<Reply, OidcError> {
        let client = http::ClientCredentials {
            auth: self.auth,
            id: &self.cfg.client_id,
            secret: self.cfg.client_secret.as_ref(),
        };
        http::post_form(&self.http, url, self.cfg.http_timeout, params, &client).await
    }

    /// Reads a token endpoint reply: the body on 200, a typed error otherwise. `secrets` are
    /// scrubbed from any error text the provider sends back.
    fn token_body(
        &self,
        reply: Reply,
        secrets: &[&str],
        refreshing: bool,
    ) -> Result<TokenResponseBody, OidcError> {
        // Some providers (GitHub) send OAuth errors with HTTP 200: an `error` member makes a
        // reply an error whatever its status.
        let oauth_error = serde_json::from_slice::<OAuthErrorBody>(&reply.body);
        if reply.status == reqwest::StatusCode::OK && oauth_error.is_err() {
            return serde_json::from_slice(&reply.body)
                .map_err(|_| OidcError::BadTokenResponse(display_url(&self.token_url)));
        }
        let Ok(err) = oauth_error else {
            return Err(OidcError::HttpStatus {
                url: display_url(&self.token_url),
                status: reply.status.as_u16(),
            });
        };
        let mut all: Vec<&str> = secrets.to_vec();
        if let Some(s) = &self.cfg.client_secret {
            all.push(s.expose_secret());
        }
        let (error, description) = sanitize_oauth_error(&err, &all);
        if refreshing && matches!(err.error.as_str(), "invalid_grant" | "invalid_request") {
            Err(OidcError::RefreshRejected { error, description })
        } else {
            Err(OidcError::TokenRequest { error, description })
        }
    }

    fn jwks(&self) -> CoreJsonWebKeySet {
        self.jwks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Verifies an ID token; when no key matches its `kid`, refetches the JWKS once (the provider
    /// may have rotated its keys) and tries again.
    async fn verify_id_token(&self, raw: &str, nonce: Option<&Nonce>) -> Result<(), OidcError> {
        let expected = verify::Expected {
            issuer: &self.issuer,
            client_id: &self.cfg.client_id,
            algs: &self.algs,
            now: self.clock.now(),
            nonce,
        };
        match verify::verify(raw, &self.jwks(), &expected) {
            Err(Rejection::UnknownKey { .. }) => {
                let fresh =
                    fetch_jwks(&self.http, self.metadata.jwks_uri().url(), self.cfg.http_timeout).await?;
                *self.jwks.lock().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
                Ok(verify::verify(raw, &fresh, &expected)?)
            }
            other => Ok(other?),
        }
    }
}

/// The endpoints of a discovery document koidc talks to or sends the browser to, by member
/// name. An unparsable optional one is skipped here (its use reports it).
fn endpoints(metadata: &Metadata) -> Vec<(&'static str, String)> {
    let extra = metadata.additional_metadata();
    let mut list = vec![
        (
            "authorization_endpoint",
            metadata.authorization_endpoint().url().to_string(),
        ),
        ("jwks_uri", metadata.jwks_uri().url().to_string()),
    ];
    if let Some(t) = metadata.token_endpoint() {
        list.push(("token_endpoint", t.url().to_string()));
    }
    if let Some(u) = metadata.userinfo_endpoint() {
        list.push(("userinfo_endpoint", u.url().to_string()));
    }
    for (member, value) in [
        ("revocation_endpoint", &extra.revocation_endpoint),
        (
            "device_authorization_endpoint",
            &extra.device_authorization_endpoint,
        ),
        ("end_session_endpoint", &extra.end_session_endpoint),
    ] {
        if let Some(v) = value {
            list.push((member, v.clone()));
        }
    }
    list
}

/// Refuses any endpoint that is not https, except http on a loopback address when the issuer is
/// itself an http loopback issuer (a local test provider): behind an https issuer, a plain-http
/// endpoint would carry codes, the PKCE verifier, the client secret and tokens in cleartext.
fn check_endpoints(configured: &str, issuer: &Url, metadata: &Metadata) -> Result<(), OidcError> {
    let loopback_issuer = issuer.scheme() == "http" && is_loopback(issuer);
    for (member, raw) in endpoints(metadata) {
        let Ok(url) = Url::parse(&raw) else {
            continue;
        };
        let ok = match url.scheme() {
            "https" => true,
            "http" => loopback_issuer && is_loopback(&url),
            _ => false,
        };
        if !ok {
            return Err(OidcError::InsecureEndpoint {
                issuer: configured.to_owned(),
                member,
                url: one_line(&display_url(&url), 200),
            });
        }
    }
    Ok(())
}

/// True for a loopback host: 127.0.0.0/8, ::1 or `localhost` (as the issuer setting accepts).
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// OpenID Connect Core 12.2: a refreshed ID token (`fresh`, already verified) names the same
/// `iss`, `sub` and `aud` as the cached one.
fn check_continuity(cached: &IdTokenInfo, fresh: &str) -> Result<(), OidcError> {
    let fresh = IdTokenInfo::decode(fresh)
        .map_err(|e| OidcError::IdTokenRejected(Rejection::Malformed(e.to_string())))?;
    let quote =
        |v: Option<&str>| v.map_or_else(|| "(none)".to_owned(), |v| format!("{:?}", one_line(v, 100)));
    let changed =
        |claim, cached: String, got: String| Err(OidcError::RefreshIdentityChanged { claim, cached, got });
    if fresh.issuer != cached.issuer {
        return changed("iss", quote(Some(&cached.issuer)), quote(Some(&fresh.issuer)));
    }
    if fresh.str_claim("sub") != cached.str_claim("sub") || cached.str_claim("sub").is_none() {
        return changed(
            "sub",
            quote(cached.str_claim("sub")),
            quote(fresh.str_claim("sub")),
        );
    }
    let set = |a: &[String]| {
        let mut a = a.to_vec();
        a.sort();
        a.dedup();
        a
    };
    if set(&fresh.audiences) != set(&cached.audiences) {
        return changed(
            "aud",
            quote(Some(&cached.audiences.join(" "))),
            quote(Some(&fresh.audiences.join(" "))),
        );
    }
    Ok(())
}

/// True when `url` is `redirect_uri` without its query: same scheme, host, port and path.
fn same_endpoint(url: &Url, redirect_uri: &str) -> bool {
    let Ok(want) = Url::parse(redirect_uri) else {
        return false;
    };
    url.scheme() == want.scheme()
        && url.host_str() == want.host_str()
        && url.port_or_known_default() == want.port_or_known_default()
        && url.path() == want.path()
}

/// How much of a page [`page_text`] reads: its messages are near the top, and the work stays
/// bounded whatever a hostile server sends (the body itself may be up to 4 MiB).
const PAGE_TEXT_INPUT: usize = 64 * 1024;

/// The visible text of an HTML page on one line: tags, `<head>`, `<style>` and `<script>`
/// contents dropped, the common character references decoded, whitespace collapsed. Only the
/// first [`PAGE_TEXT_INPUT`] bytes are read, in one pass.
fn page_text(html: &str) -> String {
    let mut cut = html.len().min(PAGE_TEXT_INPUT);
    while !html.is_char_boundary(cut) {
        cut -= 1;
    }
    let html = &html[..cut];
    // ASCII lowercasing keeps every byte offset, so `lower` and `html` share positions.
    let lower = html.to_ascii_lowercase();
    let mut out = String::new();
    let mut pos = 0;
    while let Some(found) = html[pos..].find('<') {
        let start = pos + found;
        out.push_str(&html[pos..start]);
        out.push(' ');
        let name: String = lower[start + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        let skip_to = if matches!(name.as_str(), "style" | "script" | "head") {
            let closing = format!("</{name}");
            lower[start..].find(&closing).and_then(|end| {
                let end = start + end;
                lower[end..].find('>').map(|gt| end + gt + 1)
            })
        } else {
            html[start..].find('>').map(|gt| start + gt + 1)
        };
        pos = skip_to.unwrap_or(html.len());
    }
    out.push_str(&html[pos..]);
    let decoded = out
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    crate::text::fold_whitespace(&decoded)
}

/// The first OAuth error code that appears as a word in `text`.
fn oauth_error_code_in(text: &str) -> Option<String> {
    const CODES: [&str; 9] = [
        "invalid_redirect_uri",
        "invalid_request",
        "invalid_client",
        "unauthorized_client",
        "invalid_scope",
        "access_denied",
        "unsupported_response_type",
        "server_error",
        "temporarily_unavailable",
    ];
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .find(|w| CODES.contains(w))
        .map(str::to_owned)
}

/// Parses a JSON document (discovery, JWKS) from a 200 reply.
fn parse_document<T: serde::de::DeserializeOwned>(reply: &Reply, url: &Url) -> Result<T, OidcError> {
    if reply.status != reqwest::StatusCode::OK {
        return Err(OidcError::HttpStatus {
            url: display_url(url),
            status: reply.status.as_u16(),
        });
    }
    serde_json::from_slice(&reply.body).map_err(|e| OidcError::Malformed {
        url: display_url(url),
        reason: if e.is_syntax() || e.is_eof() {
            "not JSON".into()
        } else {
            one_line(&e.to_string(), 200)
        },
    })
}

async fn fetch_jwks(
    http: &reqwest::Client,
    url: &Url,
    timeout: Duration,
) -> Result<CoreJsonWebKeySet, OidcError> {
    let reply = http::get(http, url, timeout).await?;
    parse_document(&reply, url)
}

/// The `error` and `error_description` of an OAuth error, on one line, capped, with `secrets`
/// replaced by `[redacted]` in case the provider echoes them.
fn sanitize_oauth_error(e: &OAuthErrorBody, secrets: &[&str]) -> (String, Option<String>) {
    let scrub = |s: &str, max: usize| {
        let mut s = s.to_owned();
        for secret in secrets.iter().filter(|x| x.len() >= 4) {
            s = s.replace(secret, "[redacted]");
        }
        one_line(&s, max)
    };
    (
        scrub(&e.error, 64),
        e.error_description
            .as_deref()
            .map(|d| d.trim().trim_end_matches('.'))
            .filter(|d| !d.is_empty())
            .map(|d| scrub(d, 200)),
    )
}

#[cfg(test)]
mod preflight_tests {
    use super::*;

    #[test]
    fn page_text_drops_markup_head_and_styles_and_decodes_quotes() {
        let html = "<!DOCTYPE html><html><head><title>t</title><style>h1{x:y}</style></head>\
            <body><h2>400 Bad Request</h2><p>Error Code: invalid_request</p>\
            <p>Description: The &#39;redirect_uri&#39; parameter must be a Login redirect URI</p>\
            <script>alert(1)</script></body></html>";
        assert_eq!(
            page_text(html),
            "400 Bad Request Error Code: invalid_request Description: The 'redirect_uri' parameter must be a Login redirect URI"
        );
        assert_eq!(page_text("no markup"), "no markup");
        assert_eq!(page_text("<p>unclosed <b"), "unclosed");
    }

    /// A hostile error page of many `<head>` tags kept the login's check busy for about 45 s
    /// (every such tag lowercased the rest of the 4 MiB body): only the top of a page is read,
    /// in one pass.
    #[test]
    fn page_text_of_a_huge_page_of_head_tags_reads_only_its_top() {
        let html = format!("<p>start</p>{}<p>end</p>", "<head></head>".repeat(300_000));
        assert_eq!(page_text(&html), "start");
        // A cut inside a multi-byte character does not split it.
        let html = format!("{}é and more", "x".repeat(PAGE_TEXT_INPUT - 1));
        assert_eq!(page_text(&html), "x".repeat(PAGE_TEXT_INPUT - 1));
    }

    #[test]
    fn first_oauth_error_code_on_a_page_is_found_as_a_whole_word() {
        assert_eq!(
            oauth_error_code_in("Error Code: invalid_request Description: x").as_deref(),
            Some("invalid_request")
        );
        assert_eq!(
            oauth_error_code_in("error: invalid_redirect_uri").as_deref(),
            Some("invalid_redirect_uri")
        );
        assert_eq!(oauth_error_code_in("my_invalid_request_x"), None);
        assert_eq!(oauth_error_code_in("all good"), None);
    }

    #[test]
    fn same_endpoint_ignores_the_query_but_not_port_or_path() {
        let cb = "http://127.0.0.1:8000/callback";
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(same_endpoint(
            &u("http://127.0.0.1:8000/callback?error=x&state=s"),
            cb
        ));
        assert!(!same_endpoint(&u("http://127.0.0.1:18000/callback?error=x"), cb));
        assert!(!same_endpoint(&u("http://127.0.0.1:8000/other?error=x"), cb));
        assert!(!same_endpoint(&u("https://127.0.0.1:8000/callback"), cb));
    }
}
