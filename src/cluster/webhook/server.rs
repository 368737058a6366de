//! The webhook's HTTPS server: TLS (optionally requiring a client certificate), and the limits
//! that keep slow or half-open connections from locking the apiserver out.
//!
//! `axum::serve` runs hyper without a timer, so no header read timeout applies, and it has no
//! request timeout and no connection cap: a few dozen connections that never finish their TLS
//! handshake or their headers held every file descriptor. Here every connection is served by
//! hyper with a timer and is bounded at each step ([`Limits`]):
//!
//! - the TLS handshake must finish within [`HANDSHAKE_TIMEOUT`] (a client certificate signed by
//!   `--client-ca-file` is required during it, when given);
//! - a request's headers (and, on a kept-alive connection, the next request's) must arrive within
//!   [`HEADER_READ_TIMEOUT`];
//! - reading the body and answering must take at most [`REQUEST_TIMEOUT`] (then 408, or 503 when
//!   GitHub did not answer in time);
//! - at most [`Limits::max_connections`] connections are open (derived from the open-file limit,
//!   leaving room for the connections to GitHub). A new connection at the cap is never turned
//!   away while a slot can be freed: the source address holding the most connections that are
//!   not answering a request (an IPv4 address, an IPv6 /64) gives up its oldest connection that
//!   has not yet sent a complete request (handshake, headers or body pending), else its oldest
//!   idle kept-alive one; connections whose request is being answered are never closed. So slow
//!   or half-open connections, however many and however quickly reopened, only ever push out
//!   each other, and kube-apiserver's connections, from an address holding fewer, are not
//!   touched. An attacker at the apiserver's own address can still push out its connections
//!   while they handshake, once `cap` newer ones arrive within that time; `--client-ca-file`
//!   keeps such clients from ever getting past the handshake. Running out of file descriptors
//!   anyway (accept fails with EMFILE) frees a slot the same way instead of leaving new
//!   connections in the kernel's queue.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

use super::{MAX_REQUEST_BODY, Reviewer, WebhookError};

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request's headers may take to arrive (also the idle time of a kept-alive
/// connection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long reading a request's body and answering it may take. kube-apiserver gives up on a
/// webhook after 30 s; this answers before.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(25);

/// Connections served at most, whatever the open-file limit.
pub const MAX_CONNECTIONS: usize = 1024;

/// Raised to (when the hard limit allows): the soft open-file limit.
const WANTED_OPEN_FILES: u64 = 4096;

/// Bounds on the server; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at most.
    pub max_connections: usize,
    /// GitHub lookups run at once at most (each may hold two connections to GitHub).
    pub max_lookups: usize,
}

impl Limits {
    /// The limits for a process that may open `open_files` files: a reserve (half, at most 160)
    /// for the listener, the runtime and the connections to GitHub, the rest for clients.
    pub fn for_open_files(open_files: u64) -> Self {
        let open_files = usize::try_from(open_files).unwrap_or(usize::MAX);
        let reserve = (open_files / 2).min(160);
        Self {
            max_connections: open_files.saturating_sub(reserve).clamp(1, MAX_CONNECTIONS),
            max_lookups: (reserve / 4).clamp(1, 32),
        }
    }
}

/// Raises the soft open-file limit towards the hard one (at most to 4096) and returns it.
pub fn raise_open_files_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        let wanted = WANTED_OPEN_FILES.min(lim.rlim_max);
        if lim.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = wanted;
            }
        }
    }
    lim.rlim_cur
}

