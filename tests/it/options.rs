//! koidc's login and cache options end to end, with the real binary: `logout` (RFC 7009 revocation
//! where the IdP offers it, `--all`), `--no-browser`, `--timeout`, `--cache none`, `-v` (which must
//! still print no secret), the fallback from a rejected refresh token to a browser login, big ID
//! tokens in the keyring cache, and `--listen` (a list of fixed ports; loopback only).
//!
//! Tests that need an IdP Dex cannot imitate (a revocation endpoint, padded ID tokens, a record of
//! the `redirect_uri`) run against the stub IdP ([`crate::stub_idp`]) with `curl -L` as the
//! browser; the others run against Dex through the counting proxy ([`crate::lab`]).

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::browser::{BrowserLog, fake_browser};
use crate::dex::CLIENT_ID as DEX_CLIENT_ID;
use crate::keyring::{SecretService, SessionKeyring};
use crate::lab::{Lab, LabOptions};
use crate::stub_idp::{CLIENT_ID, Fault, Revocation, StubClient, StubIdp, StubOptions};
use crate::support::{
    ExecCredential, Live, Output, RUN_TIMEOUT, Secrets, Stdout, assert_no_leak, clean_command, entry_files,
    files_containing, files_under, koidc_bin, parse_exec_credential, run, wait_until_stale,
};

/// The prefix of koidc's `-v` lines.
const DEBUG_PREFIX: &str = "koidc: debug: ";

/// Everything secret the stub handed out, for the leak checks.
fn stub_secrets(idp: &StubIdp) -> Secrets {
    Secrets {
        id_tokens: idp.issued_id_tokens().into_iter().collect(),
        other: idp.issued_refresh_tokens().into_iter().collect(),
    }
}

/// Checks a successful `get-token` against the stub: exit 0, no leak, an ExecCredential whose
/// token is the last one the stub issued.
#[track_caller]
fn assert_stub_get_token(out: &Output, idp: &StubIdp) -> ExecCredential {
    out.assert_success();
    assert_no_leak(out, &stub_secrets(idp), Stdout::MayHoldIdToken);
    let cred = parse_exec_credential(out);
    assert_eq!(cred.claims["iss"], idp.issuer(), "token from another issuer");
    assert_eq!(cred.claims["aud"], CLIENT_ID, "token for another audience");
    assert!(
        idp.issued_id_tokens().contains(&cred.token),
        "{}: the token is not one the stub issued",
        out.what
    );
    cred
}

/// The one line `koidc logout` prints per forgotten identity.
fn logged_out_line(issuer: &str, client_id: &str) -> String {
    format!("logged out of {issuer} (client {client_id})")
}

/// A `koidc` command for the lab's Dex with `--cache-dir DIR` instead of the lab's cache dir.
fn lab_command_in(lab: &Lab, sub: &str, dir: &Path, extra: &[&str]) -> Command {
    let mut args = lab.args(sub);
    let at = args
        .iter()
        .position(|a| a == "--cache-dir")
        .expect("the lab passes --cache-dir");
    args[at + 1] = dir.display().to_string();
    let mut cmd = clean_command(koidc_bin(), &lab.home);
    cmd.args(args).args(extra).envs(lab.run_env());
    cmd
}

/// A well-behaved stub IdP with a revocation endpoint.
fn revoking_idp() -> StubIdp {
    StubIdp::start_with(
        Fault::Good,
        StubOptions {
            revocation: true,
            ..StubOptions::default()
        },
    )
}

/// A loopback port nothing listens on (bound, then freed).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("free port address").port()
}

// ---------------------------------------------------------------------------------------------
// 1. logout

