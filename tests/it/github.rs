//! `--provider github` and `koidc webhook` against the fake GitHub ([`crate::fake_github`]): the
//! web flow through a curl "browser" (PKCE S256, state, client secret), the device flow with
//! `authorization_pending` and `slow_down`, GitHub's HTTP-200 error bodies, the warm cache path
//! without network, refresh of expiring tokens, `whoami` and `logout` (revocation), the line
//! saying which account logged in (and the warning when it is not the cached one); the real
//! `koidc webhook` binary answering TokenReviews over HTTPS (org restriction, groups, TTL cache);
//! and end to end: the real kube-apiserver asking the webhook about the GitHub token that kubectl
//! got from `koidc get-token --provider github`, with RBAC on the team group `acme:sre`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::dex::{die_with_parent, free_port};
use crate::fake_github::{
    ALICE, BOB, CLIENT_ID, CLIENT_SECRET, DeviceStep, EVE, FakeGithub, FakeUser, Knobs, OTHER_APP_ID,
};
use crate::kube::{APP_NAMESPACE, KubeCluster, KubeIdp, Pki};
use crate::kubeconfig::{self, ExecApi};
use crate::support::{Output, clean_command, files_under, koidc_bin, run, runtime};

/// A user's machine: HOME and koidc's file cache.
struct Machine {
    tmp: TempDir,
}

impl Machine {
    fn new() -> Machine {
        Machine {
            tmp: tempfile::Builder::new()
                .prefix("koidc-gh-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    fn home(&self) -> &Path {
        self.tmp.path()
    }

    fn cache_dir(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    /// `--provider github --github-url <fake> --client-id <app> --cache file --cache-dir <dir>`
    fn identity_args(&self, fake: &FakeGithub) -> Vec<String> {
        vec![
            "--provider".into(),
            "github".into(),
            "--github-url".into(),
            fake.url(),
            "--client-id".into(),
            CLIENT_ID.into(),
            "--cache".into(),
            "file".into(),
            "--cache-dir".into(),
            self.cache_dir().display().to_string(),
        ]
    }

    /// Runs `koidc <command> <identity args> <extra>` with `env`.
    fn koidc(&self, command: &str, fake: &FakeGithub, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = clean_command(koidc_bin(), self.home());
        cmd.arg(command)
            .args(self.identity_args(fake))
            .args(extra)
            .envs(env.iter().copied());
        run(&mut cmd)
    }
}

/// The curl "browser" logged in to the fake GitHub as `user`.
fn curl_browser(user: FakeUser) -> String {
    format!("curl -sS -L -o /dev/null -b gh_user={}", user.login)
}

const SECRET_ENV: (&str, &str) = ("KOIDC_CLIENT_SECRET", CLIENT_SECRET);

/// An ExecCredential with an opaque (GitHub) token.
#[track_caller]
fn credential(out: &Output) -> (String, DateTime<Utc>) {
    out.assert_success();
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e}): {:?}", out.what, out.stdout));
    assert_eq!(v["kind"], "ExecCredential", "{v}");
    let token = v["status"]["token"].as_str().expect("status.token").to_owned();
    let exp = v["status"]["expirationTimestamp"]
        .as_str()
        .expect("expirationTimestamp");
    let exp = DateTime::parse_from_rfc3339(exp)
        .expect("RFC 3339")
        .with_timezone(&Utc);
    (token, exp)
}

/// The error koidc ended with: a failure, nothing on stdout, the last stderr line `koidc: …`
/// (progress lines such as the login URL may come before it).
#[track_caller]
fn final_error(out: &Output) -> String {
    out.assert_failure();
    assert!(out.stdout.is_empty(), "{}: stdout {:?}", out.what, out.stdout);
    let last = out.stderr_lines().last().copied().unwrap_or_default().to_owned();
    assert!(
        last.starts_with("koidc: ") && !last.starts_with("koidc: warning"),
        "{}: {:?}",
        out.what,
        out.stderr
    );
    last
}

/// No issued token and no client secret on stderr; on stdout only where `stdout_token` allows.
#[track_caller]
fn assert_no_leak(out: &Output, fake: &FakeGithub, stdout_token: Option<&str>) {
    let mut secrets = fake.issued_tokens();
    secrets.push(CLIENT_SECRET.to_owned());
    for s in &secrets {
        assert!(
            !out.stderr.contains(s.as_str()),
            "{}: a secret leaked on stderr:\n{}",
            out.what,
            out.stderr
        );
        if stdout_token != Some(s.as_str()) {
            assert!(
                !out.stdout.contains(s.as_str()),
                "{}: a secret leaked on stdout",
                out.what
            );
        }
    }
}

#[test]
fn web_flow_logs_in_with_pkce_and_secret_then_serves_the_cache_without_network() {
    let fake = FakeGithub::start();
    let machine = Machine::new();
    let browser = curl_browser(ALICE);
    let args = ["--browser-command", browser.as_str(), "--timeout", "60"];

    let first = machine.koidc("get-token", &fake, &args, &[SECRET_ENV]);
    let (token, exp) = credential(&first);
    assert_no_leak(&first, &fake, Some(&token));
    assert!(token.starts_with("gho_") && fake.token_valid(&token), "{token}");
    // An OAuth app token does not expire: kubectl is told an hour (minus the 90 s margin).
    let left = (exp - Utc::now()).num_seconds();
    assert!((3400..=3510).contains(&left), "expirationTimestamp {left}s away");

    let authorize = fake.requests_to("/login/oauth/authorize");
    assert_eq!(authorize.len(), 1);
    let q = &authorize[0].query;
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["scope"], "read:org");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(!q["state"].is_empty());
    assert!(q["redirect_uri"].starts_with("http://127.0.0.1:") && q["redirect_uri"].ends_with("/callback"));
    let exchange = fake.requests_to("/login/oauth/access_token");
    assert_eq!(exchange.len(), 1);
    let form = &exchange[0].form;
    assert_eq!(form["client_secret"], CLIENT_SECRET);
    assert!(form["code_verifier"].len() >= 43, "PKCE verifier sent");
    assert_eq!(form["redirect_uri"], q["redirect_uri"]);
    assert!(
        exchange[0]
            .accept
            .as_deref()
            .unwrap_or("")
            .contains("application/json")
    );
    let user_calls = fake.requests_to("/user");
    assert_eq!(user_calls.len(), 1);
    assert_eq!(
        user_calls[0].authorization.as_deref(),
        Some(format!("Bearer {token}").as_str())
    );

