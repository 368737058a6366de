//! `koidc bind-group`: the RBAC objects that give an IdP group a role, printed for
//! `kubectl apply -f -` (or a GitOps repository), or applied directly with `--apply`.
//!
//! The objects come from [`crate::cluster::rbac`]; this module only turns flags into requests, picks the
//! groups prefix (flag, else the one `koidc setup` saved, else none with a warning: `koidc setup`
//! defaults the apiserver to `oidc:`, so a bare group most likely matches nobody), and for
//! `--apply` pipes the YAML to `kubectl apply --server-side --field-manager=koidc -f -`, which is
//! idempotent: applying the same objects again changes nothing.
//!
//! Before applying, every existing Role or ClusterRole the bindings refer to is looked up with
//! `kubectl get` (see [`rbac::roles_to_check`]): Kubernetes accepts a binding to a role that does
//! not exist, so a typo would otherwise bind nothing, silently. A missing one is refused (with
//! the preset or built-in it resembles, or the other kind of the same name) unless
//! `--allow-missing-role`; without `--apply` a likely typo is only warned about.
//! kubectl's failures come back short: an unreachable cluster (no current context, connection
//! refused) as one line naming --kubeconfig / --context, anything else as kubectl's own messages
//! without client-go's log lines, each once, capped.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::cli::{BindGroupArgs, ManifestFormat, RoleKindArg};
use crate::cluster::rbac::{
    self, Binding, NeededRole, RbacError, RbacObject, RoleKind, RoleSpec, SavedPrefix, Scope,
};
use crate::printer::Printer;
use crate::text;

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
    /// kubectl could not tell whether a role the bindings refer to exists.
    #[error(
        "cannot check that {what} exists: kubectl get failed ({status}): {message}; fix that, or pass --allow-missing-role to bind without checking"
    )]
    Check {
        /// The role, as `Role "x" in namespace y` or `ClusterRole "x"`.
        what: String,
        /// kubectl's exit status.
        status: String,
        /// kubectl's error output, on one line.
        message: String,
    },
    /// A role the bindings refer to does not exist (see [`rbac::missing_role_error`]).
    #[error(transparent)]
    MissingRole(RbacError),
    /// kubectl could not reach the cluster (no current context, connection refused, unknown
    /// host, timeout): neither the role check nor the apply can work.
    #[error(
        "kubectl cannot reach a cluster ({reason}): pass --kubeconfig FILE / --context NAME with admin credentials"
    )]
    Unreachable {
        /// What kubectl said, in short (the server included).
        reason: String,
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
    let bindings = requested_bindings(args, &prefix.prefix)?;
    if prefix.unset {
        printer.warn(missing_prefix_warning(&bindings));
    }
    for b in bindings.iter().filter(|b| b.prefix_looks_doubled()) {
        printer.warn(format!(
            "group {:?} already starts with the groups prefix {:?}, so the subject is {:?}; give the group as the IdP names it",
            b.group(),
            b.group_prefix(),
            b.subject_name()
        ));
    }
    let objects = rbac::objects_for(&bindings)?;
    let check_roles = args.apply && !args.allow_missing_role;
    if !check_roles {
        for warning in bindings.iter().filter_map(rbac::typo_warning) {
            printer.warn(warning);
        }
    }
    if args.apply {
        let kubectl = Kubectl {
            program: args.kubectl.clone(),
            kubeconfig: args.kubeconfig.clone(),
            context: args.context.clone(),
        };
        if check_roles {
            for needed in rbac::roles_to_check(&bindings, &objects) {
                kubectl.check_role(&needed, printer)?;
            }
        }
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

/// The groups prefix to put in front of the groups.
#[derive(Debug, PartialEq, Eq)]
struct GroupPrefix {
    /// The prefix (may be empty).
    prefix: String,
    /// True when neither `--group-prefix` nor a saved prefix said what it is: the groups are
    /// bound as named, which is worth a warning.
    unset: bool,
}

/// The groups prefix: the flag if given (`''` states "none"), else the saved one (said on
/// stderr), else none — and [`GroupPrefix::unset`].
fn group_prefix(
    explicit: Option<&str>,
    saved: impl FnOnce() -> Result<Option<SavedPrefix>, RbacError>,
    printer: Printer,
) -> Result<GroupPrefix, RbacError> {
    if let Some(prefix) = explicit {
        return Ok(GroupPrefix {
            prefix: prefix.to_owned(),
            unset: false,
        });
    }
    Ok(match saved()? {
        Some(saved) => {
            printer.info(format!(
                "using the groups prefix {:?} saved in {} (pass --group-prefix to override)",
                saved.prefix,
                saved.path.display()
            ));
            GroupPrefix {
                prefix: saved.prefix,
                unset: false,
            }
        }
        None => GroupPrefix {
            prefix: String::new(),
            unset: true,
        },
    })
}

/// The warning when no groups prefix was given or saved: the subjects are the bare groups, while
/// an apiserver set up by `koidc setup` puts `oidc:` in front of every group.
fn missing_prefix_warning(bindings: &[Binding]) -> String {
    const SHOWN: usize = 3;
    let mut groups: Vec<&str> = Vec::new();
    for group in bindings.iter().map(Binding::group) {
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    let subject = match groups.as_slice() {
        [one] => format!("the subject is the group {one:?} exactly as named"),
        many => {
            let mut list: Vec<String> = many.iter().take(SHOWN).map(|g| format!("{g:?}")).collect();
            if many.len() > SHOWN {
                list.push(format!("and {} more", many.len() - SHOWN));
            }
            format!(
                "the subjects are the groups exactly as named ({})",
                list.join(", ")
            )
        }
    };
    let default = rbac::SETUP_DEFAULT_GROUPS_PREFIX;
    format!(
        "no groups prefix given and none saved by `koidc setup`, so {subject}; if the apiserver was set up with koidc's default groups prefix, pass --group-prefix {default} (or --group-prefix '' to bind the groups as named on purpose)"
    )
}

/// What `--role-kind` / `--cluster-role` say ROLE is, if anything.
fn role_kind(args: &BindGroupArgs) -> Option<RoleKind> {
    match args.role_kind {
        Some(RoleKindArg::Role) => Some(RoleKind::Role),
        Some(RoleKindArg::ClusterRole) => Some(RoleKind::ClusterRole),
        Some(RoleKindArg::Preset) => Some(RoleKind::Preset),
        None => args.cluster_role.then_some(RoleKind::ClusterRole),
    }
}

/// The validated bindings: from `--from FILE`, or the one on the command line.
fn requested_bindings(args: &BindGroupArgs, prefix: &str) -> Result<Vec<Binding>, RbacError> {
    if let Some(file) = &args.from {
        return rbac::bindings_from_file(file, prefix);
    }
    // clap requires GROUP and ROLE without --from; empty strings are refused by validation.
    let kind = role_kind(args);
    let role = RoleSpec::resolve(args.role.as_deref().unwrap_or_default(), kind, &args.resources)?;
    let scope = if args.cluster_wide {
        Scope::ClusterWide
    } else {
        Scope::Namespace(
            args.namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
        )
    };
    Ok(vec![
        Binding::new(args.group.as_deref().unwrap_or_default(), role, scope, prefix)?
            .with_kind_stated(kind.is_some()),
    ])
}

/// How to run kubectl for `--apply`.
#[derive(Debug, Clone)]
struct Kubectl {
    program: PathBuf,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
}

impl Kubectl {
    /// `[--kubeconfig F] [--context C]`
    fn cluster_args(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        if let Some(kubeconfig) = &self.kubeconfig {
            args.extend([OsString::from("--kubeconfig"), kubeconfig.into()]);
        }
        if let Some(context) = &self.context {
            args.extend([OsString::from("--context"), context.into()]);
        }
        args
    }

    /// `[--kubeconfig F] [--context C] apply --server-side --field-manager=koidc -f -`
    fn args(&self) -> Vec<OsString> {
        let mut args = self.cluster_args();
        let field_manager = format!("--field-manager={FIELD_MANAGER}");
        args.extend(["apply", "--server-side", &field_manager, "-f", "-"].map(OsString::from));
        args
    }

    /// `[--kubeconfig F] [--context C] get KIND/NAME [-n NS] --ignore-not-found -o name`: prints
    /// the object's name when it exists, nothing when it does not. `KIND/NAME` in one argument,
    /// so a role name starting with `-` cannot pass for a flag.
    fn get_args(&self, kind: &str, name: &str, namespace: Option<&str>) -> Vec<OsString> {
        let mut args = self.cluster_args();
        args.extend(["get".into(), format!("{kind}/{name}").into()]);
        if let Some(ns) = namespace {
            args.extend(["-n", ns].map(OsString::from));
        }
        args.extend(["--ignore-not-found", "-o", "name"].map(OsString::from));
        args
    }

    /// Whether the Role (`namespace` given) or ClusterRole `name` exists.
    fn exists(&self, name: &str, namespace: Option<&str>, printer: Printer) -> Result<bool, ApplyError> {
        let (kind, what) = match namespace {
            Some(ns) => ("role", format!("Role {name:?} in namespace {ns}")),
            None => ("clusterrole", format!("ClusterRole {name:?}")),
        };
        let args = self.get_args(kind, name, namespace);
        printer.debug(format!("running {:?} {:?}", self.program, args));
        let output = Command::new(&self.program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| self.run_error(source))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            if let Some(reason) = unreachable(&stderr) {
                return Err(ApplyError::Unreachable { reason });
            }
            return Err(ApplyError::Check {
                what,
                status: output.status.to_string(),
                message: one_line(&stderr),
            });
        }
        Ok(!String::from_utf8_lossy(&output.stdout).trim().is_empty())
    }

    /// Refuses a role the bindings need that the cluster does not have (see the module doc).
    fn check_role(&self, needed: &NeededRole, printer: Printer) -> Result<(), ApplyError> {
        if self.exists(&needed.name, needed.namespace.as_deref(), printer)? {
            return Ok(());
        }
        // The other kind of the same name, where the binding could refer to it.
        let other_kind_exists = match (&needed.namespace, &needed.bound_in) {
            (Some(_), _) => self.exists(&needed.name, None, printer)?,
            (None, Some(ns)) => self.exists(&needed.name, Some(ns), printer)?,
            (None, None) => false,
        };
        Err(ApplyError::MissingRole(rbac::missing_role_error(
            needed,
            other_kind_exists,
        )))
    }

    /// The error for kubectl that cannot be started.
    fn run_error(&self, source: std::io::Error) -> ApplyError {
        let program = self.program.display().to_string();
        match source.kind() {
            std::io::ErrorKind::NotFound => ApplyError::NotFound { program },
            _ => ApplyError::Run { program, source },
        }
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
            .map_err(|source| self.run_error(source))?;
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
    if let Some(reason) = unreachable(stderr) {
        return ApplyError::Unreachable { reason };
    }
    ApplyError::Failed {
        status: status.to_owned(),
        message: one_line(stderr),
    }
}

/// Whether a line is client-go's log (`E1203 14:13:16.515685   31901 memcache.go:265] ...`)
/// rather than kubectl's own message.
fn is_klog_line(line: &str) -> bool {
    let mut chars = line.chars();
    matches!(chars.next(), Some('E' | 'W' | 'I' | 'F'))
        && line
            .get(1..5)
            .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
        && line.contains("] ")
}

/// Why kubectl could not reach the cluster, in short, when its error output says so: the
/// connection refused (with no current context kubectl tries localhost:8080), an unknown host,
/// a timeout. `None` for any other failure.
fn unreachable(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    // kubectl's own summary: "The connection to the server HOST:PORT was refused - did you ...".
    let refused_server = lines.iter().find_map(|l| {
        l.strip_prefix("The connection to the server ")
            .and_then(|rest| rest.split_once(" was refused"))
            .map(|(server, _)| server)
    });
    let all = lines.join("\n");
    let server = match refused_server {
        Some(server) => server.to_owned(),
        // Go's "dial tcp HOST:PORT: connect: ...".
        None => all
            .find("dial tcp ")
            .and_then(|at| all[at + "dial tcp ".len()..].split(": ").next())
            .unwrap_or("the cluster's server")
            .to_owned(),
    };
    let cause = if refused_server.is_some() || all.contains("connection refused") {
        "connection refused"
    } else if all.contains("no such host") {
        "no such host"
    } else if all.contains("i/o timeout") || all.contains("context deadline exceeded") {
        "timed out"
    } else if all.contains("no route to host") {
        "no route to host"
    } else {
        return None;
    };
    let server = text::cap(&text::single_line(&server), 200).into_owned();
    // Without a current context (or any kubeconfig) kubectl falls back to localhost:8080.
    Some(
        if all.contains("//localhost:8080/") || server == "localhost:8080" {
            format!("no current context, so kubectl tried localhost:8080: {cause}")
        } else {
            format!("{cause} at {server}")
        },
    )
}

/// kubectl's error output on one line: its own messages (client-go's log lines left out when
/// there is anything else), each once, joined by `; `, at most 500 characters.
fn one_line(stderr: &str) -> String {
    let all: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let own: Vec<&str> = all.iter().copied().filter(|l| !is_klog_line(l)).collect();
    let mut lines: Vec<&str> = Vec::new();
    for line in if own.is_empty() { all } else { own } {
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    let message = text::single_line(&lines.join("; "));
    if message.is_empty() {
        return "no error output".to_owned();
    }
    text::cap(&message, 500).into_owned()
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
        let chosen = |prefix: &str, unset: bool| GroupPrefix {
            prefix: prefix.to_owned(),
            unset,
        };
        assert_eq!(
            group_prefix(Some("flag:"), || panic!("not read"), Printer::default()).unwrap(),
            chosen("flag:", false)
        );
        assert_eq!(
            group_prefix(Some(""), saved, Printer::default()).unwrap(),
            chosen("", false)
        );
        assert_eq!(
            group_prefix(None, saved, Printer::default()).unwrap(),
            chosen("saved:", false)
        );
        // Neither given nor saved: none, and the caller warns.
        assert_eq!(
            group_prefix(None, || Ok(None), Printer::default()).unwrap(),
            chosen("", true)
        );
        let broken = || {
            Err(RbacError::ReadSaved {
                path: "p".into(),
                message: "bad".into(),
            })
        };
        assert!(group_prefix(None, broken, Printer::default()).is_err());
    }

    #[test]
    fn the_missing_prefix_warning_names_the_groups_and_both_fixes() {
        let bindings = |argv: &[&str]| requested_bindings(&parse(argv).unwrap(), "").unwrap();
        let one = missing_prefix_warning(&bindings(&["devs", "view"]));
        assert!(
            one.starts_with(
                "no groups prefix given and none saved by `koidc setup`, so the subject is the group \"devs\" exactly as named; "
            ),
            "{one}"
        );
        assert!(
            one.ends_with(
                "if the apiserver was set up with koidc's default groups prefix, pass --group-prefix oidc: (or --group-prefix '' to bind the groups as named on purpose)"
            ),
            "{one}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rbac.yaml");
        std::fs::write(
            &file,
            "- {group: a, role: view, namespace: x}\n- {group: a, role: edit, namespace: x}\n- {group: b, role: view, namespace: x}\n- {group: c, role: view, namespace: x}\n- {group: d, role: view, namespace: x}\n",
        )
        .unwrap();
        let many = missing_prefix_warning(&bindings(&["--from", file.to_str().unwrap()]));
        assert!(
            many.contains("the subjects are the groups exactly as named (\"a\", \"b\", \"c\", and 1 more)"),
            "{many}"
        );
    }

    #[test]
    fn role_kind_flags_say_what_role_is() {
        let role = |argv: &[&str]| {
            let b = requested_bindings(&parse(argv).unwrap(), "").unwrap();
            (b[0].role().clone(), b[0].likely_typo().is_some())
        };
        assert_eq!(
            role(&["g", "reader", "--role-kind", "role"]),
            (RoleSpec::ExistingRole("reader".into()), false)
        );
        assert_eq!(
            role(&["g", "writer", "--role-kind", "cluster-role"]),
            (RoleSpec::ExistingClusterRole("writer".into()), false)
        );
        assert_eq!(
            role(&["g", "writer", "--cluster-role"]),
            (RoleSpec::ExistingClusterRole("writer".into()), false)
        );
        assert!(matches!(
            role(&["g", "reader", "--role-kind", "preset"]).0,
            RoleSpec::Preset { .. }
        ));
        // Left to koidc's guess, a name like a preset is a likely typo; stated, it is meant.
        assert_eq!(
            role(&["g", "Reader"]),
            (RoleSpec::ExistingRole("Reader".into()), true)
        );
        assert_eq!(
            role(&["g", "Reader", "--role-kind", "role"]),
            (RoleSpec::ExistingRole("Reader".into()), false)
        );
        for argv in [
            &["g", "r", "--role-kind", "cluster-role", "--cluster-role"][..],
            &["g", "r", "--role-kind", "clusterrole"],
            &["g", "r", "--allow-missing-role"],
            &["--from", "f.yaml", "--role-kind", "role"],
        ] {
            assert!(parse(argv).is_err(), "{argv:?} should be refused");
        }
        assert!(parse(&["g", "r", "--apply", "--allow-missing-role"]).is_ok());
        let err =
            requested_bindings(&parse(&["g", "view", "--role-kind", "preset"]).unwrap(), "").unwrap_err();
        assert!(matches!(err, RbacError::NotAPreset { .. }), "{err}");
    }

    #[test]
    fn kubectl_looks_a_role_up_by_kind_and_name_in_one_argument() {
        let k = Kubectl {
            program: "kubectl".into(),
            kubeconfig: Some("/k/config".into()),
            context: None,
        };
        let args = |kind, name, ns| -> Vec<String> {
            k.get_args(kind, name, ns)
                .into_iter()
                .map(|a| a.into_string().unwrap())
                .collect()
        };
        assert_eq!(
            args("role", "--kubeconfig=evil", Some("app")),
            [
                "--kubeconfig",
                "/k/config",
                "get",
                "role/--kubeconfig=evil",
                "-n",
                "app",
                "--ignore-not-found",
                "-o",
                "name"
            ]
        );
        assert_eq!(
            args("clusterrole", "view", None),
            [
                "--kubeconfig",
                "/k/config",
                "get",
                "clusterrole/view",
                "--ignore-not-found",
                "-o",
                "name"
            ]
        );
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
        assert!(explain_failure(&"x".repeat(5000), "1", &[]).to_string().len() < 600);
    }

    /// kubectl v1.36's output when the kubeconfig has no current context (it falls back to
    /// localhost:8080), as `kubectl get` and `kubectl apply` print it.
    const NO_CONTEXT_GET: &str = "E1203 14:13:16.515685   31901 memcache.go:265] \"Unhandled Error\" err=\"couldn't get current server API group list: Get \\\"http://localhost:8080/api?timeout=32s\\\": dial tcp 127.0.0.1:8080: connect: connection refused\"\n\
        E1203 14:13:16.515979   31901 memcache.go:265] \"Unhandled Error\" err=\"couldn't get current server API group list: Get \\\"http://localhost:8080/api?timeout=32s\\\": dial tcp 127.0.0.1:8080: connect: connection refused\"\n\
        The connection to the server localhost:8080 was refused - did you specify the right host or port?\n";
    const NO_CONTEXT_APPLY: &str = "error: error validating \"STDIN\": error validating data: failed to download openapi: Get \"http://localhost:8080/openapi/v2?timeout=32s\": dial tcp 127.0.0.1:8080: connect: connection refused; if you choose to ignore these errors, turn validation off with --validate=false\n";

    #[test]
    fn kubectl_without_a_current_context_is_reported_as_unreachable_in_short() {
        for stderr in [NO_CONTEXT_GET, NO_CONTEXT_APPLY] {
            let msg = explain_failure(stderr, "exit status: 1", &[]).to_string();
            assert!(
                msg.starts_with("kubectl cannot reach a cluster (no current context, so kubectl tried ")
                    && msg.contains(": connection refused)")
                    && msg.ends_with("pass --kubeconfig FILE / --context NAME with admin credentials")
                    && !msg.contains("allow-missing-role")
                    && !msg.contains("memcache"),
                "{msg}"
            );
        }
        // Other failures are not taken for an unreachable cluster.
        assert_eq!(
            unreachable("error: You must be logged in to the server (Unauthorized)"),
            None
        );
        let short = one_line(NO_CONTEXT_GET.replace("localhost:8080 was refused", "x").as_str());
        assert_eq!(
            short,
            "The connection to the server x - did you specify the right host or port?"
        );
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
        retrying(|| k.apply(manifest, objects))
    }

    /// Runs `run` (which starts a fake kubectl), again while the script is busy (ETXTBSY).
    #[cfg(unix)]
    fn retrying<T>(run: impl Fn() -> Result<T, ApplyError>) -> Result<T, ApplyError> {
        for _ in 0..50 {
            match run() {
                Err(ApplyError::Run { source, .. }) if source.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
        run()
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
    fn a_role_lookup_that_kubectl_cannot_answer_is_refused_with_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let k = Kubectl {
            program: fake_kubectl(
                dir.path(),
                1,
                "Error from server (Forbidden): roles.rbac.authorization.k8s.io \"x\" is forbidden",
            ),
            kubeconfig: None,
            context: None,
        };
        let needed = NeededRole {
            name: "x".into(),
            namespace: Some("app".into()),
            bound_in: Some("app".into()),
            resembles: None,
            kind_stated: false,
        };
        let err = retrying(|| k.check_role(&needed, Printer::default())).unwrap_err();
        assert!(matches!(err, ApplyError::Check { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("cannot check that Role \"x\" in namespace app exists: kubectl get failed (exit status: 1): Error from server (Forbidden)"),
            "{msg}"
        );
        assert!(
            msg.ends_with("pass --allow-missing-role to bind without checking"),
            "{msg}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("args")).unwrap(),
            "get\nrole/x\n-n\napp\n--ignore-not-found\n-o\nname\n"
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
