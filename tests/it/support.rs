//! Plumbing shared by every integration test: where the binaries are, a background async runtime
//! for the in-process servers, running a process with a clean environment and a deadline,
//! reading an `ExecCredential` and a JWT, and checking that no secret leaked into the output.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// The `koidc` binary cargo built for this test run.
pub fn koidc_bin() -> &'static str {
    env!("CARGO_BIN_EXE_koidc")
}

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// How long one koidc (or kubectl) invocation may take before the test fails.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The `apiVersion` values of the exec credential protocol.
pub const V1: &str = "client.authentication.k8s.io/v1";
pub const V1BETA1: &str = "client.authentication.k8s.io/v1beta1";

/// The margin koidc takes off a token's `exp` for `expirationTimestamp`, and the minimum
/// lifetime a cached token must have left to be handed out.
pub const EXPIRY_MARGIN_SECS: i64 = 90;

/// A binary built by `tests/e2e/deps.sh`, named by its `KOIDC_E2E_*` variable. Panics (fails the
/// test) with instructions when it is missing: these tests must never pass by skipping.
pub fn e2e_binary(var: &str, what: &str) -> PathBuf {
    let hint = format!(
        "{what} is needed for this test: run ./tests/run.sh, or build it with \
         `tests/e2e/deps.sh` and `eval \"$(tests/e2e/deps.sh --print-env)\"` so that {var} is set"
    );
    let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) else {
        panic!("{var} is not set. {hint}");
    };
    let path = PathBuf::from(path);
    let executable = std::fs::metadata(&path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false);
    assert!(
        executable,
        "{var}={} is not an executable file. {hint}",
        path.display()
    );
    path
}

/// A handle to one tokio runtime, driven by a background thread, shared by all in-process
/// servers (proxy, HTTPS endpoint) of the test binary.
pub fn runtime() -> &'static tokio::runtime::Handle {
    static HANDLE: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build the test runtime");
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("it-runtime".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .expect("spawn the test runtime thread");
        handle
    })
}

/// The file `program` in a directory of `PATH`, if any.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// A command with an empty environment except `PATH` and `HOME` (a test's own directory).
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// What a finished process left behind.
#[derive(Debug, Clone)]
pub struct Output {
    /// A description of the command for failure messages (no secrets: koidc takes none as args).
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics with the full output unless the process exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.success(),
            "{} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless the process failed (non-zero exit).
    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        assert!(
            !self.success(),
            "{} was expected to fail but exited 0:\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            self.stdout,
            self.stderr
        );
        self
    }

    /// The non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| !l.trim().is_empty()).collect()
    }

    /// Asserts that a failure was reported as koidc's errors are: exactly one line on stderr,
    /// `koidc: ...`, and nothing on stdout. Returns that line.
    #[track_caller]
    pub fn assert_one_error_line(&self) -> String {
        assert!(
            self.stdout.is_empty(),
            "{} printed on stdout: {:?}",
            self.what,
            self.stdout
        );
        let lines = self.stderr_lines();
        assert_eq!(
            lines.len(),
            1,
            "{}: expected one error line on stderr, got {:?}",
            self.what,
            lines
        );
        assert!(
            lines[0].starts_with("koidc: "),
            "{}: the error line does not start with `koidc: `: {:?}",
            self.what,
            lines[0]
        );
        lines[0].to_string()
    }
}

