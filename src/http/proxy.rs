//! The HTTP proxy the environment names for a request: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`
//! and `NO_PROXY` (each also in lower case), read as curl reads them. reqwest routes every
//! request of koidc's clients (the identity provider, GitHub, the apiserver of `doctor`) through
//! that proxy by itself; this module exists so that koidc can *say* so: name the proxy, and the
//! variable it came from, when it refuses, is out of reach or asks for a login — never with its
//! user name and password — and keep those credentials out of every message ([`redact`]) and out
//! of the environment of the browser koidc starts ([`browser_environment`]).
//!
//! The decision which proxy a request takes is hyper-util's `Matcher`, the code reqwest itself
//! uses, so the proxy named is the proxy used. The loopback callback is never a request koidc
//! makes (the browser makes it), so no proxy setting can touch it; the browser is told to reach
//! it directly ([`browser_environment`]).

use std::borrow::Cow;
use std::ffi::OsString;

use axum::http::Uri;
use hyper_util::client::proxy::matcher::Matcher;
use url::Url;

/// The variables naming a proxy, in the order they are read for each scheme (the first set one
/// wins; `ALL_PROXY` when neither of the scheme's own is usable).
const HTTPS_VARIABLES: [&str; 2] = ["HTTPS_PROXY", "https_proxy"];
const HTTP_VARIABLES: [&str; 2] = ["HTTP_PROXY", "http_proxy"];
const ALL_VARIABLES: [&str; 2] = ["ALL_PROXY", "all_proxy"];
/// The variables listing the hosts reached directly.
const NO_PROXY_VARIABLES: [&str; 2] = ["NO_PROXY", "no_proxy"];

/// Every variable that may name a proxy (and so hold its password).
pub(crate) const PROXY_VARIABLES: [&str; 6] = [
    HTTPS_VARIABLES[0],
    HTTPS_VARIABLES[1],
    HTTP_VARIABLES[0],
    HTTP_VARIABLES[1],
    ALL_VARIABLES[0],
    ALL_VARIABLES[1],
];

/// The loopback names a browser must reach directly: the callback listens there.
const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

/// The proxy a request goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The proxy as `scheme://host:port`, without user name or password.
    pub proxy: String,
    /// The variable that named it.
    pub variable: &'static str,
    /// Whether that variable carries a user name (and password) for the proxy.
    pub credentials: bool,
}

/// Why a request through a proxy failed: each message names the proxy (never its user name or
/// password), the variable it came from, and what to change.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No connection to the proxy itself (refused, unknown host, timeout).
    #[error(
        "cannot connect to the proxy {} (from {}) for {url}: {reason}; check {}, or list the host in NO_PROXY to connect directly",
        redact(&.route.proxy), .route.variable, .route.variable
    )]
    Unreachable {
        /// The URL requested.
        url: String,
        /// The proxy.
        route: Route,
        /// The innermost cause.
        reason: String,
    },
    /// The proxy asked for a login (HTTP 407).
    #[error(
        "the proxy {} (from {}) wants a login for {url} (407 Proxy Authentication Required); {}",
        redact(&.route.proxy), .route.variable, login_hint(.route)
    )]
    Login {
        /// The URL requested.
        url: String,
        /// The proxy.
        route: Route,
    },
    /// A request carrying a proxy login was answered 401 with something other than an OAuth
    /// error: how some proxies (tinyproxy) refuse a wrong login.
    #[error(
        "{url} answered 401 Unauthorized through the proxy {} (from {}), which is how some proxies refuse a wrong login; {}",
        redact(&.route.proxy), .route.variable, login_hint(.route)
    )]
    LoginRefused {
        /// The URL requested.
        url: String,
        /// The proxy.
        route: Route,
    },
    /// The proxy refused to open a tunnel (`CONNECT`) to the server: a login it wants, or a
    /// host or port it does not allow.
    #[error(
        "the proxy {} (from {}) refused to connect to {url} ({reason}); {}, or ask the proxy's administrator to allow the host and port",
        redact(&.route.proxy), .route.variable, login_hint(.route)
    )]
    Refused {
        /// The URL requested.
        url: String,
        /// The proxy.
        route: Route,
        /// The innermost cause.
        reason: String,
    },
    /// A proxy variable that applies holds no usable proxy URL (its value is not repeated: it
    /// may hold a password).
    #[error("{variable} is not a proxy URL koidc can use for {url}; {flaw}")]
    Unusable {
        /// The URL requested.
        url: String,
        /// The variable.
        variable: &'static str,
        /// What is wrong with it, worded as the fix.
        flaw: Flaw,
    },
}

