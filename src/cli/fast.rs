//! `koidc get-token`'s options parsed without clap, for the call kubectl makes on every command.
//!
//! Building clap's description of the command line (even of get-token alone) and matching the
//! arguments against it is about half of the instructions a cached `get-token` executes. This
//! parser knows get-token's options only, in the forms a kubeconfig writes them (`--name value`,
//! `--name=value`, `-v`), and their `KOIDC_*` variables. It gives up (`None`) on anything else —
//! an unknown or repeated option, a value that starts with `-` or is empty, `--help`, a set
//! boolean variable, the deprecated `--client-secret` (clap's path warns about it) — and the
//! caller then runs clap, which accepts or reports it exactly as
//! before. Whenever it does answer, the answer equals clap's (the tests below check this against
//! clap for thousands of command lines and environments), so which parser ran never shows.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::ValueEnum;

use super::options::{CLIENT_SECRET, FORCE_REFRESH, Kind, OPTIONS as OPTS};
use super::{CacheFlags, GetTokenArgs, GithubFlags, IdentityFlags, LoginFlags, OutputFlags};

/// Parses the arguments after `get-token` (`args`) with the variables `env` gives; `None`
/// whenever clap must decide. An option given neither on the command line nor in a variable is
/// `None`, as clap leaves it.
pub(super) fn parse_get_token(
    args: &[OsString],
    env: impl Fn(&str) -> Option<OsString>,
) -> Option<GetTokenArgs> {
    let mut values: [Option<Vec<String>>; OPTS.len()] = Default::default();
    let mut verbose: u8 = 0;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let arg = arg.to_str()?;
        if let Some(vs) = arg
            .strip_prefix('-')
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b == b'v'))
        {
            verbose = verbose.checked_add(u8::try_from(vs.len()).ok()?)?;
            continue;
        }
        if arg == "--verbose" {
            verbose = verbose.checked_add(1)?;
            continue;
        }
        let (name, inline) = match arg.strip_prefix("--")?.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (arg.strip_prefix("--")?, None),
        };
        let index = OPTS.iter().position(|o| o.long == name)?;
        let opt = &OPTS[index];
        if index == CLIENT_SECRET || index == FORCE_REFRESH {
            // Deprecated on the command line: clap's path warns about it. A forced refresh goes
            // to the IdP anyway (and `option_words` never writes it).
            return None;
        }
        if !matches!(opt.kind, Kind::Many | Kind::Repeat) && values[index].is_some() {
            return None;
        }
        let slot = values[index].get_or_insert_with(Vec::new);
        if opt.kind == Kind::Flag {
            if inline.is_some() {
                return None;
            }
            continue;
        }
        let value = match inline {
            Some(value) => value,
            None => rest.next()?.to_str()?,
        };
        if value.starts_with('-') {
            return None;
        }
        push_values(slot, opt.kind, value)?;
    }
    for (index, opt) in OPTS.iter().enumerate() {
        if values[index].is_some() {
            continue;
        }
        let Some(value) = env(opt.env) else { continue };
        if opt.kind == Kind::Flag {
            return None;
        }
        push_values(
            values[index].get_or_insert_with(Vec::new),
            opt.kind,
            value.to_str()?,
        )?;
    }

    // An option's values by its id (clap's field name, as in OPTIONS).
    let mut take = |id: &str| {
        let index = OPTS.iter().position(|o| o.id == id).expect("an id of OPTS");
        values[index].take()
    };
    let one = |v: Option<Vec<String>>| v.and_then(|mut v| v.pop());
    let parsed = GetTokenArgs {
        identity: IdentityFlags {
            profile: one(take("profile")),
            issuer: one(take("issuer")),
            client_id: one(take("client_id")),
            scopes: take("scopes"),
            provider: value_enum(one(take("provider")))?,
            github: GithubFlags {
                github_url: one(take("github_url")),
                github_api_url: one(take("github_api_url")),
            },
            audience: one(take("audience")),
            token_source: one(take("token_source")),
            connector_id: one(take("connector_id")),
            token_type: value_enum(one(take("token_type")))?,
            auth_params: take("auth_params"),
        },
        login: LoginFlags {
            client_secret: one(take("client_secret")),
            client_secret_file: one(take("client_secret_file")).map(PathBuf::from),
            listen: take("listen"),
            browser_command: one(take("browser_command")),
            no_browser: take("no_browser").is_some(),
            timeout: match one(take("timeout")) {
                None => None,
                Some(t) if t.bytes().all(|b| b.is_ascii_digit()) => Some(t.parse().ok()?),
                Some(_) => return None,
            },
            grant: value_enum(one(take("grant")))?,
            paste: take("paste").is_some(),
            certificate_authorities: take("certificate_authorities")
                .map(|v| v.into_iter().map(PathBuf::from).collect()),
            certificate_authority_data: one(take("certificate_authority_data")),
            redirect_host: one(take("redirect_host")),
            force_refresh: false,
            request_headers: take("request_headers"),
            pkce: match one(take("pkce")).as_deref() {
                None => None,
                Some("true") => Some(true),
                Some("false") => Some(false),
                Some(_) => return None,
            },
        },
        cache: CacheFlags {
            cache: value_enum(one(take("cache")))?,
            cache_dir: one(take("cache_dir")).map(PathBuf::from),
        },
        output: OutputFlags { verbose },
    };
    Some(parsed)
}

