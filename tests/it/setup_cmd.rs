//! `koidc setup` against the real Dex over HTTPS (no apiserver needed): `--login` shows the real
//! token's claims and turns its groups into `koidc bind-group` hints, and the groups prefix setup
//! saves is the one `koidc bind-group` puts in its subjects from then on. A kubeconfig that
//! `--write-kubeconfig` starts from nothing is completed with the kubectl commands setup prints,
//! and the real kubectl then logs in through it (also with `--embed-ca`, the IdP's CA carried in
//! the entry). What setup says and writes about client secrets and GitHub. `setup --ci`: the
//! printed (and `--merge`d) AuthenticationConfiguration read back as YAML, its one-line refusals,
//! the bind-group command it prints run for real, no network or login on the way, and the real
//! kube-apiserver compiling its CEL rules (hostile quotes in refs included) beside people's. The
//! end-to-end use of setup's output by a real apiserver and kubectl is in [`crate::rbac_e2e`].

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::apiserver::ApiServer;
use crate::browser::BrowserLog;
use crate::kube::{KubeIdp, READER, run_koidc};
use crate::support::{Output, clean_command, e2e_binary, koidc_bin, run};

/// `koidc bind-group <args>` (printing, not applying) with this HOME and XDG_CONFIG_HOME.
fn bind_group(home: &Path, config_dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["bind-group"];
    all.extend(args);
    let out = run_koidc(home, config_dir, &all, &[]);
    out.assert_success();
    out
}

/// The subject names in `koidc bind-group`'s YAML (`  name: X` under `subjects:`).
pub fn subject_names(yaml: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_subjects = false;
    for line in yaml.lines() {
        if line == "subjects:" {
            in_subjects = true;
        } else if !line.starts_with(' ') && !line.starts_with('-') {
            in_subjects = false;
        } else if in_subjects && let Some(name) = line.trim_start().strip_prefix("name: ") {
            names.push(name.to_owned());
        }
    }
    names
}

#[test]
fn setup_login_shows_the_token_groups_and_names_them_in_the_bind_group_hint() {
    let idp = KubeIdp::start();
    let dir = idp.dir().join("setup-login");
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let browser = BrowserLog::new(&dir);
    let mut args = vec!["setup".to_owned()];
    args.extend(idp.setup_args());
    args.extend([
        "--login".into(),
        "--browser-command".into(),
        idp.browser_command(),
        "--cache".into(),
        "file".into(),
        "--cache-dir".into(),
        dir.join("cache").display().to_string(),
        "--timeout".into(),
        "60".into(),
    ]);
    let env = [
        ("FAKE_BROWSER_LOGIN", READER.email.to_owned()),
        ("FAKE_BROWSER_PASSWORD", READER.password.to_owned()),
        ("FAKE_BROWSER_LOG", browser.path.display().to_string()),
    ];
    let out = run_koidc(&home, &dir.join("config"), &args, &env);
    out.assert_success();
    assert_eq!(browser.launches(), 1, "one browser login");

    let logged_in = format!(
        "koidc: logged in; the token's email claim is \"{}\" and its groups are [{}]",
        READER.email, READER.group
    );
    assert!(
        out.stderr.lines().any(|l| l == logged_in),
        "expected {logged_in:?} on stderr:\n{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("warning"),
        "setup warned about a good token:\n{}",
        out.stderr
    );
    let hint = format!("#   koidc bind-group {} view -n <namespace>", READER.group);
    assert!(
        out.stdout.lines().any(|l| l == hint),
        "no bind-group hint naming {} in:\n{}",
        READER.group,
        out.stdout
    );
    assert!(
        !out.stdout.contains("koidc bind-group <group>"),
        "the generic hint is printed although the groups are known:\n{}",
        out.stdout
    );
    assert!(
        crate::support::find_jwt(&out.stdout).is_none() && crate::support::find_jwt(&out.stderr).is_none(),
        "a JWT showed in setup's output"
    );
}

#[test]
fn setup_saves_the_groups_prefix_bind_group_uses_unless_overridden() {
    let idp = KubeIdp::start();
    let home = idp.dir().join("setup-prefix");
    let config_dir = home.join("config");
    let fresh_config_dir = home.join("fresh-config");
    std::fs::create_dir_all(&home).unwrap();

    let mut args = vec!["setup".to_owned()];
    args.extend(idp.setup_args());
    args.extend([
        "--groups-prefix".into(),
        "corp:".into(),
        "--print".into(),
        "authentication-config".into(),
    ]);
    let setup = run_koidc(&home, &config_dir, &args, &[]);
    setup.assert_success();
    assert!(setup.stdout.contains("prefix: \"oidc:\""), "{}", setup.stdout);
    assert!(setup.stdout.contains("prefix: \"corp:\""), "{}", setup.stdout);

    let saved = bind_group(&home, &config_dir, &["devs", "view", "-n", "team"]);
    assert_eq!(subject_names(&saved.stdout), ["corp:devs"], "{}", saved.stdout);
    assert!(
        saved.stderr.contains("using the groups prefix \"corp:\""),
        "{}",
        saved.stderr
    );

    let overridden = bind_group(
        &home,
        &config_dir,
        &["devs", "view", "-n", "team", "--group-prefix", ""],
    );
    assert_eq!(
        subject_names(&overridden.stdout),
        ["devs"],
        "{}",
        overridden.stdout
    );

    let never_set_up = bind_group(&home, &fresh_config_dir, &["devs", "view", "-n", "team"]);
    assert_eq!(
        subject_names(&never_set_up.stdout),
        ["devs"],
        "{}",
        never_set_up.stdout
    );
}

