//! Cached sessions under concurrency and across identities: `logout` takes each entry's cache
//! lock (a refresh or login in flight cannot bring an entry back after "logged out"), `logout
//! --all` sends a client secret only to the issuer and client it was configured for, and a cached
//! GitHub token without expiry is checked with GitHub (`GET /user`) once an hour.
//!
//! Which entries `logout` and `whoami` select: every entry of the issuer and client named,
//! whatever its scopes (the README's own usage block against real Dex, with the file and the
//! keyring store), revoked one by one with the client's own secret; `logout --all` (and `clean`)
//! also removing the lock and cool-down files no process holds; `version`.
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

use crate::browser::fake_browser;
use crate::dex::CLIENT_ID as DEX_CLIENT_ID;
use crate::fake_github::{CLIENT_ID as GH_CLIENT_ID, CLIENT_SECRET as GH_SECRET, FakeGithub, Knobs};
use crate::keyring::{SecretService, SessionKeyring};
use crate::lab::{Lab, LabOptions};
use crate::stub_idp::{CLIENT_ID, Fault, StubClient, StubIdp, StubOptions};
use crate::support::{
    Output, RUN_TIMEOUT, Stdout, clean_command, entry_files, files_under, koidc_bin, run, spawn,
};

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
        format!(
            "logged out of {} (client {GH_CLIENT_ID}, scopes read:org)",
            fake.url()
        )
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

/// A browser command that touches `marker`, runs the shell command `wait`, then follows the login
/// URL with curl.
fn slow_browser(dir: &Path, marker: &Path, wait: &str) -> String {
    let script = dir.join("slow-browser.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch '{}'\n{wait}\nexec curl -sS -L --max-time 20 -o /dev/null \"$1\"\n",
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
    let browser = slow_browser(client.tmp.path(), &marker, "sleep 3");
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

// ---------------------------------------------------------------------------------------------
// Which entries logout and whoami select: every entry of the issuer and client, whatever its
// scopes (scopes are part of the cache key)

/// Where the tokens of [`readme_usage_against_dex`] are kept.
enum Store {
    /// `--cache file`.
    File,
    /// koidc's default `--cache keyring`: gnome-keyring's Secret Service on a private bus, and a
    /// session keyring of the test's own for the master key.
    Keyring(SessionKeyring, SecretService),
}

impl Store {
    /// The extension of the entry files this store writes.
    fn entry_ext(&self) -> &'static str {
        match self {
            Store::File => "json",
            Store::Keyring(..) => "enc",
        }
    }
}

/// `koidc ARGS` for `lab`'s cache directory kept in `store`, with the lab's fake browser for the
/// commands that log in; identity flags and scopes only as `args` give them.
fn lab_run(lab: &Lab, store: &Store, args: &[&str]) -> Output {
    let mut cmd = clean_command(koidc_bin(), &lab.home);
    cmd.args(args).arg("--cache-dir").arg(&lab.cache_dir);
    if ["login", "get-token"].contains(&args[0]) {
        cmd.arg("--browser-command")
            .arg(fake_browser())
            .args(["--timeout", "60"]);
    }
    cmd.envs(lab.run_env());
    match store {
        Store::File => {
            cmd.args(["--cache", "file"]);
        }
        Store::Keyring(session, secrets) => {
            session.join(&mut cmd);
            cmd.env("DBUS_SESSION_BUS_ADDRESS", &secrets.address);
        }
    }
    run(&mut cmd)
}

/// The entries a successful `whoami -o json` printed as a list.
#[track_caller]
fn whoami_list(out: &Output) -> Vec<Value> {
    out.assert_success();
    let listed: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e}): {:?}", out.what, out.stdout));
    match listed {
        Value::Array(entries) => entries,
        other => panic!("{}: a list of entries, not {other}", out.what),
    }
}