    // Warm path: the same token, not one request to GitHub.
    let mark = fake.mark();
    let second = machine.koidc("get-token", &fake, &args, &[]);
    let (again, _) = credential(&second);
    assert_eq!(again, token);
    assert!(
        fake.since(mark).is_empty(),
        "the cache hit went to GitHub: {:?}",
        fake.since(mark)
    );
    assert_no_leak(&second, &fake, Some(&token));

    // The cache file is private and holds the account for whoami.
    let entries: Vec<_> = files_under(&machine.cache_dir())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(crate::support::mode(&entries[0]), 0o600);
    let whoami = machine.koidc("whoami", &fake, &[], &[]);
    whoami.assert_success();
    assert!(
        whoami.stdout.contains("login:    alice (id 1001)"),
        "{}",
        whoami.stdout
    );
    assert!(
        whoami.stdout.contains("teams:    acme:sre, hobby:fun"),
        "{}",
        whoami.stdout
    );
    assert!(whoami.stdout.contains("never"), "{}", whoami.stdout);
    let json_out = machine.koidc("whoami", &fake, &["-o", "json"], &[]);
    let v: Value = serde_json::from_str(&json_out.stdout).expect("whoami -o json");
    assert_eq!(v["login"], "alice");
    assert_eq!(v["provider"], "github");
    assert_eq!(v["groups"], json!(["acme", "hobby", "acme:sre", "hobby:fun"]));
    let login = machine.koidc("login", &fake, &args, &[]);
    login.assert_success();
    assert!(login.stderr.contains("already logged in"), "{}", login.stderr);
    assert!(login.stdout.contains("login:    alice"), "{}", login.stdout);
    for out in [&whoami, &json_out, &login] {
        assert_no_leak(out, &fake, None);
    }
    assert!(fake.since(mark).is_empty(), "whoami/login went to GitHub");

    // Logout revokes the token at GitHub (client secret given) and deletes the entry.
    let logout = machine.koidc("logout", &fake, &[], &[SECRET_ENV]);
    logout.assert_success();
    assert_no_leak(&logout, &fake, None);
    assert!(!fake.token_valid(&token), "the token was not revoked");
    let revoke = fake.requests_to(&format!("/applications/{CLIENT_ID}/token"));
    assert_eq!(revoke.len(), 1);
    assert_eq!(revoke[0].method, "DELETE");
    assert!(
        !files_under(&machine.cache_dir())
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "json" || e == "enc")),
        "the cache entry is still there"
    );
}

#[test]
fn github_login_says_which_account_logged_in_and_warns_when_it_is_not_the_cached_one() {
    let fake = FakeGithub::start();
    let machine = Machine::new();
    let as_alice = curl_browser(ALICE);
    let first = machine.koidc(
        "get-token",
        &fake,
        &["--browser-command", as_alice.as_str(), "--timeout", "60"],
        &[SECRET_ENV],
    );
    let (token, _) = credential(&first);
    assert_no_leak(&first, &fake, Some(&token));
    let said: Vec<&str> = first
        .stderr_lines()
        .into_iter()
        .filter(|l| l.starts_with("koidc: logged in as "))
        .collect();
    assert_eq!(said.len(), 1, "{:?}", first.stderr);
    assert!(said[0].starts_with("koidc: logged in as alice at "), "{:?}", said);
    assert!(!first.stderr.contains("warning"), "{}", first.stderr);

    // Someone else completes the next login started here: koidc says so.
    let as_bob = curl_browser(BOB);
    let second = machine.koidc(
        "login",
        &fake,
        &["--force", "--browser-command", as_bob.as_str(), "--timeout", "60"],
        &[SECRET_ENV],
    );
    second.assert_success();
    assert_no_leak(&second, &fake, None);
    let lines = second.stderr_lines();
    assert!(
        lines.iter().any(|l| l.starts_with("koidc: logged in as bob at ")),
        "{:?}",
        second.stderr
    );
    let warning = lines
        .iter()
        .find(|l| l.starts_with("koidc: warning: "))
        .unwrap_or_else(|| panic!("no warning about another account: {:?}", second.stderr));
    assert!(
        warning.contains("bob") && warning.contains("alice"),
        "{warning:?}"
    );
}

#[test]
fn web_flow_without_client_secret_is_refused_before_any_browser() {
    let fake = FakeGithub::start();
    let machine = Machine::new();
    let browser = curl_browser(ALICE);
    let out = machine.koidc(
        "get-token",
        &fake,
        &["--grant", "authcode", "--browser-command", browser.as_str()],
        &[],
    );
    out.assert_failure();
    let line = out.assert_one_error_line();
    assert!(
        line.contains("client secret") && line.contains("--grant device-code"),
        "{line}"
    );
    assert!(
        fake.requests().is_empty(),
        "koidc went to GitHub: {:?}",
        fake.requests()
    );
}

#[test]
fn http_200_error_bodies_become_clear_errors() {
    let fake = FakeGithub::start();
    let machine = Machine::new();
    let browser = curl_browser(ALICE);
    let args = ["--browser-command", browser.as_str(), "--timeout", "60"];
    // A wrong secret: GitHub answers HTTP 200 {"error":"incorrect_client_credentials",...}.
    let out = machine.koidc(
        "get-token",
        &fake,
        &args,
        &[("KOIDC_CLIENT_SECRET", "wrong-secret")],
    );
    let line = final_error(&out);
    assert!(line.contains("incorrect_client_credentials"), "{line}");
    assert!(line.contains("KOIDC_CLIENT_SECRET"), "{line}");
    assert!(
        !line.contains("missing field") && !line.contains("wrong-secret"),
        "{line}"
    );
    assert_no_leak(&out, &fake, None);

    fake.set_knobs(|k| k.token_error = Some("redirect_uri_mismatch"));
    let machine = Machine::new();
    let out = machine.koidc("get-token", &fake, &args, &[SECRET_ENV]);
    let line = final_error(&out);
    assert!(
        line.contains("redirect_uri_mismatch") && line.contains("http://127.0.0.1/callback"),
        "{line}"
    );
}

