//! Where output goes: stdout carries results only (the ExecCredential, `whoami`), everything
//! meant for a person — prompts, progress, warnings, verbose logs — goes to stderr.
//!
//! kubectl parses the plugin's stdout as JSON, so one stray line there breaks every command; all
//! output therefore passes through [`Printer`]. Nothing printed here may contain a secret: the
//! callers pass messages, never tokens.
//!
//! Every line for stderr goes through [`stderr_line`], which ignores write errors: a closed or
//! full stderr (kubectl gone, `2>&-`, a dead pipe) must not end koidc, whereas `eprintln!`
//! panics on a failed write and a second failure in the panic message aborts the process
//! (SIGABRT) with the cache lock held and the credential unprinted. `eprintln!` is denied by
//! clippy (`print_stderr`) for that reason.

use std::io::Write as _;

/// Writes `line` and a newline to stderr in one write, ignoring any error (see the module doc).
pub fn stderr_line(line: std::fmt::Arguments<'_>) {
    let mut text = line.to_string();
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Writes results to stdout and messages to stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct Printer {
    verbosity: u8,
}

impl Printer {
    /// A printer that shows debug lines when `verbosity > 0`.
    pub fn new(verbosity: u8) -> Self {
        Self { verbosity }
    }

    /// Writes a result on stdout (with a trailing newline) and flushes it.
    pub fn result(&self, text: &str) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        if !text.ends_with('\n') {
            out.write_all(b"\n")?;
        }
        out.flush()
    }

    /// A message for the person at the terminal (e.g. "open this URL").
    pub fn info(&self, msg: impl std::fmt::Display) {
        stderr_line(format_args!("koidc: {msg}"));
    }

    /// A warning: something is off, but koidc carries on.
    pub fn warn(&self, msg: impl std::fmt::Display) {
        stderr_line(format_args!("koidc: warning: {msg}"));
    }

    /// A verbose log line, shown with `-v`.
    pub fn debug(&self, msg: impl std::fmt::Display) {
        if self.verbosity > 0 {
            stderr_line(format_args!("koidc: debug: {msg}"));
        }
    }

    /// True with `-v`.
    pub fn is_verbose(&self) -> bool {
        self.verbosity > 0
    }
}
