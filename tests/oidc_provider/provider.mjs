// A local OpenID provider for Slussen's tests: panva's oidc-provider on 127.0.0.1, a free port.
//
// It stands in for a region's identity provider (a SITHS gateway): the test's configuration comes
// as JSON in SLUSSEN_OIDC_TEST_CONFIG ({"clients": [...], "acr_values": [...], "accounts": {...}}),
// the provider prints one JSON line {"issuer": "http://127.0.0.1:PORT"} when it listens, and
// stops on SIGTERM. Its login page asks for an account id and the authentication level (acr) the
// login gets, so a test chooses both; consent is implied (loadExistingGrant), as at a region's
// gateway where the client is the region's own.
import crypto from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(process.env.SLUSSEN_OIDC_TEST_CONFIG || '{}');
const accounts = config.accounts || {};
const acrValues = config.acr_values || [];

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const page = (title, body) => `<!DOCTYPE html>
<html lang="sv"><head><meta charset="utf-8"><title>${escape(title)}</title></head>
<body><main><h1>${escape(title)}</h1>${body}</main></body></html>`;

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const signingKey = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const provider = new Provider(issuer, {
    clients: config.clients || [],
    acrValues,
    claims: {
      acr: null, auth_time: null, sid: null, openid: ['sub'], profile: ['name', 'hsa_id', 'unit_hsa_id'],
    },
    // The claims go in the ID token itself, as SITHS gateways do.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    jwks: { keys: [{ ...signingKey.export({ format: 'jwk' }), kid: 'test-provider', use: 'sig' }] },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          ctx.body = page(
            'Logga ut från identitetstjänsten',
            `${form}<button type="submit" form="op.logoutForm" value="yes" name="logout">Ja, logga ut</button>`,
          );
        },
        async postLogoutSuccessSource(ctx) {
          ctx.body = page('Utloggad', '<p>Du är utloggad från identitetstjänsten.</p>');
        },
      },
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, id) {
      const claims = accounts[id] || {};
      return { accountId: id, async claims() { return { sub: id, ...claims }; } };
    },
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid profile');
      await grant.save();
      return grant;
    },
  });
  const callback = provider.callback();

  server.on('request', async (req, res) => {
    const match = req.url.match(/^\/interaction\/([\w-]+)$/);
    if (!match) {
      callback(req, res);
      return;
    }
    try {
      if (req.method === 'GET') {
        await provider.interactionDetails(req, res);
        const options = acrValues.map((v) => `<option value="${escape(v)}">${escape(v)}</option>`);
        res.setHeader('Content-Type', 'text/html; charset=utf-8');
        res.end(page('Logga in hos identitetstjänsten', `
          <form method="post" action="/interaction/${escape(match[1])}">
            <label for="login">Användar-id</label> <input id="login" name="login" required>
            <label for="acr">Autentiseringsnivå</label> <select id="acr" name="acr">${options.join('')}</select>
            <button type="submit">Logga in</button>
          </form>`));
        return;
      }
      const form = await readForm(req);
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId: form.get('login'), acr: form.get('acr') || undefined } },
        { mergeWithLastSubmission: false },
      );
    } catch (err) {
      res.statusCode = 400;
      res.end(String(err));
    }
  });

  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
