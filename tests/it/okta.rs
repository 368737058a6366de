//! `--provider okta` against an independent, certified OpenID provider configured like Okta:
//! `tests/okta/server.mjs` (the npm `oidc-provider` package, pinned in tests/okta/package-lock.json)
//! with issuer `/oauth2/default`, a public "Native app" client whose sign-in redirect URIs are
//! exactly http://127.0.0.1:8000/callback and http://127.0.0.1:18000/callback (and
//! http://localhost:8000/callback, for `--redirect-host localhost`), PKCE required,
//! rotating refresh tokens (reuse revokes the grant), a `groups` claim and revocation.
//!
//! Proves: the fixed ports (8000, and 18000 when 8000 is taken), the preset scopes and the
//! groups claim, two refreshes in a row each using the rotated refresh token (and the provider
//! rejecting the first one when it is reused), revocation on logout, and the Okta-specific
//! messages for an unregistered redirect URI and a missing `groups` scope.
//!
//! Pipelines: `get-token --grant client-credentials` with the confidential client `koidc-ci`
//! (an Okta "API Services" app whose access tokens are JWTs for the audience `kubernetes`): the
//! token, its cache, the secret from the variable or a file, a wrong secret, another audience,
//! and an opaque access token, never showing the secret.
//!
//! Needs `node` (20+) and `tests/okta/node_modules` (`./tests/run.sh` runs `npm ci` there); the
//! tests fail with instructions when either is missing. Every test that logs in listens on port
//! 8000 or 18000, so they take [`PORTS`] one at a time.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::Digest as _;
use tempfile::TempDir;

use crate::browser::{BrowserLog, fake_browser};
use crate::support::{
    ExecCredential, Output, Secrets, Stdout, assert_no_leak, cached_id_and_refresh_tokens, clean_command,
    files_under, koidc_bin, login_and_refresh_twice, parse_exec_credential, repo_root, run, which,
};

/// The client registered at the Okta-like provider.
const CLIENT_ID: &str = "koidc-okta";
/// Its one account.
const USER_EMAIL: &str = "okta-user@example.com";
const USER_PASSWORD: &str = "okta-password";
const USER_GROUPS: [&str; 1] = ["okta-devs"];

/// The confidential client of the pipeline tests, and the audience of its access tokens.
const CI_CLIENT_ID: &str = "koidc-ci";
const CI_AUDIENCE: &str = "kubernetes";

/// The callback ports of the Okta preset.
const PORT: u16 = 8000;
const FALLBACK_PORT: u16 = 18000;

/// Serialises the tests that listen on the fixed callback ports.
static PORTS: Mutex<()> = Mutex::new(());

fn fixed_ports() -> MutexGuard<'static, ()> {
    PORTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running `tests/okta/server.mjs`; killed when dropped.
struct OktaIdp {
    child: Child,
    issuer: String,
    log: PathBuf,
}

/// How the provider is set up.
#[derive(Default)]
struct OktaOptions {
    /// ID token lifetime in seconds (the server's default is 3600).
    id_token_ttl: Option<u64>,
    /// The authorization server has no `groups` scope.
    no_groups_scope: bool,
    /// Registers the confidential client [`CI_CLIENT_ID`] with this secret.
    ci_client_secret: Option<String>,
    /// [`CI_CLIENT_ID`] gets opaque access tokens instead of JWTs for [`CI_AUDIENCE`].
    ci_opaque: bool,
    /// [`CLIENT_ID`] gets JWT access tokens for this audience (else opaque ones).
    user_audience: Option<&'static str>,
}