/// Adds an option's value (split at commas for [`Kind::Many`]); `None` for an empty value or
/// an empty piece, whose meaning is clap's to decide.
fn push_values(slot: &mut Vec<String>, kind: Kind, value: &str) -> Option<()> {
    if kind == Kind::Many {
        for piece in value.split(',') {
            if piece.is_empty() {
                return None;
            }
            slot.push(piece.to_owned());
        }
    } else {
        if value.is_empty() {
            return None;
        }
        slot.push(value.to_owned());
    }
    Some(())
}

/// A `ValueEnum` value by its exact name: `Some(None)` when absent, `None` when unknown.
fn value_enum<T: ValueEnum>(value: Option<String>) -> Option<Option<T>> {
    match value {
        None => Some(None),
        Some(v) => T::from_str(&v, false).ok().map(Some),
    }
}

#[cfg(test)]
mod tests {
    //! Differential tests: the fast parser against clap on generated command lines.
    //!
    //! clap reads `KOIDC_*` variables from the process environment, so the cases with variables
    //! run in a child process of this test binary (`differential_child`), each with its own
    //! environment, and never touch the environment of the tests running beside them.

    use std::collections::BTreeSet;
    use std::ffi::OsString;
    use std::process::Command;

    use super::{OPTS, parse_get_token};
    use crate::cli::options::option_words;
    use crate::cli::{Cli, Command as Sub, GetTokenArgs};

    /// The parsed get-token options as text to compare: `Debug` (an option left out is `None`,
    /// so this also says which options were given), and the client secret, which `Debug`
    /// redacts, on its own.
    fn describe(parsed: &GetTokenArgs) -> String {
        format!(
            "{parsed:?} secret={:?}",
            parsed.login.client_secret.as_deref().map(str::as_bytes)
        )
    }

    /// clap's answer, and whether it saw `--client-secret` on the command line.
    fn clap_parse(args: &[OsString]) -> Option<(String, bool)> {
        let mut full = vec![OsString::from("koidc"), OsString::from("get-token")];
        full.extend(args.iter().cloned());
        let cli = Cli::try_parse_full(full).ok()?;
        let Sub::GetToken(parsed) = &cli.command else {
            panic!("not get-token")
        };
        Some((describe(parsed), cli.explicit.secret_argument()))
    }

