//! The pipelines' token requests: client credentials (an ID token, else a JWT access token for
//! the audience, each verified) and token exchange (the issuer's ID token, verified), with what
//! is sent and what is refused.

use super::*;
use crate::login::oidc::machine::ClientToken;

fn with_secret(idp: &Idp) -> OidcConfig {
    OidcConfig {
        audience: None,
        client_secret: Some(SecretString::from("s3cret-value".to_owned())),
        scopes: Vec::new(),
        ..idp.config()
    }
}

/// Claims of a client's JWT access token for `aud`.
fn access_claims(idp: &Idp, aud: Value) -> Value {
    json!({
        "iss": idp.issuer, "sub": CLIENT_ID, "client_id": CLIENT_ID, "aud": aud,
        "exp": now().timestamp() + 600, "iat": now().timestamp() - 5, "scope": "deploy",
    })
}

#[tokio::test]
async fn client_credentials_send_the_grant_with_the_secret_and_return_a_verified_id_token() {
    let idp = Idp::start().await;
    let provider = idp.provider_with(with_secret(&idp)).await;
    let id_token = rs256("k1", &idp.claims(None));
    idp.push_token_reply(
        200,
        json!({"access_token": "opaque", "token_type": "bearer", "id_token": id_token}),
    );
    match provider.client_credentials(Some("kubernetes")).await.unwrap() {
        ClientToken::IdToken(token) => assert_eq!(token.expose_secret(), id_token),
        ClientToken::AccessToken(_) => panic!("the access token was preferred to the ID token"),
    }
    let sent = idp.last_token_request();
    assert_eq!(
        sent.form.get("grant_type").map(String::as_str),
        Some("client_credentials")
    );
    assert!(
        !sent.form.contains_key("scope"),
        "no scope was asked for: {:?}",
        sent.form.keys()
    );
    let basic = sent.authorization.unwrap_or_default();
    assert!(basic.starts_with("Basic "), "{basic}");
}

#[tokio::test]
async fn client_credentials_take_a_jwt_access_token_only_for_the_audience_and_signed_by_the_issuer() {
    let idp = Idp::start().await;
    let provider = idp.provider_with(with_secret(&idp)).await;
    let good = rs256("k1", &access_claims(&idp, json!(["kubernetes", "other"])));
    idp.push_token_reply(200, json!({"access_token": good, "token_type": "bearer"}));
    match provider.client_credentials(Some("kubernetes")).await.unwrap() {
        ClientToken::AccessToken(token) => assert_eq!(token.expose_secret(), good),
        ClientToken::IdToken(_) => panic!("no ID token was returned"),
    }

    // Another audience, another issuer, an expired token, a forged signature, HS256 with the
    // client secret, alg none: refused.
    let cases: Vec<(String, &str)> = vec![
        (
            rs256("k1", &access_claims(&idp, json!("https://api.example"))),
            "must contain `kubernetes`",
        ),
        (
            rs256("k1", &{
                let mut c = access_claims(&idp, json!("kubernetes"));
                c["iss"] = json!("https://evil.example");
                c
            }),
            "issuer",
        ),
        (
            rs256("k1", &{
                let mut c = access_claims(&idp, json!("kubernetes"));
                c["exp"] = json!(now().timestamp() - 1);
                c
            }),
            "expired",
        ),
        (
            {
                let t = rs256("k1", &access_claims(&idp, json!("kubernetes")));
                let (head, _) = t.rsplit_once('.').unwrap();
                format!("{head}.{}", b64(b"forged-signature-bytes"))
            },
            "signature",
        ),
        (
            hs256(b"s3cret-value", &access_claims(&idp, json!("kubernetes"))),
            "HS256",
        ),
        (
            format!(
                "{}.",
                signing_input(&json!({"alg": "none"}), &access_claims(&idp, json!("kubernetes")))
            ),
            "none",
        ),
    ];
    for (token, why) in cases {
        idp.push_token_reply(200, json!({"access_token": token, "token_type": "bearer"}));
        let err = match provider.client_credentials(Some("kubernetes")).await {
            Err(err) => err.to_string(),
            Ok(_) => panic!("accepted a token that should fail on {why}"),
        };
        assert!(err.starts_with("access token rejected"), "{why}: {err}");
        assert!(err.contains(why), "{why}: {err}");
        assert!(!err.contains("s3cret-value"), "{err}");
    }

    // An opaque access token, or a JWT without an audience to check it against: explained.
    idp.push_token_reply(
        200,
        json!({"access_token": "2YotnFZFEjr1zCsicMWpAA", "token_type": "bearer"}),
    );
    let err = provider
        .client_credentials(Some("kubernetes"))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, OidcError::OpaqueAccessToken), "{err}");
    idp.push_token_reply(200, json!({"access_token": good, "token_type": "bearer"}));
    let err = provider.client_credentials(None).await.err().unwrap();
    assert!(matches!(err, OidcError::AccessTokenNeedsAudience), "{err}");
}

