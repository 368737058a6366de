//! A real Kubernetes control plane for end-to-end RBAC tests: the pinned etcd (v3.6.14) and
//! kube-apiserver (v1.36.3) from `tests/e2e/deps.sh` on 127.0.0.1, with RBAC authorization and a
//! structured `AuthenticationConfiguration` file trusting a real Dex served over HTTPS.
//!
//! Start order matters: [`KubeIdp::start`] makes the test CA and certificates ([`Pki`]) and starts
//! Dex (users [`READER`] and [`WRITER`]; [`KubeIdp::start_with`] adds Dex options such as
//! connectors) first, because the apiserver's JWT authenticator stays
//! "not initialized" until the issuer's discovery answers, and because `koidc setup` checks the
//! issuer before it prints anything. [`KubeCluster::start_default`] then runs the real
//! `koidc setup --print authentication-config` against that Dex ([`KubeIdp::setup_auth_config`])
//! and starts the apiserver with exactly what it printed; [`KubeCluster::start`] takes any config.
//!
//! koidc's admin commands run as the cluster admin would run them ([`KubeIdp::koidc_admin`]): one
//! HOME and one `XDG_CONFIG_HOME` for every admin step, so `koidc bind-group` finds the groups
//! prefix `koidc setup` saved there. [`KubeCluster::bind_group_apply`] lets koidc apply RBAC with
//! the pinned kubectl and the admin kubeconfig; [`KubeCluster::write_user_kubeconfig`] builds a
//! user kubeconfig the way a user would (`kubectl config set-cluster/set-context/use-context`,
//! then `koidc setup --write-kubeconfig`).
//!
//! Nothing runs a kubelet or a scheduler: pods are stored but never run, which is all RBAC
//! checks need. [`KubeCluster::admin`] runs kubectl with a client certificate in
//! `system:masters`. Users: [`KubeCluster::user_of`] runs kubectl with a given kubeconfig (the one
//! `koidc setup` wrote) and passes the test-only knobs (fake browser, file cache, cache dir) to
//! the `koidc get-token` exec plugin through kubectl's environment, which kubectl hands on;
//! [`KubeCluster::user`] writes a harness kubeconfig with those knobs as plugin arguments instead.
//!
//! Processes die with the cluster (`Drop`), with the thread that started them (parent-death
//! signal), and, for a cluster shared by a test module ([`keep_until_exit`]), at process exit.
//! Logs stay in the temp dir; they are printed, and the dir is kept, when a test fails.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock, mpsc};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use tempfile::TempDir;

use crate::browser::{BrowserLog, fake_browser};
use crate::dex::{CLIENT_ID, Dex, DexHttps, DexOptions, StaticUser, die_with_parent, free_port, http_get_ok};
use crate::kubeconfig::{self, ExecApi};
use crate::support::{Output, clean_command, e2e_binary, koidc_bin, run, runtime};

/// The prefix `koidc setup` puts before usernames and group names by default (and that it saves
/// for `koidc bind-group`).
pub const PREFIX: &str = "oidc:";

/// The scopes every test asks Dex for (`openid` is always added by koidc).
pub const SCOPES: [&str; 3] = ["email", "groups", "offline_access"];

/// Namespaces every cluster test uses: where the example roles live, and one without rights.
pub const APP_NAMESPACE: &str = "application";
pub const OTHER_NAMESPACE: &str = "other";

/// Names in the user kubeconfig [`KubeCluster::write_user_kubeconfig`] builds: the cluster and
/// context made with kubectl, the user entry `koidc setup` writes, and a bystander cluster, user
/// and context that koidc must leave alone.
pub const USER_CLUSTER: &str = "koidc-test";
pub const USER_CONTEXT: &str = "koidc-test";
pub const USER_NAME: &str = "oidc";
pub const BYSTANDER: &str = "bystander";

/// An image reference that is never pulled (no kubelet runs).
pub const NEVER_PULLED_IMAGE: &str = "registry.invalid/koidc/never-pulled:0";

/// How long the apiserver may take to become ready (2 cores shared with compilers).
const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A Dex password-DB user the tests log in as (through the fake browser).
#[derive(Debug, Clone, Copy)]
pub struct TestUser {
    pub email: &'static str,
    pub password: &'static str,
    /// The IdP group (without the prefix).
    pub group: &'static str,
    username: &'static str,
    user_id: &'static str,
    hash: &'static str,
}

impl TestUser {
    /// The username the apiserver derives: `oidc:<email>`.
    pub fn kube_username(&self) -> String {
        format!("{PREFIX}{}", self.email)
    }

    /// The group name RBAC subjects use: `oidc:<group>`.
    pub fn kube_group(&self) -> String {
        format!("{PREFIX}{}", self.group)
    }

