//! The life of one login against Dex: browser login, warm cache hit with no IdP traffic,
//! refresh of a token that is inside the expiry margin, logout, and the identity (with groups)
//! of a password-DB user. And what a login does when it cannot go ahead: a client id Dex does
//! not know (refused before any browser opens, not after the timeout) and a browser command that
//! fails (said in one line, the URL printed once, the login still completed from it).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::browser::{BrowserLog, fake_browser};
use crate::dex::{MOCK_EMAIL, USER_EMAIL, USER_GROUPS, USER_PASSWORD};
use crate::lab::{Lab, LabOptions};
use crate::support::{
    Live, RUN_TIMEOUT, Stdout, V1BETA1, clean_command, files_containing, files_under, find_key, mode, run,
    wait_until_stale,
};

#[test]
fn dex_login_then_cache_hit_then_refresh_then_logout() {
    // 95 s ID tokens: with koidc's 90 s margin a fresh token is "stale" 5 s after issue.
    let mut lab = Lab::start(LabOptions::id_tokens("95s"));
    lab.flags.extend(["--scope", "email"].map(String::from));

    // 1. Empty cache: one browser login, one authorization_code grant.
    let (_, first) = lab.get_token();
    assert_eq!(
        lab.browser.launches(),
        1,
        "one browser launch for the first login"
    );
    assert_eq!(
        lab.proxy.grants_since(0),
        ["authorization_code"],
        "one code exchange"
    );
    assert_eq!(
        first.api_version, V1BETA1,
        "v1beta1 when KUBERNETES_EXEC_INFO is absent"
    );
    assert_eq!(
        first.claims["email"], MOCK_EMAIL,
        "the mock connector's user logged in"
    );
    assert_eq!(mode(&lab.cache_dir), 0o700, "cache directory mode");
    let cache_files = files_containing(&lab.cache_dir, &first.token);
    assert!(
        !cache_files.is_empty(),
        "no file in the cache dir holds the ID token"
    );
    for file in files_under(&lab.cache_dir) {
        assert_eq!(mode(&file), 0o600, "mode of {}", file.display());
    }

    // 2. Warm hit: same token, Dex sees nothing, no browser, nothing on stderr.
    let mark = lab.proxy.mark();
    let (hit, second) = lab.get_token();
    assert_eq!(second.token, first.token, "cache hit returns the cached token");
    assert_eq!(lab.proxy.since(mark), [], "a cache hit makes no request to Dex");
    assert_eq!(lab.browser.launches(), 1);
    assert_eq!(hit.stderr, "", "a cache hit prints nothing on stderr");

    // 3. Inside the margin: exactly one refresh_token grant, no browser.
    wait_until_stale(first.exp());
    let mark = lab.proxy.mark();
    let (_, third) = lab.get_token();
    assert_eq!(
        lab.proxy.grants_since(mark),
        ["refresh_token"],
        "exactly one refresh"
    );
    assert!(
        !lab.proxy.since(mark).iter().any(|s| s.path.ends_with("/auth")),
        "a refresh must not go through the authorization endpoint"
    );
    assert_eq!(lab.browser.launches(), 1, "refresh opens no browser");
    assert_ne!(third.token, first.token, "refresh yields a new ID token");
    assert!(third.exp() > first.exp(), "the refreshed token expires later");

    // 4. Logout removes the cached tokens.
    let logout = lab.koidc("logout", &[]);
    logout.assert_success();
    lab.assert_no_leak(&logout, Stdout::NoSecrets);
    for token in [&first.token, &third.token] {
        let left = files_containing(&lab.cache_dir, token);
        assert!(left.is_empty(), "token still cached after logout in {left:?}");
    }
    for file in &cache_files {
        assert!(!file.exists(), "cache file {} survived logout", file.display());
    }

    // 5. whoami now fails clearly, offline, without starting a login.
    let mark = lab.proxy.mark();
    let whoami = lab.koidc("whoami", &[]);
    whoami.assert_failure();
    lab.assert_no_leak(&whoami, Stdout::NoSecrets);
    let line = whoami.assert_one_error_line().to_lowercase();
    assert!(
        ["login", "log in", "logged in"].iter().any(|w| line.contains(w)),
        "whoami after logout should tell the user to log in: {line:?}"
    );
    assert_eq!(lab.proxy.since(mark), [], "whoami must not contact Dex");
    assert_eq!(lab.browser.launches(), 1, "whoami must not open a browser");
}

#[test]
fn password_connector_login_has_groups() {
    let mut lab = Lab::start(LabOptions::default());
    lab.env.push(("FAKE_BROWSER_LOGIN".into(), USER_EMAIL.into()));
    lab.env
        .push(("FAKE_BROWSER_PASSWORD".into(), USER_PASSWORD.into()));
    lab.flags
        .extend(["--scope", "groups", "--scope", "email"].map(String::from));

    let login = lab.koidc("login", &[]);
    login.assert_success();
    lab.assert_no_leak(&login, Stdout::NoSecrets);
    assert_eq!(lab.browser.launches(), 1);
    assert_eq!(lab.proxy.grants_since(0), ["authorization_code"]);
    for shown in [USER_EMAIL, USER_GROUPS[0], USER_GROUPS[1]] {
        assert!(
            login.stdout.contains(shown),
            "login should show {shown:?}: {:?}",
            login.stdout
        );
    }

    let mark = lab.proxy.mark();
    let whoami = lab.koidc("whoami", &["-o", "json"]);
    whoami.assert_success();
    lab.assert_no_leak(&whoami, Stdout::NoSecrets);
    let identity: Value = serde_json::from_str(&whoami.stdout)
        .unwrap_or_else(|e| panic!("whoami -o json is not JSON ({e}): {:?}", whoami.stdout));
    assert_eq!(
        find_key(&identity, "groups"),
        Some(&json!(USER_GROUPS)),
        "groups in {identity}"
    );
    assert_eq!(
        find_key(&identity, "email"),
        Some(&json!(USER_EMAIL)),
        "email in {identity}"
    );
    assert_eq!(
        lab.proxy.since(mark),
        [],
        "whoami on a fresh token needs no request to Dex"
    );
    assert_eq!(lab.browser.launches(), 1);
}