/// A started process whose output is being collected.
pub struct Running {
    what: String,
    child: std::process::Child,
    started: Instant,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

fn collect(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

/// Starts `cmd` (which must have piped stdout and stderr, as [`clean_command`] sets up).
pub fn spawn(cmd: &mut Command) -> Running {
    let what = describe(cmd);
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let stdout = collect(child.stdout.take().expect("stdout is piped"));
    let stderr = collect(child.stderr.take().expect("stderr is piped"));
    Running {
        what,
        child,
        started,
        stdout,
        stderr,
    }
}

impl Running {
    /// Waits for the process; kills it and fails the test after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let Some(status) = exit_status_by(&mut self.child, self.started + timeout) else {
            let out = self
                .stdout
                .recv_timeout(Duration::from_secs(2))
                .unwrap_or_default();
            let err = self
                .stderr
                .recv_timeout(Duration::from_secs(2))
                .unwrap_or_default();
            panic!(
                "{} did not finish within {timeout:?}; killed it\n--- stdout ---\n{out}\n\
                 --- stderr ---\n{err}",
                self.what
            );
        };
        // A grandchild (the fake browser) may hold the pipes a little longer than its parent.
        let pipe_wait = Duration::from_secs(30);
        let stdout = self.stdout.recv_timeout(pipe_wait).unwrap_or_else(|_| {
            panic!(
                "{}: stdout stayed open {pipe_wait:?} after the process exited",
                self.what
            )
        });
        let stderr = self.stderr.recv_timeout(pipe_wait).unwrap_or_else(|_| {
            panic!(
                "{}: stderr stayed open {pipe_wait:?} after the process exited",
                self.what
            )
        });
        Output {
            what: self.what,
            status,
            stdout,
            stderr,
        }
    }
}

/// The exit status of `child` once it exits, or `None` when `deadline` passes first (the child
/// is then killed and reaped).
fn exit_status_by(child: &mut std::process::Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `cmd` to completion with [`RUN_TIMEOUT`].
pub fn run(cmd: &mut Command) -> Output {
    spawn(cmd).wait(RUN_TIMEOUT)
}

/// A started process whose stderr is read line by line while it runs, for tests that act on what
/// it prints (a URL, a device code) before it exits. Dropped before it exited (a test failed
/// early), it is killed and reaped.
pub struct Live {
    what: String,
    child: std::process::Child,
    stdin: Option<ChildStdin>,
    started: Instant,
    lines: mpsc::Receiver<String>,
    /// The stderr lines read so far.
    seen: Vec<String>,
    stdout: mpsc::Receiver<String>,
}

impl Live {
    /// Starts `cmd` (with piped stdout and stderr, as [`clean_command`] sets up; a piped stdin
    /// is kept for [`Live::write_line`]).
    pub fn spawn(cmd: &mut Command) -> Live {
        let what = describe(cmd);
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdout = collect(child.stdout.take().expect("stdout is piped"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Live {
            what,
            child,
            stdin,
            started,
            lines,
            seen: Vec::new(),
            stdout,
        }
    }

    /// The first stderr line containing `needle`, among those seen or arriving within
    /// `timeout`; kills the process and fails the test when none does.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "{}: no stderr line with {needle:?} within {timeout:?} ({e:?}); stderr so far:\n{}",
                        self.what,
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Writes `line` and a newline to the process's stdin (which must be piped).
    pub fn write_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is piped");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .expect("write to the process's stdin");
    }

    /// The process id, for looking the process up in `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("poll the child").is_none()
    }

    /// Waits for the process to exit, killing it and failing after `timeout` measured from the
    /// process's start (the whole run is bounded); returns the output and how long the process
    /// ran.
    pub fn finish(self, timeout: Duration) -> (Output, Duration) {
        let deadline = self.started + timeout;
        self.finish_by(deadline, timeout)
    }

    /// As [`Live::finish`], but `timeout` is measured from this call: for a process that was
    /// kept waiting on purpose (a login the test drives step by step) before it may exit.
    pub fn finish_within(self, timeout: Duration) -> (Output, Duration) {
        let deadline = Instant::now() + timeout;
        self.finish_by(deadline, timeout)
    }

    fn finish_by(mut self, deadline: Instant, timeout: Duration) -> (Output, Duration) {
        let Some(status) = exit_status_by(&mut self.child, deadline) else {
            panic!(
                "{} did not finish within {timeout:?}; stderr:\n{}",
                self.what,
                self.seen.join("\n")
            );
        };
        let ran = self.started.elapsed();
        // A grandchild (the fake browser) may hold the pipes a little longer than its parent.
        let pipe_wait = Duration::from_secs(30);
        while let Ok(line) = self.lines.recv_timeout(pipe_wait) {
            self.seen.push(line);
        }
        let stdout = self.stdout.recv_timeout(pipe_wait).unwrap_or_else(|_| {
            panic!(
                "{}: stdout stayed open {pipe_wait:?} after the process exited",
                self.what
            )
        });
        let mut stderr = self.seen.join("\n");
        if !stderr.is_empty() {
            stderr.push('\n');
        }
        let out = Output {
            what: std::mem::take(&mut self.what),
            status,
            stdout,
            stderr,
        };
        (out, ran)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // Only when a test failed before `finish`: a waiting koidc would otherwise hold its
        // loopback port and cache lock until its own timeout, well past the end of the test.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn describe(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    format!("`{program} {}`", args.join(" "))
}

/// koidc's cache entry files (`.json` / `.enc`) under `dir`.
pub fn entry_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "enc"))
        .collect()
}

