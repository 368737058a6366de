//! Identity provider presets (`--provider auto|generic|dex|okta`): what a provider needs that the
//! user would otherwise have to know — scopes, fixed callback ports, the authorization endpoint
//! check — and error messages that name the provider's own settings.
//!
//! [`crate::config`] resolves the kind ([`ProviderKind::resolve`]) and applies the presets while it
//! validates the flags, so that the effective scopes are part of the cache key. Flags the user
//! gives explicitly win: a preset only adds scopes that are missing and only supplies callback
//! addresses when `--listen` was not given.
//!
//! Okta matches sign-in redirect URIs exactly, so koidc listens on fixed ports there (8000, then
//! 18000, as kubelogin does); it needs a custom authorization server (`/oauth2/default` or an id)
//! for a `groups` claim and refresh tokens; and its errors are mapped by [`explain`] to the admin
//! console setting that fixes them.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::login::loopback::LoopbackError;
use crate::login::oidc::OidcError;

/// The loopback ports koidc uses for Okta, in the order they are tried.
pub const OKTA_PORTS: [u16; 2] = [8000, 18000];

/// Which identity provider koidc talks to (after `auto` was resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProviderKind {
    /// Any OpenID Connect provider: no presets.
    #[default]
    Generic,
    /// Dex.
    Dex,
    /// Okta.
    Okta,
    /// GitHub's own OAuth login (not OpenID Connect; see [`crate::login::github`]). Never detected:
    /// only chosen with `--provider github`.
    Github,
}

impl ProviderKind {
    /// The kind chosen with `--provider`, or (for `auto`, `None`) the one [`ProviderKind::detect`]
    /// finds in the issuer URL.
    pub fn resolve(chosen: Option<ProviderKind>, issuer: &str) -> ProviderKind {
        chosen.unwrap_or_else(|| ProviderKind::detect(issuer))
    }

    /// Guesses the provider from the issuer URL: an Okta host (`*.okta.com`,
    /// `*.oktapreview.com`, `*.okta-emea.com`) is Okta, a path ending in `/dex` is Dex, anything
    /// else (or an unparsable URL) is generic.
    pub fn detect(issuer: &str) -> ProviderKind {
        let Ok(url) = url::Url::parse(issuer) else {
            return ProviderKind::Generic;
        };
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let host = host.trim_end_matches('.');
        if [".okta.com", ".oktapreview.com", ".okta-emea.com"]
            .iter()
            .any(|suffix| host.ends_with(suffix))
        {
            return ProviderKind::Okta;
        }
        if url.path().trim_end_matches('/').ends_with("/dex") {
            return ProviderKind::Dex;
        }
        ProviderKind::Generic
    }

    /// Scopes the preset requests besides `openid` and the user's own.
    ///
    /// Okta: `offline_access` (refresh tokens), `groups` (a custom scope that must exist on the
    /// authorization server, with a `groups` claim) and `email` (the apiserver's default username
    /// claim). Dex: `offline_access`, `groups`, `email`.
    pub fn preset_scopes(self) -> &'static [&'static str] {
        match self {
            ProviderKind::Generic => &[],
            ProviderKind::Dex => &["offline_access", "groups", "email"],
            ProviderKind::Okta => &["offline_access", "groups", "email"],
            ProviderKind::Github => &[crate::login::github::SCOPE],
        }
    }

    /// The callback addresses to try, in order, when `--listen` was not given: Okta's two
    /// registered ports, else any free port.
    pub fn default_listen(self) -> Vec<SocketAddr> {
        let at = |port| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        match self {
            ProviderKind::Okta => OKTA_PORTS.iter().map(|&p| at(p)).collect(),
            ProviderKind::Generic | ProviderKind::Dex | ProviderKind::Github => vec![at(0)],
        }
    }

    /// A one-line warning about the issuer, when the preset knows a problem with it: an Okta org
    /// authorization server (`https://ORG.okta.com`, no `/oauth2/...` path).
    pub fn issuer_warning(self, issuer: &str) -> Option<String> {
        if self != ProviderKind::Okta {
            return None;
        }
        let url = url::Url::parse(issuer).ok()?;
        if url.path().starts_with("/oauth2/") {
            return None;
        }
        let base = issuer.trim_end_matches('/');
        Some(format!(
            "{issuer} is Okta's org authorization server: groups and refresh tokens need a custom \
             authorization server, e.g. --issuer {base}/oauth2/default"
        ))
    }
}

/// The `http://127.0.0.1:PORT/callback` redirect URIs to register at Okta.
pub fn okta_redirect_uris() -> Vec<String> {
    OKTA_PORTS
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}{}", crate::login::loopback::CALLBACK_PATH))
        .collect()
}

