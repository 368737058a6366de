//! Profiles of the config file and the kubectl/documentation conventions, through the real
//! binary: `get-token --profile NAME` alone against Dex, two profiles for one issuer and client
//! as two accounts (two logins, two cache entries), flags and `KOIDC_*` variables beating the
//! profile, `setup --profile` writing a profile-only kubeconfig entry, `kubectl koidc` through
//! the `kubectl-koidc` name (a symlink, and the real kubectl's plugin lookup), completion scripts,
//! the man page, and the krew manifest template.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::browser::fake_browser;
use crate::dex::{CLIENT_ID, MOCK_EMAIL, USER_EMAIL, USER_PASSWORD};
use crate::lab::{Lab, LabOptions};
use crate::support::{
    Output, Stdout, clean_command, e2e_binary, files_under, koidc_bin, mode, repo_root, run,
};

/// Writes `text` as the config file `<xdg>/koidc/config.toml` (0600 in a 0700 directory) and
/// returns the XDG_CONFIG_HOME to give koidc.
fn write_config(root: &Path, text: &str) -> PathBuf {
    let xdg = root.join("xdg");
    let dir = xdg.join("koidc");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(&file, text).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    xdg
}

/// A `[profiles.NAME]` table for the lab's Dex: issuer, client, offline_access, file cache in
/// `cache_dir`, the fake browser.
fn lab_profile(lab: &Lab, name: &str, cache_dir: &Path) -> String {
    format!(
        "[profiles.{name}]\n\
         issuer = \"{}\"\n\
         client-id = \"{CLIENT_ID}\"\n\
         scopes = [\"offline_access\"]\n\
         cache = \"file\"\n\
         cache-dir = \"{}\"\n\
         browser-command = \"{}\"\n\
         timeout = 60\n",
        lab.issuer(),
        cache_dir.display(),
        fake_browser().display()
    )
}

/// koidc with only `args` (no lab flags), the lab's environment and the config in `xdg`.
fn koidc_with_config(lab: &Lab, xdg: &Path, args: &[&str]) -> Command {
    let mut cmd = clean_command(koidc_bin(), &lab.home);
    cmd.args(args).envs(lab.run_env()).env("XDG_CONFIG_HOME", xdg);
    cmd
}

/// Runs [`koidc_with_config`].
fn run_with_config(lab: &Lab, xdg: &Path, args: &[&str]) -> Output {
    run(&mut koidc_with_config(lab, xdg, args))
}

fn cache_entries(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect()
}

#[test]
fn get_token_with_only_a_profile_logs_in_caches_and_serves_from_the_cache() {
    let lab = Lab::start(LabOptions::default());
    let cache = lab.tmp.path().join("profile-cache");
    let xdg = write_config(
        lab.tmp.path(),
        &format!(
            "default-profile = \"work\"\n\n{}",
            lab_profile(&lab, "work", &cache)
        ),
    );

    let out = run_with_config(&lab, &xdg, &["get-token", "--profile", "work"]);
    let (_, first) = lab.assert_ok_get_token(&out);
    assert_eq!(lab.browser.launches(), 1);
    assert_eq!(
        cache_entries(&cache).len(),
        1,
        "one entry in the profile's cache dir"
    );
    assert_eq!(mode(&cache_entries(&cache)[0]), 0o600);

    // The default profile: no option at all. A cache hit, without any request to Dex.
    let mark = lab.proxy.mark();
    let out = run_with_config(&lab, &xdg, &["get-token"]);
    let (_, again) = lab.assert_ok_get_token(&out);
    assert_eq!(again.token, first.token);
    assert_eq!(
        lab.proxy.since(mark),
        [],
        "the profile's token came from the cache"
    );

    // whoami and logout find the same entry through the profile.
    let out = run_with_config(&lab, &xdg, &["whoami", "--profile", "work", "-o", "json"]);
    out.assert_success();
    lab.assert_no_leak(&out, Stdout::NoSecrets);
    let who: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(who["email"], MOCK_EMAIL);

    // setup --profile writes an exec entry that names only the profile.
    let kubeconfig = lab.tmp.path().join("kubeconfig");
    let out = run_with_config(
        &lab,
        &xdg,
        &[
            "setup",
            "--profile",
            "work",
            "--write-kubeconfig",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--print",
            "kubeconfig",
        ],
    );
    out.assert_success();
    let written: Value = serde_saphyr::from_str(&std::fs::read_to_string(&kubeconfig).unwrap()).unwrap();
    let exec = &written["users"][0]["user"]["exec"];
    assert_eq!(exec["args"], serde_json::json!(["get-token", "--profile=work"]));
    assert!(exec["installHint"].as_str().unwrap().contains("kubectl-koidc"));

    let out = run_with_config(&lab, &xdg, &["logout", "--profile", "work", "--no-revoke"]);
    out.assert_success();
    assert!(
        cache_entries(&cache).is_empty(),
        "logout --profile removed the entry"
    );
}

