//! One HTTP exchange as every adapter makes it: send the request, read a bounded body, and say
//! what went wrong in one failure type, [`HttpError`]. Which transport error means what (a
//! timeout, a plain-HTTP answer to TLS, an untrusted certificate, an HTTPS server asked in plain
//! HTTP, anything else) is decided here, once; the adapters (the identity provider, GitHub, the
//! apiserver) map the classes onto their own errors, which name the server and the fix.

use std::time::Duration;

use reqwest::StatusCode;
use url::Url;

use super::proxy::{self, ProxyError};
use super::root_cause;

/// A response read completely: status, `Location` and a bounded body.
pub struct Reply {
    /// The status code.
    pub status: StatusCode,
    /// The `Location` header, when present and readable (redirects are never followed).
    pub location: Option<String>,
    /// The body, at most the limit given to [`send`].
    pub body: Vec<u8>,
}

/// Shows the body's length only: a token response's body holds tokens.
impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("location", &self.location.as_ref().map(|_| "<redacted>"))
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Why an HTTP exchange failed. `url` is the request's URL without query or fragment (a query
/// may hold a code or a state); `reason` the innermost cause on one line. No variant holds a
/// request or response body.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No answer within the per-request timeout.
    #[error("{url} did not answer within {}s", .timeout.as_secs())]
    Timeout {
        /// The URL requested.
        url: String,
        /// The per-request timeout.
        timeout: Duration,
        /// The innermost cause.
        reason: String,
    },
    /// An https request was answered in plain HTTP: the port serves http, not TLS.
    #[error("the server at {url} answered plain HTTP, not HTTPS")]
    PlainHttp {
        /// The URL requested.
        url: String,
        /// The innermost cause (the TLS library's).
        reason: String,
    },
    /// The server's certificate chains to no trusted CA (a private CA).
    #[error("the certificate of {url} is not signed by a trusted CA")]
    UntrustedCertificate {
        /// The URL requested.
        url: String,
        /// The innermost cause (the TLS library's).
        reason: String,
    },
    /// An http:// request was answered by a server that speaks HTTPS on that port: a TLS record
    /// where an HTTP response was expected, or Go's HTTP 400 "Client sent an HTTP request to an
    /// HTTPS server".
    #[error("the server at {url} speaks HTTPS, not plain HTTP: use {https}")]
    ServerSpeaksHttps {
        /// The URL requested.
        url: String,
        /// The same URL with https://.
        https: String,
    },
    /// The connection failed otherwise (refused, DNS, reset, another TLS failure...).
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The URL requested.
        url: String,
        /// The innermost cause.
        reason: String,
    },
    /// The request went through a proxy that failed it, or a proxy variable is unusable.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// The body is larger than the limit.
    #[error("the response is larger than {}", size(*.max))]
    TooLarge {
        /// The URL requested.
        url: String,
        /// The limit, in bytes.
        max: usize,
    },
}

impl HttpError {
    /// The URL requested, without query or fragment.
    pub fn url(&self) -> &str {
        match self {
            Self::Timeout { url, .. }
            | Self::PlainHttp { url, .. }
            | Self::UntrustedCertificate { url, .. }
            | Self::ServerSpeaksHttps { url, .. }
            | Self::Unreachable { url, .. }
            | Self::TooLarge { url, .. } => url,
            Self::Proxy(
                ProxyError::Unreachable { url, .. }
                | ProxyError::Login { url, .. }
                | ProxyError::LoginRefused { url, .. }
                | ProxyError::Refused { url, .. }
                | ProxyError::Unusable { url, .. },
            ) => url,
        }
    }

    /// Why the exchange failed, for an adapter that words every transport failure as "cannot
    /// reach …: REASON": the innermost cause, or this error's own words where it has none.
    pub fn reason(&self) -> String {
        match self {
            Self::Timeout { reason, .. }
            | Self::PlainHttp { reason, .. }
            | Self::UntrustedCertificate { reason, .. }
            | Self::Unreachable { reason, .. } => reason.clone(),
            Self::ServerSpeaksHttps { .. } | Self::TooLarge { .. } | Self::Proxy(_) => self.to_string(),
        }
    }
}

