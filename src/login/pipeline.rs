//! The use case behind `get-token` and `login`: serve a cached credential, else renew it, else
//! log in — with at most one renewal or login at a time across processes. Written once, for every
//! [`CredentialSource`] (OpenID Connect, GitHub; see `crate::login::sources`).
//!
//! The warm path ([`Authenticator::cached`]) reads the store and lets the source read the entry
//! (an ID token's payload decoded, a GitHub entry's account); it builds no HTTP client, starts
//! no async runtime and does no discovery. Only when the credential is missing or about to expire
//! does [`Authenticator::obtain`] take the cross-process lock, look again (another kubectl may
//! have renewed it meanwhile), and let the source talk to the provider ([`CredentialSource::connect`]):
//! renew the entry ([`Connection::renew`]: a refresh, GitHub's hourly check), else log in
//! ([`Connection::login`]).
//!
//! What is decided here, the same for every source: the lock and the re-read under it; the login
//! cool-down (after a failed or abandoned login, non-interactive kubectl calls fail fast for
//! [`COOLDOWN`](cooldown::COOLDOWN) instead of opening browser tabs again, see [`cooldown`]);
//! saving the result (a save that fails forgets the entry, whose refresh token the provider may
//! have rotated away); the provider-specific wording of errors ([`crate::provider::explain`]);
//! and, after a login, saying on stderr who logged in, with a warning when it is not the
//! identity cached before for the same key ([`announce_login`]). What a source decides: whether
//! a cached entry can be served ([`CredentialSource::valid_until`]), whether it can be renewed
//! and how, with which outcome ([`Renewal`]), and how a login goes.

pub mod cooldown;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::clock::Clock;
use crate::config::{CacheConfig, Identity, LoginConfig};
use crate::login::cache::{CacheError, CacheKind, CacheLock, EntryMeta, TokenStore};
use crate::login::token::{CredentialEntry, IdTokenInfo, LoginIdentity, TokenSet};
use crate::printer::Printer;

use self::cooldown::Cooldown;

/// A cached token with less than this left is renewed before it is handed out; kubectl is told
/// the token expires this much earlier than it does (kubectl reuses it until then, with no margin
/// of its own).
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(90);

/// How a token was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Served from the cache (for GitHub: also after GitHub confirmed it again).
    Cache,
    /// Renewed with the refresh token.
    Refresh,
    /// A fresh login (browser or device).
    Login,
}

/// A usable credential.
#[derive(Debug, Clone)]
pub struct Obtained {
    /// The credential and what renews it.
    pub entry: CredentialEntry,
    /// Until when it may be used without asking anyone ([`CredentialSource::valid_until`]),
    /// before the margin: what kubectl is told, less [`EXPIRY_MARGIN`].
    pub expiry: DateTime<Utc>,
    /// Where it came from.
    pub source: Source,
    /// After a login for another identity than the one cached before: that one (the pipeline
    /// warned about it, see [`announce_login`]).
    pub replaced: Option<LoginIdentity>,
}

impl Obtained {
    /// The token for kubectl.
    pub fn token(&self) -> &SecretString {
        self.entry.credential.token()
    }

    /// The ID token's claims, when the credential is an ID token.
    pub fn id_token_info(&self) -> Option<&IdTokenInfo> {
        self.entry.credential.id_token_info()
    }

    /// The expiry to report to kubectl: [`EXPIRY_MARGIN`] before [`Obtained::expiry`], or
    /// halfway to it for a fresh token that lives shorter than the margin.
    pub fn report_expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        report_expiry(self.expiry, now)
    }
}

fn report_expiry(exp: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    let margin = margin();
    if exp - margin > now {
        exp - margin
    } else {
        now + (exp - now) / 2
    }
}

/// One way of getting a credential for an identity: reading it back from the cache, renewing it,
/// logging in. The reading side ([`Self::read`], [`Self::write`], [`Self::valid_until`],
/// [`Self::renewable`]) runs on the warm path and must stay offline and cheap; everything that
/// talks to a provider goes through [`Self::connect`].
pub trait CredentialSource {
    /// The cache entry `tokens` + `meta` as this source's credential, or why it cannot be used
    /// for this identity (one line; warned about when the pipeline reports the read).
    fn read(&self, tokens: TokenSet, meta: EntryMeta) -> Result<CredentialEntry, String>;

    /// The form `entry` is stored in (the inverse of [`Self::read`]).
    fn write(&self, entry: &CredentialEntry) -> (TokenSet, EntryMeta);

    /// Until when `entry` may be handed out without asking anyone (its expiry, or when its next
    /// check is due); `None` when it needs a renewal whatever the time. The pipeline serves it
    /// only with more than [`EXPIRY_MARGIN`] left.
    fn valid_until(&self, entry: &CredentialEntry, now: DateTime<Utc>) -> Option<DateTime<Utc>>;