impl OktaIdp {
    /// Starts the provider on a free loopback port and waits for its `READY <issuer>` line.
    fn start(dir: &Path, options: &OktaOptions) -> OktaIdp {
        let okta_dir = repo_root().join("tests/okta");
        let node = which("node").unwrap_or_else(|| {
            panic!(
                "node is not on PATH: the Okta tests need Node.js 20 or later to run \
                 tests/okta/server.mjs; install it, then run ./tests/run.sh (it runs `npm ci` in \
                 tests/okta)"
            )
        });
        assert!(
            okta_dir.join("node_modules/oidc-provider/package.json").is_file(),
            "{}/node_modules is missing: run ./tests/run.sh, or `npm ci --prefix tests/okta`",
            okta_dir.display()
        );
        let log = dir.join("okta-idp.log");
        let stderr = std::fs::File::create(&log).expect("create the provider log");
        let mut cmd = Command::new(node);
        cmd.arg(okta_dir.join("server.mjs"))
            .arg("0")
            .current_dir(&okta_dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if let Some(ttl) = options.id_token_ttl {
            cmd.env("OKTA_TEST_ID_TOKEN_TTL", ttl.to_string());
        }
        if options.no_groups_scope {
            cmd.env("OKTA_TEST_NO_GROUPS_SCOPE", "1");
        }
        if let Some(secret) = &options.ci_client_secret {
            cmd.env("OKTA_TEST_CI_CLIENT_SECRET", secret);
        }
        if options.ci_opaque {
            cmd.env("OKTA_TEST_CI_OPAQUE", "1");
        }
        if let Some(audience) = options.user_audience {
            cmd.env("OKTA_TEST_USER_AUDIENCE", audience);
        }
        let mut child = cmd.spawn().expect("start node tests/okta/server.mjs");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(issuer) = line.strip_prefix("READY ") {
                    let _ = tx.send(issuer.trim().to_string());
                }
            }
        });
        let issuer = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(issuer) => issuer,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "tests/okta/server.mjs did not print READY within 30 s; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        assert!(
            issuer.starts_with("http://127.0.0.1:") && issuer.ends_with("/oauth2/default"),
            "unexpected issuer {issuer:?}"
        );
        OktaIdp { child, issuer, log }
    }

    /// `http://127.0.0.1:PORT` of the provider.
    fn origin(&self) -> String {
        self.issuer.trim_end_matches("/oauth2/default").to_string()
    }

    /// What the provider saw (its test-only `/__test/events` list).
    fn events(&self) -> Vec<Value> {
        let url = format!("{}/__test/events", self.origin());
        let body = crate::support::runtime().block_on(async {
            reqwest::get(&url)
                .await
                .expect("GET /__test/events")
                .text()
                .await
                .expect("read /__test/events")
        });
        serde_json::from_str(&body).expect("/__test/events is a JSON list")
    }

    /// The events of one type.
    fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events().into_iter().filter(|e| e["type"] == kind).collect()
    }

    /// POSTs a refresh grant with `refresh_token` for the client, as any client could: the status
    /// and the JSON body.
    fn try_refresh(&self, refresh_token: &str) -> (u16, Value) {
        let url = format!("{}/v1/token", self.issuer);
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", refresh_token)
            .append_pair("client_id", CLIENT_ID)
            .finish();
        crate::support::runtime().block_on(async {
            let resp = reqwest::Client::new()
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await
                .expect("POST the token endpoint");
            let status = resp.status().as_u16();
            let body = resp.json::<Value>().await.expect("token endpoint answers JSON");
            (status, body)
        })
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Prints the provider's events and log (for a failing test).
    fn print_what_happened(&self) {
        eprintln!("--- Okta-like provider events ---");
        for e in self.events() {
            eprintln!("{e}");
        }
        eprintln!("--- provider log ---\n{}", self.log_text());
    }
}

impl Drop for OktaIdp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first 16 hex digits of the SHA-256 of a token: how the provider's events name tokens.
fn fingerprint(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))[..16].to_string()
}

/// A test's temp dir (named `prefix…`) and the HOME made in it.
fn temp_home(prefix: &str) -> (TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir");
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).expect("create HOME");
    (tmp, home)
}

/// One test's world: a temp dir, the provider, and koidc runs with `--provider okta`.
struct OktaLab {
    idp: OktaIdp,
    home: PathBuf,
    cache_dir: PathBuf,
    browser: BrowserLog,
    secrets: Secrets,
    // Last, so it is removed after the provider has stopped.
    _tmp: TempDir,
}

