//! The kubeconfig file (kubectl's `Config`, version v1), typed as far as koidc reads or writes
//! it: `setup` writes users' exec entries into it and renders the apiserver's webhook config in
//! its shape, `doctor` reads which cluster, CA and exec command a context uses.
//!
//! Each mapping keeps what koidc does not know in an `extra` map, so a kubeconfig koidc rewrites
//! loses none of the user's other settings (`proxy-url`, `extensions`, another plugin's
//! fields...). Lists and sections may be missing or `null`: they are `None` then, and stay out of
//! a rewritten file. A user's credentials (tokens, keys, passwords, exec `env` values) never
//! show in `Debug`.
//!
//! The fields koidc knows are declared in alphabetical order of their kubeconfig names, so the
//! YAML koidc writes lists them as it always did; unknown fields follow them.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Fields of a mapping koidc does not interpret, kept as they are.
pub type Extra = BTreeMap<String, Value>;

/// A kubeconfig file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Kubeconfig {
    /// `apiVersion` (`v1`).
    #[serde(rename = "apiVersion", default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `clusters`: where the apiservers are and how to trust them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<Vec<NamedCluster>>,
    /// `contexts`: a cluster and a user, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contexts: Option<Vec<NamedContext>>,
    /// `current-context`.
    #[serde(rename = "current-context", default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    /// `kind` (`Config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `preferences`, opaque to koidc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferences: Option<Extra>,
    /// `users`: how to get credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<NamedUser>>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Kubeconfig {
    /// An empty kubeconfig as `kubectl config` starts one: every section present and empty.
    pub fn empty() -> Self {
        Self {
            api_version: Some("v1".into()),
            clusters: Some(Vec::new()),
            contexts: Some(Vec::new()),
            current_context: Some(String::new()),
            kind: Some("Config".into()),
            preferences: Some(Extra::new()),
            users: Some(Vec::new()),
            extra: Extra::new(),
        }
    }

    /// The clusters (none when the section is missing).
    pub fn clusters(&self) -> &[NamedCluster] {
        self.clusters.as_deref().unwrap_or_default()
    }

    /// The contexts (none when the section is missing).
    pub fn contexts(&self) -> &[NamedContext] {
        self.contexts.as_deref().unwrap_or_default()
    }

    /// The users (none when the section is missing).
    pub fn users(&self) -> &[NamedUser] {
        self.users.as_deref().unwrap_or_default()
    }

    /// Puts `user` in place of the user of the same name, or after the others.
    pub fn set_user(&mut self, user: NamedUser) {
        let users = self.users.get_or_insert_with(Vec::new);
        match users.iter_mut().find(|u| u.name == user.name) {
            Some(existing) => *existing = user,
            None => users.push(user),
        }
    }
}

/// A `clusters[]` item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedCluster {
    /// `cluster`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Cluster>,
    /// `name`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A cluster: its apiserver and how to trust it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    /// `certificate-authority`: a PEM file, relative to the kubeconfig's directory.
    #[serde(
        rename = "certificate-authority",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate_authority: Option<String>,
    /// `certificate-authority-data`: base64 of PEM certificates.
    #[serde(
        rename = "certificate-authority-data",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate_authority_data: Option<String>,
    /// `insecure-skip-tls-verify`
    #[serde(
        rename = "insecure-skip-tls-verify",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub insecure_skip_tls_verify: Option<bool>,
    /// `server`: the apiserver's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A `contexts[]` item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedContext {
    /// `context`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
    /// `name`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A context: a cluster and a user, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// `cluster`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// `user`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Everything else (`namespace`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A `users[]` item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedUser {
    /// `name`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `user`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A user: how kubectl gets credentials. Only the exec plugin and the client certificate's
/// paths are typed; the other ways (tokens, keys, passwords, auth providers) are kept in
/// `extra`, which `Debug` shows by key only.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// `client-certificate`: a PEM file.
    #[serde(
        rename = "client-certificate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_certificate: Option<String>,
    /// `client-key`: a PEM file.
    #[serde(rename = "client-key", default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    /// `exec`: a credential plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Exec>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

