//! The HTTP side of talking to the identity provider: one reqwest client per discovery (no
//! redirects, a per-request timeout, extra trusted CAs) and the few request shapes koidc needs
//! (GET a JSON document, POST a form), with bounded bodies and errors that name the URL but never
//! a request or response body.

use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::{OidcConfig, OidcError};
use crate::http::{BodyError, ClientError, ExtraCas, client_builder, read_body};
pub(crate) use crate::http::root_cause;
pub(crate) use crate::text::one_line;

/// The largest response body koidc reads from the identity provider (4 MiB).
pub(crate) const MAX_BODY: usize = 4 << 20;

/// Builds the HTTP client used for every request to the identity provider.
///
/// Redirects are never followed, each request (connect included) is bounded by
/// `cfg.http_timeout`, and the certificates in `cfg.extra_ca_files` and `cfg.extra_ca_data` are
/// trusted in addition to the system roots.
pub(crate) fn build_client(cfg: &OidcConfig) -> Result<reqwest::Client, OidcError> {
    let cas = ExtraCas::load(&cfg.extra_ca_files, cfg.extra_ca_data.as_deref())?;
    cas.client(|| client_builder(cfg.http_timeout))
        .map_err(|err| match err {
            ClientError::Ca(err) => OidcError::Ca(err),
            ClientError::Build { reason } => OidcError::HttpClient(reason),
        })
}

/// A response koidc has read completely (status and a bounded body).
pub(crate) struct Reply {
    pub status: StatusCode,
    /// The `Location` header, when present and readable (redirects are never followed).
    pub location: Option<String>,
    pub body: Vec<u8>,
}

/// How the client authenticates at the token and revocation endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    /// Public client: `client_id` in the form body, no secret.
    None,
    /// `client_secret_basic`: HTTP Basic with the form-urlencoded id and secret (RFC 6749 2.3.1).
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    Post,
}

/// GETs `url` asking for JSON.
pub(crate) async fn get(http: &reqwest::Client, url: &Url, timeout: Duration) -> Result<Reply, OidcError> {
    let req = http
        .get(url.clone())
        .header(ACCEPT, HeaderValue::from_static("application/json"));
    send(req, url, timeout).await
}

/// GETs `url` as a browser would ask for a page (HTML), without following redirects.
pub(crate) async fn get_page(
    http: &reqwest::Client,
    url: &Url,
    timeout: Duration,
) -> Result<Reply, OidcError> {
    let req = http
        .get(url.clone())
        .header(ACCEPT, HeaderValue::from_static("text/html"));
    send(req, url, timeout).await
}

/// The client's identity at the token and revocation endpoints.
pub(crate) struct ClientCredentials<'a> {
    /// How to send them.
    pub auth: ClientAuth,
    /// The client id.
    pub id: &'a str,
    /// The client secret, for confidential clients.
    pub secret: Option<&'a SecretString>,
}

/// POSTs a form to `url`, authenticating the client as `client.auth` says.
pub(crate) async fn post_form(
    http: &reqwest::Client,
    url: &Url,
    timeout: Duration,
    params: &[(&str, &str)],
    client: &ClientCredentials<'_>,
) -> Result<Reply, OidcError> {
    let req = form_request(http, url, params, client)?;
    send(req, url, timeout).await
}

fn form_request(
    http: &reqwest::Client,
    url: &Url,
    params: &[(&str, &str)],
    client: &ClientCredentials<'_>,
) -> Result<reqwest::RequestBuilder, OidcError> {
    let (auth, client_id, client_secret) = (client.auth, client.id, client.secret);
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.extend_pairs(params.iter().copied());
    let mut req = http
        .post(url.clone())
        .header(ACCEPT, HeaderValue::from_static("application/json"))
        .header(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
    match (auth, client_secret) {
        (ClientAuth::Basic, Some(secret)) => {
            let id: String = url::form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
            let pw: String =
                url::form_urlencoded::byte_serialize(secret.expose_secret().as_bytes()).collect();
            let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{pw}"));
            let mut value = HeaderValue::from_str(&format!("Basic {b64}"))
                .map_err(|_| OidcError::HttpClient("cannot encode the client credentials".into()))?;
            value.set_sensitive(true);
            req = req.header(AUTHORIZATION, value);
        }
        (ClientAuth::Post, Some(secret)) => {
            form.append_pair("client_id", client_id);
            form.append_pair("client_secret", secret.expose_secret());
        }
        _ => {
            form.append_pair("client_id", client_id);
        }
    }
    Ok(req.body(form.finish()))
}

async fn send(req: reqwest::RequestBuilder, url: &Url, timeout: Duration) -> Result<Reply, OidcError> {
    let mut resp = req.send().await.map_err(|e| transport_error(&e, url, timeout))?;
    let status = resp.status();
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_body(&mut resp, MAX_BODY).await.map_err(|err| match err {
        BodyError::TooLarge { .. } => OidcError::Malformed {
            url: display_url(url),
            reason: format!("the response is larger than {} MiB", MAX_BODY >> 20),
        },
        BodyError::Transport(e) => transport_error(&e, url, timeout),
    })?;
    if status == StatusCode::BAD_REQUEST && url.scheme() == "http" && answered_https_only(&body) {
        return Err(server_speaks_https(url));
    }
    Ok(Reply {
        status,
        location,
        body,
    })
}

/// Whether a 400 body is a Go server's answer to plain HTTP on its TLS port.
fn answered_https_only(body: &[u8]) -> bool {
    const GO: &[u8] = b"Client sent an HTTP request to an HTTPS server";
    body.windows(GO.len()).any(|w| w == GO)
}

/// [`OidcError::ServerSpeaksHttps`] for the http:// `url`, with the https:// address to use
/// (`--issuer https://…` when `url` is the issuer's discovery document).
fn server_speaks_https(url: &Url) -> OidcError {
    let mut https = url.clone();
    let _ = https.set_scheme("https");
    let https = display_url(&https);
    let hint = match https.strip_suffix(super::DISCOVERY_SUFFIX) {
        Some(issuer) => format!("--issuer {issuer}"),
        None => https,
    };
    OidcError::ServerSpeaksHttps {
        url: display_url(url),
        hint,
    }
}

fn transport_error(err: &reqwest::Error, url: &Url, timeout: Duration) -> OidcError {
    if err.is_timeout() {
        return OidcError::Timeout {
            url: display_url(url),
            timeout,
        };
    }
    match tls_failure(err) {
        Some(TlsFailure::PlainHttp) => OidcError::PlainHttp {
            url: display_url(url),
        },
        Some(TlsFailure::UnknownIssuer) => OidcError::UntrustedCertificate {
            url: display_url(url),
        },
        // A TLS record where an HTTP response was expected (an alert, a handshake).
        None if url.scheme() == "http" && root_cause(err).contains("invalid HTTP version") => {
            server_speaks_https(url)
        }
        None => OidcError::Unreachable {
            url: display_url(url),
            reason: root_cause(err),
        },
    }
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
pub(crate) fn display_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}
