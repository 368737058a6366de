//! `koidc webhook`: a TokenReview webhook authenticator (authentication.k8s.io/v1) that lets
//! kube-apiserver accept GitHub access tokens.
//!
//! GitHub tokens are opaque, so the apiserver cannot check them itself; started with
//! `--authentication-token-webhook-config-file` (a kubeconfig naming this server, see
//! [`apiserver_kubeconfig`]) and `--authentication-token-webhook-version=v1`, it POSTs every
//! bearer token it does not know to this server in a `TokenReview`. The [`Reviewer`] asks GitHub
//! who the token belongs to (`GET /user`, `/user/orgs`, `/user/teams` with the token itself) and
//! answers:
//!
//! - username `<username-prefix><login>` (default prefix `github:`), uid = the numeric user id;
//! - groups `<groups-prefix><org>` for each allowed organisation the user is in and
//!   `<groups-prefix><org>:<team-slug>` for each of their teams there (lowercase; the `org:team`
//!   names of Dex's github connector with `teamNameField: slug`);
//! - not authenticated, with a message, when GitHub refuses the token or the user is in none of
//!   the `--org` organisations (at least one is required: without it any GitHub user on earth
//!   would be `system:authenticated`).
//!
//! Verdicts are cached for `--cache-ttl` (default 60 s), keyed by the SHA-256 of the token (the
//! token itself is never stored, logged or put in a message). Failures that say nothing about the
//! token (GitHub unreachable, timeouts, 5xx, rate limits) are answered "not authenticated" and
//! logged, but not cached. Request bodies are limited to [`MAX_REQUEST_BODY`]; the server speaks
//! HTTPS only (rustls), with TLS handshakes done concurrently and bounded in time.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::github::{Account, Api, GithubError};
use crate::printer::Printer;

/// The largest TokenReview body accepted (64 KiB); larger ones get HTTP 413.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;

/// The largest token looked up (GitHub tokens are ~40-100 bytes).
const MAX_TOKEN_LEN: usize = 4096;

/// Verdicts remembered at most; beyond, expired ones are dropped, then all.
const MAX_CACHE_ENTRIES: usize = 10_000;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The API versions of TokenReview koidc answers.
const API_VERSIONS: [&str; 2] = ["authentication.k8s.io/v1", "authentication.k8s.io/v1beta1"];

/// Errors starting the webhook.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The certificate or key file cannot be used.
    #[error("cannot use {what} {path}: {reason}")]
    Tls {
        /// "the TLS certificate file" or "the TLS private key file".
        what: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {error}; choose another --listen address")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        error: std::io::Error,
    },
    /// No organisation was given.
    #[error("at least one --org is required: without it any GitHub user would be authenticated")]
    NoOrg,
    /// An organisation name that GitHub would not allow.
    #[error("invalid --org {0:?}: an organisation login is letters, digits and single hyphens")]
    BadOrg(String),
}

/// Who may log in and how GitHub users become Kubernetes users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Organisations whose members are authenticated (lowercase).
    pub orgs: Vec<String>,
    /// Put before the GitHub login to make the username.
    pub username_prefix: String,
    /// Put before every group name.
    pub groups_prefix: String,
}

impl Policy {
    /// Checks and normalises the organisations (lowercase, deduplicated).
    pub fn new(orgs: &[String], username_prefix: &str, groups_prefix: &str) -> Result<Self, WebhookError> {
        let mut list = Vec::new();
        for org in orgs.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
            let valid = org.len() <= 39
                && org.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !org.starts_with('-')
                && !org.ends_with('-');
            if !valid {
                return Err(WebhookError::BadOrg(org.to_owned()));
            }
            list.push(org.to_ascii_lowercase());
        }
        list.sort();
        list.dedup();
        if list.is_empty() {
            return Err(WebhookError::NoOrg);
        }
        Ok(Self {
            orgs: list,
            username_prefix: username_prefix.to_owned(),
            groups_prefix: groups_prefix.to_owned(),
        })
    }

    /// The verdict for `account`.
    pub fn judge(&self, account: &Account) -> Verdict {
        let member = account.all_orgs().iter().any(|o| self.orgs.contains(o));
        if !member {
            return Verdict::Rejected(format!(
                "GitHub user {} is not a member of an allowed organization ({})",
                account.login,
                self.orgs.join(", ")
            ));
        }
        Verdict::Authenticated(UserInfo {
            username: format!("{}{}", self.username_prefix, account.login),
            uid: account.id.to_string(),
            groups: account
                .groups(&self.orgs)
                .into_iter()
                .map(|g| format!("{}{g}", self.groups_prefix))
                .collect(),
        })
    }
}

