//! The use case with a fake source, a fake clock and a store in memory: which path each cache
//! state takes, what is saved, and what the source is asked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use chrono::TimeZone as _;
use secrecy::ExposeSecret as _;

use super::*;
use crate::login::cache::test_support::{MemoryStore, TempDir};
use crate::login::cache::{CacheKind, TokenStore};
use crate::login::sources::test_support::login_config;
use crate::login::token::Credential;
use crate::provider::ProviderKind;

const ISSUER: &str = "https://idp.example";
const CLIENT: &str = "kubectl";

/// A clock that stays where the test puts it.
struct FakeClock(Mutex<DateTime<Utc>>);

impl FakeClock {
    fn at(t: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self(Mutex::new(t)))
    }
    fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// An ID token entry for `sub` expiring at `exp`, with a refresh token `refresh` when given.
fn entry(token: &str, sub: &str, exp: DateTime<Utc>, refresh: Option<&str>) -> CredentialEntry {
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": CLIENT, "sub": sub, "email": format!("{sub}@example.com"),
        "exp": exp.timestamp(), "tag": token,
    });
    let jwt = format!(
        "{}.{}.sig",
        enc.encode(r#"{"alg":"RS256"}"#),
        enc.encode(claims.to_string())
    );
    CredentialEntry {
        credential: Credential::IdToken {
            info: IdTokenInfo::decode(&jwt).unwrap(),
            token: SecretString::from(jwt),
        },
        refresh_token: refresh.map(|r| SecretString::from(r.to_owned())),
        refresh_expires_at: None,
    }
}

/// The `tag` claim of a credential: which token it is.
fn tag(entry: &CredentialEntry) -> String {
    let info = entry.credential.id_token_info().expect("an ID token");
    info.str_claim("tag").unwrap_or_default().to_owned()
}

type RenewFn = dyn Fn(&CredentialEntry) -> Renewal + Send + Sync;
type LoginFn = dyn Fn() -> anyhow::Result<CredentialEntry> + Send + Sync;

/// A source whose renewals and logins the test scripts, counting what it is asked.
struct FakeSource {
    renew: Box<RenewFn>,
    login: Box<LoginFn>,
    connects: AtomicUsize,
    renewals: AtomicUsize,
    logins: Arc<AtomicUsize>,
}

impl FakeSource {
    fn new(
        renew: impl Fn(&CredentialEntry) -> Renewal + Send + Sync + 'static,
        login: impl Fn() -> anyhow::Result<CredentialEntry> + Send + Sync + 'static,
    ) -> Self {
        Self {
            renew: Box::new(renew),
            login: Box::new(login),
            connects: AtomicUsize::new(0),
            renewals: AtomicUsize::new(0),
            logins: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A source that must not be asked anything.
    fn untouchable() -> Self {
        Self::new(
            |_| panic!("the source was asked to renew"),
            || panic!("the source was asked to log in"),
        )
    }

    fn asked(&self) -> (usize, usize, usize) {
        (
            self.connects.load(Ordering::SeqCst),
            self.renewals.load(Ordering::SeqCst),
            self.logins.load(Ordering::SeqCst),
        )
    }
}

impl CredentialSource for FakeSource {
    fn read(&self, tokens: TokenSet, _meta: EntryMeta) -> Result<CredentialEntry, String> {
        CredentialEntry::from_id_token(tokens).map_err(|e| e.to_string())
    }

    fn write(&self, entry: &CredentialEntry) -> (TokenSet, EntryMeta) {
        (entry.token_set(), EntryMeta::default())
    }

    fn valid_until(&self, entry: &CredentialEntry, _now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        entry.credential.id_token_info().map(|info| info.expiry)
    }

    fn renewable(&self, entry: &CredentialEntry, _now: DateTime<Utc>) -> bool {
        entry.refresh_token.is_some()
    }

    fn connect(&self) -> anyhow::Result<Box<dyn Connection + '_>> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FakeConnection(self)))
    }
}

struct FakeConnection<'a>(&'a FakeSource);

