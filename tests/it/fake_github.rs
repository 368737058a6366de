//! A fake GitHub on 127.0.0.1:0 speaking the shapes koidc relies on: the OAuth web flow
//! (`/login/oauth/authorize` redirecting with `code` and `state`, PKCE S256 checked at
//! `/login/oauth/access_token`, client secret required), the device flow (`/login/device/code`,
//! polling with a scripted sequence of `authorization_pending` / `slow_down` / approval), token
//! refresh (expiring GitHub App tokens, when enabled), errors answered with HTTP 200 and an `error`
//! field as GitHub does, JSON only for `Accept: application/json`, the REST API (`/user`,
//! `/user/orgs`, `/user/teams`, also under `/api/v3` like GitHub Enterprise Server), token
//! revocation (`DELETE /applications/{client_id}/token`) and "check a token"
//! (`POST /applications/{client_id}/token`: HTTP Basic with the app's client id and secret, 200
//! with the token's `user` and `app` for a token issued to that app, 404 for any other token, a
//! personal access token or another app's, 422 without `access_token`). Every request is
//! recorded.
//!
//! The "browser" picks who logs in with a `gh_user` cookie (`curl -b gh_user=alice`), as a real
//! browser would carry a GitHub session.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::Rng as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::runtime;

/// The OAuth app registered at the fake.
pub const CLIENT_ID: &str = "Ov23liKoidcTestApp";
pub const CLIENT_SECRET: &str = "fake-github-client-secret-0123456789";
/// Another OAuth app at the same GitHub (a third-party service the user also logged in to).
pub const OTHER_APP_ID: &str = "Ov23liSomeOtherService";

/// A GitHub user of the fake.
#[derive(Debug, Clone, Copy)]
pub struct FakeUser {
    pub id: u64,
    pub login: &'static str,
    pub name: &'static str,
    /// Organisation logins as GitHub spells them.
    pub orgs: &'static [&'static str],
    /// (organisation login, team slug)
    pub teams: &'static [(&'static str, &'static str)],
}

/// In `Acme` (spelled with a capital, as orgs often are) and its team `sre`, and in a hobby org.
pub const ALICE: FakeUser = FakeUser {
    id: 1001,
    login: "alice",
    name: "Alice Liddell",
    orgs: &["Acme", "hobby"],
    teams: &[("Acme", "sre"), ("hobby", "fun")],
};

/// In `Acme`, team `dev` only.
pub const BOB: FakeUser = FakeUser {
    id: 1002,
    login: "bob",
    name: "Bob",
    orgs: &["Acme"],
    teams: &[("Acme", "dev")],
};

/// Not in `Acme` at all (but in a team named `sre` elsewhere).
pub const EVE: FakeUser = FakeUser {
    id: 1003,
    login: "eve",
    name: "Eve",
    orgs: &["evil"],
    teams: &[("evil", "sre")],
};

/// One step of a device login, consumed per poll (approval once the script is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStep {
    Pending,
    SlowDown,
    Approve,
    Deny,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub form: BTreeMap<String, String>,
    pub authorization: Option<String>,
    pub accept: Option<String>,
}

/// Behaviour switches.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// Answer the code exchange with HTTP 200 and this `error`.
    pub token_error: Option<&'static str>,
    /// Issue expiring (GitHub App) tokens with this lifetime, with refresh tokens.
    pub expires_in: Option<u64>,
    /// The device steps of the next device login.
    pub device_script: Vec<DeviceStep>,
    /// Who approves device logins.
    pub device_user: FakeUser,
    /// The `interval` of device logins, in seconds.
    pub device_interval: u64,
    /// Delay every REST API answer by this much.
    pub api_delay: Option<Duration>,
    /// Answer every REST API request with this HTTP status (GitHub down: 502, 503...).
    pub api_status: Option<u16>,
    /// A hostile "check a token" answer: 200 naming this user, whoever the token belongs to.
    pub check_names: Option<FakeUser>,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            token_error: None,
            expires_in: None,
            device_script: Vec::new(),
            device_user: ALICE,
            device_interval: 1,
            api_delay: None,
            api_status: None,
            check_names: None,
        }
    }
}

struct CodeGrant {
    user: FakeUser,
    challenge: String,
    redirect_uri: String,
}

