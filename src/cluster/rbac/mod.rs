//! RBAC for IdP groups: the Role/ClusterRole and RoleBinding/ClusterRoleBinding objects that
//! give an OpenID Connect group rights in a cluster (`koidc bind-group`).
//!
//! Everything here is pure: a validated [`Binding`] request becomes a list of Kubernetes API
//! objects ([`k8s_openapi`] types, so the shapes are Kubernetes' own), rendered as multi-document
//! YAML or a `v1` `List` in JSON — what `kubectl create ... --dry-run=client -o yaml` prints for
//! the same input. Only [`saved`] touches a file (the groups prefix `koidc setup` records).
//!
//! # Subjects
//! The subject is `{kind: Group, apiGroup: rbac.authorization.k8s.io, name: <prefix><group>}`:
//! the apiserver puts its `--oidc-groups-prefix` (or `claimMappings.groups.prefix`) in front of
//! every group from the token, and the binding must name the group exactly as it derives it.
//!
//! # Names (deterministic: the same input always gives the same objects)
//! - Preset roles: `koidc-reader` / `koidc-writer` for the default resource (`pods`); for any
//!   other resource list `koidc-reader-<h>` / `koidc-writer-<h>`, where `<h>` is the first 8 hex
//!   digits of SHA-256 over the resources sorted by (API group, resource, subresource) and
//!   de-duplicated, each written `resource[.group][/sub]`, joined by newlines, so two presets
//!   over different resources never share a name.
//! - Bindings: `koidc:<group>:<role>`, with the group as the IdP names it (without the prefix)
//!   and the name of the Role/ClusterRole referred to. See [`names::binding_name`] for how
//!   characters outside `A-Za-z0-9-._:@`, a `:` in the group, or a name over 253 bytes are made
//!   safe (replaced, cut, and suffixed with `-<h>` of the unaltered name).
//! - A binding's `roleRef` cannot change once created; since the role's name is part of the
//!   binding's name, binding a group to another role creates a second binding instead of failing.
//!   (One case still shares a name: an existing Role and an existing ClusterRole of the same name,
//!   bound to the same group in the same namespace.)

mod check;
mod file;
pub mod names;
mod saved;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

pub use check::{NeededRole, Resemblance, missing_role_error, resembles, roles_to_check, typo_warning};
pub use file::bindings_from_file;
pub use saved::{SavedPrefix, save_group_prefix, saved_group_prefix};

/// The API group of every RBAC object and of group subjects.
pub const RBAC_API_GROUP: &str = "rbac.authorization.k8s.io";

/// The built-in ClusterRoles every cluster has, referred to as ClusterRoles by name.
pub const BUILTIN_CLUSTER_ROLES: [&str; 4] = ["view", "edit", "admin", "cluster-admin"];

/// The groups prefix `koidc setup` gives the apiserver unless told otherwise.
pub const SETUP_DEFAULT_GROUPS_PREFIX: &str = "oidc:";

/// The resources a preset covers when none are given.
pub const DEFAULT_PRESET_RESOURCES: [&str; 1] = ["pods"];

