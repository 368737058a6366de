//! One module per subcommand; [`run`] dispatches and wires the adapters.
//!
//! Commands are thin: they validate their flags into config types, open the store, and call the
//! use case in [`crate::login::pipeline`] or read the cache directly. Results go to stdout through the
//! [`Printer`]; everything else goes to stderr.

pub(crate) mod bind_group;
mod completions;
mod doctor;
mod get_token;
mod github;
mod login;
mod logout;
mod man;
mod setup;
mod webhook;
mod whoami;

use std::sync::Arc;

use crate::cli::{CacheFlags, Cli, Command};
use crate::clock::{Clock, SystemClock};
use crate::config::{CacheConfig, Identity, LoginConfig};
use crate::login::cache::{CacheKey, CacheKind, TokenStore, open_store};
use crate::login::pipeline::{Authenticator, Obtained};
use crate::login::sources;
use crate::printer::Printer;

/// Runs the parsed command line.
pub fn run(mut cli: Cli) -> anyhow::Result<()> {
    client_secret_from_file(&mut cli)?;
    crate::config::apply_profile(&mut cli)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match cli.command {
        Command::GetToken(args) => get_token::run(&args, clock, std::env::var("KUBERNETES_EXEC_INFO").ok()),
        Command::Login(args) => login::run(&args, clock),
        Command::Logout(args) => logout::run(&args, clock),
        Command::Clean(args) => logout::run(&args.into(), clock),
        Command::Whoami(args) => whoami::run(&args, clock),
        Command::BindGroup(args) => bind_group::run(&args),
        Command::Setup(args) => setup::run(&args, clock),
        Command::Webhook(args) => webhook::run(&args),
        Command::Completions(args) => completions::run(&args),
        Command::Man(args) => man::run(&args),
        Command::Doctor(args) => doctor::run(&args, &cli.explicit, clock),
        Command::Version => {
            use clap::CommandFactory as _;
            Printer::default().result(&Cli::command().render_version())?;
            Ok(())
        }
    }
}

/// The cache entries that `identity` selects for `logout` and `whoami`: every listed entry of its
/// issuer and client id whatever its scopes (scopes are part of the key, and users do not repeat
/// them), of its profile only when it has one, plus its own key (so that an entry the listing
/// skips, a damaged one, is still found); sorted as [`sort_keys`] does.
fn cached_keys_of(store: &dyn TokenStore, identity: &Identity) -> anyhow::Result<Vec<CacheKey>> {
    let own = identity.cache_key();
    let mut keys: Vec<CacheKey> = store
        .list()?
        .into_iter()
        .filter(|key| {
            key.issuer == own.issuer
                && key.client_id == own.client_id
                && (own.profile.is_none() || key.profile == own.profile)
                && key.id() != own.id()
        })
        .collect();
    keys.push(own);
    sort_keys(&mut keys);
    Ok(keys)
}

/// Orders entries by issuer, client id, profile (none first) and scopes, so that listings are
/// stable.
fn sort_keys(keys: &mut [CacheKey]) {
    keys.sort_by(|a, b| {
        (&a.issuer, &a.client_id, &a.profile, &a.scopes).cmp(&(
            &b.issuer,
            &b.client_id,
            &b.profile,
            &b.scopes,
        ))
    });
}

/// An entry as messages name it: issuer and client, then the scopes and profile that tell it
/// apart from the client's other entries (`https://dex.example.com (client kubernetes, scopes
/// email groups, profile work)`).
fn describe_key(key: &CacheKey) -> String {
    let mut text = format!("{} (client {}", key.issuer, key.client_id);
    if !key.scopes.is_empty() {
        text.push_str(", scopes ");
        text.push_str(&key.scopes.join(" "));
    }
    if let Some(profile) = &key.profile {
        text.push_str(", profile ");
        text.push_str(profile);
    }
    text.push(')');
    text
}

