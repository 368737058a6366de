//! The real `koidc get-token` against the stub IdP ([`crate::stub_idp`]) misbehaving in every
//! way Dex cannot: forged, mis-addressed, expired or oversized ID tokens, broken discovery, a
//! failing or stalling token endpoint, an unreachable issuer, and error callbacks.
//!
//! Each fault must end koidc with exit code 1, nothing on stdout, one `koidc: ` error line on
//! stderr naming the failed check, no JWT on stderr, and no cache entry written. The control
//! case (a good token from the same stub) must succeed, so a passing rejection test proves the
//! fault was caught, not that the stub is unusable. The browser is `curl -L`: the stub's
//! `/authorize` only redirects, so following redirects completes the login.
//!
//! Beyond forged tokens, the same stub pins the protocol rules koidc holds an honest-looking
//! provider to: no plain-http endpoint behind an https issuer, a refresh must answer for the
//! same identity (and a rotated refresh token is kept even when the new ID token cannot be
//! checked yet), and every login says who logged in.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::stub_idp::{
    CLIENT_ID, ConnectionTrap, EMAIL, Fault, STALL, SUB, StubClient, StubIdp, StubOptions, refused_issuer,
};
use crate::support::{ExecCredential, Output, mode, parse_exec_credential, run, wait_until_stale};

/// koidc's fixed HTTP timeout per request to the IdP (src/config.rs `HTTP_TIMEOUT`).
const KOIDC_HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The stderr line koidc prints when it has launched the browser (a progress message for the
/// person at the terminal, printed before the login can fail).
const BROWSER_NOTICE: &str = "koidc: opened a browser to log in";

/// `koidc get-token` against `issuer` with a file cache and curl as the browser.
fn get_token(client: &StubClient, issuer: &str) -> Output {
    run(&mut client.command_with_cache("get-token", issuer, "file", &[]))
}

/// Checks a rejected `get-token`: exit code 1, empty stdout, stderr holding (besides koidc's
/// browser notice, when the browser was opened) exactly one line `koidc: ...` that contains
/// every word of `names` (case-insensitive), no JWT or token the stub issued on stderr, no
/// panic, and no cache entry. Returns the error line.
#[track_caller]
fn assert_rejected(out: &Output, client: &StubClient, idp: Option<&StubIdp>, names: &[&str]) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{} must fail with exit code 1 ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.what,
        out.status,
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.is_empty(),
        "{} printed on stdout: {:?}",
        out.what,
        out.stdout
    );
    assert!(
        crate::support::find_jwt(&out.stderr).is_none(),
        "{}: a JWT leaked on stderr: {:?}",
        out.what,
        out.stderr
    );
    for token in idp.map(StubIdp::issued_id_tokens).unwrap_or_default() {
        let signature = token.rsplit('.').next().unwrap_or_default();
        assert!(
            signature.len() < 8 || !out.stderr.contains(signature),
            "{}: part of an issued ID token leaked on stderr",
            out.what
        );
    }
    let lines: Vec<&str> = out
        .stderr_lines()
        .into_iter()
        .filter(|l| !l.starts_with(BROWSER_NOTICE))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{}: expected exactly one error line on stderr (besides the browser notice), got {:?}",
        out.what,
        out.stderr
    );
    let line = lines[0];
    assert!(
        line.starts_with("koidc: ") && !line.starts_with("koidc: warning"),
        "{}: the error line does not start with `koidc: `: {line:?}",
        out.what
    );
    assert!(
        !line.contains("internal error") && !out.stderr.contains("panicked"),
        "{}: koidc panicked: {:?}",
        out.what,
        out.stderr
    );
    assert_each_cause_once(line);
    let lower = line.to_lowercase();
    for name in names {
        assert!(
            lower.contains(&name.to_lowercase()),
            "{}: the error line should name {name:?}: {line:?}",
            out.what
        );
    }
    let entries = client.entries();
    assert!(
        entries.is_empty(),
        "{}: a rejected login left cache entries {entries:?}",
        out.what
    );
    line.to_string()
}

/// No run of five words appears twice in `line`: a cause printed twice would (the error chain
/// of a wrapper that shows its source and also returns it as its `source()`).
#[track_caller]
fn assert_each_cause_once(line: &str) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut seen = std::collections::HashSet::new();
    for window in words.windows(5) {
        assert!(
            seen.insert(window),
            "{:?} is printed twice: {line:?}",
            window.join(" ")
        );
    }
}

