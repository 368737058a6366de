//! `koidc setup --ci`: what kube-apiserver needs to admit CI jobs with their own short-lived
//! identity tokens (GitHub Actions, GitLab CI `id_tokens`, any other JWT issuer such as a
//! Kubernetes cluster's service-account issuer), with no secret stored in the CI system.
//!
//! One [`CiTrust`] (validated choices) gives the `jwt` authenticator of an
//! `AuthenticationConfiguration` (apiserver.config.k8s.io/v1): the CI issuer, the audience, CEL
//! `claimValidationRules` pinning repositories or projects, refs and environments, and
//! `claimMappings` to a username and group that no person's token can produce (a CI prefix such as
//! `github-actions:`). The apiserver requires each issuer URL once, so every repository of one
//! issuer goes into one authenticator, the values combined in CEL with `in`; [`merge`] adds the
//! authenticator to an existing file (people's) and refuses a second one for the same issuer.
//!
//! Every value put into CEL is validated for its kind (OWNER/REPO, a git ref, ...) and then
//! written as a CEL string literal by [`cel_string`], which escapes quotes, backslashes and
//! control characters: a hostile name can fail validation but can never change what an
//! expression means. The job's side (workflow snippet, kubeconfig user running `koidc get-token
//! --grant workload`) and the `koidc bind-group` command that binds the jobs' group are rendered
//! here too, so the group the apiserver derives and the group bound are the same string.

use serde_json::{Value, json};

use crate::cli::options;
use crate::cli::{CiProviderArg, GetTokenArgs, GrantArg, IdentityFlags, LoginFlags};
use crate::kubeconfig::NamedUser;

use super::ExecUser;

/// GitHub Actions' issuer (github.com).
pub const GITHUB_ACTIONS_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// The GitLab CI variable the printed job puts its `id_tokens` token in.
pub const GITLAB_TOKEN_VAR: &str = "KOIDC_ID_TOKEN";

/// Where the printed pod spec mounts a projected service-account token (`--ci jwt`).
pub const PROJECTED_TOKEN_DIR: &str = "/var/run/secrets/tokens";

/// The file name of that token in [`PROJECTED_TOKEN_DIR`].
pub const PROJECTED_TOKEN_FILE: &str = "koidc";

/// The kubeconfig user name of the job's entry when `--user` keeps its default (`oidc`, people's).
pub const CI_USER: &str = "ci";

/// The kubeconfig cluster name in the printed job.
const JOB_CLUSTER: &str = "k8s";

/// The variable holding the apiserver's URL in the printed job.
const SERVER_VAR: &str = "KUBE_SERVER";

/// The file of the repository holding the apiserver's CA in the printed job.
const JOB_CA_FILE: &str = "apiserver-ca.crt";

/// The variable of the CI system holding the apiserver's CA certificate (PEM; public).
const CA_VAR: &str = "KUBE_CA";

/// The longest value accepted for a repository, project, ref or environment.
const MAX_VALUE: usize = 255;

/// Why `setup --ci` cannot produce its output. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CiError {
    /// No `--audience`.
    #[error(
        "--ci needs --audience AUD: the audience the jobs ask their CI system for and the apiserver \
         requires (e.g. the apiserver's URL, or a name such as kubernetes-prod)"
    )]
    NoAudience,
    /// The audience is empty, has spaces around it or control characters.
    #[error(
        "invalid --audience {0:?}: give a non-empty name or URL of at most 255 bytes, without spaces around it, control characters or line separators"
    )]
    BadAudience(String),
    /// `--ci gitlab` or `--ci jwt` without an issuer.
    #[error("--ci {provider} needs the CI issuer: add --issuer URL ({example})")]
    NoIssuer {
        /// The provider, as the flag spells it.
        provider: &'static str,
        /// An example issuer.
        example: &'static str,
    },
    /// `--issuer` with `--ci github-actions` (people's issuer, or a mistake).
    #[error(
        "--ci github-actions trusts GitHub's issuer ({GITHUB_ACTIONS_ISSUER}), not --issuer {0:?}: drop \
         --issuer (and KOIDC_ISSUER); for GitHub Enterprise Server pass --ci-issuer https://HOST/_services/token"
    )]
    IssuerWithGithub(String),
    /// The issuer is not an https URL the apiserver accepts.
    #[error(
        "invalid CI issuer {0:?}: kube-apiserver accepts an https URL without query, fragment or user \
         (e.g. https://gitlab.example.com), byte for byte as in the tokens' iss claim"
    )]
    BadIssuer(String),
    /// A flag given for a provider that has no such claim.
    #[error("{flag} does not apply to --ci {provider}: {hint}")]
    NotFor {
        /// The flag.
        flag: &'static str,
        /// The provider, as the flag spells it.
        provider: &'static str,
        /// What to use instead.
        hint: &'static str,
    },
    /// `--ci github-actions` without a repository, or `--ci gitlab` without a project.
    #[error(
        "--ci {provider} needs {flag}: without it every job on {issuer} that asks for the audience would get \
         in; add {flag} {example} (repeatable)"
    )]
    Unpinned {
        /// The provider, as the flag spells it.
        provider: &'static str,
        /// The missing flag.
        flag: &'static str,
        /// The issuer.
        issuer: String,
        /// An example value.
        example: &'static str,
    },
    /// A value that is not of the form its flag takes.
    #[error("invalid {flag} {value:?}: {what}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What the flag takes.
        what: String,
    },
    /// A prefix the jobs' usernames or groups would share with people's or Kubernetes' own.
    #[error(
        "--{which}-prefix {prefix:?} cannot name CI jobs: it must end with ':' and must not be empty \
         or start with oidc: (people's) or system:; e.g. github-actions-ghe:"
    )]
    BadPrefix {
        /// `username` or `groups`.
        which: &'static str,
        /// The prefix given.
        prefix: String,
    },
    /// The `--merge` file cannot be read.
    #[error("cannot read the --merge file {path}: {reason}")]
    MergeRead {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The `--merge` file is not an AuthenticationConfiguration.
    #[error(
        "the --merge file {path} is not a kube-apiserver AuthenticationConfiguration ({reason}): pass the file \
         `koidc setup --print authentication-config` wrote (apiVersion apiserver.config.k8s.io/v1, kind \
         AuthenticationConfiguration)"
    )]
    NotAuthenticationConfig {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `--merge` file trusts the CI issuer already.
    #[error(
        "the --merge file {path} already has an authenticator for the issuer {issuer}, and kube-apiserver \
         accepts each issuer once: put all repositories (or projects) and refs into one `koidc setup --ci` \
         run (repeat --repository/--project/--ref) and merge its output into the file without that authenticator"
    )]
    DuplicateIssuer {
        /// The file.
        path: String,
        /// The issuer.
        issuer: String,
    },
    /// `--token-source` that does not fit the printed job.
    #[error(
        "invalid --token-source {0:?} for the job's kubeconfig entry: use github-actions, file:/ABSOLUTE/PATH or env:VAR"
    )]
    BadTokenSource(String),
    /// `--print apiserver-flags` with `--ci`.
    #[error(
        "--ci needs the AuthenticationConfiguration file: the legacy --oidc-* flags trust one issuer and no CEL \
         rules; use --print authentication-config"
    )]
    NoFlags,
}

