//! The authorization response rules on their own: decoding, state, `iss`, errors, pasted lines.

use super::*;
use secrecy::ExposeSecret;

const STATE: &str = "s7Yq2N0cJ_xWvT4kL9pR3mA8bE1fH6gD";
const ISSUER: &str = "https://idp.example/dex";

fn login(issuer: Option<&'static str>, iss_required: bool) -> Expected<'static> {
    Expected {
        state: STATE,
        issuer,
        iss_required,
    }
}

fn code(query: &str, expected: Expected<'_>) -> Result<String, CallbackError> {
    code_from_query(query, expected).map(|c| c.expose_secret().to_owned())
}

#[test]
fn the_code_is_taken_when_the_state_matches() {
    let any = login(None, false);
    assert_eq!(code(&format!("code=c0de&state={STATE}"), any).unwrap(), "c0de");
    // Order, unknown parameters, empty pairs and form encoding do not matter.
    assert_eq!(
        code(&format!("&x=1&state={STATE}&&code=a+b%2Fc&scope=openid"), any).unwrap(),
        "a b/c"
    );
}

#[test]
fn form_decoding_is_strict() {
    assert_eq!(form_decode("a+b%20c%2B").unwrap(), "a b c+");
    assert_eq!(form_decode("%C3%A9").unwrap(), "é");
    for bad in ["%", "%g0", "%4", "%C3", "%FF%FE"] {
        assert_eq!(form_decode(bad), Err(CallbackError::Malformed), "{bad}");
    }
    let any = login(None, false);
    assert_eq!(
        code(&format!("code=c&state={STATE}&x=%zz"), any),
        Err(CallbackError::Malformed),
        "a bad escape anywhere spoils the whole query"
    );
}

#[test]
fn a_repeated_parameter_is_malformed_rather_than_guessed() {
    let any = login(Some(ISSUER), false);
    for query in [
        format!("code=a&code=b&state={STATE}"),
        format!("code=a&state={STATE}&state={STATE}"),
        format!("code=a&state={STATE}&iss={ISSUER}&iss={ISSUER}"),
        format!("error=x&error=y&state={STATE}"),
        format!("code=a&st%61te={STATE}&state={STATE}"),
    ] {
        assert_eq!(code(&query, any), Err(CallbackError::Malformed), "{query}");
    }
}

#[test]
fn a_missing_or_foreign_state_is_refused_and_says_whether_it_answered() {
    let any = login(None, false);
    for query in [
        "code=c".to_owned(),
        "code=c&state=".to_owned(),
        format!("code=c&state=not-{STATE}"),
        format!("code=c&state={}", &STATE[1..]),
        "error=access_denied&state=forged".to_owned(),
    ] {
        assert_eq!(
            code(&query, any),
            Err(CallbackError::WrongState { answered: true }),
            "{query}"
        );
    }
    assert_eq!(
        code("client_id=koidc&scope=openid", any),
        Err(CallbackError::WrongState { answered: false })
    );
}

#[test]
fn iss_must_equal_the_issuer_byte_for_byte_when_present() {
    let optional = login(Some(ISSUER), false);
    let with_iss = |iss: &str| {
        let iss: String = url::form_urlencoded::byte_serialize(iss.as_bytes()).collect();
        format!("code=c&state={STATE}&iss={iss}")
    };
    assert_eq!(code(&with_iss(ISSUER), optional).unwrap(), "c");
    assert_eq!(code(&format!("code=c&state={STATE}"), optional).unwrap(), "c");
    for other in [
        "https://evil.example",
        "https://idp.example/dex/",
        "https://IDP.example/dex",
    ] {
        assert_eq!(
            code(&with_iss(other), optional),
            Err(CallbackError::IssuerMismatch {
                expected: ISSUER.into(),
                got: other.into()
            })
        );
    }
    // Without an issuer to compare (GitHub), any iss passes.
    assert_eq!(
        code(&with_iss("https://evil.example"), login(None, true)).unwrap(),
        "c"
    );
}

#[test]
fn a_missing_iss_is_refused_only_when_the_provider_promises_it() {
    let required = login(Some(ISSUER), true);
    assert_eq!(check_iss(required, None), Err(CallbackError::MissingIssuer));
    assert_eq!(check_iss(required, Some(ISSUER)), Ok(()));
    assert_eq!(check_iss(login(Some(ISSUER), false), None), Ok(()));
    assert_eq!(
        code(&format!("code=c&state={STATE}"), required),
        Err(CallbackError::MissingIssuer)
    );
}

#[test]
fn the_iss_is_checked_before_the_error_so_a_mixed_up_refusal_is_not_believed() {
    let query = format!("error=access_denied&state={STATE}&iss=https%3A%2F%2Fevil.example");
    assert!(matches!(
        code(&query, login(Some(ISSUER), false)),
        Err(CallbackError::IssuerMismatch { .. })
    ));
}

#[test]
fn an_error_answer_is_sanitised_capped_and_never_the_code() {
    let long = "x".repeat(1000);
    let query = format!(
        "code=the-code&error=access_denied%1B%5B31m&error_description=+%3Cb%3Edenied%0A%C3%A9+by+user{long}&state={STATE}"
    );
    let err = code(&query, login(None, false)).unwrap_err();
    let CallbackError::Refused { error, description } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(error, "access_denied?[31m");
    let description = description.as_deref().unwrap();
    assert!(description.starts_with("<b>denied?? by userxxx"), "{description}");
    assert_eq!(description.len(), MAX_SHOWN_LEN + 3);
    assert!(!format!("{err} {err:?}").contains("the-code"));
    // An empty error still ends the login, with a name; a blank description is dropped.
    assert_eq!(
        code(
            &format!("error=&error_description=+&state={STATE}"),
            login(None, false)
        ),
        Err(CallbackError::Refused {
            error: "unknown_error".into(),
            description: None
        })
    );
}

#[test]
fn an_empty_or_absent_code_is_a_missing_code() {
    for query in [format!("state={STATE}"), format!("state={STATE}&code=")] {
        assert_eq!(code(&query, login(None, false)), Err(CallbackError::MissingCode));
    }
}

fn pasted(line: &str, expected: Expected<'_>) -> Result<String, CallbackError> {
    code_from_pasted(line, expected).map(|c| c.expose_secret().to_owned())
}

#[test]
fn a_pasted_address_query_or_bare_code_gives_the_code() {
    let optional = login(Some(ISSUER), false);
    for line in [
        format!("http://127.0.0.1:8000/callback?code=c0de&state={STATE}"),
        format!("  '<http://127.0.0.1:8000/callback?code=c0de&state={STATE}#top>'\n"),
        format!("127.0.0.1:8000/callback?code=c0de&state={STATE}#frag"),
        format!("?code=c0de&state={STATE}"),
        format!("code=c0de&state={STATE}"),
        "c0de".to_owned(),
    ] {
        assert_eq!(pasted(&line, optional).unwrap(), "c0de", "{line:?}");
    }
}

#[test]
fn a_pasted_line_follows_the_same_rules_as_the_redirect() {
    let required = login(Some(ISSUER), true);
    let url = |query: &str| format!("http://127.0.0.1:8000/callback?{query}");
    assert_eq!(
        pasted(&url("code=c&state=other"), required),
        Err(CallbackError::WrongState { answered: true })
    );
    assert_eq!(
        pasted(&url(&format!("code=c&state={STATE}")), required),
        Err(CallbackError::MissingIssuer)
    );
    assert_eq!(
        pasted(&url(&format!("code=c&state={STATE}&x=%zz")), required),
        Err(CallbackError::Malformed)
    );
    assert_eq!(pasted("c0de", required), Err(CallbackError::BareCodeNeedsIssuer));
    let iss: String = url::form_urlencoded::byte_serialize(ISSUER.as_bytes()).collect();
    assert_eq!(
        pasted(&url(&format!("code=c&state={STATE}&iss={iss}")), required).unwrap(),
        "c"
    );
}

#[test]
fn an_unreadable_paste_is_malformed() {
    let any = login(None, false);
    let huge = "a".repeat(MAX_PASTE_LEN + 1);
    for line in [
        "",
        "  \n",
        "two words",
        "ftp://example.com/x",
        "\"\"",
        huge.as_str(),
    ] {
        assert_eq!(pasted(line, any), Err(CallbackError::Malformed), "{line:.20?}");
    }
}

#[test]
fn fuzz_entry_point_accepts_real_answers_and_survives_hostile_ones() {
    for input in [
        "code=abc&state=fuzz-state",
        "code=abc&state=fuzz-state&iss=https%3A%2F%2Fidp.example",
        "code=abc&state=fuzz-state&iss=https%3A%2F%2Fevil.example",
        "http://127.0.0.1:1/callback?code=abc&state=fuzz-state&iss=https://idp.example",
        "error=%1B%5B2J&error_description=%00%FF&state=fuzz-state",
        "bare-code",
        "code=&state=fuzz-state",
        "%zz",
        "",
    ] {
        fuzz::callback_answer(input);
    }
}
