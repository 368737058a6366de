//! A stub OpenID provider for fault injection, in process: what Dex cannot be made to do.
//!
//! [`StubIdp::start`] serves, on `127.0.0.1:0` from its own tokio runtime thread, a discovery
//! document, a JWKS (the RSA key of `tests/fixtures/stub-idp-rsa.pem`, kid `k1`), an
//! `/authorize` endpoint that immediately 302-redirects to the request's `redirect_uri` with a
//! code and the request's `state` (no login page: any client that follows redirects, such as
//! `curl -L`, is its browser), and a `/token` endpoint that checks the code and the PKCE verifier
//! and returns an ID token crafted according to the stub's [`Fault`] (and a refresh token). The
//! issuer is `http://127.0.0.1:PORT/idp`. It also counts requests and remembers the ID tokens it
//! issued, so tests can tell which step a failure happened at and look for leaks. koidc's own
//! check of the authorization request before a login (sent without a browser) gets a login page,
//! as from a provider the visitor has no session with, and is counted apart (`preflight`).
//!
//! [`StubIdp::start_with`] adds behaviour a well-behaved IdP may have ([`StubOptions`]): an RFC 7009
//! revocation endpoint (advertised in discovery, recording each request and its `Authorization`) and ID tokens padded
//! with a large claim. The stub also records the refresh tokens it issued and the `redirect_uri`
//! of every authorization request.
//!
//! With [`StubOptions::https`] the stub serves TLS (issuer `https://127.0.0.1:PORT/idp`, a fresh
//! test CA: [`StubIdp::ca_file`]). [`StubIdp::set_endpoint`] makes discovery name another URL for
//! an endpoint (an http one, to see koidc refuse it; [`ConnectionTrap`] is a listener that only
//! counts connections). The token endpoint also answers the refresh grant, rotating refresh
//! tokens (a reused one gets `invalid_grant`); what a refresh answers can be skewed
//! ([`StubIdp::set_refresh_sub`], [`StubIdp::set_refresh_kid`]) and the JWKS endpoint made to fail
//! after a number of fetches ([`StubIdp::fail_keys_after`]).
//!
//! The serving thread ([`ServerThread`]) and the RS256 signing with the fixture key are shared
//! with the GitHub Actions stand-in ([`crate::fake_actions`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openidconnect::core::{CoreHmacKey, CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey};
use openidconnect::{JsonWebKeyId, PrivateSigningKey};
use rand::Rng as _;
use serde_json::{Value, json};
use sha2::Digest as _;
use tempfile::TempDir;
use url::Url;

use crate::support::{clean_command, entry_files, koidc_bin, repo_root};

/// The client id koidc is run with against the stub (the audience of good tokens).
pub const CLIENT_ID: &str = "koidc";

/// The browser for the stub IdP: its `/authorize` only redirects, so following redirects reaches
/// koidc's loopback callback.
pub const CURL_BROWSER: &str = "curl -sS -L --max-time 20 -o /dev/null";

/// The `kid` of the fixture key in the JWKS.
pub const KID: &str = "k1";

/// How long the stalling token endpoint sleeps: longer than koidc's 30 s HTTP timeout.
pub const STALL: Duration = Duration::from_secs(45);

