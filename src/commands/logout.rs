//! `koidc logout` (and `koidc clean`, kubelogin's name for `logout --all`): revoke the refresh
//! token (GitHub: the access token) where the provider offers revocation, then forget the cached
//! tokens — of one client or, with `--all`, of every identity.
//!
//! Which entries: scopes are part of the cache key, but nobody repeats them to log out, so
//! `--issuer`/`--client-id` select every entry of that issuer and client, whatever its scopes
//! and profile (with `--profile`, that profile's entries only); stdout names each entry with the
//! scopes and profile that tell it apart, and the number removed.
//!
//! Each entry is logged out under its cache lock (the one `get-token` and `login` hold while they
//! refresh or log in): a refresh or login in flight finishes first, and logout then revokes and
//! deletes what it saved, so no entry comes back after "logged out" (waiting as long as the
//! holder announced, see [`crate::login::cache::CacheLock`]). Its cool-down marker and, still holding
//! it, the lock file go too; `--all` then removes every other lock file and marker that no
//! process holds (a login in flight keeps its lock, and logout says so).
//!
//! A client secret belongs to one client: it is sent only when revoking an entry of the issuer
//! and client id that the flags (or the profile) name. With `--all`, every other entry is revoked
//! as a public client (OpenID Connect) or not at all (GitHub, whose revocation API needs the app's
//! secret), and one line per entry on stderr says which.
//!
//! Revocation is best effort: a failure is reported as a warning and the local entry is deleted
//! anyway, so logging out never leaves usable tokens on the machine. An issuer without a
//! revocation endpoint is named too: its refresh token stays valid until it expires.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use secrecy::SecretString;

use super::describe_key;
use crate::cli::{GrantArg, IdentityFlags, LogoutArgs};
use crate::clock::Clock;
use crate::config::{ConfigError, Identity, LoginConfig};
use crate::login::cache::{CacheKey, CacheKind, CacheLock, TokenStore, lock_budget, remove_unheld_locks};
use crate::login::pipeline::cooldown::{self, Cooldown};
use crate::login::sources::{self, Revocation, RevokeRequest};
use crate::printer::Printer;

/// Logs out of the selected client's entries or of all of them.
pub fn run(args: &LogoutArgs, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let printer = Printer::new(args.output.verbose);
    let (cache, store) = super::open_cache(&args.cache)?;
    let login = LoginConfig::from_flags(&args.login, None)?;
    // The identity the flags or the profile name: the only client the secret belongs to.
    let configured = if args.all {
        match Identity::optional_from_flags(&args.identity, args.login.grant) {
            Ok(identity) => identity,
            Err(err) => {
                printer.debug(format_args!("no identity named for the client secret: {err}"));
                None
            }
        }
    } else {
        Some(named_identity(&args.identity, args.login.grant)?)
    };
    if let (Some(identity), true) = (&configured, args.all) {
        printer.info(format_args!(
            "logging out of every cached identity (--all); {} (client {}) is only the client the \
             client secret is for",
            identity.issuer, identity.client_id
        ));
    }
    let keys = match (&configured, args.all) {
        (Some(identity), false) => super::cached_keys_of(store.as_ref(), identity)?,
        _ => {
            let mut keys = store.list()?;
            super::sort_keys(&mut keys);
            keys
        }
    };
    let mut removed = 0;
    let mut skipped = 0;
    // A failed write to stdout must not leave the remaining entries logged in: it is reported
    // after every entry is gone.
    let mut output: std::io::Result<()> = Ok(());
    for key in &keys {
        let lock = if cache.kind == CacheKind::None {
            None
        } else {
            printer.debug(format_args!(
                "waiting for the cache lock of {}",
                describe_key(key)
            ));
            let lock = CacheLock::acquire(&cache.dir, key, lock_budget(login.timeout))
                .with_context(|| format!("cannot log out of {}", describe_key(key)));
            match lock {
                Ok(lock) => Some(lock),
                // With several entries (--all, or a client's), one whose lock stays held must
                // not keep the others logged in: say so, go on, and fail at the end.
                Err(err) if keys.len() > 1 => {
                    printer.warn(format_args!("{err:#}"));
                    skipped += 1;
                    continue;
                }
                Err(err) => return Err(err),
            }
        };
        if !args.no_revoke {
            let credentials = Credentials::for_entry(key, configured.as_ref(), login.client_secret.as_ref());
            let outcome = revoke(
                store.as_ref(),
                key,
                configured.as_ref(),
                &credentials,
                &login,
                clock.clone(),
            );
            report(printer, key, &credentials, &outcome, args.all);
        }
        let deleted = store.delete(key)?;
        if let Some(lock) = lock {
            forget_files(printer, &cache.dir, key, lock);
        }
        if deleted {
            removed += 1;
            let line = printer.result(&format!("logged out of {}", describe_key(key)));
            output = output.and(line);
        }
    }
    if args.all && cache.kind != CacheKind::None {
        sweep(printer, &cache.dir)?;
    }
    if skipped > 0 {
        anyhow::bail!(
            "{skipped} of {} cached entries are still logged in (their cache lock stayed held; see the warnings above)",
            keys.len()
        );
    }
    output.context("logged out, but could not write the list of entries on stdout")?;
    let client = configured
        .as_ref()
        .filter(|_| !args.all)
        .map(|id| format!(" of {} (client {})", id.issuer, id.client_id))
        .unwrap_or_default();
    match removed {
        0 => printer.info(format_args!("no cached tokens{client} to forget")),
        1 => {}
        n => printer.result(&format!("{n} cached entries{client} removed"))?,
    }
    Ok(())
}

