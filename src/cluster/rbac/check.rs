//! Which roles a binding needs to exist, and what a role name that exists nowhere probably
//! meant: the decisions behind `koidc bind-group`'s typo warning and its `--apply` check.
//!
//! Kubernetes accepts a RoleBinding to a Role that does not exist (it grants nothing until the
//! Role appears), so a typo — `Reader` for the preset `reader`, `veiw` for `view` — used to bind
//! silently. Everything here is pure: the command asks the cluster whether each
//! [`NeededRole`] exists (through kubectl) and turns a missing one into
//! [`missing_role_error`]; without `--apply` it only warns, from [`super::Binding::likely_typo`].

use super::{BUILTIN_CLUSTER_ROLES, Binding, Preset, RbacError, RbacObject, RoleSpec, Scope};

/// A preset or built-in ClusterRole a role name resembles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resemblance {
    /// A preset (`reader`, `writer`).
    Preset(&'static str),
    /// A built-in ClusterRole (`view`, `edit`, `admin`, `cluster-admin`).
    BuiltinClusterRole(&'static str),
}

impl Resemblance {
    /// The name it resembles.
    pub fn name(self) -> &'static str {
        match self {
            Self::Preset(name) | Self::BuiltinClusterRole(name) => name,
        }
    }
}

impl std::fmt::Display for Resemblance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Preset(name) => write!(f, "the preset `{name}`"),
            Self::BuiltinClusterRole(name) => write!(f, "the built-in ClusterRole `{name}`"),
        }
    }
}

/// Words people use for a built-in ClusterRole, further from it than a typo.
const SYNONYMS: &[(&str, &str)] = &[
    ("viewer", "view"),
    ("viewers", "view"),
    ("editor", "edit"),
    ("editors", "edit"),
];

/// The preset or built-in ClusterRole `name` probably meant: the same name in another case
/// (`Reader`), a known synonym (`viewer`), or one within a small edit distance (one edit for
/// names up to 5 characters, two for longer ones; a swap of neighbours counts as one). None
/// for an exact preset or built-in name, and for names that resemble none.
pub fn resembles(name: &str) -> Option<Resemblance> {
    let candidates = [Preset::Reader.name(), Preset::Writer.name()]
        .into_iter()
        .map(Resemblance::Preset)
        .chain(
            BUILTIN_CLUSTER_ROLES
                .into_iter()
                .map(Resemblance::BuiltinClusterRole),
        );
    if candidates.clone().any(|c| c.name() == name) {
        return None;
    }
    let lower = name.to_lowercase();
    if let Some((_, meant)) = SYNONYMS.iter().find(|(word, _)| *word == lower) {
        return candidates.clone().find(|c| c.name() == *meant);
    }
    candidates
        .filter_map(|c| {
            let limit = if c.name().len() <= 5 { 1 } else { 2 };
            let distance = edit_distance(&lower, c.name());
            (distance <= limit).then_some((distance, c))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// The optimal string alignment distance: insertions, deletions, substitutions and swaps of
/// two neighbouring characters each count 1.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Names longer than any candidate by more than two cannot be within the limit.
    if a.len().abs_diff(b.len()) > 2 {
        return usize::MAX;
    }
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, row) in d.chunks_mut(width).enumerate() {
        row[0] = i;
    }
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

/// A Role or ClusterRole that bindings refer to and that the same apply does not create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeededRole {
    /// The role's name.
    pub name: String,
    /// `Some(namespace)` for a Role, None for a ClusterRole.
    pub namespace: Option<String>,
    /// Where the referring binding grants its rights: `Some(namespace)` for a RoleBinding (so
    /// a Role of the same name there would also do), None for a ClusterRoleBinding.
    pub bound_in: Option<String>,
    /// What the name probably meant, if it resembles a preset or built-in ClusterRole.
    pub resembles: Option<Resemblance>,
    /// True when the user stated the kind (`--role-kind`, `--cluster-role`): giving the name
    /// it resembles then also means dropping that.
    pub kind_stated: bool,
}

impl NeededRole {
    /// `Role "x" in namespace y` or `ClusterRole "x"`.
    #[cfg(test)]
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("Role {:?} in namespace {ns}", self.name),
            None => format!("ClusterRole {:?}", self.name),
        }
    }

    /// `Role` or `ClusterRole`.
    pub fn kind(&self) -> &'static str {
        if self.namespace.is_some() {
            "Role"
        } else {
            "ClusterRole"
        }
    }
}