/// What makes a proxy variable unusable, worded as what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Flaw {
    /// Not a URL, or a scheme no proxy has (or not UTF-8).
    #[error(
        "set it to http://HOST:PORT (http://USER:PASSWORD@HOST:PORT when the proxy wants a login), or unset it"
    )]
    NotAUrl,
    /// A user name or password with an unencoded `@` (or an `@` after an unencoded `/ ? #`):
    /// the HTTP stack would split it elsewhere than koidc does, sending the wrong login and
    /// showing the rest as the proxy's host.
    #[error(
        "its user name or password holds a character that must be percent-encoded: write @ as %40, : as %3A, / as %2F, ? as %3F, # as %23"
    )]
    UnencodedLogin,
    /// A SOCKS proxy (`socks4://`, `socks5://`, …), which koidc cannot speak.
    #[error(
        "koidc speaks HTTP proxies only (http://HOST:PORT): use an HTTP proxy, or a local HTTP-to-SOCKS bridge"
    )]
    Socks,
}

/// What to do about a proxy asking for a login: give one, or check the one given.
fn login_hint(route: &Route) -> String {
    if route.credentials {
        format!(
            "check the user name and password in {} (percent-encode @ : / in them)",
            route.variable
        )
    } else {
        let proxy = redact(&route.proxy);
        format!(
            "give the login in {} as http://USER:PASSWORD@{}",
            route.variable,
            proxy.split_once("://").map_or(&*proxy, |(_, a)| a)
        )
    }
}

/// The proxy the environment names for `url`, if any.
pub(crate) fn route(url: &Url) -> Option<Route> {
    route_in(url, &|name| std::env::var(name).ok())
}

/// [`route`] with the environment passed in (for tests).
fn route_in(url: &Url, env: &dyn Fn(&str) -> Option<String>) -> Option<Route> {
    let uri: Uri = url.as_str().parse().ok()?;
    let get = |names: &[&str]| names.iter().find_map(|n| env(n));
    let mut builder = Matcher::builder()
        .http(get(&HTTP_VARIABLES).unwrap_or_default())
        .https(get(&HTTPS_VARIABLES).unwrap_or_default())
        .all(get(&ALL_VARIABLES).unwrap_or_default())
        .no(get(&NO_PROXY_VARIABLES).unwrap_or_default());
    if env("REQUEST_METHOD").is_some() {
        // As reqwest: in a CGI program, `HTTP_PROXY` may come from a request header.
        builder = builder
            .http(String::new())
            .https(String::new())
            .all(String::new());
    }
    let intercept = builder.build().intercept(&uri)?;
    let proxy = intercept.uri();
    // From the host and port only: with an unencoded `@` in the login, hyper-util leaves part of
    // it (the password, say) in the authority.
    let mut shown = format!(
        "{}://{}",
        proxy.scheme_str().unwrap_or("http"),
        proxy.host().unwrap_or_default()
    );
    if let Some(port) = proxy.port_u16() {
        shown.push_str(&format!(":{port}"));
    }
    Some(Route {
        proxy: shown,
        variable: variable_for(url.scheme(), env),
        credentials: intercept.basic_auth().is_some(),
    })
}

/// The variable naming the proxy of `scheme`: the scheme's own when set and not empty, else
/// `ALL_PROXY`'s.
fn variable_for(scheme: &str, env: &dyn Fn(&str) -> Option<String>) -> &'static str {
    let own: &[&'static str] = if scheme == "https" {
        &HTTPS_VARIABLES
    } else {
        &HTTP_VARIABLES
    };
    // The first variable of `names` that is set, when it is not empty (as the matcher reads
    // them: an empty first one hides the second).
    let set = |names: &[&'static str]| -> Option<&'static str> {
        for &name in names {
            if let Some(value) = env(name) {
                return (!value.is_empty()).then_some(name);
            }
        }
        None
    };
    set(own).or_else(|| set(&ALL_VARIABLES)).unwrap_or(own[0])
}

