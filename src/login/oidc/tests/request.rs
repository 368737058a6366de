//! `--auth-param`, `--request-header`, `--pkce` and `--token-type access` against the stub
//! provider: what reaches it, and what koidc accepts back.

use super::*;
use crate::login::oidc::request::{AuthParams, ProviderRequest, RequestHeaders, TokenType};

fn strings(raw: &[&str]) -> Vec<String> {
    raw.iter().map(|s| (*s).to_owned()).collect()
}

fn with_request(idp: &Idp, request: ProviderRequest) -> OidcConfig {
    OidcConfig {
        request,
        ..idp.config()
    }
}

fn params(raw: &[&str]) -> AuthParams {
    AuthParams::parse(&strings(raw)).unwrap()
}

#[tokio::test]
async fn auth_params_follow_koidcs_own_and_pkce_is_sent_without_advertised_methods() {
    let idp = Idp::start().await;
    idp.edit_discovery(|d| {
        d.remove("code_challenge_methods_supported");
    });
    let provider = idp
        .provider_with(with_request(
            &idp,
            ProviderRequest {
                auth_params: params(&["prompt=login", "login_hint=a+b@example.com", "acr_values=x y&z"]),
                ..ProviderRequest::default()
            },
        ))
        .await;
    let req = provider.authorization_request(REDIRECT).unwrap();
    let q = query(&req.url);
    assert_eq!(q["prompt"], "login");
    assert_eq!(q["login_hint"], "a+b@example.com");
    // Encoded: the value cannot add a parameter of its own.
    assert_eq!(q["acr_values"], "x y&z");
    assert!(!q.contains_key("z"));
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
}

#[tokio::test]
async fn pkce_false_sends_neither_the_challenge_nor_the_verifier() {
    let idp = Idp::start().await;
    let provider = idp
        .provider_with(with_request(
            &idp,
            ProviderRequest {
                pkce: false,
                ..ProviderRequest::default()
            },
        ))
        .await;
    let tokens = login_with(&idp, &provider, |n| rs256("k1", &idp.claims(Some(n)))).await;
    assert!(tokens.is_ok(), "{:?}", tokens.err());
    let sent = idp.last_token_request();
    assert!(!sent.form.contains_key("code_verifier"), "{:?}", sent.form.keys());
    let req = provider.authorization_request(REDIRECT).unwrap();
    let q = query(&req.url);
    assert!(!q.contains_key("code_challenge") && !q.contains_key("code_challenge_method"));
}

#[tokio::test]
async fn max_age_requires_a_recent_auth_time_in_the_id_token() {
    let idp = Idp::start().await;
    let provider = idp
        .provider_with(with_request(
            &idp,
            ProviderRequest {
                auth_params: params(&["max_age=300"]),
                ..ProviderRequest::default()
            },
        ))
        .await;
    let with_auth_time = |n: &str, t: Option<i64>| {
        let mut c = idp.claims(Some(n));
        if let Some(t) = t {
            c["auth_time"] = json!(t);
        }
        rs256("k1", &c)
    };
    let recent = now().timestamp() - 200;
    assert!(
        login_with(&idp, &provider, |n| with_auth_time(n, Some(recent)))
            .await
            .is_ok()
    );
    let missing = login_with(&idp, &provider, |n| with_auth_time(n, None)).await;
    assert!(matches!(missing, Err(OidcError::AuthTimeMissing)), "{missing:?}");
    let old = login_with(&idp, &provider, |n| {
        with_auth_time(n, Some(now().timestamp() - 1000))
    })
    .await;
    match old {
        Err(err @ OidcError::AuthTimeTooOld { .. }) => {
            assert!(err.to_string().contains("max_age=300"), "{err}");
        }
        other => panic!("an old login was accepted: {other:?}"),
    }
}

#[tokio::test]
async fn a_login_hint_entry_refuses_a_login_of_another_account() {
    let idp = Idp::start().await;
    let provider = idp
        .provider_with(with_request(
            &idp,
            ProviderRequest {
                auth_params: params(&["login_hint=Alice@Example.com"]),
                ..ProviderRequest::default()
            },
        ))
        .await;
    let as_account = |n: &str, claims: &[(&str, &str)]| {
        let mut c = idp.claims(Some(n));
        c.as_object_mut().unwrap().remove("email");
        for (k, v) in claims {
            c[*k] = json!(v);
        }
        rs256("k1", &c)
    };
    // The browser session's account, bob, signed in instead of alice.
    let bob = login_with(&idp, &provider, |n| {
        as_account(n, &[("email", "bob@example.com"), ("preferred_username", "bob")])
    })
    .await;
    match bob {
        Err(err @ OidcError::LoginHintMismatch { .. }) => {
            let line = err.to_string();
            assert!(
                line.contains("alice@example.com") || line.contains("Alice@Example.com"),
                "{line}"
            );
            assert!(line.contains("bob@example.com") && !line.contains('\n'), "{line}");
        }
        other => panic!("another account's login was accepted under the hint: {other:?}"),
    }
    // The hinted account, in any claim and any ASCII case; or a token naming nobody.
    for claims in [
        &[("email", "alice@example.com")][..],
        &[("email", "a1@corp.example"), ("upn", "ALICE@example.COM")],
        &[("preferred_username", "alice@example.com")],
        &[],
    ] {
        let ok = login_with(&idp, &provider, |n| as_account(n, claims)).await;
        assert!(ok.is_ok(), "{claims:?}: {:?}", ok.err());
    }
}

