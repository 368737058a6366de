//! Tests of the IdP adapter against a tiny in-process stub IdP (axum on 127.0.0.1:0) that serves
//! discovery, a JWKS, a token and a revocation endpoint, and returns ID tokens crafted per test
//! (signed with the test-only key in tests/fixtures/stub-idp-rsa.pem, or forged).

use std::collections::{HashMap, VecDeque};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use openidconnect::core::{CoreHmacKey, CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey};
use openidconnect::{JsonWebKeyId, PrivateSigningKey};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::Digest as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

use super::client::{Metadata, check_endpoints};
use super::*;
use crate::clock::Clock;
use crate::login::callback::{CallbackError, check_iss};
use crate::login::token::{IdTokenInfo, TokenSet};

mod device_flow;
mod machine;
mod paste;
mod request;

const PEM_FILE: &str = include_str!("../../../tests/fixtures/stub-idp-rsa.pem");
const CLIENT_ID: &str = "koidc";
const REDIRECT: &str = "http://127.0.0.1:18000/callback";
const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBnzCCAUWgAwIBAgIUBdU/w5z9I9zi9h1AOyZ7K7KxkLQwCgYIKoZIzj0EAwIw
JDEiMCAGA1UEAwwZa29pZGMgdGVzdCBDQSAodGVzdCBvbmx5KTAgFw0yNjExMjcw
NzI0NDVaGA8yMTI2MTEwMzA3MjQ0NVowJDEiMCAGA1UEAwwZa29pZGMgdGVzdCBD
QSAodGVzdCBvbmx5KTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABHVki1vql4Y6
+EgBgHGcQs8cfOfTDtpHXEg9HIHl+UL964sbK0dltg3Ukd9NOViElu5Mn1ZVydBS
ckJ2f9xJ4WKjUzBRMB0GA1UdDgQWBBTkXNGfg4BSTW3BbcX1f6AoU1WDojAfBgNV
HSMEGDAWgBTkXNGfg4BSTW3BbcX1f6AoU1WDojAPBgNVHRMBAf8EBTADAQH/MAoG
CCqGSM49BAMCA0gAMEUCIGnTJXx9Dt2zJ1HiJKmoqBMBwvbEV0F0wIsoy8yUn/wJ
AiEAhP1SoKffeXmIxU2wAzrW6pMk+FjX1hhIyQg72S7JYyQ=
-----END CERTIFICATE-----
";

/// The test key (the fixture starts with a note before the PEM block).
fn key(kid: &str) -> CoreRsaPrivateSigningKey {
    let pem = &PEM_FILE[PEM_FILE.find("-----BEGIN").unwrap()..];
    CoreRsaPrivateSigningKey::from_pem(pem, Some(JsonWebKeyId::new(kid.to_owned()))).unwrap()
}

fn jwk(kid: &str) -> Value {
    serde_json::to_value(key(kid).as_verification_key()).unwrap()
}

/// The injected clock: far from the real time, so a test passing proves it is the one used.
struct FixedClock(DateTime<Utc>);
impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}
fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(2_100_000_000, 0).unwrap()
}

struct Recorded {
    form: HashMap<String, String>,
    authorization: Option<String>,
    /// The `x-tenant` header (sent by `--request-header` in the tests).
    tenant: Option<String>,
}

#[derive(Default)]
struct Stub {
    discovery: Mutex<Value>,
    /// JWKS documents served in turn; the last one repeats.
    jwks: Mutex<Vec<Value>>,
    jwks_hits: Mutex<usize>,
    token_replies: Mutex<VecDeque<(u16, String)>>,
    token_requests: Mutex<Vec<Recorded>>,
    revoke_requests: Mutex<Vec<Recorded>>,
    device_replies: Mutex<VecDeque<(u16, String)>>,
    device_requests: Mutex<Vec<Recorded>>,
}

fn json_reply(status: u16, body: String) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

fn record(headers: &HeaderMap, body: &str) -> Recorded {
    Recorded {
        form: url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect(),
        authorization: headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_owned()),
        tenant: headers.get("x-tenant").map(|v| v.to_str().unwrap().to_owned()),
    }
}

async fn discovery(State(s): State<Arc<Stub>>) -> Response {
    json_reply(200, s.discovery.lock().unwrap().to_string())
}
async fn keys(State(s): State<Arc<Stub>>) -> Response {
    let mut hits = s.jwks_hits.lock().unwrap();
    let docs = s.jwks.lock().unwrap();
    let doc = docs[(*hits).min(docs.len() - 1)].clone();
    *hits += 1;
    json_reply(200, doc.to_string())
}
async fn token(State(s): State<Arc<Stub>>, headers: HeaderMap, body: String) -> Response {
    s.token_requests.lock().unwrap().push(record(&headers, &body));
    let (status, body) = s
        .token_replies
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((500, String::new()));
    json_reply(status, body)
}
async fn device_code(State(s): State<Arc<Stub>>, headers: HeaderMap, body: String) -> Response {
    s.device_requests.lock().unwrap().push(record(&headers, &body));
    let (status, body) = s
        .device_replies
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((500, String::new()));
    json_reply(status, body)
}
async fn revoke(State(s): State<Arc<Stub>>, headers: HeaderMap, body: String) -> Response {
    s.revoke_requests.lock().unwrap().push(record(&headers, &body));
    StatusCode::OK.into_response()
}

/// A running stub IdP with issuer `http://127.0.0.1:PORT/idp`.
struct Idp {
    base: String,
    issuer: String,
    stub: Arc<Stub>,
}

