//! Unit tests of the doctor's verdicts, on the answers Dex and kube-apiserver really give.

use serde_json::json;

use super::*;

fn expect(namespace: &str) -> Expectations {
    Expectations {
        username_claim: "email".into(),
        username_prefix: "oidc:".into(),
        groups_claim: "groups".into(),
        groups_prefix: "oidc:".into(),
        groups_prefix_origin: "the default".into(),
        namespace: namespace.into(),
    }
}

fn reader_claims() -> Value {
    json!({"iss": "https://i", "aud": "koidc", "email": "reader@example.com", "email_verified": true,
           "groups": ["reader-group"]})
}

fn user(username: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        username: Some(username.into()),
        groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
        ..UserInfo::default()
    }
}

fn reader() -> UserInfo {
    user(
        "oidc:reader@example.com",
        &["oidc:reader-group", "system:authenticated"],
    )
}

fn binding(namespace: Option<&str>, name: &str, role: (&str, &str), group: &str) -> BindingInfo {
    BindingInfo {
        kind: if namespace.is_some() {
            "RoleBinding"
        } else {
            "ClusterRoleBinding"
        },
        namespace: namespace.map(str::to_owned),
        name: name.into(),
        role_kind: role.0.into(),
        role_name: role.1.into(),
        subjects: vec![("Group".into(), group.into())],
    }
}

#[test]
fn lines_start_with_ok_fail_or_skip_and_stay_on_one_line() {
    assert_eq!(Check::ok("a b", "x\n y").to_string(), "ok   a b (x y)");
    assert_eq!(Check::ok("a", "").to_string(), "ok   a");
    assert_eq!(Check::fail("a", "broken").to_string(), "FAIL a: broken");
    assert_eq!(Check::skip("a", "needs: b").to_string(), "skip a (needs: b)");
}

#[test]
fn an_unreachable_issuer_fails_the_first_check_and_skips_discovery() {
    let err = OidcError::Unreachable {
        url: "https://127.0.0.1:1/dex/.well-known/openid-configuration".into(),
        reason: "Connection refused".into(),
    };
    let [reach, disc] = issuer_checks("https://127.0.0.1:1/dex", Err(&err));
    assert_eq!(reach.verdict, Verdict::Fail);
    assert_eq!(disc.to_string(), "skip discovery valid (needs: issuer reachable)");
    let err = OidcError::IssuerMismatch {
        expected: "https://a/".into(),
        discovered: "https://a".into(),
    };
    let [reach, disc] = issuer_checks("https://a/", Err(&err));
    assert!(reach.passed());
    assert!(
        disc.to_string()
            .starts_with("FAIL discovery valid: the discovery document names the issuer")
    );
}

#[test]
fn a_plain_http_endpoint_fails_discovery_valid_with_the_fix() {
    let err = OidcError::InsecureEndpoint {
        issuer: "https://idp.example.com".into(),
        member: "token_endpoint",
        url: "http://idp.example.com/token".into(),
    };
    let [reach, disc] = issuer_checks("https://idp.example.com", Err(&err));
    assert!(reach.passed(), "{reach}");
    let line = disc.to_string();
    assert!(
        line.starts_with("FAIL discovery valid: the discovery document of https://idp.example.com names token_endpoint http://idp.example.com/token, which is not https"),
        "{line}"
    );
    assert!(
        line.contains("configure the identity provider to publish https endpoints"),
        "{line}"
    );
}

#[test]
fn dex_refusing_an_unknown_client_fails_client_accepted() {
    let page = AuthorizeAnswer::ErrorPage {
        status: 404,
        error: None,
        text: "Not Found Invalid client_id.".into(),
    };
    let [client, redirect] = authorize_checks(Ok(&page), "wrong", "http://127.0.0.1:5/callback");
    assert_eq!(
        client.to_string(),
        "FAIL client accepted: the identity provider refused client \"wrong\" (HTTP 404 Not Found: Invalid client_id.); \
         check --client-id against the clients registered at the provider"
    );
    assert_eq!(redirect.verdict, Verdict::Skip);
}

