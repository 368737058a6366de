//! The client of an OpenID Connect provider: [`OidcConfig`], discovery into a [`Provider`], the
//! authorization request ([`AuthRequest`]), code exchange, refresh and revocation.
//!
//! Everything here needs the network, so none of it runs on the warm path. The device grant
//! ([`super::device`]) and the preflight check ([`super::probe`]) add methods to [`Provider`]
//! from their own files; what they share with this one (the token and OAuth error bodies, the
//! sanitising of an OAuth error) is `pub(super)` here.

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

use super::error::OidcError;
use super::http::{self, ClientAuth, Reply, display_url, one_line};
use super::request::{ProviderRequest, TokenType};
use super::verify::{self, ASYMMETRIC_ALGS, AccessAudience, Rejection};

/// Where an issuer's discovery document is, below the issuer URL.
pub(crate) const DISCOVERY_SUFFIX: &str = "/.well-known/openid-configuration";

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
    /// Another audience the ID token must name beside the client id (a cluster's, asked for
    /// with Dex's cross-client scope); then `azp` must be the client id. `None`: the client id
    /// is the only audience.
    pub audience: Option<String>,
    /// Extra trusted CA certificates (PEM files).
    pub extra_ca_files: Vec<PathBuf>,
    /// Extra trusted CA certificates as the base64 of PEM text (`--certificate-authority-data`).
    pub extra_ca_data: Option<String>,
    /// Timeout of each HTTP request.
    pub http_timeout: Duration,
    /// Which token, extra parameters and headers, PKCE.
    pub request: ProviderRequest,
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
            .field("audience", &self.audience)
            .field("extra_ca_files", &self.extra_ca_files)
            .field(
                "extra_ca_data",
                &self.extra_ca_data.as_ref().map(|_| "<base64 PEM>"),
            )
            .field("http_timeout", &self.http_timeout)
            .field("request", &self.request)
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
pub(super) type Metadata = ProviderMetadata<
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
    pub(super) nonce: SecretString,
    /// `None` with `--pkce=false`.
    pub(super) pkce_verifier: Option<SecretString>,
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
    pub(super) cfg: OidcConfig,
    pub(super) issuer: IssuerUrl,
    pub(super) metadata: Metadata,
    pub(super) token_url: Url,
    pub(super) revocation_url: Option<Url>,
    pub(super) http: reqwest::Client,
    pub(super) jwks: Mutex<CoreJsonWebKeySet>,
    pub(super) algs: Vec<CoreJwsSigningAlgorithm>,
    pub(super) auth: ClientAuth,
    pub(super) clock: Arc<dyn Clock>,
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
pub(super) struct TokenResponseBody {
    #[serde(default)]
    pub(super) id_token: Option<String>,
    #[serde(default)]
    pub(super) refresh_token: Option<String>,
    #[serde(default)]
    pub(super) access_token: Option<String>,
}

/// An OAuth error response (RFC 6749 5.2).
#[derive(Deserialize)]
pub(super) struct OAuthErrorBody {
    pub(super) error: String,
    #[serde(default)]
    pub(super) error_description: Option<String>,
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