/// The user the apiserver is told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// `status.user.username`
    pub username: String,
    /// `status.user.uid`
    pub uid: String,
    /// `status.user.groups`
    pub groups: Vec<String>,
}

/// The answer for one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The token is a GitHub token of an allowed user.
    Authenticated(UserInfo),
    /// It is not; the message says why (never containing the token).
    Rejected(String),
}

/// Boxed future of a [`Lookup`].
pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = Result<Account, GithubError>> + Send + 'a>>;

/// Finds the account a token belongs to (GitHub's API; a fake in tests).
pub trait Lookup: Send + Sync + 'static {
    /// The account of `token`.
    fn account<'a>(&'a self, token: &'a SecretString) -> LookupFuture<'a>;
}

impl Lookup for Api {
    fn account<'a>(&'a self, token: &'a SecretString) -> LookupFuture<'a> {
        Box::pin(Api::account(self, token))
    }
}

/// Answers TokenReviews: looks tokens up, applies the [`Policy`], caches verdicts.
pub struct Reviewer {
    lookup: Box<dyn Lookup>,
    policy: Policy,
    ttl: Duration,
    cache: Mutex<HashMap<[u8; 32], (Instant, Verdict)>>,
    printer: Printer,
}

#[derive(Deserialize)]
struct ReviewIn {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    spec: SpecIn,
}

#[derive(Deserialize, Default)]
struct SpecIn {
    #[serde(default)]
    token: Option<String>,
}

impl Reviewer {
    /// A reviewer asking `lookup`, caching verdicts for `ttl` (zero: no caching).
    pub fn new(lookup: Box<dyn Lookup>, policy: Policy, ttl: Duration, printer: Printer) -> Self {
        Self {
            lookup,
            policy,
            ttl,
            cache: Mutex::new(HashMap::new()),
            printer,
        }
    }

    /// The verdict for `token`, from the cache when a fresh one is there.
    pub async fn verdict(&self, token: &SecretString) -> Verdict {
        let digest: [u8; 32] = Sha256::digest(secrecy::ExposeSecret::expose_secret(token).as_bytes()).into();
        let id = &hex::encode(digest)[..12];
        if let Some(verdict) = self.cached(&digest) {
            self.printer.debug(format_args!("token {id}: cached verdict"));
            return verdict;
        }
        let verdict = match self.lookup.account(token).await {
            Ok(account) => self.policy.judge(&account),
            Err(err) if err.is_transient() => {
                self.printer
                    .warn(format_args!("token {id}: cannot check it with GitHub: {err}"));
                return Verdict::Rejected(format!("cannot check the token with GitHub: {err}"));
            }
            Err(GithubError::BadCredentials { .. }) => {
                Verdict::Rejected("GitHub does not accept the token (invalid, expired or revoked)".into())
            }
            Err(err) => Verdict::Rejected(format!("cannot check the token with GitHub: {err}")),
        };
        match &verdict {
            Verdict::Authenticated(user) => self.printer.info(format_args!(
                "token {id}: authenticated {} (uid {}, groups [{}])",
                user.username,
                user.uid,
                user.groups.join(", ")
            )),
            Verdict::Rejected(why) => self.printer.info(format_args!("token {id}: rejected: {why}")),
        }
        self.remember(digest, verdict.clone());
        verdict
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<Verdict> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(digest)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    fn remember(&self, digest: [u8; 32], verdict: Verdict) {
        if self.ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHE_ENTRIES {
            let ttl = self.ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= MAX_CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(digest, (Instant::now(), verdict));
    }

    /// Answers one TokenReview request body: the HTTP status and the TokenReview JSON.
    pub async fn review(&self, body: &[u8]) -> (StatusCode, Value) {
        let bad = |api_version: &str, why: &str| {
            (
                StatusCode::BAD_REQUEST,
                response(api_version, &Verdict::Rejected(why.to_owned())),
            )
        };
        let Ok(request) = serde_json::from_slice::<ReviewIn>(body) else {
            return bad(API_VERSIONS[0], "the request is not a TokenReview (JSON)");
        };
        let api_version = match request.api_version.as_deref() {
            Some(v) if API_VERSIONS.contains(&v) => v,
            None => API_VERSIONS[0],
            Some(_) => {
                return bad(
                    API_VERSIONS[0],
                    "unsupported TokenReview apiVersion; start kube-apiserver with --authentication-token-webhook-version=v1",
                );
            }
        };
        if request.kind.as_deref().is_some_and(|k| k != "TokenReview") {
            return bad(api_version, "the request is not a TokenReview");
        }
        let token = match request.spec.token {
            Some(t) if !t.is_empty() && t.len() <= MAX_TOKEN_LEN => SecretString::from(t),
            Some(t) if t.len() > MAX_TOKEN_LEN => {
                return (
                    StatusCode::OK,
                    response(
                        api_version,
                        &Verdict::Rejected("the token is too long to be a GitHub token".into()),
                    ),
                );
            }
            _ => return bad(api_version, "the TokenReview has no spec.token"),
        };
        let verdict = self.verdict(&token).await;
        (StatusCode::OK, response(api_version, &verdict))
    }
}

/// The TokenReview answer for `verdict`.
fn response(api_version: &str, verdict: &Verdict) -> Value {
    let status = match verdict {
        Verdict::Authenticated(user) => json!({
            "authenticated": true,
            "user": { "username": user.username, "uid": user.uid, "groups": user.groups },
        }),
        Verdict::Rejected(why) => json!({ "authenticated": false, "error": why }),
    };
    json!({ "apiVersion": api_version, "kind": "TokenReview", "status": status })
}

/// The HTTP routes: `POST /` and `POST /authenticate` (TokenReview), `GET /healthz`.
pub fn router(reviewer: Arc<Reviewer>) -> Router {
    Router::new()
        .route("/", post(handle))
        .route("/authenticate", post(handle))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY))
        .with_state(reviewer)
}

