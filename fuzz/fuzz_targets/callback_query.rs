//! Fuzzes the loopback server's callback handling: the query of `GET /callback?…` is parsed and
//! handled for a login waiting for a fixed state (`koidc::fuzz::callback_query`, which
//! panics if anything but the expected state with a code completes the login, or if IdP text
//! shown to the user is not sanitised).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(query) = std::str::from_utf8(data) {
        koidc::fuzz::callback_query(query);
    }
});
