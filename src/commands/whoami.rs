//! `koidc whoami`: the cached identity, read offline — claims, groups, expiry; never the token.
//!
//! With `--issuer`/`--client-id` (or a profile), every entry of that client whatever its scopes
//! (as `logout` selects them); without, every cached entry. Each entry shows its scopes and
//! profile, so two entries never look the same. `-o json` prints an object when the options name
//! a client that has exactly one entry, else a list (`[]` when nothing is cached at all).

use std::sync::Arc;

use anyhow::bail;
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::cli::{Format, WhoamiArgs};
use crate::clock::{Clock, relative, rfc3339};
use crate::config::{Identity, Machine};
use crate::login::cache::CacheKey;
use crate::login::sources::{self, github};
use crate::login::token::{Credential, IdTokenInfo};
use crate::printer::Printer;

/// Prints the cached identities of the selected issuer/client, or every cached identity.
pub fn run(args: &WhoamiArgs, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let printer = Printer::new(args.output.verbose);
    let identity = Identity::optional_from_flags(&args.identity, args.login.grant)?;
    let (_cache, store) = super::open_cache(&args.cache)?;
    let keys: Vec<CacheKey> = match &identity {
        Some(identity) => super::cached_keys_of(store.as_ref(), identity)?,
        None => {
            let mut keys = store.list()?;
            super::sort_keys(&mut keys);
            keys
        }
    };
    let now = clock.now();
    let mut found = Vec::new();
    for key in keys {
        let Some((tokens, meta)) = store.load_with_meta(&key)? else {
            continue;
        };
        // GitHub tokens are opaque: their entry's metadata describes them.
        let (text, mut value) = match sources::read_entry(tokens, &meta)? {
            Credential::GithubAccess {
                account, expires_at, ..
            } => (
                github::describe(&key.issuer, &account, expires_at, now),
                github::to_json(&key, &account, expires_at, now),
            ),
            Credential::IdToken { info, .. } => (
                describe(&info, now, key.machine.is_some()),
                to_json(&key, &info, now),
            ),
        };
        if let Some(object) = value.as_object_mut() {
            object.insert("profile".into(), json!(key.profile));
        }
        found.push((key, text, value));
    }
    if found.is_empty() {
        match identity {
            Some(id) if id.machine.is_some() => {
                bail!(
                    "no cached pipeline token for these options; `{} >/dev/null` gets one (a token from a file or a variable is never cached: it is read on every call)",
                    login_command(&id)
                )
            }
            Some(id) => bail!(
                "not logged in to {} as client {:?}; run `{}`",
                id.issuer,
                id.client_id,
                login_command(&id)
            ),
            // A script asking for everything cached gets the empty list.
            None if args.format == Format::Json => {
                printer.result("[]")?;
                return Ok(());
            }
            None => bail!("no cached identity; run `koidc login --issuer URL --client-id ID`"),
        }
    }
    match args.format {
        Format::Json => {
            let list: Vec<_> = found.iter().map(|(_, _, value)| value.clone()).collect();
            let out = if identity.is_some() && list.len() == 1 {
                list[0].clone()
            } else {
                json!(list)
            };
            printer.result(&serde_json::to_string_pretty(&out)?)?;
        }
        Format::Text => {
            let blocks: Vec<_> = found
                .iter()
                .map(|(key, text, _)| format!("{}{text}", header(key)))
                .collect();
            printer.report(&blocks.join("\n\n"))?;
        }
    }
    Ok(())
}

/// The lines that tell an entry apart from the others of its issuer: client, scopes, profile.
/// The login that makes `identity` show up here: its profile when it came from one (the cache
/// entry then belongs to that profile, and a login with the same issuer and client but no
/// profile is another entry), else its issuer and client.
fn login_command(identity: &Identity) -> String {
    use crate::text::shell_word;
    if let Some(machine) = &identity.machine {
        // A pipeline has no login: its next `get-token` fetches the token.
        return pipeline_command(identity, machine);
    }
    match &identity.profile {
        Some(profile) => format!("koidc login --profile {}", shell_word(profile)),
        None => format!(
            "koidc login --issuer {} --client-id {}",
            shell_word(&identity.issuer),
            shell_word(&identity.client_id)
        ),
    }
}

/// The `get-token` command line that fetches a pipeline's token.
fn pipeline_command(identity: &Identity, machine: &Machine) -> String {
    use crate::text::shell_word;
    let mut words = vec!["koidc".to_owned(), "get-token".to_owned(), "--grant".to_owned()];
    let exchange_at = |words: &mut Vec<String>| {
        words.extend([
            "--issuer".to_owned(),
            shell_word(&identity.issuer),
            "--client-id".to_owned(),
            shell_word(&identity.client_id),
        ]);
    };
    match machine {
        Machine::ClientCredentials { audience } => {
            words.push("client-credentials".into());
            exchange_at(&mut words);
            if let Some(aud) = audience {
                words.extend(["--audience".to_owned(), shell_word(aud)]);
            }
        }
        Machine::Workload {
            source,
            audience,
            exchange,
            ..
        } => {
            words.push("workload".into());
            words.extend(["--token-source".to_owned(), shell_word(&source.to_string())]);
            if let Some(aud) = audience {
                words.extend(["--audience".to_owned(), shell_word(aud)]);
            }
            if let Some(exchange) = exchange {
                exchange_at(&mut words);
                if let Some(connector) = &exchange.connector_id {
                    words.extend(["--connector-id".to_owned(), shell_word(connector)]);
                }
            }
        }
    }
    words.join(" ")
}

