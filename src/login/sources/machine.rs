//! The pipeline sources: a CI job's own identity token (`--grant workload`), sent as it is or
//! exchanged at an issuer (RFC 8693), and OAuth 2.0 client credentials
//! (`--grant client-credentials`). Never a browser, never a prompt.
//!
//! A pipeline has nothing to refresh: when the cached token is within the expiry margin, the
//! pipeline's "login" ([`Connection::login`]) gets a new one from where it came (the CI system,
//! the token file or variable, the issuer). The lock and the cool-down of
//! [`crate::login::pipeline`] apply as for a person, so parallel kubectl calls cause one request.
//!
//! What is checked before a token is handed out: a job token sent as it is must be a JWT with
//! the asked audience and a future `exp` (the apiserver checks its signature against the CI
//! issuer); an exchanged token and a client's ID token are verified as a login's ID token is
//! (signature, issuer, client id, expiry); a client's JWT access token against the keys, the
//! issuer and `--audience` ([`crate::login::oidc::machine`]). A cache entry is served only to
//! the same kind of identity (its key includes the grant, source and audience; its kind is
//! checked on reading) and only while its token names the expected issuer and audience.

use std::ffi::OsString;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::Context;
use crate::config::{Exchange, Machine};
use crate::login::cache::EntryMeta;
use crate::login::oidc::Provider;
use crate::login::oidc::machine::ClientToken;
use crate::login::pipeline::{Connection, CredentialSource, Renewal};
use crate::login::token::{Credential, CredentialEntry, IdTokenInfo, TokenSet};
use crate::login::workload::{self, TokenSource};

/// The `kind` of a cache entry holding a CI job's token or a token exchanged for it.
pub const WORKLOAD_KIND: &str = "workload";
/// The `kind` of a cache entry holding a client credentials token.
pub const CLIENT_CREDENTIALS_KIND: &str = "client-credentials";

/// Reads an environment variable.
pub type Env = fn(&str) -> Option<OsString>;

/// A pipeline's credentials.
pub struct MachineSource<'a> {
    context: Context<'a>,
    machine: &'a Machine,
    env: Env,
}

impl<'a> MachineSource<'a> {
    /// The source for `context.identity`, whose pipeline grant is `machine`.
    pub fn new(context: Context<'a>, machine: &'a Machine) -> Self {
        Self {
            context,
            machine,
            env: |name| std::env::var_os(name),
        }
    }

    /// The same source reading variables through `env` (tests).
    #[cfg(test)]
    pub fn with_env(mut self, env: Env) -> Self {
        self.env = env;
        self
    }

    fn kind(&self) -> &'static str {
        match self.machine {
            Machine::ClientCredentials { .. } => CLIENT_CREDENTIALS_KIND,
            Machine::Workload { .. } => WORKLOAD_KIND,
        }
    }

    /// Whether a token with claims `info` is one this identity may hand out.
    fn fits(&self, info: &IdTokenInfo) -> bool {
        let identity = self.context.identity;
        match self.machine {
            Machine::Workload {
                audience,
                exchange: None,
                ..
            } => audience
                .as_deref()
                .is_some_and(|aud| info.audiences.iter().any(|a| a == aud)),
            Machine::Workload {
                exchange: Some(_), ..
            } => info.belongs_to(&identity.issuer, &identity.client_id),
            Machine::ClientCredentials { audience } => {
                info.issuer == identity.issuer
                    && (info.audiences.contains(&identity.client_id)
                        || audience
                            .as_deref()
                            .is_some_and(|aud| info.audiences.iter().any(|a| a == aud)))
            }
        }
    }
}

