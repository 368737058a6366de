//! Headless logins end to end against the real Dex: the device grant (RFC 8628) approved as a
//! user would do it, from the code koidc prints on stderr (tests/support/device-approver.py plays
//! the browser on the other device); `--grant auto` switching to it without a display; keyboard
//! mode (`--paste`) with the redirected URL piped into koidc's stdin; and the cool-down that makes
//! non-interactive kubectl calls fail fast, without a browser, after a failed or abandoned login.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::dex::{MOCK_EMAIL, USER_EMAIL, USER_GROUPS, USER_PASSWORD};
use crate::lab::{Lab, LabOptions};
use crate::support::{
    Live, Output, RUN_TIMEOUT, Stdout, V1, clean_command, files_under, koidc_bin, mode, repo_root, run,
};

/// The grant type of device access token requests.
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Dex's polling interval.
const DEX_INTERVAL_SECS: f64 = 5.0;

fn exec_info(interactive: bool) -> String {
    format!(r#"{{"kind":"ExecCredential","apiVersion":"{V1}","spec":{{"interactive":{interactive}}}}}"#)
}

/// The lab's `koidc SUBCOMMAND` with `extra` flags; an `extra` `--timeout` replaces the lab's
/// (clap refuses a repeated option) and `--no-browser-command` drops the lab's fake browser.
fn command(lab: &Lab, sub: &str, extra: &[&str]) -> Command {
    let mut args = lab.args(sub);
    let mut drop_flag = |flag: &str| {
        if let Some(at) = args.iter().position(|a| a == flag) {
            args.drain(at..at + 2);
        }
    };
    if extra.contains(&"--timeout") {
        drop_flag("--timeout");
    }
    if extra.contains(&"--no-browser-command") {
        drop_flag("--browser-command");
    }
    let mut cmd = clean_command(koidc_bin(), &lab.home);
    cmd.args(args)
        .args(extra.iter().filter(|a| **a != "--no-browser-command"))
        .envs(lab.run_env());
    cmd
}

fn approver() -> PathBuf {
    let path = repo_root().join("tests/support/device-approver.py");
    assert!(path.is_file(), "missing {}", path.display());
    path
}

/// Runs the approver with `args` (and `env`), as the user at another device.
fn approve(lab: &Lab, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = clean_command(approver(), &lab.home);
    cmd.args(args).envs(env.iter().copied());
    let out = run(&mut cmd);
    out.assert_success();
    out
}

/// The verification URI and user code from koidc's prompt
/// `koidc: to log in, open URI and enter the code CODE (waiting up to Ns)`.
pub fn parse_prompt(line: &str) -> (String, String) {
    let rest = line
        .split_once("to log in, open ")
        .unwrap_or_else(|| panic!("not a device prompt: {line:?}"))
        .1;
    let (uri, rest) = rest.split_once(" and enter the code ").expect("the code");
    let code = rest.split_once(" (waiting").expect("the wait").0;
    (uri.to_string(), code.to_string())
}

/// Requests to Dex's device authorization endpoint and device token polls since `mark`.
fn device_traffic(lab: &Lab, mark: usize) -> (usize, usize) {
    let seen = lab.proxy.since(mark);
    let codes = seen
        .iter()
        .filter(|s| s.method == "POST" && s.path.ends_with("/device/code"))
        .count();
    let polls = seen
        .iter()
        .filter(|s| s.grant_type.as_deref() == Some(DEVICE_GRANT))
        .count();
    (codes, polls)
}

#[test]
fn device_code_login_with_dex_is_approved_from_the_printed_code() {
    let mut lab = Lab::start(LabOptions::default());
    lab.flags.extend(["--scope", "email"].map(String::from));

    let mut koidc = Live::spawn(&mut command(
        &lab,
        "get-token",
        &["--grant", "device-code", "--no-browser"],
    ));
    let prompt = koidc.wait_for_line("enter the code", Duration::from_secs(30));
    let (uri, code) = parse_prompt(&prompt);
    assert_eq!(uri, format!("{}/device", lab.issuer()), "Dex's verification URI");
    assert!(
        code.len() >= 8 && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
        "a user code like Dex's XXXX-XXXX: {code:?}"
    );
    let complete = koidc.wait_for_line("or open ", Duration::from_secs(5));
    assert!(
        complete.ends_with(&format!("/device?user_code={code}")),
        "verification_uri_complete shown: {complete:?}"
    );

    // The user opens the page on another device and types the code.
    approve(&lab, &[&uri, &code], &[]);

    let (out, ran) = koidc.finish(RUN_TIMEOUT);
    let (out, cred) = lab.assert_ok_get_token(&out);
    assert_eq!(cred.claims["email"], MOCK_EMAIL, "the mock connector's user");
    assert!(
        lab.proxy.secrets().id_tokens.contains(&cred.token),
        "the token is one Dex issued"
    );
    assert!(!out.stderr.contains("debug"), "no debug lines without -v");
    // A device login says who logged in, like a browser login.
    assert_eq!(
        out.stderr_lines().last().copied(),
        Some(format!("koidc: logged in as {MOCK_EMAIL} at {}", lab.issuer()).as_str()),
        "{:?}",
        out.stderr
    );

    let (codes, polls) = device_traffic(&lab, 0);
    assert_eq!(codes, 1, "exactly one device authorization request");
    let bound = (ran.as_secs_f64() / DEX_INTERVAL_SECS).floor() as usize + 2;
    assert!(
        (1..=bound).contains(&polls),
        "{polls} token polls in {ran:?} disrespect the {DEX_INTERVAL_SECS}s interval (at most {bound})"
    );
    assert!(
        lab.proxy.grants_since(0).iter().all(|g| g == DEVICE_GRANT),
        "only device token requests: {:?}",
        lab.proxy.grants_since(0)
    );
    assert_eq!(lab.browser.launches(), 0, "--no-browser: no browser");

    // The device login is cached like any other: the next call is a warm hit.
    let mark = lab.proxy.mark();
    let (_, again) = lab.get_token();
    assert_eq!(again.token, cred.token);
    assert_eq!(lab.proxy.since(mark), [], "a cache hit makes no request");
}

#[test]
fn device_code_login_through_the_complete_uri_with_the_password_connector_has_groups() {
    let mut lab = Lab::start(LabOptions::default());
    lab.flags
        .extend(["--scope", "email", "--scope", "groups"].map(String::from));

    let mut koidc = Live::spawn(&mut command(
        &lab,
        "login",
        &["--grant", "device-code", "--no-browser"],
    ));
    koidc.wait_for_line("enter the code", Duration::from_secs(30));
    let line = koidc.wait_for_line("or open ", Duration::from_secs(5));
    let complete = line.split_once("or open ").expect("a URL").1.to_string();
    approve(
        &lab,
        &[&complete],
        &[
            ("FAKE_BROWSER_LOGIN", USER_EMAIL),
            ("FAKE_BROWSER_PASSWORD", USER_PASSWORD),
        ],
    );
    let (out, _) = koidc.finish(RUN_TIMEOUT);
    out.assert_success();
    lab.assert_no_leak(&out, Stdout::NoSecrets);
    for shown in [USER_EMAIL, USER_GROUPS[0], USER_GROUPS[1]] {
        assert!(
            out.stdout.contains(shown),
            "login shows {shown:?}: {:?}",
            out.stdout
        );
    }
    assert_eq!(device_traffic(&lab, 0).0, 1);
}

/// Dex hands out a device code to any client id and refuses an unknown one only when the user
/// approves: koidc must ask first and fail before showing a code that can never work, long
/// before its timeout (100 s here; the 60 s bound is generous for a loaded machine, where one
/// request to Dex takes well under a second).
#[test]
fn unknown_client_id_fails_the_device_login_at_once_without_handing_out_a_code() {
    let lab = Lab::start(LabOptions::default());
    let started = Instant::now();
    let out = run(&mut lab.command_overriding(
        "get-token",
        &[
            "--grant",
            "device-code",
            "--no-browser",
            "--client-id",
            "no-such-client",
            "--timeout",
            "100",
        ],
    ));
    let took = started.elapsed();
    let line = out.assert_failure().assert_one_error_line();
    assert!(took < Duration::from_secs(60), "koidc took {took:?} to fail");
    assert!(
        line.contains("Invalid client_id") && line.contains("--client-id"),
        "Dex's reason and what to check: {line:?}"
    );
    assert!(!out.stderr.contains("enter the code"), "{:?}", out.stderr);
    assert_eq!(device_traffic(&lab, 0), (0, 0), "no device code requested");
}

#[test]
fn device_code_login_times_out_cleanly() {
    let lab = Lab::start(LabOptions::default());
    let started = Instant::now();
    let out = run(&mut command(
        &lab,
        "get-token",
        &["--grant", "device-code", "--no-browser", "--timeout", "2"],
    ));
    let took = started.elapsed();
    out.assert_failure();
    lab.assert_no_leak(&out, Stdout::NoSecrets);
    assert!(out.stdout.is_empty(), "nothing on stdout: {:?}", out.stdout);
    let lines = out.stderr_lines();
    let last = lines.last().copied().unwrap_or_default();
    // The hint is the command line that was run, as `koidc login`.
    let options = lab.args("get-token")[1..].join(" ");
    let grant = "--grant device-code --no-browser --timeout 2";
    assert_eq!(
        last,
        format!(
            "koidc: the device login was not approved within 2s; run `koidc login {} {grant}` to \
             try again (or raise --timeout)",
            options.replace(" --timeout 60", "")
        )
    );
    assert!(
        lines[..lines.len() - 1].iter().all(|l| !l.contains("error")),
        "one error line: {lines:?}"
    );
    // Not before the timeout; that it stopped there, not later, is shown by the poll count
    // below (the first poll would come 5 s in), so the upper bound is only against a hang and
    // leaves a loaded machine room.
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(30),
        "stops at the timeout: {took:?}"
    );
    let (codes, polls) = device_traffic(&lab, 0);
    assert_eq!(codes, 1);
    assert_eq!(
        polls, 0,
        "the first poll (after 5 s) would come after the 2 s timeout"
    );
}

