//! `koidc doctor` on the real kube-apiserver and Dex of [`crate::audit`]'s cluster: an all-green
//! run, then deliberately broken set-ups, each of which must produce its exact `FAIL` line — a
//! binding made without the groups prefix (the near miss is named with the command that fixes
//! it), an apiserver whose groups prefix is not the expected one, a token without groups (the
//! `groups` scope not requested), and a client id the identity provider does not know.
//!
//! Each test is a fresh user (own HOME and koidc cache) whose identity comes from the kubeconfig
//! `koidc setup --write-kubeconfig` wrote (or from flags), logging in through the fake browser.
//! Checks that fail before any cluster is involved (a discovery document naming a plain-http
//! endpoint) run against the stub IdP instead.

use std::path::Path;

use crate::audit::{audited, cluster};
use crate::kube::{APP_NAMESPACE, KubeCluster, KubeUser, READER};
use crate::stub_idp::{CLIENT_ID, ConnectionTrap, Fault, StubClient, StubIdp, StubOptions};
use crate::support::{Output, run};

/// The namespace whose binding names `reader-group` without the prefix.
const NEAR_MISS_NAMESPACE: &str = "doctor-nearmiss";

/// `koidc doctor --kubeconfig <user kubeconfig> <extra>` as `user`.
fn doctor(user: &KubeUser, kubeconfig: &Path, extra: &[impl AsRef<str>]) -> Output {
    let kubeconfig = kubeconfig.display().to_string();
    let mut args = vec!["doctor", "--kubeconfig", kubeconfig.as_str()];
    args.extend(extra.iter().map(AsRef::as_ref));
    user.koidc(&args)
}

/// `--issuer`, `--client-id <client_id>` and the IdP's CA: an identity from flags, not from the
/// kubeconfig.
fn identity_flags(cluster: &KubeCluster, client_id: &str) -> Vec<String> {
    [
        "--issuer",
        cluster.issuer(),
        "--client-id",
        client_id,
        "--certificate-authority",
        &cluster.idp.ca_file().display().to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// `--admin-kubeconfig <admin> --kubectl <pinned kubectl>`.
fn admin_args(cluster: &KubeCluster) -> Vec<String> {
    vec![
        "--admin-kubeconfig".into(),
        cluster.admin_kubeconfig().display().to_string(),
        "--kubectl".into(),
        cluster.kubectl_bin().display().to_string(),
    ]
}

/// The report line of `check` (starting with `ok   `, `FAIL ` or `skip `).
#[track_caller]
fn line<'a>(out: &'a Output, check: &str) -> &'a str {
    out.stdout
        .lines()
        .find(|l| l.get(5..).is_some_and(|rest| rest.starts_with(check)))
        .unwrap_or_else(|| {
            panic!(
                "no line for {check:?} in:\n{}\n--- stderr ---\n{}",
                out.stdout, out.stderr
            )
        })
}

/// No JWT anywhere in the doctor's output.
#[track_caller]
fn assert_no_token(out: &Output) {
    assert!(
        crate::support::find_jwt(&out.stdout).is_none() && crate::support::find_jwt(&out.stderr).is_none(),
        "a JWT showed in the doctor's output"
    );
}

/// The error line koidc ends a failed doctor run with.
#[track_caller]
fn final_error(out: &Output) -> String {
    out.assert_failure();
    out.stderr_lines()
        .last()
        .map(|l| l.to_string())
        .unwrap_or_default()
}