    /// Whether [`Connection::renew`] has anything to try for `entry` at `now` (a refresh token,
    /// a token GitHub can confirm); when not, only a login helps.
    fn renewable(&self, entry: &CredentialEntry, now: DateTime<Utc>) -> bool;

    /// Prepares to talk to the provider (HTTP client, discovery, async runtime). Called only when
    /// the cache cannot serve, under the lock.
    fn connect(&self) -> anyhow::Result<Box<dyn Connection + '_>>;
}

/// A source ready to talk to its provider.
pub trait Connection {
    /// Renews `entry` (which [`CredentialSource::renewable`] accepted) without a login.
    fn renew(&mut self, entry: &CredentialEntry) -> Renewal;

    /// Logs in (browser, pasted code or device code): a new entry.
    fn login(&mut self) -> anyhow::Result<CredentialEntry>;
}

/// How a renewal ended.
#[derive(Debug)]
pub enum Renewal {
    /// The provider renewed or confirmed the credential: it is saved and handed out, as
    /// `source` ([`Source::Refresh`] for new tokens, [`Source::Cache`] for the same token
    /// confirmed again).
    Renewed {
        /// The entry to save and hand out.
        entry: CredentialEntry,
        /// How to report it.
        source: Source,
    },
    /// The provider could not be asked, and the source vouches for the entry a little longer:
    /// handed out until `until` (before the margin), not saved.
    Unconfirmed {
        /// The entry as cached.
        entry: CredentialEntry,
        /// Until when kubectl may use it.
        until: DateTime<Utc>,
    },
    /// The provider refused the entry (the source said why): a login follows. `forget`: the
    /// entry is dead (revoked), delete it now rather than at the login's save.
    LogIn {
        /// Delete the cached entry now.
        forget: bool,
    },
    /// The renewal failed in a way a login would not fix (the network): reported. `keep`: an
    /// entry to save first (a refresh token the provider rotated while its new ID token could
    /// not be verified yet).
    Failed {
        /// The error.
        error: anyhow::Error,
        /// What to save before reporting it.
        keep: Option<CredentialEntry>,
    },
}

/// The adapters the use case drives, wired in `commands` (tests swap them).
pub struct Authenticator<'a> {
    /// Which identity.
    pub identity: &'a Identity,
    /// Where tokens live.
    pub cache: &'a CacheConfig,
    /// The store opened for `cache`.
    pub store: &'a dyn TokenStore,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Messages.
    pub printer: Printer,
    /// Reads, renews and logs in (selected by `crate::login::sources::select`).
    pub source: &'a dyn CredentialSource,
}