/// A login timeout far longer than any preflight: a client id the IdP refuses must fail long
/// before it (the bound below is generous on purpose: a loaded machine may be slow, but waiting
/// for the callback would take the whole timeout).
const LONG_TIMEOUT: &str = "100";
/// Far below [`LONG_TIMEOUT`], far above what discovery and one refused request take even on a
/// loaded machine.
const FAIL_FAST: Duration = Duration::from_secs(60);

#[test]
fn unknown_client_id_fails_at_once_with_the_idps_reason_instead_of_waiting_for_the_callback() {
    let lab = Lab::start(LabOptions::default());
    let started = Instant::now();
    let out = run(&mut lab.command_overriding(
        "get-token",
        &["--client-id", "no-such-client", "--timeout", LONG_TIMEOUT],
    ));
    let took = started.elapsed();
    let line = out.assert_failure().assert_one_error_line();
    assert!(
        took < FAIL_FAST,
        "koidc took {took:?}: it waited for the callback instead of failing at once"
    );
    assert!(
        line.contains("Invalid client_id") && line.contains("\"no-such-client\""),
        "the error should give Dex's reason and the client id: {line:?}"
    );
    assert!(
        line.contains("(HTTP 404 Not Found: Invalid client_id.)"),
        "Dex's status and reason should read apart: {line:?}"
    );
    assert!(
        line.contains("--client-id"),
        "the error should say what to check: {line:?}"
    );
    assert!(!out.stderr.contains("opened a browser"), "{:?}", out.stderr);
    assert_eq!(lab.browser.launches(), 0, "no browser for a refused client");
    assert_eq!(lab.proxy.grants_since(0), Vec::<String>::new());
}

#[test]
fn failing_browser_command_is_reported_in_one_line_and_the_login_completes_from_the_printed_url() {
    let lab = Lab::start(LabOptions::default());
    let mut koidc = Live::spawn(&mut lab.command_overriding("get-token", &["--browser-command", "false"]));
    let line = koidc.wait_for_line("http://", Duration::from_secs(60));
    let url = line[line.find("http://").expect("a URL")..].trim().to_string();
    assert!(
        url.starts_with(&format!("{}/auth?", lab.issuer())),
        "not Dex's authorization endpoint: {url}"
    );
    assert!(koidc.running(), "koidc must keep waiting for the login");

    // The person at the terminal opens the printed URL.
    let by_hand = lab.tmp.path().join("by-hand");
    std::fs::create_dir_all(&by_hand).expect("create by-hand dir");
    let own_log = BrowserLog::new(&by_hand);
    run(clean_command(fake_browser(), &lab.home)
        .arg(&url)
        .env("FAKE_BROWSER_LOG", &own_log.path))
    .assert_success();

    let (out, _) = koidc.finish(RUN_TIMEOUT);
    lab.assert_ok_get_token(&out);
    assert_eq!(lab.proxy.grants_since(0), ["authorization_code"]);
    assert!(
        !out.stderr.contains("opened a browser"),
        "koidc claimed a browser opened: {:?}",
        out.stderr
    );
    let failed: Vec<&str> = out
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("could not open a browser"))
        .collect();
    assert_eq!(failed.len(), 1, "one line says so: {:?}", out.stderr);
    assert!(
        failed[0].contains("`false`") && failed[0].len() < 200 && !failed[0].contains('{'),
        "a short line naming the command, without debug text: {:?}",
        failed[0]
    );
    assert_eq!(
        out.stderr.matches(&url).count(),
        1,
        "the URL is printed once: {:?}",
        out.stderr
    );
}

#[test]
fn dex_login_with_pkce_false_warns_sends_no_challenge_and_carries_the_auth_params() {
    let lab = Lab::start(LabOptions::id_tokens("1h"));
    let out = lab.koidc(
        "get-token",
        &["--pkce=false", "--auth-param", "acr_values=urn:koidc:test"],
    );
    let (out, _) = lab.assert_ok_get_token(&out);
    assert!(
        out.stderr.contains("--pkce=false") && out.stderr.contains("refuses PKCE"),
        "{}",
        out.stderr
    );
    // The authorization URL koidc printed beside opening the browser.
    let url = out
        .stderr
        .split_whitespace()
        .find(|w| w.contains("/auth?"))
        .unwrap_or_else(|| panic!("no authorization URL on stderr: {}", out.stderr));
    assert!(!url.contains("code_challenge"), "{url}");
    assert!(url.contains("acr_values=urn%3Akoidc%3Atest"), "{url}");
    assert_eq!(lab.proxy.grants_since(0), ["authorization_code"]);
}
