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
const WHOAMI_EXAMPLES: &str = "\
Examples:
  koidc whoami --issuer https://dex.example.com --client-id kubernetes
  koidc whoami -o json";

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
    /// exactly. Repeat (or comma-separate) to try several in order.
    #[arg(
        long,
        env = "KOIDC_LISTEN",
        value_name = "ADDR",
        value_delimiter = ',',
        default_value = "127.0.0.1:0"
    )]
    pub listen: Vec<String>,
    /// Run `CMD <url>` to open the login page instead of the system browser (BROWSER is honoured
    /// too).
    #[arg(long, env = "KOIDC_BROWSER_COMMAND", value_name = "CMD")]
    pub browser_command: Option<String>,
    /// Do not open a browser: print the login URL on stderr and wait.
    #[arg(long, env = "KOIDC_NO_BROWSER")]
    pub no_browser: bool,
    /// Seconds to wait for the login to finish in the browser.
    #[arg(long, env = "KOIDC_TIMEOUT", value_name = "SECS", default_value_t = 180)]
    pub timeout: u64,
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
    #[command(flatten)]
    pub cache: CacheFlags,
    #[command(flatten)]
    pub output: OutputFlags,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    pub format: Format,
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

/// `-o` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON object.
    Json,
}