impl Authenticator<'_> {
    /// The cached credential when it has more than [`EXPIRY_MARGIN`] left. No network, no lock.
    pub fn cached(&self) -> Result<Option<Obtained>, CacheError> {
        let Some(entry) = self.load_entry(true)? else {
            return Ok(None);
        };
        Ok(self.servable(entry, self.clock.now()))
    }

    /// `entry` as served from the cache, when it has more than the margin left.
    fn servable(&self, entry: CredentialEntry, now: DateTime<Utc>) -> Option<Obtained> {
        match self.source.valid_until(&entry, now) {
            Some(until) if until - now > margin() => {
                self.printer
                    .debug(format_args!("using the cached token (valid until {until})"));
                Some(Obtained {
                    entry,
                    expiry: until,
                    source: Source::Cache,
                    replaced: None,
                })
            }
            Some(_) => {
                self.printer
                    .debug("the cached token expires within the safety margin");
                None
            }
            None => {
                self.printer.debug("the cached token is due for a check");
                None
            }
        }
    }

    /// Reads the cache entry. A damaged entry, or one the source cannot use, counts as a miss
    /// (the next save replaces it) and is reported when `report` is set; an entry or directory
    /// other users could read stops koidc.
    fn load_entry(&self, report: bool) -> Result<Option<CredentialEntry>, CacheError> {
        let key = self.identity.cache_key();
        let (tokens, meta) = match self.store.load_with_meta(&key) {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                self.printer.debug("no cached token");
                return Ok(None);
            }
            Err(err) if err.is_corrupt() => {
                if report {
                    self.printer
                        .warn(format_args!("ignoring the cached token: {err}"));
                }
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        match self.source.read(tokens, meta) {
            Ok(entry) => Ok(Some(entry)),
            Err(why) => {
                if report {
                    self.printer.warn(why);
                }
                Ok(None)
            }
        }
    }

    /// A usable credential: cached, renewed, or from a login (`force_login` skips the first two).
    ///
    /// A non-interactive kubectl call (`login.kubectl_interactive == Some(false)`) that needs a
    /// login within [`COOLDOWN`](cooldown::COOLDOWN) of a failed one fails with [`CoolingDown`](cooldown::CoolingDown) instead.
    ///
    /// `login.force_refresh` skips serving the cached token: a renewable entry is renewed now
    /// (and a login follows only when the renewal fails, as for an expired token).
    pub fn obtain(&self, login: &LoginConfig, force_login: bool) -> anyhow::Result<Obtained> {
        let serve_cached = !force_login && !login.force_refresh;
        if serve_cached && let Some(hit) = self.cached()? {
            return Ok(hit);
        }
        // One renewal or login at a time per identity; the others wait and then reuse its result.
        let _lock = if self.cache.kind == CacheKind::None {
            None
        } else {
            let wait = crate::login::cache::lock_budget(login.timeout);
            self.printer.debug("waiting for the cache lock");
            Some(CacheLock::acquire(
                &self.cache.dir,
                &self.identity.cache_key(),
                wait,
            )?)
        };
        // Read again under the lock; a damaged entry was already reported by `cached` unless
        // that was skipped.
        let previous = self.load_entry(force_login)?;
        let now = self.clock.now();
        if serve_cached
            && let Some(entry) = &previous
            && let Some(hit) = self.servable(entry.clone(), now)
        {
            self.printer
                .debug("another koidc process renewed the token meanwhile");
            return Ok(hit);
        }
        // The entry to renew, when the source can renew it.
        let renewable = previous
            .as_ref()
            .filter(|entry| !force_login && self.source.renewable(entry, now));

        let cooldown = Cooldown::new(&self.cache.dir, &self.identity.cache_key().id());
        let non_interactive = login.kubectl_interactive == Some(false);
        if non_interactive && renewable.is_none() {
            // Only a login can help: decide before any network traffic.
            self.check_cooldown(&cooldown)?;
        }

        let obtained = self.renew_or_log_in(renewable, non_interactive, &cooldown);
        // Okta (and any provider koidc has presets for) gets messages naming its own settings.
        let obtained = obtained.map_err(|err| {
            crate::provider::explain(self.identity.provider, err, None, login.client_secret.is_some())
        })?;
        if obtained.source != Source::Cache && self.cools_down() {
            cooldown.clear();
        }
        let mut obtained = obtained;
        if obtained.source == Source::Login && self.identity.machine.is_some() {
            // A pipeline's token is fetched again whenever it is due, with nobody to warn: one
            // line per kubectl call in a job's log would be noise.
            self.printer.debug(format_args!(
                "got a token for {} from {}",
                obtained.entry.credential.identity().shown,
                self.identity.issuer
            ));
        } else if obtained.source == Source::Login {
            let before = previous.as_ref().map(|p| p.credential.identity());
            let now = obtained.entry.credential.identity();
            announce_login(self.printer, &self.identity.issuer, &now, before.as_ref());
            obtained.replaced = before.filter(|before| before.subject != now.subject);
        }
        Ok(obtained)
    }

    /// The network part of [`Self::obtain`]: renews `renewable` when given, else (or when the
    /// provider refuses it) logs in; saves what it gets.
    fn renew_or_log_in(
        &self,
        renewable: Option<&CredentialEntry>,
        non_interactive: bool,
        cooldown: &Cooldown,
    ) -> anyhow::Result<Obtained> {
        let mut connection = self.source.connect()?;
        if let Some(entry) = renewable {
            match connection.renew(entry) {
                Renewal::Renewed { entry, source } => {
                    self.save(&entry);
                    return Ok(self.obtained(entry, source));
                }
                Renewal::Unconfirmed { entry, until } => {
                    return Ok(Obtained {
                        entry,
                        expiry: until,
                        source: Source::Cache,
                        replaced: None,
                    });
                }
                Renewal::Failed { error, keep } => {
                    if let Some(keep) = keep {
                        self.printer
                            .debug("keeping the renewed refresh token for the next try");
                        self.save(&keep);
                    }
                    return Err(error);
                }
                Renewal::LogIn { forget } => {
                    if forget && let Err(err) = self.store.delete(&self.identity.cache_key()) {
                        self.printer.warn(format_args!(
                            "could not delete the revoked token's cache entry: {err}"
                        ));
                    }
                }
            }
            if non_interactive {
                self.check_cooldown(cooldown)?;
            }
        }
        match connection.login() {
            Ok(entry) => {
                self.save(&entry);
                Ok(self.obtained(entry, Source::Login))
            }
            Err(err) if !self.cools_down() => Err(err),
            Err(err) => {
                let reason = format!("{err:#}");
                if let Err(e) = cooldown.record(self.clock.now(), &reason) {
                    self.printer.debug(format_args!(
                        "cannot write the cool-down marker {}: {e}",
                        cooldown.path().display()
                    ));
                }
                Err(err)
            }
        }
    }

    /// A renewed or new entry, handed out until the source says (at once when it says nothing).
    fn obtained(&self, entry: CredentialEntry, source: Source) -> Obtained {
        let now = self.clock.now();
        let expiry = self.source.valid_until(&entry, now).unwrap_or(now);
        Obtained {
            entry,
            expiry,
            source,
            replaced: None,
        }
    }

    /// Fails with [`CoolingDown`](cooldown::CoolingDown) while a failed login is on record
    /// ([`PipelineCoolingDown`](cooldown::PipelineCoolingDown), with the failure's reason, for a
    /// pipeline). A pipeline that reads its token from a file or a variable has nothing to
    /// protect and is never held back.
    fn check_cooldown(&self, cooldown: &Cooldown) -> anyhow::Result<()> {
        if !self.cools_down() {
            return Ok(());
        }
        match cooldown.check(self.clock.now()) {
            Ok(()) => Ok(()),
            Err((cooling, reason)) if self.identity.machine.is_some() => Err(cooldown::PipelineCoolingDown {
                secs_ago: cooling.secs_ago,
                reason,
            }
            .into()),
            Err((cooling, reason)) => {
                self.printer
                    .debug(format_args!("the last login failed: {reason}"));
                Err(cooling.into())
            }
        }
    }

    /// Whether failures of this identity are recorded and held against the next
    /// non-interactive calls: a person's login, a pipeline asking a service; not a pipeline
    /// reading its token from a file or variable, which asks nobody.
    fn cools_down(&self) -> bool {
        self.identity
            .machine
            .as_ref()
            .is_none_or(crate::config::Machine::asks_a_service)
    }

    /// Stores `entry`; a failure is a warning (the token is still handed out).
    fn save(&self, entry: &CredentialEntry) {
        let key = self.identity.cache_key();
        let (tokens, meta) = self.source.write(entry);
        if let Err(err) = self.store.save_with_meta(&key, &tokens, &meta) {
            // The entry still holds the previous refresh token, which the IdP may just have
            // rotated away: using it again would look like token theft (Okta then revokes the
            // whole token family). Forget it so that the next call logs in instead.
            let forgotten = self.store.delete(&key).is_ok();
            self.printer.warn(format_args!(
                "could not cache the token ({err}); the next call will log in again{}",
                if forgotten {
                    ""
                } else {
                    " (and could not delete the old cache entry)"
                }
            ));
            return;
        }
        if let Some(reason) = self.store.fallback_reason() {
            self.printer.warn(format_args!(
                "no usable keyring ({reason}); tokens are cached in files (mode 0600) under {}",
                self.cache.dir.display()
            ));
        }
    }
}