/// Runs one login against a stub with `fault` and checks that it is rejected naming `names`.
/// Returns the stub (for hit counts) and the error line.
#[track_caller]
fn rejected(fault: Fault, names: &[&str]) -> (StubIdp, String) {
    let idp = StubIdp::start(fault);
    let client = StubClient::new();
    let out = get_token(&client, idp.issuer());
    let line = assert_rejected(&out, &client, Some(&idp), names);
    (idp, line)
}

/// A rejection of the ID token itself: the code was redeemed exactly once, so the failure is the
/// token's, not an earlier step's.
#[track_caller]
fn token_rejected(fault: Fault, names: &[&str]) -> String {
    let (idp, line) = rejected(fault, names);
    assert_eq!(idp.hits("authorize"), 1, "one authorization request");
    assert_eq!(idp.hits("token"), 1, "one code redemption");
    assert_eq!(
        idp.issued_id_tokens().len(),
        1,
        "the stub issued the forged token"
    );
    assert!(
        line.starts_with("koidc: ID token rejected: "),
        "the failure must be the ID token check: {line:?}"
    );
    line
}

/// Checks a successful `get-token` against `idp`: an ExecCredential holding the token the stub
/// issued last, nothing but the browser notice on stderr.
#[track_caller]
fn assert_accepted(out: &Output, idp: &StubIdp) -> ExecCredential {
    out.assert_success();
    let cred = parse_exec_credential(out);
    assert_eq!(cred.claims["iss"], idp.issuer(), "token from another issuer");
    assert_eq!(cred.claims["aud"], CLIENT_ID, "token for another audience");
    assert!(
        crate::support::find_jwt(&out.stderr).is_none(),
        "{}: a JWT leaked on stderr",
        out.what
    );
    cred
}

// ---------------------------------------------------------------------------------------------
// Control

#[test]
fn forged_control_good_stub_token_is_accepted_and_cached() {
    let idp = StubIdp::start(Fault::Good);
    let client = StubClient::new();
    let out = get_token(&client, idp.issuer());
    let cred = assert_accepted(&out, &idp);
    assert_eq!(
        idp.issued_id_tokens(),
        std::slice::from_ref(&cred.token),
        "the ExecCredential holds the token the stub issued"
    );
    assert_eq!(cred.claims["sub"], "stub-user-1");
    assert_eq!(idp.hits("authorize"), 1);
    assert_eq!(idp.hits("token"), 1);
    let extra: Vec<&str> = out
        .stderr_lines()
        .into_iter()
        .filter(|l| !l.starts_with(BROWSER_NOTICE))
        .collect();
    assert_eq!(
        extra,
        [format!("koidc: logged in as {EMAIL} at {}", idp.issuer())],
        "unexpected stderr: {:?}",
        out.stderr
    );
    let entries = client.entries();
    assert_eq!(entries.len(), 1, "one cache entry: {entries:?}");
    assert_eq!(mode(&entries[0]), 0o600);
    let cached = std::fs::read_to_string(&entries[0]).expect("read the cache entry");
    assert!(cached.contains(&cred.token), "the entry holds the ID token");

    // The next call is served from the cache without talking to the stub.
    let before = (idp.hits("discovery"), idp.hits("token"));
    let again = get_token(&client, idp.issuer());
    let hit = assert_accepted(&again, &idp);
    assert_eq!(hit.token, cred.token, "a cache hit serves the cached token");
    assert_eq!((idp.hits("discovery"), idp.hits("token")), before);
    assert_eq!(again.stderr, "", "a cache hit prints nothing on stderr");
}

// ---------------------------------------------------------------------------------------------
// Forged or invalid ID tokens

#[test]
fn forged_token_signed_by_another_key_is_rejected() {
    token_rejected(Fault::BadSignature, &["signature"]);
}

#[test]
fn forged_alg_none_token_is_rejected() {
    token_rejected(Fault::AlgNone, &["algorithm", "none"]);
}

#[test]
fn forged_hs256_token_keyed_with_the_public_key_is_rejected() {
    token_rejected(Fault::Hs256WithPublicKey, &["algorithm", "HS256", "not allowed"]);
}

