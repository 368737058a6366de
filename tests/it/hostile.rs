//! Hostile input and faults against the real `koidc` binary: what an attacker on the same
//! machine, a misbehaving identity provider or a damaged cache can throw at it, each with the
//! exact outcome asserted.
//!
//! - The loopback callback server of a running `koidc get-token` (its port and `state` read from
//!   the login URL koidc prints on stderr; the "browser" is `true`, which opens nothing): 1,000
//!   random requests, wrong or missing `state`, `error=` with a wrong state, other methods and
//!   paths, a foreign `Host` (DNS rebinding) even with the real code, a 1 MiB query, a slow
//!   client holding a connection, an idle connection, a second callback after the first; then the
//!   genuine callback completes the login. koidc listens on 127.0.0.1 only (`/proc/net/tcp*`),
//!   and when only rejected callbacks arrive it stops at its timeout saying how many it rejected.
//! - Identity provider faults Dex and the stub IdP cannot produce, from [`MiniIdp`] (refresh
//!   tokens with rotation and Okta-like reuse detection, key rotation, echoing secrets in error
//!   descriptions): JWKS rotation during a login, a rotated refresh token reused by a racing
//!   process, a refresh token whose family was revoked.
//! - The cache: corrupt, truncated and world-readable entries, a group-readable directory, and a
//!   locked Secret Service keyring; other entries are never touched.
//! - Secret hygiene: every Dex flow (browser login, cache hit, `whoami`, refresh, forced login,
//!   device flow, refresh rejected, a failed login and its cool-down, logout) at maximum verbosity
//!   (`-vvv`), and a confidential client whose provider echoes secrets back: no token, refresh
//!   token, code, verifier or client secret in any stderr or file koidc writes besides the cache
//!   entries.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openidconnect::core::{CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey};
use openidconnect::{JsonWebKeyId, PrivateSigningKey};
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use sha2::Digest as _;
use tempfile::TempDir;
use url::Url;

use crate::keyring::{SecretService, SessionKeyring, fresh_session_keyring};
use crate::lab::{Lab, LabOptions};
use crate::stub_idp::{CLIENT_ID, EMAIL, Fault, StubIdp};
use crate::support::{
    ExecCredential, Live, Output, RUN_TIMEOUT, Secrets, Stdout, V1, assert_no_leak, clean_command,
    files_under, koidc_bin, mode, parse_exec_credential, repo_root, run, runtime, wait_until_stale,
};

/// A browser command that opens nothing: the test plays the browser itself.
const NO_BROWSER: &str = "true";

/// The browser for [`MiniIdp`] and the stub IdP: their `/authorize` only redirects.
const CURL_BROWSER: &str = "curl -sS -L --max-time 20 -o /dev/null";

/// koidc's browser notice; the login URL follows `open: `.
const BROWSER_NOTICE: &str = "koidc: opened a browser to log in";

/// Seed of the random requests (fixed, so a failure can be replayed; `KOIDC_HOSTILE_SEED`
/// overrides it).
const DEFAULT_SEED: u64 = 0x6b6f_6964_6321;

// ---------------------------------------------------------------------------------------------
// Raw HTTP, so that requests can be as malformed as an attacker likes.

#[derive(Debug)]
struct Reply {
    /// 0 when no HTTP response came back (the connection was closed or refused).
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

fn parse_reply(buf: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// Sends `request` on a fresh connection (writing from another thread, so that a server that
/// answers before reading everything is still heard) and reads until the server closes it.
fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return parse_reply(b"");
    };
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    let mut writer = conn.try_clone().expect("clone the connection");
    let request = request.to_vec();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match conn.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("{addr} did not answer within 10 s");
            }
            // A reset after the answer (the server closed with unread request bytes) is fine.
            Err(_) => break,
        }
    }
    let _ = conn.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    parse_reply(&buf)
}

fn get_with_host(addr: SocketAddr, target: &str, host: &str) -> Reply {
    raw(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

// ---------------------------------------------------------------------------------------------
// A koidc login in progress, seen from the browser's side.

/// What the login URL on koidc's stderr reveals: where the callback server listens and the
/// `state` it waits for.
struct PendingLogin {
    koidc: Live,
    authorize_url: Url,
    callback: SocketAddr,
    state: String,
}

impl PendingLogin {
    /// Starts `koidc get-token` against `issuer` with a browser that opens nothing, and reads the
    /// login URL from its stderr.
    fn start(home: &Path, cache_dir: &Path, issuer: &str, timeout_secs: u64) -> PendingLogin {
        let mut cmd = clean_command(koidc_bin(), home);
        cmd.args(["get-token", "--issuer", issuer, "--client-id", CLIENT_ID])
            .args(["--cache", "file", "--cache-dir"])
            .arg(cache_dir)
            .args([
                "--browser-command",
                NO_BROWSER,
                "--timeout",
                &timeout_secs.to_string(),
            ]);
        let mut koidc = Live::spawn(&mut cmd);
        let line = koidc.wait_for_line(BROWSER_NOTICE, Duration::from_secs(30));
        let url = line
            .rsplit_once("open: ")
            .map(|(_, url)| url.trim())
            .unwrap_or_else(|| panic!("no login URL in {line:?}"));
        let authorize_url = Url::parse(url).unwrap_or_else(|e| panic!("bad login URL {url:?}: {e}"));
        let query: HashMap<String, String> = authorize_url.query_pairs().into_owned().collect();
        let redirect = Url::parse(&query["redirect_uri"]).expect("redirect_uri is a URL");
        assert_eq!(redirect.host_str(), Some("127.0.0.1"), "{redirect}");
        assert_eq!(redirect.path(), "/callback");
        let callback = SocketAddr::from(([127, 0, 0, 1], redirect.port().expect("a port")));
        PendingLogin {
            koidc,
            authorize_url,
            callback,
            state: query["state"].clone(),
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.callback.port())
    }

    /// Asks the IdP's authorization endpoint (which redirects at once) for a code, as the
    /// browser would, and returns the callback target (`/callback?code=…&state=…`) without
    /// requesting it.
    fn authorize(&self) -> String {
        let idp = SocketAddr::from(([127, 0, 0, 1], self.authorize_url.port().expect("the IdP's port")));
        let target = match self.authorize_url.query() {
            Some(q) => format!("{}?{q}", self.authorize_url.path()),
            None => self.authorize_url.path().to_owned(),
        };
        let reply = get_with_host(idp, &target, &idp.to_string());
        assert_eq!(reply.status, 302, "the IdP should redirect: {}", reply.head);
        let location =
            Url::parse(&reply.header("location").expect("a Location header")).expect("Location is a URL");
        assert_eq!(location.port(), Some(self.callback.port()));
        format!("{}?{}", location.path(), location.query().unwrap_or_default())
    }

    /// GET `target` on the callback server with the right `Host`.
    fn get(&self, target: &str) -> Reply {
        get_with_host(self.callback, target, &self.host())
    }
}

// ---------------------------------------------------------------------------------------------
// Which addresses a process listens on, from /proc.

/// `ip:port` of every listening TCP socket of `pid` (IPv4 and IPv6).
///
/// koidc is not dumpable, so only root (CAP_SYS_PTRACE) may list its fds. For another user the
/// answer is built from the sockets table instead: every listening socket of this user on
/// `port` (the callback's), which shows whether koidc also listens there on another address.
fn listening_addresses(pid: u32, port: u16) -> Vec<String> {
    let fds = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(fds) => fds,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return listening_on_port_by_uid(port),
        Err(e) => panic!("read the fds of koidc: {e}"),
    };
    let mut inodes = HashSet::new();
    for fd in fds.flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let target = target.to_string_lossy().into_owned();
            if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if cols.len() > 9 && cols[3] == "0A" && inodes.contains(cols[9]) {
                out.push(decode_proc_addr(cols[1]));
            }
        }
    }
    out
}

/// `ip:port` of every listening TCP socket of this process's user on `port`.
fn listening_on_port_by_uid(port: u16) -> Vec<String> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() }.to_string();
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && cols[3] == "0A" && cols[7] == uid {
                let addr = decode_proc_addr(cols[1]);
                if addr.ends_with(&format!(":{port}")) {
                    out.push(addr);
                }
            }
        }
    }
    out
}

