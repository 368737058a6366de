//! A counting HTTP proxy in front of Dex: Dex's `issuer` is this proxy's URL, so every request
//! koidc and the fake browser make to the IdP passes here. It forwards each request verbatim
//! (method, path, query, headers, body; redirects are passed back, never followed) and records
//! it, so tests can assert "Dex saw no request" or "exactly one refresh_token grant". It also
//! collects the secrets on the wire (codes, verifiers, tokens) for the leak checks.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use crate::support::{Secrets, runtime};

/// One request the proxy forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// `grant_type` of a `POST .../token` form.
    pub grant_type: Option<String>,
}

#[derive(Default)]
struct Log {
    upstream: Option<String>,
    seen: Vec<Seen>,
    secrets: Secrets,
}

type Shared = Arc<Mutex<Log>>;

/// The running proxy; stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    log: Shared,
    task: tokio::task::JoinHandle<()>,
}

/// Hop-by-hop headers (RFC 9110 7.6.1) and lengths the HTTP stacks recompute.
const SKIP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::CONTENT_LENGTH,
];

impl Proxy {
    /// Binds 127.0.0.1:0 and starts serving; requests fail with 502 until [`Proxy::set_upstream`].
    pub fn start() -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener
            .set_nonblocking(true)
            .expect("nonblocking proxy listener");
        let addr = listener.local_addr().expect("proxy address");
        let log: Shared = Arc::default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("build proxy client");
        let app = axum::Router::new()
            .fallback(forward)
            .with_state((log.clone(), client));
        let rt = runtime();
        let listener = {
            let _guard = rt.enter();
            tokio::net::TcpListener::from_std(listener).expect("register proxy listener")
        };
        let task = rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy { addr, log, task }
    }

    /// Where to forward to, e.g. `http://127.0.0.1:5556`.
    pub fn set_upstream(&self, base: &str) {
        self.log.lock().unwrap().upstream = Some(base.trim_end_matches('/').to_string());
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything forwarded so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().seen.clone()
    }

    /// A position in the log, for [`Proxy::since`].
    pub fn mark(&self) -> usize {
        self.log.lock().unwrap().seen.len()
    }

    /// Requests forwarded after `mark`.
    pub fn since(&self, mark: usize) -> Vec<Seen> {
        self.log.lock().unwrap().seen[mark..].to_vec()
    }

    /// The `grant_type`s of token requests after `mark`, in order.
    pub fn grants_since(&self, mark: usize) -> Vec<String> {
        self.since(mark)
            .into_iter()
            .filter_map(|s| s.grant_type)
            .collect()
    }

    /// Requests after `mark` other than GETs (what a logout without revocation must not send).
    pub fn non_gets_since(&self, mark: usize) -> Vec<Seen> {
        self.since(mark)
            .into_iter()
            .filter(|s| s.method != "GET")
            .collect()
    }

    /// Secrets seen on the wire so far.
    pub fn secrets(&self) -> Secrets {
        self.log.lock().unwrap().secrets.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State((log, client)): State<(Shared, reqwest::Client)>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let path = parts.uri.path().to_string();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or(path.clone());
    let is_token = parts.method == axum::http::Method::POST && path.ends_with("/token");

    let upstream = {
        let mut log = log.lock().unwrap();
        let mut grant_type = None;
        if is_token {
            for (k, v) in url::form_urlencoded::parse(&body) {
                match &*k {
                    "grant_type" => grant_type = Some(v.into_owned()),
                    "code" | "code_verifier" | "refresh_token" | "client_secret" | "device_code" => {
                        log.secrets.other.insert(v.into_owned());
                    }
                    _ => {}
                }
            }
        }
        log.seen.push(Seen {
            method: parts.method.to_string(),
            path: path.clone(),
            grant_type,
        });
        log.upstream.clone()
    };
    let Some(upstream) = upstream else {
        return plain(StatusCode::BAD_GATEWAY, "proxy has no upstream yet");
    };

    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if !SKIP.contains(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let sent = client
        .request(parts.method.clone(), format!("{upstream}{path_and_query}"))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(e) => {
            return plain(StatusCode::BAD_GATEWAY, &format!("proxy: upstream failed: {e}"));
        }
    };
    let status = answer.status();
    let answer_headers = answer.headers().clone();
    let answer_body: Bytes = answer.bytes().await.unwrap_or_default();

    {
        let mut log = log.lock().unwrap();
        let location = answer_headers.get(header::LOCATION).and_then(|l| l.to_str().ok());
        if let Some(url) = location.and_then(|l| url::Url::parse(l).ok()) {
            for (k, v) in url.query_pairs() {
                if k == "code" {
                    log.secrets.other.insert(v.into_owned());
                }
            }
        }
        let json = (is_token && !answer_headers.contains_key(header::CONTENT_ENCODING))
            .then(|| serde_json::from_slice::<Value>(&answer_body).ok())
            .flatten();
        if let Some(json) = json {
            if let Some(t) = json["id_token"].as_str() {
                log.secrets.id_tokens.insert(t.to_string());
            }
            for field in ["access_token", "refresh_token"] {
                if let Some(t) = json[field].as_str() {
                    log.secrets.other.insert(t.to_string());
                }
            }
        }
    }

    let mut response = Response::builder().status(status);
    for (name, value) in &answer_headers {
        if !SKIP.contains(name) {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from(answer_body))
        .unwrap_or_else(|_| plain(StatusCode::BAD_GATEWAY, "proxy: bad upstream response"))
}

fn plain(status: StatusCode, text: &str) -> Response {
    let mut response = Response::new(Body::from(text.to_string()));
    *response.status_mut() = status;
    response
}
