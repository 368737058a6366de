//! What koidc asks of the identity provider beyond its own protocol: extra parameters of the
//! authorization request (`--auth-param`) and extra HTTP headers on every request to the
//! provider (`--request-header`), checked once when the options are read.
//!
//! Both come from the user's command line, profile or environment, and both end up on the wire:
//! a parameter in a URL the browser opens, a header in every request. So each is refused when it
//! would let koidc's own parameters or headers be replaced (state, nonce, PKCE, the redirect
//! URI; Host, Authorization, the body's framing), or when it could not be sent as one clean
//! value (control characters, CR/LF, an empty or invalid name, a duplicate). Parameter values are
//! URL-encoded when the request is built; header values are marked sensitive and never shown
//! (not by `Debug`, not in an error, not with `--verbose`).

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// The longest value koidc sends for one `--auth-param` (a `resource` URL, an `acr_values` list).
const MAX_PARAM_VALUE: usize = 2048;
/// The longest `--request-header` value.
const MAX_HEADER_VALUE: usize = 8192;
/// How many of each koidc takes.
const MAX_COUNT: usize = 32;

/// Authorization-request parameters koidc sets itself (or that would change the protocol it
/// runs), compared without regard to case.
const OWNED_PARAMS: &[&str] = &[
    "response_type",
    "response_mode",
    "client_id",
    "client_secret",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "code_verifier",
    "code",
    "grant_type",
    "request",
    "request_uri",
    "registration",
];

/// Headers koidc (or the HTTP library) sets, or that frame the request, compared without regard
/// to case: replacing them would misroute the request, break its body, or override the client's
/// authentication.
const OWNED_HEADERS: &[(&str, &str)] = &[
    ("host", "the provider's host comes from the issuer URL"),
    ("content-length", "the HTTP library frames the body"),
    ("transfer-encoding", "the HTTP library frames the body"),
    ("content-type", "koidc sends forms and asks for JSON"),
    ("accept", "koidc sends forms and asks for JSON"),
    ("connection", "the HTTP library manages connections"),
    ("keep-alive", "the HTTP library manages connections"),
    ("upgrade", "the HTTP library manages connections"),
    ("te", "the HTTP library manages connections"),
    ("trailer", "the HTTP library frames the body"),
    ("expect", "the HTTP library frames the body"),
    (
        "authorization",
        "koidc authenticates the client itself; give the secret with KOIDC_CLIENT_SECRET or --client-secret-file",
    ),
    (
        "proxy-authorization",
        "proxy credentials are not provider headers",
    ),
];

/// A `--auth-param` or `--request-header` that cannot be used. Never quotes a header's value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    /// Not `KEY=VALUE` with a key of letters, digits, `_`, `-` and `.`.
    #[error(
        "invalid --auth-param {0}: give KEY=VALUE with a key of letters, digits, _, - or . (e.g. --auth-param prompt=login)"
    )]
    ParamForm(String),
    /// A parameter koidc sends itself.
    #[error(
        "--auth-param {0}: koidc sets {0} itself and it cannot be replaced (scopes go in --scope, the client in --client-id)"
    )]
    ParamOwned(String),
    /// The same parameter twice.
    #[error("--auth-param {0} is given twice; give each parameter once")]
    ParamDuplicate(String),
    /// An empty value, a control character (CR, LF, tab…) or an overlong value.
    #[error("--auth-param {0}: the value must be one line of printable text, not empty, at most 2048 bytes")]
    ParamValue(String),
    /// `max_age` is not a number of seconds.
    #[error("--auth-param max_age must be a whole number of seconds, e.g. max_age=3600")]
    MaxAge,
    /// Not `NAME=VALUE`, or the name is not an HTTP header name.
    #[error(
        "invalid --request-header {0}: give NAME=VALUE with a header name of letters, digits and - (e.g. --request-header Origin=https://app.example.com)"
    )]
    HeaderForm(String),
    /// A header koidc or the HTTP library sets.
    #[error("--request-header {name} is refused: {why}")]
    HeaderOwned {
        /// The header's name.
        name: String,
        /// Why koidc keeps it.
        why: &'static str,
    },
    /// The same header twice.
    #[error("--request-header {0} is given twice; give each header once")]
    HeaderDuplicate(String),
    /// An empty value, a control character or an overlong value (the value is never shown).
    #[error(
        "--request-header {0}: the value must be one line of printable text, not empty, at most 8192 bytes"
    )]
    HeaderValue(String),
    /// More than [`MAX_COUNT`] of one kind.
    #[error("at most 32 --{0} options are accepted")]
    TooMany(&'static str),
}

/// Which token kubectl gets (`--token-type`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TokenType {
    /// The ID token.
    #[default]
    Id,
    /// The access token, a JWT of the issuer.
    Access {
        /// `--audience`: its `aud` must contain this; `None`: it must be issued to the client
        /// (see [`super::verify::AccessAudience::IssuedTo`]).
        audience: Option<String>,
    },
}

