//! koidc's RBAC objects against kubectl's own output for the same input.
//!
//! The fixtures in tests/fixtures/rbac/ are what kubectl v1.36.3 prints for
//! `kubectl create role|rolebinding|... --dry-run=client` (regenerate with regen.sh there). Each
//! test parses koidc's rendered YAML/JSON back into values and compares them with kubectl's.

use serde_json::Value;

use super::file::bindings_from_yaml;
use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/rbac/",
            $name
        ))
    };
}

/// The documents of a YAML stream as values, without kubectl's `creationTimestamp: null`.
fn docs(yaml: &str) -> Vec<Value> {
    let mut docs: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
    for doc in &mut docs {
        if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("creationTimestamp");
        }
    }
    docs
}

/// kubectl's fixtures, concatenated in order.
fn kubectl(fixtures: &[&str]) -> Vec<Value> {
    fixtures.iter().flat_map(|f| docs(f)).collect()
}

fn ns(name: &str) -> Scope {
    Scope::Namespace(name.to_owned())
}

fn binding(
    group: &str,
    role: &str,
    cluster_role: bool,
    resources: &[&str],
    scope: Scope,
    prefix: &str,
) -> Binding {
    let resources: Vec<String> = resources.iter().map(|r| (*r).to_owned()).collect();
    Binding::new(
        group,
        RoleSpec::resolve(role, cluster_role.then_some(RoleKind::ClusterRole), &resources).unwrap(),
        scope,
        prefix,
    )
    .unwrap()
    .with_kind_stated(cluster_role)
}

/// koidc's YAML for the bindings, parsed back.
fn koidc(bindings: &[Binding]) -> Vec<Value> {
    docs(&to_yaml(&objects_for(bindings).unwrap()).unwrap())
}

#[test]
fn builtin_cluster_role_in_a_namespace_matches_kubectl() {
    let b = binding("devs", "view", false, &[], ns("application"), "oidc:");
    assert_eq!(
        koidc(std::slice::from_ref(&b)),
        kubectl(&[fixture!("rolebinding-view.yaml")])
    );
    // JSON: a v1 List whose item is what kubectl -o json prints.
    let list: Value = serde_json::from_str(&to_json(&b.objects()).unwrap()).unwrap();
    let kubectl_json: Value = serde_json::from_str(fixture!("rolebinding-view.json")).unwrap();
    assert_eq!(list["items"], Value::Array(vec![kubectl_json]));
}

#[test]
fn builtin_cluster_role_cluster_wide_matches_kubectl() {
    let b = binding("ops", "cluster-admin", false, &[], Scope::ClusterWide, "");
    assert_eq!(
        koidc(&[b]),
        kubectl(&[fixture!("clusterrolebinding-cluster-admin.yaml")])
    );
}

#[test]
fn seed_reader_preset_matches_kubectl_role_and_rolebinding() {
    let b = binding("reader-group", "reader", false, &[], ns("application"), "");
    assert_eq!(
        koidc(&[b]),
        kubectl(&[fixture!("role-reader.yaml"), fixture!("rolebinding-reader.yaml")])
    );
}

#[test]
fn seed_writer_preset_matches_kubectl_role_and_rolebinding() {
    let b = binding("writer-group", "writer", false, &[], ns("application"), "");
    assert_eq!(
        koidc(&[b]),
        kubectl(&[fixture!("role-writer.yaml"), fixture!("rolebinding-writer.yaml")])
    );
}

#[test]
fn yaml_text_is_what_kubectl_prints_for_several_objects() {
    // Not only the same values: the same bytes, key order and quoting included.
    let b = binding("reader-group", "reader", false, &[], ns("application"), "");
    assert_eq!(to_yaml(&b.objects()).unwrap(), fixture!("list-reader.yaml"));
}

#[test]
fn json_is_a_v1_list_like_kubectl_get() {
    let b = binding("reader-group", "reader", false, &[], ns("application"), "");
    let ours: Value = serde_json::from_str(&to_json(&b.objects()).unwrap()).unwrap();
    let theirs: Value = serde_json::from_str(fixture!("list-reader.json")).unwrap();
    assert_eq!(ours, theirs);
}

#[test]
fn preset_cluster_wide_emits_a_cluster_role_like_kubectl() {
    let b = binding("devs", "reader", false, &[], Scope::ClusterWide, "oidc:");
    assert_eq!(
        koidc(&[b]),
        kubectl(&[
            fixture!("clusterrole-reader.yaml"),
            fixture!("clusterrolebinding-reader.yaml")
        ])
    );
}

