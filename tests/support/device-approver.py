#!/usr/bin/env python3
"""Plays the user's browser for koidc's headless-login tests against Dex (fake-browser.py needs a
`redirect_uri` in its URL, so it cannot do these). Python 3 standard library only.

  device-approver.py VERIFICATION_URL [USER_CODE]
      The device flow (RFC 8628) as a user on another device does it: open the verification URL
      (Dex's `/device`, or `verification_uri_complete`), enter USER_CODE in the form when given
      (else keep the prefilled one), submit, log in with a Dex connector and stop on Dex's
      "device login successful" page (`/device/callback`). Exit 0 on success.

  device-approver.py --redirect-url AUTHORIZATION_URL
      Keyboard mode: log in at the authorization URL and stop at the redirect to the
      authorization request's `redirect_uri` *without requesting it* (as if the loopback could not
      be reached), then print that redirect URL on stdout (it holds a code: test use only) so the
      test can paste it into koidc's stdin.

The connector is `mock` by default; the password connector `local` when FAKE_BROWSER_LOGIN is set
(with FAKE_BROWSER_PASSWORD). Redirects are followed by hand with a cookie jar. Messages on stderr
name only status codes and URL paths, never a code, a state or a token.
"""

import html.parser
import http.cookiejar
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

MAX_STEPS = 25
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
    print(f"device-approver: {message}", file=sys.stderr)
    sys.exit(1)


def where(url):
    """A URL reduced to what may be shown: scheme, host and path, never the query."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def query_of(url):
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True))


def with_param(url, name, value):
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != name]
    query.append((name, value))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def same_endpoint(url, redirect_uri):
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(redirect_uri)
    return (a.scheme, a.netloc, a.path or "/") == (b.scheme, b.netloc, b.path or "/")


class Browser:
    def __init__(self):
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect()
        )
        login = os.environ.get("FAKE_BROWSER_LOGIN")
        self.login = login
        self.password = os.environ.get("FAKE_BROWSER_PASSWORD", "")
        self.connector = "local" if login else "mock"

    def fetch(self, url, data=None):
        request = urllib.request.Request(url, data=data)
        if data is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            response = self.opener.open(request, timeout=TIMEOUT)
            return response.status, response.headers, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers, err.read()
        except OSError as err:
            fail(f"request to {where(url)} failed: {type(err).__name__}")

    def pick_connector(self, url):
        """Dex's authorization endpoint without a connector shows a chooser: pick one."""
        path = urllib.parse.urlsplit(url).path
        if path.endswith("/auth") and "connector_id" not in query_of(url):
            return with_param(url, "connector_id", self.connector)
        return url

    def run(self, url, data=None, stop_before=None, device_code=None):
        """Follows the flow from `url`. Returns the redirect URL matching `stop_before` (not
        requested), or None once Dex's device success page was reached."""
        code_submitted = False
        for _ in range(MAX_STEPS):
            url = self.pick_connector(url)
            if stop_before and data is None and same_endpoint(url, stop_before):
                return url
            status, headers, body = self.fetch(url, data)
            data = None
            if status in (301, 302, 303, 307, 308):
                location = headers.get("Location")
                if not location:
                    fail(f"{where(url)} answered {status} without a Location")
                url = urllib.parse.urljoin(url, location)
                continue
            if status != 200:
                fail(f"{where(url)} answered {status}")
            path = urllib.parse.urlsplit(url).path
            if path.endswith("/device/callback"):
                if stop_before:
                    fail("reached the device callback in --redirect-url mode")
                return None
            parser = _FormParser()
            parser.feed(body.decode("utf-8", "replace"))
            device_forms = [f for f in parser.forms if "user_code" in f["inputs"]]
            password_forms = [f for f in parser.forms if "password" in f["inputs"]]
            if device_forms:
                if code_submitted:
                    fail(f"{where(url)} showed the code form again: Dex refused the user code")
                form = device_forms[0]
                fields = dict(form["inputs"])
                if device_code:
                    fields["user_code"] = device_code
                if not fields.get("user_code"):
                    fail(f"{where(url)} asks for a user code and none was given")
                code_submitted = True
            elif password_forms and self.login:
                form = password_forms[0]
                fields = dict(form["inputs"])
                fields["login"] = self.login
                fields["password"] = self.password
            else:
                fail(f"{where(url)} answered 200 with no form to fill in")
            url = urllib.parse.urljoin(url, form["action"] or url)
            data = urllib.parse.urlencode(fields).encode()
        fail(f"gave up after {MAX_STEPS} requests")


def main():
    args = sys.argv[1:]
    browser = Browser()
    if len(args) == 2 and args[0] == "--redirect-url":
        redirect_uri = query_of(args[1]).get("redirect_uri")
        if not redirect_uri:
            fail(f"no redirect_uri in the authorization URL {where(args[1])}")
        found = browser.run(args[1], stop_before=redirect_uri)
        print(found)
        return 0
    if len(args) in (1, 2) and not args[0].startswith("--"):
        browser.run(args[0], device_code=args[1] if len(args) == 2 else None)
        return 0
    fail("usage: device-approver.py VERIFICATION_URL [USER_CODE] | --redirect-url AUTHORIZATION_URL")


if __name__ == "__main__":
    sys.exit(main())