struct DeviceGrant {
    script: VecDeque<DeviceStep>,
    user: FakeUser,
    interval: u64,
}

#[derive(Default)]
struct Inner {
    knobs: Knobs,
    codes: HashMap<String, CodeGrant>,
    /// Access token → its user and the client id of the app it was issued to (`None`: a
    /// personal access token).
    tokens: HashMap<String, (FakeUser, Option<&'static str>)>,
    refresh_tokens: HashMap<String, FakeUser>,
    devices: HashMap<String, DeviceGrant>,
    requests: Vec<Recorded>,
}

type Shared = Arc<Mutex<Inner>>;

/// The running fake; stops when dropped.
pub struct FakeGithub {
    addr: SocketAddr,
    inner: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl FakeGithub {
    pub fn start() -> FakeGithub {
        Self::start_with(Knobs::default())
    }

    pub fn start_with(knobs: Knobs) -> FakeGithub {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake GitHub");
        std_listener.set_nonblocking(true).expect("nonblocking listener");
        let addr = std_listener.local_addr().expect("fake GitHub address");
        let inner: Shared = Arc::new(Mutex::new(Inner {
            knobs,
            ..Inner::default()
        }));
        let app = axum::Router::new().fallback(answer).with_state(inner.clone());
        let rt = runtime();
        let listener = {
            let _guard = rt.enter();
            tokio::net::TcpListener::from_std(std_listener).expect("register the listener")
        };
        let task = rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGithub { addr, inner, task }
    }

    /// `http://127.0.0.1:PORT` (koidc's `--github-url`; the API is then `<url>/api/v3`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the behaviour.
    pub fn set_knobs(&self, update: impl FnOnce(&mut Knobs)) {
        update(&mut self.inner.lock().unwrap().knobs);
    }

    /// A token of koidc's OAuth app ([`CLIENT_ID`]) for `user` issued directly (as if logged in
    /// elsewhere).
    pub fn issue_token(&self, user: FakeUser) -> String {
        let token = random_token("gho_");
        self.inner
            .lock()
            .unwrap()
            .tokens
            .insert(token.clone(), (user, Some(CLIENT_ID)));
        token
    }

    /// A token of `user` that koidc's app did not issue: one of another OAuth app
    /// ([`OTHER_APP_ID`]), or with `app` `None` a personal access token. It works with `/user`
    /// and the rest of the API like any other.
    pub fn issue_foreign_token(&self, user: FakeUser, app: Option<&'static str>) -> String {
        let token = random_token(if app.is_some() { "gho_" } else { "ghp_" });
        self.inner
            .lock()
            .unwrap()
            .tokens
            .insert(token.clone(), (user, app));
        token
    }

    /// Whether `token` is still valid (not revoked).
    pub fn token_valid(&self, token: &str) -> bool {
        self.inner.lock().unwrap().tokens.contains_key(token)
    }

    /// Revokes `token` as GitHub does when the user revokes the app; true when it was valid.
    pub fn revoke_token(&self, token: &str) -> bool {
        self.inner.lock().unwrap().tokens.remove(token).is_some()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// How many requests so far (a mark for [`Self::since`]).
    pub fn mark(&self) -> usize {
        self.inner.lock().unwrap().requests.len()
    }

    /// The requests after `mark`.
    pub fn since(&self, mark: usize) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests[mark..].to_vec()
    }

    /// The requests to `path` (without the `/api/v3` prefix for API paths).
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path || r.path.strip_prefix("/api/v3") == Some(path))
            .collect()
    }

    /// Every access token issued so far (to look for leaks).
    pub fn issued_tokens(&self) -> Vec<String> {
        let inner = self.inner.lock().unwrap();
        inner
            .tokens
            .keys()
            .chain(inner.refresh_tokens.keys())
            .cloned()
            .collect()
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn random_token(prefix: &str) -> String {
    let mut rng = rand::thread_rng();
    let tail: String = (0..36)
        .map(|_| {
            let c = rng.gen_range(0..62u8);
            (match c {
                0..=9 => b'0' + c,
                10..=35 => b'a' + c - 10,
                _ => b'A' + c - 36,
            }) as char
        })
        .collect();
    format!("{prefix}{tail}")
}

fn parse_pairs(s: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(s.as_bytes()).into_owned().collect()
}

fn json_response(status: StatusCode, value: Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(value.to_string()))
        .expect("response")
}

/// A token endpoint answer: JSON for `Accept: application/json`, else form-encoded (GitHub's
/// default). Errors too are HTTP 200.
fn token_answer(accept_json: bool, value: Value) -> Response {
    if accept_json {
        return json_response(StatusCode::OK, value);
    }
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    if let Value::Object(map) = &value {
        for (k, v) in map {
            let text = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
            form.append_pair(k, &text);
        }
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.finish()))
        .expect("response")
}

