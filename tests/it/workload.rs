//! A CI/CD pipeline reaches the cluster with its job's short-lived identity token:
//! `koidc get-token --grant workload` in a GitHub Actions job, against the token service
//! stand-in ([`crate::fake_actions`]).
//!
//! Without a cluster: the token is requested for the audience through the two
//! `ACTIONS_ID_TOKEN_REQUEST_*` variables, handed to kubectl as it is and served from the cache
//! afterwards; a job without `permissions: id-token: write`, with a wrong bearer token or with a
//! token for another audience gets one line saying what to do, and no token is ever printed
//! outside the `ExecCredential`.
//!
//! End to end, on the real kube-apiserver (one cluster for the module, see [`crate::kube`]),
//! set up only with koidc's output: the apiserver runs with what `koidc setup --print
//! authentication-config` printed for Dex (people) merged by `koidc setup --ci github-actions
//! --merge` with the authenticator for the stand-in's issuer, pinned to `acme/app` on
//! `refs/heads/main` and the audience [`AUDIENCE`]; the CI group is bound with the `koidc
//! bind-group` command that setup printed (the writer preset in `application`), and the job's
//! kubectl uses the kubeconfig user entry setup printed, whose `koidc get-token` gets the
//! job's token through the `ACTIONS_ID_TOKEN_REQUEST_*` variables in kubectl's environment.
//! The apiserver admits that job and refuses another branch, another repository and another
//! audience (401), while the human reader of the core scenario still logs in through Dex. The
//! stand-in's current job is shared, so the tests that ask it for tokens take [`JOB_LOCK`].
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::fake_actions::{FakeActions, Job};
use crate::kube::{
    APP_NAMESPACE, KubeCluster, KubeIdp, LogsOnFailure, OTHER_NAMESPACE, READER, pod_create_args,
    shared_cluster,
};
use crate::support::{
    Output, Secrets, Stdout, assert_no_leak, clean_command, find_jwt, koidc_bin, parse_exec_credential, run,
};

/// The audience the cluster's apiserver expects of pipeline tokens.
const AUDIENCE: &str = "https://kubernetes.acme.test";

/// A job's working directory: HOME and a file cache.
struct JobDir {
    _tmp: TempDir,
    home: PathBuf,
    cache: PathBuf,
}

impl JobDir {
    fn new() -> JobDir {
        let tmp = TempDir::with_prefix("koidc-workload-").expect("temp dir for the job");
        let (home, cache) = (tmp.path().join("home"), tmp.path().join("cache"));
        std::fs::create_dir_all(&home).expect("create HOME");
        JobDir {
            _tmp: tmp,
            home,
            cache,
        }
    }
}

/// `koidc get-token --grant workload --audience AUD` trusting the stand-in's CA, with a file
/// cache, in an environment holding `env` only (besides PATH and HOME).
fn get_token(job: &JobDir, ca_file: &Path, env: &[(&str, String)]) -> Output {
    let mut cmd = clean_command(koidc_bin(), &job.home);
    cmd.args(["get-token", "--grant", "workload", "--audience", AUDIENCE])
        .arg("--certificate-authority")
        .arg(ca_file)
        .args(["--cache", "file", "--cache-dir"])
        .arg(&job.cache);
    for (name, value) in env {
        cmd.env(name, value);
    }
    run(&mut cmd)
}