/// Warns about `--client-secret` (an argument other users can read), and reads
/// `--client-secret-file` (a private file, as the webhook's) into the client secret, which
/// then counts as given (a profile's `client-secret-env` does not replace it).
fn client_secret_from_file(cli: &mut Cli) -> anyhow::Result<()> {
    if cli.explicit.secret_argument() {
        crate::printer::stderr_line(format_args!(
            "koidc: warning: {}",
            crate::cli::SECRET_ARGUMENT_DEPRECATED
        ));
    }
    let Some(login) = cli.command.login_flags_mut() else {
        return Ok(());
    };
    let Some(path) = login.client_secret_file.as_deref() else {
        return Ok(());
    };
    if login.client_secret.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(crate::cluster::webhook::WebhookError::TwoClientSecrets.into());
    }
    let secret = crate::cluster::webhook::read_secret_file(path)?;
    login.client_secret = Some(secrecy::ExposeSecret::expose_secret(&secret).to_owned());
    Ok(())
}

/// Validated cache settings and the store they open.
fn open_cache(flags: &CacheFlags) -> anyhow::Result<(CacheConfig, Box<dyn TokenStore>)> {
    let cache = CacheConfig::from_flags(flags)?;
    let store = open_store(cache.kind, &cache.dir)?;
    Ok((cache, store))
}

/// An identity and its opened token cache: how `get-token`, `login`, `setup --check-login` and
/// `doctor` obtain a token.
struct Session<'a> {
    identity: &'a Identity,
    cache: CacheConfig,
    /// The store opened for `cache`; `login` and GitHub's `setup` read its metadata afterwards.
    store: Box<dyn TokenStore>,
    clock: Arc<dyn Clock>,
    printer: Printer,
}

impl<'a> Session<'a> {
    /// Validates the cache flags and opens the store.
    fn open(
        identity: &'a Identity,
        flags: &CacheFlags,
        clock: Arc<dyn Clock>,
        printer: Printer,
    ) -> anyhow::Result<Self> {
        if identity.machine.as_ref().is_some_and(|m| !m.uses_cache()) {
            // A job token read on every call: nothing to cache, nothing to lock, nothing to
            // record, so no cache directory either (a pod may have no HOME).
            let cache = CacheConfig {
                kind: CacheKind::None,
                dir: flags.cache_dir.clone().unwrap_or_default(),
            };
            return Ok(Self {
                identity,
                store: open_store(CacheKind::None, &cache.dir)?,
                cache,
                clock,
                printer,
            });
        }
        let mut cache = CacheConfig::from_flags(flags)?;
        if identity.machine.is_some() && flags.cache.is_none() {
            // A CI runner has no keyring (and no person to unlock one): short-lived tokens go
            // to files (0600) without a warning about the missing keyring.
            cache.kind = CacheKind::File;
        }
        let store = open_store(cache.kind, &cache.dir)?;
        Ok(Self {
            identity,
            cache,
            store,
            clock,
            printer,
        })
    }

    /// A token from the cache, refreshed, or from a new login in the browser `login` names
    /// (`force_login`: log in even when a usable token is cached).
    fn obtain(&self, login: &LoginConfig, force_login: bool) -> anyhow::Result<Obtained> {
        let browser = login.browser.clone().into_browser();
        let selected = sources::select(sources::Context {
            identity: self.identity,
            login,
            browser: browser.as_ref(),
            clock: self.clock.clone(),
            printer: self.printer,
        })?;
        let authenticator = Authenticator {
            identity: self.identity,
            cache: &self.cache,
            store: self.store.as_ref(),
            clock: self.clock.clone(),
            printer: self.printer,
            source: selected.source(),
        };
        authenticator.obtain(login, force_login)
    }
}

/// The `BROWSER` variable, when set.
fn env_browser() -> Option<String> {
    std::env::var("BROWSER").ok().filter(|b| !b.trim().is_empty())
}