impl Connection for FakeConnection<'_> {
    fn renew(&mut self, entry: &CredentialEntry) -> Renewal {
        self.0.renewals.fetch_add(1, Ordering::SeqCst);
        (self.0.renew)(entry)
    }

    fn login(&mut self) -> anyhow::Result<CredentialEntry> {
        self.0.logins.fetch_add(1, Ordering::SeqCst);
        (self.0.login)()
    }
}

/// The identity, the cache directory (for the lock and the cool-down marker), the store and the
/// clock one test drives.
struct World {
    identity: Identity,
    dir: TempDir,
    cache: CacheConfig,
    store: Arc<MemoryStore>,
    clock: Arc<FakeClock>,
}

impl World {
    fn new() -> Self {
        let dir = TempDir::new("pipeline");
        let cache = CacheConfig {
            kind: CacheKind::File,
            dir: dir.path().to_owned(),
        };
        Self {
            identity: Identity {
                issuer: ISSUER.into(),
                client_id: CLIENT.into(),
                scopes: Vec::new(),
                provider: ProviderKind::Generic,
                github: None,
                profile: None,
                machine: None,
                audience: None,
                token_type: Default::default(),
                auth_params: Default::default(),
            },
            dir,
            cache,
            store: Arc::new(MemoryStore::default()),
            clock: FakeClock::at(start()),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn cache(&self, entry: &CredentialEntry) {
        let (tokens, meta) = FakeSource::untouchable().write(entry);
        self.store
            .save_with_meta(&self.identity.cache_key(), &tokens, &meta)
            .unwrap();
    }

    fn cached(&self) -> Option<CredentialEntry> {
        let (tokens, meta) = self.store.load_with_meta(&self.identity.cache_key()).unwrap()?;
        Some(FakeSource::untouchable().read(tokens, meta).unwrap())
    }

    fn auth<'a>(&'a self, source: &'a FakeSource) -> Authenticator<'a> {
        Authenticator {
            identity: &self.identity,
            cache: &self.cache,
            store: self.store.as_ref(),
            clock: self.clock.clone(),
            printer: Printer::new(0),
            source,
        }
    }

    fn cooldown_marker(&self) -> Cooldown {
        Cooldown::new(self.dir.path(), &self.identity.cache_key().id())
    }
}

/// Login settings of a kubectl call: `interactive` as kubectl says (`None`: not from kubectl).
fn kubectl(interactive: Option<bool>) -> LoginConfig {
    LoginConfig {
        kubectl_interactive: interactive,
        ..login_config()
    }
}

fn hours(n: i64) -> chrono::Duration {
    chrono::Duration::hours(n)
}

#[test]
fn a_cached_token_with_time_left_is_served_without_asking_the_source() {
    let world = World::new();
    world.cache(&entry("cached", "alice", world.now() + hours(1), Some("rt")));
    let source = FakeSource::untouchable();
    let got = world.auth(&source).obtain(&kubectl(None), false).unwrap();
    assert_eq!(got.source, Source::Cache);
    assert_eq!(tag(&got.entry), "cached");
    assert_eq!(got.expiry, world.now() + hours(1));
    assert_eq!(source.asked(), (0, 0, 0));
}

#[test]
fn a_token_within_the_margin_of_its_expiry_is_refreshed_and_the_result_saved() {
    let world = World::new();
    let soon = world.now() + chrono::Duration::seconds(60);
    world.cache(&entry("old", "alice", soon, Some("rt-1")));
    let later = world.now() + hours(1);
    let source = FakeSource::new(
        move |cached| {
            assert_eq!(cached.refresh_token.as_ref().unwrap().expose_secret(), "rt-1");
            Renewal::Renewed {
                entry: entry("new", "alice", later, Some("rt-2")),
                source: Source::Refresh,
            }
        },
        || panic!("no login after a successful refresh"),
    );
    let got = world.auth(&source).obtain(&kubectl(Some(false)), false).unwrap();
    assert_eq!(got.source, Source::Refresh);
    assert_eq!(tag(&got.entry), "new");
    assert_eq!(got.expiry, later);
    assert_eq!(source.asked(), (1, 1, 0));
    let saved = world.cached().unwrap();
    assert_eq!(tag(&saved), "new");
    assert_eq!(saved.refresh_token.unwrap().expose_secret(), "rt-2");
}

#[test]
fn a_refresh_that_fails_on_the_network_is_reported_and_nothing_is_saved() {
    let world = World::new();
    world.cache(&entry("old", "alice", world.now() - hours(1), Some("rt-1")));
    let source = FakeSource::new(
        |_| Renewal::Failed {
            error: anyhow::anyhow!("connection refused").context("cannot refresh the token"),
            keep: None,
        },
        || panic!("a network failure must not open a login"),
    );
    let err = world
        .auth(&source)
        .obtain(&kubectl(Some(false)), false)
        .unwrap_err();
    assert_eq!(format!("{err:#}"), "cannot refresh the token: connection refused");
    assert_eq!(source.asked(), (1, 1, 0));
    let kept = world.cached().unwrap();
    assert_eq!(tag(&kept), "old");
    assert_eq!(kept.refresh_token.unwrap().expose_secret(), "rt-1");
    // Not a failed login: the next call may still log in.
    assert!(world.cooldown_marker().check(world.now()).is_ok());
}

#[test]
fn a_refresh_the_provider_rejects_falls_back_to_a_login() {
    let world = World::new();
    world.cache(&entry("old", "alice", world.now() - hours(1), Some("rt-1")));
    let later = world.now() + hours(1);
    let source = FakeSource::new(
        |_| Renewal::LogIn { forget: false },
        move || Ok(entry("login", "alice", later, Some("rt-9"))),
    );
    let got = world.auth(&source).obtain(&kubectl(None), false).unwrap();
    assert_eq!(got.source, Source::Login);
    assert_eq!(tag(&got.entry), "login");
    assert_eq!(got.replaced, None, "the same identity logged in again");
    assert_eq!(source.asked(), (1, 1, 1));
    assert_eq!(tag(&world.cached().unwrap()), "login");
}

#[test]
fn a_refresh_answering_another_identity_leads_to_a_login_and_a_warning_when_it_is_someone_else() {
    let world = World::new();
    world.cache(&entry("old", "alice", world.now() - hours(1), Some("rt-1")));
    let later = world.now() + hours(1);
    // The source refuses the refresh answered for bob; the login that follows is bob's too.
    let source = FakeSource::new(
        |_| Renewal::LogIn { forget: false },
        move || Ok(entry("login", "bob", later, None)),
    );
    let got = world.auth(&source).obtain(&kubectl(None), false).unwrap();
    assert_eq!(got.source, Source::Login);
    let replaced = got.replaced.expect("a warning about the identity cached before");
    assert_eq!(replaced.subject, "alice");
    assert_eq!(replaced.shown, "alice@example.com");
    assert_eq!(got.entry.credential.identity().subject, "bob");
}

#[test]
fn a_rotated_refresh_token_is_kept_when_the_new_token_cannot_be_verified() {
    let world = World::new();
    world.cache(&entry("old", "alice", world.now() - hours(1), Some("rt-1")));
    let source = FakeSource::new(
        |cached| Renewal::Failed {
            error: anyhow::anyhow!("the signing keys cannot be fetched"),
            keep: Some(CredentialEntry {
                refresh_token: Some(SecretString::from("rt-rotated".to_owned())),
                ..cached.clone()
            }),
        },
        || panic!("no login"),
    );
    let err = world.auth(&source).obtain(&kubectl(None), false).unwrap_err();
    assert!(err.to_string().contains("signing keys"), "{err:#}");
    let kept = world.cached().unwrap();
    assert_eq!(tag(&kept), "old", "the last verified ID token stays");
    assert_eq!(kept.refresh_token.unwrap().expose_secret(), "rt-rotated");
}

#[test]
fn a_revoked_entry_is_forgotten_even_when_the_login_that_follows_fails() {
    let world = World::new();
    world.cache(&entry("old", "alice", world.now() + hours(1), None));
    // Served from the cache until the source says it is due: here, always due.
    struct Due(FakeSource);
    impl CredentialSource for Due {
        fn read(&self, tokens: TokenSet, meta: EntryMeta) -> Result<CredentialEntry, String> {
            self.0.read(tokens, meta)
        }
        fn write(&self, entry: &CredentialEntry) -> (TokenSet, EntryMeta) {
            self.0.write(entry)
        }
        fn valid_until(&self, _: &CredentialEntry, _: DateTime<Utc>) -> Option<DateTime<Utc>> {
            None
        }
        fn renewable(&self, _: &CredentialEntry, _: DateTime<Utc>) -> bool {
            true
        }
        fn connect(&self) -> anyhow::Result<Box<dyn Connection + '_>> {
            self.0.connect()
        }
    }
    let source = Due(FakeSource::new(
        |_| Renewal::LogIn { forget: true },
        || Err(anyhow::anyhow!("the login timed out")),
    ));
    let auth = Authenticator {
        source: &source,
        ..world.auth(&source.0)
    };
    assert!(auth.obtain(&kubectl(None), false).is_err());
    assert!(world.cached().is_none(), "the revoked entry is still cached");
    assert_eq!(source.0.asked(), (1, 1, 1));
}

#[test]
fn an_unconfirmed_entry_is_served_until_the_source_says_and_not_saved_again() {
    let world = World::new();
    world.cache(&entry(
        "old",
        "alice",
        world.now() + chrono::Duration::seconds(30),
        Some("rt"),
    ));
    let until = world.now() + chrono::Duration::minutes(5);
    let source = FakeSource::new(
        move |cached| Renewal::Unconfirmed {
            entry: cached.clone(),
            until,
        },
        || panic!("no login"),
    );
    world.store.fail_saves.store(true, Ordering::SeqCst);
    let got = world.auth(&source).obtain(&kubectl(None), false).unwrap();
    assert_eq!(got.source, Source::Cache);
    assert_eq!(got.expiry, until);
    // Nothing was saved (a save would have failed and forgotten the entry).
    assert_eq!(tag(&world.cached().unwrap()), "old");
}

#[test]
fn a_login_that_cannot_be_saved_forgets_the_old_entry_and_still_hands_out_the_token() {
    let world = World::new();
    world.cache(&entry("old", "alice", world.now() - hours(1), Some("rt-1")));
    let later = world.now() + hours(1);
    let source = FakeSource::new(
        move |_| Renewal::Renewed {
            entry: entry("new", "alice", later, Some("rt-2")),
            source: Source::Refresh,
        },
        || panic!("no login"),
    );
    world.store.fail_saves.store(true, Ordering::SeqCst);
    let got = world.auth(&source).obtain(&kubectl(None), false).unwrap();
    assert_eq!(tag(&got.entry), "new");
    // The old refresh token may have been rotated away: it must not be used again.
    assert!(world.cached().is_none(), "the old entry is still cached");
}

#[test]
fn a_failed_login_makes_the_next_non_interactive_call_fail_fast_but_not_an_interactive_one() {
    let world = World::new();
    let later = world.now() + hours(1);
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let failing = fail.clone();
    let source = FakeSource::new(
        |_| panic!("nothing to renew"),
        move || {
            if failing.load(Ordering::SeqCst) {
                Err(anyhow::anyhow!("the login was abandoned"))
            } else {
                Ok(entry("login", "alice", later, None))
            }
        },
    );
    let auth = world.auth(&source);
    assert!(auth.obtain(&kubectl(Some(false)), false).is_err());
    assert_eq!(source.asked(), (1, 0, 1));

    world.clock.advance(chrono::Duration::seconds(10));
    let err = auth.obtain(&kubectl(Some(false)), false).unwrap_err();
    assert!(err.downcast_ref::<cooldown::CoolingDown>().is_some(), "{err:#}");
    assert_eq!(source.asked(), (1, 0, 1), "the cool-down asked the source");

    // A person at the terminal may try again at once; success ends the cool-down.
    fail.store(false, Ordering::SeqCst);
    let got = auth.obtain(&kubectl(Some(true)), false).unwrap();
    assert_eq!(got.source, Source::Login);
    assert_eq!(source.asked(), (2, 0, 2));
    assert!(world.cooldown_marker().check(world.now()).is_ok());
}

#[test]
fn a_forced_login_skips_a_usable_cached_token_and_its_refresh() {
    let world = World::new();
    world.cache(&entry("cached", "alice", world.now() + hours(1), Some("rt")));
    let later = world.now() + hours(2);
    let source = FakeSource::new(
        |_| panic!("a forced login does not refresh"),
        move || Ok(entry("login", "alice", later, None)),
    );
    let got = world.auth(&source).obtain(&kubectl(None), true).unwrap();
    assert_eq!(got.source, Source::Login);
    assert_eq!(tag(&world.cached().unwrap()), "login");
}

#[test]
fn a_forced_refresh_renews_a_usable_cached_token_and_saves_the_result() {
    let world = World::new();
    world.cache(&entry("cached", "alice", world.now() + hours(1), Some("rt-1")));
    let later = world.now() + hours(2);
    let source = FakeSource::new(
        move |_| Renewal::Renewed {
            entry: entry("renewed", "alice", later, Some("rt-2")),
            source: Source::Refresh,
        },
        || panic!("no login after a successful refresh"),
    );
    let login = LoginConfig {
        force_refresh: true,
        ..kubectl(Some(false))
    };
    let got = world.auth(&source).obtain(&login, false).unwrap();
    assert_eq!(got.source, Source::Refresh);
    assert_eq!(tag(&got.entry), "renewed");
    assert_eq!(source.asked(), (1, 1, 0));
    assert_eq!(tag(&world.cached().unwrap()), "renewed");
}

#[test]
fn a_forced_refresh_the_provider_refuses_falls_back_to_a_login() {
    let world = World::new();
    world.cache(&entry("cached", "alice", world.now() + hours(1), Some("rt-1")));
    let later = world.now() + hours(2);
    let source = FakeSource::new(
        |_| Renewal::LogIn { forget: false },
        move || Ok(entry("login", "alice", later, Some("rt-9"))),
    );
    let login = LoginConfig {
        force_refresh: true,
        ..kubectl(None)
    };
    let got = world.auth(&source).obtain(&login, false).unwrap();
    assert_eq!(got.source, Source::Login);
    assert_eq!(source.asked(), (1, 1, 1));
}

#[test]
fn a_second_caller_waiting_for_the_lock_reuses_the_first_callers_login() {
    let world = World::new();
    let later = world.now() + hours(1);
    let logins = Arc::new(AtomicUsize::new(0));
    let (in_login, logging_in) = std::sync::mpsc::channel::<()>();
    let in_login = Mutex::new(in_login);
    let slow = FakeSource {
        logins: logins.clone(),
        ..FakeSource::new(
            |_| panic!("nothing to renew"),
            move || {
                in_login.lock().unwrap().send(()).unwrap();
                // Hold the lock while the second caller arrives.
                std::thread::sleep(Duration::from_millis(400));
                Ok(entry("first", "alice", later, None))
            },
        )
    };
    let second = FakeSource {
        logins: logins.clone(),
        ..FakeSource::untouchable()
    };
    std::thread::scope(|scope| {
        let first = scope.spawn(|| world.auth(&slow).obtain(&kubectl(Some(false)), false));
        logging_in.recv().unwrap();
        let waiter = scope.spawn(|| world.auth(&second).obtain(&kubectl(Some(false)), false));
        let first = first.join().unwrap().unwrap();
        let waited = waiter.join().unwrap().unwrap();
        assert_eq!(first.source, Source::Login);
        assert_eq!(waited.source, Source::Cache);
        assert_eq!(tag(&waited.entry), "first");
    });
    assert_eq!(logins.load(Ordering::SeqCst), 1);
    assert_eq!(second.asked(), (0, 0, 1), "only the shared login counter moved");
}
