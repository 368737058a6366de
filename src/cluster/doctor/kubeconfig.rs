//! Which cluster `koidc doctor` talks to: the server and CA of a kubeconfig context (and the
//! `koidc get-token` arguments of its user, when the doctor is not told the identity).
//!
//! Files are found as kubectl finds them (`--kubeconfig`, else every file of `KUBECONFIG`, else
//! `~/.kube/config`) and merged as kubectl merges them: the first file that names a cluster,
//! context or user wins, and so does the first `current-context`. The files are read with the
//! shared [`crate::kubeconfig`] model; only what the doctor needs is looked at. A cluster entry with `insecure-skip-tls-verify` or an `http` server is refused: the
//! doctor sends the user's ID token to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use url::Url;

use crate::kubeconfig::{Cluster, Context, Kubeconfig, User};

/// What is wrong with the kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// No file to read.
    #[error(
        "no kubeconfig at {paths}: pass --kubeconfig FILE, or write one with `koidc setup --write-kubeconfig` and add the cluster and a context (`kubectl config set-cluster`, `kubectl config set-context`)"
    )]
    NotFound {
        /// The paths looked at, comma-separated.
        paths: String,
    },
    /// A file cannot be read.
    #[error("cannot read the kubeconfig {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A file is not a kubeconfig.
    #[error("cannot parse the kubeconfig {path}: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        reason: String,
    },
    /// No context was chosen and none is current.
    #[error("the kubeconfig has no current-context; {}", pick_context(.contexts))]
    NoContext {
        /// The contexts the kubeconfig has, comma-separated.
        contexts: String,
    },
    /// The chosen context does not exist.
    #[error("the kubeconfig has no context {context:?}; {}", pick_context(.contexts))]
    UnknownContext {
        /// The context asked for.
        context: String,
        /// The contexts the kubeconfig has, comma-separated.
        contexts: String,
    },
    /// The context names a cluster that does not exist.
    #[error("context {context:?} names the cluster {cluster:?}, which the kubeconfig does not define")]
    UnknownCluster {
        /// The context.
        context: String,
        /// The cluster it names.
        cluster: String,
    },
    /// The cluster's server is missing or not an https URL.
    #[error(
        "cluster {cluster:?} has no usable server ({reason}); koidc sends ID tokens to https servers only"
    )]
    Server {
        /// The cluster.
        cluster: String,
        /// What is wrong.
        reason: String,
    },
    /// The cluster entry turns off certificate checks.
    #[error(
        "cluster {0:?} sets insecure-skip-tls-verify; koidc does not send an ID token to a server it cannot verify: give the cluster its certificate-authority(-data) instead"
    )]
    Insecure(String),
    /// The cluster's CA cannot be read.
    #[error("cannot use the certificate authority of cluster {cluster:?}: {reason}")]
    Ca {
        /// The cluster.
        cluster: String,
        /// What is wrong.
        reason: String,
    },
}

/// What to do when the context is not found: pick one of `contexts` (comma-separated).
fn pick_context(contexts: &str) -> String {
    if contexts.is_empty() {
        "it has no contexts: add one with `kubectl config set-context`".to_owned()
    } else {
        format!("its contexts: {contexts} (pass one with --context)")
    }
}

/// The kubeconfig user's `exec` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecEntry {
    /// `command`
    pub command: String,
    /// `args`
    pub args: Vec<String>,
}

impl ExecEntry {
    /// The `koidc get-token` arguments (starting with `get-token`) when this entry runs koidc —
    /// directly, or as `kubectl koidc get-token ...`.
    pub fn get_token_args(&self) -> Option<&[String]> {
        let program = Path::new(&self.command)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let koidc = program.starts_with("koidc") || program.starts_with("kubectl-koidc");
        match self.args.first().map(String::as_str) {
            Some("get-token") if koidc => Some(&self.args),
            Some("koidc") if program == "kubectl" && self.args.get(1).is_some_and(|a| a == "get-token") => {
                Some(&self.args[1..])
            }
            _ => None,
        }
    }

