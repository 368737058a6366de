//! `koidc setup`: check an issuer and print what the cluster side needs.
//!
//! The checks run first (discovery and signing keys; with `--login`, a real token's claims), so a
//! broken issuer is reported before any configuration is printed. The printed parts come from
//! [`crate::cluster::setup`], built from one set of choices so the apiserver, the kubeconfig and
//! `koidc bind-group` agree on claims and prefixes. `--write-kubeconfig` puts the user entry into
//! the kubeconfig ([`crate::cluster::setup::write`]) and then prints the kubectl commands that add
//! what the file still lacks (a cluster, a context using the user).
//! `--embed-ca` puts the IdP's CA into the entry as `--certificate-authority-data`. A client
//! secret is never written: setup says how to add it to the entry's `exec.env`.
//!
//! `--ci PROVIDER` takes another path ([`ci()`]): no issuer check (the CI issuer may be
//! unreachable from here; the apiserver fetches its keys itself) and no login; it reads only the
//! CA file and the `--merge` file, and prints what [`crate::cluster::setup::ci`] renders.

use std::sync::Arc;

use anyhow::Context as _;

use crate::cli::options::get_token_argv;
use crate::cli::{CiProviderArg, GetTokenArgs, IdentityFlags, SetupArgs, SetupPart};
use crate::clock::Clock;
use crate::cluster::rbac;
use crate::cluster::setup::ci::{self, CiChoices, CiError, CiTrust};
use crate::cluster::setup::{self, ClusterAuth, ExecUser};
use crate::config::{Identity, LoginConfig};
use crate::kubeconfig::{Kubeconfig, NamedUser};
use crate::login::oidc::Provider;
use crate::login::oidc::request::TokenType;
use crate::login::token::{Credential, IdTokenInfo};
use crate::printer::Printer;

/// Runs `koidc setup`.
pub fn run(args: &SetupArgs, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    if args.audit_policy {
        // Independent of the issuer: nothing to check, nothing to save.
        Printer::new(args.output.verbose).result(&setup::audit_policy())?;
        return Ok(());
    }
    if let Some(provider) = args.ci {
        return ci(args, provider);
    }
    if args.identity.provider == Some(crate::cli::ProviderArg::Github) {
        return super::github::setup(args, clock);
    }
    let printer = Printer::new(args.output.verbose);
    let identity = Identity::from_flags(&args.identity, args.login.grant)?;
    let login = LoginConfig::from_flags(&args.login, super::env_browser())?;
    let (ca_pem, entry_ca) = setup::entry_cas(
        &login.certificate_authorities,
        login.certificate_authority_data.as_deref(),
        args.embed_ca,
    )?;
    let auth = ClusterAuth {
        issuer: identity.issuer.clone(),
        client_id: apiserver_audience(&identity)?,
        username_claim: args.username_claim.clone(),
        username_prefix: args.username_prefix.clone(),
        groups_claim: args.groups_claim.clone(),
        groups_prefix: args.groups_prefix.clone(),
        ca_pem,
    };

    check_issuer(&identity, &login, clock.clone(), printer)?;
    let claims = if args.check_login {
        let session = super::Session::open(&identity, &args.cache, clock, printer)?;
        let obtained = session.obtain(&login, false)?;
        let Credential::IdToken { info, .. } = obtained.entry.credential else {
            anyhow::bail!("internal error: an OpenID Connect login without an ID token; please report this");
        };
        printer.info(format_args!(
            "logged in; the token's {} claim is {:?} and its groups are [{}]",
            auth.username_claim,
            info.str_claim(&auth.username_claim).unwrap_or("(missing)"),
            info.groups().join(", ")
        ));
        Some(info)
    } else {
        None
    };
    for warning in setup::warnings(&auth, &identity.scopes, claims.as_ref()) {
        printer.warn(warning);
    }
    if login.client_secret.is_some() {
        printer.info(setup::client_secret_hint(
            &args.user_name,
            setup::CLIENT_SECRET_VAR,
        ));
    }

    match rbac::save_group_prefix(&auth.groups_prefix) {
        Ok(path) => printer.debug(format_args!(
            "saved the groups prefix for `koidc bind-group` in {}",
            path.display()
        )),
        Err(err) => printer.warn(format_args!(
            "could not save the groups prefix for `koidc bind-group` ({err}); pass --group-prefix {:?} to bind-group yourself",
            auth.groups_prefix
        )),
    }

    // With a profile the entry names the profile (the options live in the config file, and the
    // profile is part of the cache key, so the entry must name it), followed by the options given
    // here that shape the request to the provider: flags beat the profile, so they must be kept.
    let exec_args = match &identity.profile {
        Some(profile) => {
            printer.info(format_args!(
                "the kubeconfig entry runs `{} get-token --profile {profile}`: whoever uses it needs that profile in their koidc config file",
                args.exec_command
            ));
            let mut exec_args = get_token_argv(&GetTokenArgs {
                identity: IdentityFlags {
                    profile: Some(profile.clone()),
                    ..IdentityFlags::default()
                },
                ..GetTokenArgs::default()
            });
            if args.embed_ca {
                exec_args.extend(entry_ca);
            }
            exec_args.extend(provider_request_words(args));
            exec_args
        }
        None => {
            let mut exec_args = setup::get_token_args(
                &identity.issuer,
                &identity.client_id,
                &identity.scopes,
                entry_ca,
                args.login.listen.as_deref().unwrap_or_default(),
                // An explicit provider (e.g. Okta behind a custom domain) cannot be guessed from
                // the issuer by get-token: carry it into the entry.
                args.identity.provider,
            );
            // The redirect URI's host is what the provider registered: the entry keeps it
            // (checked above by `LoginConfig::from_flags`).
            if let Some(host) = &args.login.redirect_host {
                exec_args.push(format!("--redirect-host={}", host.trim()));
            }
            exec_args.extend(provider_request_words(args));
            exec_args
        }
    };
    if args.login.request_headers.as_ref().is_some_and(|h| !h.is_empty()) {
        printer.info(
            "the --request-header values are not written into the kubeconfig entry (its command line is visible to other local users): put them in a profile of the koidc config file (request-headers) and use --profile, or add KOIDC_REQUEST_HEADER to the entry's exec.env",
        );
    }
    let user = setup::kubeconfig_user(&ExecUser {
        name: args.user_name.clone(),
        command: args.exec_command.clone(),
        args: exec_args,
    });
    if args.write_kubeconfig {
        for note in setup::write::write_user(args.kubeconfig.as_deref(), &args.user_name, user.clone())? {
            printer.info(note);
        }
    }

    let out = render(args, &auth, &user, claims.as_ref())?;
    printer.result(&setup::yaml_safe(&out))?;
    Ok(())
}