impl User {
    /// True when `key` (a kubeconfig field name such as `token`) is set to something else than
    /// `null`.
    pub fn has(&self, key: &str) -> bool {
        match key {
            "client-certificate" => self.client_certificate.is_some(),
            "client-key" => self.client_key.is_some(),
            "exec" => self.exec.is_some(),
            _ => self.extra.get(key).is_some_and(|v| !v.is_null()),
        }
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("client_certificate", &self.client_certificate)
            .field("client_key", &self.client_key)
            .field("exec", &self.exec)
            .field("extra (keys only)", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// An exec credential plugin (`users[].user.exec`). Its `Debug` names the arguments' count only:
/// a hand-written entry may carry a secret in them (`--client-secret=…`).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Exec {
    /// `apiVersion` of the ExecCredential exchanged.
    #[serde(rename = "apiVersion", default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `args`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// `command`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// `env`: variables set for the plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<ExecEnv>>,
    /// `installHint`: shown when the command is missing.
    #[serde(rename = "installHint", default, skip_serializing_if = "Option::is_none")]
    pub install_hint: Option<String>,
    /// `interactiveMode`: `Never`, `IfAvailable` or `Always`.
    #[serde(rename = "interactiveMode", default, skip_serializing_if = "Option::is_none")]
    pub interactive_mode: Option<String>,
    /// `provideClusterInfo`: whether the plugin gets the cluster in `KUBERNETES_EXEC_INFO`.
    #[serde(
        rename = "provideClusterInfo",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub provide_cluster_info: Option<bool>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

impl std::fmt::Debug for Exec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exec")
            .field("api_version", &self.api_version)
            .field("command", &self.command)
            .field(
                "args",
                &self.args.as_ref().map(|a| format!("[{} arguments]", a.len())),
            )
            .field("env", &self.env)
            .field("interactive_mode", &self.interactive_mode)
            .field("provide_cluster_info", &self.provide_cluster_info)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// One `exec.env` item. Its value may be a secret (a client secret): it is a [`SecretString`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecEnv {
    /// `name`
    pub name: String,
    /// `value`
    #[serde(serialize_with = "expose", deserialize_with = "secret")]
    pub value: SecretString,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

impl PartialEq for ExecEnv {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.value.expose_secret() == other.value.expose_secret()
            && self.extra == other.extra
    }
}

fn expose<S: Serializer>(value: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value.expose_secret())
}

fn secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SecretString, D::Error> {
    String::deserialize(deserializer).map(SecretString::from)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_kubeconfig_with_fields_koidc_does_not_know_keeps_them_through_a_round_trip() {
        let text = "apiVersion: v1\nkind: Config\n\
                    clusters:\n- name: c\n  cluster:\n    server: https://a:6443\n    proxy-url: http://proxy:3128\n    extensions: [{name: x, extension: {a: 1}}]\n\
                    contexts:\n- name: x\n  context: {cluster: c, user: u, namespace: apps}\n\
                    current-context: x\n\
                    users:\n- name: u\n  user: {token: t0ken, exec: {command: koidc, future: kept}}\n  note: kept\n\
                    preferences: {colors: true}\n\
                    extensions: [{name: e, extension: {b: 2}}]\n";
        let config: Kubeconfig = serde_saphyr::from_str(text).unwrap();
        let cluster = config.clusters()[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://a:6443"));
        assert_eq!(cluster.extra["proxy-url"], "http://proxy:3128");
        assert_eq!(
            config.contexts()[0].context.as_ref().unwrap().extra["namespace"],
            "apps"
        );
        let user = &config.users()[0];
        assert_eq!(user.extra["note"], "kept");
        assert!(user.user.as_ref().unwrap().has("token"));
        assert_eq!(
            user.user.as_ref().unwrap().exec.as_ref().unwrap().extra["future"],
            "kept"
        );

        let again: Kubeconfig = serde_saphyr::from_str(&serde_saphyr::to_string(&config).unwrap()).unwrap();
        assert_eq!(again, config);
        // The same as a generic document: nothing was lost or added.
        let before: Value = serde_saphyr::from_str(text).unwrap();
        assert_eq!(serde_json::to_value(&config).unwrap(), before);
    }

    #[test]
    fn exec_entries_read_env_args_cluster_info_and_interactive_mode_and_hide_env_values() {
        let config: Kubeconfig = serde_json::from_value(json!({"users": [{"name": "oidc", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "koidc",
            "args": ["get-token", "--issuer=https://i"],
            "env": [{"name": "KOIDC_CLIENT_SECRET", "value": "s3cret"}],
            "token": "x-extra-s3cret",
            "provideClusterInfo": true,
            "interactiveMode": "Never",
        }}}]}))
        .unwrap();
        let user = config.users()[0].user.as_ref().unwrap();
        let exec = user.exec.as_ref().unwrap();
        assert_eq!(exec.command.as_deref(), Some("koidc"));
        assert_eq!(exec.args.as_deref().unwrap(), ["get-token", "--issuer=https://i"]);
        assert_eq!(exec.provide_cluster_info, Some(true));
        assert_eq!(exec.interactive_mode.as_deref(), Some("Never"));
        let env = &exec.env.as_ref().unwrap()[0];
        assert_eq!(env.name, "KOIDC_CLIENT_SECRET");
        assert_eq!(env.value.expose_secret(), "s3cret");
        // Written back as it was; never shown in Debug.
        assert_eq!(
            serde_json::to_value(&config).unwrap()["users"][0]["user"]["exec"]["env"],
            json!([{"name": "KOIDC_CLIENT_SECRET", "value": "s3cret"}])
        );
        assert!(!format!("{config:?}").contains("s3cret"), "{config:?}");
        // A hand-written entry may carry a secret in its arguments.
        let mut with_secret = exec.clone();
        with_secret.args = Some(vec!["--client-secret=hunter2".into()]);
        assert!(!format!("{with_secret:?}").contains("hunter2"), "{with_secret:?}");
    }