/// A second RSA key, not in the JWKS: signs the "bad signature" tokens.
///
/// TEST-ONLY KEY, generated for this file with `openssl genrsa -traditional 2048`. It protects
/// nothing; never use it anywhere else.
const OTHER_KEY_PEM: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEAnNzSq7lIUBK9r4qr+b7Z6Ycno/NLRy/4Dey+v3HlTOSO59Cm
gQ+EbA8TArbwa3JJnmh2CduxaPsIa8L70MQiRYl2rX8VTKVRr8eq/sAwaC00Nlhb
pDrLiJvgreaZtJJLb7IErHfkB/vOGoJuJjpX04auYGRJqER/PZO5KFE5nN8heKI6
J6nuazQg9avmrxUAptEhBi68rS+FYrQfMY2D+Z5VJwDV9VTETlgbqN0xMyPZXOnk
uv1XUwNio0RF/TnNnM2qKCh0dBK5B92DwFylZd3yqQS4GbmyJiPZiX5oDlWiXeDp
8g8xeWi+OTghvngF94xeNtU6os0OboPqE6SEYwIDAQABAoIBAEcJD1RZ4z/zxLfO
niPKxGcnYBG0d0YlGHnB2P3ch8EjDf43tHdkvgyrZOoJS2X1Cxaz6qR7O2O1rvIS
CjRX5cdEwZw/HTeo9A2c57hW83Tx55+mstV0FMDoCj7mW3v09jl+TfSGlJry8rp5
j4U7TZOKfcREFkEfx9lsYOC7q9H4WnD1OUX1T0/YL5qXRnlQAxG0tZHsnPgWJhZq
XQQeLfAoLFGkUTV6j3sBDsoIwERkA2QnSqxAXQTIlTuENpyRwzBQt4FPgELRzesN
oWP77aSrt4nMkPSvrAfSUQjnoCLHtu8AtpCsdtfX3KFYffISs7LC0lCHz09VyASX
I+jxdp0CgYEAycUq3CqgVLLG2BPETmavbmlq51AiRPCU1GPTo0b3DYjF0OdT6QtU
W2ORN9epzx5C9l+gUkmOE/BZ+M36vtBxJ6KlKgKWDNzvN+u4JGnzc6eWJ+1SBzAM
YkaAAje1n4JZFEO+Q3aOKtPor6h2Sw63d/zLH+wQnNZj/977Hy5W4cUCgYEAxwXH
1cF2f58u/5mMZN0iqYKi0JZyVJSnKapRoP+r+HVfkyj0O0+oh+MrLMgkr8BIeJ1s
XH0P1X8AORnanMex86N+8f+D0nlQhBDEpvBojPOLuO8L3LMJM1Ofm2lcicg+QF56
+2Hw93851JTLAVuQN75g6y4BGyNp19TNYEaweAcCgYEAnU6qTsKxA7fqTVaD6zgl
uChaH4ObZDJJZpl5zEesn5Gt4GQqSHv7xdCHzIjIrGEEhf8iCGWubp8qFk/JGXF7
dxJYQLuJbvflTazqgQFVvCrBZ9mf5VixnwEmFhSG9phyiNkUApbw2jUiqajmqTgN
FHAzkWzDuvNvPXMESFghhp0CgYBShNYPjfB5B+JvvhWU+I9Xoz+opshuw1fwEZtY
2slN8jSXiqKBOQ0SkqEjJzT23g3uXK9CReRbzBWml06qNK5W65JF+oCIsx4sM9ul
sAZZct2a5xqO/nixHFoQEQZ6ZllRTRtGwZwsskajGrJ1NKa+RiRfPqrcurk28Rfa
dFTU3wKBgQCCURHy69AwoP9iPONM49C8/fEeZ8b2Meyyi8iolWg8yq2bxTcryfMc
0ikOvxVdDH6zhPnC97z5iAytwNFDvYcAsOlhDxEG2eAtGF7K09TWFtxuINyASfIG
3BFp/qSQlYwQ8n81Ns3HixM/0HizNmj7Pm78ZDh9BxlY3ntLl9j8mw==
-----END RSA PRIVATE KEY-----
";

/// What the stub does wrong. Every variant except [`Fault::Good`] must make koidc fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: a well-formed login with a correctly signed, valid ID token (the control case).
    Good,
    /// The ID token is signed by another RSA key under the JWKS key's `kid`.
    BadSignature,
    /// The ID token is unsigned: `alg: none`, empty signature (discovery advertises `none` too).
    AlgNone,
    /// The ID token is HS256, MACed with the provider's public key (its PEM text) as the secret,
    /// the classic algorithm-confusion forgery (discovery advertises HS256 too).
    Hs256WithPublicKey,
    /// `iss` is another issuer.
    WrongIssuer,
    /// `iss` is the issuer with a trailing slash.
    IssuerTrailingSlash,
    /// `aud` is another client.
    WrongAudience,
    /// `aud` is the client plus another, untrusted audience.
    ExtraAudience,
    /// `azp` names another client.
    AzpMismatch,
    /// `exp` is ten minutes ago.
    Expired,
    /// `nbf` is an hour from now (RFC 7519 4.1.5: must not be accepted before then).
    NotYetValid,
    /// No `iat` claim (required by OpenID Connect Core 2).
    MissingIat,
    /// `nonce` is not the one of the authorization request.
    WrongNonce,
    /// No `nonce` claim.
    MissingNonce,
    /// Signed with the right key but naming a `kid` that is not in the JWKS (even after koidc
    /// fetches the JWKS again).
    UnknownKid,
    /// The payload is not JSON (correctly signed).
    NonJsonPayload,
    /// The ID token is larger than 1 MiB (a huge padding claim; correctly signed).
    Oversized,
    /// The token endpoint answers 500 with a non-JSON body.
    TokenEndpoint500,
    /// The token endpoint sleeps [`STALL`] before answering.
    TokenEndpointStall,
    /// The discovery document names another issuer.
    DiscoveryIssuerMismatch,
    /// The discovery document is truncated JSON.
    DiscoveryMalformed,
    /// `/authorize` redirects back with `error=access_denied` (and the right state).
    CallbackError,
    /// `/authorize` redirects back with the right state but neither code nor error.
    CallbackWithoutCode,
}