/// The audience the apiserver must require: the client id for ID tokens; with `--token-type
/// access`, `--audience` (the access tokens' audience), which setup cannot guess.
fn apiserver_audience(identity: &Identity) -> anyhow::Result<String> {
    match &identity.token_type {
        TokenType::Id => Ok(identity.client_id.clone()),
        TokenType::Access {
            audience: Some(audience),
        } => Ok(audience.clone()),
        TokenType::Access { audience: None } => anyhow::bail!(
            "setup --token-type access needs --audience: the audience of the access tokens (e.g. api://default at Okta), which the apiserver must require instead of the client id"
        ),
    }
}

/// The options of the entry's get-token that shape the request to the provider: the token type
/// and its audience, the `--auth-param` values and `--pkce=false`. `--request-header` values stay
/// out (a command line is visible to other local users).
fn provider_request_words(args: &SetupArgs) -> Vec<String> {
    crate::cli::options::option_words(&GetTokenArgs {
        identity: IdentityFlags {
            token_type: args.identity.token_type,
            audience: args.identity.audience.clone(),
            auth_params: args.identity.auth_params.clone(),
            ..IdentityFlags::default()
        },
        login: crate::cli::LoginFlags {
            pkce: args.login.pkce,
            ..crate::cli::LoginFlags::default()
        },
        ..GetTokenArgs::default()
    })
}

fn check_issuer(
    identity: &Identity,
    login: &LoginConfig,
    clock: Arc<dyn Clock>,
    printer: Printer,
) -> anyhow::Result<()> {
    let oidc = login.oidc(identity);
    let runtime = crate::runtime()?;
    let provider = runtime
        .block_on(Provider::discover(&oidc, clock))
        .with_context(|| format!("the issuer {} failed its check", identity.issuer))?;
    printer.info(format_args!(
        "issuer {}: discovery and signing keys OK",
        provider.issuer()
    ));
    Ok(())
}