/// What the admin asked for, as given on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CiChoices {
    /// `--ci`.
    pub provider: Option<CiProviderArg>,
    /// `--ci-issuer`.
    pub ci_issuer: Option<String>,
    /// `--issuer` (people's flag; the CI issuer for gitlab and jwt).
    pub issuer: Option<String>,
    /// `--audience`.
    pub audience: Option<String>,
    /// `--repository`.
    pub repositories: Vec<String>,
    /// `--project`.
    pub projects: Vec<String>,
    /// `--ref`.
    pub refs: Vec<String>,
    /// `--environment`.
    pub environments: Vec<String>,
    /// `--username-prefix`, when not people's default.
    pub username_prefix: Option<String>,
    /// `--groups-prefix`, when not people's default.
    pub groups_prefix: Option<String>,
}

/// The CI system whose jobs are trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CiProvider {
    /// GitHub Actions.
    GithubActions,
    /// GitLab CI.
    Gitlab,
    /// Any other JWT issuer.
    Jwt,
}

impl From<CiProviderArg> for CiProvider {
    fn from(arg: CiProviderArg) -> Self {
        match arg {
            CiProviderArg::GithubActions => Self::GithubActions,
            CiProviderArg::Gitlab => Self::Gitlab,
            CiProviderArg::Jwt => Self::Jwt,
        }
    }
}

impl CiProvider {
    /// As `--ci` spells it.
    pub fn flag_value(self) -> &'static str {
        match self {
            Self::GithubActions => "github-actions",
            Self::Gitlab => "gitlab",
            Self::Jwt => "jwt",
        }
    }

    /// The default prefix of the jobs' usernames and groups.
    pub fn default_prefix(self) -> &'static str {
        match self {
            Self::GithubActions => "github-actions:",
            Self::Gitlab => "gitlab:",
            Self::Jwt => "jwt:",
        }
    }

    /// The claim naming the repository or project, when the provider has one.
    fn scope_claim(self) -> Option<&'static str> {
        match self {
            Self::GithubActions => Some("repository"),
            Self::Gitlab => Some("project_path"),
            Self::Jwt => None,
        }
    }

    /// The word for a repository or project in messages.
    fn scope_word(self) -> &'static str {
        match self {
            Self::Gitlab => "project",
            _ => "repository",
        }
    }
}

/// Validated choices: everything the rendered parts are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiTrust {
    /// The CI system.
    pub provider: CiProvider,
    /// The issuer URL, byte for byte as in the tokens.
    pub issuer: String,
    /// The audience the tokens must carry.
    pub audience: String,
    /// Repositories (GitHub) or projects (GitLab) admitted; empty for `jwt`.
    pub scopes: Vec<String>,
    /// Refs admitted; empty: any.
    pub refs: Vec<String>,
    /// Environments admitted; empty: any (or none).
    pub environments: Vec<String>,
    /// Prefix of the jobs' usernames.
    pub username_prefix: String,
    /// Prefix of the jobs' groups.
    pub groups_prefix: String,
}

