//! `koidc setup`: check an issuer and print what the cluster side needs.
//!
//! The checks run first (discovery and signing keys; with `--login`, a real token's claims), so a
//! broken issuer is reported before any configuration is printed. The printed parts come from
//! [`crate::cluster::setup`], built from one set of choices so the apiserver, the kubeconfig and
//! `koidc bind-group` agree on claims and prefixes. `--write-kubeconfig` holds client-go's
//! `<kubeconfig>.lock` while it rewrites the file, as `kubectl config` does, and then prints the
//! kubectl commands that add what the file still lacks (a cluster, a context using the user).
//! `--embed-ca` puts the IdP's CA into the entry as `--certificate-authority-data`. A client
//! secret is never written: setup says how to add it to the entry's `exec.env`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::cli::{SetupArgs, SetupPart};
use crate::clock::Clock;
use crate::cluster::rbac;
use crate::cluster::setup::{self, ClusterAuth, ExecUser};
use crate::config::{Identity, LoginConfig};
use crate::login::oidc::Provider;
use crate::login::token::IdTokenInfo;
use crate::printer::Printer;

/// Runs `koidc setup`.
pub fn run(args: &SetupArgs, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    if args.audit_policy {
        // Independent of the issuer: nothing to check, nothing to save.
        Printer::new(args.output.verbose).result(&setup::audit_policy())?;
        return Ok(());
    }
    if args.identity.provider == crate::cli::ProviderArg::Github {
        return super::github::setup(args, clock);
    }
    let printer = Printer::new(args.output.verbose);
    let identity = Identity::from_flags(&args.identity)?;
    let login = LoginConfig::from_flags(&args.login, super::env_browser())?;
    let ca_pem = read_cas(&login)?;
    let entry_ca = entry_ca_args(args, &login, ca_pem.as_deref())?;
    let auth = ClusterAuth {
        issuer: identity.issuer.clone(),
        client_id: identity.client_id.clone(),
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
        printer.info(format_args!(
            "logged in; the token's {} claim is {:?} and its groups are [{}]",
            auth.username_claim,
            obtained
                .info
                .str_claim(&auth.username_claim)
                .unwrap_or("(missing)"),
            obtained.info.groups().join(", ")
        ));
        Some(obtained.info)
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

    // With a profile the entry names only the profile: the options live in the config file
    // (and the profile is part of the cache key, so the entry must name it).
    let exec_args = match &identity.profile {
        Some(profile) => {
            printer.info(format_args!(
                "the kubeconfig entry runs `{} get-token --profile {profile}`: whoever uses it needs that profile in their koidc config file",
                args.exec_command
            ));
            let mut exec_args = vec!["get-token".to_owned(), format!("--profile={profile}")];
            if args.embed_ca {
                exec_args.extend(entry_ca);
            }
            exec_args
        }
        None => {
            let mut exec_args = setup::get_token_args(
                &identity.issuer,
                &identity.client_id,
                &identity.scopes,
                entry_ca,
                &args.login.listen,
            );
            // An explicit provider (e.g. Okta behind a custom domain) cannot be guessed from the
            // issuer by get-token: carry it into the entry.
            if args.identity.provider != crate::cli::ProviderArg::Auto
                && let Some(value) = clap::ValueEnum::to_possible_value(&args.identity.provider)
            {
                exec_args.push(format!("--provider={}", value.get_name()));
            }
            exec_args
        }
    };
    let user = setup::kubeconfig_user(&ExecUser {
        name: args.user_name.clone(),
        command: args.exec_command.clone(),
        args: exec_args,
    });
    if args.write_kubeconfig {
        write_user(args, &user, printer)?;
    }

    let out = render(args, &auth, &user, claims.as_ref())?;
    printer.result(&out)?;
    Ok(())
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

/// The PEM text of the IdP's CAs (`--certificate-authority` files, then
/// `--certificate-authority-data`), `None` when none is given.
pub(super) fn read_cas(login: &LoginConfig) -> anyhow::Result<Option<String>> {
    let cas = crate::http::ExtraCas::load(
        &login.certificate_authorities,
        login.certificate_authority_data.as_deref(),
    )?;
    Ok((!cas.is_empty()).then(|| cas.pem()))
}

/// The `get-token` arguments that make the kubeconfig entry trust the IdP's CA
/// ([`setup::ca_args`]); with `--embed-ca`, `pem` (from [`read_cas`]) as data, which must exist.
pub(super) fn entry_ca_args(
    args: &SetupArgs,
    login: &LoginConfig,
    pem: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let embed = if args.embed_ca {
        Some(pem.context(
            "--embed-ca puts the IdP's CA into the kubeconfig entry, but none was given: add \
             --certificate-authority FILE (or drop --embed-ca when a public CA signed the IdP's certificate)",
        )?)
    } else {
        None
    };
    Ok(setup::ca_args(
        &login.certificate_authorities,
        login.certificate_authority_data.as_deref(),
        embed,
    ))
}

/// `--write-kubeconfig`: writes `user` into the kubeconfig, says so, and prints the kubectl
/// commands that add what the file still lacks for that user (a cluster, a context).
pub(super) fn write_user(args: &SetupArgs, user: &Value, printer: Printer) -> anyhow::Result<()> {
    let path = kubeconfig_path(args.kubeconfig.as_deref())?;
    let written = write_kubeconfig_user(&path, user.clone())?;
    printer.info(format_args!(
        "wrote user {:?} to {}",
        args.user_name,
        path.display()
    ));
    let commands = setup::completion_commands(&written, &args.user_name, &path);
    if !commands.is_empty() {
        printer.info(format_args!(
            "no context in {} uses user {:?} yet; add {} with kubectl{}:\n{}",
            path.display(),
            args.user_name,
            if commands.len() == 3 {
                "the cluster and a context"
            } else {
                "a context"
            },
            if commands.iter().any(|c| c.contains('<')) {
                " (fill in the <...> parts)"
            } else {
                ""
            },
            commands
                .iter()
                .map(|c| format!("  {c}"))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    Ok(())
}

fn render(
    args: &SetupArgs,
    auth: &ClusterAuth,
    user: &Value,
    claims: Option<&IdTokenInfo>,
) -> anyhow::Result<String> {
    let authn = yaml(&setup::authentication_configuration(auth))?;
    let flags = setup::apiserver_flags(auth, args.apiserver_ca_path.as_deref()).join("\n");
    let kubeconfig = yaml(&serde_json::json!({ "users": [user] }))?;
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

pub(super) fn yaml(value: &Value) -> anyhow::Result<String> {
    let mut text = serde_saphyr::to_string(value).context("cannot render YAML")?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// `--kubeconfig`, else the first file of `KUBECONFIG`, else `~/.kube/config`.
pub(super) fn kubeconfig_path(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = flag {
        return Ok(path.to_owned());
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty())
        && let Some(first) = std::env::split_paths(&list).next()
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("HOME is not set; pass --kubeconfig")?;
    Ok(PathBuf::from(home).join(".kube/config"))
}

/// How long `setup` waits for another program's `<kubeconfig>.lock` to go away; kubectl holds
/// it for milliseconds.
const KUBECONFIG_LOCK_WAIT: Duration = Duration::from_secs(5);

/// client-go's lock on a kubeconfig (`lockFile` in `k8s.io/client-go/tools/clientcmd`, which
/// `kubectl config` uses): the file `<kubeconfig>.lock`, created with `O_CREAT|O_EXCL` before the
/// kubeconfig is read and removed after it was written. Removed on drop.
#[derive(Debug)]
struct KubeconfigLock {
    path: PathBuf,
}

impl KubeconfigLock {
    /// Takes the lock of `kubeconfig`, waiting up to `wait` for another holder; a lock still
    /// there after that is reported with the file to delete if it is stale.
    fn acquire(kubeconfig: &Path, wait: Duration) -> anyhow::Result<Self> {
        let mut name = kubeconfig.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let deadline = Instant::now() + wait;
        loop {
            let mut options = std::fs::OpenOptions::new();
            // create_new: O_CREAT|O_EXCL, which also refuses to follow a planted symlink.
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(&path) {
                Ok(_) => return Ok(Self { path }),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    if Instant::now() >= deadline {
                        bail!(
                            "the kubeconfig {} is locked: {} still exists after {}s (kubectl and koidc                              create it while they change the file); if no kubectl or koidc is running,                              the lock is stale: delete {} and run the command again",
                            kubeconfig.display(),
                            path.display(),
                            wait.as_secs(),
                            path.display()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(err) => {
                    return Err(err)
                        .with_context(|| format!("cannot create the kubeconfig lock {}", path.display()));
                }
            }
        }
    }
}

impl Drop for KubeconfigLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Adds (or replaces) the user in the kubeconfig at `path` and returns the file's new content,
/// written atomically and with mode 0600,
/// holding client-go's `<kubeconfig>.lock` ([`KubeconfigLock`]) so that a concurrent
/// `kubectl config` change is not lost. A symlinked kubeconfig (dotfile managers) is updated
/// where it points, as kubectl does, instead of being replaced by a regular file; the lock is
/// taken on the name given (as kubectl does) and on the file it points to.
pub(super) fn write_kubeconfig_user(path: &Path, user: Value) -> anyhow::Result<Value> {
    write_kubeconfig_user_waiting(path, user, KUBECONFIG_LOCK_WAIT)
}

fn write_kubeconfig_user_waiting(path: &Path, user: Value, wait: Duration) -> anyhow::Result<Value> {
    if path.as_os_str().is_empty() {
        bail!("the kubeconfig path is empty; pass --kubeconfig FILE");
    }
    let given_dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(given_dir).with_context(|| format!("cannot create {}", given_dir.display()))?;
    let _given_lock = KubeconfigLock::acquire(path, wait)?;
    let resolved = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::canonicalize(path)
            .with_context(|| format!("cannot follow the kubeconfig symlink {}", path.display()))?,
        _ => path.to_owned(),
    };
    let _resolved_lock = if resolved.as_path() == path {
        None
    } else {
        Some(KubeconfigLock::acquire(&resolved, wait)?)
    };
    let path = resolved.as_path();
    let existing = match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => None,
        Ok(text) => Some(
            serde_saphyr::from_str::<Value>(&text)
                .with_context(|| format!("cannot parse the kubeconfig {}", path.display()))?,
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            return Err(err).with_context(|| format!("cannot read the kubeconfig {}", path.display()));
        }
    };
    let merged = setup::merge_user(existing, user)
        .map_err(|e| anyhow::anyhow!("cannot update the kubeconfig {}: {e}", path.display()))?;
    let text = yaml(&merged)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.koidc-tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("config")
    ));
    // A leftover from an interrupted run may have another mode: start afresh.
    let _ = std::fs::remove_file(&tmp);
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Value {
        setup::kubeconfig_user(&ExecUser {
            name: name.into(),
            command: "koidc".into(),
            args: vec!["get-token".into()],
        })
    }

    #[test]
    fn writing_the_user_keeps_clusters_contexts_and_other_users_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: https://127.0.0.1:1}\n\
             contexts:\n- name: x\n  context: {cluster: c, user: oidc}\ncurrent-context: x\n\
             users:\n- name: other\n  user: {token: t}\n",
        )
        .unwrap();
        write_kubeconfig_user(&path, user("oidc")).unwrap();
        let written: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(written["clusters"][0]["name"], "c");
        assert_eq!(written["contexts"][0]["name"], "x");
        assert_eq!(written["current-context"], "x");
        assert_eq!(written["users"][0]["name"], "other");
        assert_eq!(written["users"][1], user("oidc"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_kubeconfig_is_updated_where_it_points() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("dotfiles-kubeconfig");
        std::fs::write(&real, "apiVersion: v1\nkind: Config\nusers: []\n").unwrap();
        let link = dir.path().join("config");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_kubeconfig_user(&link, user("oidc")).unwrap();
        assert!(
            std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(),
            "the symlink was replaced by a file"
        );
        let written: Value = serde_saphyr::from_str(&std::fs::read_to_string(&real).unwrap()).unwrap();
        assert_eq!(written["users"][0]["name"], "oidc");
    }

    #[test]
    fn a_held_kubeconfig_lock_makes_the_write_fail_naming_the_lock_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let lock = dir.path().join("config.lock");
        std::fs::write(&path, "apiVersion: v1\nkind: Config\nusers: []\n").unwrap();
        std::fs::write(&lock, "").unwrap();
        let err = write_kubeconfig_user_waiting(&path, user("oidc"), Duration::from_millis(200))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("delete {}", lock.display())), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "apiVersion: v1\nkind: Config\nusers: []\n"
        );
        assert!(lock.exists(), "another program's lock was removed");
    }

    #[test]
    fn an_empty_kubeconfig_path_is_refused_without_creating_a_lock() {
        let err = write_kubeconfig_user(Path::new(""), user("oidc")).unwrap_err();
        assert!(err.to_string().contains("--kubeconfig"), "{err}");
        assert!(!Path::new(".lock").exists());
    }

    #[cfg(unix)]
    #[test]
    fn the_kubeconfig_lock_is_removed_after_a_write_and_after_a_failed_one() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("dotfiles-kubeconfig");
        let link = dir.path().join("config");
        std::fs::write(&real, "apiVersion: v1\nkind: Config\nusers: []\n").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        // The file the link points to is locked by someone using that name: wait for it too.
        std::fs::write(dir.path().join("dotfiles-kubeconfig.lock"), "").unwrap();
        assert!(write_kubeconfig_user_waiting(&link, user("oidc"), Duration::from_millis(200)).is_err());
        assert!(
            !dir.path().join("config.lock").exists(),
            "our lock was left behind"
        );
        std::fs::remove_file(dir.path().join("dotfiles-kubeconfig.lock")).unwrap();

        write_kubeconfig_user(&link, user("oidc")).unwrap();
        std::fs::write(&real, "users: [unclosed").unwrap();
        assert!(write_kubeconfig_user(&link, user("oidc")).is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".lock"))
            .collect();
        assert!(left.is_empty(), "lock files left behind: {left:?}");
    }

    #[cfg(unix)]
    #[test]
    fn a_stale_temporary_file_does_not_lend_its_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let tmp = dir.path().join(".config.koidc-tmp");
        std::fs::write(&tmp, "leftover").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_kubeconfig_user(&path, user("oidc")).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!tmp.exists());
    }
}
