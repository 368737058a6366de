//! What the cluster side needs to trust an issuer, generated from one set of choices.
//!
//! `koidc setup` prints three things that must agree with each other — the kube-apiserver's
//! authentication settings (an `AuthenticationConfiguration` file, or the legacy `--oidc-*`
//! flags), the user's kubeconfig exec entry, and the RBAC subjects `koidc bind-group` writes —
//! and the classic failure is a prefix or claim that differs between them. This module builds all
//! three from one [`ClusterAuth`], and lists the known traps as warnings. It also says what a
//! kubeconfig still lacks after the user entry was written (the kubectl commands that add the
//! cluster and a context), and how a client secret reaches the entry without being written.
//! [`write`](mod@write) puts the entry into the user's kubeconfig file; [`webhook`] renders the apiserver's
//! side of a cluster that checks GitHub tokens with `koidc webhook`; [`ci`] the authenticator
//! that admits CI jobs with their own identity tokens (`setup --ci`).

pub mod ci;
pub mod webhook;
pub mod write;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::cli::options;
use crate::cli::{GetTokenArgs, IdentityFlags, LoginFlags, ProviderArg};
use crate::kubeconfig::{Exec, Kubeconfig, NamedUser, User};
use crate::login::token::IdTokenInfo;

/// Why `setup` cannot produce its output.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A `--certificate-authority` file or `--certificate-authority-data` cannot be used.
    #[error(transparent)]
    Ca(#[from] crate::http::CaError),
    /// `--embed-ca` without a CA to embed.
    #[error(
        "--embed-ca puts the IdP's CA into the kubeconfig entry, but none was given: add \
         --certificate-authority FILE (or drop --embed-ca when a public CA signed the IdP's certificate)"
    )]
    NothingToEmbed,
    /// The output cannot be rendered as YAML.
    #[error("cannot render YAML")]
    Yaml(#[source] serde_saphyr::SerializeError),
}

/// The choices that decide how the apiserver maps a token to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterAuth {
    /// Issuer URL, byte for byte as in the tokens.
    pub issuer: String,
    /// Client id: the audience the apiserver requires.
    pub client_id: String,
    /// Claim holding the username (`email` by default).
    pub username_claim: String,
    /// Prefix in front of usernames (may be empty).
    pub username_prefix: String,
    /// Claim holding the groups (`groups` by default).
    pub groups_claim: String,
    /// Prefix in front of group names (may be empty).
    pub groups_prefix: String,
    /// The issuer's CA (PEM text), when it is not publicly trusted.
    pub ca_pem: Option<String>,
}

/// The kubeconfig side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// The kubeconfig user name.
    pub name: String,
    /// The command kubectl runs (`koidc`, or an absolute path).
    pub command: String,
    /// Arguments after the command (`get-token …`).
    pub args: Vec<String>,
}

/// The `AuthenticationConfiguration` (apiserver.config.k8s.io/v1) for `auth`.
pub fn authentication_configuration(auth: &ClusterAuth) -> Value {
    let mut issuer = json!({ "url": auth.issuer, "audiences": [auth.client_id] });
    if let Some(pem) = &auth.ca_pem {
        issuer["certificateAuthority"] = json!(pem);
    }
    json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AuthenticationConfiguration",
        "jwt": [{
            "issuer": issuer,
            "claimMappings": {
                "username": { "claim": auth.username_claim, "prefix": auth.username_prefix },
                "groups": { "claim": auth.groups_claim, "prefix": auth.groups_prefix },
            },
        }],
    })
}