#[test]
fn device_flow_honours_pending_and_slow_down() {
    let fake = FakeGithub::start_with(Knobs {
        device_script: vec![DeviceStep::Pending, DeviceStep::SlowDown],
        device_user: BOB,
        device_interval: 1,
        ..Knobs::default()
    });
    let machine = Machine::new();
    let started = Instant::now();
    let out = machine.koidc(
        "get-token",
        &fake,
        &["--grant", "device-code", "--no-browser", "--timeout", "60"],
        &[],
    );
    let (token, _) = credential(&out);
    assert!(fake.token_valid(&token));
    assert!(
        out.stderr.contains("WDJB-MJHT") && out.stderr.contains("https://github.com/login/device"),
        "{}",
        out.stderr
    );
    assert_no_leak(&out, &fake, Some(&token));

    let polls = fake.requests_to("/login/oauth/access_token");
    assert_eq!(polls.len(), 3, "pending, slow_down, then the token");
    for poll in &polls {
        assert_eq!(
            poll.form["grant_type"],
            "urn:ietf:params:oauth:grant-type:device_code"
        );
        assert!(
            !poll.form.contains_key("client_secret"),
            "the device flow needs no secret"
        );
    }
    let device = fake.requests_to("/login/device/code");
    assert_eq!(device[0].form["scope"], "read:org");
    let first_gap = polls[0].at - device[0].at;
    let second_gap = polls[1].at - polls[0].at;
    let third_gap = polls[2].at - polls[1].at;
    assert!(
        first_gap >= Duration::from_millis(950),
        "first poll after {first_gap:?}"
    );
    assert!(
        second_gap >= Duration::from_millis(950),
        "second poll after {second_gap:?}"
    );
    assert!(
        third_gap >= Duration::from_millis(5900),
        "slow_down must add 5 s, waited {third_gap:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(40));

    let whoami = machine.koidc("whoami", &fake, &[], &[]);
    assert!(whoami.stdout.contains("login:    bob"), "{}", whoami.stdout);

    // A denied device login is a clear, immediate error.
    fake.set_knobs(|k| k.device_script = vec![DeviceStep::Deny]);
    let out = Machine::new().koidc(
        "get-token",
        &fake,
        &["--grant", "device-code", "--no-browser"],
        &[],
    );
    let line = final_error(&out);
    assert!(line.contains("denied"), "{line}");
}

#[test]
fn expiring_app_tokens_are_refreshed_without_a_browser() {
    // 60 s tokens: inside the 90 s margin at once, so the next call must refresh.
    let fake = FakeGithub::start_with(Knobs {
        expires_in: Some(60),
        ..Knobs::default()
    });
    let machine = Machine::new();
    let browser = curl_browser(ALICE);
    let args = ["--browser-command", browser.as_str(), "--timeout", "60"];
    let (first, exp) = credential(&machine.koidc("get-token", &fake, &args, &[SECRET_ENV]));
    assert!(first.starts_with("ghu_"));
    assert!(
        (exp - Utc::now()).num_seconds() <= 31,
        "a short token is reported halfway"
    );

    let mark = fake.mark();
    let out = machine.koidc("get-token", &fake, &args, &[SECRET_ENV]);
    let (second, _) = credential(&out);
    assert_ne!(second, first);
    assert_no_leak(&out, &fake, Some(&second));
    let new: Vec<_> = fake.since(mark);
    assert!(
        new.iter().all(|r| r.path != "/login/oauth/authorize"),
        "a browser login happened: {new:?}"
    );
    let refresh: Vec<_> = new
        .iter()
        .filter(|r| r.form.get("grant_type").map(String::as_str) == Some("refresh_token"))
        .collect();
    assert_eq!(refresh.len(), 1);
    assert_eq!(refresh[0].form["client_secret"], CLIENT_SECRET);
}

/// `koidc webhook` running as a separate process; killed on drop.
struct Webhook {
    child: Child,
    log: PathBuf,
    addr: std::net::SocketAddr,
    client: reqwest::Client,
}

/// How to start the webhook besides its flags.
#[derive(Default)]
struct WebhookOpts {
    /// At most this many open files in the webhook process (soft and hard limit), so that a few
    /// hundred connections can exhaust them.
    nofile: Option<u64>,
    /// The client certificate and key (PEM) the test's client presents.
    identity_pem: Option<String>,
    /// `KOIDC_CLIENT_SECRET` instead of the app's secret (`Some("")`: none).
    secret_env: Option<&'static str>,
}

impl Webhook {
    /// `koidc webhook --org acme --client-id <app>` with the app's secret in KOIDC_CLIENT_SECRET.
    fn start(dir: &Path, pki: &Pki, fake: &FakeGithub, extra: &[&str]) -> Webhook {
        Self::start_opts(dir, pki, fake, extra, WebhookOpts::default())
    }

    fn start_opts(dir: &Path, pki: &Pki, fake: &FakeGithub, extra: &[&str], opts: WebhookOpts) -> Webhook {
        let nofile = opts.nofile;
        std::fs::create_dir_all(dir).expect("webhook dir");
        let addr = free_port();
        let log = dir.join(format!("webhook-{}.log", addr.port()));
        let file = std::fs::File::create(&log).expect("webhook log");
        let mut cmd = Command::new(koidc_bin());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir)
            .args([
                "webhook",
                "--listen",
                addr.to_string().as_str(),
                "--org",
                "acme",
                "--github-url",
                fake.url().as_str(),
                "--client-id",
                CLIENT_ID,
            ])
            .arg("--tls-cert-file")
            .arg(&pki.dex_cert_file)
            .arg("--tls-private-key-file")
            .arg(&pki.dex_key_file)
            .args(extra)
            .env("KOIDC_CLIENT_SECRET", opts.secret_env.unwrap_or(CLIENT_SECRET))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file);
        die_with_parent(&mut cmd);
        if let Some(limit) = nofile {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: setrlimit is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("start koidc webhook");
        let mut client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA"))
            .timeout(Duration::from_secs(20));
        if let Some(pem) = &opts.identity_pem {
            client = client.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("client identity"));
        }
        let client = client.build().expect("HTTPS client");
        let mut webhook = Webhook {
            child,
            log,
            addr,
            client,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = format!("{}/healthz", webhook.url());
            let ready = runtime().block_on(async {
                webhook
                    .client
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            });
            if ready {
                return webhook;
            }
            if let Ok(Some(status)) = webhook.child.try_wait() {
                panic!("koidc webhook exited ({status}):\n{}", webhook.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "koidc webhook not ready:\n{}",
                webhook.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// POSTs `body` to `/`; returns the status and the JSON answer (Null when not JSON).
    fn post(&self, body: String) -> (u16, Value) {
        let url = format!("{}/", self.url());
        runtime().block_on(async {
            let resp = self
                .client
                .post(&url)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .expect("POST to the webhook");
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        })
    }

    /// A TokenReview of `token`; returns the HTTP status and the TokenReview's `status`.
    fn review_raw(&self, token: &str) -> (u16, Value) {
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": { "token": token, "audiences": ["https://kubernetes.default.svc"] },
        });
        let (status, out) = self.post(body.to_string());
        assert_eq!(out["apiVersion"], "authentication.k8s.io/v1", "{out}");
        assert_eq!(out["kind"], "TokenReview");
        (status, out["status"].clone())
    }

    /// A TokenReview of `token` answered 200; returns its `status`.
    fn review(&self, token: &str) -> Value {
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": { "token": token, "audiences": ["https://kubernetes.default.svc"] },
        });
        let (status, out) = self.post(body.to_string());
        assert_eq!(status, 200, "{out}");
        assert_eq!(out["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(out["kind"], "TokenReview");
        out["status"].clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- koidc webhook log ---\n{}", self.log_text());
        }
    }
}

