// A real OpenID Connect provider (the npm package oidc-provider, v9) for the tests.
//
//   OIDC_PROVIDER_CONFIG='{"port": 0, "clients": [...], "accounts": {...}}' node tests/node/provider.mjs
//
// Configuration (JSON in the environment variable OIDC_PROVIDER_CONFIG):
//   port      0 (a free port is picked) or a port number; it listens on 127.0.0.1 only.
//   issuer    optional; "http://127.0.0.1:<port>" when left out or when port is 0.
//   clients   client metadata as oidc-provider takes it: client_id, client_secret,
//             redirect_uris, token_endpoint_auth_method (default client_secret_basic), ...
//   accounts  {"<login>": {"email": ..., "email_verified": true|false, "name": ...,
//              "password": optional; when given, the login form must be sent with it}}
//
// Behaviour:
//   - authorization code flow only, PKCE (S256) required for every client;
//   - scopes openid, email (email, email_verified) and profile (name); the claims the
//     granted scopes give are in the ID token too (conformIdTokenClaims: false);
//   - the sign-in page is our own (no network, no consent step): GET /interaction/<uid>
//     shows form#login-form with input[name=login], input[name=password] and
//     button[type=submit]; it posts to /interaction/<uid>/login. An unknown login (or a
//     wrong password) shows the form again with p#login-error, status 401.
//     a#cancel (GET /interaction/<uid>/abort) ends the interaction with
//     error=access_denied at the client's redirect_uri.
//   - every requested scope and claim is granted without asking (loadExistingGrant);
//   - prints "READY <issuer>" on stdout once it listens; everything else goes to stderr;
//   - SIGTERM or SIGINT: closes the server and exits 0; so does the death of its parent.
//
// Keys (signing key, cookie key) are made fresh at every start: nothing is stored.

import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';

import { Provider } from 'oidc-provider';

const log = (...args) => console.error('[oidc-provider]', ...args);

function readConfiguration() {
  const raw = process.env.OIDC_PROVIDER_CONFIG;
  if (!raw) {
    throw new Error('OIDC_PROVIDER_CONFIG is not set (a JSON object: port, issuer, clients, accounts)');
  }
  const config = JSON.parse(raw);
  const port = Number(config.port ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`port must be 0 or a TCP port, not ${config.port}`);
  }
  if (!Array.isArray(config.clients) || config.clients.length === 0) {
    throw new Error('clients must be a non-empty list');
  }
  const accounts = config.accounts ?? {};
  if (typeof accounts !== 'object' || Array.isArray(accounts)) {
    throw new Error('accounts must be an object: login -> claims');
  }
  return { ...config, port, accounts };
}

const escapeHtml = (value) => String(value ?? '').replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>body{font-family:sans-serif;max-width:22rem;margin:2rem auto}label,input,button{display:block;width:100%;margin:.3rem 0}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

function loginPage({ uid, clientId, loginHint, login, error }) {
  const base = `/interaction/${encodeURIComponent(uid)}`;
  return page('Sign-in', `<h1>Sign-in</h1>
<p>to continue to <span id="client-id">${escapeHtml(clientId)}</span></p>
${error ? `<p id="login-error" role="alert">${escapeHtml(error)}</p>` : ''}
<form id="login-form" method="post" action="${base}/login" autocomplete="off">
<input type="hidden" name="prompt" value="login">
<label for="login">Login</label>
<input id="login" type="text" name="login" required autofocus value="${escapeHtml(login ?? loginHint ?? '')}">
<label for="password">Password</label>
<input id="password" type="password" name="password">
<button id="login-submit" type="submit">Sign-in</button>
</form>
<p><a id="cancel" href="${base}/abort">Cancel</a></p>`);
}

function send(res, status, html) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(html);
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

// Grants every scope and claim the request asks for, so no consent page is shown.
async function grantEverything(ctx) {
  const { provider, client, account, session } = ctx.oidc;
  const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
  let grant = grantId ? await provider.Grant.find(grantId) : undefined;
  if (!grant || grant.accountId !== account.accountId || grant.clientId !== client.clientId) {
    grant = new provider.Grant({ accountId: account.accountId, clientId: client.clientId });
  }
  const scopes = [...ctx.oidc.requestParamOIDCScopes];
  if (scopes.length) grant.addOIDCScope(scopes.join(' '));
  const claims = [...ctx.oidc.requestParamClaims];
  if (claims.length) grant.addOIDCClaims(claims);
  await grant.save();
  return grant;
}

