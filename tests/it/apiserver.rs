//! A stand-in Kubernetes API endpoint for kubectl: an in-process HTTPS server on 127.0.0.1:0 with
//! a fresh CA and a server certificate for IP 127.0.0.1 (made with rcgen), which records every
//! request's `Authorization` header and answers `/api` (APIVersions) and `/version`. Requests
//! without a bearer token get 401, as a real apiserver with anonymous auth off would answer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::support::runtime;

/// One request the endpoint received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
}

type Shared = Arc<Mutex<Vec<ApiRequest>>>;

/// The running endpoint; stops when dropped.
pub struct ApiServer {
    addr: SocketAddr,
    ca_pem: String,
    requests: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl ApiServer {
    pub fn start() -> ApiServer {
        let (ca_pem, tls) = tls_config();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind api endpoint");
        std_listener
            .set_nonblocking(true)
            .expect("nonblocking api listener");
        let addr = std_listener.local_addr().expect("api endpoint address");
        let requests: Shared = Arc::default();
        let app = axum::Router::new().fallback(answer).with_state(requests.clone());
        let rt = runtime();
        let tcp = {
            let _guard = rt.enter();
            TcpListener::from_std(std_listener).expect("register api listener")
        };
        let listener = TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
        };
        let task = rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ApiServer {
            addr,
            ca_pem,
            requests,
            task,
        }
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA certificate (PEM) that signed the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// CA PEM and a rustls config serving a certificate for IP 127.0.0.1 signed by that CA (also
/// used by the stub IdP's https mode).
pub fn tls_config() -> (String, ServerConfig) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "koidc test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().expect("server key");
    let mut server_params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("server params");
    server_params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .expect("sign server cert");

    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .expect("TLS server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (ca_cert.pem(), config)
}

/// Accepts TCP connections and completes the TLS handshake before handing them to axum.
pub struct TlsListener {
    pub tcp: TcpListener,
    pub acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let handshake = self.acceptor.accept(stream);
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), handshake).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

const API_VERSIONS: &str = r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1:443"}]}"#;
const VERSION: &str = r#"{"major":"1","minor":"36","gitVersion":"v1.36.3","gitCommit":"0000000000000000000000000000000000000000","gitTreeState":"clean","buildDate":"2026-01-01T00:00:00Z","goVersion":"go1.26.0","compiler":"gc","platform":"linux/amd64"}"#;

async fn answer(State(requests): State<Shared>, request: Request) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let path = request.uri().path().to_string();
    requests.lock().unwrap().push(ApiRequest {
        method: request.method().to_string(),
        path: path.clone(),
        authorization: authorization.clone(),
    });
    let bearer = authorization
        .as_deref()
        .is_some_and(|a| a.starts_with("Bearer ") && a.len() > 7);
    if !bearer {
        return json(
            StatusCode::UNAUTHORIZED,
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#,
        );
    }
    match path.as_str() {
        "/api" | "/api/" => json(StatusCode::OK, API_VERSIONS),
        "/version" | "/version/" => json(StatusCode::OK, VERSION),
        _ => json(
            StatusCode::NOT_FOUND,
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"not found","reason":"NotFound","code":404}"#,
        ),
    }
}

fn json(status: StatusCode, body: &'static str) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("static response")
}