impl CiTrust {
    /// Validates `choices` (every value that reaches CEL, YAML comments or a printed command).
    pub fn new(choices: &CiChoices) -> Result<Self, CiError> {
        let provider: CiProvider = choices
            .provider
            .map(CiProvider::from)
            .unwrap_or(CiProvider::GithubActions);
        let name = provider.flag_value();
        let audience = choices.audience.clone().ok_or(CiError::NoAudience)?;
        if audience.is_empty()
            || audience.len() > MAX_VALUE
            || audience.trim() != audience
            || audience.chars().any(|c| c.is_control() || is_invisible(c))
        {
            return Err(CiError::BadAudience(audience));
        }
        let issuer = match provider {
            CiProvider::GithubActions => {
                if let Some(issuer) = &choices.issuer {
                    return Err(CiError::IssuerWithGithub(issuer.clone()));
                }
                choices
                    .ci_issuer
                    .clone()
                    .unwrap_or_else(|| GITHUB_ACTIONS_ISSUER.to_owned())
            }
            CiProvider::Gitlab | CiProvider::Jwt => choices
                .ci_issuer
                .clone()
                .or_else(|| choices.issuer.clone())
                .ok_or(CiError::NoIssuer {
                    provider: name,
                    example: if provider == CiProvider::Gitlab {
                        "https://gitlab.com, or your instance's URL"
                    } else {
                        "the issuer in the jobs' tokens, e.g. a cluster's --service-account-issuer"
                    },
                })?,
        };
        validate_issuer(&issuer)?;

        let not_for = |flag, hint| CiError::NotFor {
            flag,
            provider: name,
            hint,
        };
        let scopes = match provider {
            CiProvider::GithubActions | CiProvider::Gitlab => {
                type Check = fn(&str) -> Result<(), String>;
                let (given, flag, check, other, other_given, hint): (_, _, Check, _, _, _) =
                    if provider == CiProvider::Gitlab {
                        let hint = "name GitLab projects with --project GROUP/PROJECT";
                        (
                            &choices.projects,
                            "--project",
                            validate_project,
                            "--repository",
                            &choices.repositories,
                            hint,
                        )
                    } else {
                        let hint = "name GitHub repositories with --repository OWNER/REPO";
                        (
                            &choices.repositories,
                            "--repository",
                            validate_repository,
                            "--project",
                            &choices.projects,
                            hint,
                        )
                    };
                if !other_given.is_empty() {
                    return Err(not_for(other, hint));
                }
                validated(given, flag, check)?
            }
            CiProvider::Jwt => {
                for (flag, given) in [
                    ("--repository", &choices.repositories),
                    ("--project", &choices.projects),
                    ("--ref", &choices.refs),
                    ("--environment", &choices.environments),
                ] {
                    if !given.is_empty() {
                        return Err(not_for(
                            flag,
                            "a generic issuer's tokens are pinned by --issuer and --audience; use --ci github-actions or gitlab for repository rules",
                        ));
                    }
                }
                Vec::new()
            }
        };
        if provider != CiProvider::Jwt && scopes.is_empty() {
            let (flag, example) = if provider == CiProvider::Gitlab {
                ("--project", "GROUP/PROJECT")
            } else {
                ("--repository", "OWNER/REPO")
            };
            return Err(CiError::Unpinned {
                provider: name,
                flag,
                issuer,
                example,
            });
        }
        let refs = match provider {
            CiProvider::GithubActions => validated(&choices.refs, "--ref", validate_github_ref)?,
            CiProvider::Gitlab => validated(&choices.refs, "--ref", validate_gitlab_ref)?,
            CiProvider::Jwt => Vec::new(),
        };
        let environments = validated(&choices.environments, "--environment", validate_environment)?;
        let prefix = |which, given: &Option<String>| -> Result<String, CiError> {
            let prefix = given
                .clone()
                .unwrap_or_else(|| provider.default_prefix().to_owned());
            if prefix.is_empty()
                || !prefix.ends_with(':')
                || prefix.starts_with("oidc:")
                || prefix.starts_with("system:")
                || prefix.chars().any(is_invisible)
                || prefix.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(CiError::BadPrefix { which, prefix });
            }
            Ok(prefix)
        };
        Ok(Self {
            provider,
            username_prefix: prefix("username", &choices.username_prefix)?,
            groups_prefix: prefix("groups", &choices.groups_prefix)?,
            issuer,
            audience,
            scopes,
            refs,
            environments,
        })
    }

    /// The `claimValidationRules`: one rule per pinned claim (the rules must all hold), several
    /// values of a claim combined with `in`.
    pub fn claim_validation_rules(&self) -> Vec<Value> {
        let mut rules = Vec::new();
        if let Some(claim) = self.provider.scope_claim() {
            rules.push(rule(
                claim,
                &self.scopes,
                false,
                &format!(
                    "the job's {} is not {}",
                    self.provider.scope_word(),
                    or_list(&self.scopes)
                ),
            ));
        }
        if !self.refs.is_empty() {
            rules.push(rule(
                "ref",
                &self.refs,
                false,
                &format!("the job's ref is not {}", or_list(&self.refs)),
            ));
            // GitLab's `ref` is a bare name: a tag may be named like the branch (and tags are
            // often not protected). `--ref` names branches.
            if self.provider == CiProvider::Gitlab {
                rules.push(rule(
                    "ref_type",
                    &["branch".to_owned()],
                    false,
                    "the job does not run on a branch",
                ));
            }
        }
        if !self.environments.is_empty() {
            rules.push(rule(
                "environment",
                &self.environments,
                true,
                &format!(
                    "the job does not run in the environment {}",
                    or_list(&self.environments)
                ),
            ));
        }
        rules
    }

    /// The CEL expression of the username: the CI prefix and the token's `sub` (for `jwt`, the
    /// issuer too, so that two generic issuers never share a username).
    pub fn username_expression(&self) -> String {
        match self.provider {
            CiProvider::Jwt => format!(
                "{} + claims.iss + '#' + claims.sub",
                cel_string(&self.username_prefix)
            ),
            _ => format!("{} + claims.sub", cel_string(&self.username_prefix)),
        }
    }

    /// The CEL expression of the groups: the CI prefix and the repository or project (for
    /// `jwt`, the issuer).
    pub fn groups_expression(&self) -> String {
        let claim = self.provider.scope_claim().unwrap_or("iss");
        format!("[{} + claims.{claim}]", cel_string(&self.groups_prefix))
    }

    /// The group names the apiserver derives for the admitted jobs, one per repository or
    /// project (for `jwt`, the one of the issuer).
    pub fn groups(&self) -> Vec<String> {
        if self.scopes.is_empty() {
            vec![format!("{}{}", self.groups_prefix, self.issuer)]
        } else {
            self.scopes
                .iter()
                .map(|s| format!("{}{s}", self.groups_prefix))
                .collect()
        }
    }

    /// The username of a job, as the apiserver derives it, for a token with the subject `sub`.
    pub fn username_for(&self, sub: &str) -> String {
        match self.provider {
            CiProvider::Jwt => format!("{}{}#{sub}", self.username_prefix, self.issuer),
            _ => format!("{}{sub}", self.username_prefix),
        }
    }

    /// A job's username as an example (the first repository or project, on its first ref).
    pub fn example_username(&self) -> String {
        let scope = self.scopes.first().map(String::as_str).unwrap_or("OWNER/REPO");
        match self.provider {
            CiProvider::GithubActions => {
                let reference = self.refs.first().map(String::as_str).unwrap_or("refs/heads/main");
                match self.environments.first() {
                    Some(env) => self.username_for(&format!("repo:{scope}:environment:{env}")),
                    None => self.username_for(&format!("repo:{scope}:ref:{reference}")),
                }
            }
            CiProvider::Gitlab => {
                let reference = self.refs.first().map(String::as_str).unwrap_or("main");
                self.username_for(&format!("project_path:{scope}:ref_type:branch:ref:{reference}"))
            }
            CiProvider::Jwt => self.username_for("<sub>"),
        }
    }

    /// The `jwt` authenticator (`ca_pem`: the CI issuer's CA, when not publicly trusted).
    pub fn authenticator(&self, ca_pem: Option<&str>) -> Value {
        let mut issuer = json!({ "url": self.issuer, "audiences": [self.audience] });
        if let Some(pem) = ca_pem {
            issuer["certificateAuthority"] = json!(pem);
        }
        let mut authenticator = json!({
            "issuer": issuer,
            "claimMappings": {
                "username": { "expression": self.username_expression() },
                "groups": { "expression": self.groups_expression() },
            },
            "userValidationRules": [
                {
                    "expression": format!("user.username.startsWith({})", cel_string(&self.username_prefix)),
                    "message": format!("CI usernames start with {}", self.username_prefix),
                },
                {
                    "expression": "user.groups.all(g, !g.startsWith('system:'))",
                    "message": "CI jobs cannot be in Kubernetes' system: groups",
                },
            ],
        });
        let rules = self.claim_validation_rules();
        if !rules.is_empty() {
            authenticator["claimValidationRules"] = Value::Array(rules);
        }
        authenticator
    }

    /// One line on what the authenticator admits (several repositories and refs share it).
    pub fn summary(&self) -> String {
        let mut text = format!(
            "one jwt authenticator for the issuer {} admits tokens for the audience {}",
            self.issuer, self.audience
        );
        let word = self.provider.scope_word();
        let many = if word == "repository" {
            "repositories"
        } else {
            "projects"
        };
        for (values, before, one, many) in [
            (&self.scopes, "from", word, many),
            (&self.refs, "on", "ref", "refs"),
            (&self.environments, "in", "environment", "environments"),
        ] {
            if !values.is_empty() {
                let noun = if values.len() == 1 { one } else { many };
                text.push_str(&format!(" {before} the {noun} {}", values.join(", ")));
            }
        }
        if self.scopes.len() > 1 || self.refs.len() > 1 || self.environments.len() > 1 {
            text.push_str(
                " (the apiserver wants each issuer once, so they share this authenticator, combined in CEL",
            );
            let lists = [&self.scopes, &self.refs, &self.environments]
                .iter()
                .filter(|l| l.len() > 1)
                .count();
            if lists > 1 {
                text.push_str(": every combination of them gets in");
            }
            text.push(')');
        }
        text
    }

    /// Known risks of these choices, one line each.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.provider != CiProvider::Jwt && self.refs.is_empty() && self.environments.is_empty() {
            out.push(format!(
                "no --ref or --environment: jobs of every branch, tag and pull request of {} get in; pin the deploying ref, e.g. --ref {}",
                self.scopes.join(", "),
                if self.provider == CiProvider::Gitlab {
                    "main"
                } else {
                    "refs/heads/main"
                }
            ));
        }
        if self.provider == CiProvider::Jwt {
            out.push(format!(
                "--ci jwt pins only the issuer and the audience: every token {} issues for {} gets in, so give that \
                 audience only to the workloads that may reach the cluster",
                self.issuer, self.audience
            ));
        }
        if self.provider == CiProvider::GithubActions
            && self.issuer != GITHUB_ACTIONS_ISSUER
            && self.groups_prefix == self.provider.default_prefix()
        {
            out.push(format!(
                "the issuer {} maps jobs to the same names as github.com ({}OWNER/REPO): if the cluster trusts \
                 both, pass --username-prefix and --groups-prefix (e.g. github-actions-ghe:)",
                self.issuer, self.groups_prefix
            ));
        }
        out
    }

    /// The `koidc bind-group` commands that give the jobs' groups `role` in `namespace`, the full
    /// group name with `--group-prefix ''` (so bind-group adds no people's prefix).
    pub fn bind_group_commands(&self, role: &str, namespace: &str) -> Vec<String> {
        self.groups()
            .iter()
            .map(|g| {
                format!(
                    "koidc bind-group {} {role} -n {namespace} --group-prefix ''",
                    super::shell_word(g)
                )
            })
            .collect()
    }

    /// The token source the job's kubeconfig entry names, unless `--token-source` says another.
    pub fn default_token_source(&self) -> String {
        match self.provider {
            CiProvider::GithubActions => "github-actions".to_owned(),
            CiProvider::Gitlab => format!("env:{GITLAB_TOKEN_VAR}"),
            CiProvider::Jwt => format!("file:{PROJECTED_TOKEN_DIR}/{PROJECTED_TOKEN_FILE}"),
        }
    }

    /// The `get-token` arguments of the job's kubeconfig entry: `--grant workload`, the token
    /// source and the audience, then `ca` (from [`super::ca_args`]).
    pub fn get_token_args(
        &self,
        token_source: Option<&str>,
        ca: Vec<String>,
    ) -> Result<Vec<String>, CiError> {
        let source = match token_source {
            Some(raw) => {
                let ok = raw == "github-actions"
                    || raw.strip_prefix("file:").is_some_and(|p| p.starts_with('/'))
                    || raw.strip_prefix("env:").is_some_and(|v| {
                        !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    });
                if !ok || raw.chars().any(char::is_control) {
                    return Err(CiError::BadTokenSource(raw.to_owned()));
                }
                raw.to_owned()
            }
            None => self.default_token_source(),
        };
        let mut args = options::get_token_argv(&GetTokenArgs {
            identity: IdentityFlags {
                audience: Some(self.audience.clone()),
                token_source: Some(source),
                ..IdentityFlags::default()
            },
            login: LoginFlags {
                grant: Some(GrantArg::Workload),
                ..LoginFlags::default()
            },
            ..GetTokenArgs::default()
        });
        args.extend(ca);
        Ok(args)
    }

    /// The job's kubeconfig `users[]` item: like people's, but never interactive.
    pub fn kubeconfig_user(&self, user: &ExecUser) -> NamedUser {
        let mut named = super::kubeconfig_user(user);
        if let Some(exec) = named.user.as_mut().and_then(|u| u.exec.as_mut()) {
            exec.interactive_mode = Some("Never".into());
        }
        named
    }

    /// The job's side as YAML for the CI system's file: the permission (GitHub), the
    /// `id_tokens` block (GitLab) or the projected token volume (a Kubernetes pod), and the
    /// commands that make kubectl use `user`.
    pub fn job_snippet(&self, user: &ExecUser, token_source: &str) -> Result<String, super::SetupError> {
        let set_credentials = set_credentials_command(user);
        // No placeholder in the shell commands (`<` would be a redirection): the apiserver's
        // address and its CA certificate (public, PEM) are variables of the CI system.
        let commands = [
            format!("printf '%s\\n' \"${CA_VAR}\" > {JOB_CA_FILE}"),
            format!(
                "kubectl config set-cluster {JOB_CLUSTER} --server=\"${SERVER_VAR}\" \
                 --certificate-authority={JOB_CA_FILE} --embed-certs"
            ),
            set_credentials,
            format!(
                "kubectl config set-context {0} --cluster={JOB_CLUSTER} --user={0} && kubectl config use-context {0}",
                super::shell_word(&user.name)
            ),
        ];
        let mut server = serde_json::Map::new();
        server.insert(SERVER_VAR.to_owned(), json!("https://<apiserver>:6443"));
        let value = match self.provider {
            CiProvider::GithubActions => json!({
                "permissions": { "id-token": "write", "contents": "read" },
                "steps": [{
                    "name": "Deploy",
                    "env": {
                        SERVER_VAR: "https://<apiserver>:6443",
                        CA_VAR: "${{ vars.KUBE_CA }}",
                    },
                    "run": format!("{}\nkubectl apply -f deploy/\n", commands.join("\n")),
                }],
            }),
            CiProvider::Gitlab => {
                let var = token_source
                    .strip_prefix("env:")
                    .unwrap_or(GITLAB_TOKEN_VAR)
                    .to_owned();
                let mut tokens = serde_json::Map::new();
                tokens.insert(var, json!({ "aud": self.audience }));
                // One literal block, as the GitHub step's `run`.
                let script = format!("{}\nkubectl apply -f deploy/\n", commands.join("\n"));
                json!({ "deploy": { "id_tokens": tokens, "variables": server, "script": [script] } })
            }
            CiProvider::Jwt => json!({
                "volumes": [{
                    "name": "koidc-token",
                    "projected": { "sources": [{ "serviceAccountToken": {
                        "path": PROJECTED_TOKEN_FILE,
                        "audience": self.audience,
                        "expirationSeconds": 3600,
                    }}]},
                }],
                "containers": [{
                    "name": "deploy",
                    "volumeMounts": [{ "name": "koidc-token", "mountPath": PROJECTED_TOKEN_DIR, "readOnly": true }],
                }],
            }),
        };
        super::yaml(&value)
    }
}

