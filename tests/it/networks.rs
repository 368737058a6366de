//! koidc on the networks users have: a real HTTP proxy (Debian's tinyproxy, installed by
//! tests/run.sh) in front of the identity provider — plain requests for an http issuer, `CONNECT`
//! for an https one, with and without a login — and NO_PROXY; the callback on the IPv6 loopback
//! (`--listen [::1]:0`); a redirect URI naming `localhost` (`--redirect-host`); and
//! `--force-refresh`. Each runs the koidc binary against a real Dex.
//!
//! The proxy's own log is the evidence of what went through it: tinyproxy logs every request
//! line (`GET http://…`, `CONNECT host:port`). The counting proxy of the lab (in front of Dex)
//! counts the grants.

use std::net::TcpListener;
use std::os::unix::ffi::OsStringExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::browser::fake_browser;
use crate::kube::KubeIdp;
use crate::lab::{Lab, LabOptions};
use crate::support::{Output, Stdout, clean_command, koidc_bin, parse_exec_credential, run, which};

/// The proxy user and password of the tests with a proxy login.
const PROXY_USER: &str = "corp";
const PROXY_PASSWORD: &str = "Pr0xy-s3cret-pw";

/// A running tinyproxy on 127.0.0.1; stopped when dropped.
struct Tinyproxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Tinyproxy {
    /// Starts tinyproxy on a free 127.0.0.1 port, allowing clients from 127.0.0.1 only and
    /// `CONNECT` to `connect_port` only; with `login`, only requests carrying that Basic login.
    fn start(dir: &Path, connect_port: u16, login: Option<(&str, &str)>) -> Tinyproxy {
        let bin = which("tinyproxy").unwrap_or_else(|| {
            panic!("tinyproxy is not installed: tests/run.sh installs it (Debian package tinyproxy)")
        });
        let port = free_port();
        let log = dir.join(format!("tinyproxy-{port}.log"));
        let conf = dir.join(format!("tinyproxy-{port}.conf"));
        let mut text = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Info\nMaxClients 20\n\
             Allow 127.0.0.1\nConnectPort {connect_port}\nPidFile \"{}\"\n",
            log.display(),
            dir.join(format!("tinyproxy-{port}.pid")).display()
        );
        if let Some((user, password)) = login {
            text.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        std::fs::write(&conf, text).expect("write the tinyproxy config");
        let child = Command::new(bin)
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tinyproxy");
        let proxy = Tinyproxy { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tinyproxy did not listen on {port}: {}",
                proxy.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }

    /// `http://127.0.0.1:PORT`
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://USER:PASSWORD@127.0.0.1:PORT`
    fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The request lines tinyproxy logged (`GET http://… HTTP/1.1`, `CONNECT host:port …`).
    fn requests(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter_map(|l| l.split_once("Request (file descriptor ").map(|(_, r)| r))
            .filter_map(|r| r.split_once("): ").map(|(_, line)| line.to_owned()))
            .collect()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn port_of(url: &str) -> u16 {
    url::Url::parse(url)
        .expect("a URL")
        .port_or_known_default()
        .expect("a port")
}

/// A browser command that writes the environment koidc gave it to `dump`, then runs the fake
/// browser with the URL.
fn dumping_browser(dump: &Path, browser: &str) -> String {
    format!("sh -c 'env > \"{}\"; exec {browser} \"$0\"'", dump.display())
}

/// The lab with a plain-http Dex, and a tinyproxy allowing the lab's issuer port.
fn lab_behind_tinyproxy(login: Option<(&str, &str)>) -> (Lab, Tinyproxy) {
    let lab = Lab::start(LabOptions::default());
    let proxy = Tinyproxy::start(lab.tmp.path(), port_of(&lab.issuer()), login);
    (lab, proxy)
}

#[test]
fn an_http_issuer_is_asked_through_http_proxy_and_the_callback_is_not() {
    let (lab, proxy) = lab_behind_tinyproxy(None);
    let dump = lab.tmp.path().join("browser-env");
    let browser = dumping_browser(&dump, &fake_browser().display().to_string());
    let mut cmd = lab.command_overriding("get-token", &["--browser-command", &browser]);
    cmd.env("HTTP_PROXY", proxy.url());
    let out = run(&mut cmd);
    lab.assert_ok_get_token(&out);

    let requests = proxy.requests();
    let issuer = lab.issuer();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("GET {issuer}/.well-known/openid-configuration"))),
        "discovery did not go through the proxy: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("POST {issuer}/token"))),
        "the code exchange did not go through the proxy: {requests:?}"
    );
    assert!(
        !requests.iter().any(|r| r.contains("/callback")),
        "the callback went through the proxy: {requests:?}"
    );
    // The browser was told to reach loopback directly, and the proxy as given.
    let env = std::fs::read_to_string(&dump).expect("the browser's environment");
    let no_proxy = env
        .lines()
        .find_map(|l| l.strip_prefix("NO_PROXY="))
        .unwrap_or_default();
    for host in ["127.0.0.1", "::1", "localhost"] {
        assert!(
            no_proxy.split(',').any(|h| h == host),
            "NO_PROXY={no_proxy:?} lacks {host}"
        );
    }
    assert!(env.contains(&format!("HTTP_PROXY={}", proxy.url())), "{env}");
}