    fn static_user(&self) -> StaticUser {
        StaticUser {
            email: self.email.into(),
            username: self.username.into(),
            user_id: self.user_id.into(),
            hash: self.hash.into(),
            groups: vec![self.group.into()],
        }
    }
}

/// Member of `reader-group`. Hash: bcrypt cost 10 of "reader-password", made once with
/// Python's `crypt.crypt("reader-password", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1024))`.
pub const READER: TestUser = TestUser {
    email: "reader@example.com",
    password: "reader-password",
    group: "reader-group",
    username: "reader",
    user_id: "5d1c3c4e-0a1b-4c55-9f1e-7a1d2b3c4d01",
    hash: "$2b$10$0q7X7Ezzi0tjRi9/O8WRDOrmdnoJmzUwzUsyT/3GtIo0Qq.Y9q6Pm",
};

/// Member of `writer-group`. Hash: bcrypt cost 10 of "writer-password" (made as for [`READER`]).
pub const WRITER: TestUser = TestUser {
    email: "writer@example.com",
    password: "writer-password",
    group: "writer-group",
    username: "writer",
    user_id: "5d1c3c4e-0a1b-4c55-9f1e-7a1d2b3c4d02",
    hash: "$2b$10$ay4z7bY/n4tGFWwOtDofJuNb7V9mlpP6vwl3j90AsqBeDAnJYe81W",
};

/// The test CA and everything it signed, as files in a directory (and the PEMs tests need).
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_pem: String,
    pub ca_file: PathBuf,
    /// Dex's serving certificate and key (IP 127.0.0.1).
    pub dex_cert_file: PathBuf,
    pub dex_key_file: PathBuf,
    /// The apiserver's serving certificate and key (IP 127.0.0.1, `kubernetes`,
    /// `kubernetes.default.svc`).
    pub apiserver_cert_file: PathBuf,
    pub apiserver_key_file: PathBuf,
    /// The service-account token signing key pair.
    pub sa_public_file: PathBuf,
    pub sa_private_file: PathBuf,
    /// The admin client certificate (CN=koidc-admin, O=system:masters) and its key.
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

impl Pki {
    /// Generates a fresh CA and certificates and writes them under `dir`.
    pub fn generate(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("create the pki dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "koidc kube test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_pem = ca_params.self_signed(&ca_key).expect("self-sign CA").pem();
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |sans: &[&str], cn: &str, org: Option<&str>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("leaf key");
            let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
            let mut params = CertificateParams::new(sans).expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, cn);
            if let Some(org) = org {
                params.distinguished_name.push(DnType::OrganizationName, org);
            }
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer).expect("sign leaf");
            (cert.pem(), key.serialize_pem())
        };
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            path
        };

        let (dex_cert, dex_key) = leaf(&["127.0.0.1"], "dex", None, ExtendedKeyUsagePurpose::ServerAuth);
        let (api_cert, api_key) = leaf(
            &["127.0.0.1", "kubernetes", "kubernetes.default.svc"],
            "kube-apiserver",
            None,
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (admin_cert_pem, admin_key_pem) = leaf(
            &[],
            "koidc-admin",
            Some("system:masters"),
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let sa_key = KeyPair::generate().expect("service-account key");
        Pki {
            ca_file: write("ca.crt", &ca_pem),
            dex_cert_file: write("dex.crt", &dex_cert),
            dex_key_file: write("dex.key", &dex_key),
            apiserver_cert_file: write("apiserver.crt", &api_cert),
            apiserver_key_file: write("apiserver.key", &api_key),
            sa_public_file: write("sa.pub", &sa_key.public_key_pem()),
            sa_private_file: write("sa.key", &sa_key.serialize_pem()),
            ca_pem,
            admin_cert_pem,
            admin_key_pem,
        }
    }
}

/// The identity-provider half of a cluster: a temp dir, the [`Pki`], and Dex over HTTPS with
/// [`READER`] and [`WRITER`]. Start it before the apiserver.
pub struct KubeIdp {
    pub pki: Pki,
    pub dex: Dex,
    // Last, so it is removed after Dex has stopped.
    tmp: TempDir,
}

impl KubeIdp {
    pub fn start() -> KubeIdp {
        Self::start_with(&DexOptions::default())
    }

    /// [`Self::start`] with Dex configured by `options` (e.g. extra connectors).
    pub fn start_with(options: &DexOptions) -> KubeIdp {
        let tmp = tempfile::Builder::new()
            .prefix("koidc-kube-")
            .tempdir()
            .expect("temp dir");
        let pki = Pki::generate(&tmp.path().join("pki"));
        let https = DexHttps {
            cert_file: pki.dex_cert_file.clone(),
            key_file: pki.dex_key_file.clone(),
            ca_pem: pki.ca_pem.clone(),
            users: vec![READER.static_user(), WRITER.static_user()],
        };
        let dex = Dex::start_https(tmp.path(), &https, options);
        let idp = KubeIdp { pki, dex, tmp };
        for dir in [idp.admin_home(), idp.admin_config_dir()] {
            std::fs::create_dir_all(&dir).expect("create an admin dir");
        }
        idp
    }

