// A real OpenID provider (panva/oidc-provider, OpenID Certified) for the OIDC sign-in tests,
// started by tests/oidc_server.py on a loopback port with TLS from a CA the test made.
//
// Usage: node provider.mjs <config.json>. The config gives the issuer, port, TLS files, the
// signing keys (private JWKs: the test rotates them by restarting with another set), the
// registered clients and the accounts. The login page is a plain form the test posts to, as a
// browser would: /interaction/<uid>/login with login, password and (optional) mfa=1, which
// records amr ["pwd", "otp"] so the test can see WCP360 trust (or not) an asserted second factor.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const accounts = config.accounts;

const provider = new Provider(config.issuer, {
  clients: config.clients,
  jwks: { keys: config.keys },
  cookies: { keys: [config.cookie_key] },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false }, claimsParameter: { enabled: true } },
  // Scope claims go into the ID token too (as Google does), not only to userinfo.
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub'],
    // Not tied to a scope: what the sign-in used (amr), so the relying party can judge an asserted MFA.
    amr: null,
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name'],
    groups: ['groups'],
  },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, ...account.claims };
      },
    };
  },
  // First-party test clients: consent is given with the sign-in, so no consent page.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid email profile groups');
    await grant.save();
    return grant;
  },
});

function form(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => resolve(new URLSearchParams(body)));
    req.on('error', reject);
  });
}

const interaction = /^\/interaction\/([\w-]+)(\/login)?$/;
const handler = provider.callback();

const server = https.createServer(
  { cert: readFileSync(config.cert), key: readFileSync(config.key) },
  async (req, res) => {
    const match = interaction.exec(req.url.split('?')[0]);
    if (!match) return handler(req, res);
    try {
      const details = await provider.interactionDetails(req, res);
      if (!match[2]) {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        return res.end(JSON.stringify({ uid: details.uid, prompt: details.prompt.name }));
      }
      const fields = await form(req);
      const login = fields.get('login');
      if (!accounts[login] || accounts[login].password !== fields.get('password')) {
        res.writeHead(401, { 'Content-Type': 'text/plain' });
        return res.end('wrong login or password');
      }
      const amr = fields.get('mfa') === '1' ? ['pwd', 'otp'] : ['pwd'];
      return await provider.interactionFinished(
        req, res, { login: { accountId: login, amr } }, { mergeWithLastSubmission: false },
      );
    } catch (error) {
      res.writeHead(400, { 'Content-Type': 'text/plain' });
      return res.end(String(error));
    }
  },
);

server.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`listening ${config.issuer}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
