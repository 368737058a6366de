//! What the authorization endpoint says to a login request, asked without a browser: the basis
//! of `koidc doctor`'s "client accepted" and "redirect URI accepted" checks, and of the check
//! every login makes before it opens a browser or shows a device code.
//!
//! [`Provider::preflight_authorization`] answers one question before a real login (go ahead, or
//! stop with the provider's error) and lets everything unclear through: only a clear refusal (an
//! error sent back to the redirect URI, or an HTTP 400/401/404 page or a 4xx page naming an OAuth
//! error) stops the login; a login page, a redirect to one, a server error, a timeout or a failed
//! connection let it go ahead. It costs one request, two for a provider that passes the request
//! on to a path below its authorization endpoint (Dex's connectors), and follows nothing else:
//! a login page elsewhere may need the cookies a browser keeps.
//!
//! The doctor needs more: which part of the request the provider objected to, and an answer even
//! from providers that only check the request after a first page. Dex, with more than one
//! connector, first shows a connector chooser and checks `client_id` and `redirect_uri` only on
//! the connector's URL, so [`Provider::probe_authorization`] follows redirects that stay on the
//! provider's origin and, once, the chooser's first link below the authorization endpoint. Both
//! never send cookies or credentials and never follow the request back to the redirect URI.

use std::time::Duration;

use url::Url;

use super::client::{AuthRequest, OAuthErrorBody, Provider, sanitize_oauth_error};
use super::error::OidcError;
use super::http::{self, display_url, one_line};
use super::page::{oauth_error_code_in, page_text};

/// How many requests a probe makes at most.
const MAX_HOPS: usize = 6;

/// How long the check before a login may take in all: past it, the login goes ahead.
const PREFLIGHT_BUDGET: Duration = Duration::from_secs(10);

/// How far a probe follows the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// The doctor's: redirects on the provider's origin, and once a connector chooser's link.
    Origin,
    /// The login's: only redirects and links below the authorization endpoint.
    BelowEndpoint,
}

/// What the login about to start needs from the client's registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginKind {
    /// The authorization code grant: the request itself, with koidc's redirect URI.
    Browser,
    /// The device grant: only that the provider knows the client (the redirect URI and the
    /// grants allowed through the browser do not matter).
    Device,
}

/// What the authorization endpoint did with a login request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeAnswer {
    /// It showed a page (a login form): the request was accepted as far as can be seen without
    /// logging in.
    LoginPage {
        /// The page's address, without query.
        url: String,
    },
    /// It sent the browser to another site (an upstream identity provider or SSO portal).
    Elsewhere {
        /// That address, without query.
        url: String,
    },
    /// It sent the browser straight back to the redirect URI (with the request's `state`).
    Back {
        /// The OAuth `error`, when it refused the request (sanitised).
        error: Option<String>,
        /// The `error_description` (sanitised, capped).
        description: Option<String>,
    },
    /// It answered with an error status and a page.
    ErrorPage {
        /// The HTTP status.
        status: u16,
        /// The OAuth error code found on the page, if any.
        error: Option<String>,
        /// The page's visible text on one line, capped.
        text: String,
    },
}

impl Provider {
    /// Sends `req` to the authorization endpoint without cookies, follows redirects on the
    /// provider's own origin (and once a link from a connector chooser to a sub-path of the
    /// authorization endpoint, as Dex shows one), and reports where it ended. Errors are
    /// transport errors only (the endpoint cannot be reached).
    pub async fn probe_authorization(&self, req: &AuthRequest) -> Result<AuthorizeAnswer, OidcError> {
        self.walk(req, Reach::Origin).await
    }

    /// Asks the authorization endpoint about `req` before a login of `kind` starts, within
    /// [`PREFLIGHT_BUDGET`]: fails with [`OidcError::AuthorizeRefused`] (the provider sent the
    /// request back with an OAuth error) or [`OidcError::AuthorizeErrorPage`] (it answered with an
    /// error page) only when the provider clearly refused; for the device grant, only when it
    /// refused the client. Anything else is `Ok`: the login goes ahead.
    pub async fn preflight_authorization(&self, req: &AuthRequest, kind: LoginKind) -> Result<(), OidcError> {
        let answer = match tokio::time::timeout(PREFLIGHT_BUDGET, self.walk(req, Reach::BelowEndpoint)).await
        {
            Ok(Ok(answer)) => answer,
            // Unreachable now, or slow: the browser may fare better, and the wait says so.
            Ok(Err(_)) | Err(_) => return Ok(()),
        };
        judge(answer, kind, &req.redirect_uri, &self.cfg.client_id)
    }