    /// `https://127.0.0.1:PORT/dex`
    pub fn issuer(&self) -> &str {
        self.dex.issuer()
    }

    /// The test CA (PEM), trusted for Dex and the apiserver.
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// The test CA as a file (for `--certificate-authority`).
    pub fn ca_file(&self) -> &Path {
        &self.pki.ca_file
    }

    /// The temp dir holding configs, logs, data and user dirs.
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// The admin's HOME (for kubectl and koidc's admin commands).
    pub fn admin_home(&self) -> PathBuf {
        self.dir().join("admin-home")
    }

    /// The admin's `XDG_CONFIG_HOME`, shared by every admin step: `koidc setup` saves the groups
    /// prefix in `koidc/cluster.json` there and `koidc bind-group` reads it.
    pub fn admin_config_dir(&self) -> PathBuf {
        self.dir().join("admin-config")
    }

    /// `--issuer <Dex> --client-id koidc --scope email --scope groups --scope offline_access
    /// --certificate-authority <test CA>`: the choices every `koidc setup` of the tests starts with.
    pub fn setup_args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec!["--issuer".into(), self.issuer().into()];
        args.extend(["--client-id".into(), CLIENT_ID.into()]);
        for scope in SCOPES {
            args.extend(["--scope".into(), scope.into()]);
        }
        args.push("--certificate-authority".into());
        args.push(self.ca_file().display().to_string());
        args
    }

    /// Runs the koidc binary as the cluster admin (HOME and XDG_CONFIG_HOME of the admin, nothing
    /// else from the test's environment); does not check the exit status.
    pub fn koidc_admin<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        run_koidc(&self.admin_home(), &self.admin_config_dir(), args, &[])
    }

    /// `koidc setup <setup_args> --print authentication-config`, as the admin (which also saves
    /// the groups prefix for `koidc bind-group`); does not check the exit status.
    pub fn setup_auth_config(&self) -> Output {
        let mut args = vec!["setup".to_owned()];
        args.extend(self.setup_args());
        args.extend(["--print".into(), "authentication-config".into()]);
        self.koidc_admin(&args)
    }

    /// The browser command for koidc: the fake browser, trusting Dex's certificate.
    pub fn browser_command(&self) -> String {
        // The fake browser (Python urllib) trusts Dex's certificate through OpenSSL's
        // SSL_CERT_FILE. Set it for the browser only: koidc would honour it too (rustls native
        // roots) and so hide a broken `--certificate-authority`.
        format!(
            "env SSL_CERT_FILE='{}' '{}'",
            self.ca_file().display(),
            fake_browser().display()
        )
    }
}

/// Runs the koidc binary with a clean environment: `HOME=home`, `XDG_CONFIG_HOME=config_dir`,
/// `PATH`, and `env`. Does not check the exit status.
pub fn run_koidc<S: AsRef<OsStr>>(
    home: &Path,
    config_dir: &Path,
    args: &[S],
    env: &[(&str, String)],
) -> Output {
    let mut cmd = clean_command(koidc_bin(), home);
    cmd.env("XDG_CONFIG_HOME", config_dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args);
    run(&mut cmd)
}

/// A server process writing to a log file.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: PathBuf, dir: &Path) -> Proc {
        let file = std::fs::File::create(&log).expect("create a log file");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log file"))
            .stderr(file);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
        Proc { child, log }
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `lines` lines of a log file, each cut to 400 characters.
fn tail(path: &Path, lines: usize) -> String {
    tail_matching(path, lines, |_| true)
}

/// The last `lines` lines of a log file that pass `keep`, each cut to 400 characters.
fn tail_matching(path: &Path, lines: usize, keep: impl Fn(&str) -> bool) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().filter(|l| keep(l)).collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| l.chars().take(400).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

/// etcd + kube-apiserver (+ the [`KubeIdp`]); everything is killed when dropped.
// Some accessors are there for tests of other modules.
#[allow(dead_code)]
pub struct KubeCluster {
    apiserver: Proc,
    /// The `koidc setup` run whose output is the apiserver's authentication config
    /// ([`Self::start_default`]).
    auth_setup: Option<Output>,
    etcd: Proc,
    url: String,
    admin_kubeconfig: PathBuf,
    auth_config_file: PathBuf,
    apiserver_startup: Duration,
    kubectl: PathBuf,
    keep_dir: AtomicBool,
    next_user: AtomicUsize,
    // Last: dropped after the apiserver and etcd are dead.
    pub idp: KubeIdp,
}