    #[test]
    fn other_credentials_show_in_debug_by_name_only() {
        let config: Kubeconfig = serde_json::from_value(json!({"users": [{"name": "admin", "user": {
            "token": "t0ken", "client-key-data": "a2V5", "password": "pa55"}}]}))
        .unwrap();
        let debug = format!("{config:?}");
        for secret in ["t0ken", "a2V5", "pa55"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("client-key-data"), "{debug}");
    }

    #[test]
    fn missing_and_null_sections_read_as_none_and_stay_out_of_the_file() {
        let config: Kubeconfig = serde_saphyr::from_str("clusters:\nusers: ~\ncurrent-context: x\n").unwrap();
        assert!(config.clusters.is_none() && config.users.is_none() && config.contexts.is_none());
        assert!(config.clusters().is_empty() && config.users().is_empty());
        assert_eq!(
            serde_json::to_value(&config).unwrap(),
            json!({"current-context": "x"})
        );
        let item: NamedUser = serde_json::from_value(json!({"user": {}})).unwrap();
        assert_eq!(
            (item.name, item.user.map(|u| u.has("token"))),
            (None, Some(false))
        );
    }

    #[test]
    fn set_user_replaces_the_user_of_that_name_and_adds_others_last() {
        let named = |name: &str, token: &str| NamedUser {
            name: Some(name.into()),
            user: Some(User {
                extra: Extra::from([("token".to_owned(), json!(token))]),
                ..User::default()
            }),
            extra: Extra::new(),
        };
        let mut config = Kubeconfig::default();
        config.set_user(named("a", "1"));
        config.set_user(named("b", "2"));
        config.set_user(named("a", "3"));
        assert_eq!(config.users(), [named("a", "3"), named("b", "2")]);
        assert_eq!(
            serde_json::to_value(Kubeconfig::empty()).unwrap(),
            json!({"apiVersion": "v1", "kind": "Config", "clusters": [], "contexts": [],
                   "current-context": "", "preferences": {}, "users": []})
        );
    }
}
