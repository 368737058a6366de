//! `koidc bind-group --from FILE`: several bindings from a small YAML list, for GitOps
//! repositories.
//!
//! ```yaml
//! - {group: reader-group, role: reader, namespace: application}
//! - {group: writer-group, role: writer, namespace: application, resources: [pods, pods/log]}
//! - {group: ops, role: view, clusterWide: true}
//! - {group: auditors, role: audit-reader, clusterRole: true, clusterWide: true}
//! - {group: guide-readers, role: reader, roleKind: role, namespace: application}
//! ```
//!
//! Keys are those of the command line (`clusterWide`/`cluster-wide`, `clusterRole`/
//! `cluster-role`, `roleKind`/`role-kind`, `resources`); unknown keys are an error, so a typo cannot silently drop a
//! setting. Every entry is validated before anything is printed or applied; the first bad one is
//! reported with its position.

use std::path::Path;

use serde::Deserialize;

use super::{Binding, RbacError, RoleKind, RoleSpec, Scope};

/// One entry of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Entry {
    group: String,
    role: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default, alias = "cluster-wide")]
    cluster_wide: bool,
    #[serde(default, alias = "cluster-role")]
    cluster_role: bool,
    #[serde(default, alias = "role-kind")]
    role_kind: Option<RoleKind>,
    #[serde(default)]
    resources: Vec<String>,
}

impl Entry {
    fn binding(&self, group_prefix: &str) -> Result<Binding, RbacError> {
        let scope = match (&self.namespace, self.cluster_wide) {
            (Some(ns), false) => Scope::Namespace(ns.clone()),
            (None, true) => Scope::ClusterWide,
            (Some(_), true) => return Err(RbacError::EntryScope { both: true }),
            (None, false) => return Err(RbacError::EntryScope { both: false }),
        };
        let kind = match (self.cluster_role, self.role_kind) {
            (true, Some(kind)) if kind != RoleKind::ClusterRole => {
                return Err(RbacError::RoleKindConflict { kind });
            }
            (true, _) => Some(RoleKind::ClusterRole),
            (false, kind) => kind,
        };
        let role = RoleSpec::resolve(&self.role, kind, &self.resources)?;
        Ok(Binding::new(&self.group, role, scope, group_prefix)?.with_kind_stated(kind.is_some()))
    }
}

/// Reads and validates a bindings file (`-` reads standard input).
pub fn bindings_from_file(path: &Path, group_prefix: &str) -> Result<Vec<Binding>, RbacError> {
    let shown = path.display().to_string();
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin().lock())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|source| RbacError::ReadFile {
        path: shown.clone(),
        source,
    })?;
    bindings_from_yaml(&text, &shown, group_prefix)
}

/// Parses and validates the text of a bindings file; `source` names it in errors.
pub fn bindings_from_yaml(text: &str, source: &str, group_prefix: &str) -> Result<Vec<Binding>, RbacError> {
    let options = serde_saphyr::options! { with_snippet: false };
    let entries: Option<Vec<Entry>> =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| RbacError::ParseFile {
            path: source.to_owned(),
            message: e.to_string(),
        })?;
    let entries = entries.unwrap_or_default();
    if entries.is_empty() {
        return Err(RbacError::EmptyFile {
            path: source.to_owned(),
        });
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            entry.binding(group_prefix).map_err(|reason| RbacError::BadEntry {
                path: source.to_owned(),
                index: i + 1,
                reason: Box::new(reason),
            })
        })
        .collect()
}
