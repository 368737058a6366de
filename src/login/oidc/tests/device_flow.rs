//! The device authorization grant (RFC 8628) against the stub IdP: the authorization request,
//! the polling rules (interval, `slow_down`, `authorization_pending`), the ways it ends
//! (`access_denied`, `expired_token`, the timeout, the code's own expiry) and the ID token checks.
//! The polling loop runs on a virtual clock (`VirtualPacer`), so the waits are asserted exactly
//! and the tests take no real time.

use super::*;
use crate::login::device_poll::DEVICE_CODE_GRANT;
use crate::login::device_poll::tests::{VirtualPacer, secs};
use crate::login::oidc::device::DeviceAuthorization;

const DEVICE_CODE: &str = "the-device-code-0123456789";

impl Idp {
    /// A stub that advertises a device endpoint.
    pub(super) async fn start_with_device() -> Idp {
        let idp = Idp::start().await;
        let endpoint = format!("{}/device/code", idp.issuer);
        idp.edit_discovery(|d| {
            d.insert("device_authorization_endpoint".into(), json!(endpoint));
        });
        idp
    }

    pub(super) fn push_device_reply(&self, status: u16, body: Value) {
        self.stub
            .device_replies
            .lock()
            .unwrap()
            .push_back((status, body.to_string()));
    }

    /// A Dex-like device authorization answer with `interval`.
    pub(super) fn push_device_authorization(&self, interval: Option<u64>, expires_in: u64) {
        let mut body = json!({
            "device_code": DEVICE_CODE,
            "user_code": "ABCD-EFGH",
            "verification_uri": format!("{}/device", self.issuer),
            "verification_uri_complete": format!("{}/device?user_code=ABCD-EFGH", self.issuer),
            "expires_in": expires_in,
        });
        if let Some(i) = interval {
            body["interval"] = json!(i);
        }
        self.push_device_reply(200, body);
    }

    fn push_oauth_error(&self, error: &str) {
        self.push_token_reply(400, json!({ "error": error }));
    }

    /// A token response with a good ID token (no nonce: the device grant sends none).
    fn push_device_tokens(&self) -> String {
        let id_token = rs256("k1", &self.claims(None));
        self.push_token_reply(
            200,
            json!({"access_token": "at", "token_type": "bearer", "id_token": id_token, "refresh_token": "rt-dev"}),
        );
        id_token
    }

    fn token_request_count(&self) -> usize {
        self.stub.token_requests.lock().unwrap().len()
    }
}

async fn start(provider: &Provider) -> DeviceAuthorization {
    provider.start_device_authorization().await.unwrap()
}

/// A stub with a device endpoint, its provider, and a device authorization started with the
/// stub answering `interval` and `expires_in`.
async fn started(interval: Option<u64>, expires_in: u64) -> (Idp, Provider, DeviceAuthorization) {
    let idp = Idp::start_with_device().await;
    let provider = idp.provider().await;
    idp.push_device_authorization(interval, expires_in);
    let auth = start(&provider).await;
    (idp, provider, auth)
}

/// Polls for the token with a timeout of `timeout_secs` on a virtual clock: the outcome and the
/// waits.
async fn poll(
    provider: &Provider,
    auth: &DeviceAuthorization,
    timeout_secs: u64,
) -> (Result<TokenSet, OidcError>, Vec<Duration>) {
    let mut pacer = VirtualPacer::default();
    let result = provider
        .poll_device_token(auth, Duration::from_secs(timeout_secs), &mut pacer)
        .await;
    (result, pacer.sleeps)
}

#[tokio::test]
async fn device_authorization_sends_client_id_and_scopes_and_reads_the_answer() {
    let idp = Idp::start_with_device().await;
    let provider = idp.provider().await;
    assert!(provider.supports_device_flow());
    idp.push_device_authorization(Some(7), 300);
    let auth = start(&provider).await;

    let sent = idp.stub.device_requests.lock().unwrap().pop().unwrap();
    assert_eq!(sent.form["client_id"], CLIENT_ID);
    assert_eq!(sent.form["scope"], "openid email groups");
    assert!(
        sent.authorization.is_none(),
        "a public client sends no credentials"
    );
    assert_eq!(auth.user_code, "ABCD-EFGH");
    assert_eq!(auth.verification_uri, format!("{}/device", idp.issuer));
    assert_eq!(
        auth.verification_uri_complete.as_deref(),
        Some(format!("{}/device?user_code=ABCD-EFGH", idp.issuer).as_str())
    );
    assert_eq!(auth.interval, Duration::from_secs(7));
    assert_eq!(auth.expires_in, Some(Duration::from_secs(300)));
    assert!(
        !format!("{auth:?}").contains(DEVICE_CODE),
        "the device code stays out of Debug"
    );
}