/// Optional behaviour on top of the [`Fault`]; [`Default`] is the plain stub of [`StubIdp::start`].
#[derive(Debug, Clone, Copy, Default)]
pub struct StubOptions {
    /// Advertise `revocation_endpoint` (`/idp/revoke`) in discovery; the endpoint answers 200 and
    /// records each request ([`StubIdp::revocations`]).
    pub revocation: bool,
    /// Add a `padding` claim of this many `A`s to every ID token (0: none); the token stays
    /// correctly signed and valid.
    pub id_token_padding: usize,
    /// Serve https with a fresh test CA ([`StubIdp::ca_file`]) instead of http.
    pub https: bool,
    /// Lifetime of the ID tokens in seconds (0: an hour). Under koidc's 90 s safety margin, the
    /// next `get-token` refreshes.
    pub id_token_lifetime: i64,
}

/// One request the revocation endpoint received (its form fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// `token`
    pub token: Option<String>,
    /// `token_type_hint`
    pub token_type_hint: Option<String>,
    /// `client_id` (a public client sends it in the form)
    pub client_id: Option<String>,
}

/// What one `/authorize` request left for the token endpoint.
struct Grant {
    nonce: Option<String>,
    code_challenge: Option<String>,
    redirect_uri: String,
}

/// State shared by the handlers and the test.
struct Shared {
    issuer: String,
    fault: Mutex<Fault>,
    options: StubOptions,
    key: CoreRsaPrivateSigningKey,
    other_key: CoreRsaPrivateSigningKey,
    public_key_pem: String,
    grants: Mutex<HashMap<String, Grant>>,
    hits: Mutex<HashMap<&'static str, usize>>,
    issued: Mutex<Vec<String>>,
    issued_refresh: Mutex<Vec<String>>,
    redirect_uris: Mutex<Vec<String>>,
    revocations: Mutex<Vec<Revocation>>,
    revocation_auth: Mutex<Vec<Option<String>>>,
    /// Discovery members replaced by [`StubIdp::set_endpoint`].
    endpoints: Mutex<Vec<(String, String)>>,
    /// The `sub` of ID tokens from a login (None: [`SUB`]).
    login_sub: Mutex<Option<String>>,
    /// The `sub` of refreshed ID tokens (None: [`SUB`]).
    refresh_sub: Mutex<Option<String>>,
    /// The `kid` refreshed ID tokens name (None: [`KID`]); they are always signed with the key.
    refresh_kid: Mutex<Option<String>>,
    /// How many more JWKS fetches succeed (None: all); the others answer 503.
    keys_budget: Mutex<Option<usize>>,
    /// The refresh tokens presented with the refresh grant, oldest first.
    refresh_requests: Mutex<Vec<String>>,
    /// Refresh tokens already redeemed (rotation: each works once).
    used_refresh: Mutex<Vec<String>>,
    /// The test CA's PEM, in https mode.
    ca_pem: Option<String>,
}

impl Shared {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap()
    }

    fn hit(&self, what: &'static str) {
        *self.hits.lock().unwrap().entry(what).or_default() += 1;
    }
}

/// A running stub provider; stops (its runtime and every pending request) when dropped.
pub struct StubIdp {
    issuer: String,
    shared: Arc<Shared>,
    _server: ServerThread,
}

impl StubIdp {
    /// Starts a stub with issuer `http://127.0.0.1:PORT/idp` that misbehaves as `fault` says.
    pub fn start(fault: Fault) -> StubIdp {
        StubIdp::start_with(fault, StubOptions::default())
    }

