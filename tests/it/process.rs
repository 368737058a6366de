//! What koidc's own start-up (its C `main`, `src/main.rs`) promises about the process, and what
//! it hands to the processes it starts: standard descriptors 0-2 open (closed ones reopened on
//! /dev/null, so no file koidc opens can become its stdout or stderr), SIGPIPE ignored (a closed
//! pipe is a reported write error, not a silent death), and no secret in a child's arguments
//! (`--client-secret`, itself an argument, is deprecated for the variable or a file).

use std::os::fd::FromRawFd as _;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::logout::basic;
use crate::stub_idp::{CLIENT_ID, CURL_BROWSER, Fault, StubClient, StubIdp, StubOptions};
use crate::support::{RUN_TIMEOUT, clean_command, koidc_bin, parse_exec_credential, run};

/// Where `/proc/PID/fd/FD` points, if the descriptor is open.
fn fd_target(pid: u32, fd: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .ok()
        .map(|p| p.display().to_string())
}

#[test]
fn closed_standard_descriptors_are_reopened_on_dev_null() {
    let idp = StubIdp::start(Fault::Good);
    let client = StubClient::new();
    // A login that waits (nobody opens the URL), with descriptors 0, 1 and 2 closed.
    let mut cmd = client.command("get-token", &idp, &["--no-browser", "--timeout", "60"]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: close() is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            for fd in 0..=2 {
                libc::close(fd);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("start koidc");
    let pid = child.id();
    // Wait until it listens for the callback: it has opened its files and sockets by then.
    let deadline = Instant::now() + RUN_TIMEOUT;
    let listening = loop {
        let fds: Vec<String> = (3..64).filter_map(|fd| fd_target(pid, fd)).collect();
        if fds.iter().any(|t| t.starts_with("socket:")) {
            break fds;
        }
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            panic!("koidc never listened for the callback (exit {:?})", child.wait());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let std_fds: Vec<Option<String>> = (0..=2).map(|fd| fd_target(pid, fd)).collect();
    let _ = child.kill();
    let _ = child.wait();
    let null = Some("/dev/null".to_owned());
    assert_eq!(
        std_fds,
        [null.clone(), null.clone(), null],
        "descriptors 0-2 (koidc's other descriptors: {listening:?})"
    );
}

/// A pipe whose reading end is already closed.
fn broken_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe() fills the two descriptors; the reading end is closed at once and the writing
    // end is owned by the returned Stdio.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0, "pipe()");
        libc::close(fds[0]);
        Stdio::from(std::os::fd::OwnedFd::from_raw_fd(fds[1]))
    }
}

#[test]
fn a_closed_stdout_pipe_is_a_reported_write_error_not_a_silent_death() {
    let home = tempfile::tempdir().expect("temp dir");
    // Commands that print more than a pipe holds, and what clap prints itself (--help,
    // --version), which exited 0 on a failed write.
    for args in [
        &["completions", "bash"][..],
        &["man"],
        &["--help"],
        &["--version"],
        &["version"],
    ] {
        let mut cmd = clean_command(koidc_bin(), home.path());
        cmd.args(args).stdout(broken_pipe());
        let out = cmd.output().expect("run koidc");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), None, "koidc {args:?} was killed: {stderr}");
        assert_eq!(out.status.code(), Some(1), "koidc {args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("koidc: ") && lines[0].contains("Broken pipe"),
            "koidc {args:?}: one error line about the write: {stderr:?}"
        );
    }
}

/// A browser command that records its arguments and environment in `dir`, then opens the URL
/// with curl (so the login completes).
fn recording_browser(dir: &Path) -> String {
    format!(
        "sh -c 'echo \"$0\" \"$@\" > {d}/argv; cat /proc/$$/environ > {d}/environ; \
         exec {CURL_BROWSER} \"$0\"'",
        d = dir.display()
    )
}

#[test]
fn the_client_secret_never_reaches_a_childs_arguments_or_environment() {
    const SECRET: &str = "argv-test-client-secret-5b1e";
    let idp = StubIdp::start_with(
        Fault::Good,
        StubOptions {
            revocation: true,
            ..StubOptions::default()
        },
    );
    let client = StubClient::new();
    let dir = client.tmp.path();
    // From the variable, and from a private file.
    let file = dir.join("client-secret");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    for from_file in [false, true] {
        let cache = dir.join(format!("cache-{from_file}"));
        let command = |sub: &str| {
            let mut cmd = clean_command(koidc_bin(), &client.home());
            cmd.args([sub, "--issuer", idp.issuer(), "--client-id", CLIENT_ID])
                .args(["--cache", "file", "--cache-dir"])
                .arg(&cache);
            if from_file {
                cmd.arg("--client-secret-file").arg(&file);
            } else {
                cmd.env("KOIDC_CLIENT_SECRET", SECRET);
            }
            cmd
        };
        let mut login = command("get-token");
        login.args(["--timeout", "20", "--browser-command", &recording_browser(dir)]);
        let out = run(&mut login);
        out.assert_success();
        parse_exec_credential(&out);
        assert!(!out.stderr.contains("deprecated"), "{}", out.stderr);
        let argv = std::fs::read(dir.join("argv")).expect("the browser ran");
        let environ = std::fs::read(dir.join("environ")).expect("the browser ran");
        for (what, bytes) in [("arguments", &argv), ("environment", &environ)] {
            let text = String::from_utf8_lossy(bytes);
            assert!(
                !text.contains(SECRET),
                "the client secret in the browser's {what}"
            );
            assert!(
                !text.contains("code_verifier"),
                "the PKCE verifier in the browser's {what}"
            );
        }
        // The secret is the one koidc uses: logout revokes with it.
        run(&mut command("logout")).assert_success();
        assert_eq!(
            idp.revocation_authorizations().last(),
            Some(&Some(basic(CLIENT_ID, SECRET))),
            "from_file {from_file}"
        );
    }
}

