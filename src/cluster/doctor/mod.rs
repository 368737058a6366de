//! `koidc doctor`: walk the chain from the identity provider to RBAC and say which link is
//! broken, one line per check.
//!
//! The chain: issuer reachable, discovery valid, client accepted, redirect URI accepted, token
//! obtained, token claims (the username and groups claims the cluster maps), apiserver accepts
//! the token (`SelfSubjectReview`, what `kubectl auth whoami` asks), the apiserver's user and
//! groups (the prefixes the bindings must carry), RBAC bindings that mention the user's groups
//! (and near misses: the same group without the prefix, or with another one — the classic
//! "my groups don't work"), and the rights in a namespace (`SelfSubjectRulesReview`).
//!
//! This module judges answers; it does no I/O. [`kubeconfig`] finds the cluster, [`apiserver`]
//! asks it, and `commands::doctor` runs the checks in order, skipping those whose prerequisite
//! failed.

pub mod apiserver;
pub mod kubeconfig;

use serde_json::Value;

use crate::login::oidc::OidcError;
use crate::login::oidc::probe::AuthorizeAnswer;
use crate::text::shell_word;

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::authorization::v1::{ResourceRule, SubjectRulesReviewStatus};

use self::apiserver::{ApiError, BindingInfo};

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It works.
    Ok,
    /// It is broken.
    Fail,
    /// Not checked (a prerequisite failed, or the user may not look).
    Skip,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked (`client accepted`).
    pub name: String,
    /// The outcome.
    pub verdict: Verdict,
    /// What was found (ok, skip) or what is wrong and what to do (fail).
    pub detail: String,
}

impl Check {
    /// A passed check.
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Verdict::Ok, detail)
    }

    /// A failed check.
    pub fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Verdict::Fail, detail)
    }

    /// A check that was not run.
    pub fn skip(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Verdict::Skip, detail)
    }

    fn new(name: impl Into<String>, verdict: Verdict, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            verdict,
            detail: detail.into(),
        }
    }

    /// True for [`Verdict::Ok`].
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Ok
    }
}

/// `ok   NAME (DETAIL)`, `FAIL NAME: DETAIL`, `skip NAME (DETAIL)`, on one line.
impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let detail = crate::text::fold_whitespace(&self.detail);
        match (self.verdict, detail.is_empty()) {
            (Verdict::Ok, true) => write!(f, "ok   {}", self.name),
            (Verdict::Ok, false) => write!(f, "ok   {} ({detail})", self.name),
            (Verdict::Fail, _) => write!(f, "FAIL {}: {detail}", self.name),
            (Verdict::Skip, true) => write!(f, "skip {}", self.name),
            (Verdict::Skip, false) => write!(f, "skip {} ({detail})", self.name),
        }
    }
}

/// Check names, in the order they run.
pub mod names {
    /// The discovery URL answers.
    pub const REACHABLE: &str = "issuer reachable";
    /// Discovery document and signing keys are usable.
    pub const DISCOVERY: &str = "discovery valid";
    /// The authorization endpoint accepts the client.
    pub const CLIENT: &str = "client accepted";
    /// The authorization endpoint accepts the redirect URI.
    pub const REDIRECT: &str = "redirect URI accepted";
    /// A token came from the cache, a refresh or a login.
    pub const TOKEN: &str = "token obtained";
    /// The token has the claims the cluster maps.
    pub const CLAIMS: &str = "token claims";
    /// The apiserver authenticates the token.
    pub const APISERVER: &str = "apiserver accepts the token";
    /// The apiserver's username and groups carry the expected prefixes.
    pub const MAPPING: &str = "apiserver's user and groups";
    /// RBAC bindings name the user's groups.
    pub const BINDINGS: &str = "RBAC bindings";
    /// `rights in namespace NS`.
    pub fn rights(namespace: &str) -> String {
        format!("rights in namespace {namespace}")
    }
}