fn pki(tmp: &TempDir) -> Pki {
    Pki::generate(&tmp.path().join("pki"))
}

#[test]
fn webhook_maps_members_to_users_and_team_groups_over_https() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = pki(&tmp);
    let fake = FakeGithub::start();
    let webhook = Webhook::start(tmp.path(), &pki, &fake, &["--cache-ttl", "60"]);

    let alice = fake.issue_token(ALICE);
    let status = webhook.review(&alice);
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(status["user"]["username"], "github:alice");
    assert_eq!(status["user"]["uid"], "1001");
    // The org is lowercased; teams of other orgs (hobby) are left out.
    assert_eq!(
        status["user"]["groups"],
        json!(["github:acme", "github:acme:sre"])
    );

    let bob = fake.issue_token(BOB);
    let status = webhook.review(&bob);
    assert_eq!(
        status["user"]["groups"],
        json!(["github:acme", "github:acme:dev"])
    );

    // Not in an allowed organisation, a bad token: not authenticated, with the same message.
    let eve = fake.issue_token(EVE);
    let status = webhook.review(&eve);
    assert_eq!(status["authenticated"], false);
    assert!(
        status["error"].as_str().unwrap().contains("not accepted"),
        "{status}"
    );
    assert!(status.get("user").is_none());
    let status = webhook.review("gho_not_a_token_github_knows_0000000000");
    assert_eq!(status["authenticated"], false);
    assert!(
        status["error"].as_str().unwrap().contains("not accepted"),
        "{status}"
    );

    // Within the TTL a second review is answered from the cache: no GitHub call, even after the
    // token was revoked meanwhile.
    let before = fake.requests().len();
    for token in [
        &alice,
        &eve,
        &"gho_not_a_token_github_knows_0000000000".to_owned(),
    ] {
        webhook.review(token);
    }
    assert_eq!(fake.requests().len(), before, "a cached verdict went to GitHub");

    // Limits and methods.
    let big = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "x".repeat(100 * 1024)}});
    assert_eq!(webhook.post(big.to_string()).0, 413);
    let (status, out) = webhook.post("not json".into());
    assert_eq!(status, 400);
    assert_eq!(out["status"]["authenticated"], false);
    let get = runtime().block_on(async {
        webhook
            .client
            .get(format!("{}/", webhook.url()))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(get.as_u16(), 405);

    // The log names users and verdicts, never a token.
    let log = webhook.log_text();
    assert!(log.contains("authenticated github:alice"), "{log}");
    for token in [&alice, &bob, &eve] {
        assert!(
            !log.contains(token.as_str()),
            "a token leaked into the webhook log"
        );
    }
    assert!(!log.contains("gho_not_a_token"), "{log}");
}

#[test]
fn webhook_asks_again_after_the_ttl_and_reports_github_failures() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = pki(&tmp);
    let fake = FakeGithub::start();
    let webhook = Webhook::start(
        tmp.path(),
        &pki,
        &fake,
        &["--cache-ttl", "1", "--github-timeout", "1"],
    );
    let alice = fake.issue_token(ALICE);
    assert_eq!(webhook.review(&alice)["authenticated"], true);
    // Revoked at GitHub: after the TTL the webhook notices.
    assert!(runtime().block_on(async {
        let url = format!("{}/applications/{CLIENT_ID}/token", fake.url() + "/api/v3");
        reqwest::Client::new()
            .delete(url)
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .body(json!({"access_token": alice}).to_string())
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 204)
    }));
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(webhook.review(&alice)["authenticated"], false);

    // GitHub too slow: an error (HTTP 503), logged, not cached.
    fake.set_knobs(|k| k.api_delay = Some(Duration::from_millis(1500)));
    let bob = fake.issue_token(BOB);
    let (code, status) = webhook.review_raw(&bob);
    assert_eq!(code, 503, "{status}");
    assert_eq!(status["authenticated"], false);
    assert!(
        status["error"].as_str().unwrap().contains("cannot check"),
        "{status}"
    );
    fake.set_knobs(|k| k.api_delay = None);
    assert_eq!(
        webhook.review(&bob)["authenticated"],
        true,
        "a timeout must not be cached"
    );
    let log = webhook.log_text();
    assert!(
        log.contains("no verdict: cannot check the token with GitHub"),
        "{log}"
    );
    assert!(!log.contains(bob.as_str()) && !log.contains(alice.as_str()));
}

