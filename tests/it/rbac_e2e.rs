//! The RBAC seed scenario end to end on a real kube-apiserver, set up only with koidc's own
//! output: the apiserver runs with the `AuthenticationConfiguration` that `koidc setup` printed;
//! the roles and bindings are what `koidc bind-group --apply` applied (with the groups prefix
//! `koidc setup` saved, never given again); users run kubectl with the kubeconfig entry
//! `koidc setup --write-kubeconfig` wrote into a kubeconfig made with `kubectl config`.
//!
//! In namespace `application`, group `reader-group` may get/list/watch pods and `writer-group`
//! may do anything with pods; nobody has rights in namespace `other`. One cluster (see
//! [`crate::kube`]) is shared by the tests of this module; each test logs in as a fresh user (own
//! HOME and koidc cache) through the fake browser, the test knobs reaching `koidc get-token`
//! through kubectl's environment. Other tests here check the admin commands' own promises on
//! the real API: re-applying changes nothing, printed objects pass a server-side dry run, a
//! binding's immutable roleRef and a namespaced Role bound cluster-wide are refused clearly.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::kube::{
    APP_NAMESPACE, BYSTANDER, KubeCluster, KubeUser, OTHER_NAMESPACE, PREFIX, READER, TestUser, USER_CLUSTER,
    USER_CONTEXT, USER_NAME, WRITER, pod_create_args, run_koidc, shared_cluster,
};
use crate::setup_cmd::subject_names;
use crate::support::{Output, V1, clean_command, koidc_bin, run};

/// The pod the admin creates in `application` before the tests.
const SEED_POD: &str = "seed";

/// The `koidc bind-group` arguments of the seed scenario (without `--apply ...`).
const SEED_BINDINGS: [[&str; 4]; 2] = [
    ["reader-group", "reader", "-n", APP_NAMESPACE],
    ["writer-group", "writer", "-n", APP_NAMESPACE],
];

/// The objects `koidc bind-group` names for the seed scenario: (kind, name) in `application`.
const SEED_OBJECTS: [(&str, &str); 4] = [
    ("role", "koidc-reader"),
    ("rolebinding", "koidc:reader-group:koidc-reader"),
    ("role", "koidc-writer"),
    ("rolebinding", "koidc:writer-group:koidc-writer"),
];

/// What the seeding left for the tests to check.
struct Seeded {
    /// The user kubeconfig `koidc setup --write-kubeconfig` wrote the `oidc` user into.
    kubeconfig: PathBuf,
    /// That `koidc setup` run.
    kubeconfig_setup: Output,
}

static SEEDED: OnceLock<Seeded> = OnceLock::new();

/// The cluster of this module, started (and seeded) by the first test that needs it.
fn cluster() -> &'static KubeCluster {
    static CLUSTER: OnceLock<Result<&'static KubeCluster, String>> = OnceLock::new();
    shared_cluster(&CLUSTER, || {
        let cluster = KubeCluster::start_default();
        eprintln!("kube-apiserver ready after {:?}", cluster.apiserver_startup());
        let seeded = seed(&cluster);
        let _ = SEEDED.set(seeded);
        cluster
    })
}

/// The seeding's results (starting the cluster if needed).
fn seeded() -> &'static Seeded {
    cluster();
    SEEDED.get().expect("the cluster was seeded")
}

/// Namespaces, the seed pod, the example roles bound to the IdP groups by
/// `koidc bind-group --apply`, and the user kubeconfig written by `koidc setup`.
fn seed(cluster: &KubeCluster) -> Seeded {
    cluster.create_namespace(APP_NAMESPACE);
    cluster.create_namespace(OTHER_NAMESPACE);
    cluster.create_pod(APP_NAMESPACE, SEED_POD);
    for args in SEED_BINDINGS {
        // No --group-prefix: the prefix comes from what `koidc setup` saved.
        cluster.bind_group_apply(&args).assert_success();
    }
    let kubeconfig = cluster.idp.dir().join("user-kubeconfig").join("config");
    let kubeconfig_setup = cluster.write_user_kubeconfig(&kubeconfig);
    Seeded {
        kubeconfig,
        kubeconfig_setup,
    }
}

/// A unique pod name for a test.
fn pod_name(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A new user (own HOME and koidc cache) running kubectl with the kubeconfig `koidc setup` wrote.
fn login_as(user: &TestUser) -> KubeUser {
    cluster().user_of(user, &seeded().kubeconfig)
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
        crate::support::find_jwt(&out.stdout).is_none() && crate::support::find_jwt(&out.stderr).is_none(),
        "{}: a JWT showed in kubectl's output",
        out.what
    );
}