fn margin() -> chrono::Duration {
    chrono::Duration::from_std(EXPIRY_MARGIN).unwrap_or_default()
}

/// After a browser or device login (never a refresh or a cache hit): says on stderr who logged
/// in, and warns when that is not the identity cached before for the same issuer and client
/// (`before`, even an expired entry). On a shared host another local user can see the
/// authorization URL in the browser's command line and reach the loopback port, and so complete
/// a login started here with their own account: the person at the terminal must be told.
pub(crate) fn announce_login(
    printer: Printer,
    issuer: &str,
    now: &LoginIdentity,
    before: Option<&LoginIdentity>,
) {
    printer.info(format_args!("logged in as {} at {issuer}", now.shown));
    if let Some(before) = before
        && before.subject != now.subject
    {
        let full = |id: &LoginIdentity| {
            if id.shown.starts_with("subject ") {
                id.shown.clone()
            } else {
                format!(
                    "{} (subject {:?})",
                    id.shown,
                    crate::http::one_line(&id.subject, 200)
                )
            }
        };
        printer.warn(format_args!(
            "this login is for {}, but the cached identity for this issuer and client was {}; if you did not log in as {} yourself, run `koidc logout` (on a shared host another local user can complete a login started here)",
            full(now),
            full(before),
            now.shown
        ));
    }
}

#[cfg(test)]
mod expiry_tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn reported_expiry_keeps_the_margin() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let exp = now + chrono::Duration::seconds(3600);
        assert_eq!(report_expiry(exp, now), exp - chrono::Duration::seconds(90));
    }

    #[test]
    fn short_lived_fresh_token_reports_halfway() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let exp = now + chrono::Duration::seconds(60);
        assert_eq!(report_expiry(exp, now), now + chrono::Duration::seconds(30));
    }
}
