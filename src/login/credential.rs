//! The exec credential protocol with kubectl: `KUBERNETES_EXEC_INFO` in, `ExecCredential` out.
//!
//! client-go checks that the `apiVersion` koidc prints equals the one the kubeconfig asked for,
//! so koidc echoes the version it was given (v1beta1 when the variable is absent, as older
//! clients send none) and refuses versions it does not know rather than guessing.

use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The largest `KUBERNETES_EXEC_INFO` koidc reads (it may carry cluster CA data).
const MAX_EXEC_INFO: usize = 1 << 20;

/// The most characters of kubectl's input (or of a parser message quoting it) an error shows.
const MAX_QUOTED: usize = 200;

/// `text` cut to [`MAX_QUOTED`] characters (`...` marks a cut).
fn capped(text: &str) -> String {
    let mut out: String = text.chars().take(MAX_QUOTED).collect();
    if out.len() < text.len() {
        out.push_str("...");
    }
    out
}

/// Problems with the exec credential input.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The variable is not valid JSON of the expected shape.
    #[error("KUBERNETES_EXEC_INFO is not a valid ExecCredential: {0}")]
    Malformed(String),
    /// The variable asks for a version koidc cannot write.
    #[error(
        "unsupported exec credential apiVersion {0}: koidc speaks client.authentication.k8s.io/v1 \
         and v1beta1; set `apiVersion: client.authentication.k8s.io/v1` in the kubeconfig exec entry"
    )]
    UnsupportedVersion(
        /// The version asked for, quoted and escaped (at most 200 characters of the escaped form).
        String,
    ),
}

/// The exec credential API versions koidc speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `client.authentication.k8s.io/v1`
    V1,
    /// `client.authentication.k8s.io/v1beta1`
    V1Beta1,
}

impl ApiVersion {
    /// The apiVersion string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "client.authentication.k8s.io/v1",
            Self::V1Beta1 => "client.authentication.k8s.io/v1beta1",
        }
    }
}

/// What kubectl told koidc through `KUBERNETES_EXEC_INFO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecInfo {
    /// The version to answer with.
    pub api_version: ApiVersion,
    /// Whether kubectl connected stdin for an interactive login (`spec.interactive`).
    pub interactive: bool,
    /// Whether the variable was present at all (absent when run by hand).
    pub from_kubectl: bool,
    /// The cluster's audience: `audience` in `spec.cluster.config`, the cluster's
    /// `client.authentication.k8s.io/exec` extension, which kubectl passes when the exec entry
    /// sets `provideClusterInfo: true`. `--audience` wins over it.
    pub audience: Option<String>,
}

#[derive(Deserialize)]
struct RawExecInfo {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    spec: RawSpec,
}

#[derive(Deserialize, Default)]
struct RawSpec {
    #[serde(default)]
    interactive: bool,
    /// Only with `provideClusterInfo: true`; only its `config` is read (its CA data, server
    /// and the rest are skipped).
    cluster: Option<RawCluster>,
}

#[derive(Deserialize)]
struct RawCluster {
    config: Option<RawClusterConfig>,
}

/// The cluster's exec extension: koidc's settings for this cluster. Other members are ignored;
/// an `audience` that is not a string is an error (never a token without the audience asked for).
#[derive(Deserialize)]
struct RawClusterConfig {
    audience: Option<String>,
}

/// The longest audience koidc accepts (as `--audience`).
const MAX_AUDIENCE: usize = 1024;