/// An object as the admin reads it (`kubectl get KIND NAME [-n NS] -o json`).
#[track_caller]
fn get_json(cluster: &KubeCluster, kind: &str, name: &str, namespace: Option<&str>) -> Value {
    let mut args = vec!["get", kind, name, "-o", "json"];
    if let Some(ns) = namespace {
        args.extend(["-n", ns]);
    }
    let out = cluster.admin_ok(&args);
    serde_json::from_str(&out.stdout).expect("kubectl printed the object as JSON")
}

/// `metadata.resourceVersion` of an object in `application`.
#[track_caller]
fn resource_version(cluster: &KubeCluster, kind: &str, name: &str) -> String {
    let object = get_json(cluster, kind, name, Some(APP_NAMESPACE));
    object["metadata"]["resourceVersion"]
        .as_str()
        .expect("a resourceVersion")
        .to_owned()
}

/// Fails unless the admin's `kubectl get` says the object does not exist.
#[track_caller]
fn assert_absent(cluster: &KubeCluster, args: &[&str]) {
    let out = cluster.admin(args);
    out.assert_failure();
    assert!(
        out.stderr.contains("NotFound") || out.stderr.contains("not found"),
        "{}: expected NotFound, got:\n{}",
        out.what,
        out.stderr
    );
}

/// Fails unless a koidc admin command failed with one error line (`koidc: ...`, the last line of
/// stderr; before it only the notice of the saved groups prefix) and printed nothing on stdout.
/// Returns the error line.
#[track_caller]
fn assert_one_error(out: &Output) -> String {
    out.assert_failure();
    assert!(out.stdout.is_empty(), "{}: stdout {:?}", out.what, out.stdout);
    let lines = out.stderr_lines();
    let (error, notices) = lines.split_last().expect("an error on stderr");
    assert!(
        error.starts_with("koidc: ") && !error.contains("koidc: warning"),
        "{}: the last stderr line is not koidc's error: {:?}",
        out.what,
        lines
    );
    for notice in notices {
        assert!(
            notice.starts_with("koidc: using the groups prefix"),
            "{}: unexpected stderr line {notice:?} before the error",
            out.what
        );
    }
    error.to_string()
}

/// Fails unless `text` contains every one of `expected`.
#[track_caller]
fn assert_contains_all(text: &str, expected: &[&str]) {
    for e in expected {
        assert!(text.contains(e), "{e:?} missing from {text:?}");
    }
}

/// How often `needle` occurs in `haystack`.
fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn apiserver_runs_the_authentication_config_koidc_setup_printed() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    let setup = cluster
        .auth_setup()
        .expect("the cluster was started from koidc setup");
    setup.assert_success();

    let file = std::fs::read_to_string(cluster.auth_config_file()).expect("read the auth config");
    assert_eq!(
        file, setup.stdout,
        "the apiserver got something else than setup's stdout"
    );
    assert!(
        setup
            .stdout
            .starts_with("apiVersion: apiserver.config.k8s.io/v1\n"),
        "not only the AuthenticationConfiguration on stdout:\n{}",
        setup.stdout
    );
    assert_eq!(
        count(&setup.stdout, &format!("prefix: \"{PREFIX}\"")),
        2,
        "setup's default prefixes are not {PREFIX:?} for both username and groups:\n{}",
        setup.stdout
    );
    for expected in [
        format!("url: {}", cluster.issuer()),
        "claim: email".to_owned(),
        "claim: groups".to_owned(),
        "- koidc".to_owned(),
    ] {
        assert!(
            setup.stdout.contains(&expected),
            "{expected:?} missing from:\n{}",
            setup.stdout
        );
    }
    // The CA is inline, line by line as in the PEM file.
    for line in cluster.idp.ca_pem().lines() {
        assert!(setup.stdout.contains(line), "CA line {line:?} missing");
    }

    assert!(
        setup.stderr.contains("discovery and signing keys OK"),
        "setup did not check the issuer:\n{}",
        setup.stderr
    );
    assert!(
        !setup.stderr.contains("warning") && !setup.stderr.contains("http:"),
        "setup warned about an https issuer with the right scopes:\n{}",
        setup.stderr
    );
    let saved = cluster.idp.admin_config_dir().join("koidc/cluster.json");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&saved).expect("setup saved"))
        .expect("cluster.json is JSON");
    assert_eq!(saved["groupsPrefix"], PREFIX);
}

