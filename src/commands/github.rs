//! The GitHub side of the commands (`--provider github`): what `setup` prints for a cluster that
//! checks GitHub tokens with `koidc webhook`. How `login`, `whoami` and `logout` treat GitHub
//! cache entries (opaque tokens described by the entry's metadata) is the GitHub source's
//! business, see [`crate::login::sources::github`].

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};

use crate::cli::options::{entry_listen, get_token_argv};
use crate::cli::{GetTokenArgs, GithubFlags, IdentityFlags, LoginFlags, ProviderArg, SetupArgs, SetupPart};
use crate::clock::Clock;
use crate::cluster::rbac;
use crate::cluster::setup::webhook::{self, PREFIX, WEBHOOK_CONFIG_PATH, webhook_command};
use crate::cluster::setup::{self, ExecUser};
use crate::config::{Identity, LoginConfig};
use crate::kubeconfig::Kubeconfig;
use crate::login::github::{Account, DEFAULT_URL, GithubUrls};
use crate::login::token::Credential;
use crate::printer::Printer;

/// The OpenID Connect default prefix of `koidc setup`; for GitHub it stands for [`PREFIX`].
const OIDC_DEFAULT_PREFIX: &str = "oidc:";

/// The `--webhook-url` when none is given: the apiserver's own host.
const DEFAULT_WEBHOOK_URL: &str = "https://127.0.0.1:8443/";

