//! A real Dex (the pinned binary from `tests/e2e/deps.sh`, found through `KOIDC_E2E_DEX`) started
//! per test with a generated config in the test's temp dir: memory storage, no approval screen,
//! the password DB with one static user who has groups, the `mock` callback connector, a public
//! client `koidc` without redirect URIs (any loopback port), and a configurable ID token lifetime.
//! Its `issuer` is the counting proxy's URL while it listens on another loopback port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

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
}

impl Default for DexOptions {
    fn default() -> Self {
        DexOptions {
            id_token_lifetime: "1h".into(),
        }
    }
}

/// A running Dex; killed when dropped.
pub struct Dex {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Dex {
    /// Starts Dex with `issuer` (the proxy's URL plus `/dex`), config and log in `dir`, and waits
    /// until discovery answers on its own address.
    pub fn start(dir: &Path, issuer: &str, options: &DexOptions) -> Dex {
        let binary = e2e_binary("KOIDC_E2E_DEX", "Dex v2.45.1");
        let issuer_path = url::Url::parse(issuer)
            .expect("issuer is a URL")
            .path()
            .to_string();
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            issuer_path.trim_end_matches('/')
        );
        let mut last_log = String::new();
        // A port picked by binding :0 can be taken again before Dex binds it: retry a few times.
        for attempt in 0..3 {
            let addr = free_port();
            let config = dir.join("dex.yaml");
            let log = dir.join(format!("dex-{attempt}.log"));
            std::fs::write(&config, config_json(issuer, addr, options)).expect("write dex config");
            let log_file = std::fs::File::create(&log).expect("create dex log");
            let child = Command::new(&binary)
                .arg("serve")
                .arg(&config)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", dir)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("dup dex log"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let mut dex = Dex { child, addr, log };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if http_get_ok(addr, &discovery) {
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

    /// Dex's own listening address (tests talk to it through the proxy instead).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
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

fn config_json(issuer: &str, addr: SocketAddr, options: &DexOptions) -> String {
    // JSON is YAML, so Dex reads this as its config file.
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
        "connectors": [{ "type": "mockCallback", "id": "mock", "name": "Mock" }],
        "staticClients": [{ "id": CLIENT_ID, "name": "koidc", "public": true }],
    });
    serde_json::to_string_pretty(&config).expect("serialize dex config")
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("free port address")
}

/// A minimal HTTP/1.0 GET: true when the answer's status is 200.
fn http_get_ok(addr: SocketAddr, path: &str) -> bool {
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
