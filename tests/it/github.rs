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
    ALICE, BOB, CLIENT_ID, CLIENT_SECRET, DeviceStep, EVE, FakeGithub, FakeUser, Knobs,
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

impl Webhook {
    fn start(dir: &Path, pki: &Pki, fake: &FakeGithub, extra: &[&str]) -> Webhook {
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
            ])
            .arg("--tls-cert-file")
            .arg(&pki.dex_cert_file)
            .arg("--tls-private-key-file")
            .arg(&pki.dex_key_file)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("start koidc webhook");
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA"))
            .timeout(Duration::from_secs(20))
            .build()
            .expect("HTTPS client");
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

    /// A TokenReview of `token`; returns its `status`.
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

    // Not in an allowed organisation, a bad token: not authenticated, with a reason.
    let eve = fake.issue_token(EVE);
    let status = webhook.review(&eve);
    assert_eq!(status["authenticated"], false);
    assert!(
        status["error"].as_str().unwrap().contains("not a member"),
        "{status}"
    );
    assert!(status.get("user").is_none());
    let status = webhook.review("gho_not_a_token_github_knows_0000000000");
    assert_eq!(status["authenticated"], false);
    assert!(
        status["error"].as_str().unwrap().contains("does not accept"),
        "{status}"
    );

    // Within the TTL a second review is answered from the cache: no GitHub call, even after the
    // token was revoked meanwhile.
    let before = fake.requests_to("/user").len();
    for token in [
        &alice,
        &eve,
        &"gho_not_a_token_github_knows_0000000000".to_owned(),
    ] {
        webhook.review(token);
    }
    assert_eq!(
        fake.requests_to("/user").len(),
        before,
        "a cached verdict went to GitHub"
    );

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

    // GitHub too slow: not authenticated, logged, not cached.
    fake.set_knobs(|k| k.api_delay = Some(Duration::from_millis(1500)));
    let bob = fake.issue_token(BOB);
    let status = webhook.review(&bob);
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
    assert!(log.contains("cannot check it with GitHub"), "{log}");
    assert!(!log.contains(bob.as_str()) && !log.contains(alice.as_str()));
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
    let webhook = Webhook::start(&idp.dir().join("webhook"), &idp.pki, &fake, &[]);

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
            .contains("rejected: GitHub user eve is not a member"),
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