impl Idp {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let issuer = format!("{base}/idp");
        let stub = Arc::new(Stub::default());
        *stub.discovery.lock().unwrap() = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/auth"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/keys"),
            "revocation_endpoint": format!("{issuer}/revoke"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "authorization_response_iss_parameter_supported": true,
        });
        *stub.jwks.lock().unwrap() = vec![json!({ "keys": [jwk("k1")] })];
        let app = Router::new()
            .route("/idp/.well-known/openid-configuration", get(discovery))
            .route("/idp/keys", get(keys))
            .route("/idp/token", post(token))
            .route("/idp/revoke", post(revoke))
            .route("/idp/device/code", post(device_code))
            .route(
                "/redirect/.well-known/openid-configuration",
                get(|| async {
                    (
                        StatusCode::FOUND,
                        [(header::LOCATION, "/idp/.well-known/openid-configuration")],
                    )
                }),
            )
            .route(
                "/slow/.well-known/openid-configuration",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "{}"
                }),
            )
            .route(
                "/notjson/.well-known/openid-configuration",
                get(|| async { "<html>hello</html>" }),
            )
            .with_state(stub.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, issuer, stub }
    }

    fn config(&self) -> OidcConfig {
        OidcConfig {
            audience: None,
            issuer: self.issuer.clone(),
            client_id: CLIENT_ID.into(),
            client_secret: None,
            scopes: vec!["email".into(), "groups".into()],
            extra_ca_files: Vec::new(),
            extra_ca_data: None,
            http_timeout: Duration::from_secs(5),
            request: Default::default(),
        }
    }

    async fn provider(&self) -> Provider {
        self.provider_with(self.config()).await
    }

    async fn provider_with(&self, cfg: OidcConfig) -> Provider {
        Provider::discover(&cfg, Arc::new(FixedClock(now())))
            .await
            .unwrap()
    }

    fn edit_discovery(&self, f: impl FnOnce(&mut serde_json::Map<String, Value>)) {
        f(self.stub.discovery.lock().unwrap().as_object_mut().unwrap());
    }

    fn push_token_reply(&self, status: u16, body: Value) {
        self.stub
            .token_replies
            .lock()
            .unwrap()
            .push_back((status, body.to_string()));
    }

    fn last_token_request(&self) -> Recorded {
        self.stub.token_requests.lock().unwrap().pop().unwrap()
    }

    /// Good claims for this issuer and client.
    fn claims(&self, nonce: Option<&str>) -> Value {
        let mut c = json!({
            "iss": self.issuer,
            "sub": "user-1",
            "aud": CLIENT_ID,
            "exp": now().timestamp() + 3600,
            "iat": now().timestamp() - 10,
            "email": "kilgore@kilgore.trout",
        });
        if let Some(n) = nonce {
            c["nonce"] = json!(n);
        }
        c
    }
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// An RS256 token signed with the test key, naming `kid`.
fn rs256(kid: &str, claims: &Value) -> String {
    let input = signing_input(&json!({"alg": "RS256", "kid": kid, "typ": "JWT"}), claims);
    let sig = key(kid)
        .sign(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, input.as_bytes())
        .unwrap();
    format!("{input}.{}", b64(&sig))
}

/// An HS256 token whose MAC key is `secret`.
fn hs256(secret: &[u8], claims: &Value) -> String {
    let input = signing_input(&json!({"alg": "HS256", "kid": "k1", "typ": "JWT"}), claims);
    let sig = CoreHmacKey::new(secret.to_vec())
        .sign(&CoreJwsSigningAlgorithm::HmacSha256, input.as_bytes())
        .unwrap();
    format!("{input}.{}", b64(&sig))
}

fn query(url: &str) -> HashMap<String, String> {
    Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

/// Runs a login whose token endpoint returns the token `make(nonce)` (plus a refresh token).
async fn login_with(
    idp: &Idp,
    provider: &Provider,
    make: impl FnOnce(&str) -> String,
) -> Result<TokenSet, OidcError> {
    let req = provider.authorization_request(REDIRECT).unwrap();
    let nonce = query(&req.url)["nonce"].clone();
    idp.push_token_reply(
        200,
        json!({"access_token": "at", "token_type": "bearer", "id_token": make(&nonce), "refresh_token": "rt-1"}),
    );
    provider.exchange_code(req, SecretString::from("the-code")).await
}

fn rejection(res: Result<TokenSet, OidcError>) -> Rejection {
    match res {
        Err(OidcError::IdTokenRejected(r)) => r,
        other => panic!("expected an ID token rejection, got {other:?}"),
    }
}

/// The rejection of an RS256 ID token (key `k1`) with the stub's claims as `edit` leaves them.
async fn rejection_of_claims(idp: &Idp, provider: &Provider, edit: impl FnOnce(&mut Value)) -> Rejection {
    rejection(
        login_with(idp, provider, |n| {
            let mut c = idp.claims(Some(n));
            edit(&mut c);
            rs256("k1", &c)
        })
        .await,
    )
}

// ---------------------------------------------------------------------------------------------
// Authorization request and code exchange

#[tokio::test]
async fn authorization_request_uses_s256_pkce_fresh_state_and_nonce_and_openid_scope() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let a = provider.authorization_request(REDIRECT).unwrap();
    let b = provider.authorization_request(REDIRECT).unwrap();
    let q = query(&a.url);
    assert!(a.url.starts_with(&format!("{}/auth?", idp.issuer)));
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], REDIRECT);
    assert_eq!(q["scope"], "openid email groups");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["state"], a.state);
    // 32 random bytes, base64url: 43 characters; fresh every time.
    assert_eq!(a.state.len(), 43);
    assert_eq!(a.pkce_verifier.as_ref().unwrap().expose_secret().len(), 43);
    assert_eq!(q["nonce"].len(), 43);
    assert_eq!(q["nonce"], a.nonce.expose_secret());
    assert_ne!(a.state, b.state);
    assert_ne!(a.nonce.expose_secret(), b.nonce.expose_secret());
    assert_ne!(
        a.pkce_verifier.as_ref().unwrap().expose_secret(),
        b.pkce_verifier.as_ref().unwrap().expose_secret()
    );
    let challenge = b64(&sha2::Sha256::digest(
        a.pkce_verifier.as_ref().unwrap().expose_secret().as_bytes(),
    ));
    assert_eq!(q["code_challenge"], challenge);
    // The verifier stays out of Debug (the nonce is in the URL anyway, by design).
    assert!(!format!("{a:?}").contains(a.pkce_verifier.as_ref().unwrap().expose_secret()));
    assert_eq!(a.issuer, idp.issuer);
    assert!(a.iss_required);
    assert!(provider.iss_parameter_supported());
    assert!(matches!(
        provider.authorization_request("not a url"),
        Err(OidcError::InvalidRedirectUri(_))
    ));
}