#[test]
fn doctor_all_green_for_the_reader_in_application() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    let kubeconfig = &audited().user_kubeconfig;
    let reader = cluster.user_of(&READER, kubeconfig);
    let admin = admin_args(cluster);
    let mut extra = vec!["-n", APP_NAMESPACE];
    extra.extend(admin.iter().map(String::as_str));

    let out = doctor(&reader, kubeconfig, &extra);
    out.assert_success();
    assert_no_token(&out);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 11, "ten checks and a summary:\n{}", out.stdout);
    for l in &lines[..10] {
        assert!(l.starts_with("ok   "), "not ok: {l:?}\n{}", out.stdout);
    }
    assert_eq!(lines[10], "all 10 checks passed");
    assert_eq!(lines[0], format!("ok   issuer reachable ({})", cluster.issuer()));
    assert!(line(&out, "token obtained").starts_with("ok   token obtained (new login;"));
    assert_eq!(
        line(&out, "token claims"),
        "ok   token claims (email \"reader@example.com\", groups [reader-group])"
    );
    assert_eq!(
        line(&out, "apiserver accepts the token"),
        format!(
            "ok   apiserver accepts the token ({}: user \"oidc:reader@example.com\", groups [oidc:reader-group, system:authenticated])",
            cluster.url()
        )
    );
    assert_eq!(
        line(&out, "apiserver's user and groups"),
        "ok   apiserver's user and groups (username prefix \"oidc:\", groups prefix \"oidc:\", as expected)"
    );
    assert_eq!(
        line(&out, "RBAC bindings"),
        "ok   RBAC bindings (RoleBinding application/koidc:reader-group:koidc-reader binds group oidc:reader-group to Role koidc-reader)"
    );
    assert_eq!(
        line(&out, "rights in namespace"),
        "ok   rights in namespace application (get, list, watch pods)"
    );
    assert!(
        out.stderr
            .contains("using the `koidc get-token` options of user \"oidc\""),
        "the identity did not come from the kubeconfig:\n{}",
        out.stderr
    );
    assert_eq!(reader.browser.launches(), 1, "one browser login");

    // Without an admin kubeconfig the user may not list bindings: skipped, not failed. The
    // token comes from the cache kubectl shares.
    let listed = reader.kubectl(&["auth", "whoami"]);
    listed.assert_success();
    let out = doctor(&reader, kubeconfig, &["-n", APP_NAMESPACE]);
    out.assert_success();
    assert!(line(&out, "token obtained").starts_with("ok   token obtained (from the cache;"));
    assert_eq!(
        line(&out, "RBAC bindings"),
        "skip RBAC bindings (not allowed to list bindings as oidc:reader@example.com; --admin-kubeconfig lists them as an admin)"
    );
    assert_eq!(out.stdout.lines().last(), Some("9 passed, 0 failed, 1 skipped"));
    assert_eq!(
        reader.browser.launches(),
        1,
        "kubectl and the doctor shared the cached token"
    );
}

#[test]
fn doctor_names_the_binding_made_without_the_groups_prefix() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    cluster.create_namespace(NEAR_MISS_NAMESPACE);
    // The classic mistake: the group as the IdP names it, without the apiserver's prefix.
    cluster
        .bind_group_apply(&[
            "reader-group",
            "reader",
            "-n",
            NEAR_MISS_NAMESPACE,
            "--group-prefix",
            "",
        ])
        .assert_success();
    let kubeconfig = &audited().user_kubeconfig;
    let reader = cluster.user_of(&READER, kubeconfig);
    let admin = admin_args(cluster);
    let mut extra = vec!["-n", NEAR_MISS_NAMESPACE];
    extra.extend(admin.iter().map(String::as_str));

    let out = doctor(&reader, kubeconfig, &extra);
    assert_no_token(&out);
    assert_eq!(
        line(&out, "RBAC bindings"),
        "FAIL RBAC bindings: no RoleBinding in namespace doctor-nearmiss and no ClusterRoleBinding names \
         oidc:reader@example.com or your groups [oidc:reader-group]; near miss: RoleBinding \
         doctor-nearmiss/koidc:reader-group:koidc-reader names the group \"reader-group\" without the groups \
         prefix \"oidc:\" (the apiserver calls it \"oidc:reader-group\"); fix: koidc bind-group reader-group \
         koidc-reader -n doctor-nearmiss --group-prefix oidc:"
    );
    assert_eq!(
        line(&out, "rights in namespace"),
        "FAIL rights in namespace doctor-nearmiss: nothing besides what every authenticated user may do; \
         bind one of your groups to a role in doctor-nearmiss"
    );
    for check in [
        "issuer reachable",
        "client accepted",
        "token claims",
        "apiserver accepts the token",
    ] {
        assert!(line(&out, check).starts_with("ok   "), "{}", out.stdout);
    }
    assert_eq!(
        final_error(&out),
        "koidc: 2 checks failed: RBAC bindings, rights in namespace doctor-nearmiss"
    );

    // Doing what the doctor says fixes it.
    cluster
        .bind_group_apply(&[
            "reader-group",
            "koidc-reader",
            "-n",
            NEAR_MISS_NAMESPACE,
            "--group-prefix",
            "oidc:",
        ])
        .assert_success();
    let again = doctor(&reader, kubeconfig, &extra);
    again.assert_success();
    assert!(
        line(&again, "RBAC bindings").starts_with(
            "ok   RBAC bindings (RoleBinding doctor-nearmiss/koidc:reader-group:koidc-reader binds group oidc:reader-group"
        ),
        "{}",
        again.stdout
    );
}

