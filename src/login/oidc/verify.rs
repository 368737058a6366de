//! ID token verification (OpenID Connect Core 3.1.3.7), as one pure function over the token, the
//! provider's keys and what koidc expects, so every rule can be tested without a network.
//!
//! The `openidconnect` crate's [`CoreIdTokenVerifier`] does the signature, audience, expiry and
//! nonce checks. Around it koidc adds its own, stricter checks so that a change in the crate's
//! defaults cannot weaken them: the `alg` header is read first (`none` and every HMAC algorithm
//! are refused outright, whatever the client's configuration; the crate is never given the client
//! secret as a key), the issuer is compared byte for byte before anything else, and `azp` is
//! compared with the client id explicitly.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{ClaimsVerificationError, ClientId, IssuerUrl, Nonce, SignatureVerificationError};
use serde_json::Value;

use super::http::one_line;
use crate::login::token::MAX_TOKEN_LEN;

/// How far in the future a token's `nbf` may be (clock skew between koidc and the provider).
pub(crate) const NBF_LEEWAY: chrono::Duration = chrono::Duration::minutes(5);

/// The signature algorithms koidc accepts for ID tokens: asymmetric ones only.
pub const ASYMMETRIC_ALGS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// The JOSE name of an algorithm (`RS256`, ...).
pub(crate) fn alg_name(alg: &CoreJwsSigningAlgorithm) -> String {
    serde_json::to_value(alg)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{alg:?}"))
}

/// Why an ID token was rejected. Each variant names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The token is not a well-formed signed JWT with the required claims.
    #[error("malformed token ({0})")]
    Malformed(String),
    /// The header says `alg: none` (an unsigned token).
    #[error("algorithm none is not allowed")]
    AlgNone,
    /// The header names an algorithm koidc does not accept (HMAC algorithms always, and any
    /// algorithm the provider did not advertise).
    #[error("algorithm {alg} is not allowed (allowed: {allowed})")]
    AlgNotAllowed {
        /// The algorithm in the token header.
        alg: String,
        /// The algorithms koidc accepts from this provider.
        allowed: String,
    },
    /// `iss` is not the configured issuer, byte for byte.
    #[error("issuer mismatch (expected {expected}, got {got})")]
    Issuer {
        /// The configured issuer.
        expected: String,
        /// The token's `iss` (empty when missing).
        got: String,
    },
    /// `aud` does not contain the client id, or contains another, untrusted audience.
    #[error("audience {0}")]
    Audience(String),
    /// `azp` is present and differs from the client id.
    #[error("authorized party (azp) mismatch (expected {expected}, got {got})")]
    AuthorizedParty {
        /// The client id.
        expected: String,
        /// The token's `azp`.
        got: String,
    },
    /// `exp` is not in the future.
    #[error("expired at {expiry} (now {now})")]
    Expired {
        /// The token's `exp`.
        expiry: String,
        /// The time koidc checked against.
        now: String,
    },
    /// `nbf` is more than a clock-skew allowance (5 minutes) in the future: the token is not
    /// valid yet (RFC 7519 4.1.5), so it must not be cached and handed out.
    #[error(
        "not valid before {not_before} (nbf claim; now {now}); check the clocks of this machine and of the identity provider"
    )]
    NotYetValid {
        /// The token's `nbf`.
        not_before: String,
        /// The time koidc checked against.
        now: String,
    },
    /// `nonce` is missing or differs from the one sent with the authorization request.
    #[error("nonce {0}")]
    Nonce(String),
    /// No key in the provider's JWKS matches the token's `kid` and algorithm.
    #[error("signature: no key in the provider's JWKS matches kid {kid} and algorithm {alg}")]
    UnknownKey {
        /// The token's `kid` (`(none)` when missing).
        kid: String,
        /// The token's `alg`.
        alg: String,
    },
    /// The signature does not verify.
    #[error("signature does not verify ({0})")]
    Signature(String),
    /// Another check of the verifier failed.
    #[error("{0}")]
    Other(String),
}

/// What an ID token must match.
pub(crate) struct Expected<'a> {
    /// The configured issuer.
    pub issuer: &'a IssuerUrl,
    /// The client id: must be in `aud`, the only audience (but `audience`), and equal `azp`
    /// when present.
    pub client_id: &'a str,
    /// A cluster's audience the token must name in `aud` beside the client id; then `azp` is
    /// required (the client the token was issued to). `None`: no other audience is accepted.
    pub audience: Option<&'a str>,
    /// The accepted algorithms (a subset of [`ASYMMETRIC_ALGS`]).
    pub algs: &'a [CoreJwsSigningAlgorithm],
    /// The current time, from koidc's clock.
    pub now: DateTime<Utc>,
    /// The nonce sent with the authorization request; `None` after a refresh, when the provider
    /// may omit the nonce or repeat the original one, so it is not checked.
    pub nonce: Option<&'a Nonce>,
}

