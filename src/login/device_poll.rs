//! The polling half of the device authorization grant (RFC 8628 3.4, 3.5), written once for
//! every provider: after the person was shown a user code, koidc asks the token endpoint again
//! and again until the login is approved, denied, expired or timed out.
//!
//! The protocol adapters ([`crate::login::oidc::device`], [`crate::login::github::oauth`]) send
//! one token request and classify its answer as an [`Answer`]; [`poll`] owns the timing rules:
//!
//! - the first request comes one interval after the start, and every later one an interval after
//!   the previous answer;
//! - `authorization_pending` keeps waiting; `slow_down` adds [`SLOW_DOWN_STEP`] to the interval
//!   (or raises it to the interval the answer names, if longer), up to [`MAX_INTERVAL`];
//! - no request is sent after the deadline, which is the caller's timeout or the code's own
//!   `expires_in`, whichever comes first: when the next request would come later, the rest of the
//!   time is waited out and the wait ends with [`Stop::TimedOut`] or [`Stop::Expired`];
//! - `access_denied` and `expired_token` end the wait at once.
//!
//! The waiting goes through a [`Pacer`], so that tests can run the loop on a virtual clock.

use std::future::Future;
use std::time::Duration;

/// The `grant_type` of a device access token request (RFC 8628 3.4).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The polling interval when the provider names none (RFC 8628 3.2).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// What a `slow_down` answer adds to the interval (RFC 8628 3.5).
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// Shortest interval, whatever the provider says: at least a second between requests.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Longest interval, whatever the provider says (the deadline stops the wait anyway).
pub const MAX_INTERVAL: Duration = Duration::from_secs(300);

/// The interval a provider asked for, kept within [`MIN_INTERVAL`] and [`MAX_INTERVAL`];
/// [`DEFAULT_INTERVAL`] when it named none.
pub fn bounded_interval(asked: Option<Duration>) -> Duration {
    asked.map_or(DEFAULT_INTERVAL, |d| d.clamp(MIN_INTERVAL, MAX_INTERVAL))
}

/// How the loop waits between requests; [`TokioPacer`] in production, a virtual clock in tests.
pub(crate) trait Pacer {
    /// Waits `d`.
    fn sleep(&mut self, d: Duration) -> impl Future<Output = ()>;
    /// Time since the device authorization started.
    fn elapsed(&self) -> Duration;
}

/// Real time.
pub(crate) struct TokioPacer {
    start: tokio::time::Instant,
}

impl TokioPacer {
    /// Starts counting now.
    pub(crate) fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Pacer for TokioPacer {
    fn sleep(&mut self, d: Duration) -> impl Future<Output = ()> {
        tokio::time::sleep(d)
    }
    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// One answer of the token endpoint to a device access token request, as the adapter reads it.
/// Answers that are neither (other OAuth errors, transport failures, a bad token) are the
/// adapter's own errors, which end the wait as they are.
pub(crate) enum Answer<T> {
    /// `authorization_pending`: the person has not approved yet.
    Pending,
    /// `slow_down`: poll less often; some providers (GitHub) name the new interval.
    SlowDown {
        /// The interval the answer asks for, when it names one.
        interval: Option<Duration>,
    },
    /// `access_denied`: the person refused the login.
    Denied,
    /// `expired_token`: the device code expired.
    Expired,
    /// The login was approved: the adapter's tokens.
    Tokens(T),
}

/// How polling ended without tokens.
#[derive(Debug)]
pub(crate) enum Stop<E> {
    /// The provider answered `access_denied`.
    Denied,
    /// The provider answered `expired_token`, or the code's `expires_in` passed first.
    Expired,
    /// The caller's timeout passed first.
    TimedOut,
    /// The adapter's error for one request.
    Failed(E),
}

/// When to poll: the interval the provider asked for and the two deadlines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    /// The first interval (already bounded, see [`bounded_interval`]).
    pub interval: Duration,
    /// How long the device code is valid, when the provider says.
    pub expires_in: Option<Duration>,
    /// How long the caller waits at most, counted from the start of polling.
    pub timeout: Duration,
}

/// Sends `request` on `schedule` until it answers with tokens (see the module comment for the
/// rules), waiting through `pacer`.
pub(crate) async fn poll<T, E>(
    schedule: Schedule,
    pacer: &mut impl Pacer,
    mut request: impl AsyncFnMut() -> Result<Answer<T>, E>,
) -> Result<T, Stop<E>> {
    let (limit, code_expires_first) = match schedule.expires_in {
        Some(expiry) if expiry < schedule.timeout => (expiry, true),
        _ => (schedule.timeout, false),
    };
    let mut interval = schedule.interval;
    loop {
        let remaining = limit.saturating_sub(pacer.elapsed());
        if remaining < interval {
            // The next request would come after the deadline: wait it out, then give up.
            pacer.sleep(remaining).await;
            return Err(if code_expires_first {
                Stop::Expired
            } else {
                Stop::TimedOut
            });
        }
        pacer.sleep(interval).await;
        match request().await.map_err(Stop::Failed)? {
            Answer::Pending => {}
            Answer::SlowDown { interval: asked } => {
                let slower = interval + SLOW_DOWN_STEP;
                interval = asked.map_or(slower, |a| slower.max(a)).min(MAX_INTERVAL);
            }
            Answer::Denied => return Err(Stop::Denied),
            Answer::Expired => return Err(Stop::Expired),
            Answer::Tokens(tokens) => return Ok(tokens),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
