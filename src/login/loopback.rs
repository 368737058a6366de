//! The one-shot loopback server that receives the authorization response (RFC 8252).
//!
//! The IdP redirects the user's browser to `http://127.0.0.1:PORT/callback?code=…&state=…`.
//! [`LoopbackServer`] listens on a loopback address only, accepts exactly one genuine callback
//! (right `state`, compared in constant time; right `iss` when asked, RFC 9207: the checks of
//! [`crate::login::callback`], shared with keyboard mode), rejects everything else without ending
//! the wait (a `Host` other than the bound address, or `localhost` on 127.0.0.1 / ::1, as a
//! DNS-rebinding defence; other paths and methods, oversized or malformed queries, wrong
//! `state`) and then shuts down, giving in-flight responses about a second to reach the browser
//! but never waiting for idle keep-alive connections. This module is the HTTP side: which
//! requests reach the checks, and the page each one gets.
//!
//! Every connection is served by hyper with a timer: a request's headers (and, on a kept-alive
//! connection, the next request's) must arrive within [`HEADER_READ_TIMEOUT`], so a connection
//! that sends nothing, only blank lines, or half a request is closed instead of held for the
//! whole login (`axum::serve` runs hyper without a timer, so no such limit applied).
//!
//! INTERFACE: [`LoopbackServer::bind`], [`LoopbackServer::redirect_uri`],
//! [`LoopbackServer::wait_for_code`], [`LoopbackServer::wait_for_code_with_issuer`],
//! [`LoopbackServer::with_iss_required`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::login::callback::{self, CallbackError, Expected, MAX_SHOWN_LEN};

/// The path of the redirect URI.
pub const CALLBACK_PATH: &str = "/callback";

/// The host the redirect URI names (`--redirect-host`). The listener binds loopback addresses
/// only, whichever it is: the host changes what the IdP is told, never where koidc listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedirectHost {
    /// The bound address itself: `http://127.0.0.1:PORT/callback`, `http://[::1]:PORT/callback`.
    #[default]
    Address,
    /// `http://localhost:PORT/callback`, for IdPs that registered that URI: koidc listens on
    /// 127.0.0.1 and on ::1 at the same port, so the callback is reached whichever of the two the
    /// browser resolves `localhost` to (only 127.0.0.1 when the machine has no IPv6 loopback).
    Localhost,
}

/// How many ports a `localhost` listener tries when ::1 holds the free port 127.0.0.1 got.
const LOCALHOST_PORT_TRIES: usize = 8;

/// Longest query string accepted on the callback; longer ones get a 400.
pub const MAX_QUERY_LEN: usize = 8 * 1024;

/// How long in-flight responses may take to finish once the wait has ended.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// How long a request's headers may take to arrive on a connection (also the idle time of a
/// kept-alive connection): a browser sends them at once; a connection that sends nothing, only
/// blank lines or half a request is closed after this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the loopback server.
#[derive(Debug, thiserror::Error)]
pub enum LoopbackError {
    /// No address was given to [`LoopbackServer::bind`].
    #[error("no address to listen on for the login callback was given; configure a redirect port")]
    NoCandidates,

    /// A candidate address is not a loopback address; nothing was bound.
    #[error(
        "refusing to listen on {addr}: the login callback listener must use a loopback address \
         (127.0.0.0/8 or ::1)"
    )]
    NotLoopback {
        /// The refused address.
        addr: SocketAddr,
    },

    /// Every candidate address failed to bind (usually: port in use).
    #[error(
        "could not listen for the login callback on {}; free one of these ports or configure \
         another, then run `koidc login` again",
        format_attempts(.attempts)
    )]
    Bind {
        /// Each address tried, with the error it gave.
        attempts: Vec<(SocketAddr, std::io::Error)>,
    },

    /// The bound socket's address could not be read.
    #[error("could not read the address of the login callback listener: {0}")]
    LocalAddr(#[source] std::io::Error),

    /// No genuine callback arrived in time.
    #[error("{}", timeout_message(*.secs, *.rejected))]
    Timeout {
        /// The timeout, in whole seconds.
        secs: u64,
        /// How many callbacks carrying a missing or wrong `state` were rejected meanwhile.
        rejected: u64,
    },

    /// The IdP answered with an OAuth error (`error=…`) for this login. Both fields are
    /// sanitised: printable ASCII only, length-capped.
    #[error(
        "the identity provider refused the login: {error}{}; check the client settings or \
         run `koidc login` to try again",
        .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
    )]
    Idp {
        /// The OAuth `error` code, e.g. `access_denied`.
        error: String,
        /// The optional `error_description`.
        description: Option<String>,
    },

    /// The genuine callback carried neither `code` nor `error`.
    #[error("the login callback carried no authorization code; run `koidc login` to try again")]
    MissingCode,

    /// The callback's `iss` differs from the expected issuer (RFC 9207, mix-up defence).
    #[error(
        "the login callback came from issuer {got}, not the expected {expected}; \
         run `koidc login` to try again"
    )]
    IssuerMismatch {
        /// The issuer koidc logs in to.
        expected: String,
        /// The sanitised `iss` the callback carried.
        got: String,
    },

    /// `iss` was required (the IdP advertises it) but the callback carried none.
    #[error(
        "the login callback carried no `iss` although the identity provider promises one; \
         run `koidc login` to try again"
    )]
    MissingIssuer,

    /// The HTTP server stopped before a callback arrived.
    #[error("the login callback listener stopped unexpectedly; run `koidc login` to try again")]
    Stopped,
}