#[test]
fn kubeconfig_entry_names_the_ca_by_absolute_path_when_given_a_relative_one() {
    // kubectl runs the exec plugin from wherever the user is, so a relative path would break.
    let idp = KubeIdp::start();
    let home = idp.dir().join("setup-relative-ca");
    std::fs::create_dir_all(&home).unwrap();
    let pki_dir = idp.ca_file().parent().expect("the CA's dir");
    let ca_name = idp.ca_file().file_name().expect("the CA's file name");
    let mut cmd = clean_command(koidc_bin(), &home);
    cmd.current_dir(pki_dir)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .args(["setup", "--issuer", idp.issuer(), "--client-id", "koidc"])
        .args(["--scope", "email", "--scope", "groups", "--certificate-authority"])
        .arg(ca_name)
        .args(["--print", "kubeconfig"]);
    let out = run(&mut cmd);
    out.assert_success();
    let expected = format!("- --certificate-authority={}", idp.ca_file().display());
    assert!(
        out.stdout.lines().any(|l| l.trim() == expected),
        "{expected:?} missing from:\n{}",
        out.stdout
    );
}

/// `koidc setup --write-kubeconfig --kubeconfig FILE` for the stub IdP (no login).
fn setup_writing(idp: &crate::stub_idp::StubIdp, home: &Path, kubeconfig: &Path) -> std::process::Command {
    let mut cmd = clean_command(koidc_bin(), home);
    cmd.env("XDG_CONFIG_HOME", home.join("config"))
        .args([
            "setup",
            "--issuer",
            idp.issuer(),
            "--client-id",
            crate::stub_idp::CLIENT_ID,
        ])
        .args(["--write-kubeconfig", "--print", "kubeconfig", "--kubeconfig"])
        .arg(kubeconfig);
    cmd
}

const KUBECONFIG_BEFORE: &str = "apiVersion: v1\nkind: Config\nusers:\n- name: other\n  user: {token: t}\n";

#[test]
fn setup_write_kubeconfig_waits_for_a_held_kubeconfig_lock_and_leaves_no_lock_behind() {
    let idp = crate::stub_idp::StubIdp::start(crate::stub_idp::Fault::Good);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let kubeconfig = tmp.path().join("config");
    let lock = tmp.path().join("config.lock");
    std::fs::write(&kubeconfig, KUBECONFIG_BEFORE).unwrap();
    // kubectl's lock (client-go: `<kubeconfig>.lock`, O_CREAT|O_EXCL) is held by "kubectl".
    std::fs::write(&lock, "").unwrap();
    let running = crate::support::spawn(&mut setup_writing(&idp, &home, &kubeconfig));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(
        std::fs::read_to_string(&kubeconfig).unwrap(),
        KUBECONFIG_BEFORE,
        "koidc wrote the kubeconfig while kubectl held {}",
        lock.display()
    );
    std::fs::remove_file(&lock).unwrap();
    let out = running.wait(crate::support::RUN_TIMEOUT);
    out.assert_success();
    let written: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&kubeconfig).unwrap()).unwrap();
    assert_eq!(written["users"][0]["name"], "other", "kubectl's user kept");
    assert_eq!(written["users"][1]["name"], "oidc", "koidc's user added");
    assert!(!lock.exists(), "koidc left {} behind", lock.display());
}

#[test]
fn setup_write_kubeconfig_with_a_stale_kubeconfig_lock_fails_naming_the_lock_and_writes_nothing() {
    let idp = crate::stub_idp::StubIdp::start(crate::stub_idp::Fault::Good);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let kubeconfig = tmp.path().join("config");
    let lock = tmp.path().join("config.lock");
    std::fs::write(&kubeconfig, KUBECONFIG_BEFORE).unwrap();
    std::fs::write(&lock, "").unwrap();
    let started = std::time::Instant::now();
    let out = run(&mut setup_writing(&idp, &home, &kubeconfig));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    // setup reports its checks first; the error is the last line.
    let line = out.stderr_lines().last().copied().unwrap_or_default().to_owned();
    assert!(line.starts_with("koidc: the kubeconfig"), "{}", out.stderr);
    assert!(
        line.contains(&lock.display().to_string()) && line.contains("delete") && line.contains("kubectl"),
        "the error should name the lock file and say when to delete it: {line}"
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "koidc gave up at once instead of waiting for the holder"
    );
    assert_eq!(
        std::fs::read_to_string(&kubeconfig).unwrap(),
        KUBECONFIG_BEFORE,
        "the kubeconfig was changed"
    );
    assert!(lock.exists(), "koidc removed a lock it did not take");
    assert!(
        out.stdout.is_empty(),
        "nothing printed on stdout after the failure: {}",
        out.stdout
    );
}

