//! Writes the kubeconfig kubectl uses in the tests: one cluster (the in-process HTTPS endpoint,
//! trusted through `certificate-authority-data`) and one user whose credentials come from
//! `koidc get-token` through the exec plugin protocol, in API version v1 (with
//! `interactiveMode: IfAvailable`) or v1beta1.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::support::{V1, V1BETA1, koidc_bin};

/// The exec plugin API version the kubeconfig asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecApi {
    V1,
    V1Beta1,
}

impl ExecApi {
    pub fn api_version(self) -> &'static str {
        match self {
            ExecApi::V1 => V1,
            ExecApi::V1Beta1 => V1BETA1,
        }
    }
}

/// Writes a kubeconfig (JSON, which kubectl accepts) to `path`. `args` are koidc's arguments
/// (starting with `get-token`), `env` extra variables for the plugin.
pub fn write(path: &Path, server: &str, ca_pem: &str, api: ExecApi, args: &[String], env: &[(&str, String)]) {
    let mut exec = json!({
        "apiVersion": api.api_version(),
        "command": koidc_bin(),
        "args": args,
        "env": env.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
        "installHint": "koidc is built by cargo; run the tests with ./tests/run.sh",
        "provideClusterInfo": false,
    });
    if api == ExecApi::V1 {
        exec["interactiveMode"] = json!("IfAvailable");
    }
    write_one_cluster(path, server, ca_pem, ("oidc", json!({ "exec": exec })), "test");
}

/// Writes a kubeconfig (JSON) to `path` with one cluster (`test`: `server`, trusted through
/// `ca_pem`), one user (name and `user` entry) and the current context `context` joining them.
pub fn write_one_cluster(
    path: &Path,
    server: &str,
    ca_pem: impl AsRef<[u8]>,
    (user_name, user): (&str, Value),
    context: &str,
) {
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "test",
            "cluster": {
                "server": server,
                "certificate-authority-data": STANDARD.encode(ca_pem),
            },
        }],
        "users": [{ "name": user_name, "user": user }],
        "contexts": [{ "name": context, "context": { "cluster": "test", "user": user_name } }],
        "current-context": context,
    });
    std::fs::write(
        path,
        serde_json::to_string_pretty(&config).expect("serialize kubeconfig"),
    )
    .unwrap_or_else(|e| panic!("write the kubeconfig {}: {e}", path.display()));
}