#[test]
fn webhook_refuses_a_foreign_token_of_a_member_that_the_app_did_not_issue() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = pki(&tmp);
    let fake = FakeGithub::start();
    let webhook = Webhook::start(tmp.path(), &pki, &fake, &["--cache-ttl", "60"]);

    // alice's token of koidc's app is accepted.
    let own = fake.issue_token(ALICE);
    let status = webhook.review(&own);
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(status["user"]["username"], "github:alice");

    // The same member's tokens that another service or a personal access token hold: GitHub
    // answers /user for them, but they were not issued to koidc's app.
    for foreign in [
        fake.issue_foreign_token(ALICE, Some(OTHER_APP_ID)),
        fake.issue_foreign_token(ALICE, None),
    ] {
        let status = webhook.review(&foreign);
        assert_eq!(
            status["authenticated"], false,
            "a token that koidc's app did not issue was accepted: {status}"
        );
        assert!(status.get("user").is_none(), "{status}");
    }
    // Each token was checked with the app's credentials.
    let checks = fake.requests_to(&format!("/applications/{CLIENT_ID}/token"));
    assert_eq!(checks.len(), 3, "{checks:?}");
    for check in &checks {
        assert_eq!(check.method, "POST");
        assert_eq!(
            check.authorization.as_deref(),
            Some(format!("Basic {}", b64(&format!("{CLIENT_ID}:{CLIENT_SECRET}"))).as_str())
        );
    }
    // No secret in the log.
    let log = webhook.log_text();
    assert!(!log.contains(CLIENT_SECRET), "{log}");
    for token in fake.issued_tokens() {
        assert!(!log.contains(&token), "a token leaked into the log");
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn webhook_puts_the_github_id_in_uid_and_extra_and_tells_callers_nothing_about_the_policy() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = pki(&tmp);
    let fake = FakeGithub::start();
    let webhook = Webhook::start(tmp.path(), &pki, &fake, &["-v"]);

    let status = webhook.review(&fake.issue_token(ALICE));
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(status["user"]["uid"], "1001", "{status}");
    assert_eq!(
        status["user"]["extra"],
        json!({"github.com/id": ["1001"]}),
        "{status}"
    );

    // eve is in no allowed organisation, and a junk token: the caller learns neither the
    // organisations nor the reason, and both answers read the same.
    let eve = webhook.review(&fake.issue_token(EVE));
    let junk = webhook.review("gho_not_a_token_github_knows_0000000000");
    for status in [&eve, &junk] {
        assert_eq!(status["authenticated"], false, "{status}");
        let error = status["error"].as_str().unwrap_or_default();
        for secret in ["acme", "Acme", "eve", "member", "organization"] {
            assert!(!error.contains(secret), "{secret:?} told to the caller: {error}");
        }
    }
    assert_eq!(eve["error"], junk["error"]);
    // The server's log says why (at -v).
    let log = webhook.log_text();
    assert!(log.contains("eve") && log.contains("acme"), "{log}");
}

/// One slow or half-open connection to `addr` of the given kind, kept alive by a byte a second
/// until the server closes it or `stop` is set.
async fn slow_connection(
    addr: std::net::SocketAddr,
    tls: tokio_rustls::TlsConnector,
    kind: usize,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

    async fn trickle<S: AsyncRead + AsyncWrite + Unpin>(
        mut stream: S,
        first: &[u8],
        byte: &[u8],
        stop: &std::sync::atomic::AtomicBool,
    ) {
        if stream.write_all(first).await.is_err() {
            return;
        }
        let _ = stream.flush().await;
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::SeqCst) {
            tokio::select! {
                read = stream.read(&mut buf) => {
                    if matches!(read, Ok(0) | Err(_)) {
                        return;
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(1000)) => {
                    if stream.write_all(byte).await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    // The attackers come from addresses of their own (127.0.0.2-9), as they would from other
    // hosts than the apiserver's.
    let connect = async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        let local = std::net::Ipv4Addr::new(127, 0, 0, 2 + (kind % 8) as u8);
        socket.bind(std::net::SocketAddr::from((local, 0)))?;
        socket.connect(addr).await
    };
    let Ok(Ok(tcp)) = tokio::time::timeout(Duration::from_secs(5), connect).await else {
        tokio::time::sleep(Duration::from_millis(100)).await;
        return;
    };
    match (kind / 8) % 4 {
        // A TLS record header announcing a 16 KiB ClientHello that never comes.
        0 => trickle(tcp, b"\x16\x03\x01\x40", b"\x00", stop).await,
        // Connected, then silent.
        1 => trickle(tcp, b"", b"", stop).await,
        kind => {
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(5), tls.connect(name, tcp)).await
            else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            };
            if kind == 2 {
                // Headers that never end.
                trickle(stream, b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X", stop).await;
            } else {
                // Headers complete, a body that trickles.
                trickle(
                    stream,
                    b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{",
                    b" ",
                    stop,
                )
                .await;
            }
        }
    }
}

#[test]
fn webhook_closes_connections_whose_handshake_or_headers_do_not_arrive_in_time() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = pki(&tmp);
    let fake = FakeGithub::start();
    let webhook = Webhook::start(tmp.path(), &pki, &fake, &[]);
    let addr = webhook.addr;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(&pki.ca_pem) {
        roots.add(cert).expect("CA");
    }
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let started = Instant::now();
    let (handshake, headers) = runtime().block_on(async {
        // A TLS record header, then silence.
        let half_handshake = async {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tcp.write_all(b"\x16\x03\x01").await.unwrap();
            let mut buf = [0u8; 64];
            let closed = tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf)).await;
            (closed.is_ok(), started.elapsed())
        };
        // A handshake, then headers that never end, a byte every second.
        let slow_headers = async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let mut stream = tls.connect(name, tcp).await.unwrap();
            stream.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
            let mut buf = [0u8; 256];
            loop {
                tokio::select! {
                    read = stream.read(&mut buf) => {
                        return (matches!(read, Ok(0) | Err(_)), started.elapsed());
                    }
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        if stream.write_all(b"X").await.is_err() {
                            return (true, started.elapsed());
                        }
                        if started.elapsed() > Duration::from_secs(20) {
                            return (false, started.elapsed());
                        }
                    }
                }
            }
        };
        tokio::join!(half_handshake, slow_headers)
    });
    assert!(
        handshake.0,
        "a half-done handshake was kept for {:?}",
        handshake.1
    );
    assert!(headers.0, "trickled headers were kept for {:?}", headers.1);
    for (what, (_, after)) in [("handshake", handshake), ("headers", headers)] {
        assert!(
            (Duration::from_secs(9)..Duration::from_secs(15)).contains(&after),
            "{what}: closed after {after:?}, expected about 10 s"
        );
    }
}

