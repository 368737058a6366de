//! The audit trail on a real kube-apiserver: the apiserver runs with the audit policy
//! `koidc setup --audit-policy` printed (and the `AuthenticationConfiguration` `koidc setup`
//! printed), and its audit log must show an OIDC user's requests with the username and groups
//! the apiserver derived from the ID token, RBAC changes in full (RequestResponse), and secrets
//! without their data (Metadata).
//!
//! The cluster of this module ([`cluster`]) is shared with [`crate::doctor`]: both need the seed
//! scenario (reader-group may read pods in `application`) and a user kubeconfig written by
//! `koidc setup`, and one apiserver less is a minute less on two cores.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kube::{APP_NAMESPACE, KubeCluster, KubeIdp, OTHER_NAMESPACE, READER, keep_until_exit};

/// What [`cluster`] set up besides the cluster.
pub struct Audited {
    /// The apiserver's `--audit-log-path`.
    pub audit_log: PathBuf,
    /// The policy `koidc setup --audit-policy` printed (the apiserver's `--audit-policy-file`).
    pub policy: String,
    /// The user kubeconfig `koidc setup --write-kubeconfig` wrote (current context: the cluster).
    pub user_kubeconfig: PathBuf,
}

static AUDITED: OnceLock<Audited> = OnceLock::new();

/// The cluster of this module (and of [`crate::doctor`]), started by the first test that needs
/// it: audit policy from `koidc setup --audit-policy`, namespaces `application` and `other`,
/// `reader-group` bound to the reader preset in `application` by `koidc bind-group --apply`, a
/// user kubeconfig from `koidc setup --write-kubeconfig`.
pub fn cluster() -> &'static KubeCluster {
    static CLUSTER: OnceLock<Result<&'static KubeCluster, String>> = OnceLock::new();
    let started = CLUSTER.get_or_init(|| {
        keep_until_exit(|| {
            let idp = KubeIdp::start();
            let setup = idp.setup_auth_config();
            setup.assert_success();
            let policy = idp.koidc_admin(&["setup", "--audit-policy"]);
            policy.assert_success();
            let policy_file = idp.dir().join("audit-policy.yaml");
            std::fs::write(&policy_file, &policy.stdout).expect("write the audit policy");
            let audit_log = idp.dir().join("audit.log");
            let flags = vec![
                format!("--audit-policy-file={}", policy_file.display()),
                format!("--audit-log-path={}", audit_log.display()),
                "--audit-log-maxage=1".to_owned(),
            ];
            let cluster = KubeCluster::start_with_apiserver_flags(&setup.stdout, idp, &flags);
            cluster.create_namespace(APP_NAMESPACE);
            cluster.create_namespace(OTHER_NAMESPACE);
            cluster
                .bind_group_apply(&["reader-group", "reader", "-n", APP_NAMESPACE])
                .assert_success();
            let user_kubeconfig = cluster.idp.dir().join("user-kubeconfig").join("config");
            cluster.write_user_kubeconfig(&user_kubeconfig);
            let _ = AUDITED.set(Audited {
                audit_log,
                policy: policy.stdout,
                user_kubeconfig,
            });
            cluster
        })
    });
    match started {
        Ok(cluster) => cluster,
        Err(message) => panic!("the audited test cluster did not start: {message}"),
    }
}

/// What the cluster's start set up (starting it if needed).
pub fn audited() -> &'static Audited {
    cluster();
    AUDITED.get().expect("the audited cluster was set up")
}

