//! Command-line flags as the user typed them.
//!
//! This module only describes and parses flags (and their `KOIDC_*` environment variables); it
//! does not judge them. An option of the get-token family the user did not give is `None`: clap
//! applies no default to them (`--help` shows the defaults, see [`options`]), so a profile can
//! fill exactly the options left out, and [`crate::config`] (`Identity::from_flags`,
//! `LoginConfig::from_flags`, `CacheConfig::from_flags`) applies the defaults and turns the raw
//! values into a typed, validated configuration, so every rule about what a valid issuer or
//! listen address is lives in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod fast;
pub(crate) mod options;
pub mod usage;

/// koidc: log in to Kubernetes with your company identity (OpenID Connect).
#[derive(Debug, Parser)]
#[command(name = "koidc", version, about, propagate_version = true)]
#[command(after_help = TOP_EXAMPLES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// What the parser noticed beyond the options' values; filled by [`Cli::try_parse_args`].
    #[arg(skip)]
    pub explicit: ExplicitArgs,
}

/// What the parser noticed beyond the options' values. (Which options were given needs no
/// record: an option of the get-token family left out is `None`.)
#[derive(Debug, Clone, Default)]
pub struct ExplicitArgs {
    /// `--client-secret` was on the command line (deprecated: other users can read it).
    secret_argument: bool,
}

impl ExplicitArgs {
    /// True when the client secret was given as a command-line argument (`--client-secret`).
    pub fn secret_argument(&self) -> bool {
        self.secret_argument
    }

    fn from_matches(matches: &clap::ArgMatches) -> Self {
        use clap::parser::ValueSource;
        Self {
            secret_argument: matches.ids().any(|id| {
                id == "client_secret"
                    && matches.value_source("client_secret") == Some(ValueSource::CommandLine)
            }),
        }
    }
}

/// The warning `--client-secret` gets.
pub const SECRET_ARGUMENT_DEPRECATED: &str = "--client-secret is deprecated: other local users can read a \
     command's arguments; set KOIDC_CLIENT_SECRET (in a kubeconfig: exec.env) or use \
     --client-secret-file FILE instead";

pub use crate::printer::KUBECTL_PLUGIN_NAME;

impl Cli {
    /// Parses the command line (`args[0]` is the program) like `Cli::try_parse_from`, and also
    /// records which options were given explicitly ([`Cli::explicit`]). When the program file is
    /// named `kubectl-koidc`, usage and help say `kubectl koidc`.
    pub fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        // kubectl's call on every command: parsed without clap when possible (see `fast`).
        if args.get(1).map(|a| a.as_os_str()) == Some("get-token".as_ref())
            && let Some(parsed) = fast::parse_get_token(&args[2..], |n| std::env::var_os(n))
        {
            return Ok(Self {
                command: Command::GetToken(parsed),
                explicit: ExplicitArgs::default(),
            });
        }
        Self::try_parse_full(args)
    }

    /// [`Cli::try_parse_args`] with clap for every command line.
    pub(crate) fn try_parse_full(args: Vec<std::ffi::OsString>) -> Result<Self, clap::Error> {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let mut command = Self::command();
        let name = crate::printer::command_name(args.first().map(|a| a.as_os_str()));
        if name == KUBECTL_PLUGIN_NAME {
            command = command.bin_name(name);
        }
        let matches = match command.try_get_matches_from_mut(args.clone()) {
            Ok(matches) => matches,
            // The help shows the defaults the options layer applies (`options::display_command`).
            Err(err)
                if matches!(
                    err.kind(),
                    clap::error::ErrorKind::DisplayHelp
                        | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                ) =>
            {
                let mut shown = options::display_command();
                if name == KUBECTL_PLUGIN_NAME {
                    shown = shown.bin_name(name);
                }
                return Err(shown.try_get_matches_from_mut(args).err().unwrap_or(err));
            }
            Err(err) => return Err(err),
        };
        let mut cli = Self::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
        if let Some((_, sub)) = matches.subcommand() {
            cli.explicit = ExplicitArgs::from_matches(sub);
        }
        Ok(cli)
    }
}

const TOP_EXAMPLES: &str = "\
Examples:
  koidc login --issuer https://dex.example.com/dex --client-id kubernetes --scope groups
  koidc get-token --profile work     # what a kubeconfig exec entry runs
  kubectl koidc whoami               # the same binary as a kubectl plugin (kubectl-koidc)

Profiles live in $KOIDC_CONFIG, else $XDG_CONFIG_HOME/koidc/config.toml or
~/.config/koidc/config.toml ([profiles.NAME] tables; flags beat KOIDC_* variables beat a profile).
Run `koidc <command> --help` for the options and examples of each command; `koidc man` prints the
manual page and `koidc completions SHELL` a completion script.";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print an ExecCredential for kubectl (the kubeconfig `exec` entry runs this).
    #[command(after_help = GET_TOKEN_EXAMPLES)]
    GetToken(GetTokenArgs),
    /// Log in (or refresh) and show who you are.
    #[command(after_help = LOGIN_EXAMPLES)]
    Login(LoginArgs),
    /// Forget cached tokens (and revoke the refresh token where the IdP supports it).
    #[command(after_help = LOGOUT_EXAMPLES)]
    Logout(LogoutArgs),
    /// Forget every cached identity: `logout --all` under kubelogin's name. The identity options
    /// select nothing: they only name the client a client secret is for.
    #[command(after_help = CLEAN_EXAMPLES)]
    Clean(CleanArgs),
    /// Show the cached identity without any network call.
    #[command(after_help = WHOAMI_EXAMPLES)]
    Whoami(WhoamiArgs),
    /// Print (or apply) the RBAC objects that give an IdP group a role in the cluster.
    #[command(
        after_help = BIND_GROUP_EXAMPLES,
        override_usage = "koidc bind-group [OPTIONS] <GROUP> <ROLE>\n       koidc bind-group [OPTIONS] --from <FILE>"
    )]
    BindGroup(BindGroupArgs),
    /// Check an issuer and print what the cluster needs: apiserver authentication config,
    /// kubeconfig entry, RBAC commands.
    #[command(after_help = SETUP_EXAMPLES)]
    Setup(Box<SetupArgs>),
    /// Run the TokenReview webhook that lets kube-apiserver accept GitHub tokens
    /// (`--provider github`).
    #[command(after_help = WEBHOOK_EXAMPLES)]
    Webhook(WebhookArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
    /// Print koidc's manual page (roff), or write one page per command with --out-dir.
    #[command(after_help = MAN_EXAMPLES)]
    Man(ManArgs),
    /// Walk the chain from the identity provider to RBAC and say which link is broken, one line
    /// per check.
    #[command(after_help = DOCTOR_EXAMPLES)]
    Doctor(Box<DoctorArgs>),
    /// Print koidc's version (what `koidc --version` prints).
    Version,
}