#[test]
fn webhook_answers_a_genuine_review_during_a_slowloris_of_half_open_and_slow_connections() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = pki(&tmp);
    let fake = FakeGithub::start();
    // 128 files: a few hundred connections are more than the process can hold.
    let webhook = Webhook::start_opts(
        tmp.path(),
        &pki,
        &fake,
        &["--cache-ttl", "0"],
        WebhookOpts {
            nofile: Some(128),
            ..WebhookOpts::default()
        },
    );
    let alice = fake.issue_token(ALICE);
    assert_eq!(webhook.review(&alice)["authenticated"], true);

    // 240 attackers, each reconnecting as soon as the server closes its connection.
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(&pki.ca_pem) {
        roots.add(cert).expect("CA");
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
    let addr = webhook.addr;
    let attack = {
        let (stop, opened) = (stop.clone(), opened.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("attack runtime");
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for kind in 0..240 {
                    let (stop, opened, tls) = (stop.clone(), opened.clone(), tls.clone());
                    tasks.push(tokio::spawn(async move {
                        while !stop.load(Ordering::SeqCst) {
                            opened.fetch_add(1, Ordering::SeqCst);
                            slow_connection(addr, tls.clone(), kind, &stop).await;
                        }
                    }));
                }
                for task in tasks {
                    let _ = task.await;
                }
            });
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    assert!(opened.load(Ordering::SeqCst) >= 240, "the attack did not start");

    // A genuine TokenReview (a new connection each time, as after the apiserver's idle
    // connection closed) must be answered within 5 s, again and again, past the time the
    // server's timeouts take to act.
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA"))
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTPS client");
    let body =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": alice}})
            .to_string();
    let mut failures = Vec::new();
    for round in 0..8 {
        let started = Instant::now();
        let answer = runtime().block_on(async {
            let resp = client
                .post(format!("{}/", webhook.url()))
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .await?;
            resp.json::<Value>().await
        });
        match answer {
            Ok(v) if v["status"]["authenticated"] == true => {}
            Ok(v) => failures.push(format!("round {round}: {v}")),
            Err(e) => failures.push(format!("round {round} after {:?}: {e}", started.elapsed())),
        }
        std::thread::sleep(Duration::from_millis(1500));
    }
    let attackers = opened.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    let _ = attack.join();
    assert!(
        failures.is_empty(),
        "genuine reviews failed during the slowloris ({attackers} attacker connections):\n{}",
        failures.join("\n")
    );
}

fn rustls_pemfile_certs(pem: &str) -> Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    tokio_rustls::rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

#[test]
fn webhook_without_a_verdict_from_github_answers_an_error_and_caches_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = pki(&tmp);
    let fake = FakeGithub::start();
    let alice = fake.issue_token(ALICE);

    // A wrong client secret: GitHub refuses the check. An error for the apiserver, never a yes.
    {
        let wrong = Webhook::start_opts(
            &tmp.path().join("wrong"),
            &pki,
            &fake,
            &["--cache-ttl", "60"],
            WebhookOpts {
                secret_env: Some("not-the-app-secret"),
                ..WebhookOpts::default()
            },
        );
        for _ in 0..2 {
            let (code, status) = wrong.review_raw(&alice);
            assert_eq!(code, 503, "{status}");
            assert_eq!(status["authenticated"], false, "{status}");
            assert!(status.get("user").is_none(), "{status}");
        }
        let log = wrong.log_text();
        assert!(log.contains("HTTP 401"), "{log}");
        assert!(
            !log.contains("not-the-app-secret") && !log.contains(&alice),
            "{log}"
        );
    }

    let webhook = Webhook::start(tmp.path(), &pki, &fake, &["--cache-ttl", "60"]);
    // GitHub down (502 from the API): an error, and not cached.
    fake.set_knobs(|k| k.api_status = Some(502));
    let (code, status) = webhook.review_raw(&alice);
    assert_eq!(code, 503, "{status}");
    assert_eq!(status["authenticated"], false);
    assert!(
        status["error"].as_str().unwrap().contains("cannot check"),
        "{status}"
    );
    fake.set_knobs(|k| k.api_status = None);
    assert_eq!(
        webhook.review(&alice)["authenticated"],
        true,
        "the outage was cached"
    );

    // GitHub unreachable altogether (nothing listens on the API's port).
    let dead = free_port();
    let unreachable = Webhook::start(
        &tmp.path().join("unreachable"),
        &pki,
        &fake,
        &["--github-api-url", &format!("http://{dead}")],
    );
    let (code, status) = unreachable.review_raw(&alice);
    assert_eq!(code, 503, "{status}");
    assert_eq!(status["authenticated"], false);

    // A hostile check answer naming alice (a member) for eve's token: eve does not become alice.
    let eve = fake.issue_token(EVE);
    fake.set_knobs(|k| k.check_names = Some(ALICE));
    let (code, status) = webhook.review_raw(&eve);
    assert_eq!(status["authenticated"], false, "{status}");
    assert_eq!(code, 503, "{status}");
    assert!(
        webhook.log_text().contains("answers disagree"),
        "{}",
        webhook.log_text()
    );
    fake.set_knobs(|k| k.check_names = None);
    // Not cached either way: asked again, eve is refused as herself.
    let (code, status) = webhook.review_raw(&eve);
    assert_eq!(
        (code, status["authenticated"].clone()),
        (200, json!(false)),
        "{status}"
    );
}

/// A CA of the apiserver's client certificates, and one such certificate.
struct ClientPki {
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
    /// Certificate and key, PEM, for reqwest.
    identity_pem: String,
}

impl ClientPki {
    fn generate(dir: &Path) -> ClientPki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            KeyUsagePurpose,
        };
        std::fs::create_dir_all(dir).expect("client pki dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "koidc webhook client CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_pem = ca.self_signed(&ca_key).expect("self-sign").pem();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("client key");
        let mut leaf = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        leaf.distinguished_name
            .push(DnType::CommonName, "kube-apiserver-koidc-webhook-client");
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert_pem = leaf.signed_by(&key, &issuer).expect("sign").pem();
        let key_pem = key.serialize_pem();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        ClientPki {
            ca_file: write("client-ca.crt", &ca_pem),
            cert_file: write("client.crt", &cert_pem),
            key_file: write("client.key", &key_pem),
            identity_pem: format!("{cert_pem}{key_pem}"),
        }
    }
}

