// Flow control under load, big messages, nesting, and nice-grpc.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { type Channel, credentials } from '@grpc/grpc-js';
import { createTunnelClient, openTunnel, TunnelServiceHandler } from 'grpctunnel';
import { createClient } from 'nice-grpc';
import { collect, unary } from '../helpers/calls.js';
import { EchoClient, EchoService, echoImplementation } from '../helpers/echo-service.js';
import { forwardFixture, startServer, stopAllServers, stopServer } from '../helpers/servers.js';

// A failed test skips its own cleanup; never let that hang the run.
afterEach(stopAllServers);

describe('flow control under load', () => {
  it('200 concurrent bidi streams, half with stalled readers: no deadlock, fast ones finish', async () => {
    const f = await forwardFixture();
    const size = 20_000; // over one chunk
    // A stalled stream sends more than grpc-js buffers in a paused client
    // stream (16 messages) plus one window, so it really stays stuck.
    const messagesOf = (slow: boolean) => (slow ? 24 : 8);
    let releaseSlow!: () => void;
    const slowMayResume = new Promise<void>((resolve) => {
      releaseSlow = resolve;
    });
    const stream = (slow: boolean) =>
      new Promise<void>((resolve, reject) => {
        const call = f.echo.bidi();
        let received = 0;
        call.on('data', (m: Buffer) => {
          if (m.length !== size) reject(new Error('bad size'));
          received++;
          if (slow && received === 1) {
            // Stall completely until every fast stream is done: if one
            // stream's full window could hold up the tunnel, the fast
            // streams would never finish and the test would time out.
            call.pause();
            void slowMayResume.then(() => call.resume());
          }
        });
        call.on('error', reject);
        call.on('end', () => {
          if (received !== messagesOf(slow)) reject(new Error(`got ${received}`));
          resolve();
        });
        for (let k = 0; k < messagesOf(slow); k++) call.write(Buffer.alloc(size, k));
        call.end();
      });
    const slow = Array.from({ length: 100 }, () => stream(true));
    const fast = Array.from({ length: 100 }, () => stream(false));
    let timer: NodeJS.Timeout | undefined;
    const stuck = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('fast streams were held back by stalled ones')), 60_000);
    });
    try {
      await Promise.race([Promise.all(fast), stuck]);
    } finally {
      clearTimeout(timer);
    }
    assert.equal(f.tunnel.activeCalls, 100, 'the stalled streams are still open while the fast ones are done');
    releaseSlow();
    await Promise.all(slow);
    assert.equal(f.tunnel.activeCalls, 0);
    await f.close();
  });

  it('carries 4 MiB messages both ways', async () => {
    const f = await forwardFixture();
    const big = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
    const r = await unary(f.echo, big);
    assert.equal(r.error, null);
    assert.ok(r.value?.equals(big));
    await f.close();
  });

  it('rejects a response over the client limit with RESOURCE_EXHAUSTED', async () => {
    const f = await forwardFixture({}, { maxReceiveMessageSize: 1000 });
    const r = await unary(f.echo, Buffer.alloc(2000));
    assert.equal(r.error?.code, 8);
    const ok = await unary(f.echo, Buffer.alloc(10));
    assert.equal(ok.error, null, 'the tunnel survives');
    await f.close();
  });

  it('works with flow control disabled on either side', async () => {
    for (const [handlerFc, clientFc] of [
      [false, true],
      [true, false],
      [false, false],
    ] as const) {
      const f = await forwardFixture({ flowControl: handlerFc }, { flowControl: clientFc });
      assert.equal(f.tunnel.protocolRevision, 0);
      const r = await collect(
        f.echo.serverStream(Buffer.from(JSON.stringify({ count: 10, size: 100_000 }))) as Parameters<typeof collect>[0],
      );
      assert.equal(r.messages.length, 10);
      await f.close();
    }
  });
});

describe('composition', () => {
  it('opens a tunnel through another tunnel', async () => {
    const f = await forwardFixture();
    // The inner tunnel's server is the same handler, reached through the outer tunnel.
    f.handler.addService(
      (await import('grpctunnel/protocol')).TunnelServiceDefinition,
      f.handler.implementation as never,
    );
    const inner = await openTunnel(f.tunnel);
    const echo = createTunnelClient(EchoClient, inner);
    const r = await unary(echo, Buffer.alloc(50_000, 3));
    assert.equal(r.error, null);
    assert.equal(r.value?.length, 50_000);
    inner.close();
    await f.close();
  });

  it('serves a nice-grpc client through a tunnel', async () => {
    const handler = new TunnelServiceHandler();
    handler.addService(EchoService, echoImplementation());
    const { server, address } = await startServer((s) => handler.register(s));
    const connection = new EchoClient(address, credentials.createInsecure());
    const tunnel = await openTunnel(connection);
    // The raw-bytes definition gives nice-grpc no message types; the calls are what matter here.
    const client = createClient(EchoService, tunnel as unknown as Channel) as any;
    const reply = await client.unary(Buffer.from('nice'));
    assert.deepEqual(reply, Buffer.from('nice'));
    const streamed: Buffer[] = [];
    for await (const m of client.serverStream(Buffer.from(JSON.stringify({ count: 3, size: 5 })))) streamed.push(m);
    assert.equal(streamed.length, 3);
    tunnel.close();
    connection.close();
    await stopServer(server);
  });
});
