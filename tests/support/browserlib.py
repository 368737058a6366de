"""What koidc's scripted browsers (fake-browser.py, device-approver.py) share: a cookie-keeping
client that follows redirects by hand so that each hop is inspected, the Dex connector and
credentials they log in with, HTML form parsing, and messages that never show a query string
(which may hold a code, a state or a token). Python 3 standard library only.
"""

import html.parser
import http.cookiejar
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT = 30

REDIRECTS = (301, 302, 303, 307, 308)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hand every 3xx back to the caller so that each hop is inspected."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class _LoopbackIsSecure(http.cookiejar.DefaultCookiePolicy):
    """Browsers treat http://127.0.0.1 and http://localhost as secure contexts and send `Secure`
    cookies there (Keycloak marks its login-session cookies `Secure` even over plain HTTP);
    Python's default policy sends them over https only."""

    def return_ok_secure(self, cookie, request):
        host = urllib.parse.urlsplit(request.get_full_url()).hostname or ""
        if cookie.secure and host in ("127.0.0.1", "::1", "localhost"):
            return True
        return super().return_ok_secure(cookie, request)


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


def fail(program, message):
    print(f"{program}: {message}", file=sys.stderr)
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


def forms(body):
    """The forms of an HTML page (bytes), as `_FormParser` collects them."""
    parser = _FormParser()
    parser.feed(body.decode("utf-8", "replace"))
    return parser.forms


def login_fields(form, login, password):
    """The fields of a password `form` filled in: Dex and oidc-provider name the account field
    `login`, Keycloak `username` (its form also carries hidden fields, kept as they are)."""
    fields = dict(form["inputs"])
    fields["username" if "username" in fields else "login"] = login
    fields["password"] = password
    return fields


def submission(url, form, fields):
    """The URL and urlencoded body that submitting `form` (found at `url`) with `fields` posts."""
    return urllib.parse.urljoin(url, form["action"] or url), urllib.parse.urlencode(fields).encode()


class Browser:
    """A browser without a window, for `program`. It logs in with the Dex connector `mock`, or
    the password connector `local` when FAKE_BROWSER_LOGIN is set (with FAKE_BROWSER_PASSWORD).
    Failures end the program with `program: message` on stderr and exit status 1."""

    def __init__(self, program):
        self.program = program
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar(_LoopbackIsSecure())),
            _NoRedirect(),
        )
        self.login = os.environ.get("FAKE_BROWSER_LOGIN")
        self.password = os.environ.get("FAKE_BROWSER_PASSWORD", "")
        self.connector = "local" if self.login else "mock"

    def fail(self, message):
        fail(self.program, message)

    def fetch(self, url, data=None):
        """(status, headers, body) of a GET, or of a form POST when `data` is given; an error
        status is returned like any other, only a failed connection ends the program."""
        request = urllib.request.Request(url, data=data)
        if data is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            response = self.opener.open(request, timeout=TIMEOUT)
            return response.status, response.headers, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers, err.read()
        except OSError as err:
            self.fail(f"request to {where(url)} failed: {type(err).__name__}")

    def redirect_target(self, url, status, headers):
        """Where a redirect answered for `url` points, or None when `status` is no redirect."""
        if status not in REDIRECTS:
            return None
        location = headers.get("Location")
        if not location:
            self.fail(f"{where(url)} answered {status} without a Location")
        return urllib.parse.urljoin(url, location)