impl ExecInfo {
    /// Parses the value of `KUBERNETES_EXEC_INFO` (`None` when unset).
    pub fn parse(value: Option<&str>) -> Result<Self, CredentialError> {
        let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
            return Ok(Self {
                api_version: ApiVersion::V1Beta1,
                interactive: true,
                from_kubectl: false,
                audience: None,
            });
        };
        if value.len() > MAX_EXEC_INFO {
            return Err(CredentialError::Malformed("larger than 1 MiB".into()));
        }
        let raw: RawExecInfo =
            serde_json::from_str(value).map_err(|e| CredentialError::Malformed(capped(&e.to_string())))?;
        if let Some(kind) = raw.kind.as_deref()
            && kind != "ExecCredential"
        {
            // Escaping first, then cutting: escapes can make a character ten times longer.
            return Err(CredentialError::Malformed(format!(
                "kind is {}, expected \"ExecCredential\"",
                capped(&format!("{kind:?}"))
            )));
        }
        let api_version = match raw.api_version.as_deref() {
            None | Some("client.authentication.k8s.io/v1beta1") => ApiVersion::V1Beta1,
            Some("client.authentication.k8s.io/v1") => ApiVersion::V1,
            Some(other) => {
                return Err(CredentialError::UnsupportedVersion(capped(&format!("{other:?}"))));
            }
        };
        let audience = raw.spec.cluster.and_then(|c| c.config).and_then(|c| c.audience);
        if let Some(a) = &audience
            && (a.trim().is_empty() || a.len() > MAX_AUDIENCE || a.chars().any(char::is_control))
        {
            return Err(CredentialError::Malformed(
                "spec.cluster.config.audience (the cluster's exec extension in the kubeconfig) must be one line of printable text (at most 1024 bytes), not empty".into(),
            ));
        }
        Ok(Self {
            api_version,
            interactive: raw.spec.interactive,
            from_kubectl: true,
            audience,
        })
    }
}

