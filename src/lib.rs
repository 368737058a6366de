//! koidc: log in to Kubernetes with an OpenID Connect identity provider.
//!
//! The crate shows its two audiences. [`login`] is the user side, the data flow of one `kubectl`
//! call: the pipeline (cache → lock → refresh → login → save) and the adapters it drives (the
//! identity provider, GitHub, the loopback listener, the browser, the cache), ending in the
//! `ExecCredential` kubectl reads. [`cluster`] is the admin side: the apiserver and kubeconfig
//! settings (`setup`), RBAC for IdP groups (`bind-group`), `doctor` and the GitHub `webhook`.
//! [`commands`] is a thin layer of subcommands over both. Options: [`cli`] describes the flags
//! (each get-token option defined once, in `cli::options`), [`profile`] reads the config file,
//! and [`config`] applies precedence (flag > variable > profile > default) and validates the
//! result into the types the two sides take. Shared by both sides: [`provider`] (what koidc knows
//! about particular identity providers), [`kubeconfig`] (the file's typed model), [`http`] (one
//! client, one send, one failure type, one CA loader), [`text`] (the rules that make quoted text
//! safe to show), [`printer`] (every line a person reads) and [`clock`].
//!
//! Every module is private to the crate, so the compiler reports dead code; `main.rs` calls the
//! few items re-exported below, and the fuzz targets reach the parsers through [`fuzz`].

// A failed write to stderr must not end koidc: stderr goes through `printer::stderr_line`.
#![deny(clippy::print_stderr)]

pub(crate) mod cli;
pub(crate) mod clock;
pub(crate) mod cluster;
pub(crate) mod commands;
pub(crate) mod config;
pub(crate) mod files;
#[doc(hidden)]
pub mod fuzz;
mod http;
pub(crate) mod kubeconfig;
pub(crate) mod login;
pub(crate) mod printer;
pub(crate) mod profile;
pub(crate) mod provider;
pub(crate) mod text;

// What the binary (`main.rs`) calls; everything else is private to the crate.
pub use cli::Cli;
pub use cli::usage::error_line as usage_error_line;
pub use commands::run;
pub use printer::{error_line, stderr_line};

/// A single-threaded async runtime for the network calls of a command or use case, built only
/// when they are needed (the warm path of `get-token` starts none).
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

#[cfg(test)]
mod layout_tests;
