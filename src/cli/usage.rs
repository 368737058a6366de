//! What koidc prints for a command line it cannot parse (clap's usage errors), so that they
//! look like every other koidc error: one line `koidc: <what is wrong>; try `koidc CMD --help``,
//! exit status 2 (main.rs prints it). `--help` and `--version` keep clap's own output (stdout,
//! exit 0); `koidc` alone prints a short usage.
//!
//! Two things are added to clap's message. Options of kubelogin (which most koidc users come
//! from) get their koidc equivalent, or the reason koidc has none (`--insecure-skip-tls-verify`
//! is refused: koidc always verifies TLS). And no value that may be a secret is ever shown: the
//! kubelogin hints name options only, and a value of `--client-secret` that clap took for an
//! option (it starts with `-`) is replaced by advice.
//!
//! Only the error path runs this: a command line that parses never gets here, so `get-token`'s
//! warm path is unchanged.

use std::ffi::OsString;

use clap::CommandFactory as _;
use clap::error::ErrorKind;

use super::Cli;

/// kubelogin's options (of `kubelogin get-token`, as kubeconfigs written for it pass them), the
/// koidc option a command must have for the hint to apply there (its long name), and the hint
/// that follows the kubelogin option's name.
#[rustfmt::skip]
const KUBELOGIN: &[(&str, &str, &str)] = &[
    ("--oidc-issuer-url", "issuer", "is --issuer in koidc"),
    ("--oidc-client-id", "client-id", "is --client-id in koidc"),
    ("--oidc-client-secret", "client-id", ": koidc reads the client secret from the KOIDC_CLIENT_SECRET variable (the kubeconfig's exec.env)"),
    ("--oidc-extra-scope", "scope", "is --scope in koidc"),
    ("--oidc-redirect-url", "listen", ": koidc's redirect URI is http://ADDR/callback for --listen ADDR; register that one at the identity provider"),
    ("--oidc-use-access-token", "token-type", "is --token-type access in koidc (with --audience, the access tokens' audience)"),
    ("--oidc-request-header", "request-header", "is --request-header NAME=VALUE in koidc"),
    ("--oidc-pkce-method", "pkce", ": koidc always uses PKCE with S256 (--pkce false only for a provider that refuses it)"),
    ("--oidc-auth-request-extra-params", "auth-param", "is --auth-param KEY=VALUE in koidc (repeatable)"),
    ("--token-cache-dir", "cache-dir", "is --cache-dir in koidc"),
    ("--token-cache-storage", "cache", "is --cache in koidc (keyring, file or none; kubelogin's disk is file)"),
    ("--insecure-skip-tls-verify", "certificate-authority", "is refused: koidc always verifies the identity provider's TLS certificate; trust a private CA with --certificate-authority FILE"),
    ("--tls-renegotiation-once", "issuer", "has no koidc equivalent: koidc's TLS never renegotiates"),
    ("--tls-renegotiation-freely", "issuer", "has no koidc equivalent: koidc's TLS never renegotiates"),
    ("--grant-type", "grant", "is --grant in koidc (authcode-keyboard is --grant authcode --paste)"),
    ("--listen-address", "listen", "is --listen in koidc"),
    ("--skip-open-browser", "no-browser", "is --no-browser in koidc"),
    ("--authentication-timeout-sec", "timeout", "is --timeout in koidc"),
    ("--local-server-cert", "listen", "has no koidc equivalent: the login callback is plain http on a loopback address (RFC 8252)"),
    ("--local-server-key", "listen", "has no koidc equivalent: the login callback is plain http on a loopback address (RFC 8252)"),
    ("--open-url-after-authentication", "issuer", "has no koidc equivalent"),
    ("--v", "verbose", "is -v in koidc (repeat it for more)"),
];

/// Options whose value is a secret (koidc's and kubelogin's): their values are never shown.
const SECRET_OPTIONS: [&str; 3] = ["--client-secret", "--oidc-client-secret", "--password"];

