//! koidc against a real Keycloak, the third real identity provider of the suite (after Dex and
//! the Okta-like oidc-provider): the distribution `tests/e2e/deps.sh keycloak` caches (exported
//! as `KOIDC_E2E_KEYCLOAK`, with a JDK as `KOIDC_E2E_KEYCLOAK_JAVA_HOME`), started once per test
//! run in dev mode (in-memory H2) on loopback, serving HTTP and, for the kube-apiserver, HTTPS
//! with a certificate of a test CA. It imports the realm `tests/keycloak/realm.json`: the public
//! client `koidc` (standard flow, PKCE S256, redirect URI `http://127.0.0.1/*`, the device
//! grant, a Group Membership mapper `groups` without full paths), `koidc-short` (the same with
//! 96-second tokens, for refreshes), the confidential `koidc-ci` (client credentials, audience
//! `kubernetes`), the user `alice` in `developers` and `ops`, and refresh token rotation
//! (`revokeRefreshToken`, no reuse). More clients go into that file; [`keycloak`] starts the
//! server for any test module.
//!
//! Keycloak derives its issuer from the request's Host header in dev mode, so each test puts its
//! own counting proxy ([`Proxy`]) in front of the shared server: the issuer is the proxy's URL
//! plus `/realms/koidc`, and the proxy sees every request of that test (cache hits make none).
//!
//! Proves: a browser login whose ID token carries the realm's groups, the cache hit, refreshes
//! with rotation (Keycloak refuses the old refresh token, koidc keeps the new one), logout's
//! revocation, the device grant, client credentials with the confidential client, `koidc
//! setup` and `koidc doctor`, and kubectl through a real kube-apiserver that trusts Keycloak.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::browser::{BrowserLog, fake_browser};
use crate::dex::{die_with_parent, free_port};
use crate::kube::{APP_NAMESPACE, KubeCluster, KubeIdp, Pki, keep_servers_until_exit};
use crate::proxy::Proxy;
use crate::support::{
    ExecCredential, Live, Output, RUN_TIMEOUT, Stdout, assert_no_leak, cached_id_and_refresh_tokens,
    clean_command, koidc_bin, login_and_refresh_twice, parse_exec_credential, repo_root, run, runtime,
};

/// The realm of `tests/keycloak/realm.json`.
pub const REALM: &str = "koidc";
/// Its public client for people (standard flow, PKCE, device grant, groups mapper).
pub const CLIENT_ID: &str = "koidc";
/// The same client with 96-second tokens: they enter koidc's renewal margin after 6 s.
pub const SHORT_CLIENT_ID: &str = "koidc-short";
/// The confidential client of pipelines, its secret, and the audience of its access tokens.
pub const CI_CLIENT_ID: &str = "koidc-ci";
pub const CI_SECRET: &str = "koidc-ci-secret-0123456789";
pub const CI_AUDIENCE: &str = "kubernetes";
/// The realm's user and the groups the mapper puts into its tokens.
pub const USERNAME: &str = "alice";
pub const USER_PASSWORD: &str = "alice-password";
pub const USER_EMAIL: &str = "alice@example.com";
pub const USER_GROUPS: [&str; 2] = ["developers", "ops"];

/// How long Keycloak may take to answer discovery (a JVM on two cores shared with compilers).
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// The running Keycloak of this test run.
pub struct Keycloak {
    child: Mutex<Child>,
    http: String,
    https: String,
    /// The test CA that signed Keycloak's HTTPS certificate (PEM and file).
    pub pki: Pki,
    log: PathBuf,
    dir: PathBuf,
}

impl Keycloak {
    /// `http://127.0.0.1:PORT` of Keycloak itself (tests go through a proxy instead).
    pub fn http_url(&self) -> &str {
        &self.http
    }

    /// The realm's issuer over HTTPS, `https://127.0.0.1:PORT/realms/koidc`.
    pub fn https_issuer(&self) -> String {
        format!("{}/realms/{REALM}", self.https)
    }

    /// The server's log so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|p| p.into_inner()).id()
    }
}