/// Verifies `raw` against `jwks` and `exp`. On success the token is safe to hand to kubectl.
pub(crate) fn verify(raw: &str, jwks: &CoreJsonWebKeySet, exp: &Expected<'_>) -> Result<(), Rejection> {
    if raw.len() > MAX_TOKEN_LEN {
        return Err(Rejection::Malformed(format!("larger than {MAX_TOKEN_LEN} bytes")));
    }
    let (header, payload) = unverified_parts(raw)?;

    // 1. The algorithm, before anything the signature would protect.
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| Rejection::Malformed("the header has no alg".into()))?;
    if alg == "none" {
        return Err(Rejection::AlgNone);
    }
    let allowed = || exp.algs.iter().map(alg_name).collect::<Vec<_>>().join(", ");
    if !exp.algs.iter().any(|a| alg_name(a) == alg) {
        return Err(Rejection::AlgNotAllowed {
            alg: one_line(alg, 40),
            allowed: allowed(),
        });
    }
    let kid = header.get("kid").and_then(Value::as_str).map(|k| one_line(k, 80));

    // 2. The issuer, byte for byte.
    let got_iss = payload.get("iss").and_then(Value::as_str).unwrap_or_default();
    if got_iss != exp.issuer.as_str() {
        return Err(Rejection::Issuer {
            expected: exp.issuer.to_string(),
            got: one_line(got_iss, 200),
        });
    }

    // 3. Signature, audience, expiry and nonce, by the crate. It is built as a public-client
    //    verifier: it has no symmetric key, so it could not accept an HMAC even if asked to.
    let token: CoreIdToken = raw
        .parse()
        .map_err(|e: serde_json::Error| Rejection::Malformed(one_line(&e.to_string(), 200)))?;
    let now = exp.now;
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(exp.client_id.to_owned()),
        exp.issuer.clone(),
        jwks.clone(),
    )
    .set_allowed_algs(exp.algs.iter().cloned())
    .set_other_audience_verifier_fn({
        let other = exp.audience.map(str::to_owned);
        move |aud| Some(aud.as_str()) == other.as_deref()
    })
    .set_time_fn(move || now);
    let claims = match exp.nonce {
        Some(nonce) => token.claims(&verifier, nonce),
        None => token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
    }
    .map_err(|e| {
        map_crate_error(
            e,
            &Context {
                kid: kid.as_deref(),
                alg,
                payload: &payload,
                exp,
            },
        )
    })?;

    // 4. `azp`, explicitly (the crate leaves it to the caller).
    if let Some(azp) = claims.authorized_party()
        && azp.as_str() != exp.client_id
    {
        return Err(Rejection::AuthorizedParty {
            expected: exp.client_id.to_owned(),
            got: one_line(azp.as_str(), 200),
        });
    }
    // Belt and braces on what the crate already checked.
    let allowed = |a: &str| a == exp.client_id || Some(a) == exp.audience;
    if !claims.audiences().iter().all(|a| allowed(a.as_str())) || claims.audiences().is_empty() {
        return Err(Rejection::Audience(match exp.audience {
            None => format!("must be exactly {}", exp.client_id),
            Some(aud) => format!("must be {aud} and {} only", exp.client_id),
        }));
    }
    // A token for a cluster: it must name that cluster, and the client it was issued to.
    if let Some(aud) = exp.audience {
        if !claims.audiences().iter().any(|a| a.as_str() == aud) {
            return Err(Rejection::Audience(format!(
                "must contain {aud} (the cluster's audience): the IdP ignored the request for it"
            )));
        }
        if claims.authorized_party().is_none() {
            return Err(Rejection::AuthorizedParty {
                expected: exp.client_id.to_owned(),
                got: "(none)".to_owned(),
            });
        }
    }
    if claims.expiration() <= now {
        return Err(Rejection::Expired {
            expiry: claims.expiration().to_rfc3339(),
            now: now.to_rfc3339(),
        });
    }
    // 5. `nbf`, which the crate ignores (RFC 7519 4.1.5): the token must not be used before.
    if let Some(nbf) = payload.get("nbf") {
        let not_before = nbf
            .as_i64()
            .or_else(|| nbf.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64))
            .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
            .ok_or_else(|| Rejection::Malformed("the nbf claim is not a valid timestamp".into()))?;
        if not_before > now + NBF_LEEWAY {
            return Err(Rejection::NotYetValid {
                not_before: not_before.to_rfc3339(),
                now: now.to_rfc3339(),
            });
        }
    }
    Ok(())
}

