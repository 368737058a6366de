//! Fuzzes the parsing of `KUBERNETES_EXEC_INFO` (what kubectl passes to every `get-token`):
//! [`ExecInfo::parse`] must never panic, and its errors must stay one short line whatever the
//! input quotes.
#![no_main]

use koidc::fuzz::ExecInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ExecInfo::parse(Some(text)) {
        Ok(info) => assert!(info.from_kubectl || text.trim().is_empty()),
        Err(err) => {
            let message = err.to_string();
            assert!(message.len() < 600, "a {} byte error message", message.len());
            assert!(!message.contains(['\n', '\r']), "a multi-line error message");
        }
    }
});
