//! `koidc bind-group`: the RBAC objects that give an IdP group a role, printed for
//! `kubectl apply -f -` (or a GitOps repository), or applied directly with `--apply`.
//!
//! The objects come from [`crate::rbac`]; this module only turns flags into requests, picks the
//! groups prefix (flag, else the one `koidc setup` saved), and for `--apply` pipes the YAML to
//! `kubectl apply --server-side --field-manager=koidc -f -`, which is idempotent: applying the
//! same objects again changes nothing.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::cli::{BindGroupArgs, ManifestFormat};
use crate::printer::Printer;
use crate::rbac::{self, Binding, RbacError, RbacObject, RoleSpec, SavedPrefix, Scope};

/// The namespace of a RoleBinding when `-n` is not given (kubectl's default too).
const DEFAULT_NAMESPACE: &str = "default";

/// The field manager koidc's server-side apply uses, so that re-applying is a no-op.
const FIELD_MANAGER: &str = "koidc";

/// Why `--apply` failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// kubectl is not installed (or not where --kubectl says).
    #[error(
        "cannot run {program:?}: not found; install kubectl or pass --kubectl PATH (or set KOIDC_KUBECTL)"
    )]
    NotFound {
        /// The program koidc tried to run.
        program: String,
    },
    /// kubectl could not be started or talked to.
    #[error("cannot run {program:?}: {source}")]
    Run {
        /// The program koidc tried to run.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A binding of the same name exists with another roleRef, which cannot change.
    #[error(
        "{what} already exists with a different role, and Kubernetes does not allow a binding's roleRef to change; delete it first ({delete}) and run koidc again"
    )]
    RoleRefImmutable {
        /// The binding, as precisely as kubectl's message tells.
        what: String,
        /// The command that deletes it.
        delete: String,
    },
    /// kubectl reported another failure.
    #[error("kubectl apply failed ({status}): {message}")]
    Failed {
        /// kubectl's exit status.
        status: String,
        /// kubectl's error output, on one line.
        message: String,
    },
}

/// Prints or applies the bindings the flags ask for.
pub fn run(args: &BindGroupArgs) -> anyhow::Result<()> {
    let printer = Printer::new(args.output.verbose);
    let prefix = group_prefix(args.group_prefix.as_deref(), rbac::saved_group_prefix, printer)?;
    let bindings = requested_bindings(args, &prefix)?;
    for b in bindings.iter().filter(|b| b.prefix_looks_doubled()) {
        printer.warn(format!(
            "group {:?} already starts with the groups prefix {:?}, so the subject is {:?}; give the group as the IdP names it",
            b.group(),
            b.group_prefix(),
            b.subject_name()
        ));
    }
    let objects = rbac::objects_for(&bindings)?;
    if args.apply {
        let kubectl = Kubectl {
            program: args.kubectl.clone(),
            kubeconfig: args.kubeconfig.clone(),
            context: args.context.clone(),
        };
        printer.debug(format!("running {:?} {:?}", kubectl.program, kubectl.args()));
        let out = kubectl.apply(&rbac::to_yaml(&objects)?, &objects)?;
        if !out.trim().is_empty() {
            printer.result(out.trim_end())?;
        }
    } else {
        let text = match args.format {
            ManifestFormat::Yaml => rbac::to_yaml(&objects)?,
            ManifestFormat::Json => rbac::to_json(&objects)?,
        };
        printer.result(&text)?;
    }
    Ok(())
}

/// The groups prefix: the flag if given, else the saved one (said on stderr), else none.
fn group_prefix(
    explicit: Option<&str>,
    saved: impl FnOnce() -> Result<Option<SavedPrefix>, RbacError>,
    printer: Printer,
) -> Result<String, RbacError> {
    if let Some(prefix) = explicit {
        return Ok(prefix.to_owned());
    }
    match saved()? {
        Some(saved) => {
            printer.info(format!(
                "using the groups prefix {:?} saved in {} (pass --group-prefix to override)",
                saved.prefix,
                saved.path.display()
            ));
            Ok(saved.prefix)
        }
        None => {
            printer.debug("no groups prefix given or saved: binding the groups as named");
            Ok(String::new())
        }
    }
}

