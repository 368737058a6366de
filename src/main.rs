//! The `koidc` binary: parse flags, run one command, print any error once.
//!
//! Errors are printed here and nowhere else, as one line `koidc: <what went wrong>`; exit code 1
//! for failures, 2 for usage errors (clap's convention, worded by `cli::usage`).
//!
//! kubectl starts koidc for every command it runs, so the program's start-up is part of every
//! `kubectl get`. The binary therefore brings its own C `main` (`#![no_main]`) instead of Rust's
//! start-up code, and does the part of that code it needs itself ([`init_process`]). What it
//! leaves out is the main thread's stack-overflow guard, which finds the stack's bounds by
//! reading and parsing `/proc/self/maps` on every start: about a tenth of a cached `get-token`.
//! A stack overflow still ends the process (with SIGSEGV instead of a message). The other half
//! of a fast start is the release build's static linking (`.cargo/static.toml`).
//!
//! Start-up also makes the process non-dumpable with no core limit (it holds tokens), and every
//! stderr line goes through [`koidc::stderr_line`], which never panics.

#![no_main]
#![deny(clippy::print_stderr)]

use std::ffi::{c_char, c_int};
use std::io::Write as _;

use koidc::{Cli, stderr_line};

/// The C entry point. Rust's standard library reads the arguments and environment itself
/// (glibc hands them to its initializers), so `argc` and `argv` are not needed here.
#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    init_process();
    let code = run();
    // Rust's start-up code flushes stdout at exit; with our own `main`, this does.
    let _ = std::io::stdout().flush();
    code
}

/// What Rust's own start-up does that koidc relies on: standard descriptors 0, 1 and 2 open (so
/// a file koidc opens can never become its stdout or stderr), and SIGPIPE ignored (a closed
/// pipe is a write error, reported like any other, not a silent death). And no core dumps
/// ([`disable_core_dumps`]).
#[cfg(unix)]
fn init_process() {
    for fd in 0..=2 {
        // SAFETY: fcntl(F_GETFD) only queries the descriptor; open() and signal() take valid
        // arguments (a NUL-terminated path, a signal number and SIG_IGN).
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) == -1
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
            {
                let flags = if fd == 0 { libc::O_RDONLY } else { libc::O_WRONLY };
                if libc::open(c"/dev/null".as_ptr(), flags) != fd {
                    libc::abort();
                }
            }
        }
    }
    // SAFETY: see above.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    disable_core_dumps();
}

/// koidc holds ID tokens, refresh tokens, client secrets and the cache key in memory: a crash
/// must not write them into a core file (or hand them to a crash reporter through
/// `core_pattern`), and other processes of the same user must not read its memory through
/// ptrace or `/proc/PID/mem`. Every command gets this, `get-token`'s warm path too: two system
/// calls. Children do not keep the non-dumpable flag (execve resets it); they inherit the zero
/// core limit.
#[cfg(unix)]
fn disable_core_dumps() {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads a valid rlimit; prctl(PR_SET_DUMPABLE, 0) takes plain integers.
    // Failure leaves the defaults, which is no reason not to run.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &none);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// Elsewhere Rust's start-up does nothing koidc relies on.
#[cfg(not(unix))]
fn init_process() {}

/// Runs the command line; the exit code: 0 success, 1 failure, 2 usage error.
fn run() -> c_int {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        stderr_line(format_args!(
            "koidc: internal error: {}; please report this",
            msg.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
    }));
    let cli = match Cli::try_parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(err) => {
            let args: Vec<_> = std::env::args_os().collect();
            return match koidc::usage_error_line(&err, &args) {
                Some(line) => {
                    stderr_line(format_args!("koidc: {line}"));
                    2
                }
                // --help and --version: clap prints them on stdout; a failed write fails, as
                // every other command's does.
                None => match err.print().and_then(|()| std::io::stdout().flush()) {
                    Ok(()) => 0,
                    Err(e) => {
                        stderr_line(format_args!("koidc: cannot write to stdout: {e}"));
                        1
                    }
                },
            };
        }
    };
    match koidc::run(cli) {
        Ok(()) => 0,
        Err(err) => {
            stderr_line(format_args!("koidc: {}", koidc::error_line(&err)));
            1
        }
    }
}