/// The decoded payload of a JWT (no signature check: the tests compare with what Dex issued).
#[track_caller]
pub fn jwt_claims(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT (expected 3 dot-separated parts)");
    let payload = URL_SAFE_NO_PAD
        .decode(parts[1].trim_end_matches('='))
        .expect("JWT payload is base64url");
    serde_json::from_slice(&payload).expect("JWT payload is JSON")
}

/// An `ExecCredential` as koidc printed it.
#[derive(Debug, Clone)]
pub struct ExecCredential {
    pub api_version: String,
    pub token: String,
    pub expiration: DateTime<Utc>,
    /// The token's claims.
    pub claims: Value,
}

impl ExecCredential {
    /// The token's `exp` claim.
    pub fn exp(&self) -> i64 {
        self.claims["exp"].as_i64().expect("ID token has a numeric exp")
    }
}

/// Parses koidc's stdout as exactly one `ExecCredential` and checks its shape: kind, a bearer
/// token that is a JWT, and `expirationTimestamp` = the token's `exp` minus the 90 s margin.
#[track_caller]
pub fn parse_exec_credential(out: &Output) -> ExecCredential {
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: stdout is not one JSON document ({e}): {:?}",
            out.what, out.stdout
        )
    });
    assert_eq!(v["kind"], "ExecCredential", "{}: wrong kind in {v}", out.what);
    let api_version = v["apiVersion"]
        .as_str()
        .expect("apiVersion is a string")
        .to_string();
    let status = &v["status"];
    let token = status["token"]
        .as_str()
        .expect("status.token is a string")
        .to_string();
    assert!(
        status.get("clientCertificateData").is_none() && status.get("clientKeyData").is_none(),
        "{}: unexpected client certificate in the ExecCredential",
        out.what
    );
    let expiration = status["expirationTimestamp"]
        .as_str()
        .expect("status.expirationTimestamp is a string");
    let expiration = DateTime::parse_from_rfc3339(expiration)
        .expect("expirationTimestamp is RFC 3339")
        .with_timezone(&Utc);
    let claims = jwt_claims(&token);
    let cred = ExecCredential {
        api_version,
        token,
        expiration,
        claims,
    };
    assert_eq!(
        cred.expiration.timestamp(),
        cred.exp() - EXPIRY_MARGIN_SECS,
        "{}: expirationTimestamp must be the token's exp minus {EXPIRY_MARGIN_SECS} s",
        out.what
    );
    cred
}