/// What the cluster is expected to do with a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectations {
    /// Claim of the username.
    pub username_claim: String,
    /// Prefix before usernames.
    pub username_prefix: String,
    /// Claim of the groups.
    pub groups_claim: String,
    /// Prefix before group names.
    pub groups_prefix: String,
    /// Where the groups prefix came from (`--groups-prefix`, the file `koidc setup` saved, the
    /// default), for messages.
    pub groups_prefix_origin: String,
    /// The namespace whose rights are checked.
    pub namespace: String,
}

/// "issuer reachable" and "discovery valid" from the result of discovery.
pub fn issuer_checks(issuer: &str, discovered: Result<(), &OidcError>) -> [Check; 2] {
    use names::{DISCOVERY, REACHABLE};
    match discovered {
        Ok(()) => [
            Check::ok(REACHABLE, issuer),
            Check::ok(DISCOVERY, "issuer matches, signing keys fetched"),
        ],
        Err(
            err @ (OidcError::Unreachable { .. }
            | OidcError::Proxy(_)
            | OidcError::PlainHttp { .. }
            | OidcError::ServerSpeaksHttps { .. }
            | OidcError::UntrustedCertificate { .. }
            | OidcError::Timeout { .. }
            | OidcError::Ca(_)
            | OidcError::HttpClient(_)
            | OidcError::InvalidIssuer { .. }),
        ) => [
            Check::fail(REACHABLE, err.to_string()),
            Check::skip(DISCOVERY, format!("needs: {REACHABLE}")),
        ],
        Err(err) => [
            Check::ok(REACHABLE, issuer),
            Check::fail(DISCOVERY, err.to_string()),
        ],
    }
}

/// "client accepted" and "redirect URI accepted" from what the authorization endpoint did.
pub fn authorize_checks(
    answer: Result<&AuthorizeAnswer, &OidcError>,
    client_id: &str,
    redirect_uri: &str,
) -> [Check; 2] {
    use names::{CLIENT, REDIRECT};
    let skip_redirect = || Check::skip(REDIRECT, format!("needs: {CLIENT}"));
    let answer = match answer {
        Ok(answer) => answer,
        Err(err) => {
            return [
                Check::fail(CLIENT, format!("cannot ask the authorization endpoint: {err}")),
                skip_redirect(),
            ];
        }
    };
    match answer {
        AuthorizeAnswer::LoginPage { url } => [
            Check::ok(
                CLIENT,
                format!("the identity provider shows its login page {url}"),
            ),
            Check::ok(REDIRECT, redirect_uri),
        ],
        AuthorizeAnswer::Elsewhere { url } => [
            Check::ok(
                CLIENT,
                format!("the identity provider sends the login on to {url}"),
            ),
            Check::ok(REDIRECT, redirect_uri),
        ],
        AuthorizeAnswer::Back { error: None, .. } => [
            Check::ok(CLIENT, "the identity provider answered at once"),
            Check::ok(REDIRECT, redirect_uri),
        ],
        AuthorizeAnswer::Back {
            error: Some(error),
            description,
        } => {
            let desc = description
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            let hint = match error.as_str() {
                "invalid_scope" => "; request only scopes the client may have (--scope)",
                "unauthorized_client" => "; allow the authorization code grant for the client",
                "access_denied" => "; the user or policy refused the login: check the client's assignments",
                _ => "; check the client's settings at the identity provider",
            };
            [
                Check::fail(
                    CLIENT,
                    format!(
                        "the identity provider refused the login request of client {client_id:?}: {error}{desc}{hint}"
                    ),
                ),
                Check::ok(REDIRECT, format!("{redirect_uri}; the refusal was sent to it")),
            ]
        }
        AuthorizeAnswer::ErrorPage { status, error, text } => {
            let about_redirect = crate::login::oidc::probe::about_redirect_uri(error.as_deref(), text);
            let page = crate::login::oidc::probe::describe_page(*status, None, text);
            if about_redirect {
                [
                    Check::ok(
                        CLIENT,
                        "known to the identity provider, which objected to the redirect URI",
                    ),
                    Check::fail(
                        REDIRECT,
                        format!(
                            "the identity provider refused {redirect_uri} ({page}); register it as a redirect URI of client {client_id:?}, or listen on a registered one (--listen)"
                        ),
                    ),
                ]
            } else {
                [
                    Check::fail(
                        CLIENT,
                        format!(
                            "the identity provider refused client {client_id:?} ({page}); check --client-id against the clients registered at the provider"
                        ),
                    ),
                    skip_redirect(),
                ]
            }
        }
    }
}