fn render(
    args: &SetupArgs,
    auth: &ClusterAuth,
    user: &NamedUser,
    claims: Option<&IdTokenInfo>,
) -> anyhow::Result<String> {
    let authn = setup::yaml(&setup::authentication_configuration(auth))?;
    let flags = setup::apiserver_flags(auth, args.apiserver_ca_path.as_deref()).join("\n");
    let kubeconfig = setup::yaml(&Kubeconfig {
        users: Some(vec![user.clone()]),
        ..Kubeconfig::default()
    })?;
    Ok(match args.print {
        SetupPart::AuthenticationConfig => authn,
        SetupPart::ApiserverFlags => flags,
        SetupPart::Kubeconfig => kubeconfig,
        SetupPart::All => {
            // Groups come from the IdP: one that kubectl or bind-group would read as an option,
            // or with a control character (a newline would end the comment line), is left out.
            let groups: Vec<String> = claims
                .map(IdTokenInfo::groups)
                .unwrap_or_default()
                .into_iter()
                .filter(|g| setup::safe_argument(g))
                .collect();
            let bind = if groups.is_empty() {
                "#   koidc bind-group <group> view -n <namespace>".to_owned()
            } else {
                groups
                    .iter()
                    .map(|g| {
                        format!(
                            "#   koidc bind-group {} view -n <namespace>",
                            setup::shell_word(g)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let ca_note = if auth.ca_pem.is_some() && args.apiserver_ca_path.is_none() {
                "\n#   (add --oidc-ca-file=<the issuer's CA on the control plane>; see --apiserver-ca-path)"
            } else {
                ""
            };
            format!(
                "# 1. kube-apiserver: save this file and start the apiserver with\n\
                 #    --authentication-config=<file> (apiserver.config.k8s.io/v1, Kubernetes 1.34+).\n\
                 {authn}\
                 # Or, instead of the file (never both), the legacy flags:\n{}{ca_note}\n\
                 #\n\
                 # 2. kubeconfig user entry{}:\n{}\
                 #\n\
                 # 3. RBAC: bind your IdP groups (groups prefix {:?}, saved for bind-group):\n{bind}\n",
                flags
                    .lines()
                    .map(|l| format!("#   {l}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                if args.write_kubeconfig { " (written)" } else { "" },
                kubeconfig
                    .lines()
                    .map(|l| format!("#   {l}\n"))
                    .collect::<String>(),
                auth.groups_prefix,
            )
        }
    })
}

/// `koidc setup --ci PROVIDER`: the CI issuer's authenticator (merged into `--merge FILE`), the
/// bind-group commands for the jobs' groups, and the job's side. Reads files only: no network,
/// no login, nothing saved.
fn ci(args: &SetupArgs, provider: CiProviderArg) -> anyhow::Result<()> {
    let printer = Printer::new(args.output.verbose);
    if args.print == SetupPart::ApiserverFlags {
        return Err(CiError::NoFlags.into());
    }
    // People's default prefix means "not given": the jobs get the CI system's own.
    let not_default = |p: &str| (p != "oidc:").then(|| p.to_owned());
    let trust = CiTrust::new(&CiChoices {
        provider: Some(provider),
        ci_issuer: args.ci_issuer.clone(),
        issuer: args.identity.issuer.clone(),
        audience: args.identity.audience.clone(),
        repositories: args.repositories.clone(),
        projects: args.projects.clone(),
        refs: args.refs.clone(),
        environments: args.environments.clone(),
        username_prefix: not_default(&args.username_prefix),
        groups_prefix: not_default(&args.groups_prefix),
    })?;
    let login = LoginConfig::from_flags(&args.login, None)?;
    let ca_pem = setup::read_cas(
        &login.certificate_authorities,
        login.certificate_authority_data.as_deref(),
    )?;
    let authenticator = trust.authenticator(ca_pem.as_deref());
    let config = match &args.merge {
        Some(path) => {
            let shown = path.display().to_string();
            // An AuthenticationConfiguration is a few KiB: a FIFO, a device or a huge file is
            // refused rather than read without end.
            let read_error = |reason: String| CiError::MergeRead {
                path: shown.clone(),
                reason,
            };
            let bytes = crate::files::read_small_regular(path, 1 << 20, |_| Ok(())).map_err(read_error)?;
            let text =
                String::from_utf8(bytes.to_vec()).map_err(|_| read_error("it is not UTF-8 text".into()))?;
            let merged = ci::merge(&shown, &text, authenticator)?;
            for issuer in ci::colliding_group_issuers(&merged, &trust.groups_prefix) {
                printer.warn(format_args!(
                    "the authenticator for {issuer} in {shown} maps groups with no prefix or a prefix of {:?}:                      a group its tokens name like {} would get the jobs' rights; give it a groups prefix such as \"oidc:\"",
                    trust.groups_prefix,
                    trust.groups()[0]
                ));
            }
            merged
        }
        None => ci::authentication_configuration(authenticator),
    };
    for warning in trust.warnings() {
        printer.warn(warning);
    }
    if args.print != SetupPart::All {
        // The full output says it in its first line.
        printer.info(trust.summary());
    }

    // The job's entry needs no file of this machine: the CA (for the token service GitHub
    // Actions jobs ask) goes in as data.
    let entry_ca = match (&ca_pem, trust.provider) {
        (Some(pem), ci::CiProvider::GithubActions) => setup::ca_args(&[], None, Some(pem)),
        _ => Vec::new(),
    };
    let token_source = args
        .identity
        .token_source
        .clone()
        .unwrap_or_else(|| trust.default_token_source());
    let user = ExecUser {
        name: if args.user_name == "oidc" {
            ci::CI_USER.to_owned()
        } else {
            args.user_name.clone()
        },
        command: args.exec_command.clone(),
        args: trust.get_token_args(Some(&token_source), entry_ca)?,
    };
    let kubeconfig = setup::yaml(&Kubeconfig {
        users: Some(vec![trust.kubeconfig_user(&user)]),
        ..Kubeconfig::default()
    })?;
    let authn = setup::yaml(&config)?;
    let out = match args.print {
        SetupPart::AuthenticationConfig => authn,
        SetupPart::Kubeconfig => kubeconfig,
        SetupPart::ApiserverFlags => return Err(CiError::NoFlags.into()),
        SetupPart::All => {
            let comment = |text: &str| text.lines().map(|l| format!("#   {l}\n")).collect::<String>();
            let file_note = match &args.merge {
                Some(path) => format!(
                    "#    This is {} with the CI authenticator added; the others are kept (comments are not).\n",
                    crate::text::one_line(&path.display().to_string(), 300)
                ),
                None => {
                    "#    A cluster that trusts people too: merge this authenticator into their file with\n\
                         #    --merge <file> (the apiserver wants all issuers in one file, each once).\n"
                        .to_owned()
                }
            };
            let groups = trust.groups();
            let job_title = match trust.provider {
                ci::CiProvider::GithubActions => {
                    "the GitHub Actions job (workflow file; the repository variable KUBE_CA holds the\n#    apiserver's CA certificate)"
                }
                ci::CiProvider::Gitlab => {
                    "the GitLab CI job (.gitlab-ci.yml; the CI/CD variable KUBE_CA holds the apiserver's\n#    CA certificate)"
                }
                ci::CiProvider::Jwt => "the pod that runs the job (a projected service-account token)",
            };
            format!(
                "# koidc setup --ci {}: {}.\n\
                 #\n\
                 # 1. kube-apiserver: save this file and start the apiserver with\n\
                 #    --authentication-config=<file> (apiserver.config.k8s.io/v1, Kubernetes 1.34+; it is\n\
                 #    re-read when it changes). The apiserver fetches the issuer's keys itself.\n\
                 {file_note}{authn}\
                 #\n\
                 # 2. RBAC: a job's username is like\n\
                 #      {}\n\
                 #    and its group is {}.\n\
                 #    Bind the group by its full name (--group-prefix '' keeps bind-group from adding\n\
                 #    people's groups prefix):\n\
                 {}\
                 #\n\
                 # 3. {job_title}, with koidc and kubectl installed:\n\
                 {}\
                 #\n\
                 # 4. The same exec entry as a kubeconfig file (no stored secret anywhere):\n\
                 {}",
                trust.provider.flag_value(),
                trust.summary(),
                trust.example_username(),
                groups.join(" or "),
                comment(&trust.bind_group_commands("edit", "<namespace>").join("\n")),
                comment(&trust.job_snippet(&user, &token_source)?),
                comment(&kubeconfig),
            )
        }
    };
    printer.result(&setup::yaml_safe(&out))?;
    Ok(())
}