#[test]
fn bind_group_subjects_carry_the_prefix_setup_saved() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    for (user, binding, role) in [
        (READER, "koidc:reader-group:koidc-reader", "koidc-reader"),
        (WRITER, "koidc:writer-group:koidc-writer", "koidc-writer"),
    ] {
        let out = cluster.admin_ok(&[
            "get",
            "rolebinding",
            binding,
            "-n",
            APP_NAMESPACE,
            "-o",
            "json",
            "--show-managed-fields",
        ]);
        let b: Value = serde_json::from_str(&out.stdout).expect("kubectl printed JSON");
        assert_eq!(b["subjects"][0]["kind"], "Group", "in {b}");
        assert_eq!(b["subjects"][0]["name"], user.kube_group().as_str(), "in {b}");
        assert_eq!(b["roleRef"]["kind"], "Role", "in {b}");
        assert_eq!(b["roleRef"]["name"], role, "in {b}");
        let managers: Vec<&str> = b["metadata"]["managedFields"]
            .as_array()
            .expect("managedFields")
            .iter()
            .filter_map(|f| f["manager"].as_str())
            .collect();
        assert_eq!(managers, ["koidc"], "not server-side applied by koidc: {b}");
    }
}

#[test]
fn bind_group_apply_twice_changes_nothing() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    let before: Vec<String> = SEED_OBJECTS
        .iter()
        .map(|(kind, name)| resource_version(cluster, kind, name))
        .collect();

    for args in SEED_BINDINGS {
        let again = cluster.bind_group_apply(&args);
        again.assert_success();
        let saved = cluster.idp.admin_config_dir().join("koidc/cluster.json");
        assert!(
            again.stderr.contains(&format!(
                "using the groups prefix \"{PREFIX}\" saved in {}",
                saved.display()
            )),
            "bind-group did not take the prefix setup saved:\n{}",
            again.stderr
        );
        assert!(
            again.stdout.contains("serverside-applied"),
            "kubectl's result is missing:\n{}",
            again.stdout
        );
    }

    let after: Vec<String> = SEED_OBJECTS
        .iter()
        .map(|(kind, name)| resource_version(cluster, kind, name))
        .collect();
    assert_eq!(before, after, "re-applying changed {SEED_OBJECTS:?}");
}

#[test]
fn bind_group_output_passes_a_server_side_dry_run() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    let printed = cluster
        .idp
        .koidc_admin(&["bind-group", "reader-group", "reader", "-n", APP_NAMESPACE]);
    printed.assert_success();
    assert!(
        printed.stdout.contains(&format!("name: {}", READER.kube_group())),
        "the printed subject lacks the saved prefix:\n{}",
        printed.stdout
    );
    let version = resource_version(cluster, "rolebinding", "koidc:reader-group:koidc-reader");

    let dry_run = cluster.admin_stdin(&["apply", "--dry-run=server", "-f", "-"], &printed.stdout);
    dry_run.assert_success();
    for object in [
        "role.rbac.authorization.k8s.io/koidc-reader",
        "rolebinding.rbac.authorization.k8s.io/koidc:reader-group:koidc-reader",
    ] {
        assert!(
            dry_run.stdout.contains(object) && dry_run.stdout.contains("(server dry run)"),
            "{object} not checked by the server:\n{}",
            dry_run.stdout
        );
    }
    assert_eq!(
        version,
        resource_version(cluster, "rolebinding", "koidc:reader-group:koidc-reader"),
        "the dry run changed the binding"
    );
}

