// An Okta-like OpenID provider for koidc's integration tests.
//
// The certified `oidc-provider` package, configured as an Okta custom authorization server
// (issuer `http://127.0.0.1:PORT/oauth2/default`, endpoints under `/v1/...` as Okta names them)
// with one Okta "Native app": public client `koidc-okta` (token_endpoint_auth_method none),
// sign-in redirect URIs exactly http://127.0.0.1:8000/callback and http://127.0.0.1:18000/callback,
// and http://localhost:8000/callback as an app registered with `localhost` has it (no loopback
// port leniency), PKCE required (S256 only), grant types authorization_code and
// refresh_token, rotating refresh tokens (reusing a rotated one revokes the whole grant, as Okta
// does outside its grace period), a `groups` scope whose claim goes into the ID token, revocation
// at `/v1/revoke`, and no consent screen (the consent step is answered by the server, as an
// Okta admin's consent would). The one account is okta-user@example.com (password
// `okta-password`, groups [okta-devs]); its sign-in page at `/login/<uid>` is a plain form that
// tests/support/fake-browser.py fills in (FAKE_BROWSER_LOGIN / FAKE_BROWSER_PASSWORD).
//
// Usage: node server.mjs [PORT]  (PORT 0 or none: a free port). Prints `READY <issuer>` on stdout
// once listening. Only listens on 127.0.0.1.
//
// With OKTA_TEST_CI_CLIENT_SECRET set, it also has an Okta "API Services" app: the confidential
// client `koidc-ci` (that secret, client_secret_basic, grant type client_credentials only) whose
// access tokens are RS256 JWTs for the audience `kubernetes` (the resource indicator
// `urn:koidc:kubernetes`, used when the request names none), as an Okta custom authorization
// server's audience setting makes them.
//
// Environment:
//   OKTA_TEST_ID_TOKEN_TTL   ID token lifetime in seconds (default 3600)
//   OKTA_TEST_CI_CLIENT_SECRET   registers `koidc-ci` with this secret
//   OKTA_TEST_CI_OPAQUE=1    `koidc-ci` gets opaque access tokens (no audience, not JWTs)
//   OKTA_TEST_NO_GROUPS_SCOPE=1   the authorization server has no `groups` scope: an authorization
//                            request asking for it is answered with Okta's `invalid_scope` error
//   OKTA_TEST_USER_AUDIENCE=AUD   `koidc-okta` gets RS256 JWT access tokens for the audience AUD
//                            (the resource indicator `urn:koidc:user-api`, used when the request
//                            names none), as an Okta custom authorization server's audience
//                            (`api://default`) makes them; without it they are opaque
//
// Test-only endpoint (not Okta's): GET /__test/events returns what happened as a JSON list:
//   {type: "authorize", redirect_uri, scope, prompt, login_hint, max_age}  a code was issued
//   {type: "header", path}                              a request carried X-Koidc-Test: present
//   {type: "authorize_error", error, description, redirect_uri}
//   {type: "token", grant_type, refresh_in, refresh_out} refresh_in/out: fingerprints
//   {type: "token_error", grant_type, error, description, refresh_in}
//   {type: "revocation", token}                          a revocation request revoked a grant
// A fingerprint is the first 16 hex digits of the SHA-256 of the token (tokens are never listed).

import { createHash } from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const PREFIX = '/oauth2/default';
const CLIENT_ID = 'koidc-okta';
const CI_CLIENT_ID = 'koidc-ci';
const CI_RESOURCE = 'urn:koidc:kubernetes';
const CI_AUDIENCE = 'kubernetes';
const USER_RESOURCE = 'urn:koidc:user-api';
const userAudience = process.env.OKTA_TEST_USER_AUDIENCE;
const REDIRECT_URIS = [
  'http://127.0.0.1:8000/callback',
  'http://127.0.0.1:18000/callback',
  'http://localhost:8000/callback',
];
const ACCOUNT = {
  sub: '00uokta0user0000001',
  email: 'okta-user@example.com',
  password: 'okta-password',
  groups: ['okta-devs'],
};

const port = Number(process.argv[2] ?? 0);
const idTokenTtl = Number(process.env.OKTA_TEST_ID_TOKEN_TTL ?? 3600);
const noGroupsScope = process.env.OKTA_TEST_NO_GROUPS_SCOPE === '1';
const ciSecret = process.env.OKTA_TEST_CI_CLIENT_SECRET;
const ciOpaque = process.env.OKTA_TEST_CI_OPAQUE === '1';

const events = [];
const fingerprint = (token) => (typeof token === 'string' && token
  ? createHash('sha256').update(token).digest('hex').slice(0, 16)
  : null);

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// Okta's error page for an authorization request it cannot redirect back (wording as Okta's).
function oktaErrorPage(error, description) {
  return `<!DOCTYPE html>
<html><head><title>400 Bad Request</title></head>
<body><div class="content"><h2>400 Bad Request</h2>
<p>Identity Provider: Unknown</p>
<p>Error Code: ${escapeHtml(error)}</p>
<p>Description: ${escapeHtml(description)}</p>
</div></body></html>`;
}