#[tokio::test]
async fn device_grant_sends_the_pkce_challenge_keycloak_requires_and_polls_with_its_verifier() {
    // Keycloak refuses a device authorization for a client that enforces PKCE unless it carries
    // a challenge ("Missing parameter: code_challenge_method"), and then wants the verifier in
    // the device token request; providers without PKCE for the device grant ignore both.
    let (idp, provider, auth) = started(Some(3), 300).await;
    let id_token = idp.push_device_tokens();
    let (result, _) = poll(&provider, &auth, 180).await;
    assert_eq!(result.unwrap().id_token.expose_secret(), id_token);

    let device = idp.stub.device_requests.lock().unwrap().pop().unwrap();
    assert_eq!(
        device.form.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    let token = idp.stub.token_requests.lock().unwrap().pop().unwrap();
    let verifier = token
        .form
        .get("code_verifier")
        .expect("the poll sends the verifier");
    assert!(
        (43..=128).contains(&verifier.len()),
        "RFC 7636 verifier length: {}",
        verifier.len()
    );
    let digest = <sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes());
    let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    assert_eq!(
        device.form["code_challenge"], expected,
        "the challenge is the verifier's S256"
    );
    assert!(
        !format!("{auth:?}").contains(verifier.as_str()),
        "the verifier stays out of Debug"
    );
}

#[tokio::test]
async fn device_authorization_defaults_and_bounds_the_interval_and_accepts_verification_url() {
    let idp = Idp::start_with_device().await;
    let provider = idp.provider().await;
    idp.push_device_authorization(None, 300);
    assert_eq!(start(&provider).await.interval, Duration::from_secs(5));
    idp.push_device_authorization(Some(0), 300);
    assert_eq!(start(&provider).await.interval, Duration::from_secs(1));
    // Google's spelling, and numbers as strings.
    idp.push_device_reply(
        200,
        json!({"device_code": "d", "user_code": "U", "verification_url": "https://example.com/device",
               "interval": "4", "expires_in": "600"}),
    );
    let auth = start(&provider).await;
    assert_eq!(auth.verification_uri, "https://example.com/device");
    assert_eq!(auth.interval, Duration::from_secs(4));
    assert_eq!(auth.expires_in, Some(Duration::from_secs(600)));
    assert_eq!(auth.verification_uri_complete, None);
}

#[tokio::test]
async fn device_authorization_rejects_unusable_answers() {
    let idp = Idp::start_with_device().await;
    let provider = idp.provider().await;
    for body in [
        json!({"user_code": "U", "verification_uri": "https://example.com/device"}),
        json!({"device_code": "d", "verification_uri": "https://example.com/device"}),
        json!({"device_code": "d", "user_code": "U"}),
        json!({"device_code": "d", "user_code": "U", "verification_uri": "javascript:alert(1)"}),
        json!({"device_code": "d", "user_code": "U\u{1b}[2J", "verification_uri": "https://example.com/d"}),
    ] {
        idp.push_device_reply(200, body.clone());
        let err = provider.start_device_authorization().await.unwrap_err();
        assert!(matches!(err, OidcError::Malformed { .. }), "{body}: {err:?}");
    }
    // An OAuth error, with HTTP 400 or (GitHub) 200.
    for status in [400, 200] {
        idp.push_device_reply(
            status,
            json!({"error": "unauthorized_client", "error_description": "no device grant"}),
        );
        let err = provider.start_device_authorization().await.unwrap_err();
        assert!(
            matches!(&err, OidcError::DeviceAuthorizationRefused { error, .. } if error == "unauthorized_client"),
            "{err:?}"
        );
        assert!(err.to_string().contains("no device grant"), "{err}");
    }
}

