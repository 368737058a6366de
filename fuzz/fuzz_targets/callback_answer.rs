//! Fuzzes the authorization response parser shared by the loopback listener and keyboard mode:
//! the input is read as a redirect's query and as a pasted line (`koidc::fuzz::callback_answer`,
//! which panics if a code comes out without this login's state and issuer, or if an error's
//! text is not one line of printable ASCII).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = std::str::from_utf8(data) {
        koidc::fuzz::callback_answer(input);
    }
});