/// The groups in `claim` of a token's payload: None when the claim is missing, `Err` when it is
/// neither a string nor a list of strings.
pub fn claim_groups(claims: &Value, claim: &str) -> Option<Result<Vec<String>, ()>> {
    match claims.get(claim)? {
        Value::String(s) => Some(Ok(vec![s.clone()])),
        Value::Array(list) => Some(
            list.iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or(()))
                .collect(),
        ),
        _ => Some(Err(())),
    }
}

/// The token's groups (empty when missing or malformed).
fn token_groups(claims: &Value, claim: &str) -> Vec<String> {
    claim_groups(claims, claim)
        .and_then(Result::ok)
        .unwrap_or_default()
}

/// "token claims": the username claim is a non-empty string (and, for `email`, not marked
/// unverified), the groups claim a non-empty list.
pub fn claims_check(claims: &Value, expect: &Expectations, scopes: &[String]) -> Check {
    let lacks_scope = |scope: &str| !scopes.iter().any(|s| s == scope);
    let (uclaim, gclaim) = (&expect.username_claim, &expect.groups_claim);
    let mut problems = Vec::new();
    let mut found = Vec::new();
    match claims.get(uclaim) {
        Some(Value::String(s)) if !s.is_empty() => found.push(format!("{uclaim} {s:?}")),
        Some(_) => problems.push(format!(
            "the token's {uclaim:?} claim is not a non-empty string, and the apiserver takes the username from it: it will reject the token"
        )),
        None => {
            let hint = if uclaim == "email" && lacks_scope("email") {
                "the scopes koidc requests lack \"email\": add --scope email".to_owned()
            } else {
                "make the identity provider send it, or map the username from another claim (--username-claim; the apiserver's claimMappings.username)".to_owned()
            };
            problems.push(format!(
                "the token has no {uclaim:?} claim, which the apiserver takes the username from: it will reject the token; {hint}"
            ));
        }
    }
    if uclaim == "email" && claims.get("email_verified") == Some(&Value::Bool(false)) {
        problems.push(
            "the token says email_verified: false, and the apiserver rejects such tokens when the username comes from email"
                .into(),
        );
    }
    match claim_groups(claims, gclaim) {
        None => {
            let hint = if lacks_scope(gclaim) {
                format!("the scopes koidc requests lack {gclaim:?}: add --scope {gclaim}")
            } else {
                format!("make the identity provider put the groups in the ID token's {gclaim:?} claim")
            };
            problems.push(format!(
                "the token has no {gclaim:?} claim, so RBAC bindings for groups cannot match; {hint}"
            ));
        }
        Some(Err(())) => problems.push(format!(
            "the token's {gclaim:?} claim is neither a string nor a list of strings, so the apiserver cannot read groups from it"
        )),
        Some(Ok(groups)) if groups.is_empty() => problems.push(format!(
            "the token's {gclaim:?} claim is empty: the identity provider sends no group of yours, so RBAC bindings for groups cannot match"
        )),
        Some(Ok(groups)) => found.push(format!("{gclaim} [{}]", groups.join(", "))),
    }
    if problems.is_empty() {
        Check::ok(names::CLAIMS, found.join(", "))
    } else {
        Check::fail(names::CLAIMS, problems.join("; "))
    }
}

