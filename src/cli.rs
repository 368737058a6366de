//! Command-line flags as the user typed them.
//!
//! This module only describes and parses flags (and their `KOIDC_*` environment variables); it
//! does not judge them. [`crate::config::Config::from_flags`] turns these raw values into a typed,
//! validated configuration, so every rule about what a valid issuer or listen address is lives in
//! one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// koidc: log in to Kubernetes with your company identity (OpenID Connect).
#[derive(Debug, Parser)]
#[command(name = "koidc", version, about, propagate_version = true)]
#[command(after_help = "Run `koidc <command> --help` for the options of each command.")]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

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
    /// Show the cached identity without any network call.
    #[command(after_help = WHOAMI_EXAMPLES)]
    Whoami(WhoamiArgs),
    /// Print (or apply) the RBAC objects that give an IdP group a role in the cluster.
    #[command(after_help = BIND_GROUP_EXAMPLES)]
    BindGroup(BindGroupArgs),
    /// Check an issuer and print what the cluster needs: apiserver authentication config,
    /// kubeconfig entry, RBAC commands.
    #[command(after_help = SETUP_EXAMPLES)]
    Setup(SetupArgs),
}

const GET_TOKEN_EXAMPLES: &str = "\
Examples:
  koidc get-token --issuer https://dex.example.com --client-id kubernetes
  KUBERNETES_EXEC_INFO='{\"apiVersion\":\"client.authentication.k8s.io/v1\"}' koidc get-token ...";
const LOGIN_EXAMPLES: &str = "\
Examples:
  koidc login --issuer https://dex.example.com --client-id kubernetes --scope groups --scope email
  koidc login --issuer https://dex.example.com --client-id kubernetes --no-browser";
const LOGOUT_EXAMPLES: &str = "\
Examples:
  koidc logout --issuer https://dex.example.com --client-id kubernetes
  koidc logout --all";
const SETUP_EXAMPLES: &str = "\
Examples:
  koidc setup --issuer https://dex.example.com/dex --client-id koidc --scope email --scope groups
  koidc setup --issuer https://dex.example.com/dex --client-id koidc --scope email --scope groups \\
      --login --write-kubeconfig --user oidc
  koidc setup ... --print authentication-config > /etc/kubernetes/koidc-authn.yaml";
const WHOAMI_EXAMPLES: &str = "\
Examples:
  koidc whoami --issuer https://dex.example.com --client-id kubernetes
  koidc whoami -o json";
const BIND_GROUP_EXAMPLES: &str = "\
ROLE is a built-in ClusterRole (view, edit, admin, cluster-admin), a preset that koidc writes too
(reader: get, list, watch; writer: every verb; both on the --resource list, pods by default), or
else the name of an existing Role (with --cluster-role: of an existing ClusterRole).

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
    /// The OpenID Connect issuer URL (as in the `iss` claim, byte for byte).
    #[arg(long, env = "KOIDC_ISSUER", value_name = "URL")]
    pub issuer: Option<String>,
    /// The OAuth client id registered at the IdP (the token's audience).
    #[arg(long, env = "KOIDC_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,
    /// Extra scope to request besides `openid` (repeatable; the variable takes a comma list).
    #[arg(long = "scope", env = "KOIDC_SCOPE", value_name = "S", value_delimiter = ',')]
    pub scopes: Vec<String>,
    /// Identity provider presets: `okta` adds the scopes offline_access, groups and email and
    /// listens on 127.0.0.1:8000 then 127.0.0.1:18000; `dex` adds offline_access, groups and email;
    /// `generic` adds nothing; `auto` picks okta for *.okta.com, *.oktapreview.com and
    /// *.okta-emea.com issuers, dex for an issuer path ending in /dex, else generic. Flags given
    /// explicitly win.
    #[arg(long, env = "KOIDC_PROVIDER", value_enum, default_value_t = ProviderArg::Auto)]
    pub provider: ProviderArg,
}

