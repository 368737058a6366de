//! `koidc webhook`: a TokenReview webhook authenticator (authentication.k8s.io/v1) that lets
//! kube-apiserver accept GitHub access tokens issued to koidc's GitHub app.
//!
//! GitHub tokens are opaque, so the apiserver cannot check them itself; started with
//! `--authentication-token-webhook-config-file` (a kubeconfig naming this server, rendered by
//! [`crate::cluster::setup::webhook`]) and `--authentication-token-webhook-version=v1`, it POSTs every
//! bearer token it does not know to this server in a `TokenReview`. The [`Reviewer`] asks GitHub
//! whether the token was issued to the app (`--client-id`, with the app's client secret) and who
//! it belongs to ([`lookup`]), and answers:
//!
//! - username `<username-prefix><login>` (default prefix `github:`), uid = GitHub's numeric user
//!   id (stable, unlike the login, which GitHub gives to someone else after a rename), and the
//!   same id in `extra` as [`EXTRA_ID_KEY`];
//! - groups `<groups-prefix><org>` for each allowed organisation the user is in and
//!   `<groups-prefix><org>:<team-slug>` for each of their teams there (lowercase; the `org:team`
//!   names of Dex's github connector with `teamNameField: slug`);
//! - not authenticated, with one fixed message ([`REJECTED`]), when the token is not one of the
//!   app's, GitHub refuses it, or the user is in none of the `--org` organisations (at least one
//!   is required: without it any GitHub user on earth would be `system:authenticated`). The
//!   caller learns nothing about the policy; the reason is logged (details at `-v`).
//! - HTTP 503 with [`UNAVAILABLE`] when GitHub cannot say (unreachable, timeouts, 5xx, rate
//!   limits, the app's credentials refused, answers that disagree): an error, not a verdict, and
//!   never cached.
//!
//! Verdicts are cached for `--cache-ttl` (default 60 s), keyed by the SHA-256 of the token (the
//! token itself is never stored, logged or put in a message), least recently used first out
//! ([`cache`]). Request bodies are limited to [`MAX_REQUEST_BODY`]; the server ([`server`]) speaks
//! HTTPS only (rustls), optionally requires a client certificate, and bounds handshakes, headers,
//! requests and connections.

mod cache;
pub mod lookup;
pub mod server;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::StatusCode;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use self::server::{Limits, bind, raise_open_files_limit, serve, tls_config};
use crate::login::github::Account;
use crate::printer::Printer;

/// The largest TokenReview body accepted (64 KiB); larger ones get HTTP 413.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;

/// The largest token looked up (GitHub tokens are ~40-100 bytes).
const MAX_TOKEN_LEN: usize = 4096;

/// The largest client secret file read.
const MAX_SECRET_FILE: u64 = 4096;

/// The API versions of TokenReview koidc answers.
const API_VERSIONS: [&str; 2] = ["authentication.k8s.io/v1", "authentication.k8s.io/v1beta1"];

/// The `status.user.extra` key holding the GitHub user's numeric id.
pub const EXTRA_ID_KEY: &str = "github.com/id";

/// `status.error` of every refused token, whatever the reason: callers learn nothing about the
/// policy.
pub const REJECTED: &str = "the token is not accepted (invalid, expired or revoked, not issued to this \
                            cluster's GitHub app, or its user is not allowed)";

/// `status.error` when GitHub could not be asked (HTTP 503, not cached).
pub const UNAVAILABLE: &str = "cannot check the token with GitHub at the moment; try again later";

/// Errors starting the webhook.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The certificate or key file cannot be used.
    #[error("cannot use {what} {path}: {reason}")]
    Tls {
        /// "the TLS certificate file", "the TLS private key file" or "the --client-ca-file".
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
        addr: std::net::SocketAddr,
        /// The OS error.
        error: std::io::Error,
    },
    /// No organisation was given.
    #[error("at least one --org is required: without it any GitHub user would be authenticated")]
    NoOrg,
    /// An organisation name that GitHub would not allow.
    #[error("invalid --org {0:?}: an organisation login is letters, digits and single hyphens")]
    BadOrg(String),
    /// Neither `KOIDC_CLIENT_SECRET` nor `--client-secret-file` was given.
    #[error(
        "the GitHub app's client secret is required (to ask GitHub whether a token was issued to the \
         app): set KOIDC_CLIENT_SECRET or give --client-secret-file FILE"
    )]
    NoClientSecret,
    /// Both were given.
    #[error("give the client secret either in KOIDC_CLIENT_SECRET or with --client-secret-file, not both")]
    TwoClientSecrets,
    /// The client secret file cannot be used (its content is never shown).
    #[error("cannot use --client-secret-file {path}: {reason}")]
    SecretFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The client id is empty or malformed.
    #[error(
        "invalid --client-id {0:?}: expected the GitHub app's client id (letters, digits, '.', '_', '-')"
    )]
    BadClientId(String),
}

