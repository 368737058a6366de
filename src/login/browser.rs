//! Opening the authorization URL for the user: the system browser, a command, or nothing.
//!
//! koidc's stdout carries the ExecCredential, so nothing started here may write to it: a
//! browser command gets a null stdin and stdout and only inherits stderr (the user's terminal).
//! The command runs detached (own process group, not waited for) and is reaped by a background
//! thread so no zombie remains.
//!
//! A browser is a large program of its own (extensions, crash reporters, a session restored
//! later), so it never sees the client secret: `KOIDC_CLIENT_SECRET` and the variable a profile
//! names in `client-secret-env` ([`withhold_from_browser`]) are removed from the environment of
//! the browser command and of the system's URL opener. Nor does it see a proxy's password: the
//! proxy variables reach it without their user information, and with the loopback names in
//! `NO_PROXY`, so the callback is never asked through a proxy.
//!
//! INTERFACE: the [`Browser`] trait, [`BrowserChoice::resolve`] and
//! [`BrowserChoice::into_browser`]; [`split_command`] for checking a command early;
//! [`withhold_from_browser`].

use std::ffi::OsString;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The variable holding the client secret (`--client-secret`'s variable).
pub const CLIENT_SECRET_ENV: &str = "KOIDC_CLIENT_SECRET";

/// Variables holding secrets besides [`CLIENT_SECRET_ENV`], kept from every browser.
static WITHHELD: Mutex<Vec<OsString>> = Mutex::new(Vec::new());

/// Keeps the variable `name` (it holds a secret: a profile's `client-secret-env`) out of the
/// environment of every browser koidc starts. [`CLIENT_SECRET_ENV`] always is.
pub fn withhold_from_browser(name: &str) {
    let mut withheld = WITHHELD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !withheld.iter().any(|v| v == name) {
        withheld.push(name.into());
    }
}

/// True when `name` is kept from browsers.
#[cfg(test)]
pub(crate) fn is_withheld(name: &str) -> bool {
    name == CLIENT_SECRET_ENV
        || WITHHELD
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|v| v == name)
}

/// Removes the secret variables from `cmd`'s environment, and a proxy's user name and password
/// from the proxy variables, which also list the loopback names in `NO_PROXY` so that a browser
/// reading them reaches the callback directly ([`crate::http::browser_environment`]).
fn withhold_secrets(cmd: &mut Command) {
    for (name, value) in crate::http::browser_environment() {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    cmd.env_remove(CLIENT_SECRET_ENV);
    let withheld = WITHHELD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for name in withheld.iter() {
        cmd.env_remove(name);
    }
}

/// How long a system URL opener may take to fail before koidc counts it as started; one that
/// fails sooner (no desktop session) lets the next opener try.
const OPENER_FAILURE_WINDOW: Duration = Duration::from_millis(250);

/// How long a browser command may take to fail before koidc counts it as started: long enough
/// for a command that fails at once (`false`, a wrapper finding no browser) to have exited even
/// on a loaded machine; a browser that keeps running only delays the "opened a browser" line.
const COMMAND_FAILURE_WINDOW: Duration = Duration::from_secs(1);

/// Errors of opening a browser.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// The browser command is empty or only whitespace.
    #[error(
        "the browser command is empty; set --browser-command or BROWSER to a program, or use \
         --no-browser"
    )]
    EmptyCommand,

    /// The browser command could not be split into words (e.g. an unclosed quote).
    #[error("cannot parse the browser command `{command}`: {problem}; fix --browser-command or BROWSER")]
    Syntax {
        /// The command as configured.
        command: String,
        /// What is wrong with it.
        problem: &'static str,
    },

    /// The browser command's program could not be started.
    #[error(
        "could not start the browser command `{program}`: {source}; fix --browser-command or \
         BROWSER, or use --no-browser"
    )]
    Spawn {
        /// The program (first word of the command).
        program: String,
        /// Why it could not be started.
        #[source]
        source: std::io::Error,
    },

    /// The browser command exited with a failure status right after it started.
    #[error(
        "the browser command `{program}` failed ({status}); fix --browser-command or BROWSER, or \
         use --no-browser"
    )]
    Failed {
        /// The program (first word of the command, on one line).
        program: String,
        /// How it exited.
        status: std::process::ExitStatus,
    },

    /// The system's URL opener failed.
    #[error(
        "could not open the system browser: {0}; open the URL yourself, or use \
         --browser-command or --no-browser"
    )]
    System(#[source] std::io::Error),
}

