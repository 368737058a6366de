//! A stand-in for GitHub Actions' OIDC token service, which cannot be reached from here: the
//! issuer `https://token.actions.githubusercontent.com` and the per-job token request endpoint a
//! job with `permissions: id-token: write` finds in `ACTIONS_ID_TOKEN_REQUEST_URL`.
//!
//! [`FakeActions::start`] serves, over https on `127.0.0.1:0` (a fresh test CA, its own runtime
//! thread), what a relying party and a job see of GitHub: the discovery document at
//! `ISSUER/.well-known/openid-configuration`, the JWKS at `ISSUER/.well-known/jwks` (the RSA key
//! of `tests/fixtures/stub-idp-rsa.pem`, kid set), and the token request endpoint
//! `ISSUER/_apis/token?api-version=2.0` that answers a GET with the job's bearer token
//! (`Authorization: bearer …`, anything else gets 401) and an optional `audience` with
//! `{"count": N, "value": "<JWT>"}`, as GitHub does. Tokens are RS256 with GitHub's claims
//! (`sub` = `repo:OWNER/REPO:ref:REF` or `repo:OWNER/REPO:environment:ENV`, `repository`, `ref`,
//! `environment`, …) for the current [`Job`], which a test changes with [`FakeActions::set_job`]
//! to play another branch or repository; [`FakeActions::mint`] signs one without a request, to
//! hand a token to kubectl directly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use openidconnect::core::CoreRsaPrivateSigningKey;
use rand::Rng as _;
use serde_json::{Value, json};
use sha2::Digest as _;
use tempfile::TempDir;

use crate::stub_idp::{KID, ServerThread, fixture_pem, jwk, rs256, rsa_key};

/// The claims GitHub's discovery document lists and the stand-in's tokens carry.
const CLAIMS: [&str; 20] = [
    "sub",
    "aud",
    "exp",
    "iat",
    "iss",
    "jti",
    "nbf",
    "ref",
    "ref_type",
    "sha",
    "repository",
    "repository_id",
    "repository_owner",
    "run_id",
    "actor",
    "workflow",
    "event_name",
    "environment",
    "job_workflow_ref",
    "runner_environment",
];

/// Which job asks for tokens: what the claims say about the workflow run.
#[derive(Debug, Clone)]
pub struct Job {
    /// `OWNER/REPO`, e.g. `acme/app`.
    pub repository: String,
    /// The ref the run is for, e.g. `refs/heads/main` or `refs/tags/v1`.
    pub git_ref: String,
    /// The deployment environment of the job (`sub` then names it instead of the ref).
    pub environment: Option<String>,
    /// How long a token is valid.
    pub lifetime: Duration,
}

impl Job {
    /// A job of `repository` on `git_ref`, without environment, with 5-minute tokens.
    pub fn new(repository: &str, git_ref: &str) -> Job {
        Job {
            repository: repository.to_owned(),
            git_ref: git_ref.to_owned(),
            environment: None,
            lifetime: Duration::from_secs(300),
        }
    }

    fn owner(&self) -> &str {
        self.repository.split('/').next().unwrap_or(&self.repository)
    }

    fn sub(&self) -> String {
        match &self.environment {
            Some(env) => format!("repo:{}:environment:{env}", self.repository),
            None => format!("repo:{}:ref:{}", self.repository, self.git_ref),
        }
    }
}

/// State shared by the handlers and the test.
struct Shared {
    issuer: String,
    key: CoreRsaPrivateSigningKey,
    /// This job's bearer token; every [`FakeActions::set_job`] is a new job with a new one, as
    /// GitHub gives each job its own.
    bearer: Mutex<String>,
    job: Mutex<Job>,
    answered: AtomicUsize,
    run_id: AtomicU64,
}

