//! `koidc setup` against the real Dex over HTTPS (no apiserver needed): `--login` shows the real
//! token's claims and turns its groups into `koidc bind-group` hints, and the groups prefix setup
//! saves is the one `koidc bind-group` puts in its subjects from then on. The end-to-end use of
//! setup's output by a real apiserver and kubectl is in [`crate::rbac_e2e`].

use std::path::Path;

use crate::browser::BrowserLog;
use crate::kube::{KubeIdp, READER, run_koidc};
use crate::support::{Output, clean_command, koidc_bin, run};

/// `koidc bind-group <args>` (printing, not applying) with this HOME and XDG_CONFIG_HOME.
fn bind_group(home: &Path, config_dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["bind-group"];
    all.extend(args);
    let out = run_koidc(home, config_dir, &all, &[]);
    out.assert_success();
    out
}

/// The subject names in `koidc bind-group`'s YAML (`  name: X` under `subjects:`).
fn subject_names(yaml: &str) -> Vec<String> {
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