#[test]
fn auto_grant_without_a_display_or_browser_command_uses_the_device_flow() {
    // The clean environment has neither DISPLAY nor WAYLAND_DISPLAY nor BROWSER.
    let lab = Lab::start(LabOptions::default());
    let mut koidc = Live::spawn(&mut command(&lab, "get-token", &["--no-browser-command"]));
    koidc.wait_for_line("no display to open a browser on", Duration::from_secs(30));
    let (uri, code) = parse_prompt(&koidc.wait_for_line("enter the code", Duration::from_secs(5)));
    approve(&lab, &[&uri, &code], &[]);
    let (out, _) = koidc.finish(RUN_TIMEOUT);
    lab.assert_ok_get_token(&out);
    assert_eq!(device_traffic(&lab, 0).0, 1);
    assert_eq!(lab.browser.launches(), 0);
}

#[test]
fn auto_grant_whose_system_browser_cannot_be_opened_falls_back_to_the_device_flow() {
    use std::os::unix::fs::PermissionsExt as _;
    // A display, but every URL opener fails at once: a PATH holding only failing `xdg-open` and
    // `gio` (the openers of the `open` crate; the others are missing).
    let lab = Lab::start(LabOptions::default());
    let bin = lab.tmp.path().join("openers");
    std::fs::create_dir(&bin).expect("create the openers dir");
    for (name, status) in [("xdg-open", 3), ("gio", 2)] {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\nexit {status}\n")).expect("write an opener");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("make the opener executable");
    }
    let mut cmd = command(&lab, "get-token", &["--no-browser-command"]);
    cmd.env("PATH", &bin).env("DISPLAY", ":99");
    let mut koidc = Live::spawn(&mut cmd);
    let failed = koidc.wait_for_line("could not open a browser", Duration::from_secs(30));
    assert!(
        failed.ends_with("could not open a browser: xdg-open failed (exit status: 3)"),
        "one short line with the reason: {failed:?}"
    );
    koidc.wait_for_line("logging in with a code instead", Duration::from_secs(5));
    let (uri, code) = parse_prompt(&koidc.wait_for_line("enter the code", Duration::from_secs(5)));
    approve(&lab, &[&uri, &code], &[]);
    let (out, _) = koidc.finish(RUN_TIMEOUT);
    let (out, _) = lab.assert_ok_get_token(&out);
    assert!(!out.stderr.contains("opened a browser"), "{:?}", out.stderr);
    assert!(
        !out.stderr.contains("/auth?"),
        "no authorization URL to open: {:?}",
        out.stderr
    );
    assert_eq!(device_traffic(&lab, 0).0, 1);
}

