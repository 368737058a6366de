//! Per-cluster audiences at Dex (cross-client trust): a cluster's client lists koidc's client in
//! `trustedPeers`, and koidc asks for `audience:server:client_id:CLUSTER`. The audience comes
//! from `--audience` or from the cluster's exec extension that kubectl passes in
//! `KUBERNETES_EXEC_INFO` (`provideClusterInfo: true`); the flag wins. Each audience is its own
//! cache entry, so a token for one cluster is never handed out for another.

use serde_json::{Value, json};

use crate::dex::{CLIENT_ID, DexOptions};
use crate::lab::{Lab, LabOptions};
use crate::support::{Output, Stdout, V1, parse_exec_credential, run};

/// A lab whose Dex knows the clusters `cluster-a` and `cluster-b`, both trusting koidc.
fn lab() -> Lab {
    Lab::start(LabOptions {
        dex: DexOptions {
            cluster_clients: vec!["cluster-a".into(), "cluster-b".into()],
            ..DexOptions::default()
        },
        ..LabOptions::default()
    })
}

/// `KUBERNETES_EXEC_INFO` as kubectl sends it with `provideClusterInfo: true`, the cluster's
/// exec extension being `config`.
fn exec_info(config: &Value) -> String {
    json!({
        "kind": "ExecCredential",
        "apiVersion": V1,
        "spec": {
            "interactive": false,
            "cluster": {
                "server": "https://127.0.0.1:6443",
                "certificate-authority-data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==",
                "config": config,
            },
        },
    })
    .to_string()
}

/// Runs get-token with `extra` flags and the cluster's exec extension `config`.
fn get_token(lab: &Lab, extra: &[&str], config: &Value) -> Output {
    let mut cmd = lab.command("get-token", extra);
    cmd.env("KUBERNETES_EXEC_INFO", exec_info(config));
    run(&mut cmd)
}

/// The token's audiences.
fn audiences(claims: &Value) -> Vec<String> {
    match &claims["aud"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        other => panic!("aud is {other}"),
    }
}

/// The authorization-code token requests Dex saw.
fn code_exchanges(lab: &Lab) -> usize {
    lab.proxy
        .seen()
        .iter()
        .filter(|s| s.grant_type.as_deref() == Some("authorization_code"))
        .count()
}

#[test]
fn the_clusters_exec_extension_audience_gets_a_token_naming_that_cluster_and_koidc_as_azp() {
    let lab = lab();
    let a = json!({ "audience": "cluster-a" });
    let out = get_token(&lab, &[], &a);
    out.assert_success();
    lab.assert_no_leak(&out, Stdout::MayHoldIdToken);
    let cred = parse_exec_credential(&out);
    assert_eq!(cred.api_version, V1);
    let aud = audiences(&cred.claims);
    assert!(aud.contains(&"cluster-a".to_owned()), "{aud:?}");
    assert!(!aud.contains(&"cluster-b".to_owned()), "{aud:?}");
    assert_eq!(cred.claims["azp"], CLIENT_ID);
    assert_eq!(lab.browser.launches(), 1);

    // Warm: the same token, nothing asked of Dex.
    let mark = lab.proxy.mark();
    let again = get_token(&lab, &[], &a);
    again.assert_success();
    assert_eq!(parse_exec_credential(&again).token, cred.token);
    assert_eq!(lab.proxy.since(mark), []);

    // Without an audience: koidc's own entry, a token for koidc's client only.
    let plain = get_token(&lab, &[], &json!({}));
    plain.assert_success();
    let plain = parse_exec_credential(&plain);
    assert_eq!(audiences(&plain.claims), [CLIENT_ID]);
    assert_ne!(plain.token, cred.token);
}

#[test]
fn the_audience_flag_wins_over_the_clusters_and_each_audience_has_its_own_token() {
    let lab = lab();
    let a = get_token(&lab, &[], &json!({ "audience": "cluster-a" }));
    a.assert_success();
    let a = parse_exec_credential(&a);
    // The flag names cluster B while kubectl says cluster A: B's token, never A's cached one.
    let b = get_token(
        &lab,
        &["--audience", "cluster-b"],
        &json!({ "audience": "cluster-a" }),
    );
    b.assert_success();
    lab.assert_no_leak(&b, Stdout::MayHoldIdToken);
    let b = parse_exec_credential(&b);
    let aud = audiences(&b.claims);
    assert!(
        aud.contains(&"cluster-b".to_owned()) && !aud.contains(&"cluster-a".to_owned()),
        "{aud:?}"
    );
    assert_ne!(a.token, b.token);
    assert_eq!(
        code_exchanges(&lab),
        2,
        "one login per audience (no shared session yet)"
    );
}

#[test]
fn a_hostile_cluster_audience_is_one_error_line_before_any_login() {
    let lab = lab();
    for config in [
        json!({ "audience": 42 }),
        json!({ "audience": ["cluster-a", "cluster-b"] }),
        json!({ "audience": "cluster-a\r\nX-Injected: 1" }),
        json!({ "audience": "" }),
        json!({ "audience": "a".repeat(100_000) }),
        json!("audience"),
    ] {
        let out = get_token(&lab, &[], &config);
        out.assert_failure();
        let line = out.assert_one_error_line();
        assert!(line.contains("KUBERNETES_EXEC_INFO"), "{line}");
        assert!(line.len() < 500, "{} bytes", line.len());
    }
    assert_eq!(lab.browser.launches(), 0);
    assert_eq!(lab.proxy.seen(), []);
}

