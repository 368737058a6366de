//! HTTP plumbing shared by the adapters that talk to servers koidc does not run: the identity
//! provider ([`crate::login::oidc`]), GitHub ([`crate::login::github`]) and the apiserver
//! (`doctor`): the client builder, the extra trusted CAs ([`ca`]), the proxy of the environment
//! ([`proxy`]) and one send with one failure type ([`send()`]).
//!
//! Each adapter keeps its own error type and messages; these helpers say what went wrong and let
//! the caller name the server and the fix.

mod ca;
mod proxy;
mod send;

use std::time::Duration;

pub(crate) use ca::{CaError, ClientError, ExtraCas, decode_data, holds_pem_certificate, pem_certificates};
/// For tests outside this module that build a [`ProxyError::Unusable`].
#[cfg(test)]
pub(crate) use proxy::Flaw;
pub(crate) use proxy::{ProxyError, browser_environment, redact};
pub(crate) use send::{HttpError, Reply, display_url, send};

/// How long one HTTP request to the IdP (or GitHub) may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) use crate::text::one_line;

/// A client builder that follows no redirects, bounds each request (connect included) by
/// `timeout` and names koidc and its version as the user agent. It keeps reqwest's proxies of
/// the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, see [`proxy`]): every
/// server koidc asks may sit behind a corporate proxy; the loopback callback is no request of
/// koidc's, so a proxy never sees it.
pub(crate) fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    builtin_name_services();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("koidc/", env!("CARGO_PKG_VERSION")))
}

/// In a build with static glibc (the release build, `.cargo/static.toml`): host names are
/// looked up with glibc's built-in `files` and `dns` services only (/etc/hosts, then the
/// resolvers of /etc/resolv.conf), whatever /etc/nsswitch.conf names. A static glibc can load
/// other name-service modules (`resolve`, `mdns4_minimal`, ...) only from the glibc version it
/// was built with, which another system does not have. Done once, before the first client (and
/// so the first lookup), not at start-up: a cached token needs no name service.
fn builtin_name_services() {
    #[cfg(all(target_os = "linux", target_env = "gnu", target_feature = "crt-static"))]
    {
        use std::ffi::{c_char, c_int};
        unsafe extern "C" {
            /// glibc's <nss.h>: replaces a database's service line from /etc/nsswitch.conf.
            fn __nss_configure_lookup(db: *const c_char, service_line: *const c_char) -> c_int;
        }
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: two NUL-terminated strings; glibc copies what it keeps.
        ONCE.call_once(|| unsafe {
            __nss_configure_lookup(c"hosts".as_ptr(), c"files dns".as_ptr());
        });
    }
}

/// The innermost message of an error chain, capped, on one line, without any proxy's user name
/// or password ([`redact`]).
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    one_line(&redact(&cur.to_string()), 300)
}