#[test]
fn webhook_with_a_client_ca_serves_only_clients_with_a_certificate_it_signed() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = pki(&tmp);
    let client = ClientPki::generate(&tmp.path().join("client-pki"));
    let fake = FakeGithub::start();
    let ca = client.ca_file.display().to_string();
    let webhook = Webhook::start_opts(
        tmp.path(),
        &pki,
        &fake,
        &["--client-ca-file", &ca],
        WebhookOpts {
            identity_pem: Some(client.identity_pem.clone()),
            ..WebhookOpts::default()
        },
    );
    // The apiserver's certificate: served.
    assert_eq!(webhook.review(&fake.issue_token(ALICE))["authenticated"], true);

    // No certificate, or one from another CA (the cluster's admin certificate): not served at
    // all, not even /healthz.
    let others = [None, Some(format!("{}{}", pki.admin_cert_pem, pki.admin_key_pem))];
    for identity in others {
        let mut builder = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(10));
        if let Some(pem) = &identity {
            builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        let other = builder.build().unwrap();
        for (method, path) in [("POST", "/"), ("GET", "/healthz")] {
            let result = runtime().block_on(async {
                let req = if method == "POST" {
                    other.post(format!("{}{path}", webhook.url())).body("{}")
                } else {
                    other.get(format!("{}{path}", webhook.url()))
                };
                req.send().await.map(|r| r.status().as_u16())
            });
            assert!(
                result.is_err(),
                "{method} {path} served to a client {} a certificate of the CA: {result:?}",
                if identity.is_some() { "with" } else { "without" }
            );
        }
    }
    let log = webhook.log_text();
    assert!(log.contains("client certificates required"), "{log}");
}