#[test]
fn an_audience_at_an_issuer_without_a_way_to_ask_for_it_names_both_ways() {
    let lab = Lab::start(LabOptions {
        issuer_path: "",
        ..LabOptions::default()
    });
    let out = get_token(&lab, &[], &json!({ "audience": "cluster-a" }));
    out.assert_failure();
    let line = out.assert_one_error_line();
    assert!(
        line.contains("Dex cross-client trust") && line.contains("RFC 8693 token exchange"),
        "{line}"
    );
    assert_eq!(lab.browser.launches(), 0);
    assert_eq!(lab.proxy.seen(), []);
}

#[test]
fn logout_of_the_client_removes_the_token_of_every_cluster() {
    let lab = lab();
    for config in [
        json!({ "audience": "cluster-a" }),
        json!({ "audience": "cluster-b" }),
        json!({}),
    ] {
        get_token(&lab, &[], &config).assert_success();
    }
    assert_eq!(crate::support::entry_files(&lab.cache_dir).len(), 3);
    let out = lab.koidc("logout", &[]);
    out.assert_success();
    lab.assert_no_leak(&out, Stdout::NoSecrets);
    for cluster in ["cluster-a", "cluster-b"] {
        assert!(
            out.stdout
                .contains(&format!("audience:server:client_id:{cluster}")),
            "logout names the entry of {cluster}: {}",
            out.stdout
        );
    }
    assert_eq!(
        crate::support::entry_files(&lab.cache_dir),
        Vec::<std::path::PathBuf>::new()
    );
    // The next call for a cluster logs in again.
    get_token(&lab, &[], &json!({ "audience": "cluster-a" })).assert_success();
    assert_eq!(lab.browser.launches(), 4);
}

/// A kubeconfig (JSON) for `cluster` whose exec extension names `audience`, and a user whose
/// exec entry runs `koidc get-token` with `args`, `env` and `provideClusterInfo: true`.
fn kubeconfig_with_audience(
    cluster: &crate::kube::KubeCluster,
    audience: &str,
    args: &[String],
    env: &[(&str, String)],
) -> Value {
    use base64::Engine as _;
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": audience,
            "cluster": {
                "server": cluster.url(),
                "certificate-authority-data":
                    base64::engine::general_purpose::STANDARD.encode(&cluster.idp.pki.ca_pem),
                "extensions": [{
                    "name": "client.authentication.k8s.io/exec",
                    "extension": { "audience": audience },
                }],
            },
        }],
        "users": [{ "name": "oidc", "user": { "exec": {
            "apiVersion": V1,
            "command": crate::support::koidc_bin(),
            "args": args,
            "env": env.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
            "provideClusterInfo": true,
            "interactiveMode": "IfAvailable",
        }}}],
        "contexts": [{ "name": audience, "context": { "cluster": audience, "user": "oidc" } }],
        "current-context": audience,
    })
}

#[test]
fn an_apiserver_trusting_cluster_a_takes_the_token_kubectl_got_for_it_and_refuses_cluster_bs() {
    use crate::kube::{KubeCluster, KubeIdp, PREFIX, READER};
    let idp = KubeIdp::start_with(&DexOptions {
        cluster_clients: vec!["cluster-a".into(), "cluster-b".into()],
        ..DexOptions::default()
    });
    // The apiserver of cluster A trusts Dex for its own audience only.
    let auth = json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AuthenticationConfiguration",
        "jwt": [{
            "issuer": {
                "url": idp.issuer(),
                "audiences": ["cluster-a"],
                "certificateAuthority": idp.ca_pem(),
            },
            "claimMappings": {
                "username": { "claim": "email", "prefix": PREFIX },
                "groups": { "claim": "groups", "prefix": PREFIX },
            },
        }],
    });
    let cluster = KubeCluster::start(&auth.to_string(), idp);
    let user = cluster.user(&READER);
    let env = vec![
        ("FAKE_BROWSER_LOGIN", READER.email.to_owned()),
        ("FAKE_BROWSER_PASSWORD", READER.password.to_owned()),
        ("FAKE_BROWSER_LOG", user.browser.path.display().to_string()),
    ];
    let args = cluster.get_token_args(&user.cache_dir);
    let config = kubeconfig_with_audience(&cluster, "cluster-a", &args, &env);
    std::fs::write(&user.kubeconfig, config.to_string()).expect("write the kubeconfig");

    // kubectl passes the cluster's extension; koidc gets cluster A's token; A takes it.
    let whoami = user.kubectl(&["auth", "whoami", "-o", "json"]);
    whoami.assert_success();
    assert!(
        whoami.stdout.contains(&READER.kube_username()),
        "{}",
        whoami.stdout
    );
    assert_eq!(user.browser.launches(), 1);

    // Cluster B's token (same person, same login page) sent to cluster A: 401.
    let mut b_args = args.clone();
    b_args.extend(["--audience".into(), "cluster-b".into()]);
    let mut cmd = crate::support::clean_command(crate::support::koidc_bin(), &user.home);
    cmd.args(&b_args).envs(env.iter().map(|(k, v)| (k, v)));
    let b = run(&mut cmd);
    b.assert_success();
    let b = parse_exec_credential(&b);
    assert!(audiences(&b.claims).contains(&"cluster-b".to_owned()));
    let mut curl = crate::support::clean_command(cluster.kubectl_bin(), &user.home);
    curl.args(["--server", cluster.url(), "--certificate-authority"])
        .arg(cluster.idp.ca_file())
        .args(["--token", &b.token, "auth", "whoami"]);
    let refused = run(&mut curl);
    refused.assert_failure();
    assert!(
        refused.stderr.contains("Unauthorized") || refused.stderr.contains("401"),
        "{}",
        refused.stderr
    );
}