/// `0100007F:1F90` -> `127.0.0.1:8080`; IPv6 addresses as four little-endian words.
fn decode_proc_addr(hex_addr: &str) -> String {
    let (ip, port) = hex_addr.split_once(':').expect("addr:port");
    let port = u16::from_str_radix(port, 16).expect("hex port");
    let bytes = hex::decode(ip).expect("hex address");
    let ip: std::net::IpAddr = if bytes.len() == 4 {
        std::net::Ipv4Addr::new(bytes[3], bytes[2], bytes[1], bytes[0]).into()
    } else {
        let mut v6 = [0u8; 16];
        for (word, chunk) in bytes.chunks(4).enumerate() {
            for (i, b) in chunk.iter().rev().enumerate() {
                v6[word * 4 + i] = *b;
            }
        }
        std::net::Ipv6Addr::from(v6).into()
    };
    SocketAddr::new(ip, port).to_string()
}

// ---------------------------------------------------------------------------------------------
// Random requests.

/// The seed: `KOIDC_HOSTILE_SEED` (decimal, or hex with `0x` as docs/security.md writes it)
/// or [`DEFAULT_SEED`]; a value that is neither fails the test instead of being ignored.
fn seed() -> u64 {
    match std::env::var("KOIDC_HOSTILE_SEED") {
        Err(_) => DEFAULT_SEED,
        Ok(text) => parse_seed(&text)
            .unwrap_or_else(|| panic!("KOIDC_HOSTILE_SEED={text:?} is neither a decimal nor a 0x-hex u64")),
    }
}

fn parse_seed(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16).ok(),
        None => text.parse().ok(),
    }
}

#[test]
fn hostile_seed_is_read_in_hex_or_decimal_and_refused_otherwise() {
    assert_eq!(parse_seed("0x6b6f69646321"), Some(DEFAULT_SEED));
    assert_eq!(parse_seed("0X6B6F_6964_6321"), Some(DEFAULT_SEED));
    assert_eq!(parse_seed("118126253728545"), Some(DEFAULT_SEED));
    for bad in ["", "0x", "6b6f69646321", "0xzz", "-1", "seed"] {
        assert_eq!(parse_seed(bad), None, "{bad:?}");
    }
}

/// One random request that must not complete the login: random or broken methods, paths,
/// queries, `Host` headers and plain garbage; plausible callbacks with a random `state`; and
/// the real `state` only where the method, path or host make the request invalid.
fn random_request(rng: &mut impl rand::Rng, port: u16, real_state: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcxyz019%&=+;/?#._-~ statecodeerroriss";
    let methods = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get", "G\0T", "",
    ];
    let paths = [
        "/callback",
        "/",
        "/callback/",
        "//callback",
        "/cb",
        "*",
        "",
        "/callback%00",
    ];
    match rng.gen_range(0..10) {
        // Pure garbage, sometimes long.
        0 => {
            let len = if rng.gen_ratio(1, 10) {
                70_000
            } else {
                rng.gen_range(1..300)
            };
            let mut req: Vec<u8> = (0..len).map(|_| rng.r#gen::<u8>()).collect();
            req.extend_from_slice(b"\r\n\r\n");
            req
        }
        // A plausible callback (right host and path, well-formed query) with wrong values.
        1..=4 => {
            let keys = ["state", "code", "error", "error_description", "iss", "x"];
            let mut pairs = Vec::new();
            for key in keys {
                if rng.gen_bool(0.6) {
                    let len = rng.gen_range(0..40);
                    let value: String = (0..len).map(|_| char::from(rng.gen_range(b'a'..=b'z'))).collect();
                    pairs.push(format!("{key}={value}"));
                }
            }
            format!(
                "GET /callback?{} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n",
                pairs.join("&")
            )
            .into_bytes()
        }
        // The real state and a code, refused for the method, the path or the host.
        5 => {
            let (method, path, host) = match rng.gen_range(0..3) {
                0 => (
                    ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"][rng.gen_range(0..5)],
                    "/callback",
                    format!("127.0.0.1:{port}"),
                ),
                1 => (
                    "GET",
                    ["/", "/callback/", "/cb", "//callback"][rng.gen_range(0..4)],
                    format!("127.0.0.1:{port}"),
                ),
                _ => (
                    "GET",
                    "/callback",
                    ["evil.example", "attacker.test:80", "127.0.0.1"][rng.gen_range(0..3)].to_owned(),
                ),
            };
            format!(
                "{method} {path}?code=stolen&state={real_state} HTTP/1.1\r\nHost: {host}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .into_bytes()
        }
        // Anything goes in every part.
        _ => {
            let mut query: Vec<u8> = (0..rng.gen_range(0..200))
                .map(|_| {
                    if rng.gen_ratio(1, 20) {
                        rng.r#gen::<u8>()
                    } else {
                        ALPHABET[rng.gen_range(0..ALPHABET.len())]
                    }
                })
                .collect();
            if rng.gen_ratio(1, 30) {
                query.extend(std::iter::repeat_n(b'q', 9000));
            }
            let host = match rng.gen_range(0..5) {
                0 => format!("127.0.0.1:{port}"),
                1 => "evil.example".to_owned(),
                2 => format!("[::1]:{port}"),
                3 => format!("localhost:{port}\r\nHost: evil.example"),
                _ => String::new(),
            };
            let mut req = Vec::new();
            req.extend_from_slice(methods[rng.gen_range(0..methods.len())].as_bytes());
            req.push(b' ');
            req.extend_from_slice(paths[rng.gen_range(0..paths.len())].as_bytes());
            req.push(b'?');
            req.extend_from_slice(&query);
            req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
            req.extend_from_slice(host.as_bytes());
            req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
            req
        }
    }
}

/// A slow client: connects, sends part of a request head, then one byte every 200 ms until
/// `stop` is set or the server closes the connection. Returns when it stopped.
fn slowloris(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let mut conn = TcpStream::connect(addr).expect("connect the slow client");
    conn.write_all(b"GET /callback?state=")
        .expect("start the slow request");
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            if conn.write_all(b"a").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

/// Cache entry files (`.json` / `.enc`) under `dir`.
fn entry_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "enc"))
        .collect()
}

fn temp(prefix: &str) -> TempDir {
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir");
    std::fs::create_dir(tmp.path().join("home")).expect("create HOME");
    tmp
}

// ---------------------------------------------------------------------------------------------
// 1. The loopback callback server of the real binary

#[test]
fn hostile_loopback_thousand_random_requests_then_the_genuine_callback_logs_in() {
    let idp = StubIdp::start(Fault::Good);
    let tmp = temp("koidc-hostile-");
    let cache = tmp.path().join("cache");
    let mut login = PendingLogin::start(&tmp.path().join("home"), &cache, idp.issuer(), 120);

    // koidc listens on 127.0.0.1 only: one listening socket, the callback's.
    assert_eq!(
        listening_addresses(login.koidc.pid(), login.callback.port()),
        [login.callback.to_string()],
        "koidc must listen on the loopback callback address only"
    );
    // The same by the sockets table (what a test run by another user than root relies on).
    assert_eq!(
        listening_on_port_by_uid(login.callback.port()),
        [login.callback.to_string()],
        "koidc must listen on the callback's port on the loopback address only"
    );

    let seed = seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for n in 0..1000 {
        let request = random_request(&mut rng, login.callback.port(), &login.state);
        let reply = raw(login.callback, &request);
        assert_ne!(
            reply.status,
            200,
            "seed {seed}, request {n} was accepted: {:?}",
            String::from_utf8_lossy(&request[..request.len().min(300)])
        );
        *statuses.entry(reply.status).or_default() += 1;
    }
    let took = started.elapsed();
    assert!(login.koidc.running(), "koidc exited during the random requests");
    assert_eq!(
        idp.hits("token"),
        0,
        "no random request reached the token endpoint"
    );
    // Every one was answered (0 would be a dropped connection): 400, 404, 405, 431 only.
    let answered: BTreeSet<u16> = statuses.keys().copied().collect();
    assert!(
        answered.is_subset(&BTreeSet::from([400, 404, 405, 431])),
        "seed {seed}: unexpected statuses {statuses:?}"
    );
    eprintln!("hostile: 1000 random requests (seed {seed}) in {took:?}: {statuses:?}");

    // The genuine callback completes the login.
    let callback = login.authorize();
    let reply = login.get(&callback);
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert!(reply.body.contains("Logged in to koidc"), "{}", reply.body);
    let (out, _) = login.koidc.finish_within(Duration::from_secs(30));
    out.assert_success();
    let cred = parse_exec_credential(&out);
    assert_eq!(idp.issued_id_tokens(), std::slice::from_ref(&cred.token));
    assert_eq!(idp.hits("token"), 1, "one code redemption");
    assert_eq!(entry_files(&cache).len(), 1);
}

