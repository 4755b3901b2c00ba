import webpush from 'web-push';
import { describe, expect, it } from 'vitest';
import { verifyVapid } from '../helpers/vapid.js';

const audience = 'https://127.0.0.1:4443';
const subject = 'mailto:ops@postbox.example';
const keys = webpush.generateVAPIDKeys();
const other = webpush.generateVAPIDKeys();

/** The header web-push sends for aes128gcm: `vapid t=<JWT>, k=<public key>`. */
function authorization(aud = audience, exp?: number, publicKey = keys.publicKey, privateKey = keys.privateKey): string {
  return webpush.getVapidHeaders(aud, subject, publicKey, privateKey, 'aes128gcm', exp).Authorization;
}

describe('verifyVapid', () => {
  it('accepts what web-push signs, and reports its claims and key', async () => {
    const exp = Math.floor(Date.now() / 1000) + 3600;
    const check = await verifyVapid(authorization(audience, exp), { audience, applicationServerKey: keys.publicKey });
    expect(check).toEqual({ present: true, valid: true, sub: subject, aud: audience, exp, key: keys.publicKey });
  });

  it('reports no vapid authentication when the header is absent or of another scheme', async () => {
    expect(await verifyVapid(undefined, { audience })).toMatchObject({ present: false, valid: false });
    const legacy = webpush.getVapidHeaders(audience, subject, keys.publicKey, keys.privateKey, 'aesgcm').Authorization;
    expect(legacy).toMatch(/^WebPush /);
    expect(await verifyVapid(legacy, { audience })).toMatchObject({ present: false, valid: false });
  });

  it('refuses a signature that does not verify with k', async () => {
    const check = await verifyVapid(authorization(audience, undefined, keys.publicKey, other.privateKey), { audience });
    expect(check).toMatchObject({ present: true, valid: false, key: keys.publicKey });
    expect(check.reason).toMatch(/signature/);
  });

  it('refuses a key other than the applicationServerKey of a restricted subscription', async () => {
    const header = authorization(audience, undefined, other.publicKey, other.privateKey);
    expect(await verifyVapid(header, { audience })).toMatchObject({ valid: true });
    const check = await verifyVapid(header, { audience, applicationServerKey: keys.publicKey });
    expect(check).toMatchObject({ valid: false });
    expect(check.reason).toMatch(/applicationServerKey/);
  });

  it('refuses an aud that is not the origin of the push resource', async () => {
    const check = await verifyVapid(authorization('https://127.0.0.1:9999'), { audience });
    expect(check).toMatchObject({ valid: false, aud: 'https://127.0.0.1:9999' });
    expect(check.reason).toMatch(/aud/);
  });

  it('refuses an exp in the past or more than 24 hours ahead of the request', async () => {
    const exp = Math.floor(Date.now() / 1000) + 3600;
    const header = authorization(audience, exp);
    // The same token, judged at three request times (seconds since the epoch).
    expect(await verifyVapid(header, { audience, now: exp - 24 * 3600 })).toMatchObject({ valid: true });
    expect(await verifyVapid(header, { audience, now: exp - 24 * 3600 - 1 })).toMatchObject({ valid: false });
    expect(await verifyVapid(header, { audience, now: exp })).toMatchObject({ valid: false });
    expect((await verifyVapid(header, { audience, now: exp })).reason).toMatch(/expired/);
  });

  it('refuses a t that is not a JWT and a k that is not a P-256 point', async () => {
    expect(await verifyVapid(`vapid t=nonsense, k=${keys.publicKey}`, { audience })).toMatchObject({ present: true, valid: false });
    const [t] = /t=([^,]+)/.exec(authorization())!.slice(1);
    const short = await verifyVapid(`vapid t=${t}, k=${Buffer.alloc(33, 2).toString('base64url')}`, { audience });
    expect(short).toMatchObject({ valid: false });
    expect(short.reason).toMatch(/P-256/);
  });
});
