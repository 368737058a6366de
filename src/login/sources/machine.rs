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
    #[allow(dead_code)]
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
            } => source.workload(from, audience.as_deref(), exchange.as_ref())?,
            Machine::ClientCredentials { audience } => source.client_credentials(audience.as_deref())?,
        };
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