#[allow(dead_code)]
impl KubeCluster {
    /// Starts etcd and kube-apiserver trusting `idp`'s Dex through `auth_config_yaml` (written
    /// as is to the `--authentication-config` file), and waits for `/readyz`. Fails the test,
    /// with the logs, when a binary is missing or a server does not come up.
    pub fn start(auth_config_yaml: &str, idp: KubeIdp) -> KubeCluster {
        Self::start_with_apiserver_flags(auth_config_yaml, idp, &[])
    }

    /// [`Self::start`] with `extra_apiserver_flags` added to kube-apiserver's command line (e.g.
    /// `--authentication-token-webhook-config-file=…` for the GitHub webhook tests).
    pub fn start_with_apiserver_flags(
        auth_config_yaml: &str,
        idp: KubeIdp,
        extra_apiserver_flags: &[String],
    ) -> KubeCluster {
        let apiserver_bin = e2e_binary(
            "KOIDC_E2E_KUBE_APISERVER",
            "kube-apiserver v1.36.3 (`tests/e2e/deps.sh all`)",
        );
        let etcd_bin = e2e_binary("KOIDC_E2E_ETCD", "etcd v3.6.14 (`tests/e2e/deps.sh all`)");
        let kubectl = e2e_binary("KOIDC_E2E_KUBECTL", "kubectl v1.36.3");
        let dir = idp.dir().to_path_buf();
        let auth_config_file = dir.join("authentication-config.yaml");
        std::fs::write(&auth_config_file, auth_config_yaml).expect("write the auth config");

        let (mut etcd, etcd_url) = start_etcd(&etcd_bin, &dir);
        let started = Instant::now();
        let (apiserver, url) = match start_apiserver(
            &apiserver_bin,
            &dir,
            &idp.pki,
            &etcd_url,
            &auth_config_file,
            extra_apiserver_flags,
        ) {
            Ok(started) => started,
            Err(message) => {
                etcd.kill();
                panic!("{message}\n--- last etcd log lines ---\n{}", tail(&etcd.log, 20));
            }
        };
        let apiserver_startup = started.elapsed();

        let admin_kubeconfig = dir.join("admin.kubeconfig");
        write_admin_kubeconfig(&admin_kubeconfig, &url, &idp.pki);
        KubeCluster {
            apiserver,
            auth_setup: None,
            etcd,
            url,
            admin_kubeconfig,
            auth_config_file,
            apiserver_startup,
            kubectl,
            keep_dir: AtomicBool::new(false),
            next_user: AtomicUsize::new(0),
            idp,
        }
    }

    /// [`KubeIdp::start`], then the real `koidc setup ... --print authentication-config`
    /// ([`KubeIdp::setup_auth_config`]), then [`KubeCluster::start`] with exactly its stdout.
    /// Fails the test when setup fails. The setup run stays available as [`Self::auth_setup`].
    pub fn start_default() -> KubeCluster {
        let idp = KubeIdp::start();
        let setup = idp.setup_auth_config();
        setup.assert_success();
        let mut cluster = KubeCluster::start(&setup.stdout, idp);
        cluster.auth_setup = Some(setup);
        cluster
    }

