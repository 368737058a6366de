//! The identity provider: discovery, authorization code + PKCE, refresh, ID token verification,
//! revocation.
//!
//! Everything here needs the network, so none of it runs on the warm path: [`Provider::discover`]
//! builds the HTTP client and fetches the discovery document and the JWKS; the other methods
//! use them. Discovery types, PKCE, state/nonce generation and ID token verification come from the
//! `openidconnect` crate (see [`verify`]); the token and revocation requests are plain form
//! POSTs made here, so that status codes, body limits and secret-free error messages stay under
//! koidc's control (and because `oauth2`'s revocation refuses `http` endpoints, which the loopback
//! test IdPs use). Discovery refuses every endpoint that is not https (plain http only on loopback
//! addresses behind an http loopback issuer), before anything is sent to it.
//!
//! INTERFACE: [`OidcConfig`], [`Provider::discover`], [`Provider::authorization_request`],
//! [`Provider::preflight_authorization`] (see [`probe`]), [`Provider::exchange_code`],
//! [`Provider::refresh`], [`Provider::revoke`]; the device grant
//! ([`Provider::start_device_authorization`], [`Provider::wait_for_device_token`], see
//! [`device`]); keyboard mode ([`AuthRequest::code_from_pasted`], see [`paste`]). Transport
//! errors say in the user's terms when an https server answered plain HTTP or its certificate
//! needs `--certificate-authority`.
//!
//! The files: [`client`] (configuration, discovery, [`Provider`] and its requests), [`error`]
//! ([`OidcError`]), [`page`] (the text of an IdP's HTML error page), [`probe`] (the check before
//! a login, and the doctor's), [`device`], [`paste`], [`verify`] and the form/transport helpers
//! of `http`.

mod client;
pub mod device;
mod error;
mod http;
pub mod machine;
mod page;
pub mod paste;
pub mod probe;
pub mod request;
mod verify;

#[cfg(test)]
mod tests;

pub use self::client::{AuthRequest, OidcConfig, Provider};
pub(crate) use self::client::{DISCOVERY_SUFFIX, max_age_deadline};
pub use self::error::OidcError;
/// The HTTP client of an identity provider's requests, for the adapters that talk to a CI
/// system's token service with the same CAs and timeout.
pub(crate) use self::http::build_client as http_client;
pub use self::paste::PasteError;
pub(crate) use self::verify::AccessAudience;
/// Named beside [`OidcError`] by the tests of the error printer.
#[cfg(test)]
pub use self::verify::Rejection;