impl CredentialSource for MachineSource<'_> {
    fn read(&self, tokens: TokenSet, meta: EntryMeta) -> Result<CredentialEntry, String> {
        if meta.kind.as_deref() != Some(self.kind()) {
            return Err(format!(
                "ignoring a cached token of kind {:?}, not a {} token",
                crate::text::one_line(meta.kind.as_deref().unwrap_or("id-token"), 40),
                self.kind()
            ));
        }
        let entry = CredentialEntry::from_id_token(TokenSet {
            id_token: tokens.id_token,
            refresh_token: None,
        })
        .map_err(|err| format!("ignoring the cached token: {err}"))?;
        match entry.credential.id_token_info() {
            Some(info) if self.fits(info) => Ok(entry),
            _ => Err("ignoring a cached token issued for another issuer or audience".to_owned()),
        }
    }

    fn write(&self, entry: &CredentialEntry) -> (TokenSet, EntryMeta) {
        let meta = EntryMeta {
            kind: Some(self.kind().to_owned()),
            ..EntryMeta::default()
        };
        (
            TokenSet {
                id_token: entry.credential.token().clone(),
                refresh_token: None,
            },
            meta,
        )
    }

    fn valid_until(&self, entry: &CredentialEntry, _now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        entry.credential.id_token_info().map(|info| info.expiry)
    }

    fn renewable(&self, _entry: &CredentialEntry, _now: DateTime<Utc>) -> bool {
        false
    }

    fn connect(&self) -> anyhow::Result<Box<dyn Connection + '_>> {
        Ok(Box::new(MachineConnection { source: self }))
    }
}

/// Gets a new token when asked: nothing is prepared before (a file or variable source needs no
/// network at all).
struct MachineConnection<'s, 'a> {
    source: &'s MachineSource<'a>,
}

impl Connection for MachineConnection<'_, '_> {
    fn renew(&mut self, _entry: &CredentialEntry) -> Renewal {
        Renewal::LogIn { forget: false }
    }

    fn login(&mut self) -> anyhow::Result<CredentialEntry> {
        let source = self.source;
        let token = match source.machine {
            Machine::Workload {
                source: from,
                audience,
                exchange,
                ..
            } => source.workload(from, audience.as_deref(), exchange.as_ref())?,
            Machine::ClientCredentials { audience } => source.client_credentials(audience.as_deref())?,
        };
        // Whatever the source, kubectl gets nothing but a JWT in compact form (no prefix, no
        // blank, no control character that would make a malformed bearer).
        if !crate::login::token::is_compact_jws(secrecy::ExposeSecret::expose_secret(&token)) {
            anyhow::bail!("the token koidc got is not a JWT in compact form (three base64url parts)");
        }
        let entry = CredentialEntry::from_id_token(TokenSet {
            id_token: token,
            refresh_token: None,
        })
        .context("the token is not a readable JWT")?;
        Ok(entry)
    }
}

impl MachineSource<'_> {
    /// The job's token, checked, or the issuer's ID token for it.
    fn workload(
        &self,
        from: &TokenSource,
        audience: Option<&str>,
        exchange: Option<&Exchange>,
    ) -> anyhow::Result<SecretString> {
        let context = &self.context;
        let now = context.clock.now();
        let env = self.env;
        let mut runtime = None;
        let job_token = match workload::read_local(from, &env) {
            Some(token) => {
                context
                    .printer
                    .debug(format_args!("reading the job's token from {from}"));
                token?
            }
            None => {
                let audience =
                    audience.context("internal error: no audience for GitHub Actions; please report this")?;
                context.printer.debug(format_args!(
                    "requesting the job's token from GitHub Actions for audience {audience}"
                ));
                let rt = crate::runtime()?;
                let oidc = context.login.oidc(context.identity);
                let http = crate::login::oidc::http_client(&oidc)?;
                let token = rt.block_on(workload::request_github_actions(
                    &http,
                    audience,
                    oidc.http_timeout,
                    &env,
                ))?;
                runtime = Some(rt);
                token
            }
        };
        workload::check_job_token(&job_token, from, audience, now)?;
        let Some(exchange) = exchange else {
            return Ok(job_token);
        };
        let rt = match runtime {
            Some(rt) => rt,
            None => crate::runtime()?,
        };
        let oidc = context.login.oidc(context.identity);
        context.printer.debug(format_args!(
            "exchanging the job's token at {}",
            context.identity.issuer
        ));
        let exchanged = rt.block_on(async {
            let provider = Provider::discover(&oidc, context.clock.clone()).await?;
            provider
                .exchange_token(&job_token, exchange.connector_id.as_deref())
                .await
        })?;
        Ok(exchanged)
    }

    /// The client's own token.
    fn client_credentials(&self, audience: Option<&str>) -> anyhow::Result<SecretString> {
        let context = &self.context;
        let rt = crate::runtime()?;
        let oidc = context.login.oidc(context.identity);
        if oidc.client_secret.is_none() {
            return Err(crate::login::oidc::OidcError::NoClientSecret.into());
        }
        context.printer.debug(format_args!(
            "asking {} for the client's token",
            context.identity.issuer
        ));
        let token = rt.block_on(async {
            let provider = Provider::discover(&oidc, context.clock.clone()).await?;
            provider.client_credentials(audience).await
        })?;
        Ok(match token {
            ClientToken::IdToken(token) | ClientToken::AccessToken(token) => token,
        })
    }
}

