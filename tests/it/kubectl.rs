//! kubectl end to end: the pinned kubectl runs koidc as its exec credential plugin (v1 and
//! v1beta1) and sends Dex's ID token as the bearer token to an HTTPS endpoint.

use serde_json::Value;

use crate::apiserver::ApiServer;
use crate::kubeconfig::{self, ExecApi};
use crate::lab::{Lab, LabOptions};
use crate::support::{Stdout, clean_command, e2e_binary, run};

fn kubectl_sends_dex_id_token(api: ExecApi) {
    let kubectl = e2e_binary("KOIDC_E2E_KUBECTL", "kubectl v1.36.3");
    let lab = Lab::start(LabOptions::default());
    let server = ApiServer::start();
    let config = lab.tmp.path().join("kubeconfig.json");
    kubeconfig::write(
        &config,
        &server.url(),
        server.ca_pem(),
        api,
        &lab.args("get-token"),
        &lab.run_env()
            .iter()
            .map(|(n, v)| (n.as_str(), v.clone()))
            .collect::<Vec<_>>(),
    );

    let mut cmd = clean_command(&kubectl, &lab.home);
    cmd.arg("--kubeconfig")
        .arg(&config)
        .args(["get", "--raw", "/api"]);
    let out = run(&mut cmd);
    out.assert_success();
    lab.assert_no_leak(&out, Stdout::NoSecrets);
    let versions: Value = serde_json::from_str(&out.stdout).expect("kubectl printed the JSON");
    assert_eq!(versions["kind"], "APIVersions");
    assert_eq!(lab.browser.launches(), 1, "one browser login for kubectl");

    // The token koidc cached (read back with a cache hit) is what kubectl sent.
    let mark = lab.proxy.mark();
    let (_, cached) = lab.get_token();
    assert_eq!(
        lab.proxy.since(mark),
        [],
        "get-token after kubectl is a cache hit"
    );
    let requests = server.requests();
    assert!(!requests.is_empty(), "kubectl sent no request to the endpoint");
    let expected = format!("Bearer {}", cached.token);
    for request in &requests {
        assert_eq!(
            request.authorization.as_deref(),
            Some(expected.as_str()),
            "{} {} did not carry koidc's ID token",
            request.method,
            request.path
        );
    }
    assert!(
        requests.iter().any(|r| r.path == "/api"),
        "kubectl did not request /api"
    );
}

#[test]
fn kubectl_sends_dex_id_token_v1() {
    kubectl_sends_dex_id_token(ExecApi::V1);
}

#[test]
fn kubectl_sends_dex_id_token_v1beta1() {
    kubectl_sends_dex_id_token(ExecApi::V1Beta1);
}
