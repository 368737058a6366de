//! The tokens koidc holds for one identity, and the cheap, offline reading of an ID token.
//!
//! What a cache entry holds is typed: a [`Credential`] says what the token handed to kubectl is
//! (an OpenID Connect ID token with its claims, or a GitHub access token with its account), and a
//! [`CredentialEntry`] adds what renews it. [`TokenSet`] is the raw pair the token cache stores
//! and the OpenID Connect token endpoint returns; the credential sources
//! (`crate::login::sources`) turn one into the other.
//!
//! An ID token is verified (signature, issuer, audience, nonce…) by [`crate::login::oidc`] when it is
//! received. Afterwards, on the warm path, koidc only needs to know who the token is for and when
//! it expires; [`IdTokenInfo::decode`] reads that from the payload without any network or crypto,
//! and checks that the token still belongs to the issuer and client it was cached for.

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::login::github::Account;

/// The largest ID token koidc accepts (1 MiB); anything larger is treated as hostile.
pub const MAX_TOKEN_LEN: usize = 1 << 20;

/// Tokens for one identity at one issuer and client: what the OpenID Connect token endpoint
/// returns, and the raw form of a cache entry (whose typed form is a [`CredentialEntry`]).
#[derive(Clone)]
pub struct TokenSet {
    /// The ID token (a JWT), the credential kubectl sends to the apiserver. In a cache entry of
    /// another kind (see [`crate::login::cache::EntryMeta::kind`]) it is that entry's token, e.g.
    /// a GitHub access token; [`Credential`] says which.
    pub id_token: SecretString,
    /// The refresh token, when the IdP issued one.
    pub refresh_token: Option<SecretString>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("id_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// The token kubectl sends to the apiserver, and what koidc knows about it.
#[derive(Clone)]
pub enum Credential {
    /// An OpenID Connect ID token (a JWT, verified when it was received) and its claims, read
    /// offline.
    IdToken {
        /// The ID token.
        token: SecretString,
        /// Its claims.
        info: IdTokenInfo,
    },
    /// A GitHub access token (opaque; the apiserver asks `koidc webhook` about it) and the
    /// account GitHub named for it at login.
    GithubAccess {
        /// The access token.
        token: SecretString,
        /// Who it belongs to.
        account: Account,
        /// When it expires, when GitHub said (GitHub App user tokens); `None`: until revoked.
        expires_at: Option<DateTime<Utc>>,
        /// When GitHub last confirmed it (at login, refresh, or the hourly check); `None` when
        /// never (entries written before this was recorded).
        checked_at: Option<DateTime<Utc>>,
    },
}

impl Credential {
    /// The token for kubectl.
    pub fn token(&self) -> &SecretString {
        match self {
            Credential::IdToken { token, .. } | Credential::GithubAccess { token, .. } => token,
        }
    }

    /// The ID token's claims, for an ID token.
    pub fn id_token_info(&self) -> Option<&IdTokenInfo> {
        match self {
            Credential::IdToken { info, .. } => Some(info),
            Credential::GithubAccess { .. } => None,
        }
    }

    /// Who the credential is for: an ID token's `sub`, shown as its email when it has one; a
    /// GitHub account's numeric id (logins are recycled), shown as its login name.
    pub fn identity(&self) -> LoginIdentity {
        match self {
            Credential::IdToken { info, .. } => {
                let subject = info.str_claim("sub").unwrap_or_default().to_owned();
                let shown = match info.str_claim("email").filter(|e| !e.is_empty()) {
                    Some(email) => crate::http::one_line(email, 200),
                    None => format!("subject {:?}", crate::http::one_line(&subject, 200)),
                };
                LoginIdentity { subject, shown }
            }
            Credential::GithubAccess { account, .. } => LoginIdentity {
                subject: account.id.to_string(),
                shown: crate::http::one_line(&account.login, 100),
            },
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::IdToken { info, .. } => f
                .debug_struct("IdToken")
                .field("token", &"[redacted]")
                .field("info", info)
                .finish(),
            Credential::GithubAccess {
                account,
                expires_at,
                checked_at,
                ..
            } => f
                .debug_struct("GithubAccess")
                .field("token", &"[redacted]")
                .field("account", account)
                .field("expires_at", expires_at)
                .field("checked_at", checked_at)
                .finish(),
        }
    }
}

/// A credential and what renews it: the typed content of one cache entry.
#[derive(Clone)]
pub struct CredentialEntry {
    /// The credential.
    pub credential: Credential,
    /// The refresh token, when the provider issued one.
    pub refresh_token: Option<SecretString>,
    /// When the refresh token expires, when the provider said.
    pub refresh_expires_at: Option<DateTime<Utc>>,
}

impl CredentialEntry {
    /// The entry of an ID token and its refresh token, with the ID token's claims read (not
    /// verified: see the module doc).
    pub fn from_id_token(tokens: TokenSet) -> Result<Self, TokenError> {
        let info = IdTokenInfo::decode_secret(&tokens.id_token)?;
        Ok(Self {
            credential: Credential::IdToken {
                token: tokens.id_token,
                info,
            },
            refresh_token: tokens.refresh_token,
            refresh_expires_at: None,
        })
    }

    /// The pair the token cache stores: the credential's token and the refresh token.
    pub fn token_set(&self) -> TokenSet {
        TokenSet {
            id_token: self.credential.token().clone(),
            refresh_token: self.refresh_token.clone(),
        }
    }
}

impl std::fmt::Debug for CredentialEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialEntry")
            .field("credential", &self.credential)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("refresh_expires_at", &self.refresh_expires_at)
            .finish()
    }
}