fn format_attempts(attempts: &[(SocketAddr, std::io::Error)]) -> String {
    attempts
        .iter()
        .map(|(addr, err)| format!("{addr} ({err})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn timeout_message(secs: u64, rejected: u64) -> String {
    let mut msg = format!("no login callback arrived within {secs}s");
    if rejected > 0 {
        let s = if rejected == 1 { "" } else { "s" };
        msg.push_str(&format!(
            " ({rejected} callback{s} with a wrong state {} rejected)",
            if rejected == 1 { "was" } else { "were" }
        ));
    }
    msg.push_str("; run `koidc login` to try again");
    msg
}

/// A bound, not yet serving, loopback listener.
#[derive(Debug)]
pub struct LoopbackServer {
    listener: TcpListener,
    /// The ::1 listener at the same port, for [`RedirectHost::Localhost`].
    ipv6: Option<TcpListener>,
    host: RedirectHost,
    addr: SocketAddr,
    iss_required: bool,
    header_read_timeout: Duration,
}

impl LoopbackServer {
    /// The address actually bound.
    #[cfg(test)]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Binds the first address of `candidates` that is free (port 0 picks a random port).
    ///
    /// Every candidate must be a loopback address (127.0.0.0/8 or ::1); otherwise nothing is
    /// bound and [`LoopbackError::NotLoopback`] is returned.
    pub async fn bind(candidates: &[SocketAddr]) -> Result<Self, LoopbackError> {
        if candidates.is_empty() {
            return Err(LoopbackError::NoCandidates);
        }
        if let Some(addr) = candidates.iter().find(|a| !a.ip().is_loopback()) {
            return Err(LoopbackError::NotLoopback { addr: *addr });
        }
        let mut attempts = Vec::new();
        for &candidate in candidates {
            match TcpListener::bind(candidate).await {
                Ok(listener) => {
                    let addr = listener.local_addr().map_err(LoopbackError::LocalAddr)?;
                    return Ok(Self {
                        listener,
                        ipv6: None,
                        host: RedirectHost::Address,
                        addr,
                        iss_required: false,
                        header_read_timeout: HEADER_READ_TIMEOUT,
                    });
                }
                Err(err) => attempts.push((candidate, err)),
            }
        }
        Err(LoopbackError::Bind { attempts })
    }

    /// [`Self::bind`] for a redirect URI naming `host`. For [`RedirectHost::Localhost`], each
    /// candidate's port is bound on 127.0.0.1 and on ::1 (the candidate's own address, checked
    /// to be loopback, is not used): both, or the next candidate. A machine without an IPv6
    /// loopback gets 127.0.0.1 alone; a ::1 port held by another program is never left to it (a
    /// browser resolving `localhost` to ::1 would hand it the code).
    pub async fn bind_for(candidates: &[SocketAddr], host: RedirectHost) -> Result<Self, LoopbackError> {
        if host == RedirectHost::Address {
            return Self::bind(candidates).await;
        }
        if candidates.is_empty() {
            return Err(LoopbackError::NoCandidates);
        }
        if let Some(addr) = candidates.iter().find(|a| !a.ip().is_loopback()) {
            return Err(LoopbackError::NotLoopback { addr: *addr });
        }
        let mut attempts = Vec::new();
        for candidate in candidates {
            let tries = if candidate.port() == 0 {
                LOCALHOST_PORT_TRIES
            } else {
                1
            };
            for _ in 0..tries {
                let v4 = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, candidate.port()));
                let listener = match TcpListener::bind(v4).await {
                    Ok(listener) => listener,
                    Err(err) => {
                        attempts.push((v4, err));
                        break;
                    }
                };
                let addr = listener.local_addr().map_err(LoopbackError::LocalAddr)?;
                let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()));
                let ipv6 = match TcpListener::bind(v6).await {
                    Ok(ipv6) => Some(ipv6),
                    Err(err) if no_ipv6_loopback(&err) => None,
                    Err(err) => {
                        attempts.push((v6, err));
                        continue;
                    }
                };
                return Ok(Self {
                    listener,
                    ipv6,
                    host,
                    addr,
                    iss_required: false,
                    header_read_timeout: HEADER_READ_TIMEOUT,
                });
            }
        }
        Err(LoopbackError::Bind { attempts })
    }

    /// Makes a callback without `iss` an error when an expected issuer is given to
    /// [`Self::wait_for_code_with_issuer`]: set it when discovery advertises
    /// `authorization_response_iss_parameter_supported` (RFC 9207).
    pub fn with_iss_required(mut self, required: bool) -> Self {
        self.iss_required = required;
        self
    }

    /// Another header read timeout than [`HEADER_READ_TIMEOUT`] (tests wait less).
    #[cfg(test)]
    fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// The redirect URI to send to the IdP, e.g. `http://127.0.0.1:41234/callback`.
    pub fn redirect_uri(&self) -> String {
        redirect_uri_with(self.addr, self.host)
    }

    /// Serves until the callback with `expected_state` arrives or `timeout` passes.
    ///
    /// Any `iss` in the callback is ignored; see [`Self::wait_for_code_with_issuer`].
    pub async fn wait_for_code(
        self,
        expected_state: &str,
        timeout: Duration,
    ) -> Result<SecretString, LoopbackError> {
        self.wait_for_code_with_issuer(expected_state, None, timeout)
            .await
    }

    /// Like [`Self::wait_for_code`], and when `expected_iss` is given, a genuine callback
    /// carrying an `iss` different from it ends the wait with
    /// [`LoopbackError::IssuerMismatch`] (RFC 9207). A missing `iss` is accepted unless
    /// [`Self::with_iss_required`] was set.
    pub async fn wait_for_code_with_issuer(
        self,
        expected_state: &str,
        expected_iss: Option<&str>,
        timeout: Duration,
    ) -> Result<SecretString, LoopbackError> {
        let (done_tx, mut done_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            addr: self.addr,
            expected_state: expected_state.to_owned(),
            expected_iss: expected_iss.map(str::to_owned),
            iss_required: self.iss_required,
            rejected: AtomicU64::new(0),
            done: Mutex::new(Some(done_tx)),
        });
        let app = Router::new().fallback(handle).with_state(Arc::clone(&shared));
        let (stop_tx, stop_rx) = watch::channel(());
        let serve = serve(self.listener, self.ipv6, app, self.header_read_timeout, stop_rx);
        let mut serve = std::pin::pin!(serve);

        let outcome = tokio::select! {
            waited = tokio::time::timeout(timeout, &mut done_rx) => match waited {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => Err(LoopbackError::Stopped),
                Err(_) => Err(LoopbackError::Timeout {
                    secs: timeout.as_secs(),
                    rejected: shared.rejected.load(Ordering::Relaxed),
                }),
            },
            _ = &mut serve => Err(LoopbackError::Stopped),
        };

        // Stop accepting, let in-flight responses (the success page) finish, close idle
        // keep-alive connections, but never wait longer than the grace period (dropping `serve`
        // then ends every connection still open).
        let _ = stop_tx.send(());
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, &mut serve).await;
        outcome
    }
}

/// Accepts connections until `stop` changes (or its sender is dropped), then shuts each one down
/// gracefully (in-flight responses finish, idle ones close) and returns when all have ended.
/// Every connection has hyper's header read timeout.
async fn serve(
    listener: TcpListener,
    ipv6: Option<TcpListener>,
    app: Router,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<()>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = stop.changed() => break,
            accepted = accept(&listener, ipv6.as_ref()) => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors or a connection reset before it was accepted: try
                // again shortly rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            // Reap finished connections as they end, so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop.clone();
        connections.spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .keep_alive(true);
            let conn = http.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.changed() => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(listener);
    drop(ipv6);
    while connections.join_next().await.is_some() {}
}

/// The next connection on `listener` or on `ipv6`.
async fn accept(
    listener: &TcpListener,
    ipv6: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match ipv6 {
        None => listener.accept().await,
        Some(ipv6) => tokio::select! {
            accepted = listener.accept() => accepted,
            accepted = ipv6.accept() => accepted,
        },
    }
}