/// The validated bindings: from `--from FILE`, or the one on the command line.
fn requested_bindings(args: &BindGroupArgs, prefix: &str) -> Result<Vec<Binding>, RbacError> {
    if let Some(file) = &args.from {
        return rbac::bindings_from_file(file, prefix);
    }
    // clap requires GROUP and ROLE without --from; empty strings are refused by validation.
    let role = RoleSpec::resolve(
        args.role.as_deref().unwrap_or_default(),
        args.cluster_role,
        &args.resources,
    )?;
    let scope = if args.cluster_wide {
        Scope::ClusterWide
    } else {
        Scope::Namespace(
            args.namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
        )
    };
    Ok(vec![Binding::new(
        args.group.as_deref().unwrap_or_default(),
        role,
        scope,
        prefix,
    )?])
}

/// How to run kubectl for `--apply`.
#[derive(Debug, Clone)]
struct Kubectl {
    program: PathBuf,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
}

impl Kubectl {
    /// `[--kubeconfig F] [--context C] apply --server-side --field-manager=koidc -f -`
    fn args(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        if let Some(kubeconfig) = &self.kubeconfig {
            args.extend([OsString::from("--kubeconfig"), kubeconfig.into()]);
        }
        if let Some(context) = &self.context {
            args.extend([OsString::from("--context"), context.into()]);
        }
        let field_manager = format!("--field-manager={FIELD_MANAGER}");
        args.extend(["apply", "--server-side", &field_manager, "-f", "-"].map(OsString::from));
        args
    }

    /// Pipes `manifest` (the YAML of `objects`) to kubectl; returns kubectl's stdout.
    fn apply(&self, manifest: &str, objects: &[RbacObject]) -> Result<String, ApplyError> {
        let program = self.program.display().to_string();
        let mut child = Command::new(&self.program)
            .args(self.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => ApplyError::NotFound {
                    program: program.clone(),
                },
                _ => ApplyError::Run {
                    program: program.clone(),
                    source,
                },
            })?;
        // Write on another thread so that a large manifest cannot deadlock against kubectl's
        // output filling its pipes.
        let stdin = child.stdin.take();
        let bytes = manifest.as_bytes().to_vec();
        let writer = std::thread::spawn(move || match stdin {
            Some(mut stdin) => stdin.write_all(&bytes),
            None => Ok(()),
        });
        let output = child.wait_with_output().map_err(|source| ApplyError::Run {
            program: program.clone(),
            source,
        })?;
        let written = writer.join().unwrap_or(Ok(()));
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(explain_failure(&stderr, &output.status.to_string(), objects));
        }
        written.map_err(|source| ApplyError::Run { program, source })?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// Turns kubectl's error output into one line, recognising the immutable roleRef.
fn explain_failure(stderr: &str, status: &str, objects: &[RbacObject]) -> ApplyError {
    if let Some(at) = stderr.find("cannot change roleRef") {
        return role_ref_immutable(&stderr[..at], objects);
    }
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let mut message = lines.join("; ");
    if message.is_empty() {
        message = "no error output".to_owned();
    }
    const MAX: usize = 2000;
    if message.len() > MAX {
        let mut cut = MAX;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(" ...");
    }
    ApplyError::Failed {
        status: status.to_owned(),
        message,
    }
}