#[test]
fn an_unregistered_redirect_uri_fails_only_the_redirect_check() {
    let page = AuthorizeAnswer::ErrorPage {
        status: 400,
        error: None,
        text: "Bad Request Unregistered redirect_uri.".into(),
    };
    let [client, redirect] = authorize_checks(Ok(&page), "koidc", "http://127.0.0.1:5/callback");
    assert!(client.passed());
    assert!(
        redirect.to_string().starts_with(
            "FAIL redirect URI accepted: the identity provider refused http://127.0.0.1:5/callback (HTTP 400"
        ),
        "{redirect}"
    );
}

#[test]
fn an_error_sent_back_to_the_redirect_uri_fails_the_client_but_proves_the_redirect_uri() {
    let back = AuthorizeAnswer::Back {
        error: Some("invalid_scope".into()),
        description: Some("Unrecognized scope(s) [\"foo\"]".into()),
    };
    let [client, redirect] = authorize_checks(Ok(&back), "koidc", "http://127.0.0.1:5/callback");
    assert!(
        client
            .to_string()
            .contains("invalid_scope: Unrecognized scope(s)"),
        "{client}"
    );
    assert!(client.to_string().contains("(--scope)"), "{client}");
    assert!(redirect.passed());
    let page = AuthorizeAnswer::LoginPage {
        url: "https://i/dex/auth/local/login".into(),
    };
    assert!(
        authorize_checks(Ok(&page), "koidc", "r")
            .iter()
            .all(Check::passed)
    );
}

#[test]
fn good_claims_pass_and_name_the_username_and_groups() {
    let check = claims_check(
        &reader_claims(),
        &expect("app"),
        &["email".into(), "groups".into()],
    );
    assert_eq!(
        check.to_string(),
        "ok   token claims (email \"reader@example.com\", groups [reader-group])"
    );
}

#[test]
fn a_token_without_groups_fails_and_points_at_the_missing_scope() {
    let mut claims = reader_claims();
    claims.as_object_mut().unwrap().remove("groups");
    let check = claims_check(&claims, &expect("app"), &["email".into()]);
    assert_eq!(
        check.to_string(),
        "FAIL token claims: the token has no \"groups\" claim, so RBAC bindings for groups cannot match; \
         the scopes koidc requests lack \"groups\": add --scope groups"
    );
    let with_scope = claims_check(&claims, &expect("app"), &["email".into(), "groups".into()]);
    assert!(
        with_scope
            .to_string()
            .contains("make the identity provider put the groups"),
        "{with_scope}"
    );
}

#[test]
fn unverified_email_and_missing_username_claim_fail() {
    let claims = json!({"email": "a@b", "email_verified": false, "groups": ["g"]});
    assert!(
        claims_check(&claims, &expect("x"), &[])
            .to_string()
            .contains("email_verified: false")
    );
    let claims = json!({"groups": ["g"]});
    let check = claims_check(&claims, &expect("x"), &[]).to_string();
    assert!(
        check.contains("no \"email\" claim") && check.contains("add --scope email"),
        "{check}"
    );
    let claims = json!({"email": "a@b", "groups": []});
    assert!(
        claims_check(&claims, &expect("x"), &[])
            .to_string()
            .contains("claim is empty")
    );
}

#[test]
fn the_apiserver_mapping_passes_with_the_expected_prefixes() {
    let check = mapping_check(&reader(), &reader_claims(), &expect("app"));
    assert_eq!(
        check.to_string(),
        "ok   apiserver's user and groups (username prefix \"oidc:\", groups prefix \"oidc:\", as expected)"
    );
}

#[test]
fn another_groups_prefix_on_the_apiserver_is_named() {
    let user = user(
        "oidc:reader@example.com",
        &["corp:reader-group", "system:authenticated"],
    );
    let check = mapping_check(&user, &reader_claims(), &expect("app")).to_string();
    assert!(
        check.starts_with("FAIL apiserver's user and groups: the apiserver's groups prefix is \"corp:\", not \"oidc:\" (the default)"),
        "{check}"
    );
    assert!(
        check.contains("it calls your group \"corp:reader-group\""),
        "{check}"
    );
}

