//! The user side: everything `get-token` and `login` need to turn an identity into a credential
//! for kubectl.
//!
//! The modules follow the data flow of one call: [`pipeline`] is the use case (cache → lock →
//! re-read → cool-down → renew → login → save), written once for every credential source;
//! [`sources`] are the sources (OpenID Connect, GitHub, pipelines) and the place that picks one,
//! and they drive the adapters — [`oidc`] (the identity provider's protocol), [`github`]
//! (GitHub's OAuth and API, for `--provider github`), [`workload`] (a CI job's own token),
//! [`loopback`] (the redirect listener), [`browser`], [`cache`] (token store and cross-process
//! lock) — and [`credential`] writes the `ExecCredential` that kubectl reads. [`token`] reads an
//! ID token's claims offline, for the warm path. Protocol rules shared by the OIDC and GitHub
//! adapters live once: [`callback`] checks an authorization response (redirect or paste),
//! [`device_poll`] polls a token endpoint through a device login (RFC 8628).

pub mod browser;
pub mod cache;
pub mod callback;
pub mod credential;
pub mod device_poll;
pub mod github;
pub mod loopback;
pub mod oidc;
pub mod pipeline;
pub mod sources;
pub mod token;
pub mod workload;