#[test]
fn hostile_loopback_only_the_genuine_callback_completes_the_login() {
    let idp = StubIdp::start(Fault::Good);
    let tmp = temp("koidc-hostile-");
    let cache = tmp.path().join("cache");
    let mut login = PendingLogin::start(&tmp.path().join("home"), &cache, idp.issuer(), 120);
    let port = login.callback.port();
    let state = login.state.clone();

    // A slow client trickling a request head, and an idle connection, held throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let slow = slowloris(login.callback, stop.clone());
    let _idle = TcpStream::connect(login.callback).expect("connect an idle client");

    // Two real codes for this login's state (the IdP redirected twice).
    let first = login.authorize();
    let second = login.authorize();
    let first_code = first
        .split_once("code=")
        .and_then(|(_, rest)| rest.split('&').next())
        .expect("a code")
        .to_owned();
    assert_eq!(idp.hits("authorize"), 2);

    let refused: Vec<(&str, Reply)> = vec![
        ("wrong state", login.get(&format!("/callback?code={first_code}&state=not-{state}"))),
        ("missing state", login.get(&format!("/callback?code={first_code}"))),
        ("empty state", login.get(&format!("/callback?code={first_code}&state="))),
        ("error with a wrong state", login.get("/callback?error=access_denied&state=forged")),
        (
            "repeated state",
            login.get(&format!("/callback?code={first_code}&state={state}&state={state}")),
        ),
        ("bad percent-encoding", login.get(&format!("{first}&x=%zz"))),
        ("other path", login.get(&first.replacen("/callback", "/callback/", 1))),
        ("foreign Host (DNS rebinding)", get_with_host(login.callback, &first, &format!("evil.example:{port}"))),
        ("Host of another port", get_with_host(login.callback, &first, &format!("127.0.0.1:{}", port.wrapping_add(1)))),
        (
            "absolute-form target naming another host",
            get_with_host(login.callback, &format!("http://evil.example:{port}{first}"), &login.host()),
        ),
        (
            "two Host headers",
            get_with_host(login.callback, &first, &format!("127.0.0.1:{port}\r\nHost: evil.example")),
        ),
        (
            "POST",
            raw(
                login.callback,
                format!("POST {first} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            ),
        ),
        (
            "PUT",
            raw(
                login.callback,
                format!("PUT {first} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            ),
        ),
        ("1 MiB query", login.get(&format!("{first}&pad={}", "a".repeat(1 << 20)))),
        ("9 KiB query", login.get(&format!("{first}&pad={}", "a".repeat(9 * 1024)))),
    ];
    let expected: HashMap<&str, u16> = HashMap::from([
        ("wrong state", 400),
        ("missing state", 400),
        ("empty state", 400),
        ("error with a wrong state", 400),
        ("repeated state", 400),
        ("bad percent-encoding", 400),
        ("other path", 404),
        ("foreign Host (DNS rebinding)", 400),
        ("Host of another port", 400),
        ("absolute-form target naming another host", 400),
        ("two Host headers", 400),
        ("POST", 405),
        ("PUT", 405),
        ("1 MiB query", 431),
        ("9 KiB query", 400),
    ]);
    for (what, reply) in &refused {
        assert_eq!(reply.status, expected[what], "{what}: {}", reply.head);
        if reply.status == 405 {
            assert_eq!(reply.header("allow").as_deref(), Some("GET, HEAD"), "{what}");
        }
        assert!(!reply.body.contains("Logged in"), "{what}: {}", reply.body);
    }
    let host_reply = &refused[7].1;
    assert!(host_reply.body.contains("unexpected Host"), "{}", host_reply.body);
    // A HEAD (link preview) of the real callback answers 200 but does not consume the login.
    let head = raw(
        login.callback,
        format!("HEAD {first} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(head.status, 200);
    assert!(login.koidc.running(), "a refused request ended the login");
    assert_eq!(idp.hits("token"), 0, "nothing was redeemed yet");

    // The genuine callback: the login completes and koidc exits promptly despite the slow client.
    let (callback_addr, host) = (login.callback, login.host());
    let reply = login.get(&first);
    let answered = Instant::now();
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert!(
        reply.body.contains("Logged in to koidc. You may close this tab."),
        "{}",
        reply.body
    );
    // A second callback after the first (the other real code): refused or nobody listens.
    let again = login.get(&second);
    assert!(
        again.status == 0 || (again.status == 400 && again.body.contains("already finished")),
        "the second callback must not be accepted: {} {}",
        again.head,
        again.body
    );
    let (out, _) = login.koidc.finish_within(Duration::from_secs(30));
    let exited = answered.elapsed();
    stop.store(true, Ordering::SeqCst);
    let _ = slow.join();
    out.assert_success();
    assert!(
        exited < Duration::from_secs(10),
        "koidc took {exited:?} to exit after the callback (the slow client must not hold it)"
    );
    let cred = parse_exec_credential(&out);
    assert_eq!(
        idp.hits("token"),
        1,
        "exactly one code redeemed: the genuine callback's"
    );
    assert_eq!(idp.issued_id_tokens(), std::slice::from_ref(&cred.token));
    assert_eq!(
        get_with_host(callback_addr, &second, &host).status,
        0,
        "the callback server is gone after the login"
    );
    assert!(!out.stderr.contains(&first_code), "the code leaked on stderr");
}

#[test]
fn hostile_loopback_only_rejected_callbacks_end_at_the_timeout_with_their_count() {
    let idp = StubIdp::start(Fault::Good);
    let tmp = temp("koidc-hostile-");
    let cache = tmp.path().join("cache");
    let login = PendingLogin::start(&tmp.path().join("home"), &cache, idp.issuer(), 4);
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let slow = slowloris(login.callback, stop.clone());
    for state in ["forged-1", "forged-2", "forged-3"] {
        assert_eq!(login.get(&format!("/callback?code=x&state={state}")).status, 400);
    }
    let (out, _) = login.koidc.finish_within(Duration::from_secs(30));
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let _ = slow.join();
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        took < Duration::from_secs(4 + 3),
        "koidc must stop at its 4 s timeout (plus a 1 s grace), not wait for the slow client: {took:?}"
    );
    assert_eq!(out.stdout, "");
    let lines = out.stderr_lines();
    // The hint to log in again carries get-token's options.
    let last = lines.last().copied().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "koidc: no login callback arrived within 4s (3 callbacks with a wrong state were rejected); \
             run `koidc login --issuer {} --client-id {CLIENT_ID} --cache file --cache-dir ",
            idp.issuer()
        )) && last.ends_with(" --timeout 4` to try again"),
        "{:?}",
        out.stderr
    );
    assert_eq!(
        lines.len(),
        2,
        "the browser notice and the error: {:?}",
        out.stderr
    );
    assert_eq!(idp.hits("token"), 0);
    assert_eq!(entry_files(&cache), Vec::<PathBuf>::new());
}

// ---------------------------------------------------------------------------------------------
// 2. MiniIdp: refresh tokens with rotation and reuse detection, key rotation, recorded secrets.

/// The fixture key of the stub IdP (kid `k1`).
fn fixture_pem() -> String {
    let path = repo_root().join("tests/fixtures/stub-idp-rsa.pem");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let start = text.find("-----BEGIN").expect("a PEM block");
    text[start..].to_owned()
}

/// The key the IdP rotates to (kid `k2`).
///
/// TEST-ONLY KEY, generated for this file with `openssl genrsa -traditional 2048`. It protects
/// nothing; never use it anywhere else.
const ROTATED_KEY_PEM: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAswVG20LHMVQQHOLRSyYAADNf6P+OL+jECq3y+B3cx5FPY0wd
TsWeNj31cZ+6txlVDmdYa99soZwkPhUWfz6gMbnEF5l3I5HPGVNBxWbLhK7K7fQs
3YLrdCnHGWklV5TBJMfsvn9xlyAulwFEO0KRwShyjFXZXPMH/J3cLwDr5LUvN2Ni
h703yxtEQ0AL8Yo5hSwxYbduwxfpljniwOamNGKbiatrCoTQa1ftQmUKr12u6Bkv
Nolh74R/j0yoXM+KGWf+9dkd+cfjquJzMZkbMPTWkJ42t1fBmr9ylyDHd50KAam6
ufpBUkT2CgxpHXwdOniuQRhxYJc4nfvSZT7ZPwIDAQABAoIBAAYz2e9MMlfvMFpl
MW3dHzA37Mwcg/H8/+3ZdmBKXeqRik1Hxyws2f0fIHCTYYYT2/KSehR4D+zO2s1G
hcUFh8oGma4HpIJtpt3wbd2dC310C5aQWI2Zikw4C6yXDAgrdesEUkY3Ztl0RVOj
Y5h6B1Ad9U9kxLyHtHB4N7duh2h2dRjYc3z4QqPFmoYqTkvMaWBe92ig/MHJ7c1o
zg5NqTFRuZzQSMYQQbvIyGrJrg3vZ9dV/ICtyJkVgK+BWO9YUyNWlvEeoSU4N0vD
B2X+EOAZHqUyrJhND0S5UFkyXuxuiHl+M4FYYd4TrWdhGHM655llbM2OjU4lDr81
Zod4EqECgYEA3NvGdbr6KjyyxcTHZ237ZLZFHwmk5ld3UZMxH7y/wJgrFPQQeQuz
BCNggUj9X5VQiY5na1u7F5MlFHx7Q71RJeA5I6eM+3Id9fsTT7fe3zpIApuJ8QyC
aXRiAJg5zOJZ1GnwfE64gLMWG3ZZE67YMqRsmRLEzpdqMxcsRbhSLrMCgYEAz4FR
4FAsLDfx7lxBHxcrotARCV7K0qrpPvHnc0uWV9IBFDP7bItn19nycDtPhZB91pKc
b/mDvJVosGi5SrB9Dy22ys2YF9+/98LJ0lYWDxLceMAqxM5F/Bn5DxnN3IDOAW17
WTpDpSLXkyEsXOlgZyuAyTt6PzGIxLUX9ac4MUUCgYBO9kh7ORFN3ouwB42fXgP+
WuhVk3YgYG8pfC2ZAjuwWPc2M5hcHqGvPhK3xmfIL7MuqvowuQgoApTEQUk0y8/i
ccscA0B1ebRaiJy76KpHNygdvoxP4UATAegz/DjWFqs1NXckimSOpvilcuegEOf9
Gyo0hDBXCG2QvJ04hBDl3wKBgGP+79PnDsJoW2AAeSlgYxjcp7kaQyduUWSR8nVv
MY40l2yC+GCAdZRhZSGMk2/MB7hFgrm7Ri602XRZoyFJF5se7n2gwfCPVNUyu0tv
TMYK0tAl2vZoaPVqFsmeJ8RhFeU+OzjuiPalablvPQ+xL1HIdxGCZhDZ8AzLMDaj
VML5AoGBANQiHwnboduGE35TuV/NAnZRg76Q3LD7jpzeRJer33fqO3y5yitCwXgy
/fa1DGL6BA2pCIs3FMD9iXGdhMTAAd9FLK7NDurOyHI/ZRm5Z2gHWh0j9UygD+6U
+edoXtMcK12EMahNyvYsYXYUK8+DJYc2NSkG6Bn2otkPfS3mM7OG
-----END RSA PRIVATE KEY-----
";

/// How [`MiniIdp`] behaves.
#[derive(Debug, Clone, Copy)]
struct MiniOptions {
    /// Lifetime of ID tokens, in seconds (koidc refreshes tokens with less than 90 s left).
    id_token_lifetime: i64,
    /// At the first code redemption, publish only `k2` and sign with it (a key rotation between
    /// koidc's discovery and its token request).
    rotate_keys_at_first_token: bool,
    /// Put the presented refresh token and the client secret into error descriptions (a
    /// provider that echoes secrets back: koidc must scrub them).
    echo_secrets_in_errors: bool,
}

impl Default for MiniOptions {
    fn default() -> Self {
        MiniOptions {
            id_token_lifetime: 3600,
            rotate_keys_at_first_token: false,
            echo_secrets_in_errors: false,
        }
    }
}

struct Grant {
    nonce: Option<String>,
    challenge: Option<String>,
    redirect_uri: String,
}

struct RefreshToken {
    family: u64,
    used: bool,
}

#[derive(Default)]
struct MiniState {
    published: Vec<&'static str>,
    signing: &'static str,
    grants: HashMap<String, Grant>,
    refresh: HashMap<String, RefreshToken>,
    revoked_families: HashSet<u64>,
    next_family: u64,
    /// What the token endpoint did, in order: `authorization_code`, `refresh_token`,
    /// `refresh_token: reused (family revoked)`, `refresh_token: revoked family`.
    log: Vec<String>,
    hits: HashMap<&'static str, usize>,
    secrets: Secrets,
    client_secrets: BTreeSet<String>,
}

struct MiniShared {
    issuer: String,
    options: MiniOptions,
    keys: HashMap<&'static str, CoreRsaPrivateSigningKey>,
    state: Mutex<MiniState>,
}

/// A small OpenID provider on the test runtime, issuer `http://127.0.0.1:PORT/mini`, whose
/// `/authorize` redirects at once (any client following redirects is its browser).
struct MiniIdp {
    shared: Arc<MiniShared>,
    task: tokio::task::JoinHandle<()>,
}

impl MiniIdp {
    fn start(options: MiniOptions) -> MiniIdp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the mini IdP");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("mini IdP address");
        let key = |pem: &str, kid: &str| {
            CoreRsaPrivateSigningKey::from_pem(pem, Some(JsonWebKeyId::new(kid.to_owned())))
                .expect("a test RSA key")
        };
        let shared = Arc::new(MiniShared {
            issuer: format!("http://{addr}/mini"),
            options,
            keys: HashMap::from([
                ("k1", key(&fixture_pem(), "k1")),
                ("k2", key(ROTATED_KEY_PEM, "k2")),
            ]),
            state: Mutex::new(MiniState {
                published: vec!["k1"],
                signing: "k1",
                ..MiniState::default()
            }),
        });
        let app = Router::new()
            .route("/mini/.well-known/openid-configuration", get(mini_discovery))
            .route("/mini/keys", get(mini_keys))
            .route("/mini/authorize", get(mini_authorize))
            .route("/mini/token", post(mini_token))
            .with_state(shared.clone());
        let rt = runtime();
        let listener = {
            let _guard = rt.enter();
            tokio::net::TcpListener::from_std(listener).expect("register the mini IdP listener")
        };
        let task = rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MiniIdp { shared, task }
    }

    fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MiniState> {
        self.shared.state.lock().unwrap()
    }

    fn hits(&self, what: &str) -> usize {
        self.state().hits.get(what).copied().unwrap_or(0)
    }

    fn log(&self) -> Vec<String> {
        self.state().log.clone()
    }

    fn secrets(&self) -> Secrets {
        self.state().secrets.clone()
    }

    fn client_secrets(&self) -> BTreeSet<String> {
        self.state().client_secrets.clone()
    }
}

impl Drop for MiniIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn mini_reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn mini_discovery(State(s): State<Arc<MiniShared>>) -> Response {
    *s.state.lock().unwrap().hits.entry("discovery").or_default() += 1;
    let i = &s.issuer;
    mini_reply(
        StatusCode::OK,
        json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/authorize"),
            "token_endpoint": format!("{i}/token"),
            "jwks_uri": format!("{i}/keys"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        }),
    )
}

