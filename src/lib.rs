//! koidc: log in to Kubernetes with an OpenID Connect identity provider.
//!
//! The crate reads like the data flow of one `kubectl` call: [`cli`] describes the flags,
//! [`config`] validates them into types, a command in [`commands`] runs a use case from [`auth`], and the use case
//! drives the adapters — [`oidc`] (the identity provider), [`loopback`] (the redirect
//! listener), [`browser`], [`cache`] (token store and cross-process lock), [`clock`] — and finally
//! [`credential`] writes the `ExecCredential` that kubectl reads. For the cluster admin, [`rbac`]
//! and [`setup`] generate the RBAC bindings and apiserver settings that trust the same issuer.
//! [`profile`] fills options the user did not give from a named profile of the config file.
//! [`github`] logs in to GitHub (which has no OpenID Connect for users) and [`webhook`] is the
//! TokenReview authenticator that lets the apiserver accept those GitHub tokens.

// A failed write to stderr must not end koidc: stderr goes through `printer::stderr_line`.
#![deny(clippy::print_stderr)]

pub mod auth;
pub mod browser;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod credential;
pub mod doctor;
pub mod github;
mod http;
pub mod loopback;
pub mod oidc;
pub mod printer;
pub mod profile;
pub mod provider;
pub mod rbac;
pub mod setup;
pub mod token;
pub mod webhook;

/// A single-threaded async runtime for the network calls of a command or use case, built only
/// when they are needed (the warm path of `get-token` starts none).
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
