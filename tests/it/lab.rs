//! One test's world: a temp dir (HOME, cache dir, browser log), the counting proxy, a Dex whose
//! issuer is the proxy, and helpers that run koidc against them with a clean environment and
//! the common flags (issuer, client id, cache, fake browser, `offline_access`).

use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

use crate::browser::{BrowserLog, fake_browser};
use crate::dex::{CLIENT_ID, Dex, DexOptions};
use crate::proxy::Proxy;
use crate::support::{
    ExecCredential, Output, Stdout, assert_no_leak, clean_command, koidc_bin, parse_exec_credential, run,
};

/// How a lab is set up.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub dex: DexOptions,
    /// `--cache` value; `None` leaves koidc's default (keyring).
    pub cache: Option<&'static str>,
    /// The path of Dex's issuer after the proxy's URL: `/dex` (koidc detects Dex from it), or
    /// e.g. `""` for an issuer koidc treats as a generic provider, like the README's examples.
    pub issuer_path: &'static str,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            dex: DexOptions::default(),
            cache: Some("file"),
            issuer_path: "/dex",
        }
    }
}

impl LabOptions {
    /// File cache and Dex ID tokens living `lifetime` (e.g. `"95s"`).
    pub fn id_tokens(lifetime: &str) -> LabOptions {
        LabOptions {
            dex: DexOptions {
                id_token_lifetime: lifetime.into(),
                ..DexOptions::default()
            },
            ..LabOptions::default()
        }
    }
}

pub struct Lab {
    pub home: PathBuf,
    pub cache_dir: PathBuf,
    pub browser: BrowserLog,
    /// Extra environment for every koidc run (e.g. the fake browser's login).
    pub env: Vec<(String, String)>,
    /// Extra koidc flags for every run (e.g. more scopes).
    pub flags: Vec<String>,
    options: LabOptions,
    pub dex: Dex,
    pub proxy: Proxy,
    // Last, so it is removed after Dex has stopped.
    pub tmp: TempDir,
}

impl Lab {
    pub fn start(options: LabOptions) -> Lab {
        let tmp = tempfile::Builder::new()
            .prefix("koidc-it-")
            .tempdir()
            .expect("temp dir");
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).expect("create HOME");
        let proxy = Proxy::start();
        let issuer = format!("{}{}", proxy.url(), options.issuer_path);
        let dex = Dex::start(tmp.path(), &issuer, &options.dex);
        proxy.set_upstream(&dex.base_url());
        Lab {
            cache_dir: tmp.path().join("cache"),
            browser: BrowserLog::new(tmp.path()),
            home,
            env: Vec::new(),
            flags: Vec::new(),
            options,
            dex,
            proxy,
            tmp,
        }
    }

    /// Dex's issuer as clients see it: the proxy's URL plus the issuer path (`/dex`).
    pub fn issuer(&self) -> String {
        format!("{}{}", self.proxy.url(), self.options.issuer_path)
    }

    /// `SUBCOMMAND` followed by the common flags and the lab's extra flags.
    pub fn args(&self, subcommand: &str) -> Vec<String> {
        let mut args = vec![
            subcommand.to_string(),
            "--issuer".into(),
            self.issuer(),
            "--client-id".into(),
            CLIENT_ID.into(),
            "--cache-dir".into(),
            self.cache_dir.display().to_string(),
            "--scope".into(),
            "offline_access".into(),
        ];
        // `whoami` reads the cache only: it takes no login options.
        if subcommand != "whoami" {
            args.extend([
                "--browser-command".to_string(),
                fake_browser().display().to_string(),
                "--timeout".to_string(),
                "60".to_string(),
            ]);
        }
        if let Some(cache) = self.options.cache {
            args.extend(["--cache".to_string(), cache.to_string()]);
        }
        args.extend(self.flags.iter().cloned());
        args
    }

    /// The environment every koidc run gets on top of PATH and HOME.
    pub fn run_env(&self) -> Vec<(String, String)> {
        let mut env = vec![(
            "FAKE_BROWSER_LOG".to_string(),
            self.browser.path.display().to_string(),
        )];
        env.extend(self.env.iter().cloned());
        env
    }

    /// A koidc command with a clean environment, ready to spawn.
    pub fn command(&self, subcommand: &str, extra: &[&str]) -> Command {
        let mut cmd = clean_command(koidc_bin(), &self.home);
        cmd.args(self.args(subcommand)).args(extra);
        cmd.envs(self.run_env());
        cmd
    }

    /// As [`Lab::command`], but an option given in `extra` with a value replaces the lab's own
    /// (clap refuses a repeated option): `--client-id other`, `--browser-command false`.
    pub fn command_overriding(&self, subcommand: &str, extra: &[&str]) -> Command {
        let mut args = self.args(subcommand);
        for pair in extra.windows(2) {
            let (flag, value) = (pair[0], pair[1]);
            if !flag.starts_with("--") || value.starts_with("--") {
                continue;
            }
            if let Some(at) = args.iter().position(|a| a == flag) {
                args.drain(at..at + 2);
            }
        }
        let mut cmd = clean_command(koidc_bin(), &self.home);
        cmd.args(args).args(extra).envs(self.run_env());
        cmd
    }

    /// Runs koidc to completion.
    pub fn koidc(&self, subcommand: &str, extra: &[&str]) -> Output {
        run(&mut self.command(subcommand, extra))
    }

    /// Runs `get-token`, asserts success and no leak, and parses the ExecCredential.
    #[track_caller]
    pub fn get_token(&self) -> (Output, ExecCredential) {
        let out = self.koidc("get-token", &[]);
        self.assert_ok_get_token(&out)
    }

    /// Checks a finished `get-token`: success, no leak, a well-formed ExecCredential for a token
    /// this Dex issued.
    #[track_caller]
    pub fn assert_ok_get_token(&self, out: &Output) -> (Output, ExecCredential) {
        out.assert_success();
        self.assert_no_leak(out, Stdout::MayHoldIdToken);
        let cred = parse_exec_credential(out);
        assert_eq!(
            cred.claims["iss"],
            self.issuer().as_str(),
            "token from another issuer"
        );
        assert_eq!(cred.claims["aud"], CLIENT_ID, "token for another audience");
        (out.clone(), cred)
    }

    /// No secret seen on the wire so far shows in `out`.
    #[track_caller]
    pub fn assert_no_leak(&self, out: &Output, stdout: Stdout) {
        assert_no_leak(out, &self.proxy.secrets(), stdout);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.dex.log_text();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- proxy saw ---");
            for seen in self.proxy.seen() {
                eprintln!("{} {} {:?}", seen.method, seen.path, seen.grant_type);
            }
            eprintln!("--- last Dex log lines ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