#[test]
fn paste_mode_takes_the_redirected_url_from_piped_stdin() {
    let lab = Lab::start(LabOptions::default());
    let mut cmd = command(
        &lab,
        "get-token",
        &["--grant", "authcode", "--paste", "--no-browser"],
    );
    cmd.stdin(Stdio::piped());
    let mut koidc = Live::spawn(&mut cmd);
    let line = koidc.wait_for_line("open this URL in a browser", Duration::from_secs(30));
    let auth_url = &line[line.find("http").expect("a URL")..];
    koidc.wait_for_line("paste the address", Duration::from_secs(5));

    // A redirect from some other login is refused, and koidc keeps waiting.
    koidc.write_line("http://127.0.0.1:1/callback?code=not-this-one&state=not-this-state");
    let warning = koidc.wait_for_line("belongs to another login", Duration::from_secs(10));
    assert!(!warning.contains("not-this-one"), "the pasted code is not echoed");

    // The user logs in in a browser that cannot reach the loopback, and pastes where it ended.
    let redirect = approve(&lab, &["--redirect-url", auth_url], &[]).stdout;
    let redirect = redirect.trim();
    assert!(
        redirect.contains("code=") && redirect.contains("/callback?"),
        "redirect URL"
    );
    koidc.write_line(redirect);

    let (out, _) = koidc.finish(RUN_TIMEOUT);
    let (out, cred) = lab.assert_ok_get_token(&out);
    assert_eq!(cred.claims["email"], MOCK_EMAIL);
    assert_eq!(lab.proxy.grants_since(0), ["authorization_code"]);
    assert_eq!(lab.browser.launches(), 0);
    assert!(!out.stderr.contains("code="), "no pasted URL echoed on stderr");
}

