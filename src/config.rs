//! Validated configuration: the raw flags of [`crate::cli`] checked and turned into types, with
//! the precedence of the option's sources applied here and nowhere else.
//!
//! Precedence: command-line flag, then `KOIDC_*` variable, then profile, then default. The
//! parser settles the first two (clap and the warm-path parser read the variable of an option
//! absent from the command line) and leaves an option that neither gives `None`;
//! [`apply_profile`] fills those from the chosen profile of the config file
//! ([`crate::profile`] reads and checks the file); the constructors below
//! (`Identity::from_flags`, `LoginConfig::from_flags`, `CacheConfig::from_flags`) apply the
//! defaults to what is still `None` (the timeout's is [`DEFAULT_TIMEOUT`], the enums' are their
//! `#[default]` variants).
//!
//! Everything that can be wrong with the user's input is found here, before any file, keyring or
//! network is touched, and reported as one clear line.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

use clap::ValueEnum;

use crate::cli::ProviderArg;
use crate::cli::options::DEFAULT_TIMEOUT;
use crate::cli::{CacheArg, CacheFlags, Cli, Command, GrantArg, IdentityFlags, LoginFlags, TokenTypeArg};
use crate::login::browser::BrowserChoice;
use crate::login::cache::{CacheKey, CacheKind};
use crate::login::loopback::RedirectHost;
use crate::login::oidc::OidcConfig;
use crate::login::oidc::request::{AuthParams, ProviderRequest, RequestError, RequestHeaders, TokenType};
use crate::login::workload::TokenSource;
use crate::profile::{ConfigFile, Profile, ProfileError, config_path};
use crate::provider::ProviderKind;

pub use crate::http::HTTP_TIMEOUT;

/// Invalid input.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required flag is missing.
    #[error("missing --{flag} (or {env}); {hint}")]
    Missing {
        /// Flag name without dashes.
        flag: &'static str,
        /// Its environment variable.
        env: &'static str,
        /// What to do.
        hint: &'static str,
    },
    /// The issuer is not a usable URL.
    #[error("invalid --issuer {url:?}: {reason}")]
    Issuer {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A listen address is not a loopback socket address.
    #[error("invalid --listen {addr:?}: {reason}")]
    Listen {
        /// The address given.
        addr: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// `--redirect-host` is none of the loopback names koidc can listen on.
    #[error(
        "invalid --redirect-host {0:?}: give localhost, 127.0.0.1 or ::1 (the host your IdP registered in http://HOST:PORT/callback); the callback listens on this machine's loopback only"
    )]
    RedirectHost(String),
    /// A `--listen` address the redirect host cannot reach.
    #[error("--listen {listen} does not match --redirect-host {host}: {hint}")]
    RedirectHostListen {
        /// The listen address.
        listen: SocketAddr,
        /// The redirect host, as koidc writes it.
        host: &'static str,
        /// What to give instead.
        hint: &'static str,
    },
    /// A scope contains characters OAuth does not allow.
    #[error("invalid --scope {0:?}: a scope is one word of printable ASCII without quotes or backslashes")]
    Scope(String),
    /// An empty client id.
    #[error("--client-id must not be empty")]
    EmptyClientId,
    /// The timeout is zero or absurd.
    #[error("--timeout must be between 1 and 86400 seconds")]
    Timeout,
    /// Keyboard mode asked for together with the device grant.
    #[error("--paste is for the authorization code grant; drop it or use --grant authcode")]
    PasteWithDeviceCode,
    /// Keyboard mode asked for with a pipeline grant.
    #[error("--paste is for a person's browser login; pipeline grants never prompt")]
    PasteForMachine,
    /// No cache directory can be derived.
    #[error("cannot find a cache directory (HOME is not set); pass --cache-dir")]
    NoCacheDir,
    /// `--issuer` given with `--provider github`, which has none.
    #[error(
        "--provider github takes no --issuer (GitHub is not an OpenID Connect issuer); give --github-url for GitHub Enterprise Server"
    )]
    IssuerWithGithub,
    /// `--github-url` or `--github-api-url` is not usable.
    #[error(transparent)]
    Github(#[from] crate::login::github::GithubError),
    /// A pipeline option given for a person's login.
    #[error(
        "--{flag} is for pipelines: add --grant workload (the CI job's token) or --grant client-credentials"
    )]
    MachineOnly {
        /// Flag name without dashes.
        flag: &'static str,
    },
    /// A `--grant workload` option given with client credentials.
    #[error("--{flag} is for --grant workload, not --grant client-credentials")]
    WorkloadOnly {
        /// Flag name without dashes.
        flag: &'static str,
    },
    /// A pipeline grant with `--provider github`.
    #[error(
        "--provider github has no pipeline grant; pipelines use --grant workload (the CI job's OpenID Connect token) or --grant client-credentials at an OpenID Connect issuer"
    )]
    MachineWithGithub,
    /// `--token-source` cannot be used.
    #[error(transparent)]
    TokenSource(#[from] crate::login::workload::SourceError),
    /// `--grant workload` without the audience it must check.
    #[error(
        "missing --audience (or KOIDC_AUDIENCE) for --grant workload with --token-source {token_source}: the audience the apiserver expects in the job's token (the one `koidc setup --ci` configured)"
    )]
    WorkloadAudience {
        /// The token source, as given.
        token_source: String,
    },
    /// An exchange option without `--issuer`.
    #[error(
        "--{flag} is for a token exchange, which needs --issuer (the issuer that exchanges the job's token); without --issuer the job's token is sent as it is"
    )]
    ExchangeWithoutIssuer {
        /// Flag name without dashes.
        flag: &'static str,
    },
    /// An empty or unprintable `--audience`.
    #[error("--audience must be one line of printable text (at most 1024 bytes), not empty")]
    Audience,
    /// `--token-type access` without `--audience`: an access token names the API it is for in
    /// its `aud`, and only that tells a token for this cluster from one for another API (whose
    /// owner a cluster's operator could then impersonate).
    #[error(
        "--token-type access needs --audience AUD: the audience your apiserver requires in the access token's aud (e.g. api://kubernetes); koidc hands out no access token meant for another API"
    )]
    AccessWithoutAudience,
    /// An empty `--connector-id`.
    #[error("--connector-id must not be empty")]
    EmptyConnectorId,
    /// A person's `--audience` at an IdP that koidc cannot ask for a token per audience.
    #[error(
        "--audience (or the cluster's audience) needs a token for that audience, which koidc gets from {provider} in neither of the two ways: Dex cross-client trust (--provider dex; the cluster's client lists this client in trustedPeers) or an RFC 8693 token exchange (not supported by koidc yet); remove the audience or use a Dex issuer"
    )]
    NoAudienceWay {
        /// The provider, by name.
        provider: &'static str,
    },
    /// An audience Dex cannot be asked for in a scope.
    #[error(
        "--audience with Dex is the cluster's Dex client id, asked for in the scope audience:server:client_id:AUD: it has no blanks"
    )]
    AudienceScope,
    /// A `--auth-param` or `--request-header` that cannot be sent.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// An option of a person's OpenID Connect login given for a pipeline grant or GitHub.
    #[error(
        "--{flag} is for a person's OpenID Connect login (browser or device code); pipeline grants and --provider github do not use it"
    )]
    PersonOnly {
        /// Flag name without dashes.
        flag: &'static str,
    },
}

/// The first option of a person's OpenID Connect login that `flags` sets, by name.
fn person_only_flag(flags: &IdentityFlags) -> Option<&'static str> {
    if flags.token_type == Some(TokenTypeArg::Access) {
        Some("token-type")
    } else if flags.auth_params.as_ref().is_some_and(|p| !p.is_empty()) {
        Some("auth-param")
    } else {
        None
    }
}

/// The first pipeline-only option `flags` sets, by name (`--audience` is a person's too: a
/// cluster's audience, or the access token's with `--token-type access`).
fn machine_only_flag(flags: &IdentityFlags) -> Option<&'static str> {
    if flags.token_source.is_some() {
        Some("token-source")
    } else if flags.connector_id.is_some() {
        Some("connector-id")
    } else {
        None
    }
}

/// `--audience`, refused when empty or not one printable line (it is sent to the CI system and
/// compared byte for byte with the token's `aud`).
fn non_empty_audience(raw: Option<&str>) -> Result<Option<String>, ConfigError> {
    match raw {
        None => Ok(None),
        Some(a) if a.trim().is_empty() => Err(ConfigError::Audience),
        Some(a) if a.chars().any(char::is_control) || a.len() > 1024 => Err(ConfigError::Audience),
        Some(a) => Ok(Some(a.to_owned())),
    }
}

/// Where the tokens are kept.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// The store.
    pub kind: CacheKind,
    /// Directory of cache and lock files.
    pub dir: PathBuf,
}

impl CacheConfig {
    /// From `--cache` and `--cache-dir`.
    pub fn from_flags(flags: &CacheFlags) -> Result<Self, ConfigError> {
        let kind = match flags.cache.unwrap_or_default() {
            CacheArg::Keyring => CacheKind::Keyring,
            CacheArg::File => CacheKind::File,
            CacheArg::None => CacheKind::None,
        };
        let dir = match &flags.cache_dir {
            Some(dir) => absolute(dir),
            None => default_cache_dir().ok_or(ConfigError::NoCacheDir)?,
        };
        Ok(Self { kind, dir })
    }
}

/// Which identity: issuer, client and scopes.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The issuer URL, exactly as given.
    pub issuer: String,
    /// The client id.
    pub client_id: String,
    /// Scopes besides `openid`, sorted and deduplicated: the user's plus the provider preset's
    /// (so they are part of the cache key).
    pub scopes: Vec<String>,
    /// The identity provider (`--provider`, `auto` resolved from the issuer).
    pub provider: ProviderKind,
    /// Where GitHub is, for `--provider github` (then `issuer` is GitHub's web address).
    pub github: Option<crate::login::github::GithubUrls>,
    /// The config-file profile in use (`--profile`), part of the cache key: two profiles with
    /// the same issuer, client and scopes are two accounts.
    pub profile: Option<String>,
    /// A pipeline's identity (`--grant client-credentials` or `workload`); `None` for a person.
    pub machine: Option<Machine>,
    /// A person's token for one cluster (`--audience`, or the cluster's exec extension);
    /// `None`: the token's audience is the client id, as always. A pipeline's audience is
    /// in [`Machine`].
    pub audience: Option<Audience>,
    /// `--token-type` (with `--audience` for the access token).
    pub token_type: TokenType,
    /// `--auth-param`; `login_hint` is part of the cache key.
    pub auth_params: AuthParams,
}

/// The audience a person's token is for (one cluster), and how it is obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience {
    /// The audience the token's `aud` must contain (the cluster's client id at the IdP).
    pub value: String,
    /// How the IdP is asked for it.
    pub way: AudienceWay,
}