/// What can be wrong with a binding request, a bindings file or the saved groups prefix.
#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    /// The group name is empty.
    #[error("the group name is empty; give the group as the IdP puts it in the token's groups claim")]
    EmptyGroup,
    /// The group name cannot be right.
    #[error("invalid group {group:?}: {reason}")]
    InvalidGroup {
        /// The group given.
        group: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The groups prefix contains control characters.
    #[error("invalid groups prefix {prefix:?}: it contains control characters")]
    InvalidGroupPrefix {
        /// The prefix given.
        prefix: String,
    },
    /// The namespace is not a DNS-1123 label.
    #[error(
        "invalid namespace {namespace:?}: a namespace is 1-63 lowercase letters, digits or `-`, starting and ending with a letter or digit"
    )]
    InvalidNamespace {
        /// The namespace given.
        namespace: String,
    },
    /// A role name Kubernetes would reject.
    #[error("invalid role name {name:?}: {reason}")]
    InvalidRoleName {
        /// The name given.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A preset resource that is not `resource[.group][/subresource]` in lowercase.
    #[error(
        "invalid resource {resource:?}: write the lowercase plural resource name, optionally with its API group and subresource, like pods, deployments.apps or pods/log"
    )]
    InvalidResource {
        /// The resource given.
        resource: String,
    },
    /// A well-known resource written in a way that would match nothing.
    #[error("resource {resource:?} would match nothing: write {suggestion}")]
    MisspelledResource {
        /// The resource given.
        resource: String,
        /// The spelling that works.
        suggestion: &'static str,
    },
    /// Resources were given for a role that is not a preset.
    #[error(
        "resources only apply to the presets reader and writer, not to {role:?}; drop them, or use a preset"
    )]
    ResourcesWithoutPreset {
        /// The role given.
        role: String,
    },
    /// A namespaced Role cannot be bound cluster-wide.
    #[error(
        "{role:?} is taken as an existing namespaced Role, and a ClusterRoleBinding can only refer to a ClusterRole; if {role:?} is a ClusterRole say so (--role-kind cluster-role, or roleKind: cluster-role in a bindings file), or bind it in a namespace (-n) instead of cluster-wide"
    )]
    NamespacedRoleClusterWide {
        /// The role given.
        role: String,
    },
    /// `--role-kind preset` (or `roleKind: preset`) with a name that is not a preset.
    #[error(
        "{role:?} is not a preset: the presets are reader and writer; drop --role-kind preset to bind an existing Role or a built-in ClusterRole"
    )]
    NotAPreset {
        /// The role given.
        role: String,
    },
    /// A bindings file entry says `clusterRole: true` and another `roleKind`.
    #[error("clusterRole: true contradicts roleKind: {kind}; keep one of them")]
    RoleKindConflict {
        /// The `roleKind` given.
        kind: RoleKind,
    },
    /// `--apply` would bind a Role or ClusterRole that does not exist in the cluster.
    #[error(
        "{kind} {name:?} does not exist{}; {hint}",
        namespace.as_deref().map(|ns| format!(" in namespace {ns}")).unwrap_or_default()
    )]
    MissingRole {
        /// `Role` or `ClusterRole`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The Role's namespace (None for a ClusterRole).
        namespace: Option<String>,
        /// What to do: the role it probably meant, the other kind of the same name, creating it,
        /// or `--allow-missing-role`.
        hint: String,
    },
    /// Two requests produce an object of the same name with different content.
    #[error(
        "two bindings produce {kind} {name:?}{} with different content; bind each group to each role once",
        namespace.as_deref().map(|ns| format!(" in namespace {ns}")).unwrap_or_default()
    )]
    Conflict {
        /// The object's kind.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Its namespace, for namespaced objects.
        namespace: Option<String>,
    },
    /// The bindings file cannot be read.
    #[error("cannot read the bindings file {path}: {source}")]
    ReadFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The bindings file is not the expected YAML list.
    #[error(
        "cannot parse the bindings file {path}: {message}; expected a YAML list like `- {{group: devs, role: view, namespace: app}}`"
    )]
    ParseFile {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// The bindings file has no entries.
    #[error("the bindings file {path} has no entries; add `- {{group: devs, role: view, namespace: app}}`")]
    EmptyFile {
        /// The file.
        path: String,
    },
    /// One entry of the bindings file is wrong.
    #[error("{path}: entry {index} (counting from 1): {reason}")]
    BadEntry {
        /// The file.
        path: String,
        /// The entry's position, counting from 1.
        index: usize,
        /// What is wrong with it.
        reason: Box<RbacError>,
    },
    /// An entry of the bindings file names neither a namespace nor cluster-wide, or both.
    #[error("give either `namespace: NS` or `clusterWide: true`{}", if *both { ", not both" } else { "" })]
    EntryScope {
        /// Both were given (rather than neither).
        both: bool,
    },
    /// The objects cannot be rendered (a bug in a serializer).
    #[error("cannot render the RBAC objects as {format}: {message}")]
    Render {
        /// YAML or JSON.
        format: &'static str,
        /// The serializer's message.
        message: String,
    },
    /// No configuration directory can be derived.
    #[error(
        "cannot find koidc's configuration directory (neither XDG_CONFIG_HOME nor HOME is set); pass --group-prefix"
    )]
    NoConfigDir,
    /// The saved cluster settings cannot be read or are malformed.
    #[error(
        "cannot read the saved groups prefix from {path}: {message}; fix or delete the file, or pass --group-prefix"
    )]
    ReadSaved {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The cluster settings cannot be written.
    #[error("cannot save the groups prefix to {path}: {message}")]
    WriteSaved {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// The presets whose Role koidc writes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Preset {
    /// `get`, `list`, `watch`.
    Reader,
    /// Every verb (`*`).
    Writer,
}

impl Preset {
    /// The preset a role argument names, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "reader" => Some(Self::Reader),
            "writer" => Some(Self::Writer),
            _ => None,
        }
    }

    /// `reader` or `writer`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Reader => "reader",
            Self::Writer => "writer",
        }
    }

    /// The verbs the preset grants, in kubectl's order.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Self::Reader => &["get", "list", "watch"],
            Self::Writer => &["*"],
        }
    }
}

