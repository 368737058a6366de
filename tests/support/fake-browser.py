#!/usr/bin/env python3
"""Fake browser for koidc's integration tests: completes a Dex login without a human.

koidc runs it as `--browser-command` with the authorization URL as argv[1]. It picks a Dex
connector (`mock` by default; the password connector `local` when FAKE_BROWSER_LOGIN is set,
posting FAKE_BROWSER_LOGIN / FAKE_BROWSER_PASSWORD to the login form), follows redirects with a
cookie jar, and stops after requesting koidc's loopback callback (the authorization request's
`redirect_uri`). Each launch appends one line to the file named by FAKE_BROWSER_LOG so tests can
count launches. It never prints an authorization code, a state or a token: messages name only
status codes and URL paths. Python 3 standard library only; exit 0 on success.
"""

import html.parser
import http.cookiejar
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

MAX_STEPS = 20
TIMEOUT = 30


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hand every 3xx back to the caller so that each hop is inspected."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class _FormParser(html.parser.HTMLParser):
    """Collect the forms of a page with their action, method and input names/values."""

    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append(
                {
                    "action": attrs.get("action") or "",
                    "method": (attrs.get("method") or "get").lower(),
                    "inputs": {},
                }
            )
        elif tag == "input" and self.forms and attrs.get("name"):
            self.forms[-1]["inputs"][attrs["name"]] = attrs.get("value") or ""


def fail(message):
    print(f"fake-browser: {message}", file=sys.stderr)
    sys.exit(1)


def where(url):
    """A URL reduced to what may be shown: scheme, host and path, never the query."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


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


def with_connector(url, connector):
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
             if k != "connector_id"]
    query.append(("connector_id", connector))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def is_callback(url, redirect_uri):
    target = urllib.parse.urlsplit(url)
    want = urllib.parse.urlsplit(redirect_uri)
    return (target.scheme, target.netloc, target.path or "/") == (
        want.scheme,
        want.netloc,
        want.path or "/",
    )


def main():
    if len(sys.argv) != 2:
        fail("usage: fake-browser.py AUTHORIZATION_URL")
    log_launch()
    auth_url = sys.argv[1]
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(auth_url).query))
    redirect_uri = query.get("redirect_uri")
    if not redirect_uri:
        fail(f"no redirect_uri in the authorization URL {where(auth_url)}")

    login = os.environ.get("FAKE_BROWSER_LOGIN")
    password = os.environ.get("FAKE_BROWSER_PASSWORD", "")
    url = with_connector(auth_url, "local" if login else "mock")

    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect()
    )
    data = None
    for _ in range(MAX_STEPS):
        callback = is_callback(url, redirect_uri)
        request = urllib.request.Request(url, data=data)
        if data is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        data = None
        try:
            response = opener.open(request, timeout=TIMEOUT)
            status, headers, body = response.status, response.headers, response.read()
        except urllib.error.HTTPError as err:
            status, headers, body = err.code, err.headers, err.read()
        except OSError as err:
            fail(f"request to {where(url)} failed: {type(err).__name__}")

        if callback:
            if 200 <= status < 400:
                return 0
            fail(f"loopback callback {where(url)} answered {status}")
        if status in (301, 302, 303, 307, 308):
            location = headers.get("Location")
            if not location:
                fail(f"{where(url)} answered {status} without a Location")
            url = urllib.parse.urljoin(url, location)
            continue
        if status != 200:
            fail(f"{where(url)} answered {status}")

        parser = _FormParser()
        parser.feed(body.decode("utf-8", "replace"))
        forms = [f for f in parser.forms if "password" in f["inputs"]]
        if not login or not forms:
            fail(f"{where(url)} answered 200 with no login form to fill in")
        form = forms[0]
        fields = dict(form["inputs"])
        fields["login"] = login
        fields["password"] = password
        url = urllib.parse.urljoin(url, form["action"] or url)
        data = urllib.parse.urlencode(fields).encode()
    fail(f"gave up after {MAX_STEPS} requests without reaching the loopback callback")


if __name__ == "__main__":
    sys.exit(main())
