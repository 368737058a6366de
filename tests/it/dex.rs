//! A real Dex (the pinned binary from `tests/e2e/deps.sh`, found through `KOIDC_E2E_DEX`) started
//! per test with a generated config in the test's temp dir: memory storage, no approval screen,
//! the password DB with one static user who has groups, the `mock` callback connector, a public
//! client `koidc` without redirect URIs (any loopback port), and a configurable ID token lifetime.
//! Its `issuer` is the counting proxy's URL while it listens on another loopback port.
//!
//! [`DexOptions::connectors`] adds connectors (e.g. an `oidc` connector for token exchange).
//!
//! [`Dex::start_https`] starts the same Dex serving HTTPS itself (no proxy) with a test CA's
//! certificate and extra password-DB users, for the real kube-apiserver (which only trusts an
//! https issuer): its issuer is `https://127.0.0.1:PORT/dex`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::e2e_binary;

/// The public client koidc uses.
pub const CLIENT_ID: &str = "koidc";

/// The static password-DB user (connector `local`).
pub const USER_EMAIL: &str = "alice@example.com";
pub const USER_PASSWORD: &str = "password";
pub const USER_GROUPS: [&str; 2] = ["developers", "ops"];
/// bcrypt (cost 10) of "password" (the hash from Dex's own example config).
const USER_HASH: &str = "$2a$10$2b2cU8CPhOTaGrs1HRQuAueS7JTT5ZHsHSzYiFPm1leZck7Mc8T4W";

/// The identity the `mock` connector always returns.
pub const MOCK_EMAIL: &str = "kilgore@kilgore.trout";

/// Per-test Dex settings.
#[derive(Debug, Clone)]
pub struct DexOptions {
    /// `expiry.idTokens`, e.g. `"95s"`.
    pub id_token_lifetime: String,
    /// Connectors added after `mock` (Dex's `connectors` entries as JSON).
    pub connectors: Vec<Value>,
    /// Clusters' clients (confidential, never used to log in) that list koidc's client in
    /// `trustedPeers`: koidc may ask for tokens whose `aud` names them (cross-client trust).
    pub cluster_clients: Vec<String>,
}

impl Default for DexOptions {
    fn default() -> Self {
        DexOptions {
            id_token_lifetime: "1h".into(),
            connectors: Vec::new(),
            cluster_clients: Vec::new(),
        }
    }
}

/// One extra password-DB user (connector `local`) of an HTTPS Dex.
#[derive(Debug, Clone)]
pub struct StaticUser {
    pub email: String,
    pub username: String,
    pub user_id: String,
    /// bcrypt hash of the password.
    pub hash: String,
    pub groups: Vec<String>,
}

/// How an HTTPS Dex serves TLS, and who can log in besides [`USER_EMAIL`].
#[derive(Debug, Clone)]
pub struct DexHttps {
    /// PEM certificate (for IP 127.0.0.1) and its PEM private key.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The CA (PEM) that signed `cert_file`, to check readiness over TLS.
    pub ca_pem: String,
    pub users: Vec<StaticUser>,
}

/// A running Dex; killed when dropped.
pub struct Dex {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    /// `http` or `https`.
    scheme: &'static str,
    issuer: String,
}

