//! `get-token --grant workload --issuer <Dex>`: a GitHub Actions job's token exchanged (RFC 8693)
//! at a real Dex for a Dex ID token, which a real kube-apiserver trusting only Dex admits.
//!
//! GitHub's token service is the stand-in [`FakeActions`]; Dex (v2.45.1, HTTPS) gets an `oidc`
//! connector `github-actions` trusting it ([`github_actions_connector`]), configured as an admin
//! must configure it for GitHub's tokens, which carry neither `name` nor `email`: the username and
//! the email are the job's `sub`, `allowedGroups` pins the repository and ref (Dex does not check
//! the subject token's audience, so this is what keeps other repositories' jobs out), and the
//! group `github-actions:OWNER/REPO` comes from the `repository` claim. The apiserver runs with
//! exactly what `koidc setup` prints for Dex (username claim `email`, prefix `oidc:`).
//!
//! Proves: the exchanged token is Dex's, verified by koidc, for the job (name, groups, sub); the
//! second call is served from the cache; `kubectl auth whoami` through the exec entry shows the
//! username and groups the apiserver derives; refusals (a connector that cannot exchange, a
//! forged job token, garbage, another repository's job) are one line, exit 1, no token; and Dex
//! exchanges a job token minted for any audience (it does not check it).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::dex::{CLIENT_ID, DexOptions};
use crate::fake_actions::{FakeActions, Job};
use crate::kube::{KubeCluster, KubeIdp, PREFIX, run_koidc};
use crate::kubeconfig::{self, ExecApi};
use crate::support::{Output, Secrets, Stdout, assert_no_leak, clean_command, parse_exec_credential, run};

/// The id of Dex's connector trusting the stand-in.
const CONNECTOR: &str = "github-actions";
/// The audience the job asks GitHub for (Dex ignores it; koidc checks it).
const AUDIENCE: &str = "https://dex.koidc.test/github-actions";
/// The one job identity Dex lets in (its `sub`).
const ALLOWED_JOB: &str = "repo:acme/app:ref:refs/heads/main";

/// Dex's `oidc` connector for GitHub Actions' tokens (token exchange only: no client of GitHub
/// is needed, Dex verifies the tokens with the issuer's keys), allowing [`ALLOWED_JOB`].
fn github_actions_connector(actions: &FakeActions) -> Value {
    json!({
        "type": "oidc",
        "id": CONNECTOR,
        "name": "GitHub Actions",
        "config": {
            "issuer": actions.issuer(),
            // Only used by browser logins through this connector, which no one makes.
            "clientID": "unused-for-token-exchange",
            "rootCAs": [actions.ca_file()],
            // GitHub's tokens have no `name`, `email` nor `email_verified`.
            "userNameKey": "sub",
            "claimMapping": { "email": "sub", "groups": "sub" },
            "insecureSkipEmailVerified": true,
            "insecureEnableGroups": true,
            "allowedGroups": [ALLOWED_JOB],
            "claimModifications": {
                "newGroupFromClaims": [{
                    "claims": ["repository"],
                    "delimiter": ":",
                    "prefix": "github-actions",
                }],
            },
        },
    })
}

/// The stand-in, then Dex (HTTPS, test CA) with the connector: Dex reads the stand-in's
/// discovery document when it starts.
fn start_idps() -> (FakeActions, KubeIdp) {
    let actions = FakeActions::start();
    let idp = KubeIdp::start_with(&DexOptions {
        connectors: vec![github_actions_connector(&actions)],
        ..DexOptions::default()
    });
    (actions, idp)
}

/// `get-token --grant workload` exchanging at Dex: `source`, both CAs, the file cache in
/// `cache_dir`, and `connector`.
fn exchange_args(
    idp: &KubeIdp,
    actions: &FakeActions,
    source: &str,
    connector: &str,
    cache_dir: &Path,
) -> Vec<String> {
    let mut args: Vec<String> = ["get-token", "--grant", "workload", "--token-source", source]
        .map(String::from)
        .to_vec();
    args.extend(["--audience".into(), AUDIENCE.into()]);
    args.extend([
        "--issuer".into(),
        idp.issuer().into(),
        "--client-id".into(),
        CLIENT_ID.into(),
    ]);
    args.extend(["--connector-id".into(), connector.into()]);
    for scope in ["email", "groups", "profile"] {
        args.extend(["--scope".into(), scope.into()]);
    }
    for ca in [idp.ca_file(), actions.ca_file()] {
        args.extend(["--certificate-authority".into(), ca.display().to_string()]);
    }
    args.extend(["--cache".into(), "file".into(), "--cache-dir".into()]);
    args.push(cache_dir.display().to_string());
    args
}

/// A job's HOME and cache dir under the IdP's temp dir.
fn job_dirs(idp: &KubeIdp, name: &str) -> (PathBuf, PathBuf) {
    let home = idp.dir().join(name).join("home");
    std::fs::create_dir_all(&home).expect("create the job's HOME");
    (home.clone(), home.with_file_name("cache"))
}