function buildProvider(config, issuer) {
  const { accounts } = config;
  const cookieKey = randomBytes(32).toString('base64url');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signingKey = {
    ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256',
  };

  const clients = config.clients.map((client) => ({
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...client,
  }));

  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [signingKey] },
    cookies: { keys: [cookieKey] },
    pkce: { required: () => true },
    responseTypes: ['code'],
    claims: {
      acr: null,
      auth_time: null,
      iss: null,
      sid: null,
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    scopes: ['openid', 'email', 'profile'],
    conformIdTokenClaims: false,
    async findAccount(ctx, sub) {
      if (!Object.hasOwn(accounts, sub)) return undefined;
      const account = accounts[sub];
      return {
        accountId: sub,
        async claims() {
          const claims = { sub };
          for (const name of ['email', 'email_verified', 'name']) {
            if (account[name] !== undefined) claims[name] = account[name];
          }
          return claims;
        },
      };
    },
    loadExistingGrant: grantEverything,
    interactions: {
      url(ctx, interaction) {
        return `/interaction/${interaction.uid}`;
      },
    },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          ctx.type = 'html';
          ctx.body = page('Sign-out', `<h1>Sign out?</h1>
${form}
<button id="logout-yes" type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>
<button id="logout-no" type="submit" form="op.logoutForm">No, stay signed in</button>`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.type = 'html';
          ctx.body = page('Signed out', '<h1 id="signed-out">Signed out</h1>');
        },
      },
    },
    async renderError(ctx, out, error) {
      log('error page:', JSON.stringify(out), error?.stack ?? '');
      ctx.type = 'html';
      ctx.body = page('Error', `<h1>Error</h1>
${Object.entries(out).map(([key, value]) => `<p class="${escapeHtml(key)}"><strong>${escapeHtml(key)}</strong>: ${escapeHtml(value)}</p>`).join('\n')}`);
    },
  });

  for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error',
    'end_session.error', 'jwks.error', 'discovery.error', 'introspection.error', 'revocation.error']) {
    provider.on(event, (ctx, err) => log(`${event}:`, err?.name, err?.message,
      err?.error_description ?? '', err?.error_detail ? `(${err.error_detail})` : ''));
  }
  return provider;
}

// GET /interaction/<uid>, POST /interaction/<uid>/login, GET|POST /interaction/<uid>/abort
async function interaction(provider, accounts, req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    send(res, 400, page('Error', '<h1>Error</h1><p>interaction mismatch</p>'));
    return;
  }
  const { prompt, params } = details;

  if (action === 'abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
    return;
  }

  if (prompt.name === 'consent') {
    // Only reached if a client asks for prompt=consent: grant it without a click.
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, {
      mergeWithLastSubmission: true,
    });
    return;
  }

  if (prompt.name !== 'login') {
    send(res, 501, page('Error', `<h1>Error</h1><p>prompt ${escapeHtml(prompt.name)} is not supported</p>`));
    return;
  }

  const shown = { uid, clientId: params.client_id, loginHint: params.login_hint };
  if (action === '' && req.method === 'GET') {
    send(res, 200, loginPage(shown));
    return;
  }
  if (action === 'login' && req.method === 'POST') {
    const form = await readForm(req);
    const login = (form.get('login') ?? '').trim();
    const account = Object.hasOwn(accounts, login) ? accounts[login] : undefined;
    if (!account) {
      send(res, 401, loginPage({ ...shown, login, error: 'Unknown login.' }));
      return;
    }
    if (account.password !== undefined && form.get('password') !== String(account.password)) {
      send(res, 401, loginPage({ ...shown, login, error: 'Wrong password.' }));
      return;
    }
    await provider.interactionFinished(req, res, {
      login: { accountId: login },
    }, { mergeWithLastSubmission: false });
    return;
  }
  send(res, 405, page('Error', '<h1>Error</h1><p>method not allowed</p>'));
}

async function main() {
  const config = readConfiguration();
  let provider;
  let handler;

  const server = createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://127.0.0.1');
    const match = /^\/interaction\/([^/]+)(?:\/(login|abort))?\/?$/.exec(pathname);
    if (!match) {
      handler(req, res);
      return;
    }
    const [, uid, action = ''] = match;
    if (action === 'abort' && !['GET', 'POST'].includes(req.method)) {
      send(res, 405, page('Error', '<h1>Error</h1><p>method not allowed</p>'));
      return;
    }
    interaction(provider, config.accounts, req, res, decodeURIComponent(uid), action).catch((err) => {
      log('interaction error:', err?.stack ?? err);
      if (!res.headersSent) {
        send(res, 400, page('Error', `<h1>Error</h1><p class="error">${escapeHtml(err?.name)}: ${escapeHtml(err?.message)}</p>`));
      } else {
        res.end();
      }
    });
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const issuer = config.port !== 0 && config.issuer ? config.issuer : `http://127.0.0.1:${port}`;

  provider = buildProvider(config, issuer);
  handler = provider.callback();

  const stop = (signal) => {
    log(`${signal}: stopping`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  // If whatever started us dies without stopping us (a killed test run), stop too.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) stop('parent gone');
  }, 500).unref();

  process.stdout.write(`READY ${issuer}\n`);
}

main().catch((err) => {
  log('failed to start:', err?.stack ?? err);
  process.exit(1);
});
