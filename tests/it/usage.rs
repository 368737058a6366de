//! Usage errors, as the README promises them: one line `koidc: …` on stderr saying what is wrong
//! and where the options are, exit status 2; `--help` and `--version` print on stdout with exit 0;
//! `koidc` alone prints a short usage. kubelogin's option names get koidc's equivalent, and a
//! value given to a secret-bearing option is never echoed.

use crate::support::{Output, clean_command, koidc_bin, run};

/// `koidc ARGS` in a clean environment.
fn koidc(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    run(clean_command(koidc_bin(), home.path()).args(args))
}

/// The one error line of a usage error (exit status 2, nothing on stdout).
#[track_caller]
fn usage_error(args: &[&str]) -> String {
    let out = koidc(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    out.assert_one_error_line()
}

#[test]
fn usage_errors_are_one_koidc_line_with_exit_2() {
    for (args, expected) in [
        (
            &["login", "--bogus"][..],
            "koidc: unexpected argument '--bogus' found; try `koidc login --help`",
        ),
        (
            &["login", "--isuer", "https://x"],
            "koidc: unexpected argument '--isuer' found; tip: a similar argument exists: '--issuer'; \
             try `koidc login --help`",
        ),
        (
            &["login", "--timeout", "abc"],
            "koidc: invalid value 'abc' for '--timeout <SECS>': invalid digit found in string; \
             try `koidc login --help`",
        ),
        (
            &["whoami", "-o", "yaml"],
            "koidc: invalid value 'yaml' for '--output <FORMAT>' [possible values: text, json]; \
             try `koidc whoami --help`",
        ),
        (
            &["get-token", "--issuer=https://a", "--issuer=https://b"],
            "koidc: the argument '--issuer <URL>' cannot be used multiple times; try `koidc get-token --help`",
        ),
        (
            &["completions"],
            "koidc: the following required arguments were not provided: <SHELL>; try `koidc completions --help`",
        ),
        (
            &["logni"],
            "koidc: unrecognized subcommand 'logni'; tip: some similar subcommands exist: 'logout', 'login'; \
             try `koidc --help`",
        ),
    ] {
        assert_eq!(usage_error(args), expected, "{args:?}");
    }
}

#[test]
fn help_and_version_print_on_stdout_with_exit_0() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["login", "--help"],
        &["help", "get-token"],
        &["--version"],
        &["get-token", "--version"],
    ] {
        let out = koidc(args);
        out.assert_success();
        assert!(out.stderr.is_empty(), "{args:?}: {}", out.stderr);
        assert!(
            out.stdout.contains("Usage: koidc")
                || (out.stdout.starts_with("koidc") && out.stdout.contains(env!("CARGO_PKG_VERSION"))),
            "{args:?}: {}",
            out.stdout
        );
    }
}