#[test]
fn changing_a_bindings_role_ref_is_refused_with_the_command_that_unblocks_it() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    // Binding names hold the role's name, so the one clash left is an existing Role and an
    // existing ClusterRole of the same name bound to the same group in the same namespace.
    let (group, role, binding) = ("auditor-group", "auditor", "koidc:auditor-group:auditor");
    let ns = APP_NAMESPACE;
    cluster.admin_ok(&["create", "role", role, "-n", ns, "--verb=get", "--resource=pods"]);
    cluster.admin_ok(&["create", "clusterrole", role, "--verb=get", "--resource=pods"]);

    cluster
        .bind_group_apply(&[group, role, "-n", ns])
        .assert_success();
    let before = get_json(cluster, "rolebinding", binding, Some(ns));
    assert_eq!(before["roleRef"]["kind"], "Role", "in {before}");

    let clash = cluster.bind_group_apply(&[group, role, "-n", ns, "--cluster-role"]);
    let error = assert_one_error(&clash);
    for expected in [
        format!("RoleBinding \"{binding}\" in namespace {ns} already exists with a different role"),
        format!("`kubectl delete rolebinding {binding} -n {ns}`"),
    ] {
        assert!(error.contains(&expected), "{expected:?} missing from {error:?}");
    }
    let after = get_json(cluster, "rolebinding", binding, Some(ns));
    assert_eq!(after["roleRef"], before["roleRef"]);
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );

    // Doing what the error says works.
    cluster.admin_ok(&["delete", "rolebinding", binding, "-n", ns]);
    cluster
        .bind_group_apply(&[group, role, "-n", ns, "--cluster-role"])
        .assert_success();
    let replaced = get_json(cluster, "rolebinding", binding, Some(ns));
    assert_eq!(replaced["roleRef"]["kind"], "ClusterRole", "in {replaced}");
    assert_eq!(replaced["subjects"][0]["name"], format!("{PREFIX}{group}"));
}

/// `kubectl auth can-i` as the admin impersonating a member of `group` (with the prefix).
fn group_can(cluster: &KubeCluster, group: &str, verb: &str, resource: &str, ns: &str) -> bool {
    let as_group = format!("--as-group={PREFIX}{group}");
    let out = cluster.admin(&[
        "auth",
        "can-i",
        verb,
        resource,
        "-n",
        ns,
        "--as=someone@example.com",
        &as_group,
    ]);
    out.stdout.trim() == "yes"
}

#[test]
fn cluster_wide_bindings_apply_and_a_namespaced_role_cluster_wide_is_refused() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    let group = "ops-group";
    assert!(!group_can(cluster, group, "list", "secrets", OTHER_NAMESPACE));

    // A built-in ClusterRole everywhere. (`view` grants nothing here: its rules are aggregated
    // by the controller manager, which this cluster does not run.)
    cluster
        .bind_group_apply(&[group, "view", "--cluster-wide"])
        .assert_success();
    let b = get_json(cluster, "clusterrolebinding", "koidc:ops-group:view", None);
    assert_eq!(b["roleRef"]["kind"], "ClusterRole", "in {b}");
    assert_eq!(b["roleRef"]["name"], "view", "in {b}");
    assert_eq!(b["subjects"][0]["name"], format!("{PREFIX}{group}"), "in {b}");

    // A preset cluster-wide: koidc writes the ClusterRole too.
    let preset = cluster.bind_group_apply(&[group, "reader", "--cluster-wide", "--resource", "secrets"]);
    preset.assert_success();
    assert!(
        preset
            .stdout
            .contains("clusterrole.rbac.authorization.k8s.io/koidc-reader-")
            && preset
                .stdout
                .contains("clusterrolebinding.rbac.authorization.k8s.io/koidc:ops-group:koidc-reader-"),
        "{}",
        preset.stdout
    );
    assert!(group_can(cluster, group, "list", "secrets", OTHER_NAMESPACE));
    assert!(!group_can(cluster, group, "delete", "secrets", OTHER_NAMESPACE));

    // An existing ClusterRole, bound in one namespace.
    cluster.admin_ok(&[
        "create",
        "clusterrole",
        "ops-deleter",
        "--verb=delete",
        "--resource=pods",
    ]);
    cluster
        .bind_group_apply(&[group, "ops-deleter", "--cluster-role", "-n", APP_NAMESPACE])
        .assert_success();
    let b = get_json(
        cluster,
        "rolebinding",
        "koidc:ops-group:ops-deleter",
        Some(APP_NAMESPACE),
    );
    assert_eq!(b["roleRef"]["kind"], "ClusterRole", "in {b}");
    assert!(group_can(cluster, group, "delete", "pods", APP_NAMESPACE));
    assert!(!group_can(cluster, group, "delete", "pods", OTHER_NAMESPACE));

    // A namespaced Role cannot be bound cluster-wide: refused before anything is applied.
    cluster.admin_ok(&[
        "create",
        "role",
        "deployer",
        "-n",
        APP_NAMESPACE,
        "--verb=*",
        "--resource=pods",
    ]);
    let refused = cluster.bind_group_apply(&[group, "deployer", "--cluster-wide"]);
    let error = assert_one_error(&refused);
    assert!(
        error.contains("\"deployer\" is taken as an existing namespaced Role")
            && error.contains("--role-kind cluster-role"),
        "{error:?}"
    );
    assert_absent(
        cluster,
        &["get", "clusterrolebinding", "koidc:ops-group:deployer"],
    );
    assert_absent(cluster, &["get", "clusterrole", "deployer"]);
}