/// Sleeps until a token with this `exp` has less than the 90 s margin left (plus one second for
/// rounding), i.e. until koidc must refresh it instead of handing it out.
pub fn wait_until_stale(exp: i64) {
    let stale_at = exp - EXPIRY_MARGIN_SECS + 1;
    loop {
        let now = Utc::now().timestamp();
        if now >= stale_at {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A login and two refreshes by a provider that rotates refresh tokens: `login` runs `get-token`
/// and returns its credential and the refresh token then cached. After the login, each call
/// waits until the ID token is stale, and checks that koidc got a new ID token and stored the
/// rotated refresh token. Returns the three refresh tokens, oldest first.
#[track_caller]
pub fn login_and_refresh_twice(mut login: impl FnMut() -> (ExecCredential, String)) -> [String; 3] {
    let (first, rt0) = login();
    wait_until_stale(first.exp());
    let (second, rt1) = login();
    assert_ne!(
        second.token, first.token,
        "the first refresh issued no new ID token"
    );
    assert_ne!(
        rt1, rt0,
        "the provider rotated the refresh token but koidc kept the old one"
    );
    // The second refresh works only if koidc stored the rotated token.
    wait_until_stale(second.exp());
    let (third, rt2) = login();
    assert_ne!(
        third.token, second.token,
        "the second refresh issued no new ID token"
    );
    assert_ne!(rt2, rt1, "the second refresh did not store the rotated token");
    [rt0, rt1, rt2]
}

/// The (ID token, refresh token) of the first entry of a file cache under `cache_dir` that has
/// both.
pub fn cached_id_and_refresh_tokens(cache_dir: &Path) -> Option<(String, String)> {
    files_under(cache_dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter_map(|p| serde_json::from_slice::<Value>(&std::fs::read(p).ok()?).ok())
        .find_map(|v| {
            Some((
                v["id_token"].as_str()?.to_string(),
                v["refresh_token"].as_str()?.to_string(),
            ))
        })
}

/// What stdout may legitimately contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdout {
    /// `get-token`: the ID token (inside the ExecCredential) but no other secret.
    MayHoldIdToken,
    /// Every other command: no token, code or verifier at all.
    NoSecrets,
}

/// Secrets seen on the wire, to look for in output.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// ID tokens Dex issued.
    pub id_tokens: BTreeSet<String>,
    /// Refresh tokens, access tokens, authorization codes, PKCE verifiers.
    pub other: BTreeSet<String>,
}

/// Where the first JWT-shaped text in `text` starts: `eyJ` (a base64url JSON object, as every
/// JWT header is) and more base64url, a `.`, and a base64url payload of at least two
/// characters. A bare `eyJ` is not enough: the login URL on stderr carries 129 random base64url
/// characters (state, nonce, PKCE challenge), which hold `eyJ` in about one login in 2,000.
pub fn find_jwt(text: &str) -> Option<usize> {
    let b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    text.match_indices("eyJ").map(|(at, _)| at).find(|&at| {
        let rest = &text.as_bytes()[at..];
        let header = rest.iter().take_while(|&&c| b64(c)).count();
        rest.get(header) == Some(&b'.') && rest[header + 1..].iter().take_while(|&&c| b64(c)).count() >= 2
    })
}

/// Fails if `out` shows a secret: stderr must not contain a JWT ([`find_jwt`]) nor any secret
/// in `secrets`; stdout must contain no secret except, for `get-token`, ID tokens.
#[track_caller]
pub fn assert_no_leak(out: &Output, secrets: &Secrets, stdout: Stdout) {
    if let Some(at) = find_jwt(&out.stderr) {
        // Show where, without the token itself: the line up to the JWT.
        let line_start = out.stderr[..at].rfind('\n').map_or(0, |i| i + 1);
        panic!(
            "{}: a JWT leaked on stderr, in the line starting {:?}",
            out.what,
            &out.stderr[line_start..at]
        );
    }
    for s in secrets.id_tokens.iter().chain(&secrets.other) {
        assert!(
            !out.stderr.contains(s.as_str()),
            "{}: a secret leaked on stderr",
            out.what
        );
    }
    for s in &secrets.other {
        assert!(
            !out.stdout.contains(s.as_str()),
            "{}: a secret leaked on stdout",
            out.what
        );
    }
    if stdout == Stdout::NoSecrets {
        assert!(
            find_jwt(&out.stdout).is_none(),
            "{}: a JWT leaked on stdout",
            out.what
        );
    }
}

/// All regular files under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_under(&path)),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
    out.sort();
    out
}

/// The permission bits of a path.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Files under `dir` whose content contains `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| std::fs::read(p).is_ok_and(|c| contains_bytes(&c, needle.as_bytes())))
        .collect()
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Finds the first value under `key` anywhere in a JSON document (depth first).
pub fn find_key<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(map) => map
            .get(key)
            .or_else(|| map.values().find_map(|child| find_key(child, key))),
        Value::Array(items) => items.iter().find_map(|child| find_key(child, key)),
        _ => None,
    }
}