/// What koidc asks of the provider beyond its own protocol, as the options gave it.
#[derive(Debug, Clone)]
pub struct ProviderRequest {
    /// `--token-type`.
    pub token_type: TokenType,
    /// `--auth-param`: sent with the authorization request and the device authorization request.
    pub auth_params: AuthParams,
    /// `--request-header`: sent with every request to the provider.
    pub headers: RequestHeaders,
    /// `--pkce`: false leaves PKCE out of the authorization code grant.
    pub pkce: bool,
}

impl Default for ProviderRequest {
    fn default() -> Self {
        Self {
            token_type: TokenType::Id,
            auth_params: AuthParams::default(),
            headers: RequestHeaders::default(),
            pkce: true,
        }
    }
}

/// A name for an error message: escaped, on one line, capped.
fn shown(name: &str) -> String {
    crate::text::one_line(&name.escape_debug().to_string(), 80)
}

/// `raw` split at its first `=`, `None` without one.
fn split(raw: &str) -> Option<(&str, &str)> {
    raw.split_once('=')
}

/// Checked `--auth-param` values, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthParams(Vec<(String, String)>);

impl AuthParams {
    /// Checks each `KEY=VALUE` (see [`RequestError`]).
    pub fn parse(raw: &[String]) -> Result<Self, RequestError> {
        if raw.len() > MAX_COUNT {
            return Err(RequestError::TooMany("auth-param"));
        }
        let mut params: Vec<(String, String)> = Vec::new();
        for item in raw {
            let (key, value) = split(item).ok_or_else(|| RequestError::ParamForm(shown(item)))?;
            let key_ok = !key.is_empty()
                && key.len() <= 64
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !key_ok {
                return Err(RequestError::ParamForm(shown(item)));
            }
            if OWNED_PARAMS.iter().any(|o| o.eq_ignore_ascii_case(key)) {
                return Err(RequestError::ParamOwned(key.to_owned()));
            }
            if params.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
                return Err(RequestError::ParamDuplicate(key.to_owned()));
            }
            if value.trim().is_empty() || value.len() > MAX_PARAM_VALUE || value.chars().any(char::is_control)
            {
                return Err(RequestError::ParamValue(key.to_owned()));
            }
            if key == "max_age" && value.parse::<u64>().is_err() {
                return Err(RequestError::MaxAge);
            }
            params.push((key.to_owned(), value.to_owned()));
        }
        Ok(Self(params))
    }

    /// The parameters, in the order given.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.pairs().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// `login_hint`: the account asked for, part of the cache key (two accounts at one provider
    /// keep two entries).
    pub fn login_hint(&self) -> Option<&str> {
        self.get("login_hint")
    }

    /// `max_age` in seconds: then the ID token's `auth_time` must be at most that old.
    pub fn max_age(&self) -> Option<u64> {
        self.get("max_age").and_then(|v| v.parse().ok())
    }
}

/// Checked `--request-header` values: names and values for every request to the provider, the
/// values marked sensitive. `Debug` shows the names only.
#[derive(Clone, Default)]
pub struct RequestHeaders(HeaderMap);

impl std::fmt::Debug for RequestHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.keys().map(|k| format!("{}: <redacted>", k.as_str())))
            .finish()
    }
}

impl RequestHeaders {
    /// Checks each `NAME=VALUE` (see [`RequestError`]).
    pub fn parse(raw: &[String]) -> Result<Self, RequestError> {
        if raw.len() > MAX_COUNT {
            return Err(RequestError::TooMany("request-header"));
        }
        let mut map = HeaderMap::new();
        for item in raw {
            // Never the value in a message: only what precedes the first `=`, else nothing.
            let (name, value) = split(item).ok_or_else(|| RequestError::HeaderForm("(without =)".into()))?;
            let parsed = HeaderName::from_bytes(name.as_bytes())
                .ok()
                .filter(|_| !name.is_empty() && name.len() <= 128)
                .ok_or_else(|| RequestError::HeaderForm(shown(name)))?;
            if let Some((_, why)) = OWNED_HEADERS.iter().find(|(n, _)| *n == parsed.as_str()) {
                return Err(RequestError::HeaderOwned {
                    name: name.to_owned(),
                    why,
                });
            }
            if map.contains_key(&parsed) {
                return Err(RequestError::HeaderDuplicate(name.to_owned()));
            }
            let bad_value = value.trim().is_empty()
                || value.len() > MAX_HEADER_VALUE
                || value.chars().any(char::is_control);
            let mut header = match HeaderValue::from_str(value) {
                Ok(v) if !bad_value => v,
                _ => return Err(RequestError::HeaderValue(name.to_owned())),
            };
            header.set_sensitive(true);
            map.insert(parsed, header);
        }
        Ok(Self(map))
    }