    /// Sends `req` and follows the provider as far as `reach` allows.
    async fn walk(&self, req: &AuthRequest, reach: Reach) -> Result<AuthorizeAnswer, OidcError> {
        let start =
            Url::parse(&req.url).map_err(|_| OidcError::InvalidRedirectUri(one_line(&req.url, 200)))?;
        let endpoint = self.metadata.authorization_endpoint().url().clone();
        let mut url = start;
        let mut followed_chooser = false;
        for _ in 0..MAX_HOPS {
            let reply = http::get_page(&self.http, &url, self.cfg.http_timeout).await?;
            if reply.status.is_redirection() {
                let Some(next) = reply.location.as_deref().and_then(|l| url.join(l).ok()) else {
                    return Ok(AuthorizeAnswer::ErrorPage {
                        status: reply.status.as_u16(),
                        error: None,
                        text: "a redirect without a usable Location".into(),
                    });
                };
                if same_endpoint(&next, &req.redirect_uri) {
                    return Ok(back_answer(&next, &req.state));
                }
                if next.origin() != endpoint.origin() {
                    return Ok(AuthorizeAnswer::Elsewhere {
                        url: display_url(&next),
                    });
                }
                if reach == Reach::BelowEndpoint && !below(&next, &endpoint) {
                    // A login page of the provider's own: it may need the browser's cookies.
                    return Ok(AuthorizeAnswer::LoginPage {
                        url: display_url(&next),
                    });
                }
                url = next;
                continue;
            }
            let body = String::from_utf8_lossy(&reply.body);
            if reply.status.is_client_error() || reply.status.is_server_error() {
                let text = page_text(&body);
                return Ok(AuthorizeAnswer::ErrorPage {
                    status: reply.status.as_u16(),
                    error: oauth_error_code_in(&text),
                    text: one_line(&text, 300),
                });
            }
            if !followed_chooser && let Some(link) = chooser_link(&body, &url, &endpoint) {
                followed_chooser = true;
                url = link;
                continue;
            }
            return Ok(AuthorizeAnswer::LoginPage {
                url: display_url(&url),
            });
        }
        Ok(AuthorizeAnswer::LoginPage {
            url: display_url(&url),
        })
    }
}

/// The preflight's verdict on `answer` for a login of `kind`: an error only for a clear refusal
/// (for the device grant, only of the client).
fn judge(
    answer: AuthorizeAnswer,
    kind: LoginKind,
    redirect_uri: &str,
    client_id: &str,
) -> Result<(), OidcError> {
    match answer {
        AuthorizeAnswer::Back {
            error: Some(error),
            description,
        } if kind == LoginKind::Browser => Err(OidcError::AuthorizeRefused { error, description }),
        AuthorizeAnswer::ErrorPage { status, error, text } if clear_refusal(status, error.as_deref()) => {
            let about_redirect = about_redirect_uri(error.as_deref(), &text);
            if kind == LoginKind::Device && (about_redirect || !names_the_client(error.as_deref(), &text)) {
                return Ok(());
            }
            Err(OidcError::AuthorizeErrorPage {
                status,
                error,
                text,
                redirect_uri: one_line(redirect_uri, 200),
                client_id: one_line(client_id, 200),
                about_redirect,
            })
        }
        _ => Ok(()),
    }
}

/// True for an error page that refuses the request beyond doubt: 400, 401 or 404 (what Dex,
/// Okta and Keycloak answer for an unknown client or redirect URI), or another 4xx naming an
/// OAuth error. A 403 alone may come from a firewall that blocks non-browsers; a 5xx may pass.
fn clear_refusal(status: u16, error: Option<&str>) -> bool {
    matches!(status, 400 | 401 | 404) || ((400..500).contains(&status) && error.is_some())
}

/// An error page in a message: `HTTP 404 Not Found: Invalid client_id.` for Dex's page whose
/// text is `Not Found Invalid client_id.` (the status's reason phrase, or `404 Not Found`, at
/// the start of the text is put after the status, not run together with the page's message);
/// `, CODE` follows the status when the page names an OAuth error. `text` is already one line,
/// sanitised and capped.
pub fn describe_page(status: u16, error: Option<&str>, text: &str) -> String {
    let code = error.map(|e| format!(", {e}")).unwrap_or_default();
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason());
    let mut rest = text.trim();
    let mut head = format!("HTTP {status}");
    if let Some(reason) = reason {
        let after_status = rest
            .strip_prefix(&status.to_string())
            .map(str::trim_start)
            .unwrap_or(rest);
        if let Some(after) = after_status
            .get(..reason.len())
            .filter(|p| p.eq_ignore_ascii_case(reason))
            .map(|_| &after_status[reason.len()..])
            .filter(|a| a.is_empty() || a.starts_with(|c: char| !c.is_alphanumeric()))
        {
            head = format!("HTTP {status} {reason}");
            rest = after.trim_start_matches([' ', ':', '-', '.']).trim();
        }
    }
    if rest.is_empty() {
        format!("{head}{code}")
    } else {
        format!("{head}{code}: {rest}")
    }
}