#[tokio::test]
async fn callback_iss_must_equal_issuer_and_is_required_when_advertised() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let req = provider.authorization_request(REDIRECT).unwrap();
    let check = |req: &AuthRequest, iss: Option<&str>| check_iss(req.expected(), iss);
    assert!(check(&req, Some(&idp.issuer)).is_ok());
    assert!(matches!(
        check(&req, Some("https://evil.example")),
        Err(CallbackError::IssuerMismatch { .. })
    ));
    assert!(matches!(
        check(&req, Some(&format!("{}/", idp.issuer))),
        Err(CallbackError::IssuerMismatch { .. })
    ));
    assert!(matches!(check(&req, None), Err(CallbackError::MissingIssuer)));
    idp.edit_discovery(|d| {
        d.remove("authorization_response_iss_parameter_supported");
    });
    let provider = idp.provider().await;
    assert!(!provider.iss_parameter_supported());
    assert!(check(&provider.authorization_request(REDIRECT).unwrap(), None).is_ok());
}

#[tokio::test]
async fn good_id_token_is_accepted_and_the_exchange_sends_code_verifier_and_redirect_uri() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let req = provider.authorization_request(REDIRECT).unwrap();
    let verifier = req.pkce_verifier.as_ref().unwrap().expose_secret().to_owned();
    let token = rs256("k1", &idp.claims(Some(&query(&req.url)["nonce"])));
    idp.push_token_reply(
        200,
        json!({"access_token": "at", "token_type": "bearer", "id_token": token, "refresh_token": "rt-1"}),
    );
    let set = provider
        .exchange_code(req, SecretString::from("the-code"))
        .await
        .unwrap();
    assert_eq!(set.id_token.expose_secret(), token);
    assert_eq!(set.refresh_token.unwrap().expose_secret(), "rt-1");
    let sent = idp.last_token_request();
    assert_eq!(sent.form["grant_type"], "authorization_code");
    assert_eq!(sent.form["code"], "the-code");
    assert_eq!(sent.form["redirect_uri"], REDIRECT);
    assert_eq!(sent.form["code_verifier"], verifier);
    assert_eq!(sent.form["client_id"], CLIENT_ID);
    assert!(sent.authorization.is_none() && !sent.form.contains_key("client_secret"));
}

#[tokio::test]
async fn confidential_client_uses_basic_auth_by_default_and_post_when_only_post_is_advertised() {
    let idp = Idp::start().await;
    let mut cfg = idp.config();
    cfg.client_secret = Some(SecretString::from("s3cr:et"));
    let provider = idp.provider_with(cfg.clone()).await;
    login_with(&idp, &provider, |n| rs256("k1", &idp.claims(Some(n))))
        .await
        .unwrap();
    let sent = idp.last_token_request();
    // RFC 6749 2.3.1: id and secret are form-urlencoded before base64.
    let expected = base64::engine::general_purpose::STANDARD.encode("koidc:s3cr%3Aet");
    assert_eq!(
        sent.authorization.as_deref(),
        Some(format!("Basic {expected}").as_str())
    );
    assert!(!sent.form.contains_key("client_secret") && !sent.form.contains_key("client_id"));

    idp.edit_discovery(|d| {
        d.insert(
            "token_endpoint_auth_methods_supported".into(),
            json!(["client_secret_post"]),
        );
    });
    let provider = idp.provider_with(cfg).await;
    login_with(&idp, &provider, |n| rs256("k1", &idp.claims(Some(n))))
        .await
        .unwrap();
    let sent = idp.last_token_request();
    assert!(sent.authorization.is_none());
    assert_eq!(sent.form["client_id"], CLIENT_ID);
    assert_eq!(sent.form["client_secret"], "s3cr:et");
}

#[tokio::test]
async fn code_exchange_without_id_token_is_an_error() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let req = provider.authorization_request(REDIRECT).unwrap();
    idp.push_token_reply(200, json!({"access_token": "at", "token_type": "bearer"}));
    let err = provider
        .exchange_code(req, SecretString::from("the-code"))
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::MissingIdToken), "{err:?}");
}

#[tokio::test]
async fn token_endpoint_error_shows_error_and_description_but_never_the_code() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let req = provider.authorization_request(REDIRECT).unwrap();
    idp.push_token_reply(
        400,
        json!({"error": "invalid_grant", "error_description": "code the-code-1234 is expired\nor used"}),
    );
    let err = provider
        .exchange_code(req, SecretString::from("the-code-1234"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, OidcError::TokenRequest { .. }), "{err:?}");
    assert!(
        msg.contains("invalid_grant") && msg.contains("is expired?or used"),
        "{msg}"
    );
    assert!(
        !msg.contains("the-code-1234") && msg.contains("[redacted]"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
}

#[tokio::test]
async fn non_json_token_endpoint_failure_reports_the_status() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let req = provider.authorization_request(REDIRECT).unwrap();
    // No reply queued: the stub answers 500 with an empty body.
    let err = provider
        .exchange_code(req, SecretString::from("c"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, OidcError::HttpStatus { status: 500, .. }),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// ID token verification

#[tokio::test]
async fn tampered_payload_fails_the_signature_check() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let r = rejection(
        login_with(&idp, &provider, |n| {
            let good = rs256("k1", &idp.claims(Some(n)));
            let parts: Vec<&str> = good.split('.').collect();
            let mut claims = idp.claims(Some(n));
            claims["email"] = json!("admin@example.com");
            format!("{}.{}.{}", parts[0], b64(claims.to_string().as_bytes()), parts[2])
        })
        .await,
    );
    assert!(matches!(r, Rejection::Signature(_)), "{r:?}");
    assert!(
        OidcError::from(r)
            .to_string()
            .starts_with("ID token rejected: signature")
    );
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let r = rejection(
        login_with(&idp, &provider, |n| {
            format!(
                "{}.",
                signing_input(&json!({"alg": "none"}), &idp.claims(Some(n)))
            )
        })
        .await,
    );
    assert_eq!(r, Rejection::AlgNone);
    assert_eq!(
        OidcError::from(r).to_string(),
        "ID token rejected: algorithm none is not allowed"
    );
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_rejected() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwk("k1")["n"].as_str().unwrap())
        .unwrap();
    let r = rejection(login_with(&idp, &provider, |nonce| hs256(&n, &idp.claims(Some(nonce)))).await);
    assert!(
        matches!(&r, Rejection::AlgNotAllowed { alg, .. } if alg == "HS256"),
        "{r:?}"
    );
}