/// The kubeconfig at `path`, parsed.
fn read_kubeconfig(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read the kubeconfig {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {text}: {e}"))
}

/// The `exec` entry of the kubeconfig user `name`.
fn exec_of(kubeconfig: &Value, name: &str) -> Value {
    kubeconfig["users"]
        .as_array()
        .and_then(|users| users.iter().find(|u| u["name"] == name))
        .map(|u| u["user"]["exec"].clone())
        .unwrap_or_else(|| panic!("no user {name:?} in {kubeconfig}"))
}

/// `koidc setup` for [`KubeIdp`]'s Dex with `--write-kubeconfig --kubeconfig <kubeconfig>` and
/// the test's koidc as the exec command, plus `extra`; `setup_args` replaced by `args` when given.
fn setup_kubeconfig(
    idp: &KubeIdp,
    dir: &Path,
    kubeconfig: &Path,
    args: Option<Vec<String>>,
    extra: &[&str],
) -> Output {
    let mut all = vec!["setup".to_owned()];
    all.extend(args.unwrap_or_else(|| idp.setup_args()));
    all.extend(["--write-kubeconfig".into(), "--kubeconfig".into()]);
    all.push(kubeconfig.display().to_string());
    all.extend(["--exec-command".into(), koidc_bin().into()]);
    all.extend(extra.iter().map(|s| (*s).to_owned()));
    run_koidc(&dir.join("admin-home"), &dir.join("admin-config"), &all, &[])
}

/// Runs the real kubectl as [`READER`] (fake browser, file cache: the test knobs reach the exec
/// plugin through kubectl's environment) with `kubeconfig`: `kubectl get --raw /api` against
/// `server`. Checks that kubectl succeeded, that the one browser login happened and that every
/// request carried a bearer token.
fn kubectl_logs_in(kubectl: &Path, idp: &KubeIdp, server: &ApiServer, dir: &Path, kubeconfig: &Path) {
    let home = dir.join("user-home");
    std::fs::create_dir_all(&home).unwrap();
    let browser = BrowserLog::new(dir);
    let mut cmd = clean_command(kubectl, &home);
    cmd.env("FAKE_BROWSER_LOGIN", READER.email)
        .env("FAKE_BROWSER_PASSWORD", READER.password)
        .env("FAKE_BROWSER_LOG", &browser.path)
        .env("KOIDC_BROWSER_COMMAND", idp.browser_command())
        .env("KOIDC_CACHE", "file")
        .env("KOIDC_CACHE_DIR", dir.join("user-cache"))
        .env("KOIDC_TIMEOUT", "60")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["get", "--raw", "/api"]);
    let out = run(&mut cmd);
    out.assert_success();
    let versions: Value = serde_json::from_str(&out.stdout).expect("kubectl printed the JSON");
    assert_eq!(versions["kind"], "APIVersions");
    assert_eq!(browser.launches(), 1, "one browser login for kubectl");
    let requests = server.requests();
    assert!(!requests.is_empty(), "kubectl sent no request");
    for request in &requests {
        assert!(
            request
                .authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Bearer eyJ")),
            "{} {} carried no ID token",
            request.method,
            request.path
        );
    }
}

#[test]
fn setup_write_kubeconfig_into_a_missing_kubeconfig_prints_the_kubectl_commands_that_complete_it() {
    let kubectl = e2e_binary("KOIDC_E2E_KUBECTL", "kubectl v1.36.3");
    let idp = KubeIdp::start();
    let server = ApiServer::start();
    let dir = idp.dir().join("setup-missing-kubeconfig");
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kube").join("config");
    let out = setup_kubeconfig(&idp, &dir, &kubeconfig, None, &["--print", "kubeconfig"]);
    out.assert_success();
    let commands: Vec<&str> = out
        .stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("kubectl config "))
        .collect();
    let verbs: Vec<&str> = commands
        .iter()
        .map(|c| c.split_whitespace().nth(2).unwrap_or_default())
        .collect();
    assert_eq!(
        verbs,
        ["set-cluster", "set-context", "use-context"],
        "setup should print the kubectl commands that complete the kubeconfig:\n{}",
        out.stderr
    );
    let written = read_kubeconfig(&kubeconfig);
    assert_eq!(written["clusters"], serde_json::json!([]), "{written}");

    // The admin fills in the placeholders and runs the commands as printed, in a shell.
    let server_ca = dir.join("apiserver-ca.crt");
    std::fs::write(&server_ca, server.ca_pem()).unwrap();
    for command in &commands {
        assert!(
            command.contains(&format!("--kubeconfig={}", kubeconfig.display())),
            "{command:?} does not name the kubeconfig setup wrote"
        );
        let filled = command
            .replacen("kubectl", &kubectl.display().to_string(), 1)
            .replace("<cluster>", "test-cluster")
            .replace("<https://apiserver:6443>", &server.url())
            .replace("<apiserver-ca.crt>", &server_ca.display().to_string());
        assert!(!filled.contains('<'), "a placeholder is left in {filled:?}");
        let mut sh = clean_command("sh", &dir);
        sh.args(["-c", &filled]);
        run(&mut sh).assert_success();
    }
    kubectl_logs_in(&kubectl, &idp, &server, &dir, &kubeconfig);

    // Run again on the completed kubeconfig: a context uses the user, nothing more to say.
    let again = setup_kubeconfig(&idp, &dir, &kubeconfig, None, &["--print", "kubeconfig"]);
    again.assert_success();
    assert!(
        !again.stderr.contains("kubectl config"),
        "setup printed next steps for a complete kubeconfig:\n{}",
        again.stderr
    );
    let rewritten = read_kubeconfig(&kubeconfig);
    assert_eq!(rewritten["current-context"], "oidc@test-cluster", "{rewritten}");
    assert_eq!(rewritten["clusters"][0]["name"], "test-cluster", "{rewritten}");
}