/// The README's usage block (login with `--scope groups --scope email`, then `whoami` and
/// `logout` without scopes) against `lab`'s Dex, with a second entry for the same issuer and
/// client cached with other scopes.
fn readme_usage_against_dex(lab: &Lab, store: &Store) {
    let issuer = lab.issuer();
    let id = ["--issuer", issuer.as_str(), "--client-id", DEX_CLIENT_ID];
    let with = |sub: &str, extra: &[&str]| -> Vec<String> {
        std::iter::once(sub)
            .chain(id)
            .chain(extra.iter().copied())
            .map(String::from)
            .collect()
    };
    let koidc = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab_run(lab, store, &args)
    };

    // koidc login --issuer … --client-id kubernetes --scope groups --scope email
    let login = koidc(with("login", &["--scope", "groups", "--scope", "email"]));
    login.assert_success();
    lab.assert_no_leak(&login, Stdout::NoSecrets);
    // The same issuer and client with other scopes (as another kubeconfig entry asks).
    lab.assert_ok_get_token(&koidc(with("get-token", &["--scope", "offline_access"])));
    let entries = entry_files(&lab.cache_dir);
    assert_eq!(entries.len(), 2, "two cache entries: {entries:?}");
    for entry in &entries {
        assert_eq!(
            entry.extension().and_then(|e| e.to_str()),
            Some(store.entry_ext()),
            "written by the store under test: {entries:?}"
        );
    }

    // koidc whoami --issuer … --client-id …: both entries, told apart by their scopes.
    let whoami = koidc(with("whoami", &[]));
    whoami.assert_success();
    lab.assert_no_leak(&whoami, Stdout::NoSecrets);
    assert_eq!(
        whoami
            .stdout
            .matches(&format!("client:   {DEX_CLIENT_ID}\n"))
            .count(),
        2,
        "{}",
        whoami.stdout
    );
    for line in ["scopes:   email, groups\n", "scopes:   offline_access\n"] {
        assert_eq!(
            whoami.stdout.matches(line).count(),
            1,
            "{line:?} in:\n{}",
            whoami.stdout
        );
    }
    let mut scopes: Vec<Value> = whoami_list(&koidc(with("whoami", &["-o", "json"])))
        .iter()
        .map(|e| e["scopes"].clone())
        .collect();
    scopes.sort_by_key(Value::to_string);
    assert_eq!(
        scopes,
        [
            serde_json::json!(["email", "groups"]),
            serde_json::json!(["offline_access"])
        ]
    );

    // koidc logout --issuer … --client-id …: both entries go, and it says how many and that
    // nothing was revoked (Dex offers no revocation endpoint).
    let mark = lab.proxy.mark();
    let logout = koidc(with("logout", &[]));
    logout.assert_success();
    lab.assert_no_leak(&logout, Stdout::NoSecrets);
    assert_eq!(entry_files(&lab.cache_dir), Vec::<PathBuf>::new(), "{logout:?}");
    let stdout: Vec<&str> = logout.stdout.lines().collect();
    assert_eq!(
        stdout,
        [
            format!("logged out of {issuer} (client {DEX_CLIENT_ID}, scopes email groups)"),
            format!("logged out of {issuer} (client {DEX_CLIENT_ID}, scopes offline_access)"),
            format!("2 cached entries of {issuer} (client {DEX_CLIENT_ID}) removed"),
        ],
        "{}",
        logout.stderr
    );
    assert_eq!(
        logout.stderr_lines(),
        [format!(
            "koidc: {issuer} (client {DEX_CLIENT_ID}, scopes offline_access): not revoked: the \
             issuer offers no revocation endpoint (the refresh token stays valid at the issuer \
             until it expires)"
        )],
        "the entry with a refresh token says it was not revoked"
    );
    assert_eq!(
        lab.proxy.non_gets_since(mark),
        [],
        "Dex offers no revocation: logout must POST nothing"
    );

    // Nothing is cached now: whoami for the client fails and says to log in; as JSON, the
    // list of everything cached is empty.
    let whoami = koidc(with("whoami", &[]));
    whoami.assert_failure();
    let line = whoami.assert_one_error_line();
    assert!(line.contains("koidc login"), "{line}");
    let all = lab_run(lab, store, &["whoami", "-o", "json"]);
    all.assert_success();
    assert_eq!(all.stdout, "[]\n", "{}", all.stderr);
}

#[test]
fn logout_without_scopes_removes_entries_cached_with_scopes() {
    // The README's issuer (https://dex.example.com) has no `/dex` path: koidc treats it as a
    // generic provider and adds no preset scopes. So does this Dex at the proxy's root.
    let options = |cache| LabOptions {
        cache,
        issuer_path: "",
        ..LabOptions::default()
    };
    let lab = Lab::start(options(Some("file")));
    readme_usage_against_dex(&lab, &Store::File);

    let lab = Lab::start(options(None));
    let store = Store::Keyring(
        SessionKeyring::new(),
        SecretService::start(lab.tmp.path(), &lab.home),
    );
    readme_usage_against_dex(&lab, &store);
}

