//! `koidc logout`: revoke the refresh token where the IdP offers revocation, then forget the
//! cached tokens — for one identity or, with `--all`, for every one.
//!
//! Revocation is best effort: a failure is reported as a warning and the local entry is deleted
//! anyway, so logging out never leaves usable tokens on the machine.

use std::sync::Arc;

use crate::cache::{CacheKey, TokenStore};
use crate::cli::LogoutArgs;
use crate::clock::Clock;
use crate::config::{Identity, LoginConfig};
use crate::oidc::Provider;
use crate::printer::Printer;

/// Logs out of the selected identity or all of them.
pub fn run(args: &LogoutArgs, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let printer = Printer::new(args.output.verbose);
    let (_cache, store) = super::open_cache(&args.cache)?;
    let keys = if args.all {
        store.list()?
    } else {
        vec![Identity::from_flags(&args.identity)?.cache_key()]
    };
    let login = LoginConfig::from_flags(&args.login, None)?;
    let mut removed = 0;
    for key in &keys {
        if !args.no_revoke
            && !super::github::revoke_if_github(store.as_ref(), key, &login, &args.identity.github, printer)
        {
            revoke(store.as_ref(), key, &login, clock.clone(), printer);
        }
        if store.delete(key)? {
            removed += 1;
            printer.result(&format!(
                "logged out of {} (client {})",
                key.issuer, key.client_id
            ))?;
        }
    }
    if removed == 0 {
        printer.info("no cached tokens to forget");
    }
    Ok(())
}

fn revoke(
    store: &dyn TokenStore,
    key: &CacheKey,
    login: &LoginConfig,
    clock: Arc<dyn Clock>,
    printer: Printer,
) {
    let refresh_token = match store.load(key) {
        Ok(Some(tokens)) => tokens.refresh_token,
        _ => None,
    };
    let Some(refresh_token) = refresh_token else {
        return;
    };
    let identity = Identity {
        issuer: key.issuer.clone(),
        client_id: key.client_id.clone(),
        scopes: key.scopes.clone(),
        provider: crate::provider::ProviderKind::detect(&key.issuer),
        github: None,
        profile: key.profile.clone(),
    };
    let oidc = login.oidc(&identity);
    let result = crate::runtime().and_then(|rt| {
        rt.block_on(async {
            let provider = Provider::discover(&oidc, clock).await?;
            Ok(provider.revoke(&refresh_token).await?)
        })
    });
    match result {
        Ok(true) => printer.debug(format_args!("revoked the refresh token at {}", key.issuer)),
        Ok(false) => printer.debug(format_args!("{} offers no revocation endpoint", key.issuer)),
        Err(err) => printer.warn(format_args!(
            "could not revoke the refresh token at {}: {err:#}",
            key.issuer
        )),
    }
}
