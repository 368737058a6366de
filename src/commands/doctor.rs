//! `koidc doctor`: run the checks of [`crate::cluster::doctor`] in order and print one line per check on
//! stdout, then a summary; exit 1 when a check failed.
//!
//! Which identity: `--issuer`/`--client-id`/`--profile` (with the profile rules of every other
//! command), else the `koidc get-token` arguments of the kubeconfig context's user — so the doctor
//! checks exactly what kubectl runs, and shares its cached token; when that gives no identity
//! either, the error names the reason (no kubeconfig, no such context, a user that does not run
//! koidc) rather than a missing --issuer. Which cluster: the kubeconfig
//! context (`--kubeconfig`, `--context`). The token is obtained like `get-token` does (cache,
//! refresh, login) and sent only to that cluster, in an HTTP header.

use std::sync::Arc;

use anyhow::bail;

use crate::cli::{Cli, Command, DoctorArgs, ExplicitArgs, GetTokenArgs};
use crate::clock::Clock;
use crate::cluster::doctor::apiserver::{AdminKubectl, ApiClient, bindings_with_kubectl};
use crate::cluster::doctor::kubeconfig::{self, ClusterTarget, KubeconfigError};
use crate::cluster::doctor::{self, Check, Expectations, names};
use crate::cluster::rbac;
use crate::config::{Identity, LoginConfig};
use crate::login::loopback::LoopbackServer;
use crate::login::oidc::Provider;
use crate::login::pipeline::Source;
use crate::printer::Printer;

/// The default groups and username prefix, as `koidc setup` uses.
const DEFAULT_PREFIX: &str = "oidc:";

/// A pipeline's grant (given, or in the kubeconfig's exec entry) has no login chain to check.
fn refuse_pipeline(grant: Option<crate::cli::GrantArg>) -> anyhow::Result<()> {
    use crate::cli::GrantArg;
    if matches!(grant, Some(GrantArg::Workload | GrantArg::ClientCredentials)) {
        bail!(
            "koidc doctor checks a person's login chain; for a pipeline, run the same `koidc get-token` with -v and its output sent to /dev/null (stderr says where the token came from and what was checked), then `kubectl auth whoami` with that kubeconfig"
        );
    }
    Ok(())
}