#[test]
fn logout_revokes_refresh_token_at_revocation_endpoint() {
    let idp = revoking_idp();
    let client = StubClient::new();
    let cred = assert_stub_get_token(&run(&mut client.command("get-token", &idp, &[])), &idp);
    let refresh_tokens = idp.issued_refresh_tokens();
    assert_eq!(refresh_tokens.len(), 1, "one login, one refresh token");
    assert_eq!(client.entries().len(), 1, "the login wrote one cache entry");
    assert_eq!(idp.revocations(), [], "nothing revoked before logout");

    let logout = run(&mut client.command("logout", &idp, &[]));
    logout.assert_success();
    assert_eq!(
        idp.revocations(),
        [Revocation {
            token: Some(refresh_tokens[0].clone()),
            token_type_hint: Some("refresh_token".into()),
            client_id: Some(CLIENT_ID.into()),
        }],
        "exactly one revocation request, for the refresh token the stub issued"
    );
    assert_eq!(idp.hits("revoke"), 1, "one POST to the revocation endpoint");
    assert_eq!(idp.hits("token"), 1, "logout must not redeem or refresh anything");
    assert_eq!(client.entries(), Vec::<PathBuf>::new(), "the cache entry is gone");
    assert_eq!(
        files_containing(&client.cache_dir(), &cred.token),
        Vec::<PathBuf>::new(),
        "the ID token is still on disk"
    );
    assert_eq!(
        logout.stdout.trim_end(),
        logged_out_line(idp.issuer(), CLIENT_ID),
        "logout says what it logged out of"
    );
    assert_no_leak(&logout, &stub_secrets(&idp), Stdout::NoSecrets);
    assert_eq!(logout.stderr, "", "a successful revocation needs no message");
}

#[test]
fn logout_without_revocation_endpoint_still_forgets() {
    let lab = Lab::start(LabOptions::default());
    let (_, cred) = lab.get_token();
    assert_eq!(
        entry_files(&lab.cache_dir).len(),
        1,
        "the login wrote one cache entry"
    );

    let mark = lab.proxy.mark();
    let logout = lab.koidc("logout", &[]);
    assert_eq!(
        logout.status.code(),
        Some(0),
        "logout must succeed without a revocation endpoint: {:?}",
        logout.stderr
    );
    lab.assert_no_leak(&logout, Stdout::NoSecrets);
    assert_eq!(
        logout.stdout.trim_end(),
        format!(
            "logged out of {} (client {DEX_CLIENT_ID}, scopes email groups offline_access)",
            lab.issuer()
        )
    );
    assert_eq!(
        logout.stderr_lines(),
        [format!(
            "koidc: {} (client {DEX_CLIENT_ID}, scopes email groups offline_access): not revoked: \
             the issuer offers no revocation endpoint (the refresh token stays valid at the issuer \
             until it expires)",
            lab.issuer()
        )],
        "logout says the refresh token was not revoked"
    );
    assert_eq!(
        entry_files(&lab.cache_dir),
        Vec::<PathBuf>::new(),
        "the cache entry is gone"
    );
    assert_eq!(
        files_containing(&lab.cache_dir, &cred.token),
        Vec::<PathBuf>::new()
    );
    assert_eq!(
        lab.proxy.non_gets_since(mark),
        [],
        "Dex offers no revocation: logout must POST nothing"
    );
}

#[test]
fn logout_all_forgets_and_revokes_every_identity() {
    let idp = revoking_idp();
    let client = StubClient::new();
    // Two identities: same issuer and client, different scope sets.
    assert_stub_get_token(&run(&mut client.command("get-token", &idp, &[])), &idp);
    assert_stub_get_token(
        &run(&mut client.command("get-token", &idp, &["--scope", "email"])),
        &idp,
    );
    assert_eq!(client.entries().len(), 2, "two identities, two cache entries");
    let mut issued = idp.issued_refresh_tokens();
    assert_eq!(issued.len(), 2);

    let cache_dir = client.cache_dir().display().to_string();
    let logout = run(&mut client.koidc(&["logout", "--all", "--cache", "file", "--cache-dir", &cache_dir]));
    logout.assert_success();
    assert_no_leak(&logout, &stub_secrets(&idp), Stdout::NoSecrets);
    assert_eq!(client.entries(), Vec::<PathBuf>::new(), "both entries are gone");
    let mut revoked: Vec<String> = idp
        .revocations()
        .into_iter()
        .map(|r| {
            assert_eq!(r.token_type_hint.as_deref(), Some("refresh_token"));
            r.token.expect("a revocation request names the token")
        })
        .collect();
    revoked.sort();
    issued.sort();
    assert_eq!(revoked, issued, "each identity's refresh token revoked once");
    // One line per forgotten identity, told apart by its scopes, and how many.
    let line = logged_out_line(idp.issuer(), CLIENT_ID);
    let with_email = format!(
        "logged out of {} (client {CLIENT_ID}, scopes email)",
        idp.issuer()
    );
    assert_eq!(
        logout.stdout.lines().collect::<Vec<_>>(),
        [line.as_str(), with_email.as_str(), "2 cached entries removed"],
        "one line per forgotten identity"
    );
    // And on stderr, one line per identity saying how its token was revoked.
    let how = |scopes: &str| {
        format!(
            "koidc: {} (client {CLIENT_ID}{scopes}): revoked the token as a public client (no client \
             secret given)",
            idp.issuer()
        )
    };
    assert_eq!(
        logout.stderr.lines().collect::<Vec<_>>(),
        [how(""), how(", scopes email")]
    );
}

