//! The doctor's questions to the kube-apiserver, asked as the user: who am I
//! (`SelfSubjectReview`, what `kubectl auth whoami` asks), what may I do in a namespace
//! (`SelfSubjectRulesReview`), and which RBAC bindings exist (usually only an admin may list them:
//! [`bindings_with_kubectl`] asks with an admin kubeconfig instead). Requests and answers are
//! [`k8s_openapi`]'s types; bindings are reduced to what the doctor compares ([`BindingInfo`]).
//!
//! The ID token goes in an `Authorization` header marked sensitive, over TLS checked against the
//! kubeconfig's CA; never in a process argument or a file. Error messages name the URL and the
//! apiserver's `Status` message, never the token.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{SelfSubjectReview, UserInfo};
use k8s_openapi::api::authorization::v1::{
    SelfSubjectRulesReview, SelfSubjectRulesReviewSpec, SubjectRulesReviewStatus,
};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::kubeconfig::ClusterTarget;
use crate::http::HttpError;

/// How long one request to the apiserver may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The largest response body read from the apiserver (16 MiB: binding lists can be long).
const MAX_BODY: usize = 16 << 20;

/// Failures talking to the apiserver.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The HTTP client cannot be built (a CA the TLS library refuses).
    #[error("cannot set up TLS for the apiserver: {0}")]
    Client(String),
    /// The request goes through a proxy (`HTTPS_PROXY`..., or the kubeconfig's `proxy-url`) that
    /// failed it; the message names the proxy, never its password.
    #[error(transparent)]
    Proxy(crate::http::ProxyError),
    /// The apiserver cannot be reached.
    #[error("cannot reach the apiserver at {url}: {reason}")]
    Unreachable {
        /// The URL requested (without query).
        url: String,
        /// The innermost cause.
        reason: String,
    },
    /// An HTTP error status, with the apiserver's message.
    #[error("{url} answered HTTP {status}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
        /// The `message` of the apiserver's `Status` object, on one line.
        message: Option<String>,
    },
    /// A response that is not the expected JSON.
    #[error("{url} returned a response koidc cannot read: {reason}")]
    Malformed {
        /// The URL requested.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// kubectl (for the admin's view of the bindings) failed.
    #[error("{0}")]
    Kubectl(String),
}

impl ApiError {
    /// The HTTP status, for status errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A RoleBinding or ClusterRoleBinding, reduced to what the doctor compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingInfo {
    /// `RoleBinding` or `ClusterRoleBinding`.
    pub kind: &'static str,
    /// The namespace (RoleBindings).
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
    /// `roleRef.kind`: `Role` or `ClusterRole`.
    pub role_kind: String,
    /// `roleRef.name`.
    pub role_name: String,
    /// The subjects: (kind, name).
    pub subjects: Vec<(String, String)>,
}

