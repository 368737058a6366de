//! Cached sessions under concurrency and across identities: `logout` takes each entry's cache
//! lock (a refresh or login in flight cannot bring an entry back after "logged out"), `logout
//! --all` sends a client secret only to the issuer and client it was configured for, and a cached
//! GitHub token without expiry is checked with GitHub (`GET /user`) once an hour.
//!
//! OpenID Connect identities run against the stub IdP ([`crate::stub_idp`], which records the
//! `Authorization` header of revocation requests), GitHub identities against the fake GitHub
//! ([`crate::fake_github`], which records every request and can delay its API answers).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::fake_github::{CLIENT_ID as GH_CLIENT_ID, CLIENT_SECRET as GH_SECRET, FakeGithub, Knobs};
use crate::stub_idp::{CLIENT_ID, Fault, StubClient, StubIdp, StubOptions};
use crate::support::{Output, RUN_TIMEOUT, clean_command, entry_files, koidc_bin, run, spawn};

/// The curl "browser" logged in to the fake GitHub as alice.
const GH_BROWSER: &str = "curl -sS -L -o /dev/null -b gh_user=alice";

/// A client secret configured for one of the stub identities (the stub does not check it).
const STUB_SECRET: &str = "stub-client-secret-for-idp-a-0123456789";

/// A stub IdP with a revocation endpoint.
fn revoking_idp() -> StubIdp {
    StubIdp::start_with(
        Fault::Good,
        StubOptions {
            revocation: true,
            ..StubOptions::default()
        },
    )
}

/// `koidc SUB --provider github ...` for `client` (its HOME and file cache) against `fake`.
fn github_command(client: &StubClient, sub: &str, fake: &FakeGithub, extra: &[&str]) -> Command {
    let mut cmd = clean_command(koidc_bin(), &client.home());
    cmd.args([sub, "--provider", "github", "--github-url"])
        .arg(fake.url())
        .args(["--client-id", GH_CLIENT_ID, "--cache", "file", "--cache-dir"])
        .arg(client.cache_dir())
        .args(extra);
    cmd
}

/// Logs in to the fake GitHub with the web flow; returns the token handed out.
fn github_login(client: &StubClient, fake: &FakeGithub) -> String {
    let out = run(github_command(
        client,
        "get-token",
        fake,
        &["--browser-command", GH_BROWSER, "--timeout", "30"],
    )
    .env("KOIDC_CLIENT_SECRET", GH_SECRET));
    token_of(&out)
}

/// The token of a successful `get-token`.
#[track_caller]
fn token_of(out: &Output) -> String {
    out.assert_success();
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e}): {:?}", out.what, out.stdout));
    v["status"]["token"].as_str().expect("status.token").to_owned()
}

/// `logout --all` for `client`'s file cache, with `extra` arguments.
fn logout_all(client: &StubClient, extra: &[&str]) -> Command {
    let mut cmd = client.koidc(&["logout", "--all", "--cache", "file", "--cache-dir"]);
    cmd.arg(client.cache_dir()).args(extra);
    cmd
}

pub(crate) fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// The stderr line of `out` about the entry of `issuer`, exactly one.
#[track_caller]
fn line_about<'a>(out: &'a Output, issuer: &str) -> &'a str {
    let lines: Vec<&str> = out
        .stderr_lines()
        .into_iter()
        .filter(|l| l.starts_with(&format!("koidc: {issuer} (client ")))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{}: one stderr line about {issuer}:\n{}",
        out.what,
        out.stderr
    );
    lines[0]
}

// ---------------------------------------------------------------------------------------------
// Finding 2: `logout --all` and client secrets