/// The roles `bindings` refer to that must already exist for `--apply`: existing Roles and
/// ClusterRoles, each once. Presets are left out (the apply creates them, as `objects` shows),
/// and so are the built-in ClusterRoles (the apiserver creates them itself at start).
pub fn roles_to_check(bindings: &[Binding], objects: &[RbacObject]) -> Vec<NeededRole> {
    let mut out: Vec<NeededRole> = Vec::new();
    for binding in bindings {
        let bound_in = match binding.scope() {
            Scope::Namespace(ns) => Some(ns.clone()),
            Scope::ClusterWide => None,
        };
        let (name, namespace) = match binding.role() {
            RoleSpec::Preset { .. } | RoleSpec::BuiltinClusterRole(_) => continue,
            RoleSpec::ExistingRole(name) => (name, bound_in.clone()),
            RoleSpec::ExistingClusterRole(name) => (name, None),
        };
        let kind = if namespace.is_some() {
            "Role"
        } else {
            "ClusterRole"
        };
        let created = objects
            .iter()
            .any(|o| o.kind() == kind && o.name() == name && o.namespace() == namespace.as_deref());
        let seen = out
            .iter()
            .any(|n| n.name == *name && n.namespace == namespace && n.bound_in == bound_in);
        if created || seen {
            continue;
        }
        out.push(NeededRole {
            name: name.clone(),
            namespace,
            bound_in,
            resembles: resembles(name),
            kind_stated: binding.kind_stated,
        });
    }
    out
}

/// The one-line error for a role `--apply` did not find. `other_kind_exists` says whether the
/// cluster has the other kind of the same name where the binding could use it (a ClusterRole
/// for a missing Role; a Role in the binding's namespace for a missing ClusterRole).
pub fn missing_role_error(needed: &NeededRole, other_kind_exists: bool) -> RbacError {
    let anyway = "or pass --allow-missing-role to bind it before it exists";
    let hint = if other_kind_exists {
        match (&needed.namespace, &needed.bound_in) {
            (Some(_), _) => format!(
                "a ClusterRole {:?} exists: pass --role-kind cluster-role to bind that (roleKind: cluster-role in a bindings file), or create the Role first, {anyway}",
                needed.name
            ),
            (None, Some(ns)) => format!(
                "a Role {:?} exists in namespace {ns}: pass --role-kind role to bind that (roleKind: role in a bindings file), or create the ClusterRole first, {anyway}",
                needed.name
            ),
            (None, None) => format!("create it first, {anyway}"),
        }
    } else if let Some(meant) = needed.resembles {
        format!(
            "did you mean {meant}? Give ROLE as `{}`{}, or create the {} first, {anyway}",
            meant.name(),
            if needed.kind_stated {
                " with no --role-kind or --cluster-role"
            } else {
                ""
            },
            needed.kind()
        )
    } else {
        format!("create it first, {anyway}")
    };
    RbacError::MissingRole {
        kind: needed.kind(),
        name: needed.name.clone(),
        namespace: needed.namespace.clone(),
        hint,
    }
}