impl BindingInfo {
    /// `RoleBinding ns/name` or `ClusterRoleBinding name`.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// The `items` of a RoleBindingList / ClusterRoleBindingList, or of kubectl's `v1 List`.
#[derive(Deserialize)]
struct Items<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

/// Reads the `items` of a RoleBindingList / ClusterRoleBindingList (or kubectl's `v1 List`).
pub fn parse_bindings(kind: &'static str, body: &[u8]) -> Result<Vec<BindingInfo>, String> {
    fn items<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Vec<T>, String> {
        let list: Items<T> =
            serde_json::from_slice(body).map_err(|e| format!("not a list of bindings ({e})"))?;
        Ok(list.items)
    }
    let bindings: Vec<(ObjectMeta, RoleRef, Option<Vec<Subject>>)> = if kind == "RoleBinding" {
        items::<RoleBinding>(body)?
            .into_iter()
            .map(|b| (b.metadata, b.role_ref, b.subjects))
            .collect()
    } else {
        items::<ClusterRoleBinding>(body)?
            .into_iter()
            .map(|b| (b.metadata, b.role_ref, b.subjects))
            .collect()
    };
    Ok(bindings
        .into_iter()
        .map(|(metadata, role_ref, subjects)| BindingInfo {
            kind,
            namespace: metadata.namespace.filter(|_| kind == "RoleBinding"),
            name: metadata.name.unwrap_or_default(),
            role_kind: role_ref.kind,
            role_name: role_ref.name,
            subjects: subjects
                .unwrap_or_default()
                .into_iter()
                .map(|s| (s.kind, s.name))
                .collect(),
        })
        .collect())
}

/// The apiserver of a kubeconfig cluster, asked with the user's ID token.
pub struct ApiClient {
    http: reqwest::Client,
    server: Url,
    token: SecretString,
}

impl ApiClient {
    /// A client for `target` trusting its CA (the system roots when it names none).
    pub fn new(target: &ClusterTarget, token: SecretString) -> Result<Self, ApiError> {
        let mut builder = crate::http::client_builder(TIMEOUT)
            .user_agent(concat!("koidc-doctor/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &target.ca_pem {
            let certs = crate::http::pem_certificates(pem).map_err(ApiError::Client)?;
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ApiError::Client(crate::http::root_cause(&e)))?;
        Ok(Self {
            http,
            server: target.server.clone(),
            token,
        })
    }

    /// `server` + `path`, keeping a path prefix the server URL may have.
    fn url(&self, path: &str) -> Url {
        let mut url = self.server.clone();
        let joined = format!("{}{path}", self.server.path().trim_end_matches('/'));
        url.set_path(&joined);
        url.set_query(None);
        url
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Vec<u8>, ApiError> {
        let url = self.url(path);
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", self.token.expose_secret()))
            .map_err(|_| ApiError::Client("the ID token cannot be sent in an HTTP header".into()))?;
        bearer.set_sensitive(true);
        let mut req = self
            .http
            .request(method, url.clone())
            .header(AUTHORIZATION, bearer)
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(body) = body {
            req = req
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body.to_string());
        }
        let reply = crate::http::send(req, TIMEOUT, MAX_BODY)
            .await
            .map_err(|err| match err {
                err @ HttpError::TooLarge { .. } => ApiError::Malformed {
                    url: url.to_string(),
                    reason: err.to_string(),
                },
                HttpError::Proxy(err) => ApiError::Proxy(err),
                err => ApiError::Unreachable {
                    url: url.to_string(),
                    reason: err.reason(),
                },
            })?;
        let (status, bytes) = (reply.status, reply.body);
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(cap));
            return Err(ApiError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                message,
            });
        }
        Ok(bytes)
    }

    /// The answer `bytes` to `path` as the review `R`, and what `status` takes from it (`missing`
    /// names what is absent when it takes nothing).
    fn parse<R: serde::de::DeserializeOwned, T>(
        &self,
        path: &str,
        bytes: &[u8],
        status: impl FnOnce(R) -> Option<T>,
        missing: &str,
    ) -> Result<T, ApiError> {
        let malformed = |reason: String| ApiError::Malformed {
            url: self.url(path).to_string(),
            reason,
        };
        let value: Value = serde_json::from_slice(bytes).map_err(|_| malformed("not JSON".into()))?;
        let review: R = serde_json::from_value(value).map_err(|e| malformed(e.to_string()))?;
        status(review).ok_or_else(|| malformed(missing.to_owned()))
    }

    /// A review to POST, as JSON.
    fn body(review: &impl serde::Serialize) -> Result<Value, ApiError> {
        serde_json::to_value(review).map_err(|e| ApiError::Client(e.to_string()))
    }

    /// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`: who the apiserver says the
    /// token's holder is.
    pub async fn self_subject_review(&self) -> Result<UserInfo, ApiError> {
        const PATH: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
        let body = Self::body(&SelfSubjectReview::default())?;
        let bytes = self.send(reqwest::Method::POST, PATH, Some(body)).await?;
        self.parse(
            PATH,
            &bytes,
            |review: SelfSubjectReview| review.status?.user_info,
            "no status.userInfo",
        )
    }

    /// `POST /apis/authorization.k8s.io/v1/selfsubjectrulesreviews` for `namespace`.
    pub async fn rules_review(&self, namespace: &str) -> Result<SubjectRulesReviewStatus, ApiError> {
        const PATH: &str = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";
        let body = Self::body(&SelfSubjectRulesReview {
            spec: SelfSubjectRulesReviewSpec {
                namespace: Some(namespace.to_owned()),
            },
            ..SelfSubjectRulesReview::default()
        })?;
        let bytes = self.send(reqwest::Method::POST, PATH, Some(body)).await?;
        self.parse(
            PATH,
            &bytes,
            |review: SelfSubjectRulesReview| review.status,
            "no status",
        )
    }

    /// The RoleBindings of `namespace` and the ClusterRoleBindings, as far as the user may list
    /// them (usually an HTTP 403).
    pub async fn bindings(&self, namespace: &str) -> Result<Vec<BindingInfo>, ApiError> {
        let mut all = Vec::new();
        for (kind, path) in [
            (
                "RoleBinding",
                format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings"),
            ),
            (
                "ClusterRoleBinding",
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings".to_owned(),
            ),
        ] {
            let bytes = self.send(reqwest::Method::GET, &path, None).await?;
            all.extend(
                parse_bindings(kind, &bytes).map_err(|reason| ApiError::Malformed {
                    url: self.url(&path).to_string(),
                    reason,
                })?,
            );
        }
        Ok(all)
    }
}