#[test]
fn bare_koidc_prints_a_short_usage_with_exit_2() {
    let out = koidc(&[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    let lines = out.stderr_lines();
    assert!(lines.len() <= 4, "not short: {lines:?}");
    assert_eq!(
        lines[0],
        "koidc: no command given; usage: koidc <COMMAND> [OPTIONS]"
    );
    for command in [
        "get-token",
        "login",
        "logout",
        "whoami",
        "bind-group",
        "setup",
        "webhook",
        "doctor",
    ] {
        assert!(out.stderr.contains(command), "{command} missing: {}", out.stderr);
    }
    assert!(out.stderr.contains("koidc --help"), "{}", out.stderr);
}

#[test]
fn kubelogin_option_names_get_the_koidc_equivalent() {
    let line = usage_error(&[
        "get-token",
        "--oidc-issuer-url=https://dex.example.com",
        "--oidc-client-id",
        "kubernetes",
        "--oidc-extra-scope=groups",
        "--skip-open-browser",
        "--listen-address=127.0.0.1:8000",
        "--token-cache-dir=/tmp/c",
        "--grant-type=device-code",
        "--authentication-timeout-sec=60",
    ]);
    assert_eq!(
        line,
        "koidc: kubelogin's options are not koidc's: --oidc-issuer-url is --issuer in koidc; \
         --oidc-client-id is --client-id in koidc; --oidc-extra-scope is --scope in koidc; \
         --skip-open-browser is --no-browser in koidc; --listen-address is --listen in koidc; \
         --token-cache-dir is --cache-dir in koidc; --grant-type is --grant in koidc (authcode-keyboard is \
         --grant authcode --paste); --authentication-timeout-sec is --timeout in koidc; \
         try `koidc get-token --help`"
    );
    // Where koidc has no such option, clap's own message stays.
    assert_eq!(
        usage_error(&["bind-group", "--oidc-issuer-url=https://x", "g", "view"]),
        "koidc: unexpected argument '--oidc-issuer-url' found; tip: to pass '--oidc-issuer-url' as a value, \
         use '-- --oidc-issuer-url'; try `koidc bind-group --help`"
    );
}

#[test]
fn kubelogin_insecure_skip_tls_verify_is_refused_with_the_reason() {
    assert_eq!(
        usage_error(&["login", "--issuer=https://x", "--insecure-skip-tls-verify"]),
        "koidc: kubelogin's options are not koidc's: --insecure-skip-tls-verify is refused: koidc always \
         verifies the identity provider's TLS certificate; trust a private CA with --certificate-authority \
         FILE; try `koidc login --help`"
    );
}

#[test]
fn usage_errors_never_echo_a_client_secret() {
    let secret = "s3cret-Value-9";
    let dashed = format!("--{secret}");
    let short = format!("-{secret}");
    let inline = format!("--oidc-client-secret={secret}");
    for args in [
        vec!["get-token", inline.as_str()],
        vec!["get-token", "--oidc-client-secret", secret],
        vec!["login", "--password", secret],
        vec!["get-token", "--client-secret", dashed.as_str()],
        vec!["get-token", "--client-secret", short.as_str()],
    ] {
        let line = usage_error(&args);
        assert!(
            !line.contains("s3cret") && !line.contains("'-s'"),
            "{args:?} echoed the secret: {line}"
        );
    }
    assert_eq!(
        usage_error(&["get-token", "--client-secret", &dashed]),
        "koidc: the value of --client-secret starts with '-', so it was taken for an option (not shown); \
         write --client-secret=VALUE, or better set KOIDC_CLIENT_SECRET; try `koidc get-token --help`"
    );
    assert_eq!(
        usage_error(&["get-token", "--oidc-client-secret", secret]),
        "koidc: kubelogin's options are not koidc's: --oidc-client-secret: koidc reads the client secret from \
         the KOIDC_CLIENT_SECRET variable (the kubeconfig's exec.env); try `koidc get-token --help`"
    );
}

#[test]
fn kubelogin_verbosity_level_says_koidcs_v_takes_no_number() {
    for args in [
        &["login", "--issuer=https://x", "-v", "1"][..],
        &["login", "--issuer=https://x", "-v1"],
        &["get-token", "--issuer=https://x", "-v", "5"],
    ] {
        let line = usage_error(args);
        assert!(
            line.starts_with("koidc: ")
                && line.contains("-v takes no number")
                && line.contains("-vv")
                && line.ends_with(&format!("try `koidc {} --help`", args[0])),
            "{args:?}: {line}"
        );
    }
}

#[test]
fn kubelogin_password_grant_type_is_refused_with_the_reason() {
    for args in [
        &["login", "--issuer=https://x", "--grant-type", "password"][..],
        &["login", "--issuer=https://x", "--grant-type=password"],
    ] {
        assert_eq!(
            usage_error(args),
            "koidc: kubelogin's options are not koidc's: --grant-type password is refused: koidc does not use \
             the password grant, which would hand it your password; log in in the browser, or with --grant \
             device-code; try `koidc login --help`",
            "{args:?}"
        );
    }
}