/// The credential of a pipeline's cache entry, for `whoami` (read offline).
pub fn read_entry(tokens: TokenSet) -> anyhow::Result<Credential> {
    let info = IdTokenInfo::decode_secret(&tokens.id_token)?;
    Ok(Credential::IdToken {
        token: tokens.id_token,
        info,
    })
}

#[cfg(test)]
mod tests {
    //! The workload source with a token file and a token variable, a store in memory and a fixed
    //! clock, driven through the pipeline: what is served, when the file is read again, and what
    //! is refused.

    use std::sync::Arc;

    use base64::Engine as _;
    use chrono::TimeZone as _;
    use secrecy::ExposeSecret as _;

    use super::*;
    use crate::clock::Clock;
    use crate::config::{CacheConfig, Identity};
    use crate::login::browser::BrowserChoice;
    use crate::login::cache::test_support::{MemoryStore, TempDir};
    use crate::login::cache::{CacheKind, TokenStore};
    use crate::login::pipeline::{Authenticator, Source};
    use crate::login::sources::test_support::login_config;
    use crate::printer::Printer;
    use crate::provider::ProviderKind;

    struct Fixed(DateTime<Utc>);
    impl Clock for Fixed {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn job_token(aud: &str, exp: DateTime<Utc>, run: u32) -> String {
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = serde_json::json!({
            "iss": "https://token.actions.githubusercontent.com", "aud": aud,
            "sub": "repo:acme/app:ref:refs/heads/main", "exp": exp.timestamp(), "run_id": run,
        });
        format!(
            "{}.{}.c2ln",
            enc.encode(r#"{"alg":"RS256"}"#),
            enc.encode(claims.to_string())
        )
    }

    /// A workload identity whose token the cache keeps for the job `job` (as for GitHub Actions,
    /// or an exchange); production reads a file or variable sent as it is on every call instead
    /// (`Machine::uses_cache`), which these tests also cover by the same source.
    fn workload(source: TokenSource, audience: &str) -> Identity {
        Identity {
            issuer: source.to_string(),
            client_id: audience.to_owned(),
            scopes: Vec::new(),
            provider: ProviderKind::Generic,
            github: None,
            profile: None,
            machine: Some(Machine::Workload {
                source,
                audience: Some(audience.to_owned()),
                exchange: None,
                job: Some("job-1".to_owned()),
            }),
            audience: None,
            token_type: Default::default(),
            auth_params: Default::default(),
        }
    }

