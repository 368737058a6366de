//! The authorization response (RFC 6749 4.1.2), read and checked in one place for every way it
//! reaches koidc: the redirect to the [loopback listener](crate::login::loopback) (OpenID
//! Connect and GitHub's web flow) and the line a person pastes in keyboard mode
//! ([`crate::login::oidc::paste`]).
//!
//! Pure functions, no I/O: [`code_from_query`] takes the query of the redirect, [`code_from_pasted`]
//! a pasted line (the redirected address, its query, or a bare code), and both give the
//! authorization code or a [`CallbackError`]. One rule set applies:
//!
//! - the query is decoded strictly (`application/x-www-form-urlencoded`: a `%` not followed by two
//!   hex digits, or bytes that are not UTF-8, make it [`CallbackError::Malformed`]), and a
//!   repeated `state`, `code`, `error`, `error_description` or `iss` too (RFC 6749 3.1: no
//!   guessing which one counts);
//! - the `state` must be the login's, compared in constant time;
//! - `iss` (RFC 9207, against IdP mix-up): when an issuer is expected it must equal it byte for
//!   byte, and it must be present when the provider advertises it ([`check_iss`]);
//! - an `error` ends the login with the provider's reason, printable ASCII only and capped at
//!   [`MAX_SHOWN_LEN`] (with `crate::http::one_line`);
//! - otherwise a non-empty `code` is the answer.
//!
//! The callers decide what each error means to them: the loopback listener keeps waiting after a
//! malformed or foreign callback and ends the login on the others; keyboard mode lets the person
//! paste again unless the provider refused the login.

use secrecy::SecretString;
use subtle::ConstantTimeEq;

use crate::http::one_line;

/// Longest IdP-supplied text (`error`, `error_description`, `iss`) kept for the user.
pub const MAX_SHOWN_LEN: usize = 200;

/// Longest line accepted as a paste.
pub const MAX_PASTE_LEN: usize = 16 * 1024;

/// What an authorization response must carry to belong to the login waiting for it.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The `state` the login sent.
    pub state: &'a str,
    /// The issuer an `iss` must equal (RFC 9207); `None` leaves `iss` unchecked (GitHub's web
    /// flow, which has no issuer to compare).
    pub issuer: Option<&'a str>,
    /// With an [`Self::issuer`]: the provider advertises
    /// `authorization_response_iss_parameter_supported`, so a response without `iss` is refused.
    pub iss_required: bool,
}

/// Why an authorization response gave no code. Never holds the code, nor any text of the
/// response other than the sanitised `iss`, `error` and `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// The query is not strictly form-encoded, or repeats a parameter; or a pasted line is
    /// neither an address with a query, nor a query, nor a plausible code.
    #[error("the authorization response is malformed")]
    Malformed,
    /// The `state` is missing or is not the login's.
    #[error("the authorization response belongs to another login (its state does not match)")]
    WrongState {
        /// The response carries a `code` or an `error` (otherwise it is no answer at all, e.g.
        /// the login page's own address).
        answered: bool,
    },
    /// The `iss` names another issuer than the expected one (RFC 9207, mix-up defence).
    #[error("the authorization response came from issuer {got}, not the expected {expected}")]
    IssuerMismatch {
        /// The issuer the login is for (sanitised).
        expected: String,
        /// The `iss` the response carried (sanitised).
        got: String,
    },
    /// The provider promises `iss` but the response carries none.
    #[error("the authorization response carried no `iss` although the identity provider promises one")]
    MissingIssuer,
    /// A bare code was pasted but the provider promises `iss`: only the whole address can show it.
    #[error("a bare code carries no `iss`, which the identity provider promises")]
    BareCodeNeedsIssuer,
    /// The provider answered with an OAuth error.
    #[error(
        "the identity provider refused the login: {error}{}",
        .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
    )]
    Refused {
        /// The OAuth `error` code, e.g. `access_denied` (sanitised; `unknown_error` when empty).
        error: String,
        /// The `error_description`, when not empty (sanitised).
        description: Option<String>,
    },
    /// The response of this login carries neither a code nor an error (or an empty code).
    #[error("the authorization response carried no authorization code")]
    MissingCode,
}

