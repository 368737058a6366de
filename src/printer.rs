//! Where output goes: stdout carries results only (the ExecCredential, `whoami`), everything
//! meant for a person — prompts, progress, warnings, verbose logs — goes to stderr.
//!
//! kubectl parses the plugin's stdout as JSON, so one stray line there breaks every command; all
//! output therefore passes through [`Printer`]. Nothing printed here may contain a secret: the
//! callers pass messages, never tokens.
//!
//! Every line for stderr goes through [`stderr_line`], which ignores write errors: a closed or
//! full stderr (kubectl gone, `2>&-`, a dead pipe) must not end koidc, whereas `eprintln!`
//! panics on a failed write and a second failure in the panic message aborts the process
//! (SIGABRT) with the cache lock held and the credential unprinted. `eprintln!` is denied by
//! clippy (`print_stderr`) for that reason.
//!
//! The error a command ends with is printed by `main` as one line, [`error_line`]: its causes in
//! order, each once.
//!
//! Hints name commands the way the user starts koidc: krew installs only `kubectl-koidc`, so
//! under kubectl `run koidc login` would name a command that does not exist there. Messages are
//! written with `koidc …`; [`stderr_line`] (and `doctor`'s report) rewrite them to `kubectl
//! koidc …` when the program file is `kubectl-koidc` ([`as_invoked`]).

use std::io::Write as _;

use crate::text::{fold_whitespace, printable, shell_word};

/// Writes `line` and a newline to stderr in one write, ignoring any error (see the module doc).
/// Hints in it name koidc the way it was started ([`as_invoked`]); control characters from
/// whatever it quotes (an IdP's page, kubectl's output, a kubeconfig's names) are replaced
/// ([`printable`]).
pub fn stderr_line(line: std::fmt::Arguments<'_>) {
    let mut text = for_a_person(&line.to_string());
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// What a person reads of `text`, on stderr or in a report on stdout: hints named as koidc was
/// started ([`as_invoked`]) and control characters replaced ([`printable`]).
fn for_a_person(text: &str) -> String {
    printable(&as_invoked(text)).into_owned()
}

/// How users start koidc when it runs as kubectl's plugin: `kubectl koidc ...` executes the
/// program file `kubectl-koidc`.
pub const KUBECTL_PLUGIN_NAME: &str = "kubectl koidc";

/// The subcommands hints may name, as in `run koidc login`.
const SUBCOMMANDS: [&str; 12] = [
    "get-token",
    "login",
    "logout",
    "clean",
    "whoami",
    "setup",
    "bind-group",
    "doctor",
    "webhook",
    "completions",
    "man",
    "version",
];

/// The command users type for koidc, from the program path (`argv[0]`): `kubectl koidc` for a
/// program file named `kubectl-koidc` (krew installs only that name), else `koidc`.
pub fn command_name(program: Option<&std::ffi::OsStr>) -> &'static str {
    match program.and_then(|p| std::path::Path::new(p).file_stem()) {
        Some(stem) if stem == "kubectl-koidc" => KUBECTL_PLUGIN_NAME,
        _ => "koidc",
    }
}

/// [`command_name`] of this process, found once, on the first message printed (never on the
/// warm `get-token` path, which prints nothing).
fn this_command_name() -> &'static str {
    static NAME: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    NAME.get_or_init(|| command_name(std::env::args_os().next().as_deref()))
}