// ---------------------------------------------------------------------------------------------
// 2.-4. --no-browser, --timeout, --cache none

#[test]
fn no_browser_prints_url_and_waits() {
    let lab = Lab::start(LabOptions::default());
    // The lab also passes --browser-command (the fake browser): --no-browser must win.
    let mut koidc = Live::spawn(&mut lab.command("get-token", &["--no-browser"]));
    let line = koidc.wait_for_line("open this URL", Duration::from_secs(60));
    assert!(
        line.starts_with("koidc: "),
        "the URL notice is a koidc message: {line:?}"
    );
    let url = line
        .find("http://")
        .map(|at| line[at..].trim().to_string())
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    assert!(
        url.starts_with(&format!("{}/auth?", lab.issuer())),
        "not Dex's authorization endpoint: {url}"
    );
    assert!(koidc.running(), "koidc must wait for the login, not exit");
    assert_eq!(lab.browser.launches(), 0, "--no-browser launched a browser");
    assert_eq!(lab.proxy.grants_since(0), Vec::<String>::new());

    // The person at the terminal opens the URL: the fake browser, with its own launch log.
    let own_log = BrowserLog::new(&lab.tmp.path().join("by-hand"));
    std::fs::create_dir_all(lab.tmp.path().join("by-hand")).expect("create by-hand dir");
    let browser = run(clean_command(fake_browser(), &lab.home)
        .arg(&url)
        .env("FAKE_BROWSER_LOG", &own_log.path));
    browser.assert_success();
    assert_eq!(own_log.launches(), 1);

    let (out, _) = koidc.finish(RUN_TIMEOUT);
    let (_, cred) = lab.assert_ok_get_token(&out);
    assert_eq!(
        lab.proxy.grants_since(0),
        ["authorization_code"],
        "the code from the hand-opened URL was redeemed"
    );
    assert_eq!(
        lab.browser.launches(),
        0,
        "koidc itself never ran the browser command"
    );
    assert_eq!(
        files_containing(&lab.cache_dir, &cred.token).len(),
        1,
        "the token was cached"
    );
}

#[test]
fn login_timeout_ends_with_clear_error() {
    let idp = StubIdp::start(Fault::Good);
    let client = StubClient::new();
    let started = Instant::now();
    let out = run(&mut client.command("get-token", &idp, &["--no-browser", "--timeout", "2"]));
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a login timeout fails with exit code 1: {:?}",
        out.stderr
    );
    // At the 2 s timeout, not before; the upper bound tells it from the 180 s default with
    // room for a loaded machine (start-up, discovery and the stub share two cores).
    assert!(
        took >= Duration::from_secs(2) && took <= Duration::from_secs(30),
        "koidc gave up after {took:?}, not after about 2 s"
    );
    assert_eq!(out.stdout, "", "nothing on stdout");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 2, "the URL notice, then the error: {:?}", out.stderr);
    assert!(lines[0].starts_with("koidc: ") && lines[0].contains("open this URL"));
    let last = lines[1];
    assert!(last.starts_with("koidc: "), "error line: {last:?}");
    assert!(
        last.contains("within 2s") && last.contains("koidc login"),
        "the error should name the timeout and the way out: {last:?}"
    );
    assert_eq!(idp.hits("authorize"), 0, "nobody opened the URL");
    assert_eq!(idp.hits("token"), 0);
    assert_eq!(client.entries(), Vec::<PathBuf>::new());
}

