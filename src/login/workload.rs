//! The CI job's own identity token, from where the CI system puts it: GitHub Actions' token
//! service (`ACTIONS_ID_TOKEN_REQUEST_URL`), a file (a Kubernetes projected service-account token,
//! a GitLab `id_tokens` value written out) or a variable (GitLab CI `id_tokens`).
//!
//! This is the adapter of `--grant workload` (the source in `crate::login::sources::machine`
//! decides what to do with the token): [`TokenSource`] is the parsed `--token-source`,
//! [`read_local`] reads a file or a variable, [`request_github_actions`] asks GitHub for a token
//! with the audience the apiserver expects, and [`check_job_token`] checks what koidc can check
//! without the CI issuer's keys (a JWT, the asked audience, a future `exp`): the apiserver, or the
//! issuer a token is exchanged at, verifies the signature. Errors name what is missing and never
//! repeat a token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use crate::http::HttpError;
use crate::login::token::{IdTokenInfo, MAX_TOKEN_LEN};
use crate::text::one_line;

/// The variable GitHub Actions sets, in a job with `permissions: id-token: write`, to the URL of
/// its token service (with a query already).
pub const ACTIONS_URL_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";

/// The variable holding the bearer token for [`ACTIONS_URL_VAR`].
pub const ACTIONS_TOKEN_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

/// The largest answer koidc reads from GitHub's token service.
const MAX_ANSWER: usize = MAX_TOKEN_LEN + 4096;

/// Where the job's token comes from (`--token-source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `github-actions`: requested from [`ACTIONS_URL_VAR`] for the audience.
    GithubActions,
    /// `file:PATH`: read again whenever a token is needed (the kubelet rotates projected tokens).
    File(PathBuf),
    /// `env:VAR`: the variable's value.
    Env(String),
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::GithubActions => f.write_str("github-actions"),
            TokenSource::File(path) => write!(f, "file:{}", path.display()),
            TokenSource::Env(var) => write!(f, "env:{var}"),
        }
    }
}

/// What the user can do about a missing or unusable job token.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// No `--token-source`, and not in a GitHub Actions job with an ID token.
    #[error(
        "--grant workload needs --token-source (or KOIDC_TOKEN_SOURCE): github-actions (a GitHub Actions job with `permissions: id-token: write`), file:PATH (a Kubernetes projected service-account token, or a GitLab id_token written to a file) or env:VAR (a GitLab CI `id_tokens` variable)"
    )]
    NoSource,
    /// A `--token-source` koidc does not know.
    #[error("unknown --token-source {0:?}: use github-actions, file:PATH or env:VAR")]
    Unknown(String),
    /// `file:` or `env:` without a name.
    #[error("--token-source {0}: add the {1} after the colon")]
    Empty(&'static str, &'static str),
    /// `env:` with a name that is not a variable name.
    #[error("--token-source env:{0:?}: a variable name is letters, digits and underscores")]
    BadVariable(String),
    /// GitHub Actions did not offer the job a token.
    #[error(
        "{ACTIONS_URL_VAR} is not set: GitHub Actions gives a job an identity token only with `permissions: id-token: write` (add it to the job or the workflow)"
    )]
    ActionsUnset,
    /// The bearer token for the token service is missing.
    #[error(
        "{ACTIONS_TOKEN_VAR} is not set although {ACTIONS_URL_VAR} is: run koidc in the job's own step environment (both come with `permissions: id-token: write`)"
    )]
    ActionsTokenUnset,
    /// The token service URL cannot be used.
    #[error("{ACTIONS_URL_VAR} is not a usable https URL ({0})")]
    ActionsUrl(String),
    /// The token service could not be reached or failed.
    #[error("cannot get the job's identity token from GitHub Actions: {0}")]
    ActionsHttp(String),
    /// The token service refused.
    #[error(
        "GitHub Actions refused the job's identity token request (HTTP {status}{text}); check `permissions: id-token: write` and that the job may request tokens (forks and Dependabot runs get none)"
    )]
    ActionsRefused {
        /// The HTTP status.
        status: u16,
        /// `: ` and the service's message, on one line, when it gave one.
        text: String,
    },
    /// The token service answered something else than `{"value": "<JWT>"}`.
    #[error(
        "GitHub Actions answered the identity token request without a token (expected JSON with a `value`)"
    )]
    ActionsAnswer,
    /// The token file cannot be read.
    #[error("cannot read the job token file {path}: {reason}")]
    File {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The token variable is unset or empty.
    #[error(
        "the variable {0} holds no token: in GitLab CI declare it under `id_tokens:` with `aud:` set to the audience (the apiserver's)"
    )]
    EnvUnset(String),
    /// What the source gave is not a JWT.
    #[error("the job token from {from} is not a JWT ({reason})")]
    NotJwt {
        /// The source.
        from: String,
        /// What is wrong.
        reason: String,
    },
    /// A JWT without a usable `iss`, `aud` or `exp`.
    #[error("the job token from {from} has no valid `{claim}` claim")]
    Claim {
        /// The source.
        from: String,
        /// The claim.
        claim: &'static str,
    },
    /// The token is for other audiences.
    #[error(
        "the job token from {from} is for {got}, not for --audience {want}: ask the CI system for a token with that audience (GitLab: `id_tokens: NAME: aud: {want}`; Kubernetes: the projected token's `audience`)"
    )]
    Audience {
        /// The source.
        from: String,
        /// The audience asked for.
        want: String,
        /// The token's audiences, described.
        got: String,
    },
    /// The token has expired (or expires within the margin).
    #[error("the job token from {from} expired at {expiry}: a CI token lives minutes; {hint}")]
    Expired {
        /// The source.
        from: String,
        /// When.
        expiry: String,
        /// What to do for this source.
        hint: &'static str,
    },
}

