#!/usr/bin/env python3
"""Plays the user's browser for koidc's headless-login tests against Dex (fake-browser.py needs a
`redirect_uri` in its URL, so it cannot do these). Python 3 standard library only.

  device-approver.py VERIFICATION_URL [USER_CODE]
      The device flow (RFC 8628) as a user on another device does it: open the verification URL
      (Dex's `/device`, Keycloak's `/realms/REALM/device`, or `verification_uri_complete`), enter
      USER_CODE in the form when given (else keep the prefilled one), submit, log in (a Dex
      connector, or Keycloak's username/password form and its consent page) and stop on the "device
      login successful" page (Dex's `/device/callback`; Keycloak's page without a form). Exit 0
      on success. Keycloak 26.7 answers a typed code posted to `/realms/REALM/device` with
      `invalid_client`: give it the `verification_uri_complete` instead.

  device-approver.py --redirect-url AUTHORIZATION_URL
      Keyboard mode: log in at the authorization URL and stop at the redirect to the
      authorization request's `redirect_uri` *without requesting it* (as if the loopback could not
      be reached), then print that redirect URL on stdout (it holds a code: test use only) so the
      test can paste it into koidc's stdin.

The connector is `mock` by default; the password connector `local` when FAKE_BROWSER_LOGIN is set
(with FAKE_BROWSER_PASSWORD). Redirects are followed by hand with a cookie jar. Messages on stderr
name only status codes and URL paths, never a code, a state or a token.
"""

import os
import sys
import urllib.parse

# browserlib.py sits beside this file, which is run by its path from any working directory.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import browserlib  # noqa: E402
from browserlib import query_of, same_endpoint, where, with_param  # noqa: E402

PROGRAM = "device-approver"
MAX_STEPS = 25
CODE_FIELDS = {"user_code", "device_user_code"}


def fail(message):
    browserlib.fail(PROGRAM, message)


class Approver(browserlib.Browser):
    """The browser on the other device, or the one whose redirect is pasted into koidc."""

    def __init__(self):
        super().__init__(PROGRAM)

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
        logged_in = False
        for _ in range(MAX_STEPS):
            url = self.pick_connector(url)
            if stop_before and data is None and same_endpoint(url, stop_before):
                return url
            status, headers, body = self.fetch(url, data)
            data = None
            target = self.redirect_target(url, status, headers)
            if target is not None:
                url = target
                continue
            if status != 200:
                fail(f"{where(url)} answered {status}")
            path = urllib.parse.urlsplit(url).path
            if path.endswith("/device/callback"):
                if stop_before:
                    fail("reached the device callback in --redirect-url mode")
                return None
            forms = browserlib.forms(body)
            # Dex names the field `user_code`, Keycloak `device_user_code`.
            device_forms = [f for f in forms if CODE_FIELDS & f["inputs"].keys()]
            password_forms = [f for f in forms if "password" in f["inputs"]]
            consent_forms = [f for f in forms if "/login-actions/consent" in f["action"]]
            if device_forms:
                if code_submitted:
                    fail(f"{where(url)} showed the code form again: Dex refused the user code")
                form = device_forms[0]
                fields = dict(form["inputs"])
                field = next(iter(CODE_FIELDS & fields.keys()))
                if device_code:
                    fields[field] = device_code
                if not fields.get(field):
                    fail(f"{where(url)} asks for a user code and none was given")
                code_submitted = True
            elif password_forms and self.login:
                form = password_forms[0]
                fields = browserlib.login_fields(form, self.login, self.password)
                logged_in = True
            elif logged_in and consent_forms:
                # Keycloak asks the user to grant the device's access (its "Yes" button).
                form = consent_forms[0]
                fields = dict(form["inputs"])
                fields["accept"] = "Yes"
            elif not forms and logged_in and b"successful" in body.lower():
                # Keycloak's "Device Login Successful" page (it has no /device/callback).
                if stop_before:
                    fail("reached the device success page in --redirect-url mode")
                return None
            else:
                fail(f"{where(url)} answered 200 with no form to fill in")
            url, data = browserlib.submission(url, form, fields)
        fail(f"gave up after {MAX_STEPS} requests")


def main():
    args = sys.argv[1:]
    browser = Approver()
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