fn header(key: &CacheKey) -> String {
    let scopes = if key.scopes.is_empty() {
        "(none)".to_owned()
    } else {
        key.scopes.join(", ")
    };
    let profile = key
        .profile
        .as_ref()
        .map(|p| format!("profile:  {p}\n"))
        .unwrap_or_default();
    // A pipeline's entry: its grant, token source and audience (see `crate::config::Machine`).
    let pipeline = key
        .machine
        .as_ref()
        .map(|m| {
            let parts: Vec<String> = m.split('\n').map(|p| crate::text::one_line(p, 200)).collect();
            // The fields of `crate::config::Machine`'s key, named.
            let labels: &[&str] = match parts.first().map(String::as_str) {
                Some("workload") => &["", "token source ", "audience ", "connector ", "job "],
                _ => &["", "audience "],
            };
            let named: Vec<String> = parts
                .iter()
                .zip(labels.iter().chain(std::iter::repeat(&"")))
                .filter(|(part, _)| !part.is_empty())
                .map(|(part, label)| format!("{label}{part}"))
                .collect();
            format!("pipeline: {}\n", named.join(", "))
        })
        .unwrap_or_default();
    format!(
        "client:   {}\nscopes:   {scopes}\n{profile}{pipeline}",
        key.client_id
    )
}

/// Human-readable lines about an identity (used by `login` too).
pub fn describe(info: &IdTokenInfo, now: DateTime<Utc>, pipeline: bool) -> String {
    let mut lines = vec![format!("issuer:   {}", info.issuer)];
    if let Some(sub) = info.str_claim("sub") {
        lines.push(format!("subject:  {sub}"));
    }
    if let Some(email) = info.str_claim("email") {
        let verified = match info
            .claims
            .get("email_verified")
            .and_then(serde_json::Value::as_bool)
        {
            Some(true) => " (verified)",
            Some(false) => " (NOT verified)",
            None => "",
        };
        lines.push(format!("email:    {email}{verified}"));
    }
    for claim in ["preferred_username", "name"] {
        if let Some(v) = info.str_claim(claim) {
            lines.push(format!(
                "{:<9} {v}",
                format!("{}:", if claim == "name" { "name" } else { "username" })
            ));
        }
    }
    let groups = info.groups();
    lines.push(format!(
        "groups:   {}",
        if groups.is_empty() {
            // A pipeline's token has no groups of its own: the apiserver derives them.
            if pipeline {
                "(none in the token)".to_owned()
            } else {
                "(none; request the `groups` scope?)".to_owned()
            }
        } else {
            groups.join(", ")
        }
    ));
    lines.push(format!(
        "expires:  {} ({})",
        rfc3339(info.expiry),
        relative(info.expiry, now)
    ));
    lines.join("\n")
}

fn to_json(key: &CacheKey, info: &IdTokenInfo, now: DateTime<Utc>) -> serde_json::Value {
    json!({
        "issuer": info.issuer,
        "clientId": key.client_id,
        "scopes": key.scopes,
        "subject": info.str_claim("sub"),
        "email": info.str_claim("email"),
        "groups": info.groups(),
        "expiry": rfc3339(info.expiry),
        "expired": info.expiry <= now,
        "claims": info.claims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(profile: Option<&str>) -> Identity {
        Identity {
            issuer: "https://idp.example/dex".into(),
            client_id: "koidc".into(),
            scopes: Vec::new(),
            provider: crate::provider::ProviderKind::Dex,
            github: None,
            profile: profile.map(String::from),
            machine: None,
            audience: None,
            token_type: Default::default(),
            auth_params: Default::default(),
        }
    }

    #[test]
    fn the_login_hint_of_an_identity_from_a_profile_names_the_profile_whoami_reads() {
        assert_eq!(
            login_command(&identity(Some("work"))),
            "koidc login --profile work"
        );
        assert_eq!(
            login_command(&identity(None)),
            "koidc login --issuer https://idp.example/dex --client-id koidc"
        );
    }
}

#[cfg(test)]
mod pipeline_tests {
    use super::*;
    use crate::cli::{GrantArg, IdentityFlags};

    #[test]
    fn a_pipeline_without_a_cached_token_is_pointed_to_the_get_token_command_of_its_options() {
        let workload = IdentityFlags {
            audience: Some("https://k8s.example".into()),
            token_source: Some("env:CI JOB".into()),
            ..IdentityFlags::default()
        };
        // The variable name is refused; a valid one is written back as given.
        assert!(Identity::from_flags(&workload, Some(GrantArg::Workload)).is_err());
        let workload = IdentityFlags {
            token_source: Some("env:CI_JOB_JWT".into()),
            ..workload
        };
        let id = Identity::from_flags(&workload, Some(GrantArg::Workload)).unwrap();
        assert_eq!(
            login_command(&id),
            "koidc get-token --grant workload --token-source env:CI_JOB_JWT --audience https://k8s.example"
        );
        let exchange = IdentityFlags {
            issuer: Some("https://dex.example/dex".into()),
            client_id: Some("koidc".into()),
            connector_id: Some("github actions".into()),
            ..workload
        };
        let id = Identity::from_flags(&exchange, Some(GrantArg::Workload)).unwrap();
        assert_eq!(
            login_command(&id),
            "koidc get-token --grant workload --token-source env:CI_JOB_JWT --audience https://k8s.example \
             --issuer https://dex.example/dex --client-id koidc --connector-id 'github actions'"
        );
        let client = IdentityFlags {
            issuer: Some("https://idp.example".into()),
            client_id: Some("ci".into()),
            ..IdentityFlags::default()
        };
        let id = Identity::from_flags(&client, Some(GrantArg::ClientCredentials)).unwrap();
        assert_eq!(
            login_command(&id),
            "koidc get-token --grant client-credentials --issuer https://idp.example --client-id ci"
        );
        let key = id.cache_key();
        assert!(
            header(&key).contains("pipeline: client-credentials\n"),
            "{}",
            header(&key)
        );
    }
}