    /// Checks one command line in this process's environment; true when the fast parser
    /// answered (and agreed with clap). Also checks that [`option_words`] of the answer is a
    /// command line that clap reads back to the same options (but the secret, which it never
    /// writes and which only a variable can have given here, and `-v`).
    fn check(args: &[OsString]) -> bool {
        let fast = parse_get_token(args, |name| std::env::var_os(name));
        let Some(mut parsed) = fast else {
            return false;
        };
        let slow = clap_parse(args);
        assert_eq!(
            Some((describe(&parsed), false)),
            slow,
            "fast parser and clap differ on {args:?}"
        );
        parsed.output.verbose = 0;
        let words: Vec<OsString> = option_words(&parsed).into_iter().map(OsString::from).collect();
        assert_eq!(
            Some((describe(&parsed), false)),
            clap_parse(&words),
            "{words:?}, written for {args:?}, reads back otherwise"
        );
        true
    }

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 33) as usize
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.next() % items.len()]
        }
    }

    const NAMES: &[&str] = &[
        "--profile",
        "--issuer",
        "--client-id",
        "--scope",
        "--provider",
        "--github-url",
        "--github-api-url",
        "--cache",
        "--cache-dir",
        "--client-secret",
        "--client-secret-file",
        "--listen",
        "--browser-command",
        "--no-browser",
        "--timeout",
        "--grant",
        "--paste",
        "--certificate-authority",
        "--certificate-authority-data",
        "--audience",
        "--token-source",
        "--connector-id",
        "--token-type",
        "--auth-param",
        "--request-header",
        "--pkce",
        "--pkce=false",
        "--auth-param=prompt=login",
        "--audience=",
        "--verbose",
        "-v",
        "-vv",
        "-vvv",
        "--help",
        "-h",
        "--version",
        "--issue",
        "--scopes",
        "--",
        "-x",
        "extra",
        "-",
        "--cache=file",
        "--timeout=7",
        "--scope=a,b",
        "--no-browser=true",
        "--issuer=",
        "--listen=127.0.0.1:0,127.0.0.1:8000",
    ];
    const VALUES: &[&str] = &[
        "https://dex.example.com/dex",
        "koidc",
        "email",
        "groups,email",
        "a,,b",
        ",",
        "",
        "okta",
        "dex",
        "Dex",
        "auto",
        "generic",
        "github",
        "keyring",
        "file",
        "none",
        "authcode",
        "device-code",
        "workload",
        "client-credentials",
        "github-actions",
        "file:/var/run/secrets/tokens/kube",
        "env:GITLAB_OIDC_TOKEN",
        "180",
        "0",
        "+5",
        "99999999999999999999999",
        "-1",
        "-v",
        "--issuer",
        "/tmp/koidc cache",
        "127.0.0.1:8000",
        "open -a Safari",
        "work",
        "ümlaut",
        "a=b",
        "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==",
        "id",
        "access",
        "Access",
        "true",
        "false",
        "yes",
        "login_hint=a@example.com",
        "Origin=https://a.example.com,https://b",
    ];

    /// A random get-token command line.
    fn command_line(rng: &mut Rng) -> Vec<OsString> {
        let n = rng.next() % 7;
        let mut args = Vec::new();
        for _ in 0..n {
            args.push(OsString::from(rng.pick(NAMES)));
            if !rng.next().is_multiple_of(5) {
                args.push(OsString::from(rng.pick(VALUES)));
            }
        }
        args
    }

    /// Checks many command lines in the current environment; the share the fast parser
    /// answered, so a parser that always gives up cannot pass.
    fn run_cases(seed: u64, cases: usize) -> f64 {
        let mut rng = Rng(seed);
        let answered = (0..cases).filter(|_| check(&command_line(&mut rng))).count();
        answered as f64 / cases as f64
    }

    #[test]
    fn kubeconfig_command_lines_take_the_fast_path_and_agree_with_clap() {
        for line in [
            "--issuer https://dex.example.com/dex --client-id koidc --scope email --scope groups",
            "--issuer=https://dex.example.com/dex --client-id=koidc --scope=email,groups --cache=file",
            "--profile work",
            "--grant workload --audience https://kubernetes.example.com --token-source github-actions",
            "--grant=workload --token-source=file:/var/run/secrets/tokens/kube --audience=kubernetes --cache file",
            "--grant workload --token-source env:CI_JOB_JWT --audience k --issuer https://dex.example.com/dex --client-id koidc --connector-id gitlab",
            "--grant client-credentials --issuer https://idp.example.com --client-id ci --audience kubernetes --client-secret-file /s",
            "--issuer https://x.okta.com/oauth2/default --client-id 0oa1 --provider okta -v",
            "--issuer https://x.okta.com/oauth2/default --client-id 0oa1 --token-type access --audience api://default --auth-param prompt=login --auth-param login_hint=a@example.com --request-header Origin=https://app --request-header X-A=b,c --pkce=false",
            "--issuer https://dex.example.com/dex --client-id koidc --cache-dir /tmp/c --listen 127.0.0.1:8000 --listen 127.0.0.1:18000 --timeout 30 --grant device-code --no-browser --paste --certificate-authority /ca.pem,/ca2.pem --certificate-authority-data LS0tLS1CRUdJTg== --browser-command true --client-secret-file /s --github-url https://g --github-api-url https://g/api -vv --verbose",
            "",
        ] {
            let args: Vec<OsString> = line.split_whitespace().map(OsString::from).collect();
            assert!(check(&args), "the fast parser gave up on {line:?}");
        }
    }

    #[test]
    fn login_flags_debug_redacts_the_client_secret() {
        const SECRET: &str = "s3cr3t-client-secret-value";
        let args: Vec<OsString> = [
            "koidc",
            "get-token",
            "--issuer",
            "https://i",
            "--client-secret",
            SECRET,
        ]
        .map(OsString::from)
        .to_vec();
        let cli = Cli::try_parse_full(args).expect("parses");
        let Sub::GetToken(parsed) = &cli.command else {
            panic!("not get-token")
        };
        assert_eq!(parsed.login.client_secret.as_deref(), Some(SECRET));
        for text in [
            format!("{:?}", parsed.login),
            format!("{:#?}", parsed.login),
            format!("{parsed:?}"),
            format!("{cli:?}"),
        ] {
            assert!(!text.contains(SECRET), "the secret is in Debug output: {text}");
            assert!(text.contains("client_secret"), "the field is still shown: {text}");
        }
        let none = crate::cli::LoginFlags {
            client_secret: None,
            ..parsed.login.clone()
        };
        assert!(format!("{none:?}").contains("client_secret: None"));
    }

    #[test]
    fn gives_up_on_what_clap_must_report() {
        for line in [
            "--client-secret s",
            "--client-secret=s",
            "--help",
            "-h",
            "--version",
            "--issuer",
            "--issuer -x",
            "--issuer a --issuer b",
            "--bogus",
            "positional",
            "--no-browser=true",
            "--no-browser --no-browser",
            "--timeout -1",
            "--timeout +5",
            "--cache Keyring",
            "--scope a,,b",
            "--issuer=",
            "--",
            "-vx",
        ] {
            let args: Vec<OsString> = line.split_whitespace().map(OsString::from).collect();
            assert!(parse_get_token(&args, |_| None).is_none(), "answered {line:?}");
        }
    }

    #[test]
    fn other_commands_and_their_names_as_arguments_go_to_clap() {
        let parse = |line: &str| Cli::try_parse_args(line.split_whitespace()).unwrap().command;
        assert!(matches!(parse("koidc version"), Sub::Version));
        assert!(matches!(parse("koidc clean --no-revoke"), Sub::Clean(a) if a.no_revoke));
        assert!(matches!(parse("koidc logout --all"), Sub::Logout(a) if a.all));
        // After get-token, a command's name is a stray argument: clap reports it.
        for name in ["version", "clean"] {
            assert!(parse_get_token(&[OsString::from(name)], |_| None).is_none());
            assert!(Cli::try_parse_args(["koidc", "get-token", name]).is_err());
        }
    }

    #[test]
    fn options_table_matches_clap() {
        use clap::Args as _;
        let command = crate::cli::GetTokenArgs::augment_args(clap::Command::new("get-token"));
        let clap_opts: BTreeSet<(String, String, String)> = command
            .get_arguments()
            .filter(|a| a.get_id() != "verbose")
            .map(|a| {
                let env = a
                    .get_env()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (
                    a.get_long().unwrap_or_default().to_owned(),
                    a.get_id().to_string(),
                    env,
                )
            })
            .collect();
        let ours: BTreeSet<(String, String, String)> = OPTS
            .iter()
            .map(|o| (o.long.to_owned(), o.id.to_owned(), o.env.to_owned()))
            .collect();
        assert_eq!(ours, clap_opts);
    }

    #[test]
    fn random_command_lines_agree_with_clap() {
        // Without variables (the child process below adds them): this process's environment
        // must not set any KOIDC_* option.
        if OPTS.iter().any(|o| std::env::var_os(o.env).is_some()) {
            panic!("unset the KOIDC_* variables to run this test");
        }
        let share = run_cases(0x9e37_79b9_7f4a_7c15, 20_000);
        assert!(
            share > 0.05,
            "the fast parser answered only {share:.3} of the command lines"
        );
    }

    /// Environments for the child runs: variables with valid, invalid and empty values, and
    /// whether every value is one the fast parser takes (then it must answer as often as
    /// without variables; a parser that gave up whenever a `KOIDC_*` variable is set would
    /// agree with clap on every line and fail here).
    const ENVIRONMENTS: &[(&[(&str, &str)], bool)] = &[
        (
            &[
                ("KOIDC_ISSUER", "https://env.example.com"),
                ("KOIDC_CLIENT_ID", "env-client"),
            ],
            true,
        ),
        (
            &[
                ("KOIDC_SCOPE", "email,groups"),
                ("KOIDC_LISTEN", "127.0.0.1:8000,127.0.0.1:18000"),
            ],
            true,
        ),
        (
            &[
                ("KOIDC_PROVIDER", "okta"),
                ("KOIDC_CACHE", "file"),
                ("KOIDC_GRANT", "device-code"),
            ],
            true,
        ),
        (&[("KOIDC_PROVIDER", "Okta"), ("KOIDC_TIMEOUT", "12")], false),
        (
            &[("KOIDC_TIMEOUT", "x"), ("KOIDC_CACHE_DIR", "/tmp/env cache")],
            false,
        ),
        (&[("KOIDC_NO_BROWSER", "true")], false),
        (&[("KOIDC_PASTE", "0")], false),
        (&[("KOIDC_ISSUER", ""), ("KOIDC_SCOPE", "a,,b")], false),
        (
            &[
                ("KOIDC_PROFILE", "work"),
                ("KOIDC_CLIENT_SECRET", "s"),
                ("KOIDC_BROWSER_COMMAND", "-x"),
            ],
            true,
        ),
        (
            &[
                ("KOIDC_CERTIFICATE_AUTHORITY", "/a.pem,/b.pem"),
                ("KOIDC_GITHUB_URL", "https://g"),
            ],
            true,
        ),
        (&[("KOIDC_CERTIFICATE_AUTHORITY_DATA", "LS0tLS1CRUdJTg==")], true),
        (&[("KOIDC_CERTIFICATE_AUTHORITY_DATA", "")], false),
        (
            &[
                ("KOIDC_TOKEN_TYPE", "access"),
                ("KOIDC_AUTH_PARAM", "acr_values=a,b"),
                ("KOIDC_REQUEST_HEADER", "Origin=https://app"),
                ("KOIDC_PKCE", "false"),
            ],
            true,
        ),
        (&[("KOIDC_PKCE", "no"), ("KOIDC_TOKEN_TYPE", "ID")], false),
    ];

    /// The share the child reports on its output.
    const SHARE_LINE: &str = "fast path answered a share of ";

    #[test]
    fn random_command_lines_with_variables_agree_with_clap() {
        let exe = std::env::current_exe().expect("test binary");
        for (n, (vars, valid)) in ENVIRONMENTS.iter().enumerate() {
            let mut child = Command::new(&exe);
            child.args([
                "--exact",
                "cli::fast::tests::differential_child",
                "--ignored",
                "--nocapture",
            ]);
            for opt in &OPTS {
                child.env_remove(opt.env);
            }
            child
                .envs(vars.iter().copied())
                .env("KOIDC_TEST_SEED", (n + 1).to_string());
            let out = child.output().expect("run the test binary");
            let text =
                String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "environment {vars:?}:\n{text}");
            assert!(
                text.contains("1 passed"),
                "the child ran no test for {vars:?}:\n{text}"
            );
            let share: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix(SHARE_LINE))
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or_else(|| panic!("the child did not say how often the fast path answered:\n{text}"));
            if *valid {
                assert!(
                    share > 0.05,
                    "with {vars:?} the fast parser answered only {share:.3} of the command lines"
                );
            }
        }
    }

    /// Run by [`random_command_lines_with_variables_agree_with_clap`] in a child process.
    #[test]
    #[ignore = "run in a child process by random_command_lines_with_variables_agree_with_clap"]
    fn differential_child() {
        let seed: u64 = std::env::var("KOIDC_TEST_SEED")
            .expect("KOIDC_TEST_SEED")
            .parse()
            .unwrap();
        let share = run_cases(seed.wrapping_mul(0x2545_f491_4f6c_dd1d), 3_000);
        println!("{SHARE_LINE}{share}");
    }
}