#[tokio::test]
async fn client_credentials_need_a_secret_and_report_a_refusal_without_repeating_it() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    assert!(matches!(
        provider.client_credentials(None).await.err().unwrap(),
        OidcError::NoClientSecret
    ));
    let provider = idp.provider_with(with_secret(&idp)).await;
    idp.push_token_reply(
        401,
        json!({"error": "invalid_client", "error_description": "bad secret s3cret-value"}),
    );
    let err = provider.client_credentials(None).await.err().unwrap().to_string();
    assert!(err.contains("invalid_client"), "{err}");
    assert!(!err.contains("s3cret-value"), "{err}");
}

#[tokio::test]
async fn a_token_exchange_sends_the_job_token_as_an_id_token_and_returns_the_issuers_verified_id_token() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let subject = SecretString::from("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvIn0.c2ln".to_owned());
    let id_token = rs256("k1", &idp.claims(None));
    // Dex answers with the ID token in `access_token`, typed by `issued_token_type`.
    idp.push_token_reply(
        200,
        json!({"access_token": id_token, "issued_token_type": "urn:ietf:params:oauth:token-type:id_token", "token_type": "bearer"}),
    );
    let got = provider
        .exchange_token(&subject, Some("github-actions"))
        .await
        .unwrap();
    assert_eq!(got.expose_secret(), id_token);
    let sent = idp.last_token_request();
    let form = |k: &str| sent.form.get(k).cloned().unwrap_or_default();
    assert_eq!(
        form("grant_type"),
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(form("subject_token"), subject.expose_secret());
    assert_eq!(
        form("subject_token_type"),
        "urn:ietf:params:oauth:token-type:id_token"
    );
    assert_eq!(
        form("requested_token_type"),
        "urn:ietf:params:oauth:token-type:id_token"
    );
    assert_eq!(form("connector_id"), "github-actions");
    assert_eq!(form("scope"), "openid email groups");
    assert_eq!(form("client_id"), CLIENT_ID);

    // An `id_token` member is taken as well.
    idp.push_token_reply(
        200,
        json!({"id_token": id_token, "access_token": "x", "token_type": "bearer"}),
    );
    assert!(provider.exchange_token(&subject, None).await.is_ok());
    // An access token is not an ID token; a token for another client is refused.
    idp.push_token_reply(
        200,
        json!({"access_token": "at", "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}),
    );
    let err = provider.exchange_token(&subject, None).await.err().unwrap();
    assert!(matches!(err, OidcError::ExchangeWithoutIdToken), "{err}");
    let mut other = idp.claims(None);
    other["aud"] = json!("another-client");
    idp.push_token_reply(
        200,
        json!({"access_token": rs256("k1", &other), "issued_token_type": "urn:ietf:params:oauth:token-type:id_token"}),
    );
    let err = exchange_error(&provider, &subject).await;
    assert!(
        err.starts_with("ID token rejected") && err.contains("audience"),
        "{err}"
    );
    // A refusal names the provider's reason without the subject token.
    idp.push_token_reply(
        401,
        json!({"error": "access_denied", "error_description": format!("bad token {}", subject.expose_secret())}),
    );
    let err = exchange_error(&provider, &subject).await;
    assert!(
        err.contains("access_denied") && !err.contains(subject.expose_secret()),
        "{err}"
    );
}

/// The error of a token exchange the test expects to fail, as its message.
async fn exchange_error(provider: &Provider, subject: &SecretString) -> String {
    match provider.exchange_token(subject, None).await {
        Err(err) => err.to_string(),
        Ok(_) => panic!("the exchange succeeded"),
    }
}

#[tokio::test]
async fn a_grant_the_issuer_does_not_list_is_named_before_anything_is_sent() {
    let idp = Idp::start().await;
    idp.edit_discovery(|d| {
        d.insert(
            "grant_types_supported".into(),
            json!(["authorization_code", "refresh_token"]),
        );
    });
    let provider = idp.provider_with(with_secret(&idp)).await;
    let err = provider.client_credentials(None).await.err().unwrap().to_string();
    assert!(
        err.starts_with("the issuer does not offer the client_credentials grant (its discovery document offers: authorization_code, refresh_token)"),
        "{err}"
    );
    let subject = SecretString::from("a.b.c".to_owned());
    let err = exchange_error(&provider, &subject).await;
    assert!(
        err.contains("does not offer the urn:ietf:params:oauth:grant-type:token-exchange grant"),
        "{err}"
    );
    assert!(
        idp.stub.token_requests.lock().unwrap().is_empty(),
        "a request was sent"
    );
}

#[tokio::test]
async fn an_exchange_refusal_names_the_option_to_check() {
    let idp = Idp::start().await;
    let provider = idp.provider().await;
    let subject = SecretString::from("a.b.c".to_owned());
    idp.push_token_reply(
        401,
        json!({"error": "invalid_client", "error_description": "Invalid client credentials."}),
    );
    let err = exchange_error(&provider, &subject).await;
    assert!(
        err.contains("invalid_client") && err.contains("check --client-id and the client secret"),
        "{err}"
    );
    idp.push_token_reply(
        400,
        json!({"error": "invalid_request", "error_description": "Requested connector does not exist."}),
    );
    let err = exchange_error(&provider, &subject).await;
    assert!(err.contains("no --connector-id was given"), "{err}");
}