/// `max` bytes in the largest binary unit that divides it (`4 MiB`, `512 KiB`, `100 bytes`).
fn size(max: usize) -> String {
    match max {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// Sends `req` and reads at most `max_body` bytes of the answer; `timeout` is the one the client
/// was built with, for [`HttpError::Timeout`]. Any status is a [`Reply`] but Go's answer to plain
/// HTTP on its TLS port, which is [`HttpError::ServerSpeaksHttps`].
pub async fn send(
    req: reqwest::RequestBuilder,
    timeout: Duration,
    max_body: usize,
) -> Result<Reply, HttpError> {
    let (client, req) = req.build_split();
    let req = req.map_err(|e| HttpError::Unreachable {
        url: String::new(),
        reason: root_cause(&e),
    })?;
    let url = req.url().clone();
    if let Some((variable, flaw)) = proxy::unusable_variable(&url) {
        return Err(ProxyError::Unusable {
            url: display_url(&url),
            variable,
            flaw,
        }
        .into());
    }
    let mut resp = client
        .execute(req)
        .await
        .map_err(|e| classify(&e, &url, timeout))?;
    let status = resp.status();
    if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED
        && let Some(route) = proxy::route(&url)
    {
        return Err(ProxyError::Login {
            url: display_url(&url),
            route,
        }
        .into());
    }
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_body(&mut resp, max_body).await.map_err(|e| match e {
        Some(e) => classify(&e, &url, timeout),
        None => HttpError::TooLarge {
            url: display_url(&url),
            max: max_body,
        },
    })?;
    if status == StatusCode::BAD_REQUEST && url.scheme() == "http" && answered_https_only(&body) {
        return Err(server_speaks_https(&url));
    }
    // Some proxies (tinyproxy) refuse a wrong login with 401, not 407. A server koidc asks
    // answers 401 in JSON (an OAuth error, RFC 6749 5.2); anything else, to a request that
    // carried a proxy login, is the proxy's.
    if status == StatusCode::UNAUTHORIZED
        && serde_json::from_slice::<serde_json::Value>(&body).is_err()
        && let Some(route) = proxy::route(&url).filter(|r| r.credentials)
    {
        return Err(ProxyError::LoginRefused {
            url: display_url(&url),
            route,
        }
        .into());
    }
    Ok(Reply {
        status,
        location,
        body,
    })
}

/// Reads the body of `resp`, refusing more than `max` bytes (the error `None`): up front when
/// `Content-Length` says so, else as soon as the chunks read exceed it.
async fn read_body(resp: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, Option<reqwest::Error>> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Some)? {
        if body.len() + chunk.len() > max {
            return Err(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Whether a 400 body is a Go server's answer to plain HTTP on its TLS port.
fn answered_https_only(body: &[u8]) -> bool {
    const GO: &[u8] = b"Client sent an HTTP request to an HTTPS server";
    body.windows(GO.len()).any(|w| w == GO)
}

fn server_speaks_https(url: &Url) -> HttpError {
    let mut https = url.clone();
    let _ = https.set_scheme("https");
    HttpError::ServerSpeaksHttps {
        url: display_url(url),
        https: display_url(&https),
    }
}

/// The class of a transport error for `url`.
fn classify(err: &reqwest::Error, url: &Url, timeout: Duration) -> HttpError {
    let reason = root_cause(err);
    if err.is_timeout() {
        return HttpError::Timeout {
            url: display_url(url),
            timeout,
            reason,
        };
    }
    // A failed connection of a request that goes through a proxy failed at the proxy, or on
    // the way there, unless the TLS handshake (through the tunnel) is what failed.
    let routed = err.is_connect().then(|| proxy::route(url)).flatten();
    match (tls_failure(err), routed) {
        (Some(TlsFailure::PlainHttp), _) => HttpError::PlainHttp {
            url: display_url(url),
            reason,
        },
        (Some(TlsFailure::UnknownIssuer), _) => HttpError::UntrustedCertificate {
            url: display_url(url),
            reason,
        },
        (None, Some(route)) => {
            let url = display_url(url);
            if tunnel_refused(err) {
                ProxyError::Refused { url, route, reason }.into()
            } else {
                ProxyError::Unreachable { url, route, reason }.into()
            }
        }
        // A TLS record where an HTTP response was expected (an alert, a handshake).
        (None, None) if url.scheme() == "http" && reason.contains("invalid HTTP version") => {
            server_speaks_https(url)
        }
        (None, None) => HttpError::Unreachable {
            url: display_url(url),
            reason,
        },
    }
}

/// Whether a failed connection through a proxy failed at the proxy's answer to `CONNECT` (a
/// status other than 200: a login it wants, a port it refuses), not on the way to the proxy.
/// hyper-util's tunnel says `tunnel error: …`; its "failed to create underlying connection" is
/// the proxy out of reach.
fn tunnel_refused(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e.to_string().to_ascii_lowercase();
        if text.contains("tunnel error") {
            return !text.contains("underlying connection");
        }
        cur = e.source();
    }
    false
}

/// TLS failures worth explaining in the user's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsFailure {
    /// The server answered the TLS handshake with something that is not TLS (plain HTTP).
    PlainHttp,
    /// The server's certificate chains to no trusted root (a private CA).
    UnknownIssuer,
}

/// The TLS failure behind `err`, found by walking its causes down to the TLS library's error.
fn tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    use tokio_rustls::rustls::{CertificateError, Error as TlsError, InvalidMessage};
    let mut cur = Some(err);
    while let Some(e) = cur {
        match e.downcast_ref::<TlsError>() {
            Some(TlsError::InvalidMessage(InvalidMessage::InvalidContentType)) => {
                return Some(TlsFailure::PlainHttp);
            }
            Some(TlsError::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                return Some(TlsFailure::UnknownIssuer);
            }
            _ => {}
        }
        // An `io::Error` hides its inner error from `source()`: look through it.
        cur = match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner),
            None => e.source(),
        };
    }
    None
}