/// Which audience an access token must be for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessAudience<'a> {
    /// `aud` contains this (`--audience`, the apiserver's).
    Contains(&'a str),
    /// Without `--audience`: the token is this client's, by `aud` or by the claim that names
    /// the client it was issued to (`client_id` of RFC 9068, `azp`, Okta's `cid`, Entra's
    /// `appid`).
    IssuedTo(&'a str),
}

impl AccessAudience<'_> {
    /// Whether a token with `audiences` and claims `payload` qualifies.
    pub(crate) fn accepts(self, audiences: &[&str], payload: &Value) -> bool {
        match self {
            AccessAudience::Contains(audience) => audiences.contains(&audience),
            AccessAudience::IssuedTo(client) => {
                audiences.contains(&client)
                    || ["client_id", "azp", "cid", "appid"]
                        .iter()
                        .any(|c| payload.get(*c).and_then(Value::as_str) == Some(client))
            }
        }
    }
}

/// Verifies a JWT access token (a client credentials grant's, when the provider returns no ID
/// token): an allowed asymmetric `alg`, the issuer byte for byte, a signature by one of the
/// provider's keys (the one its `kid` names), `audience` among its `aud`, an `exp` after `now`
/// and no `nbf` ahead of it. It names no client id (RFC 9068 puts the client in `client_id`), so
/// the apiserver's audience is what ties it to the cluster.
pub(crate) fn verify_access_token(
    raw: &str,
    jwks: &CoreJsonWebKeySet,
    issuer: &IssuerUrl,
    audience: AccessAudience<'_>,
    algs: &[CoreJwsSigningAlgorithm],
    now: DateTime<Utc>,
) -> Result<(), Rejection> {
    use openidconnect::JsonWebKey as _;
    if raw.len() > MAX_TOKEN_LEN {
        return Err(Rejection::Malformed(format!("larger than {MAX_TOKEN_LEN} bytes")));
    }
    let (header, payload) = unverified_parts(raw)?;
    let alg_text = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| Rejection::Malformed("the header has no alg".into()))?;
    if alg_text == "none" {
        return Err(Rejection::AlgNone);
    }
    let Some(alg) = algs.iter().find(|a| alg_name(a) == alg_text) else {
        return Err(Rejection::AlgNotAllowed {
            alg: one_line(alg_text, 40),
            allowed: algs.iter().map(alg_name).collect::<Vec<_>>().join(", "),
        });
    };
    let got_iss = payload.get("iss").and_then(Value::as_str).unwrap_or_default();
    if got_iss != issuer.as_str() {
        return Err(Rejection::Issuer {
            expected: issuer.to_string(),
            got: one_line(got_iss, 200),
        });
    }
    let kid = header.get("kid").and_then(Value::as_str);
    let Some((signed, signature)) = raw.rsplit_once('.') else {
        return Err(Rejection::Malformed("not three dot-separated parts".into()));
    };
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| Rejection::Malformed("the signature is not base64url".into()))?;
    let candidates: Vec<_> = jwks
        .keys()
        .iter()
        .filter(|key| match (kid, key.key_id()) {
            (Some(kid), Some(id)) => id.as_str() == kid,
            (Some(_), None) => false,
            (None, _) => true,
        })
        .collect();
    if candidates.is_empty() {
        return Err(Rejection::UnknownKey {
            kid: kid.map_or_else(|| "(none)".to_owned(), |k| one_line(k, 80)),
            alg: alg_text.to_owned(),
        });
    }
    let mut last = None;
    let verified =
        candidates.iter().any(
            |key| match key.verify_signature(alg, signed.as_bytes(), &signature) {
                Ok(()) => true,
                Err(e) => {
                    last = Some(e);
                    false
                }
            },
        );
    if !verified {
        return Err(Rejection::Signature(
            last.map(|e| one_line(&e.to_string(), 200)).unwrap_or_default(),
        ));
    }
    let audiences: Vec<&str> = match payload.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audience.accepts(&audiences, &payload) {
        let named: Vec<String> = audiences
            .iter()
            .take(5)
            .map(|a| format!("`{}`", one_line(a, 100)))
            .collect();
        let named = if named.is_empty() {
            "none".to_owned()
        } else {
            named.join(", ")
        };
        return Err(Rejection::Audience(match audience {
            AccessAudience::Contains(audience) => format!(
                "must contain `{audience}` (the token's: {named}); check --audience and the audience the IdP puts in this client's access tokens"
            ),
            AccessAudience::IssuedTo(client) => format!(
                "names neither the client `{client}` nor a client claim (client_id, azp, cid, appid) equal to it (the token's audiences: {named}); give the apiserver's audience with --audience"
            ),
        }));
    }
    let timestamp = |name: &str| -> Result<Option<DateTime<Utc>>, Rejection> {
        match payload.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64))
                .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
                .map(Some)
                .ok_or_else(|| Rejection::Malformed(format!("the {name} claim is not a valid timestamp"))),
        }
    };
    let expiry =
        timestamp("exp")?.ok_or_else(|| Rejection::Malformed("the token has no exp claim".into()))?;
    if expiry <= now {
        return Err(Rejection::Expired {
            expiry: expiry.to_rfc3339(),
            now: now.to_rfc3339(),
        });
    }
    if let Some(not_before) = timestamp("nbf")?
        && not_before > now + NBF_LEEWAY
    {
        return Err(Rejection::NotYetValid {
            not_before: not_before.to_rfc3339(),
            now: now.to_rfc3339(),
        });
    }
    Ok(())
}