/// The warning for a binding whose Role name probably meant a preset or built-in, printed when
/// the cluster is not checked (the objects are printed, or `--allow-missing-role`).
pub fn typo_warning(binding: &Binding) -> Option<String> {
    let meant = binding.likely_typo()?;
    let RoleSpec::ExistingRole(name) = binding.role() else {
        return None;
    };
    let namespace = match binding.scope() {
        Scope::Namespace(ns) => ns.as_str(),
        Scope::ClusterWide => return None,
    };
    Some(format!(
        "ROLE {name:?} is neither a preset nor a built-in ClusterRole, so it is bound as an existing Role in namespace {namespace}; did you mean {meant}? (--role-kind role binds the Role {name:?} without this warning)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::rbac::RoleKind;

    fn binding(role: &str, kind: Option<RoleKind>, scope: Scope) -> Binding {
        Binding::new(
            "devs",
            RoleSpec::resolve(role, kind, &[]).unwrap(),
            scope,
            "oidc:",
        )
        .unwrap()
        .with_kind_stated(kind.is_some())
    }

    fn ns(name: &str) -> Scope {
        Scope::Namespace(name.to_owned())
    }

    #[test]
    fn names_close_to_a_preset_or_built_in_resemble_it() {
        use Resemblance::{BuiltinClusterRole as B, Preset as P};
        for (typed, meant) in [
            ("Reader", P("reader")),
            ("READER", P("reader")),
            ("raeder", P("reader")),
            ("read", P("reader")),
            ("readers", P("reader")),
            ("Writer", P("writer")),
            ("write", P("writer")),
            ("View", B("view")),
            ("veiw", B("view")),
            ("viewer", B("view")),
            ("Editor", B("edit")),
            ("edti", B("edit")),
            ("Admin", B("admin")),
            ("amdin", B("admin")),
            ("cluster-admn", B("cluster-admin")),
            ("Cluster-Admin", B("cluster-admin")),
            ("clusteradmin", B("cluster-admin")),
        ] {
            assert_eq!(resembles(typed), Some(meant), "{typed}");
        }
        for exact_or_unrelated in [
            "reader",
            "view",
            "cluster-admin",
            "deployer",
            "pod-reader",
            "auditor",
            "koidc-reader",
            "",
            "ü",
            &"x".repeat(300),
        ] {
            assert_eq!(resembles(exact_or_unrelated), None, "{exact_or_unrelated}");
        }
    }

    #[test]
    fn edit_distance_counts_a_swap_as_one_edit() {
        assert_eq!(edit_distance("veiw", "view"), 1);
        assert_eq!(edit_distance("view", "view"), 0);
        assert_eq!(edit_distance("vie", "view"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("a-very-long-name", "view"), usize::MAX);
    }

    #[test]
    fn a_typo_is_warned_about_only_when_the_kind_was_guessed() {
        let guessed = binding("Reader", None, ns("application"));
        let warning = typo_warning(&guessed).expect("a warning");
        assert_eq!(
            warning,
            "ROLE \"Reader\" is neither a preset nor a built-in ClusterRole, so it is bound as an existing Role in namespace application; did you mean the preset `reader`? (--role-kind role binds the Role \"Reader\" without this warning)"
        );
        for stated in [
            binding("Reader", Some(RoleKind::Role), ns("application")),
            binding("veiw", Some(RoleKind::ClusterRole), ns("application")),
            binding("deployer", None, ns("application")),
            binding("reader", None, ns("application")),
        ] {
            assert_eq!(typo_warning(&stated), None, "{stated:?}");
        }
    }

    #[test]
    fn roles_to_check_are_the_existing_ones_each_once() {
        let bindings = [
            binding("reader", None, ns("app")),
            binding("view", None, ns("app")),
            binding("deployer", None, ns("app")),
            binding("deployer", None, ns("app")),
            binding("deployer", None, ns("other")),
            binding("auditor", Some(RoleKind::ClusterRole), ns("app")),
            binding("auditor", Some(RoleKind::ClusterRole), Scope::ClusterWide),
            binding("koidc-reader", Some(RoleKind::Role), ns("app")),
            binding("koidc-reader", Some(RoleKind::Role), ns("other")),
        ];
        let objects = crate::cluster::rbac::objects_for(&bindings).unwrap();
        let needed: Vec<(String, Option<String>, Option<String>)> = roles_to_check(&bindings, &objects)
            .into_iter()
            .map(|n| (n.describe(), n.namespace, n.bound_in))
            .collect();
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            needed,
            [
                (
                    "Role \"deployer\" in namespace app".to_owned(),
                    s("app"),
                    s("app")
                ),
                (
                    "Role \"deployer\" in namespace other".to_owned(),
                    s("other"),
                    s("other")
                ),
                ("ClusterRole \"auditor\"".to_owned(), None, s("app")),
                ("ClusterRole \"auditor\"".to_owned(), None, None),
                // The preset's Role in `app` is created by the same apply; not in `other`.
                (
                    "Role \"koidc-reader\" in namespace other".to_owned(),
                    s("other"),
                    s("other")
                ),
            ]
        );
    }

    #[test]
    fn a_missing_role_error_names_the_fix() {
        let needed = |name: &str, namespace: Option<&str>, bound_in: Option<&str>| NeededRole {
            name: name.to_owned(),
            namespace: namespace.map(str::to_owned),
            bound_in: bound_in.map(str::to_owned),
            resembles: resembles(name),
            kind_stated: false,
        };
        let typo = missing_role_error(&needed("Reader", Some("application"), Some("application")), false);
        assert_eq!(
            typo.to_string(),
            "Role \"Reader\" does not exist in namespace application; did you mean the preset `reader`? Give ROLE as `reader`, or create the Role first, or pass --allow-missing-role to bind it before it exists"
        );
        let stated = NeededRole {
            kind_stated: true,
            ..needed("veiw", None, None)
        };
        let builtin = missing_role_error(&stated, false).to_string();
        assert!(
            builtin.starts_with(
                "ClusterRole \"veiw\" does not exist; did you mean the built-in ClusterRole `view`? Give ROLE as `view` with no --role-kind or --cluster-role,"
            ),
            "{builtin}"
        );
        let plain = missing_role_error(&needed("later", Some("app"), Some("app")), false).to_string();
        assert_eq!(
            plain,
            "Role \"later\" does not exist in namespace app; create it first, or pass --allow-missing-role to bind it before it exists"
        );
        let cluster_role_instead =
            missing_role_error(&needed("lister", Some("app"), Some("app")), true).to_string();
        assert!(
            cluster_role_instead.contains("a ClusterRole \"lister\" exists: pass --role-kind cluster-role"),
            "{cluster_role_instead}"
        );
        let role_instead = missing_role_error(&needed("getter", None, Some("app")), true).to_string();
        assert!(
            role_instead.contains("a Role \"getter\" exists in namespace app: pass --role-kind role"),
            "{role_instead}"
        );
        for message in [
            typo.to_string(),
            builtin,
            plain,
            cluster_role_instead,
            role_instead,
        ] {
            assert!(!message.contains('\n'), "{message}");
            assert!(message.contains("--allow-missing-role"), "{message}");
        }
    }
}