async fn mini_keys(State(s): State<Arc<MiniShared>>) -> Response {
    let mut st = s.state.lock().unwrap();
    *st.hits.entry("keys").or_default() += 1;
    let keys: Vec<Value> = st
        .published
        .iter()
        .map(|kid| serde_json::to_value(s.keys[kid].as_verification_key()).expect("a JWK"))
        .collect();
    mini_reply(StatusCode::OK, json!({ "keys": keys }))
}

async fn mini_authorize(
    State(s): State<Arc<MiniShared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut st = s.state.lock().unwrap();
    *st.hits.entry("authorize").or_default() += 1;
    let Some(mut target) = q.get("redirect_uri").and_then(|r| Url::parse(r).ok()) else {
        return (StatusCode::BAD_REQUEST, "no redirect_uri").into_response();
    };
    let code = hex::encode(rand::thread_rng().r#gen::<[u8; 16]>());
    st.secrets.other.insert(code.clone());
    st.grants.insert(
        code.clone(),
        Grant {
            nonce: q.get("nonce").cloned(),
            challenge: q.get("code_challenge").cloned(),
            redirect_uri: q["redirect_uri"].clone(),
        },
    );
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", q.get("state").map(String::as_str).unwrap_or_default());
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}

fn mini_oauth_error(error: &str, description: &str) -> Response {
    mini_reply(
        StatusCode::BAD_REQUEST,
        json!({"error": error, "error_description": description}),
    )
}

async fn mini_token(State(s): State<Arc<MiniShared>>, headers: HeaderMap, body: String) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let mut st = s.state.lock().unwrap();
    *st.hits.entry("token").or_default() += 1;
    // client_secret_basic: the form-urlencoded id and secret, base64 (RFC 6749 2.3.1).
    let basic_secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| pair.split_once(':').map(|(_, secret)| secret.to_owned()))
        .map(|s| {
            url::form_urlencoded::parse(format!("s={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or(s)
        });
    let client_secret = basic_secret.or_else(|| form.get("client_secret").cloned());
    if let Some(secret) = &client_secret {
        st.client_secrets.insert(secret.clone());
    }
    for field in ["code", "code_verifier", "refresh_token"] {
        if let Some(v) = form.get(field) {
            st.secrets.other.insert(v.clone());
        }
    }
    let echo = |what: &str| -> String {
        if s.options.echo_secrets_in_errors {
            format!(
                "{what} (you sent {} with client secret {})",
                form.get("refresh_token")
                    .or(form.get("code"))
                    .cloned()
                    .unwrap_or_default(),
                client_secret.clone().unwrap_or_default()
            )
        } else {
            what.to_owned()
        }
    };
    let (nonce, family) = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some(grant) = form.get("code").and_then(|c| st.grants.remove(c)) else {
                return mini_oauth_error("invalid_grant", &echo("unknown or reused code"));
            };
            let challenge = form
                .get("code_verifier")
                .map(|v| URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(v.as_bytes())));
            if form.get("redirect_uri") != Some(&grant.redirect_uri)
                || challenge.is_none()
                || challenge != grant.challenge
            {
                return mini_oauth_error("invalid_grant", &echo("PKCE or redirect_uri mismatch"));
            }
            if s.options.rotate_keys_at_first_token && st.signing == "k1" {
                st.published = vec!["k2"];
                st.signing = "k2";
            }
            st.log.push("authorization_code".into());
            st.next_family += 1;
            (grant.nonce, st.next_family)
        }
        Some("refresh_token") => {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            let Some((family, used)) = st.refresh.get(&presented).map(|rt| (rt.family, rt.used)) else {
                st.log.push("refresh_token: unknown".into());
                return mini_oauth_error("invalid_grant", &echo("unknown refresh token"));
            };
            if used {
                // Okta: a rotated refresh token used again means theft; revoke the family.
                st.revoked_families.insert(family);
                st.log.push("refresh_token: reused (family revoked)".into());
                return mini_oauth_error("invalid_grant", &echo("the refresh token was already used"));
            }
            if st.revoked_families.contains(&family) {
                st.log.push("refresh_token: revoked family".into());
                return mini_oauth_error("invalid_grant", &echo("the refresh token was revoked"));
            }
            if let Some(rt) = st.refresh.get_mut(&presented) {
                rt.used = true;
            }
            st.log.push("refresh_token".into());
            (None, family)
        }
        _ => return mini_oauth_error("unsupported_grant_type", "authorization_code or refresh_token"),
    };
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": s.issuer,
        "sub": "mini-user-1",
        "aud": CLIENT_ID,
        "exp": now + s.options.id_token_lifetime,
        "iat": now - 1,
        "email": "mini-user@example.com",
    });
    if let Some(nonce) = nonce {
        claims["nonce"] = json!(nonce);
    }
    let kid = st.signing;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": kid, "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = s.keys[kid]
        .sign(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, input.as_bytes())
        .expect("RS256 signature");
    let id_token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
    let refresh_token = format!("rt-{}", hex::encode(rand::thread_rng().r#gen::<[u8; 16]>()));
    let access_token = format!("at-{}", hex::encode(rand::thread_rng().r#gen::<[u8; 16]>()));
    st.refresh
        .insert(refresh_token.clone(), RefreshToken { family, used: false });
    st.secrets.id_tokens.insert(id_token.clone());
    st.secrets.other.insert(refresh_token.clone());
    st.secrets.other.insert(access_token.clone());
    mini_reply(
        StatusCode::OK,
        json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "id_token": id_token,
            "refresh_token": refresh_token,
        }),
    )
}

/// `koidc get-token` against a [`MiniIdp`] with a file cache in `cache`, curl as the browser and
/// `extra` flags.
fn mini_get_token(home: &Path, idp: &MiniIdp, cache: &Path, extra: &[&str]) -> Command {
    let mut cmd = clean_command(koidc_bin(), home);
    cmd.args(["get-token", "--issuer", idp.issuer(), "--client-id", CLIENT_ID])
        .args(["--cache", "file", "--cache-dir"])
        .arg(cache)
        .args(["--browser-command", CURL_BROWSER, "--timeout", "20"])
        .args(extra);
    cmd
}

#[track_caller]
fn assert_mini_credential(out: &Output, idp: &MiniIdp) -> ExecCredential {
    out.assert_success();
    let cred = parse_exec_credential(out);
    assert_eq!(cred.claims["iss"], idp.issuer());
    assert!(
        idp.secrets().id_tokens.contains(&cred.token),
        "not a token the IdP issued"
    );
    assert!(
        crate::support::find_jwt(&out.stderr).is_none(),
        "a JWT leaked on stderr: {:?}",
        out.stderr
    );
    cred
}

#[test]
fn hostile_idp_jwks_rotation_during_login_is_followed_with_one_refetch() {
    let idp = MiniIdp::start(MiniOptions {
        rotate_keys_at_first_token: true,
        ..MiniOptions::default()
    });
    let tmp = temp("koidc-hostile-");
    let out = run(&mut mini_get_token(
        &tmp.path().join("home"),
        &idp,
        &tmp.path().join("cache"),
        &[],
    ));
    let cred = assert_mini_credential(&out, &idp);
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(cred.token.split('.').next().expect("a JWT header"))
            .expect("base64url header"),
    )
    .expect("JSON header");
    assert_eq!(header["kid"], "k2", "the token is signed with the rotated key");
    assert_eq!(
        idp.hits("keys"),
        2,
        "koidc fetched the JWKS at discovery (k1 only) and once more for the new kid"
    );
    assert_eq!(idp.log(), ["authorization_code"]);
}

