//! The RBAC seed scenario end to end on a real kube-apiserver: users logged in through Dex by
//! koidc get the rights their IdP groups are bound to. In namespace `application`, group
//! `reader-group` may get/list/watch pods and `writer-group` may do anything with pods; nobody
//! has rights in namespace `other`. One cluster (see [`crate::kube`]) is shared by the tests of
//! this module; each test logs in as a fresh user (own koidc cache) through the fake browser.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::kube::{
    APP_NAMESPACE, KubeCluster, KubeUser, OTHER_NAMESPACE, READER, TestUser, WRITER, keep_until_exit,
    pod_create_args,
};
use crate::support::Output;

/// The pod the admin creates in `application` before the tests.
const SEED_POD: &str = "seed";

/// The cluster of this module, started (and seeded) by the first test that needs it.
fn cluster() -> &'static KubeCluster {
    static CLUSTER: OnceLock<Result<&'static KubeCluster, String>> = OnceLock::new();
    let started = CLUSTER.get_or_init(|| {
        keep_until_exit(|| {
            let cluster = KubeCluster::start_default();
            eprintln!("kube-apiserver ready after {:?}", cluster.apiserver_startup());
            seed(&cluster);
            cluster
        })
    });
    match started {
        Ok(cluster) => cluster,
        Err(message) => panic!("the test cluster did not start: {message}"),
    }
}

/// Namespaces, the seed pod and the example roles bound to the IdP groups.
fn seed(cluster: &KubeCluster) {
    cluster.create_namespace(APP_NAMESPACE);
    cluster.create_namespace(OTHER_NAMESPACE);
    cluster.create_pod(APP_NAMESPACE, SEED_POD);
    // TODO(lead): replace with koidc bind-group output
    let ns = APP_NAMESPACE;
    cluster.admin_ok(&[
        "create",
        "role",
        "reader",
        "-n",
        ns,
        "--verb=get,watch,list",
        "--resource=pods",
    ]);
    cluster.admin_ok(&[
        "create",
        "role",
        "writer",
        "-n",
        ns,
        "--verb=*",
        "--resource=pods",
    ]);
    let reader_group = READER.kube_group();
    let writer_group = WRITER.kube_group();
    cluster.admin_ok(&[
        "create",
        "rolebinding",
        "reader",
        "-n",
        ns,
        "--role=reader",
        &format!("--group={reader_group}"),
    ]);
    cluster.admin_ok(&[
        "create",
        "rolebinding",
        "writer",
        "-n",
        ns,
        "--role=writer",
        &format!("--group={writer_group}"),
    ]);
}

/// A unique pod name for a test.
fn pod_name(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A new user dir and kubeconfig for `user` on the shared cluster.
fn login_as(user: &TestUser) -> KubeUser {
    cluster().user(user)
}

/// Fails unless kubectl was refused by RBAC (not by authentication).
#[track_caller]
fn assert_forbidden(out: &Output, user: &TestUser) {
    out.assert_failure();
    assert!(
        out.stderr.contains("forbidden"),
        "{}: expected an RBAC refusal, got:\n{}",
        out.what,
        out.stderr
    );
    assert!(
        out.stderr.contains(&user.kube_username()),
        "{}: the refusal does not name the OIDC user {}:\n{}",
        out.what,
        user.kube_username(),
        out.stderr
    );
}

/// No JWT in kubectl's output (koidc writes its token only to kubectl's pipe).
#[track_caller]
fn assert_no_token(out: &Output) {
    assert!(
        !out.stdout.contains("eyJ") && !out.stderr.contains("eyJ"),
        "{}: a JWT showed in kubectl's output",
        out.what
    );
}

#[test]
fn reader_lists_pods_in_application_but_cannot_delete_them() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    let reader = login_as(&READER);

    let list = reader.kubectl(&["get", "pods", "-n", APP_NAMESPACE, "-o", "name"]);
    list.assert_success();
    assert_no_token(&list);
    assert!(
        list.stdout.lines().any(|l| l == format!("pod/{SEED_POD}")),
        "the reader does not see the seeded pod:\n{}",
        list.stdout
    );
    assert_eq!(reader.browser.launches(), 1, "one browser login");

    let delete = reader.kubectl(&["delete", "pod", SEED_POD, "-n", APP_NAMESPACE]);
    assert_forbidden(&delete, &READER);
    assert_no_token(&delete);
    cluster.admin_ok(&["get", "pod", SEED_POD, "-n", APP_NAMESPACE]);
    assert_eq!(
        reader.browser.launches(),
        1,
        "the second kubectl used koidc's cached token"
    );
}

#[test]
fn reader_cannot_list_pods_in_other_namespace() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    let reader = login_as(&READER);

    let list = reader.kubectl(&["get", "pods", "-n", OTHER_NAMESPACE]);
    assert_forbidden(&list, &READER);
    assert_no_token(&list);
}

#[test]
fn writer_creates_and_deletes_pods_in_application() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    let writer = login_as(&WRITER);
    let name = pod_name("writer");

    writer
        .kubectl(&pod_create_args(APP_NAMESPACE, &name))
        .assert_success();
    let get = cluster.admin_ok(&["get", "pod", &name, "-n", APP_NAMESPACE, "-o", "json"]);
    let pod: Value = serde_json::from_str(&get.stdout).expect("kubectl printed the pod as JSON");
    assert_eq!(pod["metadata"]["name"], name.as_str());

    let delete = writer.kubectl(&["delete", "pod", &name, "-n", APP_NAMESPACE]);
    delete.assert_success();
    assert_no_token(&delete);
    let gone = cluster.admin(&["get", "pod", &name, "-n", APP_NAMESPACE]);
    gone.assert_failure();
    assert!(
        gone.stderr.contains("NotFound") || gone.stderr.contains("not found"),
        "the pod the writer deleted is still there:\n{}",
        gone.stderr
    );

    // The writer's rights stop at namespace `application`.
    let elsewhere = writer.kubectl(&pod_create_args(OTHER_NAMESPACE, &pod_name("writer")));
    assert_forbidden(&elsewhere, &WRITER);
    assert_eq!(writer.browser.launches(), 1, "one browser login");
}

#[test]
fn whoami_shows_prefixed_email_and_groups() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    let reader = login_as(&READER);

    let out = reader.kubectl(&["auth", "whoami", "-o", "json"]);
    out.assert_success();
    assert_no_token(&out);
    let review: Value = serde_json::from_str(&out.stdout).expect("whoami printed JSON");
    let info = &review["status"]["userInfo"];
    assert_eq!(info["username"], "oidc:reader@example.com", "in {review}");
    let groups: Vec<&str> = info["groups"]
        .as_array()
        .expect("groups is a list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for expected in ["oidc:reader-group", "system:authenticated"] {
        assert!(groups.contains(&expected), "{expected} missing from {groups:?}");
    }
    assert!(
        !groups.contains(&"oidc:writer-group"),
        "the reader got the writer's group: {groups:?}"
    );
}