/// A proxy variable that applies to `url` but holds nothing koidc can use as a proxy (not a URL,
/// or a scheme other than http, https or socks): reqwest would silently connect directly, which
/// a network that requires the proxy refuses in a way that names no cause. Also a SOCKS proxy
/// (koidc's HTTP stack speaks none) and a login whose `@` is unclear ([`Flaw`]). `None` when
/// every variable that applies is usable (or none is set).
pub(crate) fn unusable_variable(url: &Url) -> Option<(&'static str, Flaw)> {
    not_unicode(url.scheme(), &|name| std::env::var_os(name))
        .map(|variable| (variable, Flaw::NotAUrl))
        .or_else(|| unusable_in(url, &|name| std::env::var(name).ok()))
}

/// A proxy variable for `scheme` (its own, or `ALL_PROXY`) that is set but not UTF-8: the
/// matcher reads it as unset, and so would connect directly.
fn not_unicode(scheme: &str, env: &dyn Fn(&str) -> Option<OsString>) -> Option<&'static str> {
    let own: &[&'static str] = if scheme == "https" {
        &HTTPS_VARIABLES
    } else {
        &HTTP_VARIABLES
    };
    own.iter()
        .chain(&ALL_VARIABLES)
        .find(|name| env(name).is_some_and(|v| v.to_str().is_none()))
        .copied()
}

fn unusable_in(url: &Url, env: &dyn Fn(&str) -> Option<String>) -> Option<(&'static str, Flaw)> {
    if env("REQUEST_METHOD").is_some() {
        return None;
    }
    if let Some(route) = route_in(url, env) {
        // The login must mean the same to the HTTP stack and to koidc's redaction: refused
        // before any request, in every variable the matcher reads for this scheme.
        let own: &[&'static str] = if url.scheme() == "https" {
            &HTTPS_VARIABLES
        } else {
            &HTTP_VARIABLES
        };
        for names in [own, &ALL_VARIABLES] {
            let first = names.iter().find_map(|&n| env(n).map(|v| (n, v)));
            if let Some((name, value)) = first
                && unclear_login(&value)
            {
                return Some((name, Flaw::UnencodedLogin));
            }
        }
        return route
            .proxy
            .starts_with("socks")
            .then_some((route.variable, Flaw::Socks));
    }
    let variable = variable_for(url.scheme(), env);
    let value = env(variable).filter(|v| !v.is_empty())?;
    let uri: Uri = url.as_str().parse().ok()?;
    // Would the value have been used, were it usable? Not when NO_PROXY lists the host.
    let no = NO_PROXY_VARIABLES.iter().find_map(|n| env(n)).unwrap_or_default();
    let listed = Matcher::builder()
        .all("http://proxy.invalid:1")
        .no(no)
        .build()
        .intercept(&uri)
        .is_none();
    let usable = Matcher::builder().all(value).build().intercept(&uri).is_some();
    (!listed && !usable).then_some((variable, Flaw::NotAUrl))
}

/// `text` with the user information of every proxy variable (the user name and password in
/// `http://USER:PASSWORD@HOST:PORT`, as written and percent-decoded) and of any URL in it replaced
/// by `…`: for every message that repeats an error of the HTTP stack.
pub(crate) fn redact(text: &str) -> Cow<'_, str> {
    redact_in(text, &|name| std::env::var(name).ok())
}

/// The shortest proxy password [`redact`] replaces wherever it stands, not only in a URL.
const MIN_PLAIN_SECRET: usize = 4;

fn redact_in<'a>(text: &'a str, env: &dyn Fn(&str) -> Option<String>) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(text);
    for name in PROXY_VARIABLES {
        let Some(value) = env(name) else { continue };
        let Some(userinfo) = secret_part(&value) else {
            continue;
        };
        // The whole user information and the password, as written and decoded; the user name
        // alone is no secret (and may be a word every message holds).
        let mut secrets = vec![userinfo.to_owned()];
        if let Some((_, password)) = userinfo.split_once(':') {
            secrets.push(password.to_owned());
            secrets.push(percent_decode(password));
        }
        // A short password is left where it stands as plain text (one letter would garble every
        // message); in a URL it goes with the whole user information ([`scrub_urls`]).
        secrets.retain(|s| s.chars().count() >= MIN_PLAIN_SECRET);
        // The longest first, so a password inside the whole user information goes with it.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for secret in secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), "…"));
            }
        }
    }
    if let Cow::Owned(scrubbed) = scrub_urls(&out) {
        return Cow::Owned(scrubbed);
    }
    out
}

