//! The options of the get-token family (`get-token`, `login`, `logout`, `clean`, `whoami`, and
//! the identity part of `setup` and `doctor`), each defined once: its long name, its field,
//! its `KOIDC_*` variable, how it takes values, its config-file profile key and its default.
//!
//! The clap structs of [`super`] hold what the user gave (every option an `Option`, no clap
//! default), [`crate::config`] applies the precedence (flag, then variable, then profile, then
//! the default) in one place, and this table is what the other readers of the options share:
//! the warm-path parser ([`super::fast`]), the help text (defaults shown, never applied, by
//! [`display_command`]), the profile keys ([`crate::profile::Profile`]) and the get-token
//! command line that `setup` writes into a kubeconfig ([`get_token_argv`]). Tests check the
//! table against clap's description of get-token and against the profile's keys, so an option
//! added to one of them and not to the others fails.

use clap::ValueEnum;

use super::GetTokenArgs;
#[cfg(test)]
use super::{CacheArg, GrantArg, ProviderArg};
#[cfg(test)]
use super::{IdentityFlags, LoginFlags};

/// How an option takes values.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// One value (`Option<T>`); given twice is an error in clap.
    One,
    /// Repeatable, each value split at commas (`Option<Vec<T>>` with `value_delimiter = ','`).
    Many,
    /// A boolean flag without a value.
    Flag,
    /// Repeatable, each value whole (`Option<Vec<T>>` without delimiter: values may hold commas);
    /// the variable gives one value.
    Repeat,
}

/// One option of the get-token family.
#[derive(Debug)]
pub(crate) struct Opt {
    /// The long name, without `--`.
    pub long: &'static str,
    /// clap's id: the field's name.
    pub id: &'static str,
    /// The environment variable clap reads when the flag is absent.
    pub env: &'static str,
    /// How it takes values.
    pub kind: Kind,
    /// Its key in a `[profiles.NAME]` table of the config file, `None` when a profile cannot set
    /// it. The client secret's key names the variable holding the secret, never the secret.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "read by the tests that tie the table to the profile's keys"
        )
    )]
    pub profile_key: Option<&'static str>,
    /// The default as `--help` shows it (`""`: none, or one the help text describes in words);
    /// [`crate::config`] applies the typed default ([`DEFAULT_TIMEOUT`] or the enum's
    /// `#[default]`), and a test checks that the two agree.
    pub default: &'static str,
}

const fn opt(long: &'static str, id: &'static str, env: &'static str, kind: Kind) -> Opt {
    Opt {
        long,
        id,
        env,
        kind,
        profile_key: None,
        default: "",
    }
}

impl Opt {
    /// The same option, settable by a profile under `key`.
    const fn key(self, key: &'static str) -> Self {
        Self {
            profile_key: Some(key),
            ..self
        }
    }

    /// The same option, with `default` shown by `--help`.
    const fn shown_default(self, default: &'static str) -> Self {
        Self { default, ..self }
    }
}

