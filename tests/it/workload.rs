//! A CI/CD pipeline reaches the cluster with its job's short-lived identity token:
//! `koidc get-token --grant workload` in a GitHub Actions job, against the token service
//! stand-in ([`crate::fake_actions`]): the token is requested for the audience through the two
//! `ACTIONS_ID_TOKEN_REQUEST_*` variables, handed to kubectl as it is and served from the cache
//! afterwards; a job without `permissions: id-token: write` or with a wrong bearer token gets
//! one line saying what to do, and no token is ever printed outside the `ExecCredential`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::fake_actions::FakeActions;
use crate::support::{
    Output, Secrets, Stdout, assert_no_leak, clean_command, koidc_bin, parse_exec_credential, run,
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