/// Who a login was for: the stable subject to compare, and how to name it to a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginIdentity {
    /// The stable identifier (`sub`, GitHub's numeric user id).
    pub subject: String,
    /// What to show (the email, the GitHub login, else the subject), on one line.
    pub shown: String,
}

/// True when `token` is exactly a JWS in compact form (RFC 7515 7.1): three base64url parts
/// separated by dots (the signature may be empty), nothing before, between or after them. A
/// token with anything else (a `Bearer ` prefix, a blank, a control character) would reach the
/// apiserver as a malformed bearer.
pub fn is_compact_jws(token: &str) -> bool {
    let b64url = |part: &str| {
        part.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let mut parts = token.split('.');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() && b64url(h) && b64url(p) && b64url(s)
    )
}

/// Why an ID token could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token is not three base64url parts separated by dots.
    #[error("the ID token is not a JWT (expected three dot-separated parts)")]
    NotJwt,
    /// The token is larger than [`MAX_TOKEN_LEN`].
    #[error("the ID token is larger than {MAX_TOKEN_LEN} bytes")]
    TooLarge,
    /// The payload is not base64url-encoded JSON.
    #[error("the ID token payload is not base64url-encoded JSON")]
    BadPayload,
    /// A required claim is missing or has the wrong type.
    #[error("the ID token has no valid `{0}` claim")]
    Claim(&'static str),
}

/// What koidc reads from an ID token's payload without verifying it.
#[derive(Debug, Clone)]
pub struct IdTokenInfo {
    /// `iss`
    pub issuer: String,
    /// `aud`, always as a list.
    pub audiences: Vec<String>,
    /// `exp`
    pub expiry: DateTime<Utc>,
    /// `iat`, when present.
    pub issued_at: Option<DateTime<Utc>>,
    /// The whole payload, for display (`whoami`, `login`).
    pub claims: Value,
}