/// Every option of [`GetTokenArgs`] except `--verbose` (no variable, no profile key), in the
/// order [`get_token_argv`] writes them.
#[rustfmt::skip]
pub(crate) const OPTIONS: [Opt; 28] = [
    opt("profile", "profile", "KOIDC_PROFILE", Kind::One),
    opt("provider", "provider", "KOIDC_PROVIDER", Kind::One).key("provider").shown_default("auto"),
    opt("issuer", "issuer", "KOIDC_ISSUER", Kind::One).key("issuer"),
    opt("client-id", "client_id", "KOIDC_CLIENT_ID", Kind::One).key("client-id"),
    opt("github-url", "github_url", "KOIDC_GITHUB_URL", Kind::One).key("github-url"),
    opt("github-api-url", "github_api_url", "KOIDC_GITHUB_API_URL", Kind::One).key("github-api-url"),
    opt("audience", "audience", "KOIDC_AUDIENCE", Kind::One).key("audience"),
    opt("token-source", "token_source", "KOIDC_TOKEN_SOURCE", Kind::One).key("token-source"),
    opt("connector-id", "connector_id", "KOIDC_CONNECTOR_ID", Kind::One).key("connector-id"),
    opt("scope", "scopes", "KOIDC_SCOPE", Kind::Many).key("scopes"),
    opt("cache", "cache", "KOIDC_CACHE", Kind::One).key("cache").shown_default("keyring"),
    opt("cache-dir", "cache_dir", "KOIDC_CACHE_DIR", Kind::One).key("cache-dir"),
    opt("client-secret", "client_secret", "KOIDC_CLIENT_SECRET", Kind::One).key("client-secret-env"),
    opt("client-secret-file", "client_secret_file", "KOIDC_CLIENT_SECRET_FILE", Kind::One),
    opt("listen", "listen", "KOIDC_LISTEN", Kind::Many).key("listen"),
    opt("browser-command", "browser_command", "KOIDC_BROWSER_COMMAND", Kind::One).key("browser-command"),
    opt("no-browser", "no_browser", "KOIDC_NO_BROWSER", Kind::Flag),
    opt("timeout", "timeout", "KOIDC_TIMEOUT", Kind::One).key("timeout").shown_default("180"),
    opt("grant", "grant", "KOIDC_GRANT", Kind::One).key("grant").shown_default("auto"),
    opt("paste", "paste", "KOIDC_PASTE", Kind::Flag),
    opt("certificate-authority", "certificate_authorities", "KOIDC_CERTIFICATE_AUTHORITY", Kind::Many).key("certificate-authority"),
    opt("certificate-authority-data", "certificate_authority_data", "KOIDC_CERTIFICATE_AUTHORITY_DATA", Kind::One),
    // Networks: the redirect URI's host, and a refresh on demand.
    opt("redirect-host", "redirect_host", "KOIDC_REDIRECT_HOST", Kind::One).key("redirect-host"),
    // No profile key: a profile that always refreshes would make every kubectl call ask the IdP,
    // and the cache pointless. Never written into a kubeconfig for the same reason.
    opt("force-refresh", "force_refresh", "KOIDC_FORCE_REFRESH", Kind::Flag),
    // What the provider is asked for and how (src/login/oidc/request.rs).
    opt("token-type", "token_type", "KOIDC_TOKEN_TYPE", Kind::One).key("token-type").shown_default("id"),
    opt("auth-param", "auth_params", "KOIDC_AUTH_PARAM", Kind::Repeat).key("auth-params"),
    opt("request-header", "request_headers", "KOIDC_REQUEST_HEADER", Kind::Repeat).key("request-headers"),
    opt("pkce", "pkce", "KOIDC_PKCE", Kind::One).key("pkce").shown_default("true"),
];

/// The index of `--force-refresh` in [`OPTIONS`]: the warm-path parser leaves it to clap (it
/// always goes to the IdP, so parsing speed does not matter) and [`option_words`] never writes it.
pub(crate) const FORCE_REFRESH: usize = 23;

/// The index of `--client-secret` in [`OPTIONS`].
pub(crate) const CLIENT_SECRET: usize = 12;

/// The login timeout when neither `--timeout`, `KOIDC_TIMEOUT` nor a profile sets it, in seconds.
pub(crate) const DEFAULT_TIMEOUT: u64 = 180;

/// clap's description of koidc's command line as `--help`, the manual page and the completion
/// scripts show it: with the defaults of [`OPTIONS`] that [`crate::config`] applies. Parsing
/// uses [`super::Cli`]'s own description, without them, so an option left out stays `None`.
pub(crate) fn display_command() -> clap::Command {
    use clap::CommandFactory as _;
    let mut command = super::Cli::command();
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, with_shown_defaults);
    }
    command
}

