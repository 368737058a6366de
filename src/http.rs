//! HTTP plumbing shared by the adapters that talk to servers koidc does not run: the identity
//! provider ([`crate::login::oidc`]) and GitHub ([`crate::login::github`]).
//!
//! Each adapter keeps its own error type and messages; these helpers say what went wrong and let
//! the caller name the server and the fix.

use std::path::Path;
use std::time::Duration;

use reqwest::Certificate;

pub(crate) use crate::text::one_line;

/// A client builder that follows no redirects, bounds each request (connect included) by
/// `timeout` and names koidc and its version as the user agent.
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

/// The certificates of the PEM file `path`, at least one; the error is the reason, for the
/// caller's "cannot use the CA certificate file" message.
pub(crate) fn read_ca_file(path: &Path) -> Result<Vec<Certificate>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let certs = Certificate::from_pem_bundle(&bytes).map_err(|e| root_cause(&e))?;
    if certs.is_empty() {
        return Err("no PEM certificate found in it".into());
    }
    Ok(certs)
}

/// The certificates of `--certificate-authority-data`: the base64 of PEM certificates, as in a
/// kubeconfig's `certificate-authority-data`; at least one. The error is the reason, for the
/// caller's "cannot use --certificate-authority-data" message.
pub(crate) fn read_ca_data(data: &str) -> Result<Vec<Certificate>, String> {
    use base64::Engine as _;
    // Wrapped base64 (76 columns, as `base64` writes it) is base64 too: kubectl's decoder, which
    // reads a kubeconfig's `certificate-authority-data`, skips the line breaks as well.
    let compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| "it is not base64".to_owned())?;
    if !pem.windows(PEM_BEGIN.len()).any(|w| w == PEM_BEGIN.as_bytes()) {
        return Err("it is base64, but not of a PEM certificate".into());
    }
    let certs = Certificate::from_pem_bundle(&pem).map_err(|e| root_cause(&e))?;
    if certs.is_empty() {
        return Err("no PEM certificate found in it".into());
    }
    Ok(certs)
}

/// The first line of a PEM certificate.
const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";

/// Why a response body was not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// The body is larger than the caller's limit.
    #[error("the response is larger than {max} bytes")]
    TooLarge {
        /// The limit, in bytes.
        max: usize,
    },
    /// The connection failed while reading.
    #[error("cannot read the response: {}", root_cause(.0))]
    Transport(reqwest::Error),
}

/// Reads the body of `resp`, refusing more than `max` bytes: up front when `Content-Length` says
/// so, else as soon as the chunks read exceed it.
pub(crate) async fn read_body(resp: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge { max });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge { max });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The innermost message of an error chain, capped, on one line.
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    one_line(&cur.to_string(), 300)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_data_that_is_not_the_base64_of_a_pem_certificate_is_refused_with_the_reason() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(read_ca_data("not base64!").unwrap_err(), "it is not base64");
        assert_eq!(
            read_ca_data(&b64("hello")).unwrap_err(),
            "it is base64, but not of a PEM certificate"
        );
        assert!(read_ca_data("").is_err());
        assert!(read_ca_data(&b64("-----BEGIN CERTIFICATE-----\n")).is_err());
    }

    #[test]
    fn ca_data_wrapped_at_76_columns_is_read_like_kubectl_reads_it() {
        use base64::Engine as _;
        let pem = rcgen::generate_simple_self_signed(vec!["localhost".into()])
            .unwrap()
            .cert
            .pem();
        let one_line = base64::engine::general_purpose::STANDARD.encode(pem);
        let wrapped: Vec<String> = one_line
            .as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        assert!(wrapped.len() > 1);
        assert_eq!(read_ca_data(&wrapped.join("\n")).unwrap().len(), 1);
        assert_eq!(read_ca_data(&one_line).unwrap().len(), 1);
    }

    #[test]
    fn ca_files_without_a_certificate_or_unreadable_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert_eq!(
            read_ca_file(&empty).unwrap_err(),
            "no PEM certificate found in it"
        );
        assert!(
            !read_ca_file(&dir.path().join("missing.pem"))
                .unwrap_err()
                .is_empty()
        );
    }
}