impl Command {
    /// The login options of the commands that have them.
    pub fn login_flags_mut(&mut self) -> Option<&mut LoginFlags> {
        match self {
            Command::GetToken(a) => Some(&mut a.login),
            Command::Login(a) => Some(&mut a.login),
            Command::Logout(a) => Some(&mut a.login),
            Command::Whoami(a) => Some(&mut a.login),
            Command::Clean(a) => Some(&mut a.login),
            Command::Doctor(a) => Some(&mut a.login),
            Command::Setup(a) => Some(&mut a.login),
            _ => None,
        }
    }
}

const DOCTOR_EXAMPLES: &str = "\
Checks, in order: issuer reachable, discovery valid, client accepted, redirect URI accepted,
token obtained (cache, refresh or login, as get-token), token claims, apiserver accepts the
token (SelfSubjectReview, as `kubectl auth whoami`), the apiserver's user and groups (prefixes),
RBAC bindings naming your groups (and near misses: without the prefix, or with another one),
rights in the namespace (SelfSubjectRulesReview). Exit status 0 when every check passed.

Without --issuer/--client-id/--profile, the identity is the `koidc get-token` options of the
kubeconfig context's user.

Examples:
  koidc doctor -n application
  koidc doctor --context prod -n team-a --admin-kubeconfig admin.kubeconfig
  koidc doctor --issuer https://dex.example.com/dex --client-id koidc --scope groups --kubeconfig k.yaml";

/// `koidc doctor`
#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub identity: IdentityFlags,
    #[command(flatten)]
    pub login: LoginFlags,
    #[command(flatten)]
    pub cache: CacheFlags,
    #[command(flatten)]
    pub output: OutputFlags,
    /// The kubeconfig of the cluster to check [default: KUBECONFIG, else ~/.kube/config].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context [default: the current context].
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace whose RoleBindings and rights are checked.
    #[arg(short = 'n', long, value_name = "NS", default_value = "default")]
    pub namespace: String,
    /// Token claim the apiserver takes the username from.
    #[arg(long, default_value = "email", value_name = "CLAIM")]
    pub username_claim: String,
    /// Prefix the apiserver puts in front of usernames ("" for none).
    #[arg(long, default_value = "oidc:", value_name = "P", allow_hyphen_values = true)]
    pub username_prefix: String,
    /// Token claim the apiserver takes the groups from.
    #[arg(long, default_value = "groups", value_name = "CLAIM")]
    pub groups_claim: String,
    /// Prefix the apiserver puts in front of group names ("" for none) [default: the prefix
    /// saved by `koidc setup`, else oidc:].
    #[arg(long, value_name = "P", allow_hyphen_values = true)]
    pub groups_prefix: Option<String>,
    /// A kubeconfig allowed to list RBAC bindings (an admin's), used through kubectl; without
    /// it the bindings are listed as the user, which RBAC usually forbids.
    #[arg(long, value_name = "FILE")]
    pub admin_kubeconfig: Option<PathBuf>,
    /// The context of --admin-kubeconfig.
    #[arg(long, value_name = "NAME", requires = "admin_kubeconfig")]
    pub admin_context: Option<String>,
    /// The kubectl that lists bindings with --admin-kubeconfig.
    #[arg(long, env = "KOIDC_KUBECTL", value_name = "PATH", default_value = "kubectl")]
    pub kubectl: PathBuf,
}

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  koidc completions bash > ~/.local/share/bash-completion/completions/koidc
  koidc completions zsh > \"${fpath[1]}/_koidc\"
  koidc completions fish > ~/.config/fish/completions/koidc.fish
  koidc completions powershell >> $PROFILE";
const MAN_EXAMPLES: &str = "\
Examples:
  koidc man | man -l -
  koidc man get-token | man -l -
  koidc man --out-dir ~/.local/share/man/man1     # koidc.1, koidc-get-token.1, ...";

/// `koidc completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `koidc man`
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print (koidc-COMMAND(1)) [default: koidc(1)].
    #[arg(value_name = "COMMAND", conflicts_with = "out_dir")]
    pub command: Option<String>,
    /// Write koidc.1 and koidc-COMMAND.1 for every command into this directory instead.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

const GET_TOKEN_EXAMPLES: &str = "\
Examples:
  koidc get-token --issuer https://dex.example.com --client-id kubernetes
  koidc get-token --profile work          # options from [profiles.work] of the config file
  KUBERNETES_EXEC_INFO='{\"apiVersion\":\"client.authentication.k8s.io/v1\"}' koidc get-token ...
  # pipelines (never a browser or a prompt):
  koidc get-token --grant workload --audience https://kubernetes.example.com   # GitHub Actions job
  koidc get-token --grant workload --token-source env:KOIDC_ID_TOKEN --audience https://kubernetes.example.com
  koidc get-token --grant workload --token-source file:/var/run/secrets/tokens/kube --audience kubernetes
  koidc get-token --grant client-credentials --issuer https://idp.example.com --client-id ci --audience kubernetes";
