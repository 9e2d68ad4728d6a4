// Minimal local OIDC provider (node-oidc-provider v9) for tests: issuer http://127.0.0.1:3000,
// RS256 + ES256 signing keys generated at start, device authorization grant enabled,
// dev login form (accepts any username; password ignored). NOT for production.
// Copied from ../shared/recipes/oidc-provider/ (zt_e2e::oidc starts it). Changes: a second
// public client `zt-ssh` (the audience in the issue's example config); every login name
// gets claims (`NAME` -> email NAME@example.com, a name with '@' is the email itself,
// names starting `unverified-` get email_verified false); exits when stdin closes, so it
// never outlives the test that started it. For device-code sign-in tests: a login name
// ending `+nomfa` is the same person (the suffix is dropped from the email) signing in
// without MFA (ID token `amr: ["pwd"]`; every other login gets `amr: ["pwd", "mfa"]`),
// and DEVICE_TTL sets the device code's lifetime in seconds.
import Provider from 'oidc-provider';
import { generateKeyPairSync } from 'node:crypto';

const PORT = Number(process.env.PORT || 3000);
const ISSUER = `http://127.0.0.1:${PORT}`;
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
Object.assign(rsa, { kid: 'rsa1', alg: 'RS256', use: 'sig' });
Object.assign(ec, { kid: 'ec1', alg: 'ES256', use: 'sig' });

function claimsFor(id) {
  id = id.replace(/\+nomfa$/, '');
  const email = id.includes('@') ? id : `${id}@${process.env.EMAIL_DOMAIN || 'example.com'}`;
  return { preferred_username: id.split('@')[0], email, email_verified: !id.startsWith('unverified-') };
}
const deviceClient = (client_id) => ({
  client_id, token_endpoint_auth_method: 'none', application_type: 'native',
  grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
  response_types: [], redirect_uris: [], id_token_signed_response_alg: process.env.ALG || 'RS256' });

const provider = new Provider(ISSUER, {
  jwks: { keys: [rsa, ec] },
  clients: [deviceClient('zt-agent'), deviceClient('zt-ssh')],
  features: { devInteractions: { enabled: true }, deviceFlow: { enabled: true } },
  claims: { openid: ['sub', 'amr'], profile: ['preferred_username'], email: ['email', 'email_verified'], groups: ['groups'] },
  async findAccount(ctx, id) {
    return { accountId: id, async claims() { return { sub: id, ...claimsFor(id) }; } };
  },
  // include claims in the ID token itself (not only via userinfo)
  conformIdTokenClaims: false,
  ttl: { DeviceCode: Number(process.env.DEVICE_TTL || 600), IdToken: 300, AccessToken: 300 },
});
// The dev login form records no authentication methods; say how this login signed in.
const finished = provider.interactionFinished.bind(provider);
provider.interactionFinished = (req, res, result, options) => {
  if (result && result.login) {
    result.login.amr = String(result.login.accountId).endsWith('+nomfa') ? ['pwd'] : ['pwd', 'mfa'];
  }
  return finished(req, res, result, options);
};
provider.listen(PORT, '127.0.0.1', () => console.log(`oidc-provider listening on ${ISSUER}`));
if (process.env.EXIT_ON_STDIN_END) { process.stdin.on('end', () => process.exit(0)); process.stdin.resume(); }
