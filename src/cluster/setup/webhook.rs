//! What the apiserver needs to accept GitHub tokens through `koidc webhook` (`setup --provider
//! github`): the kubeconfig kube-apiserver reads with `--authentication-token-webhook-config-file`
//! (the webhook's URL and CA, the apiserver's client certificate), the flags that use it, and the
//! `koidc webhook` command line that matches these choices. The webhook server itself is
//! [`crate::cluster::webhook`].

use crate::kubeconfig::{Cluster, Context, Extra, Kubeconfig, NamedCluster, NamedContext, NamedUser, User};
use crate::login::github::{DEFAULT_URL, GithubUrls};

/// The default username and groups prefix of `koidc webhook` (and so of `setup --provider
/// github`).
pub const PREFIX: &str = "github:";

/// Where the admin is told to save the webhook config file.
pub const WEBHOOK_CONFIG_PATH: &str = "/etc/kubernetes/koidc-github-webhook.yaml";

/// Where the printed webhook command reads the app's client secret from.
pub const CLIENT_SECRET_FILE: &str = "/etc/koidc/github-client-secret";

/// How kube-apiserver authenticates to the webhook: paths, on the control plane, of its client
/// certificate and key (PEM), written as `client-certificate` / `client-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertPaths {
    /// The certificate file.
    pub cert: String,
    /// The private key file.
    pub key: String,
}

/// The kubeconfig kube-apiserver reads with `--authentication-token-webhook-config-file`: one
/// cluster (the webhook's URL and CA), one user (the apiserver's client certificate, when
/// given), one context.
pub fn apiserver_kubeconfig(url: &str, ca_pem: Option<&str>, client: Option<&ClientCertPaths>) -> Kubeconfig {
    use base64::Engine as _;
    const NAME: &str = "koidc-github-webhook";
    const USER: &str = "kube-apiserver";
    Kubeconfig {
        api_version: Some("v1".into()),
        clusters: Some(vec![NamedCluster {
            name: Some(NAME.into()),
            cluster: Some(Cluster {
                server: Some(url.into()),
                certificate_authority_data: ca_pem
                    .map(|pem| base64::engine::general_purpose::STANDARD.encode(pem)),
                ..Cluster::default()
            }),
            extra: Extra::new(),
        }]),
        contexts: Some(vec![NamedContext {
            name: Some(NAME.into()),
            context: Some(Context {
                cluster: Some(NAME.into()),
                user: Some(USER.into()),
                extra: Extra::new(),
            }),
            extra: Extra::new(),
        }]),
        current_context: Some(NAME.into()),
        kind: Some("Config".into()),
        preferences: None,
        users: Some(vec![NamedUser {
            name: Some(USER.into()),
            user: Some(User {
                client_certificate: client.map(|c| c.cert.clone()),
                client_key: client.map(|c| c.key.clone()),
                ..User::default()
            }),
            extra: Extra::new(),
        }]),
        extra: Extra::new(),
    }
}

/// The kube-apiserver flags that use the webhook config file at `path`.
pub fn apiserver_flags(path: &str) -> Vec<String> {
    vec![
        format!("--authentication-token-webhook-config-file={path}"),
        "--authentication-token-webhook-version=v1".to_owned(),
    ]
}