impl BrowserError {
    /// Why the browser could not be opened, in a few words on one line, for the line that says
    /// so before the URL is printed.
    pub fn short(&self) -> String {
        let text = match self {
            BrowserError::EmptyCommand => "the browser command is empty".to_owned(),
            BrowserError::Syntax { problem, .. } => format!("cannot parse the browser command: {problem}"),
            BrowserError::Spawn { program, source } => {
                format!("`{program}` cannot be started: {source}")
            }
            BrowserError::Failed { program, status } => format!("`{program}` failed ({status})"),
            BrowserError::System(err) if err.kind() == std::io::ErrorKind::NotFound => {
                "no URL opener (xdg-open, gio, ...) is installed".to_owned()
            }
            BrowserError::System(err) => err.to_string(),
        };
        crate::text::one_line(&text, 160)
    }
}

/// Something that can show a URL to the user.
pub trait Browser: Send + Sync {
    /// Opens `url`; returns once the browser was launched (not when the page loaded).
    fn open(&self, url: &str) -> Result<(), BrowserError>;
}

/// How to show the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrowserChoice {
    /// The system browser (the `open` crate).
    System,
    /// Run `CMD <url>` (`--browser-command`, or `BROWSER`).
    Command(String),
    /// Do not open anything; the URL is printed on stderr.
    None,
}

impl BrowserChoice {
    /// Picks the browser: `--no-browser` means none; else `--browser-command` (even when empty,
    /// so that opening reports the mistake); else a non-blank `BROWSER`; else the system browser.
    pub fn resolve(
        flag_command: Option<String>,
        no_browser: bool,
        env_browser: Option<String>,
    ) -> BrowserChoice {
        if no_browser {
            return BrowserChoice::None;
        }
        if let Some(command) = flag_command {
            return BrowserChoice::Command(command);
        }
        match env_browser {
            Some(command) if !command.trim().is_empty() => BrowserChoice::Command(command),
            _ => BrowserChoice::System,
        }
    }

    /// Whether this choice shows a page: a command always may, the system browser only with a
    /// display (`headless`: none), and `None` never.
    pub fn can_show(&self, headless: bool) -> bool {
        match self {
            BrowserChoice::None => false,
            BrowserChoice::Command(_) => true,
            BrowserChoice::System => !headless,
        }
    }

    /// The [`Browser`] implementing this choice.
    pub fn into_browser(self) -> Box<dyn Browser> {
        match self {
            BrowserChoice::System => Box::new(SystemBrowser),
            BrowserChoice::Command(command) => Box::new(CommandBrowser::new(command)),
            BrowserChoice::None => Box::new(NoBrowser),
        }
    }
}

/// The desktop's default browser, through the `open` crate.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemBrowser;

impl Browser for SystemBrowser {
    fn open(&self, url: &str) -> Result<(), BrowserError> {
        // The `open` crate's openers for this system (`xdg-open`, `gio open`, … on Linux), run
        // here rather than by `open::that_detached` so that their environment lacks the secrets.
        open_first(open::commands(url)).map_err(BrowserError::System)
    }
}

/// Starts the first of `openers` that does not fail within [`OPENER_FAILURE_WINDOW`], detached,
/// with null stdio and without the secret variables; reaps it in the background.
fn open_first(openers: Vec<Command>) -> std::io::Result<()> {
    let mut exit_error = None;
    let mut spawn_error = None;
    for mut cmd in openers {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        withhold_secrets(&mut cmd);
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(err) => {
                spawn_error = Some(err);
                continue;
            }
        };
        match watch_start(child, OPENER_FAILURE_WINDOW)? {
            Some(status) => {
                let program = cmd.get_program().to_string_lossy().into_owned();
                exit_error
                    .get_or_insert_with(|| std::io::Error::other(format!("{program} failed ({status})")));
            }
            None => return Ok(()),
        }
    }
    Err(exit_error
        .or(spawn_error)
        .unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no URL opener")))
}

/// Watches a just-started opener for `window`: `Some(status)` when it failed within it, `None`
/// when it succeeded or is still running (then it is reaped in the background).
fn watch_start(mut child: Child, window: Duration) -> std::io::Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + window;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(None),
            Ok(Some(status)) => return Ok(Some(status)),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                reap_in_background(child);
                return Ok(None);
            }
            Err(err) => {
                reap_in_background(child);
                return Err(err);
            }
        }
    }
}

/// Shows nothing; the caller prints the URL.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBrowser;