impl OktaLab {
    fn start(options: OktaOptions) -> OktaLab {
        let (tmp, home) = temp_home("koidc-okta-");
        let idp = OktaIdp::start(tmp.path(), &options);
        OktaLab {
            idp,
            cache_dir: tmp.path().join("cache"),
            browser: BrowserLog::new(tmp.path()),
            home,
            secrets: Secrets::default(),
            _tmp: tmp,
        }
    }

    /// The identity flags every command gets.
    fn identity_args(&self) -> Vec<String> {
        [
            "--provider",
            "okta",
            "--issuer",
            &self.idp.issuer,
            "--client-id",
            CLIENT_ID,
            "--cache",
            "file",
            "--cache-dir",
            &self.cache_dir.display().to_string(),
        ]
        .map(String::from)
        .to_vec()
    }

    fn command(&self, subcommand: &str, extra: &[&str]) -> Command {
        let mut cmd = clean_command(koidc_bin(), &self.home);
        cmd.arg(subcommand).args(self.identity_args());
        if subcommand != "whoami" {
            cmd.args(["--browser-command", &fake_browser().display().to_string()])
                .args(["--timeout", "60"]);
        }
        cmd.args(extra)
            .env("FAKE_BROWSER_LOG", &self.browser.path)
            .env("FAKE_BROWSER_LOGIN", USER_EMAIL)
            .env("FAKE_BROWSER_PASSWORD", USER_PASSWORD);
        cmd
    }

    fn koidc(&mut self, subcommand: &str, extra: &[&str]) -> Output {
        let out = run(&mut self.command(subcommand, extra));
        self.remember_cached_tokens();
        let stdout = if subcommand == "get-token" {
            Stdout::MayHoldIdToken
        } else {
            Stdout::NoSecrets
        };
        assert_no_leak(&out, &self.secrets, stdout);
        out
    }

    /// Runs `get-token`, asserts success, and checks the token: this issuer, this client, the
    /// Okta groups.
    #[track_caller]
    fn get_token(&mut self) -> ExecCredential {
        let out = self.koidc("get-token", &[]);
        out.assert_success();
        let cred = parse_exec_credential(&out);
        assert_eq!(cred.claims["iss"], self.idp.issuer.as_str());
        assert_eq!(cred.claims["aud"], CLIENT_ID);
        assert_eq!(cred.claims["email"], USER_EMAIL);
        assert_eq!(cred.claims["groups"], serde_json::json!(USER_GROUPS));
        cred
    }

    /// The cached (ID token, refresh token) of the one identity.
    fn cached_tokens(&self) -> Option<(String, String)> {
        cached_id_and_refresh_tokens(&self.cache_dir)
    }

    /// The cached refresh token; fails the test when there is none.
    #[track_caller]
    fn cached_refresh_token(&self) -> String {
        self.cached_tokens()
            .expect("a cached entry with a refresh token")
            .1
    }

    fn remember_cached_tokens(&mut self) {
        if let Some((id, refresh)) = self.cached_tokens() {
            self.secrets.id_tokens.insert(id);
            self.secrets.other.insert(refresh);
        }
    }

    /// The redirect URIs of the authorization requests the provider answered with a code.
    fn authorized_redirect_uris(&self) -> Vec<String> {
        self.idp
            .events_of("authorize")
            .iter()
            .map(|e| e["redirect_uri"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

impl Drop for OktaLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.idp.print_what_happened();
        }
    }
}

/// Fails (with a reason) unless `port` on 127.0.0.1 can be bound right now.
#[track_caller]
fn assert_port_free(port: u16) {
    if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
        panic!(
            "127.0.0.1:{port} is in use by another process ({e}); the Okta tests need it free \
             (koidc's Okta preset listens there)"
        );
    }
}