fn oauth_error(accept_json: bool, error: &str, description: &str) -> Response {
    token_answer(
        accept_json,
        json!({"error": error, "error_description": description, "error_uri": "https://docs.github.com/apps/troubleshooting"}),
    )
}

fn cookie_user(headers: &HeaderMap) -> Option<FakeUser> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let login = cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == "gh_user")?
        .1;
    [ALICE, BOB, EVE].into_iter().find(|u| u.login == login)
}

async fn answer(State(inner): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let header_str = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let path = parts.uri.path().to_owned();
    let query = parse_pairs(parts.uri.query().unwrap_or(""));
    let is_form =
        header_str(header::CONTENT_TYPE).is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let form = if is_form {
        parse_pairs(&String::from_utf8_lossy(&body))
    } else {
        BTreeMap::new()
    };
    let accept = header_str(header::ACCEPT);
    let authorization = header_str(header::AUTHORIZATION);
    let (api_delay, api_status) = {
        let mut guard = inner.lock().unwrap();
        guard.requests.push(Recorded {
            at: Instant::now(),
            method: parts.method.to_string(),
            path: path.clone(),
            query: query.clone(),
            form: form.clone(),
            authorization: authorization.clone(),
            accept: accept.clone(),
        });
        (guard.knobs.api_delay, guard.knobs.api_status)
    };
    let accept_json = accept.as_deref().is_some_and(|a| a.contains("application/json"));
    let api_path = path.strip_prefix("/api/v3").unwrap_or(&path).to_owned();
    match (&parts.method, path.as_str()) {
        (&Method::GET, "/login/oauth/authorize") => authorize(&inner, &query, &parts.headers),
        (&Method::POST, "/login/oauth/access_token") => access_token(&inner, &form, accept_json),
        (&Method::POST, "/login/device/code") => device_code(&inner, &form, accept_json),
        (&Method::GET, "/login/device") => Response::new(Body::from("<html>enter the code</html>")),
        _ => {
            if let Some(delay) = api_delay {
                tokio::time::sleep(delay).await;
            }
            if let Some(status) = api_status {
                return json_response(
                    StatusCode::from_u16(status).expect("a status code"),
                    json!({"message": "Server Error"}),
                );
            }
            api(
                &inner,
                &parts.method,
                &api_path,
                &query,
                authorization.as_deref(),
                &body,
            )
        }
    }
}

fn authorize(inner: &Shared, query: &BTreeMap<String, String>, headers: &HeaderMap) -> Response {
    let bad = |msg: &str| {
        Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Body::from(msg.to_owned()))
            .expect("response")
    };
    if query.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return bad("unknown client_id");
    }
    let Some(redirect_uri) = query.get("redirect_uri") else {
        return bad("no redirect_uri");
    };
    // GitHub: a loopback callback registered as http://127.0.0.1/callback matches any port.
    let Ok(url) = url::Url::parse(redirect_uri) else {
        return bad("bad redirect_uri");
    };
    if url.scheme() != "http" || url.host_str() != Some("127.0.0.1") || url.path() != "/callback" {
        return bad("redirect_uri_mismatch");
    }
    if query.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return bad("this fake requires PKCE S256");
    }
    let (Some(challenge), Some(state)) = (query.get("code_challenge"), query.get("state")) else {
        return bad("missing code_challenge or state");
    };
    let Some(user) = cookie_user(headers) else {
        return bad("not signed in (no gh_user cookie)");
    };
    let code = random_token("");
    inner.lock().unwrap().codes.insert(
        code.clone(),
        CodeGrant {
            user,
            challenge: challenge.clone(),
            redirect_uri: redirect_uri.clone(),
        },
    );
    let mut target = url.clone();
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", state);
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, target.as_str())
        .body(Body::empty())
        .expect("response")
}