    /// Runs `obtain` for `identity` against `store`.
    fn obtain(
        identity: &Identity,
        store: &MemoryStore,
        dir: &TempDir,
        env: Env,
    ) -> anyhow::Result<(String, Source)> {
        let login = crate::config::LoginConfig {
            browser: BrowserChoice::None,
            ..login_config()
        };
        let browser = BrowserChoice::None.into_browser();
        let clock: Arc<dyn Clock> = Arc::new(Fixed(now()));
        let context = Context {
            identity,
            login: &login,
            browser: browser.as_ref(),
            clock: clock.clone(),
            printer: Printer::new(0),
        };
        let source = MachineSource::new(context, identity.machine.as_ref().unwrap()).with_env(env);
        let cache = CacheConfig {
            kind: CacheKind::File,
            dir: dir.path().to_owned(),
        };
        let auth = Authenticator {
            identity,
            cache: &cache,
            store,
            clock,
            printer: Printer::new(0),
            source: &source,
        };
        let got = auth.obtain(&login, false)?;
        Ok((got.token().expose_secret().to_owned(), got.source))
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    #[test]
    fn a_token_file_is_read_once_and_served_from_the_cache_until_its_margin_then_read_again() {
        let dir = TempDir::new("workload");
        std::fs::create_dir_all(dir.path()).unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let file = dir.path().join("token");
        let first = job_token("kubernetes", now() + chrono::Duration::minutes(10), 1);
        std::fs::write(&file, format!("{first}\n")).unwrap();
        let identity = workload(TokenSource::File(file.clone()), "kubernetes");
        let store = MemoryStore::default();

        let (token, source) = obtain(&identity, &store, &dir, no_env).unwrap();
        assert_eq!((token.as_str(), source), (first.as_str(), Source::Login));
        // The kubelet rotates the file: the cached token is served while it has time left.
        let second = job_token("kubernetes", now() + chrono::Duration::minutes(20), 2);
        std::fs::write(&file, &second).unwrap();
        let (token, source) = obtain(&identity, &store, &dir, no_env).unwrap();
        assert_eq!((token.as_str(), source), (first.as_str(), Source::Cache));
        // Within the margin, the file is read again.
        let (tokens, meta) = store.load_with_meta(&identity.cache_key()).unwrap().unwrap();
        assert_eq!(meta.kind.as_deref(), Some(WORKLOAD_KIND));
        assert!(tokens.refresh_token.is_none());
        let due = job_token("kubernetes", now() + chrono::Duration::seconds(30), 3);
        store
            .save_with_meta(
                &identity.cache_key(),
                &TokenSet {
                    id_token: SecretString::from(due),
                    refresh_token: None,
                },
                &meta,
            )
            .unwrap();
        let (token, source) = obtain(&identity, &store, &dir, no_env).unwrap();
        assert_eq!((token.as_str(), source), (second.as_str(), Source::Login));
    }

    #[test]
    fn a_job_token_for_another_audience_or_already_expired_is_refused_and_never_cached() {
        let dir = TempDir::new("workload");
        std::fs::create_dir_all(dir.path()).unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let file = dir.path().join("token");
        let store = MemoryStore::default();
        let identity = workload(TokenSource::File(file.clone()), "kubernetes");

        std::fs::write(
            &file,
            job_token(
                "https://github.com/acme",
                now() + chrono::Duration::minutes(10),
                1,
            ),
        )
        .unwrap();
        let err = format!("{:#}", obtain(&identity, &store, &dir, no_env).unwrap_err());
        assert!(err.contains("not for --audience kubernetes"), "{err}");
        assert!(err.contains("`https://github.com/acme`"), "{err}");

        std::fs::write(
            &file,
            job_token("kubernetes", now() - chrono::Duration::minutes(1), 1),
        )
        .unwrap();
        let err = format!("{:#}", obtain(&identity, &store, &dir, no_env).unwrap_err());
        assert!(err.contains("expired") && err.contains("kubelet"), "{err}");

        std::fs::write(&file, "not-a-jwt").unwrap();
        let err = format!("{:#}", obtain(&identity, &store, &dir, no_env).unwrap_err());
        assert!(err.contains("is not a JWT"), "{err}");
        assert!(!err.contains("not-a-jwt"), "the token is repeated: {err}");

        assert!(store.load_with_meta(&identity.cache_key()).unwrap().is_none());
    }

    #[test]
    fn a_cached_entry_of_another_kind_or_audience_is_not_served_to_a_pipeline() {
        let dir = TempDir::new("workload");
        let store = MemoryStore::default();
        fn env(name: &str) -> Option<OsString> {
            (name == "CI_TOKEN").then(|| {
                OsString::from(job_token(
                    "kubernetes",
                    Utc.with_ymd_and_hms(2026, 1, 1, 0, 10, 0).unwrap(),
                    9,
                ))
            })
        }
        let identity = workload(TokenSource::Env("CI_TOKEN".into()), "kubernetes");
        // A person's entry (no kind) under the same key: refused, replaced by the job's token.
        let person = job_token("kubernetes", now() + chrono::Duration::hours(1), 1);
        store
            .save_with_meta(
                &identity.cache_key(),
                &TokenSet {
                    id_token: SecretString::from(person.clone()),
                    refresh_token: None,
                },
                &EntryMeta::default(),
            )
            .unwrap();
        let (token, source) = obtain(&identity, &store, &dir, env).unwrap();
        assert_ne!(token, person);
        assert_eq!(source, Source::Login);
        // Another audience is another key, and a token for the first never serves it.
        let other = workload(TokenSource::Env("CI_TOKEN".into()), "other-cluster");
        assert_ne!(other.cache_key().id(), identity.cache_key().id());
        let err = format!("{:#}", obtain(&other, &store, &dir, env).unwrap_err());
        assert!(err.contains("not for --audience other-cluster"), "{err}");
    }
}