/// "apiserver accepts the token" when the `SelfSubjectReview` failed.
pub fn apiserver_failure(err: &ApiError, issuer: &str, client_id: &str, username_claim: &str) -> Check {
    match err.status() {
        Some(401) => Check::fail(
            names::APISERVER,
            format!(
                "the apiserver rejected the token (HTTP 401 Unauthorized): it does not trust tokens of issuer {issuer} for audience {client_id:?}, or a claim it needs is missing; check its AuthenticationConfiguration (jwt.issuer.url exactly {issuer}, audiences containing {client_id:?}, the issuer's CA, claimMappings.username.claim {username_claim:?}) and its log"
            ),
        ),
        _ => Check::fail(names::APISERVER, err.to_string()),
    }
}

/// "apiserver accepts the token" when it did.
pub fn apiserver_success(server: &str, user: &UserInfo) -> Check {
    Check::ok(
        names::APISERVER,
        format!(
            "{}: user {:?}, groups [{}]",
            server.trim_end_matches('/'),
            username(user),
            groups(user).join(", ")
        ),
    )
}

/// The prefix the apiserver put before `name` in `mapped`, when `mapped` ends with it.
fn prefix_of<'a>(mapped: &'a str, name: &str) -> Option<&'a str> {
    mapped.strip_suffix(name)
}

/// "apiserver's user and groups": the username and groups carry the expected prefixes.
pub fn mapping_check(user: &UserInfo, claims: &Value, expect: &Expectations) -> Check {
    let (username, user_groups) = (username(user), groups(user));
    let mut problems = Vec::new();
    if let Some(value) = claims.get(&expect.username_claim).and_then(Value::as_str) {
        let expected = format!("{}{value}", expect.username_prefix);
        if username != expected {
            problems.push(match prefix_of(username, value) {
                Some(actual) => format!(
                    "the apiserver puts the username prefix {actual:?} before {value:?}, not {:?} (--username-prefix): bindings to users named {expected:?} will not match",
                    expect.username_prefix
                ),
                None => format!(
                    "the apiserver calls you {:?}, not {expected:?}: it maps the username from another claim than {:?} (--username-claim)",
                    username, expect.username_claim
                ),
            });
        }
    }
    let groups = token_groups(claims, &expect.groups_claim);
    let missing: Vec<&String> = groups
        .iter()
        .filter(|g| !user_groups.contains(&format!("{}{g}", expect.groups_prefix)))
        .collect();
    if let Some(first) = missing.first() {
        let actual = user_groups.iter().find_map(|s| prefix_of(s, first));
        problems.push(match actual {
            Some(actual) => format!(
                "the apiserver's groups prefix is {actual:?}, not {:?} ({}): it calls your group {:?}, so bindings made for {:?} will not match; make the apiserver's claimMappings.groups.prefix and --groups-prefix agree",
                expect.groups_prefix,
                expect.groups_prefix_origin,
                format!("{actual}{first}"),
                format!("{}{first}", expect.groups_prefix),
            ),
            None => format!(
                "the apiserver does not show the token's group {first:?} among your groups [{}]: it reads groups from another claim than {:?} (--groups-claim)",
                user_groups.join(", "),
                expect.groups_claim
            ),
        });
    }
    if problems.is_empty() {
        Check::ok(
            names::MAPPING,
            format!(
                "username prefix {:?}, groups prefix {:?}, as expected",
                expect.username_prefix, expect.groups_prefix
            ),
        )
    } else {
        Check::fail(names::MAPPING, problems.join("; "))
    }
}

/// Groups every authenticated user has (and Kubernetes' own): not the IdP's.
fn is_system(name: &str) -> bool {
    name.starts_with("system:")
}