/// `kubectl config view -o json` of a kubeconfig file (kubectl reads what koidc wrote).
fn kubeconfig_view(cluster: &KubeCluster, path: &Path) -> Value {
    let home = path.parent().expect("kubeconfig dir");
    let mut cmd = clean_command(cluster.kubectl_bin(), home);
    cmd.arg(format!("--kubeconfig={}", path.display()))
        .args(["config", "view", "-o", "json"]);
    let out = run(&mut cmd);
    out.assert_success();
    serde_json::from_str(&out.stdout).expect("kubectl config view printed JSON")
}

/// The `name`s of a kubeconfig list (`clusters`, `users`, `contexts`).
fn names<'a>(config: &'a Value, list: &str) -> Vec<&'a str> {
    config[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} is a list in {config}"))
        .iter()
        .filter_map(|item| item["name"].as_str())
        .collect()
}

#[test]
fn setup_wrote_the_exec_entry_and_kept_the_rest_of_the_kubeconfig() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    let seeded = seeded();
    assert!(
        seeded.kubeconfig_setup.stderr.contains(&format!(
            "wrote user \"{USER_NAME}\" to {}",
            seeded.kubeconfig.display()
        )),
        "{}",
        seeded.kubeconfig_setup.stderr
    );
    assert!(
        !seeded.kubeconfig_setup.stderr.contains("warning"),
        "{}",
        seeded.kubeconfig_setup.stderr
    );
    let mode = std::fs::metadata(&seeded.kubeconfig)
        .expect("kubeconfig")
        .permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);

    let config = kubeconfig_view(cluster, &seeded.kubeconfig);
    let mut clusters = names(&config, "clusters");
    clusters.sort_unstable();
    assert_eq!(clusters, [BYSTANDER, USER_CLUSTER]);
    let mut contexts = names(&config, "contexts");
    contexts.sort_unstable();
    assert_eq!(contexts, [BYSTANDER, USER_CONTEXT]);
    assert_eq!(config["current-context"], USER_CONTEXT);
    let mut users = names(&config, "users");
    users.sort_unstable();
    assert_eq!(users, [BYSTANDER, USER_NAME]);
    let server = config["clusters"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == USER_CLUSTER))
        .map(|c| c["cluster"]["server"].clone());
    assert_eq!(server, Some(Value::from(cluster.url())));

    let user = config["users"]
        .as_array()
        .and_then(|l| l.iter().find(|u| u["name"] == USER_NAME))
        .expect("the oidc user");
    let exec = &user["user"]["exec"];
    assert_eq!(exec["apiVersion"], V1, "in {exec}");
    assert_eq!(exec["interactiveMode"], "IfAvailable", "in {exec}");
    assert_eq!(exec["command"], koidc_bin(), "in {exec}");
    assert!(
        exec["installHint"].as_str().is_some_and(|h| h.contains("koidc")),
        "no install hint in {exec}"
    );
    let args: Vec<&str> = exec["args"]
        .as_array()
        .expect("exec args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let issuer = format!("--issuer={}", cluster.issuer());
    let ca = format!("--certificate-authority={}", cluster.idp.ca_file().display());
    assert_eq!(
        args,
        [
            "get-token",
            issuer.as_str(),
            "--client-id=koidc",
            "--scope=email",
            "--scope=groups",
            "--scope=offline_access",
            ca.as_str(),
        ],
        "in {exec}"
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
    // KOIDC_CACHE=file and KOIDC_CACHE_DIR reached the plugin through kubectl's environment.
    let cached = std::fs::read_dir(&reader.cache_dir).map_or(0, |d| d.count());
    assert!(
        cached > 0,
        "koidc cached nothing in {}",
        reader.cache_dir.display()
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
    assert_eq!(reader.browser.launches(), 1, "one browser login");
}

#[test]
fn bind_group_without_a_saved_or_given_groups_prefix_warns_that_the_subject_has_no_prefix() {
    // An admin who never ran `koidc setup` here (another machine, a fresh HOME): the cluster
    // most likely prefixes groups with koidc's default `oidc:`, and a bare subject matches nobody.
    let home = tempfile::tempdir().expect("a temporary HOME");
    let config_dir = home.path().join("never-set-up");
    let bare = run_koidc(
        home.path(),
        &config_dir,
        &["bind-group", "devs", "view", "-n", "team"],
        &[],
    );
    bare.assert_success();
    assert_eq!(subject_names(&bare.stdout), ["devs"], "{}", bare.stdout);
    let lines = bare.stderr_lines();
    assert_eq!(lines.len(), 1, "one warning expected: {lines:?}");
    assert_contains_all(
        lines[0],
        &[
            "koidc: warning: no groups prefix given and none saved by `koidc setup`",
            "\"devs\"",
            "--group-prefix oidc:",
            "--group-prefix ''",
        ],
    );

    // Several groups from a file: one warning for all of them.
    let file = home.path().join("groups.yaml");
    std::fs::write(
        &file,
        "- {group: devs, role: view, namespace: team}\n- {group: ops, role: edit, clusterWide: true}\n",
    )
    .expect("write the bindings file");
    let from = run_koidc(
        home.path(),
        &config_dir,
        &[OsStr::new("bind-group"), OsStr::new("--from"), file.as_os_str()],
        &[],
    );
    from.assert_success();
    assert_eq!(subject_names(&from.stdout), ["devs", "ops"], "{}", from.stdout);
    assert_eq!(
        from.stderr_lines().len(),
        1,
        "one warning for the file: {}",
        from.stderr
    );
    assert!(from.stderr.contains("--group-prefix oidc:"), "{}", from.stderr);

    // `--group-prefix ''` says "no prefix" on purpose: no warning.
    let none = run_koidc(
        home.path(),
        &config_dir,
        &["bind-group", "devs", "view", "-n", "team", "--group-prefix", ""],
        &[],
    );
    none.assert_success();
    assert_eq!(subject_names(&none.stdout), ["devs"], "{}", none.stdout);
    assert_eq!(none.stderr, "", "no warning when the prefix is given as none");
    assert!(
        !config_dir.exists(),
        "bind-group created {}",
        config_dir.display()
    );
}

#[test]
fn bind_group_apply_refuses_a_misspelled_role_and_names_the_role_it_resembles() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    let ns = APP_NAMESPACE;

    // The example: `Reader` bound a Role that does not exist, exit 0.
    let refused = cluster.bind_group_apply(&["developers", "Reader", "-n", ns]);
    let error = assert_one_error(&refused);
    assert_contains_all(
        &error,
        &[
            "Role \"Reader\" does not exist in namespace application",
            "did you mean the preset `reader`",
            "--allow-missing-role",
        ],
    );
    assert_absent(
        cluster,
        &["get", "rolebinding", "koidc:developers:Reader", "-n", ns],
    );

    // A built-in ClusterRole misspelled.
    let refused = cluster.bind_group_apply(&["developers", "veiw", "--cluster-role", "--cluster-wide"]);
    let error = assert_one_error(&refused);
    assert_contains_all(
        &error,
        &[
            "ClusterRole \"veiw\" does not exist",
            "did you mean the built-in ClusterRole `view`",
            "--allow-missing-role",
        ],
    );
    assert_absent(cluster, &["get", "clusterrolebinding", "koidc:developers:veiw"]);

    // Printed for review (no --apply, no cluster access): the objects, and a warning.
    let printed = cluster
        .idp
        .koidc_admin(&["bind-group", "developers", "Reader", "-n", ns]);
    printed.assert_success();
    assert!(printed.stdout.contains("  name: Reader\n"), "{}", printed.stdout);
    assert!(
        printed.stderr.lines().any(|l| l.starts_with("koidc: warning: ")
            && l.contains("\"Reader\"")
            && l.contains("`reader`")
            && l.contains("--role-kind role")),
        "no typo warning:\n{}",
        printed.stderr
    );
}

#[test]
fn bind_group_apply_of_a_missing_role_says_when_it_exists_as_the_other_kind() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    let ns = APP_NAMESPACE;
    cluster.admin_ok(&[
        "create",
        "clusterrole",
        "pod-lister",
        "--verb=list",
        "--resource=pods",
    ]);
    cluster.admin_ok(&[
        "create",
        "role",
        "pod-getter",
        "-n",
        ns,
        "--verb=get",
        "--resource=pods",
    ]);

    let refused = cluster.bind_group_apply(&["listers", "pod-lister", "-n", ns]);
    let error = assert_one_error(&refused);
    assert_contains_all(
        &error,
        &[
            "Role \"pod-lister\" does not exist in namespace application",
            "a ClusterRole \"pod-lister\" exists",
            "--role-kind cluster-role",
        ],
    );
    let refused =
        cluster.bind_group_apply(&["getters", "pod-getter", "--role-kind", "cluster-role", "-n", ns]);
    let error = assert_one_error(&refused);
    assert_contains_all(
        &error,
        &[
            "ClusterRole \"pod-getter\" does not exist",
            "a Role \"pod-getter\" exists in namespace application",
            "--role-kind role",
        ],
    );

    // Doing what the errors say works.
    cluster
        .bind_group_apply(&["listers", "pod-lister", "--role-kind", "cluster-role", "-n", ns])
        .assert_success();
    assert!(group_can(cluster, "listers", "list", "pods", ns));
    cluster
        .bind_group_apply(&["getters", "pod-getter", "--role-kind", "role", "-n", ns])
        .assert_success();
    assert!(group_can(cluster, "getters", "get", "pods", ns));
}

