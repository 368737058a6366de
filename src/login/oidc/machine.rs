//! The token requests of pipelines, which never involve a person: OAuth 2.0 client credentials
//! (RFC 6749 4.4) and token exchange (RFC 8693), and the check of a JWT access token.
//!
//! Every token handed out is verified as a login's would be: an ID token against the provider's
//! keys, issuer and client id (without a nonce: no authorization request was made); an access
//! token, which carries no client id as its audience, against the keys, the issuer, the
//! apiserver's audience and its expiry ([`verify::verify_access_token`]).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::client::Provider;
use super::error::OidcError;
use super::verify;

/// RFC 8693's grant type.
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693's name of an ID token.
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// What the token endpoint answered to a pipeline's request. No `Debug`: it holds tokens.
#[derive(Deserialize)]
struct MachineBody {
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    issued_token_type: Option<String>,
}

/// The verified token a client credentials grant gave.
pub enum ClientToken {
    /// An ID token for the client.
    IdToken(SecretString),
    /// A JWT access token for the asked audience.
    AccessToken(SecretString),
}

impl OidcError {
    /// An OAuth error of the token endpoint as `grant`'s refusal (whose message names what a
    /// pipeline can check, not a person's login); any other error as it is.
    fn refused(self, grant: impl FnOnce(String, Option<String>) -> OidcError) -> OidcError {
        match self {
            OidcError::TokenRequest { error, description } => grant(error, description),
            other => other,
        }
    }
}

impl Provider {
    /// Client credentials: the ID token when the provider returns one (verified for the client
    /// id), else the access token when it is a JWT of this issuer for `audience` (verified).
    /// Needs the client secret ([`OidcError::NoClientSecret`] without one).
    pub async fn client_credentials(&self, audience: Option<&str>) -> Result<ClientToken, OidcError> {
        let Some(secret) = &self.cfg.client_secret else {
            return Err(OidcError::NoClientSecret);
        };
        self.offers_grant(
            "client_credentials",
            "use --grant workload (the CI job's own token) or an issuer that issues tokens to clients",
        )?;
        let scope = self.cfg.scopes.join(" ");
        let mut params = vec![("grant_type", "client_credentials")];
        if !scope.is_empty() {
            params.push(("scope", scope.as_str()));
        }
        let reply = self.post(&self.token_url, &params).await?;
        let body = self.machine_body(reply, &[secret.expose_secret()]).map_err(|e| {
            e.refused(|error, description| OidcError::ClientCredentialsRefused { error, description })
        })?;
        if let Some(id_token) = body.id_token.filter(|t| !t.is_empty()) {
            self.verify_id_token(&id_token, None).await?;
            return Ok(ClientToken::IdToken(SecretString::from(id_token)));
        }
        let access = body
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or(OidcError::MissingIdToken)?;
        if access.split('.').count() != 3 {
            return Err(OidcError::OpaqueAccessToken);
        }
        let Some(audience) = audience else {
            return Err(OidcError::AccessTokenNeedsAudience);
        };
        self.verify_access_token(&access, verify::AccessAudience::Contains(audience))
            .await?;
        Ok(ClientToken::AccessToken(SecretString::from(access)))
    }

    /// Token exchange: trades `subject` (the CI job's token, sent as an ID token) for this
    /// provider's ID token for the client, checked by Dex's `connector_id` when given; verifies
    /// the ID token.
    pub async fn exchange_token(
        &self,
        subject: &SecretString,
        connector_id: Option<&str>,
    ) -> Result<SecretString, OidcError> {
        self.offers_grant(
            TOKEN_EXCHANGE,
            "drop --issuer to send the job's token to the apiserver as it is (`koidc setup --ci` trusts the CI issuer there), or use an issuer that exchanges tokens (Dex 2.38+)",
        )?;
        let mut scopes = vec!["openid".to_owned()];
        scopes.extend(self.cfg.scopes.iter().filter(|s| *s != "offline_access").cloned());
        let scope = scopes.join(" ");
        let mut params = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject.expose_secret()),
            ("subject_token_type", ID_TOKEN_TYPE),
            ("requested_token_type", ID_TOKEN_TYPE),
            ("scope", scope.as_str()),
        ];
        if let Some(connector) = connector_id {
            params.push(("connector_id", connector));
        }
        let reply = self.post(&self.token_url, &params).await?;
        let mut secrets = vec![subject.expose_secret()];
        if let Some(s) = &self.cfg.client_secret {
            secrets.push(s.expose_secret());
        }
        let body = self.machine_body(reply, &secrets).map_err(|e| {
            e.refused(|error, description| {
                let hint = if error == "invalid_client" {
                    "check --client-id and the client secret (KOIDC_CLIENT_SECRET or --client-secret-file; a public client has none)"
                } else if connector_id.is_none() {
                    "no --connector-id was given: Dex needs the id of the connector that checks the job's token (an `oidc` connector for the CI issuer)"
                } else {
                    "check --connector-id and that the issuer trusts this job's token (Dex: an `oidc` connector for the CI issuer whose allowedGroups admit the job)"
                };
                OidcError::ExchangeRefused {
                    error,
                    description,
                    hint,
                }
            })
        })?;
        // RFC 8693 puts the issued token in `access_token`, whatever its type; some providers
        // add `id_token` as well.
        let id_token = match body.id_token.filter(|t| !t.is_empty()) {
            Some(id_token) => id_token,
            None if body.issued_token_type.as_deref() == Some(ID_TOKEN_TYPE) => body
                .access_token
                .filter(|t| !t.is_empty())
                .ok_or(OidcError::MissingIdToken)?,
            None => return Err(OidcError::ExchangeWithoutIdToken),
        };
        self.verify_id_token(&id_token, None).await?;
        Ok(SecretString::from(id_token))
    }

    /// Fails when the discovery document lists the grants the issuer offers and `grant` is not
    /// among them (a document that lists none says nothing).
    fn offers_grant(&self, grant: &'static str, hint: &'static str) -> Result<(), OidcError> {
        let Some(offered) = self.metadata.grant_types_supported() else {
            return Ok(());
        };
        let names: Vec<String> = offered
            .iter()
            .filter_map(|g| serde_json::to_value(g).ok())
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        if names.iter().any(|n| n == grant) {
            return Ok(());
        }
        Err(OidcError::GrantNotOffered {
            grant,
            offered: crate::text::one_line(&names.join(", "), 300),
            hint,
        })
    }

    /// Reads a pipeline's token reply, scrubbing `secrets` from any error the provider sends.
    fn machine_body(&self, reply: super::http::Reply, secrets: &[&str]) -> Result<MachineBody, OidcError> {
        let oauth_error = serde_json::from_slice::<super::client::OAuthErrorBody>(&reply.body);
        if reply.status == reqwest::StatusCode::OK && oauth_error.is_err() {
            return serde_json::from_slice(&reply.body)
                .map_err(|_| OidcError::BadTokenResponse(super::http::display_url(&self.token_url)));
        }
        let Ok(err) = oauth_error else {
            return Err(OidcError::HttpStatus {
                url: super::http::display_url(&self.token_url),
                status: reply.status.as_u16(),
            });
        };
        let forms = self.client_secret_forms();
        let mut all: Vec<&str> = secrets.to_vec();
        all.extend(forms.iter().map(String::as_str));
        let (error, description) = super::client::sanitize_oauth_error(&err, &all);
        Err(OidcError::TokenRequest { error, description })
    }
}