    /// Like [`StubIdp::start`], with the extra behaviour of `options`.
    pub fn start_with(fault: Fault, options: StubOptions) -> StubIdp {
        let (std_listener, addr) = ServerThread::listener("the stub IdP");
        let scheme = if options.https { "https" } else { "http" };
        let issuer = format!("{scheme}://{addr}/idp");
        let tls = options.https.then(crate::apiserver::tls_config);
        let key = rsa_key(&fixture_pem(), KID);
        let other_key = rsa_key(OTHER_KEY_PEM, KID);
        let public_key_pem = public_key_pem(&jwk(&key));
        let shared = Arc::new(Shared {
            issuer: issuer.clone(),
            fault: Mutex::new(fault),
            options,
            key,
            other_key,
            public_key_pem,
            grants: Mutex::new(HashMap::new()),
            hits: Mutex::new(HashMap::new()),
            issued: Mutex::new(Vec::new()),
            issued_refresh: Mutex::new(Vec::new()),
            redirect_uris: Mutex::new(Vec::new()),
            revocations: Mutex::new(Vec::new()),
            revocation_auth: Mutex::new(Vec::new()),
            endpoints: Mutex::new(Vec::new()),
            login_sub: Mutex::new(None),
            refresh_sub: Mutex::new(None),
            refresh_kid: Mutex::new(None),
            keys_budget: Mutex::new(None),
            refresh_requests: Mutex::new(Vec::new()),
            used_refresh: Mutex::new(Vec::new()),
            ca_pem: tls.as_ref().map(|(pem, _)| pem.clone()),
        });
        let app = Router::new()
            .route("/idp/.well-known/openid-configuration", get(discovery))
            .route("/idp/keys", get(keys))
            .route("/idp/authorize", get(authorize))
            .route("/idp/token", post(token))
            .route("/idp/revoke", post(revoke))
            .with_state(shared.clone());
        let server = ServerThread::spawn("stub-idp", std_listener, tls.map(|(_, config)| config), app);
        StubIdp {
            issuer,
            shared,
            _server: server,
        }
    }

    /// The issuer URL (no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// How many requests the endpoint `what` (`discovery`, `keys`, `authorize`, `token`,
    /// `revoke`) got; `authorize` counts the browser's visits, `preflight` koidc's own check of
    /// the authorization request before it opens the browser.
    pub fn hits(&self, what: &str) -> usize {
        self.shared.hits.lock().unwrap().get(what).copied().unwrap_or(0)
    }

    /// Every ID token the token endpoint handed out, oldest first.
    pub fn issued_id_tokens(&self) -> Vec<String> {
        self.shared.issued.lock().unwrap().clone()
    }

    /// Every refresh token the token endpoint handed out, oldest first.
    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        self.shared.issued_refresh.lock().unwrap().clone()
    }

    /// The `redirect_uri` of every `/authorize` request, oldest first.
    pub fn redirect_uris(&self) -> Vec<String> {
        self.shared.redirect_uris.lock().unwrap().clone()
    }

    /// Every request the revocation endpoint received, oldest first.
    pub fn revocations(&self) -> Vec<Revocation> {
        self.shared.revocations.lock().unwrap().clone()
    }

    /// The `Authorization` header of every revocation request (a confidential client's secret
    /// goes there), oldest first, in the order of [`StubIdp::revocations`].
    pub fn revocation_authorizations(&self) -> Vec<Option<String>> {
        self.shared.revocation_auth.lock().unwrap().clone()
    }

    /// Valid claims for this issuer and client, with `nonce` when given.
    pub fn good_claims(&self, nonce: Option<&str>) -> Value {
        good_claims(&self.issuer, nonce)
    }

    /// Writes the test CA (https mode) to `dir/stub-ca.pem` and returns the path, for
    /// `--certificate-authority`.
    pub fn ca_file(&self, dir: &std::path::Path) -> PathBuf {
        let pem = self.shared.ca_pem.as_ref().expect("the stub serves https");
        let path = dir.join("stub-ca.pem");
        std::fs::write(&path, pem).expect("write the stub CA");
        path
    }

    /// Makes discovery name `url` as its `member` (`token_endpoint`, `jwks_uri`, ...).
    pub fn set_endpoint(&self, member: &str, url: &str) {
        self.shared
            .endpoints
            .lock()
            .unwrap()
            .push((member.to_owned(), url.to_owned()));
    }

    /// ID tokens from a login name `sub` (and email `SUB@example.com`): another user logs in.
    pub fn set_login_sub(&self, sub: Option<&str>) {
        *self.shared.login_sub.lock().unwrap() = sub.map(str::to_owned);
    }

    /// Refreshed ID tokens name `sub` (another user than the one who logged in).
    pub fn set_refresh_sub(&self, sub: Option<&str>) {
        *self.shared.refresh_sub.lock().unwrap() = sub.map(str::to_owned);
    }

    /// Refreshed ID tokens name `kid` (signed with the JWKS key all the same).
    pub fn set_refresh_kid(&self, kid: Option<&str>) {
        *self.shared.refresh_kid.lock().unwrap() = kid.map(str::to_owned);
    }

    /// The next `n` JWKS fetches succeed, the later ones answer 503 (None: all succeed).
    pub fn fail_keys_after(&self, n: Option<usize>) {
        *self.shared.keys_budget.lock().unwrap() = n;
    }

    /// The refresh tokens presented with the refresh grant, oldest first.
    pub fn refresh_requests(&self) -> Vec<String> {
        self.shared.refresh_requests.lock().unwrap().clone()
    }

    /// An RS256 token over `claims`, signed with the key the JWKS publishes.
    pub fn sign_rs256(&self, claims: &Value) -> String {
        rs256(&self.shared.key, KID, claims.to_string().as_bytes())
    }
}