/// The authorization code in `query` (the redirect's query, without `?`), checked against
/// `expected`: decoding, then `state`, then `iss`, then `error`, then `code`.
pub fn code_from_query(query: &str, expected: Expected<'_>) -> Result<SecretString, CallbackError> {
    let params = Params::parse(query)?;
    let state_ok = params
        .state
        .as_deref()
        .is_some_and(|s| bool::from(s.as_bytes().ct_eq(expected.state.as_bytes())));
    if !state_ok {
        return Err(CallbackError::WrongState {
            answered: params.code.is_some() || params.error.is_some(),
        });
    }
    check_iss(expected, params.iss.as_deref())?;
    if let Some(error) = params.error {
        let error = match shown(&error) {
            e if e.is_empty() => "unknown_error".to_owned(),
            e => e,
        };
        let description = params
            .error_description
            .map(|d| shown(d.trim()))
            .filter(|d| !d.is_empty());
        return Err(CallbackError::Refused { error, description });
    }
    match params.code {
        Some(code) if !code.is_empty() => Ok(SecretString::from(code)),
        _ => Err(CallbackError::MissingCode),
    }
}

/// The authorization code in a pasted line: the redirected address
/// (`http://127.0.0.1:8000/callback?code=…&state=…`, with or without its scheme), its query
/// (with or without `?`), or a bare code. Surrounding blanks and quotes are ignored; a query is
/// checked as by [`code_from_query`]. A bare code carries no state to check (PKCE still binds it
/// to this login), so it is accepted, except when the provider promises `iss`.
pub fn code_from_pasted(pasted: &str, expected: Expected<'_>) -> Result<SecretString, CallbackError> {
    let input = pasted
        .trim()
        .trim_matches(|c| c == '"' || c == '\'' || c == '<' || c == '>')
        .trim();
    if input.is_empty() || input.len() > MAX_PASTE_LEN {
        return Err(CallbackError::Malformed);
    }
    if let Ok(url) = url::Url::parse(input)
        && matches!(url.scheme(), "http" | "https")
    {
        return code_from_query(url.query().unwrap_or(""), expected);
    }
    if input.contains('=') {
        // A query, or an address pasted without its scheme (`127.0.0.1:8000/callback?...`).
        let query = input.split_once('?').map_or(input, |(_, q)| q);
        return code_from_query(query.split('#').next().unwrap_or_default(), expected);
    }
    if input.chars().all(|c| c.is_ascii_graphic()) && !input.contains("://") {
        if expected.issuer.is_some() && expected.iss_required {
            return Err(CallbackError::BareCodeNeedsIssuer);
        }
        return Ok(SecretString::from(input.to_owned()));
    }
    Err(CallbackError::Malformed)
}

/// The RFC 9207 check of a response's `iss`: equal to the expected issuer when present, and
/// present when the provider advertises it. Without an expected issuer, anything passes.
pub fn check_iss(expected: Expected<'_>, iss: Option<&str>) -> Result<(), CallbackError> {
    let Some(issuer) = expected.issuer else {
        return Ok(());
    };
    match iss {
        Some(got) if got != issuer => Err(CallbackError::IssuerMismatch {
            expected: shown(issuer),
            got: shown(got),
        }),
        None if expected.iss_required => Err(CallbackError::MissingIssuer),
        _ => Ok(()),
    }
}

/// IdP-supplied text made fit to show: one line of printable ASCII, at most [`MAX_SHOWN_LEN`]
/// characters (and `...`).
fn shown(text: &str) -> String {
    one_line(text, MAX_SHOWN_LEN)
}

/// The parameters of a response that koidc reads. Deliberately no `Debug`: it holds the code.
struct Params {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

impl Params {
    fn parse(query: &str) -> Result<Self, CallbackError> {
        let mut params = Self {
            state: None,
            code: None,
            error: None,
            error_description: None,
            iss: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = form_decode(key)?;
            let value = form_decode(value)?;
            let slot = match key.as_str() {
                "state" => &mut params.state,
                "code" => &mut params.code,
                "error" => &mut params.error,
                "error_description" => &mut params.error_description,
                "iss" => &mut params.iss,
                _ => continue,
            };
            // RFC 6749 3.1: parameters must not be included more than once.
            if slot.replace(value).is_some() {
                return Err(CallbackError::Malformed);
            }
        }
        Ok(params)
    }
}

/// Strict `application/x-www-form-urlencoded` decoding of one key or value.
fn form_decode(s: &str) -> Result<String, CallbackError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(CallbackError::Malformed)?;
                let hi = hex_val(hex[0]).ok_or(CallbackError::Malformed)?;
                let lo = hex_val(hex[1]).ok_or(CallbackError::Malformed)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| CallbackError::Malformed)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

pub(crate) mod fuzz;

#[cfg(test)]
mod tests;