/// `command` with the defaults of [`OPTIONS`] shown on its options of the get-token family (in
/// place: the order of the options, which completion scripts follow, stays).
fn with_shown_defaults(command: clap::Command) -> clap::Command {
    command.mut_args(|arg| {
        let shown = OPTIONS
            .iter()
            .find(|o| arg.get_id() == o.id && arg.get_long() == Some(o.long))
            .map(|o| o.default)
            .filter(|d| !d.is_empty());
        match shown {
            Some(default) => arg.default_value(default),
            None => arg,
        }
    })
}

/// The `get-token` command line (`get-token` first) that runs with the options `args` gives,
/// each as `--NAME=VALUE` in the order of [`OPTIONS`]: what `setup` writes into a kubeconfig's
/// exec entry. The client secret is never written (it goes into the entry's `exec.env`), nor
/// `--verbose`.
pub(crate) fn get_token_argv(args: &GetTokenArgs) -> Vec<String> {
    let mut argv = vec!["get-token".to_owned()];
    argv.extend(option_words(args));
    argv
}

/// [`get_token_argv`] without the leading `get-token`.
pub(crate) fn option_words(args: &GetTokenArgs) -> Vec<String> {
    // The differential tests of the fast parser read each answer's words back with clap: an
    // option missing here (or written wrongly) fails them.
    let GetTokenArgs {
        identity,
        login,
        cache,
        ..
    } = args;
    let one = |v: Option<String>| v.into_iter().collect::<Vec<_>>();
    let path = |p: &std::path::PathBuf| p.display().to_string();
    let flag = |set: bool| if set { vec![String::new()] } else { Vec::new() };
    let values = |id: &str| -> Vec<String> {
        match id {
            "profile" => one(identity.profile.clone()),
            "provider" => one(identity.provider.and_then(|p| enum_name(&p))),
            "issuer" => one(identity.issuer.clone()),
            "client_id" => one(identity.client_id.clone()),
            "github_url" => one(identity.github.github_url.clone()),
            "github_api_url" => one(identity.github.github_api_url.clone()),
            "audience" => one(identity.audience.clone()),
            "token_source" => one(identity.token_source.clone()),
            "connector_id" => one(identity.connector_id.clone()),
            "scopes" => identity.scopes.clone().unwrap_or_default(),
            "cache" => one(cache.cache.and_then(|c| enum_name(&c))),
            "cache_dir" => one(cache.cache_dir.as_ref().map(path)),
            "client_secret_file" => one(login.client_secret_file.as_ref().map(path)),
            "listen" => login.listen.clone().unwrap_or_default(),
            "browser_command" => one(login.browser_command.clone()),
            "no_browser" => flag(login.no_browser),
            "timeout" => one(login.timeout.map(|t| t.to_string())),
            "grant" => one(login.grant.and_then(|g| enum_name(&g))),
            "paste" => flag(login.paste),
            "certificate_authorities" => login.certificate_authorities.iter().flatten().map(path).collect(),
            "certificate_authority_data" => one(login.certificate_authority_data.clone()),
            "redirect_host" => one(login.redirect_host.clone()),
            // A kubeconfig entry that refreshes on every kubectl call: never written.
            "force_refresh" => Vec::new(),
            "token_type" => one(identity.token_type.and_then(|t| enum_name(&t))),
            "auth_params" => identity.auth_params.clone().unwrap_or_default(),
            "request_headers" => login.request_headers.clone().unwrap_or_default(),
            "pkce" => one(login.pkce.map(|p| p.to_string())),
            // The client secret: never on a command line.
            _ => Vec::new(),
        }
    };
    let mut words = Vec::new();
    for opt in &OPTIONS {
        for value in values(opt.id) {
            words.push(if opt.kind == Kind::Flag {
                format!("--{}", opt.long)
            } else {
                format!("--{}={value}", opt.long)
            });
        }
    }
    words
}

/// The `--listen` addresses a kubeconfig entry names for `listen` (as given to `setup`): none
/// when they are koidc's default, a free port on 127.0.0.1.
pub(crate) fn entry_listen(listen: &[String]) -> Option<Vec<String>> {
    let default = listen.is_empty() || listen == ["127.0.0.1:0"];
    (!default).then(|| listen.to_vec())
}