#[test]
fn doctor_reports_an_apiserver_groups_prefix_other_than_expected() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    let kubeconfig = &audited().user_kubeconfig;
    let reader = cluster.user_of(&READER, kubeconfig);
    // The admin believes the prefix is corp: (bindings made for corp:... would never match).
    let out = doctor(
        &reader,
        kubeconfig,
        &["-n", APP_NAMESPACE, "--groups-prefix", "corp:"],
    );
    assert_eq!(
        line(&out, "apiserver's user and groups"),
        "FAIL apiserver's user and groups: the apiserver's groups prefix is \"oidc:\", not \"corp:\" \
         (--groups-prefix): it calls your group \"oidc:reader-group\", so bindings made for \
         \"corp:reader-group\" will not match; make the apiserver's claimMappings.groups.prefix and \
         --groups-prefix agree"
    );
    assert_eq!(
        final_error(&out),
        "koidc: 1 check failed: apiserver's user and groups"
    );
}

#[test]
fn doctor_fails_the_claims_check_when_the_groups_scope_is_missing() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    let kubeconfig = &audited().user_kubeconfig;
    let reader = cluster.user_of(&READER, kubeconfig);
    let mut extra = identity_flags(cluster, "koidc");
    // `generic`: no Dex preset adding the groups scope behind the user's back.
    extra.extend(["--provider", "generic", "--scope", "email", "-n", APP_NAMESPACE].map(String::from));
    let out = doctor(&reader, kubeconfig, &extra);
    assert_no_token(&out);
    assert_eq!(
        line(&out, "token claims"),
        "FAIL token claims: the token has no \"groups\" claim, so RBAC bindings for groups cannot match; \
         the scopes koidc requests lack \"groups\": add --scope groups"
    );
    // The apiserver still takes the token, but the user is in no group of the IdP's.
    assert_eq!(
        line(&out, "apiserver accepts the token"),
        format!(
            "ok   apiserver accepts the token ({}: user \"oidc:reader@example.com\", groups [system:authenticated])",
            cluster.url()
        )
    );
    assert!(
        line(&out, "rights in namespace")
            .starts_with("FAIL rights in namespace application: nothing besides"),
        "{}",
        out.stdout
    );
    assert_eq!(
        final_error(&out),
        "koidc: 2 checks failed: token claims, rights in namespace application"
    );
    assert_eq!(reader.browser.launches(), 1);
}

#[test]
fn doctor_fails_client_accepted_for_a_client_id_the_idp_does_not_know() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    let kubeconfig = &audited().user_kubeconfig;
    let reader = cluster.user_of(&READER, kubeconfig);
    let out = doctor(&reader, kubeconfig, &identity_flags(cluster, "wrong-client"));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[..3],
        [
            format!("ok   issuer reachable ({})", cluster.issuer()).as_str(),
            "ok   discovery valid (issuer matches, signing keys fetched)",
            "FAIL client accepted: the identity provider refused client \"wrong-client\" (HTTP 404 Not Found: \
             Invalid client_id.); check --client-id against the clients registered at the provider",
        ],
        "{}",
        out.stdout
    );
    for skipped in &lines[3..lines.len() - 1] {
        assert!(
            skipped.starts_with("skip "),
            "{skipped:?} after a failed client check"
        );
    }
    assert_eq!(lines.last(), Some(&"2 passed, 1 failed, 7 skipped"));
    assert_eq!(final_error(&out), "koidc: 1 check failed: client accepted");
    assert_eq!(
        reader.browser.launches(),
        0,
        "no browser for a client the IdP refuses"
    );
}

#[test]
fn doctor_fails_discovery_for_an_https_issuer_naming_a_plain_http_endpoint() {
    let idp = StubIdp::start_with(
        Fault::Good,
        StubOptions {
            https: true,
            ..StubOptions::default()
        },
    );
    let client = StubClient::new();
    let ca = idp.ca_file(client.tmp.path()).display().to_string();
    let trap = ConnectionTrap::start();
    let jwks = format!("http://{}/idp/keys", trap.addr());
    idp.set_endpoint("jwks_uri", &jwks);
    let out = run(&mut client.koidc(&[
        "doctor",
        "--issuer",
        idp.issuer(),
        "--client-id",
        CLIENT_ID,
        "--certificate-authority",
        &ca,
    ]));
    out.assert_failure();
    assert!(
        line(&out, "issuer reachable").starts_with("ok   "),
        "{}",
        out.stdout
    );
    let failed = line(&out, "discovery valid");
    assert!(
        failed.starts_with("FAIL discovery valid: ") && failed.contains("jwks_uri") && failed.contains(&jwks),
        "{failed:?}"
    );
    assert!(failed.contains("https"), "the line says what to do: {failed:?}");
    assert_eq!(trap.connections(), 0, "the doctor fetched the JWKS over http");
    assert_eq!(idp.hits("authorize"), 0);
}