/// An axum app served from its own tokio runtime thread (http, or https with a rustls config);
/// dropping it stops the server and cancels the connections still open (a stalled request).
pub struct ServerThread {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// A non-blocking listener on `127.0.0.1:0` for [`ServerThread::spawn`], and its address.
    pub fn listener(what: &str) -> (std::net::TcpListener, SocketAddr) {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind {what}: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("make {what} non-blocking: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("address of {what}: {e}"));
        (listener, addr)
    }

    /// Serves `app` on `std_listener` (non-blocking) from a thread named `name-PORT`.
    pub fn spawn(
        name: &str,
        std_listener: std::net::TcpListener,
        tls: Option<tokio_rustls::rustls::ServerConfig>,
        app: Router,
    ) -> ServerThread {
        let port = std_listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build a test server runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(std_listener)
                        .expect("register a test server listener");
                    match tls {
                        Some(config) => {
                            let listener = crate::apiserver::TlsListener {
                                tcp: listener,
                                acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
                            };
                            tokio::select! {
                                res = axum::serve(listener, app) => res.expect("test server"),
                                _ = stop => {}
                            }
                        }
                        None => tokio::select! {
                            res = axum::serve(listener, app) => res.expect("test server"),
                            _ = stop => {}
                        },
                    }
                });
            })
            .expect("spawn a test server thread");
        ServerThread {
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An issuer URL on a loopback port where nothing listens (the port was bound, then freed).
pub fn refused_issuer() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let addr: SocketAddr = listener.local_addr().expect("free port address");
    drop(listener);
    format!("http://{addr}/idp")
}

pub(crate) fn fixture_pem() -> String {
    let path = repo_root().join("tests/fixtures/stub-idp-rsa.pem");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    // The fixture starts with a note before the PEM block.
    let start = text
        .find("-----BEGIN")
        .unwrap_or_else(|| panic!("no PEM block in {}", path.display()));
    text[start..].to_string()
}

pub(crate) fn rsa_key(pem: &str, kid: &str) -> CoreRsaPrivateSigningKey {
    CoreRsaPrivateSigningKey::from_pem(pem, Some(JsonWebKeyId::new(kid.to_owned())))
        .expect("parse a test RSA key")
}

pub(crate) fn jwk(key: &CoreRsaPrivateSigningKey) -> Value {
    serde_json::to_value(key.as_verification_key()).expect("serialize the JWK")
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The `sub` of the stub's user.
pub const SUB: &str = "stub-user-1";

/// The `email` of the stub's user.
pub const EMAIL: &str = "stub-user@example.com";

fn good_claims(issuer: &str, nonce: Option<&str>) -> Value {
    let now = now();
    let mut claims = json!({
        "iss": issuer,
        "sub": SUB,
        "aud": CLIENT_ID,
        "exp": now + 3600,
        "iat": now - 5,
        "email": EMAIL,
        "email_verified": true,
    });
    if let Some(nonce) = nonce {
        claims["nonce"] = json!(nonce);
    }
    claims
}

fn signing_input(header: &Value, payload: &[u8]) -> String {
    format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload))
}

pub(crate) fn rs256(key: &CoreRsaPrivateSigningKey, kid: &str, payload: &[u8]) -> String {
    let input = signing_input(&json!({"alg": "RS256", "kid": kid, "typ": "JWT"}), payload);
    let sig = key
        .sign(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, input.as_bytes())
        .expect("RS256 signature");
    format!("{input}.{}", b64(&sig))
}