/// The `kubectl config set-credentials` command that writes `user`'s exec entry in a job.
fn set_credentials_command(user: &ExecUser) -> String {
    let mut words = vec![
        "kubectl".to_owned(),
        "config".into(),
        "set-credentials".into(),
        super::shell_word(&user.name),
        "--exec-api-version=client.authentication.k8s.io/v1".into(),
        "--exec-interactive-mode=Never".into(),
        format!("--exec-command={}", super::shell_word(&user.command)),
    ];
    words.extend(
        user.args
            .iter()
            .map(|a| super::shell_word(&format!("--exec-arg={a}"))),
    );
    words.join(" ")
}

/// A complete `AuthenticationConfiguration` with `authenticator` as its only `jwt` entry.
pub fn authentication_configuration(authenticator: Value) -> Value {
    json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AuthenticationConfiguration",
        "jwt": [authenticator],
    })
}

/// The AuthenticationConfiguration `text` (read from `path`) with `authenticator` appended to
/// its `jwt` list; everything else in it is kept. A second authenticator for the same issuer
/// URL is refused (kube-apiserver requires them unique).
pub fn merge(path: &str, text: &str, authenticator: Value) -> Result<Value, CiError> {
    let not = |reason: String| CiError::NotAuthenticationConfig {
        path: path.to_owned(),
        reason,
    };
    let mut config: Value = serde_saphyr::from_str(text).map_err(|e| {
        not(format!(
            "not YAML: {}",
            e.to_string().lines().next().unwrap_or_default()
        ))
    })?;
    let Some(map) = config.as_object_mut() else {
        return Err(not("not a mapping".into()));
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind != "AuthenticationConfiguration" {
        return Err(not(format!("kind {kind:?}")));
    }
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    if !api_version.starts_with("apiserver.config.k8s.io/") {
        return Err(not(format!("apiVersion {api_version:?}")));
    }
    let jwt = map.entry("jwt").or_insert_with(|| Value::Array(Vec::new()));
    if jwt.is_null() {
        *jwt = Value::Array(Vec::new());
    }
    let Some(list) = jwt.as_array_mut() else {
        return Err(not("its jwt is not a list".into()));
    };
    let url = &authenticator["issuer"]["url"];
    if list.iter().any(|a| &a["issuer"]["url"] == url) {
        return Err(CiError::DuplicateIssuer {
            path: path.to_owned(),
            issuer: url.as_str().unwrap_or_default().to_owned(),
        });
    }
    list.push(authenticator);
    Ok(config)
}

/// The issuers of the `jwt` authenticators in `config` whose groups could be named like the
/// CI groups (`prefix`): a `claim` mapping whose prefix is empty or a start of `prefix`.
pub fn colliding_group_issuers(config: &Value, prefix: &str) -> Vec<String> {
    config["jwt"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| {
            let groups = &a["claimMappings"]["groups"];
            groups.get("claim").is_some() && groups["prefix"].as_str().is_none_or(|p| prefix.starts_with(p))
        })
        .filter_map(|a| a["issuer"]["url"].as_str().map(str::to_owned))
        .collect()
}

/// `s` as a CEL string literal that means exactly `s`: single-quoted, with backslashes, both
/// quotes, control characters and invisible direction marks escaped.
pub fn cel_string(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_invisible(c) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Characters that change how text around them is displayed (bidirectional overrides, zero-width
/// marks), which would make an expression read differently from what it means, and the line and
/// paragraph separators a YAML 1.1 reader (kube-apiserver's) takes for line breaks.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
    )
}

/// A rule that the claim is one of `values` (`optional`: the claim may be missing from tokens,
/// which then fail the rule instead of making it an error).
fn rule(claim: &str, values: &[String], optional: bool, message: &str) -> Value {
    let test = match values {
        [one] => format!("claims.{claim} == {}", cel_string(one)),
        many => format!(
            "claims.{claim} in [{}]",
            many.iter().map(|v| cel_string(v)).collect::<Vec<_>>().join(", ")
        ),
    };
    let expression = if optional {
        format!("has(claims.{claim}) && {test}")
    } else {
        test
    };
    json!({ "expression": expression, "message": message })
}

/// `a`, `a or b`, `a, b or c`.
fn or_list(values: &[String]) -> String {
    match values {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// `values`, each checked by `check` (which says what the flag takes), duplicates dropped.
fn validated(
    values: &[String],
    flag: &'static str,
    check: fn(&str) -> Result<(), String>,
) -> Result<Vec<String>, CiError> {
    let mut out: Vec<String> = Vec::new();
    for value in values {
        check(value).map_err(|what| CiError::Invalid {
            flag,
            value: value.clone(),
            what,
        })?;
        if !out.contains(value) {
            out.push(value.clone());
        }
    }
    Ok(out)
}

fn validate_issuer(issuer: &str) -> Result<(), CiError> {
    let bad = || CiError::BadIssuer(issuer.to_owned());
    if issuer.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad());
    }
    let url = url::Url::parse(issuer).map_err(|_| bad())?;
    if url.scheme() != "https"
        || url.host().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(bad());
    }
    Ok(())
}