#[tokio::test]
async fn hs256_signed_with_the_client_secret_is_rejected_even_for_a_confidential_client() {
    let idp = Idp::start().await;
    let mut cfg = idp.config();
    cfg.client_secret = Some(SecretString::from("client-secret"));
    idp.edit_discovery(|d| {
        d.insert(
            "id_token_signing_alg_values_supported".into(),
            json!(["RS256", "HS256"]),
        );
    });
    let provider = idp.provider_with(cfg).await;
    let r = rejection(login_with(&idp, &provider, |n| hs256(b"client-secret", &idp.claims(Some(n)))).await);
    assert!(
        matches!(&r, Rejection::AlgNotAllowed { alg, .. } if alg == "HS256"),
        "{r:?}"
    );
}

#[tokio::test]
async fn algorithm_not_advertised_by_the_provider_is_rejected() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let r = rejection(
        login_with(&idp, &provider, |n| {
            let input = signing_input(&json!({"alg": "RS384", "kid": "k1"}), &idp.claims(Some(n)));
            let sig = key("k1")
                .sign(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384, input.as_bytes())
                .unwrap();
            format!("{input}.{}", b64(&sig))
        })
        .await,
    );
    assert!(
        matches!(&r, Rejection::AlgNotAllowed { alg, allowed } if alg == "RS384" && allowed == "RS256"),
        "{r:?}"
    );
}

#[tokio::test]
async fn wrong_issuer_is_rejected_naming_both_values() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let r = rejection_of_claims(&idp, &provider, |c| c["iss"] = json!("https://evil.example")).await;
    assert_eq!(
        OidcError::from(r).to_string(),
        format!(
            "ID token rejected: issuer mismatch (expected {}, got https://evil.example)",
            idp.issuer
        )
    );
}

#[tokio::test]
async fn issuer_with_an_extra_trailing_slash_is_rejected() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let r = rejection_of_claims(&idp, &provider, |c| c["iss"] = json!(format!("{}/", idp.issuer))).await;
    assert!(
        matches!(&r, Rejection::Issuer { got, .. } if *got == format!("{}/", idp.issuer)),
        "{r:?}"
    );
}

#[tokio::test]
async fn wrong_audience_is_rejected() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let r = rejection_of_claims(&idp, &provider, |c| c["aud"] = json!("someone-else")).await;
    assert!(matches!(r, Rejection::Audience(_)), "{r:?}");
    assert!(
        OidcError::from(r)
            .to_string()
            .starts_with("ID token rejected: audience")
    );
}

#[tokio::test]
async fn an_audience_rejection_names_the_tokens_audiences_and_an_empty_list_reads_as_none() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    for (aud, expected) in [
        (
            json!(["someone-else", "other"]),
            format!(
                "audience must contain `{CLIENT_ID}` (the token's: `someone-else`, `other`); check --client-id"
            ),
        ),
        (
            json!([]),
            format!(
                "audience must contain `{CLIENT_ID}`, but the token names no audience; check --client-id"
            ),
        ),
    ] {
        let r = rejection_of_claims(&idp, &provider, |c| c["aud"] = aud.clone()).await;
        assert_eq!(r.to_string(), expected, "aud {aud}");
    }
}

#[tokio::test]
async fn extra_untrusted_audience_is_rejected() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let r = rejection_of_claims(&idp, &provider, |c| {
        c["aud"] = json!([CLIENT_ID, "other-client"]);
        c["azp"] = json!(CLIENT_ID);
    })
    .await;
    assert!(
        matches!(&r, Rejection::Audience(m) if m.contains("other-client")),
        "{r:?}"
    );
}

#[tokio::test]
async fn azp_other_than_the_client_id_is_rejected_and_equal_azp_is_accepted() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let r = rejection_of_claims(&idp, &provider, |c| c["azp"] = json!("other-client")).await;
    assert_eq!(
        r,
        Rejection::AuthorizedParty {
            expected: CLIENT_ID.into(),
            got: "other-client".into()
        }
    );
    login_with(&idp, &provider, |n| {
        let mut c = idp.claims(Some(n));
        c["azp"] = json!(CLIENT_ID);
        rs256("k1", &c)
    })
    .await
    .unwrap();
}

/// The tokens Dex issues for a cross-client audience: `aud` names the cluster's client and
/// koidc's, `azp` koidc's.
#[tokio::test]
async fn a_token_for_a_clusters_audience_needs_that_audience_the_client_and_azp() {
    let idp = Idp::start().await;
    let provider = idp
        .provider_with(OidcConfig {
            audience: Some("cluster-a".into()),
            ..idp.config()
        })
        .await;
    let with = |aud: Value, azp: Option<&'static str>| {
        let idp = &idp;
        move |n: &str| {
            let mut c = idp.claims(Some(n));
            c["aud"] = aud;
            if let Some(azp) = azp {
                c["azp"] = json!(azp);
            }
            rs256("k1", &c)
        }
    };
    login_with(
        &idp,
        &provider,
        with(json!(["cluster-a", CLIENT_ID]), Some(CLIENT_ID)),
    )
    .await
    .unwrap();
    for (aud, azp, what) in [
        // Dex ignored the scope: a token for koidc's client only, which cluster A refuses.
        (json!(CLIENT_ID), Some(CLIENT_ID), "must contain cluster-a"),
        // A token for another cluster, or for one more.
        (json!(["cluster-b", CLIENT_ID]), Some(CLIENT_ID), "cluster-b"),
        (
            json!(["cluster-a", "cluster-b", CLIENT_ID]),
            Some(CLIENT_ID),
            "cluster-b",
        ),
        // Issued to another client.
        (json!(["cluster-a", CLIENT_ID]), Some("cluster-a"), "azp"),
        (json!(["cluster-a", CLIENT_ID]), None, "azp"),
    ] {
        let err = login_with(&idp, &provider, with(aud.clone(), azp))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(what) || (what == "azp" && msg.contains("authorized party")),
            "aud {aud} azp {azp:?}: {msg}"
        );
    }
    // Without an audience to check, the cluster's token is refused as before.
    let plain = idp.provider().await;
    let err = login_with(
        &idp,
        &plain,
        with(json!(["cluster-a", CLIENT_ID]), Some(CLIENT_ID)),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("cluster-a"), "{err}");
}

#[tokio::test]
async fn token_expired_by_the_injected_clock_is_rejected() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    // Far in the future for the system clock, one second in the past for the injected one.
    let r = rejection_of_claims(&idp, &provider, |c| c["exp"] = json!(now().timestamp() - 1)).await;
    assert!(matches!(r, Rejection::Expired { .. }), "{r:?}");
    assert!(
        OidcError::from(r)
            .to_string()
            .starts_with("ID token rejected: expired at")
    );
}

