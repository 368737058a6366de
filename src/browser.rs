//! Opening the authorization URL for the user: the system browser, a command, or nothing.
//!
//! INTERFACE: the [`Browser`] trait and [`BrowserChoice::into_browser`].

/// Errors of opening a browser.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// Placeholder until the module is implemented.
    #[error("{0}")]
    Other(String),
}

/// Something that can show a URL to the user.
pub trait Browser {
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