/// A name segment of GitHub or GitLab: letters, digits, `-`, `_`, `.`.
fn is_name(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn validate_repository(value: &str) -> Result<(), String> {
    let what =
        || "expected OWNER/REPO as GitHub names it (letters, digits, -, _ and .), e.g. acme/app".to_owned();
    let Some((owner, repo)) = value.split_once('/') else {
        return Err(what());
    };
    let owner_ok = is_name(owner) && !owner.contains('.') && !owner.starts_with('-') && owner.len() <= 39;
    let repo_ok = is_name(repo) && repo != "." && repo != ".." && repo.len() <= 100;
    if owner_ok && repo_ok { Ok(()) } else { Err(what()) }
}

fn validate_project(value: &str) -> Result<(), String> {
    let segments: Vec<&str> = value.split('/').collect();
    let ok = segments.len() >= 2
        && value.len() <= MAX_VALUE
        && segments.iter().all(|s| {
            is_name(s) && !s.starts_with(['-', '.']) && !s.ends_with(".git") && !s.ends_with(".atom")
        });
    if ok {
        Ok(())
    } else {
        Err(
            "expected the project's full path as GitLab names it, GROUP/PROJECT or GROUP/SUBGROUP/PROJECT \
             (letters, digits, -, _ and .), e.g. acme/app"
                .into(),
        )
    }
}

/// git's rules for a ref name (`git check-ref-format`), plus a length limit.
fn is_git_ref_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_VALUE
        && name != "@"
        && !name.contains("..")
        && !name.contains("@{")
        && !name.contains("//")
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.ends_with('.')
        && !name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || is_invisible(c) || "~^:?*[\\".contains(c))
        && name
            .split('/')
            .all(|part| !part.starts_with('.') && !part.ends_with(".lock"))
}

fn validate_github_ref(value: &str) -> Result<(), String> {
    let name = value
        .strip_prefix("refs/heads/")
        .or_else(|| value.strip_prefix("refs/tags/"));
    match name {
        Some(name) if is_git_ref_name(name) => Ok(()),
        Some(_) => Err("not a valid git branch or tag name".into()),
        None => Err(format!(
            "GitHub's ref claim is the full ref: --ref refs/heads/{0} for a branch, refs/tags/{0} for a tag",
            if is_git_ref_name(value) { value } else { "main" }
        )),
    }
}

fn validate_gitlab_ref(value: &str) -> Result<(), String> {
    if let Some(name) = value
        .strip_prefix("refs/heads/")
        .or_else(|| value.strip_prefix("refs/tags/"))
    {
        return Err(format!(
            "GitLab's ref claim is the bare branch or tag name: --ref {}",
            if is_git_ref_name(name) { name } else { "main" }
        ));
    }
    if is_git_ref_name(value) {
        Ok(())
    } else {
        Err("not a valid git branch or tag name, e.g. main".into())
    }
}