const LOGIN_EXAMPLES: &str = "\
Examples:
  koidc login --issuer https://dex.example.com --client-id kubernetes --scope groups --scope email
  koidc login --issuer https://dex.example.com --client-id kubernetes --no-browser
  koidc login --profile work --cache-dir /tmp/koidc   # a flag beats the profile";
const LOGOUT_EXAMPLES: &str = "\
--issuer/--client-id select every cached entry of that client, whatever its scopes and profile
(with --profile: that profile's entries). --all (or `koidc clean`) forgets every cached identity.

Examples:
  koidc logout --issuer https://dex.example.com --client-id kubernetes
  koidc logout --profile work
  koidc logout --all";
const CLEAN_EXAMPLES: &str = "\
Does what `koidc logout --all` does: revokes and deletes every cached token, and removes the
lock and cool-down files no other koidc process holds.

Examples:
  koidc clean
  koidc clean --no-revoke --cache-dir /tmp/koidc";
const SETUP_EXAMPLES: &str = "\
Examples:
  koidc setup --issuer https://dex.example.com/dex --client-id koidc --scope email --scope groups
  koidc setup --issuer https://dex.example.com/dex --client-id koidc --scope email --scope groups \\
      --login --write-kubeconfig --user oidc
  koidc setup ... --print authentication-config > /etc/kubernetes/koidc-authn.yaml
  koidc setup --profile work --write-kubeconfig   # the entry runs `koidc get-token --profile work`
  koidc setup --ci github-actions --repository acme/app --ref refs/heads/main --audience https://k8s.example.com \\
      --merge /etc/kubernetes/koidc-authn.yaml --print authentication-config   # pipelines beside people";
const WEBHOOK_EXAMPLES: &str = "\
Only tokens that GitHub says were issued to the app --client-id are accepted (checked with the
app's client secret, from KOIDC_CLIENT_SECRET or --client-secret-file). The kube-apiserver side
(webhook config file and flags) is printed by
  koidc setup --provider github --client-id ID --webhook-url https://HOST:8443/ --webhook-ca-file ca.pem \\
      --webhook-client-cert-path /etc/kubernetes/pki/koidc-webhook-client.crt \\
      --webhook-client-key-path /etc/kubernetes/pki/koidc-webhook-client.key

Examples:
  koidc webhook --org acme --client-id Ov23li... --client-secret-file /etc/koidc/client-secret \\
      --tls-cert-file webhook.crt --tls-private-key-file webhook.key --client-ca-file apiserver-client-ca.pem
  koidc webhook --org acme --org acme-labs --listen 0.0.0.0:8443 --cache-ttl 30 \\
      --github-url https://github.example.com --client-id ... --tls-cert-file ... --tls-private-key-file ...";
const WHOAMI_EXAMPLES: &str = "\
Examples:
  koidc whoami --issuer https://dex.example.com --client-id kubernetes
  koidc whoami --profile work
  koidc whoami -o json";
const BIND_GROUP_EXAMPLES: &str = "\
ROLE is a preset that koidc writes too (reader: get, list, watch; writer: every verb; both on the
--resource list, pods by default), a built-in ClusterRole (view, edit, admin, cluster-admin), or
else the name of an existing Role in the binding's namespace. --role-kind says what ROLE is, so
that an existing Role or ClusterRole named reader or writer can be bound:
  role          an existing Role in the namespace of -n (default: default); a RoleBinding can
                only refer to a Role of its own namespace, so never with --cluster-wide
  cluster-role  an existing ClusterRole (same as --cluster-role): with -n its rights in that
                namespace only (RoleBinding), with --cluster-wide everywhere (ClusterRoleBinding)
  preset        reader or writer only
With --apply, a Role or ClusterRole that does not exist in the cluster is refused (a binding to
it would grant nothing), with the preset or built-in it resembles if any; --allow-missing-role
binds it anyway. Without --apply, a ROLE that looks like a typo (Reader, veiw) is warned about.

Examples:
  koidc bind-group reader-group reader -n application | kubectl apply -f -
  koidc bind-group writer-group writer -n application --apply
  koidc bind-group devs reader --resource pods --resource deployments.apps -n dev
  koidc bind-group ops view --cluster-wide --group-prefix oidc:
  koidc bind-group --from rbac.yaml -o json

A --from file is a YAML list:
  - {group: reader-group, role: reader, namespace: application}
  - {group: ops, role: view, clusterWide: true}";