/// The `koidc bind-group` command that makes `binding` again for `group` with `prefix`.
fn rebind_command(binding: &BindingInfo, group: &str, prefix: &str) -> String {
    let mut cmd = format!(
        "koidc bind-group {} {}",
        shell_word(group),
        shell_word(&binding.role_name)
    );
    let builtin = crate::cluster::rbac::BUILTIN_CLUSTER_ROLES.contains(&binding.role_name.as_str());
    if binding.role_kind == "ClusterRole" && !builtin {
        cmd.push_str(" --cluster-role");
    }
    match &binding.namespace {
        Some(ns) => cmd.push_str(&format!(" -n {}", shell_word(ns))),
        None => cmd.push_str(" --cluster-wide"),
    }
    cmd.push_str(&format!(" --group-prefix {}", shell_word(prefix)));
    cmd
}

/// "RBAC bindings": which RoleBindings of the namespace and ClusterRoleBindings name the user
/// or the user's groups exactly as the apiserver does, and which nearly do.
pub fn bindings_check(
    bindings: &[BindingInfo],
    user: &UserInfo,
    claims: &Value,
    expect: &Expectations,
) -> Check {
    let idp_groups = token_groups(claims, &expect.groups_claim);
    let username = username(user);
    let kube_groups: Vec<&String> = groups(user).iter().filter(|g| !is_system(g)).collect();
    // The prefix the apiserver really uses, when the groups show it.
    let prefix = idp_groups
        .iter()
        .find_map(|g| kube_groups.iter().find_map(|k| prefix_of(k, g)))
        .unwrap_or(&expect.groups_prefix)
        .to_owned();
    let username_value = claims.get(&expect.username_claim).and_then(Value::as_str);
    let mut matches = Vec::new();
    let mut near = Vec::new();
    for b in bindings {
        for (kind, name) in &b.subjects {
            match kind.as_str() {
                "Group" if is_system(name) => {}
                "Group" if kube_groups.contains(&name) => matches.push(format!(
                    "{} binds group {name} to {} {}",
                    b.describe(),
                    b.role_kind,
                    b.role_name
                )),
                "Group" => {
                    let without = idp_groups.iter().find(|g| *g == name);
                    let other = idp_groups
                        .iter()
                        .find_map(|g| prefix_of(name, g).filter(|p| !p.is_empty()).map(|p| (g, p)));
                    let case = kube_groups.iter().find(|g| g.eq_ignore_ascii_case(name));
                    if let Some(g) = without.filter(|_| !prefix.is_empty()) {
                        near.push(format!(
                            "{} names the group {name:?} without the groups prefix {prefix:?} (the apiserver calls it {:?}); fix: {}",
                            b.describe(),
                            format!("{prefix}{g}"),
                            rebind_command(b, g, &prefix)
                        ));
                    } else if let Some((g, other)) = other {
                        near.push(format!(
                            "{} names the group {name:?} with the prefix {other:?}, but the apiserver's groups prefix is {prefix:?} (it calls the group {:?}); fix: {}",
                            b.describe(),
                            format!("{prefix}{g}"),
                            rebind_command(b, g, &prefix)
                        ));
                    } else if let Some(g) = case {
                        near.push(format!(
                            "{} names the group {name:?}, but the apiserver calls your group {g:?} (names are case-sensitive)",
                            b.describe()
                        ));
                    }
                }
                "User" if name == username => {
                    matches.push(format!("{} binds you to {} {}", b.describe(), b.role_kind, b.role_name))
                }
                "User" if username_value == Some(name.as_str()) && !username.is_empty() => near.push(format!(
                    "{} names the user {name:?} without the username prefix (the apiserver calls you {:?})",
                    b.describe(),
                    username
                )),
                _ => {}
            }
        }
    }
    let scope = format!(
        "no RoleBinding in namespace {} and no ClusterRoleBinding names {} or your groups [{}]",
        expect.namespace,
        username,
        kube_groups
            .iter()
            .map(|g| g.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    match (matches.is_empty(), near.is_empty()) {
        (false, true) => Check::ok(names::BINDINGS, matches.join("; ")),
        (false, false) => Check::ok(
            names::BINDINGS,
            format!(
                "{}; also a near miss: {}",
                matches.join("; "),
                near.join("; near miss: ")
            ),
        ),
        (true, true) => Check::fail(
            names::BINDINGS,
            format!(
                "{scope}; bind a group: koidc bind-group GROUP ROLE -n {}",
                shell_word(&expect.namespace)
            ),
        ),
        (true, false) => Check::fail(
            names::BINDINGS,
            format!("{scope}; near miss: {}", near.join("; near miss: ")),
        ),
    }
}

/// "RBAC bindings" when the user may not list them.
pub fn bindings_not_listable(username: &str) -> Check {
    Check::skip(
        names::BINDINGS,
        format!("not allowed to list bindings as {username}; --admin-kubeconfig lists them as an admin"),
    )
}

/// The username the apiserver derived (empty when it says none).
pub fn username(user: &UserInfo) -> &str {
    user.username.as_deref().unwrap_or_default()
}

/// The groups the apiserver derived, `system:authenticated` included.
fn groups(user: &UserInfo) -> &[String] {
    user.groups.as_deref().unwrap_or_default()
}

/// A list of a rule that may be absent (none).
fn list(items: &Option<Vec<String>>) -> &[String] {
    items.as_deref().unwrap_or_default()
}

/// True for the rules every authenticated user has (`system:basic-user`: the self reviews).
fn is_basic_rule(rule: &ResourceRule) -> bool {
    let resources = list(&rule.resources);
    !resources.is_empty()
        && resources.iter().all(|r| r.starts_with("selfsubject"))
        && list(&rule.api_groups)
            .iter()
            .all(|g| g == "authorization.k8s.io" || g == "authentication.k8s.io")
}

/// A rule as `verbs resources[.group] (names: ...)`.
fn describe_rule(rule: &ResourceRule) -> String {
    let verbs = if rule.verbs.iter().any(|v| v == "*") {
        "all verbs on".to_owned()
    } else {
        rule.verbs.join(", ")
    };
    let mut resources = Vec::new();
    for group in list(&rule.api_groups) {
        for resource in list(&rule.resources) {
            resources.push(match group.as_str() {
                "" => resource.clone(),
                "*" => format!("{resource} (all API groups)"),
                g => format!("{resource}.{g}"),
            });
        }
    }
    let mut text = format!("{verbs} {}", resources.join(", "));
    let names = list(&rule.resource_names);
    if !names.is_empty() {
        text.push_str(&format!(" (names: {})", names.join(", ")));
    }
    text
}

/// "rights in namespace NS" from a `SelfSubjectRulesReview`.
pub fn rules_check(status: &SubjectRulesReviewStatus, namespace: &str) -> Check {
    let name = names::rights(namespace);
    let rules: Vec<String> = status
        .resource_rules
        .iter()
        .filter(|r| !is_basic_rule(r))
        .map(describe_rule)
        .collect();
    let incomplete = if status.incomplete {
        format!(
            " (the list may be incomplete{})",
            status
                .evaluation_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )
    } else {
        String::new()
    };
    if rules.is_empty() {
        Check::fail(
            name,
            format!(
                "nothing besides what every authenticated user may do{incomplete}; bind one of your groups to a role in {namespace}"
            ),
        )
    } else {
        Check::ok(name, format!("{}{incomplete}", rules.join("; ")))
    }
}

/// The last line of the report.
pub fn summary(checks: &[Check]) -> String {
    let count = |v: Verdict| checks.iter().filter(|c| c.verdict == v).count();
    let (ok, fail, skip) = (count(Verdict::Ok), count(Verdict::Fail), count(Verdict::Skip));
    if fail == 0 && skip == 0 {
        format!("all {ok} checks passed")
    } else {
        format!("{ok} passed, {fail} failed, {skip} skipped")
    }
}

#[cfg(test)]
mod tests;