#[test]
fn okta_login_listens_on_port_8000_and_the_token_carries_the_okta_groups() {
    let _ports = fixed_ports();
    assert_port_free(PORT);
    let mut lab = OktaLab::start(OktaOptions::default());

    lab.get_token();
    assert_eq!(lab.browser.launches(), 1);
    assert_eq!(
        lab.authorized_redirect_uris(),
        [format!("http://127.0.0.1:{PORT}/callback")]
    );
    // The preset asked for refresh tokens and groups (the provider answered the code with a
    // refresh token, which only `offline_access` gets).
    let authorize = &lab.idp.events_of("authorize")[0];
    let scope: Vec<&str> = authorize["scope"].as_str().unwrap().split(' ').collect();
    for wanted in ["openid", "offline_access", "groups", "email"] {
        assert!(scope.contains(&wanted), "scope {scope:?} lacks {wanted}");
    }
    assert!(!lab.cached_refresh_token().is_empty());

    let out = lab.koidc("whoami", &["-o", "json"]);
    out.assert_success();
    let identity: Value = serde_json::from_str(&out.stdout).expect("whoami -o json is JSON");
    assert_eq!(identity["groups"], serde_json::json!(USER_GROUPS), "{identity}");
    assert_eq!(identity["email"], USER_EMAIL, "{identity}");
    assert_eq!(
        identity["scopes"],
        serde_json::json!(["email", "groups", "offline_access"]),
        "the preset scopes are part of the cache key: {identity}"
    );

    // A second call is served from the cache: no browser, no request to the provider.
    let before = lab.idp.events().len();
    lab.get_token();
    assert_eq!(lab.browser.launches(), 1);
    assert_eq!(lab.idp.events().len(), before);
}

#[test]
fn okta_redirect_host_localhost_sends_the_registered_localhost_uri_and_the_login_completes() {
    let _ports = fixed_ports();
    assert_port_free(PORT);
    let mut lab = OktaLab::start(OktaOptions::default());
    let out = lab.koidc("get-token", &["--redirect-host", "localhost"]);
    out.assert_success();
    assert_eq!(lab.browser.launches(), 1);
    assert_eq!(
        lab.authorized_redirect_uris(),
        [format!("http://localhost:{PORT}/callback")]
    );
}

#[test]
fn okta_login_falls_back_to_port_18000_when_8000_is_taken() {
    let _ports = fixed_ports();
    assert_port_free(FALLBACK_PORT);
    // Occupy 8000 (if another process already holds it, it is taken all the same).
    let _occupied = TcpListener::bind(("127.0.0.1", PORT)).ok();
    assert!(
        TcpListener::bind(("127.0.0.1", PORT)).is_err(),
        "port {PORT} should be taken for this test"
    );
    let mut lab = OktaLab::start(OktaOptions::default());

    lab.get_token();
    assert_eq!(
        lab.authorized_redirect_uris(),
        [format!("http://127.0.0.1:{FALLBACK_PORT}/callback")]
    );
}

#[test]
fn okta_refresh_twice_uses_the_rotated_token_and_the_provider_rejects_the_first_on_reuse() {
    let _ports = fixed_ports();
    assert_port_free(PORT);
    // ID tokens that enter koidc's 90 s renewal margin after 6 s.
    let mut lab = OktaLab::start(OktaOptions {
        id_token_ttl: Some(96),
        ..OktaOptions::default()
    });

    let [rt0, rt1, rt2] = login_and_refresh_twice(|| {
        let cred = lab.get_token();
        (cred, lab.cached_refresh_token())
    });
    assert_eq!(
        lab.browser.launches(),
        1,
        "a refresh fell back to a browser login"
    );

    // The provider saw exactly: code, refresh with rt0 (-> rt1), refresh with rt1 (-> rt2).
    let grants: Vec<(String, String, String)> = lab
        .idp
        .events_of("token")
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (s("grant_type"), s("refresh_in"), s("refresh_out"))
        })
        .collect();
    assert_eq!(
        grants,
        [
            ("authorization_code".into(), String::new(), fingerprint(&rt0)),
            ("refresh_token".into(), fingerprint(&rt0), fingerprint(&rt1)),
            ("refresh_token".into(), fingerprint(&rt1), fingerprint(&rt2)),
        ]
    );
    assert!(lab.idp.events_of("token_error").is_empty());

    // Reusing the first (rotated) refresh token is refused by the provider.
    let (status, body) = lab.idp.try_refresh(&rt0);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let errors = lab.idp.events_of("token_error");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["refresh_in"], fingerprint(&rt0).as_str());
    assert_eq!(errors[0]["description"], "refresh token already used");
}