async fn handle(State(reviewer): State<Arc<Reviewer>>, body: Bytes) -> Response {
    let (status, value) = reviewer.review(&body).await;
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// The rustls server configuration for the PEM certificate chain and private key files.
pub fn tls_config(cert_file: &Path, key_file: &Path) -> Result<ServerConfig, WebhookError> {
    let tls_err = |what, path: &Path, reason: String| WebhookError::Tls {
        what,
        path: path.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| tls_err("the TLS certificate file", cert_file, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err("the TLS certificate file", cert_file, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_err(
            "the TLS certificate file",
            cert_file,
            "no PEM certificate found in it".into(),
        ));
    }
    // The key's error never quotes the file's content.
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        let reason = match e {
            tokio_rustls::rustls::pki_types::pem::Error::NoItemsFound => {
                "no PEM private key found in it".to_owned()
            }
            tokio_rustls::rustls::pki_types::pem::Error::Io(io) => io.to_string(),
            _ => "it is not a readable PEM private key".to_owned(),
        };
        tls_err("the TLS private key file", key_file, reason)
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("the TLS certificate file", cert_file, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            tls_err(
                "the TLS private key file",
                key_file,
                format!("it does not match the certificate or is unusable ({e})"),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, WebhookError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| WebhookError::Bind { addr, error })
}

/// Serves TokenReviews over HTTPS on `listener` until the process ends.
pub async fn serve(listener: TcpListener, tls: ServerConfig, reviewer: Arc<Reviewer>) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let tls = TlsListener {
        streams: spawn_acceptor(listener, TlsAcceptor::from(Arc::new(tls))),
        addr,
    };
    axum::serve(tls, router(reviewer)).await
}

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// TLS connections whose handshake completed, handed to axum.
struct TlsListener {
    streams: tokio::sync::mpsc::Receiver<(TlsStream, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.streams.recv().await {
            Some(accepted) => accepted,
            // The acceptor task ended (it does not, short of a panic): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// Accepts TCP connections and runs each TLS handshake in its own task (bounded by
/// [`HANDSHAKE_TIMEOUT`]), so a slow client cannot hold up the others.
fn spawn_acceptor(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
) -> tokio::sync::mpsc::Receiver<(TlsStream, SocketAddr)> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (stream, addr) = match tcp.accept().await {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of file descriptors and the like: back off a little.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    let _ = tx.send((tls, addr)).await;
                }
            });
        }
    });
    rx
}

/// The kubeconfig kube-apiserver reads with `--authentication-token-webhook-config-file`: one
/// cluster (the webhook's URL and CA), one user without credentials, one context.
pub fn apiserver_kubeconfig(url: &str, ca_pem: Option<&str>) -> Value {
    use base64::Engine as _;
    let mut cluster = json!({ "server": url });
    if let Some(pem) = ca_pem {
        cluster["certificate-authority-data"] = json!(base64::engine::general_purpose::STANDARD.encode(pem));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "koidc-github-webhook", "cluster": cluster }],
        "users": [{ "name": "kube-apiserver", "user": {} }],
        "contexts": [{
            "name": "koidc-github-webhook",
            "context": { "cluster": "koidc-github-webhook", "user": "kube-apiserver" },
        }],
        "current-context": "koidc-github-webhook",
    })
}