/// What ROLE names, when the user says so (`--role-kind`, `roleKind:` in a bindings file);
/// without it, `reader`/`writer` are presets, the built-ins ClusterRoles, anything else a Role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleKind {
    /// An existing Role, in the binding's namespace (a RoleBinding can refer to no other).
    Role,
    /// An existing ClusterRole (or a built-in one), bound in a namespace or cluster-wide.
    ClusterRole,
    /// One of the presets koidc writes itself: `reader` or `writer`.
    Preset,
}

impl RoleKind {
    /// `role`, `cluster-role` or `preset`, as the flag spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Role => "role",
            Self::ClusterRole => "cluster-role",
            Self::Preset => "preset",
        }
    }
}

impl std::fmt::Display for RoleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One resource of a preset, as kubectl's `--resource` spells it: `resource[.group][/sub]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resource {
    /// The API group (`""` for the core group).
    pub group: String,
    /// The plural resource name (`pods`) or `*`.
    pub resource: String,
    /// The subresource (`log`), if any.
    pub subresource: Option<String>,
}

/// Resources people write in a way that silently matches nothing (kubectl would fix these from
/// discovery, which koidc does not read): the spelling that works.
const MISSPELLINGS: &[(&str, &str)] = &[
    ("pod", "pods"),
    ("po", "pods"),
    ("service", "services"),
    ("svc", "services"),
    ("secret", "secrets"),
    ("configmap", "configmaps"),
    ("cm", "configmaps"),
    ("namespace", "namespaces"),
    ("ns", "namespaces"),
    ("deployment", "deployments.apps"),
    ("deploy", "deployments.apps"),
    ("deployments", "deployments.apps"),
    ("replicasets", "replicasets.apps"),
    ("statefulsets", "statefulsets.apps"),
    ("daemonsets", "daemonsets.apps"),
    ("jobs", "jobs.batch"),
    ("cronjobs", "cronjobs.batch"),
    ("ingresses", "ingresses.networking.k8s.io"),
];

impl Resource {
    /// Parses kubectl's `--resource` syntax: the text before the first `.` is the resource, the
    /// rest (up to `/`) its API group, and after `/` the subresource.
    pub fn parse(text: &str) -> Result<Self, RbacError> {
        let invalid = || RbacError::InvalidResource {
            resource: text.to_owned(),
        };
        if let Some((_, suggestion)) = MISSPELLINGS.iter().find(|(wrong, _)| *wrong == text) {
            return Err(RbacError::MisspelledResource {
                resource: text.to_owned(),
                suggestion,
            });
        }
        let (main, subresource) = match text.split_once('/') {
            Some((main, sub)) => (main, Some(sub)),
            None => (text, None),
        };
        let (resource, group) = main.split_once('.').unwrap_or((main, ""));
        let name_ok = |s: &str| s == "*" || names::is_dns1123_label(s);
        if !name_ok(resource) {
            return Err(invalid());
        }
        if !group.is_empty() && group != "*" && !names::is_dns1123_subdomain(group) {
            return Err(invalid());
        }
        if let Some(sub) = subresource
            && !name_ok(sub)
        {
            return Err(invalid());
        }
        Ok(Self {
            group: group.to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.map(str::to_owned),
        })
    }

    /// The name in a rule's `resources` list: `resource` or `resource/sub`.
    fn rule_resource(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        }
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.resource)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if let Some(sub) = &self.subresource {
            write!(f, "/{sub}")?;
        }
        Ok(())
    }
}

