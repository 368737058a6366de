#!/usr/bin/env python3
"""Fake browser for koidc's integration tests: completes a Dex (or oidc-provider, or Keycloak)
login without a human.

koidc runs it as `--browser-command` with the authorization URL as argv[1]. It picks a Dex
connector (`mock` by default; the password connector `local` when FAKE_BROWSER_LOGIN is set,
posting FAKE_BROWSER_LOGIN / FAKE_BROWSER_PASSWORD to the login form), follows redirects with a
cookie jar, and stops after requesting koidc's loopback callback (the authorization request's
`redirect_uri`). Each launch appends one line to the file named by FAKE_BROWSER_LOG so tests can
count launches. It never prints an authorization code, a state or a token: messages name only
status codes and URL paths. Python 3 standard library only; exit 0 on success.
"""

import os
import sys
import time
import urllib.parse

# browserlib.py sits beside this file, which is run by its path from any working directory.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import browserlib  # noqa: E402
from browserlib import same_endpoint, where  # noqa: E402

PROGRAM = "fake-browser"
MAX_STEPS = 20


def fail(message):
    browserlib.fail(PROGRAM, message)


def log_launch():
    path = os.environ.get("FAKE_BROWSER_LOG")
    if not path:
        return
    line = f"launch pid={os.getpid()} time={time.time():.3f}\n"
    # O_APPEND keeps concurrent launches from overwriting each other's lines.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def main():
    if len(sys.argv) != 2:
        fail("usage: fake-browser.py AUTHORIZATION_URL")
    log_launch()
    auth_url = sys.argv[1]
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(auth_url).query))
    redirect_uri = query.get("redirect_uri")
    if not redirect_uri:
        fail(f"no redirect_uri in the authorization URL {where(auth_url)}")

    browser = browserlib.Browser(PROGRAM)
    url = browserlib.with_param(auth_url, "connector_id", browser.connector)
    data = None
    for _ in range(MAX_STEPS):
        callback = same_endpoint(url, redirect_uri)
        status, headers, body = browser.fetch(url, data)
        data = None

        if callback:
            if 200 <= status < 400:
                return 0
            fail(f"loopback callback {where(url)} answered {status}")
        target = browser.redirect_target(url, status, headers)
        if target is not None:
            url = target
            continue
        if status != 200:
            fail(f"{where(url)} answered {status}")

        forms = [f for f in browserlib.forms(body) if "password" in f["inputs"]]
        if not browser.login or not forms:
            fail(f"{where(url)} answered 200 with no login form to fill in")
        form = forms[0]
        fields = browserlib.login_fields(form, browser.login, browser.password)
        url, data = browserlib.submission(url, form, fields)
    fail(f"gave up after {MAX_STEPS} requests without reaching the loopback callback")


if __name__ == "__main__":
    sys.exit(main())