impl Shared {
    /// A token for the current job and `audience` (GitHub's default audience when none).
    fn mint(&self, audience: Option<&str>) -> String {
        let job = self.job.lock().unwrap().clone();
        let now = chrono::Utc::now().timestamp();
        let audience = audience
            .map(str::to_owned)
            .unwrap_or_else(|| format!("https://github.com/{}", job.owner()));
        let repository_id = u32::from_be_bytes(
            sha2::Sha256::digest(job.repository.as_bytes())[..4]
                .try_into()
                .expect("four bytes"),
        ) % 900_000_000
            + 100_000_000;
        let ref_type = if job.git_ref.starts_with("refs/tags/") {
            "tag"
        } else {
            "branch"
        };
        let mut claims = json!({
            "iss": self.issuer,
            "aud": audience,
            "sub": job.sub(),
            "repository": job.repository,
            "repository_owner": job.owner(),
            "repository_id": repository_id.to_string(),
            "ref": job.git_ref,
            "ref_type": ref_type,
            "sha": hex::encode(rand::thread_rng().r#gen::<[u8; 20]>()),
            "workflow": "deploy",
            "job_workflow_ref": format!("{}/.github/workflows/deploy.yml@{}", job.repository, job.git_ref),
            "actor": "octocat",
            "event_name": "push",
            "run_id": self.run_id.load(Ordering::Relaxed).to_string(),
            "runner_environment": "github-hosted",
            "jti": hex::encode(rand::thread_rng().r#gen::<[u8; 16]>()),
            "iat": now,
            "nbf": now - 5,
            "exp": now + job.lifetime.as_secs() as i64,
        });
        if let Some(env) = &job.environment {
            claims["environment"] = json!(env);
        }
        rs256(&self.key, KID, claims.to_string().as_bytes())
    }
}

/// A GitHub Actions job's view of the token service, and the OIDC issuer that signs its tokens;
/// stops when dropped.
pub struct FakeActions {
    issuer: String,
    ca_pem: String,
    ca_file: PathBuf,
    shared: Arc<Shared>,
    _server: ServerThread,
    _dir: TempDir,
}

impl FakeActions {
    /// Starts on `https://127.0.0.1:PORT` with a fresh test CA (own runtime thread), job
    /// `acme/app` on `refs/heads/main`, no environment, 5-minute tokens.
    pub fn start() -> FakeActions {
        let (std_listener, addr) = ServerThread::listener("the Actions stand-in");
        let issuer = format!("https://{addr}");
        let (ca_pem, tls) = crate::apiserver::tls_config();
        let dir = TempDir::with_prefix("koidc-actions-").expect("temp dir for the Actions stand-in");
        let ca_file = dir.path().join("actions-ca.pem");
        std::fs::write(&ca_file, &ca_pem).expect("write the Actions stand-in CA");
        let shared = Arc::new(Shared {
            issuer: issuer.clone(),
            key: rsa_key(&fixture_pem(), KID),
            bearer: Mutex::new(new_bearer()),
            job: Mutex::new(Job::new("acme/app", "refs/heads/main")),
            answered: AtomicUsize::new(0),
            run_id: AtomicU64::new(rand::thread_rng().gen_range(1_000_000_000..9_000_000_000)),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/.well-known/jwks", get(keys))
            .route("/_apis/token", get(token))
            .with_state(shared.clone());
        let server = ServerThread::spawn("fake-actions", std_listener, Some(tls), app);
        FakeActions {
            issuer,
            ca_pem,
            ca_file,
            shared,
            _server: server,
            _dir: dir,
        }
    }

    /// The issuer: `https://127.0.0.1:PORT` (no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The test CA (PEM) that signed the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A file holding [`FakeActions::ca_pem`] (in the stand-in's own temp dir).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The two variables a job with `permissions: id-token: write` gets:
    /// `ACTIONS_ID_TOKEN_REQUEST_URL` (with a query already) and `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "ACTIONS_ID_TOKEN_REQUEST_URL",
                format!("{}/_apis/token?api-version=2.0", self.issuer),
            ),
            (
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
                self.shared.bearer.lock().unwrap().clone(),
            ),
        ]
    }

    /// Which job the next tokens are for: a new job, with a new bearer token (take
    /// [`FakeActions::env`] again afterwards).
    pub fn set_job(&self, job: Job) {
        *self.shared.job.lock().unwrap() = job;
        *self.shared.bearer.lock().unwrap() = new_bearer();
        self.shared.run_id.fetch_add(1, Ordering::Relaxed);
    }

    /// A token for the current job and `audience`, as the request endpoint would answer.
    pub fn mint(&self, audience: &str) -> String {
        self.shared.mint(Some(audience))
    }

    /// How many token requests the endpoint answered with a token.
    pub fn token_requests(&self) -> usize {
        self.shared.answered.load(Ordering::SeqCst)
    }
}

fn json_reply(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn discovery(State(s): State<Arc<Shared>>) -> Response {
    json_reply(
        StatusCode::OK,
        &json!({
            "issuer": s.issuer,
            "jwks_uri": format!("{}/.well-known/jwks", s.issuer),
            "subject_types_supported": ["public", "pairwise"],
            "response_types_supported": ["id_token"],
            "claims_supported": CLAIMS,
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid"],
        }),
    )
}

async fn keys(State(s): State<Arc<Shared>>) -> Response {
    json_reply(StatusCode::OK, &json!({ "keys": [jwk(&s.key)] }))
}

/// A random bearer token for a job.
fn new_bearer() -> String {
    hex::encode(rand::thread_rng().r#gen::<[u8; 24]>())
}

/// GitHub's token request: the job's bearer token (scheme case-insensitive), an optional
/// `audience`; 401 without the right bearer.
async fn token(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("bearer") && token == *s.bearer.lock().unwrap()
        });
    if !authorized {
        return json_reply(
            StatusCode::UNAUTHORIZED,
            &json!({"message": "Unauthorized: the bearer token is not this job's"}),
        );
    }
    let value = s.mint(
        query
            .get("audience")
            .map(String::as_str)
            .filter(|a| !a.is_empty()),
    );
    s.answered.fetch_add(1, Ordering::SeqCst);
    json_reply(StatusCode::OK, &json!({ "count": value.len(), "value": value }))
}

/// What the end-to-end tests do not show of the stand-in: its discovery document and key set as
/// a relying party reads them, and the claim shapes of environments, tags and default audiences.
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use openidconnect::JsonWebKey as _;
    use openidconnect::core::{CoreJsonWebKey, CoreJwsSigningAlgorithm};