#[test]
fn setup_embed_ca_writes_the_idp_ca_as_data_and_kubectl_logs_in_without_the_ca_file() {
    let kubectl = e2e_binary("KOIDC_E2E_KUBECTL", "kubectl v1.36.3");
    let idp = KubeIdp::start();
    let server = ApiServer::start();
    let dir = idp.dir().join("setup-embed-ca");
    std::fs::create_dir_all(&dir).unwrap();
    // The admin's copy of the IdP's CA, gone once the entry is written.
    let admin_ca = dir.join("dex-ca.pem");
    std::fs::copy(idp.ca_file(), &admin_ca).unwrap();
    let mut args = idp.setup_args();
    let at = args.iter().position(|a| a == "--certificate-authority").unwrap();
    args[at + 1] = admin_ca.display().to_string();
    let kubeconfig = dir.join("handed-out.yaml");
    let out = setup_kubeconfig(
        &idp,
        &dir,
        &kubeconfig,
        Some(args),
        &["--embed-ca", "--print", "kubeconfig"],
    );
    out.assert_success();
    std::fs::remove_file(&admin_ca).unwrap();

    let exec = exec_of(&read_kubeconfig(&kubeconfig), "oidc");
    let exec_args: Vec<&str> = exec["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        !exec_args
            .iter()
            .any(|a| a.starts_with("--certificate-authority=")),
        "the entry still names the admin's CA file: {exec_args:?}"
    );
    let data: Vec<&str> = exec_args
        .iter()
        .filter_map(|a| a.strip_prefix("--certificate-authority-data="))
        .collect();
    assert_eq!(data.len(), 1, "{exec_args:?}");
    let pem = STANDARD.decode(data[0]).expect("base64");
    assert_eq!(
        String::from_utf8(pem).unwrap().trim(),
        idp.ca_pem().trim(),
        "the embedded CA is not the IdP's"
    );

    // Whoever gets the file adds the cluster; kubectl then logs in with the embedded CA.
    let server_ca = dir.join("apiserver-ca.crt");
    std::fs::write(&server_ca, server.ca_pem()).unwrap();
    let file = format!("--kubeconfig={}", kubeconfig.display());
    for step in [
        vec![
            "config".to_owned(),
            "set-cluster".into(),
            "c".into(),
            format!("--server={}", server.url()),
            format!("--certificate-authority={}", server_ca.display()),
            "--embed-certs".into(),
        ],
        ["config", "set-context", "c", "--cluster=c", "--user=oidc"]
            .map(String::from)
            .to_vec(),
        ["config", "use-context", "c"].map(String::from).to_vec(),
    ] {
        let mut cmd = clean_command(&kubectl, &dir);
        cmd.arg(&file).args(step);
        run(&mut cmd).assert_success();
    }
    kubectl_logs_in(&kubectl, &idp, &server, &dir, &kubeconfig);
}

#[test]
fn get_token_refuses_certificate_authority_data_that_is_not_a_base64_pem_certificate() {
    let idp = crate::stub_idp::StubIdp::start(crate::stub_idp::Fault::Good);
    let tmp = tempfile::tempdir().unwrap();
    let broken_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    for (what, value) in [
        ("not base64", "not base64 at all!".to_owned()),
        ("base64 of text", STANDARD.encode("hello")),
        ("base64 of a broken certificate", STANDARD.encode(broken_pem)),
        ("a PEM certificate without base64", broken_pem.replace('\n', "")),
    ] {
        let mut cmd = clean_command(koidc_bin(), tmp.path());
        cmd.args(["get-token", "--issuer", idp.issuer(), "--client-id"])
            .arg(crate::stub_idp::CLIENT_ID)
            .args(["--cache", "none", "--no-browser", "--timeout", "5"])
            .arg(format!("--certificate-authority-data={value}"));
        let out = run(&mut cmd);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", out.stderr);
        let line = out.assert_one_error_line();
        assert!(
            line.contains("--certificate-authority-data") && line.contains("base64"),
            "{what}: the error should name the option and what it takes: {line}"
        );
        assert!(out.stdout.is_empty(), "{what}: {}", out.stdout);
    }
}

/// `koidc setup` for the stub IdP, writing `kubeconfig`, with `args` and the variables `env`.
fn setup_stub(home: &Path, kubeconfig: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = clean_command(koidc_bin(), home);
    cmd.env("XDG_CONFIG_HOME", home.join("xdg-config"))
        .envs(env.iter().copied())
        .arg("setup")
        .args(args)
        .args(["--write-kubeconfig", "--kubeconfig"])
        .arg(kubeconfig);
    run(&mut cmd)
}

/// [`setup_stub`] for a fresh stub IdP (`--issuer`, `--client-id`) plus `extra`, writing
/// `kubeconfig` in a fresh dir; returns the dir (removed when dropped), the kubeconfig's path and
/// the run.
fn setup_stub_oidc(extra: &[&str]) -> (tempfile::TempDir, std::path::PathBuf, Output) {
    let idp = crate::stub_idp::StubIdp::start(crate::stub_idp::Fault::Good);
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    let mut args = vec![
        "--issuer",
        idp.issuer(),
        "--client-id",
        crate::stub_idp::CLIENT_ID,
    ];
    args.extend(extra);
    let out = setup_stub(tmp.path(), &kubeconfig, &args, &[]);
    (tmp, kubeconfig, out)
}

#[test]
fn setup_for_a_dex_issuer_prints_no_github_note_and_writes_no_env_null() {
    let (_dir, kubeconfig, out) = setup_stub_oidc(&["--provider", "dex"]);
    out.assert_success();
    assert!(
        !out.stderr.contains("GitHub") && !out.stdout.contains("GitHub"),
        "setup for Dex talks about GitHub:\n{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("secret"),
        "setup mentions a client secret nobody gave:\n{}",
        out.stderr
    );
    let exec = exec_of(&read_kubeconfig(&kubeconfig), "oidc");
    assert!(exec.get("env").is_none(), "the entry has an env key: {exec}");
    assert!(
        !std::fs::read_to_string(&kubeconfig).unwrap().contains("env:"),
        "env written into the kubeconfig"
    );
}

const SETUP_SECRET: &str = "s3tup-cl1ent-secret-never-written";

