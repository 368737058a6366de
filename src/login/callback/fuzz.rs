//! The fuzzing entry point of the authorization response parser (`fuzz/fuzz_targets/
//! callback_answer.rs`, reached through [`crate::fuzz`]). Not part of a login.

use super::*;

/// The login the fuzzed input is checked against.
const STATE: &str = "fuzz-state";
const ISSUER: &str = "https://idp.example";

/// Fuzzing entry point, not API (`fuzz/fuzz_targets/callback_answer.rs`): reads `input` both as
/// a redirect's query and as a pasted line, for a login that expects `iss` and one that requires
/// it, and panics if a code comes out of a query that does not carry exactly this login's
/// `state`, one non-empty `code`, no `error` and an acceptable `iss` (told apart by the `url`
/// crate's lenient parser, not koidc's), if a bare code is taken although `iss` is required, or if
/// an error's text is not one line of printable ASCII of bounded length.
pub fn callback_answer(input: &str) {
    for iss_required in [false, true] {
        let expected = Expected {
            state: STATE,
            issuer: Some(ISSUER),
            iss_required,
        };
        match code_from_query(input, expected) {
            Ok(code) => check_accepted(input, secrecy::ExposeSecret::expose_secret(&code), expected),
            Err(err) => check_text(&err),
        }
        match code_from_pasted(input, expected) {
            Ok(code) => {
                assert!(
                    !secrecy::ExposeSecret::expose_secret(&code).is_empty(),
                    "an empty code from a paste"
                );
                // A bare code has no `=`: with `iss` required, only a query can give a code.
                assert!(
                    !iss_required || input.contains('='),
                    "a bare code was taken although the provider promises iss"
                );
            }
            Err(err) => check_text(&err),
        }
    }
}

/// Panics unless `query`, read by the `url` crate, names this login's state once, the `code`
/// once and equal to `code`, no `error`, and an `iss` equal to the issuer (or none, when not
/// required).
fn check_accepted(query: &str, code: &str, expected: Expected<'_>) {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let values = |name: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values("state"), [STATE], "accepted without this login's state");
    assert_eq!(
        values("code"),
        [code],
        "the code taken is not the query's one code"
    );
    assert!(!code.is_empty(), "an empty code was accepted");
    assert!(values("error").is_empty(), "an error answer gave a code");
    match values("iss").as_slice() {
        [] => assert!(!expected.iss_required, "accepted without the required iss"),
        [iss] => assert_eq!(*iss, ISSUER, "accepted from another issuer"),
        _ => panic!("accepted with a repeated iss"),
    }
}

/// Panics unless the error's message is one line of printable ASCII no longer than the fixed
/// words and three capped IdP texts.
fn check_text(err: &CallbackError) {
    let text = err.to_string();
    assert!(
        text.chars().all(|c| matches!(c, ' '..='~')),
        "a control or non-ASCII character in {text:?}"
    );
    assert!(text.len() <= 200 + 3 * (MAX_SHOWN_LEN + 3), "{}", text.len());
}