#[test]
fn bind_group_apply_binds_a_role_that_does_not_exist_yet_only_with_allow_missing_role() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    let ns = APP_NAMESPACE;
    let binding = "koidc:later-group:created-later";

    let refused = cluster.bind_group_apply(&["later-group", "created-later", "-n", ns]);
    let error = assert_one_error(&refused);
    assert!(
        error.contains("Role \"created-later\" does not exist in namespace application")
            && error.contains("create it first")
            && error.contains("--allow-missing-role")
            && !error.contains("did you mean"),
        "{error:?}"
    );
    assert_absent(cluster, &["get", "rolebinding", binding, "-n", ns]);

    let allowed =
        cluster.bind_group_apply(&["later-group", "created-later", "-n", ns, "--allow-missing-role"]);
    allowed.assert_success();
    let b = get_json(cluster, "rolebinding", binding, Some(ns));
    assert_eq!(b["roleRef"]["kind"], "Role", "in {b}");
    assert_eq!(b["roleRef"]["name"], "created-later", "in {b}");
    assert!(!group_can(cluster, "later-group", "get", "pods", ns));

    // Once the Role exists the binding grants it, and a plain re-apply passes the check.
    cluster.admin_ok(&[
        "create",
        "role",
        "created-later",
        "-n",
        ns,
        "--verb=get",
        "--resource=pods",
    ]);
    assert!(group_can(cluster, "later-group", "get", "pods", ns));
    cluster
        .bind_group_apply(&["later-group", "created-later", "-n", ns])
        .assert_success();

    // A bindings file is checked entry by entry before anything is applied.
    let file = cluster.idp.dir().join("missing-role-bindings.yaml");
    std::fs::write(
        &file,
        format!(
            "- {{group: file-group, role: reader, namespace: {ns}}}\n- {{group: file-group, role: no-such-role, namespace: {ns}}}\n"
        ),
    )
    .expect("write the bindings file");
    let file_arg = file.display().to_string();
    let refused = cluster.bind_group_apply(&["--from", &file_arg]);
    let error = assert_one_error(&refused);
    assert!(
        error.contains("Role \"no-such-role\" does not exist in namespace application"),
        "{error:?}"
    );
    assert_absent(
        cluster,
        &["get", "rolebinding", "koidc:file-group:koidc-reader", "-n", ns],
    );
}

