// Many reverse tunnels on one handler: each answers a call, then all close
// and the handler's bookkeeping is back to empty.
import assert from 'node:assert/strict';
import { afterEach, it } from 'node:test';
import { Metadata } from '@grpc/grpc-js';
import { createTunnelClient, type ReverseTunnel } from 'grpctunnel';
import { unary } from '../helpers/calls.js';
import { EchoClient } from '../helpers/echo-service.js';
import { reverseFixture, stopAllServers } from '../helpers/servers.js';
import { WaitableCount } from '../helpers/waitable-count.js';

// A failed test skips its own cleanup; never let that hang the run.
afterEach(stopAllServers);

it('holds 1,000 reverse tunnels, calls each one, and forgets them all after they close', async () => {
  const count = 1000;
  const f = await reverseFixture({ affinityKey: (t) => t.metadata.get('tunnel-id')[0] }, {}, {}, 0);
  let opened = 0;
  const closed = new WaitableCount();
  const allOpen = new Promise<void>((resolve) =>
    f.handler.on('reverseTunnelOpen', () => {
      if (++opened === count) resolve();
    }),
  );
  f.handler.on('reverseTunnelClose', () => closed.increment());
  for (let i = 0; i < count; i++) {
    const metadata = new Metadata();
    metadata.set('tunnel-id', `t${i}`);
    f.served.push(f.reverseServer.serve({ metadata }));
  }
  await allOpen;
  assert.equal(f.handler.allReverseTunnels().length, count);

  const tunnels: ReverseTunnel[] = f.handler.allReverseTunnels();
  const results = await Promise.all(
    tunnels.map(async (t) => {
      const r = await unary(createTunnelClient(EchoClient, t.channel), Buffer.from(String(t.key)));
      return r.value?.toString() === t.key && r.error === null;
    }),
  );
  assert.equal(results.filter(Boolean).length, count, 'every tunnel answered its own call');
  assert.equal(f.handler.keyAsChannel('t999').size, 1);

  f.reverseServer.stop();
  await Promise.all(f.served);
  await closed.until(count);
  assert.equal(closed.value, count);
  assert.equal(f.handler.openReverseTunnels, 0);
  assert.equal(f.handler.allReverseTunnels().length, 0);
  assert.equal(f.handler.asChannel().ready(), false);
  assert.equal((f.handler as unknown as { reverse: { keyCount: number } }).reverse.keyCount, 0, 'no pool left behind');
  await f.close();
});
