//! The identity provider: discovery, authorization code + PKCE, refresh, ID token verification,
//! revocation.
//!
//! INTERFACE: [`OidcConfig`], [`Provider::discover`], [`Provider::authorization_request`],
//! [`Provider::exchange_code`], [`Provider::refresh`], [`Provider::revoke`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::clock::Clock;
use crate::token::TokenSet;

/// Errors talking to the identity provider.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Placeholder until the module is implemented.
    #[error("{0}")]
    Other(String),
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
    /// Timeout of each HTTP request.
    pub http_timeout: Duration,
}

/// A started authorization request: the URL for the browser and what to check the answer with.
pub struct AuthRequest {
    /// The authorization URL to open.
    pub url: String,
    /// The `state` value the callback must carry.
    pub state: String,
    /// The redirect URI used.
    pub redirect_uri: String,
    nonce: SecretString,
    pkce_verifier: SecretString,
}

/// A discovered identity provider.
pub struct Provider {
    _clock: Arc<dyn Clock>,
}

impl Provider {
    /// Fetches discovery metadata and the JWKS.
    pub async fn discover(_cfg: &OidcConfig, clock: Arc<dyn Clock>) -> Result<Self, OidcError> {
        let _ = clock;
        Err(OidcError::Other("not implemented".into()))
    }

    /// Starts an authorization code + PKCE (S256) request with fresh state and nonce.
    pub fn authorization_request(&self, redirect_uri: &str) -> Result<AuthRequest, OidcError> {
        let _ = redirect_uri;
        Err(OidcError::Other("not implemented".into()))
    }

    /// Redeems `code` and verifies the ID token (with the request's nonce).
    pub async fn exchange_code(&self, req: AuthRequest, code: SecretString) -> Result<TokenSet, OidcError> {
        let _ = (req.nonce, req.pkce_verifier, code);
        Err(OidcError::Other("not implemented".into()))
    }

    /// Uses `refresh_token`; verifies the new ID token. Keeps the old refresh token when the IdP
    /// returns none.
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<TokenSet, OidcError> {
        let _ = refresh_token;
        Err(OidcError::Other("not implemented".into()))
    }

    /// Revokes `refresh_token` (RFC 7009). `Ok(false)` when the IdP has no revocation endpoint.
    pub async fn revoke(&self, refresh_token: &SecretString) -> Result<bool, OidcError> {
        let _ = refresh_token;
        Ok(false)
    }
}