    /// The headers, for the provider's HTTP client.
    pub fn map(&self) -> &HeaderMap {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(raw: &[&str]) -> Result<AuthParams, RequestError> {
        AuthParams::parse(&raw.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    fn headers(raw: &[&str]) -> Result<RequestHeaders, RequestError> {
        RequestHeaders::parse(&raw.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn auth_params_keep_their_order_and_values_with_equals_signs_and_commas() {
        let p = params(&[
            "prompt=login",
            "login_hint=a@example.com",
            "claims={\"a\":1,\"b\":\"x=y\"}",
        ])
        .unwrap();
        assert_eq!(
            p.pairs().collect::<Vec<_>>(),
            [
                ("prompt", "login"),
                ("login_hint", "a@example.com"),
                ("claims", "{\"a\":1,\"b\":\"x=y\"}")
            ]
        );
        assert_eq!(p.login_hint(), Some("a@example.com"));
        assert_eq!(p.max_age(), None);
        assert_eq!(params(&["max_age=300"]).unwrap().max_age(), Some(300));
    }

    #[test]
    fn auth_params_koidc_owns_are_refused_in_any_case() {
        for key in [
            "state",
            "nonce",
            "code_challenge",
            "code_challenge_method",
            "redirect_uri",
            "client_id",
            "response_type",
            "scope",
            "response_mode",
            "STATE",
            "Nonce",
            "request_uri",
        ] {
            let err = params(&[&format!("{key}=x")]).unwrap_err();
            assert_eq!(err, RequestError::ParamOwned(key.to_owned()));
            assert!(err.to_string().contains("sets"), "{err}");
        }
    }

    #[test]
    fn hostile_auth_params_are_refused_on_one_line() {
        for raw in [
            "prompt",
            "=login",
            "pro mpt=x",
            "pro\rmpt=x",
            "a&b=c",
            "a%3D=b",
            "prompt=",
            "prompt= ",
            "prompt=a\r\nb",
            "prompt=a\nstate=x",
            "prompt=\u{7f}",
            "prompt=\t",
        ] {
            let err = params(&[raw]).unwrap_err().to_string();
            assert!(!err.contains('\n') && !err.contains('\r'), "{err:?}");
        }
        assert!(matches!(
            params(&["prompt=a", "Prompt=b"]),
            Err(RequestError::ParamDuplicate(_))
        ));
        assert!(matches!(
            params(&[&format!("resource={}", "a".repeat(3000))]),
            Err(RequestError::ParamValue(_))
        ));
        assert_eq!(params(&["max_age=soon"]), Err(RequestError::MaxAge));
        assert_eq!(params(&["max_age=-1"]), Err(RequestError::MaxAge));
        let many: Vec<String> = (0..33).map(|i| format!("p{i}=v")).collect();
        assert!(AuthParams::parse(&many).is_err());
    }

    #[test]
    fn request_headers_are_kept_sensitive_and_never_shown() {
        let h = headers(&["Origin=https://app.example.com", "X-Tenant=a,b=c"]).unwrap();
        assert_eq!(h.map().len(), 2);
        assert!(h.map().values().all(HeaderValue::is_sensitive));
        assert_eq!(h.map()["x-tenant"], "a,b=c");
        let shown = format!("{h:?}");
        assert!(
            shown.contains("origin") && !shown.contains("app.example.com") && !shown.contains("a,b"),
            "{shown}"
        );
    }

    #[test]
    fn hostile_request_headers_are_refused_without_repeating_the_value() {
        const SECRET: &str = "s3cret-value";
        for raw in [
            format!("Origin={SECRET}\r\nX-Evil: 1"),
            format!("Origin={SECRET}\n"),
            format!("Origin=\u{0}{SECRET}"),
            format!("Origin=\t{SECRET}"),
            format!("Bad Name={SECRET}"),
            format!("Bad:Name={SECRET}"),
            format!("={SECRET}"),
            "Origin=".to_owned(),
            format!("Origin{SECRET}"),
            format!("Origin={}", "a".repeat(9000)),
        ] {
            let err = headers(&[&raw]).unwrap_err().to_string();
            assert!(
                !err.contains(SECRET) && !err.contains('\n') && !err.contains('\r'),
                "{err:?}"
            );
        }
        for name in [
            "Host",
            "content-length",
            "Authorization",
            "Transfer-Encoding",
            "Content-Type",
            "PROXY-AUTHORIZATION",
        ] {
            let err = headers(&[&format!("{name}={SECRET}")]).unwrap_err();
            assert!(matches!(err, RequestError::HeaderOwned { .. }), "{name}: {err}");
            assert!(!err.to_string().contains(SECRET));
        }
        let err = headers(&["Origin=a", "origin=b"]).unwrap_err();
        assert_eq!(err, RequestError::HeaderDuplicate("origin".into()));
    }
}