fn issue(inner: &mut Inner, user: FakeUser, accept_json: bool) -> Response {
    let token = random_token(if inner.knobs.expires_in.is_some() {
        "ghu_"
    } else {
        "gho_"
    });
    inner.tokens.insert(token.clone(), (user, Some(CLIENT_ID)));
    match inner.knobs.expires_in {
        None => token_answer(
            accept_json,
            json!({"access_token": token, "token_type": "bearer", "scope": "read:org"}),
        ),
        Some(expires_in) => {
            let refresh = random_token("ghr_");
            inner.refresh_tokens.insert(refresh.clone(), user);
            token_answer(
                accept_json,
                json!({
                    "access_token": token,
                    "expires_in": expires_in,
                    "refresh_token": refresh,
                    "refresh_token_expires_in": 15_897_600,
                    "token_type": "bearer",
                    "scope": "",
                }),
            )
        }
    }
}

fn access_token(inner: &Shared, form: &BTreeMap<String, String>, accept_json: bool) -> Response {
    let mut inner = inner.lock().unwrap();
    let get = |k: &str| form.get(k).map(String::as_str);
    if get("client_id") != Some(CLIENT_ID) {
        return oauth_error(
            accept_json,
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
        );
    }
    match get("grant_type") {
        Some("urn:ietf:params:oauth:grant-type:device_code") => {
            let Some(device_code) = get("device_code") else {
                return oauth_error(
                    accept_json,
                    "incorrect_device_code",
                    "The device_code provided is not valid.",
                );
            };
            let Some(grant) = inner.devices.get_mut(device_code) else {
                return oauth_error(
                    accept_json,
                    "incorrect_device_code",
                    "The device_code provided is not valid.",
                );
            };
            let step = grant.script.pop_front().unwrap_or(DeviceStep::Approve);
            match step {
                DeviceStep::Pending => oauth_error(
                    accept_json,
                    "authorization_pending",
                    "The authorization request is still pending.",
                ),
                DeviceStep::SlowDown => {
                    grant.interval += 5;
                    token_answer(
                        accept_json,
                        json!({"error": "slow_down", "error_description": "Too many requests have been made in the same timeframe.", "interval": grant.interval}),
                    )
                }
                DeviceStep::Deny => {
                    inner.devices.remove(device_code);
                    oauth_error(
                        accept_json,
                        "access_denied",
                        "The authorization request was denied.",
                    )
                }
                DeviceStep::Approve => {
                    let user = grant.user;
                    inner.devices.remove(device_code);
                    issue(&mut inner, user, accept_json)
                }
            }
        }
        Some("refresh_token") => {
            if get("client_secret") != Some(CLIENT_SECRET) {
                return oauth_error(
                    accept_json,
                    "incorrect_client_credentials",
                    "The client_id and/or client_secret passed are incorrect.",
                );
            }
            let Some(user) = get("refresh_token").and_then(|r| inner.refresh_tokens.remove(r)) else {
                return oauth_error(
                    accept_json,
                    "bad_refresh_token",
                    "The refresh token passed is incorrect or expired.",
                );
            };
            issue(&mut inner, user, accept_json)
        }
        _ => {
            if get("client_secret") != Some(CLIENT_SECRET) {
                return oauth_error(
                    accept_json,
                    "incorrect_client_credentials",
                    "The client_id and/or client_secret passed are incorrect.",
                );
            }
            if let Some(error) = inner.knobs.token_error {
                return oauth_error(accept_json, error, "Forced by the test.");
            }
            let Some(grant) = get("code").and_then(|c| inner.codes.remove(c)) else {
                return oauth_error(
                    accept_json,
                    "bad_verification_code",
                    "The code passed is incorrect or expired.",
                );
            };
            if get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
                return oauth_error(
                    accept_json,
                    "redirect_uri_mismatch",
                    "The redirect_uri MUST match the registered callback URL for this application.",
                );
            }
            let verifier = get("code_verifier").unwrap_or_default();
            let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if computed != grant.challenge {
                return oauth_error(
                    accept_json,
                    "bad_verification_code",
                    "The code_verifier does not match the code_challenge.",
                );
            }
            issue(&mut inner, grant.user, accept_json)
        }
    }
}

