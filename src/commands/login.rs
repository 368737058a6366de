//! `koidc login`: log in (or refresh) at a terminal and show who you are — never the token.

use std::sync::Arc;

use crate::cli::LoginArgs;
use crate::clock::Clock;
use crate::config::{Identity, LoginConfig};
use crate::login::pipeline::Source;
use crate::login::sources::github::describe as describe_github;
use crate::login::token::Credential;
use crate::printer::Printer;

/// Logs in and prints the identity on stdout.
pub fn run(args: &LoginArgs, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let printer = Printer::new(args.output.verbose);
    let identity = Identity::from_flags(&args.identity, args.login.grant)?;
    let login = LoginConfig::from_flags(&args.login, super::env_browser())?;
    let session = super::Session::open(&identity, &args.cache, clock.clone(), printer)?;
    let obtained = session.obtain(&login, args.force)?;
    // A login already said who logged in.
    match obtained.source {
        Source::Cache => printer.info(format_args!("already logged in at {}", identity.issuer)),
        Source::Refresh => printer.info(format_args!("refreshed the token at {}", identity.issuer)),
        Source::Login => {}
    }
    let now = clock.now();
    let text = match &obtained.entry.credential {
        Credential::IdToken { info, .. } => super::whoami::describe(info, now, identity.machine.is_some()),
        Credential::GithubAccess {
            account, expires_at, ..
        } => describe_github(&identity.issuer, account, *expires_at, now),
    };
    printer.report(&text)?;
    Ok(())
}