/// The ID token for `fault`, for a login whose nonce was `nonce`.
fn id_token(shared: &Shared, fault: Fault, nonce: Option<&str>) -> String {
    let mut claims = good_claims(&shared.issuer, nonce);
    if shared.options.id_token_lifetime > 0 {
        claims["exp"] = json!(now() + shared.options.id_token_lifetime);
    }
    if let Some(sub) = shared.login_sub.lock().unwrap().clone() {
        claims["sub"] = json!(sub);
        claims["email"] = json!(format!("{sub}@example.com"));
    }
    if shared.options.id_token_padding > 0 {
        claims["padding"] = json!("A".repeat(shared.options.id_token_padding));
    }
    let good_key = &shared.key;
    let signed = |claims: &Value| rs256(good_key, KID, claims.to_string().as_bytes());
    match fault {
        Fault::BadSignature => rs256(&shared.other_key, KID, claims.to_string().as_bytes()),
        Fault::AlgNone => {
            let input = signing_input(
                &json!({"alg": "none", "kid": KID, "typ": "JWT"}),
                claims.to_string().as_bytes(),
            );
            format!("{input}.")
        }
        Fault::Hs256WithPublicKey => {
            let input = signing_input(
                &json!({"alg": "HS256", "kid": KID, "typ": "JWT"}),
                claims.to_string().as_bytes(),
            );
            let mac = CoreHmacKey::new(shared.public_key_pem.as_bytes().to_vec())
                .sign(&CoreJwsSigningAlgorithm::HmacSha256, input.as_bytes())
                .expect("HS256 MAC");
            format!("{input}.{}", b64(&mac))
        }
        Fault::WrongIssuer => {
            claims["iss"] = json!("https://evil.example.com/idp");
            signed(&claims)
        }
        Fault::IssuerTrailingSlash => {
            claims["iss"] = json!(format!("{}/", shared.issuer));
            signed(&claims)
        }
        Fault::WrongAudience => {
            claims["aud"] = json!("kubernetes");
            signed(&claims)
        }
        Fault::ExtraAudience => {
            claims["aud"] = json!([CLIENT_ID, "untrusted-client"]);
            signed(&claims)
        }
        Fault::AzpMismatch => {
            claims["azp"] = json!("other-client");
            signed(&claims)
        }
        Fault::Expired => {
            claims["exp"] = json!(now() - 600);
            claims["iat"] = json!(now() - 4200);
            signed(&claims)
        }
        Fault::NotYetValid => {
            claims["nbf"] = json!(now() + 3600);
            signed(&claims)
        }
        Fault::MissingIat => {
            claims.as_object_mut().expect("claims object").remove("iat");
            signed(&claims)
        }
        Fault::WrongNonce => {
            claims["nonce"] = json!("not-the-nonce-of-this-login");
            signed(&claims)
        }
        Fault::MissingNonce => {
            claims.as_object_mut().expect("claims object").remove("nonce");
            signed(&claims)
        }
        Fault::UnknownKid => rs256(good_key, "k-unknown", claims.to_string().as_bytes()),
        Fault::NonJsonPayload => rs256(good_key, KID, b"this is not JSON"),
        Fault::Oversized => {
            claims["padding"] = json!("A".repeat(1 << 20));
            signed(&claims)
        }
        Fault::Good
        | Fault::TokenEndpoint500
        | Fault::TokenEndpointStall
        | Fault::DiscoveryIssuerMismatch
        | Fault::DiscoveryMalformed
        | Fault::CallbackError
        | Fault::CallbackWithoutCode => signed(&claims),
    }
}

fn json_reply(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn oauth_error(error: &str, description: &str) -> Response {
    json_reply(
        StatusCode::BAD_REQUEST,
        json!({"error": error, "error_description": description}).to_string(),
    )
}

async fn discovery(State(s): State<Arc<Shared>>) -> Response {
    s.hit("discovery");
    let fault = s.fault();
    if fault == Fault::DiscoveryMalformed {
        return json_reply(
            StatusCode::OK,
            format!("{{\"issuer\": \"{}\", \"authorization_endpoint\": ", s.issuer),
        );
    }
    let algs = match fault {
        // An IdP that advertises the weak algorithms too: koidc must still refuse them.
        Fault::AlgNone | Fault::Hs256WithPublicKey => json!(["RS256", "HS256", "none"]),
        _ => json!(["RS256"]),
    };
    let issuer = if fault == Fault::DiscoveryIssuerMismatch {
        format!("{}/other", s.issuer)
    } else {
        s.issuer.clone()
    };
    let mut doc = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{}/authorize", s.issuer),
        "token_endpoint": format!("{}/token", s.issuer),
        "jwks_uri": format!("{}/keys", s.issuer),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic"],
        "scopes_supported": ["openid", "email", "offline_access"],
    });
    if s.options.revocation {
        doc["revocation_endpoint"] = json!(format!("{}/revoke", s.issuer));
    }
    for (member, url) in s.endpoints.lock().unwrap().iter() {
        doc[member.as_str()] = json!(url);
    }
    json_reply(StatusCode::OK, doc.to_string())
}

async fn keys(State(s): State<Arc<Shared>>) -> Response {
    s.hit("keys");
    if let Some(budget) = s.keys_budget.lock().unwrap().as_mut() {
        if *budget == 0 {
            return (StatusCode::SERVICE_UNAVAILABLE, "keys unavailable").into_response();
        }
        *budget -= 1;
    }
    json_reply(StatusCode::OK, json!({ "keys": [jwk(&s.key)] }).to_string())
}

