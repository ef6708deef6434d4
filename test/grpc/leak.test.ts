// Runs a tunnel through its whole life (every call kind, a deadline, a cancel,
// a close, a server loss) and then checks that nothing is left open: no
// sockets, servers or timers beyond what the process had before.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { credentials, Metadata } from '@grpc/grpc-js';
import { clientStream, collect, serverStream, unary } from '../helpers/calls.js';
import { EchoClient, handlerStarted } from '../helpers/echo-service.js';
import { forwardFixture, reverseFixture, reverseTunnelsOpened } from '../helpers/servers.js';
import { until } from '../helpers/until.js';

// The kinds a tunnel could leak; others (file reads of the runner) come and go.
const WATCHED = new Set(['TCPSocketWrap', 'TCPServerWrap', 'Timeout', 'Immediate', 'TTYWrap', 'PipeWrap']);

function resources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) if (WATCHED.has(r)) counts[r] = (counts[r] ?? 0) + 1;
  return counts;
}

it('leaves no handles, timers or sockets behind', async () => {
  const baseline = resources();
  for (let round = 0; round < 2; round++) {
    const f = await forwardFixture();
    await unary(f.echo, Buffer.from('a'));
    await clientStream(f.echo, [Buffer.alloc(20000), Buffer.alloc(3)]);
    await collect(serverStream(f.echo, 5, 20000));
    const bidi = f.echo.bidi();
    const done = collect(bidi);
    bidi.write(Buffer.from('x'));
    bidi.end();
    await done;
    const slow = new Metadata();
    slow.set('x-delay-ms', '3000');
    await unary(f.echo, Buffer.from('late'), slow, { deadline: Date.now() + 50 });
    const cancelled = serverStream(f.echo, 1, 1, slow);
    const c = collect(cancelled);
    cancelled.cancel();
    await c;
    // A call still running when the tunnel goes: the echo service's stall
    // handler never answers, and it is the only stall call, so its start is
    // the signal that the call is in flight on both sides.
    const stalled = f.echo.stall();
    const inFlight = collect(stalled);
    await handlerStarted(f.seen, 'stall');
    if (round === 0) f.tunnel.close();
    else f.server.forceShutdown();
    await inFlight;
    await f.close();
  }
  // Reverse tunnels: pools, a wait on an empty pool, keepOpen, both stops.
  for (const graceful of [true, false]) {
    const f = await reverseFixture({ affinityKey: () => 'k' });
    await unary(f.echo, Buffer.from('a'));
    await collect(serverStream(f.echo, 3, 20000));
    const empty = new EchoClient('none', credentials.createInsecure(), {
      channelOverride: f.handler.keyAsChannel('none'),
    });
    await unary(empty, Buffer.from('x'), new Metadata({ waitForReady: true }), { deadline: Date.now() + 30 });
    await f.handler
      .keyAsChannel('none')
      .waitForReady({ timeout: 10 })
      .catch(() => undefined);
    const keptOpen = reverseTunnelsOpened(f.handler, 2);
    const kept = f.reverseServer.keepOpen({ tunnels: 2, backoff: { initialDelayMs: 10 } });
    await keptOpen;
    if (graceful) await f.reverseServer.gracefulStop();
    else f.reverseServer.stop();
    await kept;
    await f.close();
  }
  // grpc-js closes sockets asynchronously, and no event says when the last
  // handle is gone: poll (bounded) for the counts to come back, then compare.
  await until(() => JSON.stringify(resources()) === JSON.stringify(baseline), 'handles back to the baseline', {
    timeoutMs: 2000,
  }).catch(() => undefined);
  assert.deepEqual(resources(), baseline);
});