/// The identity a `logout` without `--all` names; without any identity option, an error that
/// offers `--all`.
fn named_identity(flags: &IdentityFlags, grant: Option<GrantArg>) -> anyhow::Result<Identity> {
    let machine = matches!(grant, Some(GrantArg::ClientCredentials | GrantArg::Workload));
    if flags.issuer.is_none() && flags.client_id.is_none() && flags.profile.is_none() && !machine {
        anyhow::bail!(
            "say whose cached tokens to forget: --issuer URL --client-id ID (or --profile NAME), \
             or --all to log out of every cached identity (`koidc logout --all`)"
        );
    }
    Identity::from_flags(flags, grant).map_err(|err| match err {
        ConfigError::Missing { .. } => {
            anyhow::anyhow!("{err}; or --all to log out of every cached identity")
        }
        err => err.into(),
    })
}

/// Deletes the cool-down marker of `key`'s entry, then its lock file while still holding it
/// (best effort: a file left behind is harmless and said at -v).
fn forget_files(printer: Printer, dir: &Path, key: &CacheKey, lock: CacheLock) {
    Cooldown::new(dir, &key.id()).clear();
    if let Err(err) = lock.remove() {
        printer.debug(format_args!("{err}"));
    }
}

/// `--all`: removes the lock files and cool-down markers no process holds; a held lock means a
/// login or refresh in flight, whose tokens will be cached when it finishes.
fn sweep(printer: Printer, dir: &Path) -> anyhow::Result<()> {
    let swept = remove_unheld_locks(dir, &[cooldown::EXT])?;
    printer.debug(format_args!("removed {} lock and cool-down files", swept.removed));
    for path in &swept.held {
        printer.info(format_args!(
            "a login or refresh is in flight (another koidc process holds {}); its tokens will be \
             cached when it finishes: run `koidc logout --all` again then",
            path.display()
        ));
    }
    for err in &swept.failed {
        printer.warn(format_args!("{err}"));
    }
    Ok(())
}

/// Which client secret an entry's revocation may use.
enum Credentials<'a> {
    /// The secret configured for this entry's issuer and client.
    Secret(&'a SecretString),
    /// The secret given belongs to another client (issuer, client id).
    OtherClient(String, String),
    /// A secret was given without naming whose it is (`--all` without identity flags).
    Unbound,
    /// No secret was given.
    None,
}

impl<'a> Credentials<'a> {
    fn for_entry(key: &CacheKey, configured: Option<&Identity>, secret: Option<&'a SecretString>) -> Self {
        let Some(secret) = secret else {
            return Credentials::None;
        };
        match configured {
            Some(id) if id.issuer == key.issuer && id.client_id == key.client_id => {
                Credentials::Secret(secret)
            }
            Some(id) => Credentials::OtherClient(id.issuer.clone(), id.client_id.clone()),
            None => Credentials::Unbound,
        }
    }