/// Checks a GitHub app client id (it goes into a URL path).
pub fn check_client_id(id: &str) -> Result<String, WebhookError> {
    let id = id.trim();
    let valid = id.len() <= 100
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && !id.contains("..")
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid {
        return Err(WebhookError::BadClientId(crate::login::github::one_line(id, 100)));
    }
    Ok(id.to_owned())
}

/// The app's client secret: from `env_value` (`KOIDC_CLIENT_SECRET`) or `file`, exactly one.
pub fn client_secret(env_value: Option<String>, file: Option<&Path>) -> Result<SecretString, WebhookError> {
    let env_value = env_value.filter(|v| !v.trim().is_empty());
    match (env_value, file) {
        (Some(_), Some(_)) => Err(WebhookError::TwoClientSecrets),
        (None, None) => Err(WebhookError::NoClientSecret),
        (Some(value), None) => Ok(SecretString::from(value.trim().to_owned())),
        (None, Some(path)) => read_secret_file(path),
    }
}

/// Reads a client secret file: a regular file (a symlink to one is followed, as Kubernetes
/// Secret volumes need), owned by this user or root, that neither group nor others may access,
/// at most 4 KiB, holding the secret on one line (surrounding white space is trimmed). The
/// checks apply to the file opened, not to the path.
pub fn read_secret_file(path: &Path) -> Result<SecretString, WebhookError> {
    let err = |reason: String| WebhookError::SecretFile {
        path: path.display().to_string(),
        reason,
    };
    let bytes = crate::files::read_small_regular(path, MAX_SECRET_FILE, |meta| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            // SAFETY: geteuid has no preconditions and cannot fail.
            let me = unsafe { libc::geteuid() };
            if meta.uid() != me && meta.uid() != 0 {
                return Err(format!(
                    "it belongs to user {}, not to this user ({me}) or root",
                    meta.uid()
                ));
            }
            let mode = meta.mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!(
                    "its mode {mode:03o} lets other users read it; chmod 600 it (in a Kubernetes Secret \
                     volume: defaultMode: 0400)"
                ));
            }
        }
        Ok(())
    })
    .map_err(err)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| err("it is not UTF-8 text".into()))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(err("it is empty".into()));
    }
    if secret.chars().any(|c| c.is_control() || c == ' ') {
        return Err(err("it must hold only the client secret, on one line".into()));
    }
    Ok(SecretString::from(secret.to_owned()))
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
                "GitHub user {} (id {}) is in none of the allowed organizations",
                account.login, account.id
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
    /// `status.user.uid`: GitHub's numeric user id (also `extra[github.com/id]`).
    pub uid: String,
    /// `status.user.groups`
    pub groups: Vec<String>,
}

/// The answer for one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The token is a token of the app, of an allowed user.
    Authenticated(UserInfo),
    /// It is not; the reason is for the log only (callers get [`REJECTED`]).
    Rejected(String),
    /// GitHub could not say; the reason is for the log only (callers get [`UNAVAILABLE`]).
    /// Never cached.
    Unavailable(String),
}

/// Why a lookup found no account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// GitHub said the token is not acceptable (not the app's, invalid, revoked): a verdict.
    #[error("{0}")]
    NotAccepted(String),
    /// GitHub could not be asked or answered nonsense: no verdict.
    #[error("{0}")]
    Unavailable(String),
    /// GitHub declined to check the token (HTTP 422: "validation failed, or the endpoint has been
    /// spammed", which is what it answers when throttling): not authenticated this time, but not
    /// remembered either, so a flood of junk cannot get genuine users refused for the cache TTL.
    #[error("{0}")]
    Declined(String),
}

