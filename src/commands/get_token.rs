//! `koidc get-token`: the kubectl exec credential plugin.
//!
//! stdout carries exactly one ExecCredential and nothing else. The exec info is checked before
//! anything else, so an unsupported kubeconfig fails before a browser opens.

use std::sync::Arc;

use crate::cli::{GetTokenArgs, GrantArg};
use crate::clock::Clock;
use crate::config::{Identity, LoginConfig};
use crate::login::credential::{ExecInfo, exec_credential};
use crate::printer::Printer;

/// Prints an ExecCredential for the configured identity.
pub fn run(args: &GetTokenArgs, clock: Arc<dyn Clock>, exec_info: Option<String>) -> anyhow::Result<()> {
    let printer = Printer::new(args.output.verbose);
    let exec = ExecInfo::parse(exec_info.as_deref())?;
    let identity = match exec.audience {
        // The cluster's audience (its exec extension, with `provideClusterInfo: true`), for a
        // person's login; `--audience` wins, and a pipeline names its audience itself.
        Some(audience) if args.identity.audience.is_none() && !is_pipeline(args.login.grant) => {
            let mut flags = args.identity.clone();
            flags.audience = Some(audience);
            Identity::from_flags(&flags, args.login.grant)?
        }
        _ => Identity::from_flags(&args.identity, args.login.grant)?,
    };
    let session = super::Session::open(&identity, &args.cache, clock.clone(), printer)?;

    let mut login = LoginConfig::from_flags(&args.login, super::env_browser())?;
    login.kubectl_interactive = exec.from_kubectl.then_some(exec.interactive);
    let obtained = session.obtain(&login, false)?;
    let expiry = obtained.report_expiry(clock.now());
    printer.result(&exec_credential(exec.api_version, obtained.token(), expiry))?;
    Ok(())
}

/// Whether `grant` is a pipeline's (its audience is its own `--audience`, never the cluster's).
fn is_pipeline(grant: Option<GrantArg>) -> bool {
    matches!(grant, Some(GrantArg::ClientCredentials | GrantArg::Workload))
}