/// The bearer token of the job's environment: a secret that must not show up either.
fn secrets_of(actions: &FakeActions, tokens: &[&str]) -> Secrets {
    Secrets {
        id_tokens: tokens.iter().map(|t| t.to_string()).collect(),
        other: actions
            .env()
            .into_iter()
            .filter(|(name, _)| *name == "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
            .map(|(_, value)| value)
            .collect::<BTreeSet<_>>(),
    }
}

#[test]
fn a_github_actions_job_token_is_requested_for_the_audience_and_served_from_the_cache_afterwards() {
    let actions = FakeActions::start();
    let job = JobDir::new();

    let first = get_token(&job, actions.ca_file(), &actions.env());
    first.assert_success();
    let cred = parse_exec_credential(&first);
    assert_eq!(
        actions.token_requests(),
        1,
        "the first call asks the token service once"
    );
    assert_eq!(cred.claims["iss"], actions.issuer());
    assert_eq!(
        cred.claims["aud"], AUDIENCE,
        "the token is for the asked audience"
    );
    assert_eq!(cred.claims["sub"], "repo:acme/app:ref:refs/heads/main");
    assert_eq!(cred.claims["repository"], "acme/app");
    assert_eq!(cred.claims["ref"], "refs/heads/main");

    let second = get_token(&job, actions.ca_file(), &actions.env());
    second.assert_success();
    let again = parse_exec_credential(&second);
    assert_eq!(again.token, cred.token, "the second call serves the cached token");
    assert_eq!(
        actions.token_requests(),
        1,
        "a cache hit asks the token service nothing"
    );

    let secrets = secrets_of(&actions, &[&cred.token]);
    for out in [&first, &second] {
        assert_no_leak(out, &secrets, Stdout::MayHoldIdToken);
    }
}

/// A self-hosted runner keeps HOME and koidc's cache between jobs: the next job (another
/// repository, with its own request URL and bearer) must get its own token, never the cached
/// token of the job before it.
#[test]
fn a_later_job_on_the_same_runner_never_gets_the_previous_jobs_cached_token() {
    let actions = FakeActions::start();
    let runner = JobDir::new();
    let first = get_token(&runner, actions.ca_file(), &actions.env());
    let first = parse_exec_credential(first.assert_success());
    assert_eq!(first.claims["repository"], "acme/app");

    actions.set_job(Job::new("acme/other", "refs/heads/feature"));
    let second = get_token(&runner, actions.ca_file(), &actions.env());
    let second = parse_exec_credential(second.assert_success());
    assert_eq!(
        second.claims["sub"], "repo:acme/other:ref:refs/heads/feature",
        "the second job got the first job's cached token"
    );
    assert_eq!(actions.token_requests(), 2, "each job asks for its own token");
}

/// Writes `token` to `file` and returns `koidc get-token --grant workload --audience AUD
/// --token-source=file:FILE --cache-dir CACHE` in the job's clean environment.
fn token_file_command(job: &JobDir, file: &Path, token: &str) -> std::process::Command {
    std::fs::write(file, token).expect("write the job token");
    let mut cmd = clean_command(koidc_bin(), &job.home);
    cmd.args(["get-token", "--grant", "workload", "--audience", AUDIENCE])
        .arg(format!("--token-source=file:{}", file.display()))
        .arg("--cache-dir")
        .arg(&job.cache);
    cmd
}

/// A job token in a file (a Kubernetes projected token, rotated by the kubelet) is read on
/// every call: the rotated token is handed out at once, and nothing is cached.
#[test]
fn a_job_token_file_is_read_on_every_call_so_a_rotated_token_is_used_at_once() {
    let actions = FakeActions::start();
    let job = JobDir::new();
    let file = job.home.join("token");
    let run_with = |token: &str| {
        let mut cmd = token_file_command(&job, &file, token);
        cmd.args(["--cache", "file"]);
        run(&mut cmd)
    };
    let first_token = actions.mint(AUDIENCE);
    let first = run_with(&first_token);
    assert_eq!(parse_exec_credential(first.assert_success()).token, first_token);
    actions.set_job(Job::new("acme/app", "refs/heads/main"));
    let rotated = actions.mint(AUDIENCE);
    assert_ne!(rotated, first_token);
    let second = run_with(&rotated);
    assert_eq!(parse_exec_credential(second.assert_success()).token, rotated);
    assert!(
        !job.cache.exists()
            || std::fs::read_dir(&job.cache)
                .unwrap()
                .all(|e| { !e.unwrap().file_name().to_string_lossy().ends_with(".json") }),
        "a token read from a file was cached"
    );
    let secrets = secrets_of(&actions, &[&first_token, &rotated]);
    for out in [&first, &second] {
        assert_no_leak(out, &secrets, Stdout::MayHoldIdToken);
        // Every kubectl call of a job runs this: nothing for the job's log.
        assert_eq!(out.stderr, "", "a pipeline's get-token wrote to stderr");
    }
}

/// A pod's projected token read from its file needs no cache directory: koidc caches nothing
/// for it, so a container without HOME (and without `--cache-dir`) still gets its credential,
/// and nothing is written to the working directory.
#[test]
fn a_job_token_file_needs_no_cache_directory_when_home_is_unset() {
    let actions = FakeActions::start();
    let job = JobDir::new();
    let file = job.home.join("token");
    let token = actions.mint(AUDIENCE);
    std::fs::write(&file, &token).expect("write the job token");
    let mut cmd = clean_command(koidc_bin(), &job.home);
    cmd.env_remove("HOME")
        .env_remove("XDG_CACHE_HOME")
        .current_dir(&job.home)
        .args(["get-token", "--grant", "workload", "--audience", AUDIENCE])
        .arg(format!("--token-source=file:{}", file.display()));
    let out = run(&mut cmd);
    assert_eq!(parse_exec_credential(out.assert_success()).token, token);
    assert_eq!(out.stderr, "", "a pipeline's get-token wrote to stderr");
    let left: Vec<_> = std::fs::read_dir(&job.home)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name != "token")
        .collect();
    assert!(left.is_empty(), "koidc wrote {left:?} into the working directory");
}