#[test]
fn forged_token_from_another_issuer_is_rejected() {
    token_rejected(Fault::WrongIssuer, &["issuer", "evil.example.com"]);
}

#[test]
fn forged_token_whose_issuer_has_a_trailing_slash_is_rejected() {
    token_rejected(Fault::IssuerTrailingSlash, &["issuer"]);
}

#[test]
fn forged_token_for_another_audience_is_rejected() {
    let line = token_rejected(Fault::WrongAudience, &["audience"]);
    assert_eq!(
        line,
        format!(
            "koidc: ID token rejected: audience must contain `{CLIENT_ID}` (the token's: `kubernetes`); \
             check --client-id"
        )
    );
}

#[test]
fn forged_token_with_an_extra_untrusted_audience_is_rejected() {
    token_rejected(Fault::ExtraAudience, &["audience"]);
}

#[test]
fn forged_token_with_azp_of_another_client_is_rejected() {
    token_rejected(Fault::AzpMismatch, &["azp"]);
}

#[test]
fn forged_expired_token_is_rejected() {
    token_rejected(Fault::Expired, &["expired"]);
}

#[test]
fn forged_token_not_valid_before_an_hour_from_now_is_rejected() {
    token_rejected(Fault::NotYetValid, &["nbf"]);
}

#[test]
fn forged_token_without_iat_is_rejected() {
    token_rejected(Fault::MissingIat, &["iat"]);
}

#[test]
fn forged_token_with_another_logins_nonce_is_rejected() {
    token_rejected(Fault::WrongNonce, &["nonce"]);
}

#[test]
fn forged_token_without_nonce_is_rejected() {
    token_rejected(Fault::MissingNonce, &["nonce", "missing"]);
}

#[test]
fn forged_token_with_unknown_kid_is_rejected_after_one_jwks_refetch() {
    let line = {
        let (idp, line) = rejected(Fault::UnknownKid, &["signature", "kid", "k-unknown"]);
        assert_eq!(idp.hits("token"), 1);
        assert_eq!(
            idp.hits("keys"),
            2,
            "koidc fetches the JWKS at discovery and once more for the unknown kid"
        );
        line
    };
    assert!(line.starts_with("koidc: ID token rejected: "), "{line:?}");
}

#[test]
fn forged_token_with_non_json_payload_is_rejected() {
    token_rejected(Fault::NonJsonPayload, &["malformed", "payload"]);
}

#[test]
fn forged_oversized_1mib_token_is_rejected() {
    token_rejected(Fault::Oversized, &["larger than"]);
}

// ---------------------------------------------------------------------------------------------
// A provider that fails or lies outside the token

#[test]
fn forged_token_endpoint_500_fails_naming_the_status() {
    let (idp, _) = rejected(Fault::TokenEndpoint500, &["token", "500"]);
    assert_eq!(idp.hits("token"), 1);
    assert!(idp.issued_id_tokens().is_empty());
}

#[test]
fn forged_stalled_token_endpoint_times_out() {
    let started = Instant::now();
    let (idp, _) = rejected(Fault::TokenEndpointStall, &["did not answer", "30s"]);
    let took = started.elapsed();
    assert_eq!(idp.hits("token"), 1);
    assert!(
        took >= KOIDC_HTTP_TIMEOUT && took < STALL,
        "koidc should give up after its {KOIDC_HTTP_TIMEOUT:?} HTTP timeout, before the \
         stub answers after {STALL:?}; took {took:?}"
    );
}

#[test]
fn forged_discovery_naming_another_issuer_is_rejected() {
    let (idp, _) = rejected(Fault::DiscoveryIssuerMismatch, &["discovery", "issuer"]);
    assert_eq!(idp.hits("authorize"), 0, "no login after a bad discovery");
    assert_eq!(idp.hits("token"), 0);
}

#[test]
fn forged_malformed_discovery_json_is_rejected() {
    let (idp, _) = rejected(Fault::DiscoveryMalformed, &["malformed", "not json"]);
    assert_eq!(idp.hits("authorize"), 0, "no login after a bad discovery");
}