    use super::*;
    use crate::support::{jwt_claims, runtime};

    fn get(actions: &FakeActions, url: &str, bearer: Option<&str>) -> (u16, Value) {
        let client = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(actions.ca_pem().as_bytes()).expect("CA PEM"),
            )
            .build()
            .expect("https client");
        let mut req = client.get(url);
        if let Some(bearer) = bearer {
            req = req.header("Authorization", format!("bearer {bearer}"));
        }
        runtime().block_on(async move {
            let reply = req.send().await.expect("reach the stand-in");
            let status = reply.status().as_u16();
            (status, reply.json().await.expect("a JSON answer"))
        })
    }

    #[test]
    fn the_actions_stand_in_publishes_its_keys_and_signs_github_shaped_tokens() {
        let actions = FakeActions::start();
        let (status, discovery) = get(
            &actions,
            &format!("{}/.well-known/openid-configuration", actions.issuer()),
            None,
        );
        assert_eq!(status, 200);
        assert_eq!(discovery["issuer"], actions.issuer());
        let jwks_uri = discovery["jwks_uri"].as_str().expect("jwks_uri");
        assert_eq!(jwks_uri, format!("{}/.well-known/jwks", actions.issuer()));
        let (_, jwks) = get(&actions, jwks_uri, None);
        let key: CoreJsonWebKey = serde_json::from_value(jwks["keys"][0].clone()).expect("an RSA JWK");

        let mut job = Job::new("acme/app", "refs/tags/v1.2.0");
        job.environment = Some("prod".into());
        actions.set_job(job);
        let token = actions.mint("https://kubernetes.acme.test");
        let (input, signature) = token.rsplit_once('.').expect("a JWT");
        let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url signature");
        key.verify_signature(
            &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            input.as_bytes(),
            &signature,
        )
        .expect("the token verifies with the published key");
        let claims = jwt_claims(&token);
        assert_eq!(claims["sub"], "repo:acme/app:environment:prod");
        assert_eq!(claims["environment"], "prod");
        assert_eq!(claims["ref_type"], "tag");
        assert_eq!(claims["repository_owner"], "acme");

        let (url_var, bearer) = (&actions.env()[0].1, &actions.env()[1].1);
        let (status, refused) = get(&actions, url_var, None);
        assert_eq!(status, 401, "no bearer: {refused}");
        let (status, answer) = get(&actions, url_var, Some(bearer));
        assert_eq!(status, 200);
        let value = answer["value"].as_str().expect("the token in `value`");
        assert_eq!(answer["count"], value.len());
        assert_eq!(
            jwt_claims(value)["aud"],
            "https://github.com/acme",
            "GitHub's default audience"
        );
        assert_eq!(
            actions.token_requests(),
            1,
            "only the request with the bearer counts"
        );
    }
}