/// The kube-apiserver flags that use the webhook config file at `path`.
pub fn apiserver_flags(path: &str) -> Vec<String> {
    vec![
        format!("--authentication-token-webhook-config-file={path}"),
        "--authentication-token-webhook-version=v1".to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use secrecy::ExposeSecret as _;

    use super::*;

    /// A fake GitHub: tokens `alice`, `bob`, `eve`; `down` fails like a timeout.
    #[derive(Default)]
    struct FakeGithub {
        calls: Arc<AtomicUsize>,
    }

    impl Lookup for FakeGithub {
        fn account<'a>(&'a self, token: &'a SecretString) -> LookupFuture<'a> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let account = |id, login: &str, orgs: &[&str], teams: &[&str]| Account {
                id,
                login: login.into(),
                name: None,
                orgs: orgs.iter().map(|s| s.to_string()).collect(),
                teams: teams.iter().map(|s| s.to_string()).collect(),
            };
            let result = match token.expose_secret() {
                "alice" => Ok(account(1, "alice", &["acme"], &["acme:sre", "hobby:fun"])),
                "bob" => Ok(account(2, "bob", &["acme"], &[])),
                "eve" => Ok(account(3, "eve", &["evil"], &["evil:sre"])),
                "down" => Err(GithubError::Timeout {
                    url: "https://api.github.com/user".into(),
                    timeout: Duration::from_secs(10),
                }),
                _ => Err(GithubError::BadCredentials {
                    url: "https://api.github.com/user".into(),
                }),
            };
            Box::pin(async move { result })
        }
    }

    fn reviewer(ttl: Duration) -> (Reviewer, Arc<AtomicUsize>) {
        let fake = FakeGithub::default();
        let calls = fake.calls.clone();
        let policy = Policy::new(&["ACME".into()], "github:", "github:").unwrap();
        (Reviewer::new(Box::new(fake), policy, ttl, Printer::new(0)), calls)
    }

    fn review_body(token: &str) -> Vec<u8> {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})
            .to_string()
            .into_bytes()
    }

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn member_gets_prefixed_username_uid_and_allowed_org_team_groups() {
        let (r, _) = reviewer(Duration::from_secs(60));
        let (status, out) = run(r.review(&review_body("alice")));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(out["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(out["kind"], "TokenReview");
        assert_eq!(out["status"]["authenticated"], true);
        assert_eq!(out["status"]["user"]["username"], "github:alice");
        assert_eq!(out["status"]["user"]["uid"], "1");
        // hobby:fun is not in an allowed organisation.
        assert_eq!(
            out["status"]["user"]["groups"],
            json!(["github:acme", "github:acme:sre"])
        );
    }

    #[test]
    fn users_outside_the_allowed_orgs_and_bad_tokens_are_not_authenticated() {
        let (r, _) = reviewer(Duration::from_secs(60));
        let (_, out) = run(r.review(&review_body("eve")));
        assert_eq!(out["status"]["authenticated"], false);
        let eve_error = out["status"]["error"].as_str().unwrap().to_owned();
        assert!(
            !eve_error.contains("acme") && !eve_error.contains("eve"),
            "the caller learns the policy: {eve_error}"
        );
        assert!(out["status"].get("user").is_none());
        let (status, out) = run(r.review(&review_body("gho_not_valid_at_all")));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(out["status"]["authenticated"], false);
        let error = out["status"]["error"].as_str().unwrap();
        assert!(error.contains("does not accept"), "{error}");
        assert!(!error.contains("gho_not_valid_at_all"));
        // A member without teams still gets the organisation group.
        let (_, out) = run(r.review(&review_body("bob")));
        assert_eq!(out["status"]["user"]["groups"], json!(["github:acme"]));
    }

    #[test]
    fn verdicts_are_cached_for_the_ttl_but_transient_failures_are_not() {
        let (r, calls) = reviewer(Duration::from_secs(60));
        for _ in 0..3 {
            let (_, out) = run(r.review(&review_body("alice")));
            assert_eq!(out["status"]["authenticated"], true);
            let (_, out) = run(r.review(&review_body("invalid")));
            assert_eq!(out["status"]["authenticated"], false);
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "one lookup per token within the TTL"
        );
        for _ in 0..2 {
            let (_, out) = run(r.review(&review_body("down")));
            assert_eq!(out["status"]["authenticated"], false);
            assert!(
                out["status"]["error"].as_str().unwrap().contains("cannot check"),
                "{out}"
            );
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            4,
            "transient failures are asked again"
        );
        // The cache is keyed by a digest: no token in it.
        let cache = r.cache.lock().unwrap();
        assert_eq!(cache.len(), 2);

        let (r, calls) = reviewer(Duration::ZERO);
        run(r.review(&review_body("alice")));
        run(r.review(&review_body("alice")));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "ttl 0 caches nothing");
    }

    #[test]
    fn malformed_requests_are_answered_400_with_a_token_review() {
        let (r, calls) = reviewer(Duration::from_secs(60));
        for body in [
            b"not json".to_vec(),
            br#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{}}"#.to_vec(),
            br#"{"apiVersion":"authentication.k8s.io/v1","kind":"Pod","spec":{"token":"alice"}}"#.to_vec(),
            br#"{"apiVersion":"authentication.k8s.io/v2","kind":"TokenReview","spec":{"token":"alice"}}"#
                .to_vec(),
        ] {
            let (status, out) = run(r.review(&body));
            assert_eq!(status, StatusCode::BAD_REQUEST, "{out}");
            assert_eq!(out["status"]["authenticated"], false);
        }
        let (_, out) = run(r.review(&review_body(&"x".repeat(MAX_TOKEN_LEN + 1))));
        assert_eq!(out["status"]["authenticated"], false);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        // v1beta1 is answered in kind.
        let body = br#"{"apiVersion":"authentication.k8s.io/v1beta1","kind":"TokenReview","spec":{"token":"alice"}}"#;
        let (_, out) = run(r.review(body));
        assert_eq!(out["apiVersion"], "authentication.k8s.io/v1beta1");
    }

    #[test]
    fn a_flood_of_junk_tokens_does_not_flush_the_verdict_of_a_genuine_user() {
        let (r, calls) = reviewer(Duration::from_secs(600));
        let (_, out) = run(r.review(&review_body("alice")));
        assert_eq!(out["status"]["authenticated"], true);
        let after_alice = calls.load(Ordering::SeqCst);
        run(async {
            for i in 0..(MAX_CACHE_ENTRIES + 100) {
                r.review(&review_body(&format!("junk-{i}"))).await;
                if i % 1000 == 0 {
                    // alice keeps using her token meanwhile.
                    r.review(&review_body("alice")).await;
                }
            }
        });
        let (_, out) = run(r.review(&review_body("alice")));
        assert_eq!(out["status"]["authenticated"], true);
        // One lookup per junk token, and none for alice after her first.
        assert_eq!(
            calls.load(Ordering::SeqCst) - after_alice,
            MAX_CACHE_ENTRIES + 100,
            "alice's verdict was flushed by junk tokens"
        );
    }

    #[test]
    fn policy_requires_valid_orgs() {
        assert!(matches!(Policy::new(&[], "", ""), Err(WebhookError::NoOrg)));
        assert!(matches!(
            Policy::new(&[" ".into()], "", ""),
            Err(WebhookError::NoOrg)
        ));
        assert!(matches!(
            Policy::new(&["a/b".into()], "", ""),
            Err(WebhookError::BadOrg(_))
        ));
        let p = Policy::new(&["Acme".into(), "acme".into(), "b-2".into()], "", "").unwrap();
        assert_eq!(p.orgs, ["acme", "b-2"]);
    }

    #[test]
    fn apiserver_kubeconfig_names_the_url_and_embeds_the_ca() {
        let cfg = apiserver_kubeconfig("https://127.0.0.1:8443/", Some("PEM"));
        assert_eq!(cfg["clusters"][0]["cluster"]["server"], "https://127.0.0.1:8443/");
        assert_eq!(
            cfg["clusters"][0]["cluster"]["certificate-authority-data"],
            "UEVN"
        );
        assert_eq!(cfg["current-context"], "koidc-github-webhook");
        assert_eq!(
            apiserver_flags("/etc/k.yaml"),
            [
                "--authentication-token-webhook-config-file=/etc/k.yaml",
                "--authentication-token-webhook-version=v1"
            ]
        );
    }

    #[test]
    fn tls_config_reports_missing_and_bad_files_without_content() {
        let dir = std::env::temp_dir().join(format!("koidc-webhook-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_file, key_file, junk) = (dir.join("c.pem"), dir.join("k.pem"), dir.join("junk.pem"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        std::fs::write(&junk, "SECRET-ISH garbage").unwrap();
        assert!(tls_config(&cert_file, &key_file).is_ok());
        let err = tls_config(&junk, &key_file).unwrap_err().to_string();
        assert!(err.contains("certificate file"), "{err}");
        let err = tls_config(&cert_file, &junk).unwrap_err().to_string();
        assert!(
            err.contains("private key file") && !err.contains("SECRET-ISH"),
            "{err}"
        );
        let err = tls_config(&dir.join("missing"), &key_file)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