#[test]
fn forged_issuer_refusing_connections_fails_cleanly() {
    let client = StubClient::new();
    let issuer = refused_issuer();
    let out = get_token(&client, &issuer);
    let line = assert_rejected(&out, &client, None, &["cannot reach", "refused"]);
    let port = issuer.rsplit(':').next().unwrap_or_default();
    let port = port.trim_end_matches("/idp");
    assert!(line.contains(port), "the error names the URL: {line:?}");
}

#[test]
fn forged_callback_access_denied_fails_naming_access_denied() {
    let started = Instant::now();
    let (idp, _) = rejected(Fault::CallbackError, &["access_denied"]);
    assert_eq!(idp.hits("authorize"), 1);
    assert_eq!(idp.hits("token"), 0, "no code to redeem");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the error callback must end the login at once, not at the timeout"
    );
}

#[test]
fn forged_callback_with_state_but_no_code_fails() {
    let started = Instant::now();
    let (idp, _) = rejected(Fault::CallbackWithoutCode, &["no authorization code"]);
    assert_eq!(idp.hits("token"), 0, "no code to redeem");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the code-less callback must end the login at once, not at the timeout"
    );
}

// ---------------------------------------------------------------------------------------------
// The cache

#[test]
fn forged_cache_entry_tampered_to_another_issuer_is_not_served() {
    let idp = StubIdp::start(Fault::Good);
    let client = StubClient::new();
    let first = assert_accepted(&get_token(&client, idp.issuer()), &idp);
    let entries = client.entries();
    assert_eq!(entries.len(), 1, "one cache entry: {entries:?}");
    let entry = &entries[0];

    // Replace the cached ID token with one validly signed by the same key, valid for an hour,
    // but issued by another issuer: a token for another cluster must never be handed out here.
    let mut claims = idp.good_claims(None);
    claims["iss"] = json!("https://evil.example.com/idp");
    claims["sub"] = json!("someone-else");
    let forged = idp.sign_rs256(&claims);
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(entry).expect("read the cache entry"))
        .expect("the cache entry is JSON");
    assert_eq!(doc["id_token"], first.token.as_str(), "entry layout changed");
    doc["id_token"] = json!(forged);
    write_keeping_mode(entry, &doc.to_string());

    let out = get_token(&client, idp.issuer());
    let cred = assert_accepted(&out, &idp);
    assert!(!out.stdout.contains(&forged), "the tampered token was served");
    assert_ne!(cred.token, first.token);
    assert_eq!(cred.claims["sub"], "stub-user-1");
    assert_eq!(
        idp.hits("authorize"),
        2,
        "the tampered entry is ignored and koidc logs in again"
    );
    assert_eq!(idp.issued_id_tokens().last(), Some(&cred.token));
    assert!(
        out.stderr.to_lowercase().contains("ignoring"),
        "koidc says it ignored the cached token: {:?}",
        out.stderr
    );
    // The new login replaced the tampered entry.
    let cached = std::fs::read_to_string(entry).expect("read the cache entry");
    assert!(!cached.contains(&forged), "the tampered token is still cached");
    assert!(cached.contains(&cred.token));
    assert_eq!(mode(entry), 0o600);
}

#[test]
fn a_cache_entry_marked_as_a_github_token_is_not_served_as_an_id_token() {
    let idp = StubIdp::start(Fault::Good);
    let client = StubClient::new();
    let first = assert_accepted(&get_token(&client, idp.issuer()), &idp);
    let entry = &client.entries()[0];
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(entry).expect("read the cache entry"))
        .expect("the cache entry is JSON");
    doc["kind"] = json!("github");
    doc["info"] = json!({"id": 1, "login": "gh"});
    write_keeping_mode(entry, &doc.to_string());

    let out = get_token(&client, idp.issuer());
    let cred = assert_accepted(&out, &idp);
    assert_ne!(cred.token, first.token, "the entry of another kind was served");
    assert_eq!(idp.hits("authorize"), 2, "koidc logs in again");
    assert!(out.stderr.contains("ignoring"), "{:?}", out.stderr);
}