#[test]
fn okta_logout_revokes_the_refresh_token_at_the_provider() {
    let _ports = fixed_ports();
    assert_port_free(PORT);
    let mut lab = OktaLab::start(OktaOptions::default());
    lab.get_token();
    let refresh_token = lab.cached_refresh_token();

    let out = lab.koidc("logout", &[]);
    out.assert_success();
    assert!(out.stdout.contains("logged out of"), "{}", out.stdout);
    assert!(lab.cached_tokens().is_none(), "logout left the cache entry");

    let revoked: Vec<Value> = lab.idp.events_of("revocation");
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["token"], fingerprint(&refresh_token).as_str());
    let (status, body) = lab.idp.try_refresh(&refresh_token);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");

    lab.koidc("whoami", &[]).assert_failure();
}

#[test]
fn okta_unregistered_redirect_port_names_the_redirect_uris_to_register() {
    // Any port but the registered ones: a free one, under the lock of the tests that listen on
    // fixed ports.
    let _ports = fixed_ports();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    assert!(port != PORT && port != FALLBACK_PORT);
    let listen = format!("127.0.0.1:{port}");
    let mut lab = OktaLab::start(OktaOptions::default());
    let started = Instant::now();
    let out = lab.koidc("get-token", &["--listen", &listen]);
    let line = out.assert_failure().assert_one_error_line();
    assert!(
        line.contains(
            "register http://127.0.0.1:8000/callback and http://127.0.0.1:18000/callback as \
             sign-in redirect URIs of the app"
        ),
        "{line}"
    );
    assert!(line.contains(&format!("http://{listen}/callback")), "{line}");
    // Found before any browser opened, not by waiting for the 60 s timeout.
    assert_eq!(lab.browser.launches(), 0);
    assert!(started.elapsed() < Duration::from_secs(30));
    let errors = lab.idp.events_of("authorize_error");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["redirect_uri"], format!("http://{listen}/callback"));
}

#[test]
fn okta_without_a_groups_scope_names_the_authorization_server_setting() {
    let _ports = fixed_ports();
    assert_port_free(PORT);
    let mut lab = OktaLab::start(OktaOptions {
        no_groups_scope: true,
        ..OktaOptions::default()
    });
    let out = lab.koidc("get-token", &[]);
    let line = out.assert_failure().assert_one_error_line();
    assert!(
        line.contains(
            "add a `groups` scope/claim on the authorization server (Security > API > \
             Authorization Servers > Scopes/Claims)"
        ),
        "{line}"
    );
    assert!(line.contains("invalid_scope"), "{line}");
    assert_eq!(lab.browser.launches(), 0);
}

/// A random client secret for [`CI_CLIENT_ID`].
fn random_secret() -> String {
    use rand::Rng as _;
    let tail: String = rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("ci-secret-{tail}")
}

/// One pipeline test's world: the provider with [`CI_CLIENT_ID`] registered, and koidc runs as
/// a CI job would make them (no browser, the secret never on the command line).
struct CiLab {
    /// The client secret of [`CI_CLIENT_ID`].
    secret: String,
    /// What must not show in any output: the secret (and any wrong one tried).
    secrets: Secrets,
    idp: OktaIdp,
    /// HOME and the cache dir are in it. Last, so it is removed after the provider has stopped.
    tmp: TempDir,
}