#[test]
fn setup_with_a_client_secret_says_to_put_it_in_the_exec_env_and_never_writes_it() {
    let idp = crate::stub_idp::StubIdp::start(crate::stub_idp::Fault::Good);
    let tmp = tempfile::tempdir().unwrap();
    for (n, provider) in ["generic", "github"].iter().enumerate() {
        let kubeconfig = tmp.path().join(format!("config-{n}"));
        let mut args = vec!["--client-id", crate::stub_idp::CLIENT_ID, "--provider", provider];
        if *provider != "github" {
            args.extend(["--issuer", idp.issuer()]);
        }
        let out = setup_stub(
            tmp.path(),
            &kubeconfig,
            &args,
            &[("KOIDC_CLIENT_SECRET", SETUP_SECRET)],
        );
        out.assert_success();
        let hint = out
            .stderr
            .lines()
            .find(|l| l.contains("client secret"))
            .unwrap_or_else(|| panic!("{provider}: no word on the client secret:\n{}", out.stderr));
        assert!(
            hint.contains("not written") && hint.contains("env") && hint.contains("KOIDC_CLIENT_SECRET"),
            "{provider}: the hint should say the secret is not in the entry and how to add it: {hint}"
        );
        assert!(
            out.stderr.contains("- name: KOIDC_CLIENT_SECRET"),
            "{provider}: no env snippet:\n{}",
            out.stderr
        );
        let file = std::fs::read_to_string(&kubeconfig).unwrap();
        for (what, text) in [
            ("stdout", &out.stdout),
            ("stderr", &out.stderr),
            ("kubeconfig", &file),
        ] {
            assert!(
                !text.contains(SETUP_SECRET),
                "{provider}: the secret is in {what}"
            );
        }
        let exec = exec_of(&read_kubeconfig(&kubeconfig), "oidc");
        assert!(
            exec.get("env").is_none(),
            "{provider}: the entry has an env key: {exec}"
        );
    }
}

#[test]
fn setup_for_github_says_the_webhook_url_defaulted_to_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("config");
    let out = setup_stub(
        tmp.path(),
        &kubeconfig,
        &["--provider", "github", "--client-id", "Ov23abc"],
        &[],
    );
    out.assert_success();
    let warning = out
        .stderr
        .lines()
        .find(|l| l.contains("--webhook-url"))
        .unwrap_or_else(|| panic!("nothing said about the defaulted --webhook-url:\n{}", out.stderr));
    assert!(
        warning.starts_with("koidc: warning:") && warning.contains("https://127.0.0.1:8443/"),
        "{warning}"
    );
    let exec = exec_of(&read_kubeconfig(&kubeconfig), "oidc");
    assert!(exec.get("env").is_none(), "the entry has an env key: {exec}");

    let given = setup_stub(
        tmp.path(),
        &tmp.path().join("config-2"),
        &[
            "--provider",
            "github",
            "--client-id",
            "Ov23abc",
            "--webhook-url",
            "https://10.0.0.5:8443/",
        ],
        &[],
    );
    given.assert_success();
    assert!(
        !given.stderr.contains("--webhook-url"),
        "warned although --webhook-url was given:\n{}",
        given.stderr
    );
}

#[test]
fn setup_embed_ca_without_a_ca_fails_saying_which_option_is_missing() {
    let (_dir, kubeconfig, out) = setup_stub_oidc(&["--embed-ca"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let line = out.assert_one_error_line();
    assert!(
        line.contains("--embed-ca") && line.contains("--certificate-authority FILE"),
        "{line}"
    );
    assert!(!kubeconfig.exists(), "a kubeconfig was written");
}

/// People's AuthenticationConfiguration, as `koidc setup --print authentication-config` writes it.
const PEOPLE_AUTHN: &str = "apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- claimMappings:
    groups:
      claim: groups
      prefix: 'oidc:'
    username:
      claim: email
      prefix: 'oidc:'
  issuer:
    audiences:
    - koidc
    url: https://dex.example.com/dex
";

/// `koidc setup --ci <args>` with a fresh HOME and config dir under `dir`.
fn setup_ci(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["setup", "--ci"];
    all.extend(args);
    run_koidc(&dir.join("home"), &dir.join("config"), &all, &[])
}

/// The `setup --ci` arguments for the jobs of acme/app on refs/heads/main, then `extra`.
fn app_on_main<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "github-actions",
        "--repository",
        "acme/app",
        "--ref",
        "refs/heads/main",
    ];
    args.extend(extra);
    args
}