#[test]
fn two_profiles_for_one_issuer_and_client_are_two_accounts() {
    let lab = Lab::start(LabOptions::default());
    let cache = lab.tmp.path().join("shared-cache");
    let xdg = write_config(
        lab.tmp.path(),
        &format!(
            "{}\n{}",
            lab_profile(&lab, "alice", &cache),
            lab_profile(&lab, "kilgore", &cache)
        ),
    );
    // alice logs in with the password connector, kilgore with the mock connector.
    let alice = |lab: &Lab| {
        let mut cmd = koidc_with_config(lab, &xdg, &["get-token", "--profile", "alice"]);
        cmd.env("FAKE_BROWSER_LOGIN", USER_EMAIL)
            .env("FAKE_BROWSER_PASSWORD", USER_PASSWORD);
        run(&mut cmd)
    };
    let kilgore = |lab: &Lab| run_with_config(lab, &xdg, &["get-token", "--profile", "kilgore"]);

    let (_, a) = lab.assert_ok_get_token(&alice(&lab));
    let (_, k) = lab.assert_ok_get_token(&kilgore(&lab));
    assert_eq!(a.claims["email"], USER_EMAIL);
    assert_eq!(k.claims["email"], MOCK_EMAIL);
    assert_eq!(lab.browser.launches(), 2, "one login per profile");
    let entries = cache_entries(&cache);
    assert_eq!(entries.len(), 2, "two cache entries: {entries:?}");
    for entry in &entries {
        let v: Value = serde_json::from_slice(&std::fs::read(entry).unwrap()).unwrap();
        assert_eq!(v["client_id"], CLIENT_ID);
        assert!(
            v["profile"] == "alice" || v["profile"] == "kilgore",
            "{}",
            v["profile"]
        );
    }

    // Each profile keeps its own account: cache hits, no new login.
    let mark = lab.proxy.mark();
    let (_, a2) = lab.assert_ok_get_token(&alice(&lab));
    let (_, k2) = lab.assert_ok_get_token(&kilgore(&lab));
    assert_eq!((a2.token, k2.token), (a.token, k.token));
    assert_eq!(lab.proxy.since(mark), []);
    assert_eq!(lab.browser.launches(), 2);

    // whoami for the issuer and client without a profile lists both accounts, each named with
    // its profile, and no third entry.
    let mut cmd = clean_command(koidc_bin(), &lab.home);
    cmd.args(["whoami", "--issuer", &lab.issuer(), "--client-id", CLIENT_ID])
        .args([
            "--scope",
            "offline_access",
            "--cache",
            "file",
            "-o",
            "json",
            "--cache-dir",
        ])
        .arg(&cache);
    let out = run(&mut cmd);
    out.assert_success();
    let listed: Value = serde_json::from_str(&out.stdout).expect("whoami -o json");
    let mut accounts: Vec<(String, String)> = listed
        .as_array()
        .unwrap_or_else(|| panic!("a list of both accounts: {listed}"))
        .iter()
        .map(|e| (e["profile"].to_string(), e["email"].to_string()))
        .collect();
    accounts.sort();
    assert_eq!(
        accounts,
        [
            ("\"alice\"".to_owned(), format!("{USER_EMAIL:?}")),
            ("\"kilgore\"".to_owned(), format!("{MOCK_EMAIL:?}")),
        ]
    );
}