/// How a token for another audience than koidc's client is obtained. An IdP that offers none
/// of them gets [`ConfigError::NoAudienceWay`], never a token for the client's own audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudienceWay {
    /// Dex cross-client trust: the scope `audience:server:client_id:AUD` (in
    /// [`Identity::scopes`], hence in the cache key); Dex's ID token then names AUD and the
    /// client in `aud`, and the client in `azp`. (RFC 8693 token exchange is the other way.)
    DexCrossClient,
}

/// The scope that asks Dex for a token whose `aud` names the client `audience`.
pub const DEX_AUDIENCE_SCOPE: &str = "audience:server:client_id:";

/// How a pipeline gets its credential: never a browser, never a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Machine {
    /// OAuth 2.0 client credentials at the issuer (`--grant client-credentials`): the ID token
    /// when the IdP returns one, else the access token when it is a JWT for `audience`.
    ClientCredentials {
        /// `--audience`: the audience an access token must carry.
        audience: Option<String>,
    },
    /// The CI job's own identity token (`--grant workload`).
    Workload {
        /// Where the job's token comes from.
        source: TokenSource,
        /// `--audience`: asked of GitHub Actions, and required in the job's token.
        audience: Option<String>,
        /// With `--issuer`: exchanged there (RFC 8693) for the issuer's ID token, checked by
        /// this Dex connector (`--connector-id`) when given. `None`: the job's token is the
        /// credential (the identity's issuer is then the source's name, its client the audience).
        exchange: Option<Exchange>,
        /// The job a cached token belongs to ([`crate::login::workload::job_binding`]), part of
        /// the cache key; `None` when the source cannot say, or reads its token on every call.
        job: Option<String>,
    },
}

/// Where `--grant workload` exchanges the job's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// `--connector-id` (Dex).
    pub connector_id: Option<String>,
}

impl Machine {
    /// Whether a token may be cached for this pipeline. A job token from a file or a variable,
    /// sent as it is, is read on every call instead (cheaper than the cache, and never another
    /// job's); a token from GitHub Actions or an exchange is cached for its job only.
    pub fn uses_cache(&self) -> bool {
        match self {
            Machine::ClientCredentials { .. } => true,
            Machine::Workload { job, .. } => job.is_some(),
        }
    }

    /// Whether getting a token asks a service (GitHub Actions, an issuer), rather than reading a
    /// file or a variable only.
    pub fn asks_a_service(&self) -> bool {
        !matches!(
            self,
            Machine::Workload {
                source: TokenSource::File(_) | TokenSource::Env(_),
                exchange: None,
                ..
            }
        )
    }

    /// What the machine identity adds to the cache key, so that a pipeline's entry is never
    /// served to a person of the same issuer and client (or to another source, audience or job).
    fn key_part(&self) -> String {
        match self {
            Machine::ClientCredentials { audience } => {
                format!("client-credentials\n{}", audience.as_deref().unwrap_or_default())
            }
            Machine::Workload {
                source,
                audience,
                exchange,
                job,
            } => format!(
                "workload\n{source}\n{}\n{}\n{}",
                audience.as_deref().unwrap_or_default(),
                exchange
                    .as_ref()
                    .and_then(|e| e.connector_id.as_deref())
                    .unwrap_or_default(),
                job.as_deref().unwrap_or_default()
            ),
        }
    }
}

impl Identity {
    /// From `--issuer`, `--client-id`, `--scope` and `--grant` (with `--audience`,
    /// `--token-source` and `--connector-id` for the pipeline grants): issuer and client id are
    /// required, except for `--grant workload` without an exchange.
    pub fn from_flags(flags: &IdentityFlags, grant: Option<GrantArg>) -> Result<Self, ConfigError> {
        Self::from_flags_with(flags, grant, &|name| std::env::var_os(name))
    }

    /// [`Self::from_flags`] with the environment passed in (it says whether GitHub Actions offers
    /// the job a token).
    pub fn from_flags_with(
        flags: &IdentityFlags,
        grant: Option<GrantArg>,
        env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Self, ConfigError> {
        let machine = matches!(grant, Some(GrantArg::ClientCredentials | GrantArg::Workload));
        if (machine || flags.provider == Some(ProviderArg::Github))
            && let Some(flag) = person_only_flag(flags)
        {
            return Err(ConfigError::PersonOnly { flag });
        }
        match grant {
            Some(GrantArg::ClientCredentials) => return Self::client_credentials(flags),
            Some(GrantArg::Workload) => return Self::workload(flags, env),
            _ => {}
        }
        if let Some(flag) = machine_only_flag(flags) {
            return Err(ConfigError::MachineOnly { flag });
        }
        Self::person(flags)?.for_audience(flags.audience.as_deref())
    }

    /// This person's identity for a token for `audience` (`None`: the client's own).
    fn for_audience(mut self, audience: Option<&str>) -> Result<Self, ConfigError> {
        let Some(value) = non_empty_audience(audience)? else {
            return Ok(self);
        };
        if matches!(self.token_type, TokenType::Access { .. }) {
            // `--token-type access`: the audience the access token must carry (checked there).
            return Ok(self);
        }
        let way = match self.provider {
            ProviderKind::Dex => AudienceWay::DexCrossClient,
            ProviderKind::Generic => {
                return Err(ConfigError::NoAudienceWay {
                    provider: "this issuer",
                });
            }
            ProviderKind::Okta => return Err(ConfigError::NoAudienceWay { provider: "Okta" }),
            ProviderKind::Github => return Err(ConfigError::NoAudienceWay { provider: "GitHub" }),
        };
        match way {
            AudienceWay::DexCrossClient => {
                if value.chars().any(char::is_whitespace) {
                    return Err(ConfigError::AudienceScope);
                }
                self.scopes.push(format!("{DEX_AUDIENCE_SCOPE}{value}"));
                self.scopes = normalize_scopes(&self.scopes)?;
            }
        }
        self.audience = Some(Audience { value, way });
        Ok(self)
    }

    /// `--grant client-credentials`: an OpenID Connect client at its issuer.
    fn client_credentials(flags: &IdentityFlags) -> Result<Self, ConfigError> {
        if flags.token_source.is_some() || flags.connector_id.is_some() {
            return Err(ConfigError::WorkloadOnly {
                flag: if flags.token_source.is_some() {
                    "token-source"
                } else {
                    "connector-id"
                },
            });
        }
        if flags.provider == Some(ProviderArg::Github) {
            return Err(ConfigError::MachineWithGithub);
        }
        let audience = non_empty_audience(flags.audience.as_deref())?;
        let mut identity = Self::person(flags)?;
        // A provider's preset scopes are a person's (`offline_access`, `groups`, `email`): an
        // IdP refuses them for a client's own token (Okta does). Only the user's are asked for.
        identity.scopes = normalize_scopes(flags.scopes.as_deref().unwrap_or_default())?;
        identity.machine = Some(Machine::ClientCredentials { audience });
        Ok(identity)
    }

    /// `--grant workload`: the job's token, exchanged at `--issuer` when one is given.
    fn workload(
        flags: &IdentityFlags,
        env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Self, ConfigError> {
        if flags.provider == Some(ProviderArg::Github) {
            return Err(ConfigError::MachineWithGithub);
        }
        let actions = env(crate::login::workload::ACTIONS_URL_VAR).is_some_and(|v| !v.is_empty());
        let source = TokenSource::resolve(flags.token_source.as_deref(), actions)?;
        let audience = non_empty_audience(flags.audience.as_deref())?;
        if audience.is_none() && (source == TokenSource::GithubActions || flags.issuer.is_none()) {
            return Err(ConfigError::WorkloadAudience {
                token_source: source.to_string(),
            });
        }
        if flags.issuer.is_none() {
            if flags.client_id.is_some() || flags.connector_id.is_some() {
                return Err(ConfigError::ExchangeWithoutIssuer {
                    flag: if flags.client_id.is_some() {
                        "client-id"
                    } else {
                        "connector-id"
                    },
                });
            }
            if flags.scopes.as_ref().is_some_and(|s| !s.is_empty()) {
                return Err(ConfigError::ExchangeWithoutIssuer { flag: "scope" });
            }
            let audience = audience.unwrap_or_default();
            // A file or a variable is read on every call; GitHub's token is cached per job.
            let job = (source == TokenSource::GithubActions)
                .then(|| crate::login::workload::job_binding(&source, env))
                .flatten();
            return Ok(Self {
                issuer: source.to_string(),
                client_id: audience.clone(),
                scopes: Vec::new(),
                provider: ProviderKind::Generic,
                github: None,
                profile: flags.profile.clone(),
                token_type: TokenType::Id,
                auth_params: AuthParams::default(),
                machine: Some(Machine::Workload {
                    source,
                    audience: Some(audience),
                    exchange: None,
                    job,
                }),
                audience: None,
            });
        }
        let connector_id = match flags.connector_id.as_deref().map(str::trim) {
            Some("") => return Err(ConfigError::EmptyConnectorId),
            other => other.map(str::to_owned),
        };
        let mut identity = Self::person(flags)?;
        // Nothing to refresh: a provider preset's `offline_access` is not asked for (nor part
        // of the key).
        identity.scopes.retain(|s| s != "offline_access");
        // The exchanged token is cached for the job whose token it was exchanged for.
        let job = crate::login::workload::job_binding(&source, env);
        identity.machine = Some(Machine::Workload {
            source,
            audience,
            exchange: Some(Exchange { connector_id }),
            job,
        });
        Ok(identity)
    }

    /// A person's identity at an OpenID Connect issuer (or GitHub).
    fn person(flags: &IdentityFlags) -> Result<Self, ConfigError> {
        if flags.provider == Some(ProviderArg::Github) {
            return Self::github_from_flags(flags);
        }
        let issuer = flags.issuer.clone().ok_or(ConfigError::Missing {
            flag: "issuer",
            env: "KOIDC_ISSUER",
            hint: "the URL of your OpenID Connect provider, e.g. https://dex.example.com, or --profile NAME for a profile of the config file",
        })?;
        let client_id = flags.client_id.clone().ok_or(ConfigError::Missing {
            flag: "client-id",
            env: "KOIDC_CLIENT_ID",
            hint: "the client id registered for kubectl at your provider",
        })?;
        let issuer = normalize_issuer(issuer)?;
        if client_id.trim().is_empty() {
            return Err(ConfigError::EmptyClientId);
        }
        let provider = ProviderKind::resolve(provider_choice(flags.provider.unwrap_or_default()), &issuer);
        let mut raw = flags.scopes.clone().unwrap_or_default();
        raw.extend(provider.preset_scopes().iter().map(|s| (*s).to_owned()));
        let scopes = normalize_scopes(&raw)?;
        let token_type = match flags.token_type.unwrap_or_default() {
            TokenTypeArg::Id => TokenType::Id,
            TokenTypeArg::Access => TokenType::Access {
                audience: Some(
                    non_empty_audience(flags.audience.as_deref())?
                        .ok_or(ConfigError::AccessWithoutAudience)?,
                ),
            },
        };
        Ok(Self {
            issuer,
            client_id,
            scopes,
            provider,
            github: None,
            profile: flags.profile.clone(),
            machine: None,
            audience: None,
            token_type,
            auth_params: AuthParams::parse(flags.auth_params.as_deref().unwrap_or_default())?,
        })
    }

    /// `--provider github`: GitHub's web address (`--github-url`) stands in for the issuer.
    fn github_from_flags(flags: &IdentityFlags) -> Result<Self, ConfigError> {
        if flags.issuer.is_some() {
            return Err(ConfigError::IssuerWithGithub);
        }
        let client_id = flags.client_id.clone().ok_or(ConfigError::Missing {
            flag: "client-id",
            env: "KOIDC_CLIENT_ID",
            hint: "the client id of the GitHub OAuth app (or GitHub App) registered for kubectl",
        })?;
        if client_id.trim().is_empty() {
            return Err(ConfigError::EmptyClientId);
        }
        let urls = crate::login::github::GithubUrls::new(
            flags.github.github_url.as_deref(),
            flags.github.github_api_url.as_deref(),
        )?;
        let provider = ProviderKind::Github;
        let mut raw = flags.scopes.clone().unwrap_or_default();
        raw.extend(provider.preset_scopes().iter().map(|s| (*s).to_owned()));
        Ok(Self {
            issuer: urls.web.clone(),
            client_id,
            scopes: normalize_scopes(&raw)?,
            provider,
            github: Some(urls),
            profile: flags.profile.clone(),
            machine: None,
            audience: None,
            token_type: TokenType::Id,
            auth_params: AuthParams::default(),
        })
    }

    /// Like [`Identity::from_flags`], but `None` when the flags name no identity (neither issuer
    /// nor client id, and no pipeline grant).
    pub fn optional_from_flags(
        flags: &IdentityFlags,
        grant: Option<GrantArg>,
    ) -> Result<Option<Self>, ConfigError> {
        let machine = matches!(grant, Some(GrantArg::ClientCredentials | GrantArg::Workload));
        if flags.issuer.is_none() && flags.client_id.is_none() && !machine {
            return Ok(None);
        }
        Self::from_flags(flags, grant).map(Some)
    }

    /// The cache key of this identity.
    pub fn cache_key(&self) -> CacheKey {
        CacheKey::new(&self.issuer, &self.client_id, &self.scopes)
            .with_profile(self.profile.clone())
            .with_machine(self.machine.as_ref().map(Machine::key_part))
            .with_variant(self.variant_key_part())
    }

    /// What the token type and the account asked for (`login_hint`) add to the cache key:
    /// an access token is another credential than the ID token of the same login, and two
    /// login hints are two accounts. `None` for an ID token without a hint (the ids of entries
    /// written before these options existed are unchanged). Other `--auth-param` values do not
    /// change whose token it is, so they share the entry.
    fn variant_key_part(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let TokenType::Access { audience } = &self.token_type {
            parts.push(format!(
                "access-token\n{}",
                audience.as_deref().unwrap_or_default()
            ));
        }
        if let Some(hint) = self.auth_params.login_hint() {
            parts.push(format!("login_hint\n{hint}"));
        }
        (!parts.is_empty()).then(|| parts.join("\n"))
    }
}

/// Everything a login needs besides the identity.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// Client secret for confidential clients.
    pub client_secret: Option<SecretString>,
    /// Loopback addresses to try, in order, as given with `--listen`; empty when not given: then
    /// the provider's defaults apply (see [`LoginConfig::listen_for`]).
    pub listen: Vec<SocketAddr>,
    /// How to open the login page.
    pub browser: BrowserChoice,
    /// How long to wait for the browser login.
    pub timeout: Duration,
    /// Extra trusted CA files.
    pub certificate_authorities: Vec<PathBuf>,
    /// Extra trusted CAs as the base64 of PEM text (`--certificate-authority-data`), checked
    /// when an HTTP client is built (never on the cached-token path).
    pub certificate_authority_data: Option<String>,
    /// Which grant logs in.
    pub grant: Grant,
    /// Keyboard mode: also take the redirected URL or the code from stdin.
    pub paste: bool,
    /// The host the redirect URI names; with [`RedirectHost::Address`], `redirect_ip` (when set)
    /// is the address every callback candidate listens on.
    pub redirect_host: RedirectHost,
    /// `--redirect-host 127.0.0.1` or `::1`: the callback's address.
    pub redirect_ip: Option<IpAddr>,
    /// `--force-refresh`: renew a cached token that is still valid.
    pub force_refresh: bool,
    /// `--request-header`: sent with every request to the identity provider.
    pub request_headers: RequestHeaders,
    /// `--pkce`: false leaves PKCE out of the authorization code grant.
    pub pkce: bool,
    /// `spec.interactive` of `KUBERNETES_EXEC_INFO` when kubectl runs koidc (`None` otherwise);
    /// set by `get-token`. Non-interactive calls get no stdin and obey the login cool-down.
    pub kubectl_interactive: Option<bool>,
}

/// Which OAuth grant performs a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Authorization code, or device code when no browser can be shown (see `--grant`).
    Auto,
    /// Authorization code + PKCE.
    AuthCode,
    /// Device authorization grant (RFC 8628).
    DeviceCode,
}

