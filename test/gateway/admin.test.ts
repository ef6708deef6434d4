// The admin port's token: the status page (agent ids, their addresses,
// recent errors) and /metrics ask for it; the probes stay open.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { startGateway } from 'grpctunnel-gateway';
import { gatewayWith, runCleanups } from '../helpers/gateway-embed.js';

afterEach(runCleanups);

/** GET `path` on the admin port, with `authorization` if given: status, a header and the body. */
async function get(admin: string, path: string, authorization?: string) {
  const res = await fetch(`http://${admin}${path}`, authorization ? { headers: { authorization } } : {});
  return { status: res.status, challenge: res.headers.get('www-authenticate'), body: await res.text() };
}

describe('the admin port', () => {
  it('asks for the admin token on / and /metrics, and leaves /healthz and /livez open for probes', async () => {
    const gw = await gatewayWith({ admin: '127.0.0.1:0', adminToken: 's3cret-admin', readyAfterMs: 0 });
    const admin = gw.adminAddress as string;
    for (const path of ['/', '/metrics']) {
      for (const authorization of [undefined, 'Bearer wrong', 'Basic s3cret-admin', 'Bearer', 's3cret-admin']) {
        const r = await get(admin, path, authorization);
        assert.equal(r.status, 401, `${path} with ${authorization}`);
        assert.match(r.challenge ?? '', /^Bearer /);
        assert.doesNotMatch(r.body, /grpctunnel_gateway|Agents/);
      }
      const ok = await get(admin, path, 'Bearer s3cret-admin');
      assert.equal(ok.status, 200, path);
      assert.match(ok.body, path === '/' ? /<h2>Agents<\/h2>/ : /grpctunnel_gateway_/);
    }
    assert.equal((await get(admin, '/healthz')).status, 200);
    assert.equal((await get(admin, '/livez')).status, 200);
  });

  it('is open without a token, as before', async () => {
    const gw = await gatewayWith({ admin: '127.0.0.1:0' });
    const admin = gw.adminAddress as string;
    assert.equal((await get(admin, '/')).status, 200);
    assert.equal((await get(admin, '/metrics')).status, 200);
  });

  it('refuses an admin token that is empty or holds whitespace', async () => {
    for (const bad of ['', 'two words', ' ', 7]) {
      await assert.rejects(
        startGateway({
          listen: '127.0.0.1:0',
          agents: '127.0.0.1:0',
          admin: '127.0.0.1:0',
          access: {},
          adminToken: bad as string,
        }),
        TypeError,
      );
    }
  });
});
