//! The certificate authorities koidc trusts besides the system's: the PEM files of
//! `--certificate-authority` and the base64 PEM of `--certificate-authority-data` (as in a
//! kubeconfig's `certificate-authority-data`). They are read and checked here, once, for every
//! client that takes them (the identity provider's, GitHub's) and for `setup`, which writes them
//! into the kubeconfig entry; an error names the file or the option, and what to give instead.

use std::path::PathBuf;

use reqwest::Certificate;

use super::root_cause;

/// The first line of a PEM certificate.
const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";

/// Why an extra CA cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A `--certificate-authority` file cannot be read or holds no usable PEM certificate.
    #[error(
        "cannot use the CA certificate file {path}: {reason}; check that it is a readable PEM certificate file"
    )]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// `--certificate-authority-data` is not the base64 of a usable PEM certificate.
    #[error(
        "cannot use --certificate-authority-data: {reason}; give the base64 of a PEM certificate, as in a kubeconfig's certificate-authority-data"
    )]
    Data {
        /// What went wrong.
        reason: String,
    },
}

/// Why a client trusting the extra CAs was not built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// One of the CAs is unusable (the TLS library refused it).
    #[error(transparent)]
    Ca(#[from] CaError),
    /// The TLS library or the client failed otherwise.
    #[error("cannot set up the HTTP client: {reason}")]
    Build {
        /// The innermost cause.
        reason: String,
    },
}

/// Where a CA comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// A `--certificate-authority` file.
    File(PathBuf),
    /// `--certificate-authority-data`.
    Data,
}

impl Origin {
    fn error(&self, reason: String) -> CaError {
        match self {
            Self::File(path) => CaError::File {
                path: path.display().to_string(),
                reason,
            },
            Self::Data => CaError::Data { reason },
        }
    }
}

/// The certificates of one source, with the PEM text they were read from.
#[derive(Clone)]
struct Source {
    origin: Origin,
    pem: String,
    certs: Vec<Certificate>,
}

/// The extra CAs: those of each `--certificate-authority` file, then those of
/// `--certificate-authority-data`; each source holds at least one certificate.
#[derive(Clone, Default)]
pub struct ExtraCas {
    sources: Vec<Source>,
}

impl std::fmt::Debug for ExtraCas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.sources.iter().map(|s| (&s.origin, s.certs.len())))
            .finish()
    }
}

/// The `CERTIFICATE` blocks of PEM `text`, each ending in a newline: what a kubeconfig entry may
/// carry. Anything else a CA file holds (a private key bundled with the certificate, comments)
/// stays out, since `--embed-ca` copies the result into every user's kubeconfig and command line.
fn certificate_blocks(text: &str) -> String {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else { break };
        out.push_str(&rest[start..start + len + END.len()]);
        out.push('\n');
        rest = &rest[start + len + END.len()..];
    }
    out
}

impl ExtraCas {
    /// Reads and checks the `files` (in order) and `data`.
    pub fn load(files: &[PathBuf], data: Option<&str>) -> Result<Self, CaError> {
        let mut sources = Vec::new();
        for path in files {
            let origin = Origin::File(path.clone());
            let bytes = std::fs::read(path).map_err(|e| origin.error(e.to_string()))?;
            let certs = pem_certificates(&bytes).map_err(|reason| origin.error(reason))?;
            sources.push(Source {
                origin,
                pem: certificate_blocks(&String::from_utf8_lossy(&bytes)),
                certs,
            });
        }
        if let Some(data) = data {
            let (pem, certs) = read_data(data).map_err(|reason| Origin::Data.error(reason))?;
            sources.push(Source {
                origin: Origin::Data,
                pem: certificate_blocks(&String::from_utf8_lossy(&pem)),
                certs,
            });
        }
        Ok(Self { sources })
    }

    /// True when no extra CA was given.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The PEM text of every source, each ending in one newline, in order (for a kubeconfig's
    /// `certificate-authority-data`).
    pub fn pem(&self) -> String {
        self.sources
            .iter()
            .map(|s| format!("{}\n", s.pem.trim_end()))
            .collect()
    }

    /// A client from `builder` (a fresh [`super::client_builder`], say) that trusts these CAs
    /// besides the system's. The TLS library checks certificates only when a client is built:
    /// when it refuses, the source it refused is found and named.
    pub fn client(
        &self,
        builder: impl Fn() -> reqwest::ClientBuilder,
    ) -> Result<reqwest::Client, ClientError> {
        let build = |sources: &[Source], builtin_roots: bool| {
            let mut b = builder().tls_built_in_root_certs(builtin_roots);
            for cert in sources.iter().flat_map(|s| &s.certs) {
                b = b.add_root_certificate(cert.clone());
            }
            b.build()
        };
        build(&self.sources, true).map_err(|err| {
            for source in &self.sources {
                if let Err(e) = build(std::slice::from_ref(source), false) {
                    return ClientError::Ca(source.origin.error(root_cause(&e)));
                }
            }
            ClientError::Build {
                reason: root_cause(&err),
            }
        })
    }
}