/// What kubectl says about a background call.
const NON_INTERACTIVE: &str = r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}"#;

/// A job token file with the wrong audience fails; once the file is fixed the next kubectl call
/// works at once: reading a file asks nobody, so nothing holds a failure against it.
#[test]
fn a_fixed_token_file_is_used_at_once_after_a_failure() {
    let actions = FakeActions::start();
    let job = JobDir::new();
    let file = job.home.join("token");
    let run_with = |token: &str| {
        let mut cmd = token_file_command(&job, &file, token);
        cmd.env("KUBERNETES_EXEC_INFO", NON_INTERACTIVE);
        run(&mut cmd)
    };
    let wrong = run_with(&actions.mint("https://github.com/acme"));
    assert!(
        wrong
            .assert_failure()
            .assert_one_error_line()
            .contains("not for --audience")
    );
    let good = actions.mint(AUDIENCE);
    let fixed = run_with(&good);
    assert_eq!(parse_exec_credential(fixed.assert_success()).token, good);
}

/// When GitHub's token service refuses, the next background call within a minute does not ask
/// again, and says why: the failure itself, and how to ask at once.
#[test]
fn a_refused_token_request_is_not_repeated_by_every_background_call_and_the_message_says_why() {
    let actions = FakeActions::start();
    let job = JobDir::new();
    let call = || {
        let mut env = actions.env();
        env[1].1 = "not-this-jobs-bearer".into();
        env.push(("KUBERNETES_EXEC_INFO", NON_INTERACTIVE.to_owned()));
        get_token(&job, actions.ca_file(), &env)
    };
    let first = call();
    let first_line = first.assert_failure().assert_one_error_line();
    assert!(
        first_line.contains("refused the job's identity token request"),
        "{first_line}"
    );
    let second = call();
    let line = second.assert_failure().assert_one_error_line();
    assert!(
        line.contains("getting this pipeline's token failed")
            && line.contains("refused the job's identity token request"),
        "{line}"
    );
    assert!(line.contains("koidc login --grant workload"), "{line}");
    assert!(!line.contains("browser"), "{line}");
    assert_eq!(actions.token_requests(), 0);
}