#[test]
fn preset_over_several_api_groups_has_one_rule_per_group_like_kubectl() {
    let b = binding(
        "devs",
        "reader",
        false,
        &["pods", "deployments.apps", "configmaps"],
        ns("application"),
        "",
    );
    let ours = koidc(&[b]);
    // The role name is koidc's choice (a hash of the resource list); regen.sh uses the same name.
    assert_eq!(ours[0], kubectl(&[fixture!("role-reader-multi.yaml")])[0]);
    assert_eq!(ours[1]["roleRef"]["name"], ours[0]["metadata"]["name"]);
}

#[test]
fn existing_role_and_existing_cluster_role_match_kubectl() {
    let role = binding("devs", "deployer", false, &[], ns("ci"), "");
    assert_eq!(
        koidc(&[role]),
        kubectl(&[fixture!("rolebinding-existing-role.yaml")])
    );
    let cluster_role = binding("devs", "pod-reader", true, &[], ns("ci"), "");
    assert_eq!(
        koidc(&[cluster_role]),
        kubectl(&[fixture!("rolebinding-existing-clusterrole.yaml")])
    );
}

#[test]
fn the_subject_carries_the_groups_prefix_and_no_namespace() {
    let b = binding("devs", "edit", false, &[], ns("app"), "oidc:");
    let doc = &koidc(&[b])[0];
    assert_eq!(
        doc["subjects"],
        serde_json::json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "oidc:devs"}])
    );
    // The prefix is not part of the object's name.
    assert_eq!(doc["metadata"]["name"], "koidc:devs:edit");
}

#[test]
fn same_input_gives_the_same_output() {
    let make = || {
        let b = binding(
            "devs",
            "writer",
            false,
            &["secrets", "pods/log", "pods"],
            ns("app"),
            "oidc:",
        );
        (to_yaml(&b.objects()).unwrap(), to_json(&b.objects()).unwrap())
    };
    assert_eq!(make(), make());
    // Order and repetition of --resource do not matter.
    let a = binding("devs", "reader", false, &["pods", "secrets"], ns("app"), "");
    let b = binding(
        "devs",
        "reader",
        false,
        &["secrets", "pods", "pods"],
        ns("app"),
        "",
    );
    assert_eq!(a.objects(), b.objects());
}

#[test]
fn preset_role_names_are_stable_and_never_collide() {
    let name = |preset: &str, resources: &[&str]| {
        let resources: Vec<String> = resources.iter().map(|r| (*r).to_owned()).collect();
        RoleSpec::resolve(preset, None, &resources).unwrap().role_name()
    };
    assert_eq!(name("reader", &[]), "koidc-reader");
    assert_eq!(name("reader", &["pods"]), "koidc-reader");
    assert_eq!(name("writer", &[]), "koidc-writer");
    let multi = name("reader", &["pods", "deployments.apps", "configmaps"]);
    assert_eq!(
        multi,
        format!(
            "koidc-reader-{}",
            names::short_hash("configmaps\npods\ndeployments.apps")
        )
    );
    assert_ne!(multi, name("reader", &["pods", "deployments.apps"]));
    assert_ne!(name("reader", &["secrets"]), name("reader", &["configmaps"]));
    assert!(name("writer", &["secrets"]).starts_with("koidc-writer-"));
}

#[test]
fn a_namespaced_role_cannot_be_bound_cluster_wide() {
    let role = RoleSpec::resolve("deployer", None, &[]).unwrap();
    let err = Binding::new("devs", role, Scope::ClusterWide, "").unwrap_err();
    assert!(matches!(err, RbacError::NamespacedRoleClusterWide { .. }));
    assert!(err.to_string().contains("--role-kind cluster-role"), "{err}");
    // As a ClusterRole it is fine.
    let role = RoleSpec::resolve("deployer", Some(RoleKind::ClusterRole), &[]).unwrap();
    let b = Binding::new("devs", role, Scope::ClusterWide, "").unwrap();
    assert!(matches!(&b.objects()[0], RbacObject::ClusterRoleBinding(_)));
}

#[test]
fn role_resolution_follows_the_documented_order() {
    assert_eq!(
        RoleSpec::resolve("view", None, &[]).unwrap(),
        RoleSpec::BuiltinClusterRole("view".into())
    );
    assert_eq!(
        RoleSpec::resolve("admin", Some(RoleKind::ClusterRole), &[]).unwrap(),
        RoleSpec::BuiltinClusterRole("admin".into())
    );
    assert!(matches!(
        RoleSpec::resolve("reader", None, &[]).unwrap(),
        RoleSpec::Preset {
            preset: Preset::Reader,
            ..
        }
    ));
    assert_eq!(
        RoleSpec::resolve("reader", Some(RoleKind::ClusterRole), &[]).unwrap(),
        RoleSpec::ExistingClusterRole("reader".into())
    );
    assert_eq!(
        RoleSpec::resolve("my-role", None, &[]).unwrap(),
        RoleSpec::ExistingRole("my-role".into())
    );
}

