//! Concurrent kubectl calls: 16 `get-token` processes at once must share one browser login (empty
//! cache) or one refresh (stale token), and all print the same valid credential.

use crate::lab::{Lab, LabOptions};
use crate::support::{ExecCredential, RUN_TIMEOUT, spawn, wait_until_stale};

const PARALLEL: usize = 16;

/// Starts `PARALLEL` get-token processes at once and checks each one's output.
fn get_tokens_in_parallel(lab: &Lab) -> Vec<ExecCredential> {
    let running: Vec<_> = (0..PARALLEL)
        .map(|_| spawn(&mut lab.command("get-token", &[])))
        .collect();
    running
        .into_iter()
        .map(|r| lab.assert_ok_get_token(&r.wait(RUN_TIMEOUT)).1)
        .collect()
}

#[test]
fn parallel_empty_cache_one_browser_launch() {
    let lab = Lab::start(LabOptions::default());

    let creds = get_tokens_in_parallel(&lab);
    assert_eq!(
        lab.browser.launches(),
        1,
        "16 concurrent calls must share one browser login"
    );
    assert_eq!(
        lab.proxy.grants_since(0),
        ["authorization_code"],
        "one code exchange"
    );
    for cred in &creds {
        assert_eq!(
            cred.token, creds[0].token,
            "all callers get the token of the one login"
        );
    }
}

#[test]
fn parallel_expired_token_one_refresh() {
    // 120 s tokens: stale 30 s after issue (the 90 s margin). The 16 callers must all read the
    // refreshed token before it is stale too, or a second refresh is right; 16 debug processes
    // on a loaded two-core machine have taken more than 10 s, so 30 s, at the cost of waiting
    // 30 s for the first token to go stale.
    let lab = Lab::start(LabOptions::id_tokens("120s"));
    let (_, login) = lab.get_token();
    assert_eq!(lab.browser.launches(), 1);

    wait_until_stale(login.exp());
    let mark = lab.proxy.mark();
    let creds = get_tokens_in_parallel(&lab);
    assert_eq!(
        lab.proxy.grants_since(mark),
        ["refresh_token"],
        "16 callers, one refresh"
    );
    assert_eq!(lab.browser.launches(), 1, "a refresh opens no browser");
    for cred in &creds {
        assert_ne!(cred.token, login.token, "a stale token must not be handed out");
        assert_eq!(cred.token, creds[0].token, "all callers get the refreshed token");
    }
}