/// The user information of a URL-like `value` (`USER:PASSWORD` of `http://USER:PASSWORD@HOST`,
/// also without a scheme), if any.
fn userinfo(value: &str) -> Option<&str> {
    authority(value).rsplit_once('@').map(|(info, _)| info)
}

/// The authority of a URL-like `value` (also without a scheme): up to the first `/ ? #`.
fn authority(value: &str) -> &str {
    let rest = value.split_once("://").map_or(value, |(_, rest)| rest);
    rest.split(['/', '?', '#']).next().unwrap_or_default()
}

/// Whether `value` holds an `@` that does not clearly end a user information: more than one in
/// the authority (hyper-util splits at the first, koidc at the last), or one after an unencoded
/// `/ ? #` (which ends the authority before it).
fn unclear_login(value: &str) -> bool {
    value.contains('@') && !(value.matches('@').count() == 1 && authority(value).contains('@'))
}

/// What [`redact`] hides of a proxy variable's `value`: everything before its last `@` (after
/// the scheme), so a login that [`userinfo`] cannot parse is still hidden.
fn secret_part(value: &str) -> Option<&str> {
    let rest = value.split_once("://").map_or(value, |(_, rest)| rest);
    userinfo(value).or_else(|| rest.rsplit_once('@').map(|(info, _)| info))
}