#[test]
fn no_proxy_listing_the_issuer_host_bypasses_the_proxy() {
    let (lab, proxy) = lab_behind_tinyproxy(None);
    let mut cmd = lab.command("get-token", &[]);
    cmd.env("HTTP_PROXY", proxy.url()).env("NO_PROXY", "127.0.0.1");
    let out = run(&mut cmd);
    lab.assert_ok_get_token(&out);
    assert_eq!(
        proxy.requests(),
        Vec::<String>::new(),
        "NO_PROXY=127.0.0.1 was not honoured"
    );
    assert!(!lab.proxy.grants_since(0).is_empty(), "Dex saw the login");
}

#[test]
fn a_proxy_login_from_the_url_is_used_and_never_shown_nor_passed_to_the_browser() {
    let (lab, proxy) = lab_behind_tinyproxy(Some((PROXY_USER, PROXY_PASSWORD)));
    let dump = lab.tmp.path().join("browser-env");
    let browser = dumping_browser(&dump, &fake_browser().display().to_string());
    let mut cmd = lab.command_overriding("get-token", &["--browser-command", &browser, "-v"]);
    cmd.env("HTTP_PROXY", proxy.url_with(PROXY_USER, PROXY_PASSWORD));
    let out = run(&mut cmd);
    lab.assert_ok_get_token(&out);
    assert!(
        proxy.requests().iter().any(|r| r.starts_with("POST ")),
        "the token request did not go through the proxy: {:?}",
        proxy.requests()
    );
    assert!(
        !out.stderr.contains(PROXY_PASSWORD),
        "the proxy password on stderr: {}",
        out.stderr
    );
    let env = std::fs::read_to_string(&dump).expect("the browser's environment");
    assert!(
        !env.contains(PROXY_PASSWORD),
        "the browser got the proxy password: {env}"
    );
    assert!(env.contains(&format!("HTTP_PROXY={}", proxy.url())), "{env}");
}

#[test]
fn a_proxy_asking_for_a_login_gets_a_one_line_error_naming_it_and_the_fix() {
    let (lab, proxy) = lab_behind_tinyproxy(Some((PROXY_USER, PROXY_PASSWORD)));
    let mut cmd = lab.command("get-token", &[]);
    cmd.env("HTTP_PROXY", proxy.url());
    let out = run(&mut cmd);
    out.assert_failure();
    let line = out.assert_one_error_line();
    assert!(line.contains(&proxy.url()), "{line}");
    assert!(line.contains("HTTP_PROXY"), "{line}");
    assert!(line.contains("407"), "{line}");
    assert!(line.contains("USER:PASSWORD@"), "{line}");
    assert_eq!(
        lab.browser.launches(),
        0,
        "no browser for a login that cannot finish"
    );
}

#[test]
fn a_wrong_proxy_password_is_named_as_such_and_never_shown_even_verbose() {
    let (lab, proxy) = lab_behind_tinyproxy(Some((PROXY_USER, PROXY_PASSWORD)));
    let wrong = "Wr0ng-pr0xy-pw";
    let mut cmd = lab.command("get-token", &["-vv"]);
    cmd.env("HTTP_PROXY", proxy.url_with(PROXY_USER, wrong));
    let out = run(&mut cmd);
    out.assert_failure();
    assert!(
        !out.stderr.contains(wrong),
        "the proxy password on stderr: {}",
        out.stderr
    );
    let last = out.stderr_lines().last().copied().unwrap_or_default().to_owned();
    assert!(
        last.contains(&proxy.url()) && last.contains("check the user name and password"),
        "{last}"
    );
}

