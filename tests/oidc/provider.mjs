// SPDX-License-Identifier: MIT
// A real OpenID provider (oidc-provider) for the integration tests, on
// HTTPS with the test's CA. Usage: node provider.mjs CONFIG.json
// CONFIG: {"issuer","host","port","cert","key","client_id","client_secret",
//          "redirect_uri","alg":"RS256"|"ES256","id_token_ttl":s,
//          "users":{"alice":{"email":...,"email_verified":true,"name":...,
//                            "preferred_username":...,"groups":[...]}}}
// Logins go through oidc-provider's own login and consent forms; the login
// must be one of "users" (any password). Prints "ready" when listening.
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';

import Provider from 'oidc-provider';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const alg = cfg.alg || 'RS256';
const signing = alg === 'ES256'
  ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
  : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...signing.privateKey.export({ format: 'jwk' }), use: 'sig', alg,
  kid: crypto.randomBytes(8).toString('hex') };

const provider = new Provider(cfg.issuer, {
  clients: [{
    client_id: cfg.client_id,
    client_secret: cfg.client_secret,
    redirect_uris: [cfg.redirect_uri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: alg,
  }],
  jwks: { keys: [jwk] },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  conformIdTokenClaims: false,	// the claims in the ID token itself
  pkce: { required: () => true, methods: ['S256'] },
  ttl: { IdToken: cfg.id_token_ttl || 3600, AuthorizationCode: 60 },
  cookies: { keys: [crypto.randomBytes(16).toString('hex')] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const u = cfg.users[id];
    if (!u) return undefined;
    return { accountId: id, async claims() { return { sub: `sub-${id}`, ...u }; } };
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

https.createServer({ cert: fs.readFileSync(cfg.cert), key: fs.readFileSync(cfg.key) },
  provider.callback()).listen(cfg.port, cfg.host, () => console.log('ready'));