/// What the binding refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleSpec {
    /// One of [`BUILTIN_CLUSTER_ROLES`].
    BuiltinClusterRole(String),
    /// A preset: koidc emits the Role (or ClusterRole) too.
    Preset {
        /// Which verbs.
        preset: Preset,
        /// Which resources: sorted, without duplicates, never empty.
        resources: Vec<Resource>,
    },
    /// An existing Role in the binding's namespace.
    ExistingRole(String),
    /// An existing ClusterRole.
    ExistingClusterRole(String),
}

impl RoleSpec {
    /// Resolves a role as the user typed it. Without `kind`: a preset (with its resources;
    /// [`DEFAULT_PRESET_RESOURCES`] when none are given), a built-in ClusterRole name, or else an
    /// existing Role. `kind` says what the name is, so an existing Role or ClusterRole named
    /// `reader` or `writer` can be bound: [`RoleKind::Role`] takes any name literally as a Role,
    /// [`RoleKind::ClusterRole`] as a ClusterRole (built-in or not), [`RoleKind::Preset`] accepts
    /// only the presets.
    pub fn resolve(role: &str, kind: Option<RoleKind>, resources: &[String]) -> Result<Self, RbacError> {
        names::validate_role_name(role)?;
        let preset = match kind {
            None => Preset::from_name(role),
            Some(RoleKind::Preset) => Some(Preset::from_name(role).ok_or_else(|| RbacError::NotAPreset {
                role: role.to_owned(),
            })?),
            Some(RoleKind::Role | RoleKind::ClusterRole) => None,
        };
        if preset.is_none() && !resources.is_empty() {
            return Err(RbacError::ResourcesWithoutPreset {
                role: role.to_owned(),
            });
        }
        if let Some(preset) = preset {
            let mut parsed = if resources.is_empty() {
                DEFAULT_PRESET_RESOURCES
                    .iter()
                    .map(|r| Resource::parse(r))
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                resources
                    .iter()
                    .map(|r| Resource::parse(r.trim()))
                    .collect::<Result<Vec<_>, _>>()?
            };
            parsed.sort();
            parsed.dedup();
            return Ok(Self::Preset {
                preset,
                resources: parsed,
            });
        }
        Ok(if kind == Some(RoleKind::Role) {
            Self::ExistingRole(role.to_owned())
        } else if BUILTIN_CLUSTER_ROLES.contains(&role) {
            Self::BuiltinClusterRole(role.to_owned())
        } else if kind == Some(RoleKind::ClusterRole) {
            Self::ExistingClusterRole(role.to_owned())
        } else {
            Self::ExistingRole(role.to_owned())
        })
    }

    /// The name of the role the binding refers to.
    pub fn role_name(&self) -> String {
        match self {
            Self::BuiltinClusterRole(name) | Self::ExistingRole(name) | Self::ExistingClusterRole(name) => {
                name.clone()
            }
            Self::Preset { preset, resources } => {
                let base = format!("koidc-{}", preset.name());
                let is_default = resources.len() == DEFAULT_PRESET_RESOURCES.len()
                    && resources
                        .iter()
                        .zip(DEFAULT_PRESET_RESOURCES)
                        .all(|(r, d)| r.to_string() == d);
                if is_default {
                    base
                } else {
                    let list: Vec<String> = resources.iter().map(Resource::to_string).collect();
                    format!("{base}-{}", names::short_hash(&list.join("\n")))
                }
            }
        }
    }

    /// True when the role is a namespaced Role (in a namespace) rather than a ClusterRole.
    fn is_namespaced_role(&self, scope: &Scope) -> bool {
        match self {
            Self::BuiltinClusterRole(_) | Self::ExistingClusterRole(_) => false,
            Self::ExistingRole(_) => true,
            Self::Preset { .. } => matches!(scope, Scope::Namespace(_)),
        }
    }
}

/// Where the binding grants its rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// In one namespace (RoleBinding).
    Namespace(String),
    /// In every namespace and for cluster-scoped resources (ClusterRoleBinding).
    ClusterWide,
}