impl TokenSource {
    /// The source `raw` names (`--token-source`); without one, GitHub Actions when it offers the
    /// job a token (`actions_offered`: [`ACTIONS_URL_VAR`] is set).
    pub fn resolve(raw: Option<&str>, actions_offered: bool) -> Result<Self, SourceError> {
        let Some(raw) = raw.map(str::trim) else {
            return if actions_offered {
                Ok(TokenSource::GithubActions)
            } else {
                Err(SourceError::NoSource)
            };
        };
        if raw == "github-actions" {
            return Ok(TokenSource::GithubActions);
        }
        if let Some(path) = raw.strip_prefix("file:") {
            if path.is_empty() {
                return Err(SourceError::Empty("file:", "path of the token file"));
            }
            let path = Path::new(path);
            let path = if path.is_absolute() {
                path.to_owned()
            } else {
                std::env::current_dir()
                    .map(|d| d.join(path))
                    .unwrap_or_else(|_| path.to_owned())
            };
            return Ok(TokenSource::File(path));
        }
        if let Some(var) = raw.strip_prefix("env:") {
            if var.is_empty() {
                return Err(SourceError::Empty("env:", "name of the variable"));
            }
            let valid = var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !var.as_bytes()[0].is_ascii_digit()
                && var.len() <= 256;
            if !valid {
                return Err(SourceError::BadVariable(one_line(var, 80)));
            }
            return Ok(TokenSource::Env(var.to_owned()));
        }
        Err(SourceError::Unknown(one_line(raw, 80)))
    }

    /// What to do when this source's token has expired.
    fn expiry_hint(&self) -> &'static str {
        match self {
            TokenSource::GithubActions => {
                "this should not happen with a fresh request; check the runner's clock"
            }
            TokenSource::File(_) => {
                "the file is not being renewed (a projected token is rotated by the kubelet; a token written out by a job step must be written again)"
            }
            TokenSource::Env(_) => {
                "the variable was set when the job started; run the kubectl step earlier, or write the token to a file that a later step renews"
            }
        }
    }
}