#[test]
fn role_kind_takes_the_name_literally() {
    let kind = |role: &str, kind: RoleKind| RoleSpec::resolve(role, Some(kind), &[]);
    // The names the presets and built-ins shadow, as plain existing roles.
    for name in ["reader", "writer", "view"] {
        assert_eq!(
            kind(name, RoleKind::Role).unwrap(),
            RoleSpec::ExistingRole(name.into())
        );
    }
    assert_eq!(
        kind("writer", RoleKind::ClusterRole).unwrap(),
        RoleSpec::ExistingClusterRole("writer".into())
    );
    assert_eq!(
        kind("edit", RoleKind::ClusterRole).unwrap(),
        RoleSpec::BuiltinClusterRole("edit".into())
    );
    assert!(matches!(
        kind("writer", RoleKind::Preset).unwrap(),
        RoleSpec::Preset {
            preset: Preset::Writer,
            ..
        }
    ));
    let err = kind("view", RoleKind::Preset).unwrap_err();
    assert!(matches!(err, RbacError::NotAPreset { .. }), "{err}");
    assert!(err.to_string().contains("reader and writer"), "{err}");
    // Resources stay a preset's: a Role named reader takes none.
    assert!(matches!(
        RoleSpec::resolve("reader", Some(RoleKind::Role), &["pods".to_owned()]),
        Err(RbacError::ResourcesWithoutPreset { .. })
    ));
    // A Role named reader, cluster-wide: refused like any namespaced Role.
    let role = kind("reader", RoleKind::Role).unwrap();
    assert!(matches!(
        Binding::new("devs", role.clone(), Scope::ClusterWide, ""),
        Err(RbacError::NamespacedRoleClusterWide { .. })
    ));
    let objects = Binding::new("devs", role, ns("app"), "").unwrap().objects();
    assert_eq!(objects.len(), 1, "no preset Role is emitted");
    let RbacObject::RoleBinding(b) = &objects[0] else {
        panic!("{objects:?}")
    };
    assert_eq!(
        (b.role_ref.kind.as_str(), b.role_ref.name.as_str()),
        ("Role", "reader")
    );
}

#[test]
fn bindings_file_role_kind_matches_the_flag() {
    let from_file = bindings_from_yaml(
        "- {group: g, role: reader, roleKind: role, namespace: app}\n- {group: g, role: writer, role-kind: cluster-role, clusterWide: true}\n- {group: g, role: w, clusterRole: true, roleKind: cluster-role, namespace: app}\n",
        "f",
        "",
    )
    .unwrap();
    let stated = |role: &str, kind: RoleKind, scope: Scope| {
        Binding::new("g", RoleSpec::resolve(role, Some(kind), &[]).unwrap(), scope, "")
            .unwrap()
            .with_kind_stated(true)
    };
    assert_eq!(
        from_file,
        [
            stated("reader", RoleKind::Role, ns("app")),
            stated("writer", RoleKind::ClusterRole, Scope::ClusterWide),
            stated("w", RoleKind::ClusterRole, ns("app")),
        ]
    );
    let err = bindings_from_yaml(
        "- {group: g, role: r, clusterRole: true, roleKind: role, namespace: a}",
        "f",
        "",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("clusterRole: true contradicts roleKind: role"),
        "{err}"
    );
    let err =
        bindings_from_yaml("- {group: g, role: r, roleKind: rolle, namespace: a}", "f", "").unwrap_err();
    assert!(matches!(err, RbacError::ParseFile { .. }), "{err}");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let role = || RoleSpec::resolve("view", None, &[]).unwrap();
    assert!(matches!(
        Binding::new("", role(), ns("app"), ""),
        Err(RbacError::EmptyGroup)
    ));
    assert!(matches!(
        Binding::new("devs", role(), ns("App_1"), ""),
        Err(RbacError::InvalidNamespace { .. })
    ));
    assert!(matches!(
        Binding::new("de\nvs", role(), ns("app"), ""),
        Err(RbacError::InvalidGroup { .. })
    ));
    assert!(matches!(
        RoleSpec::resolve("a/b", None, &[]),
        Err(RbacError::InvalidRoleName { .. })
    ));
    assert!(matches!(
        RoleSpec::resolve("..", Some(RoleKind::ClusterRole), &[]),
        Err(RbacError::InvalidRoleName { .. })
    ));
    let res = |r: &str| RoleSpec::resolve("reader", None, &[r.to_owned()]);
    assert!(matches!(res("Pods"), Err(RbacError::InvalidResource { .. })));
    assert!(matches!(res("pods/"), Err(RbacError::InvalidResource { .. })));
    assert!(matches!(res("pods.Apps"), Err(RbacError::InvalidResource { .. })));
    assert!(matches!(res(""), Err(RbacError::InvalidResource { .. })));
    let err = res("deployments").unwrap_err();
    assert!(err.to_string().contains("deployments.apps"), "{err}");
    assert!(res("pods/log").is_ok() && res("*").is_ok() && res("deployments.apps/scale").is_ok());
    let err = RoleSpec::resolve("view", None, &["pods".to_owned()]).unwrap_err();
    assert!(matches!(err, RbacError::ResourcesWithoutPreset { .. }));
    for err in [
        RbacError::EmptyGroup,
        RbacError::InvalidNamespace {
            namespace: "A".into(),
        },
    ] {
        let msg = err.to_string();
        assert!(
            !msg.contains('\n') && !msg.ends_with('.') && msg.starts_with(char::is_lowercase),
            "{msg}"
        );
    }
}

