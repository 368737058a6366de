//! The `koidc` binary: parse flags, run one command, print any error once.
//!
//! Errors are printed here and nowhere else, as one line `koidc: <what went wrong>`; exit code 1
//! for failures, 2 for usage errors (clap's convention).

use std::process::ExitCode;

use koidc::cli::Cli;

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        eprintln!("koidc: internal error: {}; please report this", one_line(&msg));
    }));
    let cli = match Cli::try_parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { 2 } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    match koidc::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("koidc: {}", one_line(&format!("{err:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Folds a message onto one line, so every error is exactly one line on stderr.
fn one_line(msg: &str) -> String {
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
}