#[tokio::test]
async fn token_not_valid_before_a_future_nbf_is_rejected_within_a_skew_allowance() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let with_nbf = |nbf: Value| {
        let idp = &idp;
        move |n: &str| {
            let mut c = idp.claims(Some(n));
            c["nbf"] = nbf;
            rs256("k1", &c)
        }
    };
    // An hour ahead of the injected clock (the system clock is far behind it).
    let r = rejection(login_with(&idp, &provider, with_nbf(json!(now().timestamp() + 3600))).await);
    assert!(matches!(r, Rejection::NotYetValid { .. }), "{r:?}");
    assert!(
        OidcError::from(r)
            .to_string()
            .starts_with("ID token rejected: not valid before")
    );
    let r = rejection(login_with(&idp, &provider, with_nbf(json!("soon"))).await);
    assert!(matches!(r, Rejection::Malformed(_)), "{r:?}");
    // Clock skew: a minute ahead is tolerated; the past, in seconds or fractional, is fine.
    for nbf in [
        json!(now().timestamp() + 60),
        json!(now().timestamp() - 10),
        json!(now().timestamp() as f64 - 0.5),
    ] {
        login_with(&idp, &provider, with_nbf(nbf)).await.unwrap();
    }
}

#[tokio::test]
async fn nonce_mismatch_or_missing_nonce_is_rejected_on_login() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let r = rejection(
        login_with(&idp, &provider, |_| {
            rs256("k1", &idp.claims(Some("another-nonce")))
        })
        .await,
    );
    assert_eq!(r, Rejection::Nonce("does not match the login request".into()));
    assert_eq!(
        OidcError::from(r).to_string(),
        "ID token rejected: nonce does not match the login request"
    );
    let r = rejection(login_with(&idp, &provider, |_| rs256("k1", &idp.claims(None))).await);
    assert_eq!(r, Rejection::Nonce("is missing".into()));
}

#[tokio::test]
async fn unknown_kid_refetches_the_jwks_once_and_then_succeeds() {
    let idp = Idp::start().await;
    *idp.stub.jwks.lock().unwrap() = vec![
        json!({"keys": [jwk("k1")]}),
        json!({"keys": [jwk("k1"), jwk("k2")]}),
    ];
    let provider = idp.provider().await;
    login_with(&idp, &provider, |n| rs256("k2", &idp.claims(Some(n))))
        .await
        .unwrap();
    assert_eq!(*idp.stub.jwks_hits.lock().unwrap(), 2);
    // The new set is kept: no further fetch for the next token.
    login_with(&idp, &provider, |n| rs256("k2", &idp.claims(Some(n))))
        .await
        .unwrap();
    assert_eq!(*idp.stub.jwks_hits.lock().unwrap(), 2);
}

#[tokio::test]
async fn unknown_kid_fails_after_one_refetch() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let r = rejection(login_with(&idp, &provider, |n| rs256("k9", &idp.claims(Some(n)))).await);
    assert_eq!(
        r,
        Rejection::UnknownKey {
            kid: "k9".into(),
            alg: "RS256".into()
        }
    );
    assert_eq!(*idp.stub.jwks_hits.lock().unwrap(), 2);
}

#[tokio::test]
async fn malformed_token_is_rejected() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let r = rejection(login_with(&idp, &provider, |_| "not-a-jwt".into()).await);
    assert!(matches!(r, Rejection::Malformed(_)), "{r:?}");
    // Missing `sub`: signed correctly but not an ID token.
    let r = rejection_of_claims(&idp, &provider, |c| {
        c.as_object_mut().unwrap().remove("sub");
    })
    .await;
    assert!(matches!(r, Rejection::Malformed(_)), "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// Refresh

async fn refresh_with(
    idp: &Idp,
    provider: &Provider,
    status: u16,
    body: Value,
) -> Result<TokenSet, OidcError> {
    idp.push_token_reply(status, body);
    let cached = IdTokenInfo::decode(&rs256("k1", &idp.claims(None))).unwrap();
    provider
        .refresh(&SecretString::from("old-refresh-token"), &cached)
        .await
}

#[tokio::test]
async fn refresh_verifies_the_new_id_token_without_a_nonce_and_rotates_the_refresh_token() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let token = rs256("k1", &idp.claims(None));
    let set = refresh_with(
        &idp,
        &provider,
        200,
        json!({"access_token": "at", "token_type": "bearer", "id_token": token, "refresh_token": "new-rt"}),
    )
    .await
    .unwrap();
    assert_eq!(set.id_token.expose_secret(), token);
    assert_eq!(set.refresh_token.unwrap().expose_secret(), "new-rt");
    let sent = idp.last_token_request();
    assert_eq!(sent.form["grant_type"], "refresh_token");
    assert_eq!(sent.form["refresh_token"], "old-refresh-token");
    // A nonce from the original login is ignored.
    let token = rs256("k1", &idp.claims(Some("login-nonce")));
    refresh_with(
        &idp,
        &provider,
        200,
        json!({"access_token": "at", "token_type": "bearer", "id_token": token}),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn refresh_keeps_the_old_refresh_token_when_none_is_returned() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let token = rs256("k1", &idp.claims(None));
    let set = refresh_with(
        &idp,
        &provider,
        200,
        json!({"access_token": "at", "token_type": "bearer", "id_token": token}),
    )
    .await
    .unwrap();
    assert_eq!(set.refresh_token.unwrap().expose_secret(), "old-refresh-token");
}

#[tokio::test]
async fn refresh_without_id_token_asks_for_a_full_login() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let err = refresh_with(
        &idp,
        &provider,
        200,
        json!({"access_token": "at", "token_type": "bearer", "refresh_token": "x"}),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, OidcError::RefreshWithoutIdToken), "{err:?}");
    assert!(err.to_string().contains("a full login is needed"));
}

#[tokio::test]
async fn refresh_invalid_grant_is_refresh_rejected_and_hides_the_token() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let err = refresh_with(
        &idp,
        &provider,
        400,
        json!({"error": "invalid_grant", "error_description": "token old-refresh-token was revoked"}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, OidcError::RefreshRejected { error, .. } if error == "invalid_grant"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        !msg.contains("old-refresh-token") && msg.contains("log in again"),
        "{msg}"
    );
    // Dex answers invalid_request for a reused or expired refresh token.
    let err = refresh_with(
        &idp,
        &provider,
        400,
        json!({"error": "invalid_request", "error_description": "Refresh token is invalid or has already been claimed by another client."}),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, OidcError::RefreshRejected { .. }), "{err:?}");
    // Other errors are not a reason to drop the session.
    let err = refresh_with(&idp, &provider, 401, json!({"error": "invalid_client"}))
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::TokenRequest { .. }), "{err:?}");
}