#[test]
fn a_shared_preset_role_is_emitted_once() {
    let reader = binding("reader-group", "reader", false, &[], ns("application"), "");
    let also = binding("auditors", "reader", false, &[], ns("application"), "");
    let objects = objects_for(&[reader.clone(), also, reader]).unwrap();
    let kinds: Vec<_> = objects.iter().map(|o| (o.kind(), o.name().to_owned())).collect();
    assert_eq!(
        kinds,
        [
            ("Role", "koidc-reader".to_owned()),
            ("RoleBinding", "koidc:reader-group:koidc-reader".to_owned()),
            ("RoleBinding", "koidc:auditors:koidc-reader".to_owned()),
        ]
    );
}

#[test]
fn two_different_objects_with_one_name_are_a_conflict() {
    let a = binding("devs", "view", false, &[], ns("app"), "oidc:");
    let b = binding("devs", "view", false, &[], ns("app"), "other:");
    let err = objects_for(&[a, b]).unwrap_err();
    assert!(
        matches!(
            err,
            RbacError::Conflict {
                kind: "RoleBinding",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn bindings_file_gives_the_same_objects_as_the_command_line() {
    let text = "\
- {group: reader-group, role: reader, namespace: application}
- group: writer-group
  role: writer
  namespace: application
- {group: ops, role: view, clusterWide: true}
- {group: auditors, role: audit, cluster-role: true, cluster-wide: true}
- {group: devs, role: reader, namespace: dev, resources: [pods, pods/log]}
";
    let from_file = bindings_from_yaml(text, "rbac.yaml", "oidc:").unwrap();
    let by_hand = vec![
        binding("reader-group", "reader", false, &[], ns("application"), "oidc:"),
        binding("writer-group", "writer", false, &[], ns("application"), "oidc:"),
        binding("ops", "view", false, &[], Scope::ClusterWide, "oidc:"),
        binding("auditors", "audit", true, &[], Scope::ClusterWide, "oidc:"),
        binding("devs", "reader", false, &["pods", "pods/log"], ns("dev"), "oidc:"),
    ];
    assert_eq!(from_file, by_hand);
}

#[test]
fn the_first_bad_entry_of_a_bindings_file_is_reported_with_its_position() {
    let text = "\
- {group: a, role: view, namespace: app}
- {group: '', role: view, namespace: app}
- {group: c, role: view, namespace: BAD}
";
    let err = bindings_from_yaml(text, "rbac.yaml", "").unwrap_err();
    assert!(
        matches!(&err, RbacError::BadEntry { index: 2, reason, .. } if matches!(**reason, RbacError::EmptyGroup))
    );
    assert!(err.to_string().starts_with("rbac.yaml: entry 2"), "{err}");

    let scope = |text: &str| bindings_from_yaml(text, "f", "").unwrap_err().to_string();
    assert!(scope("- {group: a, role: view}").contains("give either `namespace: NS` or `clusterWide: true`"));
    assert!(scope("- {group: a, role: view, namespace: x, clusterWide: true}").contains("not both"));
    assert!(scope("- {group: a, role: deployer, clusterWide: true}").contains("ClusterRoleBinding"));
}

#[test]
fn malformed_bindings_files_are_refused() {
    let err = |text: &str| bindings_from_yaml(text, "rbac.yaml", "").unwrap_err();
    assert!(matches!(err(""), RbacError::EmptyFile { .. }));
    assert!(matches!(err("[]"), RbacError::EmptyFile { .. }));
    for bad in [
        "group: a\nrole: view",                         // not a list
        "- {group: a, role: view, namespaces: app}",    // typo in a key
        "- {group: a, namespace: app}",                 // no role
        "- {group: a, role: view, namespace: app",      // broken YAML
        "- {group: a, role: view, clusterWide: maybe}", // not a boolean
    ] {
        let e = err(bad);
        assert!(matches!(e, RbacError::ParseFile { .. }), "{bad}: {e}");
        assert!(!e.to_string().contains('\n'), "one line: {e}");
    }
}