/// The rustls server configuration for the PEM certificate chain and private key files; with
/// `client_ca_file`, clients must present a certificate signed by one of its CAs.
pub fn tls_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
) -> Result<ServerConfig, WebhookError> {
    let tls_err = |what, path: &Path, reason: String| WebhookError::Tls {
        what,
        path: path.display().to_string(),
        reason,
    };
    let read_certs = |what, path: &Path| -> Result<Vec<CertificateDer<'static>>, WebhookError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| tls_err(what, path, e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| tls_err(what, path, e.to_string()))?;
        if certs.is_empty() {
            return Err(tls_err(what, path, "no PEM certificate found in it".into()));
        }
        Ok(certs)
    };
    let certs = read_certs("the TLS certificate file", cert_file)?;
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
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("the TLS certificate file", cert_file, e.to_string()))?;
    let builder = match client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            const WHAT: &str = "the --client-ca-file";
            let mut roots = RootCertStore::empty();
            for cert in read_certs(WHAT, ca_file)? {
                roots
                    .add(cert)
                    .map_err(|e| tls_err(WHAT, ca_file, format!("not a usable CA certificate ({e})")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls_err(WHAT, ca_file, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        tls_err(
            "the TLS private key file",
            key_file,
            format!("it does not match the certificate or is unusable ({e})"),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A connection's phase, for choosing whom to close at the cap.
const NEW: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;

/// One open connection.
#[derive(Debug)]
struct Conn {
    phase: AtomicU8,
    close: Notify,
}

/// Where connections come from, for sharing the slots: an IPv4 address, or an IPv6 /64 (one
/// host's usual allocation).
fn source_of(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// The open connections by source, oldest first within each.
#[derive(Debug, Default)]
struct Conns {
    by_source: HashMap<IpAddr, BTreeMap<u64, Arc<Conn>>>,
    len: usize,
}

impl Conns {
    /// Closes one connection to make room: from the source holding the most connections that
    /// are not answering a request, its oldest that has not sent a complete request, else its
    /// oldest idle one. False when every connection is answering a request.
    fn evict(&mut self) -> bool {
        let mut best: Option<(usize, IpAddr, u64)> = None;
        for (source, conns) in &self.by_source {
            let (mut count, mut first_new, mut first_idle) = (0, None, None);
            for (id, conn) in conns {
                match conn.phase.load(Ordering::SeqCst) {
                    NEW => {
                        count += 1;
                        first_new.get_or_insert(*id);
                    }
                    IDLE => {
                        count += 1;
                        first_idle.get_or_insert(*id);
                    }
                    _ => {}
                }
            }
            if let Some(victim) = first_new.or(first_idle)
                && best.is_none_or(|(most, _, _)| count > most)
            {
                best = Some((count, *source, victim));
            }
        }
        let Some((_, source, id)) = best else {
            return false;
        };
        if let Some(conn) = self.remove(source, id) {
            conn.close.notify_one();
        }
        true
    }

    fn remove(&mut self, source: IpAddr, id: u64) -> Option<Arc<Conn>> {
        let conns = self.by_source.get_mut(&source)?;
        let conn = conns.remove(&id)?;
        if conns.is_empty() {
            self.by_source.remove(&source);
        }
        self.len -= 1;
        Some(conn)
    }
}

/// The open connections.
#[derive(Debug, Default)]
struct Table {
    conns: Mutex<Conns>,
    next: AtomicU64,
}

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, Conns> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection from `peer`, making room at `cap`; `None` when there is none.
    fn admit(&self, peer: IpAddr, cap: usize) -> Option<(u64, Arc<Conn>)> {
        let mut conns = self.lock();
        while conns.len >= cap {
            if !conns.evict() {
                return None;
            }
        }
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let conn = Arc::new(Conn {
            phase: AtomicU8::new(NEW),
            close: Notify::new(),
        });
        conns
            .by_source
            .entry(source_of(peer))
            .or_default()
            .insert(id, conn.clone());
        conns.len += 1;
        Some((id, conn))
    }

    fn evict_one(&self) -> bool {
        self.lock().evict()
    }

    fn remove(&self, peer: IpAddr, id: u64) {
        self.lock().remove(source_of(peer), id);
    }

    #[cfg(test)]
    fn contains(&self, id: u64) -> bool {
        self.lock().by_source.values().any(|c| c.contains_key(&id))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len
    }
}

/// Removes the connection from the table when its task ends.
struct Registered {
    table: Arc<Table>,
    peer: IpAddr,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.table.remove(self.peer, self.id);
    }
}

/// The state of the routes: the reviewer and the connection the request came on.
#[derive(Clone)]
struct Routes {
    reviewer: Arc<Reviewer>,
    conn: Arc<Conn>,
}

/// Marks the connection busy while a request is answered.
struct BusyGuard(Arc<Conn>);

impl BusyGuard {
    fn new(conn: Arc<Conn>) -> Self {
        conn.phase.store(BUSY, Ordering::SeqCst);
        Self(conn)
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.phase.store(IDLE, Ordering::SeqCst);
    }
}

/// The HTTP routes: `POST /` and `POST /authenticate` (TokenReview), `GET /healthz`.
fn routes(reviewer: Arc<Reviewer>, conn: Arc<Conn>) -> Router {
    Router::new()
        .route("/", post(handle))
        .route("/authenticate", post(handle))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Routes { reviewer, conn })
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn handle(State(routes): State<Routes>, request: Request) -> Response {
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    let body = match tokio::time::timeout_at(
        deadline,
        axum::body::to_bytes(request.into_body(), MAX_REQUEST_BODY),
    )
    .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
        Err(_) => return StatusCode::REQUEST_TIMEOUT.into_response(),
    };
    // A complete request: from now on the connection is not closed to make room.
    let _busy = BusyGuard::new(routes.conn.clone());
    let (status, value) = match tokio::time::timeout_at(deadline, routes.reviewer.review(&body)).await {
        Ok(answer) => answer,
        Err(_) => routes.reviewer.timed_out(),
    };
    json_response(status, value.to_string())
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, WebhookError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| WebhookError::Bind { addr, error })
}

/// Serves TokenReviews over HTTPS on `listener` until the process ends, with at most
/// `max_connections` connections.
pub async fn serve(
    listener: TcpListener,
    tls: ServerConfig,
    reviewer: Arc<Reviewer>,
    max_connections: usize,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let table = Arc::new(Table::default());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                match err.raw_os_error() {
                    // A client that reset its connection before it was accepted: next.
                    Some(libc::ECONNABORTED | libc::ECONNRESET | libc::ECONNREFUSED | libc::EPROTO) => {}
                    Some(libc::EMFILE | libc::ENFILE) if table.evict_one() => {
                        // Let the closed connection's task release its descriptor.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
                continue;
            }
        };
        let peer = peer.ip();
        let Some((id, conn)) = table.admit(peer, max_connections) else {
            // Every connection is answering a request: this one is closed at once.
            drop(stream);
            continue;
        };
        let registered = Registered {
            table: table.clone(),
            peer,
            id,
        };
        tokio::spawn(connection(
            stream,
            acceptor.clone(),
            reviewer.clone(),
            conn,
            registered,
        ));
    }
}

/// One connection: handshake, then HTTP/1.1 with timeouts, until it ends or is closed to make
/// room.
async fn connection(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    reviewer: Arc<Reviewer>,
    conn: Arc<Conn>,
    registered: Registered,
) {
    let _registered = registered;
    let _ = stream.set_nodelay(true);
    let work = async {
        // A refused handshake is logged at -v only (anyone can cause one): the place to look when
        // the apiserver's client certificate is refused (e.g. an X.509 v1 certificate, which
        // rustls does not accept; make it with `extendedKeyUsage = clientAuth`).
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(err)) => {
                reviewer
                    .printer
                    .debug(format_args!("TLS handshake refused: {err}"));
                return;
            }
            Err(_) => {
                reviewer.printer.debug("TLS handshake did not finish in time");
                return;
            }
        };
        let service = TowerToHyperService::new(routes(reviewer, conn.clone()));
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_REQUEST_BODY)
            .keep_alive(true);
        let _ = http.serve_connection(TokioIo::new(tls), service).await;
    };
    tokio::select! {
        _ = conn.close.notified() => {}
        _ = work => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_leave_room_for_github_and_follow_the_open_file_limit() {
        assert_eq!(
            Limits::for_open_files(128),
            Limits {
                max_connections: 64,
                max_lookups: 16
            }
        );
        assert_eq!(Limits::for_open_files(1024).max_connections, 864);
        assert_eq!(Limits::for_open_files(1 << 20).max_connections, MAX_CONNECTIONS);
        assert_eq!(Limits::for_open_files(1 << 20).max_lookups, 32);
        assert!(Limits::for_open_files(0).max_connections >= 1);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn at_the_cap_the_oldest_waiting_connection_makes_room_never_a_busy_one() {
        let table = Table::default();
        let peer = ip("10.0.0.1");
        let (a, conn_a) = table.admit(peer, 3).unwrap();
        let (b, conn_b) = table.admit(peer, 3).unwrap();
        let (c, conn_c) = table.admit(peer, 3).unwrap();
        // a answers a request, b is idle after one: c (new) is closed first, then b.
        conn_a.phase.store(BUSY, Ordering::SeqCst);
        conn_b.phase.store(IDLE, Ordering::SeqCst);
        let (_, conn_d) = table.admit(peer, 3).unwrap();
        assert_eq!(table.len(), 3);
        assert!(!table.contains(c), "the new one was closed");
        let closed = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                tokio::time::timeout(Duration::from_millis(100), conn_c.close.notified())
                    .await
                    .is_ok()
            });
        assert!(closed, "the closed connection was told");
        conn_d.phase.store(BUSY, Ordering::SeqCst);
        let (e, _) = table.admit(peer, 3).unwrap();
        assert!(!table.contains(b), "then the idle one");
        assert!(table.contains(a), "the busy one stays");
        // Everyone busy: no room.
        for conns in table.lock().by_source.values() {
            for conn in conns.values() {
                conn.phase.store(BUSY, Ordering::SeqCst);
            }
        }
        assert!(table.admit(peer, 3).is_none());
        assert_eq!(table.len(), 3);
        table.remove(peer, e);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn the_source_holding_the_most_connections_gives_up_a_slot_not_the_apiserver() {
        let table = Table::default();
        let apiserver = ip("10.0.0.1");
        let (genuine, _) = table.admit(apiserver, 4).unwrap();
        for _ in 0..3 {
            table.admit(ip("192.0.2.66"), 4).unwrap();
        }
        // However many the attacker opens, the apiserver's waiting connection stays.
        for _ in 0..100 {
            table.admit(ip("192.0.2.66"), 4).unwrap();
            assert!(table.contains(genuine));
        }
        // A new apiserver connection at the cap takes an attacker's slot too.
        let (second, _) = table.admit(apiserver, 4).unwrap();
        assert!(table.contains(genuine) && table.contains(second));
        assert_eq!(table.len(), 4);
        // IPv6 hosts count per /64, v4-mapped addresses as IPv4.
        assert_eq!(
            source_of(ip("2001:db8:1:2:aaaa::1")),
            source_of(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(source_of(ip("2001:db8:1:2::1")), source_of(ip("2001:db8:1:3::1")));
        assert_eq!(source_of(ip("::ffff:10.0.0.1")), apiserver);
    }
}