/// Reads the token of a file or variable source (`env` gives a variable's value); `None` for
/// GitHub Actions, which needs [`request_github_actions`].
pub fn read_local(
    source: &TokenSource,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Option<Result<SecretString, SourceError>> {
    match source {
        TokenSource::GithubActions => None,
        TokenSource::File(path) => Some(read_file(path)),
        TokenSource::Env(var) => Some(
            env(var)
                .and_then(|v| v.into_string().ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .map(SecretString::from)
                .ok_or_else(|| SourceError::EnvUnset(var.clone())),
        ),
    }
}

/// Reads a token file: a regular file (following symbolic links, as Kubernetes projects
/// tokens) of at most [`MAX_TOKEN_LEN`] bytes; blanks around the token are dropped.
fn read_file(path: &Path) -> Result<SecretString, SourceError> {
    let err = |reason: String| SourceError::File {
        path: one_line(&path.display().to_string(), 300),
        reason,
    };
    let bytes = crate::files::read_small_regular(path, MAX_TOKEN_LEN as u64, |_| Ok(())).map_err(err)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| err("it is not text".into()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(err("it is empty".into()));
    }
    Ok(SecretString::from(token.to_owned()))
}

/// Asks GitHub Actions' token service for the job's token for `audience`: `GET
/// $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD` with `Authorization: bearer
/// $ACTIONS_ID_TOKEN_REQUEST_TOKEN`; the token is the answer's `value`.
pub async fn request_github_actions(
    http: &reqwest::Client,
    audience: &str,
    timeout: Duration,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<SecretString, SourceError> {
    let var = |name: &str| {
        env(name)
            .and_then(|v| v.into_string().ok())
            .filter(|v| !v.is_empty())
    };
    let raw_url = var(ACTIONS_URL_VAR).ok_or(SourceError::ActionsUnset)?;
    let bearer = SecretString::from(var(ACTIONS_TOKEN_VAR).ok_or(SourceError::ActionsTokenUnset)?);
    let mut url = url::Url::parse(&raw_url).map_err(|e| SourceError::ActionsUrl(e.to_string()))?;
    let loopback = matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err(SourceError::ActionsUrl("it must be https".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(SourceError::ActionsUrl(
            "it carries a user name or password".into(),
        ));
    }
    url.query_pairs_mut().append_pair("audience", audience);
    let mut auth = HeaderValue::from_str(&format!("bearer {}", bearer.expose_secret()))
        .map_err(|_| SourceError::ActionsHttp(format!("{ACTIONS_TOKEN_VAR} is not a valid header value")))?;
    auth.set_sensitive(true);
    let req = http
        .get(url)
        .header(ACCEPT, HeaderValue::from_static("application/json"))
        .header(AUTHORIZATION, auth);
    let reply = crate::http::send(req, timeout, MAX_ANSWER)
        .await
        .map_err(|e: HttpError| match e {
            HttpError::UntrustedCertificate { .. } => SourceError::ActionsHttp(format!(
                "{}: its certificate is not signed by a CA koidc trusts; pass that CA's PEM file with --certificate-authority (GitHub Enterprise Server with a private CA)",
                e.reason()
            )),
            e => SourceError::ActionsHttp(e.reason()),
        })?;
    if !reply.status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .map(|m| {
                let b64 = base64::engine::general_purpose::STANDARD.encode(bearer.expose_secret());
                let said = crate::text::redact(&m, &[bearer.expose_secret(), &b64]);
                format!(": {}", one_line(&said, 200))
            })
            .unwrap_or_default();
        return Err(SourceError::ActionsRefused {
            status: reply.status.as_u16(),
            text: message,
        });
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        value: String,
    }
    let answer: Answer = serde_json::from_slice(&reply.body).map_err(|_| SourceError::ActionsAnswer)?;
    let token = answer.value.trim();
    if token.is_empty() {
        return Err(SourceError::ActionsAnswer);
    }
    Ok(SecretString::from(token.to_owned()))
}

/// Which job a cached credential belongs to, so that a later job on the same runner (a
/// self-hosted runner keeps HOME and the cache) never gets an earlier job's token: a digest of
/// GitHub Actions' per-job request URL and bearer, or of the token a file or variable holds now.
/// `None` when the source cannot say (its variables are unset, its file unreadable): then
/// nothing may be served from the cache.
pub fn job_binding(source: &TokenSource, env: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> Option<String> {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    match read_local(source, env) {
        Some(token) => hasher.update(token.ok()?.expose_secret().as_bytes()),
        None => {
            let var = |name: &str| env(name).filter(|v| !v.is_empty());
            let (url, bearer) = (var(ACTIONS_URL_VAR)?, var(ACTIONS_TOKEN_VAR)?);
            hasher.update(url.as_encoded_bytes());
            hasher.update([0]);
            hasher.update(bearer.as_encoded_bytes());
        }
    }
    Some(hex::encode(&hasher.finalize()[..16]))
}

/// Checks what koidc can check of a job token without the CI issuer's keys: a JWT whose `aud`
/// contains `audience` (when given) and whose `exp` is later than `not_before`. Returns its
/// claims.
pub fn check_job_token(
    token: &SecretString,
    source: &TokenSource,
    audience: Option<&str>,
    not_before: DateTime<Utc>,
) -> Result<IdTokenInfo, SourceError> {
    let raw = token.expose_secret();
    if !crate::login::token::is_compact_jws(raw) {
        let reason = if raw.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("bearer ")) {
            "it starts with `Bearer `: the source must hold only the token"
        } else {
            "a JWT is three parts of letters, digits, `-` and `_` separated by dots, with nothing around them"
        };
        return Err(SourceError::NotJwt {
            from: source.to_string(),
            reason: reason.into(),
        });
    }
    let info = IdTokenInfo::decode_secret(token).map_err(|e| match e {
        crate::login::token::TokenError::Claim(claim) => SourceError::Claim {
            from: source.to_string(),
            claim,
        },
        _ => SourceError::NotJwt {
            from: source.to_string(),
            reason: "its payload is not base64url-encoded JSON".into(),
        },
    })?;
    if let Some(want) = audience
        && !info.audiences.iter().any(|a| a == want)
    {
        let got = if info.audiences.is_empty() {
            "no audience".to_owned()
        } else {
            let named: Vec<String> = info
                .audiences
                .iter()
                .take(5)
                .map(|a| format!("`{}`", one_line(a, 100)))
                .collect();
            format!("audience {}", named.join(", "))
        };
        return Err(SourceError::Audience {
            from: source.to_string(),
            want: one_line(want, 200),
            got,
        });
    }
    if info.expiry <= not_before {
        return Err(SourceError::Expired {
            from: source.to_string(),
            expiry: info.expiry.to_rfc3339(),
            hint: source.expiry_hint(),
        });
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use chrono::TimeZone as _;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn jwt(claims: serde_json::Value) -> SecretString {
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        SecretString::from(format!(
            "{}.{}.c2ln",
            enc.encode(r#"{"alg":"RS256"}"#),
            enc.encode(claims.to_string())
        ))
    }

    #[test]
    fn token_sources_are_parsed_and_github_actions_is_the_default_only_inside_a_job_with_a_token() {
        assert_eq!(
            TokenSource::resolve(Some("github-actions"), false).unwrap(),
            TokenSource::GithubActions
        );
        assert_eq!(
            TokenSource::resolve(None, true).unwrap(),
            TokenSource::GithubActions
        );
        assert!(matches!(
            TokenSource::resolve(None, false),
            Err(SourceError::NoSource)
        ));
        assert_eq!(
            TokenSource::resolve(Some("file:/var/run/secrets/tokens/kube"), false).unwrap(),
            TokenSource::File("/var/run/secrets/tokens/kube".into())
        );
        match TokenSource::resolve(Some("file:relative/token"), false).unwrap() {
            TokenSource::File(path) => assert!(path.is_absolute() && path.ends_with("relative/token")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            TokenSource::resolve(Some("env:GITLAB_OIDC_TOKEN"), false).unwrap(),
            TokenSource::Env("GITLAB_OIDC_TOKEN".into())
        );
        for bad in [
            "gitlab",
            "file:",
            "env:",
            "env:A-B",
            "env:1A",
            "env:A B",
            "env:$(id)",
            "github",
        ] {
            let err = TokenSource::resolve(Some(bad), false).unwrap_err().to_string();
            assert!(!err.contains('\n'), "{err}");
            assert!(
                err.contains("github-actions")
                    || err.contains("after the colon")
                    || err.contains("variable name"),
                "{bad}: {err}"
            );
        }
        let none = SourceError::NoSource.to_string();
        assert!(
            none.contains("permissions: id-token: write")
                && none.contains("file:PATH")
                && none.contains("env:VAR")
        );
    }

    #[test]
    fn a_token_file_must_be_a_regular_small_non_empty_file_and_blanks_around_it_are_dropped() {
        let dir = std::env::temp_dir().join(format!("koidc-workload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "  abc.def.ghi\n").unwrap();
        let env = |_: &str| None;
        let read = |path: &Path| read_local(&TokenSource::File(path.to_owned()), &env).unwrap();
        assert_eq!(read(&file).unwrap().expose_secret(), "abc.def.ghi");
        // A symbolic link (as Kubernetes projects tokens) is followed.
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read(&link).unwrap().expose_secret(), "abc.def.ghi");
        std::fs::write(&file, " \n").unwrap();
        assert!(read(&file).unwrap_err().to_string().contains("it is empty"));
        std::fs::write(&file, vec![b'a'; MAX_TOKEN_LEN + 1]).unwrap();
        assert!(read(&file).unwrap_err().to_string().contains("larger than"));
        assert!(read(&dir).unwrap_err().to_string().contains("not a regular file"));
        assert!(
            read(&dir.join("missing"))
                .unwrap_err()
                .to_string()
                .contains("cannot read the job token file")
        );
        // A FIFO nobody writes to is refused at once instead of blocking.
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(
            read(&fifo)
                .unwrap_err()
                .to_string()
                .contains("not a regular file")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_token_variable_must_be_set_and_not_blank() {
        let env = |name: &str| match name {
            "SET" => Some(std::ffi::OsString::from(" a.b.c ")),
            "BLANK" => Some(std::ffi::OsString::from("  ")),
            _ => None,
        };
        let read = |var: &str| read_local(&TokenSource::Env(var.into()), &env).unwrap();
        assert_eq!(read("SET").unwrap().expose_secret(), "a.b.c");
        for var in ["BLANK", "UNSET"] {
            let err = read(var).unwrap_err().to_string();
            assert!(
                err.contains(&format!("the variable {var} holds no token")) && err.contains("id_tokens:"),
                "{err}"
            );
        }
        assert!(read_local(&TokenSource::GithubActions, &env).is_none());
    }

    #[test]
    fn a_job_token_must_be_a_jwt_for_the_audience_that_has_not_expired() {
        let source = TokenSource::Env("T".into());
        let good = jwt(
            serde_json::json!({"iss": "https://ci", "aud": ["a", "kubernetes"], "exp": now().timestamp() + 300}),
        );
        let info = check_job_token(&good, &source, Some("kubernetes"), now()).unwrap();
        assert_eq!(info.issuer, "https://ci");
        assert!(check_job_token(&good, &source, None, now()).is_ok());

        let err = check_job_token(&good, &source, Some("other"), now())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is for audience `a`, `kubernetes`, not for --audience other"),
            "{err}"
        );
        let expired =
            jwt(serde_json::json!({"iss": "https://ci", "aud": "kubernetes", "exp": now().timestamp()}));
        let err = check_job_token(&expired, &source, Some("kubernetes"), now())
            .unwrap_err()
            .to_string();
        assert!(err.contains("expired at 2026-01-01T00:00:00+00:00"), "{err}");
        let opaque = SecretString::from("ghs_opaque-secret-value".to_owned());
        let err = check_job_token(&opaque, &source, Some("kubernetes"), now())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a JWT") && !err.contains("ghs_opaque"), "{err}");
        // A token written with its `Bearer ` prefix, or with anything after it, is refused rather
        // than handed to kubectl as a malformed bearer.
        let raw = good.expose_secret().to_owned();
        let prefixed = SecretString::from(format!("Bearer {raw}"));
        let err = check_job_token(&prefixed, &source, Some("kubernetes"), now())
            .unwrap_err()
            .to_string();
        assert!(err.contains("starts with `Bearer `"), "{err}");
        for junk in [" junk", "\u{1b}[2J", "\tX-Evil: 1"] {
            let bad = SecretString::from(format!("{raw}{junk}"));
            let err = check_job_token(&bad, &source, Some("kubernetes"), now())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("is not a JWT") && !err.contains(&raw),
                "{junk:?}: {err}"
            );
        }
        let no_exp = jwt(serde_json::json!({"iss": "https://ci", "aud": "kubernetes", "exp": null}));
        let err = check_job_token(&no_exp, &source, Some("kubernetes"), now())
            .unwrap_err()
            .to_string();
        assert_eq!(err, "the job token from env:T has no valid `exp` claim");
        // A hostile audience claim is shown on one line, shortened.
        let hostile = jwt(
            serde_json::json!({"iss": "https://ci", "aud": format!("x\n\u{1b}[2J{}", "y".repeat(500)), "exp": now().timestamp() + 300}),
        );
        let err = check_job_token(&hostile, &source, Some("kubernetes"), now())
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains('\n') && !err.contains('\u{1b}') && err.len() < 700,
            "{err}"
        );
    }
}