    /// The command in words, for a message: the program's file name and the arguments before
    /// the first option (`kubelogin get-token`, `aws eks get-token`). Options and their values
    /// are left out: they may hold secrets.
    pub fn summary(&self) -> String {
        let program = Path::new(&self.command)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(&self.command);
        std::iter::once(program)
            .chain(
                self.args
                    .iter()
                    .map(String::as_str)
                    .take_while(|a| !a.starts_with('-'))
                    .take(3),
            )
            .map(|word| crate::text::cap(&crate::text::single_line(word), 40).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// How the context's user gets its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAuth {
    /// The context names no user.
    NoUser,
    /// The context names a user that no kubeconfig file defines.
    Undefined,
    /// An `exec` credential plugin.
    Exec(ExecEntry),
    /// Anything else, in words: "a token", "a client certificate", ...
    Other(&'static str),
}

impl UserAuth {
    /// From a `users[].user` entry.
    fn of(user: &User) -> Self {
        if let Some(exec) = &user.exec {
            return Self::Exec(ExecEntry {
                command: exec.command.clone().unwrap_or_default(),
                args: exec.args.clone().unwrap_or_default(),
            });
        }
        let has = |key: &str| user.has(key);
        Self::Other(if has("token") || has("tokenFile") {
            "it uses a token"
        } else if has("client-certificate") || has("client-certificate-data") {
            "it uses a client certificate"
        } else if has("auth-provider") {
            "it uses an auth-provider"
        } else if has("username") || has("password") {
            "it uses a username and password"
        } else {
            "it has no credentials"
        })
    }
}

/// The cluster of one context.
#[derive(Debug, Clone)]
pub struct ClusterTarget {
    /// The context's name.
    pub context: String,
    /// The apiserver URL (https).
    pub server: Url,
    /// The CA certificates (PEM) to trust, from `certificate-authority-data` or the
    /// `certificate-authority` file; None: the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The context's user name.
    pub user: Option<String>,
    /// How that user gets its credentials.
    pub auth: UserAuth,
}

impl ClusterTarget {
    /// The `koidc get-token` arguments of the context's user (starting with `get-token`), or
    /// why there are none, in words, with what to do instead.
    pub fn get_token_args(&self) -> Result<&[String], String> {
        let user = self.user.as_deref().unwrap_or_default();
        let what = match &self.auth {
            UserAuth::Exec(exec) => match exec.get_token_args() {
                Some(args) => return Ok(args),
                None => format!("its exec command is {}", exec.summary()),
            },
            UserAuth::Other(what) => (*what).to_owned(),
            UserAuth::NoUser => return Err(format!("context {:?} has no user{NO_KOIDC_HINT}", self.context)),
            UserAuth::Undefined => {
                return Err(format!(
                    "context {:?} names the user {user:?}, which the kubeconfig does not define{NO_KOIDC_HINT}",
                    self.context
                ));
            }
        };
        Err(format!(
            "user {user:?} of context {:?} does not run koidc ({what}){NO_KOIDC_HINT}",
            self.context
        ))
    }
}

/// What to do when the kubeconfig's user does not run `koidc get-token`.
const NO_KOIDC_HINT: &str = "; pass --issuer and --client-id (or --profile), or give the user koidc's exec entry with `koidc setup --write-kubeconfig`";

/// `flag`, else the files of `KUBECONFIG`, else `~/.kube/config`.
pub fn kubeconfig_paths(flag: Option<&Path>) -> Vec<PathBuf> {
    if let Some(path) = flag {
        return vec![path.to_owned()];
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let paths: Vec<PathBuf> = std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if !paths.is_empty() {
            return paths;
        }
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| vec![PathBuf::from(h).join(".kube/config")])
        .unwrap_or_default()
}

/// The body of one named entry (a cluster, context or user) and the file it came from.
struct Entry<T> {
    body: T,
    dir: PathBuf,
}

/// Adds the named `items` of one file to `map`, unless an earlier file named them (as kubectl
/// merges); items without a name or a body are skipped.
fn merge<'a, T: Clone + 'a>(
    map: &mut BTreeMap<String, Entry<T>>,
    items: impl Iterator<Item = (Option<&'a String>, Option<&'a T>)>,
    dir: &Path,
) {
    for (name, body) in items {
        let (Some(name), Some(body)) = (name, body) else {
            continue;
        };
        map.entry(name.clone()).or_insert_with(|| Entry {
            body: body.clone(),
            dir: dir.to_owned(),
        });
    }
}

/// Reads `paths` (missing files are skipped, as kubectl does, unless none exists) and returns
/// the cluster of `context` (default: the current context).
pub fn load(paths: &[PathBuf], context: Option<&str>) -> Result<ClusterTarget, KubeconfigError> {
    let mut clusters: BTreeMap<String, Entry<Cluster>> = BTreeMap::new();
    let mut contexts: BTreeMap<String, Entry<Context>> = BTreeMap::new();
    let mut users: BTreeMap<String, Entry<User>> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut read_any = false;
    for path in paths {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                return Err(KubeconfigError::Read {
                    path: path.display().to_string(),
                    reason: err.to_string(),
                });
            }
        };
        read_any = true;
        if text.trim().is_empty() {
            continue;
        }
        let doc = serde_saphyr::from_str::<Option<Kubeconfig>>(&text)
            .map_err(|e| KubeconfigError::Parse {
                path: path.display().to_string(),
                reason: crate::text::fold_whitespace(&e.to_string()),
            })?
            .unwrap_or_default();
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let items = doc.clusters().iter();
        merge(
            &mut clusters,
            items.map(|c| (c.name.as_ref(), c.cluster.as_ref())),
            &dir,
        );
        let items = doc.contexts().iter();
        merge(
            &mut contexts,
            items.map(|c| (c.name.as_ref(), c.context.as_ref())),
            &dir,
        );
        let items = doc.users().iter();
        merge(
            &mut users,
            items.map(|u| (u.name.as_ref(), u.user.as_ref())),
            &dir,
        );
        if current.is_none() {
            current = doc.current_context.filter(|c| !c.is_empty());
        }
    }
    if !read_any {
        return Err(KubeconfigError::NotFound {
            paths: paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let known = || contexts.keys().cloned().collect::<Vec<_>>().join(", ");
    let context = match context {
        Some(name) => name.to_owned(),
        None => current.ok_or_else(|| KubeconfigError::NoContext { contexts: known() })?,
    };
    let ctx = contexts
        .get(&context)
        .ok_or_else(|| KubeconfigError::UnknownContext {
            context: context.clone(),
            contexts: known(),
        })?;
    let cluster = ctx.body.cluster.clone().unwrap_or_default();
    let entry = clusters
        .get(&cluster)
        .ok_or_else(|| KubeconfigError::UnknownCluster {
            context: context.clone(),
            cluster: cluster.clone(),
        })?;
    let (server, ca_pem) = cluster_tls(&cluster, entry)?;
    let user = ctx.body.user.clone().filter(|u| !u.is_empty());
    let auth = match &user {
        None => UserAuth::NoUser,
        Some(name) => users
            .get(name)
            .map_or(UserAuth::Undefined, |u| UserAuth::of(&u.body)),
    };
    Ok(ClusterTarget {
        context,
        server,
        ca_pem,
        user,
        auth,
    })
}

/// The https server and the CA of a cluster entry.
fn cluster_tls(name: &str, entry: &Entry<Cluster>) -> Result<(Url, Option<Vec<u8>>), KubeconfigError> {
    let body = &entry.body;
    let bad_server = |reason: &str| KubeconfigError::Server {
        cluster: name.to_owned(),
        reason: reason.to_owned(),
    };
    let raw = body
        .server
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad_server("no server"))?;
    let server = Url::parse(raw).map_err(|e| bad_server(&format!("{raw:?} is not a URL: {e}")))?;
    if server.scheme() != "https" {
        return Err(bad_server(&format!("{raw:?} is not https")));
    }
    if body.insecure_skip_tls_verify == Some(true) {
        return Err(KubeconfigError::Insecure(name.to_owned()));
    }
    let ca_err = |reason: String| KubeconfigError::Ca {
        cluster: name.to_owned(),
        reason,
    };
    let ca = if let Some(data) = body
        .certificate_authority_data
        .as_deref()
        .filter(|d| !d.is_empty())
    {
        Some(
            crate::http::decode_data(data)
                .ok_or_else(|| ca_err("certificate-authority-data is not base64".into()))?,
        )
    } else if let Some(file) = body.certificate_authority.as_deref().filter(|f| !f.is_empty()) {
        let path = entry.dir.join(file);
        Some(std::fs::read(&path).map_err(|e| ca_err(format!("cannot read {}: {e}", path.display())))?)
    } else {
        None
    };
    if let Some(pem) = &ca
        && !crate::http::holds_pem_certificate(pem)
    {
        return Err(ca_err("it holds no PEM certificate".into()));
    }
    Ok((server, ca))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_current_context_gives_server_ca_and_the_users_koidc_arguments() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "ca.crt", PEM);
        let path = write(
            dir.path(),
            "config",
            "apiVersion: v1\nkind: Config\ncurrent-context: dev\n\
             clusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:6443', certificate-authority: ca.crt}\n\
             contexts:\n- name: dev\n  context: {cluster: c, user: oidc}\n\
             users:\n- name: oidc\n  user:\n    exec:\n      command: koidc\n      args: [get-token, --issuer=https://i, --client-id=k]\n",
        );
        let t = load(&[path], None).unwrap();
        assert_eq!(t.context, "dev");
        assert_eq!(t.server.as_str(), "https://127.0.0.1:6443/");
        assert_eq!(t.ca_pem.as_deref(), Some(PEM.as_bytes()));
        assert_eq!(t.user.as_deref(), Some("oidc"));
        assert_eq!(
            t.get_token_args().unwrap(),
            ["get-token", "--issuer=https://i", "--client-id=k"]
        );
    }

    #[test]
    fn embedded_ca_data_and_json_kubeconfigs_are_read_and_the_first_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        let data = base64::engine::general_purpose::STANDARD.encode(PEM);
        let first = write(
            dir.path(),
            "a.json",
            &format!(
                r#"{{"clusters":[{{"name":"c","cluster":{{"server":"https://a:1","certificate-authority-data":"{data}"}}}}],
                   "contexts":[{{"name":"x","context":{{"cluster":"c"}}}}],"current-context":"x"}}"#
            ),
        );
        let second = write(
            dir.path(),
            "b.yaml",
            "clusters:\n- name: c\n  cluster: {server: 'https://b:2'}\ncurrent-context: y\n",
        );
        let missing = dir.path().join("missing");
        let t = load(&[missing, first, second], None).unwrap();
        assert_eq!(t.server.as_str(), "https://a:1/");
        assert_eq!(t.ca_pem.as_deref(), Some(PEM.as_bytes()));
        assert_eq!(t.auth, UserAuth::NoUser);
    }

    #[test]
    fn unsafe_or_broken_clusters_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = |cluster: &str| {
            write(
                dir.path(),
                "config",
                &format!(
                    "clusters:\n- name: c\n  cluster: {cluster}\ncontexts:\n- name: x\n  context: {{cluster: c}}\ncurrent-context: x\n"
                ),
            )
        };
        let insecure = config("{server: 'https://a:1', insecure-skip-tls-verify: true}");
        assert!(matches!(
            load(&[insecure], None),
            Err(KubeconfigError::Insecure(_))
        ));
        let http = config("{server: 'http://a:1'}");
        assert!(matches!(load(&[http], None), Err(KubeconfigError::Server { .. })));
        let bad_ca = config("{server: 'https://a:1', certificate-authority-data: 'bm90IGEgY2VydA=='}");
        assert!(matches!(
            load(std::slice::from_ref(&bad_ca), None),
            Err(KubeconfigError::Ca { .. })
        ));
        assert_eq!(
            load(&[bad_ca], Some("nope")).unwrap_err().to_string(),
            "the kubeconfig has no context \"nope\"; its contexts: x (pass one with --context)"
        );
        assert!(matches!(
            load(&[dir.path().join("none")], None),
            Err(KubeconfigError::NotFound { .. })
        ));
    }

    #[test]
    fn kubectl_plugin_form_is_recognised_and_other_exec_plugins_are_not() {
        let entry = |command: &str, args: &[&str]| ExecEntry {
            command: command.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        assert_eq!(
            entry("/usr/bin/kubectl", &["koidc", "get-token", "--issuer=x"])
                .get_token_args()
                .unwrap(),
            ["get-token", "--issuer=x"]
        );
        assert!(entry("/opt/bin/koidc", &["get-token"]).get_token_args().is_some());
        assert!(entry("kubectl-koidc", &["get-token"]).get_token_args().is_some());
        assert!(entry("kubelogin", &["get-token"]).get_token_args().is_none());
        assert!(entry("aws", &["eks", "get-token"]).get_token_args().is_none());
        // Named in messages without options or their values, which may be secrets.
        assert_eq!(
            entry(
                "/usr/bin/kubectl",
                &["oidc-login", "get-token", "--oidc-client-secret", "s3cret"]
            )
            .summary(),
            "kubectl oidc-login get-token"
        );
        // A word of the command is shown on one line, without its escape sequences, capped.
        assert_eq!(
            entry("/usr/bin/kubectl", &["oidc\x1b[2J\nlogin", &"x".repeat(50)]).summary(),
            format!("kubectl oidc?[2J?login {}...", "x".repeat(40))
        );
    }
}