#[test]
fn a_job_without_id_token_write_permission_is_told_to_add_it() {
    let actions = FakeActions::start();
    let job = JobDir::new();

    let out = get_token(
        &job,
        actions.ca_file(),
        &[("KOIDC_TOKEN_SOURCE", "github-actions".into())],
    );
    out.assert_failure();
    let line = out.assert_one_error_line();
    assert!(
        line.contains("permissions: id-token: write"),
        "the error says which permission the job lacks: {line}"
    );
    assert_eq!(actions.token_requests(), 0);
    assert_no_leak(&out, &secrets_of(&actions, &[]), Stdout::NoSecrets);
}

#[test]
fn a_wrong_bearer_token_is_refused_by_the_token_service_in_one_line_without_the_bearer() {
    let actions = FakeActions::start();
    let job = JobDir::new();
    let env: Vec<(&str, String)> = actions
        .env()
        .into_iter()
        .map(|(name, value)| {
            if name == "ACTIONS_ID_TOKEN_REQUEST_TOKEN" {
                (name, format!("{value}-not-this-job"))
            } else {
                (name, value)
            }
        })
        .collect();
    let wrong_bearer = env[1].1.clone();

    let out = get_token(&job, actions.ca_file(), &env);
    out.assert_failure();
    let line = out.assert_one_error_line();
    assert!(line.contains("HTTP 401"), "the error names the refusal: {line}");
    assert!(
        line.contains("id-token: write"),
        "the error says what to check: {line}"
    );
    assert_eq!(actions.token_requests(), 0);
    let mut secrets = secrets_of(&actions, &[]);
    secrets.other.insert(wrong_bearer);
    assert_no_leak(&out, &secrets, Stdout::NoSecrets);
}

#[test]
fn a_job_token_for_another_audience_is_refused_before_kubectl_sees_it() {
    let actions = FakeActions::start();
    let job = JobDir::new();
    let token = actions.mint("https://github.com/acme");

    let env = [
        ("KOIDC_TOKEN_SOURCE", "env:JOB_TOKEN".to_string()),
        ("JOB_TOKEN", token.clone()),
    ];
    let out = get_token(&job, actions.ca_file(), &env);
    out.assert_failure();
    let line = out.assert_one_error_line();
    assert!(
        line.contains("not for --audience") && line.contains(AUDIENCE),
        "the error names the audience the token lacks: {line}"
    );
    assert_no_leak(&out, &secrets_of(&actions, &[&token]), Stdout::NoSecrets);
}

// ---- End to end on the real kube-apiserver ----

/// The repository and ref the cluster admits.
const REPOSITORY: &str = "acme/app";
const MAIN: &str = "refs/heads/main";

/// The username and group the apiserver gives the admitted job (what `koidc setup --ci` maps).
const CI_USERNAME: &str = "github-actions:repo:acme/app:ref:refs/heads/main";
const CI_GROUP: &str = "github-actions:acme/app";

/// Held by every cluster test that asks the stand-in for tokens: its current job and its
/// request count are shared.
static JOB_LOCK: Mutex<()> = Mutex::new(());

fn job_lock() -> MutexGuard<'static, ()> {
    JOB_LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The stand-in the cluster trusts, started before the apiserver.
fn actions() -> &'static FakeActions {
    static ACTIONS: OnceLock<FakeActions> = OnceLock::new();
    ACTIONS.get_or_init(FakeActions::start)
}

/// What the module's cluster was set up with.
struct Seeded {
    /// `koidc setup --ci ... --merge ... --print authentication-config` (the apiserver's file).
    ci_setup: Output,
    /// `koidc setup --ci ...` with everything (the bind-group command, the job's side).
    ci_setup_all: Output,
    /// The bind-group command setup printed, as run (role and namespace filled in).
    bind_group: Vec<String>,
}

static SEEDED: OnceLock<Seeded> = OnceLock::new();

