//! koidc's default `--cache keyring` against the real stores: a private D-Bus session with
//! gnome-keyring's Secret Service, and the kernel keyutils session keyring (`@s`) that keeps
//! the warm path free of D-Bus. Each test runs koidc in its own session keyring, so keys from
//! other tests or earlier runs cannot make a check pass. Others may add keyring tests here.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dbus::blocking::Connection;
use dbus::blocking::stdintf::org_freedesktop_dbus::Properties;
use dbus::channel::Channel;

use crate::lab::{Lab, LabOptions};
use crate::support::{Output, Stdout, files_under, mode, run};

// ---------------------------------------------------------------------------------------------
// Kernel keyutils: session keyrings for the koidc processes of one test.

fn keyctl(op: u32, a: libc::c_long, b: libc::c_long) -> libc::c_long {
    // SAFETY: keyctl(2) with integer arguments only.
    unsafe { libc::syscall(libc::SYS_keyctl, op as libc::c_long, a, b, 0 as libc::c_long) }
}

/// A named keyring, linked into the user keyring so that it outlives each koidc process, which
/// every koidc run of a test joins as its session keyring (`@s`). Removed when dropped.
pub struct SessionKeyring {
    name: CString,
    id: i32,
}

impl SessionKeyring {
    pub fn new() -> SessionKeyring {
        let name = format!("koidc-it-{}-{}", std::process::id(), rand_suffix());
        let name = CString::new(name).expect("keyring name");
        let kind = CString::new("keyring").expect("key type");
        // SAFETY: add_key(2) with valid NUL-terminated strings and no payload.
        let id = unsafe {
            libc::syscall(
                libc::SYS_add_key,
                kind.as_ptr(),
                name.as_ptr(),
                std::ptr::null::<u8>(),
                0 as libc::size_t,
                libc::KEY_SPEC_USER_KEYRING as libc::c_long,
            )
        };
        assert!(
            id > 0,
            "cannot create a keyring: {}",
            std::io::Error::last_os_error()
        );
        let id = id as i32;
        // Possessor and owner may do everything, so later processes can join it by name.
        let rc = keyctl(libc::KEYCTL_SETPERM, id as libc::c_long, 0x3f3f_0000);
        assert_eq!(
            rc,
            0,
            "cannot set keyring permissions: {}",
            std::io::Error::last_os_error()
        );
        SessionKeyring { name, id }
    }