/// `get-token` with the proxy variable `name` set to `value` fails before anything reaches Dex,
/// in one line that never shows the proxy password: that line.
#[track_caller]
fn proxy_failure(lab: &Lab, name: &str, value: std::ffi::OsString) -> String {
    let mut cmd = lab.command("get-token", &[]);
    cmd.env(name, value);
    let out = run(&mut cmd);
    out.assert_failure();
    assert!(!out.stderr.contains(PROXY_PASSWORD), "{}", out.stderr);
    assert_eq!(lab.proxy.seen(), [], "a request reached Dex");
    out.assert_one_error_line()
}

#[test]
fn an_unreachable_proxy_is_named_without_its_password() {
    let lab = Lab::start(LabOptions::default());
    let closed = free_port();
    let value = format!("http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{closed}");
    let line = proxy_failure(&lab, "http_proxy", value.into());
    assert!(
        line.contains(&format!("the proxy http://127.0.0.1:{closed} (from http_proxy)")),
        "{line}"
    );
    assert!(line.contains("NO_PROXY"), "{line}");
}

#[test]
fn a_proxy_variable_that_is_no_url_is_refused_without_repeating_it() {
    let lab = Lab::start(LabOptions::default());
    let value = format!("ftp://{PROXY_USER}:{PROXY_PASSWORD}@proxy\r\n:21");
    let line = proxy_failure(&lab, "HTTP_PROXY", value.into());
    assert!(line.contains("HTTP_PROXY is not a proxy URL"), "{line}");
    // Not UTF-8: read as unset by the HTTP stack, which would connect directly.
    let mut bytes = format!("http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:1").into_bytes();
    bytes.push(0xff);
    let line = proxy_failure(&lab, "http_proxy", std::ffi::OsString::from_vec(bytes));
    assert!(line.contains("http_proxy is not a proxy URL"), "{line}");
}

/// koidc's get-token for the HTTPS Dex of `idp`, through the browser that trusts its CA.
fn https_get_token(idp: &KubeIdp, home: &Path, cache: &Path, env: &[(&str, String)]) -> Output {
    let mut cmd = clean_command(koidc_bin(), home);
    cmd.args([
        "get-token",
        "--issuer",
        idp.issuer(),
        "--client-id",
        crate::dex::CLIENT_ID,
    ])
    .arg("--certificate-authority")
    .arg(idp.ca_file())
    .args(["--cache", "file", "--cache-dir"])
    .arg(cache)
    .args(["--browser-command", &idp.browser_command(), "--timeout", "60"])
    .env("FAKE_BROWSER_LOG", home.join("browser.log"))
    .envs(env.iter().map(|(k, v)| (k, v)));
    run(&mut cmd)
}

/// An HTTPS Dex, a tinyproxy allowing `CONNECT` to it (with `login` when given), and a temp dir
/// holding the proxy's files, koidc's HOME (`home`) and cache (`cache`).
struct HttpsLab {
    idp: KubeIdp,
    proxy: Tinyproxy,
    dir: tempfile::TempDir,
}

impl HttpsLab {
    fn start(login: Option<(&str, &str)>) -> HttpsLab {
        let idp = KubeIdp::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let proxy = Tinyproxy::start(dir.path(), port_of(idp.issuer()), login);
        std::fs::create_dir(dir.path().join("home")).expect("create HOME");
        HttpsLab { idp, proxy, dir }
    }

    /// `koidc get-token` for the HTTPS Dex, with `HTTPS_PROXY=https_proxy`.
    fn get_token(&self, https_proxy: String) -> Output {
        let home = self.dir.path().join("home");
        https_get_token(
            &self.idp,
            &home,
            &self.dir.path().join("cache"),
            &[("HTTPS_PROXY", https_proxy)],
        )
    }
}