/// A file `name` in `dir` holding `text`; its path as a string.
fn file_in(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn setup_ci_github_actions_merges_the_jobs_authenticator_into_people_s_file_without_the_network() {
    let tmp = tempfile::tempdir().unwrap();
    let people = file_in(tmp.path(), "people.yaml", PEOPLE_AUTHN);
    let ca = crate::apiserver::ApiServer::start();
    let ca_file = file_in(tmp.path(), "ci-ca.pem", ca.ca_pem());
    // Nothing listens on port 1: setup must not fetch the CI issuer's discovery.
    let out = setup_ci(
        tmp.path(),
        &app_on_main(&[
            "--ci-issuer",
            "https://127.0.0.1:1",
            "--certificate-authority",
            &ca_file,
            "--audience",
            "https://k8s.example.com",
            "--merge",
            &people,
            "--print",
            "authentication-config",
        ]),
    );
    out.assert_success();
    let config: Value = serde_saphyr::from_str(&out.stdout).expect("the output is YAML");
    assert_eq!(config["kind"], "AuthenticationConfiguration");
    assert_eq!(config["apiVersion"], "apiserver.config.k8s.io/v1");
    let jwt = config["jwt"].as_array().unwrap();
    assert_eq!(jwt.len(), 2, "{}", out.stdout);
    assert_eq!(jwt[0]["issuer"]["url"], "https://dex.example.com/dex");
    assert_eq!(jwt[0]["claimMappings"]["groups"]["prefix"], "oidc:");
    let ci = &jwt[1];
    assert_eq!(ci["issuer"]["url"], "https://127.0.0.1:1");
    assert_eq!(
        ci["issuer"]["audiences"],
        serde_json::json!(["https://k8s.example.com"])
    );
    assert_eq!(ci["issuer"]["certificateAuthority"], ca.ca_pem());
    assert_eq!(
        ci["claimMappings"],
        serde_json::json!({
            "username": {"expression": "'github-actions:' + claims.sub"},
            "groups": {"expression": "['github-actions:' + claims.repository]"},
        })
    );
    assert_eq!(
        ci["claimValidationRules"],
        serde_json::json!([
            {"expression": "claims.repository == 'acme/app'", "message": "the job's repository is not acme/app"},
            {"expression": "claims.ref == 'refs/heads/main'", "message": "the job's ref is not refs/heads/main"},
        ])
    );
    assert!(
        out.stderr
            .contains("one jwt authenticator for the issuer https://127.0.0.1:1"),
        "{}",
        out.stderr
    );
    // No login, nothing saved: the people's groups prefix for bind-group is left alone.
    for (path, what) in [
        ("config/koidc", "saved settings"),
        ("home/.cache", "opened a token cache"),
    ] {
        assert!(!tmp.path().join(path).exists(), "setup --ci {what}");
    }
}

#[test]
fn setup_ci_puts_several_repositories_and_refs_into_one_authenticator_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let out = setup_ci(
        tmp.path(),
        &"github-actions --repository acme/app --repository acme/web --ref refs/heads/main --ref refs/tags/v1.0.0 --audience kubernetes"
            .split(' ')
            .collect::<Vec<_>>(),
    );
    out.assert_success();
    let first = out.stdout.lines().next().unwrap();
    assert!(
        first.contains("repositories acme/app, acme/web") && first.contains("share this authenticator"),
        "{first}"
    );
    // The commented parts around it do not hide the YAML: read the uncommented lines.
    let yaml: String = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let config: Value = serde_saphyr::from_str(&yaml).unwrap();
    let jwt = config["jwt"].as_array().unwrap();
    assert_eq!(jwt.len(), 1);
    assert_eq!(
        jwt[0]["issuer"]["url"],
        "https://token.actions.githubusercontent.com"
    );
    assert_eq!(
        jwt[0]["claimValidationRules"][0]["expression"],
        "claims.repository in ['acme/app', 'acme/web']"
    );
    assert_eq!(
        jwt[0]["claimValidationRules"][1]["expression"],
        "claims.ref in ['refs/heads/main', 'refs/tags/v1.0.0']"
    );
    for group in ["github-actions:acme/app", "github-actions:acme/web"] {
        let line = format!("#   koidc bind-group {group} edit -n <namespace> --group-prefix ''");
        assert!(
            out.stdout.lines().any(|l| l == line),
            "no {line:?} in:\n{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("#     id-token: write"), "{}", out.stdout);
}

#[test]
fn setup_ci_bind_group_command_binds_exactly_the_group_the_apiserver_derives() {
    let tmp = tempfile::tempdir().unwrap();
    // People's setup saved a groups prefix, which bind-group would otherwise add.
    let settings = tmp.path().join("config/koidc");
    std::fs::create_dir_all(&settings).unwrap();
    std::fs::write(settings.join("cluster.json"), "{\"groupsPrefix\": \"oidc:\"}\n").unwrap();
    let out = setup_ci(tmp.path(), &app_on_main(&["--audience", "k8s"]));
    out.assert_success();
    let command = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("#   koidc bind-group "))
        .unwrap_or_else(|| panic!("no bind-group command in:\n{}", out.stdout));
    let args: Vec<&str> = command
        .split_whitespace()
        .map(|w| if w == "''" { "" } else { w })
        .map(|w| if w == "<namespace>" { "application" } else { w })
        .collect();
    let printed = bind_group(&tmp.path().join("home"), &tmp.path().join("config"), &args);
    assert_eq!(
        subject_names(&printed.stdout),
        ["github-actions:acme/app"],
        "{}",
        printed.stdout
    );
    assert_eq!(
        std::fs::read_to_string(settings.join("cluster.json")).unwrap(),
        "{\"groupsPrefix\": \"oidc:\"}\n",
        "setup --ci changed people's saved prefix"
    );
}

#[test]
fn setup_ci_prints_the_job_side_for_github_actions_and_gitlab() {
    let tmp = tempfile::tempdir().unwrap();
    let github = setup_ci(
        tmp.path(),
        &app_on_main(&["--audience", "k8s", "--print", "kubeconfig"]),
    );
    github.assert_success();
    let entry: Value = serde_saphyr::from_str(&github.stdout).unwrap();
    let exec = &entry["users"][0]["user"]["exec"];
    assert_eq!(entry["users"][0]["name"], "ci");
    assert_eq!(
        exec["args"],
        serde_json::json!([
            "get-token",
            "--audience=k8s",
            "--token-source=github-actions",
            "--grant=workload"
        ])
    );
    assert_eq!(exec["interactiveMode"], "Never");

    // The workflow's commands, run by the real kubectl, write that same exec entry.
    let full = setup_ci(tmp.path(), &app_on_main(&["--audience", "k8s"]));
    full.assert_success();
    let set_credentials = full
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("#       kubectl config set-credentials "))
        .unwrap_or_else(|| panic!("no set-credentials command in:\n{}", full.stdout));
    let kubectl = e2e_binary("KOIDC_E2E_KUBECTL", "kubectl v1.36.3");
    let job_kubeconfig = tmp.path().join("job-kubeconfig");
    let mut cmd = clean_command(&kubectl, tmp.path());
    cmd.args(["config", "set-credentials"])
        .args(set_credentials.split(' '))
        .arg(format!("--kubeconfig={}", job_kubeconfig.display()));
    run(&mut cmd).assert_success();
    let written: Value = serde_saphyr::from_str(&std::fs::read_to_string(&job_kubeconfig).unwrap()).unwrap();
    let written = &written["users"][0];
    assert_eq!(written["name"], "ci");
    for key in ["apiVersion", "command", "args", "interactiveMode"] {
        assert_eq!(written["user"]["exec"][key], exec[key], "{key}: {written}");
    }

    let gitlab = setup_ci(
        tmp.path(),
        &[
            "gitlab",
            "--issuer",
            "https://gitlab.example.com",
            "--project",
            "acme/platform/app",
            "--ref",
            "main",
            "--audience",
            "k8s",
        ],
    );
    gitlab.assert_success();
    for line in [
        "#   deploy:",
        "#     id_tokens:",
        "#       KOIDC_ID_TOKEN:",
        "#         aud: k8s",
        "#   koidc bind-group gitlab:acme/platform/app edit -n <namespace> --group-prefix ''",
        "#         - --token-source=env:KOIDC_ID_TOKEN",
    ] {
        assert!(
            gitlab.stdout.lines().any(|l| l == line),
            "no {line:?} in:\n{}",
            gitlab.stdout
        );
    }
    assert!(
        gitlab
            .stdout
            .contains("- expression: claims.project_path == 'acme/platform/app'"),
        "{}",
        gitlab.stdout
    );
}