impl Browser for NoBrowser {
    fn open(&self, _url: &str) -> Result<(), BrowserError> {
        Ok(())
    }
}

/// Runs a user-given command with the URL: the command is split into words like a shell
/// would (quotes and backslashes, no expansion); every `%s` in a word is replaced by the URL
/// (the `BROWSER` convention), and when there is none the URL is appended as the last argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandBrowser {
    command: String,
}

impl CommandBrowser {
    /// A browser running `command`.
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
        }
    }

    /// The argument vector for `url`.
    fn argv(&self, url: &str) -> Result<Vec<String>, BrowserError> {
        let mut argv = split_command(&self.command)?;
        if argv.is_empty() {
            return Err(BrowserError::EmptyCommand);
        }
        if argv.iter().any(|w| w.contains("%s")) {
            for word in &mut argv {
                *word = word.replace("%s", url);
            }
        } else {
            argv.push(url.to_owned());
        }
        Ok(argv)
    }
}

impl Browser for CommandBrowser {
    /// Starts the command and watches it for [`COMMAND_FAILURE_WINDOW`]: one that exits with a
    /// failure status by then did not open anything.
    fn open(&self, url: &str) -> Result<(), BrowserError> {
        let argv = self.argv(url)?;
        let (program, child) = spawn_browser(&argv)?;
        match watch_start(child, COMMAND_FAILURE_WINDOW) {
            Ok(Some(status)) => Err(BrowserError::Failed {
                program: crate::text::one_line(&program, 100),
                status,
            }),
            // Running, done, or impossible to watch: it was started.
            Ok(None) | Err(_) => Ok(()),
        }
    }
}

/// Starts `argv` with stdin and stdout on /dev/null and stderr inherited, in its own process
/// group, and reaps it from a background thread. Returns the child's pid.
#[cfg(test)]
fn spawn_detached(argv: &[String]) -> Result<u32, BrowserError> {
    let (_, child) = spawn_browser(argv)?;
    let pid = child.id();
    reap_in_background(child);
    Ok(pid)
}

/// Starts `argv` with stdin and stdout on /dev/null and stderr inherited, in its own process
/// group; returns its program and the child, which the caller must wait for or reap.
fn spawn_browser(argv: &[String]) -> Result<(String, Child), BrowserError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(BrowserError::EmptyCommand);
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    withhold_secrets(&mut cmd);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Not in the terminal's foreground group: Ctrl-C on koidc/kubectl leaves the browser be.
        cmd.process_group(0);
    }
    let child = cmd.spawn().map_err(|source| BrowserError::Spawn {
        program: program.clone(),
        source,
    })?;
    Ok((program.clone(), child))
}

fn reap_in_background(mut child: Child) {
    // If no thread can be started the child stays a zombie until koidc exits; harmless.
    let _ = std::thread::Builder::new()
        .name("koidc-browser-reaper".into())
        .spawn(move || {
            let _ = child.wait();
        });
}