#[test]
fn an_https_issuer_is_tunnelled_through_https_proxy_with_connect() {
    let lab = HttpsLab::start(None);
    let out = lab.get_token(lab.proxy.url());
    out.assert_success();
    let cred = parse_exec_credential(&out);
    assert_eq!(cred.claims["iss"], lab.idp.issuer());
    let requests = lab.proxy.requests();
    let dex_port = port_of(lab.idp.issuer());
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("CONNECT 127.0.0.1:{dex_port}"))),
        "no CONNECT to Dex through the proxy: {requests:?}"
    );
    assert!(!requests.iter().any(|r| r.contains("/callback")), "{requests:?}");
}

#[test]
fn a_tunnel_refused_for_want_of_a_login_names_the_proxy_and_the_fix() {
    let lab = HttpsLab::start(Some((PROXY_USER, PROXY_PASSWORD)));
    let out = lab.get_token(lab.proxy.url());
    out.assert_failure();
    let line = out.assert_one_error_line();
    assert!(
        line.contains(&format!("the proxy {} (from HTTPS_PROXY)", lab.proxy.url())),
        "{line}"
    );
    assert!(line.contains("USER:PASSWORD@"), "{line}");

    // With the login in the URL, the tunnel opens; the password shows nowhere.
    let out = lab.get_token(lab.proxy.url_with(PROXY_USER, PROXY_PASSWORD));
    out.assert_success();
    assert!(!out.stderr.contains(PROXY_PASSWORD), "{}", out.stderr);
}

/// Whether this machine has an IPv6 loopback address (`::1` on `lo`).
fn has_ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

#[test]
fn the_callback_on_the_ipv6_loopback_completes_a_dex_login() {
    assert!(
        has_ipv6_loopback(),
        "this machine has no IPv6 loopback (::1 on lo; see `ip -6 addr show lo`): --listen [::1]:0 \
         cannot be tested here"
    );
    logs_in_with_the_redirect_uri_on(&["--listen", "[::1]:0"], "http://[::1]:");
}

/// A Dex login with `flags` (and `-v`) completes, and the redirect URI starts with `prefix`.
fn logs_in_with_the_redirect_uri_on(flags: &[&str], prefix: &str) {
    let lab = Lab::start(LabOptions::default());
    let mut args = flags.to_vec();
    args.push("-v");
    let out = lab.koidc("get-token", &args);
    lab.assert_ok_get_token(&out);
    assert!(
        out.stderr
            .contains(&format!("listening for the login callback on {prefix}")),
        "the redirect URI does not start with {prefix}: {}",
        out.stderr
    );
    assert_eq!(lab.proxy.grants_since(0), ["authorization_code"]);
}

#[test]
fn redirect_host_localhost_names_localhost_and_the_login_completes() {
    logs_in_with_the_redirect_uri_on(&["--redirect-host", "localhost"], "http://localhost:");
}

#[test]
fn redirect_host_refuses_anything_but_the_loopback_names_in_one_line() {
    let lab = Lab::start(LabOptions::default());
    let huge = "h".repeat(100_000);
    for bad in [
        "example.com",
        "0.0.0.0",
        "127.0.0.2",
        "",
        "localhost\r\nX-Evil: 1",
        "[::1]:8000",
        &huge,
    ] {
        let out = lab.koidc("get-token", &["--redirect-host", bad]);
        out.assert_failure();
        let line = out.assert_one_error_line();
        assert!(line.contains("--redirect-host"), "{bad:?}: {line}");
        assert!(line.len() < 400, "{line}");
    }
    let out = lab.koidc(
        "get-token",
        &["--redirect-host", "::1", "--listen", "127.0.0.1:0"],
    );
    out.assert_failure();
    assert!(
        out.assert_one_error_line()
            .contains("does not match --redirect-host ::1")
    );
    assert_eq!(lab.browser.launches(), 0);
    assert_eq!(lab.proxy.seen(), [], "nothing reached Dex");
}

#[test]
fn setup_writes_the_redirect_host_into_the_kubeconfig_entry() {
    let lab = Lab::start(LabOptions::default());
    let out = lab.koidc(
        "setup",
        &[
            "--redirect-host",
            "localhost",
            "--force-refresh",
            "--print",
            "kubeconfig",
        ],
    );
    out.assert_success();
    assert!(out.stdout.contains("--redirect-host=localhost"), "{}", out.stdout);
    assert!(!out.stdout.contains("force-refresh"), "{}", out.stdout);
}