/// Which identity provider and client; shared by every command.
#[derive(Debug, Args, Clone, Default)]
pub struct IdentityFlags {
    /// Take the options not given otherwise from this profile of the config file
    /// ($KOIDC_CONFIG, else $XDG_CONFIG_HOME/koidc/config.toml or ~/.config/koidc/config.toml);
    /// the profile is part of the cache key, so two profiles are two accounts [default: the
    /// file's default-profile, when neither --issuer nor --client-id is given].
    #[arg(long, env = "KOIDC_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// The OpenID Connect issuer URL (as in the `iss` claim, byte for byte).
    #[arg(long, env = "KOIDC_ISSUER", value_name = "URL")]
    pub issuer: Option<String>,
    /// The OAuth client id registered at the IdP (the token's audience).
    #[arg(long, env = "KOIDC_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,
    /// Extra scope to request besides `openid` (repeatable; the variable takes a comma list).
    #[arg(long = "scope", env = "KOIDC_SCOPE", value_name = "S", value_delimiter = ',')]
    pub scopes: Option<Vec<String>>,
    /// Identity provider presets: `okta` adds the scopes offline_access, groups and email and
    /// listens on 127.0.0.1:8000 then 127.0.0.1:18000; `dex` adds offline_access, groups and email;
    /// `generic` adds nothing; `auto` picks okta for *.okta.com, *.oktapreview.com and
    /// *.okta-emea.com issuers, dex for an issuer path ending in /dex, else generic. Flags given
    /// explicitly win. `github` logs in to GitHub itself (no --issuer; see --github-url): the
    /// token is a GitHub access token that the cluster checks with `koidc webhook`.
    #[arg(long, env = "KOIDC_PROVIDER", value_enum)]
    pub provider: Option<ProviderArg>,
    #[command(flatten)]
    pub github: GithubFlags,
    /// The audience the token must carry: the apiserver's. For `--grant workload`, the audience
    /// asked of the CI system (required for github-actions) and checked in the job's token; for
    /// `--grant client-credentials`, the audience an access token must carry to be sent. For a
    /// person, one cluster's audience (its client id at Dex, asked for with Dex's cross-client
    /// scope); without it, the cluster's exec extension `audience` when kubectl passes it
    /// (`provideClusterInfo: true`).
    #[arg(long, env = "KOIDC_AUDIENCE", value_name = "AUD")]
    pub audience: Option<String>,
    /// Where `--grant workload` finds the job's identity token: `github-actions` (requested from
    /// ACTIONS_ID_TOKEN_REQUEST_URL), `file:PATH` (re-read on every renewal: Kubernetes projected
    /// tokens, a GitLab id_token written out) or `env:VAR` (a GitLab CI `id_tokens` variable)
    /// [default: github-actions when ACTIONS_ID_TOKEN_REQUEST_URL is set].
    #[arg(long, env = "KOIDC_TOKEN_SOURCE", value_name = "SRC")]
    pub token_source: Option<String>,
    /// The Dex connector that checks the job's token in a token exchange (`--grant workload`
    /// with --issuer; Dex's `oidc` connector trusting the CI issuer).
    #[arg(long, env = "KOIDC_CONNECTOR_ID", value_name = "ID")]
    pub connector_id: Option<String>,
    /// Which token kubectl gets: `id` (the ID token) or `access` (the access token, which must
    /// be a JWT of the issuer whose `aud` contains --audience, required with it; its signature
    /// and expiry are checked).
    #[arg(long, env = "KOIDC_TOKEN_TYPE", value_enum)]
    pub token_type: Option<TokenTypeArg>,
    /// Extra parameter of the authorization request, as KEY=VALUE (repeatable; the variable
    /// holds one): prompt, login_hint, acr_values, max_age, domain_hint, access_type, resource…
    /// Parameters koidc sets itself (state, nonce, scope, redirect_uri…) are refused.
    #[arg(long = "auth-param", env = "KOIDC_AUTH_PARAM", value_name = "KEY=VALUE")]
    pub auth_params: Option<Vec<String>>,
}

/// Where GitHub is (for `--provider github` and `koidc webhook`).
#[derive(Debug, Args, Clone, Default)]
pub struct GithubFlags {
    /// GitHub's web address, or a GitHub Enterprise Server's (for --provider github and the
    /// webhook) [default: https://github.com].
    #[arg(long, env = "KOIDC_GITHUB_URL", value_name = "URL")]
    pub github_url: Option<String>,
    /// GitHub's REST API (for --provider github and the webhook) [default:
    /// https://api.github.com for github.com, else the GitHub URL + /api/v3].
    #[arg(long, env = "KOIDC_GITHUB_API_URL", value_name = "URL")]
    pub github_api_url: Option<String>,
}

/// Where tokens are kept.
#[derive(Debug, Args, Clone, Default)]
pub struct CacheFlags {
    /// Token store: the OS keyring, plain files (0600) or nothing.
    #[arg(long, env = "KOIDC_CACHE", value_enum)]
    pub cache: Option<CacheArg>,
    /// Directory for cache files and lock files [default: the user's cache dir + /koidc].
    #[arg(long, env = "KOIDC_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// How to reach the IdP and run a login. `Debug` redacts the client secret.
#[derive(Args, Clone, Default)]
pub struct LoginFlags {
    /// Client secret, for confidential clients. The option is deprecated (arguments are
    /// visible to other local users): set the variable, or use --client-secret-file.
    #[arg(long, env = "KOIDC_CLIENT_SECRET", value_name = "S", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// A file holding the client secret (one line; a regular file that neither group nor others
    /// may read), instead of KOIDC_CLIENT_SECRET.
    #[arg(long, env = "KOIDC_CLIENT_SECRET_FILE", value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// Loopback address for the login callback; a fixed port for IdPs that match redirect URIs
    /// exactly. Repeat (or comma-separate) to try several in order [default: 127.0.0.1:0, a free
    /// port; with --provider okta 127.0.0.1:8000, then 127.0.0.1:18000].
    #[arg(long, env = "KOIDC_LISTEN", value_name = "ADDR", value_delimiter = ',')]
    pub listen: Option<Vec<String>>,
    /// Run `CMD <url>` to open the login page instead of the system browser (BROWSER is honoured
    /// too).
    #[arg(long, env = "KOIDC_BROWSER_COMMAND", value_name = "CMD")]
    pub browser_command: Option<String>,
    /// Do not open a browser: print the login URL on stderr and wait.
    #[arg(long, env = "KOIDC_NO_BROWSER")]
    pub no_browser: bool,
    /// Seconds to wait for the login to finish in the browser (or for the device code to be
    /// approved). After a failed or timed-out login, non-interactive kubectl calls fail at once
    /// for 60 s instead of opening the browser again; `koidc login` works meanwhile.
    #[arg(long, env = "KOIDC_TIMEOUT", value_name = "SECS")]
    pub timeout: Option<u64>,
    /// How to log in: `authcode` (browser and loopback redirect), `device-code` (RFC 8628: enter
    /// a code shown on stderr in a browser on any device), or `auto`: authcode, except
    /// device-code when koidc would use the system browser on Linux with neither DISPLAY nor
    /// WAYLAND_DISPLAY set and the IdP advertises a device endpoint. For pipelines, never a
    /// browser or a prompt: `client-credentials` (the client's own token, with its secret) and
    /// `workload` (the CI job's identity token, see --token-source; exchanged at --issuer when
    /// one is given).
    #[arg(long, env = "KOIDC_GRANT", value_enum)]
    pub grant: Option<GrantArg>,
    /// Keyboard mode of the authorization code grant, for browsers that cannot reach this
    /// machine's loopback redirect: after logging in, paste the address the browser was sent to
    /// (or the code the IdP shows) on stdin. Read from a terminal, a kubectl interactive call, or
    /// a pipe; the loopback callback keeps working meanwhile.
    #[arg(long, env = "KOIDC_PASTE")]
    pub paste: bool,
    /// Extra CA certificate (PEM) to trust for the IdP (repeatable).
    #[arg(
        long = "certificate-authority",
        env = "KOIDC_CERTIFICATE_AUTHORITY",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub certificate_authorities: Option<Vec<PathBuf>>,
    /// Extra CA certificates to trust for the IdP, as the base64 of PEM text (like a
    /// kubeconfig's certificate-authority-data): the kubeconfig entry carries the CA itself
    /// (`koidc setup --embed-ca`).
    #[arg(
        long = "certificate-authority-data",
        env = "KOIDC_CERTIFICATE_AUTHORITY_DATA",
        value_name = "BASE64"
    )]
    pub certificate_authority_data: Option<String>,
    /// The host the redirect URI names, for an IdP that registered
    /// `http://localhost:PORT/callback`: `localhost` (koidc then listens on 127.0.0.1 and ::1, so
    /// the callback is reached wherever the browser resolves it), `127.0.0.1` or `::1`. The
    /// callback listens on loopback addresses only, whatever this says [default: the --listen
    /// address].
    #[arg(long, env = "KOIDC_REDIRECT_HOST", value_name = "HOST")]
    pub redirect_host: Option<String>,
    /// Renew the token now through its refresh token, even when the cached one is still valid
    /// (e.g. after a change of groups at the IdP); a login only when the refresh fails.
    #[arg(long, env = "KOIDC_FORCE_REFRESH")]
    pub force_refresh: bool,
    /// Extra HTTP header for every request to the identity provider, as NAME=VALUE (repeatable;
    /// the variable holds one), e.g. Origin=https://app.example.com for an Entra single-page
    /// application client. Never logged.
    #[arg(
        long = "request-header",
        env = "KOIDC_REQUEST_HEADER",
        value_name = "NAME=VALUE"
    )]
    pub request_headers: Option<Vec<String>>,
    /// `false` leaves PKCE (S256) out of the authorization code grant, only for a provider that
    /// refuses it.
    #[arg(long, env = "KOIDC_PKCE", value_name = "BOOL")]
    pub pkce: Option<bool>,
}

