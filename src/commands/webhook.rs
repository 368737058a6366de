//! `koidc webhook`: serve TokenReviews for kube-apiserver, checking GitHub tokens with GitHub
//! (see [`crate::cluster::webhook`]).
//!
//! Everything that can be wrong with the flags (organisations, listen address, GitHub URLs, the
//! app's client id and secret, the TLS files) is checked before the port is bound, and reported
//! as one line. The client secret comes from `KOIDC_CLIENT_SECRET` or `--client-secret-file`,
//! never from the command line (other local users can read a process's arguments).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::cli::WebhookArgs;
use crate::cluster::webhook::lookup::AppLookup;
use crate::cluster::webhook::{self, Limits, Policy, Reviewer};
use crate::login::github::{GithubUrls, http_client};
use crate::printer::Printer;

/// The longest `--cache-ttl` accepted: a revoked token must stop working in reasonable time.
const MAX_CACHE_TTL: u64 = 3600;

/// Runs the webhook until the process is stopped.
pub fn run(args: &WebhookArgs) -> anyhow::Result<()> {
    let printer = Printer::new(args.output.verbose);
    let policy = Policy::new(&args.orgs, &args.username_prefix, &args.groups_prefix)?;
    let listen: SocketAddr = args.listen.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "invalid --listen {:?}: expected IP:PORT, e.g. 127.0.0.1:8443 or 0.0.0.0:8443",
            args.listen
        )
    })?;
    if args.cache_ttl > MAX_CACHE_TTL {
        anyhow::bail!(
            "--cache-ttl must be at most {MAX_CACHE_TTL} seconds (a revoked token is accepted that long)"
        );
    }
    if args.github_timeout == 0 || args.github_timeout > 300 {
        anyhow::bail!("--github-timeout must be between 1 and 300 seconds");
    }
    let client_id = webhook::check_client_id(&args.client_id)?;
    let client_secret = webhook::client_secret(
        std::env::var("KOIDC_CLIENT_SECRET").ok(),
        args.client_secret_file.as_deref(),
    )?;
    let urls = GithubUrls::new(
        args.github.github_url.as_deref(),
        args.github.github_api_url.as_deref(),
    )?;
    let timeout = Duration::from_secs(args.github_timeout);
    let tls = webhook::tls_config(
        &args.tls_cert_file,
        &args.tls_private_key_file,
        args.client_ca_file.as_deref(),
    )?;
    let http = http_client(timeout, &args.certificate_authorities, None)?;
    let limits = Limits::for_open_files(webhook::raise_open_files_limit());
    let reviewer = Arc::new(Reviewer::new(
        Box::new(AppLookup::new(http, &urls, timeout, &client_id, client_secret)),
        policy.clone(),
        Duration::from_secs(args.cache_ttl),
        limits.max_lookups,
        printer,
    ));
    if args.client_ca_file.is_none() {
        printer.warn(
            "no --client-ca-file: anyone who reaches this port can ask about tokens; require \
             kube-apiserver's client certificate (see `koidc setup --webhook-client-cert-path`)",
        );
    }
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let listener = webhook::bind(listen).await?;
        let addr = listener.local_addr().context("cannot read the listen address")?;
        printer.info(format_args!(
            "webhook: serving TokenReviews on https://{addr}/ for members of {} with tokens of GitHub \
             app {client_id} (GitHub API {}, username prefix {:?}, groups prefix {:?}, cache {}s, \
             client certificates {}, at most {} connections)",
            policy.orgs.join(", "),
            urls.api,
            policy.username_prefix,
            policy.groups_prefix,
            args.cache_ttl,
            match &args.client_ca_file {
                Some(ca) => format!("required (CA {})", ca.display()),
                None => "not required".to_owned(),
            },
            limits.max_connections,
        ));
        webhook::serve(listener, tls, reviewer, limits.max_connections)
            .await
            .context("the webhook server stopped")
    })
}