/// Writes `[profiles.work]` for `idp` (scope `email`) into a config file under `client`'s temp
/// dir; returns its path (for `KOIDC_CONFIG`).
fn work_profile(client: &StubClient, idp: &StubIdp) -> PathBuf {
    let path = client.tmp.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[profiles.work]\nissuer = \"{}\"\nclient-id = \"{CLIENT_ID}\"\nscopes = [\"email\"]\n",
            idp.issuer()
        ),
    )
    .expect("write the config file");
    path
}

#[test]
fn logout_of_a_client_removes_its_entries_of_every_scope_and_profile_and_revokes_each_with_its_secret() {
    let idp = revoking_idp();
    let other = revoking_idp();
    let client = StubClient::new();
    let config = work_profile(&client, &idp);
    let profiled = |extra: &[&str]| {
        let mut cmd = client.command("get-token", &idp, &["--profile", "work"]);
        cmd.args(extra).env("KOIDC_CONFIG", &config);
        run(&mut cmd).assert_success();
    };
    // Four entries of idp's client: no scopes, two scopes, and two of the profile `work`.
    run(&mut client.command("get-token", &idp, &[])).assert_success();
    run(&mut client.command("get-token", &idp, &["--scope", "groups", "--scope", "email"])).assert_success();
    profiled(&[]);
    profiled(&["--scope", "groups"]);
    // And one of another issuer, which stays.
    run(&mut client.command("get-token", &other, &[])).assert_success();
    assert_eq!(client.entries().len(), 5);
    let mut issued = idp.issued_refresh_tokens();
    assert_eq!(issued.len(), 4);

    // whoami for the client lists all four, each with its scopes and profile.
    let whoami = run(&mut client.command("whoami", &idp, &[]));
    whoami.assert_success();
    let headers: Vec<String> = whoami
        .stdout
        .split("\n\n")
        .map(|block| {
            block
                .lines()
                .filter(|l| {
                    ["client:", "scopes:", "profile:"]
                        .iter()
                        .any(|p| l.starts_with(p))
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .collect();
    let mut headers_sorted = headers.clone();
    headers_sorted.sort();
    assert_eq!(
        headers_sorted,
        [
            "client:   koidc; scopes:   (none)",
            "client:   koidc; scopes:   email, groups",
            "client:   koidc; scopes:   email; profile:  work",
            "client:   koidc; scopes:   groups; profile:  work",
        ],
        "{}",
        whoami.stdout
    );
    let mut seen: Vec<String> = whoami_list(&run(&mut client.command("whoami", &idp, &["-o", "json"])))
        .iter()
        .map(|e| format!("{} {}", e["scopes"], e["profile"]))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            r#"["email","groups"] null"#,
            r#"["email"] "work""#,
            r#"["groups"] "work""#,
            "[] null",
        ]
    );

    // logout for the client: every one of its entries, each revoked with the client's secret.
    let out = run(client
        .command("logout", &idp, &[])
        .env("KOIDC_CLIENT_SECRET", STUB_SECRET));
    out.assert_success();
    assert!(!out.stderr.contains(STUB_SECRET) && !out.stdout.contains(STUB_SECRET));
    assert_eq!(client.entries().len(), 1, "only the other issuer's entry stays");
    let mut revoked: Vec<String> = idp
        .revocations()
        .into_iter()
        .map(|r| r.token.expect("a revocation names its token"))
        .collect();
    revoked.sort();
    issued.sort();
    assert_eq!(revoked, issued, "each entry's own refresh token is revoked");
    assert_eq!(
        idp.revocation_authorizations(),
        vec![Some(basic(CLIENT_ID, STUB_SECRET)); 4],
        "each with the client's secret"
    );
    assert_eq!(other.revocations(), [], "another issuer's entry is left alone");
    assert_eq!(
        out.stdout.lines().last(),
        Some(
            format!(
                "4 cached entries of {} (client {CLIENT_ID}) removed",
                idp.issuer()
            )
            .as_str()
        ),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.starts_with("logged out of "))
            .count(),
        4
    );

    // With a profile, logout keeps to that profile's entries (of any scopes).
    run(&mut client.command("get-token", &idp, &[])).assert_success();
    profiled(&[]);
    profiled(&["--scope", "groups"]);
    assert_eq!(client.entries().len(), 4);
    let mut cmd = client.koidc(&["logout", "--profile", "work", "--cache", "file", "--cache-dir"]);
    cmd.arg(client.cache_dir()).env("KOIDC_CONFIG", &config);
    let out = run(&mut cmd);
    out.assert_success();
    assert_eq!(client.entries().len(), 2, "{}", out.stdout);
    let whoami = run(&mut client.command("whoami", &idp, &[]));
    whoami.assert_success();
    assert!(
        !whoami.stdout.contains("profile:"),
        "a profile's entry survived: {}",
        whoami.stdout
    );
}

#[test]
fn logout_without_arguments_mentions_all() {
    let client = StubClient::new();
    let out = run(client
        .koidc(&["logout", "--cache", "file", "--cache-dir"])
        .arg(client.cache_dir()));
    out.assert_failure();
    let line = out.assert_one_error_line();
    assert!(line.contains("--all"), "{line}");
    assert!(line.contains("--issuer") && line.contains("--profile"), "{line}");
}

#[test]
fn whoami_json_with_nothing_cached_prints_an_empty_list() {
    let client = StubClient::new();
    let out = run(client
        .koidc(&["whoami", "-o", "json", "--cache", "file", "--cache-dir"])
        .arg(client.cache_dir()));
    out.assert_success();
    assert_eq!(out.stdout, "[]\n");
    assert_eq!(out.stderr, "");
}

/// Writes `bytes` to `path` with mode 0600, as koidc writes its files.
fn write_private(path: &Path, bytes: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, bytes).expect("write a cache file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

#[test]
fn logout_all_removes_lock_and_cool_down_files_but_not_a_lock_another_process_holds() {
    use std::os::unix::fs::MetadataExt as _;
    let idp = revoking_idp();
    let busy = revoking_idp();
    let client = StubClient::new();
    let dir = client.cache_dir();
    run(&mut client.command("get-token", &idp, &[])).assert_success();
    let entry = client.entries().pop().expect("one entry");
    let id = entry
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("entry id")
        .to_owned();
    assert!(
        dir.join(format!("{id}.lock")).is_file(),
        "the login left its lock file"
    );
    // A failed login's cool-down marker for the cached identity; the lock file and marker of an
    // identity no longer cached.
    let marker = |id: &str| {
        write_private(
            &dir.join(format!("{id}.cooldown")),
            &format!(
                "{}\nno login callback arrived within 20s\n",
                chrono::Utc::now().timestamp()
            ),
        )
    };
    marker(&id);
    let gone = "0123456789abcdef0123456789abcdef";
    write_private(&dir.join(format!("{gone}.lock")), "");
    marker(gone);

    // A login in flight for `busy` holds its lock: its browser waits for the gate.
    let locks = |dir: &Path| -> Vec<PathBuf> {
        files_under(dir)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "lock"))
            .collect()
    };
    let before = locks(&dir);
    let started = client.tmp.path().join("browser-started");
    let gate = client.tmp.path().join("gate");
    let browser = slow_browser(
        client.tmp.path(),
        &started,
        // At most 60 s: a failing test must not leave the browser looping after it.
        &format!(
            "i=0; while [ ! -e '{}' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done",
            gate.display()
        ),
    );
    let mut login = client.koidc(&["login", "--issuer", busy.issuer(), "--client-id", CLIENT_ID]);
    login.args(["--cache", "file", "--cache-dir"]).arg(&dir).args([
        "--browser-command",
        &browser,
        "--timeout",
        "60",
    ]);
    let login = spawn(&mut login);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the login never opened the browser");
        std::thread::sleep(Duration::from_millis(20));
    }
    let held: Vec<PathBuf> = locks(&dir).into_iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(held.len(), 1, "the login's lock file: {held:?}");
    let held = held[0].clone();
    let inode = std::fs::metadata(&held).expect("the held lock file").ino();

    let out = run(&mut logout_all(&client, &[]));
    out.assert_success();
    assert_eq!(
        files_under(&dir),
        std::slice::from_ref(&held),
        "only the lock a running login holds is left: {}",
        out.stderr
    );
    assert_eq!(
        std::fs::metadata(&held).expect("the held lock file").ino(),
        inode,
        "the held lock file was replaced"
    );
    assert!(
        out.stderr.contains("in flight"),
        "logout says a login is in flight: {}",
        out.stderr
    );

    // The login then finishes under the lock it kept, and saves its entry.
    std::fs::write(&gate, "").expect("open the gate");
    login.wait(RUN_TIMEOUT).assert_success();
    assert_eq!(client.entries().len(), 1);
}