/// `koidc setup --ci github-actions` for the stand-in, the repository and ref the cluster
/// admits, and `audience`, plus `extra`; run as the cluster admin, checked to succeed.
fn setup_ci(idp: &KubeIdp, audience: &str, extra: &[&str]) -> Output {
    let actions = actions();
    let mut args: Vec<String> = ["setup", "--ci", "github-actions", "--ci-issuer", actions.issuer()]
        .map(str::to_owned)
        .to_vec();
    args.extend([
        "--certificate-authority".into(),
        actions.ca_file().display().to_string(),
    ]);
    args.extend(["--repository", REPOSITORY, "--ref", MAIN, "--audience", audience].map(str::to_owned));
    args.extend(extra.iter().map(|a| a.to_string()));
    let out = idp.koidc_admin(&args);
    out.assert_success();
    out
}

/// The cluster of this module: Dex and the stand-in, the apiserver with koidc's merged
/// configuration, the reader's and the CI group's bindings; started by the first test.
fn cluster() -> &'static KubeCluster {
    static CLUSTER: OnceLock<Result<&'static KubeCluster, String>> = OnceLock::new();
    shared_cluster(&CLUSTER, || {
        let idp = KubeIdp::start();
        let people = idp.setup_auth_config();
        people.assert_success();
        let people_file = idp.dir().join("people-authentication-config.yaml");
        std::fs::write(&people_file, &people.stdout).expect("write people's auth config");
        let merge = people_file.display().to_string();
        let ci_setup = setup_ci(
            &idp,
            AUDIENCE,
            &["--merge", &merge, "--print", "authentication-config"],
        );
        let ci_setup_all = setup_ci(&idp, AUDIENCE, &["--merge", &merge]);
        let cluster = KubeCluster::start(&ci_setup.stdout, idp);
        eprintln!("kube-apiserver ready after {:?}", cluster.apiserver_startup());
        let bind_group = seed(&cluster, &ci_setup_all);
        let _ = SEEDED.set(Seeded {
            ci_setup,
            ci_setup_all,
            bind_group,
        });
        cluster
    })
}

fn seeded() -> &'static Seeded {
    cluster();
    SEEDED.get().expect("the cluster was seeded")
}

/// The `koidc bind-group` command in setup's output, for the writer preset in `application`.
fn printed_bind_group(setup: &Output) -> Vec<String> {
    let line = setup
        .stdout
        .lines()
        .find_map(|l| l.trim_start_matches(['#', ' ']).strip_prefix("koidc bind-group "))
        .unwrap_or_else(|| {
            panic!(
                "no `koidc bind-group` command in setup's output:\n{}",
                setup.stdout
            )
        });
    let words: Vec<String> = line
        .split_whitespace()
        .map(|w| match w {
            "''" => String::new(),
            "<namespace>" => APP_NAMESPACE.to_owned(),
            "edit" => "writer".to_owned(),
            other => other.to_owned(),
        })
        .collect();
    assert_eq!(
        words[0], CI_GROUP,
        "the printed command binds the CI group: {line}"
    );
    words
}

/// Namespaces, the reader's binding of the core scenario, the CI group's binding (the command
/// setup printed), and a wait until the apiserver admits a good job token (its JWT
/// authenticator reads the stand-in's discovery and keys in the background).
fn seed(cluster: &KubeCluster, ci_setup_all: &Output) -> Vec<String> {
    cluster.create_namespace(APP_NAMESPACE);
    cluster.create_namespace(OTHER_NAMESPACE);
    cluster
        .bind_group_apply(&["reader-group", "reader", "-n", APP_NAMESPACE])
        .assert_success();
    let bind_group = printed_bind_group(ci_setup_all);
    let args: Vec<&str> = bind_group.iter().map(String::as_str).collect();
    cluster.bind_group_apply(&args).assert_success();

    let token = actions().mint(AUDIENCE);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = TokenUser::new(cluster, &token).kubectl(cluster, &["auth", "whoami"]);
        if out.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the apiserver never admitted a good job token:\n{}\n{}",
            out.stderr,
            cluster.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    bind_group
}