/// True when an error page objects to the redirect URI rather than to the client.
pub fn about_redirect_uri(error: Option<&str>, text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    error == Some("invalid_redirect_uri") || lower.contains("redirect_uri") || lower.contains("redirect uri")
}

/// True when an error page says the client is unknown or invalid (not merely that it may not
/// use a grant).
fn names_the_client(error: Option<&str>, text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    error == Some("invalid_client")
        || [
            "client_id",
            "client id",
            "client not found",
            "unknown client",
            "invalid client",
        ]
        .iter()
        .any(|w| lower.contains(w))
}

/// The answer carried by a redirect back to the redirect URI: an error only when it carries the
/// request's `state` (anything else could not be told apart from a forged redirect).
fn back_answer(back: &Url, state: &str) -> AuthorizeAnswer {
    let param = |name: &str| {
        back.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    match (param("error"), param("state")) {
        (Some(error), Some(s)) if s == state => {
            let (error, description) = sanitize_oauth_error(
                &OAuthErrorBody {
                    error,
                    error_description: param("error_description"),
                },
                &[],
            );
            AuthorizeAnswer::Back {
                error: Some(error),
                description,
            }
        }
        _ => AuthorizeAnswer::Back {
            error: None,
            description: None,
        },
    }
}

/// The first link of `html` (served at `page`) to a path below the authorization endpoint on
/// its origin, like Dex's `/dex/auth/<connector>?...` links on its connector chooser.
fn chooser_link(html: &str, page: &Url, endpoint: &Url) -> Option<Url> {
    let mut rest = html;
    while let Some(at) = rest.find("href=\"") {
        rest = &rest[at + 6..];
        let end = rest.find('"')?;
        let raw = decode_entities(&rest[..end]);
        rest = &rest[end..];
        let Ok(link) = page.join(&raw) else { continue };
        if below(&link, endpoint) {
            return Some(link);
        }
    }
    None
}

/// True when `url` is on the endpoint's origin at a path below the endpoint's (Dex's
/// `/dex/auth/<connector>` below `/dex/auth`).
fn below(url: &Url, endpoint: &Url) -> bool {
    let base = endpoint.path().trim_end_matches('/');
    url.origin() == endpoint.origin()
        && url
            .path()
            .strip_prefix(base)
            .is_some_and(|tail| tail.starts_with('/') && tail.len() > 1)
}

/// Decodes the character references an HTML attribute value commonly holds.
fn decode_entities(s: &str) -> String {
    s.replace("&#43;", "+")
        .replace("&#x2b;", "+")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// True when `url` is `redirect_uri` without its query: same scheme, host, port and path.
fn same_endpoint(url: &Url, redirect_uri: &str) -> bool {
    let Ok(want) = Url::parse(redirect_uri) else {
        return false;
    };
    url.scheme() == want.scheme()
        && url.host_str() == want.host_str()
        && url.port_or_known_default() == want.port_or_known_default()
        && url.path() == want.path()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_endpoint_ignores_the_query_but_not_port_or_path() {
        let cb = "http://127.0.0.1:8000/callback";
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(same_endpoint(
            &u("http://127.0.0.1:8000/callback?error=x&state=s"),
            cb
        ));
        assert!(!same_endpoint(&u("http://127.0.0.1:18000/callback?error=x"), cb));
        assert!(!same_endpoint(&u("http://127.0.0.1:8000/other?error=x"), cb));
        assert!(!same_endpoint(&u("https://127.0.0.1:8000/callback"), cb));
    }

    #[test]
    fn the_chooser_link_is_the_first_below_the_authorization_endpoint() {
        let endpoint = Url::parse("https://127.0.0.1:5556/dex/auth").unwrap();
        let page = Url::parse("https://127.0.0.1:5556/dex/auth?client_id=x").unwrap();
        let html = r#"<link href="static/main.css"><a href="/dex/auth/local?client_id=wrong&amp;scope=openid&#43;email&amp;state=abc">
            <a href="/dex/auth/mock?client_id=wrong">"#;
        let link = chooser_link(html, &page, &endpoint).unwrap();
        assert_eq!(link.path(), "/dex/auth/local");
        assert_eq!(link.query(), Some("client_id=wrong&scope=openid+email&state=abc"));
        // Links elsewhere, or to the endpoint itself, are not a chooser's.
        let other =
            r#"<a href="https://evil.example/dex/auth/x"><a href="/dex/auth?x=1"><a href="/dex/authx/y">"#;
        assert_eq!(chooser_link(other, &page, &endpoint), None);
    }

    #[test]
    fn an_error_pages_reason_phrase_reads_apart_from_its_message() {
        assert_eq!(
            describe_page(404, None, "Not Found Invalid client_id."),
            "HTTP 404 Not Found: Invalid client_id."
        );
        assert_eq!(
            describe_page(
                400,
                Some("invalid_request"),
                "400 Bad Request Error Code: invalid_request"
            ),
            "HTTP 400 Bad Request, invalid_request: Error Code: invalid_request"
        );
        assert_eq!(describe_page(404, None, "Not Found"), "HTTP 404 Not Found");
        assert_eq!(
            describe_page(404, None, "Not Foundry here"),
            "HTTP 404: Not Foundry here"
        );
        assert_eq!(describe_page(401, None, "Login failed"), "HTTP 401: Login failed");
        assert_eq!(describe_page(499, None, ""), "HTTP 499");
    }

    fn page(status: u16, error: Option<&str>, text: &str) -> AuthorizeAnswer {
        AuthorizeAnswer::ErrorPage {
            status,
            error: error.map(String::from),
            text: text.into(),
        }
    }

    fn verdict(answer: AuthorizeAnswer, kind: LoginKind) -> Result<(), String> {
        judge(answer, kind, "http://127.0.0.1:8000/callback", "wrong").map_err(|e| e.to_string())
    }

    #[test]
    fn only_a_clear_refusal_stops_a_login_before_the_browser() {
        use LoginKind::{Browser, Device};
        // Dex's answer for an unknown client: stops both grants, with Dex's words and the fix.
        let dex = || page(404, None, "Not Found Invalid client_id.");
        for kind in [Browser, Device] {
            let err = verdict(dex(), kind).unwrap_err();
            assert!(
                err.contains("Invalid client_id") && err.contains("\"wrong\"") && err.contains("--client-id"),
                "{err}"
            );
        }
        // An unregistered redirect URI stops the browser login, naming the URI to register...
        let redirect = || page(400, None, "Bad Request Unregistered redirect_uri.");
        let err = verdict(redirect(), Browser).unwrap_err();
        assert!(
            err.contains("register it") && err.contains("http://127.0.0.1:8000/callback"),
            "{err}"
        );
        // ...but not a device login, which uses no redirect URI.
        assert_eq!(verdict(redirect(), Device), Ok(()));
        // A grant the client may not use through the browser does not concern the device grant.
        let back = || AuthorizeAnswer::Back {
            error: Some("unauthorized_client".into()),
            description: None,
        };
        assert!(verdict(back(), Browser).is_err());
        assert_eq!(verdict(back(), Device), Ok(()));
        assert_eq!(
            verdict(page(400, Some("unauthorized_client"), "not allowed"), Device),
            Ok(())
        );
        // What may pass, or is no refusal at all, lets both go ahead.
        for answer in [
            page(403, None, "Forbidden"),
            page(429, None, "Too Many Requests"),
            page(500, None, "Internal Server Error Invalid client_id"),
            page(503, None, ""),
            AuthorizeAnswer::LoginPage {
                url: "https://idp/login".into(),
            },
            AuthorizeAnswer::Elsewhere {
                url: "https://upstream/".into(),
            },
            AuthorizeAnswer::Back {
                error: None,
                description: None,
            },
        ] {
            for kind in [Browser, Device] {
                assert_eq!(verdict(answer.clone(), kind), Ok(()), "{answer:?} {kind:?}");
            }
        }
        // A 4xx naming an OAuth error is clear even with another status.
        assert!(verdict(page(403, Some("invalid_client"), "Error: invalid_client"), Device).is_err());
    }

    #[test]
    fn an_error_sent_back_counts_only_with_the_requests_state() {
        let back = Url::parse(
            "http://127.0.0.1:8000/callback?error=invalid_scope&error_description=Unrecognized+scope.&state=s1",
        )
        .unwrap();
        assert_eq!(
            back_answer(&back, "s1"),
            AuthorizeAnswer::Back {
                error: Some("invalid_scope".into()),
                description: Some("Unrecognized scope".into()),
            }
        );
        assert_eq!(
            back_answer(&back, "other"),
            AuthorizeAnswer::Back {
                error: None,
                description: None
            }
        );
    }
}