        let http = http::build_provider_client(cfg)?;
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
    pub(super) fn scope(&self) -> String {
        let mut scopes: Vec<&str> = vec!["openid"];
        for s in self.cfg.scopes.iter().flat_map(|s| s.split_whitespace()) {
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        scopes.join(" ")
    }

    /// Starts an authorization code + PKCE (S256) request with fresh state and nonce, and the
    /// `--auth-param` parameters after koidc's own (which they cannot replace: see
    /// [`super::request`]). PKCE is sent whatever discovery advertises
    /// (`code_challenge_methods_supported` is optional, and Entra omits it), unless `--pkce=false`.
    ///
    /// The verifier is 32 random bytes (base64url), state and nonce 32 random bytes each.
    pub fn authorization_request(&self, redirect_uri: &str) -> Result<AuthRequest, OidcError> {
        Url::parse(redirect_uri).map_err(|_| OidcError::InvalidRedirectUri(one_line(redirect_uri, 200)))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = CsrfToken::new_random_len(32);
        let nonce = Nonce::new_random_len(32);
        let mut url = self.metadata.authorization_endpoint().url().clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.cfg.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", &self.scope())
                .append_pair("state", state.secret())
                .append_pair("nonce", nonce.secret());
            if self.cfg.request.pkce {
                query
                    .append_pair("code_challenge", challenge.as_str())
                    .append_pair("code_challenge_method", "S256");
            }
            query.extend_pairs(self.cfg.request.auth_params.pairs());
        }
        Ok(AuthRequest {
            url: url.into(),
            state: state.secret().clone(),
            redirect_uri: redirect_uri.to_owned(),
            issuer: self.cfg.issuer.clone(),
            iss_required: self.iss_parameter_supported(),
            nonce: SecretString::from(nonce.secret().clone()),
            pkce_verifier: self
                .cfg
                .request
                .pkce
                .then(|| SecretString::from(verifier.secret().clone())),
        })
    }

    /// Redeems `code` and verifies the ID token (with the request's nonce); see
    /// [`Self::login_tokens`] for what is returned.
    pub async fn exchange_code(&self, req: AuthRequest, code: SecretString) -> Result<TokenSet, OidcError> {
        let mut params = vec![
            ("grant_type", "authorization_code"),
            ("code", code.expose_secret()),
            ("redirect_uri", req.redirect_uri.as_str()),
        ];
        let mut secrets = vec![code.expose_secret()];
        if let Some(verifier) = &req.pkce_verifier {
            params.push(("code_verifier", verifier.expose_secret()));
            secrets.push(verifier.expose_secret());
        }
        let reply = self.post(&self.token_url, &params).await?;
        let body = self.token_body(reply, &secrets, false)?;
        let nonce = Nonce::new(req.nonce.expose_secret().to_owned());
        self.login_tokens(body, Some(&nonce)).await
    }

    /// The tokens of a login's token response: its ID token verified (with `nonce` after an
    /// authorization request, and its `auth_time` against `max_age` when that was sent); the
    /// credential is that ID token, or with `--token-type access` the access token, verified
    /// ([`Self::access_credential`]).
    pub(super) async fn login_tokens(
        &self,
        body: TokenResponseBody,
        nonce: Option<&Nonce>,
    ) -> Result<TokenSet, OidcError> {
        let id_token = body
            .id_token
            .filter(|t| !t.is_empty())
            .ok_or(OidcError::MissingIdToken)?;
        self.verify_id_token(&id_token, nonce).await?;
        if let Some(max_age) = self.cfg.request.auth_params.max_age() {
            check_auth_time(&id_token, max_age, self.clock.now())?;
        }
        if let Some(hint) = self.cfg.request.auth_params.login_hint() {
            check_login_hint(&id_token, hint)?;
        }
        let credential = match &self.cfg.request.token_type {
            TokenType::Id => id_token,
            TokenType::Access { .. } => self.access_credential(body.access_token).await?,
        };
        Ok(TokenSet {
            id_token: SecretString::from(credential),
            refresh_token: body
                .refresh_token
                .filter(|t| !t.is_empty())
                .map(SecretString::from),
        })
    }

    /// With `--token-type access`: the access token of a token response, when it is a JWT of
    /// this issuer for the audience (`--audience`, else issued to the client), signed by the
    /// provider's keys and not expired.
    pub(super) async fn access_credential(&self, access: Option<String>) -> Result<String, OidcError> {
        let access = access
            .filter(|t| !t.is_empty())
            .ok_or(OidcError::MissingAccessToken)?;
        if !crate::login::token::is_compact_jws(&access) {
            return Err(OidcError::OpaqueLoginAccessToken);
        }
        let audience = match &self.cfg.request.token_type {
            TokenType::Access {
                audience: Some(audience),
            } => AccessAudience::Contains(audience),
            _ => AccessAudience::IssuedTo(&self.cfg.client_id),
        };
        self.verify_access_token(&access, audience).await?;
        Ok(access)
    }