function loginPage(uid, message) {
  return `<!DOCTYPE html>
<html><head><title>Sign In</title></head>
<body><h1>Sign In</h1>${message ? `<p class="error">${escapeHtml(message)}</p>` : ''}
<form method="post" action="/login/${escapeHtml(uid)}">
<input type="text" name="login" autocomplete="username">
<input type="password" name="password" autocomplete="current-password">
<button type="submit">Sign In</button>
</form></body></html>`;
}

const server = http.createServer();

server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}${PREFIX}`;

  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      // `web`, not `native`: oidc-provider lets native clients use any loopback port, Okta
      // matches sign-in redirect URIs exactly.
      application_type: 'web',
      token_endpoint_auth_method: 'none',
      redirect_uris: REDIRECT_URIS,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      id_token_signed_response_alg: 'RS256',
    }, ...(ciSecret ? [{
      client_id: CI_CLIENT_ID,
      client_secret: ciSecret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    }] : [])],
    routes: {
      authorization: '/v1/authorize',
      token: '/v1/token',
      revocation: '/v1/revoke',
      jwks: '/v1/keys',
      userinfo: '/v1/userinfo',
      end_session: '/v1/logout',
      introspection: '/v1/introspect',
    },
    scopes: noGroupsScope
      ? ['openid', 'offline_access', 'email', 'profile']
      : ['openid', 'offline_access', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    // Okta puts the claims of the granted scopes (and a `groups` claim set to "always") into the
    // ID token.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    rotateRefreshToken: true,
    // Okta issues a refresh token for `offline_access` without `prompt=consent`.
    issueRefreshToken: async (ctx, client, code) => client.grantTypeAllowed('refresh_token')
      && code.scopes.has('offline_access'),
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      introspection: { enabled: false },
      clientCredentials: { enabled: true },
      // The machine client's access tokens are for the apiserver: a JWT whose `aud` is
      // `kubernetes` (an opaque token with OKTA_TEST_CI_OPAQUE=1). Other clients keep the
      // provider's defaults.
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx, client) => {
          if (client?.clientId === CI_CLIENT_ID && !ciOpaque) return CI_RESOURCE;
          if (client?.clientId === CLIENT_ID && userAudience) return USER_RESOURCE;
          return undefined;
        },
        getResourceServerInfo: async (ctx, resourceIndicator, client) => {
          if (resourceIndicator === USER_RESOURCE && client?.clientId === CLIENT_ID && userAudience) {
            return {
              scope: '',
              audience: userAudience,
              accessTokenTTL: 7200,
              accessTokenFormat: 'jwt',
              jwt: { sign: { alg: 'RS256' } },
            };
          }
          if (resourceIndicator !== CI_RESOURCE || client?.clientId !== CI_CLIENT_ID) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: '',
            audience: CI_AUDIENCE,
            accessTokenTTL: 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
        useGrantedResource: async (ctx) => ctx.oidc.client?.clientId === CLIENT_ID && !!userAudience,
      },
    },
    ttl: {
      IdToken: idTokenTtl,
      AccessToken: 3600,
      RefreshToken: 24 * 3600,
    },
    interactions: {
      url: (ctx, interaction) => `/login/${interaction.uid}`,
    },
    async findAccount(ctx, sub) {
      if (sub !== ACCOUNT.sub) return undefined;
      return {
        accountId: ACCOUNT.sub,
        async claims() {
          return {
            sub: ACCOUNT.sub,
            email: ACCOUNT.email,
            email_verified: true,
            name: 'Okta User',
            preferred_username: ACCOUNT.email,
            groups: ACCOUNT.groups,
          };
        },
      };
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      if (out.error === 'invalid_redirect_uri') {
        ctx.body = oktaErrorPage('invalid_request', "The 'redirect_uri' parameter must be a Login redirect URI in the client app settings");
      } else {
        ctx.body = oktaErrorPage(out.error, out.error_description ?? '');
      }
    },
  });

  provider.on('authorization.success', (ctx) => {
    events.push({
      type: 'authorize',
      redirect_uri: ctx.oidc.params.redirect_uri,
      scope: ctx.oidc.params.scope,
      prompt: ctx.oidc.params.prompt,
      login_hint: ctx.oidc.params.login_hint,
      max_age: ctx.oidc.params.max_age,
    });
  });
  provider.on('authorization.error', (ctx, err) => {
    events.push({
      type: 'authorize_error',
      error: err.error,
      description: err.error_description,
      redirect_uri: ctx.oidc.params?.redirect_uri ?? ctx.query?.redirect_uri,
    });
  });
  provider.on('grant.success', (ctx) => {
    events.push({
      type: 'token',
      grant_type: ctx.oidc.params.grant_type,
      refresh_in: fingerprint(ctx.oidc.params.refresh_token),
      refresh_out: fingerprint(ctx.body?.refresh_token),
    });
  });
  provider.on('grant.error', (ctx, err) => {
    events.push({
      type: 'token_error',
      grant_type: ctx.oidc.params?.grant_type,
      error: err.error,
      description: err.error_detail ?? err.error_description,
      refresh_in: fingerprint(ctx.oidc.params?.refresh_token),
    });
  });
  provider.on('grant.revoked', (ctx) => {
    if (ctx.oidc.route === 'revocation') {
      events.push({ type: 'revocation', token: fingerprint(ctx.oidc.params.token) });
    }
  });

  const callback = provider.callback();

  server.on('request', async (req, res) => {
    const url = new URL(req.url, issuer);
    if (req.headers['x-koidc-test'] === 'present') {
      events.push({ type: 'header', path: url.pathname });
    }
    try {
      if (url.pathname === '/__test/events' && req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(events));
        return;
      }
      if (url.pathname.startsWith('/login/')) {
        await login(provider, req, res, url.pathname.slice('/login/'.length));
        return;
      }
      if (url.pathname === PREFIX || url.pathname.startsWith(`${PREFIX}/`)) {
        let path = req.url;
        if (url.pathname === `${PREFIX}/v1/authorize`) {
          if (noGroupsScope && rejectGroupsScope(url, res)) {
            return;
          }
          // Okta issues a refresh token for `offline_access` without `prompt=consent`;
          // oidc-provider (as OpenID Connect Core 11 says) drops `offline_access` unless the
          // request has `prompt=consent`. Add it; the consent step then answers itself (Okta's
          // admin consent), see login().
          if (!url.searchParams.has('prompt')) {
            url.searchParams.set('prompt', 'consent');
            path = `${url.pathname}${url.search}`;
          }
        }
        req.originalUrl = path;
        req.url = path.slice(PREFIX.length) || '/';
        callback(req, res);
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
    } catch (err) {
      process.stderr.write(`okta test server: ${err?.stack ?? err}\n`);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('internal error\n');
    }
  });

  process.stdout.write(`READY ${issuer}\n`);
});

// Okta answers a request for a scope its authorization server lacks by redirecting back with
// `invalid_scope` (when the client and redirect URI are valid).
function rejectGroupsScope(url, res) {
  const scopes = (url.searchParams.get('scope') ?? '').split(' ');
  const redirectUri = url.searchParams.get('redirect_uri');
  if (!scopes.includes('groups') || !REDIRECT_URIS.includes(redirectUri)
      || url.searchParams.get('client_id') !== CLIENT_ID) {
    return false;
  }
  const back = new URL(redirectUri);
  back.searchParams.set('error', 'invalid_scope');
  back.searchParams.set('error_description', 'One or more scopes are not configured for the authorization server resource.');
  const state = url.searchParams.get('state');
  if (state) back.searchParams.set('state', state);
  events.push({ type: 'authorize_error', error: 'invalid_scope', description: 'groups', redirect_uri: redirectUri });
  res.writeHead(302, { location: back.href });
  res.end();
  return true;
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// The sign-in page: GET shows the form, POST checks the password and finishes the interaction.
async function login(provider, req, res, uid) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch {
    res.writeHead(400, { 'content-type': 'text/html' });
    res.end(oktaErrorPage('invalid_request', 'The sign-in session has expired or is unknown.'));
    return;
  }
  if (details.uid !== uid) {
    res.writeHead(400, { 'content-type': 'text/html' });
    res.end(oktaErrorPage('invalid_request', 'Unexpected sign-in step.'));
    return;
  }
  if (details.prompt.name === 'consent') {
    // An Okta admin granted the app its scopes: users never see a consent screen.
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    grant.addOIDCScope(details.params.scope ?? 'openid');
    if (details.prompt.details.missingOIDCClaims) {
      grant.addOIDCClaims(details.prompt.details.missingOIDCClaims);
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, {
      mergeWithLastSubmission: true,
    });
    return;
  }
  if (details.prompt.name !== 'login') {
    res.writeHead(400, { 'content-type': 'text/html' });
    res.end(oktaErrorPage('invalid_request', 'Unexpected sign-in step.'));
    return;
  }
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'text/html', 'cache-control': 'no-store' });
    res.end(loginPage(uid));
    return;
  }
  if (req.method !== 'POST') {
    res.writeHead(405, { allow: 'GET, POST' });
    res.end();
    return;
  }
  const form = await readForm(req);
  if (form.get('login') !== ACCOUNT.email || form.get('password') !== ACCOUNT.password) {
    res.writeHead(200, { 'content-type': 'text/html', 'cache-control': 'no-store' });
    res.end(loginPage(uid, 'Unable to sign in'));
    return;
  }
  await provider.interactionFinished(req, res, { login: { accountId: ACCOUNT.sub } }, {
    mergeWithLastSubmission: false,
  });
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
