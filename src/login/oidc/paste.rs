//! Keyboard mode of the authorization code grant: when the provider's redirect cannot reach
//! koidc's loopback listener (a browser on another machine), the user pastes the address the
//! browser was sent to — or, for providers that show it, the bare code — and koidc takes the
//! authorization code from it.
//!
//! The line is read and checked by [`crate::login::callback`], with the rules of the loopback
//! redirect: a pasted URL (or query string) must carry the login's `state` and, when present or
//! required, the right `iss` (RFC 9207); an `error` in it ends the login. A bare code carries no
//! state to check; PKCE still binds it to this login, so it is accepted, except when the provider
//! promises `iss` in every response (then the whole URL is needed). This module says what each
//! refusal means to the person pasting ([`PasteError`]).

use secrecy::SecretString;

use super::client::AuthRequest;
use crate::login::callback::{self, CallbackError};

pub use crate::login::callback::MAX_PASTE_LEN;

/// Why a pasted line gave no authorization code. Never contains the pasted text (it may hold a
/// code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasteError {
    /// Neither a URL with a query, nor a query, nor a plausible code.
    #[error(
        "that is neither the address your browser was sent to nor an authorization code; paste the whole address from the browser's address bar"
    )]
    Unreadable,
    /// The pasted URL has no `code` (and no `error`).
    #[error(
        "that address carries no authorization code; paste the address your browser was sent to after logging in"
    )]
    NoCode,
    /// The `state` is missing or belongs to another login.
    #[error(
        "that address belongs to another login (its state does not match); paste the address from this login"
    )]
    WrongState,
    /// The `iss` names another issuer, or is missing although the provider promises it.
    #[error(
        "that address does not come from the expected issuer {expected} ({got}); paste the address from this login"
    )]
    WrongIssuer {
        /// The configured issuer.
        expected: String,
        /// What the paste carried (sanitised), or `no iss`.
        got: String,
    },
    /// A bare code, but the provider promises `iss`: the whole URL is needed to check it.
    #[error(
        "this identity provider names itself in the redirect; paste the whole address, not only the code"
    )]
    BareCodeNeedsIssuer,
    /// The provider answered the login with an OAuth error.
    #[error("the identity provider refused the login: {error}{}; run `koidc login` to try again", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// The OAuth `error` (sanitised).
        error: String,
        /// The `error_description` (sanitised).
        description: Option<String>,
    },
}

impl PasteError {
    /// True when the login is over (the provider refused it); other errors let the user paste
    /// again.
    pub fn is_final(&self) -> bool {
        matches!(self, PasteError::Refused { .. })
    }
}

impl AuthRequest {
    /// The authorization code in what the user pasted: the full redirected URL
    /// (`http://127.0.0.1:8000/callback?code=…&state=…`), its query (`code=…&state=…`), or a bare
    /// code. Surrounding blanks and quotes are ignored.
    pub fn code_from_pasted(&self, pasted: &str) -> Result<SecretString, PasteError> {
        callback::code_from_pasted(pasted, self.expected()).map_err(|err| match err {
            CallbackError::Malformed => PasteError::Unreadable,
            CallbackError::WrongState { answered: true } => PasteError::WrongState,
            CallbackError::WrongState { answered: false } | CallbackError::MissingCode => PasteError::NoCode,
            CallbackError::IssuerMismatch { expected, got } => PasteError::WrongIssuer { expected, got },
            CallbackError::MissingIssuer => PasteError::WrongIssuer {
                expected: self.issuer.clone(),
                got: "no iss".into(),
            },
            CallbackError::BareCodeNeedsIssuer => PasteError::BareCodeNeedsIssuer,
            CallbackError::Refused { error, description } => PasteError::Refused { error, description },
        })
    }
}