/// The Keycloak shared by every test of this run, started by the first test that asks (on a
/// thread that lives until the test binary exits, so that the parent-death signal does not kill
/// it with that test; it is killed at exit). When it did not start, every test fails with why.
pub fn keycloak() -> &'static Keycloak {
    static SERVER: OnceLock<Result<&'static Keycloak, String>> = OnceLock::new();
    let started = SERVER.get_or_init(|| keep_servers_until_exit("Keycloak", start, kill_at_exit));
    match started {
        Ok(server) => server,
        Err(message) => panic!("Keycloak did not start: {message}"),
    }
}

static AT_EXIT: Mutex<Option<&'static Keycloak>> = Mutex::new(None);

fn kill_at_exit(server: &'static Keycloak) {
    static REGISTER: Once = Once::new();
    *AT_EXIT.lock().unwrap_or_else(|p| p.into_inner()) = Some(server);
    REGISTER.call_once(|| {
        // SAFETY: registers a plain function with no arguments; it runs once, at exit.
        unsafe {
            libc::atexit(kill_keycloak);
        }
    });
}

extern "C" fn kill_keycloak() {
    let Some(server) = *AT_EXIT.lock().unwrap_or_else(|p| p.into_inner()) else {
        return;
    };
    // kc.sh runs java as its child: kill the process group kc.sh leads.
    let pid = server.pid() as libc::pid_t;
    // SAFETY: our own child (and its group, made by setpgid below), never reaped before.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    let _ = std::fs::remove_dir_all(&server.dir);
}

/// The distribution `tests/e2e/deps.sh keycloak` unpacked, and the JDK to run it with.
fn installation() -> (PathBuf, PathBuf) {
    let hint = "Keycloak is needed for this test: run ./tests/run.sh, or `tests/e2e/deps.sh keycloak` \
                and `eval \"$(tests/e2e/deps.sh --print-env keycloak)\"` so that KOIDC_E2E_KEYCLOAK \
                and KOIDC_E2E_KEYCLOAK_JAVA_HOME are set";
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("{name} is not set. {hint}"))
    };
    let (dist, java_home) = (var("KOIDC_E2E_KEYCLOAK"), var("KOIDC_E2E_KEYCLOAK_JAVA_HOME"));
    assert!(
        dist.join("bin/kc.sh").is_file(),
        "KOIDC_E2E_KEYCLOAK={} has no bin/kc.sh. {hint}",
        dist.display()
    );
    assert!(
        java_home.join("bin/java").is_file(),
        "KOIDC_E2E_KEYCLOAK_JAVA_HOME={} has no bin/java. {hint}",
        java_home.display()
    );
    (dist, java_home)
}

/// A private Keycloak home in `home` over the cached distribution `dist`: its own `bin/kc.sh`
/// (kc.sh takes its home from where it lies), `conf`, `data/import` (the realm) and the Quarkus
/// build files (`lib/quarkus`, rewritten if Keycloak ever re-builds), links to the rest. Nothing
/// is written into the cache, so concurrent runs do not meet.
fn private_home(dist: &Path, home: &Path) {
    let copy_dir = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).expect("create a Keycloak dir");
        for entry in std::fs::read_dir(from).expect("read a Keycloak dir").flatten() {
            if entry.path().is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy a Keycloak file");
            }
        }
    };
    let link = |name: &str| {
        std::os::unix::fs::symlink(dist.join(name), home.join(name)).expect("link into the Keycloak home")
    };
    copy_dir(&dist.join("bin"), &home.join("bin"));
    copy_dir(&dist.join("conf"), &home.join("conf"));
    copy_dir(&dist.join("lib/quarkus"), &home.join("lib/quarkus"));
    std::fs::copy(dist.join("lib/quarkus-run.jar"), home.join("lib/quarkus-run.jar"))
        .expect("copy quarkus-run.jar");
    for name in ["lib/lib", "lib/app", "themes", "providers", "conf/truststores"] {
        if dist.join(name).exists() {
            link(name);
        }
    }
    let import = home.join("data/import");
    std::fs::create_dir_all(&import).expect("create data/import");
    std::fs::copy(
        repo_root().join("tests/keycloak/realm.json"),
        import.join("realm.json"),
    )
    .expect("copy tests/keycloak/realm.json");
}