impl IdTokenInfo {
    /// Decodes the payload of `jwt`. Does not check the signature.
    pub fn decode(jwt: &str) -> Result<Self, TokenError> {
        if jwt.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge);
        }
        let mut parts = jwt.split('.');
        let (Some(_header), Some(payload), Some(_sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::NotJwt);
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| TokenError::BadPayload)?;
        let claims: Value = serde_json::from_slice(&bytes).map_err(|_| TokenError::BadPayload)?;
        let issuer = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(TokenError::Claim("iss"))?
            .to_owned();
        let audiences = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or(TokenError::Claim("aud")))
                .collect::<Result<_, _>>()?,
            _ => return Err(TokenError::Claim("aud")),
        };
        let expiry = claims
            .get("exp")
            .and_then(timestamp)
            .ok_or(TokenError::Claim("exp"))?;
        let issued_at = claims.get("iat").and_then(timestamp);
        Ok(Self {
            issuer,
            audiences,
            expiry,
            issued_at,
            claims,
        })
    }

    /// Decodes a token held as a secret.
    pub fn decode_secret(jwt: &SecretString) -> Result<Self, TokenError> {
        Self::decode(jwt.expose_secret())
    }

    /// True when the token names `issuer` and has `client_id` among its audiences.
    pub fn belongs_to(&self, issuer: &str, client_id: &str) -> bool {
        self.issuer == issuer && self.audiences.iter().any(|a| a == client_id)
    }

    /// `auth_time` (OpenID Connect Core 2: when the login happened), in seconds since the epoch.
    pub fn auth_time(&self) -> Option<i64> {
        self.claims.get("auth_time").and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
        })
    }

    /// A string claim, when present.
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// The `groups` claim as a list (a single string counts as one group).
    pub fn groups(&self) -> Vec<String> {
        match self.claims.get("groups") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    }
}