#[test]
fn bind_group_role_kind_binds_existing_roles_named_like_the_presets() {
    let cluster = cluster();
    let _logs = cluster.print_logs_on_failure();
    let (ns, group) = (APP_NAMESPACE, "guide-readers");
    // The guide's own names: a Role `reader` and a ClusterRole `writer` made by hand.
    cluster.admin_ok(&[
        "create",
        "role",
        "reader",
        "-n",
        ns,
        "--verb=get",
        "--resource=configmaps",
    ]);
    cluster.admin_ok(&[
        "create",
        "clusterrole",
        "writer",
        "--verb=delete",
        "--resource=configmaps",
    ]);

    let role = cluster.bind_group_apply(&[group, "reader", "--role-kind", "role", "-n", ns]);
    role.assert_success();
    let b = get_json(cluster, "rolebinding", "koidc:guide-readers:reader", Some(ns));
    assert_eq!(b["roleRef"]["kind"], "Role", "in {b}");
    assert_eq!(b["roleRef"]["name"], "reader", "in {b}");
    assert!(group_can(cluster, group, "get", "configmaps", ns));
    assert!(
        !group_can(cluster, group, "list", "pods", ns),
        "the preset was bound instead of the Role"
    );
    assert_absent(
        cluster,
        &["get", "rolebinding", "koidc:guide-readers:koidc-reader", "-n", ns],
    );

    let cluster_role = cluster.bind_group_apply(&[group, "writer", "--role-kind", "cluster-role", "-n", ns]);
    cluster_role.assert_success();
    let b = get_json(cluster, "rolebinding", "koidc:guide-readers:writer", Some(ns));
    assert_eq!(b["roleRef"]["kind"], "ClusterRole", "in {b}");
    assert_eq!(b["roleRef"]["name"], "writer", "in {b}");
    assert!(group_can(cluster, group, "delete", "configmaps", ns));
    assert!(!group_can(
        cluster,
        group,
        "delete",
        "configmaps",
        OTHER_NAMESPACE
    ));

    // A Role lives in one namespace: it is looked up in -n, and cannot be bound cluster-wide.
    let elsewhere =
        cluster.bind_group_apply(&[group, "reader", "--role-kind", "role", "-n", OTHER_NAMESPACE]);
    let error = assert_one_error(&elsewhere);
    assert!(
        error.contains("Role \"reader\" does not exist in namespace other"),
        "{error:?}"
    );
    let cluster_wide = cluster.bind_group_apply(&[group, "reader", "--role-kind", "role", "--cluster-wide"]);
    let error = assert_one_error(&cluster_wide);
    assert!(error.contains("namespaced Role"), "{error:?}");
    assert_absent(
        cluster,
        &["get", "clusterrolebinding", "koidc:guide-readers:reader"],
    );

    // `--role-kind preset` takes only the presets.
    let not_preset = cluster.bind_group_apply(&[group, "view", "--role-kind", "preset", "-n", ns]);
    let error = assert_one_error(&not_preset);
    assert!(
        error.contains("\"view\" is not a preset") && error.contains("reader") && error.contains("writer"),
        "{error:?}"
    );
}