/// Runs `koidc doctor`.
pub fn run(args: &DoctorArgs, explicit: &ExplicitArgs, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let printer = Printer::new(args.output.verbose);
    rbac::names::validate_namespace(&args.namespace)?;
    let paths = kubeconfig::kubeconfig_paths(args.kubeconfig.as_deref());
    let target = kubeconfig::load(&paths, args.context.as_deref());
    refuse_pipeline(args.login.grant)?;
    let settings = settings(args, explicit, &target, printer)?;
    if settings.identity.provider == Some(crate::cli::ProviderArg::Github) {
        bail!("koidc doctor checks OpenID Connect providers; for --provider github, check the webhook's log");
    }
    refuse_pipeline(settings.login.grant)?;
    let identity = Identity::from_flags(&settings.identity, settings.login.grant)?;
    let login = LoginConfig::from_flags(&settings.login, super::env_browser())?;
    let expect = expectations(args, printer);
    printer.info(format_args!(
        "checking issuer {} with client {:?}, and cluster {}",
        identity.issuer,
        identity.client_id,
        match &target {
            Ok(t) => format!("{} (context {})", t.server, t.context),
            Err(_) => "(none: see the apiserver check)".to_owned(),
        }
    ));

    let rights = names::rights(&expect.namespace);
    let mut report = Report::new(
        printer,
        &[
            names::CLIENT,
            names::REDIRECT,
            names::TOKEN,
            names::CLAIMS,
            names::APISERVER,
            names::MAPPING,
            names::BINDINGS,
            &rights,
        ],
    );
    let runtime = crate::runtime()?;
    let oidc = login.oidc(&identity);
    let provider = runtime.block_on(Provider::discover(&oidc, clock.clone()));
    report.add_all(doctor::issuer_checks(
        &identity.issuer,
        provider.as_ref().map(|_| ()),
    ));
    let Ok(provider) = provider else {
        return report.finish_skipping(names::DISCOVERY);
    };

    // The login request koidc would send, with a redirect URI on a port it would listen on.
    let probed = runtime.block_on(async {
        let server = LoopbackServer::bind(&login.listen_for(identity.provider)).await?;
        let redirect_uri = server.redirect_uri();
        drop(server);
        let request = provider.authorization_request(&redirect_uri)?;
        printer.debug("sending the authorization request without a browser");
        let answer = provider.probe_authorization(&request).await;
        anyhow::Ok((redirect_uri, answer))
    });
    let (redirect_uri, answer) = match probed {
        Ok(probed) => probed,
        Err(err) => {
            report.add(Check::fail(
                names::CLIENT,
                format!(
                    "cannot prepare a login request: {}",
                    crate::printer::error_line(&err)
                ),
            ));
            return report.finish_skipping(names::CLIENT);
        }
    };
    let [client, redirect] = doctor::authorize_checks(answer.as_ref(), &identity.client_id, &redirect_uri);
    let blocked = [&client, &redirect]
        .into_iter()
        .find(|c| !c.passed())
        .map(|c| c.name.clone());
    report.add_all([client, redirect]);
    if let Some(blocked) = blocked {
        return report.finish_skipping(&blocked);
    }
    drop(runtime);

    // The token, as get-token would get it (this may open the browser).
    let obtained = super::Session::open(&identity, &settings.cache, clock.clone(), printer)
        .and_then(|session| session.obtain(&login, false));
    let obtained = match obtained {
        Ok(obtained) => obtained,
        Err(err) => {
            report.add(Check::fail(names::TOKEN, crate::printer::error_line(&err)));
            return report.finish_skipping(names::TOKEN);
        }
    };
    // doctor checks OpenID Connect providers only (refused above for GitHub).
    let Some(info) = obtained.id_token_info() else {
        report.add(Check::fail(names::TOKEN, "the login gave no ID token"));
        return report.finish_skipping(names::TOKEN);
    };
    let left = match (info.expiry - clock.now()).num_minutes() {
        m if m < 120 => format!("{m} min"),
        m => format!("{}h{:02}m", m / 60, m % 60),
    };
    report.add(Check::ok(
        names::TOKEN,
        format!(
            "{}; expires in {left}",
            match obtained.source {
                Source::Cache => "from the cache",
                Source::Refresh => "refreshed",
                Source::Login => "new login",
            }
        ),
    ));
    let claims = &info.claims;
    report.add(doctor::claims_check(claims, &expect, &identity.scopes));

    // The cluster, asked as the user.
    let target = match target {
        Ok(target) => target,
        Err(err) => {
            report.add(Check::fail(names::APISERVER, err.to_string()));
            return report.finish_skipping(names::APISERVER);
        }
    };
    let runtime = crate::runtime()?;
    let api = match ApiClient::new(&target, obtained.token().clone()) {
        Ok(api) => api,
        Err(err) => {
            report.add(Check::fail(names::APISERVER, err.to_string()));
            return report.finish_skipping(names::APISERVER);
        }
    };
    let user = match runtime.block_on(api.self_subject_review()) {
        Ok(user) => user,
        Err(err) => {
            let issuer = info.issuer.clone();
            report.add(doctor::apiserver_failure(
                &err,
                &issuer,
                &identity.client_id,
                &expect.username_claim,
            ));
            return report.finish_skipping(names::APISERVER);
        }
    };
    report.add(doctor::apiserver_success(target.server.as_str(), &user));
    report.add(doctor::mapping_check(&user, claims, &expect));

    let bindings = match &args.admin_kubeconfig {
        Some(kubeconfig) => bindings_with_kubectl(
            &AdminKubectl {
                program: args.kubectl.clone(),
                kubeconfig: kubeconfig.clone(),
                context: args.admin_context.clone(),
            },
            &expect.namespace,
        )
        .map(Some),
        None => match runtime.block_on(api.bindings(&expect.namespace)) {
            Err(err) if err.status() == Some(403) => Ok(None),
            other => other.map(Some),
        },
    };
    report.add(match bindings {
        Ok(Some(bindings)) => doctor::bindings_check(&bindings, &user, claims, &expect),
        Ok(None) => doctor::bindings_not_listable(doctor::username(&user)),
        Err(err) => Check::fail(names::BINDINGS, format!("cannot list the bindings: {err}")),
    });
    report.add(match runtime.block_on(api.rules_review(&expect.namespace)) {
        Ok(status) => doctor::rules_check(&status, &expect.namespace),
        Err(err) => Check::fail(rights, format!("SelfSubjectRulesReview failed: {err}")),
    });
    report.finish()
}