    /// The `koidc setup` run whose stdout the apiserver was started with (None when the config
    /// was given to [`Self::start`]).
    pub fn auth_setup(&self) -> Option<&Output> {
        self.auth_setup.as_ref()
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Dex's issuer.
    pub fn issuer(&self) -> &str {
        self.idp.issuer()
    }

    /// A kubeconfig with the `system:masters` client certificate.
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// The `--authentication-config` file (the apiserver re-reads it when it changes).
    pub fn auth_config_file(&self) -> &Path {
        &self.auth_config_file
    }

    /// How long the apiserver took from start to `/readyz` answering 200.
    pub fn apiserver_startup(&self) -> Duration {
        self.apiserver_startup
    }

    /// The pinned kubectl.
    pub fn kubectl_bin(&self) -> &Path {
        &self.kubectl
    }

    /// Runs kubectl as the cluster admin (does not check the exit status).
    pub fn admin(&self, args: &[&str]) -> Output {
        let mut cmd = clean_command(&self.kubectl, &self.idp.admin_home());
        cmd.arg("--kubeconfig").arg(&self.admin_kubeconfig).args(args);
        run(&mut cmd)
    }

    /// Runs kubectl as the cluster admin and fails the test unless it succeeds.
    #[track_caller]
    pub fn admin_ok(&self, args: &[&str]) -> Output {
        let out = self.admin(args);
        out.assert_success();
        out
    }

    /// Runs kubectl as the cluster admin with `stdin` piped in (does not check the exit status).
    pub fn admin_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = clean_command(&self.kubectl, &self.idp.admin_home());
        cmd.arg("--kubeconfig")
            .arg(&self.admin_kubeconfig)
            .args(args)
            .stdin(Stdio::piped());
        let what = format!("`kubectl {}` (stdin piped)", args.join(" "));
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let bytes = stdin.as_bytes().to_vec();
        let writer = std::thread::spawn(move || pipe.write_all(&bytes));
        let out = child.wait_with_output().unwrap_or_else(|e| panic!("{what}: {e}"));
        writer
            .join()
            .expect("the stdin writer thread")
            .unwrap_or_else(|e| panic!("{what}: cannot write its stdin: {e}"));
        Output {
            what,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `koidc bind-group <args> --apply --kubectl <pinned kubectl> --kubeconfig <admin>`, run as
    /// the admin (so with the groups prefix `koidc setup` saved); does not check the exit status.
    pub fn bind_group_apply(&self, args: &[&str]) -> Output {
        let mut all: Vec<&OsStr> = vec![OsStr::new("bind-group")];
        all.extend(args.iter().map(OsStr::new));
        all.extend([
            OsStr::new("--apply"),
            OsStr::new("--kubectl"),
            self.kubectl.as_os_str(),
            OsStr::new("--kubeconfig"),
            self.admin_kubeconfig.as_os_str(),
        ]);
        self.idp.koidc_admin(&all)
    }

    /// Builds a user kubeconfig at `path` as a user would: `kubectl config set-cluster`
    /// ([`USER_CLUSTER`], this apiserver, the test CA embedded), `set-context`
    /// ([`USER_CONTEXT`], user `oidc`), `use-context`, plus a bystander cluster, user and context
    /// that koidc must keep; then the real `koidc setup <setup_args> --write-kubeconfig
    /// --kubeconfig <path> --user oidc --exec-command <absolute koidc>`. Fails the test when a
    /// step fails; returns the setup run.
    pub fn write_user_kubeconfig(&self, path: &Path) -> Output {
        self.write_user_kubeconfig_for(path, &self.idp.setup_args())
    }

    /// [`Self::write_user_kubeconfig`] with `koidc setup` run with `setup_args` (another
    /// issuer's) instead of [`KubeIdp::setup_args`].
    pub fn write_user_kubeconfig_for(&self, path: &Path, setup_args: &[String]) -> Output {
        let home = path.parent().expect("the kubeconfig has a parent dir");
        std::fs::create_dir_all(home).expect("create the kubeconfig dir");
        let kubeconfig = format!("--kubeconfig={}", path.display());
        let ca = format!("--certificate-authority={}", self.idp.ca_file().display());
        let server = format!("--server={}", self.url);
        let steps: [&[&str]; 6] = [
            &[
                "config",
                "set-cluster",
                USER_CLUSTER,
                &server,
                &ca,
                "--embed-certs",
            ],
            &[
                "config",
                "set-context",
                USER_CONTEXT,
                "--cluster",
                USER_CLUSTER,
                "--user",
                USER_NAME,
            ],
            &["config", "set-cluster", BYSTANDER, "--server=https://127.0.0.1:1"],
            &[
                "config",
                "set-credentials",
                BYSTANDER,
                "--token=bystander-not-a-secret",
            ],
            &[
                "config",
                "set-context",
                BYSTANDER,
                "--cluster",
                BYSTANDER,
                "--user",
                BYSTANDER,
            ],
            &["config", "use-context", USER_CONTEXT],
        ];
        for step in steps {
            let mut cmd = clean_command(&self.kubectl, home);
            cmd.arg(&kubeconfig).args(step);
            run(&mut cmd).assert_success();
        }
        let mut args = vec!["setup".to_owned()];
        args.extend(setup_args.iter().cloned());
        args.extend([
            "--write-kubeconfig".into(),
            "--kubeconfig".into(),
            path.display().to_string(),
            "--user".into(),
            USER_NAME.into(),
            "--exec-command".into(),
            koidc_bin().into(),
        ]);
        let setup = run_koidc(home, &home.join("xdg-config"), &args, &[]);
        setup.assert_success();
        setup
    }

    /// Creates a namespace as admin.
    #[track_caller]
    pub fn create_namespace(&self, name: &str) {
        self.admin_ok(&["create", "namespace", name]);
    }

    /// Creates a pod (never scheduled) as admin.
    #[track_caller]
    pub fn create_pod(&self, namespace: &str, name: &str) {
        self.admin_ok(&pod_create_args(namespace, name));
    }

    /// koidc's `get-token` arguments for a kubeconfig of this cluster: Dex's issuer, client
    /// `koidc`, scopes `email groups offline_access`, the test CA, the file cache in
    /// `cache_dir`, the fake browser (which needs `FAKE_BROWSER_LOGIN`/`_PASSWORD` in the env).
    pub fn get_token_args(&self, cache_dir: &Path) -> Vec<String> {
        let mut args: Vec<String> = vec!["get-token".into(), "--issuer".into()];
        args.push(self.issuer().into());
        args.extend(["--client-id".into(), CLIENT_ID.into()]);
        for scope in SCOPES {
            args.extend(["--scope".into(), scope.into()]);
        }
        args.push("--certificate-authority".into());
        args.push(self.idp.ca_file().display().to_string());
        args.extend(["--cache".into(), "file".into(), "--cache-dir".into()]);
        args.push(cache_dir.display().to_string());
        args.push("--browser-command".into());
        args.push(self.idp.browser_command());
        args.extend(["--timeout".into(), "60".into()]);
        args
    }

    /// A fresh user dir (HOME, koidc cache, browser log) and a kubeconfig for this cluster whose
    /// exec plugin (v1) is `koidc get-token` logging in as `user` through the fake browser, with
    /// every test knob as a plugin argument (a harness-made kubeconfig; see [`Self::user_of`] for
    /// the one `koidc setup` writes).
    pub fn user(&self, user: &TestUser) -> KubeUser {
        let mut kube_user = self.new_user(user);
        let env = kube_user.fake_browser_env();
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
        kube_user.kubeconfig = kube_user.cache_dir.with_file_name("kubeconfig.json");
        kubeconfig::write(
            &kube_user.kubeconfig,
            &self.url,
            &self.idp.pki.ca_pem,
            ExecApi::V1,
            &self.get_token_args(&kube_user.cache_dir),
            &env,
        );
        kube_user
    }

    /// A fresh user dir (HOME, koidc cache, browser log) whose kubectl uses `kubeconfig` as it
    /// is (e.g. the one [`Self::write_user_kubeconfig`] made). The test-only knobs reach the
    /// `koidc get-token` exec plugin through kubectl's environment, which kubectl passes on:
    /// `KOIDC_BROWSER_COMMAND` (the fake browser logging in as `user`), `KOIDC_CACHE=file`,
    /// `KOIDC_CACHE_DIR`, `KOIDC_TIMEOUT`, and the fake browser's own variables.
    pub fn user_of(&self, user: &TestUser, kubeconfig: &Path) -> KubeUser {
        let mut kube_user = self.new_user(user);
        kube_user.kubeconfig = kubeconfig.to_path_buf();
        let mut env = kube_user.fake_browser_env();
        env.extend([
            ("KOIDC_BROWSER_COMMAND", self.idp.browser_command()),
            ("KOIDC_CACHE", "file".into()),
            ("KOIDC_CACHE_DIR", kube_user.cache_dir.display().to_string()),
            ("KOIDC_TIMEOUT", "60".into()),
        ]);
        kube_user.env = env;
        kube_user
    }

    /// A fresh user dir with HOME, cache dir and browser log; no kubeconfig yet.
    fn new_user(&self, user: &TestUser) -> KubeUser {
        let n = self.next_user.fetch_add(1, Ordering::Relaxed);
        let dir = self.idp.dir().join(format!("user-{n}-{}", user.username));
        let home = dir.join("home");
        std::fs::create_dir_all(&home).expect("create the user's HOME");
        KubeUser {
            user: *user,
            home,
            cache_dir: dir.join("cache"),
            browser: BrowserLog::new(&dir),
            kubeconfig: PathBuf::new(),
            kubectl: self.kubectl.clone(),
            env: Vec::new(),
        }
    }

    /// The ends of the apiserver (its klog errors and warnings, then its last lines), etcd and
    /// Dex logs, and where the whole logs are.
    pub fn diagnostics(&self) -> String {
        let klog_problem = |l: &str| l.starts_with('E') || l.starts_with('W');
        format!(
            "--- cluster dir (logs): {} ---\n--- kube-apiserver errors and warnings ---\n{}\n\
             --- last kube-apiserver log lines ---\n{}\n--- last etcd log lines ---\n{}\n\
             --- last Dex log lines ---\n{}",
            self.idp.dir().display(),
            tail_matching(&self.apiserver.log, 25, klog_problem),
            tail(&self.apiserver.log, 10),
            tail(&self.etcd.log, 15),
            self.idp
                .dex
                .log_text()
                .lines()
                .rev()
                .take(25)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }

    /// A guard for the top of a test: when the test fails it prints [`Self::diagnostics`] and
    /// keeps the cluster dir.
    pub fn print_logs_on_failure(&self) -> LogsOnFailure<'_> {
        LogsOnFailure(self)
    }

    fn pids(&self) -> [u32; 3] {
        [
            self.apiserver.child.id(),
            self.etcd.child.id(),
            self.idp.dex.pid(),
        ]
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        self.apiserver.kill();
        self.etcd.kill();
        if std::thread::panicking() || self.keep_dir.load(Ordering::SeqCst) {
            eprintln!("{}", self.diagnostics());
            self.idp.tmp.disable_cleanup(true);
        }
    }
}

/// See [`KubeCluster::print_logs_on_failure`].
pub struct LogsOnFailure<'a>(&'a KubeCluster);

impl Drop for LogsOnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.keep_dir.store(true, Ordering::SeqCst);
            eprintln!("{}", self.0.diagnostics());
        }
    }
}