impl std::fmt::Debug for LoginFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so a new field cannot be forgotten here.
        let Self {
            client_secret,
            client_secret_file,
            listen,
            browser_command,
            no_browser,
            timeout,
            grant,
            paste,
            certificate_authorities,
            certificate_authority_data,
            redirect_host,
            force_refresh,
            request_headers,
            pkce,
        } = self;
        f.debug_struct("LoginFlags")
            .field("client_secret", &client_secret.as_ref().map(|_| "<redacted>"))
            .field("client_secret_file", client_secret_file)
            .field("listen", listen)
            .field("browser_command", browser_command)
            .field("no_browser", no_browser)
            .field("timeout", timeout)
            .field("grant", grant)
            .field("paste", paste)
            .field("certificate_authorities", certificate_authorities)
            .field("certificate_authority_data", certificate_authority_data)
            .field("redirect_host", redirect_host)
            .field("force_refresh", force_refresh)
            .field(
                "request_headers",
                &request_headers
                    .as_ref()
                    .map(|h| h.iter().map(|h| redacted_header(h)).collect::<Vec<_>>()),
            )
            .field("pkce", pkce)
            .finish()
    }
}

/// A `--request-header` as `Debug` shows it: the name, never the value.
fn redacted_header(raw: &str) -> String {
    match raw.split_once('=') {
        Some((name, _)) => format!("{}=<redacted>", name.escape_debug()),
        None => "<redacted>".to_owned(),
    }
}

/// Logging.
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct OutputFlags {
    /// Say more on stderr about what koidc does (never tokens).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// `koidc get-token`
#[derive(Debug, Args, Default)]
pub struct GetTokenArgs {
    #[command(flatten)]
    pub identity: IdentityFlags,
    #[command(flatten)]
    pub login: LoginFlags,
    #[command(flatten)]
    pub cache: CacheFlags,
    #[command(flatten)]
    pub output: OutputFlags,
}

/// `koidc login`
#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub identity: IdentityFlags,
    #[command(flatten)]
    pub login: LoginFlags,
    #[command(flatten)]
    pub cache: CacheFlags,
    #[command(flatten)]
    pub output: OutputFlags,
    /// Log in through the browser even when a cached or refreshable token exists.
    #[arg(long)]
    pub force: bool,
}

/// `koidc logout`
#[derive(Debug, Args)]
pub struct LogoutArgs {
    #[command(flatten)]
    pub identity: IdentityFlags,
    #[command(flatten)]
    pub login: LoginFlags,
    #[command(flatten)]
    pub cache: CacheFlags,
    #[command(flatten)]
    pub output: OutputFlags,
    /// Forget every cached identity (also: `koidc clean`). The identity options then select
    /// nothing: they only name the client a client secret is for.
    #[arg(long)]
    pub all: bool,
    /// Only delete the local cache; do not ask the IdP to revoke the refresh token.
    #[arg(long)]
    pub no_revoke: bool,
}

/// `koidc clean`: [`LogoutArgs`] without `--all`, which it implies.
#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Names the client a client secret belongs to, as for `logout --all`.
    #[command(flatten)]
    pub identity: IdentityFlags,
    #[command(flatten)]
    pub login: LoginFlags,
    #[command(flatten)]
    pub cache: CacheFlags,
    #[command(flatten)]
    pub output: OutputFlags,
    /// Only delete the local cache; do not ask the IdPs to revoke the refresh tokens.
    #[arg(long)]
    pub no_revoke: bool,
}