/// The `koidc webhook` command line matching these choices.
pub fn webhook_command(
    url: &url::Url,
    urls: &GithubUrls,
    client_id: &str,
    client_ca: bool,
    orgs: &[String],
    username_prefix: &str,
    groups_prefix: &str,
) -> String {
    let port = url.port_or_known_default().unwrap_or(443);
    let mut words = vec!["koidc webhook".to_owned()];
    if orgs.is_empty() {
        words.push("--org <your-org>".into());
    } else {
        words.extend(orgs.iter().map(|o| format!("--org {o}")));
    }
    words.push(format!(
        "--client-id {client_id} --client-secret-file {CLIENT_SECRET_FILE}"
    ));
    words.push(format!("--listen 0.0.0.0:{port}"));
    words.push("--tls-cert-file webhook.crt --tls-private-key-file webhook.key".into());
    if client_ca {
        words.push("--client-ca-file apiserver-client-ca.crt".into());
    }
    if urls.web != DEFAULT_URL {
        words.push(format!("--github-url {}", urls.web));
    }
    if username_prefix != PREFIX {
        words.push(format!("--username-prefix '{username_prefix}'"));
    }
    if groups_prefix != PREFIX {
        words.push(format!("--groups-prefix '{groups_prefix}'"));
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn to_value(config: Kubeconfig) -> Value {
        serde_json::to_value(config).unwrap()
    }

    #[test]
    fn apiserver_kubeconfig_names_the_url_and_embeds_the_ca() {
        let cfg = to_value(apiserver_kubeconfig("https://127.0.0.1:8443/", Some("PEM"), None));
        assert_eq!(cfg["users"][0]["user"], json!({}));
        let with_cert = to_value(apiserver_kubeconfig(
            "https://127.0.0.1:8443/",
            None,
            Some(&ClientCertPaths {
                cert: "/etc/kubernetes/pki/koidc-webhook-client.crt".into(),
                key: "/etc/kubernetes/pki/koidc-webhook-client.key".into(),
            }),
        ));
        assert_eq!(
            with_cert["users"][0]["user"],
            json!({
                "client-certificate": "/etc/kubernetes/pki/koidc-webhook-client.crt",
                "client-key": "/etc/kubernetes/pki/koidc-webhook-client.key",
            })
        );
        assert!(
            with_cert["clusters"][0]["cluster"]
                .get("certificate-authority-data")
                .is_none()
        );
        assert_eq!(cfg["clusters"][0]["cluster"]["server"], "https://127.0.0.1:8443/");
        assert_eq!(
            cfg["clusters"][0]["cluster"]["certificate-authority-data"],
            "UEVN"
        );
        assert_eq!(cfg["current-context"], "koidc-github-webhook");
        assert_eq!(
            cfg,
            json!({
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "koidc-github-webhook", "cluster": {
                    "server": "https://127.0.0.1:8443/", "certificate-authority-data": "UEVN"}}],
                "users": [{"name": "kube-apiserver", "user": {}}],
                "contexts": [{"name": "koidc-github-webhook",
                              "context": {"cluster": "koidc-github-webhook", "user": "kube-apiserver"}}],
                "current-context": "koidc-github-webhook",
            })
        );
        assert_eq!(
            apiserver_flags("/etc/k.yaml"),
            [
                "--authentication-token-webhook-config-file=/etc/k.yaml",
                "--authentication-token-webhook-version=v1"
            ]
        );
    }

    #[test]
    fn webhook_command_lists_orgs_and_non_default_settings() {
        let url = url::Url::parse("https://10.0.0.5:9443/").unwrap();
        let urls = GithubUrls::new(None, None).unwrap();
        let cmd = webhook_command(&url, &urls, "Ov23abc", false, &["acme".into()], PREFIX, PREFIX);
        assert!(
            cmd.contains("--org acme") && cmd.contains("--listen 0.0.0.0:9443"),
            "{cmd}"
        );
        assert!(
            cmd.contains("--client-id Ov23abc --client-secret-file /etc/koidc/github-client-secret"),
            "{cmd}"
        );
        assert!(
            !cmd.contains("--groups-prefix") && !cmd.contains("--client-ca-file"),
            "{cmd}"
        );
        let cmd = webhook_command(&url, &urls, "Ov23abc", true, &[], PREFIX, "");
        assert!(cmd.contains("--client-ca-file apiserver-client-ca.crt"), "{cmd}");
        assert!(
            cmd.contains("--org <your-org>") && cmd.contains("--groups-prefix ''"),
            "{cmd}"
        );
    }
}