    /// Makes `cmd` join this keyring as its session keyring.
    pub fn join(&self, cmd: &mut Command) {
        let name = self.name.clone();
        // SAFETY: the closure only makes one async-signal-safe system call.
        unsafe {
            cmd.pre_exec(move || {
                let rc = keyctl(
                    libc::KEYCTL_JOIN_SESSION_KEYRING,
                    name.as_ptr() as libc::c_long,
                    0,
                );
                if rc < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
        }
    }

    /// `keyctl show` of the keyring: one line per key, with its description.
    pub fn show(&self) -> String {
        let out = Command::new("keyctl")
            .args(["show", &self.id.to_string()])
            .output()
            .expect("run keyctl (package keyutils)");
        assert!(
            out.status.success(),
            "keyctl show failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for SessionKeyring {
    fn drop(&mut self) {
        keyctl(libc::KEYCTL_INVALIDATE, self.id as libc::c_long, 0);
        keyctl(
            libc::KEYCTL_UNLINK,
            self.id as libc::c_long,
            libc::KEY_SPEC_USER_KEYRING as libc::c_long,
        );
    }
}

/// Makes `cmd` start in a new, empty anonymous session keyring (like `keyctl session -`).
pub fn fresh_session_keyring(cmd: &mut Command) {
    // SAFETY: the closure only makes one async-signal-safe system call.
    unsafe {
        cmd.pre_exec(|| {
            let rc = keyctl(libc::KEYCTL_JOIN_SESSION_KEYRING, 0, 0);
            if rc < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

// ---------------------------------------------------------------------------------------------
// A private D-Bus session bus with gnome-keyring's Secret Service.

pub struct SecretService {
    pub address: String,
    dbus: Child,
    keyring: Child,
}

const PASSWORD: &str = "koidc-it-keyring-password";

impl SecretService {
    /// Starts `dbus-daemon --session` on a socket in `dir` and an unlocked
    /// `gnome-keyring-daemon --components=secrets` on it; waits until the default collection
    /// exists.
    pub fn start(dir: &Path, home: &Path) -> SecretService {
        let runtime_dir = dir.join("run");
        std::fs::create_dir_all(&runtime_dir).expect("create XDG_RUNTIME_DIR");
        std::fs::set_permissions(&runtime_dir, std::fs::Permissions::from_mode(0o700))
            .expect("chmod XDG_RUNTIME_DIR");
        let mut dbus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!("--address=unix:path={}", dir.join("bus").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon (package dbus)");
        let mut address = String::new();
        BufReader::new(dbus.stdout.take().expect("dbus stdout"))
            .read_line(&mut address)
            .expect("read the bus address");
        let address = address.trim().to_string();
        assert!(
            address.starts_with("unix:"),
            "dbus-daemon printed no address: {address:?}"
        );

        let mut keyring = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--components=secrets", "--unlock"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("XDG_RUNTIME_DIR", &runtime_dir)
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gnome-keyring-daemon (package gnome-keyring)");
        {
            let mut stdin = keyring.stdin.take().expect("keyring stdin");
            stdin
                .write_all(PASSWORD.as_bytes())
                .expect("send the keyring password");
        }
        let service = SecretService {
            address,
            dbus,
            keyring,
        };
        service.wait_ready();
        service
    }

    fn connect(&self) -> Result<Connection, dbus::Error> {
        let mut channel = Channel::open_private(&self.address)?;
        channel.register()?;
        Ok(Connection::from(channel))
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.default_collection() {
                Ok(path) if path != "/" => return,
                Ok(path) => last = format!("default alias is {path}"),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the Secret Service did not come up: {last}");
    }

    fn default_collection(&self) -> Result<String, dbus::Error> {
        let conn = self.connect()?;
        let bus = conn.with_proxy(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            Duration::from_secs(2),
        );
        let (owned,): (bool,) = bus.method_call(
            "org.freedesktop.DBus",
            "NameHasOwner",
            ("org.freedesktop.secrets",),
        )?;
        if !owned {
            return Ok("/".into());
        }
        let service = conn.with_proxy(
            "org.freedesktop.secrets",
            "/org/freedesktop/secrets",
            Duration::from_secs(5),
        );
        let (path,): (dbus::Path<'static>,) =
            service.method_call("org.freedesktop.Secret.Service", "ReadAlias", ("default",))?;
        Ok(path.to_string())
    }

    /// Label and attributes of every item in the Secret Service.
    pub fn items(&self) -> Vec<(String, HashMap<String, String>)> {
        let conn = self.connect().expect("connect to the private bus");
        let timeout = Duration::from_secs(5);
        let service = conn.with_proxy("org.freedesktop.secrets", "/org/freedesktop/secrets", timeout);
        let (unlocked, locked): (Vec<dbus::Path<'static>>, Vec<dbus::Path<'static>>) = service
            .method_call(
                "org.freedesktop.Secret.Service",
                "SearchItems",
                (HashMap::<&str, &str>::new(),),
            )
            .expect("SearchItems");
        unlocked
            .into_iter()
            .chain(locked)
            .map(|path| {
                let item = conn.with_proxy("org.freedesktop.secrets", path, timeout);
                let label: String = item
                    .get("org.freedesktop.Secret.Item", "Label")
                    .expect("item label");
                let attributes: HashMap<String, String> = item
                    .get("org.freedesktop.Secret.Item", "Attributes")
                    .expect("item attributes");
                (label, attributes)
            })
            .collect()
    }

    /// Stops gnome-keyring and the bus.
    pub fn stop(&mut self) {
        for child in [&mut self.keyring, &mut self.dbus] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------

fn keyring_lab() -> Lab {
    // No `--cache`: koidc's default is the keyring.
    Lab::start(LabOptions {
        cache: None,
        ..LabOptions::default()
    })
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect()
}

/// The start of the warning koidc prints when it caches in files for want of a keyring (the
/// same text `no_keyring_falls_back_to_file_with_warning` finds, so its absence means something).
const FALLBACK_WARNING: &str = "koidc: warning: no usable keyring (";

#[test]
fn secret_service_login_then_warm_without_dbus() {
    let lab = keyring_lab();
    let session = SessionKeyring::new();
    let mut secrets = SecretService::start(lab.tmp.path(), &lab.home);
    let bus = secrets.address.clone();

    let get_token = || -> Output {
        let mut cmd = lab.command("get-token", &[]);
        // Still set after the bus is gone: the warm path must not need it.
        cmd.env("DBUS_SESSION_BUS_ADDRESS", &bus);
        session.join(&mut cmd);
        run(&mut cmd)
    };

    // Login with the Secret Service available.
    let (login_out, login) = lab.assert_ok_get_token(&get_token());
    assert_eq!(lab.browser.launches(), 1);
    assert!(
        !login_out.stderr.contains(FALLBACK_WARNING),
        "no fallback expected with a Secret Service: {:?}",
        login_out.stderr
    );
    // The master key is in the kernel session keyring as `koidc:master:<id>` ...
    let shown = session.show();
    let id = shown
        .split_once("koidc:master:")
        .map(|(_, rest)| rest.split_whitespace().next().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("no koidc:master:* key in the session keyring:\n{shown}"));
    assert!(!id.is_empty(), "empty master key id in:\n{shown}");
    // ... and persisted in the Secret Service under the same id.
    let items = secrets.items();
    assert!(
        items.iter().any(|(label, attrs)| {
            let texts = || std::iter::once(label).chain(attrs.values());
            texts().any(|t| t.contains("koidc")) && texts().any(|t| t.contains(&id))
        }),
        "no koidc item for master key {id} in the Secret Service: {items:?}"
    );

    // Without D-Bus, the warm path is served by keyutils: same token, no request, no warning.
    secrets.stop();
    let mark = lab.proxy.mark();
    let (warm_out, warm) = lab.assert_ok_get_token(&get_token());
    assert_eq!(warm.token, login.token, "warm hit returns the cached token");
    assert_eq!(lab.proxy.since(mark), [], "warm hit makes no request to Dex");
    assert_eq!(lab.browser.launches(), 1);
    assert_eq!(warm_out.stderr, "", "a warm hit prints nothing on stderr");
    let shown = session.show();
    assert!(
        shown.contains(&format!("koidc:master:{id}")),
        "master key left @s:\n{shown}"
    );
}

#[test]
fn no_keyring_falls_back_to_file_with_warning() {
    let lab = keyring_lab();
    let get_token = || -> Output {
        let mut cmd = lab.command("get-token", &[]);
        fresh_session_keyring(&mut cmd);
        run(&mut cmd)
    };

    let (login_out, login) = lab.assert_ok_get_token(&get_token());
    assert_eq!(lab.browser.launches(), 1);
    let warnings: Vec<&str> = login_out
        .stderr_lines()
        .into_iter()
        .filter(|l| l.starts_with(FALLBACK_WARNING))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning about the file fallback: {:?}",
        login_out.stderr
    );
    let files = json_files(&lab.cache_dir);
    assert!(
        !files.is_empty(),
        "no .json cache entry under {}",
        lab.cache_dir.display()
    );
    for file in &files {
        assert_eq!(mode(file), 0o600, "mode of {}", file.display());
    }

    // The fallback cache serves the next call (from another empty session keyring).
    let mark = lab.proxy.mark();
    let (hit_out, hit) = lab.assert_ok_get_token(&get_token());
    assert_eq!(hit.token, login.token, "the file fallback serves a cache hit");
    assert_eq!(lab.proxy.since(mark), []);
    assert_eq!(lab.browser.launches(), 1);
    lab.assert_no_leak(&hit_out, Stdout::MayHoldIdToken);
    assert!(
        hit_out.stderr_lines().len() <= 1,
        "at most the one warning: {:?}",
        hit_out.stderr
    );
}