impl From<CleanArgs> for LogoutArgs {
    fn from(args: CleanArgs) -> Self {
        LogoutArgs {
            identity: args.identity,
            login: args.login,
            cache: args.cache,
            output: args.output,
            all: true,
            no_revoke: args.no_revoke,
        }
    }
}

/// `koidc whoami`
#[derive(Debug, Args)]
pub struct WhoamiArgs {
    #[command(flatten)]
    pub identity: IdentityFlags,
    /// Accepted so the same options work for every command; `whoami` never logs in.
    #[command(flatten, next_help_heading = "Login options (ignored by whoami)")]
    pub login: LoginFlags,
    #[command(flatten)]
    pub cache: CacheFlags,
    #[command(flatten)]
    pub output: OutputFlags,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `koidc bind-group`
#[derive(Debug, Args)]
pub struct BindGroupArgs {
    /// The IdP group, as the IdP puts it in the token (without the apiserver's groups prefix).
    // Required, except with --from (clap lets a required argument go missing when an argument
    // it conflicts with is present), so the help shows <GROUP> <ROLE>.
    #[arg(required = true, conflicts_with = "from")]
    pub group: Option<String>,
    /// The role to give the group (see below).
    #[arg(required = true, conflicts_with = "from")]
    pub role: Option<String>,
    /// Namespace of the RoleBinding [default: default].
    #[arg(short = 'n', long, value_name = "NS", conflicts_with_all = ["cluster_wide", "from"])]
    pub namespace: Option<String>,
    /// Bind in every namespace with a ClusterRoleBinding (ROLE must be a ClusterRole or a preset).
    #[arg(long, conflicts_with = "from")]
    pub cluster_wide: bool,
    /// ROLE names an existing ClusterRole, not a Role (same as --role-kind cluster-role).
    #[arg(long, conflicts_with_all = ["from", "role_kind"])]
    pub cluster_role: bool,
    /// What ROLE is: an existing Role in the binding's namespace, an existing ClusterRole, or a
    /// preset [default: reader/writer are presets, view/edit/admin/cluster-admin built-in
    /// ClusterRoles, anything else an existing Role].
    #[arg(long, value_enum, value_name = "KIND", conflicts_with = "from")]
    pub role_kind: Option<RoleKindArg>,
    /// Resource for the reader/writer presets, like pods, deployments.apps or pods/log
    /// (repeatable or comma-separated) [default: pods].
    #[arg(
        long = "resource",
        value_name = "R",
        value_delimiter = ',',
        conflicts_with = "from"
    )]
    pub resources: Vec<String>,
    /// The apiserver's groups prefix (--oidc-groups-prefix), put in front of the group ('' for
    /// none) [default: the prefix saved by `koidc setup`, else none, with a warning].
    #[arg(long, value_name = "P", allow_hyphen_values = true)]
    pub group_prefix: Option<String>,
    /// Bind several groups from a YAML list of {group, role, namespace | clusterWide: true}
    /// (`-` reads stdin).
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Output format of the objects.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = ManifestFormat::Yaml, conflicts_with = "apply")]
    pub format: ManifestFormat,
    /// Apply the objects to the current kube context (kubectl apply --server-side) instead of
    /// printing them; running it twice changes nothing.
    #[arg(long)]
    pub apply: bool,
    /// With --apply, bind a Role or ClusterRole that does not exist (yet) instead of refusing.
    #[arg(long, requires = "apply")]
    pub allow_missing_role: bool,
    /// The kubectl that --apply runs.
    #[arg(long, env = "KOIDC_KUBECTL", value_name = "PATH", default_value = "kubectl")]
    pub kubectl: PathBuf,
    /// Kubeconfig file for --apply (passed to kubectl).
    #[arg(long, value_name = "FILE", requires = "apply")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context for --apply (passed to kubectl).
    #[arg(long, value_name = "NAME", requires = "apply")]
    pub context: Option<String>,
    #[command(flatten)]
    pub output: OutputFlags,
}

/// `bind-group --role-kind` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleKindArg {
    /// An existing Role in the binding's namespace (-n); not with --cluster-wide.
    Role,
    /// An existing ClusterRole, bound in -n or --cluster-wide.
    ClusterRole,
    /// A preset koidc writes: reader or writer.
    Preset,
}

/// `bind-group -o` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ManifestFormat {
    /// YAML documents separated by `---`.
    Yaml,
    /// A v1 List with the objects as items.
    Json,
}

/// `--provider` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ProviderArg {
    /// Guess from the issuer URL.
    #[default]
    Auto,
    /// Any OpenID Connect provider: no presets.
    Generic,
    /// Dex.
    Dex,
    /// Okta (a custom authorization server such as https://ORG.okta.com/oauth2/default).
    Okta,
    /// GitHub's own OAuth login (no OpenID Connect); the cluster checks the token with
    /// `koidc webhook`.
    Github,
}

/// `--cache` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum CacheArg {
    /// The OS keyring (kernel keyutils in front of the Secret Service on Linux).
    #[default]
    Keyring,
    /// Files (0600) in the cache directory.
    File,
    /// No cache: log in every time.
    None,
}

/// `--grant` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum GrantArg {
    /// Authorization code, or device code on a Linux machine without a display (see above).
    #[default]
    Auto,
    /// Authorization code + PKCE through the browser and the loopback redirect.
    Authcode,
    /// Device authorization grant (RFC 8628).
    DeviceCode,
    /// OAuth 2.0 client credentials (RFC 6749 4.4): the client's own token.
    ClientCredentials,
    /// The CI job's identity token (`--token-source`), sent as it is or exchanged at --issuer
    /// (RFC 8693).
    Workload,
}

/// `--token-type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum TokenTypeArg {
    /// The ID token.
    #[default]
    Id,
    /// The access token (a JWT with the apiserver's audience).
    Access,
}

/// `-o` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON object.
    Json,
}