#[test]
fn clean_logs_out_of_every_cached_identity_like_logout_all() {
    let idp = revoking_idp();
    let other = revoking_idp();
    let client = StubClient::new();
    run(&mut client.command("get-token", &idp, &[])).assert_success();
    run(&mut client.command("get-token", &other, &["--scope", "email"])).assert_success();
    assert_eq!(client.entries().len(), 2);

    let out = run(client
        .koidc(&["clean", "--cache", "file", "--cache-dir"])
        .arg(client.cache_dir()));
    out.assert_success();
    assert_eq!(client.entries(), Vec::<PathBuf>::new());
    assert_eq!(
        files_under(&client.cache_dir()),
        Vec::<PathBuf>::new(),
        "lock files left"
    );
    for (at, issued) in [
        (&idp, idp.issued_refresh_tokens()),
        (&other, other.issued_refresh_tokens()),
    ] {
        let revoked: Vec<String> = at.revocations().into_iter().filter_map(|r| r.token).collect();
        assert_eq!(revoked, issued, "{}", out.stderr);
    }
    let mut lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.pop(), Some("2 cached entries removed"), "{}", out.stdout);
    lines.sort();
    let mut expected = [
        format!("logged out of {} (client {CLIENT_ID})", idp.issuer()),
        format!(
            "logged out of {} (client {CLIENT_ID}, scopes email)",
            other.issuer()
        ),
    ];
    expected.sort();
    assert_eq!(lines, expected, "{}", out.stderr);
}