#[test]
fn a_binding_without_the_prefix_is_a_near_miss_with_the_fixing_command() {
    let near = binding(
        Some("ns1"),
        "koidc:reader-group:koidc-reader",
        ("Role", "koidc-reader"),
        "reader-group",
    );
    let check = bindings_check(&[near], &reader(), &reader_claims(), &expect("ns1"));
    assert_eq!(
        check.to_string(),
        "FAIL RBAC bindings: no RoleBinding in namespace ns1 and no ClusterRoleBinding names oidc:reader@example.com \
         or your groups [oidc:reader-group]; near miss: RoleBinding ns1/koidc:reader-group:koidc-reader names the group \
         \"reader-group\" without the groups prefix \"oidc:\" (the apiserver calls it \"oidc:reader-group\"); \
         fix: koidc bind-group reader-group koidc-reader -n ns1 --group-prefix oidc:"
    );
}

#[test]
fn a_binding_with_another_prefix_is_a_near_miss_too() {
    let near = binding(None, "ops", ("ClusterRole", "view"), "corp:reader-group");
    let check = bindings_check(&[near], &reader(), &reader_claims(), &expect("ns1")).to_string();
    assert!(
        check.contains("names the group \"corp:reader-group\" with the prefix \"corp:\""),
        "{check}"
    );
    assert!(
        check.ends_with("fix: koidc bind-group reader-group view --cluster-wide --group-prefix oidc:"),
        "{check}"
    );
}

#[test]
fn matching_bindings_pass_and_system_groups_are_ignored() {
    let good = binding(
        Some("app"),
        "koidc:reader-group:koidc-reader",
        ("Role", "koidc-reader"),
        "oidc:reader-group",
    );
    let basic = binding(
        None,
        "system:basic-user",
        ("ClusterRole", "system:basic-user"),
        "system:authenticated",
    );
    let check = bindings_check(
        &[basic.clone(), good],
        &reader(),
        &reader_claims(),
        &expect("app"),
    );
    assert_eq!(
        check.to_string(),
        "ok   RBAC bindings (RoleBinding app/koidc:reader-group:koidc-reader binds group oidc:reader-group to Role koidc-reader)"
    );
    let none = bindings_check(&[basic], &reader(), &reader_claims(), &expect("app"));
    assert!(
        none.to_string()
            .ends_with("bind a group: koidc bind-group GROUP ROLE -n app"),
        "{none}"
    );
}

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> ResourceRule {
    let v = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
    ResourceRule {
        verbs: v(verbs),
        api_groups: Some(v(groups)),
        resources: Some(v(resources)),
        resource_names: None,
    }
}

#[test]
fn rights_leave_out_what_every_user_may_do() {
    let basic = vec![
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
        ),
        rule(&["create"], &["authentication.k8s.io"], &["selfsubjectreviews"]),
    ];
    let none = SubjectRulesReviewStatus {
        resource_rules: basic.clone(),
        ..Default::default()
    };
    assert_eq!(
        rules_check(&none, "other").to_string(),
        "FAIL rights in namespace other: nothing besides what every authenticated user may do; \
         bind one of your groups to a role in other"
    );
    let mut some = basic;
    some.push(rule(&["get", "list", "watch"], &[""], &["pods"]));
    some.push(rule(&["*"], &["apps"], &["deployments"]));
    let status = SubjectRulesReviewStatus {
        resource_rules: some,
        ..Default::default()
    };
    assert_eq!(
        rules_check(&status, "application").to_string(),
        "ok   rights in namespace application (get, list, watch pods; all verbs on deployments.apps)"
    );
}

#[test]
fn the_summary_counts_outcomes() {
    let all = [Check::ok("a", ""), Check::ok("b", "")];
    assert_eq!(summary(&all), "all 2 checks passed");
    let mixed = [Check::ok("a", ""), Check::fail("b", "x"), Check::skip("c", "")];
    assert_eq!(summary(&mixed), "1 passed, 1 failed, 1 skipped");
}