#[test]
fn setup_ci_refuses_hostile_and_malformed_values_in_one_line_and_prints_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "github-actions",
                "--repository",
                "acme/app' || true || '",
                "--audience",
                "k",
            ],
            "expected OWNER/REPO",
        ),
        (
            &["github-actions", "--repository", "acme/app\\", "--audience", "k"],
            "expected OWNER/REPO",
        ),
        (
            &[
                "github-actions",
                "--repository",
                "acme/app",
                "--ref",
                "main",
                "--audience",
                "k",
            ],
            "--ref refs/heads/main",
        ),
        (
            &[
                "gitlab",
                "--issuer",
                "https://gitlab.com",
                "--project",
                "acme/app",
                "--ref",
                "refs/heads/main",
                "--audience",
                "k",
            ],
            "--ref main",
        ),
        (&["github-actions", "--audience", "k"], "needs --repository"),
        (
            &["github-actions", "--repository", "acme/app"],
            "--ci needs --audience",
        ),
    ];
    for (args, expected) in cases {
        let out = setup_ci(tmp.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", out.stderr);
        let line = out.assert_one_error_line();
        assert!(line.contains(expected), "{args:?}: {line}");
    }
}

/// kube-apiserver's YAML reader (YAML 1.1) ends a comment at U+2028 and U+2029: a value that
/// setup quotes in a comment of its output must not carry one, nor may a `--merge` path with a
/// line break turn the rest of the comment into configuration.
#[test]
fn setup_ci_output_cannot_be_injected_through_line_separators_in_values_or_the_merge_path() {
    let tmp = tempfile::tempdir().unwrap();
    let injected = "\u{2028}apiVersion: apiserver.config.k8s.io/v1\u{2028}kind: AuthenticationConfiguration\u{2028}jwt: []\u{2028}---\u{2028}#";
    let environment = format!("prod{injected}");
    let audience = format!("kube{injected}");
    for args in [
        app_on_main(&["--environment", &environment, "--audience", "kube"]),
        app_on_main(&["--audience", &audience]),
    ] {
        let out = setup_ci(tmp.path(), &args);
        assert_eq!(out.status.code(), Some(1), "{}", out.stdout);
        assert_eq!(out.stdout, "");
        out.assert_one_error_line();
    }
    // A --merge path with a line break (a legal file name) is quoted on one line.
    let people = file_in(tmp.path(), "m\nkind: Injected\n---\n#", PEOPLE_AUTHN);
    let out = setup_ci(
        tmp.path(),
        &app_on_main(&["--audience", "kube", "--merge", &people]),
    );
    out.assert_success();
    assert!(
        !out.stdout
            .lines()
            .any(|l| l.starts_with("kind: Injected") || l == "---"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(['\u{2028}', '\u{2029}', '\u{85}']));
}

/// Options that would change what a pipeline gets (a token exchange, claim mappings, another
/// grant) are refused with --ci instead of being ignored.
#[test]
fn setup_ci_refuses_options_it_would_otherwise_ignore() {
    let tmp = tempfile::tempdir().unwrap();
    for extra in [
        &["--client-id", "x"][..],
        &["--connector-id", "gh"],
        &["--scope", "groups"],
        &["--username-claim", "sub"],
        &["--provider", "okta"],
        &["--grant", "workload"],
    ] {
        let mut args = app_on_main(&["--audience", "kube"]);
        args.extend(extra);
        let out = setup_ci(tmp.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", out.stderr);
        let line = out.assert_one_error_line();
        assert!(line.contains("cannot be used with"), "{extra:?}: {line}");
    }
}

/// A `--merge` file is a few KiB: a FIFO or a device is refused at once, not read without end.
#[test]
fn setup_ci_merge_refuses_a_fifo_and_a_device_instead_of_reading_forever() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for file in [fifo.display().to_string(), "/dev/zero".to_owned()] {
        let out = setup_ci(
            tmp.path(),
            &app_on_main(&["--audience", "kube", "--merge", &file]),
        );
        assert_eq!(out.status.code(), Some(1), "{file}: {}", out.stderr);
        assert!(
            out.assert_one_error_line().contains("not a regular file"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn setup_ci_merge_refuses_a_duplicate_issuer_and_files_it_cannot_use_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let people = file_in(tmp.path(), "people.yaml", PEOPLE_AUTHN);
    let base = [
        "github-actions",
        "--repository",
        "acme/app",
        "--audience",
        "k8s",
        "--print",
        "authentication-config",
    ];
    let merge = |file: &str| {
        let mut args = base.to_vec();
        args.extend(["--merge", file]);
        setup_ci(tmp.path(), &args)
    };
    let once = merge(&people);
    once.assert_success();
    let merged = file_in(tmp.path(), "merged.yaml", &once.stdout);
    let twice = merge(&merged);
    assert_eq!(twice.status.code(), Some(1), "{}", twice.stderr);
    let line = twice.assert_one_error_line();
    assert!(
        line.contains(
            "already has an authenticator for the issuer https://token.actions.githubusercontent.com"
        ) && line.contains("one `koidc setup --ci` run"),
        "{line}"
    );
    let kubeconfig = file_in(tmp.path(), "kubeconfig", "apiVersion: v1\nkind: Config\n");
    let missing = tmp.path().join("missing.yaml").display().to_string();
    for (file, expected) in [
        (
            kubeconfig.as_str(),
            "is not a kube-apiserver AuthenticationConfiguration",
        ),
        (missing.as_str(), "cannot read the --merge file"),
    ] {
        let out = merge(file);
        assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
        let line = out.assert_one_error_line();
        assert!(line.contains(expected), "{line}");
    }
    let flags = setup_ci(
        tmp.path(),
        &[
            "github-actions",
            "--repository",
            "acme/app",
            "--audience",
            "k",
            "--print",
            "apiserver-flags",
        ],
    );
    assert!(
        flags
            .assert_one_error_line()
            .contains("--print authentication-config")
    );
}

#[test]
fn the_real_apiserver_compiles_the_ci_rules_merged_beside_people_quotes_in_refs_and_environments_included() {
    let idp = KubeIdp::start();
    let people = idp.setup_auth_config();
    people.assert_success();
    let dir = idp.dir().join("setup-ci");
    std::fs::create_dir_all(&dir).unwrap();
    let people_file = file_in(&dir, "people.yaml", &people.stdout);
    // Values git and GitHub allow that would break out of a CEL string if written as they are.
    let out = setup_ci(
        &dir,
        &[
            "github-actions",
            "--ci-issuer",
            "https://127.0.0.1:1",
            "--repository",
            "acme/app",
            "--repository",
            "acme/web",
            "--ref",
            "refs/heads/main",
            "--ref",
            "refs/heads/it's",
            "--environment",
            "prod' || true || '",
            "--environment",
            "back\\slash \"quoted\"",
            "--audience",
            "k8s",
            "--merge",
            &people_file,
            "--print",
            "authentication-config",
        ],
    );
    out.assert_success();
    // kube-apiserver compiles every CEL expression of the file at start and refuses to start
    // (the test fails with its log) when one does not compile.
    let cluster = crate::kube::KubeCluster::start(&out.stdout, idp);
    let _logs = cluster.print_logs_on_failure();
    let whoami = cluster.user(&READER).kubectl(&["auth", "whoami", "-o", "json"]);
    whoami.assert_success();
    let review: Value = serde_json::from_str(&whoami.stdout).expect("whoami printed JSON");
    assert_eq!(
        review["status"]["userInfo"]["username"],
        format!("oidc:{}", READER.email),
        "people still get in beside the CI authenticator: {review}"
    );
}

#[test]
fn setup_with_a_profile_keeps_token_type_access_and_its_audience_in_the_entry() {
    use std::os::unix::fs::PermissionsExt as _;
    let idp = crate::stub_idp::StubIdp::start(crate::stub_idp::Fault::Good);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("xdg-config").join("koidc");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(
        &file,
        format!(
            "[profiles.work]\nissuer = \"{}\"\nclient-id = \"{}\"\n",
            idp.issuer(),
            crate::stub_idp::CLIENT_ID
        ),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    let out = setup_stub(
        tmp.path(),
        &kubeconfig,
        &[
            "--profile",
            "work",
            "--token-type",
            "access",
            "--audience",
            "api://kube",
            "--auth-param",
            "prompt=login",
            "--pkce",
            "false",
            "--request-header",
            "X-Api-Key=s3tup-header-value",
        ],
        &[],
    );
    out.assert_success();
    let exec = exec_of(&read_kubeconfig(&kubeconfig), "oidc");
    let args: Vec<&str> = exec["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[..2], ["get-token", "--profile=work"], "{exec}");
    for word in [
        "--token-type=access",
        "--audience=api://kube",
        "--auth-param=prompt=login",
        "--pkce=false",
    ] {
        assert!(args.contains(&word), "{word} missing from the entry: {exec}");
    }
    // Header values stay out of the entry, and setup says where they go instead.
    let written = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(!written.contains("s3tup-header-value"), "{written}");
    assert!(
        out.stderr.contains("--request-header values are not written"),
        "{}",
        out.stderr
    );
}