#[tokio::test]
async fn request_headers_reach_the_token_and_device_endpoints() {
    let idp = Idp::start_with_device().await;
    let provider = idp
        .provider_with(with_request(
            &idp,
            ProviderRequest {
                headers: RequestHeaders::parse(&strings(&["X-Tenant=acme"])).unwrap(),
                auth_params: params(&["login_hint=kilgore@kilgore.trout"]),
                ..ProviderRequest::default()
            },
        ))
        .await;
    login_with(&idp, &provider, |n| rs256("k1", &idp.claims(Some(n))))
        .await
        .unwrap();
    assert_eq!(idp.last_token_request().tenant.as_deref(), Some("acme"));
    idp.push_device_authorization(Some(1), 600);
    provider.start_device_authorization().await.unwrap();
    let device = idp.stub.device_requests.lock().unwrap().pop().unwrap();
    assert_eq!(device.tenant.as_deref(), Some("acme"));
    assert_eq!(
        device.form.get("login_hint").map(String::as_str),
        Some("kilgore@kilgore.trout")
    );
}

/// A user's JWT access token for `aud`, issued to the client.
fn user_access_claims(idp: &Idp, aud: Value) -> Value {
    json!({
        "iss": idp.issuer, "sub": "user-1", "cid": CLIENT_ID, "aud": aud,
        "exp": now().timestamp() + 7200, "iat": now().timestamp() - 5,
    })
}

/// A login whose token response carries `access` beside a good ID token.
async fn access_login(idp: &Idp, audience: Option<&str>, access: &str) -> Result<TokenSet, OidcError> {
    let provider = idp
        .provider_with(with_request(
            idp,
            ProviderRequest {
                token_type: TokenType::Access {
                    audience: audience.map(str::to_owned),
                },
                ..ProviderRequest::default()
            },
        ))
        .await;
    let req = provider.authorization_request(REDIRECT).unwrap();
    let nonce = query(&req.url)["nonce"].clone();
    idp.push_token_reply(
        200,
        json!({"access_token": access, "token_type": "bearer", "id_token": rs256("k1", &idp.claims(Some(&nonce))), "refresh_token": "rt"}),
    );
    provider.exchange_code(req, SecretString::from("code")).await
}

#[tokio::test]
async fn token_type_access_hands_out_the_verified_access_token_for_the_audience() {
    let idp = Idp::start().await;
    let good = rs256("k1", &user_access_claims(&idp, json!("api://default")));
    let tokens = access_login(&idp, Some("api://default"), &good).await.unwrap();
    assert_eq!(tokens.id_token.expose_secret(), good);
    // Without --audience: a token issued to the client (Okta's cid) is taken.
    let tokens = access_login(&idp, None, &good).await.unwrap();
    assert_eq!(tokens.id_token.expose_secret(), good);
}

#[tokio::test]
async fn token_type_access_refuses_opaque_foreign_and_forged_access_tokens() {
    let idp = Idp::start().await;
    let opaque = access_login(&idp, Some("api://default"), "opaque-access-token").await;
    let Err(err) = opaque else {
        panic!("an opaque access token was accepted")
    };
    let err = err.to_string();
    assert!(
        err.contains("opaque") && err.contains("custom authorization server"),
        "{err}"
    );
    assert!(
        !err.contains("opaque-access-token"),
        "the token is in the message: {err}"
    );

    let other_aud = rs256("k1", &user_access_claims(&idp, json!("api://other")));
    let err = access_login(&idp, Some("api://default"), &other_aud)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("must contain `api://default`"), "{err}");

    let mut foreign = user_access_claims(&idp, json!("api://other"));
    foreign["cid"] = json!("another-client");
    let err = access_login(&idp, None, &rs256("k1", &foreign))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--audience"), "{err}");

    // A changed signature byte (not the last character, whose low bits base64url may ignore).
    let signed = rs256("k1", &user_access_claims(&idp, json!("api://default")));
    let at = signed.rfind('.').unwrap() + 10;
    let flipped = if &signed[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{flipped}{}", &signed[..at], &signed[at + 1..]);
    assert!(access_login(&idp, Some("api://default"), &forged).await.is_err());

    let mut expired = user_access_claims(&idp, json!("api://default"));
    expired["exp"] = json!(now().timestamp() - 1);
    assert!(
        access_login(&idp, Some("api://default"), &rs256("k1", &expired))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn token_type_access_refresh_takes_the_new_access_token_without_an_id_token_for_the_same_subject() {
    let idp = Idp::start().await;
    let provider = idp
        .provider_with(with_request(
            &idp,
            ProviderRequest {
                token_type: TokenType::Access {
                    audience: Some("api://default".into()),
                },
                ..ProviderRequest::default()
            },
        ))
        .await;
    let cached = rs256("k1", &user_access_claims(&idp, json!("api://default")));
    let cached_info = crate::login::token::IdTokenInfo::decode(&cached).unwrap();
    let fresh = rs256("k1", &{
        let mut c = user_access_claims(&idp, json!("api://default"));
        c["jti"] = json!("second");
        c
    });
    idp.push_token_reply(200, json!({"access_token": fresh, "token_type": "bearer"}));
    let tokens = provider
        .refresh(&SecretString::from("rt".to_owned()), &cached_info)
        .await
        .unwrap();
    assert_eq!(tokens.id_token.expose_secret(), fresh);
    // Another subject's access token: refused as a change of identity.
    let mallory = rs256("k1", &{
        let mut c = user_access_claims(&idp, json!("api://default"));
        c["sub"] = json!("mallory");
        c
    });
    idp.push_token_reply(200, json!({"access_token": mallory, "token_type": "bearer"}));
    let err = provider
        .refresh(&SecretString::from("rt".to_owned()), &cached_info)
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::RefreshIdentityChanged { .. }), "{err}");
}