/// `text` with every hint that names a koidc command (`koidc login`, `koidc bind-group`) naming
/// it as `name` starts it: `kubectl koidc login` under kubectl. Only the word `koidc` directly
/// before a subcommand's name is rewritten, and not where it is already `kubectl koidc` or part
/// of a longer word or path.
pub fn for_command_name<'a>(text: &'a str, name: &str) -> std::borrow::Cow<'a, str> {
    if name == "koidc" || !text.contains("koidc ") {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(at) = rest.find("koidc ") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let preceded = out.chars().next_back();
        let standalone = !preceded.is_some_and(|c| c.is_alphanumeric() || "-_/.".contains(c))
            && !out.ends_with("kubectl ");
        let after = &from["koidc ".len()..];
        let names_command = SUBCOMMANDS.iter().any(|sub| {
            after
                .strip_prefix(sub)
                .is_some_and(|tail| !tail.starts_with(|c: char| c.is_alphanumeric() || c == '-' || c == '_'))
        });
        if standalone && names_command {
            out.push_str(name);
            out.push(' ');
        } else {
            out.push_str("koidc ");
        }
        rest = after;
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// `text` with its hints naming koidc as this process was started ([`for_command_name`]), and a
/// bare `` `koidc login` `` completed with the options of this command line ([`login_arguments`]):
/// kubectl runs `get-token` with the kubeconfig's options, which the user does not have at hand.
pub fn as_invoked(text: &str) -> std::borrow::Cow<'_, str> {
    let name = this_command_name();
    match this_login_arguments() {
        Some(args) => {
            std::borrow::Cow::Owned(for_command_name(&with_login_arguments(text, args), name).into_owned())
        }
        None => for_command_name(text, name),
    }
}

/// A hint to run `` `koidc login` `` as written in messages.
const BARE_LOGIN_HINT: &str = "`koidc login`";

/// `text` with every `` `koidc login` `` hint carrying `args`.
pub fn with_login_arguments<'a>(text: &'a str, args: &str) -> std::borrow::Cow<'a, str> {
    if text.contains(BARE_LOGIN_HINT) {
        std::borrow::Cow::Owned(text.replace(BARE_LOGIN_HINT, &format!("`koidc login {args}`")))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// The options of a `get-token` or `login` command line (`argv`, the program first) as `koidc
/// login` takes them, shell-quoted: the same identity, cache and login settings. A client secret
/// given as an argument is left out (a hint must not print it; the variable or file still
/// applies). `None` for other commands, no options, or arguments that are not UTF-8.
pub fn login_arguments(argv: &[std::ffi::OsString]) -> Option<String> {
    let command = argv.get(1)?.to_str()?;
    if command != "get-token" && command != "login" {
        return None;
    }
    let mut words = Vec::new();
    let mut args = argv[2..].iter();
    while let Some(arg) = args.next() {
        let arg = arg.to_str()?;
        if arg == "--client-secret" {
            args.next();
        } else if !arg.starts_with("--client-secret=") {
            words.push(shell_word(arg));
        }
    }
    (!words.is_empty()).then(|| words.join(" "))
}

/// [`login_arguments`] of this process, found once, when a message is printed.
fn this_login_arguments() -> Option<&'static str> {
    static ARGS: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ARGS.get_or_init(|| login_arguments(&std::env::args_os().collect::<Vec<_>>()))
        .as_deref()
}

/// Writes results to stdout and messages to stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct Printer {
    verbosity: u8,
}

impl Printer {
    /// A printer that shows debug lines when `verbosity > 0`.
    pub fn new(verbosity: u8) -> Self {
        Self { verbosity }
    }

    /// Writes a result on stdout (with a trailing newline) and flushes it.
    pub fn result(&self, text: &str) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        if !text.ends_with('\n') {
            out.write_all(b"\n")?;
        }
        out.flush()
    }

    /// A result for a person to read on stdout (`doctor`'s report, `whoami`'s text), not for a
    /// program: hints name koidc as it was started and control characters from quoted text are
    /// replaced, as on stderr.
    pub fn report(&self, text: &str) -> std::io::Result<()> {
        self.result(&for_a_person(text))
    }

    /// A message for the person at the terminal (e.g. "open this URL").
    pub fn info(&self, msg: impl std::fmt::Display) {
        stderr_line(format_args!("koidc: {msg}"));
    }

    /// A warning: something is off, but koidc carries on.
    pub fn warn(&self, msg: impl std::fmt::Display) {
        stderr_line(format_args!("koidc: warning: {msg}"));
    }

    /// A verbose log line, shown with `-v`.
    pub fn debug(&self, msg: impl std::fmt::Display) {
        if self.verbosity > 0 {
            stderr_line(format_args!("koidc: debug: {msg}"));
        }
    }
}