/// `kubectl run` arguments creating a pod that is never pulled nor run.
pub fn pod_create_args<'a>(namespace: &'a str, name: &'a str) -> [&'a str; 7] {
    [
        "run",
        name,
        "--namespace",
        namespace,
        "--image",
        NEVER_PULLED_IMAGE,
        "--restart=Never",
    ]
}

/// A user of the cluster: kubectl runs with its own HOME and a kubeconfig whose credentials
/// come from koidc.
#[allow(dead_code)]
pub struct KubeUser {
    pub user: TestUser,
    pub home: PathBuf,
    /// koidc's `--cache-dir`.
    pub cache_dir: PathBuf,
    /// How often the fake browser was launched for this user.
    pub browser: BrowserLog,
    pub kubeconfig: PathBuf,
    kubectl: PathBuf,
    /// Extra environment of kubectl (and so of the exec plugin).
    env: Vec<(&'static str, String)>,
}

impl KubeUser {
    /// Runs kubectl as this user (does not check the exit status).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        let mut cmd = clean_command(&self.kubectl, &self.home);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args);
        run(&mut cmd)
    }

    /// Runs the koidc binary as this user: the same HOME and environment as [`Self::kubectl`]
    /// (so the same test knobs: fake browser, file cache, cache dir) and `XDG_CONFIG_HOME` under
    /// HOME (never the admin's saved groups prefix). Does not check the exit status.
    pub fn koidc<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        run_koidc(&self.home, &self.home.join(".config"), args, &self.env)
    }

    /// The fake browser's variables: log in as this user, count launches in [`Self::browser`].
    fn fake_browser_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FAKE_BROWSER_LOGIN", self.user.email.to_string()),
            ("FAKE_BROWSER_PASSWORD", self.user.password.to_string()),
            ("FAKE_BROWSER_LOG", self.browser.path.display().to_string()),
        ]
    }
}