#[test]
fn webhook_requires_the_app_client_id_and_secret_and_checks_the_secret_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = pki(&tmp);
    let addr = free_port().to_string();
    let secret_file = tmp.path().join("client-secret");
    std::fs::write(&secret_file, format!("{CLIENT_SECRET}\n")).unwrap();
    let webhook = |extra: &[&str], env: &[(&str, &str)]| {
        let mut cmd = clean_command(koidc_bin(), tmp.path());
        cmd.args(["webhook", "--org", "acme", "--listen", &addr])
            .arg("--tls-cert-file")
            .arg(&pki.dex_cert_file)
            .arg("--tls-private-key-file")
            .arg(&pki.dex_key_file)
            .args(extra)
            .envs(env.iter().copied());
        run(&mut cmd)
    };
    let out = webhook(&[], &[("KOIDC_CLIENT_SECRET", CLIENT_SECRET)]);
    out.assert_failure();
    assert!(out.stderr.contains("--client-id"), "{}", out.stderr);

    let out = webhook(&["--client-id", CLIENT_ID], &[]);
    let line = out.assert_one_error_line();
    assert!(
        line.contains("KOIDC_CLIENT_SECRET") && line.contains("--client-secret-file"),
        "{line}"
    );

    // Never on the command line.
    let out = webhook(&["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET], &[]);
    out.assert_failure();
    assert!(out.stderr.contains("unexpected argument"), "{}", out.stderr);

    let file = secret_file.display().to_string();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = webhook(&["--client-id", CLIENT_ID, "--client-secret-file", &file], &[]);
    let line = out.assert_one_error_line();
    assert!(line.contains("mode 644") && line.contains("chmod 600"), "{line}");
    assert!(!out.stderr.contains(CLIENT_SECRET));

    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = webhook(
        &["--client-id", CLIENT_ID, "--client-secret-file", &file],
        &[("KOIDC_CLIENT_SECRET", "other")],
    );
    let line = out.assert_one_error_line();
    assert!(line.contains("not both"), "{line}");

    let out = webhook(&["--client-id", "../../user", "--client-secret-file", &file], &[]);
    let line = out.assert_one_error_line();
    assert!(line.contains("invalid --client-id"), "{line}");
}

#[test]
fn setup_prints_the_webhook_flags_and_the_apiserver_client_certificate() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let fake = FakeGithub::start();
    let setup = |extra: &[&str]| {
        let mut cmd = clean_command(koidc_bin(), tmp.path());
        cmd.args([
            "setup",
            "--provider",
            "github",
            "--client-id",
            CLIENT_ID,
            "--github-url",
            &fake.url(),
            "--webhook-url",
            "https://127.0.0.1:8443/",
        ])
        .args(extra);
        run(&mut cmd)
    };
    let out = setup(&[
        "--webhook-client-cert-path",
        "/etc/kubernetes/pki/koidc-webhook-client.crt",
        "--webhook-client-key-path",
        "/etc/kubernetes/pki/koidc-webhook-client.key",
    ]);
    out.assert_success();
    for expected in [
        "client-certificate: /etc/kubernetes/pki/koidc-webhook-client.crt",
        "client-key: /etc/kubernetes/pki/koidc-webhook-client.key",
        &format!("--client-id {CLIENT_ID} --client-secret-file /etc/koidc/github-client-secret"),
        "--client-ca-file",
    ] {
        assert!(
            out.stdout.contains(expected),
            "{expected:?} missing:\n{}",
            out.stdout
        );
    }
    assert!(
        !out.stderr.contains("--webhook-client-cert-path"),
        "{}",
        out.stderr
    );

    // Without a client certificate: said on stderr, and no client CA in the command.
    let out = setup(&[]);
    out.assert_success();
    assert!(
        out.stderr.contains("--webhook-client-cert-path"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("--client-ca-file"), "{}", out.stdout);

    // One without the other, or a relative path: refused.
    let out = setup(&["--webhook-client-cert-path", "/etc/c.crt"]);
    out.assert_failure();
    let out = setup(&[
        "--webhook-client-cert-path",
        "c.crt",
        "--webhook-client-key-path",
        "/etc/c.key",
    ]);
    let line = out.assert_one_error_line();
    assert!(line.contains("absolute path"), "{line}");
}

/// kubectl (exec plugin `koidc get-token --provider github`, web flow through curl as `user`)
/// against `cluster`; returns the kubeconfig path's machine and the kubectl runner.
struct GithubKubeUser {
    machine: Machine,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
}

impl GithubKubeUser {
    fn new(cluster: &KubeCluster, fake: &FakeGithub, user: FakeUser) -> GithubKubeUser {
        let machine = Machine::new();
        let kubeconfig = machine.home().join("kubeconfig.json");
        let mut args = vec!["get-token".to_owned()];
        args.extend(machine.identity_args(fake));
        args.extend([
            "--browser-command".into(),
            curl_browser(user),
            "--timeout".into(),
            "60".into(),
        ]);
        kubeconfig::write(
            &kubeconfig,
            cluster.url(),
            cluster.idp.ca_pem(),
            ExecApi::V1,
            &args,
            &[("KOIDC_CLIENT_SECRET", CLIENT_SECRET.to_owned())],
        );
        GithubKubeUser {
            machine,
            kubeconfig,
            kubectl: cluster.kubectl_bin().to_path_buf(),
        }
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        let mut cmd = clean_command(&self.kubectl, self.machine.home());
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        run(&mut cmd)
    }
}

#[test]
fn kube_apiserver_accepts_github_tokens_through_the_webhook_and_rbac_binds_teams() {
    let fake = FakeGithub::start();
    let idp = KubeIdp::start();
    // The apiserver authenticates to the webhook with a client certificate of a CA of its own.
    let client = ClientPki::generate(&idp.dir().join("webhook-client-pki"));
    let client_ca = client.ca_file.display().to_string();
    let webhook = Webhook::start_opts(
        &idp.dir().join("webhook"),
        &idp.pki,
        &fake,
        &["--client-ca-file", &client_ca],
        WebhookOpts {
            identity_pem: Some(client.identity_pem.clone()),
            ..WebhookOpts::default()
        },
    );
    let client_cert = client.cert_file.display().to_string();
    let client_key = client.key_file.display().to_string();

    // The apiserver side, as the admin gets it: `koidc setup --provider github` prints the webhook
    // config file (and saves the groups prefix github: for bind-group).
    let dex_setup = idp.setup_auth_config();
    dex_setup.assert_success();
    let webhook_url = format!("{}/", webhook.url());
    let ca_file = idp.ca_file().display().to_string();
    let fake_url = fake.url();
    let github_setup = idp.koidc_admin(&[
        "setup",
        "--provider",
        "github",
        "--client-id",
        CLIENT_ID,
        "--github-url",
        fake_url.as_str(),
        "--webhook-url",
        webhook_url.as_str(),
        "--webhook-ca-file",
        ca_file.as_str(),
        "--webhook-client-cert-path",
        client_cert.as_str(),
        "--webhook-client-key-path",
        client_key.as_str(),
        "--print",
        "authentication-config",
    ]);
    github_setup.assert_success();
    let flags_out = idp.koidc_admin(&[
        "setup",
        "--provider",
        "github",
        "--client-id",
        CLIENT_ID,
        "--webhook-url",
        webhook_url.as_str(),
        "--print",
        "apiserver-flags",
    ]);
    flags_out.assert_success();
    assert!(
        flags_out
            .stdout
            .contains("--authentication-token-webhook-version=v1"),
        "{}",
        flags_out.stdout
    );
    let webhook_config = idp.dir().join("github-webhook.yaml");
    std::fs::write(&webhook_config, &github_setup.stdout).expect("write the webhook config");
    let flags = vec![
        format!(
            "--authentication-token-webhook-config-file={}",
            webhook_config.display()
        ),
        "--authentication-token-webhook-version=v1".to_owned(),
    ];
    let cluster = KubeCluster::start_with_apiserver_flags(&dex_setup.stdout, idp, &flags);
    let _logs = cluster.print_logs_on_failure();
    cluster.create_namespace(APP_NAMESPACE);
    cluster.create_pod(APP_NAMESPACE, "seed");
    // The `reader` preset (pods: get, list, watch); the built-in `view` is an aggregated
    // ClusterRole that stays empty without kube-controller-manager.
    let bind = cluster.bind_group_apply(&["acme:sre", "reader", "-n", APP_NAMESPACE]);
    bind.assert_success();

    // alice (team acme:sre) lists pods; kubectl got the token from the GitHub web flow.
    let alice = GithubKubeUser::new(&cluster, &fake, ALICE);
    let list = alice.kubectl(&["get", "pods", "-n", APP_NAMESPACE, "-o", "name"]);
    list.assert_success();
    assert!(list.stdout.lines().any(|l| l == "pod/seed"), "{}", list.stdout);
    assert_eq!(
        fake.requests_to("/login/oauth/authorize").len(),
        1,
        "one browser login"
    );
    let whoami = alice.kubectl(&["auth", "whoami", "-o", "json"]);
    whoami.assert_success();
    let review: Value = serde_json::from_str(&whoami.stdout).expect("whoami JSON");
    let info = &review["status"]["userInfo"];
    assert_eq!(info["username"], "github:alice", "{review}");
    assert_eq!(info["uid"], "1001", "{review}");
    let groups: Vec<&str> = info["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for expected in ["github:acme", "github:acme:sre", "system:authenticated"] {
        assert!(groups.contains(&expected), "{expected} missing from {groups:?}");
    }
    assert_eq!(
        fake.requests_to("/login/oauth/authorize").len(),
        1,
        "the second kubectl used the cache"
    );
    // Rights stop at the binding: a reader does not delete.
    let delete = alice.kubectl(&["delete", "pod", "seed", "-n", APP_NAMESPACE]);
    delete.assert_failure();
    assert!(delete.stderr.contains("forbidden"), "{}", delete.stderr);

    // bob is in acme but not in team sre: authenticated, then refused by RBAC.
    let bob = GithubKubeUser::new(&cluster, &fake, BOB);
    let denied = bob.kubectl(&["get", "pods", "-n", APP_NAMESPACE]);
    denied.assert_failure();
    assert!(
        denied.stderr.contains("forbidden") && denied.stderr.contains("github:bob"),
        "{}",
        denied.stderr
    );

    // eve is in no allowed organisation: the webhook does not authenticate her at all.
    let eve = GithubKubeUser::new(&cluster, &fake, EVE);
    let refused = eve.kubectl(&["get", "pods", "-n", APP_NAMESPACE]);
    refused.assert_failure();
    assert!(refused.stderr.contains("must be logged in"), "{}", refused.stderr);
    assert!(
        webhook
            .log_text()
            .contains("rejected: GitHub user eve (id 1003) is in none of the allowed organizations"),
        "{}",
        webhook.log_text()
    );

    // No GitHub token in kubectl's output or in the webhook's log.
    let log = webhook.log_text();
    assert!(log.contains("authenticated github:alice"), "{log}");
    for token in fake.issued_tokens() {
        for out in [&list, &whoami, &delete, &denied, &refused] {
            assert!(
                !out.stdout.contains(&token) && !out.stderr.contains(&token),
                "{}: token leaked",
                out.what
            );
        }
        assert!(!log.contains(&token), "a token leaked into the webhook log");
    }
}