#[tokio::test]
async fn no_device_endpoint_is_a_clear_error_without_a_request() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    assert!(!provider.supports_device_flow());
    let err = provider.start_device_authorization().await.unwrap_err();
    assert!(matches!(err, OidcError::NoDeviceEndpoint));
    assert!(err.to_string().contains("--grant authcode"), "{err}");
    assert!(idp.stub.device_requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn polls_at_the_interval_until_approved_and_verifies_the_id_token() {
    let (idp, provider, auth) = started(Some(3), 300).await;
    idp.push_oauth_error("authorization_pending");
    idp.push_oauth_error("authorization_pending");
    let id_token = idp.push_device_tokens();

    let (result, sleeps) = poll(&provider, &auth, 180).await;
    let tokens = result.unwrap();
    assert_eq!(tokens.id_token.expose_secret(), id_token);
    assert_eq!(tokens.refresh_token.unwrap().expose_secret(), "rt-dev");
    assert_eq!(sleeps, secs(&[3, 3, 3]), "one poll per interval, none early");
    let requests = idp.stub.token_requests.lock().unwrap();
    assert_eq!(requests.len(), 3);
    for r in requests.iter() {
        assert_eq!(r.form["grant_type"], DEVICE_CODE_GRANT);
        assert_eq!(r.form["device_code"], DEVICE_CODE);
        assert_eq!(r.form["client_id"], CLIENT_ID);
    }
}

#[tokio::test]
async fn slow_down_adds_five_seconds_to_every_later_wait() {
    let (idp, provider, auth) = started(Some(5), 600).await;
    idp.push_oauth_error("slow_down");
    idp.push_oauth_error("authorization_pending");
    idp.push_oauth_error("slow_down");
    idp.push_oauth_error("authorization_pending");
    idp.push_device_tokens();

    let (result, sleeps) = poll(&provider, &auth, 180).await;
    result.unwrap();
    assert_eq!(sleeps, secs(&[5, 10, 10, 15, 15]));
    assert_eq!(idp.token_request_count(), 5);
}

#[tokio::test]
async fn access_denied_stops_polling_with_a_clear_error() {
    let (idp, provider, auth) = started(Some(5), 600).await;
    idp.push_oauth_error("authorization_pending");
    idp.push_oauth_error("access_denied");
    idp.push_device_tokens(); // never requested

    let err = poll(&provider, &auth, 180).await.0.unwrap_err();
    assert!(matches!(err, OidcError::DeviceAccessDenied), "{err:?}");
    assert_eq!(idp.token_request_count(), 2, "no poll after access_denied");
    let msg = err.to_string();
    assert!(msg.contains("denied") && !msg.contains('\n'), "{msg}");
}

#[tokio::test]
async fn expired_token_stops_polling_with_a_clear_error() {
    let (idp, provider, auth) = started(Some(5), 600).await;
    idp.push_oauth_error("expired_token");
    idp.push_device_tokens(); // never requested

    let err = poll(&provider, &auth, 180).await.0.unwrap_err();
    assert!(matches!(err, OidcError::DeviceCodeExpired), "{err:?}");
    assert_eq!(idp.token_request_count(), 1);
    assert!(err.to_string().contains("expired"), "{err}");
}

#[tokio::test]
async fn timeout_stops_without_polling_past_the_deadline() {
    let (idp, provider, auth) = started(Some(5), 600).await;
    for _ in 0..10 {
        idp.push_oauth_error("authorization_pending");
    }

    let (result, sleeps) = poll(&provider, &auth, 12).await;
    let err = result.unwrap_err();
    assert!(matches!(err, OidcError::DeviceTimeout { secs: 12 }), "{err:?}");
    assert_eq!(sleeps, secs(&[5, 5, 2]), "waits out the rest, then stops");
    assert_eq!(idp.token_request_count(), 2, "polls at 5 s and 10 s only");
    assert!(err.to_string().contains("within 12s"), "{err}");

    // A timeout shorter than the interval: no poll at all.
    let (result, sleeps) = poll(&provider, &auth, 2).await;
    let err = result.unwrap_err();
    assert!(matches!(err, OidcError::DeviceTimeout { secs: 2 }), "{err:?}");
    assert_eq!(sleeps, secs(&[2]));
    assert_eq!(idp.token_request_count(), 2);
}

#[tokio::test]
async fn the_codes_own_expiry_ends_the_wait_before_a_longer_timeout() {
    let (idp, provider, auth) = started(Some(5), 8).await;
    for _ in 0..10 {
        idp.push_oauth_error("authorization_pending");
    }
    let (result, sleeps) = poll(&provider, &auth, 180).await;
    let err = result.unwrap_err();
    assert!(matches!(err, OidcError::DeviceCodeExpired), "{err:?}");
    assert_eq!(sleeps, secs(&[5, 3]));
    assert_eq!(idp.token_request_count(), 1);
}

#[tokio::test]
async fn errors_sent_with_http_200_are_errors_and_other_errors_are_reported_scrubbed() {
    let (idp, provider, auth) = started(Some(5), 600).await;
    // GitHub style: pending with HTTP 200, then a refusal that echoes the device code.
    idp.push_token_reply(200, json!({"error": "authorization_pending"}));
    idp.push_token_reply(
        400,
        json!({"error": "invalid_client", "error_description": format!("bad device code {DEVICE_CODE}")}),
    );
    let err = poll(&provider, &auth, 180).await.0.unwrap_err();
    assert!(
        matches!(&err, OidcError::TokenRequest { error, .. } if error == "invalid_client"),
        "{err:?}"
    );
    assert!(!err.to_string().contains(DEVICE_CODE), "{err}");
    assert_eq!(idp.token_request_count(), 2);
}

#[tokio::test]
async fn the_device_id_token_is_verified_like_a_login_but_needs_no_nonce() {
    let (idp, provider, auth) = started(Some(5), 600).await;

    // Wrong audience: rejected.
    let mut claims = idp.claims(None);
    claims["aud"] = json!("someone-else");
    idp.push_token_reply(200, json!({"id_token": rs256("k1", &claims)}));
    let err = poll(&provider, &auth, 180).await.0.unwrap_err();
    assert!(
        matches!(err, OidcError::IdTokenRejected(Rejection::Audience(_))),
        "{err:?}"
    );

    // Wrong issuer: rejected.
    let mut claims = idp.claims(None);
    claims["iss"] = json!("https://evil.example");
    idp.push_token_reply(200, json!({"id_token": rs256("k1", &claims)}));
    let err = poll(&provider, &auth, 180).await.0.unwrap_err();
    assert!(
        matches!(err, OidcError::IdTokenRejected(Rejection::Issuer { .. })),
        "{err:?}"
    );

    // Forged (HMAC): rejected.
    idp.push_token_reply(200, json!({"id_token": hs256(b"k", &idp.claims(None))}));
    let err = poll(&provider, &auth, 180).await.0.unwrap_err();
    assert!(matches!(err, OidcError::IdTokenRejected(_)), "{err:?}");

    // No ID token at all.
    idp.push_token_reply(200, json!({"access_token": "at", "token_type": "bearer"}));
    let err = poll(&provider, &auth, 180).await.0.unwrap_err();
    assert!(matches!(err, OidcError::MissingIdToken), "{err:?}");

    // Good, without a nonce: accepted.
    idp.push_device_tokens();
    poll(&provider, &auth, 180).await.0.unwrap();
}

#[tokio::test]
async fn confidential_client_sends_its_secret_in_the_device_form_when_post_is_advertised() {
    // The stub advertises client_secret_basic and client_secret_post, as Dex does; Dex reads the
    // secret only from the form at its device endpoint, and ignores client auth when polling.
    let idp = Idp::start_with_device().await;
    let mut cfg = idp.config();
    cfg.client_secret = Some(SecretString::from("s3cret-value"));
    let provider = idp.provider_with(cfg.clone()).await;
    idp.push_device_authorization(Some(5), 600);
    let auth = start(&provider).await;
    idp.push_device_tokens();
    poll(&provider, &auth, 180).await.0.unwrap();
    let device = idp.stub.device_requests.lock().unwrap().pop().unwrap();
    assert_eq!(device.form["client_id"], CLIENT_ID);
    assert_eq!(device.form["client_secret"], "s3cret-value");
    assert!(device.authorization.is_none());
    // The token endpoint keeps the method chosen at discovery (Basic).
    let token = idp.last_token_request();
    assert!(
        token
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic ")),
        "client_secret_basic at the token endpoint"
    );
    assert!(!token.form.contains_key("client_secret"));

    // A provider that advertises only Basic gets Basic at the device endpoint too.
    idp.edit_discovery(|d| {
        d.insert(
            "token_endpoint_auth_methods_supported".into(),
            json!(["client_secret_basic"]),
        );
    });
    let provider = idp.provider_with(cfg).await;
    idp.push_device_authorization(Some(5), 600);
    start(&provider).await;
    let device = idp.stub.device_requests.lock().unwrap().pop().unwrap();
    assert!(
        device
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic ")),
        "client_secret_basic at the device endpoint"
    );
    assert!(!device.form.contains_key("client_secret"));
}

#[tokio::test]
async fn code_exchange_error_sent_with_http_200_is_a_token_request_error() {
    // GitHub answers token requests with HTTP 200 and an `error` member.
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let req = provider.authorization_request(REDIRECT).unwrap();
    idp.push_token_reply(
        200,
        json!({"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired."}),
    );
    let err = provider
        .exchange_code(req, SecretString::from("the-code"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OidcError::TokenRequest { error, .. } if error == "bad_verification_code"),
        "{err:?}"
    );
}