fn device_code(inner: &Shared, form: &BTreeMap<String, String>, accept_json: bool) -> Response {
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return oauth_error(
            accept_json,
            "incorrect_client_credentials",
            "The client_id is not valid.",
        );
    }
    let mut inner = inner.lock().unwrap();
    let device_code = random_token("");
    let interval = inner.knobs.device_interval;
    let grant = DeviceGrant {
        script: inner.knobs.device_script.iter().copied().collect(),
        user: inner.knobs.device_user,
        interval,
    };
    inner.devices.insert(device_code.clone(), grant);
    token_answer(
        accept_json,
        json!({
            "device_code": device_code,
            "user_code": "WDJB-MJHT",
            "verification_uri": "https://github.com/login/device",
            "expires_in": 900,
            "interval": interval,
        }),
    )
}

fn api(
    inner: &Shared,
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
    authorization: Option<&str>,
    body: &[u8],
) -> Response {
    let mut inner = inner.lock().unwrap();
    if let Some(client_id) = path
        .strip_prefix("/applications/")
        .and_then(|p| p.strip_suffix("/token"))
    {
        // GitHub: the app's own client id and secret, as HTTP Basic; anything else is refused.
        let expected = format!(
            "Basic {}",
            STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
        );
        if client_id != CLIENT_ID || authorization != Some(expected.as_str()) {
            return json_response(
                StatusCode::UNAUTHORIZED,
                json!({"message": "Requires authentication"}),
            );
        }
        let Some(token) = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["access_token"].as_str().map(str::to_owned))
            .filter(|t| !t.is_empty())
        else {
            return json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"message": "Validation Failed"}),
            );
        };
        let issued_here = inner
            .tokens
            .get(&token)
            .filter(|(_, app)| *app == Some(CLIENT_ID))
            .map(|(user, _)| *user);
        if *method == Method::DELETE {
            return match issued_here {
                Some(_) => {
                    inner.tokens.remove(&token);
                    Response::builder()
                        .status(StatusCode::NO_CONTENT)
                        .body(Body::empty())
                        .expect("response")
                }
                None => json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
            };
        }
        if *method == Method::POST {
            let named = inner.knobs.check_names;
            return match issued_here.map(|u| named.unwrap_or(u)) {
                Some(user) => json_response(
                    StatusCode::OK,
                    json!({
                        "id": 1,
                        "url": format!("https://api.github.com/authorizations/1"),
                        "app": {"client_id": CLIENT_ID, "name": "koidc", "url": "https://example.com"},
                        "token": token,
                        "hashed_token": hex::encode(Sha256::digest(token.as_bytes())),
                        "token_last_eight": &token[token.len().saturating_sub(8)..],
                        "note": null,
                        "scopes": ["read:org"],
                        "created_at": "2026-01-01T00:00:00Z",
                        "updated_at": "2026-01-01T00:00:00Z",
                        "expires_at": null,
                        "fingerprint": null,
                        "user": {"login": user.login, "id": user.id, "type": "User", "site_admin": false},
                    }),
                ),
                None => json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
            };
        }
        return json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"}));
    }
    if method != Method::GET {
        return json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"}));
    }
    let token = authorization
        .and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("token ")))
        .unwrap_or_default();
    let Some(user) = inner.tokens.get(token).map(|(user, _)| *user) else {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}),
        );
    };
    // One page of results: later pages are empty.
    let first_page = query.get("page").is_none_or(|p| p == "1");
    match path {
        "/user" => json_response(
            StatusCode::OK,
            json!({"login": user.login, "id": user.id, "name": user.name, "type": "User"}),
        ),
        "/user/orgs" => json_response(
            StatusCode::OK,
            json!(if first_page {
                user.orgs
                    .iter()
                    .map(|o| json!({"login": o, "id": 7}))
                    .collect::<Vec<_>>()
            } else {
                Vec::new()
            }),
        ),
        "/user/teams" => json_response(
            StatusCode::OK,
            json!(if first_page {
                user.teams
                    .iter()
                    .map(|(org, slug)| json!({"slug": slug, "name": slug.to_uppercase(), "organization": {"login": org}}))
                    .collect::<Vec<_>>()
            } else {
                Vec::new()
            }),
        ),
        _ => json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
    }
}