impl LoginConfig {
    /// From the login flags; `env_browser` is the `BROWSER` variable.
    pub fn from_flags(flags: &LoginFlags, env_browser: Option<String>) -> Result<Self, ConfigError> {
        let listen = flags
            .listen
            .iter()
            .flatten()
            .filter(|raw| !raw.trim().is_empty())
            .map(|raw| parse_listen(raw))
            .collect::<Result<Vec<_>, _>>()?;
        let timeout = flags.timeout.unwrap_or(DEFAULT_TIMEOUT);
        if timeout == 0 || timeout > 86_400 {
            return Err(ConfigError::Timeout);
        }
        let client_secret = flags
            .client_secret
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(|s| SecretString::from(s.clone()));
        let grant = match flags.grant.unwrap_or_default() {
            GrantArg::Auto => Grant::Auto,
            GrantArg::Authcode => Grant::AuthCode,
            GrantArg::DeviceCode => Grant::DeviceCode,
            // A pipeline's grant is part of its identity (`Identity::machine`), whose source
            // never opens a login page: no person's grant applies.
            GrantArg::ClientCredentials | GrantArg::Workload => {
                if flags.paste {
                    return Err(ConfigError::PasteForMachine);
                }
                Grant::Auto
            }
        };
        if flags.paste && grant == Grant::DeviceCode {
            return Err(ConfigError::PasteWithDeviceCode);
        }
        let (redirect_host, redirect_ip) = match flags.redirect_host.as_deref() {
            None => (RedirectHost::Address, None),
            Some(raw) => parse_redirect_host(raw)?,
        };
        check_listen_for_host(&listen, redirect_host, redirect_ip)?;
        Ok(Self {
            redirect_host,
            redirect_ip,
            force_refresh: flags.force_refresh,
            grant,
            paste: flags.paste,
            kubectl_interactive: None,
            client_secret,
            listen,
            browser: BrowserChoice::resolve(flags.browser_command.clone(), flags.no_browser, env_browser),
            timeout: Duration::from_secs(timeout),
            certificate_authorities: flags
                .certificate_authorities
                .iter()
                .flatten()
                .map(|p| absolute(p))
                .collect(),
            certificate_authority_data: flags.certificate_authority_data.clone(),
            request_headers: RequestHeaders::parse(flags.request_headers.as_deref().unwrap_or_default())?,
            pkce: flags.pkce.unwrap_or(true),
        })
    }

    /// The callback addresses to try for `provider`: `--listen` when given, else the provider's
    /// defaults (Okta: 127.0.0.1:8000 then 127.0.0.1:18000; others: a free port).
    pub fn listen_for(&self, provider: ProviderKind) -> Vec<SocketAddr> {
        if self.listen.is_empty() {
            // The provider's ports, on the redirect host's address.
            let mut addrs = provider.default_listen();
            if let Some(ip) = self.redirect_ip {
                for addr in &mut addrs {
                    addr.set_ip(ip);
                }
            }
            addrs
        } else {
            self.listen.clone()
        }
    }

    /// The redirect URI a login listening on `addr` sends.
    pub fn redirect_uri(&self, addr: SocketAddr) -> String {
        crate::login::loopback::redirect_uri_with(addr, self.redirect_host)
    }

    /// The IdP adapter's configuration for `identity`.
    pub fn oidc(&self, identity: &Identity) -> OidcConfig {
        OidcConfig {
            issuer: identity.issuer.clone(),
            client_id: identity.client_id.clone(),
            client_secret: self.client_secret.clone(),
            scopes: identity.scopes.clone(),
            audience: identity.audience.as_ref().map(|a| a.value.clone()),
            extra_ca_files: self.certificate_authorities.clone(),
            extra_ca_data: self.certificate_authority_data.clone(),
            http_timeout: HTTP_TIMEOUT,
            request: ProviderRequest {
                token_type: identity.token_type.clone(),
                auth_params: identity.auth_params.clone(),
                headers: self.request_headers.clone(),
                pkce: self.pkce,
            },
        }
    }
}

/// `--provider` as a kind, `None` for `auto`.
fn provider_choice(arg: ProviderArg) -> Option<ProviderKind> {
    match arg {
        ProviderArg::Auto => None,
        ProviderArg::Generic => Some(ProviderKind::Generic),
        ProviderArg::Dex => Some(ProviderKind::Dex),
        ProviderArg::Okta => Some(ProviderKind::Okta),
        ProviderArg::Github => Some(ProviderKind::Github),
    }
}

/// The suffix of the discovery document's address (OpenID Connect Discovery 4).
const DISCOVERY_SUFFIX: &str = "/.well-known/openid-configuration";

/// The issuer as given, trimmed of blanks around it and checked by [`validate_issuer`]; an address
/// without a scheme or the discovery document's address gets an error naming the issuer to use.
/// Nothing else is changed: the issuer is compared byte for byte with the provider's.
pub fn normalize_issuer(raw: String) -> Result<String, ConfigError> {
    let issuer = raw.trim();
    let bad = |reason: String| ConfigError::Issuer {
        url: issuer.to_owned(),
        reason,
    };
    if issuer.is_empty() {
        return Err(bad(
            "it is empty; give the URL of your OpenID Connect provider".into()
        ));
    }
    // A user name or password in the URL would be sent to the provider and shown in every
    // message that names the issuer: refused, and not repeated.
    if issuer.contains('@')
        && let Some((scheme, rest)) = issuer.split_once("://")
    {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if let Some((_, host)) = authority.rsplit_once('@') {
            return Err(ConfigError::Issuer {
                url: format!("{scheme}://…@{host}"),
                reason: "an issuer URL carries no user name or password; remove the part before @".into(),
            });
        }
    }
    // The hints below repeat the input, which must print as one plain line.
    if issuer.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("an issuer has no blanks or control characters inside".into()));
    }
    if !issuer.contains("://") {
        return Err(bad(format!(
            "add https:// in front (--issuer https://{issuer}; http:// only for a test server on this machine)"
        )));
    }
    let without_slash = issuer.strip_suffix('/').unwrap_or(issuer);
    if let Some(base) = without_slash.strip_suffix(DISCOVERY_SUFFIX)
        && base.contains("://")
        && !base.ends_with(':')
        && !base.ends_with('/')
    {
        return Err(bad(format!(
            "that is the address of the discovery document; use --issuer {base} (without {DISCOVERY_SUFFIX})"
        )));
    }
    validate_issuer(issuer)?;
    Ok(if issuer.len() == raw.len() {
        raw
    } else {
        issuer.to_owned()
    })
}

