//! Keyboard mode of the authorization code grant: when the provider's redirect cannot reach
//! koidc's loopback listener (a browser on another machine), the user pastes the address the
//! browser was sent to — or, for providers that show it, the bare code — and koidc takes the
//! authorization code from it.
//!
//! A pasted URL (or query string) must carry the login's `state` (compared in constant time) and,
//! when present or required, the right `iss` (RFC 9207); an `error` in it ends the login. A bare
//! code carries no state to check; PKCE still binds it to this login, so it is accepted, except
//! when the provider promises `iss` in every response (then the whole URL is needed).

use secrecy::SecretString;
use subtle::ConstantTimeEq;

use super::AuthRequest;
use super::http::one_line;

/// Longest line koidc accepts as a paste.
pub const MAX_PASTE_LEN: usize = 16 * 1024;

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
        let input = pasted
            .trim()
            .trim_matches(|c| c == '"' || c == '\'' || c == '<' || c == '>')
            .trim();
        if input.is_empty() || input.len() > MAX_PASTE_LEN {
            return Err(PasteError::Unreadable);
        }
        let query = if let Ok(url) = url::Url::parse(input)
            && matches!(url.scheme(), "http" | "https")
        {
            url.query().unwrap_or("").to_owned()
        } else if input.contains('=') {
            // A query, or an address pasted without its scheme (`127.0.0.1:8000/callback?...`).
            let query = input.split_once('?').map_or(input, |(_, q)| q);
            query.split('#').next().unwrap_or_default().to_owned()
        } else if input.chars().all(|c| c.is_ascii_graphic()) && !input.contains("://") {
            if self.iss_required {
                return Err(PasteError::BareCodeNeedsIssuer);
            }
            return Ok(SecretString::from(input.to_owned()));
        } else {
            return Err(PasteError::Unreadable);
        };
        self.code_from_query(&query)
    }

    fn code_from_query(&self, query: &str) -> Result<SecretString, PasteError> {
        let (mut state, mut code, mut error, mut description, mut iss) = (None, None, None, None, None);
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match &*k {
                "state" => &mut state,
                "code" => &mut code,
                "error" => &mut error,
                "error_description" => &mut description,
                "iss" => &mut iss,
                _ => continue,
            };
            if slot.is_some() {
                // A repeated parameter is ambiguous: refuse rather than guess.
                return Err(PasteError::Unreadable);
            }
            *slot = Some(v.into_owned());
        }
        let state_ok = state
            .as_deref()
            .is_some_and(|s| bool::from(s.as_bytes().ct_eq(self.state.as_bytes())));
        if !state_ok {
            return Err(if code.is_none() && error.is_none() {
                PasteError::NoCode
            } else {
                PasteError::WrongState
            });
        }
        match iss.as_deref() {
            Some(got) if got != self.issuer => {
                return Err(PasteError::WrongIssuer {
                    expected: self.issuer.clone(),
                    got: one_line(got, 200),
                });
            }
            None if self.iss_required => {
                return Err(PasteError::WrongIssuer {
                    expected: self.issuer.clone(),
                    got: "no iss".into(),
                });
            }
            _ => {}
        }
        if let Some(error) = error {
            return Err(PasteError::Refused {
                error: one_line(&error, 64),
                description: description
                    .map(|d| one_line(d.trim(), 200))
                    .filter(|d| !d.is_empty()),
            });
        }
        match code {
            Some(code) if !code.is_empty() => Ok(SecretString::from(code)),
            _ => Err(PasteError::NoCode),
        }
    }
}