/// Redirects straight back to the client: with a code, or as the fault says. koidc's own check
/// before a login (User-Agent `koidc/…`, no browser, no session) gets what a provider shows a
/// visitor without a session, a login page, and is counted as `preflight`: `authorize` counts
/// the browser's visits only.
async fn authorize(
    State(s): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let from_koidc = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with("koidc/"));
    if from_koidc {
        s.hit("preflight");
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><form method=post><input name=username></form></body></html>",
        )
            .into_response();
    }
    s.hit("authorize");
    let Some(mut target) = q.get("redirect_uri").and_then(|r| Url::parse(r).ok()) else {
        return (StatusCode::BAD_REQUEST, "no valid redirect_uri").into_response();
    };
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return (StatusCode::BAD_REQUEST, "unknown client_id").into_response();
    }
    s.redirect_uris.lock().unwrap().push(q["redirect_uri"].clone());
    {
        let mut pairs = target.query_pairs_mut();
        match s.fault() {
            Fault::CallbackError => {
                pairs
                    .append_pair("error", "access_denied")
                    .append_pair("error_description", "the user declined the request");
            }
            Fault::CallbackWithoutCode => {}
            _ => {
                let code = hex::encode(rand::thread_rng().r#gen::<[u8; 16]>());
                s.grants.lock().unwrap().insert(
                    code.clone(),
                    Grant {
                        nonce: q.get("nonce").cloned(),
                        code_challenge: q.get("code_challenge").cloned(),
                        redirect_uri: q["redirect_uri"].clone(),
                    },
                );
                pairs.append_pair("code", &code);
            }
        }
        if let Some(state) = q.get("state") {
            pairs.append_pair("state", state);
        }
    }
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())], "").into_response()
}