/// Whether binding ::1 failed because the machine has no IPv6 loopback (IPv6 disabled or not
/// built in), rather than because the port is taken.
fn no_ipv6_loopback(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::AddrNotAvailable || err.raw_os_error() == Some(libc::EAFNOSUPPORT)
}

/// The redirect URI for a bound address and the host it names.
pub(crate) fn redirect_uri_with(addr: SocketAddr, host: RedirectHost) -> String {
    match host {
        RedirectHost::Address => redirect_uri_for(addr),
        RedirectHost::Localhost => format!("http://localhost:{}{CALLBACK_PATH}", addr.port()),
    }
}

/// `http://HOST:PORT/callback` for a bound address; IPv6 in brackets, without a zone.
pub(crate) fn redirect_uri_for(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("http://{}:{}{CALLBACK_PATH}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("http://[{}]:{}{CALLBACK_PATH}", a.ip(), a.port()),
    }
}

type Outcome = Result<SecretString, LoopbackError>;

/// What the request handler shares with the waiting task.
struct Shared {
    /// The bound address: the only one a genuine request can have been sent to.
    addr: SocketAddr,
    expected_state: String,
    expected_iss: Option<String>,
    iss_required: bool,
    rejected: AtomicU64,
    done: Mutex<Option<oneshot::Sender<Outcome>>>,
}

impl Shared {
    /// Whether `host` (a `Host` header or an absolute-form authority) names this listener: the
    /// bound address with its port (`127.0.0.2:PORT`, `[::1]:PORT`), or `localhost:PORT` when
    /// bound to 127.0.0.1 or ::1 (where `localhost` resolves). Any other name, even another
    /// loopback address, did not reach this listener through the browser's own resolution: a
    /// DNS-rebinding page gets refused.
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let port = self.addr.port();
        let ip = self.addr.ip();
        let literal = match ip {
            std::net::IpAddr::V4(v4) => format!("{v4}:{port}"),
            std::net::IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        };
        let localhost = ip == std::net::IpAddr::from([127, 0, 0, 1])
            || ip == std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
        host == literal || (localhost && host == format!("localhost:{port}"))
    }

    /// What a callback must carry to belong to the waiting login.
    fn expected(&self) -> Expected<'_> {
        Expected {
            state: &self.expected_state,
            issuer: self.expected_iss.as_deref(),
            iss_required: self.iss_required,
        }
    }

    /// Hands the outcome to the waiting task; false when an earlier callback already did.
    fn finish(&self, outcome: Outcome) -> bool {
        let sender = self
            .done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match sender {
            Some(tx) => {
                let _ = tx.send(outcome);
                true
            }
            None => false,
        }
    }
}

/// The only handler: every request of every method and path comes here.
async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    respond(&shared, req.method(), req.uri(), req.headers())
}

fn respond(
    shared: &Shared,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
) -> Response {
    // DNS-rebinding defence: the page must have been addressed to us by loopback name.
    let mut hosts = headers.get_all(header::HOST).iter();
    let host_ok = match (hosts.next(), hosts.next()) {
        (Some(value), None) => value.to_str().is_ok_and(|h| shared.host_allowed(h)),
        _ => false,
    };
    let authority_ok = uri.authority().is_none_or(|a| shared.host_allowed(a.as_str()));
    if !host_ok || !authority_ok {
        return page(StatusCode::BAD_REQUEST, "Bad request: unexpected Host.", false);
    }
    if uri.path() != CALLBACK_PATH {
        return page(StatusCode::NOT_FOUND, "Not found.", false);
    }
    let is_head = *method == Method::HEAD;
    if *method != Method::GET && !is_head {
        let mut resp = page(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.", false);
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let query = uri.query().unwrap_or("");
    if query.len() > MAX_QUERY_LEN {
        return page(
            StatusCode::BAD_REQUEST,
            "Bad request: the query is too long.",
            false,
        );
    }
    let answer = match callback::code_from_query(query, shared.expected()) {
        Err(CallbackError::Malformed) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Bad request: malformed login callback.",
                false,
            );
        }
        Err(CallbackError::WrongState { .. }) => {
            shared.rejected.fetch_add(1, Ordering::Relaxed);
            return page(
                StatusCode::BAD_REQUEST,
                "This login callback does not belong to the current koidc login. \
                 Return to the terminal.",
                false,
            );
        }
        answer => answer,
    };

    let (outcome, status, message) = classify(answer);
    if is_head {
        // A HEAD (link preview, prefetch) never consumes the login: the browser's GET must.
        return page(status, "", false);
    }
    if !shared.finish(outcome) {
        return page(
            StatusCode::BAD_REQUEST,
            "This koidc login is already finished. You may close this tab.",
            true,
        );
    }
    page(status, &message, true)
}

/// Turns the answer of a callback with the right state into the outcome, the status and the
/// page text.
fn classify(answer: Result<SecretString, CallbackError>) -> (Outcome, StatusCode, String) {
    const FAILED: &str = "Login to koidc failed";
    let err = match answer {
        Ok(code) => {
            return (
                Ok(code),
                StatusCode::OK,
                "Logged in to koidc. You may close this tab.".to_owned(),
            );
        }
        Err(err) => err,
    };
    let (err, message) = match err {
        CallbackError::IssuerMismatch { expected, got } => (
            LoopbackError::IssuerMismatch { expected, got },
            format!("{FAILED}: the response came from an unexpected identity provider."),
        ),
        // A bare code is a paste, never a redirect: it carries no `iss` either.
        CallbackError::MissingIssuer | CallbackError::BareCodeNeedsIssuer => (
            LoopbackError::MissingIssuer,
            format!("{FAILED}: the response did not name its identity provider."),
        ),
        CallbackError::Refused { error, description } => {
            let message = format!(
                "{FAILED}: the identity provider answered {}{}.",
                html_escape(&error),
                description
                    .as_deref()
                    .map(|d| format!(" ({})", html_escape(d)))
                    .unwrap_or_default()
            );
            (LoopbackError::Idp { error, description }, message)
        }
        // Malformed and foreign callbacks were answered before; they never end the login.
        CallbackError::MissingCode | CallbackError::Malformed | CallbackError::WrongState { .. } => (
            LoopbackError::MissingCode,
            format!("{FAILED}: the response carried no authorization code."),
        ),
    };
    (Err(err), StatusCode::BAD_REQUEST, message)
}

const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");
const NO_REFERRER: HeaderValue = HeaderValue::from_static("no-referrer");
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
const CSP: HeaderValue = HeaderValue::from_static(
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
);
const CLOSE: HeaderValue = HeaderValue::from_static("close");

/// The page every response carries; `{message}` stands for the text.
const PAGE_TEMPLATE: &str = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
                             <title>koidc</title></head><body><p>{message}</p></body></html>\n";