/// The equivalent legacy kube-apiserver flags (`ca_file` is where the CA file will be on the
/// control plane).
pub fn apiserver_flags(auth: &ClusterAuth, ca_file: Option<&str>) -> Vec<String> {
    // For the flags, an empty prefix must be written as "-": empty means "<issuer>#" there.
    let prefix = |p: &str| {
        if p.is_empty() {
            "-".to_owned()
        } else {
            p.to_owned()
        }
    };
    let mut flags = vec![
        format!("--oidc-issuer-url={}", auth.issuer),
        format!("--oidc-client-id={}", auth.client_id),
        format!("--oidc-username-claim={}", auth.username_claim),
        format!("--oidc-username-prefix={}", prefix(&auth.username_prefix)),
        format!("--oidc-groups-claim={}", auth.groups_claim),
        format!("--oidc-groups-prefix={}", auth.groups_prefix),
    ];
    if let Some(file) = ca_file {
        flags.push(format!("--oidc-ca-file={file}"));
    }
    flags
}

/// The kubeconfig `users[]` item, in the shape `kubectl config set-credentials --exec-…` writes.
pub fn kubeconfig_user(user: &ExecUser) -> NamedUser {
    NamedUser {
        name: Some(user.name.clone()),
        user: Some(User {
            exec: Some(Exec {
                api_version: Some("client.authentication.k8s.io/v1".into()),
                args: Some(user.args.clone()),
                command: Some(user.command.clone()),
                install_hint: Some(INSTALL_HINT.into()),
                interactive_mode: Some("IfAvailable".into()),
                provide_cluster_info: Some(false),
                ..Exec::default()
            }),
            ..User::default()
        }),
        extra: Default::default(),
    }
}

/// koidc's repository, as `REPOSITORY` (a macro, so that [`INSTALL_HINT`] can be one literal).
macro_rules! repository {
    () => {
        "https://github.com/OWNER/koidc"
    };
}

#[cfg(test)]
/// Where koidc is published. A placeholder: replace OWNER at publication, here and in README.md
/// and krew/koidc.yaml (a test checks that the three agree).
pub const REPOSITORY: &str = repository!();

/// Shown by kubectl when the `koidc` command is missing.
pub const INSTALL_HINT: &str = concat!(
    "koidc logs you in to this cluster with your company identity. Install it from ",
    repository!(),
    " with ./install.sh (it also installs the kubectl-koidc plugin link), or as a kubectl plugin with \
     `kubectl krew install --manifest=krew/koidc.yaml` from that repository (then the exec command is \
     kubectl-koidc)."
);

/// The variable `get-token` reads the client secret from.
pub const CLIENT_SECRET_VAR: &str = "KOIDC_CLIENT_SECRET";

/// What `setup` says when a client secret was given: the kubeconfig entry never holds it, and
/// how to add it to the entry's `exec.env` (`var`: the variable get-token reads it from). The
/// secret itself is never part of the text.
pub fn client_secret_hint(user: &str, var: &str) -> String {
    format!(
        "the client secret is not written into the kubeconfig: kubectl passes the exec entry's env to koidc, \
         so each user adds it to their own copy as the variable {var} under `exec:` of user {user:?} (a \
         kubeconfig holding it must be readable by its user only):\n    env:\n    - name: {var}\n      value: <the client secret>"
    )
}

/// The `get-token` arguments that make the entry trust the IdP's CA: by the files' paths
/// (`--certificate-authority=`), and `data` as given; or, with `embed` (the PEM text of all of
/// them), that text as `--certificate-authority-data=` (base64) instead, so the entry needs no
/// file of this machine.
pub fn ca_args(files: &[PathBuf], data: Option<&str>, embed: Option<&str>) -> Vec<String> {
    use base64::Engine as _;
    let login = match embed {
        Some(pem) => LoginFlags {
            certificate_authority_data: Some(base64::engine::general_purpose::STANDARD.encode(pem)),
            ..LoginFlags::default()
        },
        None => LoginFlags {
            certificate_authorities: Some(files.to_vec()),
            certificate_authority_data: data.map(|d| d.trim().to_owned()),
            ..LoginFlags::default()
        },
    };
    options::option_words(&GetTokenArgs {
        login,
        ..GetTokenArgs::default()
    })
}

