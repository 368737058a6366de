//! The fuzzing entry point of the callback handler (`fuzz/fuzz_targets/callback_query.rs`,
//! reached through [`crate::fuzz`]), and the check of koidc's page it shares with the tests.
//! Not part of a login: it lives here only to reach the handler's internals.

use super::*;

/// Fuzzing entry point, not API (`fuzz/fuzz_targets/callback_query.rs`): runs the request
/// handler on `GET /callback?<query>` for a login waiting for a fixed state, and panics if a
/// request without that state and a code completed the login, or if the page it answers with
/// is not koidc's page around plain text: markup or a control byte from the query, a missing
/// security header, or IdP text longer than the cap.
pub fn callback_query(query: &str) {
    const STATE: &str = "fuzz-state";
    let Ok(uri) = axum::http::Uri::try_from(format!("{CALLBACK_PATH}?{query}")) else {
        return;
    };
    let (done, mut outcome) = oneshot::channel();
    let shared = Shared {
        addr: SocketAddr::from(([127, 0, 0, 1], 4000)),
        expected_state: STATE.to_owned(),
        expected_iss: Some("https://idp.example".to_owned()),
        iss_required: false,
        rejected: AtomicU64::new(0),
        done: Mutex::new(Some(done)),
    };
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:4000"));
    let response = respond(&shared, &Method::GET, &uri, &headers);
    let status = response.status();
    check_page(response);
    let finished = outcome.try_recv().ok();
    // The state, read by the `url` crate's lenient parser rather than koidc's own.
    let states: Vec<_> = url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .filter(|(key, _)| key == "state")
        .collect();
    let state_ok = matches!(states.as_slice(), [(_, state)] if state == STATE);
    if finished.is_some() {
        assert!(state_ok, "a callback without the expected state ended the login");
    }
    if status == StatusCode::OK {
        let code = match finished {
            Some(Ok(code)) => code,
            _ => panic!("200 without a code"),
        };
        assert!(!secrecy::ExposeSecret::expose_secret(&code).is_empty());
    }
}

/// Panics unless `response` is koidc's page: the security headers, and the template around one
/// paragraph of printable ASCII without markup (only `&…;` entities), no longer than a message
/// with two capped IdP texts, every character of them escaped.
pub(crate) fn check_page(response: Response) {
    use std::future::Future as _;
    let (parts, body) = response.into_parts();
    for (name, value) in [
        (header::CONTENT_TYPE, HTML),
        (header::CACHE_CONTROL, NO_STORE),
        (header::REFERRER_POLICY, NO_REFERRER),
        (header::X_CONTENT_TYPE_OPTIONS, NOSNIFF),
        (header::CONTENT_SECURITY_POLICY, CSP),
    ] {
        assert_eq!(parts.headers.get(&name), Some(&value), "{name}");
    }
    // The body is one buffer: ready at the first poll.
    let collect = std::pin::pin!(axum::body::to_bytes(body, usize::MAX));
    let std::task::Poll::Ready(Ok(bytes)) =
        collect.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    else {
        panic!("the page body was not ready")
    };
    let text = std::str::from_utf8(&bytes).expect("the page is UTF-8");
    let (before, after) = PAGE_TEMPLATE.split_once("{message}").unwrap_or_default();
    let message = text
        .strip_prefix(before)
        .and_then(|t| t.strip_suffix(after))
        .unwrap_or_else(|| panic!("not koidc's page: {text:?}"));
    assert!(
        message
            .chars()
            .all(|c| matches!(c, ' '..='~') && !matches!(c, '<' | '>' | '"' | '\'')),
        "markup or a control character on the page: {message:?}"
    );
    for (i, _) in message.match_indices('&') {
        let entity = message[i..].split_inclusive(';').next().unwrap_or_default();
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"].contains(&entity),
            "a bare & on the page: {message:?}"
        );
    }
    // The longest message: the fixed words and two IdP texts of MAX_SHOWN_LEN + "...", every
    // character escaped to at most 5.
    assert!(
        message.len() <= 200 + 2 * 5 * (MAX_SHOWN_LEN + 3),
        "{}",
        message.len()
    );
}