/// A fresh per-test directory under the cluster's.
fn fresh_dir(cluster: &KubeCluster, what: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = cluster
        .idp
        .dir()
        .join(format!("{what}-{}", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(dir.join("home")).expect("create a test dir");
    dir
}

/// kubectl with a kubeconfig holding a bare bearer token (never on a command line: the failure
/// messages show the command).
struct TokenUser {
    dir: PathBuf,
}

impl TokenUser {
    fn new(cluster: &KubeCluster, token: &str) -> TokenUser {
        let dir = fresh_dir(cluster, "token-user");
        crate::kubeconfig::write_one_cluster(
            &dir.join("kubeconfig"),
            cluster.url(),
            &cluster.idp.pki.ca_pem,
            ("job", json!({ "token": token })),
            "job",
        );
        TokenUser { dir }
    }

    fn kubectl(&self, cluster: &KubeCluster, args: &[&str]) -> Output {
        let mut cmd = clean_command(cluster.kubectl_bin(), &self.dir.join("home"));
        cmd.arg("--kubeconfig")
            .arg(self.dir.join("kubeconfig"))
            .args(args);
        let out = run(&mut cmd);
        assert_no_token(&out);
        out
    }
}

/// A GitHub Actions job running kubectl with the kubeconfig user entry `koidc setup --ci`
/// printed (for `audience`), completed with `kubectl config` as the printed workflow does. The
/// token service variables, `KOIDC_CACHE=file` and the cache dir reach the plugin through
/// kubectl's environment.
struct CiJob {
    home: PathBuf,
    kubeconfig: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl CiJob {
    fn new(cluster: &KubeCluster, audience: &str) -> CiJob {
        let dir = fresh_dir(cluster, "ci-job");
        let home = dir.join("home");
        let kubeconfig = dir.join("kubeconfig");
        let entry = setup_ci(
            &cluster.idp,
            audience,
            &["--print", "kubeconfig", "--exec-command", koidc_bin()],
        );
        std::fs::write(&kubeconfig, &entry.stdout).expect("write the job's kubeconfig");
        let server = format!("--server={}", cluster.url());
        let ca = format!("--certificate-authority={}", cluster.idp.ca_file().display());
        let steps: [&[&str]; 3] = [
            &["config", "set-cluster", "ci", &server, &ca, "--embed-certs"],
            &["config", "set-context", "ci", "--cluster=ci", "--user=ci"],
            &["config", "use-context", "ci"],
        ];
        for step in steps {
            let mut cmd = clean_command(cluster.kubectl_bin(), &home);
            cmd.arg("--kubeconfig").arg(&kubeconfig).args(step);
            run(&mut cmd).assert_success();
        }
        let mut env = actions().env();
        env.extend([
            ("KOIDC_CACHE", "file".to_owned()),
            ("KOIDC_CACHE_DIR", dir.join("cache").display().to_string()),
        ]);
        CiJob {
            home,
            kubeconfig,
            env,
        }
    }

    fn kubectl(&self, cluster: &KubeCluster, args: &[&str]) -> Output {
        let mut cmd = clean_command(cluster.kubectl_bin(), &self.home);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args);
        let out = run(&mut cmd);
        assert_no_token(&out);
        out
    }
}

/// No JWT in kubectl's output (koidc writes its token only to kubectl's pipe).
#[track_caller]
fn assert_no_token(out: &Output) {
    assert!(
        find_jwt(&out.stdout).is_none() && find_jwt(&out.stderr).is_none(),
        "{}: a JWT showed in kubectl's output",
        out.what
    );
}

/// Fails unless the apiserver refused the credentials (401: kubectl says "Unauthorized", or
/// "You must be logged in to the server" when it cannot even list the API groups), not RBAC.
#[track_caller]
fn assert_unauthorized(out: &Output) {
    out.assert_failure();
    let refused =
        out.stderr.contains("Unauthorized") || out.stderr.contains("You must be logged in to the server");
    assert!(
        refused && !out.stderr.contains("forbidden"),
        "{}: expected the apiserver's 401, got:\n{}",
        out.what,
        out.stderr
    );
}

/// `kubectl auth whoami -o json`: the username and groups.
#[track_caller]
fn whoami(out: &Output) -> (String, Vec<String>) {
    out.assert_success();
    let review: Value = serde_json::from_str(&out.stdout).expect("whoami printed JSON");
    let info = &review["status"]["userInfo"];
    let groups = info["groups"]
        .as_array()
        .expect("groups is a list")
        .iter()
        .filter_map(|g| g.as_str().map(str::to_owned))
        .collect();
    (info["username"].as_str().expect("a username").to_owned(), groups)
}

/// A unique pod name.
fn pod_name(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A cluster test: the cluster (its logs printed if the test fails) and, for the tests that ask
/// the stand-in for tokens, the stand-in to themselves with its job set.
struct ClusterTest {
    cluster: &'static KubeCluster,
    _logs: LogsOnFailure<'static>,
    job: Option<MutexGuard<'static, ()>>,
}

impl ClusterTest {
    fn start() -> ClusterTest {
        let cluster = cluster();
        ClusterTest {
            cluster,
            _logs: cluster.print_logs_on_failure(),
            job: None,
        }
    }

    /// With the stand-in's tokens for `job` until the test ends.
    fn with_job(job: Job) -> ClusterTest {
        let mut test = ClusterTest::start();
        test.job = Some(job_lock());
        actions().set_job(job);
        test
    }
}

impl Drop for ClusterTest {
    /// Gives the stand-in back with the admitted job (before the lock is released).
    fn drop(&mut self) {
        if self.job.is_some() {
            actions().set_job(Job::new(REPOSITORY, MAIN));
        }
    }
}

/// Fails unless a job of `job` is refused by the apiserver, through koidc and with its token
/// handed to kubectl directly.
#[track_caller]
fn assert_job_refused(job: Job) {
    let test = ClusterTest::with_job(job);
    let through_koidc =
        CiJob::new(test.cluster, AUDIENCE).kubectl(test.cluster, &["get", "pods", "-n", APP_NAMESPACE]);
    assert_unauthorized(&through_koidc);
    let direct =
        TokenUser::new(test.cluster, &actions().mint(AUDIENCE)).kubectl(test.cluster, &["auth", "whoami"]);
    assert_unauthorized(&direct);
}

#[test]
fn the_apiserver_runs_koidc_s_merged_configuration_and_the_ci_group_is_bound_as_setup_printed() {
    let ClusterTest { cluster, .. } = &ClusterTest::start();
    let seeded = seeded();
    let file = std::fs::read_to_string(cluster.auth_config_file()).expect("read the auth config");
    assert_eq!(
        file, seeded.ci_setup.stdout,
        "the apiserver got something else than setup's stdout"
    );
    assert!(
        file.contains(cluster.issuer()),
        "people's Dex authenticator was kept:\n{file}"
    );
    assert!(
        file.contains(actions().issuer()),
        "the CI authenticator was added:\n{file}"
    );
    assert!(
        seeded.ci_setup_all.stdout.contains(CI_USERNAME),
        "setup names the job's username:\n{}",
        seeded.ci_setup_all.stdout
    );
    let binding = cluster.admin_ok(&["get", "rolebindings", "-n", APP_NAMESPACE, "-o", "json"]);
    let bindings: Value = serde_json::from_str(&binding.stdout).expect("rolebindings as JSON");
    let bound = bindings["items"].as_array().expect("a list").iter().any(|b| {
        b["subjects"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["kind"] == "Group" && s["name"] == CI_GROUP))
    });
    assert!(
        bound,
        "{:?} bound no group {CI_GROUP}: {bindings}",
        seeded.bind_group
    );
}

#[test]
fn a_job_of_acme_app_on_main_creates_and_deletes_a_pod_in_application_and_kubectl_s_second_call_uses_the_cache()
 {
    let ClusterTest { cluster, .. } = &ClusterTest::with_job(Job::new(REPOSITORY, MAIN));
    let actions = actions();
    let ci = CiJob::new(cluster, AUDIENCE);
    let name = pod_name("ci");

    let before = actions.token_requests();
    ci.kubectl(cluster, &pod_create_args(APP_NAMESPACE, &name))
        .assert_success();
    assert_eq!(
        actions.token_requests(),
        before + 1,
        "the job asked the token service once"
    );
    let created = cluster.admin_ok(&["get", "pod", &name, "-n", APP_NAMESPACE, "-o", "json"]);
    let pod: Value = serde_json::from_str(&created.stdout).expect("the pod as JSON");
    assert_eq!(pod["metadata"]["name"], name.as_str());

    ci.kubectl(cluster, &["delete", "pod", &name, "-n", APP_NAMESPACE])
        .assert_success();
    let gone = cluster.admin(&["get", "pod", &name, "-n", APP_NAMESPACE]);
    assert!(
        !gone.success() && gone.stderr.contains("NotFound"),
        "the pod the job deleted is still there:\n{}",
        gone.stderr
    );
    assert_eq!(
        actions.token_requests(),
        before + 1,
        "the second kubectl call served koidc's cached token"
    );

    // The job's rights stop at namespace `application`.
    let elsewhere = ci.kubectl(cluster, &pod_create_args(OTHER_NAMESPACE, &pod_name("ci")));
    elsewhere.assert_failure();
    assert!(
        elsewhere.stderr.contains("forbidden") && elsewhere.stderr.contains(CI_USERNAME),
        "expected RBAC to refuse {CI_USERNAME} in {OTHER_NAMESPACE}:\n{}",
        elsewhere.stderr
    );
}

#[test]
fn kubectl_auth_whoami_shows_the_job_s_ci_username_and_group() {
    let ClusterTest { cluster, .. } = &ClusterTest::with_job(Job::new(REPOSITORY, MAIN));
    let ci = CiJob::new(cluster, AUDIENCE);

    let (username, groups) = whoami(&ci.kubectl(cluster, &["auth", "whoami", "-o", "json"]));
    assert_eq!(username, CI_USERNAME);
    for expected in [CI_GROUP, "system:authenticated"] {
        assert!(
            groups.iter().any(|g| g == expected),
            "{expected} missing from {groups:?}"
        );
    }
    assert!(
        !groups.iter().any(|g| g.starts_with("oidc:")),
        "the job got a person's group: {groups:?}"
    );
}

#[test]
fn the_same_repository_on_another_branch_is_refused_by_the_apiserver() {
    assert_job_refused(Job::new(REPOSITORY, "refs/heads/feature"));
}

#[test]
fn another_repository_is_refused_by_the_apiserver() {
    assert_job_refused(Job::new("acme/other", MAIN));
}

#[test]
fn a_job_token_for_another_audience_is_refused_by_the_apiserver() {
    let ClusterTest { cluster, .. } = &ClusterTest::with_job(Job::new(REPOSITORY, MAIN));
    let other = "https://kubernetes.other.test";
    let through_koidc = CiJob::new(cluster, other).kubectl(cluster, &["get", "pods", "-n", APP_NAMESPACE]);
    assert_unauthorized(&through_koidc);
    let direct = TokenUser::new(cluster, &actions().mint(other)).kubectl(cluster, &["auth", "whoami"]);
    assert_unauthorized(&direct);
}

#[test]
fn the_human_reader_of_the_core_scenario_still_logs_in_through_dex_beside_the_pipelines() {
    let ClusterTest { cluster, .. } = &ClusterTest::start();
    let reader = cluster.user(&READER);

    let list = reader.kubectl(&["get", "pods", "-n", APP_NAMESPACE, "-o", "name"]);
    list.assert_success();
    assert_no_token(&list);
    let (username, groups) = whoami(&reader.kubectl(&["auth", "whoami", "-o", "json"]));
    assert_eq!(username, READER.kube_username());
    assert!(groups.contains(&READER.kube_group()), "{groups:?}");
    assert!(
        !groups.iter().any(|g| g == CI_GROUP),
        "the reader got the jobs' group: {groups:?}"
    );
    assert_eq!(reader.browser.launches(), 1, "one browser login");
}
