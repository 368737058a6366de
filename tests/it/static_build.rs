//! The statically linked release build (`.cargo/static.toml`, what `./install.sh` and
//! `./tests/run.sh` build on Linux): it must look host names up with glibc's built-in `files` and
//! `dns` services only. A static glibc that follows /etc/nsswitch.conf loads modules such as
//! `libnss_resolve.so.2` from the system's glibc, which on another system is another glibc
//! version; koidc configures the lookup itself before its first HTTP client.
//!
//! Each test runs in a private mount namespace (`unshare --mount`, root) where
//! /etc/nsswitch.conf names modules before `files`, and watches the files opened with strace.
//! Compiled only in a static build: a dynamically linked koidc loads the system's modules
//! through the system's own glibc, as every program there does.

#![cfg(all(target_os = "linux", target_env = "gnu", target_feature = "crt-static"))]

use std::path::Path;

use crate::support::{clean_command, koidc_bin, run};

/// An nsswitch.conf that sends host lookups to two modules before the files.
const NSSWITCH: &str = "passwd: files\ngroup: files\nhosts: resolve mdns4_minimal files dns\n";

/// Runs `program args` under strace in a mount namespace with [`NSSWITCH`] as
/// /etc/nsswitch.conf; returns the process's output and the files it tried to open.
fn run_with_nsswitch(dir: &Path, program: &str, args: &[&str]) -> (crate::support::Output, String) {
    let conf = dir.join("nsswitch.conf");
    std::fs::write(&conf, NSSWITCH).unwrap();
    let log = dir.join(format!(
        "strace-{}.log",
        Path::new(program).file_name().unwrap().to_string_lossy()
    ));
    let script = r#"mount --bind "$1" /etc/nsswitch.conf || exit 97
log=$2; shift 2
exec strace -f -qq -e trace=openat -o "$log" "$@""#;
    let mut cmd = clean_command("unshare", dir);
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(&conf)
        .arg(&log)
        .arg(program)
        .args(args);
    let out = run(&mut cmd);
    assert_ne!(
        out.status.code(),
        Some(97),
        "cannot mount a private /etc/nsswitch.conf (this test needs root for `unshare --mount`): {}",
        out.stderr
    );
    let opened = std::fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("no strace log ({e}); is strace installed? stderr: {}", out.stderr));
    (out, opened)
}

#[test]
fn static_build_looks_up_host_names_without_nss_modules() {
    let dir = tempfile::tempdir().unwrap();

    // The set-up is real: a dynamically linked glibc program in the same namespace tries the
    // modules named before `files`.
    let (getent, opened) = run_with_nsswitch(dir.path(), "getent", &["hosts", "localhost"]);
    getent.assert_success();
    assert!(
        opened.contains("libnss_resolve.so.2"),
        "getent did not try the resolve module; the private nsswitch.conf is not in effect:\n{opened}"
    );

    // koidc looks up `localhost` for discovery (port 9: nothing listens, so it then fails).
    let (out, opened) = run_with_nsswitch(
        dir.path(),
        koidc_bin(),
        &[
            "get-token",
            "--issuer",
            "http://localhost:9/dex",
            "--client-id",
            "koidc",
            "--cache",
            "none",
            "--no-browser",
            "--timeout",
            "5",
        ],
    );
    let line = out.assert_failure().assert_one_error_line();
    assert!(line.contains("localhost:9"), "unexpected error: {line}");
    assert!(
        opened.contains("\"/etc/hosts\""),
        "koidc did not look the host name up in /etc/hosts:\n{opened}"
    );
    assert!(
        !opened.contains("libnss_"),
        "koidc tried to load a name-service module:\n{opened}"
    );
}