/// The URL without query or fragment, for messages.
pub fn display_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_named_in_the_largest_unit_that_divides_them() {
        assert_eq!(size(4 << 20), "4 MiB");
        assert_eq!(size(1 << 20), "1 MiB");
        assert_eq!(size(16 << 20), "16 MiB");
        assert_eq!(size(512 << 10), "512 KiB");
        assert_eq!(size(1000), "1000 bytes");
    }

    #[test]
    fn urls_in_messages_lose_their_query_and_fragment() {
        let url = Url::parse("https://idp.example/token?code=secret#frag").unwrap();
        assert_eq!(display_url(&url), "https://idp.example/token");
    }

    #[test]
    fn a_go_servers_answer_to_plain_http_is_told_apart_from_other_400s() {
        assert!(answered_https_only(
            b"Client sent an HTTP request to an HTTPS server.\n"
        ));
        assert!(!answered_https_only(b"{\"error\":\"invalid_request\"}"));
        let err = server_speaks_https(&Url::parse("http://127.0.0.1:8443/x?y=1").unwrap());
        assert_eq!(
            err.to_string(),
            "the server at http://127.0.0.1:8443/x speaks HTTPS, not plain HTTP: use https://127.0.0.1:8443/x"
        );
    }

    async fn one_answer(response: &'static [u8]) -> Url {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let _ = conn.write_all(response).await;
            let _ = conn.shutdown().await;
        });
        Url::parse(&format!("http://{addr}/doc?code=c")).unwrap()
    }

    fn client() -> reqwest::Client {
        super::super::client_builder(Duration::from_secs(5))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_and_one_within_it_read() {
        let url = one_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
        let reply = send(client().get(url), Duration::from_secs(5), 5).await.unwrap();
        assert_eq!(
            (reply.status, reply.body.as_slice()),
            (StatusCode::OK, &b"hello"[..])
        );
        let url = one_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
        let err = send(client().get(url.clone()), Duration::from_secs(5), 4)
            .await
            .unwrap_err();
        assert!(matches!(&err, HttpError::TooLarge { max: 4, .. }), "{err:?}");
        assert_eq!(err.url(), display_url(&url));
    }

    #[tokio::test]
    async fn an_http_request_to_a_go_tls_port_is_told_to_use_https() {
        let url =
            one_answer(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
                .await;
        let err = send(client().get(url), Duration::from_secs(5), 1024)
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::ServerSpeaksHttps { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_unreachable_with_the_reason_and_no_query() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = Url::parse(&format!("http://{addr}/x?state=s")).unwrap();
        let err = send(client().get(url), Duration::from_secs(5), 1024)
            .await
            .unwrap_err();
        match &err {
            HttpError::Unreachable { url, reason } => {
                assert_eq!(*url, format!("http://{addr}/x"));
                assert!(!reason.is_empty());
                assert_eq!(err.reason(), *reason);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn no_answer_in_time_is_a_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/slow", listener.local_addr().unwrap())).unwrap();
        let keep = tokio::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(conn);
        });
        let short = Duration::from_millis(300);
        let client = super::super::client_builder(short).build().unwrap();
        let err = send(client.get(url), short, 1024).await.unwrap_err();
        assert!(matches!(err, HttpError::Timeout { .. }), "{err:?}");
        keep.abort();
    }
}