/// Runs `start` on a thread that lives until the test binary exits (so the parent-death signal
/// does not kill the servers when the first test's thread ends), and keeps the cluster for the
/// rest of the run: at exit its processes are killed and its dir removed (kept, and named on
/// stderr, when a test failed under [`KubeCluster::print_logs_on_failure`]). A panic in `start`
/// comes back as `Err` with its message, for every test to fail with.
pub fn keep_until_exit(
    start: impl FnOnce() -> KubeCluster + Send + 'static,
) -> Result<&'static KubeCluster, String> {
    keep_servers_until_exit("cluster", start, register_exit_cleanup)
}

/// Runs `start` on a thread named `what` that lives until the test binary exits (servers
/// started with the parent-death signal live as long as it), hands what it started to
/// `at_exit` (which registers its cleanup) and keeps it for the rest of the run. A panic in
/// `start` comes back as `Err` with its message.
pub fn keep_servers_until_exit<T: Sync + 'static>(
    what: &str,
    start: impl FnOnce() -> T + Send + 'static,
    at_exit: fn(&'static T),
) -> Result<&'static T, String> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new().name(what.to_owned()).spawn({
        let what = what.to_owned();
        move || match std::panic::catch_unwind(std::panic::AssertUnwindSafe(start)) {
            Ok(started) => {
                let started: &'static T = Box::leak(Box::new(started));
                at_exit(started);
                let _ = tx.send(Ok(started));
                loop {
                    std::thread::park();
                }
            }
            Err(payload) => {
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| format!("the {what} start panicked"));
                let _ = tx.send(Err(message));
            }
        }
    });
    if let Err(e) = spawned {
        return Err(format!("cannot spawn the {what} thread: {e}"));
    }
    rx.recv()
        .unwrap_or_else(|_| Err(format!("the {what} thread ended without an answer")))
}

/// The cluster a test module shares, kept in `cell`: started by the first test that asks
/// ([`keep_until_exit`]); when it did not start, every test fails with the start's message.
pub fn shared_cluster(
    cell: &'static OnceLock<Result<&'static KubeCluster, String>>,
    start: impl FnOnce() -> KubeCluster + Send + 'static,
) -> &'static KubeCluster {
    match cell.get_or_init(|| keep_until_exit(start)) {
        Ok(cluster) => cluster,
        Err(message) => panic!("the test cluster did not start: {message}"),
    }
}

static AT_EXIT: Mutex<Vec<&'static KubeCluster>> = Mutex::new(Vec::new());