/// A validated request: give `group` the rights of `role` in `scope`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    group: String,
    role: RoleSpec,
    scope: Scope,
    group_prefix: String,
    /// True when the user said what kind of role ROLE is (`--role-kind`, `--cluster-role`), so
    /// a name resembling a preset or built-in is taken as meant.
    kind_stated: bool,
}

impl Binding {
    /// Validates a request: the group, the namespace, the prefix, and that a cluster-wide binding
    /// refers to a ClusterRole.
    pub fn new(group: &str, role: RoleSpec, scope: Scope, group_prefix: &str) -> Result<Self, RbacError> {
        names::validate_group(group)?;
        names::validate_group_prefix(group_prefix)?;
        if let Scope::Namespace(ns) = &scope {
            names::validate_namespace(ns)?;
        }
        if let (RoleSpec::ExistingRole(role), Scope::ClusterWide) = (&role, &scope) {
            return Err(RbacError::NamespacedRoleClusterWide { role: role.clone() });
        }
        Ok(Self {
            group: group.to_owned(),
            role,
            scope,
            group_prefix: group_prefix.to_owned(),
            kind_stated: false,
        })
    }

    /// Records whether the user said what kind of role ROLE is (see [`Self::likely_typo`]).
    #[must_use]
    pub fn with_kind_stated(mut self, stated: bool) -> Self {
        self.kind_stated = stated;
        self
    }

    /// The preset or built-in ClusterRole a Role name probably meant (`Reader` → `reader`),
    /// when the kind was left to koidc's guess; None when the kind was stated or the name
    /// resembles nothing.
    pub fn likely_typo(&self) -> Option<Resemblance> {
        match &self.role {
            RoleSpec::ExistingRole(name) if !self.kind_stated => resembles(name),
            _ => None,
        }
    }

    /// The IdP group, without prefix.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The role referred to.
    pub fn role(&self) -> &RoleSpec {
        &self.role
    }

    /// Where the rights apply.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The groups prefix in front of the group.
    pub fn group_prefix(&self) -> &str {
        &self.group_prefix
    }

    /// The group as the apiserver derives it from a token: prefix + group.
    pub fn subject_name(&self) -> String {
        format!("{}{}", self.group_prefix, self.group)
    }

    /// True when the group already starts with a non-empty prefix (likely given twice).
    pub fn prefix_looks_doubled(&self) -> bool {
        !self.group_prefix.is_empty() && self.group.starts_with(&self.group_prefix)
    }

    /// The binding's object name (see the module doc).
    pub fn binding_name(&self) -> String {
        names::binding_name(&self.group, &self.role.role_name())
    }

    /// The objects to apply: the preset's Role or ClusterRole (if any), then the binding.
    pub fn objects(&self) -> Vec<RbacObject> {
        let role_name = self.role.role_name();
        let namespace = match &self.scope {
            Scope::Namespace(ns) => Some(ns.clone()),
            Scope::ClusterWide => None,
        };
        let mut out = Vec::with_capacity(2);
        if let RoleSpec::Preset { preset, resources } = &self.role {
            let metadata = ObjectMeta {
                name: Some(role_name.clone()),
                namespace: namespace.clone(),
                ..Default::default()
            };
            let rules = Some(policy_rules(*preset, resources));
            out.push(match namespace {
                Some(_) => RbacObject::Role(Role { metadata, rules }),
                None => RbacObject::ClusterRole(ClusterRole {
                    metadata,
                    rules,
                    ..Default::default()
                }),
            });
        }
        let role_ref = RoleRef {
            api_group: Some(RBAC_API_GROUP.to_owned()),
            kind: if self.role.is_namespaced_role(&self.scope) {
                "Role"
            } else {
                "ClusterRole"
            }
            .to_owned(),
            name: role_name,
        };
        let subjects = Some(vec![Subject {
            api_group: Some(RBAC_API_GROUP.to_owned()),
            kind: "Group".to_owned(),
            name: self.subject_name(),
            namespace: None,
        }]);
        let metadata = ObjectMeta {
            name: Some(self.binding_name()),
            namespace: namespace.clone(),
            ..Default::default()
        };
        out.push(match namespace {
            Some(_) => RbacObject::RoleBinding(RoleBinding {
                metadata,
                role_ref,
                subjects,
            }),
            None => RbacObject::ClusterRoleBinding(ClusterRoleBinding {
                metadata,
                role_ref,
                subjects,
            }),
        });
        out
    }
}