/// Checks that `issuer` is an absolute https URL (http only for loopback hosts, for local tests)
/// without query or fragment.
pub fn validate_issuer(issuer: &str) -> Result<(), ConfigError> {
    let bad = |reason: &str| ConfigError::Issuer {
        url: issuer.to_owned(),
        reason: reason.to_owned(),
    };
    let url = url::Url::parse(issuer).map_err(|e| bad(&format!("{e}")))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("an issuer has no query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("an issuer has no user name or password"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(&url) => Ok(()),
        "http" => Err(bad(
            "the issuer must use https (http is accepted only on loopback addresses, for local testing)",
        )),
        _ => Err(bad("the issuer must be an https URL")),
    }
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

fn normalize_scopes(raw: &[String]) -> Result<Vec<String>, ConfigError> {
    let mut scopes = Vec::new();
    for s in raw {
        // Accept "a b" as two scopes, as OAuth writes them.
        for scope in s.split_whitespace() {
            let ok = scope
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
            if !ok {
                return Err(ConfigError::Scope(scope.to_owned()));
            }
            if scope != "openid" {
                scopes.push(scope.to_owned());
            }
        }
    }
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

/// `--redirect-host`: `localhost`, `127.0.0.1`, `::1` or `[::1]` (any case, blanks around
/// ignored); anything else is refused, never resolved.
fn parse_redirect_host(raw: &str) -> Result<(RedirectHost, Option<IpAddr>), ConfigError> {
    let host = raw.trim().to_ascii_lowercase();
    match host.as_str() {
        "localhost" => Ok((RedirectHost::Localhost, None)),
        "127.0.0.1" => Ok((RedirectHost::Address, Some(IpAddr::from([127, 0, 0, 1])))),
        "::1" | "[::1]" => Ok((
            RedirectHost::Address,
            Some(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
        )),
        _ => Err(ConfigError::RedirectHost(crate::text::one_line(raw, 80))),
    }
}

/// Checks that every `--listen` address is one the redirect host reaches: its own address for
/// `127.0.0.1` and `::1`; 127.0.0.1 or ::1 for `localhost` (which listens on both).
fn check_listen_for_host(
    listen: &[SocketAddr],
    host: RedirectHost,
    ip: Option<IpAddr>,
) -> Result<(), ConfigError> {
    for addr in listen {
        let (shown, hint, ok) = match (host, ip) {
            (RedirectHost::Localhost, _) => (
                "localhost",
                "localhost listens on 127.0.0.1 and ::1; give --listen 127.0.0.1:PORT",
                addr.ip() == IpAddr::from([127, 0, 0, 1])
                    || addr.ip() == IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ),
            (RedirectHost::Address, Some(ip @ IpAddr::V4(_))) => (
                "127.0.0.1",
                "give --listen 127.0.0.1:PORT, or leave out one of the two",
                addr.ip() == ip,
            ),
            (RedirectHost::Address, Some(ip)) => (
                "::1",
                "give --listen [::1]:PORT, or leave out one of the two",
                addr.ip() == ip,
            ),
            (RedirectHost::Address, None) => continue,
        };
        if !ok {
            return Err(ConfigError::RedirectHostListen {
                listen: *addr,
                host: shown,
                hint,
            });
        }
    }
    Ok(())
}

fn parse_listen(raw: &str) -> Result<SocketAddr, ConfigError> {
    let raw_trim = raw.trim();
    let with_localhost = raw_trim
        .strip_prefix("localhost:")
        .map(|port| format!("127.0.0.1:{port}"));
    let addr: SocketAddr = with_localhost
        .as_deref()
        .unwrap_or(raw_trim)
        .parse()
        .map_err(|_| ConfigError::Listen {
            addr: raw.to_owned(),
            reason: "expected IP:PORT, e.g. 127.0.0.1:8000 (port 0 picks a free port)",
        })?;
    let loopback = match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip.is_loopback(),
    };
    if !loopback {
        return Err(ConfigError::Listen {
            addr: raw.to_owned(),
            reason: "koidc listens on loopback addresses only (127.0.0.1 or ::1)",
        });
    }
    Ok(addr)
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_owned())
    }
}

/// `$XDG_CACHE_HOME/koidc`, else `~/.cache/koidc` (`~/Library/Caches/koidc` on macOS,
/// `%LOCALAPPDATA%\koidc` on Windows).
pub fn default_cache_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if cfg!(windows) {
        return non_empty("LOCALAPPDATA").map(|d| d.join("koidc"));
    }
    if let Some(xdg) = non_empty("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Some(xdg.join("koidc"));
    }
    let home = non_empty("HOME")?;
    if cfg!(target_os = "macos") {
        Some(home.join("Library/Caches/koidc"))
    } else {
        Some(home.join(".cache/koidc"))
    }
}

// Precedence: the profile fills what the command line and the variables left out; the
// defaults (in the constructors above) fill the rest.

/// The option groups of a command that profiles fill.
struct Target<'a> {
    identity: &'a mut IdentityFlags,
    login: &'a mut LoginFlags,
    cache: &'a mut CacheFlags,
    /// Whether the command may use the client secret (whoami never does).
    needs_secret: bool,
}

fn target(command: &mut Command) -> Option<Target<'_>> {
    let t = |identity, login, cache, needs_secret| {
        Some(Target {
            identity,
            login,
            cache,
            needs_secret,
        })
    };
    match command {
        Command::GetToken(a) => t(&mut a.identity, &mut a.login, &mut a.cache, true),
        Command::Login(a) => t(&mut a.identity, &mut a.login, &mut a.cache, true),
        Command::Logout(a) => t(&mut a.identity, &mut a.login, &mut a.cache, true),
        Command::Clean(a) => t(&mut a.identity, &mut a.login, &mut a.cache, true),
        Command::Whoami(a) => t(&mut a.identity, &mut a.login, &mut a.cache, false),
        Command::Setup(a) => t(&mut a.identity, &mut a.login, &mut a.cache, true),
        _ => None,
    }
}

/// Applies the chosen profile (`--profile`, `KOIDC_PROFILE`, or the file's `default-profile`) to
/// the command's options that the user did not set, reading the config file from
/// [`crate::profile::config_path`]. Does nothing for commands without identity options, and does not read the
/// file when no profile is asked for and `--issuer`, `--client-id`, `--audience`,
/// `--token-source` or a pipeline `--grant` is given.
pub fn apply_profile(cli: &mut Cli) -> Result<(), ProfileError> {
    apply_profile_with(cli, config_path, ConfigFile::load, |var| std::env::var(var).ok())
}

/// [`apply_profile`] with the file location, the file reader and the environment passed in (for tests).
pub fn apply_profile_with(
    cli: &mut Cli,
    locate: impl FnOnce() -> Option<PathBuf>,
    load: impl FnOnce(&Path) -> Result<Option<ConfigFile>, ProfileError>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), ProfileError> {
    let Some(t) = target(&mut cli.command) else {
        return Ok(());
    };
    // An empty `--profile=` or `KOIDC_PROFILE=` means no profile (and no profile in the cache key).
    if t.identity.profile.as_deref() == Some("") {
        t.identity.profile = None;
    }
    let chosen = t.identity.profile.clone();
    // Options that name an identity keep the file's default profile out: a pipeline's
    // `--grant workload --audience AUD` must not become a token exchange at a profile's issuer.
    let machine = matches!(
        t.login.grant,
        Some(GrantArg::ClientCredentials | GrantArg::Workload)
    );
    let named = t.identity.issuer.is_some()
        || t.identity.client_id.is_some()
        || t.identity.audience.is_some()
        || t.identity.token_source.is_some()
        || machine;
    if chosen.is_none() && named {
        return Ok(());
    }
    let Some(path) = locate() else {
        return match chosen {
            Some(profile) => Err(ProfileError::NoConfigDir { profile }),
            None => Ok(()),
        };
    };
    let file = load(&path)?;
    let (file, name) = match (file, chosen) {
        (None, None) => return Ok(()),
        (None, Some(profile)) => return Err(ProfileError::NoConfigFile { profile, path }),
        (Some(file), Some(name)) => (file, name),
        (Some(file), None) => match file.default_profile.clone() {
            Some(name) => (file, name),
            None => return Ok(()),
        },
    };
    let profile = file.profile(&name)?;
    overlay(&file.path, &name, profile, t, &env)
}

