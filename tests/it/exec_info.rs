//! The exec credential protocol's version handshake: koidc answers in the `apiVersion` kubectl
//! sent in `KUBERNETES_EXEC_INFO`, and refuses a version it does not speak before doing anything.

use crate::lab::{Lab, LabOptions};
use crate::support::{Stdout, V1, V1BETA1, run};

fn exec_info(api_version: &str) -> String {
    format!(r#"{{"kind":"ExecCredential","apiVersion":"{api_version}","spec":{{"interactive":false}}}}"#)
}

#[test]
fn exec_info_v1_is_echoed() {
    let lab = Lab::start(LabOptions::default());

    let mut cmd = lab.command("get-token", &[]);
    cmd.env("KUBERNETES_EXEC_INFO", exec_info(V1));
    let (_, login) = lab.assert_ok_get_token(&run(&mut cmd));
    assert_eq!(
        login.api_version, V1,
        "apiVersion echoed from KUBERNETES_EXEC_INFO (login)"
    );
    assert_eq!(lab.browser.launches(), 1);

    // Same on the warm path, and v1beta1 is echoed as well.
    for version in [V1, V1BETA1] {
        let mark = lab.proxy.mark();
        let mut cmd = lab.command("get-token", &[]);
        cmd.env("KUBERNETES_EXEC_INFO", exec_info(version));
        let (_, hit) = lab.assert_ok_get_token(&run(&mut cmd));
        assert_eq!(
            hit.api_version, version,
            "apiVersion echoed from KUBERNETES_EXEC_INFO (hit)"
        );
        assert_eq!(hit.token, login.token);
        assert_eq!(lab.proxy.since(mark), []);
    }
}

#[test]
fn unknown_exec_api_version_is_rejected() {
    let lab = Lab::start(LabOptions::default());

    let mut cmd = lab.command("get-token", &[]);
    cmd.env(
        "KUBERNETES_EXEC_INFO",
        exec_info("client.authentication.k8s.io/v2"),
    );
    let out = run(&mut cmd);
    out.assert_failure();
    lab.assert_no_leak(&out, Stdout::NoSecrets);
    let line = out.assert_one_error_line();
    assert!(
        line.contains("/v2"),
        "the error should name the unsupported version: {line:?}"
    );
    // Rejected up front: no login was started for a credential kubectl could not read.
    assert_eq!(lab.browser.launches(), 0, "no browser for an unusable request");
    assert_eq!(lab.proxy.seen(), [], "no request to Dex for an unusable request");
}