impl CiLab {
    fn start(opaque: bool) -> CiLab {
        let (tmp, _) = temp_home("koidc-okta-ci-");
        let secret = random_secret();
        let idp = OktaIdp::start(
            tmp.path(),
            &OktaOptions {
                ci_client_secret: Some(secret.clone()),
                ci_opaque: opaque,
                ..OktaOptions::default()
            },
        );
        let mut secrets = Secrets::default();
        secrets.other.insert(secret.clone());
        CiLab {
            secret,
            secrets,
            idp,
            tmp,
        }
    }

    fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    fn cache_dir(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    /// `koidc get-token --grant client-credentials --issuer … --client-id koidc-ci --audience
    /// AUDIENCE` with `extra` flags and `env`; checks nothing leaked (the secret is nowhere in
    /// the command line, stdout or stderr; stdout may hold the token).
    fn get_token(&mut self, audience: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = clean_command(koidc_bin(), &self.home());
        cmd.args(["get-token", "--grant", "client-credentials"])
            .args(["--issuer", &self.idp.issuer, "--client-id", CI_CLIENT_ID])
            .args(["--audience", audience])
            .args([
                "--cache",
                "file",
                "--cache-dir",
                &self.cache_dir().display().to_string(),
            ])
            .args(extra)
            .envs(env.iter().copied());
        assert!(
            cmd.get_args()
                .all(|a| !a.to_string_lossy().contains(&self.secret)),
            "the client secret is on the command line"
        );
        let out = run(&mut cmd);
        assert_no_leak(&out, &self.secrets, Stdout::MayHoldIdToken);
        out
    }

    /// [`Self::get_token`] with the secret in KOIDC_CLIENT_SECRET.
    fn get_token_with_env_secret(&mut self, audience: &str) -> Output {
        let secret = self.secret.clone();
        self.get_token(audience, &[], &[("KOIDC_CLIENT_SECRET", &secret)])
    }

    /// The client credentials grants the provider answered with a token.
    fn issued(&self) -> usize {
        self.idp
            .events_of("token")
            .iter()
            .filter(|e| e["grant_type"] == "client_credentials")
            .count()
    }

    /// Checks the credential is the provider's JWT access token for the client and
    /// [`CI_AUDIENCE`], expiring in the provider's 600 s.
    #[track_caller]
    fn assert_client_token(&self, cred: &ExecCredential) {
        assert_eq!(cred.claims["iss"], self.idp.issuer.as_str());
        assert_eq!(cred.claims["aud"], CI_AUDIENCE);
        assert_eq!(cred.claims["sub"], CI_CLIENT_ID);
        assert_eq!(cred.claims["client_id"], CI_CLIENT_ID);
        let left = cred.exp() - chrono::Utc::now().timestamp();
        assert!(
            (500..=600).contains(&left),
            "the token expires in {left} s, not about 600 s"
        );
    }
}

impl Drop for CiLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.idp.print_what_happened();
        }
    }
}

#[test]
fn okta_client_credentials_give_a_jwt_access_token_for_the_audience_and_the_cache_serves_the_second_call() {
    let mut lab = CiLab::start(false);
    let out = lab.get_token_with_env_secret(CI_AUDIENCE);
    out.assert_success();
    let first = parse_exec_credential(&out);
    lab.assert_client_token(&first);
    assert_eq!(lab.issued(), 1);

    // The second call is served from the cache: the same token, no new request.
    let out = lab.get_token_with_env_secret(CI_AUDIENCE);
    out.assert_success();
    let second = parse_exec_credential(&out);
    assert_eq!(second.token, first.token, "the second call got another token");
    assert_eq!(lab.issued(), 1, "the second call asked the provider again");
    assert!(lab.idp.events_of("token_error").is_empty());
}

#[test]
fn okta_client_credentials_read_the_secret_from_a_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut lab = CiLab::start(false);
    let file = lab.home().join("client-secret");
    std::fs::write(&file, format!("{}\n", lab.secret)).expect("write the secret file");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    let file = file.display().to_string();
    let out = lab.get_token(CI_AUDIENCE, &["--client-secret-file", &file], &[]);
    out.assert_success();
    lab.assert_client_token(&parse_exec_credential(&out));
    assert_eq!(lab.issued(), 1);
}