/// Redeems a code (checking the PKCE verifier and redirect URI) for the fault's ID token.
async fn token(State(s): State<Arc<Shared>>, body: String) -> Response {
    s.hit("token");
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let fault = s.fault();
    match fault {
        Fault::TokenEndpoint500 => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain")],
                "internal server error",
            )
                .into_response();
        }
        Fault::TokenEndpointStall => tokio::time::sleep(STALL).await,
        _ => {}
    }
    if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        return refresh(&s, &form);
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return oauth_error("unsupported_grant_type", "the stub IdP only redeems codes");
    }
    let Some(grant) = form.get("code").and_then(|c| s.grants.lock().unwrap().remove(c)) else {
        return oauth_error("invalid_grant", "unknown or reused code");
    };
    if form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return oauth_error(
            "invalid_grant",
            "redirect_uri differs from the authorization request",
        );
    }
    let challenge = form
        .get("code_verifier")
        .map(|v| b64(&sha2::Sha256::digest(v.as_bytes())));
    if challenge.is_none() || challenge != grant.code_challenge {
        return oauth_error("invalid_grant", "PKCE verification failed");
    }
    let id_token = id_token(&s, fault, grant.nonce.as_deref());
    s.issued.lock().unwrap().push(id_token.clone());
    let refresh_token = hex::encode(rand::thread_rng().r#gen::<[u8; 16]>());
    s.issued_refresh.lock().unwrap().push(refresh_token.clone());
    json_reply(
        StatusCode::OK,
        json!({
            "access_token": hex::encode(rand::thread_rng().r#gen::<[u8; 16]>()),
            "token_type": "Bearer",
            "expires_in": 3600,
            "id_token": id_token,
            "refresh_token": refresh_token,
        })
        .to_string(),
    )
}

/// The refresh grant: each refresh token the stub issued works once (rotation); the answer is a
/// good ID token (no nonce) for [`StubIdp::set_refresh_sub`]'s subject, naming
/// [`StubIdp::set_refresh_kid`]'s key id, and a new refresh token.
fn refresh(s: &Shared, form: &HashMap<String, String>) -> Response {
    let presented = form.get("refresh_token").cloned().unwrap_or_default();
    s.refresh_requests.lock().unwrap().push(presented.clone());
    let known = s.issued_refresh.lock().unwrap().contains(&presented);
    let mut used = s.used_refresh.lock().unwrap();
    if !known || used.contains(&presented) {
        return oauth_error("invalid_grant", "unknown or reused refresh token");
    }
    used.push(presented);
    drop(used);
    let mut claims = good_claims(&s.issuer, None);
    if s.options.id_token_lifetime > 0 {
        claims["exp"] = json!(now() + s.options.id_token_lifetime);
    }
    if let Some(sub) = s.refresh_sub.lock().unwrap().clone() {
        claims["sub"] = json!(sub);
        claims["email"] = json!(format!("{sub}@example.com"));
    }
    let kid = s.refresh_kid.lock().unwrap().clone();
    let id_token = rs256(
        &s.key,
        kid.as_deref().unwrap_or(KID),
        claims.to_string().as_bytes(),
    );
    s.issued.lock().unwrap().push(id_token.clone());
    let refresh_token = hex::encode(rand::thread_rng().r#gen::<[u8; 16]>());
    s.issued_refresh.lock().unwrap().push(refresh_token.clone());
    json_reply(
        StatusCode::OK,
        json!({
            "access_token": hex::encode(rand::thread_rng().r#gen::<[u8; 16]>()),
            "token_type": "Bearer",
            "expires_in": 3600,
            "id_token": id_token,
            "refresh_token": refresh_token,
        })
        .to_string(),
    )
}

/// A loopback TCP listener that accepts connections, counts them and closes them at once: the
/// address an endpoint koidc must never use points to.
pub struct ConnectionTrap {
    addr: SocketAddr,
    count: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ConnectionTrap {
    /// Listens on `127.0.0.1:0`.
    pub fn start() -> ConnectionTrap {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the trap");
        listener.set_nonblocking(true).expect("non-blocking trap");
        let addr = listener.local_addr().expect("trap address");
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, st) = (count.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        c.fetch_add(1, Ordering::SeqCst);
                        drop(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        ConnectionTrap {
            addr,
            count,
            stop,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for ConnectionTrap {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// RFC 7009: records the request and answers 200 (404 when revocation is not enabled).
async fn revoke(State(s): State<Arc<Shared>>, headers: axum::http::HeaderMap, body: String) -> Response {
    s.hit("revoke");
    if !s.options.revocation {
        return (StatusCode::NOT_FOUND, "no revocation endpoint").into_response();
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    s.revocation_auth.lock().unwrap().push(
        headers
            .get(header::AUTHORIZATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    );
    s.revocations.lock().unwrap().push(Revocation {
        token: form.get("token").cloned(),
        token_type_hint: form.get("token_type_hint").cloned(),
        client_id: form.get("client_id").cloned(),
    });
    StatusCode::OK.into_response()
}

/// The SubjectPublicKeyInfo PEM of an RSA JWK, as an IdP would publish the key in PEM form.
fn public_key_pem(jwk: &Value) -> String {
    let part = |name: &str| {
        URL_SAFE_NO_PAD
            .decode(jwk[name].as_str().expect("RSA JWK member"))
            .expect("RSA JWK member is base64url")
    };
    let rsa_public_key = der(0x30, &[der_uint(&part("n")), der_uint(&part("e"))].concat());
    // AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }
    let alg = der(
        0x30,
        &[
            der(0x06, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]),
            vec![0x05, 0x00],
        ]
        .concat(),
    );
    let spki = der(
        0x30,
        &[alg, der(0x03, &[&[0u8][..], &rsa_public_key].concat())].concat(),
    );
    let body = STANDARD.encode(spki);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend(trimmed);
    der(0x02, &content)
}

/// The HOME and cache dir of one koidc user talking to a stub IdP.
pub struct StubClient {
    pub tmp: TempDir,
}

impl StubClient {
    pub fn new() -> StubClient {
        let tmp = tempfile::Builder::new()
            .prefix("koidc-stub-client-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir(tmp.path().join("home")).expect("create HOME");
        StubClient { tmp }
    }

    pub fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    /// `koidc ARGS` with a clean environment and this client's HOME.
    pub fn koidc(&self, args: &[&str]) -> Command {
        let mut cmd = clean_command(koidc_bin(), &self.home());
        cmd.args(args);
        cmd
    }

    /// `koidc SUBCOMMAND` against `issuer` with `--cache CACHE`, this client's cache dir, curl as
    /// the browser and (unless `extra` sets one) a 20 s login timeout, then `extra`.
    pub fn command_with_cache(&self, sub: &str, issuer: &str, cache: &str, extra: &[&str]) -> Command {
        let mut cmd = self.koidc(&[sub, "--issuer", issuer, "--client-id", CLIENT_ID]);
        cmd.args(["--cache", cache, "--cache-dir"])
            .arg(self.cache_dir())
            .args(["--browser-command", CURL_BROWSER]);
        if !extra.contains(&"--timeout") {
            cmd.args(["--timeout", "20"]);
        }
        cmd.args(extra);
        cmd
    }

    /// [`StubClient::command_with_cache`] against `idp` with the file cache.
    pub fn command(&self, sub: &str, idp: &StubIdp, extra: &[&str]) -> Command {
        self.command_with_cache(sub, idp.issuer(), "file", extra)
    }

    /// The cache entry files (`.json` / `.enc`).
    pub fn entries(&self) -> Vec<PathBuf> {
        entry_files(&self.cache_dir())
    }
}