/// `text` with the user information of every `scheme://USER:PASSWORD@` in it replaced by `…`.
fn scrub_urls(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == ')' || c == '"')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(sign) => {
                out.push('…');
                rest = &tail[sign..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The environment changes for a browser koidc starts: each proxy variable that carries a user
/// name or password is set again without them (the browser asks for its own login, as it does
/// without koidc), and `NO_PROXY`/`no_proxy` list the loopback names, so a browser that reads
/// these variables reaches the callback directly rather than through a proxy, which could not
/// reach this machine's loopback (or would see the authorization code). `(name, None)` removes
/// a variable.
pub(crate) fn browser_environment() -> Vec<(&'static str, Option<OsString>)> {
    browser_environment_in(&|name| std::env::var_os(name))
}

fn browser_environment_in(env: &dyn Fn(&str) -> Option<OsString>) -> Vec<(&'static str, Option<OsString>)> {
    let mut changes = Vec::new();
    let mut any_proxy = false;
    for name in PROXY_VARIABLES {
        let Some(value) = env(name) else { continue };
        any_proxy = true;
        let Some(text) = value.to_str() else {
            // Not UTF-8: cannot be checked for a password, so not passed on.
            changes.push((name, None));
            continue;
        };
        if unclear_login(text) {
            // An `@` that does not clearly end a login: the password's end is unknown, so
            // nothing of the value is passed on.
            changes.push((name, None));
        } else if let Some(info) = userinfo(text) {
            let without = text.replacen(&format!("{info}@"), "", 1);
            changes.push((name, Some(OsString::from(without))));
        }
    }
    if any_proxy {
        // Both spellings get the same list, the union of both and the loopback names: a tool
        // reading the lower-case one first must not lose the hosts of the upper-case one.
        let current: Vec<String> = NO_PROXY_VARIABLES
            .iter()
            .filter_map(|name| env(name).and_then(|v| v.into_string().ok()))
            .collect();
        let mut hosts: Vec<&str> = Vec::new();
        let given = current.iter().flat_map(|v| v.split(',')).map(str::trim);
        for host in given.chain(LOOPBACK_HOSTS) {
            if !host.is_empty() && !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        let list = OsString::from(hosts.join(","));
        for name in NO_PROXY_VARIABLES {
            changes.push((name, Some(list.clone())));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn a_request_is_routed_through_its_schemes_proxy_shown_without_the_password() {
        let env = env_of(&[
            ("HTTPS_PROXY", "http://alice:s3cret@127.0.0.1:3128"),
            ("http_proxy", "http://127.0.0.1:8080"),
        ]);
        let https = route_in(&url("https://idp.example/x"), &env).unwrap();
        assert_eq!(
            https,
            Route {
                proxy: "http://127.0.0.1:3128".into(),
                variable: "HTTPS_PROXY",
                credentials: true,
            }
        );
        let http = route_in(&url("http://127.0.0.1:5556/dex"), &env).unwrap();
        assert_eq!(
            (http.proxy.as_str(), http.variable, http.credentials),
            ("http://127.0.0.1:8080", "http_proxy", false)
        );
    }

    #[test]
    fn all_proxy_serves_both_schemes_and_no_proxy_goes_direct() {
        let env = env_of(&[
            ("ALL_PROXY", "http://127.0.0.1:3128"),
            ("NO_PROXY", "127.0.0.1,.corp.example"),
        ]);
        assert_eq!(
            route_in(&url("https://idp.example/"), &env).unwrap().variable,
            "ALL_PROXY"
        );
        assert_eq!(route_in(&url("http://127.0.0.1:5556/"), &env), None);
        assert_eq!(route_in(&url("https://sso.corp.example/"), &env), None);
    }

    #[test]
    fn loopback_targets_are_proxied_unless_no_proxy_lists_them() {
        // reqwest (hyper-util's matcher) makes no exception for loopback addresses.
        let env = env_of(&[("HTTP_PROXY", "http://127.0.0.1:3128")]);
        assert!(route_in(&url("http://127.0.0.1:5556/dex"), &env).is_some());
        assert!(route_in(&url("http://[::1]:5556/dex"), &env).is_some());
    }

    #[test]
    fn cgi_programs_ignore_proxy_variables() {
        let env = env_of(&[("HTTP_PROXY", "http://127.0.0.1:3128"), ("REQUEST_METHOD", "GET")]);
        assert_eq!(route_in(&url("http://idp.example/"), &env), None);
        assert_eq!(unusable_in(&url("http://idp.example/"), &env), None);
    }

    #[test]
    fn a_proxy_variable_that_is_no_url_is_named_unless_no_proxy_lists_the_host() {
        let env = env_of(&[
            ("HTTPS_PROXY", "ftp://user:pw@proxy:21"),
            ("NO_PROXY", "direct.example"),
        ]);
        assert_eq!(
            unusable_in(&url("https://idp.example/"), &env),
            Some(("HTTPS_PROXY", Flaw::NotAUrl))
        );
        assert_eq!(unusable_in(&url("https://direct.example/"), &env), None);
        let fine = env_of(&[("HTTPS_PROXY", "http://proxy:3128")]);
        assert_eq!(unusable_in(&url("https://idp.example/"), &fine), None);
        assert_eq!(unusable_in(&url("https://idp.example/"), &env_of(&[])), None);
        let empty = env_of(&[("HTTPS_PROXY", "")]);
        assert_eq!(unusable_in(&url("https://idp.example/"), &empty), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_proxy_variable_that_is_not_utf8_is_named_for_its_scheme() {
        use std::os::unix::ffi::OsStringExt as _;
        let env = |name: &str| (name == "https_proxy").then(|| OsString::from_vec(vec![b'h', 0xff]));
        assert_eq!(not_unicode("https", &env), Some("https_proxy"));
        assert_eq!(not_unicode("http", &env), None);
        let all = |name: &str| (name == "ALL_PROXY").then(|| OsString::from_vec(vec![0xfe]));
        assert_eq!(not_unicode("http", &all), Some("ALL_PROXY"));
        assert_eq!(
            not_unicode("https", &|_| Some(OsString::from("http://p:1"))),
            None
        );
    }

    #[test]
    fn proxy_passwords_are_redacted_as_written_and_decoded() {
        let env = env_of(&[("HTTPS_PROXY", "http://alice:p%40ss%20word@127.0.0.1:3128")]);
        let text =
            "tunnel to http://alice:p%40ss%20word@127.0.0.1:3128 failed (p@ss word, alice:p%40ss%20word)";
        let out = redact_in(text, &env);
        assert_eq!(out, "tunnel to http://…@127.0.0.1:3128 failed (…, …)");
    }

    #[test]
    fn user_information_in_any_url_of_a_message_is_redacted() {
        let out = redact_in("connect to http://bob:hunter2@proxy:3128/ (reset)", &env_of(&[]));
        assert_eq!(out, "connect to http://…@proxy:3128/ (reset)");
        assert!(matches!(redact_in("no url here", &env_of(&[])), Cow::Borrowed(_)));
        assert_eq!(
            redact_in("mail a@b or see https://x/y", &env_of(&[])),
            "mail a@b or see https://x/y"
        );
    }

    #[test]
    fn the_browser_gets_proxies_without_credentials_and_loopback_in_no_proxy() {
        let env = |name: &str| -> Option<OsString> {
            match name {
                "HTTPS_PROXY" => Some("http://alice:s3cret@proxy:3128".into()),
                "http_proxy" => Some("http://proxy:3128".into()),
                "NO_PROXY" => Some("corp.example, 127.0.0.1".into()),
                _ => None,
            }
        };
        let changes = browser_environment_in(&env);
        let get = |name: &str| changes.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        assert_eq!(get("HTTPS_PROXY"), Some(Some("http://proxy:3128".into())));
        assert_eq!(
            get("http_proxy"),
            None,
            "a proxy without credentials is left as it is"
        );
        assert_eq!(
            get("NO_PROXY"),
            Some(Some("corp.example,127.0.0.1,::1,localhost".into()))
        );
        assert_eq!(
            get("no_proxy"),
            Some(Some("corp.example,127.0.0.1,::1,localhost".into())),
            "both spellings list the user's hosts"
        );
        let all: String = changes
            .iter()
            .filter_map(|(_, v)| v.as_ref().and_then(|v| v.to_str()).map(str::to_owned))
            .collect();
        assert!(!all.contains("s3cret"));
    }

    #[test]
    fn a_route_never_shows_user_information_even_with_unencoded_at_signs() {
        // hyper-util splits the user information at the first `@`; the rest stays in the
        // authority of the proxy's URI.
        let env = env_of(&[(
            "HTTPS_PROXY",
            "http://john@corp.example:Hunter2Secret@127.0.0.1:3128",
        )]);
        let route = route_in(&url("https://idp.example/"), &env).unwrap();
        assert_eq!(route.proxy, "http://127.0.0.1:3128");
        let v6 = env_of(&[("HTTPS_PROXY", "http://a:b@[::1]:3128")]);
        assert_eq!(
            route_in(&url("https://idp.example/"), &v6).unwrap().proxy,
            "http://[::1]:3128"
        );
    }

    #[test]
    fn a_proxy_login_with_an_unencoded_at_sign_is_unusable_before_any_request() {
        let https = url("https://idp.example/");
        let env = env_of(&[("HTTPS_PROXY", "http://john@corp.example:pw@127.0.0.1:3128")]);
        assert_eq!(
            unusable_in(&https, &env),
            Some(("HTTPS_PROXY", Flaw::UnencodedLogin))
        );
        let all = env_of(&[("all_proxy", "http://a@b:c@127.0.0.1:3128")]);
        assert_eq!(
            unusable_in(&https, &all),
            Some(("all_proxy", Flaw::UnencodedLogin))
        );
        let listed = env_of(&[
            ("HTTPS_PROXY", "http://john@corp.example:pw@127.0.0.1:3128"),
            ("NO_PROXY", "idp.example"),
        ]);
        assert_eq!(unusable_in(&https, &listed), None);
        let encoded = env_of(&[("HTTPS_PROXY", "http://john%40corp.example:pw@127.0.0.1:3128")]);
        assert_eq!(unusable_in(&https, &encoded), None);
    }

    #[test]
    fn a_socks_proxy_is_unusable_with_a_hint_that_koidc_speaks_http_proxies_only() {
        for value in [
            "socks5://127.0.0.1:1080",
            "socks5h://u:p@proxy:1080",
            "socks4://proxy:1080",
        ] {
            let env = env_of(&[("ALL_PROXY", value)]);
            assert_eq!(
                unusable_in(&url("http://idp.example/"), &env),
                Some(("ALL_PROXY", Flaw::Socks)),
                "{value}"
            );
        }
        assert!(Flaw::Socks.to_string().contains("HTTP proxies only"));
    }

    #[test]
    fn proxy_error_messages_never_show_user_information_of_the_route() {
        let route = Route {
            proxy: "http://corp.example:Hunter2Secret@127.0.0.1:3128".into(),
            variable: "HTTPS_PROXY",
            credentials: true,
        };
        let errors = [
            ProxyError::Refused {
                url: "https://idp.example/".into(),
                route: route.clone(),
                reason: "407".into(),
            },
            ProxyError::Unreachable {
                url: "https://idp.example/".into(),
                route: route.clone(),
                reason: "refused".into(),
            },
            ProxyError::Login {
                url: "https://idp.example/".into(),
                route: Route {
                    credentials: false,
                    ..route.clone()
                },
            },
            ProxyError::LoginRefused {
                url: "https://idp.example/".into(),
                route,
            },
        ];
        for err in errors {
            let text = err.to_string();
            assert!(!text.contains("Hunter2Secret"), "{text}");
        }
    }

    #[test]
    fn a_short_proxy_password_does_not_garble_messages() {
        let env = env_of(&[("HTTPS_PROXY", "http://u:e@127.0.0.1:3128")]);
        let text = "the proxy refused the connection";
        assert_eq!(redact_in(text, &env), text);
        assert_eq!(
            redact_in("via http://u:e@127.0.0.1:3128 (reset)", &env),
            "via http://…@127.0.0.1:3128 (reset)"
        );
        let long = env_of(&[("HTTPS_PROXY", "http://u:seCr@127.0.0.1:3128")]);
        assert_eq!(redact_in("said seCr", &long), "said …");
    }

    #[test]
    fn the_browser_never_gets_a_proxy_value_holding_an_at_sign_it_cannot_parse() {
        let env = |name: &str| -> Option<OsString> {
            match name {
                "HTTPS_PROXY" => Some("http://bob:s3cr/et@proxy.corp:3128".into()),
                "https_proxy" => Some("http://bob:s3cr?et@proxy.corp:3128".into()),
                "HTTP_PROXY" => Some("http://bob:s3cr#et@proxy.corp:3128".into()),
                "http_proxy" => Some("http://john@corp:s3cret@proxy.corp:3128".into()),
                "ALL_PROXY" => Some("http://proxy.corp:3128/x@s3cret".into()),
                "all_proxy" => Some("http://alice:s3cret@proxy.corp:3128".into()),
                _ => None,
            }
        };
        let changes = browser_environment_in(&env);
        let get = |name: &str| changes.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        for name in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
        ] {
            assert_eq!(get(name), Some(None), "{name} is not removed");
        }
        assert_eq!(get("all_proxy"), Some(Some("http://proxy.corp:3128".into())));
        let all: String = changes
            .iter()
            .filter_map(|(_, v)| v.as_ref().and_then(|v| v.to_str()).map(str::to_owned))
            .collect();
        assert!(!all.contains("s3c"), "{all}");
    }

    #[test]
    fn the_browser_keeps_the_users_no_proxy_hosts_in_both_spellings() {
        let env = |name: &str| -> Option<OsString> {
            match name {
                "HTTPS_PROXY" => Some("http://proxy:3128".into()),
                "NO_PROXY" => Some(".corp.example".into()),
                "no_proxy" => Some("sso.internal, ::1".into()),
                _ => None,
            }
        };
        let changes = browser_environment_in(&env);
        let get = |name: &str| changes.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        let both = Some(Some(OsString::from(
            ".corp.example,sso.internal,::1,127.0.0.1,localhost",
        )));
        assert_eq!(get("NO_PROXY"), both);
        assert_eq!(get("no_proxy"), both);
        // Only `NO_PROXY` set: the lower-case spelling gets the user's hosts too.
        let upper = |name: &str| -> Option<OsString> {
            match name {
                "HTTPS_PROXY" => Some("http://proxy:3128".into()),
                "NO_PROXY" => Some(".corp.example".into()),
                _ => None,
            }
        };
        let changes = browser_environment_in(&upper);
        let get = |name: &str| changes.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        assert_eq!(
            get("no_proxy"),
            Some(Some(".corp.example,127.0.0.1,::1,localhost".into()))
        );
    }

    #[test]
    fn the_browser_environment_is_untouched_without_proxy_variables() {
        assert!(browser_environment_in(&|_| None).is_empty());
    }
}