#[test]
fn okta_client_credentials_with_a_wrong_secret_fail_in_one_line_without_the_secret() {
    let mut lab = CiLab::start(false);
    let wrong = random_secret();
    lab.secrets.other.insert(wrong.clone());
    let out = lab.get_token(CI_AUDIENCE, &[], &[("KOIDC_CLIENT_SECRET", &wrong)]);
    let line = out.assert_failure().assert_one_error_line();
    assert!(
        line.contains("refused the client credentials grant: invalid_client"),
        "{line}"
    );
    assert!(
        line.contains("KOIDC_CLIENT_SECRET or --client-secret-file"),
        "{line}"
    );
    assert_eq!(lab.issued(), 0);
    let errors = lab.idp.events_of("token_error");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["error"], "invalid_client");
}

#[test]
fn okta_client_credentials_refuse_an_access_token_for_another_audience() {
    let mut lab = CiLab::start(false);
    let out = lab.get_token_with_env_secret("other");
    let line = out.assert_failure().assert_one_error_line();
    assert!(line.contains("must contain `other`"), "{line}");
    assert!(
        line.contains("`kubernetes`"),
        "the line names the token's audience: {line}"
    );
    // The provider did issue one; koidc refused to hand it out, and did not cache it.
    assert_eq!(lab.issued(), 1);
    let out = lab.get_token_with_env_secret("other");
    out.assert_failure().assert_one_error_line();
}

#[test]
fn okta_client_credentials_name_an_opaque_access_token() {
    let mut lab = CiLab::start(true);
    let out = lab.get_token_with_env_secret(CI_AUDIENCE);
    let line = out.assert_failure().assert_one_error_line();
    assert!(line.contains("opaque access token"), "{line}");
    assert!(line.contains("JWT access tokens"), "{line}");
    assert_eq!(lab.issued(), 1);
}

// ---------------------------------------------------------------------------------------------
// What koidc asks of the provider: --auth-param, --request-header, --token-type access

/// The one error line of a failed login, after the line announcing the browser.
#[track_caller]
fn login_error_line(out: &Output) -> String {
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("opened a browser"), "{lines:?}");
    lines[1].to_owned()
}