/// The PEM text of the IdP's CAs (the `--certificate-authority` `files`, then the
/// `--certificate-authority-data` `data`), `None` when none is given.
pub fn read_cas(files: &[PathBuf], data: Option<&str>) -> Result<Option<String>, SetupError> {
    let cas = crate::http::ExtraCas::load(files, data)?;
    Ok((!cas.is_empty()).then(|| cas.pem()))
}

/// The IdP's CAs ([`read_cas`] of the `--certificate-authority` `files` and the
/// `--certificate-authority-data` `data`) and the `get-token` arguments that make the kubeconfig
/// entry trust them ([`ca_args`]); with `embed` (`--embed-ca`), their text as data, which must
/// exist.
pub fn entry_cas(
    files: &[PathBuf],
    data: Option<&str>,
    embed: bool,
) -> Result<(Option<String>, Vec<String>), SetupError> {
    let pem = read_cas(files, data)?;
    let embed = if embed {
        Some(pem.as_deref().ok_or(SetupError::NothingToEmbed)?)
    } else {
        None
    };
    let args = ca_args(files, data, embed);
    Ok((pem, args))
}

/// `text` (setup's whole output: YAML with comments) with every character that a YAML 1.1
/// reader such as kube-apiserver's takes for a line break although it is none here (U+0085,
/// U+2028, U+2029) replaced by `?`. The YAML emitter escapes them inside values; in a comment
/// that quotes a flag's value, a raw one would end the comment and let the rest of the value be
/// read as configuration.
pub fn yaml_safe(text: &str) -> std::borrow::Cow<'_, str> {
    const BREAKS: [char; 3] = ['\u{85}', '\u{2028}', '\u{2029}'];
    if text.contains(BREAKS) {
        std::borrow::Cow::Owned(text.replace(BREAKS, "?"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// `value` as YAML, ending with a line break.
pub fn yaml(value: &impl serde::Serialize) -> Result<String, SetupError> {
    let mut text = serde_saphyr::to_string(value).map_err(SetupError::Yaml)?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// The kubectl commands that complete `kubeconfig` (at `path`) for the user `user`, one per
/// line; empty when a context already uses that user. The parts only the admin knows are
/// `<…>` placeholders: `<cluster>` (unless the file has exactly one cluster),
/// `<https://apiserver:6443>` and `<apiserver-ca.crt>`.
pub fn completion_commands(kubeconfig: &Kubeconfig, user: &str, path: &Path) -> Vec<String> {
    let used = kubeconfig.contexts().iter().any(|c| {
        c.context
            .as_ref()
            .is_some_and(|c| c.user.as_deref() == Some(user))
    });
    if used {
        return Vec::new();
    }
    let file = format!("--kubeconfig={}", shell_word(&path.display().to_string()));
    let clusters: Vec<&str> = kubeconfig
        .clusters()
        .iter()
        .filter_map(|c| c.name.as_deref())
        .collect();
    let mut commands = Vec::new();
    // A name kubectl would read as an option, or with control characters, is not printed.
    let cluster = match clusters.as_slice() {
        [only] if safe_argument(only) => shell_word(only),
        _ => "<cluster>".to_owned(),
    };
    if clusters.is_empty() {
        commands.push(format!(
            "kubectl config set-cluster {cluster} --server=<https://apiserver:6443> \
             --certificate-authority=<apiserver-ca.crt> --embed-certs {file}"
        ));
    }
    let context = format!("{}@{cluster}", shell_word(user));
    commands.push(format!(
        "kubectl config set-context {context} --cluster={cluster} --user={} {file}",
        shell_word(user)
    ));
    commands.push(format!("kubectl config use-context {context} {file}"));
    commands
}

pub use crate::text::shell_word;

/// True when `word`, shell-quoted, is one argument of a printed command that means what it says:
/// not an option to the command (a leading `-`) and free of control characters.
pub fn safe_argument(word: &str) -> bool {
    !word.starts_with('-') && !word.chars().any(char::is_control)
}

/// Puts `user` into `kubeconfig` (replacing a user of the same name), creating the skeleton of an
/// empty kubeconfig when needed. Other users, clusters and contexts, and every field koidc does
/// not know, are kept.
pub fn merge_user(kubeconfig: Option<Kubeconfig>, user: NamedUser) -> Kubeconfig {
    let mut config = kubeconfig.unwrap_or_else(Kubeconfig::empty);
    config.set_user(user);
    config
}

/// Known traps for these choices (and for the token's claims, when a login showed them).
pub fn warnings(auth: &ClusterAuth, scopes: &[String], claims: Option<&IdTokenInfo>) -> Vec<String> {
    let mut out = Vec::new();
    if auth.issuer.starts_with("http://") {
        out.push(format!(
            "the issuer {} uses http: kube-apiserver accepts only https issuers, so this works for local tests only",
            auth.issuer
        ));
    }
    if auth.username_claim == "sub" {
        out.push(
            "username claim `sub`: some providers (Dex among them) issue opaque subjects, which make \
             unreadable usernames; `email` is usually what you want"
                .into(),
        );
    }
    if auth.username_claim == "email" && !scopes.iter().any(|s| s == "email") {
        out.push("the username claim is `email` but the scopes lack `email`: add --scope email".into());
    }
    // A login that showed the groups needs no advice; Keycloak, which sends groups through a
    // mapper, refuses a `groups` scope it does not have.
    let groups_shown = claims.is_some_and(|info| info.claims.get(&auth.groups_claim).is_some());
    if auth.groups_claim == "groups" && !groups_shown && !scopes.iter().any(|s| s == "groups") {
        out.push(
            "the groups claim is `groups` but the scopes lack `groups`: if your provider has a \
             `groups` scope (Dex, Okta), add --scope groups; others (Keycloak) send groups through a mapper"
                .into(),
        );
    }
    for (what, prefix) in [
        ("username", &auth.username_prefix),
        ("groups", &auth.groups_prefix),
    ] {
        if !prefix.is_empty() && !prefix.ends_with(':') && !prefix.ends_with('-') && !prefix.ends_with('/') {
            out.push(format!(
                "the {what} prefix {prefix:?} has no separator: names will read like {prefix}name; \
                 did you mean \"{prefix}:\"?"
            ));
        }
    }
    if auth.groups_prefix.is_empty() {
        out.push(
            "no groups prefix: IdP groups share a namespace with Kubernetes' own groups \
             (e.g. a group named system:masters would be cluster-admin); a prefix such as \"oidc:\" is safer"
                .into(),
        );
    }
    if let Some(info) = claims {
        match info.claims.get(&auth.username_claim) {
            Some(Value::String(_)) => {}
            _ => out.push(format!(
                "the token has no string `{}` claim: the apiserver will reject it",
                auth.username_claim
            )),
        }
        if auth.username_claim == "email" && info.claims.get("email_verified") == Some(&Value::Bool(false)) {
            out.push("the token says email_verified: false; the apiserver rejects such tokens when the username claim is email".into());
        }
        if info.claims.get(&auth.groups_claim).is_none() {
            out.push(format!(
                "the token has no `{}` claim: group bindings will not match (request the groups scope, or configure the provider to send groups)",
                auth.groups_claim
            ));
        }
    }
    out
}

/// The `get-token` arguments for a kubeconfig entry (`ca`: from [`ca_args`]); `provider` when
/// given explicitly (`auto` is left out: get-token guesses the same from the issuer).
pub fn get_token_args(
    issuer: &str,
    client_id: &str,
    scopes: &[String],
    ca: Vec<String>,
    listen: &[String],
    provider: Option<ProviderArg>,
) -> Vec<String> {
    let mut args = options::get_token_argv(&GetTokenArgs {
        identity: IdentityFlags {
            issuer: Some(issuer.to_owned()),
            client_id: Some(client_id.to_owned()),
            scopes: Some(scopes.to_vec()),
            provider: provider.filter(|p| *p != ProviderArg::Auto),
            ..IdentityFlags::default()
        },
        login: LoginFlags {
            listen: options::entry_listen(listen),
            ..LoginFlags::default()
        },
        ..GetTokenArgs::default()
    });
    args.extend(ca);
    args
}

/// Where the printed audit flags put the policy file on the control plane.
pub const AUDIT_POLICY_PATH: &str = "/etc/kubernetes/koidc-audit-policy.yaml";

/// Where the printed audit flags put the audit log.
pub const AUDIT_LOG_PATH: &str = "/var/log/kubernetes/audit.log";

/// An audit policy (audit.k8s.io/v1) that records who did what: every event carries the
/// username and groups the apiserver derived from the ID token. Reads and everything else at
/// `Metadata`; changes to RBAC objects at `RequestResponse` (the object before and after);
/// secrets at `Metadata` only, because `Request` or `RequestResponse` would copy secret values
/// into the log. The kube-apiserver flags that enable it are comments at the top.
pub fn audit_policy() -> String {
    format!(
        r#"# koidc: who did what on this cluster, for people who log in with OpenID Connect.
#
# Every event names the user and groups the apiserver derived from the ID token
# (user.username such as "oidc:jane@example.com", user.groups such as
# ["oidc:developers", "system:authenticated"]), the verb, the object and the result.
#
# Save this file on the control plane and start kube-apiserver with:
#   --audit-policy-file={AUDIT_POLICY_PATH}
#   --audit-log-path={AUDIT_LOG_PATH}
#   --audit-log-maxage=30      # days to keep rotated log files
#   --audit-log-maxbackup=10   # rotated log files to keep
#   --audit-log-maxsize=100    # MiB before the log file is rotated
# (for a static-pod apiserver, also mount the policy file and the log directory).
apiVersion: audit.k8s.io/v1
kind: Policy
# One event per request, once the response is known.
omitStages:
  - RequestReceived
rules:
  # Health checks say nothing about people.
  - level: None
    nonResourceURLs: ["/healthz*", "/livez*", "/readyz*"]
  # Secrets, read or changed: who, which secret, when and the result, never the data.
  # RequestResponse (or Request) would copy the secret values in clear text into the
  # audit log, and so to everyone who can read the log or its backups.
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets"]
  # Tokens travel in the bodies of these requests: keep them at Metadata too.
  - level: Metadata
    resources:
      - group: "authentication.k8s.io"
        resources: ["tokenreviews"]
      - group: ""
        resources: ["serviceaccounts/token"]
  # Changes to RBAC: the whole request and response, so the log shows who gave whom
  # which rights.
  - level: RequestResponse
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
    resources:
      - group: "rbac.authorization.k8s.io"
  # Everything else, reads (get, list, watch) included: who, what, when, result.
  - level: Metadata
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn kubeconfig(value: Value) -> Kubeconfig {
        serde_json::from_value(value).unwrap()
    }

    pub(super) fn auth() -> ClusterAuth {
        ClusterAuth {
            issuer: "https://dex.example.com/dex".into(),
            client_id: "koidc".into(),
            username_claim: "email".into(),
            username_prefix: "oidc:".into(),
            groups_claim: "groups".into(),
            groups_prefix: "oidc:".into(),
            ca_pem: None,
        }
    }

    #[test]
    fn authentication_configuration_maps_claims_with_prefixes() {
        let cfg = authentication_configuration(&auth());
        assert_eq!(cfg["apiVersion"], "apiserver.config.k8s.io/v1");
        let jwt = &cfg["jwt"][0];
        assert_eq!(jwt["issuer"]["url"], "https://dex.example.com/dex");
        assert_eq!(jwt["issuer"]["audiences"], json!(["koidc"]));
        assert!(jwt["issuer"].get("certificateAuthority").is_none());
        assert_eq!(
            jwt["claimMappings"]["username"],
            json!({"claim": "email", "prefix": "oidc:"})
        );
        assert_eq!(
            jwt["claimMappings"]["groups"],
            json!({"claim": "groups", "prefix": "oidc:"})
        );
    }

    #[test]
    fn empty_username_prefix_is_a_dash_in_flags() {
        let mut a = auth();
        a.username_prefix.clear();
        let flags = apiserver_flags(&a, Some("/etc/kubernetes/dex-ca.pem"));
        assert!(flags.contains(&"--oidc-username-prefix=-".to_owned()));
        assert!(flags.contains(&"--oidc-groups-prefix=oidc:".to_owned()));
        assert!(flags.contains(&"--oidc-ca-file=/etc/kubernetes/dex-ca.pem".to_owned()));
    }

    #[test]
    fn merge_user_replaces_same_name_and_keeps_others() {
        let user = kubeconfig_user(&ExecUser {
            name: "oidc".into(),
            command: "koidc".into(),
            args: vec!["get-token".into()],
        });
        let existing = kubeconfig(json!({"apiVersion": "v1", "kind": "Config", "users": [
            {"name": "admin", "user": {"token": "x"}}, {"name": "oidc", "user": {"token": "old"}}]}));
        let merged = serde_json::to_value(merge_user(Some(existing), user.clone())).unwrap();
        let users = merged["users"].as_array().unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0]["name"], "admin");
        assert_eq!(users[1], serde_json::to_value(&user).unwrap());
        assert_eq!(users[1]["user"]["exec"]["interactiveMode"], "IfAvailable");
        let fresh = merge_user(None, user);
        assert_eq!(fresh.users().len(), 1);
        // What cannot hold a user is refused when the file is read.
        for not_a_kubeconfig in [json!([1]), json!({"users": 5})] {
            assert!(serde_json::from_value::<Kubeconfig>(not_a_kubeconfig).is_err());
        }
    }

    #[test]
    fn the_printed_user_entry_is_the_one_kubectl_would_write() {
        let user = kubeconfig_user(&ExecUser {
            name: "oidc".into(),
            command: "koidc".into(),
            args: vec!["get-token".into(), "--issuer=https://i".into()],
        });
        assert_eq!(
            yaml(&Kubeconfig {
                users: Some(vec![user]),
                ..Kubeconfig::default()
            })
            .unwrap(),
            // What koidc printed when the entry was a generic JSON value, byte for byte.
            yaml(&json!({"users": [{"name": "oidc", "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "args": ["get-token", "--issuer=https://i"],
                "command": "koidc",
                "installHint": INSTALL_HINT,
                "interactiveMode": "IfAvailable",
                "provideClusterInfo": false,
            }}}]}))
            .unwrap()
        );
    }

    #[test]
    fn kubeconfig_user_writes_no_env_key() {
        let user = kubeconfig_user(&ExecUser {
            name: "oidc".into(),
            command: "koidc".into(),
            args: vec!["get-token".into()],
        });
        let user = serde_json::to_value(user).unwrap();
        assert!(user["user"]["exec"].get("env").is_none(), "{user}");
    }

    #[test]
    fn the_install_hint_the_readme_and_the_krew_manifest_name_the_repository_placeholder() {
        const PLACEHOLDER: &str = REPOSITORY;
        assert!(PLACEHOLDER.contains("OWNER"), "{PLACEHOLDER}");
        assert!(INSTALL_HINT.contains(PLACEHOLDER), "{INSTALL_HINT}");
        for (file, text) in [
            ("README.md", include_str!("../../README.md")),
            ("krew/koidc.yaml", include_str!("../../krew/koidc.yaml")),
        ] {
            assert!(text.contains(PLACEHOLDER), "{file} does not name {PLACEHOLDER}");
            assert!(
                text.contains("replace OWNER"),
                "{file} does not say to replace OWNER at publication"
            );
        }
    }

    #[test]
    fn ca_args_name_the_files_or_embed_their_text() {
        let files = ["/etc/dex-ca.pem".into(), "/tmp/second.pem".into()];
        assert_eq!(
            ca_args(&files, Some(" QUJD\n"), None),
            [
                "--certificate-authority=/etc/dex-ca.pem",
                "--certificate-authority=/tmp/second.pem",
                "--certificate-authority-data=QUJD"
            ]
        );
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let embedded = ca_args(&files, None, Some(pem));
        assert_eq!(embedded.len(), 1, "{embedded:?}");
        let data = embedded[0].strip_prefix("--certificate-authority-data=").unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD.decode(data).unwrap(),
            pem.as_bytes()
        );
        assert!(ca_args(&[], None, None).is_empty());
    }

    #[test]
    fn completion_commands_add_what_the_kubeconfig_lacks_for_the_user() {
        let path = Path::new("/home/a b/.kube/config");
        let empty = merge_user(
            None,
            NamedUser {
                name: Some("oidc".into()),
                ..NamedUser::default()
            },
        );
        let commands = completion_commands(&empty, "oidc", path);
        assert_eq!(
            commands,
            [
                "kubectl config set-cluster <cluster> --server=<https://apiserver:6443> \
                 --certificate-authority=<apiserver-ca.crt> --embed-certs --kubeconfig='/home/a b/.kube/config'",
                "kubectl config set-context oidc@<cluster> --cluster=<cluster> --user=oidc --kubeconfig='/home/a b/.kube/config'",
                "kubectl config use-context oidc@<cluster> --kubeconfig='/home/a b/.kube/config'",
            ]
        );
        // One cluster: its name, and no set-cluster.
        let one = kubeconfig(
            json!({"clusters": [{"name": "prod", "cluster": {}}], "contexts": [
            {"name": "admin", "context": {"cluster": "prod", "user": "admin"}}]}),
        );
        let commands = completion_commands(&one, "my user", Path::new("k"));
        assert_eq!(
            commands,
            [
                "kubectl config set-context 'my user'@prod --cluster=prod --user='my user' --kubeconfig=k",
                "kubectl config use-context 'my user'@prod --kubeconfig=k",
            ]
        );
        // Several clusters: the admin picks one.
        let two = kubeconfig(json!({"clusters": [{"name": "a"}, {"name": "b"}]}));
        assert!(completion_commands(&two, "oidc", Path::new("k"))[0].contains("--cluster=<cluster>"));
        // A context uses the user already: nothing to add.
        let used = kubeconfig(json!({"clusters": [{"name": "a"}], "contexts": [
            {"name": "x", "context": {"cluster": "a", "user": "oidc"}}]}));
        assert!(completion_commands(&used, "oidc", Path::new("k")).is_empty());
    }

    #[test]
    fn a_cluster_name_kubectl_would_read_as_an_option_is_not_printed_into_the_commands() {
        for hostile in ["--kubeconfig=/tmp/evil", "p\u{1b}[31m\nx"] {
            let config = kubeconfig(json!({"clusters": [{"name": hostile}], "contexts": []}));
            let commands = completion_commands(&config, "oidc", Path::new("/k"));
            assert!(
                commands
                    .iter()
                    .all(|c| !c.contains(hostile) && c.contains("<cluster>")),
                "{commands:?}"
            );
        }
    }

    #[test]
    fn the_client_secret_hint_names_the_variable_and_never_a_value() {
        let hint = client_secret_hint("oidc", "KOIDC_CLIENT_SECRET");
        assert!(
            hint.starts_with("the client secret is not written into the kubeconfig"),
            "{hint}"
        );
        assert!(
            hint.contains("\n    - name: KOIDC_CLIENT_SECRET\n      value: <the client secret>"),
            "{hint}"
        );
    }

    #[test]
    fn warnings_name_the_known_traps() {
        let mut a = auth();
        a.issuer = "http://127.0.0.1:5556/dex".into();
        a.username_claim = "sub".into();
        a.groups_prefix = "oidc".into();
        let w = warnings(&a, &[], None).join("\n");
        assert!(w.contains("https"), "{w}");
        assert!(w.contains("opaque"), "{w}");
        assert!(w.contains("--scope groups"), "{w}");
        assert!(w.contains("\"oidc:\""), "{w}");
        assert!(warnings(&auth(), &["email".into(), "groups".into()], None).is_empty());
    }

    #[test]
    fn a_login_that_showed_the_groups_is_not_told_to_ask_for_a_groups_scope_keycloak_refuses() {
        let info = |claims: Value| IdTokenInfo {
            issuer: "https://kc.example/realms/r".into(),
            audiences: vec!["koidc".into()],
            expiry: chrono::Utc::now(),
            issued_at: None,
            claims,
        };
        let email = ["email".to_string()];
        let shown = info(json!({"email": "a@example.com", "groups": ["dev"]}));
        let w = warnings(&auth(), &email, Some(&shown)).join("\n");
        assert!(!w.contains("--scope groups"), "{w}");
        let missing = info(json!({"email": "a@example.com"}));
        let w = warnings(&auth(), &email, Some(&missing)).join("\n");
        assert!(
            w.contains("--scope groups") && w.contains("no `groups` claim"),
            "{w}"
        );
    }

    #[test]
    fn audit_policy_records_rbac_changes_in_full_and_secrets_only_as_metadata() {
        let text = audit_policy();
        let policy: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(policy["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(policy["kind"], "Policy");
        assert_eq!(policy["omitStages"], json!(["RequestReceived"]));
        let rules = policy["rules"].as_array().unwrap();
        let full: Vec<&Value> = rules
            .iter()
            .filter(|r| r["level"] != "Metadata" && r["level"] != "None")
            .collect();
        assert_eq!(
            full.len(),
            1,
            "only RBAC changes are recorded beyond Metadata: {rules:?}"
        );
        assert_eq!(full[0]["level"], "RequestResponse");
        assert_eq!(
            full[0]["resources"],
            json!([{"group": "rbac.authorization.k8s.io"}])
        );
        assert_eq!(
            full[0]["verbs"],
            json!(["create", "update", "patch", "delete", "deletecollection"])
        );
        // Secrets are matched (at Metadata) before any broader rule could.
        let secrets = rules
            .iter()
            .position(|r| r["resources"][0]["resources"] == json!(["secrets"]))
            .unwrap();
        assert_eq!(rules[secrets]["level"], "Metadata");
        assert!(secrets < rules.len() - 1);
        // The catch-all rule, last: Metadata for reads and everything else.
        assert_eq!(rules.last().unwrap(), &json!({"level": "Metadata"}));
        for flag in ["--audit-policy-file=", "--audit-log-path=", "--audit-log-maxage="] {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("#   {flag}"))),
                "{flag} missing"
            );
        }
    }

    #[test]
    fn get_token_args_skip_the_default_listen_address() {
        let args = get_token_args(
            "https://i",
            "c",
            &["groups".into()],
            Vec::new(),
            &["127.0.0.1:0".into()],
            None,
        );
        assert_eq!(
            args,
            vec![
                "get-token",
                "--issuer=https://i",
                "--client-id=c",
                "--scope=groups"
            ]
        );
        let args = get_token_args(
            "https://i",
            "c",
            &[],
            ca_args(&["/ca.pem".into()], None, None),
            &["127.0.0.1:8000".into()],
            Some(ProviderArg::Okta),
        );
        assert!(args.contains(&"--certificate-authority=/ca.pem".to_owned()));
        assert!(args.contains(&"--listen=127.0.0.1:8000".to_owned()));
        assert!(args.contains(&"--provider=okta".to_owned()));
    }

    #[test]
    fn line_separators_a_yaml_1_1_reader_breaks_on_never_reach_the_output() {
        let text = "# a comment with prod\u{2028}kind: X\u{2029}and\u{85}more\nkind: Y\n";
        assert_eq!(
            yaml_safe(text),
            "# a comment with prod?kind: X?and?more\nkind: Y\n"
        );
        assert!(matches!(yaml_safe("plain: yes\n"), std::borrow::Cow::Borrowed(_)));
    }
}