/// The audit events (one JSON object per line) in `log`.
fn events(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The first event matching `pred`, waiting up to 10 s for the apiserver to write it.
#[track_caller]
fn wait_for_event(log: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = events(log).into_iter().find(|e| pred(e)) {
            return found;
        }
        if Instant::now() >= deadline {
            let all = events(log);
            let tail: Vec<String> = all.iter().rev().take(5).map(Value::to_string).collect();
            panic!(
                "no audit event {what} in {} ({} events; the last ones:\n{})",
                log.display(),
                all.len(),
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn str_at<'a>(event: &'a Value, pointer: &str) -> &'a str {
    event.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn groups(event: &Value) -> Vec<&str> {
    event
        .pointer("/user/groups")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn an_oidc_users_requests_are_audited_with_username_and_groups() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    let audited = audited();
    let reader = cluster.user_of(&READER, &audited.user_kubeconfig);
    reader
        .kubectl(&["get", "pods", "-n", APP_NAMESPACE])
        .assert_success();
    reader
        .kubectl(&["get", "pods", "-n", OTHER_NAMESPACE])
        .assert_failure();

    let username = READER.kube_username();
    let by_reader = |e: &Value, namespace: &str| {
        str_at(e, "/user/username") == username
            && str_at(e, "/verb") == "list"
            && str_at(e, "/objectRef/resource") == "pods"
            && str_at(e, "/objectRef/namespace") == namespace
    };
    let allowed = wait_for_event(&audited.audit_log, "for the reader's pod list", |e| {
        by_reader(e, APP_NAMESPACE)
    });
    assert_eq!(
        str_at(&allowed, "/user/username"),
        "oidc:reader@example.com",
        "{allowed}"
    );
    let g = groups(&allowed);
    assert!(
        g.contains(&"oidc:reader-group") && g.contains(&"system:authenticated"),
        "groups {g:?} in {allowed}"
    );
    assert_eq!(str_at(&allowed, "/level"), "Metadata", "{allowed}");
    assert_eq!(str_at(&allowed, "/stage"), "ResponseComplete", "{allowed}");
    assert_eq!(allowed.pointer("/responseStatus/code"), Some(&Value::from(200)));
    assert!(
        allowed.get("requestObject").is_none() && allowed.get("responseObject").is_none(),
        "a read carries a body at Metadata level: {allowed}"
    );
    assert_eq!(
        str_at(&allowed, "/annotations/authorization.k8s.io~1decision"),
        "allow",
        "{allowed}"
    );

    let refused = wait_for_event(&audited.audit_log, "for the reader's refused pod list", |e| {
        by_reader(e, OTHER_NAMESPACE)
    });
    assert_eq!(
        refused.pointer("/responseStatus/code"),
        Some(&Value::from(403)),
        "{refused}"
    );
    assert_eq!(
        str_at(&refused, "/annotations/authorization.k8s.io~1decision"),
        "forbid",
        "{refused}"
    );
    assert!(groups(&refused).contains(&"oidc:reader-group"), "{refused}");

    let log = std::fs::read_to_string(&audited.audit_log).expect("read the audit log");
    assert!(
        crate::support::find_jwt(&log).is_none(),
        "a JWT (the ID token?) is in the audit log"
    );
    assert!(
        events(&audited.audit_log)
            .iter()
            .all(|e| str_at(e, "/stage") != "RequestReceived"),
        "the policy omits the RequestReceived stage"
    );
}

#[test]
fn rbac_changes_are_audited_in_full_and_secrets_without_their_data() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    let audited = audited();
    assert!(
        audited.policy.starts_with("# koidc: who did what"),
        "the policy file is not what setup printed:\n{}",
        audited.policy
    );

    cluster.admin_ok(&[
        "create",
        "rolebinding",
        "audit-probe",
        "--role=koidc-reader",
        "--group=oidc:auditors",
        "-n",
        APP_NAMESPACE,
    ]);
    let rbac = wait_for_event(&audited.audit_log, "for the rolebinding's creation", |e| {
        str_at(e, "/verb") == "create"
            && str_at(e, "/objectRef/resource") == "rolebindings"
            && str_at(e, "/objectRef/name") == "audit-probe"
    });
    assert_eq!(str_at(&rbac, "/level"), "RequestResponse", "{rbac}");
    assert_eq!(str_at(&rbac, "/user/username"), "koidc-admin", "{rbac}");
    assert_eq!(
        str_at(&rbac, "/requestObject/subjects/0/name"),
        "oidc:auditors",
        "the request body is not recorded: {rbac}"
    );
    assert_eq!(
        str_at(&rbac, "/responseObject/roleRef/name"),
        "koidc-reader",
        "the response body is not recorded: {rbac}"
    );

    let value = "audit-must-not-see-this-value-5b3c";
    cluster.admin_ok(&[
        "create",
        "secret",
        "generic",
        "audit-secret",
        &format!("--from-literal=password={value}"),
        "-n",
        APP_NAMESPACE,
    ]);
    let secret = wait_for_event(&audited.audit_log, "for the secret's creation", |e| {
        str_at(e, "/verb") == "create"
            && str_at(e, "/objectRef/resource") == "secrets"
            && str_at(e, "/objectRef/name") == "audit-secret"
    });
    assert_eq!(str_at(&secret, "/level"), "Metadata", "{secret}");
    assert!(secret.get("requestObject").is_none(), "{secret}");
    let log = std::fs::read_to_string(&audited.audit_log).expect("read the audit log");
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(value);
    assert!(
        !log.contains(value) && !log.contains(&encoded),
        "the secret's value is in the audit log"
    );
}
