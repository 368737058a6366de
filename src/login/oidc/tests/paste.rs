//! Keyboard mode: the authorization code taken from a pasted redirect URL, query or bare code,
//! with the login's state (and issuer) checked.

use super::*;

async fn request(iss_supported: bool) -> (Idp, AuthRequest) {
    let idp = Idp::start().await;
    idp.edit_discovery(|d| {
        d.insert(
            "authorization_response_iss_parameter_supported".into(),
            json!(iss_supported),
        );
    });
    let provider = idp.provider().await;
    let req = provider.authorization_request(REDIRECT).unwrap();
    (idp, req)
}

fn url_with(pairs: &[(&str, &str)]) -> String {
    let mut url = Url::parse(REDIRECT).unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    url.into()
}

#[tokio::test]
async fn pasted_redirect_url_or_query_gives_the_code_when_the_state_matches() {
    let (idp, req) = request(false).await;
    let state = req.state.clone();
    let full = url_with(&[("code", "c0de"), ("state", &state)]);
    assert_eq!(req.code_from_pasted(&full).unwrap().expose_secret(), "c0de");
    // Blanks, quotes and a newline around it are ignored; a bare query works too.
    let quoted = format!("  '{full}'\n");
    assert_eq!(req.code_from_pasted(&quoted).unwrap().expose_secret(), "c0de");
    let without_scheme = format!("127.0.0.1:18000/callback?code=c0de&state={state}#frag");
    assert_eq!(
        req.code_from_pasted(&without_scheme).unwrap().expose_secret(),
        "c0de"
    );
    let query = format!("?code=c0de&state={state}");
    assert_eq!(req.code_from_pasted(&query).unwrap().expose_secret(), "c0de");
    // A matching iss is fine even when not required.
    let with_iss = url_with(&[("code", "c0de"), ("state", &state), ("iss", &idp.issuer)]);
    assert_eq!(req.code_from_pasted(&with_iss).unwrap().expose_secret(), "c0de");
}

#[tokio::test]
async fn pasted_url_with_wrong_or_missing_state_is_refused_without_echoing_it() {
    let (_idp, req) = request(false).await;
    let wrong = url_with(&[("code", "secret-code-1"), ("state", "not-the-state")]);
    let err = req.code_from_pasted(&wrong).unwrap_err();
    assert_eq!(err, PasteError::WrongState);
    assert!(!err.to_string().contains("secret-code-1"));
    assert!(!err.is_final(), "the user may paste again");
    let no_state = url_with(&[("code", "secret-code-1")]);
    assert_eq!(
        req.code_from_pasted(&no_state).unwrap_err(),
        PasteError::WrongState
    );
    // The login page's own URL, pasted by mistake: no code.
    assert_eq!(
        req.code_from_pasted("https://idp.example/auth?client_id=koidc")
            .unwrap_err(),
        PasteError::NoCode
    );
    // A repeated parameter is ambiguous.
    let state = req.state.clone();
    let twice = format!("{REDIRECT}?code=a&code=b&state={state}");
    assert_eq!(req.code_from_pasted(&twice).unwrap_err(), PasteError::Unreadable);
    assert_eq!(req.code_from_pasted("   ").unwrap_err(), PasteError::Unreadable);
    assert_eq!(
        req.code_from_pasted("two words").unwrap_err(),
        PasteError::Unreadable
    );
}

#[tokio::test]
async fn pasted_error_ends_the_login() {
    let (_idp, req) = request(false).await;
    let state = req.state.clone();
    let denied = url_with(&[
        ("error", "access_denied"),
        ("error_description", "user said no"),
        ("state", &state),
    ]);
    let err = req.code_from_pasted(&denied).unwrap_err();
    assert!(err.is_final());
    assert!(err.to_string().contains("access_denied (user said no)"), "{err}");
}

#[tokio::test]
async fn bare_code_is_accepted_unless_the_provider_promises_iss() {
    let (_idp, req) = request(false).await;
    assert_eq!(
        req.code_from_pasted("4/0AbC-dEf_123").unwrap().expose_secret(),
        "4/0AbC-dEf_123"
    );

    let (idp, req) = request(true).await;
    assert_eq!(
        req.code_from_pasted("4/0AbC-dEf_123").unwrap_err(),
        PasteError::BareCodeNeedsIssuer
    );
    let state = req.state.clone();
    let no_iss = url_with(&[("code", "c"), ("state", &state)]);
    assert!(matches!(
        req.code_from_pasted(&no_iss).unwrap_err(),
        PasteError::WrongIssuer { .. }
    ));
    let evil = url_with(&[("code", "c"), ("state", &state), ("iss", "https://evil.example")]);
    assert!(matches!(
        req.code_from_pasted(&evil).unwrap_err(),
        PasteError::WrongIssuer { .. }
    ));
    let good = url_with(&[("code", "c"), ("state", &state), ("iss", &idp.issuer)]);
    assert_eq!(req.code_from_pasted(&good).unwrap().expose_secret(), "c");
}