/// Runs koidc as the job: HOME, and the stand-in's `ACTIONS_ID_TOKEN_REQUEST_*` variables.
fn run_job(actions: &FakeActions, home: &Path, args: &[String]) -> Output {
    let env: Vec<(&str, String)> = actions.env();
    run_koidc(home, &home.join(".config"), args, &env)
}

/// The `(user id, connector id)` Dex encodes in its `sub` (a protobuf message, base64url).
fn dex_subject(sub: &str) -> (String, String) {
    let bytes = URL_SAFE_NO_PAD
        .decode(sub.trim_end_matches('='))
        .expect("Dex's sub is base64url");
    let mut fields = Vec::new();
    let mut rest = bytes.as_slice();
    while let [_tag, len, tail @ ..] = rest {
        let len = usize::from(*len);
        assert!(tail.len() >= len, "Dex's sub is not the expected protobuf");
        fields.push(String::from_utf8_lossy(&tail[..len]).into_owned());
        rest = &tail[len..];
    }
    assert_eq!(
        fields.len(),
        2,
        "Dex's sub holds a user id and a connector id: {fields:?}"
    );
    (fields[0].clone(), fields[1].clone())
}

#[test]
fn dex_exchanges_a_github_actions_job_token_for_an_id_token_the_apiserver_trusting_only_dex_admits() {
    let (actions, idp) = start_idps();
    let setup = idp.setup_auth_config();
    setup.assert_success();
    let cluster = KubeCluster::start(&setup.stdout, idp);
    let _logs = cluster.print_logs_on_failure();
    assert!(
        !setup.stdout.contains(actions.issuer()),
        "the apiserver must trust only Dex:\n{}",
        setup.stdout
    );
    let idp = &cluster.idp;
    let (home, cache_dir) = job_dirs(idp, "job");
    let args = exchange_args(idp, &actions, "github-actions", CONNECTOR, &cache_dir);

    let out = run_job(&actions, &home, &args);
    out.assert_success();
    let cred = parse_exec_credential(&out);
    let mut secrets = Secrets::default();
    secrets.id_tokens.insert(cred.token.clone());
    assert_no_leak(&out, &secrets, Stdout::MayHoldIdToken);
    assert_eq!(actions.token_requests(), 1);
    let claims = &cred.claims;
    assert_eq!(claims["iss"], idp.issuer(), "{claims}");
    assert_eq!(claims["aud"], CLIENT_ID, "{claims}");
    assert_eq!(claims["name"], ALLOWED_JOB, "{claims}");
    assert_eq!(claims["email"], ALLOWED_JOB, "{claims}");
    assert_eq!(claims["email_verified"], true, "{claims}");
    assert_eq!(
        claims["groups"],
        json!([ALLOWED_JOB, "github-actions:acme/app"]),
        "{claims}"
    );
    let sub = claims["sub"].as_str().expect("a sub");
    assert_eq!(dex_subject(sub), (ALLOWED_JOB.to_owned(), CONNECTOR.to_owned()));

    // The second call is served from the cache: the same token, no new job token.
    let again = run_job(&actions, &home, &args);
    again.assert_success();
    assert_no_leak(&again, &secrets, Stdout::MayHoldIdToken);
    assert_eq!(parse_exec_credential(&again).token, cred.token);
    assert_eq!(actions.token_requests(), 1, "the cached token was not used");

    // kubectl with the exec entry a pipeline would have (a fresh cache: koidc runs under
    // kubectl), against the apiserver trusting only Dex.
    let (kube_home, kube_cache) = job_dirs(idp, "kubectl-job");
    let kubeconfig = kube_home.join("kubeconfig.json");
    kubeconfig::write(
        &kubeconfig,
        cluster.url(),
        idp.ca_pem(),
        ExecApi::V1,
        &exchange_args(idp, &actions, "github-actions", CONNECTOR, &kube_cache),
        &actions.env(),
    );
    let mut cmd = clean_command(cluster.kubectl_bin(), &kube_home);
    cmd.arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["auth", "whoami", "-o", "json"]);
    let whoami = run(&mut cmd);
    whoami.assert_success();
    assert_no_leak(&whoami, &secrets, Stdout::NoSecrets);
    let review: Value = serde_json::from_str(&whoami.stdout).expect("whoami -o json is JSON");
    let user = &review["status"]["userInfo"];
    assert_eq!(user["username"], format!("{PREFIX}{ALLOWED_JOB}"), "{review}");
    assert_eq!(
        user["groups"],
        json!([
            format!("{PREFIX}{ALLOWED_JOB}"),
            format!("{PREFIX}github-actions:acme/app"),
            "system:authenticated",
        ]),
        "{review}"
    );
    assert_eq!(actions.token_requests(), 2);
}