#[test]
fn logout_all_sends_a_client_secret_only_to_the_issuer_and_client_it_is_configured_for() {
    let idp_a = revoking_idp();
    let idp_b = revoking_idp();
    let fake = FakeGithub::start();
    let client = StubClient::new();
    let login_all = |client: &StubClient| {
        run(&mut client.command("get-token", &idp_a, &[])).assert_success();
        run(&mut client.command("get-token", &idp_b, &[])).assert_success();
        github_login(client, &fake)
    };

    // 1. The secret is configured for idp A's client: only A's revocation carries it.
    let gh_token = login_all(&client);
    assert_eq!(client.entries().len(), 3, "three identities cached");
    let mark = fake.mark();
    let out = run(
        logout_all(&client, &["--issuer", idp_a.issuer(), "--client-id", CLIENT_ID])
            .env("KOIDC_CLIENT_SECRET", STUB_SECRET),
    );
    out.assert_success();
    assert_eq!(client.entries(), Vec::<PathBuf>::new(), "every entry is gone");
    assert_eq!(
        idp_a.revocation_authorizations(),
        [Some(basic(CLIENT_ID, STUB_SECRET))],
        "the configured client revokes with its secret"
    );
    assert_eq!(
        idp_b.revocation_authorizations(),
        [None],
        "another issuer's revocation must not carry the secret of idp A's client"
    );
    assert_eq!(
        idp_b.revocations()[0].client_id.as_deref(),
        Some(CLIENT_ID),
        "revoked as a public client"
    );
    for r in fake.since(mark) {
        assert!(
            r.authorization
                .as_deref()
                .is_none_or(|a| !a.contains(&STANDARD.encode(format!("{GH_CLIENT_ID}:")))
                    && a != basic(GH_CLIENT_ID, STUB_SECRET)),
            "GitHub received a client secret: {r:?}"
        );
        assert!(
            !r.path.contains("/applications/"),
            "GitHub revocation without a secret: {r:?}"
        );
    }
    assert!(
        fake.token_valid(&gh_token),
        "without its secret, the GitHub token is not revoked"
    );
    assert!(!out.stderr.contains(STUB_SECRET) && !out.stdout.contains(STUB_SECRET));
    // One line per entry says how it was revoked.
    assert!(
        line_about(&out, idp_a.issuer()).contains("with the client secret"),
        "{}",
        out.stderr
    );
    assert!(
        line_about(&out, idp_b.issuer()).contains("as a public client"),
        "{}",
        out.stderr
    );
    let gh_line = line_about(&out, &fake.url());
    assert!(gh_line.contains("not revoked"), "{gh_line}");

    // 2. The secret is the GitHub app's (configured for the GitHub identity): only GitHub gets it.
    let gh_token = login_all(&client);
    let mark = fake.mark();
    let before_a = idp_a.revocation_authorizations().len();
    let before_b = idp_b.revocation_authorizations().len();
    let out = run(logout_all(
        &client,
        &[
            "--provider",
            "github",
            "--github-url",
            &fake.url(),
            "--client-id",
            GH_CLIENT_ID,
        ],
    )
    .env("KOIDC_CLIENT_SECRET", GH_SECRET));
    out.assert_success();
    assert_eq!(client.entries(), Vec::<PathBuf>::new());
    assert!(
        !fake.token_valid(&gh_token),
        "the GitHub token is revoked with its app's secret"
    );
    let deletes: Vec<_> = fake
        .since(mark)
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(
        deletes[0].authorization.as_deref(),
        Some(basic(GH_CLIENT_ID, GH_SECRET).as_str())
    );
    assert_eq!(
        &idp_a.revocation_authorizations()[before_a..],
        [None],
        "idp A got GitHub's secret"
    );
    assert_eq!(
        &idp_b.revocation_authorizations()[before_b..],
        [None],
        "idp B got GitHub's secret"
    );
    assert!(!out.stderr.contains(GH_SECRET) && !out.stdout.contains(GH_SECRET));

    // 3. A secret given without saying whose it is goes nowhere.
    login_all(&client);
    let before_a = idp_a.revocation_authorizations().len();
    let out = run(logout_all(&client, &[]).env("KOIDC_CLIENT_SECRET", STUB_SECRET));
    out.assert_success();
    assert_eq!(&idp_a.revocation_authorizations()[before_a..], [None]);
    assert!(
        line_about(&out, idp_a.issuer()).contains("as a public client"),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// Finding 3: logout and the cache lock

#[test]
fn logout_waits_for_a_github_refresh_in_flight_and_the_entry_stays_gone() {
    // Tokens that live 60 s are within koidc's 90 s margin at once: every get-token refreshes.
    let fake = FakeGithub::start_with(Knobs {
        expires_in: Some(60),
        ..Knobs::default()
    });
    let client = StubClient::new();
    github_login(&client, &fake);
    assert_eq!(client.entries().len(), 1);

    // The refresh's account lookup (under the lock) takes 3 s.
    fake.set_knobs(|k| k.api_delay = Some(Duration::from_secs(3)));
    let mark = fake.mark();
    let refresh =
        spawn(github_command(&client, "get-token", &fake, &[]).env("KOIDC_CLIENT_SECRET", GH_SECRET));
    // Wait until the refresh was redeemed: get-token holds the lock from before that.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fake.since(mark).iter().any(|r| {
        r.path == "/login/oauth/access_token"
            && r.form.get("grant_type").is_some_and(|g| g == "refresh_token")
    }) {
        assert!(
            Instant::now() < deadline,
            "get-token never refreshed: {:?}",
            fake.since(mark)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let logout = run(github_command(&client, "logout", &fake, &[]).env("KOIDC_CLIENT_SECRET", GH_SECRET));
    let refreshed = token_of(&refresh.wait(RUN_TIMEOUT));

    logout.assert_success();
    assert_eq!(
        logout.stdout.trim_end(),
        format!("logged out of {} (client {GH_CLIENT_ID})", fake.url())
    );
    assert_eq!(
        client.entries(),
        Vec::<PathBuf>::new(),
        "the refresh saved its entry after logout said \"logged out\""
    );
    assert!(
        !fake.token_valid(&refreshed),
        "logout waited for the refresh and revoked the token it saved"
    );
}

/// A browser command that touches `marker`, waits 3 s, then follows the login URL with curl.
fn slow_browser(dir: &Path, marker: &Path) -> String {
    let script = dir.join("slow-browser.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch '{}'\nsleep 3\nexec curl -sS -L --max-time 20 -o /dev/null \"$1\"\n",
            marker.display()
        ),
    )
    .expect("write the slow browser");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    script.display().to_string()
}

#[test]
fn logout_waits_for_a_login_in_flight_and_the_entry_stays_gone() {
    let idp = revoking_idp();
    let client = StubClient::new();
    run(&mut client.command("get-token", &idp, &[])).assert_success();
    assert_eq!(client.entries().len(), 1);

    let marker = client.tmp.path().join("browser-started");
    let browser = slow_browser(client.tmp.path(), &marker);
    let mut login = client.koidc(&[
        "login",
        "--force",
        "--issuer",
        idp.issuer(),
        "--client-id",
        CLIENT_ID,
        "--cache",
        "file",
    ]);
    login
        .arg("--cache-dir")
        .arg(client.cache_dir())
        .args(["--browser-command", &browser, "--timeout", "20"]);
    let login = spawn(&mut login);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the login never opened the browser");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The login holds the lock while the browser is open.
    let logout = run(&mut client.command("logout", &idp, &[]));
    let login = login.wait(RUN_TIMEOUT);
    login.assert_success();
    logout.assert_success();
    assert_eq!(
        logout.stdout.trim_end(),
        format!("logged out of {} (client {CLIENT_ID})", idp.issuer())
    );
    assert_eq!(
        client.entries(),
        Vec::<PathBuf>::new(),
        "the login saved its entry after logout said \"logged out\""
    );
    let issued = idp.issued_refresh_tokens();
    assert_eq!(issued.len(), 2);
    let revoked: Vec<_> = idp.revocations().into_iter().filter_map(|r| r.token).collect();
    assert_eq!(
        revoked,
        [issued[1].clone()],
        "logout revoked the refresh token of the login it waited for"
    );
}

// ---------------------------------------------------------------------------------------------
// Finding 11: hourly revalidation of cached GitHub tokens

/// Rewrites the `checked_at` field of the (plaintext) GitHub entry: `None` removes it, as in
/// entries written before it existed.
fn set_checked_at(client: &StubClient, value: Option<i64>) {
    let entries = entry_files(&client.cache_dir());
    assert_eq!(entries.len(), 1, "{entries:?}");
    let mut v: Value =
        serde_json::from_slice(&std::fs::read(&entries[0]).expect("read the entry")).expect("JSON entry");
    let o = v.as_object_mut().expect("an object");
    match value {
        Some(t) => o.insert("checked_at".into(), t.into()),
        None => o.remove("checked_at"),
    };
    std::fs::write(&entries[0], serde_json::to_vec(&v).expect("JSON")).expect("write the entry");
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[test]
fn a_revoked_github_token_is_not_served_once_its_hourly_check_is_due() {
    let fake = FakeGithub::start();
    let client = StubClient::new();
    let token = github_login(&client, &fake);
    let get_token = || {
        run(github_command(
            &client,
            "get-token",
            &fake,
            &["--browser-command", GH_BROWSER, "--timeout", "30"],
        )
        .env("KOIDC_CLIENT_SECRET", GH_SECRET))
    };

    // GitHub revokes it; within the hour koidc does not ask and serves it from the cache.
    assert!(fake.revoke_token(&token));
    set_checked_at(&client, Some(now() - 3000));
    let mark = fake.mark();
    assert_eq!(token_of(&get_token()), token);
    assert!(
        fake.since(mark).is_empty(),
        "the warm path asked GitHub: {:?}",
        fake.since(mark)
    );

    // Over an hour since the last check: koidc asks GitHub, which refuses it, and logs in again.
    set_checked_at(&client, Some(now() - 3700));
    let mark = fake.mark();
    let out = get_token();
    let fresh = token_of(&out);
    assert_ne!(fresh, token, "a revoked token was served: {}", out.stderr);
    let asked = fake.since(mark);
    assert_eq!(
        asked[0].path.trim_start_matches("/api/v3"),
        "/user",
        "the first request checks the cached token: {asked:?}"
    );
    assert_eq!(
        asked[0].authorization.as_deref(),
        Some(format!("Bearer {token}").as_str())
    );
    assert!(fake.token_valid(&fresh));

    // The new entry was just checked (at login): the next call asks nothing.
    let mark = fake.mark();
    assert_eq!(token_of(&get_token()), fresh);
    assert!(fake.since(mark).is_empty(), "{:?}", fake.since(mark));

    // An entry written before the check time existed is checked at once; a good token is kept
    // and checked once only.
    set_checked_at(&client, None);
    let mark = fake.mark();
    assert_eq!(token_of(&get_token()), fresh);
    let asked: Vec<_> = fake.since(mark).into_iter().map(|r| r.path).collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    let mark = fake.mark();
    assert_eq!(token_of(&get_token()), fresh);
    assert!(fake.since(mark).is_empty(), "{:?}", fake.since(mark));

    // A check time in the future (a clock set back, an edited file) does not defer the check.
    set_checked_at(&client, Some(now() + 30 * 86_400));
    let mark = fake.mark();
    assert_eq!(token_of(&get_token()), fresh);
    assert_eq!(fake.since(mark).len(), 1, "{:?}", fake.since(mark));
}

#[test]
fn an_unreachable_github_serves_a_cached_token_for_a_day_after_its_last_check_then_fails() {
    let fake = FakeGithub::start();
    let url = fake.url();
    let client = StubClient::new();
    let token = github_login(&client, &fake);
    drop(fake);
    let get_token = || {
        let mut cmd = clean_command(koidc_bin(), &client.home());
        cmd.args([
            "get-token",
            "--provider",
            "github",
            "--github-url",
            &url,
            "--client-id",
            GH_CLIENT_ID,
        ])
        .args(["--cache", "file", "--cache-dir"])
        .arg(client.cache_dir())
        .args(["--timeout", "5", "--no-browser"]);
        run(&mut cmd)
    };

    set_checked_at(&client, Some(now() - 2 * 3600));
    let out = get_token();
    assert_eq!(token_of(&out), token);
    assert!(
        out.stderr.contains("warning") && out.stderr.contains("cannot check the cached GitHub token"),
        "{}",
        out.stderr
    );

    set_checked_at(&client, Some(now() - 25 * 3600));
    let out = get_token();
    out.assert_failure();
    assert!(out.stdout.is_empty());
    assert!(!out.stderr.contains(&token));
    let last = out.stderr_lines().last().copied().unwrap_or_default().to_owned();
    assert!(
        last.starts_with("koidc: ") && last.contains("GitHub"),
        "{}",
        out.stderr
    );
}