#[test]
fn login_showing_a_cached_identity_replaces_escape_sequences_in_its_claims() {
    let idp = StubIdp::start(Fault::Good);
    let client = StubClient::new();
    let first = assert_accepted(&get_token(&client, idp.issuer()), &idp);
    let entry = &client.entries()[0];
    // The same identity, with claims an IdP's users can set: a retitle, a clear screen, a
    // right-to-left override.
    let mut claims = idp.good_claims(None);
    claims["email"] = json!("eve\u{1b}]0;PWNED\u{7}@example.com");
    claims["name"] = json!("Eve\u{1b}[2J\u{202e}esrever");
    let hostile = idp.sign_rs256(&claims);
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(entry).expect("read the cache entry"))
        .expect("the cache entry is JSON");
    assert_eq!(doc["id_token"], first.token.as_str(), "entry layout changed");
    doc["id_token"] = json!(hostile);
    write_keeping_mode(entry, &doc.to_string());

    let out = run(&mut client.command_with_cache("login", idp.issuer(), "file", &[]));
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("eve?]0;PWNED?@example.com"),
        "{:?}",
        out.stdout
    );
    for bad in ['\u{1b}', '\u{7}', '\u{202e}'] {
        assert!(
            !out.stdout.contains(bad),
            "{bad:?} reached the terminal: {:?}",
            out.stdout
        );
    }
}

/// Overwrites an existing file in place (its 0600 mode stays).
fn write_keeping_mode(path: &Path, text: &str) {
    let before = mode(path);
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    assert_eq!(mode(path), before);
}

// ---------------------------------------------------------------------------------------------
// Plain-http endpoints behind an https issuer

/// The stub serving https, and the path of its CA file (in `dir`).
fn https_idp(dir: &Path) -> (StubIdp, String) {
    let idp = StubIdp::start_with(
        Fault::Good,
        StubOptions {
            https: true,
            ..StubOptions::default()
        },
    );
    let ca = idp.ca_file(dir).display().to_string();
    (idp, ca)
}

#[test]
fn https_issuer_naming_a_plain_http_token_endpoint_is_refused_and_nothing_is_sent_to_it() {
    let control = StubClient::new();
    let (idp, ca) = https_idp(control.tmp.path());
    // Control: with https endpoints the login over TLS works.
    let out = run(control
        .command("get-token", &idp, &["--certificate-authority", &ca])
        .env("CURL_CA_BUNDLE", &ca));
    assert_accepted(&out, &idp);

    let trap = ConnectionTrap::start();
    let http_token = format!("http://{}/idp/token", trap.addr());
    idp.set_endpoint("token_endpoint", &http_token);
    let before = (idp.hits("authorize"), idp.hits("token"));
    let client = StubClient::new();
    let out = run(client
        .command("get-token", &idp, &["--certificate-authority", &ca])
        .env("CURL_CA_BUNDLE", &ca));
    let line = assert_rejected(
        &out,
        &client,
        Some(&idp),
        &["token_endpoint", &http_token, "https"],
    );
    assert!(
        !out.stderr.contains(BROWSER_NOTICE),
        "koidc must refuse before the browser opens: {line:?}"
    );
    assert_eq!(
        trap.connections(),
        0,
        "koidc connected to the http token endpoint"
    );
    assert_eq!(
        (idp.hits("authorize"), idp.hits("token")),
        before,
        "no login was started"
    );
}

#[test]
fn https_issuer_naming_a_plain_http_jwks_uri_is_refused_before_fetching_it() {
    let client = StubClient::new();
    let (idp, ca) = https_idp(client.tmp.path());
    let trap = ConnectionTrap::start();
    idp.set_endpoint("jwks_uri", &format!("http://{}/idp/keys", trap.addr()));
    let out = run(client
        .command("get-token", &idp, &["--certificate-authority", &ca])
        .env("CURL_CA_BUNDLE", &ca));
    assert_rejected(&out, &client, Some(&idp), &["jwks_uri", "https"]);
    assert_eq!(trap.connections(), 0, "koidc fetched the JWKS over http");
}

// ---------------------------------------------------------------------------------------------
// TLS mistakes named in the user's terms

#[test]
fn https_issuer_served_over_plain_http_says_the_server_answered_plain_http() {
    let client = StubClient::new();
    let idp = StubIdp::start(Fault::Good);
    let https_issuer = idp.issuer().replacen("http://", "https://", 1);
    let out = get_token(&client, &https_issuer);
    let line = assert_rejected(&out, &client, Some(&idp), &["plain HTTP", &https_issuer]);
    assert!(
        !line.contains("InvalidContentType") && !line.contains("corrupt message"),
        "the TLS library's words instead of the user's: {line:?}"
    );
}