/// Asserts a refusal: exit 1, one `koidc:` line containing `expect`, no token on stdout or
/// stderr (nor `job_token`, when the job's token came from a file).
#[track_caller]
fn assert_refused(out: &Output, expect: &str, job_token: Option<&str>) -> String {
    let mut secrets = Secrets::default();
    secrets.other.extend(job_token.map(str::to_owned));
    assert_no_leak(out, &secrets, Stdout::NoSecrets);
    let line = out.assert_failure().assert_one_error_line();
    assert_eq!(out.status.code(), Some(1), "{}", out.what);
    assert!(line.contains("refused to exchange the job's token"), "{line}");
    assert!(line.contains(expect), "{line}");
    line
}

#[test]
fn dex_refuses_a_connector_without_token_exchange_a_forged_job_token_garbage_and_another_repository() {
    let (actions, idp) = start_idps();
    let dex_log = || idp.dex.log_text();

    // `local` (the password DB) cannot exchange tokens.
    let (home, cache) = job_dirs(&idp, "wrong-connector");
    let out = run_job(
        &actions,
        &home,
        &exchange_args(&idp, &actions, "github-actions", "local", &cache),
    );
    assert_refused(&out, "Requested connector does not exist", None);

    // A job token whose signature is not the issuer's, from a file (koidc itself cannot tell).
    let (home, cache) = job_dirs(&idp, "forged");
    let token = actions.mint(AUDIENCE);
    let (signed, signature) = token.rsplit_once('.').expect("a JWT");
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let forged = format!("{signed}.{flipped}{}", &signature[1..]);
    let file = home.join("job-token");
    std::fs::write(&file, &forged).expect("write the forged token");
    let source = format!("file:{}", file.display());
    let out = run_job(
        &actions,
        &home,
        &exchange_args(&idp, &actions, &source, CONNECTOR, &cache),
    );
    assert_refused(&out, "access_denied", Some(&forged));
    assert!(
        dex_log().contains("failed to verify"),
        "Dex did not refuse the signature:\n{}",
        dex_log()
    );

    // Garbage instead of a job token: koidc refuses it itself, before asking Dex.
    let (home, cache) = job_dirs(&idp, "garbage");
    let garbage = "garbage-subject-token-9f8e7d6c5b4a";
    let file = home.join("job-token");
    std::fs::write(&file, garbage).expect("write the garbage token");
    let source = format!("file:{}", file.display());
    let out = run_job(
        &actions,
        &home,
        &exchange_args(&idp, &actions, &source, CONNECTOR, &cache),
    );
    let mut secrets = Secrets::default();
    secrets.other.insert(garbage.to_owned());
    assert_no_leak(&out, &secrets, Stdout::NoSecrets);
    let line = out.assert_failure().assert_one_error_line();
    assert_eq!(out.status.code(), Some(1), "{}", out.what);
    assert!(line.contains("is not a JWT"), "{line}");

    // Another repository's job, with a genuine token: Dex's allowedGroups keep it out.
    actions.set_job(Job::new("evil/app", "refs/heads/main"));
    let (home, cache) = job_dirs(&idp, "other-repository");
    let out = run_job(
        &actions,
        &home,
        &exchange_args(&idp, &actions, "github-actions", CONNECTOR, &cache),
    );
    assert_refused(&out, "access_denied", None);
    assert!(
        dex_log().contains("not a member of allowed groups"),
        "Dex did not refuse the repository:\n{}",
        dex_log()
    );
}

#[test]
fn dex_does_not_check_the_job_tokens_audience_so_allowed_groups_must_pin_the_job() {
    let (actions, idp) = start_idps();
    // A genuine token of the allowed job, minted for some other service (say a cloud provider's
    // token exchange): Dex exchanges it all the same (its connector verifies the subject token
    // with SkipClientIDCheck). Only the job's identity (`allowedGroups`) is checked.
    let other = "sts.amazonaws.com";
    let token = actions.mint(other);
    let (home, cache) = job_dirs(&idp, "other-audience");
    let file = home.join("job-token");
    std::fs::write(&file, &token).expect("write the job token");
    let source = format!("file:{}", file.display());
    let mut args = exchange_args(&idp, &actions, &source, CONNECTOR, &cache);
    let at = args
        .iter()
        .position(|a| a == AUDIENCE)
        .expect("--audience AUDIENCE");
    args[at] = other.to_owned();
    let out = run_job(&actions, &home, &args);
    out.assert_success();
    let cred = parse_exec_credential(&out);
    let mut secrets = Secrets::default();
    secrets.id_tokens.insert(cred.token.clone());
    secrets.other.insert(token);
    assert_no_leak(&out, &secrets, Stdout::MayHoldIdToken);
    assert_eq!(cred.claims["iss"], idp.issuer());
    assert_eq!(cred.claims["name"], ALLOWED_JOB);
}