#[test]
fn clean_with_identity_options_says_they_select_nothing_and_still_logs_out_of_everything() {
    let idp = revoking_idp();
    let other = revoking_idp();
    let client = StubClient::new();
    run(&mut client.command("get-token", &idp, &[])).assert_success();
    run(&mut client.command("get-token", &other, &[])).assert_success();
    assert_eq!(client.entries().len(), 2);

    let out = run(client
        .koidc(&["clean", "--issuer", idp.issuer(), "--client-id", CLIENT_ID])
        .args(["--cache", "file", "--cache-dir"])
        .arg(client.cache_dir()));
    out.assert_success();
    assert_eq!(
        client.entries(),
        Vec::<PathBuf>::new(),
        "clean removes every identity"
    );
    assert!(
        out.stderr.lines().any(|l| l
            == format!(
                "koidc: logging out of every cached identity (--all); {} (client {CLIENT_ID}) is \
                 only the client the client secret is for",
                idp.issuer()
            )),
        "{}",
        out.stderr
    );
}

#[test]
fn logout_whose_stdout_is_full_still_removes_every_entry_and_fails() {
    let idp = revoking_idp();
    let client = StubClient::new();
    for scopes in [&[][..], &["--scope", "email"], &["--scope", "groups"]] {
        run(&mut client.command("get-token", &idp, scopes)).assert_success();
    }
    assert_eq!(client.entries().len(), 3);
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let out = client
        .command("logout", &idp, &[])
        .stdout(full)
        .output()
        .expect("run koidc logout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("logged out, but could not write the list of entries on stdout"),
        "{stderr}"
    );
    assert_eq!(
        client.entries(),
        Vec::<PathBuf>::new(),
        "entries left after the first failed write"
    );
    assert_eq!(idp.revocations().len(), 3, "each entry revoked");
}

#[test]
fn version_subcommand_prints_what_dash_dash_version_prints() {
    let client = StubClient::new();
    let flag = run(&mut client.koidc(&["--version"]));
    flag.assert_success();
    assert!(flag.stdout.starts_with("koidc "), "{}", flag.stdout);
    let sub = run(&mut client.koidc(&["version"]));
    sub.assert_success();
    assert_eq!(sub.stdout, flag.stdout);
    assert_eq!(sub.stderr, "");
}