/// One rule per API group (sorted), resources in sorted order — kubectl's layout.
fn policy_rules(preset: Preset, resources: &[Resource]) -> Vec<PolicyRule> {
    let mut by_group: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for r in resources {
        let list = by_group.entry(r.group.as_str()).or_default();
        let name = r.rule_resource();
        if !list.contains(&name) {
            list.push(name);
        }
    }
    by_group
        .into_iter()
        .map(|(group, resources)| PolicyRule {
            api_groups: Some(vec![group.to_owned()]),
            resources: Some(resources),
            verbs: preset.verbs().iter().map(|v| (*v).to_owned()).collect(),
            ..Default::default()
        })
        .collect()
}

/// One RBAC API object, serialized with its own `apiVersion` and `kind`.
#[derive(Debug, Clone, PartialEq)]
pub enum RbacObject {
    /// A namespaced Role.
    Role(Role),
    /// A ClusterRole.
    ClusterRole(ClusterRole),
    /// A RoleBinding.
    RoleBinding(RoleBinding),
    /// A ClusterRoleBinding.
    ClusterRoleBinding(ClusterRoleBinding),
}

impl RbacObject {
    /// `Role`, `ClusterRole`, `RoleBinding` or `ClusterRoleBinding`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Role(_) => "Role",
            Self::ClusterRole(_) => "ClusterRole",
            Self::RoleBinding(_) => "RoleBinding",
            Self::ClusterRoleBinding(_) => "ClusterRoleBinding",
        }
    }

    fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::Role(o) => &o.metadata,
            Self::ClusterRole(o) => &o.metadata,
            Self::RoleBinding(o) => &o.metadata,
            Self::ClusterRoleBinding(o) => &o.metadata,
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// The object's namespace (None for cluster-scoped objects).
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }
}

impl Serialize for RbacObject {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Role(o) => o.serialize(serializer),
            Self::ClusterRole(o) => o.serialize(serializer),
            Self::RoleBinding(o) => o.serialize(serializer),
            Self::ClusterRoleBinding(o) => o.serialize(serializer),
        }
    }
}

/// The objects for several bindings, in order, each object once: a preset Role shared by two
/// groups is emitted once; two different objects with the same kind, namespace and name are a
/// [`RbacError::Conflict`].
pub fn objects_for(bindings: &[Binding]) -> Result<Vec<RbacObject>, RbacError> {
    let mut out: Vec<RbacObject> = Vec::new();
    for object in bindings.iter().flat_map(Binding::objects) {
        let same = |o: &&RbacObject| {
            o.kind() == object.kind() && o.name() == object.name() && o.namespace() == object.namespace()
        };
        match out.iter().find(same) {
            Some(existing) if *existing == object => {}
            Some(_) => {
                return Err(RbacError::Conflict {
                    kind: object.kind(),
                    name: object.name().to_owned(),
                    namespace: object.namespace().map(str::to_owned),
                });
            }
            None => out.push(object),
        }
    }
    Ok(out)
}

/// Multi-document YAML, documents separated by `---`, as `kubectl create -f` prints them.
pub fn to_yaml(objects: &[RbacObject]) -> Result<String, RbacError> {
    serde_saphyr::to_string_multiple(objects).map_err(|e| RbacError::Render {
        format: "YAML",
        message: e.to_string(),
    })
}

/// A `v1` `List` of the objects, as `kubectl get -o json` prints several objects.
pub fn to_json(objects: &[RbacObject]) -> Result<String, RbacError> {
    #[derive(Serialize)]
    struct ListMeta {
        #[serde(rename = "resourceVersion")]
        resource_version: &'static str,
    }
    #[derive(Serialize)]
    struct List<'a> {
        #[serde(rename = "apiVersion")]
        api_version: &'static str,
        items: &'a [RbacObject],
        kind: &'static str,
        metadata: ListMeta,
    }
    let list = List {
        api_version: "v1",
        items: objects,
        kind: "List",
        metadata: ListMeta { resource_version: "" },
    };
    serde_json::to_string_pretty(&list).map_err(|e| RbacError::Render {
        format: "JSON",
        message: e.to_string(),
    })
}