/// The certificates of PEM text, at least one; the error is the reason.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<Certificate>, String> {
    let certs = Certificate::from_pem_bundle(pem).map_err(|e| root_cause(&e))?;
    if certs.is_empty() {
        return Err("no PEM certificate found in it".into());
    }
    Ok(certs)
}

/// The PEM text of a `certificate-authority-data` value and its certificates; the error is the
/// reason.
fn read_data(data: &str) -> Result<(Vec<u8>, Vec<Certificate>), String> {
    let pem = decode_data(data).ok_or_else(|| "it is not base64".to_owned())?;
    if !holds_pem_certificate(&pem) {
        return Err("it is base64, but not of a PEM certificate".into());
    }
    let certs = pem_certificates(&pem)?;
    Ok((pem, certs))
}

/// The bytes of a `certificate-authority-data` value (`None` when it is not base64): base64, line breaks and other whitespace
/// ignored. Wrapped base64 (76 columns, as `base64` writes it) is base64 too: kubectl's decoder,
/// which reads a kubeconfig's `certificate-authority-data`, skips the line breaks as well.
pub fn decode_data(data: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(compact).ok()
}

/// Whether `pem` has the first line of a PEM certificate (a cheap check before parsing).
pub fn holds_pem_certificate(pem: &[u8]) -> bool {
    pem.windows(PEM_BEGIN.len()).any(|w| w == PEM_BEGIN.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn cert_pem() -> String {
        rcgen::generate_simple_self_signed(vec!["localhost".into()])
            .unwrap()
            .cert
            .pem()
    }

    fn data_reason(data: &str) -> String {
        match ExtraCas::load(&[], Some(data)).unwrap_err() {
            CaError::Data { reason } => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ca_data_that_is_not_the_base64_of_a_pem_certificate_is_refused_with_the_reason() {
        assert_eq!(data_reason("not base64!"), "it is not base64");
        assert_eq!(
            data_reason(&b64(b"hello")),
            "it is base64, but not of a PEM certificate"
        );
        assert!(!data_reason("").is_empty());
        assert!(!data_reason(&b64(b"-----BEGIN CERTIFICATE-----\n")).is_empty());
        let err = ExtraCas::load(&[], Some("x")).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot use --certificate-authority-data: it is not base64; give the base64"),
            "{err}"
        );
    }

    #[test]
    fn ca_data_wrapped_at_76_columns_is_read_like_kubectl_reads_it() {
        let pem = cert_pem();
        let one_line = b64(pem.as_bytes());
        let wrapped: Vec<String> = one_line
            .as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        assert!(wrapped.len() > 1);
        let cas = ExtraCas::load(&[], Some(&wrapped.join("\n"))).unwrap();
        assert_eq!(cas.pem(), format!("{}\n", pem.trim_end()));
        assert!(ExtraCas::load(&[], Some(&format!(" {one_line}\n"))).is_ok());
    }

    #[test]
    fn ca_files_without_a_certificate_or_unreadable_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let missing = dir.path().join("missing.pem");
        for (path, want) in [(&empty, Some("no PEM certificate found in it")), (&missing, None)] {
            match ExtraCas::load(std::slice::from_ref(path), None).unwrap_err() {
                CaError::File { path: named, reason } => {
                    assert_eq!(named, path.display().to_string());
                    assert!(!reason.is_empty());
                    if let Some(want) = want {
                        assert_eq!(reason, want);
                    }
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn files_and_data_are_kept_in_order_and_their_pem_joined_for_a_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (cert_pem(), cert_pem());
        let file = dir.path().join("a.pem");
        std::fs::write(&file, format!("{a}\n\n")).unwrap();
        let cas = ExtraCas::load(&[file], Some(&b64(b.as_bytes()))).unwrap();
        assert!(!cas.is_empty());
        assert_eq!(cas.pem(), format!("{}\n{}\n", a.trim_end(), b.trim_end()));
        assert!(ExtraCas::load(&[], None).unwrap().is_empty());
        assert_eq!(ExtraCas::load(&[], None).unwrap().pem(), "");
    }

    #[test]
    fn a_ca_bundle_holding_a_private_key_gives_only_its_certificates_to_a_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = generated.cert.pem();
        let file = dir.path().join("bundle.pem");
        std::fs::write(
            &file,
            format!("# the CA\n{cert}{}", generated.signing_key.serialize_pem()),
        )
        .unwrap();
        let data = b64(format!("{}{cert}", generated.signing_key.serialize_pem()).as_bytes());
        let cas = ExtraCas::load(&[file], Some(&data)).unwrap();
        assert_eq!(cas.pem(), format!("{}\n{}\n", cert.trim_end(), cert.trim_end()));
        assert!(!cas.pem().contains("PRIVATE KEY"));
    }

    #[test]
    fn a_client_trusting_the_extra_cas_is_built() {
        let cas = ExtraCas::load(&[], Some(&b64(cert_pem().as_bytes()))).unwrap();
        let client = cas.client(|| super::super::client_builder(std::time::Duration::from_secs(5)));
        assert!(client.is_ok(), "{:?}", client.err());
    }
}