#[test]
fn client_secret_option_works_but_warns_that_it_is_deprecated() {
    let idp = StubIdp::start(Fault::Good);
    let client = StubClient::new();
    const WARNING: &str = "koidc: warning: --client-secret is deprecated: other local users can read a \
                           command's arguments; set KOIDC_CLIENT_SECRET (in a kubeconfig: exec.env) or \
                           use --client-secret-file FILE instead";
    let out = run(&mut client.command("get-token", &idp, &["--client-secret", "s3cret-on-argv"]));
    out.assert_success();
    let lines = out.stderr_lines();
    assert_eq!(lines[0], WARNING, "{}", out.stderr);
    assert_eq!(
        lines.iter().filter(|l| l.contains("deprecated")).count(),
        1,
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("s3cret-on-argv"));
    // Cached now: the warning comes with every call that passes the option, the warm one too
    // (and is all it prints).
    let out = run(&mut client.command("get-token", &idp, &["--client-secret", "s3cret-on-argv"]));
    out.assert_success();
    assert_eq!(out.stderr_lines(), [WARNING], "{}", out.stderr);
}

#[test]
fn client_secret_file_readable_by_others_or_given_twice_is_refused() {
    let idp = StubIdp::start(Fault::Good);
    let client = StubClient::new();
    let file = client.tmp.path().join("client-secret");
    std::fs::write(&file, "s3cret\n").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let path = file.display().to_string();
    let out = run(&mut client.command("get-token", &idp, &["--client-secret-file", &path]));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.assert_one_error_line(),
        format!(
            "koidc: cannot use --client-secret-file {path}: its mode 644 lets other users read it; \
             chmod 600 it (in a Kubernetes Secret volume: defaultMode: 0400)"
        )
    );
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut cmd = client.command("get-token", &idp, &["--client-secret-file", &path]);
    cmd.env("KOIDC_CLIENT_SECRET", "other");
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.assert_one_error_line().contains("not both"), "{}", out.stderr);
    let out = run(&mut client.command(
        "get-token",
        &idp,
        &["--client-secret-file", "/nonexistent/secret"],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.assert_one_error_line()
            .starts_with("koidc: cannot use --client-secret-file /nonexistent/secret: "),
        "{}",
        out.stderr
    );
    assert_eq!(idp.hits("token"), 0, "no login with a refused secret");
}

#[test]
fn client_secret_file_that_is_a_fifo_is_refused_instead_of_hanging_on_open() {
    let idp = StubIdp::start(Fault::Good);
    let client = StubClient::new();
    let fifo = client.tmp.path().join("secret-fifo");
    run(clean_command("mkfifo", client.tmp.path()).arg(&fifo)).assert_success();
    let path = fifo.display().to_string();
    let out = run(&mut client.command("get-token", &idp, &["--client-secret-file", &path]));
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.assert_one_error_line(),
        format!("koidc: cannot use --client-secret-file {path}: it is not a regular file")
    );
    assert_eq!(idp.hits("token"), 0, "no login with a refused secret");
}

#[test]
fn leak_check_finds_jwts_not_base64url_that_happens_to_hold_eyj() {
    use crate::support::find_jwt;
    // A login URL whose random state holds "eyJ" (about one login in 2,000): not a JWT.
    let url = "koidc: opened a browser to log in; if it did not open, open this URL: \
               http://127.0.0.1:5556/dex/auth?client_id=koidc&state=Qm9eyJx-7_aZ0pLk3w&nonce=eyJab";
    assert_eq!(find_jwt(url), None);
    for jwt in [
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0",
    ] {
        let line = format!("koidc: debug: token {jwt} here");
        assert_eq!(find_jwt(&line), Some(20), "{jwt}");
        assert_eq!(
            find_jwt(&format!("{url}\n{line}")),
            Some(url.len() + 1 + 20),
            "{jwt}"
        );
    }
}