#[tokio::test]
async fn refresh_answering_for_another_subject_issuer_or_audience_is_refused() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let cached = IdTokenInfo::decode(&rs256("k1", &idp.claims(None))).unwrap();
    let old_rt = SecretString::from("old-refresh-token");
    let refresh = |claims: Value| {
        idp.push_token_reply(
            200,
            json!({"access_token": "at", "token_type": "bearer", "id_token": rs256("k1", &claims), "refresh_token": "new-rt"}),
        );
        provider.refresh(&old_rt, &cached)
    };
    let mut mallory = idp.claims(None);
    mallory["sub"] = json!("mallory");
    let err = refresh(mallory).await.unwrap_err();
    assert!(
        matches!(&err, OidcError::RefreshIdentityChanged { claim: "sub", cached, got }
            if cached == "\"user-1\"" && got == "\"mallory\""),
        "{err:?}"
    );
    assert!(!err.to_string().contains("new-rt"), "{err}");
    // The same subject with other claims changed (email, expiry) is the same identity.
    let mut same = idp.claims(None);
    same["email"] = json!("new@example.com");
    same["exp"] = json!(now().timestamp() + 7200);
    refresh(same).await.unwrap();

    // Issuer and audience: a cached token that names another issuer or audience set than the
    // (verified) refreshed one.
    let mut other_iss = cached.clone();
    other_iss.issuer = "https://elsewhere.example".into();
    let mut other_aud = cached.clone();
    other_aud.audiences = vec![CLIENT_ID.into(), "kubernetes".into()];
    for (changed, claim) in [(other_iss, "iss"), (other_aud, "aud")] {
        idp.push_token_reply(
            200,
            json!({"access_token": "at", "token_type": "bearer", "id_token": rs256("k1", &idp.claims(None))}),
        );
        let err = provider
            .refresh(&SecretString::from("rt"), &changed)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, OidcError::RefreshIdentityChanged { claim: c, .. } if *c == claim),
            "{claim}: {err:?}"
        );
    }
}

#[tokio::test]
async fn refresh_whose_id_token_cannot_be_verified_for_lack_of_keys_returns_the_rotated_refresh_token() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    // The new token names a key not in the JWKS; the refetch answers a document that is not a
    // JWKS (a transient failure, not a rejection of the token).
    idp.stub.jwks.lock().unwrap().push(json!("unavailable"));
    let token = rs256("k2", &idp.claims(None));
    let err = refresh_with(
        &idp,
        &provider,
        200,
        json!({"access_token": "at", "token_type": "bearer", "id_token": token, "refresh_token": "new-rt"}),
    )
    .await
    .unwrap_err();
    let OidcError::RefreshUnverified { cause, rotated } = &err else {
        panic!("expected RefreshUnverified, got {err:?}");
    };
    assert!(matches!(**cause, OidcError::Malformed { .. }), "{cause:?}");
    assert_eq!(rotated.as_ref().unwrap().expose_secret(), "new-rt");
    let msg = err.to_string();
    assert!(!msg.contains("new-rt") && !msg.contains("eyJ"), "{msg}");
    assert!(!format!("{err:?}").contains("new-rt"), "Debug shows the token");

    // Without a new refresh token there is nothing to keep.
    let err = refresh_with(
        &idp,
        &provider,
        200,
        json!({"access_token": "at", "token_type": "bearer", "id_token": rs256("k2", &idp.claims(None))}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, OidcError::RefreshUnverified { rotated: None, .. }),
        "{err:?}"
    );
    // A token the keys reject is a rejection, not a transient failure.
    *idp.stub.jwks.lock().unwrap() = vec![json!({ "keys": [jwk("k1")] })];
    let mut c = idp.claims(None);
    c["aud"] = json!("someone-else");
    let err = refresh_with(
        &idp,
        &provider,
        200,
        json!({"access_token": "at", "token_type": "bearer", "id_token": rs256("k1", &c), "refresh_token": "x"}),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, OidcError::IdTokenRejected(_)), "{err:?}");
}

#[tokio::test]
async fn refreshed_id_token_is_verified() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let mut c = idp.claims(None);
    c["aud"] = json!("someone-else");
    let err = refresh_with(
        &idp,
        &provider,
        200,
        json!({"access_token": "at", "token_type": "bearer", "id_token": rs256("k1", &c)}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, OidcError::IdTokenRejected(Rejection::Audience(_))),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Revocation

#[tokio::test]
async fn revoke_posts_the_refresh_token_with_its_type_hint() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    assert_eq!(
        provider.revocation_endpoint(),
        Some(format!("{}/revoke", idp.issuer).as_str())
    );
    assert!(provider.revoke(&SecretString::from("rt-1")).await.unwrap());
    let sent = idp.stub.revoke_requests.lock().unwrap().pop().unwrap();
    assert_eq!(sent.form["token"], "rt-1");
    assert_eq!(sent.form["token_type_hint"], "refresh_token");
    assert_eq!(sent.form["client_id"], CLIENT_ID);
}