    fn secret(&self) -> Option<&'a SecretString> {
        match self {
            Credentials::Secret(secret) => Some(secret),
            _ => None,
        }
    }

    /// How the request authenticates, for the report.
    fn how(&self) -> String {
        match self {
            Credentials::Secret(_) => "with the client secret configured for this client".to_owned(),
            Credentials::OtherClient(issuer, client) => {
                format!("as a public client (the client secret given is for {issuer} client {client})")
            }
            Credentials::Unbound => {
                "as a public client (a client secret was given without --issuer/--client-id \
                                     or a profile naming its client)"
                    .to_owned()
            }
            Credentials::None => "as a public client (no client secret given)".to_owned(),
        }
    }
}

/// What revoking one entry did.
enum Outcome {
    /// The entry's source says what its provider did (or that there was nothing to revoke).
    Done(Revocation),
    /// The request failed.
    Failed(anyhow::Error),
}

/// Revokes the entry's token (best effort), through the source the entry's kind names.
fn revoke(
    store: &dyn TokenStore,
    key: &CacheKey,
    configured: Option<&Identity>,
    credentials: &Credentials<'_>,
    login: &LoginConfig,
    clock: Arc<dyn Clock>,
) -> Outcome {
    let Ok(Some((tokens, meta))) = store.load_with_meta(key) else {
        return Outcome::Done(Revocation::Nothing);
    };
    let request = RevokeRequest {
        key,
        // The GitHub URLs of the identity the flags name apply to the entries of its own client only.
        github: configured
            .filter(|id| id.issuer == key.issuer && id.client_id == key.client_id)
            .and_then(|id| id.github.clone()),
        client_secret: credentials.secret(),
        login,
        clock,
    };
    match sources::revoke_entry(tokens, &meta, request) {
        Ok(revocation) => Outcome::Done(revocation),
        Err(err) => Outcome::Failed(err),
    }
}

/// Says what happened: with `--all`, one line per entry (which credentials it was revoked with);
/// for one client, only what needs attention (a failure, a token left valid at the provider).
fn report(printer: Printer, key: &CacheKey, credentials: &Credentials<'_>, outcome: &Outcome, all: bool) {
    let who = describe_key(key);
    let how = credentials.how();
    let needs_secret = |web: &str| {
        format!(
            "the GitHub token was deleted locally but not revoked (that needs the OAuth app's client secret, \
             KOIDC_CLIENT_SECRET, with --provider github and this client id); you can revoke it at \
             {web}/settings/applications"
        )
    };
    match outcome {
        Outcome::Failed(err) => {
            let how = if credentials.secret().is_some() || !all {
                String::new()
            } else {
                format!(" {how}")
            };
            printer.warn(format_args!("{who}: could not revoke the token{how}: {err:#}"));
        }
        Outcome::Done(Revocation::NeedsSecret(web)) if all => {
            let given = match credentials {
                Credentials::OtherClient(issuer, client) => {
                    format!("; the one given is for {issuer} client {client}")
                }
                Credentials::Unbound => "; the one given names no client".to_owned(),
                Credentials::Secret(_) | Credentials::None => String::new(),
            };
            printer.info(format_args!(
                "{who}: not revoked (GitHub's revocation needs this OAuth app's client secret{given}); \
                 you can revoke it at {web}/settings/applications"
            ));
        }
        Outcome::Done(Revocation::NeedsSecret(web)) => printer.info(needs_secret(web)),
        Outcome::Done(Revocation::Revoked) if all => {
            printer.info(format_args!("{who}: revoked the token {how}"))
        }
        Outcome::Done(Revocation::AlreadyGone) if all => printer.info(format_args!(
            "{who}: GitHub no longer knew the token (already revoked or expired)"
        )),
        // Said in both modes: "logged out" must not suggest the token is dead at the issuer.
        Outcome::Done(Revocation::NoEndpoint) => printer.info(format_args!(
            "{who}: not revoked: the issuer offers no revocation endpoint (the refresh token \
             stays valid at the issuer until it expires)"
        )),
        Outcome::Done(Revocation::Nothing) if all => {
            printer.info(format_args!("{who}: nothing to revoke (no refresh token)"))
        }
        Outcome::Done(Revocation::Revoked) => {
            printer.debug(format_args!("revoked the token at {}", key.issuer))
        }
        Outcome::Done(Revocation::AlreadyGone) => {
            printer.debug("GitHub no longer knew the token (already revoked or expired)")
        }
        Outcome::Done(Revocation::Nothing) => {}
    }
}
