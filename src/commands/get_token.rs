//! `koidc get-token`: the kubectl exec credential plugin.
//!
//! stdout carries exactly one ExecCredential and nothing else. The exec info is checked before
//! anything else, so an unsupported kubeconfig fails before a browser opens.

use std::sync::Arc;

use crate::cli::GetTokenArgs;
use crate::clock::Clock;
use crate::config::{Identity, LoginConfig};
use crate::login::credential::{ExecInfo, exec_credential};
use crate::printer::Printer;

/// Prints an ExecCredential for the configured identity.
pub fn run(args: &GetTokenArgs, clock: Arc<dyn Clock>, exec_info: Option<String>) -> anyhow::Result<()> {
    let printer = Printer::new(args.output.verbose);
    let exec = ExecInfo::parse(exec_info.as_deref())?;
    let identity = Identity::from_flags(&args.identity, args.login.grant)?;
    let session = super::Session::open(&identity, &args.cache, clock.clone(), printer)?;

    let mut login = LoginConfig::from_flags(&args.login, super::env_browser())?;
    login.kubectl_interactive = exec.from_kubectl.then_some(exec.interactive);
    let obtained = session.obtain(&login, false)?;
    let expiry = obtained.report_expiry(clock.now());
    printer.result(&exec_credential(exec.api_version, obtained.token(), expiry))?;
    Ok(())
}