#[tokio::test]
async fn revoke_without_endpoint_returns_false() {
    let idp = Idp::start().await;
    idp.edit_discovery(|d| {
        d.remove("revocation_endpoint");
    });
    let provider = idp.provider().await;
    assert!(!provider.revoke(&SecretString::from("rt-1")).await.unwrap());
    assert!(idp.stub.revoke_requests.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Discovery

/// The members [`check_endpoints`] covers, with their path on the stub.
const ENDPOINTS: [(&str, &str); 7] = [
    ("authorization_endpoint", "auth"),
    ("token_endpoint", "token"),
    ("jwks_uri", "keys"),
    ("userinfo_endpoint", "userinfo"),
    ("revocation_endpoint", "revoke"),
    ("device_authorization_endpoint", "device/code"),
    ("end_session_endpoint", "logout"),
];

/// A discovery document for `issuer` naming every endpoint under `base`, except `member` under
/// `odd` (when given).
fn metadata_with(issuer: &str, base: &str, odd: Option<(&str, &str)>) -> Metadata {
    let mut doc = json!({
        "issuer": issuer,
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    for (member, path) in ENDPOINTS {
        doc[member] = json!(format!("{base}/{path}"));
    }
    if let Some((member, url)) = odd {
        doc[member] = json!(url);
    }
    serde_json::from_value(doc).unwrap()
}

#[test]
fn every_endpoint_of_an_https_issuer_must_be_https() {
    let issuer = "https://idp.example.com/oidc";
    let url = Url::parse(issuer).unwrap();
    check_endpoints(
        issuer,
        &url,
        &metadata_with(issuer, "https://idp.example.com/oidc", None),
    )
    .unwrap();
    // Endpoints on another https host are fine (Okta, Google do this).
    check_endpoints(
        issuer,
        &url,
        &metadata_with(issuer, "https://login.example.net/x", None),
    )
    .unwrap();
    for (member, path) in ENDPOINTS {
        for odd in [
            format!("http://idp.example.com/oidc/{path}"),
            format!("http://127.0.0.1:8080/{path}"),
            format!("ftp://idp.example.com/{path}"),
        ] {
            let err = check_endpoints(
                issuer,
                &url,
                &metadata_with(issuer, "https://idp.example.com/oidc", Some((member, &odd))),
            )
            .unwrap_err();
            let shown = odd.clone();
            assert!(
                matches!(&err, OidcError::InsecureEndpoint { member: m, url, .. } if *m == member && *url == shown),
                "{member} = {odd}: {err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(member) && msg.contains(&odd) && msg.contains(issuer),
                "{msg}"
            );
            assert!(!msg.contains('\n'));
        }
    }
}

#[test]
fn an_http_loopback_issuer_may_name_http_endpoints_on_loopback_only() {
    for issuer in [
        "http://127.0.0.1:5556/dex",
        "http://localhost:5556/dex",
        "http://[::1]:5556/dex",
    ] {
        let url = Url::parse(issuer).unwrap();
        check_endpoints(issuer, &url, &metadata_with(issuer, issuer, None)).unwrap();
        check_endpoints(
            issuer,
            &url,
            &metadata_with(issuer, "http://127.0.0.2:9000", None),
        )
        .unwrap();
        check_endpoints(
            issuer,
            &url,
            &metadata_with(issuer, "https://idp.example.com", None),
        )
        .unwrap();
        for (member, path) in ENDPOINTS {
            let odd = format!("http://idp.example.com/{path}");
            let err = check_endpoints(issuer, &url, &metadata_with(issuer, issuer, Some((member, &odd))))
                .unwrap_err();
            assert!(
                matches!(&err, OidcError::InsecureEndpoint { member: m, .. } if *m == member),
                "{issuer}: {member} = {odd}: {err:?}"
            );
        }
    }
}

#[tokio::test]
async fn discovery_refuses_a_plain_http_endpoint_before_fetching_anything_from_it() {
    // The stub's issuer is http on loopback: an endpoint off this machine over http is refused
    // before the JWKS is fetched.
    let idp = Idp::start().await;
    idp.edit_discovery(|d| {
        d.insert("jwks_uri".into(), json!("http://192.0.2.1/keys"));
    });
    let err = discover_err(idp.config()).await;
    assert!(
        matches!(
            &err,
            OidcError::InsecureEndpoint {
                member: "jwks_uri",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(*idp.stub.jwks_hits.lock().unwrap(), 0);
}

fn cfg_for(issuer: &str) -> OidcConfig {
    OidcConfig {
        audience: None,
        issuer: issuer.into(),
        client_id: CLIENT_ID.into(),
        client_secret: None,
        scopes: Vec::new(),
        extra_ca_files: Vec::new(),
        extra_ca_data: None,
        http_timeout: Duration::from_secs(5),
        request: Default::default(),
    }
}

async fn discover_err(cfg: OidcConfig) -> OidcError {
    Provider::discover(&cfg, Arc::new(FixedClock(now())))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn discovery_reads_the_extra_metadata() {
    let idp = Idp::start().await;
    idp.edit_discovery(|d| {
        d.insert(
            "device_authorization_endpoint".into(),
            json!("http://127.0.0.1:1/device"),
        );
        d.insert("end_session_endpoint".into(), json!("http://127.0.0.1:1/logout"));
    });
    let provider = idp.provider().await;
    assert_eq!(provider.issuer(), idp.issuer);
    assert_eq!(
        provider.device_authorization_endpoint(),
        Some("http://127.0.0.1:1/device")
    );
    assert_eq!(provider.end_session_endpoint(), Some("http://127.0.0.1:1/logout"));
    assert_eq!(*idp.stub.jwks_hits.lock().unwrap(), 1);
}

#[tokio::test]
async fn discovery_issuer_mismatch_names_both_values() {
    let idp = Idp::start().await;
    idp.edit_discovery(|d| {
        d.insert("issuer".into(), json!("https://other.example/idp"));
    });
    let err = discover_err(idp.config()).await;
    assert!(matches!(err, OidcError::IssuerMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("https://other.example/idp") && msg.contains(&idp.issuer),
        "{msg}"
    );
}

#[tokio::test]
async fn configured_issuer_with_a_trailing_slash_does_not_match_discovery() {
    let idp = Idp::start().await;
    let err = discover_err(cfg_for(&format!("{}/", idp.issuer))).await;
    assert!(
        matches!(&err, OidcError::IssuerMismatch { expected, discovered } if *expected == format!("{}/", idp.issuer) && *discovered == idp.issuer),
        "{err:?}"
    );
}

#[tokio::test]
async fn discovery_connection_refused_says_the_issuer_cannot_be_reached() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}/idp", listener.local_addr().unwrap());
    drop(listener);
    let err = discover_err(cfg_for(&issuer)).await;
    assert!(matches!(err, OidcError::Unreachable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "cannot reach the issuer {issuer}/.well-known/openid-configuration: "
        )),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
}

#[tokio::test]
async fn discovery_timeout_is_reported() {
    let idp = Idp::start().await;
    let mut cfg = cfg_for(&format!("{}/slow", idp.base));
    cfg.http_timeout = Duration::from_millis(300);
    let err = discover_err(cfg).await;
    assert!(matches!(err, OidcError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn discovery_non_200_reports_the_status() {
    let idp = Idp::start().await;
    let err = discover_err(cfg_for(&format!("{}/missing", idp.base))).await;
    assert!(
        matches!(err, OidcError::HttpStatus { status: 404, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("HTTP 404"));
}

#[tokio::test]
async fn discovery_never_follows_redirects() {
    let idp = Idp::start().await;
    let err = discover_err(cfg_for(&format!("{}/redirect", idp.base))).await;
    assert!(
        matches!(err, OidcError::HttpStatus { status: 302, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not follow redirects"));
}

#[tokio::test]
async fn discovery_malformed_json_is_reported() {
    let idp = Idp::start().await;
    let err = discover_err(cfg_for(&format!("{}/notjson", idp.base))).await;
    assert!(
        matches!(&err, OidcError::Malformed { reason, .. } if reason == "not JSON"),
        "{err:?}"
    );
    // Valid JSON without the required fields.
    idp.edit_discovery(|d| {
        d.remove("jwks_uri");
    });
    let err = discover_err(idp.config()).await;
    assert!(
        matches!(&err, OidcError::Malformed { reason, .. } if reason.contains("jwks_uri")),
        "{err:?}"
    );
}

#[tokio::test]
async fn discovery_refuses_a_provider_with_only_symmetric_or_none_algorithms() {
    let idp = Idp::start().await;
    idp.edit_discovery(|d| {
        d.insert(
            "id_token_signing_alg_values_supported".into(),
            json!(["HS256", "none"]),
        );
    });
    let err = discover_err(idp.config()).await;
    assert!(
        matches!(&err, OidcError::NoAcceptableAlgorithm(a) if a == "HS256, none"),
        "{err:?}"
    );
}

#[tokio::test]
async fn invalid_issuer_url_is_a_configuration_error() {
    assert!(matches!(
        discover_err(cfg_for("not a url")).await,
        OidcError::InvalidIssuer { .. }
    ));
    assert!(matches!(
        discover_err(cfg_for("ftp://127.0.0.1/x")).await,
        OidcError::InvalidIssuer { .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// Extra CA files

/// A directory of its own for one test (`tag`) in this process.
fn temp_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("koidc-oidc-test-{}-{tag}", std::process::id()))
}

fn temp_file(tag: &str, name: &str, contents: &str) -> PathBuf {
    let dir = temp_dir(tag);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[tokio::test]
async fn extra_ca_file_that_is_missing_or_not_pem_is_named_in_the_error() {
    let idp = Idp::start().await;
    let mut cfg = idp.config();
    let missing = std::env::temp_dir().join("koidc-no-such-ca.pem");
    cfg.extra_ca_files = vec![missing.clone()];
    let err = discover_err(cfg.clone()).await;
    assert!(
        matches!(&err, OidcError::Ca(crate::http::CaError::File { path, .. }) if *path == missing.display().to_string()),
        "{err:?}"
    );

    let garbage = temp_file("bad-ca", "garbage.pem", "this is not a certificate\n");
    cfg.extra_ca_files = vec![garbage.clone()];
    let err = discover_err(cfg.clone()).await;
    assert!(
        matches!(&err, OidcError::Ca(crate::http::CaError::File { path, .. }) if *path == garbage.display().to_string()),
        "{err:?}"
    );
    assert!(err.to_string().contains("garbage.pem"));

    let broken = temp_file(
        "bad-ca",
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    cfg.extra_ca_files = vec![broken.clone()];
    let err = discover_err(cfg.clone()).await;
    assert!(
        matches!(&err, OidcError::Ca(crate::http::CaError::File { path, .. }) if *path == broken.display().to_string()),
        "{err:?}"
    );
    std::fs::remove_dir_all(temp_dir("bad-ca")).unwrap();
}

#[tokio::test]
async fn valid_extra_ca_file_is_accepted() {
    let idp = Idp::start().await;
    let mut cfg = idp.config();
    cfg.extra_ca_files = vec![temp_file("good-ca", "ca.pem", TEST_CA)];
    idp.provider_with(cfg).await;
    std::fs::remove_dir_all(temp_dir("good-ca")).unwrap();
}

/// Compile-time check: the provider can be shared and its futures spawned on a multi-thread runtime.
#[allow(dead_code)]
fn provider_and_its_futures_are_send_and_sync(
    p: &Provider,
    req: AuthRequest,
    rt: &SecretString,
    info: &IdTokenInfo,
) {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Provider>();
    send_sync::<OidcError>();
    send(&Provider::discover(
        &cfg_for("http://127.0.0.1:1"),
        Arc::new(FixedClock(now())),
    ));
    send(&p.exchange_code(req, SecretString::from("c")));
    send(&p.refresh(rt, info));
    send(&p.revoke(rt));
}

#[test]
fn error_messages_are_one_line_and_start_lowercase_except_id_token() {
    let errors = [
        OidcError::MissingIdToken,
        OidcError::RefreshWithoutIdToken,
        OidcError::Timeout {
            url: "http://x".into(),
            timeout: Duration::from_secs(1),
        },
        OidcError::TokenRequest {
            error: "invalid_client".into(),
            description: Some("bad secret".into()),
        },
        OidcError::IdTokenRejected(Rejection::AlgNone),
        OidcError::InsecureEndpoint {
            issuer: "https://idp".into(),
            member: "token_endpoint",
            url: "http://idp/token".into(),
        },
        OidcError::RefreshIdentityChanged {
            claim: "sub",
            cached: "\"a\"".into(),
            got: "\"b\"".into(),
        },
        OidcError::RefreshUnverified {
            cause: Box::new(OidcError::HttpStatus {
                url: "https://idp/keys".into(),
                status: 503,
            }),
            rotated: Some(SecretString::from("rotated-secret")),
        },
    ];
    for e in errors {
        let m = e.to_string();
        assert!(!m.contains('\n') && !m.ends_with('.'), "{m}");
        assert!(
            m.starts_with(|c: char| c.is_lowercase()) || m.starts_with("ID token"),
            "{m}"
        );
    }
}

#[tokio::test]
async fn http_issuer_answered_with_a_tls_record_says_the_server_speaks_https() {
    // A TLS server (not Go's) meeting plain HTTP: it answers with a TLS alert and closes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            use std::io::{Read as _, Write as _};
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]);
        }
    });
    let issuer = format!("http://{addr}/idp");
    let err = discover_err(cfg_for(&issuer)).await;
    assert_eq!(
        err.to_string(),
        format!(
            "the server at {issuer}/.well-known/openid-configuration speaks HTTPS, not plain HTTP: use --issuer https://{addr}/idp"
        ),
        "{err:?}"
    );
}