/// `koidc setup`
#[derive(Debug, Args)]
pub struct SetupArgs {
    #[command(flatten)]
    pub identity: IdentityFlags,
    #[command(flatten)]
    pub login: LoginFlags,
    #[command(flatten)]
    pub cache: CacheFlags,
    #[command(flatten)]
    pub output: OutputFlags,
    /// Token claim the apiserver takes the username from.
    #[arg(long, default_value = "email", value_name = "CLAIM")]
    pub username_claim: String,
    /// Prefix the apiserver puts in front of usernames ("" for none).
    #[arg(long, default_value = "oidc:", value_name = "P")]
    pub username_prefix: String,
    /// Token claim the apiserver takes the groups from.
    #[arg(long, default_value = "groups", value_name = "CLAIM")]
    pub groups_claim: String,
    /// Prefix the apiserver puts in front of group names ("" for none); `koidc bind-group` uses
    /// it from then on.
    #[arg(long, default_value = "oidc:", value_name = "P")]
    pub groups_prefix: String,
    /// Log in once to check the real token's claims (groups present? email verified?).
    #[arg(long = "login")]
    pub check_login: bool,
    /// Write the user entry into the kubeconfig (KUBECONFIG, else ~/.kube/config); when no
    /// context uses that user yet, print the kubectl commands that add the cluster and a context.
    #[arg(long)]
    pub write_kubeconfig: bool,
    /// Put the IdP's CA (--certificate-authority) into the kubeconfig entry as
    /// --certificate-authority-data instead of the file's path on this machine, so the entry can
    /// be handed out as it is.
    #[arg(long)]
    pub embed_ca: bool,
    /// The kubeconfig file to write with --write-kubeconfig.
    #[arg(long, value_name = "FILE", requires = "write_kubeconfig")]
    pub kubeconfig: Option<PathBuf>,
    /// Name of the kubeconfig user entry.
    #[arg(long = "user", default_value = "oidc", value_name = "NAME", value_parser = kubeconfig_name)]
    pub user_name: String,
    /// Command kubectl runs in the exec entry.
    #[arg(long, default_value = "koidc", value_name = "CMD")]
    pub exec_command: String,
    /// Path of the issuer's CA file on the control plane, for the `--oidc-ca-file` flag.
    #[arg(long, value_name = "FILE")]
    pub apiserver_ca_path: Option<String>,
    /// With --provider github: the URL kube-apiserver reaches `koidc webhook` at [default:
    /// https://127.0.0.1:8443/, the apiserver's own host, with a warning].
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// With --provider github: the CA (PEM) that signed the webhook's certificate, embedded in
    /// the apiserver's webhook config.
    #[arg(long, value_name = "FILE")]
    pub webhook_ca_file: Option<PathBuf>,
    /// With --provider github: where, on the control plane, kube-apiserver's client certificate
    /// (PEM) for the webhook is; written into its webhook config as `client-certificate` (not
    /// read by setup). Its CA goes to `koidc webhook --client-ca-file`.
    #[arg(long, value_name = "PATH", requires = "webhook_client_key_path")]
    pub webhook_client_cert_path: Option<String>,
    /// With --provider github: where, on the control plane, the key of that certificate is
    /// (`client-key`; not read by setup).
    #[arg(long, value_name = "PATH", requires = "webhook_client_cert_path")]
    pub webhook_client_key_path: Option<String>,
    /// Print only one part.
    #[arg(long = "print", value_enum, default_value_t = SetupPart::All)]
    pub print: SetupPart,
    /// Print only an audit policy (audit.k8s.io/v1) that records who did what, OIDC user and
    /// groups included, with the kube-apiserver flags that enable it; needs no issuer.
    #[arg(long)]
    pub audit_policy: bool,
    /// Let a CI system's jobs in with their own short-lived identity tokens, no stored secret:
    /// print what the cluster and the job need (no network, no login).
    ///
    /// Prints the kube-apiserver `jwt` authenticator for the CI issuer: its CEL rules admit
    /// only tokens for --audience from the given --repository/--project, --ref and
    /// --environment, and it maps a job to a username and group no person can have
    /// (`github-actions:`, `gitlab:` or `jwt:` in front; --username-prefix/--groups-prefix
    /// change them). Then the `koidc bind-group` command for that group, and the job's side:
    /// the workflow snippet and the kubeconfig user (--user, default `ci`) running `koidc
    /// get-token --grant workload` (--token-source changes where the job's token comes from).
    /// --certificate-authority is the CI issuer's CA, when a public CA did not sign its
    /// certificate; --merge adds the authenticator to people's file.
    #[arg(
        long,
        value_enum,
        value_name = "PROVIDER",
        conflicts_with_all = [
            "check_login", "write_kubeconfig", "embed_ca", "apiserver_ca_path", "webhook_url",
            "webhook_ca_file", "webhook_client_cert_path", "audit_policy", "client_id",
            "connector_id", "scopes", "provider", "username_claim", "groups_claim", "grant",
        ]
    )]
    pub ci: Option<CiProviderArg>,
    /// With --ci: the CI issuer's URL, byte for byte as in the jobs' `iss` claim [default for
    /// github-actions: https://token.actions.githubusercontent.com; GitHub Enterprise Server:
    /// https://HOST/_services/token]. For gitlab and jwt, --issuer says the same.
    #[arg(long, value_name = "URL", requires = "ci")]
    pub ci_issuer: Option<String>,
    /// With --ci github-actions: a repository whose jobs get in, as OWNER/REPO spelled as on
    /// GitHub (the token's claim is compared exactly, case included); repeatable, all
    /// repositories of the issuer share one authenticator.
    #[arg(long = "repository", value_name = "OWNER/REPO", requires = "ci")]
    pub repositories: Vec<String>,
    /// With --ci gitlab: a project whose jobs get in, as GROUP/PROJECT or
    /// GROUP/SUBGROUP/PROJECT (repeatable; all projects share one authenticator).
    #[arg(long = "project", value_name = "GROUP/PROJECT", requires = "ci")]
    pub projects: Vec<String>,
    /// With --ci github-actions or gitlab: a ref the job must run on (repeatable): the full ref
    /// for GitHub (refs/heads/main, refs/tags/v1.2.0), the branch or tag name for GitLab (main)
    /// [default: any branch or tag, with a warning].
    #[arg(long = "ref", value_name = "REF", requires = "ci")]
    pub refs: Vec<String>,
    /// With --ci github-actions or gitlab: a deployment environment the job must run in
    /// (repeatable), as named in the repository's or project's settings [default: any, or none].
    #[arg(long = "environment", value_name = "NAME", requires = "ci")]
    pub environments: Vec<String>,
    /// With --ci: print FILE, an AuthenticationConfiguration such as the one `koidc setup
    /// --print authentication-config` wrote for people, with the CI authenticator added (its
    /// authenticators are kept; an issuer already in it is refused, the apiserver wants each
    /// issuer once).
    #[arg(long, value_name = "FILE", requires = "ci")]
    pub merge: Option<PathBuf>,
}