/// How to run kubectl as the admin.
#[derive(Debug, Clone)]
pub struct AdminKubectl {
    /// The kubectl program.
    pub program: PathBuf,
    /// `--kubeconfig`
    pub kubeconfig: PathBuf,
    /// `--context`
    pub context: Option<String>,
}

/// The RoleBindings of `namespace` and the ClusterRoleBindings, listed by kubectl with the
/// admin's kubeconfig.
pub fn bindings_with_kubectl(admin: &AdminKubectl, namespace: &str) -> Result<Vec<BindingInfo>, ApiError> {
    let mut all = Vec::new();
    for (kind, resource, ns) in [
        ("RoleBinding", "rolebindings", Some(namespace)),
        ("ClusterRoleBinding", "clusterrolebindings", None),
    ] {
        let mut cmd = Command::new(&admin.program);
        cmd.arg("--kubeconfig").arg(&admin.kubeconfig);
        if let Some(context) = &admin.context {
            cmd.arg("--context").arg(context);
        }
        cmd.args(["get", resource, "-o", "json", "--request-timeout=30s"]);
        if let Some(ns) = ns {
            cmd.args(["--namespace", ns]);
        }
        let out = cmd.stdin(Stdio::null()).output().map_err(|e| {
            ApiError::Kubectl(format!(
                "cannot run {}: {e}; pass --kubectl",
                admin.program.display()
            ))
        })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(ApiError::Kubectl(format!(
                "kubectl get {resource} with {} failed ({}): {}",
                admin.kubeconfig.display(),
                out.status,
                cap(&stderr)
            )));
        }
        all.extend(
            parse_bindings(kind, &out.stdout)
                .map_err(|reason| ApiError::Kubectl(format!("kubectl get {resource}: {reason}")))?,
        );
    }
    Ok(all)
}

/// `s` on one line, at most 300 characters.
fn cap(s: &str) -> String {
    crate::text::cap(&crate::text::fold_whitespace(s), 300).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_lists_from_the_api_and_from_kubectl_are_read_alike() {
        let api = br#"{"kind":"RoleBindingList","items":[{"metadata":{"name":"b","namespace":"app"},
            "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"r"},
            "subjects":[{"kind":"Group","apiGroup":"rbac.authorization.k8s.io","name":"oidc:devs"}]}]}"#;
        let got = parse_bindings("RoleBinding", api).unwrap();
        assert_eq!(
            got,
            [BindingInfo {
                kind: "RoleBinding",
                namespace: Some("app".into()),
                name: "b".into(),
                role_kind: "Role".into(),
                role_name: "r".into(),
                subjects: vec![("Group".into(), "oidc:devs".into())],
            }]
        );
        assert_eq!(got[0].describe(), "RoleBinding app/b");
        // kubectl's `v1 List`; a binding without subjects.
        let kubectl = br#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"rbac.authorization.k8s.io/v1",
            "kind":"ClusterRoleBinding","metadata":{"name":"c"},"roleRef":{"kind":"ClusterRole","name":"view"}}]}"#;
        let got = parse_bindings("ClusterRoleBinding", kubectl).unwrap();
        assert_eq!(got[0].describe(), "ClusterRoleBinding c");
        assert!(got[0].subjects.is_empty());
        assert!(parse_bindings("RoleBinding", b"<html>").is_err());
    }

    #[test]
    fn request_urls_keep_a_server_path_prefix() {
        let target = ClusterTarget {
            context: "x".into(),
            server: Url::parse("https://rancher.example/k8s/clusters/c-1/").unwrap(),
            ca_pem: None,
            user: None,
            auth: crate::cluster::doctor::kubeconfig::UserAuth::NoUser,
        };
        let client = ApiClient::new(&target, SecretString::from("t")).unwrap();
        assert_eq!(
            client
                .url("/apis/authentication.k8s.io/v1/selfsubjectreviews")
                .as_str(),
            "https://rancher.example/k8s/clusters/c-1/apis/authentication.k8s.io/v1/selfsubjectreviews"
        );
    }
}