#[test]
fn force_refresh_renews_a_valid_cached_token_with_exactly_one_refresh_grant() {
    let lab = Lab::start(LabOptions::default());
    let (_, first) = lab.get_token();
    // A new `iat`, so the refreshed ID token differs from the first.
    std::thread::sleep(Duration::from_millis(1100));
    let mark = lab.proxy.mark();
    let out = lab.koidc("get-token", &["--force-refresh"]);
    let (_, refreshed) = lab.assert_ok_get_token(&out);
    assert_eq!(
        lab.proxy.grants_since(mark),
        ["refresh_token"],
        "exactly one refresh"
    );
    assert_eq!(lab.browser.launches(), 1, "no browser for a refresh");
    assert_ne!(refreshed.token, first.token, "a new ID token");

    // The cache holds the new token: the next call serves it without asking Dex.
    let mark = lab.proxy.mark();
    let (_, cached) = lab.get_token();
    assert_eq!(cached.token, refreshed.token);
    assert_eq!(lab.proxy.since(mark), [], "a cache hit asks nothing");

    // `login --force-refresh` as well, through the variable.
    let mark = lab.proxy.mark();
    let mut cmd = lab.command("login", &[]);
    cmd.env("KOIDC_FORCE_REFRESH", "true");
    let out = run(&mut cmd);
    out.assert_success();
    lab.assert_no_leak(&out, Stdout::NoSecrets);
    assert_eq!(lab.proxy.grants_since(mark), ["refresh_token"]);
}

/// `koidc get-token` for an issuer no test serves, with `env` only: it fails before or at the
/// proxy. Its output.
fn get_token_with(env: &[(&str, String)]) -> Output {
    let home = tempfile::tempdir().expect("temp dir");
    let mut cmd = clean_command(koidc_bin(), home.path());
    cmd.args([
        "get-token",
        "--issuer",
        "https://idp.example.test",
        "--client-id",
        "x",
        "-vv",
    ])
    .envs(env.iter().map(|(k, v)| (k, v)));
    run(&mut cmd)
}

/// The last line of a failed run's stderr (the error; `-vv` logs before it); nothing on stdout.
fn last_line(out: &Output) -> String {
    assert_eq!(out.stdout, "", "{}", out.stderr);
    out.stderr_lines().last().copied().unwrap_or_default().to_owned()
}

#[test]
fn a_proxy_password_after_an_unencoded_at_sign_is_never_shown() {
    // hyper-util takes `john` for the user and `corp.example:Hunter2Secret@127.0.0.1` for the
    // host; koidc's redaction took `Hunter2Secret` for the password. Refused before any request.
    let dir = tempfile::tempdir().expect("temp dir");
    let proxy = Tinyproxy::start(dir.path(), 443, Some((PROXY_USER, PROXY_PASSWORD)));
    let secret = "Hunter2Secret";
    let value = format!("http://john@corp.example:{secret}@127.0.0.1:{}", proxy.port);
    let out = get_token_with(&[("HTTPS_PROXY", value)]);
    out.assert_failure();
    assert!(!out.stderr.contains(secret), "{}", out.stderr);
    assert!(!out.stderr.contains("corp.example"), "{}", out.stderr);
    let line = last_line(&out);
    assert!(line.contains("HTTPS_PROXY"), "{line}");
    assert!(line.contains("percent-encode"), "{line}");
    assert_eq!(
        proxy.requests(),
        Vec::<String>::new(),
        "a request reached the proxy"
    );
}

#[test]
fn a_socks_proxy_is_refused_with_a_hint_that_koidc_speaks_http_proxies_only() {
    for scheme in ["socks5", "socks5h", "socks4"] {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("address").port();
        let out = get_token_with(&[("ALL_PROXY", format!("{scheme}://127.0.0.1:{port}"))]);
        out.assert_failure();
        let line = last_line(&out);
        assert!(line.contains("ALL_PROXY"), "{line}");
        assert!(line.contains("HTTP proxies only"), "{line}");
        assert!(
            listener.accept().is_err(),
            "{scheme}: koidc connected to the SOCKS proxy"
        );
    }
}