/// The JSON cache entries of `lab`.
fn cache_entries(lab: &OktaLab) -> Vec<Value> {
    files_under(&lab.cache_dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter_map(|p| serde_json::from_slice::<Value>(&std::fs::read(p).ok()?).ok())
        .collect()
}

#[test]
fn okta_auth_params_reach_the_provider_max_age_is_checked_and_a_login_hint_keeps_its_own_entry() {
    let _ports = fixed_ports();
    let mut lab = OktaLab::start(OktaOptions::default());
    let hinted = [
        "--auth-param",
        "login_hint=okta-user@example.com",
        "--auth-param",
        "max_age=3600",
        "--request-header",
        "X-Koidc-Test=present",
    ];
    let out = lab.koidc("get-token", &hinted);
    out.assert_success();
    let cred = parse_exec_credential(&out);
    // max_age makes the provider put auth_time in the ID token; koidc checked it. (max_age is
    // the token's lifetime here: a shorter one would cap expirationTimestamp at auth_time +
    // max_age, which the unit tests of the OpenID Connect source pin.)
    assert!(cred.claims["auth_time"].as_i64().is_some(), "{}", cred.claims);
    let authorize = &lab.idp.events_of("authorize")[0];
    assert_eq!(authorize["login_hint"], "okta-user@example.com", "{authorize}");
    assert_eq!(authorize["max_age"], "3600", "{authorize}");
    // The header went with every request koidc made: discovery, keys and the token request.
    let paths: Vec<String> = lab
        .idp
        .events_of("header")
        .iter()
        .map(|e| e["path"].as_str().unwrap_or_default().to_owned())
        .collect();
    for wanted in ["/.well-known/openid-configuration", "/v1/keys", "/v1/token"] {
        assert!(
            paths.iter().any(|p| p.ends_with(wanted)),
            "{wanted} not in {paths:?}"
        );
    }
    // Never shown, not even with -v.
    let out = lab.koidc("get-token", &[&hinted[..], &["-vv"]].concat());
    out.assert_success();
    assert!(!out.stderr.contains("present"), "{}", out.stderr);
    assert_eq!(
        lab.browser.launches(),
        1,
        "the hinted entry is served from the cache"
    );

    // Without the hint it is another account: another entry, another login.
    lab.koidc("get-token", &[]).assert_success();
    assert_eq!(lab.browser.launches(), 2);
    assert_eq!(cache_entries(&lab).len(), 2);
}

#[test]
fn okta_owned_or_hostile_auth_params_and_headers_are_refused_before_the_browser_opens() {
    let _ports = fixed_ports();
    let mut lab = OktaLab::start(OktaOptions::default());
    for extra in [
        &["--auth-param", "state=forged"][..],
        &["--auth-param", "redirect_uri=https://evil.example/cb"],
        &["--auth-param", "prompt=login\r\nX: y"],
        &["--auth-param", "prompt=a", "--auth-param", "prompt=b"],
        &["--request-header", "Host=evil.example"],
        &["--request-header", "Authorization=Bearer s3cret-header"],
        &["--request-header", "X-A=s3cret-header\r\nX-B: 1"],
    ] {
        let out = lab.koidc("get-token", extra);
        out.assert_failure();
        let line = out.assert_one_error_line();
        assert!(!line.contains("s3cret-header"), "{line}");
    }
    assert_eq!(lab.browser.launches(), 0);
    assert!(lab.idp.events_of("authorize").is_empty());
}

#[test]
fn okta_token_type_access_gives_the_custom_authorization_servers_jwt_for_its_audience() {
    let _ports = fixed_ports();
    let mut lab = OktaLab::start(OktaOptions {
        user_audience: Some("api://default"),
        ..OktaOptions::default()
    });
    let access = ["--token-type", "access", "--audience", "api://default"];
    let out = lab.koidc("get-token", &access);
    out.assert_success();
    let cred = parse_exec_credential(&out);
    assert_eq!(cred.claims["aud"], "api://default", "{}", cred.claims);
    assert_eq!(cred.claims["iss"], lab.idp.issuer.as_str());
    // (parse_exec_credential checked that the credential's expiry is this token's exp.)
    // Served from the cache the second time.
    let before = lab.idp.events().len();
    let again = parse_exec_credential(&lab.koidc("get-token", &access));
    assert_eq!(again.claims["jti"], cred.claims["jti"]);
    assert_eq!(lab.idp.events().len(), before);
    // The ID token of the same client is another credential: another entry.
    let id = lab.get_token();
    assert_eq!(id.claims["aud"], CLIENT_ID);
    assert_eq!(lab.browser.launches(), 2);

    // Another audience than the tokens': refused in one line naming both.
    let out = lab.koidc(
        "get-token",
        &["--token-type", "access", "--audience", "kubernetes"],
    );
    out.assert_failure();
    let line = login_error_line(&out);
    assert!(
        line.contains("kubernetes") && line.contains("api://default"),
        "{line}"
    );
}

#[test]
fn okta_token_type_access_with_opaque_access_tokens_says_how_to_get_jwts() {
    let _ports = fixed_ports();
    let mut lab = OktaLab::start(OktaOptions::default());
    let out = lab.koidc(
        "get-token",
        &["--token-type", "access", "--audience", "api://default"],
    );
    out.assert_failure();
    let line = login_error_line(&out);
    assert!(
        line.contains("opaque")
            && line.contains("custom authorization server")
            && line.contains("--token-type id"),
        "{line}"
    );
    assert!(cache_entries(&lab).is_empty(), "nothing is cached");
}