/// `koidc setup --ci` values: whose job tokens the cluster trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CiProviderArg {
    /// GitHub Actions (`permissions: id-token: write`); pinned with --repository, --ref and
    /// --environment.
    GithubActions,
    /// GitLab CI `id_tokens` (--issuer: the GitLab instance, e.g. https://gitlab.com); pinned
    /// with --project, --ref and --environment.
    Gitlab,
    /// Any other issuer of job tokens (--issuer), e.g. a Kubernetes cluster's service-account
    /// issuer with projected tokens; pinned by --audience alone.
    Jwt,
}

/// `koidc setup --print` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SetupPart {
    /// Everything, as commented YAML.
    All,
    /// The kube-apiserver `AuthenticationConfiguration` file (with --ci --merge FILE: FILE with
    /// the CI authenticator added).
    AuthenticationConfig,
    /// The equivalent legacy `--oidc-*` kube-apiserver flags, one per line (not with --ci).
    ApiserverFlags,
    /// The kubeconfig `users[]` entry (with --ci: the job's).
    Kubeconfig,
}

/// `koidc webhook`
#[derive(Debug, Args)]
pub struct WebhookArgs {
    /// Address to serve HTTPS on; kube-apiserver must reach it.
    #[arg(
        long,
        env = "KOIDC_WEBHOOK_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8443"
    )]
    pub listen: String,
    /// The server certificate (PEM, with its chain).
    #[arg(long, env = "KOIDC_WEBHOOK_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: PathBuf,
    /// The server certificate's private key (PEM).
    #[arg(long, env = "KOIDC_WEBHOOK_TLS_PRIVATE_KEY_FILE", value_name = "FILE")]
    pub tls_private_key_file: PathBuf,
    /// Serve only TLS clients with a certificate signed by a CA of this PEM file (kube-apiserver's
    /// client certificate; see `koidc setup --webhook-client-cert-path`). Use a CA of its own, not
    /// the cluster's, which signs every node's and user's certificates.
    #[arg(long, env = "KOIDC_WEBHOOK_CLIENT_CA_FILE", value_name = "FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// The client id of the GitHub app whose tokens are accepted (the one `get-token --provider
    /// github --client-id` logs in with): GitHub is asked whether each token was issued to it.
    #[arg(long, env = "KOIDC_CLIENT_ID", value_name = "ID")]
    pub client_id: String,
    /// A file holding the app's client secret (one line; a regular file that neither group nor
    /// others may read). Without it, the secret is read from KOIDC_CLIENT_SECRET; never from the
    /// command line.
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// GitHub organisation whose members are authenticated (repeatable, at least one); users in
    /// none of them are refused.
    #[arg(
        long = "org",
        env = "KOIDC_WEBHOOK_ORG",
        value_name = "ORG",
        value_delimiter = ',',
        required = true
    )]
    pub orgs: Vec<String>,
    /// Put before the GitHub login to make the Kubernetes username.
    #[arg(long, value_name = "P", default_value = "github:", allow_hyphen_values = true)]
    pub username_prefix: String,
    /// Put before every group (`acme`, `acme:sre`); `koidc bind-group --group-prefix` must match.
    #[arg(long, value_name = "P", default_value = "github:", allow_hyphen_values = true)]
    pub groups_prefix: String,
    /// Seconds a verdict on a token is remembered (by the token's SHA-256), 0 for none.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub cache_ttl: u64,
    /// Seconds one request to GitHub may take.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub github_timeout: u64,
    #[command(flatten)]
    pub github: GithubFlags,
    /// Extra CA certificate (PEM) to trust for GitHub Enterprise Server (repeatable).
    #[arg(long = "certificate-authority", value_name = "FILE", value_delimiter = ',')]
    pub certificate_authorities: Vec<PathBuf>,
    #[command(flatten)]
    pub output: OutputFlags,
}

/// A kubeconfig entry name given to `setup --user`: setup prints it into kubectl commands, so it
/// may not start with `-` (kubectl would read it as an option) or hold control characters.
fn kubeconfig_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        Err("the name is empty".into())
    } else if name.starts_with('-') {
        Err("a name starting with '-' would be read as an option by kubectl".into())
    } else if name.chars().any(char::is_control) {
        Err("the name holds a control character".into())
    } else {
        Ok(name.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_user_names_kubectl_would_read_as_an_option_are_refused() {
        let parse = |user: &str| {
            let user = format!("--user={user}");
            Cli::try_parse_args([
                "koidc",
                "setup",
                "--issuer",
                "https://i",
                "--client-id",
                "c",
                &user,
            ])
        };
        assert!(parse("oidc").is_ok());
        for hostile in ["--kubeconfig=/tmp/evil", "-x", "a\nb", ""] {
            let err = parse(hostile)
                .err()
                .unwrap_or_else(|| panic!("{hostile:?} accepted"));
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{hostile:?}");
        }
    }
}