/// Starts Keycloak (see the module doc) and waits for the realm's discovery document.
fn start() -> Keycloak {
    let (dist, java_home) = installation();
    let dir = tempfile::Builder::new()
        .prefix("koidc-keycloak-")
        .tempdir()
        .expect("temp dir")
        .keep();
    let pki = Pki::generate(&dir.join("pki"));
    let mut last_log = String::new();
    for attempt in 0..3 {
        let home = dir.join(format!("home-{attempt}"));
        private_home(&dist, &home);
        let (http, https) = (free_port(), free_port());
        let log = dir.join(format!("keycloak-{attempt}.log"));
        let log_file = std::fs::File::create(&log).expect("create the Keycloak log");
        let mut cmd = Command::new(home.join("bin/kc.sh"));
        cmd.arg("start-dev")
            .arg("--db=dev-mem")
            .arg("--import-realm")
            .arg("--http-host=127.0.0.1")
            .arg(format!("--http-port={}", http.port()))
            .arg(format!("--https-port={}", https.port()))
            .arg(format!(
                "--https-certificate-file={}",
                pki.dex_cert_file.display()
            ))
            .arg(format!(
                "--https-certificate-key-file={}",
                pki.dex_key_file.display()
            ))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("JAVA_HOME", &java_home)
            // A small heap: the default takes a share of the machine's memory.
            .env("JAVA_OPTS_KC_HEAP", "-Xms64m -Xmx768m")
            .current_dir(&home)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup the Keycloak log"))
            .stderr(log_file);
        {
            use std::os::unix::process::CommandExt as _;
            // Its own process group, so that java (kc.sh's child) dies with it at exit.
            cmd.process_group(0);
        }
        die_with_parent(&mut cmd);
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start kc.sh: {e}"));
        let discovery = format!("http://{http}/realms/{REALM}/.well-known/openid-configuration");
        while started.elapsed() < START_TIMEOUT {
            if get_ok(&discovery) {
                // Straight to stderr, past the test harness's capture: every run shows the
                // start-up time.
                let _ = writeln!(
                    std::io::stderr(),
                    "keycloak: started in {:.1} s (http://{http}, https://{https})",
                    started.elapsed().as_secs_f64()
                );
                return Keycloak {
                    child: Mutex::new(child),
                    http: format!("http://{http}"),
                    https: format!("https://{https}"),
                    pki,
                    log,
                    dir,
                };
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        // SAFETY: our own child's process group (made by process_group(0)).
        unsafe {
            libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = child.wait();
        last_log = std::fs::read_to_string(&log).unwrap_or_default();
    }
    let tail: Vec<&str> = last_log.lines().rev().take(40).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    panic!(
        "Keycloak did not answer discovery within {START_TIMEOUT:?} (three tries); last log \
         lines:\n{}",
        tail.join("\n")
    );
}

/// Whether a GET of `url` answers 200.
fn get_ok(url: &str) -> bool {
    runtime().block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("build an HTTP client");
        client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
}

/// POSTs `form` to `url` (no redirects followed): the status and the JSON body (`null` when the
/// body is not JSON).
fn post_form(url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    runtime().block_on(async {
        let resp = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("build an HTTP client")
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("POST to Keycloak");
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    })
}

/// One test's world: the shared Keycloak behind this test's counting proxy, a temp dir with HOME,
/// cache dir and browser log, and koidc runs logging in as [`USERNAME`] at `client_id`.
pub struct KeycloakLab {
    pub keycloak: &'static Keycloak,
    pub proxy: Proxy,
    pub client_id: &'static str,
    pub home: PathBuf,
    pub cache_dir: PathBuf,
    pub browser: BrowserLog,
    tmp: TempDir,
}

impl KeycloakLab {
    pub fn start(client_id: &'static str) -> KeycloakLab {
        let keycloak = keycloak();
        let proxy = Proxy::start();
        proxy.set_upstream(keycloak.http_url());
        let tmp = tempfile::Builder::new()
            .prefix("koidc-kc-")
            .tempdir()
            .expect("temp dir");
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).expect("create HOME");
        KeycloakLab {
            keycloak,
            proxy,
            client_id,
            cache_dir: tmp.path().join("cache"),
            browser: BrowserLog::new(tmp.path()),
            home,
            tmp,
        }
    }

    /// `http://127.0.0.1:PROXY/realms/koidc`: Keycloak names the host it was asked on.
    pub fn issuer(&self) -> String {
        format!("{}/realms/{REALM}", self.proxy.url())
    }

    /// `koidc SUBCOMMAND --issuer … --client-id … --scope email` with the file cache in the
    /// test's dir and (but for `whoami`) the fake browser logging in as [`USERNAME`].
    pub fn command(&self, subcommand: &str, extra: &[&str]) -> Command {
        let mut cmd = clean_command(koidc_bin(), &self.home);
        cmd.arg(subcommand)
            .args(["--issuer", &self.issuer(), "--client-id", self.client_id])
            .args(["--scope", "email", "--cache", "file", "--cache-dir"])
            .arg(&self.cache_dir);
        if subcommand != "whoami" {
            cmd.args(["--browser-command", &fake_browser().display().to_string()])
                .args(["--timeout", "60"]);
        }
        cmd.args(extra)
            .env("FAKE_BROWSER_LOG", &self.browser.path)
            .env("FAKE_BROWSER_LOGIN", USERNAME)
            .env("FAKE_BROWSER_PASSWORD", USER_PASSWORD);
        cmd
    }

    /// Runs koidc to completion and checks that no secret seen on the wire shows in its output
    /// (nor any cached token).
    pub fn koidc(&self, subcommand: &str, extra: &[&str]) -> Output {
        let out = run(&mut self.command(subcommand, extra));
        self.assert_no_leak(&out, subcommand == "get-token");
        out
    }

    #[track_caller]
    fn assert_no_leak(&self, out: &Output, may_hold_id_token: bool) {
        let mut secrets = self.proxy.secrets();
        if let Some((id, refresh)) = self.cached_tokens() {
            secrets.id_tokens.insert(id);
            secrets.other.insert(refresh);
        }
        let stdout = if may_hold_id_token {
            Stdout::MayHoldIdToken
        } else {
            Stdout::NoSecrets
        };
        assert_no_leak(out, &secrets, stdout);
    }

    /// Runs `get-token`, asserts success, and checks the ID token: this issuer, this client,
    /// the user's email and the realm's groups.
    #[track_caller]
    pub fn get_token(&self) -> ExecCredential {
        let out = self.koidc("get-token", &[]);
        out.assert_success();
        self.assert_user_token(&out)
    }

    #[track_caller]
    fn assert_user_token(&self, out: &Output) -> ExecCredential {
        let cred = parse_exec_credential(out);
        assert_eq!(cred.claims["iss"], self.issuer().as_str(), "{}", cred.claims);
        assert_eq!(cred.claims["aud"], self.client_id, "{}", cred.claims);
        assert_eq!(cred.claims["typ"], "ID", "an ID token: {}", cred.claims);
        assert_eq!(cred.claims["email"], USER_EMAIL, "{}", cred.claims);
        assert_eq!(cred.claims["preferred_username"], USERNAME, "{}", cred.claims);
        assert_eq!(
            cred.claims["groups"],
            serde_json::json!(USER_GROUPS),
            "{}",
            cred.claims
        );
        cred
    }

    /// The cached (ID token, refresh token) of the one identity.
    pub fn cached_tokens(&self) -> Option<(String, String)> {
        cached_id_and_refresh_tokens(&self.cache_dir)
    }

    /// The cached refresh token; fails the test when there is none.
    #[track_caller]
    pub fn cached_refresh_token(&self) -> String {
        self.cached_tokens()
            .expect("a cached entry with a refresh token")
            .1
    }

    /// A refresh grant with `refresh_token` for the lab's client, as any client could send it
    /// (through the proxy, so that the issuer matches): the status and the JSON body.
    pub fn try_refresh(&self, refresh_token: &str) -> (u16, Value) {
        let url = format!("{}/protocol/openid-connect/token", self.issuer());
        post_form(
            &url,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", self.client_id),
            ],
        )
    }

    /// The `grant_type`s of the token requests the proxy forwarded since `mark`.
    pub fn grants_since(&self, mark: usize) -> Vec<String> {
        self.proxy.grants_since(mark)
    }
}

impl Drop for KeycloakLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- the proxy forwarded ---");
            for seen in self.proxy.seen() {
                eprintln!("{} {} {:?}", seen.method, seen.path, seen.grant_type);
            }
            let log = self.keycloak.log_text();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- last Keycloak log lines ({}) ---", self.tmp.path().display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

#[test]
fn keycloak_browser_login_gives_an_id_token_with_the_realm_groups_and_the_next_call_is_a_cache_hit() {
    let lab = KeycloakLab::start(CLIENT_ID);

    let first = lab.get_token();
    assert_eq!(lab.browser.launches(), 1);
    assert_eq!(lab.grants_since(0), ["authorization_code"]);
    let (_, refresh_token) = lab.cached_tokens().expect("a cached login");
    assert!(!refresh_token.is_empty(), "Keycloak gave a refresh token");

    let out = lab.koidc("whoami", &["-o", "json"]);
    out.assert_success();
    let identity: Value = serde_json::from_str(&out.stdout).expect("whoami -o json is JSON");
    assert_eq!(identity["groups"], serde_json::json!(USER_GROUPS), "{identity}");
    assert_eq!(identity["email"], USER_EMAIL, "{identity}");

    // The second call is served from the cache: no browser, no request to Keycloak.
    let mark = lab.proxy.mark();
    let second = lab.get_token();
    assert_eq!(second.token, first.token);
    assert_eq!(lab.browser.launches(), 1);
    assert_eq!(lab.proxy.since(mark), [], "a cache hit makes no request");
}

/// Keycloak's access tokens are JWTs; an *Audience* mapper on the client adds the apiserver's
/// audience (`kubernetes`, access token only). `--token-type access --audience kubernetes` hands
/// kubectl the verified access token, served from the cache afterwards; an audience the token
/// does not carry is refused, and `--token-type access` without `--audience` is refused before
/// any request: no access token meant for another API is handed out.
#[test]
fn keycloak_token_type_access_hands_out_the_verified_access_token_for_the_audience_only() {
    let lab = KeycloakLab::start(CLIENT_ID);
    // The credential is the access token: stdout may hold it, and nothing else seen on the wire.
    let koidc = |extra: &[&str]| {
        let out = run(&mut lab.command("get-token", extra));
        let mut secrets = lab.proxy.secrets();
        if out.status.success() {
            let token = parse_exec_credential(&out).token;
            secrets.other.remove(&token);
            secrets.id_tokens.insert(token);
        }
        assert_no_leak(&out, &secrets, Stdout::MayHoldIdToken);
        out
    };
    let access = ["--token-type", "access", "--audience", "kubernetes"];
    let out = koidc(&access);
    out.assert_success();
    let cred = parse_exec_credential(&out);
    assert_eq!(cred.claims["iss"], lab.issuer().as_str(), "{}", cred.claims);
    assert_eq!(cred.claims["typ"], "Bearer", "an access token: {}", cred.claims);
    assert_eq!(cred.claims["azp"], CLIENT_ID, "{}", cred.claims);
    let aud = &cred.claims["aud"];
    assert!(
        aud == "kubernetes"
            || aud
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == "kubernetes")),
        "{}",
        cred.claims
    );
    assert_eq!(
        cred.claims["groups"],
        serde_json::json!(USER_GROUPS),
        "{}",
        cred.claims
    );

    let mark = lab.proxy.mark();
    let again = koidc(&access);
    assert_eq!(parse_exec_credential(again.assert_success()).token, cred.token);
    assert_eq!(lab.proxy.since(mark), [], "a cache hit makes no request");
    assert_eq!(lab.browser.launches(), 1);

    let other = koidc(&["--token-type", "access", "--audience", "another-cluster"]);
    other.assert_failure();
    assert_eq!(other.stdout, "", "a refused token reached stdout");
    assert!(other.stderr.contains("another-cluster"), "{}", other.stderr);

    let mark = lab.proxy.mark();
    let without = koidc(&["--token-type", "access"]);
    without.assert_failure();
    assert_eq!(without.stdout, "");
    assert_eq!(without.stderr.lines().count(), 1, "{}", without.stderr);
    assert!(without.stderr.contains("--audience"), "{}", without.stderr);
    assert_eq!(lab.proxy.since(mark), [], "refused before any request");
}