/// Where in the login an OAuth error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The authorization endpoint (an error page, or a redirect back with `error=`).
    Authorize,
    /// The token endpoint, redeeming an authorization code.
    Token,
    /// The token endpoint, using a refresh token.
    Refresh,
    /// The device authorization endpoint or the device-code token polling.
    DeviceAuthorization,
}

/// An Okta error, with the Okta setting that fixes it. Built by [`explain`] and [`okta_error`].
#[derive(Debug, thiserror::Error)]
pub enum OktaError {
    /// Okta refused a requested scope: on a custom authorization server that is the `groups`
    /// scope unless an admin created it.
    #[error(
        "Okta refused the requested scopes ({error}{}); add a `groups` scope/claim on the \
         authorization server (Security > API > Authorization Servers > Scopes/Claims)",
        desc(.description)
    )]
    GroupsScope {
        /// The OAuth `error` code.
        error: String,
        /// Its description.
        description: Option<String>,
    },
    /// The redirect URI koidc used is not a sign-in redirect URI of the app.
    #[error(
        "Okta does not accept the redirect URI {redirect_uri}; register {} as sign-in redirect \
         URIs of the app{}",
        okta_redirect_uris().join(" and "),
        other_listen_hint(.redirect_uri)
    )]
    RedirectUri {
        /// The redirect URI koidc sent.
        redirect_uri: String,
    },
    /// PKCE is not allowed or not required for the app, or the app is a confidential one.
    #[error(
        "Okta refused the login ({error}{}); enable 'Require PKCE' / use a Native app (a public \
         client, client authentication none) or give koidc the client secret",
        desc(.description)
    )]
    Pkce {
        /// The OAuth `error` code.
        error: String,
        /// Its description.
        description: Option<String>,
    },
    /// The device authorization grant is not enabled for the app.
    #[error(
        "Okta refused the device login ({error}{}); enable the Device Authorization grant on the \
         app (Applications > the app > General > Grant type)",
        desc(.description)
    )]
    DeviceGrant {
        /// The OAuth `error` code.
        error: String,
        /// Its description.
        description: Option<String>,
    },
    /// The app is not allowed a grant type koidc uses.
    #[error(
        "Okta refused the grant ({error}{}); enable the Authorization Code and Refresh Token \
         grants on the app (Applications > the app > General > Grant type)",
        desc(.description)
    )]
    Grant {
        /// The OAuth `error` code.
        error: String,
        /// Its description.
        description: Option<String>,
    },
}

fn desc(d: &Option<String>) -> String {
    d.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
}

fn other_listen_hint(redirect_uri: &str) -> &'static str {
    if okta_redirect_uris().iter().any(|u| u == redirect_uri) {
        ""
    } else {
        " (or drop --listen so that koidc uses those ports)"
    }
}

/// The Okta error for an OAuth `error` (and description) seen at `stage`, or `None` when no
/// Okta setting explains it (the generic message then stands). `redirect_uri` is the one koidc
/// sent, when known. `has_client_secret` tells a public client from a confidential one.
pub fn okta_error(
    stage: Stage,
    error: &str,
    description: Option<&str>,
    redirect_uri: Option<&str>,
    has_client_secret: bool,
) -> Option<OktaError> {
    let text = description.unwrap_or_default().to_ascii_lowercase();
    let owned = |d: Option<&str>| d.map(str::to_owned);
    let mentions_redirect = text.contains("redirect_uri") || text.contains("redirect uri");
    let mentions_pkce =
        text.contains("pkce") || text.contains("code_challenge") || text.contains("code_verifier");
    match error {
        "invalid_scope" => Some(OktaError::GroupsScope {
            error: error.to_owned(),
            description: owned(description),
        }),
        "invalid_request" | "invalid_redirect_uri" if mentions_redirect && stage != Stage::Refresh => {
            redirect_uri.map(|r| OktaError::RedirectUri {
                redirect_uri: r.to_owned(),
            })
        }
        "unauthorized_client" if stage == Stage::DeviceAuthorization => Some(OktaError::DeviceGrant {
            error: error.to_owned(),
            description: owned(description),
        }),
        _ if mentions_pkce => Some(OktaError::Pkce {
            error: error.to_owned(),
            description: owned(description),
        }),
        "invalid_client" if !has_client_secret && stage != Stage::Refresh => Some(OktaError::Pkce {
            error: error.to_owned(),
            description: owned(description),
        }),
        "unauthorized_client" => Some(OktaError::Grant {
            error: error.to_owned(),
            description: owned(description),
        }),
        _ => None,
    }
}