/// How long a review waits for one of the reviewer's GitHub lookup slots before it is answered
/// "no verdict".
pub const LOOKUP_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// Boxed future of a [`Lookup`].
pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = Result<Account, LookupError>> + Send + 'a>>;

/// Finds the account a token of the app belongs to (GitHub's API, [`lookup::AppLookup`]; a fake
/// in tests).
pub trait Lookup: Send + Sync + 'static {
    /// The account of `token`.
    fn account<'a>(&'a self, token: &'a SecretString) -> LookupFuture<'a>;
}

/// The two partitions of the verdict cache.
struct Verdicts {
    authenticated: cache::Lru<Verdict>,
    rejected: cache::Lru<Verdict>,
}

/// Answers TokenReviews: looks tokens up, applies the [`Policy`], caches verdicts.
pub struct Reviewer {
    lookup: Box<dyn Lookup>,
    policy: Policy,
    ttl: Duration,
    cache: Mutex<Verdicts>,
    lookups: tokio::sync::Semaphore,
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
    /// A reviewer asking `lookup` (at most `max_lookups` at once), caching verdicts for `ttl`
    /// (zero: no caching).
    pub fn new(
        lookup: Box<dyn Lookup>,
        policy: Policy,
        ttl: Duration,
        max_lookups: usize,
        printer: Printer,
    ) -> Self {
        Self {
            lookup,
            policy,
            ttl,
            cache: Mutex::new(Verdicts {
                authenticated: cache::Lru::new(cache::MAX_ENTRIES),
                rejected: cache::Lru::new(cache::MAX_ENTRIES),
            }),
            lookups: tokio::sync::Semaphore::new(max_lookups.max(1)),
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
        // A request waits at most LOOKUP_QUEUE_WAIT for a lookup slot: under a flood of junk
        // tokens the answer is a quick "no verdict" instead of a connection held busy (and so
        // not evictable) for the whole request timeout.
        let looked_up = match tokio::time::timeout(LOOKUP_QUEUE_WAIT, self.lookups.acquire()).await {
            Ok(Ok(_permit)) => self.lookup.account(token).await,
            Ok(Err(_)) => Err(LookupError::Unavailable("the lookup queue is closed".into())),
            Err(_) => Err(LookupError::Unavailable(format!(
                "no GitHub lookup slot became free within {}s (too many token checks in flight)",
                LOOKUP_QUEUE_WAIT.as_secs()
            ))),
        };
        let mut remember = true;
        let verdict = match looked_up {
            Ok(account) => {
                self.printer.debug(format_args!(
                    "token {id}: GitHub user {} (id {}), organizations [{}], teams [{}]; allowed \
                     organizations [{}]",
                    account.login,
                    account.id,
                    account.all_orgs().join(", "),
                    account.teams.join(", "),
                    self.policy.orgs.join(", ")
                ));
                self.policy.judge(&account)
            }
            Err(LookupError::NotAccepted(why)) => Verdict::Rejected(why),
            Err(LookupError::Declined(why)) => {
                remember = false;
                Verdict::Rejected(why)
            }
            Err(LookupError::Unavailable(why)) => Verdict::Unavailable(why),
        };
        match &verdict {
            Verdict::Authenticated(user) => self.printer.info(format_args!(
                "token {id}: authenticated {} (uid {}, groups [{}])",
                user.username,
                user.uid,
                user.groups.join(", ")
            )),
            Verdict::Rejected(why) => self.printer.info(format_args!("token {id}: rejected: {why}")),
            Verdict::Unavailable(why) => {
                self.printer.warn(format_args!("token {id}: no verdict: {why}"));
                return verdict;
            }
        }
        if remember {
            self.remember(digest, verdict.clone());
        }
        verdict
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Verdicts> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<Verdict> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut cache = self.lock();
        let ttl = self.ttl;
        cache
            .authenticated
            .get(digest, ttl)
            .or_else(|| cache.rejected.get(digest, ttl))
    }

    fn remember(&self, digest: [u8; 32], verdict: Verdict) {
        if self.ttl.is_zero() {
            return;
        }
        let mut cache = self.lock();
        match verdict {
            Verdict::Authenticated(_) => {
                cache.rejected.remove(&digest);
                cache.authenticated.insert(digest, verdict);
            }
            Verdict::Rejected(_) => {
                cache.authenticated.remove(&digest);
                cache.rejected.insert(digest, verdict);
            }
            Verdict::Unavailable(_) => {}
        }
    }

    /// The answer when a review ran out of time (HTTP 503, nothing cached).
    pub fn timed_out(&self) -> (StatusCode, Value) {
        self.printer
            .warn("a TokenReview was not answered in time (GitHub too slow?)");
        response(API_VERSIONS[0], &Verdict::Unavailable("timed out".into()))
    }

    /// Answers one TokenReview request body: the HTTP status and the TokenReview JSON.
    pub async fn review(&self, body: &[u8]) -> (StatusCode, Value) {
        let bad = |api_version: &str, why: &str| {
            (
                StatusCode::BAD_REQUEST,
                review_json(api_version, json!({ "authenticated": false, "error": why })),
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
                return response(
                    api_version,
                    &Verdict::Rejected("the token is too long to be a GitHub token".into()),
                );
            }
            _ => return bad(api_version, "the TokenReview has no spec.token"),
        };
        let verdict = self.verdict(&token).await;
        response(api_version, &verdict)
    }
}

fn review_json(api_version: &str, status: Value) -> Value {
    json!({ "apiVersion": api_version, "kind": "TokenReview", "status": status })
}

/// The HTTP status and TokenReview answer for `verdict`.
fn response(api_version: &str, verdict: &Verdict) -> (StatusCode, Value) {
    let (code, status) = match verdict {
        Verdict::Authenticated(user) => (
            StatusCode::OK,
            json!({
                "authenticated": true,
                "user": {
                    "username": user.username,
                    "uid": user.uid,
                    "groups": user.groups,
                    "extra": { EXTRA_ID_KEY: [user.uid] },
                },
            }),
        ),
        Verdict::Rejected(_) => (
            StatusCode::OK,
            json!({ "authenticated": false, "error": REJECTED }),
        ),
        Verdict::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "authenticated": false, "error": UNAVAILABLE }),
        ),
    };
    (code, review_json(api_version, status))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use secrecy::ExposeSecret as _;

    use super::*;
    use crate::login::github::Account;

    /// A fake GitHub: tokens `alice`, `bob`, `eve` of the app; `down` fails like a timeout.
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
                "down" => Err(LookupError::Unavailable("GitHub did not answer".into())),
                "spammed" => Err(LookupError::Declined("GitHub answered 422".into())),
                _ => Err(LookupError::NotAccepted("not a token of the app".into())),
            };
            let slow = token.expose_secret().starts_with("slow-");
            Box::pin(async move {
                if slow {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                result
            })
        }
    }

    fn reviewer(ttl: Duration) -> (Reviewer, Arc<AtomicUsize>) {
        let fake = FakeGithub::default();
        let calls = fake.calls.clone();
        let policy = Policy::new(&["ACME".into()], "github:", "github:").unwrap();
        (
            Reviewer::new(Box::new(fake), policy, ttl, 4, Printer::new(0)),
            calls,
        )
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
        assert_eq!(out["status"]["user"]["extra"], json!({"github.com/id": ["1"]}));
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
        assert_eq!(error, REJECTED);
        assert_eq!(eve_error, REJECTED, "one message for every refusal");
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
            let (status, out) = run(r.review(&review_body("down")));
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "an error, not a verdict");
            assert_eq!(out["status"]["authenticated"], false);
            assert_eq!(out["status"]["error"], UNAVAILABLE);
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            4,
            "transient failures are asked again"
        );
        // The cache is keyed by a digest: no token in it.
        let cache = r.lock();
        assert_eq!(cache.authenticated.len() + cache.rejected.len(), 2);
        drop(cache);

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
    fn a_token_check_github_declined_with_422_is_refused_but_not_remembered() {
        let (r, calls) = reviewer(Duration::from_secs(600));
        for _ in 0..3 {
            let (_, out) = run(r.review(&review_body("spammed")));
            assert_eq!(out["status"]["authenticated"], false);
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "a 422 was answered from the cache"
        );
    }

    #[test]
    fn a_review_waits_for_a_lookup_slot_only_briefly_when_all_are_held_by_slow_checks() {
        use std::time::Instant;
        let (r, _) = reviewer(Duration::from_secs(600));
        let r = Arc::new(r);
        let started = run(async {
            // Four slow checks hold every lookup slot (the reviewer allows four at once).
            let mut held = Vec::new();
            for i in 0..4 {
                let r = r.clone();
                held.push(tokio::spawn(async move {
                    r.review(&review_body(&format!("slow-{i}"))).await
                }));
            }
            tokio::task::yield_now().await;
            let started = Instant::now();
            // bob's token is the app's: only the full queue keeps it from a verdict.
            let (code, out) = r.review(&review_body("bob")).await;
            assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{out}");
            for h in held {
                h.abort();
            }
            started.elapsed()
        });
        assert!(
            started >= LOOKUP_QUEUE_WAIT && started < LOOKUP_QUEUE_WAIT + Duration::from_secs(3),
            "waited {started:?}"
        );
    }

    #[test]
    fn a_flood_of_junk_tokens_does_not_flush_the_verdict_of_a_genuine_user() {
        let (r, calls) = reviewer(Duration::from_secs(600));
        let (_, out) = run(r.review(&review_body("alice")));
        assert_eq!(out["status"]["authenticated"], true);
        let after_alice = calls.load(Ordering::SeqCst);
        run(async {
            for i in 0..(cache::MAX_ENTRIES + 100) {
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
            cache::MAX_ENTRIES + 100,
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
        assert!(tls_config(&cert_file, &key_file, None).is_ok());
        let err = tls_config(&junk, &key_file, None).unwrap_err().to_string();
        assert!(err.contains("certificate file"), "{err}");
        let err = tls_config(&cert_file, &junk, None).unwrap_err().to_string();
        assert!(
            err.contains("private key file") && !err.contains("SECRET-ISH"),
            "{err}"
        );
        let err = tls_config(&dir.join("missing"), &key_file, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
        // A client CA: accepted when it is a CA certificate file, refused (naming the flag) when not.
        assert!(tls_config(&cert_file, &key_file, Some(&cert_file)).is_ok());
        let err = tls_config(&cert_file, &key_file, Some(&junk))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--client-ca-file"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn the_client_secret_comes_from_the_variable_or_a_private_file_and_never_shows() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "  s3cr3t-value-0123\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let secret = client_secret(None, Some(&file)).unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&secret), "s3cr3t-value-0123");
        let secret = client_secret(Some(" from-env \n".into()), None).unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&secret), "from-env");
        assert!(matches!(
            client_secret(Some("x".into()), Some(&file)),
            Err(WebhookError::TwoClientSecrets)
        ));
        assert!(matches!(
            client_secret(Some("  ".into()), None),
            Err(WebhookError::NoClientSecret)
        ));

        let refuse = |mode: u32, content: &[u8]| {
            std::fs::write(&file, content).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = read_secret_file(&file).unwrap_err().to_string();
            assert!(!err.contains("s3cr3t"), "the secret shows in {err}");
            err
        };
        assert!(refuse(0o640, b"s3cr3t").contains("mode 640"));
        assert!(refuse(0o604, b"s3cr3t").contains("mode 604"));
        assert!(refuse(0o600, b"  \n").contains("empty"));
        assert!(refuse(0o600, b"s3cr3t\nsecond line").contains("one line"));
        assert!(refuse(0o600, &vec![b'a'; 5000]).contains("larger than"));
        assert!(refuse(0o600, b"\xff\xfe s3cr3t").contains("UTF-8"));
        let err = read_secret_file(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let err = read_secret_file(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
        // A symlink to a private file is followed (Kubernetes Secret volumes).
        std::fs::write(&file, "s3cr3t").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(read_secret_file(&link).is_ok());
    }

    #[test]
    fn client_ids_are_checked_before_they_go_into_a_url() {
        assert_eq!(check_client_id(" Ov23li.abc_D-1 ").unwrap(), "Ov23li.abc_D-1");
        for bad in ["", "a/b", "a?b", "a b", "../x", "..", ".x", "a..b"] {
            assert!(check_client_id(bad).is_err(), "{bad:?}");
        }
    }
}
