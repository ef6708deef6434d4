import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { PeerCertificate } from 'node:tls';
import { CallerTokens } from '#gateway/gateway/access.js';
import { certificateName, identifyCaller } from '#gateway/gateway/caller-auth.js';

const tokens = CallerTokens.parse('t-ci ci-bot\n');
const cert = (fields: Partial<PeerCertificate>) => fields as PeerCertificate;
const tls = (authorized: boolean, peer: Partial<PeerCertificate>, error?: string) => ({
  authorized,
  authorizationError: error as unknown as Error,
  getPeerCertificate: () => cert(peer),
});

it('names callers by token, and refuses missing, malformed and unknown tokens', () => {
  const config = { tokens };
  assert.deepEqual(identifyCaller('Bearer t-ci', {}, config), { caller: 'ci-bot' });
  assert.deepEqual(identifyCaller('Bearer nope', {}, config), { refused: 'unknown caller token' });
  assert.deepEqual(identifyCaller('Basic abc', {}, config), { refused: 'malformed authorization header' });
  assert.deepEqual(identifyCaller('Bearer ', {}, config), { refused: 'malformed authorization header' });
  assert.deepEqual(identifyCaller('bearer t-ci', {}, config), { refused: 'malformed authorization header' });
  assert.deepEqual(identifyCaller(undefined, {}, config), { refused: 'no caller token' });
});

it('names callers by verified client certificate, and refuses the rest', () => {
  const config = { clientCertificates: true };
  assert.deepEqual(identifyCaller(undefined, { tls: tls(true, { subject: { CN: 'ops' } as never }) }, config), {
    caller: 'ops',
  });
  assert.deepEqual(identifyCaller(undefined, { tls: tls(false, {}) }, config), { refused: 'no client certificate' });
  assert.deepEqual(
    identifyCaller(
      undefined,
      { tls: tls(false, { subject: { CN: 'x' } as never }, 'SELF_SIGNED_CERT_IN_CHAIN') },
      config,
    ),
    { refused: 'client certificate not trusted (SELF_SIGNED_CERT_IN_CHAIN)' },
  );
  assert.deepEqual(identifyCaller(undefined, {}, config), { refused: 'no TLS connection for a client certificate' });
});

it('with both, a token that is present must be right; without one the certificate decides', () => {
  const config = { tokens, clientCertificates: true };
  const good = { tls: tls(true, { subject: { CN: 'ops' } as never }) };
  assert.deepEqual(identifyCaller('Bearer t-ci', good, config), { caller: 'ci-bot' });
  assert.deepEqual(identifyCaller('Bearer wrong', good, config), { refused: 'unknown caller token' });
  assert.deepEqual(identifyCaller(undefined, good, config), { caller: 'ops' });
});

it('without any caller authentication configured, everyone is "anonymous"', () => {
  assert.deepEqual(identifyCaller('Bearer whatever', {}, {}), { caller: 'anonymous' });
});

it('takes a DNS name when the certificate has no common name', () => {
  assert.equal(
    certificateName(cert({ subject: {} as never, subjectaltname: 'IP Address:1.2.3.4, DNS:svc.example' })),
    'svc.example',
  );
  assert.equal(certificateName(cert({ subject: {} as never })), undefined);
});