/// An error and its causes as the one line koidc ends with (`koidc: <this>`): each cause after
/// a `: `, folded onto one line. A cause whose text the line already holds is left out, so an
/// error that shows its cause in its own message and also returns it as its `source()` (a
/// thiserror `{0}` that is also the source) prints it once.
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = fold_whitespace(&cause.to_string());
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_koidc_login_hint_carries_the_options_of_the_command_line_but_never_a_secret() {
        let argv = |words: &[&str]| words.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        let args = login_arguments(&argv(&[
            "koidc",
            "get-token",
            "--issuer",
            "https://dex.example.com",
            "--client-id=kubernetes",
            "--client-secret",
            "s3cret",
            "--client-secret=s3cret2",
            "--cache-dir",
            "/tmp/a dir",
        ]))
        .unwrap();
        assert_eq!(
            args,
            "--issuer https://dex.example.com --client-id=kubernetes --cache-dir '/tmp/a dir'"
        );
        assert_eq!(
            with_login_arguments("run `koidc login` to log in; or `koidc login --force`", &args),
            format!("run `koidc login {args}` to log in; or `koidc login --force`")
        );
        let args = login_arguments(&argv(&["koidc", "login", "--profile", "work"])).unwrap();
        assert_eq!(args, "--profile work");
        for other in [
            &["koidc", "whoami", "--profile", "work"][..],
            &["koidc", "get-token"],
            &["koidc"],
            &["koidc", "get-token", "--client-secret", "s"],
        ] {
            assert_eq!(login_arguments(&argv(other)), None, "{other:?}");
        }
    }

    #[test]
    fn hints_name_kubectl_koidc_when_koidc_runs_as_the_kubectl_plugin() {
        let kubectl = command_name(Some("/home/u/.krew/bin/kubectl-koidc".as_ref()));
        assert_eq!(kubectl, "kubectl koidc");
        assert_eq!(command_name(Some("kubectl-koidc.exe".as_ref())), "kubectl koidc");
        assert_eq!(command_name(Some("/usr/local/bin/koidc".as_ref())), "koidc");
        assert_eq!(command_name(None), "koidc");
        for (text, expected) in [
            (
                "no cached identity; run `koidc login --issuer URL --client-id ID`",
                "no cached identity; run `kubectl koidc login --issuer URL --client-id ID`",
            ),
            (
                "fix: koidc bind-group devs view -n app; then koidc doctor",
                "fix: kubectl koidc bind-group devs view -n app; then kubectl koidc doctor",
            ),
            // Already right, not a command, or part of a path or longer word: unchanged.
            ("run `kubectl koidc login`", "run `kubectl koidc login`"),
            ("koidc: warning: x", "koidc: warning: x"),
            ("the koidc cache", "the koidc cache"),
            ("koidc loginx", "koidc loginx"),
            (
                "/usr/bin/koidc login and kubectl-koidc login",
                "/usr/bin/koidc login and kubectl-koidc login",
            ),
            ("saved by koidc setup", "saved by kubectl koidc setup"),
            ("koidc get-token", "kubectl koidc get-token"),
            ("", ""),
        ] {
            assert_eq!(for_command_name(text, kubectl), expected, "{text:?}");
            assert_eq!(for_command_name(text, "koidc"), text, "{text:?}");
        }
    }

    /// No run of `WINDOW` words appears twice in `line`: a cause printed twice would.
    #[track_caller]
    fn assert_each_cause_once(line: &str) {
        const WINDOW: usize = 5;
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut seen = std::collections::HashSet::new();
        for window in words.windows(WINDOW) {
            assert!(
                seen.insert(window),
                "{:?} appears twice in {line:?}",
                window.join(" ")
            );
        }
    }

    fn io_error() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "No such file or directory (os error 2)",
        )
    }

    /// Every error type of koidc that has a source (a source or from attribute, or a field named
    /// `source`, in `src/`), with the line main.rs prints for it.
    fn errors_with_a_source() -> Vec<(anyhow::Error, &'static str)> {
        use crate::cluster::setup::write::WriteError;
        use crate::login::browser::BrowserError;
        vec![
            (
                BrowserError::Spawn {
                    program: "firefox".into(),
                    source: io_error(),
                }
                .into(),
                "could not start the browser command `firefox`: No such file or directory (os error 2); \
                 fix --browser-command or BROWSER, or use --no-browser",
            ),
            (
                BrowserError::System(io_error()).into(),
                "could not open the system browser: No such file or directory (os error 2); open the URL \
                 yourself, or use --browser-command or --no-browser",
            ),
            (
                crate::login::loopback::LoopbackError::LocalAddr(io_error()).into(),
                "could not read the address of the login callback listener: No such file or directory (os \
                 error 2)",
            ),
            (
                crate::config::ConfigError::from(crate::login::github::GithubError::InvalidUrl {
                    flag: "github-url",
                    url: "ftp://x".into(),
                    reason: "not https",
                })
                .into(),
                "invalid --github-url \"ftp://x\": not https",
            ),
            (
                crate::config::ConfigError::from(crate::login::workload::SourceError::Unknown(
                    "gitlab".into(),
                ))
                .into(),
                "unknown --token-source \"gitlab\": use github-actions, file:PATH or env:VAR",
            ),
            (
                crate::cluster::rbac::RbacError::ReadFile {
                    path: "rbac.yaml".into(),
                    source: io_error(),
                }
                .into(),
                "cannot read the bindings file rbac.yaml: No such file or directory (os error 2)",
            ),
            (
                crate::commands::bind_group::ApplyError::Run {
                    program: "kubectl".into(),
                    source: io_error(),
                }
                .into(),
                "cannot run \"kubectl\": No such file or directory (os error 2)",
            ),
            (
                crate::login::oidc::OidcError::from(crate::http::CaError::File {
                    path: "ca.pem".into(),
                    reason: io_error().to_string(),
                })
                .into(),
                "cannot use the CA certificate file ca.pem: No such file or directory (os error 2); check \
                 that it is a readable PEM certificate file",
            ),
            (
                crate::http::HttpError::from(crate::http::ProxyError::Unusable {
                    url: "https://idp.example/".into(),
                    variable: "HTTPS_PROXY",
                })
                .into(),
                "HTTPS_PROXY is not a proxy URL koidc can use for https://idp.example/; set it to \
                 http://HOST:PORT (http://USER:PASSWORD@HOST:PORT when the proxy wants a login), or unset it",
            ),
            (
                crate::config::ConfigError::from(crate::login::oidc::request::RequestError::ParamOwned(
                    "state".into(),
                ))
                .into(),
                "--auth-param state: koidc sets state itself and it cannot be replaced (scopes go in \
                 --scope, the client in --client-id)",
            ),
            (
                crate::login::github::GithubError::from(crate::http::CaError::Data {
                    reason: "it is not base64".into(),
                })
                .into(),
                "cannot use --certificate-authority-data: it is not base64; give the base64 of a PEM \
                 certificate, as in a kubeconfig's certificate-authority-data",
            ),
            (
                crate::http::ClientError::from(crate::http::CaError::Data {
                    reason: "it is not base64".into(),
                })
                .into(),
                "cannot use --certificate-authority-data: it is not base64; give the base64 of a PEM \
                 certificate, as in a kubeconfig's certificate-authority-data",
            ),
            (
                crate::cluster::setup::SetupError::from(crate::http::CaError::File {
                    path: "ca.pem".into(),
                    reason: io_error().to_string(),
                })
                .into(),
                "cannot use the CA certificate file ca.pem: No such file or directory (os error 2); check \
                 that it is a readable PEM certificate file",
            ),
            (
                crate::cluster::setup::SetupError::Yaml(serde::ser::Error::custom("a map key is not text"))
                    .into(),
                "cannot render YAML: a map key is not text",
            ),
            (
                WriteError::CreateDir {
                    dir: "/k".into(),
                    source: io_error(),
                }
                .into(),
                "cannot create /k: No such file or directory (os error 2)",
            ),
            (
                WriteError::Lock {
                    path: "/k/config.lock".into(),
                    source: io_error(),
                }
                .into(),
                "cannot create the kubeconfig lock /k/config.lock: No such file or directory (os error 2)",
            ),
            (
                WriteError::Symlink {
                    path: "/k/config".into(),
                    source: io_error(),
                }
                .into(),
                "cannot follow the kubeconfig symlink /k/config: No such file or directory (os error 2)",
            ),
            (
                WriteError::Read {
                    path: "/k/config".into(),
                    source: io_error(),
                }
                .into(),
                "cannot read the kubeconfig /k/config: No such file or directory (os error 2)",
            ),
            (
                WriteError::from(crate::cluster::setup::SetupError::NothingToEmbed).into(),
                "--embed-ca puts the IdP's CA into the kubeconfig entry, but none was given: add \
                 --certificate-authority FILE (or drop --embed-ca when a public CA signed the IdP's certificate)",
            ),
            (
                WriteError::Write {
                    path: "/k/config.tmp".into(),
                    source: io_error(),
                }
                .into(),
                "cannot write /k/config.tmp: No such file or directory (os error 2)",
            ),
            (
                WriteError::Replace {
                    path: "/k/config".into(),
                    source: io_error(),
                }
                .into(),
                "cannot replace /k/config: No such file or directory (os error 2)",
            ),
        ]
    }

    #[test]
    fn error_chains_print_each_cause_once_for_every_error_with_a_source() {
        use crate::login::oidc::{OidcError, Rejection};
        let rejected = (
            OidcError::from(Rejection::Audience(
                "must contain `koidc` (the token's: `kubernetes`); check --client-id".into(),
            ))
            .into(),
            "ID token rejected: audience must contain `koidc` (the token's: `kubernetes`); check --client-id",
        );
        for (err, expected) in errors_with_a_source().into_iter().chain([rejected]) {
            let line = error_line(&err);
            assert_each_cause_once(&line);
            assert_eq!(line, fold_whitespace(expected));
            // A context in front, as the commands add, changes nothing in what follows.
            let line = error_line(&err.context("cannot log in"));
            assert_eq!(line, format!("cannot log in: {}", fold_whitespace(expected)));
        }
    }

    #[test]
    fn the_list_of_errors_with_a_source_is_complete() {
        // Spelled in pieces so that this file does not count itself (its `source:` lines build
        // errors from `io_error()`, which the count below does not take for a field).
        let markers = [concat!("#[", "source]"), concat!("#[", "from]")];
        let mut found = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let mut previous = "";
                    for (n, line) in text.lines().enumerate() {
                        let marked = |l: &str| markers.iter().any(|m| l.contains(m));
                        // thiserror also takes a field named `source` as the source.
                        let implicit = line.trim_start().starts_with("source: ") && line.contains("Error");
                        if marked(line) || (implicit && !marked(previous)) {
                            found.push(format!("{}:{}", path.display(), n + 1));
                        }
                        previous = line;
                    }
                }
            }
        }
        assert_eq!(
            found.len(),
            errors_with_a_source().len(),
            "errors with a source in src/ ({found:?}): add the new one to errors_with_a_source"
        );
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_printed_again() {
        /// An error that shows its cause in its own message and also returns it as its source.
        #[derive(Debug)]
        struct Outer(Inner);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "outer: {}", self.0)
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        #[derive(Debug, thiserror::Error)]
        #[error("inner reason")]
        struct Inner;
        assert_eq!(error_line(&Outer(Inner).into()), "outer: inner reason");
        let err = anyhow::Error::new(Inner).context("while\n   doing  it");
        assert_eq!(error_line(&err), "while doing it: inner reason");
    }
}