#[test]
fn hostile_idp_rotated_refresh_token_reused_by_a_racing_process_falls_back_to_login() {
    // 92 s tokens: stale (less than koidc's 90 s margin left) 2 s after issue.
    let idp = MiniIdp::start(MiniOptions {
        id_token_lifetime: 92,
        ..MiniOptions::default()
    });
    let tmp = temp("koidc-hostile-");
    let home = tmp.path().join("home");
    let (dir_a, dir_b) = (tmp.path().join("cache-a"), tmp.path().join("cache-b"));
    let first = assert_mini_credential(&run(&mut mini_get_token(&home, &idp, &dir_a, &[])), &idp);

    // Another machine state sharing the same refresh token: B's cache is a copy of A's (two
    // cache directories, so two locks: nothing serializes the two processes).
    std::fs::create_dir(&dir_b).expect("create B's cache dir");
    std::fs::set_permissions(&dir_b, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod 700");
    let entries = entry_files(&dir_a);
    assert_eq!(entries.len(), 1);
    let copy = dir_b.join(entries[0].file_name().expect("a file name"));
    std::fs::copy(&entries[0], &copy).expect("copy the entry");
    assert_eq!(mode(&copy), 0o600);

    wait_until_stale(first.exp());
    let a = crate::support::spawn(&mut mini_get_token(&home, &idp, &dir_a, &[]));
    let b = crate::support::spawn(&mut mini_get_token(&home, &idp, &dir_b, &[]));
    let (out_a, out_b) = (a.wait(RUN_TIMEOUT), b.wait(RUN_TIMEOUT));
    let (cred_a, cred_b) = (
        assert_mini_credential(&out_a, &idp),
        assert_mini_credential(&out_b, &idp),
    );
    assert_ne!(cred_a.token, first.token);
    assert_ne!(cred_b.token, first.token);

    // One of them refreshed; the other presented the rotated-away token, the IdP revoked the
    // whole family, and that process fell back to a browser login.
    assert_eq!(
        idp.log(),
        [
            "authorization_code",
            "refresh_token",
            "refresh_token: reused (family revoked)",
            "authorization_code"
        ]
    );
    const FALLBACK: &str = "koidc: the refresh token was not accepted (the identity provider rejected the \
                            refresh token (invalid_grant: the refresh token was already used); log in again); \
                            logging in again";
    let (winner, winner_dir, loser) = match (out_a.stderr.contains(FALLBACK), out_b.stderr.contains(FALLBACK))
    {
        (false, true) => (&cred_a, &dir_a, &out_b),
        (true, false) => (&cred_b, &dir_b, &out_a),
        other => panic!(
            "exactly one process should fall back ({other:?}):\nA: {}\nB: {}",
            out_a.stderr, out_b.stderr
        ),
    };
    let lines = loser.stderr_lines();
    assert_eq!(
        lines.len(),
        3,
        "the loser says why, logs in and says who logged in: {:?}",
        loser.stderr
    );
    assert_eq!(lines[0], FALLBACK);
    assert!(lines[1].starts_with(BROWSER_NOTICE), "{:?}", loser.stderr);
    assert!(
        lines[2].starts_with("koidc: logged in as ") && lines[2].ends_with(&format!(" at {}", idp.issuer())),
        "{:?}",
        loser.stderr
    );

    // The winner's new refresh token belonged to the revoked family: its next refresh is refused
    // too, and it also logs in again, without a crash.
    wait_until_stale(winner.exp());
    let out = run(&mut mini_get_token(&home, &idp, winner_dir, &[]));
    let renewed = assert_mini_credential(&out, &idp);
    assert_ne!(renewed.token, winner.token);
    assert_eq!(
        idp.log()[4..],
        ["refresh_token: revoked family", "authorization_code"]
    );
    assert!(
        out.stderr
            .contains("(invalid_grant: the refresh token was revoked); log in again); logging in again"),
        "{:?}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// 3. The cache through the binary

/// One user of the stub IdP with two identities (default scopes, and `--scope email`).
struct CacheUser {
    tmp: TempDir,
}

impl CacheUser {
    fn new() -> CacheUser {
        CacheUser {
            tmp: temp("koidc-hostile-cache-"),
        }
    }

    fn cache(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    fn get_token(&self, idp: &StubIdp, extra: &[&str]) -> Output {
        let mut cmd = clean_command(koidc_bin(), &self.tmp.path().join("home"));
        cmd.args(["get-token", "--issuer", idp.issuer(), "--client-id", CLIENT_ID])
            .args(["--cache", "file", "--cache-dir"])
            .arg(self.cache())
            .args(["--browser-command", CURL_BROWSER, "--timeout", "20"])
            .args(extra);
        run(&mut cmd)
    }

    /// Logs both identities in; returns (entry of the default identity, entry of the other).
    fn two_entries(&self, idp: &StubIdp) -> (PathBuf, PathBuf) {
        self.get_token(idp, &[]).assert_success();
        let first = entry_files(&self.cache());
        assert_eq!(first.len(), 1);
        self.get_token(idp, &["--scope", "email"]).assert_success();
        let both = entry_files(&self.cache());
        assert_eq!(both.len(), 2);
        let other = both
            .into_iter()
            .find(|p| *p != first[0])
            .expect("the second entry");
        (first[0].clone(), other)
    }
}

/// Writes `bytes` over an existing 0600 file (its mode stays).
fn overwrite(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    assert_eq!(mode(path), 0o600);
}

#[test]
fn hostile_cache_corrupt_and_truncated_entries_are_replaced_by_a_login_and_others_kept() {
    let idp = StubIdp::start(Fault::Good);
    let user = CacheUser::new();
    let (entry, other) = user.two_entries(&idp);
    let other_bytes = std::fs::read(&other).expect("read the other entry");
    let full = std::fs::read(&entry).expect("read the entry");
    let half = full.len() / 2;

    for (damage, reason) in [
        (
            b"\x00\xffgarbage".to_vec(),
            "not valid JSON at line 1 column 1".to_owned(),
        ),
        (
            full[..half].to_vec(),
            format!("truncated JSON at line 1 column {half}"),
        ),
        (Vec::new(), "truncated JSON at line 1 column 0".to_owned()),
        (
            br#"{"version":7}"#.to_vec(),
            "it has format version 7 and this koidc reads version 1".to_owned(),
        ),
        (
            br#"{"version":1,"issuer":5}"#.to_vec(),
            "not a koidc cache entry at line 1 column 23".to_owned(),
        ),
    ] {
        overwrite(&entry, &damage);
        let logins = idp.hits("token");
        let out = user.get_token(&idp, &[]);
        out.assert_success();
        let cred = parse_exec_credential(&out);
        let warning = format!(
            "koidc: warning: ignoring the cached token: cache entry {} is unusable ({reason}); it will be \
             replaced at the next login",
            entry.display()
        );
        let lines = out.stderr_lines();
        let (logged_in, lines) = lines.split_last().expect("stderr lines");
        assert_eq!(
            *logged_in,
            format!("koidc: logged in as {EMAIL} at {}", idp.issuer()),
            "the login says who logged in"
        );
        let (notice, warnings) = lines.split_last().expect("stderr lines");
        assert!(
            notice.starts_with(BROWSER_NOTICE),
            "then a login: {:?}",
            out.stderr
        );
        // koidc reads the entry twice (before and after taking the lock) but warns once.
        assert!(
            warnings.len() == 1 && warnings[0] == warning,
            "expected {warning:?}, got {:?}",
            out.stderr
        );
        assert_eq!(idp.hits("token"), logins + 1, "one new login");
        // The damaged entry was replaced by the new token (0600); the other one is untouched.
        assert!(
            std::fs::read_to_string(&entry)
                .expect("read the entry")
                .contains(&cred.token)
        );
        assert_eq!(mode(&entry), 0o600);
        assert_eq!(std::fs::read(&other).expect("read the other entry"), other_bytes);
    }
    // The other identity is still a cache hit.
    let logins = idp.hits("token");
    let out = user.get_token(&idp, &["--scope", "email"]);
    out.assert_success();
    assert_eq!(out.stderr, "");
    assert_eq!(idp.hits("token"), logins);
}

#[test]
fn hostile_cache_world_readable_entry_is_refused_and_left_alone() {
    let idp = StubIdp::start(Fault::Good);
    let user = CacheUser::new();
    let (entry, other) = user.two_entries(&idp);
    let (entry_bytes, other_bytes) = (std::fs::read(&entry).unwrap(), std::fs::read(&other).unwrap());
    std::fs::set_permissions(&entry, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let logins = idp.hits("authorize");

    let out = user.get_token(&idp, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let line = out.assert_one_error_line();
    let path = entry.display();
    assert_eq!(
        line,
        format!(
            "koidc: cache entry {path} is accessible by group or others (mode 0644) and was not used; delete it \
             or run `chmod 600 {path}`"
        )
    );
    assert_eq!(idp.hits("authorize"), logins, "no login over a refused entry");
    assert_eq!(mode(&entry), 0o644, "koidc must not change the user's file");
    assert_eq!(std::fs::read(&entry).unwrap(), entry_bytes);
    assert_eq!(std::fs::read(&other).unwrap(), other_bytes);
    // The other identity still works from its cache.
    let out = user.get_token(&idp, &["--scope", "email"]);
    out.assert_success();
    assert_eq!(out.stderr, "");
}

#[test]
fn hostile_cache_group_readable_directory_is_refused() {
    let idp = StubIdp::start(Fault::Good);
    let user = CacheUser::new();
    let (entry, _) = user.two_entries(&idp);
    let before = std::fs::read(&entry).unwrap();
    std::fs::set_permissions(user.cache(), std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    let out = user.get_token(&idp, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let dir = user.cache();
    let dir = dir.display();
    assert_eq!(
        out.assert_one_error_line(),
        format!(
            "koidc: cache directory {dir} is accessible by group or others (mode 0750); run `chmod 700 {dir}` and \
             try again"
        )
    );
    assert_eq!(mode(&user.cache()), 0o750);
    assert_eq!(std::fs::read(&entry).unwrap(), before);
}

/// Locks the Secret Service's default collection (as a screen lock or `secret-tool lock` does).
fn lock_default_collection(address: &str) {
    use dbus::blocking::Connection;
    let mut channel = dbus::channel::Channel::open_private(address).expect("open the private bus");
    channel.register().expect("register on the bus");
    let conn = Connection::from(channel);
    let service = conn.with_proxy(
        "org.freedesktop.secrets",
        "/org/freedesktop/secrets",
        Duration::from_secs(5),
    );
    let (collection,): (dbus::Path<'static>,) = service
        .method_call("org.freedesktop.Secret.Service", "ReadAlias", ("default",))
        .expect("ReadAlias");
    let (locked, _prompt): (Vec<dbus::Path<'static>>, dbus::Path<'static>) = service
        .method_call(
            "org.freedesktop.Secret.Service",
            "Lock",
            (vec![collection.clone()],),
        )
        .expect("Lock");
    assert_eq!(locked, [collection], "the default collection is locked");
}

#[test]
fn hostile_cache_locked_keyring_falls_back_to_files_and_keeps_other_entries() {
    let idp = StubIdp::start(Fault::Good);
    let tmp = temp("koidc-hostile-keyring-");
    let home = tmp.path().join("home");
    let cache = tmp.path().join("cache");
    let session = SessionKeyring::new();
    let secret_service = SecretService::start(tmp.path(), &home);
    let get_token = |scope: &[&str], keyring: &dyn Fn(&mut Command)| -> Output {
        let mut cmd = clean_command(koidc_bin(), &home);
        cmd.args(["get-token", "--issuer", idp.issuer(), "--client-id", CLIENT_ID])
            .args(["--cache", "keyring", "--cache-dir"])
            .arg(&cache)
            .args(["--browser-command", CURL_BROWSER, "--timeout", "20"])
            .args(scope)
            .env("DBUS_SESSION_BUS_ADDRESS", &secret_service.address);
        keyring(&mut cmd);
        run(&mut cmd)
    };
    let joined = |cmd: &mut Command| session.join(cmd);

    // Unlocked: two identities, two encrypted entries.
    get_token(&[], &joined).assert_success();
    let first = entry_files(&cache);
    get_token(&["--scope", "email"], &joined).assert_success();
    let sealed = entry_files(&cache);
    assert_eq!(sealed.len(), 2);
    assert!(
        sealed.iter().all(|p| p.extension().is_some_and(|e| e == "enc")),
        "{sealed:?}"
    );
    // The other identity's (--scope email) entry, byte for byte.
    let other = sealed
        .iter()
        .find(|p| !first.contains(p))
        .expect("the second identity's entry")
        .clone();
    let other_bytes = std::fs::read(&other).expect("read the other entry");
    let logins = idp.hits("token");

    // Locked, and a process without the kernel-keyring copy (another login session): koidc
    // cannot get the master key, says so, logs in and caches in a 0600 file.
    lock_default_collection(&secret_service.address);
    let started = Instant::now();
    let out = get_token(&[], &fresh_session_keyring);
    let took = started.elapsed();
    out.assert_success();
    parse_exec_credential(&out);
    assert_eq!(idp.hits("token"), logins + 1, "one new login");
    // The reason docs/security.md gives: the Secret Service refuses at once.
    let warnings: Vec<&str> = out
        .stderr_lines()
        .into_iter()
        .filter(|l| l.starts_with("koidc: warning: "))
        .collect();
    assert_eq!(
        warnings,
        [format!(
            "koidc: warning: no usable keyring (the Secret Service refused access: Secret Service: \
             unlock prompt was dismissed); tokens are cached in files (mode 0600) under {}",
            cache.display()
        )],
        "{}",
        out.stderr
    );
    // Immediate: a login against the stub takes about half a second here. A koidc that waited
    // for an unlock would take its 25 s Secret Service timeout; 15 s leaves a loaded machine
    // room and still tells the two apart.
    eprintln!("hostile: locked keyring after {took:?}");
    assert!(
        took < Duration::from_secs(15),
        "the fallback waited {took:?} (the keyring timeout is 25 s)"
    );
    let now: Vec<PathBuf> = entry_files(&cache);
    let plain: Vec<&PathBuf> = now
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(plain.len(), 1, "the new token is in one plaintext entry: {now:?}");
    assert_eq!(mode(plain[0]), 0o600);
    // The other identity's encrypted entry is untouched and still served (key from @s).
    let other_sealed: Vec<&PathBuf> = now
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "enc"))
        .collect();
    assert_eq!(other_sealed, [&other], "{now:?}");
    assert_eq!(
        std::fs::read(&other).expect("read the other entry"),
        other_bytes,
        "the other identity's entry changed"
    );
    let out = get_token(&["--scope", "email"], &joined);
    out.assert_success();
    assert_eq!(out.stderr, "", "a cache hit for the other identity");
    assert_eq!(idp.hits("token"), logins + 1);
    // And the fallback entry is served as well.
    let out = get_token(&[], &joined);
    out.assert_success();
    assert_eq!(idp.hits("token"), logins + 1);
}

// ---------------------------------------------------------------------------------------------
// 4. Secret hygiene at maximum verbosity

/// A command for the lab's Dex with `--cache-dir DIR` instead of the lab's cache dir.
fn lab_command_in(lab: &Lab, sub: &str, dir: &Path, extra: &[&str]) -> Command {
    let mut args = lab.args(sub);
    let at = args
        .iter()
        .position(|a| a == "--cache-dir")
        .expect("the lab passes --cache-dir");
    args[at + 1] = dir.display().to_string();
    if extra.contains(&"--timeout") {
        let t = args
            .iter()
            .position(|a| a == "--timeout")
            .expect("the lab passes --timeout");
        args.drain(t..t + 2);
    }
    if extra.contains(&"--no-browser") {
        let b = args
            .iter()
            .position(|a| a == "--browser-command")
            .expect("the lab passes --browser-command");
        args.drain(b..b + 2);
    }
    let mut cmd = clean_command(koidc_bin(), &lab.home);
    cmd.args(args).args(extra).envs(lab.run_env());
    cmd
}

/// Files koidc wrote under `dirs` that are not cache entries (locks, cool-down markers).
fn non_entry_files(dirs: &[&Path]) -> Vec<PathBuf> {
    dirs.iter()
        .flat_map(|d| files_under(d))
        .filter(|p| !p.extension().is_some_and(|e| e == "json" || e == "enc"))
        .collect()
}

/// Fails when any `secret` (or any JWT) shows in `outputs`' stderr, or in `files`.
#[track_caller]
fn assert_nowhere(secrets: &BTreeSet<String>, outputs: &[Output], files: &[PathBuf]) {
    for out in outputs {
        assert!(
            crate::support::find_jwt(&out.stderr).is_none(),
            "{}: a JWT on stderr",
            out.what
        );
        for s in secrets {
            assert!(
                !out.stderr.contains(s.as_str()),
                "{}: a secret on stderr",
                out.what
            );
        }
    }
    for file in files {
        let bytes = std::fs::read(file).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            crate::support::find_jwt(&text).is_none(),
            "{}: a JWT in the file",
            file.display()
        );
        for s in secrets {
            assert!(
                !text.contains(s.as_str()),
                "{}: a secret in the file",
                file.display()
            );
        }
    }
}

#[test]
fn hygiene_every_dex_flow_at_maximum_verbosity_leaks_no_secret() {
    // 95 s ID tokens: stale 5 s after issue, so later calls refresh.
    let mut lab = Lab::start(LabOptions::id_tokens("95s"));
    lab.flags.push("-vvv".into());
    let (dir_b, dir_c) = (lab.tmp.path().join("cache-b"), lab.tmp.path().join("cache-c"));
    let mut outputs: Vec<(Output, Stdout)> = Vec::new();
    fn keep(outputs: &mut Vec<(Output, Stdout)>, out: Output, stdout: Stdout) -> Output {
        outputs.push((out.clone(), stdout));
        out
    }

    // Browser login, cache hit, whoami, login (valid token: no browser).
    let (out, first) = lab.get_token();
    keep(&mut outputs, out, Stdout::MayHoldIdToken);
    let (out, _) = lab.get_token();
    keep(&mut outputs, out, Stdout::MayHoldIdToken);
    keep(
        &mut outputs,
        lab.koidc("whoami", &[]).assert_success().clone(),
        Stdout::NoSecrets,
    );
    keep(
        &mut outputs,
        lab.koidc("login", &[]).assert_success().clone(),
        Stdout::NoSecrets,
    );
    // Refresh, then a forced browser login.
    wait_until_stale(first.exp());
    let (out, _) = lab.get_token();
    keep(&mut outputs, out, Stdout::MayHoldIdToken);
    keep(
        &mut outputs,
        lab.koidc("login", &["--force"]).assert_success().clone(),
        Stdout::NoSecrets,
    );
    assert_eq!(lab.browser.launches(), 2);
    // kubectl's exec info, non-interactive: a cache hit.
    let info = format!(r#"{{"kind":"ExecCredential","apiVersion":"{V1}","spec":{{"interactive":false}}}}"#);
    let hit = run(lab.command("get-token", &[]).env("KUBERNETES_EXEC_INFO", &info));
    let (hit, forced) = lab.assert_ok_get_token(&hit);
    keep(&mut outputs, hit, Stdout::MayHoldIdToken);

    // The device flow in another cache dir, approved from the code on stderr.
    let mut device = Live::spawn(&mut lab_command_in(
        &lab,
        "get-token",
        &dir_b,
        &["--grant", "device-code", "--no-browser"],
    ));
    let prompt = device.wait_for_line("enter the code", Duration::from_secs(30));
    let rest = prompt.split_once("to log in, open ").expect("a device prompt").1;
    let (uri, rest) = rest.split_once(" and enter the code ").expect("a code");
    let code = rest.split_once(" (waiting").expect("the wait").0.to_owned();
    let approver = repo_root().join("tests/support/device-approver.py");
    run(clean_command(&approver, &lab.home).args([uri, code.as_str()])).assert_success();
    let (out, _) = device.finish_within(RUN_TIMEOUT);
    out.assert_success();
    // (Not parse_exec_credential: Dex mints the token at approval, up to a poll interval before
    // koidc gets it, so less than the 90 s margin of these 95 s tokens may be left.)
    let v: Value = serde_json::from_str(&out.stdout).expect("an ExecCredential");
    assert_eq!(v["kind"], "ExecCredential");
    keep(&mut outputs, out, Stdout::MayHoldIdToken);

    // A browser login in a third cache dir rotates the first dir's refresh token away at Dex:
    // its next refresh is rejected and koidc logs in again.
    let out = run(&mut lab_command_in(&lab, "get-token", &dir_c, &[]));
    keep(
        &mut outputs,
        lab.assert_ok_get_token(&out).0,
        Stdout::MayHoldIdToken,
    );
    wait_until_stale(forced.exp());
    let (out, _) = lab.get_token();
    assert!(
        out.stderr.contains("the refresh token was not accepted"),
        "{:?}",
        out.stderr
    );
    keep(&mut outputs, out, Stdout::MayHoldIdToken);

    // A failed non-interactive login (timeout) and the cool-down that follows.
    let dir_d = lab.tmp.path().join("cache-d");
    let failed = run(
        lab_command_in(&lab, "get-token", &dir_d, &["--no-browser", "--timeout", "2"])
            .env("KUBERNETES_EXEC_INFO", &info),
    );
    assert_eq!(failed.status.code(), Some(1), "{}", failed.stderr);
    keep(&mut outputs, failed, Stdout::NoSecrets);
    let cooling = run(lab_command_in(&lab, "get-token", &dir_d, &[]).env("KUBERNETES_EXEC_INFO", &info));
    assert_eq!(cooling.status.code(), Some(1), "{}", cooling.stderr);
    assert!(
        cooling.stderr.contains("a login failed or was abandoned"),
        "{}",
        cooling.stderr
    );
    keep(&mut outputs, cooling, Stdout::NoSecrets);

    // Logout of one identity, then of all in the other dirs; whoami after logout fails.
    keep(
        &mut outputs,
        lab.koidc("logout", &[]).assert_success().clone(),
        Stdout::NoSecrets,
    );
    for dir in [&dir_b, &dir_c] {
        let mut cmd = clean_command(koidc_bin(), &lab.home);
        cmd.args(["logout", "--all", "--cache", "file", "-vvv", "--cache-dir"])
            .arg(dir);
        keep(
            &mut outputs,
            run(&mut cmd).assert_success().clone(),
            Stdout::NoSecrets,
        );
    }
    let whoami = lab.koidc("whoami", &[]);
    assert_eq!(whoami.status.code(), Some(1));
    keep(&mut outputs, whoami, Stdout::NoSecrets);

    let secrets = lab.proxy.secrets();
    let grants = lab.proxy.grants_since(0);
    for grant in [
        "authorization_code",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
    ] {
        assert!(
            grants.iter().any(|g| g == grant),
            "the suite made no {grant} grant: {grants:?}"
        );
    }
    assert!(
        secrets.other.len() >= 10,
        "{} secrets recorded",
        secrets.other.len()
    );
    let all: BTreeSet<String> = secrets.id_tokens.iter().chain(&secrets.other).cloned().collect();
    for (out, stdout) in &outputs {
        assert_no_leak(out, &secrets, *stdout);
        // (whoami is offline and has nothing to say at -v.)
        assert!(
            out.what.contains("whoami") || out.stderr.lines().any(|l| l.starts_with("koidc: debug: ")),
            "{}: -vvv printed no debug line",
            out.what
        );
    }
    let files = non_entry_files(&[&lab.cache_dir, &dir_b, &dir_c, &dir_d]);
    assert!(
        files.iter().any(|f| f.to_string_lossy().ends_with(".cooldown")),
        "{files:?}"
    );
    let outs: Vec<Output> = outputs.into_iter().map(|(o, _)| o).collect();
    assert_nowhere(&all, &outs, &files);
    eprintln!(
        "hygiene: {} koidc runs, {} secrets checked ({} ID tokens), {} files, grants {grants:?}",
        outs.len(),
        all.len(),
        secrets.id_tokens.len(),
        files.len()
    );
}

#[test]
fn hygiene_client_secret_and_echoed_secrets_never_printed() {
    const CLIENT_SECRET: &str = "cs-3f9a1c7e5b2d4086";
    let idp = MiniIdp::start(MiniOptions {
        id_token_lifetime: 92,
        echo_secrets_in_errors: true,
        ..MiniOptions::default()
    });
    let tmp = temp("koidc-hostile-");
    let home = tmp.path().join("home");
    let (dir_a, dir_b) = (tmp.path().join("cache-a"), tmp.path().join("cache-b"));
    let koidc = |dir: &Path| {
        let mut cmd = mini_get_token(&home, &idp, dir, &["-vvv"]);
        cmd.env("KOIDC_CLIENT_SECRET", CLIENT_SECRET);
        cmd
    };
    let mut outputs = Vec::new();
    let login = run(&mut koidc(&dir_a));
    let first = assert_mini_credential(&login, &idp);
    outputs.push(login);
    // B shares A's refresh token; A refreshes first, so B's refresh is a reuse, which the IdP
    // answers with an error description holding the refresh token and the client secret.
    std::fs::create_dir(&dir_b).unwrap();
    std::fs::set_permissions(&dir_b, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let entry = entry_files(&dir_a).remove(0);
    std::fs::copy(&entry, dir_b.join(entry.file_name().unwrap())).unwrap();
    wait_until_stale(first.exp());
    let refreshed = run(&mut koidc(&dir_a));
    assert_mini_credential(&refreshed, &idp);
    outputs.push(refreshed);
    let reused = run(&mut koidc(&dir_b));
    assert_mini_credential(&reused, &idp);
    assert!(
        reused.stderr.contains("the refresh token was not accepted"),
        "{}",
        reused.stderr
    );
    outputs.push(reused);
    let mut logout = clean_command(koidc_bin(), &home);
    logout
        .args([
            "logout",
            "--issuer",
            idp.issuer(),
            "--client-id",
            CLIENT_ID,
            "--cache",
            "file",
            "-vvv",
            "--cache-dir",
        ])
        .arg(&dir_a)
        .env("KOIDC_CLIENT_SECRET", CLIENT_SECRET);
    outputs.push(run(&mut logout).assert_success().clone());

    assert_eq!(
        idp.client_secrets(),
        BTreeSet::from([CLIENT_SECRET.to_owned()]),
        "koidc authenticated with the client secret"
    );
    assert_eq!(
        idp.log(),
        [
            "authorization_code",
            "refresh_token",
            "refresh_token: reused (family revoked)",
            "authorization_code"
        ]
    );
    let mut all: BTreeSet<String> = idp.secrets().other;
    all.extend(idp.secrets().id_tokens);
    all.insert(CLIENT_SECRET.to_owned());
    let files = non_entry_files(&[&dir_a, &dir_b]);
    assert_nowhere(&all, &outputs, &files);
    for out in &outputs {
        assert!(!out.stdout.contains(CLIENT_SECRET));
    }
}

#[test]
fn hostile_exec_info_garbage_is_refused_before_any_network() {
    let idp = StubIdp::start(Fault::Good);
    let user = CacheUser::new();
    for (info, expected) in [
        (
            "{",
            "koidc: KUBERNETES_EXEC_INFO is not a valid ExecCredential: EOF while parsing an object at line 1 column 1",
        ),
        (
            r#"{"kind":"Pod"}"#,
            r#"koidc: KUBERNETES_EXEC_INFO is not a valid ExecCredential: kind is "Pod", expected "ExecCredential""#,
        ),
        (
            "[1,2]",
            "koidc: KUBERNETES_EXEC_INFO is not a valid ExecCredential: invalid type: integer `1`, expected a string at line 1 column 2",
        ),
    ] {
        let mut cmd = clean_command(koidc_bin(), &user.tmp.path().join("home"));
        cmd.args([
            "get-token",
            "--issuer",
            idp.issuer(),
            "--client-id",
            CLIENT_ID,
            "--cache",
            "file",
            "--cache-dir",
        ])
        .arg(user.cache())
        .env("KUBERNETES_EXEC_INFO", info);
        let out = run(&mut cmd);
        assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
        assert_eq!(out.assert_one_error_line(), expected);
    }
    // (Over 1 MiB is refused too, see the unit tests: an environment variable cannot be that big.)
    assert_eq!(idp.hits("discovery"), 0, "no network for a malformed exec info");
}