#[test]
fn cache_none_logs_in_every_time() {
    let lab = Lab::start(LabOptions {
        cache: Some("none"),
        ..LabOptions::default()
    });
    let (_, first) = lab.get_token();
    let (_, second) = lab.get_token();
    assert_eq!(lab.browser.launches(), 2, "each call logs in through the browser");
    assert_eq!(
        lab.proxy.grants_since(0),
        ["authorization_code", "authorization_code"]
    );
    assert_ne!(first.token, second.token, "two logins, two ID tokens");
    assert_eq!(
        files_under(&lab.cache_dir),
        Vec::<PathBuf>::new(),
        "--cache none must write nothing in the cache dir"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. -v

#[test]
fn verbose_flow_leaks_no_secret() {
    // 95 s ID tokens: stale 5 s after issue (koidc's margin is 90 s), so step 3 refreshes.
    let mut lab = Lab::start(LabOptions::id_tokens("95s"));
    lab.flags.push("-v".into());

    let (login, first) = lab.get_token();
    assert_eq!(lab.browser.launches(), 1);
    assert_eq!(lab.proxy.grants_since(0), ["authorization_code"]);

    let mark = lab.proxy.mark();
    let (hit, cached) = lab.get_token();
    assert_eq!(cached.token, first.token, "second call is a cache hit");
    assert_eq!(lab.proxy.since(mark), [], "a cache hit makes no request");

    wait_until_stale(first.exp());
    let mark = lab.proxy.mark();
    let (refresh, refreshed) = lab.get_token();
    assert_eq!(lab.proxy.grants_since(mark), ["refresh_token"]);
    assert_ne!(refreshed.token, first.token);
    assert_eq!(lab.browser.launches(), 1);

    let logout = lab.koidc("logout", &[]);
    logout.assert_success();
    assert_eq!(entry_files(&lab.cache_dir), Vec::<PathBuf>::new());

    // Checked against every secret the proxy saw by the end (codes, verifiers, both refresh
    // tokens, both ID tokens), so a secret printed before it was superseded counts too.
    let secrets = lab.proxy.secrets();
    assert!(
        secrets.other.len() >= 4,
        "the proxy should have recorded a code, a verifier and refresh tokens: {} secrets",
        secrets.other.len()
    );
    for (out, stdout) in [
        (&login, Stdout::MayHoldIdToken),
        (&hit, Stdout::MayHoldIdToken),
        (&refresh, Stdout::MayHoldIdToken),
        (&logout, Stdout::NoSecrets),
    ] {
        assert_no_leak(out, &secrets, stdout);
        assert!(
            out.stderr.lines().any(|l| l.starts_with(DEBUG_PREFIX)),
            "{}: -v printed no debug line: {:?}",
            out.what,
            out.stderr
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 6. refresh rejected

#[test]
fn refresh_rejected_falls_back_to_browser_login() {
    let lab = Lab::start(LabOptions::id_tokens("95s"));
    let dir_a = lab.cache_dir.clone();
    let dir_b = lab.tmp.path().join("cache-b");

    let (_, a) = lab.get_token();
    // Same user, same client, another cache: Dex rotates A's refresh token away.
    let out_b = run(&mut lab_command_in(&lab, "get-token", &dir_b, &[]));
    let (_, b) = lab.assert_ok_get_token(&out_b);
    assert_ne!(a.token, b.token);
    assert_eq!(lab.browser.launches(), 2, "two browser logins (A, then B)");
    assert_eq!(
        lab.proxy.grants_since(0),
        ["authorization_code", "authorization_code"]
    );

    wait_until_stale(a.exp());
    let mark = lab.proxy.mark();
    let out = run(&mut lab_command_in(&lab, "get-token", &dir_a, &[]));
    let (_, renewed) = lab.assert_ok_get_token(&out);
    assert_eq!(
        lab.proxy.grants_since(mark),
        ["refresh_token", "authorization_code"],
        "one (rejected) refresh, then a browser login"
    );
    assert_eq!(lab.browser.launches(), 3, "A fell back to one browser login");
    assert_ne!(renewed.token, a.token);
    assert!(renewed.exp() > a.exp());
    assert!(
        out.stderr.contains("the refresh token was not accepted"),
        "stderr should say why a browser opened: {:?}",
        out.stderr
    );
    assert_eq!(
        files_containing(&dir_a, &renewed.token).len(),
        1,
        "A's cache holds the new token"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. big tokens and the keyring cache

#[test]
fn large_token_works_with_keyring_cache() {
    const PADDING: usize = 100 * 1024;
    let idp = StubIdp::start_with(
        Fault::Good,
        StubOptions {
            id_token_padding: PADDING,
            ..StubOptions::default()
        },
    );
    let client = StubClient::new();
    let session = SessionKeyring::new();
    let secret_service = SecretService::start(client.tmp.path(), &client.home());
    let get_token = || -> Output {
        let mut cmd = client.command_with_cache("get-token", idp.issuer(), "keyring", &[]);
        cmd.env("DBUS_SESSION_BUS_ADDRESS", &secret_service.address);
        session.join(&mut cmd);
        run(&mut cmd)
    };

    let login_out = get_token();
    let login = assert_stub_get_token(&login_out, &idp);
    assert!(
        login.token.len() > PADDING,
        "the ID token is {} bytes, expected over {PADDING}",
        login.token.len()
    );
    assert!(
        !login_out.stderr.contains("warning"),
        "no keyring fallback expected: {:?}",
        login_out.stderr
    );
    assert!(
        session.show().contains("koidc:master:"),
        "the encryption key is in the session keyring"
    );
    let entries = client.entries();
    assert_eq!(entries.len(), 1, "one entry: {entries:?}");
    let enc = &entries[0];
    assert!(
        enc.extension().is_some_and(|e| e == "enc"),
        "the keyring cache writes an encrypted .enc entry, not {}",
        enc.display()
    );
    let size = std::fs::metadata(enc).expect("stat the entry").len();
    assert!(
        size > PADDING as u64,
        "the .enc entry ({size} bytes) cannot hold the whole token"
    );
    let signature = login.token.rsplit('.').next().expect("JWT signature");
    assert_eq!(
        files_containing(&client.cache_dir(), signature),
        Vec::<PathBuf>::new(),
        "the token is stored in plaintext"
    );

    let hit_out = get_token();
    let hit = assert_stub_get_token(&hit_out, &idp);
    assert_eq!(hit.token, login.token, "the cache hit returns the same token");
    assert_eq!(idp.hits("authorize"), 1, "no second login");
    assert_eq!(idp.hits("token"), 1, "no second token request");
    assert_eq!(hit_out.stderr, "", "a cache hit prints nothing");
    assert_eq!(
        client.entries(),
        std::slice::from_ref(enc),
        "still the one .enc entry"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. --listen

#[test]
fn listen_fixed_port_list_falls_back_to_next() {
    let occupied = TcpListener::bind("127.0.0.1:0").expect("occupy a port");
    occupied.set_nonblocking(true).expect("non-blocking listener");
    let p1 = occupied.local_addr().expect("occupied address").port();
    let p2 = loop {
        let p = free_port();
        if p != p1 {
            break p;
        }
    };
    let idp = StubIdp::start(Fault::Good);
    let client = StubClient::new();
    let listen = format!("127.0.0.1:{p1},127.0.0.1:{p2}");
    let out = run(&mut client.command("get-token", &idp, &["--listen", &listen]));
    assert_stub_get_token(&out, &idp);
    assert_eq!(
        idp.redirect_uris(),
        [format!("http://127.0.0.1:{p2}/callback")],
        "koidc should have skipped the busy port {p1} and listened on {p2}"
    );
    match occupied.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the occupied port was contacted: {other:?}"),
    }
}

#[test]
fn listen_rejects_non_loopback() {
    let idp = StubIdp::start(Fault::Good);
    let client = StubClient::new();
    let out = run(&mut client.command("get-token", &idp, &["--listen", "0.0.0.0:8000"]));
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "expected exit code 1 or 2, got {}: {:?}",
        out.status,
        out.stderr
    );
    let line = out.assert_one_error_line();
    assert!(
        line.contains("0.0.0.0:8000") && line.contains("loopback"),
        "the error should name the address and the loopback rule: {line:?}"
    );
    // The flags are checked before any network activity: no discovery, no login, no listener.
    for endpoint in ["discovery", "authorize", "token"] {
        assert_eq!(idp.hits(endpoint), 0, "the stub's {endpoint} was contacted");
    }
    assert_eq!(client.entries(), Vec::<PathBuf>::new());
}

#[test]
fn listen_on_127_0_0_2_is_not_refused_as_an_unexpected_host_and_the_login_completes() {
    let idp = StubIdp::start(Fault::Good);
    let client = StubClient::new();
    let out = run(&mut client.command("get-token", &idp, &["--listen", "127.0.0.2:0", "--timeout", "10"]));
    assert_stub_get_token(&out, &idp);
    let uris = idp.redirect_uris();
    assert_eq!(uris.len(), 1, "one authorization request: {uris:?}");
    assert!(
        uris[0].starts_with("http://127.0.0.2:") && uris[0].ends_with("/callback"),
        "the redirect URI names the bound address: {uris:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 9. Secrets hygiene

const SECRET_FLAG_VALUE: &str = "koidc-test-secret-from-KOIDC_CLIENT_SECRET-7f3a";
const SECRET_PROFILE_VALUE: &str = "koidc-test-secret-from-the-profile-variable-9c1e";

/// A profile for the stub IdP whose secret is in `PROFILE_SECRET_VAR`, in `KOIDC_CONFIG`'s file.
fn secret_profile(client: &StubClient, idp: &StubIdp) -> PathBuf {
    let path = client.tmp.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[profiles.p]\nissuer = \"{}\"\nclient-id = \"{CLIENT_ID}\"\nclient-secret-env = \"PROFILE_SECRET_VAR\"\n",
            idp.issuer()
        ),
    )
    .unwrap();
    path
}

#[track_caller]
fn assert_env_dump_lacks_secrets(dump: &Path) {
    let text = std::fs::read_to_string(dump)
        .unwrap_or_else(|e| panic!("the browser wrote no environment dump {}: {e}", dump.display()));
    assert!(
        text.lines().any(|l| l == "KOIDC_TEST_KEPT=visible"),
        "the dump holds the browser's environment:\n{text}"
    );
    for secret in [SECRET_FLAG_VALUE, SECRET_PROFILE_VALUE] {
        assert!(
            !text.contains(secret),
            "a client secret reached the browser's environment"
        );
    }
    for var in ["KOIDC_CLIENT_SECRET=", "PROFILE_SECRET_VAR="] {
        assert!(
            !text.lines().any(|l| l.starts_with(var)),
            "{var} reached the browser's environment"
        );
    }
}

#[test]
fn browser_command_does_not_inherit_the_client_secret_variables() {
    let idp = StubIdp::start(Fault::Good);
    let client = StubClient::new();
    let config = secret_profile(&client, &idp);
    // With and without KOIDC_CLIENT_SECRET (without, the profile's variable is the secret).
    for (n, with_flag_var) in [false, true].into_iter().enumerate() {
        let dump = client.tmp.path().join(format!("browser-env-{n}"));
        let browser = format!(
            "sh -c 'env > {}; exec {} \"$0\"'",
            dump.display(),
            crate::stub_idp::CURL_BROWSER
        );
        let mut cmd = client.koidc(&["get-token", "--profile", "p", "--cache", "none"]);
        cmd.args(["--browser-command", &browser, "--timeout", "20"])
            .env("KOIDC_CONFIG", &config)
            .env("PROFILE_SECRET_VAR", SECRET_PROFILE_VALUE)
            .env("KOIDC_TEST_KEPT", "visible");
        if with_flag_var {
            cmd.env("KOIDC_CLIENT_SECRET", SECRET_FLAG_VALUE);
        }
        let out = run(&mut cmd);
        assert_stub_get_token(&out, &idp);
        assert_env_dump_lacks_secrets(&dump);
    }
}

#[test]
fn system_browser_does_not_inherit_the_client_secret_variables() {
    let idp = StubIdp::start(Fault::Good);
    let client = StubClient::new();
    let config = secret_profile(&client, &idp);
    // The system browser is `xdg-open URL` on Linux: put a fake one first on PATH.
    let bin = client.tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let dump = client.tmp.path().join("xdg-open-env");
    let opener = bin.join("xdg-open");
    std::fs::write(
        &opener,
        format!(
            "#!/bin/sh\nenv > {}\nexec {} \"$1\"\n",
            dump.display(),
            crate::stub_idp::CURL_BROWSER
        ),
    )
    .unwrap();
    std::fs::set_permissions(&opener, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    );
    let mut cmd = client.koidc(&["get-token", "--profile", "p", "--cache", "none"]);
    cmd.args(["--grant", "authcode", "--timeout", "20"])
        .env("PATH", path)
        .env("DISPLAY", ":0")
        .env("KOIDC_CONFIG", &config)
        .env("PROFILE_SECRET_VAR", SECRET_PROFILE_VALUE)
        .env("KOIDC_CLIENT_SECRET", SECRET_FLAG_VALUE)
        .env("KOIDC_TEST_KEPT", "visible");
    let out = run(&mut cmd);
    assert_stub_get_token(&out, &idp);
    assert_env_dump_lacks_secrets(&dump);
}

/// Runs `cmd` with stderr a pipe nobody reads any more (the read end closed before koidc starts),
/// stdout captured; at most 60 s.
fn run_with_stderr_closed(mut cmd: Command) -> (std::process::ExitStatus, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    cmd.stderr(std::process::Stdio::from(writer))
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("start koidc");
    drop(cmd);
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for koidc") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("koidc did not finish within 60 s with its stderr closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().expect("stdout reader"))
}

#[test]
fn a_closed_stderr_pipe_does_not_abort_koidc_and_exit_codes_stay_normal() {
    use std::os::unix::process::ExitStatusExt as _;
    let idp = StubIdp::start(Fault::Good);
    let client = StubClient::new();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let cases: Vec<(&str, Command, i32)> = vec![
        (
            "failing verbose get-token",
            client.koidc(&[
                "get-token",
                "-v",
                "--issuer",
                &dead,
                "--client-id",
                "x",
                "--cache",
                "none",
            ]),
            1,
        ),
        (
            "whoami without a login",
            client.koidc(&["whoami", "--issuer", &dead, "--client-id", "x"]),
            1,
        ),
        ("usage error", client.koidc(&["get-token", "--no-such-flag"]), 2),
        (
            "verbose login that succeeds",
            client.command("get-token", &idp, &["-v"]),
            0,
        ),
        (
            "verbose warm get-token",
            client.command("get-token", &idp, &["-v"]),
            0,
        ),
    ];
    for (what, cmd, code) in cases {
        let (status, stdout) = run_with_stderr_closed(cmd);
        assert_eq!(
            status.signal(),
            None,
            "{what}: koidc was killed by signal {:?} (SIGABRT is 6)",
            status.signal()
        );
        assert_eq!(status.code(), Some(code), "{what}: exit status {status}");
        if code == 0 {
            let cred: serde_json::Value = serde_json::from_str(&stdout)
                .unwrap_or_else(|e| panic!("{what}: stdout is not an ExecCredential ({e}): {stdout}"));
            assert_eq!(cred["kind"], "ExecCredential", "{what}");
        }
    }
}

/// A field of `/proc/PID/limits` for the core file size: (soft, hard).
fn core_limit(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read the limits of koidc");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("a core file size line");
    let cols: Vec<&str> = line["Max core file size".len()..].split_whitespace().collect();
    (cols[0].to_owned(), cols[1].to_owned())
}

#[test]
fn a_waiting_login_holds_no_core_dump_limit_and_is_not_dumpable() {
    use std::os::unix::fs::MetadataExt as _;
    use std::os::unix::process::CommandExt as _;
    let idp = StubIdp::start(Fault::Good);
    let client = StubClient::new();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    // As root, run koidc as another user: a non-dumpable process's /proc files belong to root
    // instead of to its user. Otherwise, a non-dumpable process's fds cannot be listed by its
    // own (unprivileged) user.
    const NOBODY: u32 = 65534;
    if root {
        std::fs::set_permissions(
            client.tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::chown(client.home(), Some(NOBODY), Some(NOBODY)).unwrap();
    }
    for sub in ["get-token", "login"] {
        let mut cmd = client.command_with_cache(sub, idp.issuer(), "none", &["--no-browser"]);
        if root {
            cmd.uid(NOBODY).gid(NOBODY);
        }
        let mut koidc = Live::spawn(&mut cmd);
        koidc.wait_for_line("open this URL", Duration::from_secs(60));
        assert!(koidc.running(), "{sub}: koidc must wait for the login");
        let pid = koidc.pid();
        assert_eq!(
            core_limit(pid),
            ("0".into(), "0".into()),
            "{sub}: core file size limit"
        );
        if root {
            let owner = std::fs::metadata(format!("/proc/{pid}/status")).unwrap().uid();
            assert_eq!(
                owner, 0,
                "{sub}: /proc/{pid} belongs to koidc's user: it is dumpable"
            );
        } else {
            let err = std::fs::read_dir(format!("/proc/{pid}/fd")).err();
            assert_eq!(
                err.map(|e| e.kind()),
                Some(ErrorKind::PermissionDenied),
                "{sub}: koidc's fds can be listed by its user: it is dumpable"
            );
        }
        drop(koidc);
    }
}