    /// Verifies a JWT access token for `audience`; refetches the keys once when none matches.
    pub(super) async fn verify_access_token(
        &self,
        raw: &str,
        audience: AccessAudience<'_>,
    ) -> Result<(), OidcError> {
        let check = |jwks: &CoreJsonWebKeySet| {
            verify::verify_access_token(raw, jwks, &self.issuer, audience, &self.algs, self.clock.now())
        };
        match check(&self.jwks()) {
            Err(Rejection::UnknownKey { .. }) => {
                let fresh = self.refetch_jwks().await?;
                check(&fresh).map_err(OidcError::AccessTokenRejected)
            }
            other => other.map_err(OidcError::AccessTokenRejected),
        }
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
        let access_mode = matches!(self.cfg.request.token_type, TokenType::Access { .. });
        let id_token = body.id_token.filter(|t| !t.is_empty());
        // With --token-type access the ID token is not the credential: a refresh may omit it.
        if id_token.is_none() && !access_mode {
            return Err(OidcError::RefreshWithoutIdToken);
        }
        let rotated = body
            .refresh_token
            .filter(|t| !t.is_empty() && t != refresh_token.expose_secret())
            .map(SecretString::from);
        let unverified = |cause: OidcError, rotated: Option<SecretString>| OidcError::RefreshUnverified {
            cause: Box::new(cause),
            rotated,
        };
        if let Some(id_token) = &id_token {
            match self.verify_id_token(id_token, None).await {
                Ok(()) => {}
                Err(err @ OidcError::IdTokenRejected(_)) => return Err(err),
                Err(cause) => return Err(unverified(cause, rotated)),
            }
        }
        let credential = if access_mode {
            match self.access_credential(body.access_token).await {
                Ok(access) => access,
                Err(
                    err @ (OidcError::AccessTokenRejected(_)
                    | OidcError::MissingAccessToken
                    | OidcError::OpaqueLoginAccessToken),
                ) => return Err(err),
                Err(cause) => return Err(unverified(cause, rotated)),
            }
        } else {
            id_token.unwrap_or_default()
        };
        // The credential answers for the cached one: ID token for ID token, access token for
        // access token.
        check_continuity(cached, &credential)?;
        Ok(TokenSet {
            id_token: SecretString::from(credential),
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

    pub(super) async fn post(&self, url: &Url, params: &[(&str, &str)]) -> Result<Reply, OidcError> {
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
        let forms = self.client_secret_forms();
        let mut all: Vec<&str> = secrets.to_vec();
        all.extend(forms.iter().map(String::as_str));
        let (error, description) = sanitize_oauth_error(&err, &all);
        if refreshing && matches!(err.error.as_str(), "invalid_grant" | "invalid_request") {
            Err(OidcError::RefreshRejected { error, description })
        } else {
            Err(OidcError::TokenRequest { error, description })
        }
    }

    /// The client secret as a provider's error message may echo it: as sent, as the Basic
    /// credential it went in, and base64-encoded (empty without a secret).
    pub(super) fn client_secret_forms(&self) -> Vec<String> {
        use base64::Engine as _;
        let Some(secret) = &self.cfg.client_secret else {
            return Vec::new();
        };
        let secret = secret.expose_secret();
        let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let b64 = base64::engine::general_purpose::STANDARD;
        vec![
            secret.to_owned(),
            b64.encode(format!("{}:{}", encode(&self.cfg.client_id), encode(secret))),
            b64.encode(secret),
        ]
    }

    pub(super) fn jwks(&self) -> CoreJsonWebKeySet {
        self.jwks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fetches the JWKS again (the provider may have rotated its keys) and keeps it.
    pub(super) async fn refetch_jwks(&self) -> Result<CoreJsonWebKeySet, OidcError> {
        let fresh = fetch_jwks(&self.http, self.metadata.jwks_uri().url(), self.cfg.http_timeout).await?;
        *self.jwks.lock().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    /// Verifies an ID token; when no key matches its `kid`, refetches the JWKS once (the provider
    /// may have rotated its keys) and tries again.
    pub(super) async fn verify_id_token(&self, raw: &str, nonce: Option<&Nonce>) -> Result<(), OidcError> {
        let expected = verify::Expected {
            issuer: &self.issuer,
            client_id: &self.cfg.client_id,
            audience: self.cfg.audience.as_deref(),
            algs: &self.algs,
            now: self.clock.now(),
            nonce,
        };
        match verify::verify(raw, &self.jwks(), &expected) {
            Err(Rejection::UnknownKey { .. }) => {
                let fresh = self.refetch_jwks().await?;
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
pub(super) fn check_endpoints(configured: &str, issuer: &Url, metadata: &Metadata) -> Result<(), OidcError> {
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

/// How far `auth_time` may be older than `max_age` (clock skew between koidc and the provider,
/// and the time the login took).
const AUTH_TIME_LEEWAY: i64 = 120;

/// With `max_age` sent: the moment a login at `auth_time` stops being recent enough
/// (`auth_time + max_age +` [`AUTH_TIME_LEEWAY`]); a token from it is not served nor renewed after.
pub(crate) fn max_age_deadline(auth_time: i64, max_age: u64) -> chrono::DateTime<chrono::Utc> {
    let allowed = i64::try_from(max_age)
        .unwrap_or(i64::MAX)
        .saturating_add(AUTH_TIME_LEEWAY);
    chrono::DateTime::from_timestamp(auth_time.saturating_add(allowed), 0)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

/// With `max_age` sent: the ID token's `auth_time` (OpenID Connect Core 3.1.2.1) must be present
/// and at most `max_age` seconds (plus [`AUTH_TIME_LEEWAY`]) before `now`.
fn check_auth_time(
    id_token: &str,
    max_age: u64,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), OidcError> {
    let info = IdTokenInfo::decode(id_token)
        .map_err(|e| OidcError::IdTokenRejected(Rejection::Malformed(e.to_string())))?;
    let auth_time = info.auth_time().ok_or(OidcError::AuthTimeMissing)?;
    if now > max_age_deadline(auth_time, max_age) {
        let age = now.timestamp().saturating_sub(auth_time);
        return Err(OidcError::AuthTimeTooOld { age, max_age });
    }
    Ok(())
}

/// With `login_hint` sent: when the ID token names its account (`email`, `preferred_username` or
/// `upn`), one of them must be the hint (ignoring ASCII case). A provider may sign in whoever its
/// browser session holds instead, whose token would then be cached under the hint's entry.
fn check_login_hint(id_token: &str, hint: &str) -> Result<(), OidcError> {
    let info = IdTokenInfo::decode(id_token)
        .map_err(|e| OidcError::IdTokenRejected(Rejection::Malformed(e.to_string())))?;
    let names: Vec<&str> = ["email", "preferred_username", "upn"]
        .into_iter()
        .filter_map(|claim| info.str_claim(claim))
        .collect();
    match names.first() {
        Some(who) if !names.iter().any(|n| n.eq_ignore_ascii_case(hint)) => {
            Err(OidcError::LoginHintMismatch {
                hint: crate::text::one_line(hint, 200),
                who: crate::text::one_line(who, 200),
            })
        }
        _ => Ok(()),
    }
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
pub(super) fn sanitize_oauth_error(e: &OAuthErrorBody, secrets: &[&str]) -> (String, Option<String>) {
    let scrub = |s: &str, max: usize| one_line(&crate::text::redact(s, secrets), max);
    (
        scrub(&e.error, 64),
        e.error_description
            .as_deref()
            .map(|d| d.trim().trim_end_matches('.'))
            .filter(|d| !d.is_empty())
            .map(|d| scrub(d, 200)),
    )
}