fn validate_environment(value: &str) -> Result<(), String> {
    if value.is_empty()
        || value.len() > MAX_VALUE
        || value.trim() != value
        || value.chars().any(|c| c.is_control() || is_invisible(c))
    {
        Err("expected the environment's name as the CI system shows it (no control characters, at most 255 bytes), e.g. production".into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github(repositories: &[&str], refs: &[&str]) -> CiChoices {
        CiChoices {
            provider: Some(CiProviderArg::GithubActions),
            audience: Some("https://k8s.example.com".into()),
            repositories: repositories.iter().map(|s| (*s).to_owned()).collect(),
            refs: refs.iter().map(|s| (*s).to_owned()).collect(),
            ..CiChoices::default()
        }
    }

    fn gitlab(projects: &[&str], refs: &[&str]) -> CiChoices {
        CiChoices {
            provider: Some(CiProviderArg::Gitlab),
            issuer: Some("https://gitlab.example.com".into()),
            audience: Some("kubernetes".into()),
            projects: projects.iter().map(|s| (*s).to_owned()).collect(),
            refs: refs.iter().map(|s| (*s).to_owned()).collect(),
            ..CiChoices::default()
        }
    }

    /// The rendered AuthenticationConfiguration, read back as the apiserver would read it.
    fn rendered(trust: &CiTrust, ca: Option<&str>) -> Value {
        let text = super::super::yaml(&authentication_configuration(trust.authenticator(ca))).unwrap();
        serde_saphyr::from_str(&text).unwrap()
    }

    /// Checks the username and groups expressions of the authenticator `a`.
    fn assert_mappings(a: &Value, username: &str, groups: &str) {
        let mappings = &a["claimMappings"];
        assert_eq!(
            [
                &mappings["username"]["expression"],
                &mappings["groups"]["expression"]
            ],
            [username, groups],
            "{a}"
        );
    }

    fn expressions(list: &Value) -> Vec<&str> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|r| r["expression"].as_str().unwrap())
            .collect()
    }

    /// Reads one CEL string literal (single- or double-quoted, as CEL's lexer does) from the
    /// start of `text`: its value and what follows it. `None` when it is not a whole literal.
    fn read_cel_literal(text: &str) -> Option<(String, &str)> {
        let mut chars = text.char_indices();
        let (_, quote) = chars.next()?;
        if quote != '\'' && quote != '"' {
            return None;
        }
        let mut value = String::new();
        while let Some((i, c)) = chars.next() {
            match c {
                c if c == quote => return Some((value, &text[i + 1..])),
                '\n' | '\r' => return None,
                '\\' => {
                    let (_, e) = chars.next()?;
                    let hex = |n: usize, chars: &mut std::str::CharIndices<'_>| -> Option<char> {
                        let digits: String = (0..n).filter_map(|_| chars.next().map(|(_, c)| c)).collect();
                        char::from_u32(u32::from_str_radix(&digits, 16).ok()?)
                    };
                    value.push(match e {
                        '\\' | '\'' | '"' | '`' | '?' => e,
                        'n' => '\n',
                        'r' => '\r',
                        't' => '\t',
                        'a' => '\u{7}',
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        'v' => '\u{b}',
                        'u' => hex(4, &mut chars)?,
                        'U' => hex(8, &mut chars)?,
                        'x' | 'X' => hex(2, &mut chars)?,
                        _ => return None,
                    });
                }
                c => value.push(c),
            }
        }
        None
    }

    const HOSTILE: [&str; 9] = [
        "acme/app' || true || 'x",
        "acme/app\\' || true || '",
        "a\\",
        "'",
        "\"",
        "line\nclaims.ref == 'x'",
        "tab\there\r\u{0}\u{1b}[31m",
        "\u{202e}ppa/emca\u{2066}",
        "ünïcødé/ok",
    ];

    #[test]
    fn a_cel_string_literal_means_exactly_the_value_whatever_it_contains() {
        for value in HOSTILE {
            let literal = cel_string(value);
            let (read, rest) =
                read_cel_literal(&literal).unwrap_or_else(|| panic!("not a literal: {literal}"));
            assert_eq!(read, value, "{literal}");
            assert!(rest.is_empty(), "{literal} ends before its end: {rest:?}");
            assert!(
                !literal.chars().any(|c| c.is_control() || is_invisible(c)),
                "{literal:?}"
            );
        }
        assert_eq!(cel_string("acme/app"), "'acme/app'");
        assert_eq!(cel_string("it's"), r"'it\'s'");
    }

    #[test]
    fn github_actions_pins_the_repository_and_ref_and_maps_jobs_to_names_people_cannot_have() {
        let trust = CiTrust::new(&github(&["acme/app"], &["refs/heads/main"])).unwrap();
        let config = rendered(&trust, None);
        assert_eq!(config["apiVersion"], "apiserver.config.k8s.io/v1");
        assert_eq!(config["kind"], "AuthenticationConfiguration");
        let jwt = config["jwt"].as_array().unwrap();
        assert_eq!(jwt.len(), 1);
        let a = &jwt[0];
        assert_eq!(a["issuer"]["url"], GITHUB_ACTIONS_ISSUER);
        assert_eq!(a["issuer"]["audiences"], json!(["https://k8s.example.com"]));
        assert!(a["issuer"].get("certificateAuthority").is_none());
        assert_eq!(
            expressions(&a["claimValidationRules"]),
            [
                "claims.repository == 'acme/app'",
                "claims.ref == 'refs/heads/main'"
            ]
        );
        assert_mappings(
            a,
            "'github-actions:' + claims.sub",
            "['github-actions:' + claims.repository]",
        );
        assert_eq!(
            expressions(&a["userValidationRules"]),
            [
                "user.username.startsWith('github-actions:')",
                "user.groups.all(g, !g.startsWith('system:'))"
            ]
        );
        assert_eq!(trust.groups(), ["github-actions:acme/app"]);
        assert_eq!(
            trust.example_username(),
            "github-actions:repo:acme/app:ref:refs/heads/main"
        );
        assert!(trust.warnings().is_empty(), "{:?}", trust.warnings());
    }

    #[test]
    fn the_ci_issuer_and_its_ca_go_into_the_issuer_block() {
        let mut choices = github(&["acme/app"], &[]);
        choices.ci_issuer = Some("https://127.0.0.1:8443".into());
        let trust = CiTrust::new(&choices).unwrap();
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let a = &rendered(&trust, Some(pem))["jwt"][0];
        assert_eq!(a["issuer"]["url"], "https://127.0.0.1:8443");
        assert_eq!(a["issuer"]["certificateAuthority"], pem);
        let warnings = trust.warnings().join("\n");
        assert!(warnings.contains("--ref"), "{warnings}");
        assert!(warnings.contains("--groups-prefix"), "{warnings}");
    }

    #[test]
    fn several_repositories_and_refs_share_one_authenticator_and_the_summary_says_so() {
        let trust = CiTrust::new(&github(
            &["acme/app", "acme/web", "acme/app"],
            &["refs/heads/main", "refs/tags/v1.0.0"],
        ))
        .unwrap();
        let config = rendered(&trust, None);
        assert_eq!(config["jwt"].as_array().unwrap().len(), 1);
        assert_eq!(
            expressions(&config["jwt"][0]["claimValidationRules"]),
            [
                "claims.repository in ['acme/app', 'acme/web']",
                "claims.ref in ['refs/heads/main', 'refs/tags/v1.0.0']"
            ]
        );
        assert_eq!(
            config["jwt"][0]["claimValidationRules"][0]["message"],
            "the job's repository is not acme/app or acme/web"
        );
        assert_eq!(
            trust.groups(),
            ["github-actions:acme/app", "github-actions:acme/web"]
        );
        let summary = trust.summary();
        assert!(summary.contains("repositories acme/app, acme/web"), "{summary}");
        assert!(summary.contains("share this authenticator"), "{summary}");
        assert!(summary.contains("every combination"), "{summary}");
    }

    #[test]
    fn an_environment_is_pinned_only_in_tokens_that_have_one() {
        let mut choices = github(&["acme/app"], &[]);
        choices.environments = vec!["production".into()];
        let trust = CiTrust::new(&choices).unwrap();
        let a = &rendered(&trust, None)["jwt"][0];
        assert_eq!(
            expressions(&a["claimValidationRules"])[1],
            "has(claims.environment) && claims.environment == 'production'"
        );
        assert_eq!(
            trust.example_username(),
            "github-actions:repo:acme/app:environment:production"
        );
        assert!(trust.warnings().is_empty(), "{:?}", trust.warnings());
    }

    #[test]
    fn gitlab_pins_the_project_path_and_the_bare_ref() {
        let trust = CiTrust::new(&gitlab(&["acme/platform/app"], &["main"])).unwrap();
        let a = &rendered(&trust, None)["jwt"][0];
        assert_eq!(a["issuer"]["url"], "https://gitlab.example.com");
        assert_eq!(a["issuer"]["audiences"], json!(["kubernetes"]));
        assert_eq!(
            expressions(&a["claimValidationRules"]),
            [
                "claims.project_path == 'acme/platform/app'",
                "claims.ref == 'main'",
                "claims.ref_type == 'branch'"
            ]
        );
        assert_mappings(a, "'gitlab:' + claims.sub", "['gitlab:' + claims.project_path]");
        assert_eq!(trust.groups(), ["gitlab:acme/platform/app"]);
        assert_eq!(
            trust.example_username(),
            "gitlab:project_path:acme/platform/app:ref_type:branch:ref:main"
        );
        let args = trust.get_token_args(None, Vec::new()).unwrap();
        assert!(
            args.contains(&format!("--token-source=env:{GITLAB_TOKEN_VAR}")),
            "{args:?}"
        );
        let user = ExecUser {
            name: "ci".into(),
            command: "koidc".into(),
            args,
        };
        let snippet: Value =
            serde_saphyr::from_str(&trust.job_snippet(&user, &trust.default_token_source()).unwrap())
                .unwrap();
        assert_eq!(
            snippet["deploy"]["id_tokens"][GITLAB_TOKEN_VAR]["aud"],
            "kubernetes"
        );
    }

    #[test]
    fn a_generic_issuer_is_pinned_by_its_audience_and_named_with_its_url() {
        let choices = CiChoices {
            provider: Some(CiProviderArg::Jwt),
            issuer: Some("https://oidc.cluster-b.example.com".into()),
            audience: Some("cluster-a".into()),
            ..CiChoices::default()
        };
        let trust = CiTrust::new(&choices).unwrap();
        let a = &rendered(&trust, None)["jwt"][0];
        assert!(a.get("claimValidationRules").is_none(), "{a}");
        assert_mappings(
            a,
            "'jwt:' + claims.iss + '#' + claims.sub",
            "['jwt:' + claims.iss]",
        );
        assert_eq!(trust.groups(), ["jwt:https://oidc.cluster-b.example.com"]);
        assert_eq!(
            trust.username_for("system:serviceaccount:ci:deployer"),
            "jwt:https://oidc.cluster-b.example.com#system:serviceaccount:ci:deployer"
        );
        assert!(trust.warnings().join("\n").contains("audience"));
        for flag in ["--repository", "--ref"] {
            let mut wrong = choices.clone();
            if flag == "--ref" {
                wrong.refs = vec!["main".into()];
            } else {
                wrong.repositories = vec!["acme/app".into()];
            }
            let err = CiTrust::new(&wrong).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{flag} does not apply to --ci jwt")),
                "{err}"
            );
        }
    }

    #[test]
    fn values_of_the_wrong_form_are_refused_saying_what_the_flag_takes() {
        let err = |choices: CiChoices| CiTrust::new(&choices).unwrap_err().to_string();
        for repository in [
            "acme",
            "acme/app/extra",
            "/app",
            "acme/",
            "acme/..",
            "-acme/app",
            "acme/app' || true || '",
            "acme/app\\",
            "acme/a\"pp",
            "acme/app\nx",
            "acme/ app",
        ] {
            let e = err(github(&[repository], &[]));
            assert!(e.contains("expected OWNER/REPO"), "{repository:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        let e = err(github(&["acme/app"], &["main"]));
        assert!(e.contains("--ref refs/heads/main"), "{e}");
        for bad in [
            "refs/heads/",
            "refs/heads/a..b",
            "refs/heads/x\\y",
            "refs/heads/a b",
            "refs/heads/.x",
        ] {
            let e = err(github(&["acme/app"], &[bad]));
            assert!(e.starts_with("invalid --ref"), "{bad:?}: {e}");
        }
        let e = err(gitlab(&["acme/app"], &["refs/heads/main"]));
        assert!(e.contains("bare branch or tag name: --ref main"), "{e}");
        for project in ["acme", "acme/app.git", "acme/-app", "acme/app'"] {
            let e = err(gitlab(&[project], &[]));
            assert!(e.contains("GROUP/PROJECT"), "{project:?}: {e}");
        }
        let e = err(github(&[], &[]));
        assert!(e.contains("--ci github-actions needs --repository"), "{e}");
        let e = err(gitlab(&[], &[]));
        assert!(e.contains("--ci gitlab needs --project"), "{e}");
        for audience in [
            "kube\u{2028}kind: X",
            "kube\u{2029}",
            "a\u{202e}b",
            &"k".repeat(300),
        ] {
            let mut choices = github(&["acme/app"], &[]);
            choices.audience = Some(audience.to_owned());
            assert!(err(choices).starts_with("invalid --audience"), "{audience:?}");
        }
        let mut choices = github(&["acme/app"], &[]);
        choices.environments = vec!["prod\u{2028}kind: X".into()];
        assert!(err(choices).contains("--environment"));
        let mut no_audience = github(&["acme/app"], &[]);
        no_audience.audience = None;
        assert!(err(no_audience).starts_with("--ci needs --audience"));
        for issuer in [
            "http://gitlab.example.com",
            "https://gitlab.example.com/?x=1",
            "gitlab.com",
            "https://u@h",
        ] {
            let mut choices = gitlab(&["acme/app"], &[]);
            choices.issuer = Some(issuer.into());
            assert!(err(choices).starts_with("invalid CI issuer"), "{issuer}");
        }
        let mut people = github(&["acme/app"], &[]);
        people.issuer = Some("https://dex.example.com/dex".into());
        assert!(err(people).contains("--ci-issuer https://HOST/_services/token"));
        for prefix in ["", "oidc:", "oidc:ci:", "system:ci:", "ci", "ci\u{2028}:"] {
            let mut choices = github(&["acme/app"], &[]);
            choices.groups_prefix = Some(prefix.into());
            assert!(err(choices).starts_with("--groups-prefix"), "{prefix:?}");
        }
    }

    #[test]
    fn a_quote_git_allows_in_a_ref_or_environment_is_escaped_and_cannot_change_the_rule() {
        let mut choices = github(&["acme/app"], &["refs/heads/it's"]);
        choices.environments = vec!["prod' || true || '".into(), "a\\b".into()];
        let trust = CiTrust::new(&choices).unwrap();
        let a = &rendered(&trust, None)["jwt"][0];
        let rules = expressions(&a["claimValidationRules"]);
        assert_eq!(rules[1], r"claims.ref == 'refs/heads/it\'s'");
        assert_eq!(
            rules[2],
            r"has(claims.environment) && claims.environment in ['prod\' || true || \'', 'a\\b']"
        );
        // Read back literal by literal: exactly the values given, nothing outside the list.
        let list = rules[2]
            .strip_prefix("has(claims.environment) && claims.environment in [")
            .unwrap();
        let (first, rest) = read_cel_literal(list).unwrap();
        let (second, rest) = read_cel_literal(rest.strip_prefix(", ").unwrap()).unwrap();
        assert_eq!([first.as_str(), second.as_str()], ["prod' || true || '", "a\\b"]);
        assert_eq!(rest, "]");
        let e = CiTrust::new(&CiChoices {
            environments: vec!["prod\n".into()],
            ..github(&["acme/app"], &[])
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("invalid --environment"), "{e}");
    }

    fn people() -> String {
        super::super::yaml(&super::super::authentication_configuration(
            &super::super::tests::auth(),
        ))
        .unwrap()
    }

    #[test]
    fn merge_adds_the_ci_authenticator_after_people_s_and_keeps_the_rest() {
        let trust = CiTrust::new(&github(&["acme/app"], &["refs/heads/main"])).unwrap();
        let text = format!("{}anonymous:\n  enabled: false\n", people());
        let merged = merge("authn.yaml", &text, trust.authenticator(None)).unwrap();
        let jwt = merged["jwt"].as_array().unwrap();
        assert_eq!(jwt.len(), 2);
        assert_eq!(jwt[0]["issuer"]["url"], "https://dex.example.com/dex");
        assert_eq!(jwt[1], trust.authenticator(None));
        assert_eq!(merged["anonymous"], json!({"enabled": false}));
        assert_eq!(merged["apiVersion"], "apiserver.config.k8s.io/v1");
        assert!(colliding_group_issuers(&merged, &trust.groups_prefix).is_empty());
        // People's groups without a prefix could be named like the jobs'.
        let bare = people().replace("prefix: \"oidc:\"", "prefix: \"\"");
        let merged = merge("authn.yaml", &bare, trust.authenticator(None)).unwrap();
        assert_eq!(
            colliding_group_issuers(&merged, &trust.groups_prefix),
            ["https://dex.example.com/dex"]
        );
    }

    #[test]
    fn merge_refuses_a_second_authenticator_for_the_same_issuer() {
        let trust = CiTrust::new(&github(&["acme/app"], &[])).unwrap();
        let once =
            super::super::yaml(&merge("a.yaml", &people(), trust.authenticator(None)).unwrap()).unwrap();
        let again = CiTrust::new(&github(&["acme/web"], &[])).unwrap();
        let err = merge("a.yaml", &once, again.authenticator(None))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "already has an authenticator for the issuer https://token.actions.githubusercontent.com"
            ),
            "{err}"
        );
        assert!(err.contains("one `koidc setup --ci` run"), "{err}");
    }

    #[test]
    fn merge_refuses_what_is_not_an_authentication_configuration_in_one_line() {
        let trust = CiTrust::new(&github(&["acme/app"], &[])).unwrap();
        for text in [
            "apiVersion: v1\nkind: Config\nusers: []\n",
            "kind: AuthenticationConfiguration\napiVersion: v1\n",
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt: 5\n",
            "- a\n- b\n",
            "key: [unclosed\n",
            "",
        ] {
            let err = merge("f.yaml", text, trust.authenticator(None))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(
                    "the --merge file f.yaml is not a kube-apiserver AuthenticationConfiguration"
                ),
                "{text:?}: {err}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
        let empty = "apiVersion: apiserver.config.k8s.io/v1beta1\nkind: AuthenticationConfiguration\n";
        let merged = merge("f.yaml", empty, trust.authenticator(None)).unwrap();
        assert_eq!(merged["jwt"].as_array().unwrap().len(), 1);
        assert_eq!(merged["apiVersion"], "apiserver.config.k8s.io/v1beta1");
    }

    #[test]
    fn the_job_entry_runs_get_token_with_the_workload_grant_and_never_prompts() {
        let trust = CiTrust::new(&github(&["acme/app"], &["refs/heads/main"])).unwrap();
        let args = trust.get_token_args(None, Vec::new()).unwrap();
        assert_eq!(
            args,
            [
                "get-token",
                "--audience=https://k8s.example.com",
                "--token-source=github-actions",
                "--grant=workload"
            ]
        );
        // koidc reads these words back as the options they are meant to be.
        use clap::Parser as _;
        let cli =
            crate::cli::Cli::try_parse_from(std::iter::once("koidc".to_owned()).chain(args.clone())).unwrap();
        let crate::cli::Command::GetToken(parsed) = cli.command else {
            panic!("not get-token");
        };
        assert_eq!(parsed.login.grant, Some(GrantArg::Workload));
        assert_eq!(
            parsed.identity.audience.as_deref(),
            Some("https://k8s.example.com")
        );
        let user = trust.kubeconfig_user(&ExecUser {
            name: CI_USER.into(),
            command: "koidc".into(),
            args,
        });
        let exec = user.user.unwrap().exec.unwrap();
        assert_eq!(exec.interactive_mode.as_deref(), Some("Never"));
        for bad in ["file:relative/token", "env:", "env:A-B", "gitlab", "env:X\n"] {
            assert!(trust.get_token_args(Some(bad), Vec::new()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_bind_group_commands_name_the_group_the_apiserver_derives_with_no_prefix_added() {
        let trust = CiTrust::new(&github(&["acme/app", "acme/web"], &[])).unwrap();
        assert_eq!(
            trust.bind_group_commands("edit", "apps"),
            [
                "koidc bind-group github-actions:acme/app edit -n apps --group-prefix ''",
                "koidc bind-group github-actions:acme/web edit -n apps --group-prefix ''",
            ]
        );
        // The group expression is the prefix literal and the claim the groups() list uses.
        assert_eq!(
            trust.groups_expression(),
            format!("[{} + claims.repository]", cel_string(&trust.groups_prefix))
        );
    }
}