fn register_exit_cleanup(cluster: &'static KubeCluster) {
    static REGISTER: Once = Once::new();
    AT_EXIT.lock().unwrap_or_else(|p| p.into_inner()).push(cluster);
    REGISTER.call_once(|| {
        // SAFETY: registers a plain function with no arguments; it runs once, at exit.
        unsafe {
            libc::atexit(cleanup_at_exit);
        }
    });
}

extern "C" fn cleanup_at_exit() {
    let clusters = AT_EXIT.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for cluster in clusters {
        for pid in cluster.pids() {
            // SAFETY: these are our own children, never reaped before (the static keeps them).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
                libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
            }
        }
        let dir = cluster.idp.dir();
        if cluster.keep_dir.load(Ordering::SeqCst) {
            eprintln!("kube test cluster: kept {} (logs)", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Starts etcd on two free loopback ports with its data in `dir`; returns it and its client URL.
fn start_etcd(binary: &Path, dir: &Path) -> (Proc, String) {
    let mut last = String::new();
    for attempt in 0..3 {
        let client = free_port();
        let peer = free_port();
        let client_url = format!("http://{client}");
        let peer_url = format!("http://{peer}");
        let mut cmd = Command::new(binary);
        cmd.args(["--name", "koidc-test"])
            .arg(format!(
                "--data-dir={}",
                dir.join(format!("etcd-{attempt}")).display()
            ))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=koidc-test={peer_url}"))
            .arg("--unsafe-no-fsync")
            .arg("--log-level=warn");
        let mut etcd = Proc::spawn(cmd, dir.join(format!("etcd-{attempt}.log")), dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && !etcd.exited() {
            if http_get_ok(client, "/health") {
                return (etcd, client_url);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        etcd.kill();
        last = tail(&etcd.log, 30);
    }
    panic!("etcd did not become healthy; last log lines:\n{last}");
}

/// Starts kube-apiserver on a free loopback port and waits for `/readyz` (checked with the
/// admin certificate); returns it and its URL, or an error with its log.
fn start_apiserver(
    binary: &Path,
    dir: &Path,
    pki: &Pki,
    etcd_url: &str,
    auth_config_file: &Path,
    extra_flags: &[String],
) -> Result<(Proc, String), String> {
    let mut identity = pki.admin_cert_pem.clone();
    identity.push_str(&pki.admin_key_pem);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA PEM"))
        .identity(reqwest::Identity::from_pem(identity.as_bytes()).expect("admin identity"))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("build an HTTPS client");
    let mut last = String::new();
    for attempt in 0..3 {
        let addr = free_port();
        let url = format!("https://{addr}");
        let mut cmd = Command::new(binary);
        cmd.arg(format!("--etcd-servers={etcd_url}"))
            .arg(format!("--secure-port={}", addr.port()))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--tls-cert-file={}", pki.apiserver_cert_file.display()))
            .arg(format!(
                "--tls-private-key-file={}",
                pki.apiserver_key_file.display()
            ))
            .arg(format!("--client-ca-file={}", pki.ca_file.display()))
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!(
                "--service-account-key-file={}",
                pki.sa_public_file.display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                pki.sa_private_file.display()
            ))
            // A config value only: nothing routes service traffic here.
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--authorization-mode=RBAC")
            .arg(format!("--authentication-config={}", auth_config_file.display()))
            // No controller-manager creates the `default` service account that this admission
            // plugin requires of every pod.
            .arg("--disable-admission-plugins=ServiceAccount")
            // The `kubernetes` Endpoints may not point at loopback: skip reconciling it.
            .arg("--endpoint-reconciler-type=none")
            .args(extra_flags);
        let log = dir.join(format!("kube-apiserver-{attempt}.log"));
        let mut apiserver = Proc::spawn(cmd, log, dir);
        let ready_url = format!("{url}/readyz");
        let deadline = Instant::now() + APISERVER_READY_TIMEOUT;
        while Instant::now() < deadline && !apiserver.exited() {
            let ready = runtime().block_on(async {
                client
                    .get(&ready_url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            });
            if ready {
                return Ok((apiserver, url));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let exited = apiserver.exited();
        apiserver.kill();
        last = format!(
            "kube-apiserver {} (attempt {}); last log lines:\n{}",
            if exited {
                "exited before it was ready"
            } else {
                "was not ready in time"
            },
            attempt + 1,
            tail(&apiserver.log, 40)
        );
        if !exited {
            break;
        }
    }
    Err(last)
}

/// A kubeconfig (JSON) for the admin client certificate.
fn write_admin_kubeconfig(path: &Path, server: &str, pki: &Pki) {
    let user = json!({
        "client-certificate-data": STANDARD.encode(&pki.admin_cert_pem),
        "client-key-data": STANDARD.encode(&pki.admin_key_pem),
    });
    kubeconfig::write_one_cluster(path, server, &pki.ca_pem, ("admin", user), "admin");
}