/// Splits `command` into words the way a POSIX shell would, without any expansion: blanks
/// separate words; `'…'` is literal; inside `"…"` a backslash escapes `"`, `\`, `$` and `` ` ``;
/// outside quotes a backslash escapes any character. An empty string gives no words.
pub fn split_command(command: &str) -> Result<Vec<String>, BrowserError> {
    let syntax = |problem| BrowserError::Syntax {
        command: command.to_owned(),
        problem,
    };
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(syntax("unclosed single quote")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(syntax("unclosed double quote")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(syntax("unclosed double quote")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err(syntax("trailing backslash")),
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    fn split(s: &str) -> Vec<String> {
        split_command(s).unwrap()
    }

    #[test]
    fn splitter_handles_blanks_quotes_and_backslashes() {
        assert_eq!(split("firefox"), ["firefox"]);
        assert_eq!(split("  firefox\t--new-window  "), ["firefox", "--new-window"]);
        assert_eq!(
            split(r#"'/opt/My Browser/bin' --profile "a b" c\ d"#),
            ["/opt/My Browser/bin", "--profile", "a b", "c d"]
        );
        assert_eq!(split(r#"a"b"'c'd"#), ["abcd"]);
        assert_eq!(split(r#""" ''"#), ["", ""]);
        assert_eq!(split(r#""\"\\\$\`\x""#), [r#""\$`\x"#]);
        assert_eq!(split(r"'a\b'"), [r"a\b"]);
        assert_eq!(split("$HOME/x *"), ["$HOME/x", "*"]);
        assert!(split("").is_empty());
        assert!(split("   ").is_empty());
    }

    #[test]
    fn splitter_rejects_unclosed_quotes_and_trailing_backslash() {
        for bad in ["'abc", "\"abc", "abc\\", "\"abc\\"] {
            let err = split_command(bad).unwrap_err();
            assert!(matches!(err, BrowserError::Syntax { .. }), "{bad}: {err:?}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn only_the_system_browser_needs_a_display_and_none_shows_nothing() {
        for headless in [false, true] {
            assert!(BrowserChoice::Command("x".into()).can_show(headless));
            assert!(!BrowserChoice::None.can_show(headless));
        }
        assert!(BrowserChoice::System.can_show(false));
        assert!(!BrowserChoice::System.can_show(true));
    }

    #[test]
    fn resolve_prefers_no_browser_then_flag_then_env_then_system() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            BrowserChoice::resolve(some("a"), true, some("b")),
            BrowserChoice::None
        );
        assert_eq!(
            BrowserChoice::resolve(some("a"), false, some("b")),
            BrowserChoice::Command("a".into())
        );
        assert_eq!(
            BrowserChoice::resolve(None, false, some("b")),
            BrowserChoice::Command("b".into())
        );
        assert_eq!(
            BrowserChoice::resolve(None, false, some("  ")),
            BrowserChoice::System
        );
        assert_eq!(BrowserChoice::resolve(None, false, None), BrowserChoice::System);
    }

    #[test]
    fn command_argv_appends_url_or_substitutes_percent_s() {
        let url = "http://127.0.0.1:1/x?a=1&b=2";
        assert_eq!(
            CommandBrowser::new("firefox -P 'my profile'").argv(url).unwrap(),
            ["firefox", "-P", "my profile", url]
        );
        assert_eq!(
            CommandBrowser::new("chromium --app=%s").argv(url).unwrap(),
            ["chromium".to_owned(), format!("--app={url}")]
        );
        assert!(matches!(
            CommandBrowser::new("  ").argv(url),
            Err(BrowserError::EmptyCommand)
        ));
    }

    fn temp_dir() -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "koidc-browser-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn wait_for_file(path: &Path) -> String {
        let start = Instant::now();
        loop {
            if let Ok(s) = std::fs::read_to_string(path) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{path:?} never appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn command_gets_url_as_one_argument_and_null_stdio() {
        let dir = temp_dir();
        // $0 is the URL (the argument after the script, so $# is 0); fds 0/1 of the shell are read
        // through /proc before any redirection (dash redirects in the shell itself); the file is renamed into place so it is read only when complete.
        let script = format!(
            "i=$(readlink /proc/$$/fd/0); o=$(readlink /proc/$$/fd/1); \
             echo \"$0\" > {d}/argv.tmp; echo $# > {d}/argc; \
             echo $i > {d}/stdin; echo $o > {d}/stdout; \
             echo this-must-not-reach-our-stdout; mv {d}/argv.tmp {d}/argv",
            d = dir.display()
        );
        let command = format!("sh -c '{script}'");
        let url = "http://127.0.0.1:9/cb?a=1&b=two words;$(touch pwned)'\"";
        CommandBrowser::new(command).open(url).unwrap();
        assert_eq!(wait_for_file(&dir.join("argv")), format!("{url}\n"));
        assert_eq!(std::fs::read_to_string(dir.join("argc")).unwrap().trim(), "0");
        assert_eq!(
            std::fs::read_to_string(dir.join("stdin")).unwrap().trim(),
            "/dev/null"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("stdout")).unwrap().trim(),
            "/dev/null"
        );
        assert!(!dir.join("pwned").exists() && !Path::new("pwned").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn open_returns_without_waiting_and_child_is_reaped() {
        // The child runs until the test lets it go (or 60 s pass): finding it still running
        // once spawn_detached has returned shows that nothing waited for it, however slow the
        // machine.
        let dir = temp_dir();
        let go = dir.join("go");
        let script = format!(
            "i=0; while [ ! -e {go} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done",
            go = go.display()
        );
        let argv = vec!["sh".to_owned(), "-c".to_owned(), script];
        let pid = spawn_detached(&argv).unwrap();
        let status = PathBuf::from(format!("/proc/{pid}/status"));
        let state = std::fs::read_to_string(&status).expect("the child is still running");
        assert!(
            !state.lines().any(|l| l.starts_with("State:") && l.contains('Z')),
            "the child had already ended: open waited for it"
        );
        std::fs::write(&go, "").unwrap();
        let start = Instant::now();
        loop {
            // Reaped: the /proc entry disappears (a zombie would stay in state Z).
            match std::fs::read_to_string(&status) {
                Err(_) => break,
                Ok(s) => assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "child never reaped: {}",
                    s.lines().find(|l| l.starts_with("State")).unwrap_or("")
                ),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The value `cmd` will give the child for `name`: `Some(None)` when removed.
    fn env_of(cmd: &Command, name: &str) -> Option<Option<String>> {
        cmd.get_envs()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
    }

    #[test]
    fn secret_variables_are_removed_from_what_a_browser_inherits() {
        withhold_from_browser("KOIDC_TEST_PROFILE_SECRET_VAR");
        withhold_from_browser("KOIDC_TEST_PROFILE_SECRET_VAR");
        let mut cmd = Command::new("true");
        cmd.env(CLIENT_SECRET_ENV, "s1")
            .env("KOIDC_TEST_PROFILE_SECRET_VAR", "s2")
            .env("KOIDC_TEST_KEPT", "v");
        withhold_secrets(&mut cmd);
        assert_eq!(env_of(&cmd, CLIENT_SECRET_ENV), Some(None));
        assert_eq!(env_of(&cmd, "KOIDC_TEST_PROFILE_SECRET_VAR"), Some(None));
        assert_eq!(env_of(&cmd, "KOIDC_TEST_KEPT"), Some(Some("v".into())));
    }

    #[test]
    fn system_opener_tries_the_next_one_after_a_quick_failure_and_reports_failures() {
        let dir = temp_dir();
        let mark = dir.join("second-ran");
        let fail = Command::new("false");
        let missing = Command::new("koidc-no-such-opener-xyz");
        let mut second = Command::new("sh");
        second.arg("-c").arg(format!("touch {}", mark.display()));
        open_first(vec![missing, fail, second]).unwrap();
        // Under load the opener may still be running when open_first returns.
        wait_for_file(&mark);

        let err = open_first(vec![
            Command::new("koidc-no-such-opener-xyz"),
            Command::new("false"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("false failed"), "{err}");
        let err = open_first(vec![Command::new("koidc-no-such-opener-xyz")]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(
            open_first(Vec::new()).unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_slow_system_opener_counts_as_started() {
        let start = Instant::now();
        let mut slow = Command::new("sh");
        slow.args(["-c", "sleep 2"]);
        open_first(vec![slow]).unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "waited for the opener to exit"
        );
    }

    #[test]
    fn browser_command_that_fails_at_once_is_an_error_in_a_few_words() {
        let err = CommandBrowser::new("false")
            .open("http://127.0.0.1:1/")
            .unwrap_err();
        assert!(
            matches!(&err, BrowserError::Failed { program, .. } if program == "false"),
            "{err:?}"
        );
        assert_eq!(err.short(), "`false` failed (exit status: 1)");
        assert!(err.to_string().contains("--browser-command"), "{err}");
        // One that succeeds at once, or keeps running, opened the browser.
        CommandBrowser::new("true").open("http://127.0.0.1:1/").unwrap();
        CommandBrowser::new("sh -c 'sleep 5'")
            .open("http://127.0.0.1:1/")
            .unwrap();
        // A hostile command cannot break the line.
        let err = BrowserChoice::Command("'\u{1b}[2J\nx'".into())
            .into_browser()
            .open("http://127.0.0.1:1/")
            .unwrap_err();
        assert!(!err.short().contains(['\n', '\u{1b}']), "{:?}", err.short());
    }

    #[test]
    fn missing_program_is_reported_by_name() {
        let err = CommandBrowser::new("koidc-no-such-browser-xyz --flag")
            .open("http://127.0.0.1:1/")
            .unwrap_err();
        assert!(
            matches!(&err, BrowserError::Spawn { program, .. } if program == "koidc-no-such-browser-xyz")
        );
        assert!(err.to_string().contains("`koidc-no-such-browser-xyz`"), "{err}");
    }

    #[test]
    fn empty_command_is_an_error_and_no_browser_does_nothing() {
        let err = BrowserChoice::Command(String::new())
            .into_browser()
            .open("http://127.0.0.1:1/")
            .unwrap_err();
        assert!(matches!(err, BrowserError::EmptyCommand));
        assert!(
            BrowserChoice::None
                .into_browser()
                .open("http://127.0.0.1:1/")
                .is_ok()
        );
    }
}