/// The identity, login and cache options to check: the doctor's own (and a profile) when an
/// identity option is given, else those of the kubeconfig user's `koidc get-token` entry, else
/// the doctor's own (a default profile may fill them). When none of these names an issuer or a
/// client, the error says why the kubeconfig did not (no file, no such context, a user that does
/// not run koidc), not just that --issuer is missing.
fn settings(
    args: &DoctorArgs,
    explicit: &ExplicitArgs,
    target: &Result<ClusterTarget, KubeconfigError>,
    printer: Printer,
) -> anyhow::Result<GetTokenArgs> {
    let own = || GetTokenArgs {
        identity: args.identity.clone(),
        login: args.login.clone(),
        cache: args.cache.clone(),
        output: args.output,
    };
    let given = args.identity.issuer.is_some()
        || args.identity.client_id.is_some()
        || args.identity.profile.is_some();
    // Why the kubeconfig gives no identity, when it does not.
    let mut not_from_kubeconfig = None;
    let from_kubeconfig = match target {
        _ if given => None,
        Ok(t) => match t.get_token_args() {
            Ok(get_token) => Some((t, get_token.to_vec())),
            Err(why) => {
                not_from_kubeconfig = Some(why);
                None
            }
        },
        Err(err) => {
            not_from_kubeconfig = Some(err.to_string());
            None
        }
    };
    let mut cli = match from_kubeconfig {
        Some((t, get_token)) => {
            printer.info(format_args!(
                "using the `koidc get-token` options of user {:?} in context {:?}",
                t.user.as_deref().unwrap_or_default(),
                t.context
            ));
            let get_token: Vec<std::ffi::OsString> = std::iter::once("koidc".into())
                .chain(get_token.into_iter().map(Into::into))
                .collect();
            Cli::try_parse_args(get_token.clone()).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the `koidc get-token` options of the kubeconfig user {:?}: {}; pass --issuer and --client-id",
                    t.user.as_deref().unwrap_or_default(),
                    crate::cli::usage::error_line(&e, &get_token)
                        .unwrap_or_else(|| "it asks for help or the version".to_owned())
                )
            })?
        }
        None => Cli {
            command: Command::GetToken(own()),
            explicit: explicit.clone(),
        },
    };
    crate::config::apply_profile(&mut cli)?;
    match cli.command {
        Command::GetToken(args) => match not_from_kubeconfig {
            Some(why)
                if args.identity.issuer.is_none()
                    && args.identity.client_id.is_none()
                    && args.identity.provider != Some(crate::cli::ProviderArg::Github) =>
            {
                bail!("{why}")
            }
            _ => Ok(args),
        },
        _ => bail!(
            "the kubeconfig user's exec entry does not run `koidc get-token`; pass --issuer and --client-id"
        ),
    }
}

/// The claims and prefixes to expect: the flags, else (groups prefix) what `koidc setup` saved,
/// else setup's defaults.
fn expectations(args: &DoctorArgs, printer: Printer) -> Expectations {
    let (groups_prefix, groups_prefix_origin) = match &args.groups_prefix {
        Some(prefix) => (prefix.clone(), "--groups-prefix".to_owned()),
        None => match rbac::saved_group_prefix() {
            Ok(Some(saved)) => (
                saved.prefix,
                format!("saved by koidc setup in {}", saved.path.display()),
            ),
            Ok(None) => (DEFAULT_PREFIX.to_owned(), "the default".to_owned()),
            Err(err) => {
                printer.warn(format_args!(
                    "{err}; expecting the groups prefix {DEFAULT_PREFIX:?}"
                ));
                (DEFAULT_PREFIX.to_owned(), "the default".to_owned())
            }
        },
    };
    Expectations {
        username_claim: args.username_claim.clone(),
        username_prefix: args.username_prefix.clone(),
        groups_claim: args.groups_claim.clone(),
        groups_prefix,
        groups_prefix_origin,
        namespace: args.namespace.clone(),
    }
}

/// The checks so far; each is printed on stdout as it is added.
struct Report {
    checks: Vec<Check>,
    /// The checks after the issuer's, in the order they run: those not reported when a check
    /// fails are skipped.
    later: Vec<String>,
    printer: Printer,
}

impl Report {
    fn new(printer: Printer, later: &[&str]) -> Self {
        Self {
            checks: Vec::new(),
            later: later.iter().map(|name| (*name).to_owned()).collect(),
            printer,
        }
    }

    fn add(&mut self, check: Check) {
        // A closed stdout must not hide the outcome: the exit status still tells.
        let _ = self.printer.report(&check.to_string());
        self.checks.push(check);
    }

    fn add_all(&mut self, checks: impl IntoIterator<Item = Check>) {
        for check in checks {
            self.add(check);
        }
    }

    /// Adds the later checks not reported yet as skipped because `failed` failed, then finishes.
    fn finish_skipping(mut self, failed: &str) -> anyhow::Result<()> {
        let later = std::mem::take(&mut self.later);
        for name in later {
            if !self.checks.iter().any(|check| check.name == name) {
                self.add(Check::skip(name, format!("needs: {failed}")));
            }
        }
        self.finish()
    }

    /// Prints the summary; an error naming the failed checks when any failed.
    fn finish(self) -> anyhow::Result<()> {
        let _ = self.printer.report(&doctor::summary(&self.checks));
        let failed: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| c.verdict == doctor::Verdict::Fail)
            .map(|c| c.name.as_str())
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            bail!(
                "{} check{} failed: {}",
                failed.len(),
                if failed.len() == 1 { "" } else { "s" },
                failed.join(", ")
            )
        }
    }
}