/// A kubeconfig whose only cluster is `https://127.0.0.1:PORT` on a port nobody listens on.
fn closed_port_kubeconfig(dir: &Path) -> (PathBuf, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let server = format!("127.0.0.1:{port}");
    let path = dir.join("closed-port.kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"https://{server}\"}}\n\
             users:\n- name: u\n  user: {{token: not-a-real-token}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\n\
             current-context: x\n"
        ),
    )
    .expect("write the kubeconfig");
    (path, server)
}

#[test]
fn bind_group_apply_without_a_reachable_cluster_says_so_in_one_short_line_without_suggesting_allow_missing_role()
 {
    let kubectl = crate::support::e2e_binary("KOIDC_E2E_KUBECTL", "kubectl v1.36.3");
    let home = tempfile::tempdir().expect("a temporary HOME");
    let (kubeconfig, server) = closed_port_kubeconfig(home.path());
    // The role check (kubectl get) first, then with --allow-missing-role the apply itself (of
    // the preset, so that no typo warning comes first).
    for (role, extra) in [("Reader", None), ("reader", Some("--allow-missing-role"))] {
        let mut args: Vec<&OsStr> = [
            "bind-group",
            "developers",
            role,
            "-n",
            "application",
            "--group-prefix",
            "oidc:",
            "--apply",
        ]
        .map(OsStr::new)
        .to_vec();
        args.extend([
            OsStr::new("--kubectl"),
            kubectl.as_os_str(),
            OsStr::new("--kubeconfig"),
            kubeconfig.as_os_str(),
        ]);
        args.extend(extra.map(OsStr::new));
        let out = run_koidc(home.path(), &home.path().join("config"), &args, &[]);
        let error = assert_one_error(&out);
        assert_contains_all(
            &error,
            &[
                "kubectl cannot reach a cluster",
                &server,
                "--kubeconfig",
                "--context",
            ],
        );
        assert!(!error.contains("allow-missing-role"), "{extra:?}: {error}");
        assert!(count(&error, "connection refused") <= 1, "{extra:?}: {error}");
        assert!(
            !error.contains("memcache.go") && error.len() < 300,
            "{extra:?}: not short: {error}"
        );
    }
}