/// What is wrong with the token's `aud`, in words: the audiences it names (or that it names
/// none), and what to check. `crate_message` is the crate's text, kept for an untrusted extra
/// audience beside the client id.
fn audience_problem(crate_message: &str, cx: &Context<'_>) -> String {
    let audiences: Vec<String> = match cx.payload.get("aud") {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .map(|a| a.as_str().map_or_else(|| a.to_string(), str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let client = cx.exp.client_id;
    if audiences.iter().any(|a| a == client) {
        return one_line(crate_message, 300);
    }
    let found = if audiences.is_empty() {
        ", but the token names no audience".to_owned()
    } else {
        let named: Vec<String> = audiences.iter().map(|a| format!("`{a}`")).collect();
        format!(" (the token's: {})", named.join(", "))
    };
    one_line(&format!("must contain `{client}`{found}; check --client-id"), 300)
}

/// Decodes the header and payload JSON objects without checking anything.
fn unverified_parts(raw: &str) -> Result<(Value, Value), Rejection> {
    let mut parts = raw.split('.');
    let (Some(h), Some(p), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Rejection::Malformed("not three dot-separated parts".into()));
    };
    let decode = |part: &str, what: &str| -> Result<Value, Rejection> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| Rejection::Malformed(format!("the {what} is not base64url")))?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v @ Value::Object(_)) => Ok(v),
            _ => Err(Rejection::Malformed(format!("the {what} is not a JSON object"))),
        }
    };
    Ok((decode(h, "header")?, decode(p, "payload")?))
}

/// What [`map_crate_error`] needs to name the failed check.
struct Context<'a> {
    kid: Option<&'a str>,
    alg: &'a str,
    payload: &'a Value,
    exp: &'a Expected<'a>,
}

fn map_crate_error(err: ClaimsVerificationError, cx: &Context<'_>) -> Rejection {
    match err {
        ClaimsVerificationError::Expired(_) => Rejection::Expired {
            expiry: cx
                .payload
                .get("exp")
                .and_then(Value::as_i64)
                .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "?".into()),
            now: cx.exp.now.to_rfc3339(),
        },
        ClaimsVerificationError::InvalidAudience(m) => Rejection::Audience(audience_problem(&m, cx)),
        ClaimsVerificationError::InvalidIssuer(_) => Rejection::Issuer {
            expected: cx.exp.issuer.to_string(),
            got: one_line(
                cx.payload.get("iss").and_then(Value::as_str).unwrap_or_default(),
                200,
            ),
        },
        ClaimsVerificationError::InvalidNonce(m) => Rejection::Nonce(match m.as_str() {
            "nonce mismatch" => "does not match the login request".into(),
            "missing nonce claim" => "is missing".into(),
            other => one_line(other, 200),
        }),
        ClaimsVerificationError::SignatureVerification(e) => match e {
            SignatureVerificationError::NoSignature => Rejection::AlgNone,
            SignatureVerificationError::NoMatchingKey => Rejection::UnknownKey {
                kid: cx.kid.unwrap_or("(none)").to_owned(),
                alg: one_line(cx.alg, 40),
            },
            SignatureVerificationError::DisallowedAlg(m) | SignatureVerificationError::UnsupportedAlg(m) => {
                Rejection::AlgNotAllowed {
                    alg: one_line(cx.alg, 40),
                    allowed: one_line(&m, 200),
                }
            }
            other => Rejection::Signature(one_line(&other.to_string(), 200)),
        },
        other => Rejection::Other(one_line(&other.to_string(), 300)),
    }
}