#[test]
fn keycloak_refresh_rotates_the_refresh_token_koidc_keeps_the_new_one_and_keycloak_refuses_the_old() {
    let lab = KeycloakLab::start(SHORT_CLIENT_ID);

    let [rt0, _, _] = login_and_refresh_twice(|| (lab.get_token(), lab.cached_refresh_token()));
    assert_eq!(
        lab.browser.launches(),
        1,
        "a refresh fell back to a browser login"
    );
    assert_eq!(
        lab.grants_since(0),
        ["authorization_code", "refresh_token", "refresh_token"]
    );

    // Keycloak refuses the first (rotated) refresh token.
    let (status, body) = lab.try_refresh(&rt0);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

#[test]
fn keycloak_logout_revokes_the_refresh_token_at_keycloak() {
    let lab = KeycloakLab::start(CLIENT_ID);
    lab.get_token();
    let refresh_token = lab.cached_refresh_token();

    let mark = lab.proxy.mark();
    let out = lab.koidc("logout", &[]);
    out.assert_success();
    assert!(out.stdout.contains("logged out of"), "{}", out.stdout);
    assert!(lab.cached_tokens().is_none(), "logout left the cache entry");
    let revocations: Vec<_> = lab
        .proxy
        .since(mark)
        .into_iter()
        .filter(|s| s.method == "POST" && s.path.ends_with("/protocol/openid-connect/revoke"))
        .collect();
    assert_eq!(
        revocations.len(),
        1,
        "one revocation request: {:?}",
        lab.proxy.since(mark)
    );

    let (status, body) = lab.try_refresh(&refresh_token);
    assert_eq!(status, 400, "the revoked refresh token still works: {body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

#[test]
fn keycloak_device_grant_is_approved_from_the_printed_code_and_the_token_has_the_groups() {
    let lab = KeycloakLab::start(CLIENT_ID);
    let mut koidc = Live::spawn(&mut lab.command("get-token", &["--grant", "device-code", "--no-browser"]));
    let prompt = koidc.wait_for_line("enter the code", Duration::from_secs(30));
    let (uri, code) = crate::device::parse_prompt(&prompt);
    assert_eq!(
        uri,
        format!("{}/device", lab.issuer()),
        "Keycloak's verification URI"
    );
    let complete = koidc.wait_for_line("or open ", Duration::from_secs(5));
    let complete = complete
        .rsplit("or open ")
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    assert_eq!(
        complete,
        format!("{uri}?user_code={code}"),
        "verification_uri_complete shown"
    );

    // The user opens the complete link on another device, logs in and grants the access.
    let mut approver = clean_command(repo_root().join("tests/support/device-approver.py"), &lab.home);
    approver
        .arg(&complete)
        .env("FAKE_BROWSER_LOGIN", USERNAME)
        .env("FAKE_BROWSER_PASSWORD", USER_PASSWORD);
    run(&mut approver).assert_success();

    let (out, _) = koidc.finish(RUN_TIMEOUT);
    out.assert_success();
    lab.assert_no_leak(&out, true);
    lab.assert_user_token(&out);
    assert_eq!(lab.browser.launches(), 0, "--no-browser: no browser");
    let grants = lab.grants_since(0);
    assert!(
        !grants.is_empty()
            && grants
                .iter()
                .all(|g| g == "urn:ietf:params:oauth:grant-type:device_code"),
        "only device token requests: {grants:?}"
    );
    assert!(
        !lab.cached_refresh_token().is_empty(),
        "the device login is cached with its refresh token"
    );
}

/// `koidc get-token --grant client-credentials --audience AUDIENCE` as the confidential client,
/// the secret in `KOIDC_CLIENT_SECRET`, the file cache in `cache_dir`.
fn client_credentials(lab: &KeycloakLab, secret: &str, audience: &str, cache_dir: &Path) -> Output {
    let mut cmd = clean_command(koidc_bin(), &lab.home);
    cmd.args(["get-token", "--grant", "client-credentials"])
        .args(["--issuer", &lab.issuer(), "--client-id", CI_CLIENT_ID])
        .args(["--audience", audience, "--cache", "file", "--cache-dir"])
        .arg(cache_dir)
        .env("KOIDC_CLIENT_SECRET", secret);
    let out = run(&mut cmd);
    // Every secret on the wire, but for the token koidc hands to kubectl on stdout.
    let mut secrets = lab.proxy.secrets();
    if out.success() {
        secrets.other.remove(&parse_exec_credential(&out).token);
    }
    secrets.other.insert(secret.to_owned());
    assert_no_leak(&out, &secrets, Stdout::MayHoldIdToken);
    out
}

#[test]
fn keycloak_client_credentials_give_the_confidential_client_a_jwt_for_the_audience() {
    let lab = KeycloakLab::start(CI_CLIENT_ID);

    let out = client_credentials(&lab, CI_SECRET, CI_AUDIENCE, &lab.cache_dir);
    out.assert_success();
    let cred = parse_exec_credential(&out);
    assert_eq!(cred.claims["iss"], lab.issuer().as_str(), "{}", cred.claims);
    assert_eq!(cred.claims["azp"], CI_CLIENT_ID, "{}", cred.claims);
    // Keycloak answers with no ID token: koidc hands on the access token, a JWT that its
    // audience mapper made for `kubernetes` (beside Keycloak's own `account`).
    assert_eq!(cred.claims["typ"], "Bearer", "an access token: {}", cred.claims);
    assert_eq!(
        cred.claims["aud"],
        serde_json::json!([CI_AUDIENCE, "account"]),
        "{}",
        cred.claims
    );
    assert_eq!(lab.grants_since(0), ["client_credentials"]);

    // Cached: the next call makes no request.
    let mark = lab.proxy.mark();
    let again = client_credentials(&lab, CI_SECRET, CI_AUDIENCE, &lab.cache_dir);
    again.assert_success();
    assert_eq!(parse_exec_credential(&again).token, cred.token);
    assert_eq!(lab.proxy.since(mark), [], "a cache hit makes no request");

    // A wrong secret: one line naming Keycloak's refusal, never the secret.
    let wrong = client_credentials(
        &lab,
        "not-the-secret",
        CI_AUDIENCE,
        &lab.tmp.path().join("other-cache"),
    );
    let line = wrong.assert_one_error_line();
    assert!(
        line.contains("unauthorized_client") || line.contains("invalid_client"),
        "{line}"
    );

    // An audience the client's tokens are not for: refused, naming both.
    let other = client_credentials(
        &lab,
        CI_SECRET,
        "other-cluster",
        &lab.tmp.path().join("third-cache"),
    );
    assert_eq!(
        other.assert_one_error_line(),
        "koidc: access token rejected: audience must contain `other-cluster` (the token's: \
         `kubernetes`, `account`); check --audience and the audience the IdP puts in this \
         client's access tokens"
    );
}

#[test]
fn keycloak_setup_doctor_and_kubectl_through_a_real_apiserver_that_trusts_keycloak() {
    let keycloak = keycloak();
    let issuer = keycloak.https_issuer();
    let idp = KubeIdp::start();
    // The identity every koidc step of this test uses: Keycloak over HTTPS, its test CA.
    let identity: Vec<String> = [
        "--issuer",
        &issuer,
        "--client-id",
        CLIENT_ID,
        "--scope",
        "email",
        "--certificate-authority",
        &keycloak.pki.ca_file.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let mut setup_args = vec!["setup".to_owned()];
    setup_args.extend(identity.iter().cloned());
    setup_args.extend(["--print".into(), "authentication-config".into()]);
    let setup = idp.koidc_admin(&setup_args);
    setup.assert_success();
    assert!(
        setup.stdout.contains(&format!("url: {issuer}")),
        "the authentication config trusts Keycloak:\n{}",
        setup.stdout
    );
    let cluster = KubeCluster::start(&setup.stdout, idp);
    let _logs = cluster.print_logs_on_failure();
    cluster.create_namespace(APP_NAMESPACE);
    cluster
        .bind_group_apply(&["developers", "reader", "-n", APP_NAMESPACE])
        .assert_success();
    let user_dir = cluster.idp.dir().join("keycloak-user");
    let kubeconfig = user_dir.join("home/.kube/config");
    cluster.write_user_kubeconfig_for(&kubeconfig, &identity);

    // The user: kubectl with the kubeconfig `koidc setup` wrote; the test knobs reach the exec
    // plugin through kubectl's environment.
    let browser = BrowserLog::new(&user_dir);
    let env = [
        (
            "KOIDC_BROWSER_COMMAND",
            format!(
                "env SSL_CERT_FILE='{}' '{}'",
                keycloak.pki.ca_file.display(),
                fake_browser().display()
            ),
        ),
        ("KOIDC_CACHE", "file".into()),
        ("KOIDC_CACHE_DIR", user_dir.join("cache").display().to_string()),
        ("KOIDC_TIMEOUT", "60".into()),
        ("FAKE_BROWSER_LOGIN", USERNAME.into()),
        ("FAKE_BROWSER_PASSWORD", USER_PASSWORD.into()),
        ("FAKE_BROWSER_LOG", browser.path.display().to_string()),
    ];
    let home = kubeconfig
        .parent()
        .and_then(Path::parent)
        .expect("HOME of the kubeconfig");
    let mut kubectl = clean_command(cluster.kubectl_bin(), home);
    kubectl.envs(env.iter().map(|(k, v)| (k, v)));
    kubectl.args(["auth", "whoami", "-o", "json"]);
    let out = run(&mut kubectl);
    out.assert_success();
    let review: Value = serde_json::from_str(&out.stdout).expect("kubectl auth whoami -o json is JSON");
    assert_eq!(
        review["status"]["userInfo"]["username"],
        format!("oidc:{USER_EMAIL}").as_str(),
        "{review}"
    );
    let groups = &review["status"]["userInfo"]["groups"];
    for group in USER_GROUPS {
        assert!(
            groups
                .as_array()
                .is_some_and(|g| g.iter().any(|v| v == &format!("oidc:{group}"))),
            "group oidc:{group} missing: {review}"
        );
    }
    assert_eq!(browser.launches(), 1, "one browser login");

    // koidc doctor with the same kubeconfig: every check passes, the token from the cache.
    let mut doctor = clean_command(koidc_bin(), home);
    doctor.envs(env.iter().map(|(k, v)| (k, v)));
    doctor.env("XDG_CONFIG_HOME", home.join(".config"));
    doctor.arg("doctor").arg("--kubeconfig").arg(&kubeconfig);
    doctor.args(["-n", APP_NAMESPACE, "--admin-kubeconfig"]);
    doctor
        .arg(cluster.admin_kubeconfig())
        .arg("--kubectl")
        .arg(cluster.kubectl_bin());
    let out = run(&mut doctor);
    assert!(
        crate::support::find_jwt(&out.stdout).is_none(),
        "a JWT in the doctor's report"
    );
    out.assert_success();
    let line = |check: &str| {
        out.stdout
            .lines()
            .find(|l| l.get(5..).is_some_and(|rest| rest.starts_with(check)))
            .unwrap_or_else(|| panic!("no line for {check:?} in:\n{}", out.stdout))
            .to_string()
    };
    assert_eq!(
        line("issuer reachable"),
        format!("ok   issuer reachable ({issuer})")
    );
    assert!(
        line("token obtained").starts_with("ok   token obtained (from the cache;"),
        "{}",
        out.stdout
    );
    assert_eq!(
        line("token claims"),
        format!("ok   token claims (email \"{USER_EMAIL}\", groups [developers, ops])")
    );
    assert_eq!(
        browser.launches(),
        1,
        "kubectl and the doctor shared the cached token"
    );
}

#[test]
fn keycloak_refuses_a_scope_the_realm_does_not_have_and_koidc_says_so_in_one_line_before_the_browser() {
    // Keycloak has no `groups` scope (the mapper adds the claim without one) and refuses the
    // whole authorization request for it; koidc's check before the browser names the refusal.
    let lab = KeycloakLab::start(CLIENT_ID);
    let out = lab.koidc("get-token", &["--scope", "groups"]);
    assert_eq!(
        out.assert_one_error_line(),
        "koidc: the identity provider refused the login request: invalid_scope: Invalid scopes: \
         openid email groups; check the client settings at the identity provider"
    );
    assert_eq!(
        lab.browser.launches(),
        0,
        "no browser for a request Keycloak refuses"
    );
}