/// `koidc setup --provider github`: the apiserver's webhook config file and flags, the
/// `koidc webhook` command, the kubeconfig user entry and the `bind-group` hints.
pub(super) fn setup(args: &SetupArgs, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let printer = Printer::new(args.output.verbose);
    let identity = Identity::from_flags(&args.identity, args.login.grant)?;
    let login = LoginConfig::from_flags(&args.login, super::env_browser())?;
    let urls = identity
        .github
        .clone()
        .context("internal error: a GitHub identity without GitHub URLs; please report this")?;
    let github_prefix = |p: &str| {
        if p == OIDC_DEFAULT_PREFIX {
            PREFIX.to_owned()
        } else {
            p.to_owned()
        }
    };
    let username_prefix = github_prefix(&args.username_prefix);
    let groups_prefix = github_prefix(&args.groups_prefix);
    let given_url = args.webhook_url.as_deref();
    let webhook_url = url::Url::parse(given_url.unwrap_or(DEFAULT_WEBHOOK_URL))
        .ok()
        .filter(|u| u.scheme() == "https" && u.host().is_some())
        .with_context(|| {
            format!(
                "invalid --webhook-url {:?}: koidc webhook serves https only, e.g. https://10.0.0.5:8443/",
                given_url.unwrap_or_default()
            )
        })?;
    if given_url.is_none() {
        printer.warn(format_args!(
            "no --webhook-url: the apiserver's webhook config points at {DEFAULT_WEBHOOK_URL}, which works only \
             when `koidc webhook` runs on the apiserver's own host; pass --webhook-url https://HOST:PORT/ \
             with the address the apiserver reaches it at"
        ));
    }
    let (_, entry_ca) = setup::entry_cas(
        &login.certificate_authorities,
        login.certificate_authority_data.as_deref(),
        args.embed_ca,
    )?;
    let ca_pem = match &args.webhook_ca_file {
        Some(path) => Some(read_pem(path)?),
        None => None,
    };
    let client_cert = match (&args.webhook_client_cert_path, &args.webhook_client_key_path) {
        (Some(cert), Some(key)) => Some(webhook::ClientCertPaths {
            cert: control_plane_path("--webhook-client-cert-path", cert)?,
            key: control_plane_path("--webhook-client-key-path", key)?,
        }),
        _ => None,
    };

    let account = if args.check_login {
        let session = super::Session::open(&identity, &args.cache, clock.clone(), printer)?;
        let obtained = session.obtain(&login, false)?;
        let Credential::GithubAccess { account, .. } = obtained.entry.credential else {
            bail!("internal error: a GitHub login without a GitHub token; please report this");
        };
        printer.info(format_args!(
            "logged in to GitHub as {}; groups the webhook would derive: [{}]",
            account.login,
            account.groups(&[]).join(", ")
        ));
        Some(account)
    } else {
        None
    };
    if ca_pem.is_none() {
        printer.warn(
            "no --webhook-ca-file: the apiserver will trust the webhook's certificate only if a public CA signed it",
        );
    }
    if client_cert.is_none() {
        printer.warn(
            "no --webhook-client-cert-path/--webhook-client-key-path: the webhook cannot tell the apiserver \
             from anyone else who reaches it; give kube-apiserver a client certificate from a CA of its own \
             and run the webhook with --client-ca-file <that CA>",
        );
    }
    if groups_prefix.is_empty() {
        printer.warn(
            "no groups prefix: GitHub groups share a namespace with Kubernetes' own (an allowed organization \
             named `system` would map a team to system:...); \"github:\" is safer",
        );
    }
    if login.client_secret.is_some() {
        printer.info(setup::client_secret_hint(
            &args.user_name,
            setup::CLIENT_SECRET_VAR,
        ));
    }
    printer.info(format_args!(
        "GitHub's browser login needs the OAuth app's client secret in the exec entry's env ({}); without it \
         koidc uses GitHub's device flow",
        setup::CLIENT_SECRET_VAR
    ));
    match rbac::save_group_prefix(&groups_prefix) {
        Ok(path) => printer.debug(format_args!(
            "saved the groups prefix for `koidc bind-group` in {}",
            path.display()
        )),
        Err(err) => printer.warn(format_args!(
            "could not save the groups prefix for `koidc bind-group` ({err}); pass --group-prefix {groups_prefix:?} to bind-group yourself"
        )),
    }

    let user = setup::kubeconfig_user(&ExecUser {
        name: args.user_name.clone(),
        command: args.exec_command.clone(),
        args: get_token_args(
            &identity,
            &urls,
            entry_ca,
            args.login.listen.as_deref().unwrap_or_default(),
        ),
    });
    if args.write_kubeconfig {
        for note in setup::write::write_user(args.kubeconfig.as_deref(), &args.user_name, user.clone())? {
            printer.info(note);
        }
    }

    let webhook_config = setup::yaml(&webhook::apiserver_kubeconfig(
        webhook_url.as_str(),
        ca_pem.as_deref(),
        client_cert.as_ref(),
    ))?;
    let flags = webhook::apiserver_flags(WEBHOOK_CONFIG_PATH).join("\n");
    let kubeconfig = setup::yaml(&Kubeconfig {
        users: Some(vec![user.clone()]),
        ..Kubeconfig::default()
    })?;
    let out = match args.print {
        SetupPart::AuthenticationConfig => webhook_config,
        SetupPart::ApiserverFlags => flags,
        SetupPart::Kubeconfig => kubeconfig,
        SetupPart::All => {
            let orgs = account.as_ref().map(Account::all_orgs).unwrap_or_default();
            let command = webhook_command(
                &webhook_url,
                &urls,
                &identity.client_id,
                client_cert.is_some(),
                &orgs,
                &username_prefix,
                &groups_prefix,
            );
            let teams = account.map(|a| a.teams).unwrap_or_default();
            let bind = if teams.is_empty() {
                "#   koidc bind-group <org>:<team> view -n <namespace>".to_owned()
            } else {
                teams
                    .iter()
                    .map(|t| format!("#   koidc bind-group {t} view -n <namespace>"))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let comment = |text: &str| text.lines().map(|l| format!("#   {l}\n")).collect::<String>();
            format!(
                "# 1. kube-apiserver: save this file as {WEBHOOK_CONFIG_PATH} and start the apiserver with\n\
                 {}#\n{webhook_config}\
                 #\n# 2. Run the webhook where the apiserver reaches {webhook_url} (a certificate for that host;\n\
                 #    the app's client secret in a file only the webhook's user can read, or in KOIDC_CLIENT_SECRET):\n\
                 {}#\n# 3. kubeconfig user entry{}:\n{}\
                 #\n# 4. RBAC: bind GitHub teams as <org>:<team-slug> (groups prefix {groups_prefix:?}, saved for bind-group):\n{bind}\n",
                comment(&flags),
                comment(&command),
                if args.write_kubeconfig { " (written)" } else { "" },
                comment(&kubeconfig),
            )
        }
    };
    printer.result(&out)?;
    Ok(())
}

/// A path on the control plane for the webhook config: absolute, one line.
fn control_plane_path(flag: &str, path: &str) -> anyhow::Result<String> {
    if !path.starts_with('/') || path.chars().any(char::is_control) {
        bail!("invalid {flag} {path:?}: expected an absolute path on the control plane");
    }
    Ok(path.to_owned())
}

/// The `get-token` arguments of a GitHub kubeconfig entry (`ca`: from
/// [`setup::ca_args`]).
fn get_token_args(identity: &Identity, urls: &GithubUrls, ca: Vec<String>, listen: &[String]) -> Vec<String> {
    let own_api = GithubUrls::new(Some(&urls.web), None).is_ok_and(|derived| derived.api != urls.api);
    let mut args = get_token_argv(&GetTokenArgs {
        identity: IdentityFlags {
            client_id: Some(identity.client_id.clone()),
            scopes: Some(
                identity
                    .scopes
                    .iter()
                    .filter(|s| s.as_str() != crate::login::github::SCOPE)
                    .cloned()
                    .collect(),
            ),
            provider: Some(ProviderArg::Github),
            github: GithubFlags {
                github_url: (urls.web != DEFAULT_URL).then(|| urls.web.clone()),
                github_api_url: own_api.then(|| urls.api.clone()),
            },
            ..IdentityFlags::default()
        },
        login: LoginFlags {
            listen: entry_listen(listen),
            ..LoginFlags::default()
        },
        ..GetTokenArgs::default()
    });
    args.extend(ca);
    args
}

fn read_pem(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --webhook-ca-file {}", path.display()))?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        bail!("--webhook-ca-file {} is not a PEM certificate", path.display());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ProviderKind;

    #[test]
    fn get_token_args_name_only_what_differs_from_the_defaults() {
        let urls = GithubUrls::new(None, None).unwrap();
        let identity = Identity {
            issuer: urls.web.clone(),
            client_id: "cid".into(),
            scopes: vec!["read:org".into()],
            provider: ProviderKind::Github,
            github: Some(urls.clone()),
            profile: None,
            machine: None,
            audience: None,
            token_type: Default::default(),
            auth_params: Default::default(),
        };
        assert_eq!(
            get_token_args(&identity, &urls, Vec::new(), &[]),
            ["get-token", "--provider=github", "--client-id=cid"]
        );
        let ghe = GithubUrls::new(
            Some("https://git.example.com"),
            Some("https://api.git.example.com"),
        )
        .unwrap();
        let args = get_token_args(&identity, &ghe, Vec::new(), &["127.0.0.1:8000".into()]);
        assert!(
            args.contains(&"--github-url=https://git.example.com".to_owned()),
            "{args:?}"
        );
        assert!(
            args.contains(&"--github-api-url=https://api.git.example.com".to_owned()),
            "{args:?}"
        );
        assert!(args.contains(&"--listen=127.0.0.1:8000".to_owned()), "{args:?}");
    }
}
