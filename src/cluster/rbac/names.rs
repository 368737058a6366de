//! Kubernetes' naming rules, applied before anything is printed or applied, and koidc's own
//! deterministic names (see the naming section of [`super`]).
//!
//! The rules mirror the apiserver's validation: namespaces are DNS-1123 labels, RBAC object names
//! are path segment names (`ValidateRBACName`), resource API groups are DNS-1123 subdomains.

use sha2::{Digest as _, Sha256};

use super::RbacError;

/// Longest object name koidc produces or accepts (the DNS-1123 subdomain limit, which the
/// apiserver's path segment rule does not state but etcd keys and tools assume).
pub const MAX_NAME_LEN: usize = 253;

/// Length of the short stable hashes koidc appends to names (hex digits).
const HASH_LEN: usize = 8;

/// Checks a namespace: a DNS-1123 label (lowercase letters, digits, `-`; 1-63 characters;
/// starting and ending with a letter or digit).
pub fn validate_namespace(namespace: &str) -> Result<(), RbacError> {
    if is_dns1123_label(namespace) {
        Ok(())
    } else {
        Err(RbacError::InvalidNamespace {
            namespace: namespace.to_owned(),
        })
    }
}

/// Checks the name of a Role or ClusterRole the binding refers to: a path segment name as the
/// apiserver requires (no `/` or `%`, not `.` or `..`), at most 253 bytes, and — koidc's own
/// guard against typos — no control characters and no surrounding spaces.
pub fn validate_role_name(name: &str) -> Result<(), RbacError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name == "." || name == ".." {
        Some("Kubernetes does not allow `.` or `..` as a name")
    } else if name.contains('/') || name.contains('%') {
        Some("Kubernetes does not allow `/` or `%` in RBAC names")
    } else if name.len() > MAX_NAME_LEN {
        Some("it is longer than 253 bytes")
    } else if name.chars().any(char::is_control) {
        Some("it contains control characters")
    } else if name.trim() != name {
        Some("it starts or ends with a space")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(RbacError::InvalidRoleName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Checks an IdP group name: not empty, no control characters, no surrounding spaces.
pub fn validate_group(group: &str) -> Result<(), RbacError> {
    let reason = if group.is_empty() {
        return Err(RbacError::EmptyGroup);
    } else if group.chars().any(char::is_control) {
        "it contains control characters"
    } else if group.trim() != group {
        "it starts or ends with a space (write the group exactly as the IdP puts it in the token)"
    } else {
        return Ok(());
    };
    Err(RbacError::InvalidGroup {
        group: group.to_owned(),
        reason,
    })
}

/// Checks a groups prefix: any text without control characters (empty means none).
pub fn validate_group_prefix(prefix: &str) -> Result<(), RbacError> {
    if prefix.chars().any(char::is_control) {
        Err(RbacError::InvalidGroupPrefix {
            prefix: prefix.to_owned(),
        })
    } else {
        Ok(())
    }
}

/// A DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// A DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_LEN && s.split('.').all(is_dns1123_label)
}

/// The first [`HASH_LEN`] hex digits of SHA-256 of `input`: short, stable across runs, versions
/// and machines.
pub fn short_hash(input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    let mut hex = hex::encode(digest);
    hex.truncate(HASH_LEN);
    hex
}

/// The binding name `koidc:<group>:<role>`, made safe and unique.
///
/// Characters other than ASCII letters, digits and `-._:@` become `-`. When anything was
/// replaced, when the group itself contains `:` (which would make `koidc:a:b:c` ambiguous), or
/// when the name is longer than 253 bytes, the name is cut to fit and `-<hash>` of the
/// unaltered `koidc:<group>:<role>` is appended, so different inputs never share a name.
pub fn binding_name(group: &str, role: &str) -> String {
    let raw = format!("koidc:{group}:{role}");
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._:@".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name != raw || group.contains(':') || name.len() > MAX_NAME_LEN {
        // Sanitised names are ASCII, so any byte index is a char boundary.
        name.truncate(MAX_NAME_LEN - HASH_LEN - 1);
        name.push('-');
        name.push_str(&short_hash(&raw));
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_must_be_dns1123_labels() {
        for ok in ["default", "application", "a", "team-1", &"a".repeat(63)] {
            assert!(validate_namespace(ok).is_ok(), "{ok}");
        }
        for bad in ["", "App", "-a", "a-", "a.b", "a_b", "a b", &"a".repeat(64)] {
            assert!(
                matches!(validate_namespace(bad), Err(RbacError::InvalidNamespace { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn role_names_follow_the_path_segment_rule() {
        for ok in ["view", "system:aggregate-to-view", "Pod Reader", "a.b", "…"] {
            assert!(validate_role_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "100%", " view", "view\n", &"a".repeat(254)] {
            assert!(
                matches!(validate_role_name(bad), Err(RbacError::InvalidRoleName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn groups_must_be_non_empty_and_printable() {
        assert!(matches!(validate_group(""), Err(RbacError::EmptyGroup)));
        assert!(matches!(
            validate_group("devs\t"),
            Err(RbacError::InvalidGroup { .. })
        ));
        assert!(matches!(
            validate_group(" devs"),
            Err(RbacError::InvalidGroup { .. })
        ));
        assert!(validate_group("org/Team Devs@example.com").is_ok());
        assert!(validate_group_prefix("oidc:").is_ok());
        assert!(validate_group_prefix("").is_ok());
        assert!(validate_group_prefix("a\u{7}").is_err());
    }

    #[test]
    fn plain_binding_names_are_kept_as_is() {
        assert_eq!(binding_name("devs", "view"), "koidc:devs:view");
        assert_eq!(
            binding_name("a.b@example.com", "koidc-reader"),
            "koidc:a.b@example.com:koidc-reader"
        );
    }

    #[test]
    fn binding_names_with_rejected_characters_are_replaced_and_hashed() {
        let name = binding_name("org/team", "view");
        assert_eq!(
            name,
            format!("koidc:org-team:view-{}", short_hash("koidc:org/team:view"))
        );
        // The replaced name cannot collide with the group that really is called org-team.
        assert_ne!(name, binding_name("org-team", "view"));
        assert_ne!(binding_name("a%b", "view"), binding_name("a/b", "view"));
        assert!(validate_role_name(&name).is_ok());
    }

    #[test]
    fn a_colon_in_the_group_cannot_make_two_bindings_share_a_name() {
        assert_ne!(binding_name("a:b", "c"), binding_name("a", "b:c"));
        assert_eq!(binding_name("a", "b:c"), "koidc:a:b:c");
    }

    #[test]
    fn long_binding_names_are_cut_to_253_bytes_with_a_hash() {
        let long = "g".repeat(400);
        let name = binding_name(&long, "view");
        assert_eq!(name.len(), MAX_NAME_LEN);
        assert!(name.ends_with(&short_hash(&format!("koidc:{long}:view"))));
        assert_ne!(name, binding_name(&"g".repeat(401), "view"));
        assert!(validate_role_name(&name).is_ok());
    }

    #[test]
    fn short_hash_is_stable() {
        // SHA-256("pods") starts with these digits; a change would rename every hashed object.
        assert_eq!(short_hash("abc"), "ba7816bf");
    }
}