/// The cool-down marker files in the lab's cache dir.
fn markers(lab: &Lab) -> Vec<PathBuf> {
    files_under(&lab.cache_dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cooldown"))
        .collect()
}

/// A non-interactive `get-token` that gives up after 2 s without a browser.
fn abandoned_noninteractive_login(lab: &Lab) -> Output {
    let mut cmd = command(lab, "get-token", &["--timeout", "2", "--no-browser"]);
    cmd.env("KUBERNETES_EXEC_INFO", exec_info(false));
    let out = run(&mut cmd);
    out.assert_failure();
    lab.assert_no_leak(&out, Stdout::NoSecrets);
    assert!(
        out.stderr_lines().last().is_some_and(|l| l.contains("within 2s")),
        "the timeout is reported: {:?}",
        out.stderr
    );
    out
}

#[test]
fn failed_noninteractive_login_cools_down_later_calls_until_koidc_login() {
    let lab = Lab::start(LabOptions::default());

    // 1. A background call's login is abandoned: a private marker with a time and a reason.
    abandoned_noninteractive_login(&lab);
    let found = markers(&lab);
    assert_eq!(found.len(), 1, "one cool-down marker: {found:?}");
    assert_eq!(mode(&found[0]), 0o600);
    let text = std::fs::read_to_string(&found[0]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "a timestamp and a reason: {text:?}");
    let at: i64 = lines[0].parse().expect("a Unix time");
    assert!((chrono::Utc::now().timestamp() - at).abs() < 30);
    for secret in lab.proxy.secrets().other {
        assert!(!text.contains(&secret), "a secret in the marker");
    }

    // 2. The next background call fails fast, opens no browser and asks Dex nothing.
    let mark = lab.proxy.mark();
    let mut cmd = command(&lab, "get-token", &[]);
    cmd.env("KUBERNETES_EXEC_INFO", exec_info(false));
    let started = Instant::now();
    let out = run(&mut cmd);
    let took = started.elapsed();
    out.assert_failure();
    // Fast means without a login: no browser and no request to Dex (asserted below). The time
    // bound is only against waiting out the login timeout, with room for a loaded machine.
    assert!(took < Duration::from_secs(15), "fails fast: {took:?}");
    let line = out.assert_one_error_line();
    let (secs, hint) = line
        .strip_prefix("koidc: a login failed or was abandoned ")
        .and_then(|r| {
            r.strip_suffix("` to log in (non-interactive calls do not open the browser again for 60s)")
        })
        .and_then(|r| r.split_once("s ago; run `"))
        .unwrap_or_else(|| panic!("unexpected message: {line:?}"));
    assert!(secs.parse::<u64>().is_ok_and(|s| s < 30), "{line:?}");
    // The hint carries the options kubectl ran get-token with: `koidc login` alone would not
    // know the issuer.
    let get_token_options = lab.args("get-token")[1..].join(" ");
    assert_eq!(hint, format!("koidc login {get_token_options}"), "{line:?}");
    assert_eq!(lab.browser.launches(), 0, "no browser during the cool-down");
    assert_eq!(
        lab.proxy.since(mark),
        [],
        "no request to Dex during the cool-down"
    );

    // 3. The hint, run as the user copies it into a shell, ignores the cool-down, logs in and
    // clears it; background calls work again.
    let hint = hint.replacen("koidc", koidc_bin(), 1);
    let login = run(clean_command("sh", &lab.home)
        .arg("-c")
        .arg(&hint)
        .envs(lab.run_env()));
    login.assert_success();
    assert_eq!(lab.browser.launches(), 1);
    assert_eq!(markers(&lab), Vec::<PathBuf>::new(), "a login clears the marker");
    let mut cmd = command(&lab, "get-token", &[]);
    cmd.env("KUBERNETES_EXEC_INFO", exec_info(false));
    lab.assert_ok_get_token(&run(&mut cmd));
}

#[test]
fn interactive_get_token_ignores_the_cooldown_and_clears_it() {
    let lab = Lab::start(LabOptions::default());
    abandoned_noninteractive_login(&lab);
    assert_eq!(markers(&lab).len(), 1);

    let mut cmd = command(&lab, "get-token", &[]);
    cmd.env("KUBERNETES_EXEC_INFO", exec_info(true));
    lab.assert_ok_get_token(&run(&mut cmd));
    assert_eq!(lab.browser.launches(), 1, "an interactive call logs in");
    assert_eq!(markers(&lab), Vec::<PathBuf>::new());
}