/// Replaces an error of a login or refresh with the provider's own explanation when there is
/// one (only Okta has any); otherwise returns it unchanged.
///
/// Understands [`OidcError`] (token endpoint, device authorization and authorization preflight
/// errors) and
/// [`LoopbackError::Idp`] (an `error=` callback). `redirect_uri` is the one the login used, if
/// any; `has_client_secret` whether a client secret was configured.
pub fn explain(
    kind: ProviderKind,
    err: anyhow::Error,
    redirect_uri: Option<&str>,
    has_client_secret: bool,
) -> anyhow::Error {
    if kind != ProviderKind::Okta {
        return err;
    }
    let mapped = if let Some(e) = err.downcast_ref::<OidcError>() {
        match e {
            OidcError::TokenRequest { error, description } => okta_error(
                Stage::Token,
                error,
                description.as_deref(),
                redirect_uri,
                has_client_secret,
            ),
            OidcError::DeviceAuthorizationRefused { error, description } => okta_error(
                Stage::DeviceAuthorization,
                error,
                description.as_deref(),
                redirect_uri,
                has_client_secret,
            ),
            OidcError::AuthorizeRefused { error, description } => okta_error(
                Stage::Authorize,
                error,
                description.as_deref(),
                redirect_uri,
                has_client_secret,
            ),
            OidcError::AuthorizeErrorPage {
                error,
                text,
                redirect_uri: sent,
                ..
            } => okta_error(
                Stage::Authorize,
                error.as_deref().unwrap_or("invalid_request"),
                Some(text),
                Some(sent),
                has_client_secret,
            ),
            _ => None,
        }
    } else if let Some(LoopbackError::Idp { error, description }) = err.downcast_ref::<LoopbackError>() {
        okta_error(
            Stage::Authorize,
            error,
            description.as_deref(),
            redirect_uri,
            has_client_secret,
        )
    } else {
        None
    };
    match mapped {
        Some(okta) => anyhow::Error::new(okta),
        None => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn okta_hosts_are_detected_whatever_the_path() {
        for issuer in [
            "https://acme.okta.com",
            "https://acme.okta.com/oauth2/default",
            "https://acme.oktapreview.com/oauth2/aus1",
            "https://acme.okta-emea.com/",
            "https://ACME.OKTA.COM/oauth2/default",
        ] {
            assert_eq!(ProviderKind::detect(issuer), ProviderKind::Okta, "{issuer}");
        }
    }

    #[test]
    fn lookalike_hosts_are_not_okta() {
        for issuer in [
            "https://okta.com.evil.example",
            "https://evilokta.com",
            "https://acme.okta.community",
        ] {
            assert_eq!(ProviderKind::detect(issuer), ProviderKind::Generic, "{issuer}");
        }
    }

    #[test]
    fn dex_path_is_detected_and_other_issuers_are_generic() {
        assert_eq!(
            ProviderKind::detect("https://dex.example.com/dex"),
            ProviderKind::Dex
        );
        assert_eq!(
            ProviderKind::detect("http://127.0.0.1:5556/dex/"),
            ProviderKind::Dex
        );
        assert_eq!(
            ProviderKind::detect("https://dex.example.com"),
            ProviderKind::Generic
        );
        assert_eq!(
            ProviderKind::detect("https://x.example.com/dexter"),
            ProviderKind::Generic
        );
        assert_eq!(ProviderKind::detect("not a url"), ProviderKind::Generic);
    }

    #[test]
    fn an_explicit_choice_wins_over_detection() {
        assert_eq!(
            ProviderKind::resolve(Some(ProviderKind::Generic), "https://acme.okta.com"),
            ProviderKind::Generic
        );
        assert_eq!(
            ProviderKind::resolve(Some(ProviderKind::Okta), "http://127.0.0.1:1/oauth2/default"),
            ProviderKind::Okta
        );
        assert_eq!(
            ProviderKind::resolve(None, "https://acme.okta.com"),
            ProviderKind::Okta
        );
    }

    #[test]
    fn okta_listens_on_8000_then_18000_and_others_on_a_free_port() {
        let okta: Vec<String> = ProviderKind::Okta
            .default_listen()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(okta, ["127.0.0.1:8000", "127.0.0.1:18000"]);
        assert_eq!(ProviderKind::Dex.default_listen()[0].to_string(), "127.0.0.1:0");
        assert_eq!(
            okta_redirect_uris(),
            [
                "http://127.0.0.1:8000/callback",
                "http://127.0.0.1:18000/callback"
            ]
        );
    }

    #[test]
    fn org_authorization_server_gets_a_warning_custom_one_does_not() {
        let w = ProviderKind::Okta
            .issuer_warning("https://acme.okta.com")
            .unwrap();
        assert!(w.contains("https://acme.okta.com/oauth2/default"), "{w}");
        assert!(!w.contains('\n'));
        assert!(
            ProviderKind::Okta
                .issuer_warning("https://acme.okta.com/")
                .is_some()
        );
        assert!(
            ProviderKind::Okta
                .issuer_warning("https://acme.okta.com/oauth2/default")
                .is_none()
        );
        assert!(
            ProviderKind::Generic
                .issuer_warning("https://acme.okta.com")
                .is_none()
        );
    }

    #[test]
    fn okta_errors_name_the_setting_that_fixes_them() {
        let scope = okta_error(
            Stage::Authorize,
            "invalid_scope",
            Some("One or more scopes are not configured for the authorization server resource"),
            None,
            false,
        )
        .unwrap()
        .to_string();
        assert!(
            scope.contains("add a `groups` scope/claim on the authorization server"),
            "{scope}"
        );
        assert!(
            scope.contains("Security > API > Authorization Servers > Scopes/Claims"),
            "{scope}"
        );

        let redirect = okta_error(
            Stage::Authorize,
            "invalid_request",
            Some("The 'redirect_uri' parameter must be a Login redirect URI in the client app settings"),
            Some("http://127.0.0.1:9999/callback"),
            false,
        )
        .unwrap()
        .to_string();
        assert!(
            redirect.contains(
                "register http://127.0.0.1:8000/callback and http://127.0.0.1:18000/callback as sign-in redirect URIs of the app"
            ),
            "{redirect}"
        );
        assert!(redirect.contains("9999"), "{redirect}");
        assert!(redirect.contains("drop --listen"), "{redirect}");

        let pkce = okta_error(
            Stage::Token,
            "invalid_request",
            Some("PKCE code verifier is required when the token endpoint authentication method is 'NONE'"),
            None,
            false,
        )
        .unwrap()
        .to_string();
        assert!(
            pkce.contains("enable 'Require PKCE' / use a Native app"),
            "{pkce}"
        );

        let confidential = okta_error(Stage::Token, "invalid_client", None, None, false).unwrap();
        assert!(matches!(confidential, OktaError::Pkce { .. }));
        assert!(okta_error(Stage::Token, "invalid_client", None, None, true).is_none());

        let device = okta_error(
            Stage::DeviceAuthorization,
            "unauthorized_client",
            None,
            None,
            false,
        )
        .unwrap()
        .to_string();
        assert!(
            device.contains("enable the Device Authorization grant on the app"),
            "{device}"
        );

        let grant = okta_error(Stage::Refresh, "unauthorized_client", None, None, false).unwrap();
        assert!(matches!(grant, OktaError::Grant { .. }));

        assert!(okta_error(Stage::Refresh, "invalid_grant", Some("expired"), None, false).is_none());
        assert!(okta_error(Stage::Authorize, "access_denied", None, None, false).is_none());
    }

    #[test]
    fn explain_maps_okta_errors_and_leaves_other_providers_alone() {
        let callback = || {
            anyhow::Error::new(LoopbackError::Idp {
                error: "invalid_scope".into(),
                description: Some("One or more scopes are not configured".into()),
            })
        };
        let okta = explain(ProviderKind::Okta, callback(), None, false).to_string();
        assert!(okta.contains("`groups` scope/claim"), "{okta}");
        let generic = explain(ProviderKind::Generic, callback(), None, false).to_string();
        assert!(
            generic.starts_with("the identity provider refused the login"),
            "{generic}"
        );
        let dex = explain(ProviderKind::Dex, callback(), None, false).to_string();
        assert_eq!(dex, generic);

        let token = anyhow::Error::new(OidcError::TokenRequest {
            error: "invalid_grant".into(),
            description: Some("authorization code is invalid".into()),
        });
        let kept = explain(ProviderKind::Okta, token, None, false).to_string();
        assert!(
            kept.starts_with("the token endpoint refused the request"),
            "{kept}"
        );

        let page = anyhow::Error::new(OidcError::AuthorizeErrorPage {
            status: 400,
            error: Some("invalid_request".into()),
            text: "Description: The 'redirect_uri' parameter must be a Login redirect URI".into(),
            redirect_uri: "http://127.0.0.1:9999/callback".into(),
            client_id: "0oa1".into(),
            about_redirect: true,
        });
        let mapped = explain(ProviderKind::Okta, page, None, false).to_string();
        assert!(mapped.contains("sign-in redirect URIs of the app"), "{mapped}");
        assert!(mapped.contains("http://127.0.0.1:9999/callback"), "{mapped}");
    }
}