/// The binding named last in kubectl's output `before` "cannot change roleRef", with the
/// command that deletes it. kubectl writes `The RoleBinding "NAME" is invalid: roleRef: ...`;
/// the apiserver's own message is `RoleBinding.rbac.authorization.k8s.io "NAME" is invalid`.
fn role_ref_immutable(before: &str, objects: &[RbacObject]) -> ApplyError {
    let mut found: Option<(usize, &str, &str)> = None;
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        for marker in [
            format!("The {kind} \""),
            format!("{kind}.{} \"", rbac::RBAC_API_GROUP),
        ] {
            for (pos, _) in before.match_indices(&marker) {
                // "RoleBinding.rbac..." also matches inside "ClusterRoleBinding.rbac...".
                if before[..pos].ends_with(|c: char| c.is_ascii_alphanumeric()) {
                    continue;
                }
                let rest = &before[pos + marker.len()..];
                let Some(end) = rest.find('"') else { continue };
                if found.is_none_or(|(best, _, _)| pos > best) {
                    found = Some((pos, kind, &rest[..end]));
                }
            }
        }
    }
    let Some((_, kind, name)) = found else {
        return ApplyError::RoleRefImmutable {
            what: "a binding koidc applies".to_owned(),
            delete: "see `kubectl get rolebindings,clusterrolebindings -A | grep koidc:`".to_owned(),
        };
    };
    let namespace = objects
        .iter()
        .find(|o| o.kind() == kind && o.name() == name)
        .and_then(RbacObject::namespace);
    let (what, delete) = match namespace {
        Some(ns) => (
            format!("{kind} {name:?} in namespace {ns}"),
            format!("`kubectl delete {} {name} -n {ns}`", kind.to_lowercase()),
        ),
        None => (
            format!("{kind} {name:?}"),
            format!("`kubectl delete {} {name}`", kind.to_lowercase()),
        ),
    };
    ApplyError::RoleRefImmutable { what, delete }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command as Sub};

    fn parse(argv: &[&str]) -> Result<BindGroupArgs, clap::Error> {
        let cli = Cli::try_parse_from(
            std::iter::once("koidc")
                .chain(["bind-group"])
                .chain(argv.iter().copied()),
        )?;
        match cli.command {
            Sub::BindGroup(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn objects(argv: &[&str], prefix: &str) -> Result<Vec<RbacObject>, RbacError> {
        rbac::objects_for(&requested_bindings(&parse(argv).unwrap(), prefix)?)
    }

    #[test]
    fn seed_scenario_command_lines_give_the_reader_and_writer_objects() {
        let reader = objects(&["reader-group", "reader", "-n", "application"], "").unwrap();
        let yaml = rbac::to_yaml(&reader).unwrap();
        assert_eq!(yaml, include_str!("../../tests/fixtures/rbac/list-reader.yaml"));
        let writer = objects(&["writer-group", "writer", "--namespace", "application"], "").unwrap();
        let names: Vec<_> = writer.iter().map(|o| (o.kind(), o.name())).collect();
        assert_eq!(
            names,
            [
                ("Role", "koidc-writer"),
                ("RoleBinding", "koidc:writer-group:koidc-writer")
            ]
        );
    }

    #[test]
    fn bind_group_help_shows_group_and_role_as_required() {
        use clap::CommandFactory as _;
        let mut cli = Cli::command();
        let sub = cli.find_subcommand_mut("bind-group").expect("bind-group");
        let help = sub.render_long_help().to_string();
        let usage = help
            .lines()
            .skip_while(|l| !l.starts_with("Usage:"))
            .take_while(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(usage.contains("bind-group [OPTIONS] <GROUP> <ROLE>"), "{usage}");
        assert!(usage.contains("bind-group [OPTIONS] --from <FILE>"), "{usage}");
        assert!(!help.contains("[GROUP]") && !help.contains("[ROLE]"), "{help}");
        assert!(help.contains("  <GROUP>") && help.contains("  <ROLE>"), "{help}");
    }

    #[test]
    fn without_a_namespace_the_binding_goes_to_default() {
        let objs = objects(&["devs", "view"], "oidc:").unwrap();
        assert_eq!(objs.len(), 1);
        assert_eq!(objs[0].namespace(), Some("default"));
    }

    #[test]
    fn cluster_wide_flags_make_cluster_objects_and_refuse_a_namespaced_role() {
        let objs = objects(&["ops", "view", "--cluster-wide"], "").unwrap();
        assert_eq!(objs[0].kind(), "ClusterRoleBinding");
        let objs = objects(
            &["devs", "reader", "--cluster-wide", "--resource", "pods,secrets"],
            "",
        )
        .unwrap();
        assert_eq!(
            objs.iter().map(RbacObject::kind).collect::<Vec<_>>(),
            ["ClusterRole", "ClusterRoleBinding"]
        );
        let err = objects(&["devs", "deployer", "--cluster-wide"], "").unwrap_err();
        assert!(matches!(err, RbacError::NamespacedRoleClusterWide { .. }));
        assert!(objects(&["devs", "deployer", "--cluster-wide", "--cluster-role"], "").is_ok());
    }

    #[test]
    fn contradictory_flags_are_usage_errors() {
        for argv in [
            &["devs", "view", "-n", "a", "--cluster-wide"][..],
            &["devs", "view", "--from", "f.yaml"],
            &["--from", "f.yaml", "-n", "a"],
            &["devs"],
            &[],
            &["devs", "view", "--apply", "-o", "json"],
            &["devs", "view", "--context", "kind"],
        ] {
            assert!(parse(argv).is_err(), "{argv:?} should be refused");
        }
        assert!(parse(&["--from", "f.yaml", "--group-prefix", "-oidc-"]).is_ok());
    }

    #[test]
    fn empty_group_on_the_command_line_is_refused() {
        assert!(matches!(objects(&["", "view"], ""), Err(RbacError::EmptyGroup)));
    }

    #[test]
    fn from_file_is_read_and_validated() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rbac.yaml");
        std::fs::write(&file, "- {group: reader-group, role: reader, namespace: application}\n- {group: ops, role: view, clusterWide: true}\n").unwrap();
        let objs = objects(&["--from", file.to_str().unwrap()], "oidc:").unwrap();
        assert_eq!(objs.len(), 3);
        let err = objects(&["--from", dir.path().join("missing.yaml").to_str().unwrap()], "").unwrap_err();
        assert!(matches!(err, RbacError::ReadFile { .. }));
    }

    #[test]
    fn an_explicit_prefix_wins_over_the_saved_one() {
        let saved = || {
            Ok(Some(SavedPrefix {
                prefix: "saved:".into(),
                path: "/x/cluster.json".into(),
            }))
        };
        assert_eq!(
            group_prefix(Some("flag:"), || panic!("not read"), Printer::default()).unwrap(),
            "flag:"
        );
        assert_eq!(group_prefix(Some(""), saved, Printer::default()).unwrap(), "");
        assert_eq!(group_prefix(None, saved, Printer::default()).unwrap(), "saved:");
        assert_eq!(group_prefix(None, || Ok(None), Printer::default()).unwrap(), "");
        let broken = || {
            Err(RbacError::ReadSaved {
                path: "p".into(),
                message: "bad".into(),
            })
        };
        assert!(group_prefix(None, broken, Printer::default()).is_err());
    }

    #[test]
    fn kubectl_arguments_are_server_side_apply_from_stdin() {
        let k = Kubectl {
            program: "kubectl".into(),
            kubeconfig: Some("/k/config".into()),
            context: Some("kind".into()),
        };
        let args: Vec<_> = k.args().into_iter().map(|a| a.into_string().unwrap()).collect();
        assert_eq!(
            args,
            [
                "--kubeconfig",
                "/k/config",
                "--context",
                "kind",
                "apply",
                "--server-side",
                "--field-manager=koidc",
                "-f",
                "-"
            ]
        );
    }

    #[test]
    fn immutable_role_ref_tells_the_admin_to_delete_the_binding() {
        let objs = objects(&["devs", "view", "-n", "app"], "").unwrap();
        let stderr = "Error from server (Invalid): RoleBinding.rbac.authorization.k8s.io \"koidc:devs:view\" is invalid: \
                      roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"Role\", Name:\"view\"}: cannot change roleRef\n";
        let err = explain_failure(stderr, "exit status: 1", &objs);
        let msg = err.to_string();
        assert!(matches!(err, ApplyError::RoleRefImmutable { .. }));
        assert!(
            msg.contains("RoleBinding \"koidc:devs:view\" in namespace app"),
            "{msg}"
        );
        assert!(
            msg.contains("`kubectl delete rolebinding koidc:devs:view -n app`"),
            "{msg}"
        );
        let cluster = "Error from server (Invalid): ClusterRoleBinding.rbac.authorization.k8s.io \"x\" is invalid: roleRef: ...: cannot change roleRef";
        assert!(
            explain_failure(cluster, "1", &[])
                .to_string()
                .contains("`kubectl delete clusterrolebinding x`")
        );
        // kubectl's own wording, the cause on a line of its own, after another object's output.
        let kubectl = "The RoleBinding \"koidc:a:view\" is invalid: other\n\
                       The ClusterRoleBinding \"koidc:ops:view\" is invalid:\n* roleRef: Invalid value: ...: cannot change roleRef\n";
        let msg = explain_failure(kubectl, "1", &[]).to_string();
        assert!(
            msg.contains("`kubectl delete clusterrolebinding koidc:ops:view`"),
            "{msg}"
        );
        let vague = explain_failure("error: cannot change roleRef", "1", &[]).to_string();
        assert!(vague.contains("already exists with a different role"), "{vague}");
    }

    #[test]
    fn other_kubectl_failures_are_reported_on_one_line() {
        let err = explain_failure(
            "error: You must be logged in to the server (Unauthorized)\n\nmore\n",
            "exit status: 1",
            &[],
        );
        assert_eq!(
            err.to_string(),
            "kubectl apply failed (exit status: 1): error: You must be logged in to the server (Unauthorized); more"
        );
        assert!(explain_failure(&"x".repeat(5000), "1", &[]).to_string().len() < 2100);
    }

    #[test]
    fn a_missing_kubectl_is_a_clear_error() {
        let k = Kubectl {
            program: "/nonexistent/kubectl".into(),
            kubeconfig: None,
            context: None,
        };
        let err = k.apply("", &[]).unwrap_err();
        assert!(matches!(err, ApplyError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("--kubectl"));
    }

    /// A stand-in kubectl that records its arguments and stdin, then prints `out` / fails.
    #[cfg(unix)]
    fn fake_kubectl(dir: &std::path::Path, exit: i32, stderr: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join("kubectl");
        let script = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{d}/args'\ncat > '{d}/stdin'\necho 'rolebinding.rbac.authorization.k8s.io/x serverside-applied'\nprintf '%s' '{stderr}' >&2\nexit {exit}\n",
            d = dir.display()
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// Runs `apply`, retrying while another test thread's fork still holds the new script open.
    #[cfg(unix)]
    fn apply_retrying(k: &Kubectl, manifest: &str, objects: &[RbacObject]) -> Result<String, ApplyError> {
        for _ in 0..50 {
            match k.apply(manifest, objects) {
                Err(ApplyError::Run { source, .. }) if source.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
        k.apply(manifest, objects)
    }

    #[cfg(unix)]
    #[test]
    fn apply_pipes_the_yaml_to_kubectl_and_prints_its_result() {
        let dir = tempfile::tempdir().unwrap();
        let k = Kubectl {
            program: fake_kubectl(dir.path(), 0, ""),
            kubeconfig: None,
            context: Some("kind".into()),
        };
        let objs = objects(&["reader-group", "reader", "-n", "application"], "").unwrap();
        let yaml = rbac::to_yaml(&objs).unwrap();
        let out = apply_retrying(&k, &yaml, &objs).unwrap();
        assert_eq!(
            out,
            "rolebinding.rbac.authorization.k8s.io/x serverside-applied\n"
        );
        assert_eq!(std::fs::read_to_string(dir.path().join("stdin")).unwrap(), yaml);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("args")).unwrap(),
            "--context\nkind\napply\n--server-side\n--field-manager=koidc\n-f\n-\n"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_failing_kubectl_becomes_an_apply_error() {
        let dir = tempfile::tempdir().unwrap();
        let k = Kubectl {
            program: fake_kubectl(dir.path(), 1, "error: no context kind"),
            kubeconfig: None,
            context: None,
        };
        let err = apply_retrying(&k, "a: b\n", &[]).unwrap_err();
        assert!(
            matches!(&err, ApplyError::Failed { message, .. } if message == "error: no context kind"),
            "{err}"
        );
    }
}
