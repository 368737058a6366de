//! The admin side: what a cluster needs to trust the identity provider, and to check it does.
//!
//! [`setup`] renders the apiserver's `AuthenticationConfiguration` and the users' kubeconfig,
//! [`rbac`] the bindings that give IdP groups their rights (`bind-group`), [`doctor`] finds the
//! broken link between kubeconfig, koidc, the provider and the apiserver, and [`webhook`] is the
//! TokenReview authenticator that lets an apiserver accept GitHub tokens.

pub mod doctor;
pub mod rbac;
pub mod setup;
pub mod webhook;