/// What to print on stderr after `koidc: ` for `err`, raised while parsing `args` (`args[0]` is
/// the program), with exit status 2: one line, but for the short usage of `koidc` alone. `None`
/// for `--help` and `--version`, whose output clap prints itself (stdout, exit 0).
pub fn error_line(err: &clap::Error, args: &[OsString]) -> Option<String> {
    if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        return None;
    }
    let bin = crate::printer::command_name(args.first().map(|a| a.as_os_str()));
    let command = Cli::command();
    let sub = args
        .get(1)
        .and_then(|a| a.to_str())
        .and_then(|name| command.find_subcommand(name));
    if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return Some(match sub {
            None => short_usage(&command, bin),
            Some(_) => err.render().to_string().trim_end().to_owned(),
        });
    }
    let hint = match sub {
        Some(sub) => format!("try `{bin} {} --help`", sub.get_name()),
        None => format!("try `{bin} --help`"),
    };
    let rest = args.get(2..).unwrap_or_default();
    if err.kind() == ErrorKind::UnknownArgument
        && let Some(sub) = sub
    {
        if let Some(option) = dash_secret(rest, sub) {
            return Some(format!(
                "the value of {option} starts with '-', so it was taken for an option (not shown); write \
                 {option}=VALUE, or better set KOIDC_CLIENT_SECRET; {hint}"
            ));
        }
        if verbosity_level(rest) && sub.get_arguments().any(|a| a.get_long() == Some("verbose")) {
            return Some(format!(
                "-v takes no number in koidc (kubelogin's -v N is -v or -vv): give -v for more detail, -vv for more still; {hint}"
            ));
        }
        let tips = kubelogin_tips(rest, sub);
        if !tips.is_empty() {
            return Some(format!(
                "kubelogin's options are not koidc's: {}; {hint}",
                tips.join("; ")
            ));
        }
    }
    let mut text = clap_message(&err.render().to_string());
    for secret in secret_values(rest) {
        text = text.replace(&secret, "(not shown)");
    }
    Some(format!("{text}; {hint}"))
}

/// `koidc` without a command: the usage line and the commands, with where to read more.
fn short_usage(command: &clap::Command, bin: &str) -> String {
    let names: Vec<&str> = command
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(clap::Command::get_name)
        .collect();
    format!(
        "no command given; usage: {bin} <COMMAND> [OPTIONS]\ncommands: {}\n`{bin} --help` says what each does, \
         `{bin} <COMMAND> --help` shows its options",
        names.join(", ")
    )
}

/// clap's rendered error on one line: the message (without `error: `), its indented
/// continuation lines, then each `tip:`; the usage and "For more information" lines are left out
/// (the caller adds where the options are).
fn clap_message(rendered: &str) -> String {
    let mut message = String::new();
    let mut tips = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if line.is_empty() {
            continue;
        }
        if line.starts_with("tip:") {
            tips.push(line);
        } else {
            if !message.is_empty() {
                message.push(' ');
            }
            message.push_str(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    let line = std::iter::once(message.as_str())
        .chain(tips)
        .collect::<Vec<_>>()
        .join("; ");
    // clap quotes the arguments as given: no terminal control sequence gets through.
    crate::text::single_line(&crate::text::fold_whitespace(&line))
}

/// The option (`--client-secret`) of `sub` whose value, given as the next argument, starts with
/// `-`: clap then takes the value for an unknown option and would show it.
fn dash_secret(args: &[OsString], sub: &clap::Command) -> Option<&'static str> {
    args.windows(2).find_map(|pair| {
        let option = SECRET_OPTIONS.iter().find(|o| pair[0] == **o)?;
        let takes_it = sub
            .get_arguments()
            .any(|a| a.get_long().is_some_and(|l| Some(l) == option.strip_prefix("--")));
        (takes_it && pair[1].to_string_lossy().starts_with('-')).then_some(*option)
    })
}

/// The values given to [`SECRET_OPTIONS`] (`--opt VALUE` or `--opt=VALUE`), at least 3
/// characters long (shorter ones cannot be told apart from the words of a message).
fn secret_values(args: &[OsString]) -> Vec<String> {
    let mut values = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        let arg = arg.to_string_lossy();
        for option in SECRET_OPTIONS {
            if arg == option {
                values.extend(args.get(i + 1).map(|v| v.to_string_lossy().into_owned()));
            } else if let Some(value) = arg.strip_prefix(option).and_then(|v| v.strip_prefix('=')) {
                values.push(value.to_owned());
            }
        }
    }
    values.retain(|v| v.chars().count() >= 3);
    values
}

