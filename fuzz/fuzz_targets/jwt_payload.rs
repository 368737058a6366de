//! Fuzzes the offline reading of an ID token ([`IdTokenInfo::decode`], the warm path of every
//! cached `get-token`): the input as a whole token, and as the JSON payload of a token (so the
//! claim checks are reached). A decoded token's fields must agree with its claims.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use koidc::fuzz::IdTokenInfo;
use libfuzzer_sys::fuzz_target;

fn check(jwt: &str) {
    let Ok(info) = IdTokenInfo::decode(jwt) else {
        return;
    };
    assert_eq!(info.claims["iss"].as_str(), Some(info.issuer.as_str()));
    for aud in &info.audiences {
        assert!(info.belongs_to(&info.issuer, aud));
    }
    assert!(!info.belongs_to(&format!("{}/", info.issuer), "x"));
    let _ = info.groups();
    let _ = info.str_claim("email");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
    }
    check(&format!(
        "eyJhbGciOiJSUzI1NiJ9.{}.sig",
        URL_SAFE_NO_PAD.encode(data)
    ));
});