#[test]
fn http_issuer_served_over_https_says_the_server_speaks_https() {
    // Real Dex serving HTTPS (Go answers plain HTTP on its TLS port with a 400 page).
    let idp = crate::kube::KubeIdp::start();
    let http_issuer = idp.issuer().replacen("https://", "http://", 1);
    let home = tempfile::tempdir().expect("a temporary HOME");
    let config = home.path().join("config");
    for command in ["login", "setup"] {
        let out = crate::kube::run_koidc(
            home.path(),
            &config,
            &[command, "--issuer", &http_issuer, "--client-id", "koidc"],
            &[],
        );
        assert!(!out.status.success(), "{command} exited 0: {out:?}");
        let line = out.assert_one_error_line();
        assert!(
            line.contains("speaks HTTPS")
                && line.contains(&format!("--issuer {}", idp.issuer()))
                && !line.contains("HTTP 400"),
            "{command}: {line}"
        );
    }
}

#[test]
fn https_issuer_with_a_private_ca_names_the_certificate_authority_flag() {
    let client = StubClient::new();
    let (idp, ca) = https_idp(client.tmp.path());
    // Without the CA: refused, and the message says which flag trusts it.
    let out = get_token(&client, idp.issuer());
    let line = assert_rejected(
        &out,
        &client,
        Some(&idp),
        &["--certificate-authority", "certificate"],
    );
    assert!(
        !line.contains("UnknownIssuer"),
        "the TLS library's words: {line:?}"
    );
    assert_eq!(idp.hits("token"), 0);
    // With it: the same issuer works (the verification was not weakened to get here).
    let out = run(client
        .command("get-token", &idp, &["--certificate-authority", &ca])
        .env("CURL_CA_BUNDLE", &ca));
    assert_accepted(&out, &idp);
}

// ---------------------------------------------------------------------------------------------
// Refresh continuity (OpenID Connect Core 12.2)

/// A stub whose ID tokens live 94 s: a few seconds after a login ([`wait_until_stale`]) they are
/// within koidc's 90 s margin, so the next call refreshes.
fn short_lived_idp() -> StubIdp {
    StubIdp::start_with(
        Fault::Good,
        StubOptions {
            id_token_lifetime: 94,
            ..StubOptions::default()
        },
    )
}

/// The cache entry of `client` (exactly one), as JSON.
#[track_caller]
fn entry_json(client: &StubClient) -> Value {
    let entries = client.entries();
    assert_eq!(entries.len(), 1, "one cache entry: {entries:?}");
    serde_json::from_str(&std::fs::read_to_string(&entries[0]).expect("read the cache entry"))
        .expect("the cache entry is JSON")
}

/// The `sub` of the ID token cached for `client`.
#[track_caller]
fn cached_sub(client: &StubClient) -> String {
    let doc = entry_json(client);
    let token = doc["id_token"].as_str().expect("a cached ID token");
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .expect("base64url payload"),
    )
    .expect("JSON payload");
    claims["sub"].as_str().expect("a sub claim").to_owned()
}

#[test]
fn refresh_answering_another_subject_is_refused_and_a_login_keeps_the_cached_identity() {
    let idp = short_lived_idp();
    let client = StubClient::new();
    let first = assert_accepted(&get_token(&client, idp.issuer()), &idp);
    assert_eq!(first.claims["sub"], SUB);
    wait_until_stale(first.exp());

    idp.set_refresh_sub(Some("mallory"));
    let out = get_token(&client, idp.issuer());
    let cred = assert_accepted(&out, &idp);
    assert_eq!(idp.refresh_requests().len(), 1, "koidc tried a refresh");
    assert_eq!(
        cred.claims["sub"], SUB,
        "the refresh answered for mallory and was served: {:?}",
        out.stderr
    );
    assert_eq!(
        idp.hits("authorize"),
        2,
        "a full login followed the refused refresh"
    );
    assert_eq!(cached_sub(&client), SUB, "the cache holds another identity");
    let warning = out
        .stderr_lines()
        .into_iter()
        .find(|l| l.contains("mallory"))
        .unwrap_or_else(|| panic!("koidc must say why it refused the refresh: {:?}", out.stderr))
        .to_owned();
    assert!(
        warning.starts_with("koidc: warning: ") && warning.contains(SUB) && warning.contains("sub"),
        "{warning:?}"
    );
}

