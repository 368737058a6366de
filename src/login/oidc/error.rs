//! [`OidcError`], the one error type of the identity provider adapter, and the helpers that word
//! its messages.
//!
//! It lives apart from the client so that the list of what can go wrong talking to an identity
//! provider (and what the user is told to do about it) reads in one place, and so that the
//! client, the device grant and the preflight check all build the same variants. Messages never
//! contain a token, the authorization code, the PKCE verifier or the client secret.

use std::time::Duration;

use secrecy::SecretString;

#[cfg(doc)]
use super::Provider;
use super::probe;
use super::verify::Rejection;

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
    /// The request goes through a proxy (`HTTPS_PROXY`...) that failed it, or a proxy variable
    /// is unusable; the message names the proxy, never its password.
    #[error(transparent)]
    Proxy(crate::http::ProxyError),
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
    /// A client credentials access token failed verification.
    #[error("access token rejected: {0}")]
    AccessTokenRejected(Rejection),
    /// Client credentials without a client secret.
    #[error(
        "--grant client-credentials needs the client secret: set KOIDC_CLIENT_SECRET or give --client-secret-file FILE"
    )]
    NoClientSecret,
    /// The client credentials grant gave neither an ID token nor a JWT access token.
    #[error(
        "the identity provider returned an opaque access token and no ID token for the client credentials grant: the apiserver can only check a JWT; configure the IdP to issue JWT access tokens for this client (Okta: a custom authorization server; Keycloak: the default)"
    )]
    OpaqueAccessToken,
    /// `--token-type access`, and the token response has no access token.
    #[error(
        "--token-type access: the identity provider's token response has no access_token; use --token-type id"
    )]
    MissingAccessToken,
    /// `--token-type access`, and the access token is not a JWT.
    #[error(
        "--token-type access: the identity provider's access token is opaque (not a JWT), so the apiserver cannot check it; configure the provider to issue JWT access tokens with an audience (Okta: a custom authorization server; Keycloak: its default; Entra: a scope of your API, api://APP/.default) or use --token-type id"
    )]
    OpaqueLoginAccessToken,
    /// `max_age` was sent and the ID token has no `auth_time`.
    #[error(
        "--auth-param max_age was sent, but the ID token has no auth_time claim to check it (OpenID Connect Core 3.1.2.1); the provider ignores max_age: drop it"
    )]
    AuthTimeMissing,
    /// `max_age` was sent and the login the ID token reports is older.
    #[error(
        "the ID token says the login happened {age} s ago, more than --auth-param max_age={max_age} allows; the provider did not ask for a fresh login (try --auth-param prompt=login)"
    )]
    AuthTimeTooOld {
        /// Seconds since `auth_time`.
        age: i64,
        /// The `max_age` sent.
        max_age: u64,
    },
    /// `login_hint` was sent and the provider signed in another account (a browser session's).
    #[error(
        "--auth-param login_hint={hint} was sent, but the identity provider signed in {who}; nothing was cached: log out of {who} at the provider (or add --auth-param prompt=login) and try again"
    )]
    LoginHintMismatch {
        /// The hint sent (on one line).
        hint: String,
        /// Who the ID token names (on one line).
        who: String,
    },
    /// A JWT access token, but no audience to check it against.
    #[error(
        "the identity provider returned an access token and no ID token: give --audience (the audience the apiserver expects) so that koidc can check the access token is for the cluster"
    )]
    AccessTokenNeedsAudience,
    /// The token endpoint refused a client credentials grant (an OAuth error).
    #[error("the identity provider refused the client credentials grant: {error}{}; check --client-id, the client secret (KOIDC_CLIENT_SECRET or --client-secret-file) and that the client may use the client_credentials grant", desc(.description))]
    ClientCredentialsRefused {
        /// The OAuth `error` code (sanitised).
        error: String,
        /// The `error_description` (sanitised, capped).
        description: Option<String>,
    },
    /// The token endpoint refused a token exchange (an OAuth error).
    #[error("the issuer refused to exchange the job's token: {error}{}; {hint}", desc(.description))]
    ExchangeRefused {
        /// The OAuth `error` code (sanitised).
        error: String,
        /// The `error_description` (sanitised, capped).
        description: Option<String>,
        /// What to check, for this refusal.
        hint: &'static str,
    },
    /// The issuer's discovery document lists the grants it offers, without this one.
    #[error("the issuer does not offer the {grant} grant (its discovery document offers: {offered}); {hint}")]
    GrantNotOffered {
        /// The grant koidc needs.
        grant: &'static str,
        /// The grants the issuer lists.
        offered: String,
        /// What to do instead.
        hint: &'static str,
    },
    /// A token exchange answered with something else than an ID token.
    #[error(
        "the token exchange returned no ID token (issued_token_type is not id_token); the issuer must issue ID tokens by token exchange (Dex: an `oidc` connector, named with --connector-id)"
    )]
    ExchangeWithoutIdToken,
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
