//! The fake browser koidc launches in tests (`tests/support/fake-browser.py`, passed as
//! `--browser-command`), and the launch log it appends one line to per launch, so tests can
//! assert how many times koidc opened a browser.

use std::path::{Path, PathBuf};

use crate::support::repo_root;

/// Path of the fake browser script.
pub fn fake_browser() -> PathBuf {
    let path = repo_root().join("tests/support/fake-browser.py");
    assert!(path.is_file(), "missing {}", path.display());
    path
}

/// The file the fake browser appends one line to per launch (env `FAKE_BROWSER_LOG`).
#[derive(Debug, Clone)]
pub struct BrowserLog {
    pub path: PathBuf,
}

impl BrowserLog {
    pub fn new(dir: &Path) -> BrowserLog {
        BrowserLog {
            path: dir.join("browser-launches.log"),
        }
    }

    /// How many times the fake browser was started.
    pub fn launches(&self) -> usize {
        std::fs::read_to_string(&self.path)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}