/// A small HTML page with the headers every response carries. `message` must be HTML-safe.
fn page(status: StatusCode, message: &str, close: bool) -> Response {
    let body = PAGE_TEMPLATE.replace("{message}", message);
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HTML);
    h.insert(header::CACHE_CONTROL, NO_STORE);
    h.insert(header::REFERRER_POLICY, NO_REFERRER);
    h.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    h.insert(header::CONTENT_SECURITY_POLICY, CSP);
    if close {
        h.insert(header::CONNECTION, CLOSE);
    }
    resp
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use secrecy::ExposeSecret;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const STATE: &str = "s7Yq2N0cJ_xWvT4kL9pR3mA8bE1fH6gD";
    const CODE: &str = "code-4f8a1b2c9d";
    const LONG: Duration = Duration::from_secs(20);

    struct RawResponse {
        status: u16,
        head: String,
        body: String,
    }

    impl RawResponse {
        fn header(&self, name: &str) -> Option<String> {
            self.head.lines().skip(1).find_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        }
    }

    /// Sends raw bytes on a fresh connection and reads until the server closes it (at most a
    /// minute: one request, however loaded the machine).
    async fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
        raw_until(addr, request, Instant::now() + Duration::from_secs(60))
            .await
            .expect("server did not answer within a minute")
    }

    /// [`raw`] with a deadline: `None` when the server had not closed the connection by then.
    async fn raw_until(addr: SocketAddr, request: &[u8], deadline: Instant) -> Option<RawResponse> {
        let fut = async {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(request).await.unwrap();
            let mut buf = Vec::new();
            // A reset after a rejected request is fine; we parse what arrived.
            let _ = s.read_to_end(&mut buf).await;
            buf
        };
        let buf = tokio::time::timeout_at(deadline.into(), fut).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        Some(RawResponse {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        })
    }

    async fn get_with_host(addr: SocketAddr, target: impl AsRef<str>, host: &str) -> RawResponse {
        let target = target.as_ref();
        let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        raw(addr, req.as_bytes()).await
    }

    async fn get(addr: SocketAddr, target: impl AsRef<str>) -> RawResponse {
        get_with_host(addr, target, &format!("127.0.0.1:{}", addr.port())).await
    }

    async fn server() -> (LoopbackServer, SocketAddr) {
        let s = LoopbackServer::bind(&["127.0.0.1:0".parse().unwrap()])
            .await
            .unwrap();
        let addr = s.local_addr();
        (s, addr)
    }

    fn good_callback() -> String {
        format!("/callback?code={CODE}&state={STATE}")
    }

    fn assert_common_headers(r: &RawResponse) {
        assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(r.header("referrer-policy").as_deref(), Some("no-referrer"));
    }

    #[tokio::test]
    async fn bind_refuses_non_loopback_address_without_binding() {
        let err = LoopbackServer::bind(&["10.0.0.1:0".parse().unwrap()])
            .await
            .unwrap_err();
        assert!(matches!(err, LoopbackError::NotLoopback { .. }), "{err:?}");
        assert!(err.to_string().contains("10.0.0.1:0"));
        // A loopback address first does not help: the whole list is checked before binding.
        let err = LoopbackServer::bind(&["127.0.0.1:0".parse().unwrap(), "0.0.0.0:0".parse().unwrap()])
            .await
            .unwrap_err();
        assert!(matches!(err, LoopbackError::NotLoopback { .. }), "{err:?}");
        let err = LoopbackServer::bind(&[]).await.unwrap_err();
        assert!(matches!(err, LoopbackError::NoCandidates));
    }

    #[tokio::test]
    async fn bind_to_port_zero_gets_a_random_loopback_port() {
        let (s, addr) = server().await;
        assert!(addr.ip().is_loopback());
        assert_ne!(addr.port(), 0);
        assert_eq!(
            s.redirect_uri(),
            format!("http://127.0.0.1:{}/callback", addr.port())
        );
        // 127.0.0.0/8 counts as loopback.
        let other = LoopbackServer::bind(&["127.0.0.2:0".parse().unwrap()]).await;
        assert!(other.is_ok() || matches!(other, Err(LoopbackError::Bind { .. })));
    }

    #[tokio::test]
    async fn bind_uses_second_candidate_when_first_port_is_taken() {
        let (taken, taken_addr) = server().await;
        let s = LoopbackServer::bind(&[taken_addr, "127.0.0.1:0".parse().unwrap()])
            .await
            .unwrap();
        assert_ne!(s.local_addr().port(), taken_addr.port());
        drop(taken);
    }

    #[tokio::test]
    async fn bind_lists_every_address_tried_when_all_are_taken() {
        let (_a, a) = server().await;
        let (_b, b) = server().await;
        let err = LoopbackServer::bind(&[a, b]).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LoopbackError::Bind { ref attempts } if attempts.len() == 2));
        assert!(
            msg.contains(&a.to_string()) && msg.contains(&b.to_string()),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn a_localhost_redirect_listens_on_both_loopbacks_at_one_port_and_names_localhost() {
        let s = LoopbackServer::bind_for(&["127.0.0.1:0".parse().unwrap()], RedirectHost::Localhost)
            .await
            .unwrap();
        let port = s.local_addr().port();
        assert_eq!(s.local_addr().ip(), std::net::IpAddr::from([127, 0, 0, 1]));
        assert_eq!(s.redirect_uri(), format!("http://localhost:{port}/callback"));
        let has_ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
        assert_eq!(
            s.ipv6.is_some(),
            has_ipv6,
            "::1 is bound exactly when the machine has it"
        );
        if has_ipv6 {
            let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
            let host = format!("localhost:{port}");
            let (res, resp) = tokio::join!(
                s.wait_for_code(STATE, LONG),
                get_with_host(v6, good_callback(), &host)
            );
            assert_eq!(resp.status, 200);
            assert!(res.is_ok());
        }
    }

    #[tokio::test]
    async fn a_localhost_redirect_never_leaves_a_taken_ipv6_port_to_its_owner() {
        if std::net::TcpListener::bind("[::1]:0").is_err() {
            return; // No IPv6 loopback: nothing can hold ::1.
        }
        let other = std::net::TcpListener::bind("[::1]:0").unwrap();
        let port = other.local_addr().unwrap().port();
        let candidate: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let err = LoopbackServer::bind_for(&[candidate], RedirectHost::Localhost)
            .await
            .unwrap_err();
        assert!(matches!(err, LoopbackError::Bind { .. }), "{err:?}");
        assert!(err.to_string().contains(&format!("[::1]:{port}")), "{err}");
    }

    #[tokio::test]
    async fn a_localhost_redirect_refuses_non_loopback_candidates() {
        let err = LoopbackServer::bind_for(&["0.0.0.0:0".parse().unwrap()], RedirectHost::Localhost)
            .await
            .unwrap_err();
        assert!(matches!(err, LoopbackError::NotLoopback { .. }));
    }

    #[test]
    fn redirect_uri_brackets_ipv6_and_drops_zone() {
        let v6: SocketAddr = "[::1]:4321".parse().unwrap();
        assert_eq!(redirect_uri_for(v6), "http://[::1]:4321/callback");
        let v4: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        assert_eq!(redirect_uri_for(v4), "http://127.0.0.1:8000/callback");
    }

    #[tokio::test]
    async fn right_state_and_code_end_wait_and_show_success_page() {
        let (s, addr) = server().await;
        let (res, resp) = tokio::join!(s.wait_for_code(STATE, LONG), get(addr, good_callback()));
        assert_eq!(res.unwrap().expose_secret(), CODE);
        assert_eq!(resp.status, 200);
        assert!(
            resp.body.contains("Logged in to koidc. You may close this tab."),
            "{}",
            resp.body
        );
        assert_common_headers(&resp);
        // The listener is gone once the wait ended.
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn other_paths_get_404_and_other_methods_405_and_wait_continues() {
        let (s, addr) = server().await;
        let client = async {
            let r = get(addr, &format!("/other?code=x&state={STATE}")).await;
            assert_eq!(r.status, 404);
            assert_common_headers(&r);
            let r = get(addr, &format!("/callback/?code=x&state={STATE}")).await;
            assert_eq!(r.status, 404);
            let req = format!(
                "POST {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n",
                good_callback(),
                addr.port()
            );
            let r = raw(addr, req.as_bytes()).await;
            assert_eq!(r.status, 405);
            assert_eq!(r.header("allow").as_deref(), Some("GET, HEAD"));
            assert_common_headers(&r);
            get(addr, good_callback()).await
        };
        let (res, last) = tokio::join!(s.wait_for_code(STATE, LONG), client);
        assert_eq!(res.unwrap().expose_secret(), CODE);
        assert_eq!(last.status, 200);
    }

    #[tokio::test]
    async fn foreign_host_header_gets_400_and_wait_continues() {
        let (s, addr) = server().await;
        let port = addr.port();
        let client = async {
            for host in [
                format!("evil.example:{port}"),
                "evil.example".to_owned(),
                format!("127.0.0.1:{}", port.wrapping_add(1)),
                "127.0.0.1".to_owned(),
            ] {
                let r = get_with_host(addr, &good_callback(), &host).await;
                assert_eq!(r.status, 400, "host {host}");
                assert_common_headers(&r);
            }
            // HTTP/1.0 without any Host header.
            let req = format!("GET {} HTTP/1.0\r\n\r\n", good_callback());
            assert_eq!(raw(addr, req.as_bytes()).await.status, 400);
            // Absolute-form target naming another host.
            let req = format!(
                "GET http://evil.example:{port}{} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
                 Connection: close\r\n\r\n",
                good_callback()
            );
            assert_eq!(raw(addr, req.as_bytes()).await.status, 400);
            // localhost is a loopback name and is accepted.
            get_with_host(addr, &good_callback(), &format!("LocalHost:{port}")).await
        };
        let (res, last) = tokio::join!(s.wait_for_code(STATE, LONG), client);
        assert_eq!(res.unwrap().expose_secret(), CODE);
        assert_eq!(last.status, 200);
    }

    /// A server bound to `ip` on a random port.
    async fn server_on(ip: &str) -> (LoopbackServer, SocketAddr) {
        let s = LoopbackServer::bind(&[format!("{ip}:0").parse().unwrap()])
            .await
            .unwrap();
        let addr = s.local_addr();
        (s, addr)
    }

    #[tokio::test]
    async fn listen_on_127_0_0_2_accepts_its_own_address_as_host_and_nothing_else() {
        let (s, addr) = server_on("127.0.0.2").await;
        let port = addr.port();
        let client = async {
            // Names that do not reach this listener: refused (DNS-rebinding defence).
            for host in [
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
                format!("127.0.0.2:{}", port.wrapping_add(1)),
                format!("evil.example:{port}"),
            ] {
                let r = get_with_host(addr, &good_callback(), &host).await;
                assert_eq!(r.status, 400, "host {host}");
            }
            get_with_host(addr, &good_callback(), &format!("127.0.0.2:{port}")).await
        };
        let (res, last) = tokio::join!(s.wait_for_code(STATE, LONG), client);
        assert_eq!(last.status, 200, "{}", last.body);
        assert_eq!(res.unwrap().expose_secret(), CODE);
    }

    #[tokio::test]
    async fn listen_on_ipv6_loopback_accepts_its_bracketed_address_and_refuses_other_hosts() {
        // Skipped silently would be a lie: a host without IPv6 loopback fails the bind loudly.
        let (s, addr) = server_on("[::1]").await;
        let port = addr.port();
        let client = async {
            for host in [format!("127.0.0.1:{port}"), format!("[::2]:{port}")] {
                let r = get_with_host(addr, &good_callback(), &host).await;
                assert_eq!(r.status, 400, "host {host}");
            }
            get_with_host(addr, &good_callback(), &format!("[::1]:{port}")).await
        };
        let (res, last) = tokio::join!(s.wait_for_code(STATE, LONG), client);
        assert_eq!(last.status, 200, "{}", last.body);
        assert_eq!(res.unwrap().expose_secret(), CODE);
    }

    #[tokio::test]
    async fn wrong_or_missing_state_gets_400_and_timeout_counts_them() {
        let (s, addr) = server().await;
        let client = async {
            for target in [
                format!("/callback?code={CODE}&state=wrong"),
                format!("/callback?code={CODE}"),
                format!("/callback?code={CODE}&state={}", &STATE[..STATE.len() - 1]),
                "/callback?error=access_denied&state=wrong".to_owned(),
            ] {
                let r = get(addr, &target).await;
                assert_eq!(r.status, 400, "{target}");
                assert_common_headers(&r);
            }
        };
        let start = Instant::now();
        let (res, ()) = tokio::join!(s.wait_for_code(STATE, Duration::from_secs(1)), client);
        let err = res.unwrap_err();
        assert!(start.elapsed() >= Duration::from_secs(1));
        assert!(
            matches!(err, LoopbackError::Timeout { secs: 1, rejected: 4 }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "no login callback arrived within 1s (4 callbacks with a wrong state were \
             rejected); run `koidc login` to try again"
        );
    }

    #[tokio::test]
    async fn timeout_without_any_request_says_how_to_retry() {
        let (s, _addr) = server().await;
        let err = s
            .wait_for_code(STATE, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, LoopbackError::Timeout { secs: 0, rejected: 0 }));
        assert!(err.to_string().ends_with("; run `koidc login` to try again"));
    }

    #[test]
    fn timeout_message_matches_the_documented_form() {
        let err = LoopbackError::Timeout {
            secs: 180,
            rejected: 0,
        };
        assert_eq!(
            err.to_string(),
            "no login callback arrived within 180s; run `koidc login` to try again"
        );
        let err = LoopbackError::Timeout {
            secs: 180,
            rejected: 1,
        };
        assert!(
            err.to_string()
                .contains("(1 callback with a wrong state was rejected)")
        );
    }

    #[tokio::test]
    async fn idp_error_with_right_state_ends_wait_with_sanitised_error() {
        let (s, addr) = server().await;
        let long = "x".repeat(1000);
        let target = format!(
            "/callback?error=access_denied%1B%5B31m&error_description=%3Cscript%3Edenied%0A%C3%A9+by+user{long}&state={STATE}"
        );
        let (res, resp) = tokio::join!(s.wait_for_code(STATE, LONG), get(addr, &target));
        match res.unwrap_err() {
            LoopbackError::Idp { error, description } => {
                assert_eq!(error, "access_denied?[31m");
                let d = description.unwrap();
                assert!(d.starts_with("<script>denied?? by userxxx"), "{d}");
                assert!(d.len() <= MAX_SHOWN_LEN + 3);
                assert!(d.chars().all(|c| matches!(c, ' '..='~')));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(resp.status, 400);
        assert_common_headers(&resp);
        assert!(resp.body.contains("access_denied"));
        assert!(resp.body.contains("&lt;script&gt;") && !resp.body.contains("<script>"));
    }

    #[tokio::test]
    async fn right_state_without_code_or_error_ends_with_missing_code() {
        let (s, addr) = server().await;
        let target = format!("/callback?state={STATE}&code=");
        let (res, resp) = tokio::join!(s.wait_for_code(STATE, LONG), get(addr, &target));
        assert!(matches!(res, Err(LoopbackError::MissingCode)));
        assert_eq!(resp.status, 400);
    }

    #[tokio::test]
    async fn oversized_or_malformed_query_gets_400_and_wait_continues() {
        let (s, addr) = server().await;
        let client = async {
            let big = format!("{}&pad={}", good_callback(), "a".repeat(MAX_QUERY_LEN));
            for target in [
                big,
                format!("{}&x=%zz", good_callback()),
                format!("{}&x=%4", good_callback()),
                format!("{}&x=%FF%FE", good_callback()),
                format!("{}&state={STATE}", good_callback()),
                format!("{}&code=other", good_callback()),
            ] {
                let r = get(addr, &target).await;
                assert_eq!(r.status, 400, "{}", &target[..target.len().min(80)]);
                assert_common_headers(&r);
            }
            get(addr, good_callback()).await
        };
        let (res, last) = tokio::join!(s.wait_for_code(STATE, LONG), client);
        assert_eq!(res.unwrap().expose_secret(), CODE);
        assert_eq!(last.status, 200);
    }

    /// Seed of the random requests: fixed, so that a failure replays; `KOIDC_HOSTILE_SEED`
    /// (decimal or `0x` hex, as for the integration test of hostile requests) replays another.
    const DEFAULT_SEED: u64 = 0x6b6f_6964_6321;

    fn seed() -> u64 {
        let Ok(text) = std::env::var("KOIDC_HOSTILE_SEED") else {
            return DEFAULT_SEED;
        };
        let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => text.parse().ok(),
        };
        parsed.unwrap_or_else(|| panic!("KOIDC_HOSTILE_SEED={text:?} is neither a decimal nor a 0x-hex u64"))
    }

    /// What the server must do with a request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Expect {
        /// Answer with this status.
        Status(u16),
        /// Close the connection, unanswered, once the header read timeout has passed.
        ClosedUnanswered,
    }

    /// The status a request gets, worked out apart from the server: the HTTP layer answers 400
    /// to a request line it cannot parse (a method that is not a token, a target with a space
    /// or control byte or not UTF-8, a target `http::Uri` refuses); then a `Host` other than the listener's
    /// gets 400, another path 404, another method 405, and a callback without the login's
    /// state 400 (too long, malformed or wrong state alike).
    fn expected_status(method: &[u8], target: &[u8], host_ok: bool) -> u16 {
        let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
        let visible = |b: &u8| (0x21..=0x7e).contains(b) || *b >= 0x80;
        let request_line_ok = !method.is_empty()
            && method.iter().all(tchar)
            && !target.is_empty()
            && target.iter().all(visible)
            && std::str::from_utf8(target).is_ok();
        if !request_line_ok {
            return 400;
        }
        let Ok(uri) = axum::http::Uri::try_from(target) else {
            return 400;
        };
        if !host_ok {
            400
        } else if uri.path() != CALLBACK_PATH {
            404
        } else if method != b"GET" && method != b"HEAD" {
            405
        } else {
            400
        }
    }

    /// One random request that must not complete the login, and what the server must do with it.
    fn random_request(rng: &mut impl Rng, port: u16) -> (Vec<u8>, Expect) {
        const ALPHABET: &[u8] = b"abcxyz019%&=+;/?#._-~ statecodeerroriss";
        if rng.gen_ratio(1, 200) {
            // Only blank lines (CRLF or LF): the HTTP layer skips them and waits for a request
            // line. (A CR without its LF is a malformed request line: 400.)
            let req = (0..rng.gen_range(1..10))
                .flat_map(|_| if rng.r#gen() { &b"\r\n"[..] } else { &b"\n"[..] })
                .copied()
                .collect();
            return (req, Expect::ClosedUnanswered);
        }
        if rng.gen_ratio(2, 5) {
            // A plausible callback (right host and path, well-formed query) with wrong values:
            // the state is lowercase letters, the login's never is.
            let keys = ["state", "code", "error", "error_description", "iss", "x"];
            let mut pairs: Vec<String> = Vec::new();
            for key in keys {
                if rng.gen_bool(0.6) {
                    let len = rng.gen_range(0..40);
                    let value: String = (0..len).map(|_| char::from(rng.gen_range(b'a'..=b'z'))).collect();
                    pairs.push(format!("{key}={value}"));
                }
            }
            let req = format!(
                "GET /callback?{} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n",
                pairs.join("&")
            );
            return (req.into_bytes(), Expect::Status(400));
        }
        if rng.gen_ratio(1, 10) {
            // Garbage that starts with a byte no request line starts with (neither a token
            // character nor a blank line).
            let first = loop {
                let b: u8 = rng.r#gen();
                if !(b.is_ascii_graphic() || b == b'\r' || b == b'\n') {
                    break b;
                }
            };
            let mut req = vec![first];
            req.extend((0..rng.gen_range(0..300)).map(|_| rng.r#gen::<u8>()));
            req.extend_from_slice(b"\r\n\r\n");
            return (req, Expect::Status(400));
        }
        let methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "get", "G\0T"];
        let paths = ["/callback", "/", "/callback/", "//callback", "/cb", "*", ""];
        let method = methods[rng.gen_range(0..methods.len())].as_bytes();
        let mut target = paths[rng.gen_range(0..paths.len())].as_bytes().to_vec();
        target.push(b'?');
        target.extend((0..rng.gen_range(0..200)).map(|_| {
            if rng.gen_ratio(1, 20) {
                rng.r#gen::<u8>()
            } else {
                ALPHABET[rng.gen_range(0..ALPHABET.len())]
            }
        }));
        if rng.gen_ratio(1, 50) {
            target.extend(std::iter::repeat_n(b'q', MAX_QUERY_LEN + 10));
        }
        let (host, host_ok) = match rng.gen_range(0..4) {
            0 => (format!("127.0.0.1:{port}"), true),
            1 => ("evil.example".to_owned(), false),
            2 => (format!("[::1]:{port}"), false),
            _ => (String::new(), false),
        };
        let mut req = method.to_vec();
        req.push(b' ');
        req.extend_from_slice(&target);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        req.extend_from_slice(host.as_bytes());
        req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        // A target that ends early (at a space) leaves the rest for the version: still 400.
        (req, Expect::Status(expected_status(method, &target, host_ok)))
    }

    #[tokio::test]
    async fn thousand_random_requests_then_real_callback_succeeds() {
        let seed = seed();
        // A second is plenty for a request sent at once, and keeps the blank-line requests short.
        let (s, addr) = server().await;
        let s = s.with_header_read_timeout(Duration::from_secs(1));
        // One deadline for the whole run (client and server share this test's one thread, so a
        // loaded machine slows both), not one per request.
        let deadline = Instant::now() + Duration::from_secs(300);
        let client = async {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            for n in 0..1000 {
                let (req, expect) = random_request(&mut rng, addr.port());
                let shown = || {
                    let text = String::from_utf8_lossy(&req);
                    let cut: String = text.chars().take(300).collect();
                    format!(
                        "request {n} of seed {seed:#x} (KOIDC_HOSTILE_SEED={seed:#x} replays it), \
                         expected {expect:?}: {cut:?}{}",
                        if cut.len() < text.len() { "…" } else { "" }
                    )
                };
                let r = raw_until(addr, &req, deadline)
                    .await
                    .unwrap_or_else(|| panic!("no answer before the deadline to {}", shown()));
                match expect {
                    Expect::Status(status) => assert_eq!(r.status, status, "{}\n{}", shown(), r.head),
                    Expect::ClosedUnanswered => assert!(r.head.is_empty(), "{}\n{}", shown(), r.head),
                }
            }
            get(addr, good_callback()).await
        };
        let (res, last) = tokio::join!(s.wait_for_code(STATE, Duration::from_secs(300)), client);
        assert_eq!(res.unwrap().expose_secret(), CODE, "seed {seed:#x}");
        assert_eq!(last.status, 200, "seed {seed:#x}");
    }

    /// A keep-alive connection that made one (rejected) request, got its 404 and stays open.
    async fn kept_alive_after_a_404(addr: SocketAddr) -> TcpStream {
        let mut kept = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /favicon.ico HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
            addr.port()
        );
        kept.write_all(req.as_bytes()).await.unwrap();
        let mut buf = [0u8; 4096];
        let n = kept.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 404"));
        kept
    }

    #[tokio::test]
    async fn connections_sending_nothing_or_blank_lines_are_closed_and_the_login_still_works() {
        let (s, addr) = server().await;
        let s = s.with_header_read_timeout(Duration::from_millis(300));
        let client = async {
            let silent = TcpStream::connect(addr).await.unwrap();
            let mut blank = TcpStream::connect(addr).await.unwrap();
            blank.write_all(b"\r\n\n\r\n\r\n\n").await.unwrap();
            let mut half = TcpStream::connect(addr).await.unwrap();
            half.write_all(b"GET /callback?state=").await.unwrap();
            // A kept-alive connection idle after one (rejected) request.
            let kept = kept_alive_after_a_404(addr).await;
            for (what, mut conn) in [
                ("silent", silent),
                ("blank-line", blank),
                ("half-request", half),
                ("idle kept-alive", kept),
            ] {
                let mut rest = Vec::new();
                // The timeout is 300 ms; 15 s leaves a loaded machine room, and is still less
                // than the login's 20 s wait, which would close them too.
                let closed = tokio::time::timeout(Duration::from_secs(15), conn.read_to_end(&mut rest)).await;
                assert!(closed.is_ok(), "the {what} connection is still open");
                assert!(
                    rest.is_empty(),
                    "the {what} connection got {:?}",
                    String::from_utf8_lossy(&rest)
                );
            }
            get(addr, good_callback()).await
        };
        let (res, last) = tokio::join!(s.wait_for_code(STATE, LONG), client);
        assert_eq!(res.unwrap().expose_secret(), CODE);
        assert_eq!(last.status, 200);
    }

    #[tokio::test]
    async fn head_on_callback_answers_without_consuming_the_login() {
        let (s, addr) = server().await;
        let client = async {
            let req = format!(
                "HEAD {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                good_callback(),
                addr.port()
            );
            let r = raw(addr, req.as_bytes()).await;
            assert_eq!(r.status, 200);
            assert!(r.body.is_empty());
            assert_common_headers(&r);
            get(addr, good_callback()).await
        };
        let (res, last) = tokio::join!(s.wait_for_code(STATE, LONG), client);
        assert_eq!(res.unwrap().expose_secret(), CODE);
        assert!(last.body.contains("Logged in to koidc"));
    }

    #[tokio::test]
    async fn wait_ends_promptly_despite_idle_keep_alive_connections() {
        let (s, addr) = server().await;
        let start = Instant::now();
        let client = async {
            // A preconnected socket that never sends anything, and one stuck mid-request.
            let _silent = TcpStream::connect(addr).await.unwrap();
            let mut slow = TcpStream::connect(addr).await.unwrap();
            slow.write_all(b"GET /callback HTTP/1.1\r\nHost: 127.0.0.1")
                .await
                .unwrap();
            // A keep-alive connection that made one (rejected) request and stays open.
            let kept = kept_alive_after_a_404(addr).await;
            // The real callback, on a keep-alive connection too: its response must arrive.
            let mut real = TcpStream::connect(addr).await.unwrap();
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
                good_callback(),
                addr.port()
            );
            real.write_all(req.as_bytes()).await.unwrap();
            let mut resp = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), real.read_to_end(&mut resp)).await;
            (_silent, slow, kept, String::from_utf8_lossy(&resp).into_owned())
        };
        let (res, (_silent, _slow, _kept, resp)) = tokio::join!(s.wait_for_code(STATE, LONG), client);
        assert_eq!(res.unwrap().expose_secret(), CODE);
        assert!(resp.contains("Logged in to koidc"), "{resp}");
        // The grace period (1 s) and room for a loaded machine, but well under the header read
        // timeout (10 s) that would close the idle connections anyway: the wait did not wait
        // for them.
        assert!(
            start.elapsed() < SHUTDOWN_GRACE + Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn matching_or_absent_iss_is_accepted() {
        let iss = "https://idp.example/dex";
        let (s, addr) = server().await;
        let target = format!("{}&iss=https%3A%2F%2Fidp.example%2Fdex", good_callback());
        let (res, _) = tokio::join!(
            s.wait_for_code_with_issuer(STATE, Some(iss), LONG),
            get(addr, &target)
        );
        assert_eq!(res.unwrap().expose_secret(), CODE);

        let (s, addr) = server().await;
        let (res, _) = tokio::join!(
            s.wait_for_code_with_issuer(STATE, Some(iss), LONG),
            get(addr, good_callback())
        );
        assert_eq!(res.unwrap().expose_secret(), CODE);
    }

    #[tokio::test]
    async fn different_iss_ends_wait_with_issuer_mismatch() {
        let (s, addr) = server().await;
        let target = format!("{}&iss=https%3A%2F%2Fevil.example", good_callback());
        let (res, resp) = tokio::join!(
            s.wait_for_code_with_issuer(STATE, Some("https://idp.example"), LONG),
            get(addr, &target)
        );
        let err = res.unwrap_err();
        assert!(
            matches!(&err, LoopbackError::IssuerMismatch { got, .. } if got == "https://evil.example"),
            "{err:?}"
        );
        assert!(!err.to_string().contains(CODE));
        assert_eq!(resp.status, 400);
    }

    #[tokio::test]
    async fn missing_iss_is_an_error_when_required() {
        let (s, addr) = server().await;
        let s = s.with_iss_required(true);
        let (res, _) = tokio::join!(
            s.wait_for_code_with_issuer(STATE, Some("https://idp.example"), LONG),
            get(addr, good_callback())
        );
        assert!(matches!(res, Err(LoopbackError::MissingIssuer)));
    }

    #[tokio::test]
    async fn code_never_appears_in_debug_or_error_output() {
        let (s, addr) = server().await;
        assert!(!format!("{s:?}").contains(CODE));
        let (res, _) = tokio::join!(s.wait_for_code(STATE, LONG), get(addr, good_callback()));
        let shown = format!("{res:?}");
        assert!(!shown.contains(CODE), "{shown}");
        // An error ending a login with a code-bearing callback does not carry it either.
        let (s, addr) = server().await;
        let target = format!("{}&error=server_error", good_callback());
        let (res, _) = tokio::join!(s.wait_for_code(STATE, LONG), get(addr, &target));
        let err = res.unwrap_err();
        assert!(!format!("{err:?} {err}").contains(CODE));
    }

    #[tokio::test]
    async fn one_megabyte_query_is_refused_and_wait_continues() {
        let (s, addr) = server().await;
        let client = async {
            // A 1 MiB query (the genuine parameters first) is refused by the HTTP layer before
            // koidc's handler sees it: hyper's header buffer (about 400 KiB) overflows.
            let target = format!("{}&pad={}", good_callback(), "a".repeat(1 << 20));
            let r = get(addr, &target).await;
            assert_eq!(r.status, 431, "{}", r.head);
            // Just over koidc's own limit reaches the handler and gets its 400.
            let target = format!("{}&pad={}", good_callback(), "a".repeat(MAX_QUERY_LEN));
            let r = get(addr, &target).await;
            assert_eq!(r.status, 400);
            assert!(r.body.contains("the query is too long"), "{}", r.body);
            get(addr, good_callback()).await
        };
        let (res, last) = tokio::join!(s.wait_for_code(STATE, LONG), client);
        assert_eq!(res.unwrap().expose_secret(), CODE);
        assert_eq!(last.status, 200);
    }

    #[tokio::test]
    async fn slow_client_holding_a_connection_does_not_delay_the_timeout() {
        let (s, addr) = server().await;
        // Slowloris: connect, send half a request line, then one byte every 100 ms, never
        // finishing the headers.
        let slow = tokio::spawn(async move {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            conn.write_all(b"GET /callback?state=").await.unwrap();
            for _ in 0..100 {
                if conn.write_all(b"x").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let start = Instant::now();
        let err = s.wait_for_code(STATE, Duration::from_secs(1)).await.unwrap_err();
        let took = start.elapsed();
        assert!(
            matches!(err, LoopbackError::Timeout { secs: 1, rejected: 0 }),
            "{err:?}"
        );
        // The timeout plus at most the shutdown grace, and room for a loaded machine: never
        // the slow client's 10 s, nor the header read timeout (10 s).
        assert!(
            took < Duration::from_secs(1) + SHUTDOWN_GRACE + Duration::from_secs(4),
            "took {took:?}"
        );
        slow.abort();
    }

    fn shared(done: oneshot::Sender<Outcome>) -> Shared {
        Shared {
            addr: SocketAddr::from(([127, 0, 0, 1], 4000)),
            expected_state: STATE.to_owned(),
            expected_iss: None,
            iss_required: false,
            rejected: AtomicU64::new(0),
            done: Mutex::new(Some(done)),
        }
    }

    fn callback_headers() -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:4000"));
        h
    }

    #[test]
    fn second_callback_after_the_first_is_refused_and_changes_nothing() {
        let (tx, mut rx) = oneshot::channel();
        let shared = shared(tx);
        let first: axum::http::Uri = good_callback().parse().unwrap();
        let resp = respond(&shared, &Method::GET, &first, &callback_headers());
        assert_eq!(resp.status(), StatusCode::OK);
        // A second genuine-looking callback (same state, another code; or an IdP error) racing
        // the shutdown: refused with 400, and the outcome stays the first code.
        for second in [
            format!("/callback?code=other-code&state={STATE}"),
            format!("/callback?error=access_denied&state={STATE}"),
            good_callback(),
        ] {
            let uri: axum::http::Uri = second.parse().unwrap();
            let resp = respond(&shared, &Method::GET, &uri, &callback_headers());
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{second}");
        }
        let outcome = rx.try_recv().unwrap();
        assert_eq!(outcome.unwrap().expose_secret(), CODE);
        assert_eq!(shared.rejected.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn fuzz_entry_point_checks_real_and_hostile_queries() {
        for query in [
            "code=abc&state=fuzz-state",
            "code=abc&state=fuzz-state&iss=https%3A%2F%2Fidp.example",
            "code=abc&state=fuzz-state&iss=https%3A%2F%2Fevil.example",
            "state=fuzz-state",
            "error=%3Cscript%3E&error_description=%1B%5B31m&state=fuzz-state",
            "error=x&error_description=%3Cb%3E%22%27%26amp&state=fuzz-state",
            "code=abc&state=other",
            "code=abc&state=fuzz-state&state=fuzz-state",
            "%zz",
            "a b#c",
            "",
        ] {
            fuzz::callback_query(query);
        }
    }

    #[test]
    #[should_panic(expected = "markup or a control character on the page")]
    fn fuzz_page_check_refuses_unescaped_markup() {
        fuzz::check_page(page(StatusCode::BAD_REQUEST, "<script>", false));
    }
}
