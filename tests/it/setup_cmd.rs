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
        !out.stdout.contains("eyJ") && !out.stderr.contains("eyJ"),
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
