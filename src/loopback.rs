//! The one-shot loopback server that receives the authorization response (RFC 8252).
//!
//! INTERFACE: [`LoopbackServer::bind`], [`LoopbackServer::redirect_uri`],
//! [`LoopbackServer::wait_for_code`].

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

/// Errors of the loopback server.
#[derive(Debug, thiserror::Error)]
pub enum LoopbackError {
    /// Placeholder until the module is implemented.
    #[error("{0}")]
    Other(String),
}

/// A bound, not yet serving, loopback listener.
pub struct LoopbackServer {
    addr: SocketAddr,
}

impl LoopbackServer {
    /// Binds the first address of `candidates` that is free. Only loopback addresses are allowed.
    pub async fn bind(_candidates: &[SocketAddr]) -> Result<Self, LoopbackError> {
        Err(LoopbackError::Other("not implemented".into()))
    }

    /// The redirect URI to send to the IdP, e.g. `http://127.0.0.1:41234/callback`.
    pub fn redirect_uri(&self) -> String {
        format!("http://{}/callback", self.addr)
    }

    /// Serves until the callback with `expected_state` arrives or `timeout` passes.
    pub async fn wait_for_code(
        self,
        _expected_state: &str,
        _timeout: Duration,
    ) -> Result<SecretString, LoopbackError> {
        Err(LoopbackError::Other("not implemented".into()))
    }
}