/// Sets every option of `profile` that the user did not give (on the command line or in a
/// variable: those are the options that are still `None`).
fn overlay(
    path: &Path,
    name: &str,
    profile: &Profile,
    t: Target<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ProfileError> {
    let base = path.parent().unwrap_or(Path::new("."));
    let home = env("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    let to_path = |raw: &str| resolve_path(raw, base, home.as_deref());
    let invalid = |key, v: &String| invalid_value(path, name, key, v);
    // Destructured, so that a new key cannot be forgotten here.
    let Profile {
        issuer,
        client_id,
        scopes,
        provider,
        github_url,
        github_api_url,
        audience,
        token_source,
        connector_id,
        listen,
        cache,
        cache_dir,
        certificate_authority,
        grant,
        browser_command,
        timeout,
        redirect_host,
        client_secret_env,
        token_type,
        auth_params,
        request_headers,
        pkce,
    } = profile;

    t.identity.profile = Some(name.to_owned());
    fill(&mut t.identity.issuer, issuer, |v| Ok(v.clone()))?;
    fill(&mut t.identity.client_id, client_id, |v| Ok(v.clone()))?;
    fill(&mut t.identity.scopes, scopes, |v| Ok(v.clone()))?;
    fill(&mut t.identity.provider, provider, |v| {
        parse_enum(v).map_err(invalid("provider", v))
    })?;
    fill(&mut t.identity.github.github_url, github_url, |v| Ok(v.clone()))?;
    fill(&mut t.identity.github.github_api_url, github_api_url, |v| {
        Ok(v.clone())
    })?;
    fill(&mut t.identity.audience, audience, |v| Ok(v.clone()))?;
    fill(&mut t.identity.token_source, token_source, |v| Ok(v.clone()))?;
    fill(&mut t.identity.connector_id, connector_id, |v| Ok(v.clone()))?;
    fill(&mut t.identity.token_type, token_type, |v| {
        parse_enum(v).map_err(invalid("token-type", v))
    })?;
    fill(&mut t.identity.auth_params, auth_params, |v| Ok(v.clone()))?;
    fill(&mut t.login.request_headers, request_headers, |v| Ok(v.to_vec()))?;
    fill(&mut t.login.pkce, pkce, |v| Ok(*v))?;
    fill(&mut t.login.listen, listen, |v| Ok(v.clone()))?;
    fill(&mut t.login.certificate_authorities, certificate_authority, |v| {
        Ok(v.iter().map(|p| to_path(p)).collect())
    })?;
    fill(&mut t.login.grant, grant, |v| {
        parse_enum(v).map_err(invalid("grant", v))
    })?;
    fill(&mut t.login.browser_command, browser_command, |v| Ok(v.clone()))?;
    fill(&mut t.login.timeout, timeout, |v| Ok(*v))?;
    fill(&mut t.login.redirect_host, redirect_host, |v| Ok(v.clone()))?;
    if let Some(var) = client_secret_env {
        // A secret, used or not: never for the browser's eyes.
        crate::login::browser::withhold_from_browser(var);
    }
    if t.needs_secret {
        fill(&mut t.login.client_secret, client_secret_env, |var| {
            env(var)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ProfileError::SecretEnv {
                    profile: name.to_owned(),
                    var: var.clone(),
                })
        })?;
    }
    fill(&mut t.cache.cache, cache, |v| {
        parse_enum(v).map_err(invalid("cache", v))
    })?;
    fill(&mut t.cache.cache_dir, cache_dir, |v| Ok(to_path(v)))?;
    Ok(())
}

/// Sets the option `slot` the user left out to the profile's `value`, converted; converts
/// (and so may fail) only then.
fn fill<P, T>(
    slot: &mut Option<T>,
    value: &Option<P>,
    convert: impl FnOnce(&P) -> Result<T, ProfileError>,
) -> Result<(), ProfileError> {
    if slot.is_none()
        && let Some(value) = value
    {
        *slot = Some(convert(value)?);
    }
    Ok(())
}

/// The error for `value` of `key`, given the accepted values.
fn invalid_value(
    path: &Path,
    profile: &str,
    key: &'static str,
    value: &str,
) -> impl FnOnce(String) -> ProfileError + use<> {
    let (path, profile, value) = (path.to_owned(), profile.to_owned(), value.to_owned());
    move |expected| ProfileError::Value {
        profile,
        path,
        key,
        value,
        expected,
    }
}

/// A value of a flag's enum, by its flag spelling (case-insensitive); else the accepted values.
fn parse_enum<E: ValueEnum>(raw: &str) -> Result<E, String> {
    E::from_str(raw.trim(), true).map_err(|_| {
        E::value_variants()
            .iter()
            .filter_map(ValueEnum::to_possible_value)
            .filter(|p| !p.is_hide_set())
            .map(|p| p.get_name().to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// `~/x` under `home`, an absolute path as is, anything else relative to `base`.
fn resolve_path(raw: &str, base: &Path, home: Option<&Path>) -> PathBuf {
    if let (Some(rest), Some(home)) = (raw.strip_prefix("~/"), home) {
        return home.join(rest);
    }
    let path = Path::new(raw);
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_rules() {
        assert!(validate_issuer("https://dex.example.com").is_ok());
        assert!(validate_issuer("https://org.okta.com/oauth2/default").is_ok());
        assert!(validate_issuer("http://127.0.0.1:5556/dex").is_ok());
        assert!(validate_issuer("http://localhost:5556/dex").is_ok());
        assert!(validate_issuer("http://dex.example.com").is_err());
        assert!(validate_issuer("ftp://dex.example.com").is_err());
        assert!(validate_issuer("https://dex.example.com/?a=b").is_err());
        assert!(validate_issuer("https://user:pw@dex.example.com").is_err());
        assert!(validate_issuer("dex.example.com").is_err());
    }

    #[test]
    fn redirect_host_takes_the_loopback_names_only() {
        assert_eq!(
            parse_redirect_host("localhost").unwrap(),
            (RedirectHost::Localhost, None)
        );
        assert_eq!(
            parse_redirect_host(" LocalHost ").unwrap().0,
            RedirectHost::Localhost
        );
        let v4 = Some(IpAddr::from([127, 0, 0, 1]));
        let v6 = Some(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
        assert_eq!(
            parse_redirect_host("127.0.0.1").unwrap(),
            (RedirectHost::Address, v4)
        );
        assert_eq!(parse_redirect_host("::1").unwrap(), (RedirectHost::Address, v6));
        assert_eq!(parse_redirect_host("[::1]").unwrap(), (RedirectHost::Address, v6));
        let huge = "x".repeat(10_000);
        for bad in [
            "",
            "example.com",
            "0.0.0.0",
            "127.0.0.2",
            "localhost.",
            "localhost:8000",
            "a\r\nb",
            &huge,
        ] {
            let err = parse_redirect_host(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid --redirect-host"), "{err}");
            assert!(
                !err.contains('\n') && !err.contains('\r') && err.len() < 400,
                "{err:?}"
            );
        }
    }

    #[test]
    fn listen_addresses_must_be_reachable_through_the_redirect_host() {
        let v4: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        let v6: SocketAddr = "[::1]:8000".parse().unwrap();
        let other: SocketAddr = "127.0.0.2:8000".parse().unwrap();
        let ip4 = Some(v4.ip());
        let ip6 = Some(v6.ip());
        assert!(check_listen_for_host(&[v4, v6], RedirectHost::Localhost, None).is_ok());
        assert!(check_listen_for_host(&[other], RedirectHost::Localhost, None).is_err());
        assert!(check_listen_for_host(&[v4], RedirectHost::Address, ip4).is_ok());
        let err = check_listen_for_host(&[v4], RedirectHost::Address, ip6).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--listen 127.0.0.1:8000 does not match --redirect-host ::1: give --listen [::1]:PORT, or leave out one of the two"
        );
        assert!(check_listen_for_host(&[other], RedirectHost::Address, None).is_ok());
    }

    #[test]
    fn the_default_ports_move_to_the_redirect_hosts_address() {
        let flags = LoginFlags {
            redirect_host: Some("::1".into()),
            ..LoginFlags::default()
        };
        let login = LoginConfig::from_flags(&flags, None).unwrap();
        let addrs = login.listen_for(ProviderKind::Okta);
        assert!(!addrs.is_empty());
        assert!(
            addrs
                .iter()
                .all(|a| a.ip() == IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
            "{addrs:?}"
        );
        assert_eq!(
            login.redirect_uri(addrs[0]),
            format!("http://[::1]:{}/callback", addrs[0].port())
        );
    }

    /// The issuer of `--issuer raw`, or the one-line error.
    fn issuer_from(raw: &str) -> Result<String, String> {
        Identity::from_flags(&identity_flags(raw, ProviderArg::Auto, &[]), None)
            .map(|id| id.issuer)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn issuer_with_a_password_in_it_is_refused_without_repeating_the_password() {
        for raw in [
            "https://alice:S3CRETPW@idp.example/dex",
            "https://S3CRETPW@idp.example",
            "http://alice:S3CRETPW@127.0.0.1:5556/dex?x=@y",
        ] {
            let err = issuer_from(raw).unwrap_err();
            assert!(!err.contains("S3CRETPW"), "{raw}: {err}");
            assert!(err.contains("no user name or password"), "{raw}: {err}");
        }
        assert!(
            issuer_from("https://idp.example/dex?a=b@c")
                .unwrap_err()
                .contains("query")
        );
    }

    #[test]
    fn issuer_without_a_scheme_says_to_add_https() {
        for (raw, fixed) in [
            ("127.0.0.1:5556/dex", "https://127.0.0.1:5556/dex"),
            ("dex.example.com:5556/dex", "https://dex.example.com:5556/dex"),
            ("dex.example.com", "https://dex.example.com"),
            ("localhost:8080", "https://localhost:8080"),
        ] {
            let err = issuer_from(raw).unwrap_err();
            assert!(
                err.contains("add https://") && err.contains(&format!("--issuer {fixed}")),
                "{raw}: {err}"
            );
        }
    }

    #[test]
    fn login_hint_and_token_type_part_the_cache_and_other_auth_params_do_not() {
        let key = |token_type: Option<TokenTypeArg>, audience: Option<&str>, params: &[&str]| {
            let flags = IdentityFlags {
                token_type,
                audience: audience.map(str::to_owned),
                auth_params: Some(params.iter().map(|p| (*p).to_owned()).collect()),
                ..identity_flags("https://dex.example.com/dex", ProviderArg::Auto, &[])
            };
            Identity::from_flags(&flags, None).unwrap().cache_key()
        };
        let plain = key(None, None, &[]);
        // An ID token without a hint keeps the key it always had.
        assert_eq!(plain.variant, None);
        assert_eq!(
            plain.id(),
            key(Some(TokenTypeArg::Id), None, &["prompt=login", "max_age=60"]).id()
        );
        let alice = key(None, None, &["login_hint=alice@example.com"]);
        let bob = key(None, None, &["login_hint=bob@example.com", "prompt=login"]);
        let access = key(Some(TokenTypeArg::Access), Some("api://kubernetes"), &[]);
        let access_aud = key(Some(TokenTypeArg::Access), Some("api://default"), &[]);
        let ids = [&plain, &alice, &bob, &access, &access_aud].map(CacheKey::id);
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn an_access_token_for_another_api_is_not_handed_out_without_audience() {
        let flags = IdentityFlags {
            token_type: Some(TokenTypeArg::Access),
            ..identity_flags("https://i.example", ProviderArg::Auto, &[])
        };
        let err = Identity::from_flags(&flags, None).unwrap_err();
        assert!(matches!(err, ConfigError::AccessWithoutAudience), "{err}");
        assert!(err.to_string().contains("--audience"), "{err}");
    }

    #[test]
    fn options_of_a_persons_login_are_refused_for_pipelines_and_github() {
        let access = IdentityFlags {
            token_type: Some(TokenTypeArg::Access),
            ..identity_flags("https://i.example", ProviderArg::Auto, &[])
        };
        let params = IdentityFlags {
            auth_params: Some(vec!["prompt=login".into()]),
            ..identity_flags("https://i.example", ProviderArg::Auto, &[])
        };
        for (flags, flag) in [(&access, "token-type"), (&params, "auth-param")] {
            for grant in [GrantArg::ClientCredentials, GrantArg::Workload] {
                let err = Identity::from_flags_with(flags, Some(grant), &|_| None).unwrap_err();
                assert!(
                    matches!(err, ConfigError::PersonOnly { flag: f } if f == flag),
                    "{err}"
                );
            }
            let github = IdentityFlags {
                provider: Some(ProviderArg::Github),
                issuer: None,
                ..flags.clone()
            };
            assert!(matches!(
                Identity::from_flags(&github, None),
                Err(ConfigError::PersonOnly { .. })
            ));
        }
        // A person's --audience: a cluster's (which this generic issuer cannot give), or the
        // access token's with --token-type access.
        let audience = IdentityFlags {
            audience: Some("api://default".into()),
            ..identity_flags("https://i.example", ProviderArg::Auto, &[])
        };
        assert!(matches!(
            Identity::from_flags(&audience, None),
            Err(ConfigError::NoAudienceWay { .. })
        ));
        let both = IdentityFlags {
            token_type: Some(TokenTypeArg::Access),
            ..audience
        };
        let identity = Identity::from_flags(&both, None).unwrap();
        assert_eq!(
            identity.token_type,
            TokenType::Access {
                audience: Some("api://default".into())
            }
        );
        // A hostile --auth-param is refused before anything is touched.
        let hostile = IdentityFlags {
            auth_params: Some(vec!["state=x".into()]),
            ..identity_flags("https://i.example", ProviderArg::Auto, &[])
        };
        assert!(matches!(
            Identity::from_flags(&hostile, None),
            Err(ConfigError::Request(_))
        ));
    }

    #[test]
    fn request_headers_and_pkce_come_from_the_login_flags() {
        let flags = LoginFlags {
            request_headers: Some(vec!["Origin=https://app.example.com".into()]),
            pkce: Some(false),
            ..LoginFlags::default()
        };
        let login = LoginConfig::from_flags(&flags, None).unwrap();
        assert!(!login.pkce);
        assert_eq!(login.request_headers.map().len(), 1);
        assert!(
            LoginConfig::from_flags(&LoginFlags::default(), None)
                .unwrap()
                .pkce
        );
        let host = LoginFlags {
            request_headers: Some(vec!["Host=evil.example".into()]),
            ..LoginFlags::default()
        };
        let err = LoginConfig::from_flags(&host, None).unwrap_err().to_string();
        assert!(err.contains("Host") && !err.contains("evil.example"), "{err}");
    }

    #[test]
    fn issuer_with_blanks_around_is_trimmed() {
        assert_eq!(
            issuer_from("  https://dex.example.com/dex \t\n").unwrap(),
            "https://dex.example.com/dex"
        );
        // The cache key follows the trimmed issuer: the same entry as without the blanks.
        let key = |raw: &str| {
            Identity::from_flags(&identity_flags(raw, ProviderArg::Auto, &[]), None)
                .unwrap()
                .cache_key()
        };
        assert_eq!(key(" https://i.example/x "), key("https://i.example/x"));
        // Blanks or control characters inside are refused on one line, not echoed raw (the URL
        // parser would drop a newline and keep it in the issuer).
        for raw in [
            "dex.example.com\n/dex",
            "https://dex.example.com/d\nex",
            "https://a b.example",
        ] {
            let err = issuer_from(raw).unwrap_err();
            assert!(!err.contains('\n') && err.contains("inside"), "{err}");
        }
        // A trailing slash is part of the issuer and is kept.
        assert_eq!(
            issuer_from("https://i.example/x/ ").unwrap(),
            "https://i.example/x/"
        );
    }

    #[test]
    fn discovery_url_given_as_the_issuer_names_the_issuer_to_use() {
        for (raw, issuer) in [
            (
                "https://dex.example.com/dex/.well-known/openid-configuration",
                "https://dex.example.com/dex",
            ),
            (
                "https://org.okta.com/oauth2/default/.well-known/openid-configuration/",
                "https://org.okta.com/oauth2/default",
            ),
            (
                "https://i.example/.well-known/openid-configuration",
                "https://i.example",
            ),
        ] {
            let err = issuer_from(raw).unwrap_err();
            assert!(
                err.contains("discovery document") && err.contains(&format!("--issuer {issuer} ")),
                "{raw}: {err}"
            );
        }
    }

    #[test]
    fn listen_must_be_loopback() {
        assert_eq!(parse_listen("127.0.0.1:8000").unwrap().port(), 8000);
        assert_eq!(
            parse_listen("localhost:18000").unwrap().to_string(),
            "127.0.0.1:18000"
        );
        assert!(parse_listen("[::1]:0").is_ok());
        assert!(parse_listen("0.0.0.0:8000").is_err());
        assert!(parse_listen("10.1.2.3:8000").is_err());
        assert!(parse_listen("8000").is_err());
    }

    #[test]
    fn scopes_are_sorted_deduplicated_and_without_openid() {
        let raw = vec![
            "groups".into(),
            "openid email".into(),
            "groups".into(),
            "offline_access".into(),
        ];
        assert_eq!(
            normalize_scopes(&raw).unwrap(),
            vec!["email", "groups", "offline_access"]
        );
        assert!(normalize_scopes(&["bad\"scope".into()]).is_err());
    }

    fn identity_flags(issuer: &str, provider: ProviderArg, scopes: &[&str]) -> IdentityFlags {
        IdentityFlags {
            issuer: Some(issuer.into()),
            client_id: Some("kubectl".into()),
            scopes: Some(scopes.iter().map(|s| (*s).to_owned()).collect()),
            provider: Some(provider),
            ..IdentityFlags::default()
        }
    }

    /// `--grant workload` flags with the environment of a GitHub Actions job (`actions`) or not.
    fn workload(flags: IdentityFlags, actions: bool) -> Result<Identity, ConfigError> {
        let env = move |name: &str| {
            (actions && name == crate::login::workload::ACTIONS_URL_VAR).then(|| "https://t/x?a=1".into())
        };
        Identity::from_flags_with(&flags, Some(GrantArg::Workload), &env)
    }

    #[test]
    fn a_workload_identity_without_issuer_is_keyed_by_its_source_and_audience() {
        let aud = |a: &str| IdentityFlags {
            audience: Some(a.into()),
            ..IdentityFlags::default()
        };
        let job = workload(aud("kubernetes"), true).unwrap();
        assert_eq!(
            (job.issuer.as_str(), job.client_id.as_str()),
            ("github-actions", "kubernetes")
        );
        assert!(matches!(
            &job.machine,
            Some(Machine::Workload {
                source: TokenSource::GithubActions,
                exchange: None,
                ..
            })
        ));
        let other = workload(aud("other"), true).unwrap();
        assert_ne!(job.cache_key().id(), other.cache_key().id());
        let file = workload(
            IdentityFlags {
                token_source: Some("file:/t".into()),
                ..aud("kubernetes")
            },
            true,
        )
        .unwrap();
        assert_ne!(job.cache_key().id(), file.cache_key().id());
        // Outside a job with a token, no default source; github-actions needs an audience.
        assert!(matches!(
            workload(aud("k"), false),
            Err(ConfigError::TokenSource(_))
        ));
        assert!(matches!(
            workload(IdentityFlags::default(), true),
            Err(ConfigError::WorkloadAudience { .. })
        ));
        for bad in ["", "  ", "a\nb"] {
            assert!(
                matches!(workload(aud(bad), true), Err(ConfigError::Audience)),
                "{bad:?}"
            );
        }
        // Exchange options without an issuer say what they are for.
        for flags in [
            IdentityFlags {
                client_id: Some("c".into()),
                ..aud("k")
            },
            IdentityFlags {
                connector_id: Some("gh".into()),
                ..aud("k")
            },
            IdentityFlags {
                scopes: Some(vec!["groups".into()]),
                ..aud("k")
            },
        ] {
            let err = workload(flags, true).unwrap_err().to_string();
            assert!(err.contains("needs --issuer"), "{err}");
        }
    }

    #[test]
    fn a_later_job_on_the_same_runner_never_gets_the_previous_jobs_cached_token() {
        use crate::login::workload::{ACTIONS_TOKEN_VAR, ACTIONS_URL_VAR};
        let flags = IdentityFlags {
            audience: Some("kubernetes".into()),
            ..IdentityFlags::default()
        };
        let job = |url: &'static str, bearer: &'static str| {
            let env = move |name: &str| match name {
                n if n == ACTIONS_URL_VAR => Some(url.into()),
                n if n == ACTIONS_TOKEN_VAR => Some(bearer.into()),
                _ => None,
            };
            Identity::from_flags_with(&flags, Some(GrantArg::Workload), &env).unwrap()
        };
        // GitHub gives every job its own request URL and bearer: each job its own cache entry.
        let first = job("https://t/plans/1/jobs/1/idtoken?api-version=2.0", "bearer-1");
        let again = job("https://t/plans/1/jobs/1/idtoken?api-version=2.0", "bearer-1");
        let next = job("https://t/plans/2/jobs/7/idtoken?api-version=2.0", "bearer-2");
        let same_url = job("https://t/plans/1/jobs/1/idtoken?api-version=2.0", "bearer-3");
        assert!(first.machine.as_ref().unwrap().uses_cache());
        assert_eq!(first.cache_key().id(), again.cache_key().id());
        assert_ne!(first.cache_key().id(), next.cache_key().id());
        assert_ne!(first.cache_key().id(), same_url.cache_key().id());
        // The key names no secret: the bearer is digested.
        assert!(!first.cache_key().machine.unwrap().contains("bearer-1"));

        // A file or variable sent as it is: read on every call, never cached.
        for source in ["file:/var/run/secrets/tokens/kube", "env:CI_JOB_JWT"] {
            let local = IdentityFlags {
                token_source: Some(source.into()),
                ..flags.clone()
            };
            let id = Identity::from_flags_with(&local, Some(GrantArg::Workload), &|_| None).unwrap();
            assert!(!id.machine.unwrap().uses_cache(), "{source}");
        }
        // Exchanged for a variable's token: cached for that token only.
        let exchange = |token: &'static str| {
            let flags = IdentityFlags {
                token_source: Some("env:CI_JOB_JWT".into()),
                ..identity_flags("https://dex.example/dex", ProviderArg::Auto, &[])
            };
            let env = move |name: &str| (name == "CI_JOB_JWT").then(|| token.into());
            Identity::from_flags_with(&flags, Some(GrantArg::Workload), &env).unwrap()
        };
        let a = exchange("a.b.c");
        assert!(a.machine.as_ref().unwrap().uses_cache());
        assert_eq!(a.cache_key().id(), exchange("a.b.c").cache_key().id());
        assert_ne!(a.cache_key().id(), exchange("x.y.z").cache_key().id());
        // Without the variables GitHub sets, nothing can be served from the cache.
        let unset = Identity::from_flags_with(&flags, Some(GrantArg::Workload), &|n| {
            (n == ACTIONS_URL_VAR).then(|| "https://t/x".into())
        })
        .unwrap();
        assert!(!unset.machine.unwrap().uses_cache());
    }

    #[test]
    fn client_credentials_ask_only_for_the_users_scopes_not_a_providers_presets() {
        let okta = identity_flags(
            "https://acme.okta.com/oauth2/default",
            ProviderArg::Auto,
            &["deploy"],
        );
        let id = Identity::from_flags(&okta, Some(GrantArg::ClientCredentials)).unwrap();
        assert_eq!(id.scopes, ["deploy"]);
        let person = Identity::from_flags(&okta, None).unwrap();
        assert!(person.scopes.contains(&"offline_access".to_owned()));
    }

    #[test]
    fn a_workload_identity_with_an_issuer_is_an_exchange_and_never_shares_a_persons_cache_entry() {
        let flags = IdentityFlags {
            audience: Some("kubernetes".into()),
            connector_id: Some("github-actions".into()),
            ..identity_flags("https://dex.example/dex", ProviderArg::Auto, &[])
        };
        let job = workload(flags.clone(), true).unwrap();
        assert_eq!(job.issuer, "https://dex.example/dex");
        assert!(
            matches!(&job.machine, Some(Machine::Workload { exchange: Some(e), .. }) if e.connector_id.as_deref() == Some("github-actions"))
        );
        let person = Identity::from_flags(
            &identity_flags("https://dex.example/dex", ProviderArg::Auto, &[]),
            None,
        )
        .unwrap();
        // A person's preset scopes, less `offline_access`: an exchange has nothing to refresh.
        assert_eq!(job.scopes, ["email", "groups"]);
        assert!(person.scopes.contains(&"offline_access".to_owned()));
        assert_ne!(person.cache_key().id(), job.cache_key().id());
        // A person's key is the one it always was.
        assert_eq!(person.cache_key().machine, None);
        let empty = IdentityFlags {
            connector_id: Some(" ".into()),
            ..flags
        };
        assert!(matches!(
            workload(empty, true),
            Err(ConfigError::EmptyConnectorId)
        ));
    }

    /// A person's identity at `issuer` with `--audience audience`.
    fn person_for(issuer: &str, provider: ProviderArg, audience: &str) -> Result<Identity, ConfigError> {
        let flags = IdentityFlags {
            audience: Some(audience.into()),
            ..identity_flags(issuer, provider, &["groups"])
        };
        Identity::from_flags(&flags, None)
    }

    #[test]
    fn a_persons_audience_at_dex_asks_for_the_cross_client_scope_and_keys_the_cache() {
        const DEX: &str = "https://dex.example.com/dex";
        let plain = Identity::from_flags(&identity_flags(DEX, ProviderArg::Auto, &["groups"]), None).unwrap();
        let a = person_for(DEX, ProviderArg::Auto, "cluster-a").unwrap();
        let b = person_for(DEX, ProviderArg::Auto, "cluster-b").unwrap();
        assert_eq!(
            a.audience,
            Some(Audience {
                value: "cluster-a".into(),
                way: AudienceWay::DexCrossClient
            })
        );
        assert!(
            a.scopes
                .contains(&"audience:server:client_id:cluster-a".to_owned()),
            "{:?}",
            a.scopes
        );
        assert!(a.scopes.contains(&"groups".to_owned()));
        assert_eq!(plain.audience, None);
        assert!(!plain.scopes.iter().any(|s| s.starts_with(DEX_AUDIENCE_SCOPE)));
        // Three entries: a token for one cluster is never served to another, nor to an entry
        // without audience (whose id is the one it always had).
        let ids = [plain.cache_key().id(), a.cache_key().id(), b.cache_key().id()];
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[1], ids[2]);
        assert_ne!(ids[0], ids[2]);
        assert_eq!(
            ids[0],
            CacheKey::new(DEX, "kubectl", &plain.scopes).id(),
            "the id of an entry without audience changed"
        );
        // The IdP adapter is told which audience to check.
        let login = LoginConfig::from_flags(&LoginFlags::default(), None).unwrap();
        assert_eq!(login.oidc(&a).audience.as_deref(), Some("cluster-a"));
        assert_eq!(login.oidc(&plain).audience, None);
        // --provider dex on any issuer.
        assert!(person_for("https://login.example.com", ProviderArg::Dex, "c").is_ok());
    }

    #[test]
    fn a_persons_audience_where_neither_way_exists_names_both_ways() {
        for (issuer, provider) in [
            ("https://idp.example.com", ProviderArg::Auto),
            ("https://dex.example.com/dex", ProviderArg::Generic),
            ("https://acme.okta.com/oauth2/default", ProviderArg::Auto),
        ] {
            let err = person_for(issuer, provider, "cluster-a").unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, ConfigError::NoAudienceWay { .. }), "{msg}");
            assert!(
                msg.contains("Dex cross-client trust") && msg.contains("RFC 8693 token exchange"),
                "{msg}"
            );
        }
        let github = IdentityFlags {
            client_id: Some("Iv1".into()),
            provider: Some(ProviderArg::Github),
            audience: Some("k".into()),
            ..IdentityFlags::default()
        };
        assert!(matches!(
            Identity::from_flags(&github, None),
            Err(ConfigError::NoAudienceWay { provider: "GitHub" })
        ));
    }

    #[test]
    fn a_hostile_audience_for_a_person_is_refused_in_one_line() {
        const DEX: &str = "https://dex.example.com/dex";
        let long = "a".repeat(1025);
        for bad in [
            "",
            "  ",
            "a\nb",
            "a\r\nb",
            "a\u{0}",
            long.as_str(),
            "a b",
            "a\tb",
            "ümlaut",
            "a\"b",
        ] {
            let err = person_for(DEX, ProviderArg::Auto, bad).unwrap_err();
            let msg = err.to_string();
            assert!(!msg.contains('\n') && !msg.contains('\r'), "{msg}");
            assert!(msg.len() < 300, "{msg}");
        }
        assert!(matches!(
            person_for(DEX, ProviderArg::Auto, "a b"),
            Err(ConfigError::AudienceScope)
        ));
    }

    #[test]
    fn pipeline_options_are_refused_for_a_persons_login_and_github() {
        for (flags, flag) in [
            (
                IdentityFlags {
                    token_source: Some("env:T".into()),
                    ..identity_flags("https://i", ProviderArg::Auto, &[])
                },
                "--token-source",
            ),
            (
                IdentityFlags {
                    connector_id: Some("c".into()),
                    ..identity_flags("https://i", ProviderArg::Auto, &[])
                },
                "--connector-id",
            ),
        ] {
            let err = Identity::from_flags(&flags, Some(GrantArg::Auto))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(flag) && err.contains("--grant workload"), "{err}");
        }
        let github = IdentityFlags {
            client_id: Some("Iv1".into()),
            provider: Some(ProviderArg::Github),
            audience: Some("k".into()),
            ..IdentityFlags::default()
        };
        for grant in [GrantArg::Workload, GrantArg::ClientCredentials] {
            assert!(matches!(
                Identity::from_flags(&github, Some(grant)),
                Err(ConfigError::MachineWithGithub)
            ));
        }
        let cc = IdentityFlags {
            token_source: Some("env:T".into()),
            ..identity_flags("https://i", ProviderArg::Auto, &[])
        };
        assert!(matches!(
            Identity::from_flags(&cc, Some(GrantArg::ClientCredentials)),
            Err(ConfigError::WorkloadOnly { flag: "token-source" })
        ));
        let cc = Identity::from_flags(
            &identity_flags("https://i", ProviderArg::Auto, &[]),
            Some(GrantArg::ClientCredentials),
        )
        .unwrap();
        assert!(matches!(
            cc.machine,
            Some(Machine::ClientCredentials { audience: None })
        ));
    }

    #[test]
    fn github_identity_takes_its_issuer_from_the_github_url() {
        let mut flags = IdentityFlags {
            client_id: Some("Iv1.abc".into()),
            provider: Some(ProviderArg::Github),
            ..IdentityFlags::default()
        };
        let id = Identity::from_flags(&flags, None).unwrap();
        assert_eq!(id.provider, ProviderKind::Github);
        assert_eq!(id.issuer, "https://github.com");
        assert_eq!(id.scopes, ["read:org"]);
        assert_eq!(id.github.as_ref().unwrap().api, "https://api.github.com");
        flags.github.github_url = Some("https://git.example.com/".into());
        let ghe = Identity::from_flags(&flags, None).unwrap();
        assert_eq!(ghe.issuer, "https://git.example.com");
        assert_ne!(ghe.cache_key(), id.cache_key());
        flags.issuer = Some("https://github.com".into());
        assert!(matches!(
            Identity::from_flags(&flags, None),
            Err(ConfigError::IssuerWithGithub)
        ));
        flags.issuer = None;
        flags.github.github_url = Some("http://git.example.com".into());
        assert!(Identity::from_flags(&flags, None).is_err());
    }

    #[test]
    fn provider_presets_add_missing_scopes_before_the_cache_key_is_made() {
        let okta = Identity::from_flags(
            &identity_flags(
                "https://acme.okta.com/oauth2/default",
                ProviderArg::Auto,
                &["groups", "profile"],
            ),
            None,
        )
        .unwrap();
        assert_eq!(okta.provider, ProviderKind::Okta);
        assert_eq!(okta.scopes, ["email", "groups", "offline_access", "profile"]);
        assert_eq!(okta.cache_key().scopes, okta.scopes);

        let dex = Identity::from_flags(
            &identity_flags("http://127.0.0.1:5556/dex", ProviderArg::Auto, &[]),
            None,
        )
        .unwrap();
        assert_eq!(dex.provider, ProviderKind::Dex);
        assert_eq!(dex.scopes, ["email", "groups", "offline_access"]);

        // An explicit --provider wins over detection.
        let generic = Identity::from_flags(
            &identity_flags(
                "https://acme.okta.com/oauth2/default",
                ProviderArg::Generic,
                &["offline_access"],
            ),
            None,
        )
        .unwrap();
        assert_eq!(generic.provider, ProviderKind::Generic);
        assert_eq!(generic.scopes, ["offline_access"]);
        assert_ne!(generic.cache_key(), okta.cache_key());
    }

    fn login_flags(listen: &[&str]) -> LoginFlags {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            login: LoginFlags,
        }
        let mut args = vec!["koidc".to_owned()];
        for l in listen {
            args.push(format!("--listen={l}"));
        }
        Wrap::try_parse_from(args).unwrap().login
    }

    #[test]
    fn okta_listens_on_its_fixed_ports_unless_listen_is_given() {
        let default = LoginConfig::from_flags(&login_flags(&[]), None).unwrap();
        assert!(default.listen.is_empty());
        let ports = |addrs: Vec<SocketAddr>| addrs.iter().map(|a| a.port()).collect::<Vec<_>>();
        assert_eq!(ports(default.listen_for(ProviderKind::Okta)), [8000, 18000]);
        assert_eq!(ports(default.listen_for(ProviderKind::Generic)), [0]);
        assert_eq!(ports(default.listen_for(ProviderKind::Dex)), [0]);

        let given = LoginConfig::from_flags(&login_flags(&["127.0.0.1:9999"]), None).unwrap();
        assert_eq!(ports(given.listen_for(ProviderKind::Okta)), [9999]);
    }
}

#[cfg(test)]
mod profile_tests {
    //! Profiles applied to parsed command lines: precedence, the keys, errors.

    use std::path::{Path, PathBuf};

    use super::*;
    use crate::cli::{CacheArg, GrantArg};
    use crate::profile::ConfigFile;
    use crate::profile::tests::file;

    fn env(var: &str) -> Option<String> {
        match var {
            "HOME" => Some("/home/u".into()),
            "WORK2_SECRET" => Some("s3cret".into()),
            _ => None,
        }
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_args(std::iter::once("koidc").chain(args.iter().copied())).unwrap()
    }

    fn applied(args: &[&str], f: Option<ConfigFile>) -> Result<Cli, ProfileError> {
        let mut cli = parse(args);
        apply_profile_with(
            &mut cli,
            || Some(PathBuf::from("/cfg/koidc/config.toml")),
            |_| Ok(f),
            env,
        )?;
        Ok(cli)
    }

    fn get_token(cli: &Cli) -> &crate::cli::GetTokenArgs {
        match &cli.command {
            Command::GetToken(a) => a,
            other => panic!("not get-token: {other:?}"),
        }
    }

    #[test]
    fn a_profile_fills_every_option_and_resolves_paths() {
        let cli = applied(&["get-token", "--profile", "work"], Some(file())).unwrap();
        let a = get_token(&cli);
        assert_eq!(a.identity.profile.as_deref(), Some("work"));
        assert_eq!(a.identity.issuer.as_deref(), Some("https://dex.example.com/dex"));
        assert_eq!(a.identity.client_id.as_deref(), Some("kubernetes"));
        assert_eq!(
            a.identity.scopes.as_deref(),
            Some(&["email".to_owned(), "groups".to_owned()][..])
        );
        assert_eq!(a.identity.provider, Some(ProviderArg::Dex));
        assert_eq!(a.cache.cache, Some(CacheArg::File));
        assert_eq!(
            a.cache.cache_dir.as_deref(),
            Some(Path::new("/cfg/koidc/cache/work"))
        );
        assert_eq!(
            a.login.certificate_authorities.as_deref(),
            Some(&[PathBuf::from("/home/u/ca.pem"), PathBuf::from("/etc/ca.pem")][..])
        );
        assert_eq!(
            a.login.listen.as_deref(),
            Some(&["127.0.0.1:8000".to_owned()][..])
        );
        assert_eq!(a.login.grant, Some(GrantArg::DeviceCode));
        assert_eq!(a.login.browser_command.as_deref(), Some("firefox"));
        assert_eq!(a.login.timeout, Some(30));
        assert!(a.login.client_secret.is_none());
    }

    #[test]
    fn each_profile_key_sets_the_option_the_table_names() {
        use crate::cli::options::{OPTIONS, option_words};
        for opt in OPTIONS.iter().filter(|o| o.profile_key.is_some()) {
            let key = opt.profile_key.unwrap();
            // A value clap takes for the option: a possible value of an enum, else a number
            // (the timeout), else a word (in a list where the key takes one).
            let enum_values: Vec<String> = {
                use clap::Args as _;
                let command = crate::cli::GetTokenArgs::augment_args(clap::Command::new("get-token"));
                let arg = command.get_arguments().find(|a| a.get_id() == opt.id).unwrap();
                arg.get_possible_values()
                    .iter()
                    .map(|p| format!("{:?}", p.get_name()))
                    .collect()
            };
            // (`false` for a boolean key, which TOML writes unquoted.)
            let mut candidates = if enum_values.is_empty() {
                vec!["\"VALUE\"".to_owned(), "7".to_owned(), "[\"VALUE\"]".to_owned()]
            } else {
                enum_values
            };
            candidates.push("false".to_owned());
            let f = candidates
                .iter()
                .find_map(|v| {
                    ConfigFile::parse(Path::new("/c.toml"), &format!("[profiles.p]\n{key} = {v}\n")).ok()
                })
                .unwrap_or_else(|| panic!("no value for the key {key}"));
            let env = |var: &str| (var == "VALUE").then(|| "s3cret".to_owned());
            let mut cli = parse(&["get-token", "--profile", "p"]);
            apply_profile_with(&mut cli, || Some(PathBuf::from("/c.toml")), |_| Ok(Some(f)), env)
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            let a = get_token(&cli);
            if opt.id == "client_secret" {
                // Never on a command line: read from the variable the key names.
                assert_eq!(a.login.client_secret.as_deref(), Some("s3cret"));
                assert_eq!(option_words(a), ["--profile=p"]);
                continue;
            }
            let words = option_words(a);
            assert_eq!(words.len(), 2, "{key}: {words:?}");
            assert_eq!(words[0], "--profile=p");
            assert!(
                words[1].starts_with(&format!("--{}=", opt.long)),
                "the profile key {key} sets {words:?}, not --{}",
                opt.long
            );
        }
    }

    #[test]
    fn flags_beat_the_profile_and_the_profile_beats_defaults() {
        let cli = applied(
            &[
                "get-token",
                "--profile=work",
                "--cache-dir",
                "/elsewhere",
                "--scope",
                "profile",
                "--timeout",
                "180",
                "--provider",
                "auto",
            ],
            Some(file()),
        )
        .unwrap();
        let a = get_token(&cli);
        assert_eq!(a.cache.cache_dir.as_deref(), Some(Path::new("/elsewhere")));
        assert_eq!(a.identity.scopes.as_deref(), Some(&["profile".to_owned()][..]));
        // Given explicitly, even when equal to the built-in default.
        assert_eq!(a.login.timeout, Some(180));
        assert_eq!(a.identity.provider, Some(ProviderArg::Auto));
        // Not given: from the profile.
        assert_eq!(a.cache.cache, Some(CacheArg::File));
        assert_eq!(a.identity.issuer.as_deref(), Some("https://dex.example.com/dex"));
    }

    #[test]
    fn options_from_the_environment_beat_the_profile() {
        let mut cli = parse(&["get-token", "--profile", "work"]);
        // What the parser reads from KOIDC_CACHE_DIR / KOIDC_TIMEOUT.
        if let Command::GetToken(a) = &mut cli.command {
            a.cache.cache_dir = Some(PathBuf::from("/from-env"));
            a.login.timeout = Some(180);
        }
        apply_profile_with(&mut cli, || Some(PathBuf::from("/x")), |_| Ok(Some(file())), env).unwrap();
        let a = get_token(&cli);
        assert_eq!(a.cache.cache_dir.as_deref(), Some(Path::new("/from-env")));
        assert_eq!(a.login.timeout, Some(180));
        assert_eq!(a.cache.cache, Some(CacheArg::File));
    }

    #[test]
    fn the_default_profile_applies_only_without_issuer_or_client_id() {
        let cli = applied(&["whoami"], Some(file())).unwrap();
        match &cli.command {
            Command::Whoami(a) => {
                assert_eq!(a.identity.profile.as_deref(), Some("work"));
                assert_eq!(a.identity.client_id.as_deref(), Some("kubernetes"));
            }
            other => panic!("{other:?}"),
        }
        let cli = applied(
            &["get-token", "--issuer", "https://i.example", "--client-id", "c"],
            Some(file()),
        )
        .unwrap();
        let a = get_token(&cli);
        assert_eq!(a.identity.profile, None);
        // Neither given nor from a profile: left to the defaults.
        assert_eq!(a.identity.scopes, None);
        assert_eq!(a.cache.cache, None);
    }

    #[test]
    fn the_file_is_not_read_for_the_classic_kubeconfig_entry() {
        let mut cli = parse(&["get-token", "--issuer", "https://i.example", "--client-id", "c"]);
        apply_profile_with(
            &mut cli,
            || panic!("located the config file"),
            |_| panic!("read the config file"),
            env,
        )
        .unwrap();
    }

    #[test]
    fn a_missing_profile_lists_the_available_ones() {
        let err = applied(&["login", "--profile", "home"], Some(file()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "no profile \"home\" in /cfg/koidc/config.toml; available: work, work2"
        );
        let empty = ConfigFile::parse(Path::new("/c.toml"), "").unwrap();
        let err = applied(&["login", "--profile", "home"], Some(empty))
            .unwrap_err()
            .to_string();
        assert!(err.contains("defines no profiles"), "{err}");
    }

    #[test]
    fn a_profile_without_a_config_file_says_where_it_looked() {
        let err = applied(&["get-token", "--profile", "work"], None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("there is no config file /cfg/koidc/config.toml"),
            "{err}"
        );
        assert!(err.contains("[profiles.work]"), "{err}");
        // Without --profile a missing file is fine.
        assert!(applied(&["get-token"], None).is_ok());
    }

    #[test]
    fn bad_enum_values_list_the_accepted_ones() {
        let f = ConfigFile::parse(Path::new("/c.toml"), "[profiles.a]\ncache = \"disk\"\n").unwrap();
        let err = applied(&["get-token", "--profile", "a"], Some(f))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid cache \"disk\" in profile \"a\" of /c.toml: expected one of keyring, file, none"
        );
    }

    #[test]
    fn the_client_secret_comes_from_the_named_variable_never_the_file() {
        let cli = applied(&["login", "--profile", "work2"], Some(file())).unwrap();
        match &cli.command {
            Command::Login(a) => assert_eq!(a.login.client_secret.as_deref(), Some("s3cret")),
            other => panic!("{other:?}"),
        }
        let f = ConfigFile::parse(
            Path::new("/c.toml"),
            "[profiles.a]\nissuer = \"https://i\"\nclient-secret-env = \"UNSET_VAR\"\n",
        )
        .unwrap();
        let err = applied(&["get-token", "--profile", "a"], Some(f.clone()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("UNSET_VAR"), "{err}");
        // whoami never sends the secret, so it does not need the variable.
        assert!(applied(&["whoami", "--profile", "a"], Some(f)).is_ok());
        let secret = ConfigFile::parse(Path::new("/c.toml"), "[profiles.a]\nclient-secret = \"x\"\n");
        assert!(secret.is_err(), "a secret in the file must be refused");
    }

    #[test]
    fn an_empty_profile_name_means_no_profile() {
        let cli = applied(
            &[
                "get-token",
                "--profile=",
                "--issuer",
                "https://i.example",
                "--client-id",
                "c",
            ],
            Some(file()),
        )
        .unwrap();
        assert_eq!(get_token(&cli).identity.profile, None);
    }

    #[test]
    fn commands_without_identity_options_ignore_profiles() {
        let mut cli = parse(&["bind-group", "g", "view"]);
        apply_profile_with(&mut cli, || panic!("located"), |_| panic!("read"), env).unwrap();
    }

    #[test]
    fn the_default_profile_is_not_applied_to_a_pipeline_that_names_its_audience() {
        let file = ConfigFile::parse(
            Path::new("/c.toml"),
            "default-profile = \"dev\"\n[profiles.dev]\nissuer = \"https://dex.example/dex\"\nclient-id = \"koidc\"\n",
        )
        .unwrap();
        let mut cli = parse(&["get-token", "--grant", "workload", "--audience", "kubernetes"]);
        apply_profile_with(
            &mut cli,
            || Some(PathBuf::from("/c.toml")),
            |_| Ok(Some(file.clone())),
            |_| None,
        )
        .unwrap();
        let args = get_token(&cli);
        assert_eq!(args.identity.issuer, None);
        assert_eq!(args.identity.profile, None);
    }
}