/// The `ExecCredential` JSON for `token`, valid (for kubectl) until `expiration`.
pub fn exec_credential(api_version: ApiVersion, token: &SecretString, expiration: DateTime<Utc>) -> String {
    serde_json::json!({
        "kind": "ExecCredential",
        "apiVersion": api_version.as_str(),
        "spec": {},
        "status": {
            "token": token.expose_secret(),
            "expirationTimestamp": expiration.to_rfc3339_opts(SecondsFormat::Secs, true),
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn absent_exec_info_means_v1beta1() {
        let info = ExecInfo::parse(None).unwrap();
        assert_eq!(info.api_version, ApiVersion::V1Beta1);
        assert!(!info.from_kubectl);
    }

    #[test]
    fn v1_is_echoed_with_interactive_flag() {
        let info = ExecInfo::parse(Some(
            r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":true,"cluster":{"server":"https://127.0.0.1:6443"}}}"#,
        ))
        .unwrap();
        assert_eq!(info.api_version, ApiVersion::V1);
        assert!(info.interactive);
        let info = ExecInfo::parse(Some(
            r#"{"apiVersion":"client.authentication.k8s.io/v1beta1","spec":{}}"#,
        ))
        .unwrap();
        assert_eq!(info.api_version, ApiVersion::V1Beta1);
        assert!(!info.interactive);
    }

    #[test]
    fn unknown_version_and_garbage_are_errors() {
        assert!(matches!(
            ExecInfo::parse(Some(r#"{"apiVersion":"client.authentication.k8s.io/v2"}"#)),
            Err(CredentialError::UnsupportedVersion(_))
        ));
        assert!(matches!(
            ExecInfo::parse(Some("{")),
            Err(CredentialError::Malformed(_))
        ));
        assert!(matches!(
            ExecInfo::parse(Some(r#"{"kind":"Pod"}"#)),
            Err(CredentialError::Malformed(_))
        ));
        assert!(matches!(
            ExecInfo::parse(Some("[1,2]")),
            Err(CredentialError::Malformed(_))
        ));
    }

    /// The exec info kubectl sends with `provideClusterInfo: true`, with `config` as given.
    fn with_cluster_config(config: &str) -> String {
        format!(
            r#"{{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{{"interactive":false,"cluster":{{"server":"https://127.0.0.1:6443","certificate-authority-data":"LS0t","config":{config}}}}}}}"#
        )
    }

    #[test]
    fn the_clusters_audience_is_read_from_its_exec_extension() {
        let info = ExecInfo::parse(Some(&with_cluster_config(
            r#"{"audience":"cluster-a","other":[1,{"x":null}]}"#,
        )))
        .unwrap();
        assert_eq!(info.audience.as_deref(), Some("cluster-a"));
        for config in ["null", "{}", r#"{"audience":null}"#] {
            let info = ExecInfo::parse(Some(&with_cluster_config(config))).unwrap();
            assert_eq!(info.audience, None, "{config}");
        }
        let info = ExecInfo::parse(Some(
            r#"{"apiVersion":"client.authentication.k8s.io/v1","spec":{"cluster":{"server":"https://x"}}}"#,
        ))
        .unwrap();
        assert_eq!(info.audience, None);
    }

    #[test]
    fn a_hostile_cluster_audience_is_a_one_line_error() {
        let long = "a".repeat(2000);
        for config in [
            r#"{"audience":42}"#.to_owned(),
            r#"{"audience":["a","b"]}"#.to_owned(),
            r#"{"audience":{"a":1}}"#.to_owned(),
            r#""audience""#.to_owned(),
            "[1,2]".to_owned(),
            r#"{"audience":""}"#.to_owned(),
            r#"{"audience":"   "}"#.to_owned(),
            r#"{"audience":"a\nb"}"#.to_owned(),
            r#"{"audience":"a\r\nHost: evil"}"#.to_owned(),
            r#"{"audience":"a\u0000"}"#.to_owned(),
            format!(r#"{{"audience":"{long}"}}"#),
            format!(r#"{{"audience":["{long}\n"]}}"#),
        ] {
            let err = ExecInfo::parse(Some(&with_cluster_config(&config))).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, CredentialError::Malformed(_)), "{config}: {msg}");
            assert!(
                !msg.contains('\n') && !msg.contains('\r') && !msg.contains('\0'),
                "{msg}"
            );
            assert!(msg.len() < 450, "{} bytes: {msg}", msg.len());
        }
    }

    #[test]
    fn over_one_mib_is_refused_unread() {
        let huge = format!(
            r#"{{"kind":"ExecCredential","x":"{}"}}"#,
            "a".repeat(MAX_EXEC_INFO)
        );
        let err = ExecInfo::parse(Some(&huge)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "KUBERNETES_EXEC_INFO is not a valid ExecCredential: larger than 1 MiB"
        );
    }

    #[test]
    fn errors_quote_at_most_200_characters_of_the_input() {
        let long = "x".repeat(100_000);
        for input in [
            format!(r#"{{"kind":"{long}"}}"#),
            format!(r#"{{"apiVersion":"{long}"}}"#),
            format!(r#"{{"spec":{{"interactive":"{long}"}}}}"#),
        ] {
            let msg = ExecInfo::parse(Some(&input)).unwrap_err().to_string();
            assert!(msg.len() < 450, "{} bytes: {}", msg.len(), &msg[..300]);
            assert!(msg.contains("xxxx"), "{msg}");
        }
        // Escapes count against the cap (a DEL is written as six characters): found by the
        // `exec_info` fuzz target.
        let del = "\u{7f}".repeat(1000);
        for input in [
            format!(r#"{{"kind":"{del}"}}"#),
            format!(r#"{{"apiVersion":"{del}"}}"#),
            format!(r#"{{"spec":{{"interactive":"{del}"}}}}"#),
        ] {
            let msg = ExecInfo::parse(Some(&input)).unwrap_err().to_string();
            assert!(msg.len() < 450, "{} bytes: {}", msg.len(), &msg[..300]);
            assert!(msg.contains(r"\u{7f}"), "{msg}");
        }
        // Short values are quoted whole.
        let msg = ExecInfo::parse(Some(r#"{"kind":"Pod"}"#))
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            r#"KUBERNETES_EXEC_INFO is not a valid ExecCredential: kind is "Pod", expected "ExecCredential""#
        );
    }

    #[test]
    fn credential_has_token_and_rfc3339_expiry() {
        let exp = Utc.with_ymd_and_hms(2026, 9, 1, 12, 0, 0).unwrap();
        let out = exec_credential(ApiVersion::V1, &SecretString::from("t.o.k"), exp);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["apiVersion"], "client.authentication.k8s.io/v1");
        assert_eq!(v["kind"], "ExecCredential");
        assert_eq!(v["status"]["token"], "t.o.k");
        assert_eq!(v["status"]["expirationTimestamp"], "2026-09-01T12:00:00Z");
    }
}