/// A value enum's name on the command line.
fn enum_name<T: ValueEnum>(value: &T) -> Option<String> {
    value.to_possible_value().map(|p| p.get_name().to_owned())
}

/// The typed defaults of the options whose default [`OPTIONS`] shows.
#[cfg(test)]
fn typed_defaults() -> [(&'static str, String); 6] {
    [
        ("token_type", enum_name(&super::TokenTypeArg::default()).unwrap()),
        ("pkce", true.to_string()),
        ("provider", enum_name(&ProviderArg::default()).unwrap()),
        ("cache", enum_name(&CacheArg::default()).unwrap()),
        ("timeout", DEFAULT_TIMEOUT.to_string()),
        ("grant", enum_name(&GrantArg::default()).unwrap()),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::ffi::OsString;

    use super::*;

    #[test]
    fn client_secret_index_names_the_option() {
        assert_eq!(OPTIONS[CLIENT_SECRET].long, "client-secret");
        assert_eq!(OPTIONS[FORCE_REFRESH].long, "force-refresh");
    }

    #[test]
    fn defaults_shown_in_the_help_are_the_defaults_applied() {
        let shown: BTreeSet<(String, String)> = OPTIONS
            .iter()
            .filter(|o| !o.default.is_empty())
            .map(|o| (o.id.to_owned(), o.default.to_owned()))
            .collect();
        let applied: BTreeSet<(String, String)> = typed_defaults()
            .into_iter()
            .map(|(id, v)| (id.to_owned(), v))
            .collect();
        assert_eq!(shown, applied);
    }

    #[test]
    fn parsing_applies_no_default_and_the_help_shows_them() {
        use clap::CommandFactory as _;
        let parsing = super::super::Cli::command();
        let shown = display_command();
        // Every command with the get-token family's options (they come together).
        let family: Vec<&str> = parsing
            .get_subcommands()
            .filter(|s| s.get_arguments().any(|a| a.get_id() == "issuer"))
            .map(clap::Command::get_name)
            .collect();
        assert_eq!(family.len(), 7, "{family:?}");
        for sub in family {
            let parsing = parsing.find_subcommand(sub).unwrap();
            let shown = shown.find_subcommand(sub).unwrap();
            for opt in &OPTIONS {
                let arg = |c: &clap::Command| {
                    c.get_arguments()
                        .find(|a| a.get_id() == opt.id)
                        .map(|a| a.get_default_values().to_vec())
                        .unwrap_or_else(|| panic!("{sub} has no --{}", opt.long))
                };
                assert!(arg(parsing).is_empty(), "{sub} --{} has a clap default", opt.long);
                let want: Vec<OsString> = [opt.default]
                    .into_iter()
                    .filter(|d| !d.is_empty())
                    .map(OsString::from)
                    .collect();
                assert_eq!(arg(shown), want, "{sub} --{}", opt.long);
            }
        }
    }

    #[test]
    fn argv_writes_each_given_option_once_in_table_order_and_never_the_secret() {
        let args = GetTokenArgs {
            identity: IdentityFlags {
                issuer: Some("https://i".into()),
                client_id: Some("c".into()),
                scopes: Some(vec!["email".into(), "groups".into()]),
                provider: Some(ProviderArg::Okta),
                ..IdentityFlags::default()
            },
            login: LoginFlags {
                client_secret: Some("s3cret".into()),
                listen: Some(vec!["127.0.0.1:8000".into()]),
                no_browser: true,
                timeout: Some(30),
                ..LoginFlags::default()
            },
            ..GetTokenArgs::default()
        };
        assert_eq!(
            get_token_argv(&args),
            [
                "get-token",
                "--provider=okta",
                "--issuer=https://i",
                "--client-id=c",
                "--scope=email",
                "--scope=groups",
                "--listen=127.0.0.1:8000",
                "--no-browser",
                "--timeout=30",
            ]
        );
        assert_eq!(get_token_argv(&GetTokenArgs::default()), ["get-token"]);
    }
}