impl Dex {
    /// Starts Dex with `issuer` (the proxy's URL plus `/dex`), config and log in `dir`, and waits
    /// until discovery answers on its own address.
    pub fn start(dir: &Path, issuer: &str, options: &DexOptions) -> Dex {
        let issuer_path = url::Url::parse(issuer)
            .expect("issuer is a URL")
            .path()
            .to_string();
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            issuer_path.trim_end_matches('/')
        );
        launch(
            dir,
            "http",
            |addr| (issuer.to_string(), config_json(issuer, addr, options)),
            |addr| http_get_ok(addr, &discovery),
            false,
        )
    }

    /// Starts Dex serving HTTPS on its own loopback port with issuer `https://127.0.0.1:PORT/dex`
    /// (config and log in `dir`), the users of [`Dex::start`] plus `https.users`, and waits until
    /// discovery answers over TLS trusting `https.ca_pem`. Dex gets SIGKILL when the thread that
    /// started it ends.
    pub fn start_https(dir: &Path, https: &DexHttps, options: &DexOptions) -> Dex {
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(https.ca_pem.as_bytes()).expect("CA PEM"))
            .timeout(Duration::from_secs(2))
            .build()
            .expect("build an HTTPS client");
        launch(
            dir,
            "https",
            |addr| {
                let issuer = format!("https://{addr}/dex");
                let mut config: Value =
                    serde_json::from_str(&config_json(&issuer, addr, options)).expect("config");
                config["web"] = json!({
                    "https": addr.to_string(),
                    "tlsCert": https.cert_file,
                    "tlsKey": https.key_file,
                });
                let users = config["staticPasswords"]
                    .as_array_mut()
                    .expect("staticPasswords is a list");
                for user in &https.users {
                    users.push(json!({
                        "email": user.email,
                        "hash": user.hash,
                        "username": user.username,
                        "userID": user.user_id,
                        "groups": user.groups,
                    }));
                }
                let text = serde_json::to_string_pretty(&config).expect("serialize dex config");
                (issuer, text)
            },
            |addr| {
                let url = format!("https://{addr}/dex/.well-known/openid-configuration");
                crate::support::runtime().block_on(async {
                    client
                        .get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                })
            },
            true,
        )
    }

    /// The issuer Dex was configured with (the proxy's URL for [`Dex::start`]).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Dex's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Dex's own listening address (tests talk to it through the proxy instead).
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// What Dex logged so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dex {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Dex on a free port: `config(addr)` gives the issuer and config text, `ready(addr)` says
/// whether discovery answers. A port picked by binding :0 can be taken again before Dex binds
/// it, so this tries three ports.
fn launch(
    dir: &Path,
    scheme: &'static str,
    config: impl Fn(SocketAddr) -> (String, String),
    ready: impl Fn(SocketAddr) -> bool,
    die_with_parent_thread: bool,
) -> Dex {
    let binary = e2e_binary("KOIDC_E2E_DEX", "Dex v2.45.1");
    let mut last_log = String::new();
    for attempt in 0..3 {
        let addr = free_port();
        let config_file = dir.join("dex.yaml");
        let log = dir.join(format!("dex-{attempt}.log"));
        let (issuer, text) = config(addr);
        std::fs::write(&config_file, text).expect("write dex config");
        let log_file = std::fs::File::create(&log).expect("create dex log");
        let mut cmd = Command::new(&binary);
        cmd.arg("serve")
            .arg(&config_file)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup dex log"))
            .stderr(log_file);
        if die_with_parent_thread {
            die_with_parent(&mut cmd);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut dex = Dex {
            child,
            addr,
            log,
            scheme,
            issuer,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if ready(addr) {
                return dex;
            }
            if let Ok(Some(_)) = dex.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        last_log = dex.log_text();
        drop(dex);
    }
    panic!("Dex did not come up (discovery never answered); last log:\n{last_log}");
}

/// Makes the process `cmd` starts get SIGKILL when the thread that started it ends (or the test
/// binary dies), so a server kept for the whole test run never outlives it.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt as _;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure only calls async-signal-safe functions (prctl, getppid).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("parent already exited"));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

fn config_json(issuer: &str, addr: SocketAddr, options: &DexOptions) -> String {
    // JSON is YAML, so Dex reads this as its config file.
    let mut connectors = vec![json!({ "type": "mockCallback", "id": "mock", "name": "Mock" })];
    connectors.extend(options.connectors.iter().cloned());
    let config = json!({
        "issuer": issuer,
        "storage": { "type": "memory" },
        "web": { "http": addr.to_string() },
        "logger": { "level": "info" },
        "expiry": { "idTokens": options.id_token_lifetime },
        "oauth2": { "skipApprovalScreen": true },
        "enablePasswordDB": true,
        "staticPasswords": [{
            "email": USER_EMAIL,
            "hash": USER_HASH,
            "username": "alice",
            "userID": "08a8684b-db88-4b73-90a9-3cd1661f5466",
            "groups": USER_GROUPS,
        }],
        "connectors": connectors,
        "staticClients": clients(options),
    });
    serde_json::to_string_pretty(&config).expect("serialize dex config")
}

/// Dex's `staticClients`: koidc's public client, then the clusters' clients trusting it.
fn clients(options: &DexOptions) -> Vec<Value> {
    let mut clients = vec![json!({ "id": CLIENT_ID, "name": "koidc", "public": true })];
    clients.extend(options.cluster_clients.iter().map(|id| {
        json!({
            "id": id,
            "name": id,
            "secret": format!("{id}-secret-never-used"),
            "redirectURIs": ["http://127.0.0.1:1/unused"],
            "trustedPeers": [CLIENT_ID],
        })
    }));
    clients
}

pub(crate) fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("free port address")
}

/// A minimal HTTP/1.0 GET: true when the answer's status is 200.
pub(crate) fn http_get_ok(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}