/// Whether `args` give `-v` a number as kubelogin's `-v N` does (`-v 1`, `-v1`, `-vv2`, `-v=1`):
/// clap then reports the number as an unexpected argument.
fn verbosity_level(args: &[OsString]) -> bool {
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    args.iter().enumerate().any(|(i, arg)| {
        let Some(arg) = arg.to_str() else { return false };
        let Some(vs) = arg.strip_prefix('-').filter(|v| v.starts_with('v')) else {
            return false;
        };
        let level = vs.trim_start_matches('v');
        let level = level.strip_prefix('=').unwrap_or(level);
        if level.is_empty() {
            args.get(i + 1).and_then(|n| n.to_str()).is_some_and(number)
        } else {
            number(level)
        }
    })
}

/// Why kubelogin's password-grant options (`--grant-type password`, `--username`, `--password`)
/// are refused; said once however many of them were given.
const PASSWORD_GRANT: &str = "koidc does not use the password grant, which would hand it your password; log in in the browser, or with --grant device-code";

/// One hint per kubelogin option in `args` (names only, never values) that `sub` has an
/// equivalent for (or refuses), in the order given. Only for the commands that log in to an
/// identity provider (they have `--issuer`), as kubelogin does.
fn kubelogin_tips(args: &[OsString], sub: &clap::Command) -> Vec<String> {
    let mut tips: Vec<String> = Vec::new();
    if !sub.get_arguments().any(|a| a.get_long() == Some("issuer")) {
        return tips;
    }
    // The password-grant options given, and where their one tip goes.
    let mut password: Vec<&str> = Vec::new();
    let mut password_at = None;
    for (i, arg) in args.iter().enumerate() {
        let Some(arg) = arg.to_str() else { continue };
        if arg == "--" {
            break;
        }
        let (name, value) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (arg, args.get(i + 1).and_then(|v| v.to_str())),
        };
        let refused = match name {
            "--grant-type" if value == Some("password") => Some("--grant-type password"),
            "--username" | "--password" => Some(name),
            _ => None,
        };
        if let Some(refused) = refused {
            password_at.get_or_insert(tips.len());
            if !password.contains(&refused) {
                password.push(refused);
            }
            continue;
        }
        let Some((option, anchor, hint)) = KUBELOGIN.iter().find(|(k, _, _)| *k == name) else {
            continue;
        };
        if !sub.get_arguments().any(|a| a.get_long() == Some(*anchor)) {
            continue;
        }
        let tip = if hint.starts_with(':') {
            format!("{option}{hint}")
        } else {
            format!("{option} {hint}")
        };
        if !tips.contains(&tip) {
            tips.push(tip);
        }
    }
    if let Some(at) = password_at {
        let (last, rest) = password.split_last().unwrap_or((&"", &[]));
        let names = if rest.is_empty() {
            format!("{last} is")
        } else {
            format!("{} and {last} are", rest.join(", "))
        };
        tips.insert(at, format!("{names} refused: {PASSWORD_GRANT}"));
    }
    tips
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn line(list: &[&str]) -> Option<String> {
        let args = args(list);
        let err = Cli::try_parse_full(args.clone()).expect_err("a usage error");
        error_line(&err, &args)
    }

    #[test]
    fn the_password_grant_is_refused_once_for_all_of_kubelogins_options_that_ask_for_it() {
        let got = line(&[
            "koidc",
            "get-token",
            "--issuer=https://x",
            "--grant-type",
            "password",
            "--username",
            "jane",
            "--password",
            "hunter2",
        ])
        .unwrap();
        assert_eq!(
            got,
            "kubelogin's options are not koidc's: --grant-type password, --username and --password are \
             refused: koidc does not use the password grant, which would hand it your password; log in in \
             the browser, or with --grant device-code; try `koidc get-token --help`"
        );
        assert!(!got.contains("hunter2") && !got.contains("jane"));
    }

    #[test]
    fn every_kubelogin_hint_names_an_option_koidc_has() {
        let command = Cli::command();
        let login = command.find_subcommand("login").unwrap();
        for (option, anchor, hint) in KUBELOGIN {
            assert!(
                login.get_arguments().any(|a| a.get_long() == Some(*anchor)),
                "{option}: koidc login has no --{anchor}"
            );
            assert!(
                !login
                    .get_arguments()
                    .any(|a| Some(*option) == a.get_long().map(|l| format!("--{l}")).as_deref()),
                "{option} is koidc's own option too"
            );
            // Every koidc option a hint names exists.
            for word in hint
                .split([' ', ',', ';', '(', ')', '`'])
                .filter(|w| w.starts_with("--"))
            {
                let word = word.trim_start_matches('-');
                assert!(
                    login.get_arguments().any(|a| a.get_long() == Some(word)),
                    "{option}: the hint names --{word}, which koidc login does not have"
                );
            }
        }
    }

    #[test]
    fn kubelogin_hints_are_for_the_commands_that_log_in() {
        let webhook = line(&["koidc", "webhook", "--insecure-skip-tls-verify"]).unwrap();
        assert!(
            webhook.starts_with("unexpected argument '--insecure-skip-tls-verify' found; ")
                && webhook.ends_with("; try `koidc webhook --help`")
                && !webhook.contains("kubelogin"),
            "{webhook}"
        );
        assert!(
            line(&["koidc", "setup", "--insecure-skip-tls-verify"])
                .unwrap()
                .starts_with("kubelogin's options are not koidc's: --insecure-skip-tls-verify is refused")
        );
    }

    #[test]
    fn help_and_version_are_left_to_clap() {
        assert_eq!(line(&["koidc", "--help"]), None);
        assert_eq!(line(&["koidc", "login", "--version"]), None);
    }

    #[test]
    fn a_secret_value_is_replaced_wherever_clap_would_show_it() {
        assert_eq!(
            secret_values(&args(&[
                "--client-secret",
                "abc-def",
                "--password=hunter2",
                "--oidc-client-secret=x"
            ])),
            ["abc-def", "hunter2"]
        );
        let shown = line(&["koidc", "login", "--client-secret", "-sekrit"]).unwrap();
        assert_eq!(
            shown,
            "the value of --client-secret starts with '-', so it was taken for an option (not shown); write \
             --client-secret=VALUE, or better set KOIDC_CLIENT_SECRET; try `koidc login --help`"
        );
    }

    #[test]
    fn an_argument_with_control_characters_stays_on_one_printable_line() {
        let shown = line(&["koidc", "login", "--x\u{7}\u{1b}[2J\u{9b}\nline\r"]).unwrap();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(
            shown.starts_with("unexpected argument '--x")
                && shown.ends_with("found; try `koidc login --help`"),
            "{shown:?}"
        );
        assert_eq!(clap_message("error: a\u{7}b\u{1b}[2J\n  c"), "a?b?[2J c");
    }

    #[test]
    fn as_kubectl_koidc_the_hint_names_kubectl_koidc() {
        assert_eq!(
            line(&["/usr/local/bin/kubectl-koidc", "whoami", "--bogus"]).unwrap(),
            "unexpected argument '--bogus' found; try `kubectl koidc whoami --help`"
        );
    }
}