fn timestamp(v: &Value) -> Option<DateTime<Utc>> {
    let secs = match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?,
        _ => return None,
    };
    Utc.timestamp_opt(secs, 0).single()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.sig", enc.encode(r#"{"alg":"RS256"}"#), enc.encode(payload))
    }

    #[test]
    fn a_credential_names_its_identity_and_its_debug_form_hides_every_token() {
        let id_token =
            jwt(r#"{"iss":"https://i","aud":"c","exp":2000000000,"sub":"s-1","email":"a@example.com"}"#);
        let entry = CredentialEntry::from_id_token(TokenSet {
            id_token: SecretString::from(id_token.clone()),
            refresh_token: Some(SecretString::from("refresh-secret".to_owned())),
        })
        .unwrap();
        let who = entry.credential.identity();
        assert_eq!(
            (who.subject.as_str(), who.shown.as_str()),
            ("s-1", "a@example.com")
        );
        assert_eq!(entry.token_set().id_token.expose_secret(), id_token);
        let debug = format!("{entry:?}");
        assert!(
            !debug.contains(&id_token) && !debug.contains("refresh-secret"),
            "{debug}"
        );

        let no_email = jwt(r#"{"iss":"https://i","aud":"c","exp":2000000000,"sub":"s-2"}"#);
        let info = IdTokenInfo::decode(&no_email).unwrap();
        let credential = Credential::IdToken {
            token: SecretString::from(no_email),
            info,
        };
        assert_eq!(credential.identity().shown, "subject \"s-2\"");

        let github = Credential::GithubAccess {
            token: SecretString::from("gho_secret".to_owned()),
            account: Account {
                id: 42,
                login: "octocat".into(),
                name: None,
                orgs: Vec::new(),
                teams: Vec::new(),
            },
            expires_at: None,
            checked_at: None,
        };
        let who = github.identity();
        assert_eq!((who.subject.as_str(), who.shown.as_str()), ("42", "octocat"));
        assert!(github.id_token_info().is_none());
        assert!(!format!("{github:?}").contains("gho_secret"));
    }

    #[test]
    fn decodes_string_and_list_audiences() {
        let one = IdTokenInfo::decode(&jwt(r#"{"iss":"https://i","aud":"c","exp":2000000000}"#)).unwrap();
        assert_eq!(one.audiences, vec!["c"]);
        assert!(one.belongs_to("https://i", "c"));
        assert!(!one.belongs_to("https://i/", "c"));
        let many = IdTokenInfo::decode(&jwt(
            r#"{"iss":"https://i","aud":["a","c"],"exp":2000000000,"groups":["g1","g2"]}"#,
        ))
        .unwrap();
        assert!(many.belongs_to("https://i", "c"));
        assert_eq!(many.groups(), vec!["g1", "g2"]);
        assert_eq!(many.expiry.timestamp(), 2_000_000_000);
    }

    #[test]
    fn rejects_malformed_tokens() {
        assert!(matches!(IdTokenInfo::decode("abc"), Err(TokenError::NotJwt)));
        assert!(matches!(IdTokenInfo::decode("a.b.c.d"), Err(TokenError::NotJwt)));
        assert!(matches!(
            IdTokenInfo::decode("a.!!!.c"),
            Err(TokenError::BadPayload)
        ));
        assert!(matches!(
            IdTokenInfo::decode(&jwt("not json")),
            Err(TokenError::BadPayload)
        ));
        assert!(matches!(
            IdTokenInfo::decode(&jwt(r#"{"aud":"c","exp":1}"#)),
            Err(TokenError::Claim("iss"))
        ));
        assert!(matches!(
            IdTokenInfo::decode(&jwt(r#"{"iss":"i","aud":"c"}"#)),
            Err(TokenError::Claim("exp"))
        ));
        assert!(matches!(
            IdTokenInfo::decode(&jwt(r#"{"iss":"i","aud":[1],"exp":1}"#)),
            Err(TokenError::Claim("aud"))
        ));
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert!(matches!(IdTokenInfo::decode(&huge), Err(TokenError::TooLarge)));
    }

    #[test]
    fn hostile_payloads_are_errors_not_panics() {
        // Not an object, or claims of the wrong type or out of range.
        for (payload, claim) in [
            ("[]", "iss"),
            ("\"iss\"", "iss"),
            (r#"{"iss":"i","aud":"c","exp":1e300}"#, "exp"),
            (r#"{"iss":"i","aud":"c","exp":-1e300}"#, "exp"),
            (r#"{"iss":"i","aud":"c","exp":9223372036854775807}"#, "exp"),
            (r#"{"iss":"i","aud":"c","exp":"2000000000"}"#, "exp"),
            (r#"{"iss":"i","aud":{},"exp":1}"#, "aud"),
            (r#"{"iss":null,"aud":"c","exp":1}"#, "iss"),
        ] {
            match IdTokenInfo::decode(&jwt(payload)) {
                Err(TokenError::Claim(c)) => assert_eq!(c, claim, "{payload}"),
                other => panic!("{payload}: {other:?}"),
            }
        }
        // JSON nested deeper than the parser's recursion limit.
        let deep = format!(
            r#"{{"iss":"i","aud":"c","exp":1,"x":{}{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(matches!(
            IdTokenInfo::decode(&jwt(&deep)),
            Err(TokenError::BadPayload)
        ));
        // A fractional exp is truncated; padding on the payload is tolerated; empty parts fail.
        let info = IdTokenInfo::decode(&jwt(r#"{"iss":"i","aud":[],"exp":2000000000.9}"#)).unwrap();
        assert_eq!(info.expiry.timestamp(), 2_000_000_000);
        assert!(!info.belongs_to("i", "c"));
        let enc = base64::engine::general_purpose::URL_SAFE;
        let padded = format!("e30.{}.s", enc.encode(r#"{"iss":"i","aud":"c","exp":123}"#));
        assert!(padded.contains("=."), "{padded}");
        assert!(IdTokenInfo::decode(&padded).is_ok());
        assert!(matches!(IdTokenInfo::decode(".."), Err(TokenError::BadPayload)));
    }

    #[test]
    fn only_the_exact_compact_form_of_a_jws_counts() {
        assert!(is_compact_jws("eyJh.eyJz.c2ln"));
        assert!(is_compact_jws("eyJh.eyJz."));
        for bad in [
            "Bearer eyJh.eyJz.c2ln",
            "eyJh.eyJz.c2ln junk",
            "eyJh.eyJz.c2ln\u{1b}[2J",
            "eyJh.eyJz.c2ln\tX-Evil: 1",
            "eyJh.eyJz",
            "eyJh.eyJz.c2ln.x",
            ".eyJz.c2ln",
            "eyJh..c2ln",
            "eyJh.eyJ=.c2ln",
            "",
        ] {
            assert!(!is_compact_jws(bad), "{bad:?}");
        }
    }
}