/// Where tokens are kept.
#[derive(Debug, Args, Clone)]
pub struct CacheFlags {
    /// Token store: the OS keyring, plain files (0600) or nothing.
    #[arg(long, env = "KOIDC_CACHE", value_enum, default_value_t = CacheArg::Keyring)]
    pub cache: CacheArg,
    /// Directory for cache files and lock files [default: the user's cache dir + /koidc].
    #[arg(long, env = "KOIDC_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// How to reach the IdP and run a login.
#[derive(Debug, Args, Clone)]
pub struct LoginFlags {
    /// Client secret, for confidential clients (prefer the variable: arguments are visible to
    /// other local users).
    #[arg(long, env = "KOIDC_CLIENT_SECRET", value_name = "S", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// Loopback address for the login callback; a fixed port for IdPs that match redirect URIs
    /// exactly. Repeat (or comma-separate) to try several in order [default: 127.0.0.1:0, a free
    /// port; with --provider okta 127.0.0.1:8000, then 127.0.0.1:18000].
    #[arg(long, env = "KOIDC_LISTEN", value_name = "ADDR", value_delimiter = ',')]
    pub listen: Vec<String>,
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
    #[arg(long, env = "KOIDC_TIMEOUT", value_name = "SECS", default_value_t = 180)]
    pub timeout: u64,
    /// How to log in: `authcode` (browser and loopback redirect), `device-code` (RFC 8628: enter
    /// a code shown on stderr in a browser on any device), or `auto`: authcode, except
    /// device-code when koidc would use the system browser on Linux with neither DISPLAY nor
    /// WAYLAND_DISPLAY set and the IdP advertises a device endpoint.
    #[arg(long, env = "KOIDC_GRANT", value_enum, default_value_t = GrantArg::Auto)]
    pub grant: GrantArg,
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
    pub certificate_authorities: Vec<PathBuf>,
}

/// Logging.
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct OutputFlags {
    /// Say more on stderr about what koidc does (never tokens).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// `koidc get-token`
#[derive(Debug, Args)]
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
    /// Forget every cached identity.
    #[arg(long)]
    pub all: bool,
    /// Only delete the local cache; do not ask the IdP to revoke the refresh token.
    #[arg(long)]
    pub no_revoke: bool,
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
    #[arg(required_unless_present = "from", conflicts_with = "from")]
    pub group: Option<String>,
    /// The role to give the group (see below).
    #[arg(required_unless_present = "from", conflicts_with = "from")]
    pub role: Option<String>,
    /// Namespace of the RoleBinding [default: default].
    #[arg(short = 'n', long, value_name = "NS", conflicts_with_all = ["cluster_wide", "from"])]
    pub namespace: Option<String>,
    /// Bind in every namespace with a ClusterRoleBinding (ROLE must be a ClusterRole or a preset).
    #[arg(long, conflicts_with = "from")]
    pub cluster_wide: bool,
    /// ROLE names an existing ClusterRole, not a Role.
    #[arg(long, conflicts_with = "from")]
    pub cluster_role: bool,
    /// Resource for the reader/writer presets, like pods, deployments.apps or pods/log
    /// (repeatable or comma-separated) [default: pods].
    #[arg(
        long = "resource",
        value_name = "R",
        value_delimiter = ',',
        conflicts_with = "from"
    )]
    pub resources: Vec<String>,
    /// The apiserver's groups prefix (--oidc-groups-prefix), put in front of the group
    /// [default: the prefix saved by `koidc setup`, else none].
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
}

/// `--cache` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CacheArg {
    /// The OS keyring (kernel keyutils in front of the Secret Service on Linux).
    Keyring,
    /// Files (0600) in the cache directory.
    File,
    /// No cache: log in every time.
    None,
}

/// `--grant` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GrantArg {
    /// Authorization code, or device code on a Linux machine without a display (see above).
    Auto,
    /// Authorization code + PKCE through the browser and the loopback redirect.
    Authcode,
    /// Device authorization grant (RFC 8628).
    DeviceCode,
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
    /// Write the user entry into the kubeconfig (KUBECONFIG, else ~/.kube/config).
    #[arg(long)]
    pub write_kubeconfig: bool,
    /// The kubeconfig file to write with --write-kubeconfig.
    #[arg(long, value_name = "FILE", requires = "write_kubeconfig")]
    pub kubeconfig: Option<PathBuf>,
    /// Name of the kubeconfig user entry.
    #[arg(long = "user", default_value = "oidc", value_name = "NAME")]
    pub user_name: String,
    /// Command kubectl runs in the exec entry.
    #[arg(long, default_value = "koidc", value_name = "CMD")]
    pub exec_command: String,
    /// Path of the issuer's CA file on the control plane, for the `--oidc-ca-file` flag.
    #[arg(long, value_name = "FILE")]
    pub apiserver_ca_path: Option<String>,
    /// Print only one part.
    #[arg(long = "print", value_enum, default_value_t = SetupPart::All)]
    pub print: SetupPart,
}

/// `koidc setup --print` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SetupPart {
    /// Everything, as commented YAML.
    All,
    /// The kube-apiserver `AuthenticationConfiguration` file.
    AuthenticationConfig,
    /// The equivalent legacy `--oidc-*` kube-apiserver flags, one per line.
    ApiserverFlags,
    /// The kubeconfig `users[]` entry.
    Kubeconfig,
}