// ---------------------------------------------------------------------------------------------
// Where the identity should have come from: the kubeconfig, and why it did not

/// A kubeconfig with contexts `a` (current) and `b` on an https cluster, and `users` (YAML list
/// items under `users:`); context `a` uses user `ua`, `b` uses `ub`.
fn write_kubeconfig(dir: &Path, users: &str) -> String {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: a\n\
             clusters:\n- name: c\n  cluster: {{server: 'https://127.0.0.1:6443'}}\n\
             contexts:\n- name: a\n  context: {{cluster: c, user: ua}}\n- name: b\n  context: {{cluster: c, user: ub}}\n\
             users:\n{users}"
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn doctor_without_a_kubeconfig_says_there_is_none_instead_of_missing_issuer() {
    let client = StubClient::new();
    let out = run(&mut client.koidc(&["doctor"]));
    let line = out.assert_one_error_line();
    assert_eq!(
        line,
        format!(
            "koidc: no kubeconfig at {}/.kube/config: pass --kubeconfig FILE, or write one with \
             `koidc setup --write-kubeconfig` and add the cluster and a context \
             (`kubectl config set-cluster`, `kubectl config set-context`)",
            client.home().display()
        )
    );
}

#[test]
fn doctor_for_a_pipeline_grant_says_what_to_run_instead_of_checking_a_login_chain() {
    let client = StubClient::new();
    for grant in ["workload", "client-credentials"] {
        let out = run(&mut client.koidc(&["doctor", "--grant", grant, "--audience", "kubernetes"]));
        let line = out.assert_one_error_line();
        assert!(
            line.starts_with("koidc: koidc doctor checks a person's login chain; for a pipeline")
                && line.contains("kubectl auth whoami"),
            "{line}"
        );
    }
}

#[test]
fn doctor_with_an_unknown_context_lists_the_contexts_instead_of_missing_issuer() {
    let client = StubClient::new();
    let kubeconfig = write_kubeconfig(client.tmp.path(), "- {name: ua, user: {token: abc}}\n");
    let out = run(&mut client.koidc(&["doctor", "--kubeconfig", &kubeconfig, "--context", "prod"]));
    let line = out.assert_one_error_line();
    assert_eq!(
        line,
        "koidc: the kubeconfig has no context \"prod\"; its contexts: a, b (pass one with --context)"
    );
}

#[test]
fn doctor_names_the_kubeconfig_user_that_does_not_run_koidc_instead_of_missing_issuer() {
    let client = StubClient::new();
    let kubeconfig = write_kubeconfig(
        client.tmp.path(),
        "- name: ua\n  user:\n    exec:\n      command: /usr/local/bin/kubelogin\n      \
         args: [get-token, --oidc-issuer-url=https://dex.example.com, --oidc-client-secret=kubelogin-s3cret]\n\
         - {name: ub, user: {token: static-t0ken-value}}\n",
    );
    let hint = "; pass --issuer and --client-id (or --profile), or give the user koidc's exec entry \
                with `koidc setup --write-kubeconfig`";
    let out = run(&mut client.koidc(&["doctor", "--kubeconfig", &kubeconfig]));
    let line = out.assert_one_error_line();
    assert_eq!(
        line,
        format!(
            "koidc: user \"ua\" of context \"a\" does not run koidc (its exec command is kubelogin get-token){hint}"
        )
    );
    assert!(!out.stderr.contains("s3cret"), "an exec argument was echoed");

    let out = run(&mut client.koidc(&["doctor", "--kubeconfig", &kubeconfig, "--context", "b"]));
    let line = out.assert_one_error_line();
    assert_eq!(
        line,
        format!("koidc: user \"ub\" of context \"b\" does not run koidc (it uses a token){hint}")
    );
    assert!(!out.stderr.contains("t0ken"), "the token was echoed");
}