#[test]
fn refresh_whose_jwks_fetch_fails_keeps_the_rotated_refresh_token_for_the_next_call() {
    let idp = short_lived_idp();
    let client = StubClient::new();
    let first = assert_accepted(&get_token(&client, idp.issuer()), &idp);
    let first_rt = idp.issued_refresh_tokens()[0].clone();
    wait_until_stale(first.exp());

    // The refresh answers with a token naming a key koidc has not seen, and the JWKS endpoint
    // fails after discovery's fetch: the new ID token cannot be checked now.
    idp.set_refresh_kid(Some("k2"));
    idp.fail_keys_after(Some(1));
    let out = get_token(&client, idp.issuer());
    out.assert_failure();
    assert!(out.stdout.is_empty(), "no credential without a verified ID token");
    assert_eq!(idp.refresh_requests(), std::slice::from_ref(&first_rt));
    let rotated = idp.issued_refresh_tokens()[1].clone();
    let doc = entry_json(&client);
    assert_eq!(
        doc["refresh_token"].as_str(),
        Some(rotated.as_str()),
        "the rotated refresh token must replace the one the provider rotated away: {:?}",
        out.stderr
    );
    assert!(
        !out.stderr.contains(&rotated) && crate::support::find_jwt(&out.stderr).is_none(),
        "a token leaked on stderr"
    );

    // Once the keys can be fetched, the next call refreshes with the rotated token: no login,
    // and the rotated-away token is never presented again.
    idp.set_refresh_kid(None);
    idp.fail_keys_after(None);
    let out = get_token(&client, idp.issuer());
    let cred = assert_accepted(&out, &idp);
    assert_eq!(cred.claims["sub"], SUB);
    assert_eq!(idp.refresh_requests(), [first_rt, rotated]);
    assert_eq!(idp.hits("authorize"), 1, "no new login was needed");
}

// ---------------------------------------------------------------------------------------------
// Who logged in

#[test]
fn login_says_who_logged_in_and_warns_when_the_subject_differs_from_the_expired_cached_one() {
    let idp = StubIdp::start(Fault::Good);
    let client = StubClient::new();
    let out = get_token(&client, idp.issuer());
    assert_accepted(&out, &idp);
    let said = format!("koidc: logged in as {EMAIL} at {}", idp.issuer());
    assert!(out.stderr_lines().contains(&said.as_str()), "{:?}", out.stderr);

    // The cached token expires and cannot be refreshed; the next login is someone else's.
    let entry = client.entries()[0].clone();
    let mut doc = entry_json(&client);
    let mut claims = idp.good_claims(None);
    claims["exp"] = json!(chrono::Utc::now().timestamp() - 600);
    claims["iat"] = json!(chrono::Utc::now().timestamp() - 4200);
    doc["id_token"] = json!(idp.sign_rs256(&claims));
    doc.as_object_mut().expect("entry object").remove("refresh_token");
    write_keeping_mode(&entry, &doc.to_string());
    idp.set_login_sub(Some("mallory"));

    let out = get_token(&client, idp.issuer());
    let cred = assert_accepted(&out, &idp);
    assert_eq!(cred.claims["sub"], "mallory");
    let lines = out.stderr_lines();
    assert!(
        lines.contains(&format!("koidc: logged in as mallory@example.com at {}", idp.issuer()).as_str()),
        "{:?}",
        out.stderr
    );
    let warning = lines
        .iter()
        .find(|l| l.starts_with("koidc: warning: "))
        .unwrap_or_else(|| panic!("no warning about the other subject: {:?}", out.stderr));
    assert!(
        warning.contains("mallory") && warning.contains(SUB),
        "the warning names both identities: {warning:?}"
    );

    // The same identity logging in again is not warned about.
    let out = run(&mut client.command("login", &idp, &["--force"]));
    out.assert_success();
    assert!(
        !out.stderr.contains("warning"),
        "no warning for the same subject: {:?}",
        out.stderr
    );
}