#[test]
fn flags_and_variables_beat_the_profile() {
    let lab = Lab::start(LabOptions::default());
    let profile_cache = lab.tmp.path().join("profile-cache");
    let flag_cache = lab.tmp.path().join("flag-cache");
    let env_cache = lab.tmp.path().join("env-cache");
    let xdg = write_config(lab.tmp.path(), &lab_profile(&lab, "work", &profile_cache));

    let out = run_with_config(
        &lab,
        &xdg,
        &[
            "get-token",
            "--profile",
            "work",
            "--cache-dir",
            flag_cache.to_str().unwrap(),
        ],
    );
    lab.assert_ok_get_token(&out);
    assert_eq!(
        cache_entries(&flag_cache).len(),
        1,
        "--cache-dir beat the profile"
    );

    let mut cmd = koidc_with_config(&lab, &xdg, &["get-token"]);
    cmd.env("KOIDC_PROFILE", "work")
        .env("KOIDC_CACHE_DIR", &env_cache);
    lab.assert_ok_get_token(&run(&mut cmd));
    assert_eq!(
        cache_entries(&env_cache).len(),
        1,
        "KOIDC_CACHE_DIR beat the profile"
    );

    // The flag beats the variable, too.
    let other = lab.tmp.path().join("flag-over-env");
    let mut cmd = koidc_with_config(
        &lab,
        &xdg,
        &[
            "get-token",
            "--profile",
            "work",
            "--cache-dir",
            other.to_str().unwrap(),
        ],
    );
    cmd.env("KOIDC_CACHE_DIR", &env_cache);
    lab.assert_ok_get_token(&run(&mut cmd));
    assert_eq!(cache_entries(&other).len(), 1);
    assert!(
        cache_entries(&profile_cache).is_empty(),
        "the profile's cache dir was never used"
    );
}

#[test]
fn profile_mistakes_are_one_clear_error_line() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let xdg = write_config(
        tmp.path(),
        "[profiles.work]\nissuer = \"https://dex.example.com\"\n\n[profiles.home]\nclient-id = \"x\"\n",
    );
    let koidc = |args: &[&str]| {
        let mut cmd = clean_command(koidc_bin(), &home);
        cmd.args(args).env("XDG_CONFIG_HOME", &xdg);
        run(&mut cmd)
    };

    let out = koidc(&["get-token", "--profile", "wrok"]);
    out.assert_failure();
    let line = out.assert_one_error_line();
    assert!(line.contains("no profile \"wrok\""), "{line}");
    assert!(line.contains("available: home, work"), "{line}");

    let file = xdg.join("koidc/config.toml");
    std::fs::write(
        &file,
        "[profiles.work]\nissuer = \"https://i\"\nclient_id = \"x\"\n",
    )
    .unwrap();
    let line = koidc(&["get-token", "--profile", "work"]).assert_one_error_line();
    assert!(line.contains("unknown field `client_id`"), "{line}");
    assert!(line.contains(&file.display().to_string()), "{line}");
    assert!(line.contains("line 3"), "{line}");

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let line = koidc(&["get-token", "--profile", "work"]).assert_one_error_line();
    assert!(line.contains("writable by group or others"), "{line}");
}

/// A directory holding `kubectl-koidc`, a symlink to the koidc under test.
fn plugin_dir(root: &Path) -> PathBuf {
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(koidc_bin(), dir.join("kubectl-koidc")).unwrap();
    dir
}

#[test]
fn as_kubectl_koidc_the_usage_says_kubectl_koidc() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = plugin_dir(tmp.path());
    for args in [&["--help"][..], &["get-token", "--help"]] {
        let out = run(clean_command(dir.join("kubectl-koidc"), tmp.path()).args(args));
        out.assert_success();
        assert!(
            out.stdout.contains("Usage: kubectl koidc"),
            "{args:?}: {}",
            out.stdout
        );
        assert!(!out.stdout.contains("kubectl-koidc "), "{}", out.stdout);
    }
    // Errors too.
    let out = run(clean_command(dir.join("kubectl-koidc"), tmp.path()).args(["get-token", "--bogus"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr.contains("try `kubectl koidc get-token --help`"),
        "{}",
        out.stderr
    );
    // The plain name keeps `koidc`.
    let out = run(clean_command(koidc_bin(), tmp.path()).arg("--help"));
    assert!(out.stdout.contains("Usage: koidc"), "{}", out.stdout);
}

#[test]
fn kubectl_finds_the_plugin_and_passes_the_arguments() {
    let kubectl = e2e_binary("KOIDC_E2E_KUBECTL", "kubectl v1.36.3");
    let tmp = tempfile::tempdir().unwrap();
    let dir = plugin_dir(tmp.path());
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    );
    let out = run(clean_command(&kubectl, tmp.path())
        .env("PATH", path)
        .args(["koidc", "whoami", "--help"]));
    out.assert_success();
    assert!(
        out.stdout.contains("Usage: kubectl koidc whoami"),
        "{}",
        out.stdout
    );
}

