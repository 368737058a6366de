//! The polling rules on a virtual clock, with a scripted token endpoint.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use super::*;

/// Records every wait and advances a virtual clock instead of sleeping; shared with the
/// adapters' tests.
#[derive(Default)]
pub(crate) struct VirtualPacer {
    now: Rc<Cell<Duration>>,
    /// Every wait, in order.
    pub(crate) sleeps: Vec<Duration>,
}

impl VirtualPacer {
    /// The virtual clock, to read while the loop holds the pacer.
    fn clock(&self) -> Rc<Cell<Duration>> {
        Rc::clone(&self.now)
    }
}

impl Pacer for VirtualPacer {
    fn sleep(&mut self, d: Duration) -> impl Future<Output = ()> {
        self.now.set(self.now.get() + d);
        self.sleeps.push(d);
        std::future::ready(())
    }
    fn elapsed(&self) -> Duration {
        self.now.get()
    }
}

/// Whole seconds as durations.
pub(crate) fn secs(list: &[u64]) -> Vec<Duration> {
    list.iter().map(|s| Duration::from_secs(*s)).collect()
}

/// A scripted adapter's error.
#[derive(Debug, PartialEq)]
struct Refused(&'static str);

/// Polls a token endpoint that gives `script`'s answers in turn (and `Pending` once it runs
/// out): the outcome, the waits, and when (virtual seconds) each request was sent.
async fn run(
    interval: u64,
    expires_in: Option<u64>,
    timeout: u64,
    script: Vec<Result<Answer<&'static str>, Refused>>,
) -> (Result<&'static str, Stop<Refused>>, Vec<Duration>, Vec<Duration>) {
    let schedule = Schedule {
        interval: Duration::from_secs(interval),
        expires_in: expires_in.map(Duration::from_secs),
        timeout: Duration::from_secs(timeout),
    };
    let mut pacer = VirtualPacer::default();
    let clock = pacer.clock();
    let mut script = VecDeque::from(script);
    let mut sent = Vec::new();
    let request = async || {
        sent.push(clock.get());
        script.pop_front().unwrap_or(Ok(Answer::Pending))
    };
    let result = poll(schedule, &mut pacer, request).await;
    (result, pacer.sleeps, sent)
}

#[tokio::test]
async fn polls_once_per_interval_until_the_tokens_arrive() {
    let script = vec![Ok(Answer::Pending), Ok(Answer::Pending), Ok(Answer::Tokens("t"))];
    let (result, sleeps, sent) = run(3, Some(300), 180, script).await;
    assert_eq!(result.unwrap(), "t");
    assert_eq!(sleeps, secs(&[3, 3, 3]));
    assert_eq!(sent, secs(&[3, 6, 9]), "none early");
}

#[tokio::test]
async fn slow_down_adds_five_seconds_or_the_named_interval_when_longer() {
    let script = vec![
        Ok(Answer::SlowDown { interval: None }),
        Ok(Answer::Pending),
        Ok(Answer::SlowDown {
            interval: Some(Duration::from_secs(30)),
        }),
        Ok(Answer::SlowDown {
            interval: Some(Duration::from_secs(2)),
        }),
        Ok(Answer::Tokens("t")),
    ];
    let (result, sleeps, _) = run(5, Some(600), 180, script).await;
    assert_eq!(result.unwrap(), "t");
    assert_eq!(sleeps, secs(&[5, 10, 10, 30, 35]));
}

#[tokio::test]
async fn slow_down_never_raises_the_interval_past_the_maximum() {
    let script = vec![
        Ok(Answer::SlowDown {
            interval: Some(Duration::from_secs(3600)),
        }),
        Ok(Answer::SlowDown { interval: None }),
        Ok(Answer::Tokens("t")),
    ];
    let (result, sleeps, _) = run(5, None, 3600, script).await;
    assert_eq!(result.unwrap(), "t");
    assert_eq!(sleeps, secs(&[5, 300, 300]));
}

#[tokio::test]
async fn the_timeout_is_waited_out_without_a_request_past_it() {
    let (result, sleeps, sent) = run(5, Some(600), 12, vec![]).await;
    assert!(matches!(result, Err(Stop::TimedOut)));
    assert_eq!(sleeps, secs(&[5, 5, 2]));
    assert_eq!(sent, secs(&[5, 10]));
    // A request exactly at the deadline is still in time.
    let (result, _, sent) = run(5, None, 10, vec![]).await;
    assert!(matches!(result, Err(Stop::TimedOut)));
    assert_eq!(sent, secs(&[5, 10]));
    // A timeout shorter than the interval: no request at all.
    let (result, sleeps, sent) = run(5, None, 2, vec![]).await;
    assert!(matches!(result, Err(Stop::TimedOut)));
    assert_eq!((sleeps, sent), (secs(&[2]), vec![]));
}

#[tokio::test]
async fn the_codes_expiry_ends_the_wait_when_it_comes_before_the_timeout() {
    let (result, sleeps, sent) = run(5, Some(8), 180, vec![]).await;
    assert!(matches!(result, Err(Stop::Expired)));
    assert_eq!(sleeps, secs(&[5, 3]));
    assert_eq!(sent, secs(&[5]));
    // The same deadline from both: the timeout is what the person asked for.
    let (result, _, _) = run(5, Some(12), 12, vec![]).await;
    assert!(matches!(result, Err(Stop::TimedOut)));
}

#[tokio::test]
async fn denied_expired_and_adapter_errors_end_the_wait_at_once() {
    for (answer, want) in [
        (Ok(Answer::Denied), "Denied"),
        (Ok(Answer::Expired), "Expired"),
        (
            Err(Refused("invalid_client")),
            "Failed(Refused(\"invalid_client\"))",
        ),
    ] {
        let script = vec![Ok(Answer::Pending), answer, Ok(Answer::Tokens("never"))];
        let (result, _, sent) = run(5, Some(600), 180, script).await;
        assert_eq!(format!("{:?}", result.unwrap_err()), want);
        assert_eq!(sent.len(), 2, "no request after {want}");
    }
}

#[test]
fn the_interval_defaults_to_five_seconds_and_stays_within_bounds() {
    assert_eq!(bounded_interval(None), DEFAULT_INTERVAL);
    assert_eq!(bounded_interval(Some(Duration::ZERO)), MIN_INTERVAL);
    assert_eq!(
        bounded_interval(Some(Duration::from_secs(7))),
        Duration::from_secs(7)
    );
    assert_eq!(bounded_interval(Some(Duration::from_secs(86_400))), MAX_INTERVAL);
}
