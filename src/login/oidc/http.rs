//! The HTTP side of talking to the identity provider: one reqwest client per discovery (no
//! redirects, a per-request timeout, extra trusted CAs) and the few request shapes koidc needs
//! (GET a JSON document, POST a form), sent by [`crate::http::send`] with bounded bodies; its
//! failures become [`OidcError`]s that name the URL and the fix, never a request or response body.

use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::client::OidcConfig;
use super::error::OidcError;
use crate::http::{ClientError, ExtraCas, HttpError, client_builder};
pub(crate) use crate::http::{Reply, display_url};
pub(crate) use crate::text::one_line;

/// The largest response body koidc reads from the identity provider (4 MiB).
pub(crate) const MAX_BODY: usize = 4 << 20;

/// Builds the HTTP client used for every request to the identity provider.
///
/// Redirects are never followed, each request (connect included) is bounded by
/// `cfg.http_timeout`, and the certificates in `cfg.extra_ca_files` and `cfg.extra_ca_data` are
/// trusted in addition to the system roots.
pub(crate) fn build_client(cfg: &OidcConfig) -> Result<reqwest::Client, OidcError> {
    client_with_headers(cfg, &reqwest::header::HeaderMap::new())
}

/// [`build_client`] sending the `--request-header` headers with every request: the client of
/// the provider's own requests (discovery, keys, tokens, device authorization, revocation).
pub(crate) fn build_provider_client(cfg: &OidcConfig) -> Result<reqwest::Client, OidcError> {
    client_with_headers(cfg, cfg.request.headers.map())
}

fn client_with_headers(
    cfg: &OidcConfig,
    headers: &reqwest::header::HeaderMap,
) -> Result<reqwest::Client, OidcError> {
    let cas = ExtraCas::load(&cfg.extra_ca_files, cfg.extra_ca_data.as_deref())?;
    cas.client(|| client_builder(cfg.http_timeout).default_headers(headers.clone()))
        .map_err(|err| match err {
            ClientError::Ca(err) => OidcError::Ca(err),
            ClientError::Build { reason } => OidcError::HttpClient(reason),
        })
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
    send(req, timeout).await
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
    send(req, timeout).await
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
    send(req, timeout).await
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

async fn send(req: reqwest::RequestBuilder, timeout: Duration) -> Result<Reply, OidcError> {
    crate::http::send(req, timeout, MAX_BODY).await.map_err(from_http)
}

/// The identity provider's words for a failed exchange: which server, and what to check.
fn from_http(err: HttpError) -> OidcError {
    match err {
        HttpError::Timeout { url, timeout, .. } => OidcError::Timeout { url, timeout },
        HttpError::PlainHttp { url, .. } => OidcError::PlainHttp { url },
        HttpError::UntrustedCertificate { url, .. } => OidcError::UntrustedCertificate { url },
        // `--issuer https://…` when the URL is the issuer's discovery document.
        HttpError::ServerSpeaksHttps { url, https } => OidcError::ServerSpeaksHttps {
            hint: match https.strip_suffix(super::DISCOVERY_SUFFIX) {
                Some(issuer) => format!("--issuer {issuer}"),
                None => https,
            },
            url,
        },
        HttpError::Unreachable { url, reason } => OidcError::Unreachable { url, reason },
        HttpError::Proxy(err) => OidcError::Proxy(err),
        err @ HttpError::TooLarge { .. } => OidcError::Malformed {
            url: err.url().to_owned(),
            reason: err.to_string(),
        },
    }
}