#[test]
fn hints_under_kubectl_name_kubectl_koidc_not_a_koidc_command_krew_users_do_not_have() {
    let kubectl = e2e_binary("KOIDC_E2E_KUBECTL", "kubectl v1.36.3");
    let tmp = tempfile::tempdir().unwrap();
    let dir = plugin_dir(tmp.path());
    // Only the plugin name on PATH, as krew installs it.
    let path = format!("{}:/usr/bin:/bin", dir.display());
    let cache = tmp.path().join("cache");
    let whoami = [
        "whoami",
        "--cache",
        "file",
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    let out = run(clean_command(&kubectl, tmp.path())
        .env("PATH", &path)
        .arg("koidc")
        .args(whoami));
    let line = out.assert_one_error_line();
    assert!(
        line.contains("run `kubectl koidc login --issuer URL --client-id ID`"),
        "{line}"
    );
    // The same hint as plain koidc.
    let out = run(clean_command(koidc_bin(), tmp.path()).args(whoami));
    let line = out.assert_one_error_line();
    assert!(line.contains("run `koidc login --issuer URL"), "{line}");
    assert!(!line.contains("kubectl koidc"), "{line}");
}

#[test]
fn completion_scripts_cover_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = run(clean_command(koidc_bin(), tmp.path()).args(["completions", shell]));
        out.assert_success();
        assert!(!out.stdout.trim().is_empty(), "{shell}: empty script");
        for word in ["get-token", "login", "whoami", "profile"] {
            assert!(out.stdout.contains(word), "{shell}: no {word}");
        }
        assert!(out.stderr.is_empty(), "{shell}: {}", out.stderr);
    }
    if Path::new("/bin/bash").exists() {
        // The bash script is valid bash.
        let script = tmp.path().join("koidc.bash");
        let out = run(clean_command(koidc_bin(), tmp.path()).args(["completions", "bash"]));
        std::fs::write(&script, &out.stdout).unwrap();
        run(clean_command("/bin/bash", tmp.path()).arg("-n").arg(&script)).assert_success();
    }
}

#[test]
fn the_man_page_is_roff_with_the_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(clean_command(koidc_bin(), tmp.path()).arg("man"));
    out.assert_success();
    assert!(
        out.stdout.starts_with(".TH koidc 1"),
        "{}",
        &out.stdout[..60.min(out.stdout.len())]
    );
    assert!(out.stdout.contains("get\\-token"));
    let out = run(clean_command(koidc_bin(), tmp.path()).args(["man", "get-token"]));
    assert!(out.stdout.starts_with(".TH koidc-get-token 1"));
    assert!(out.stdout.contains("Examples:"));

    let dir = tmp.path().join("man1");
    run(clean_command(koidc_bin(), tmp.path()).args(["man", "--out-dir", dir.to_str().unwrap()]))
        .assert_success();
    for page in ["koidc.1", "koidc-get-token.1", "koidc-setup.1"] {
        assert_eq!(mode(&dir.join(page)), 0o644, "{page}");
    }
}

#[test]
fn the_krew_manifest_template_has_every_platform_and_no_fake_hash() {
    let text = std::fs::read_to_string(repo_root().join("krew/koidc.yaml")).unwrap();
    let manifest: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(
        manifest["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "koidc");
    let platforms = manifest["spec"]["platforms"].as_array().unwrap();
    let mut seen: Vec<String> = platforms
        .iter()
        .map(|p| {
            assert_eq!(p["bin"], "kubectl-koidc");
            let sha = p["sha256"].as_str().unwrap();
            assert!(
                !(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())),
                "a placeholder must not look like a real hash: {sha}"
            );
            let labels = &p["selector"]["matchLabels"];
            format!(
                "{}/{}",
                labels["os"].as_str().unwrap(),
                labels["arch"].as_str().unwrap()
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        ["darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64"]
    );
}
