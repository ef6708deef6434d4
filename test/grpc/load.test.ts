// Flow control under load, big messages, nesting, and nice-grpc.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Channel, credentials } from '@grpc/grpc-js';
import { createClient } from 'nice-grpc';
import { createTunnelClient, openTunnel, TunnelServiceHandler } from '../../src/index.js';
import { collect, unary } from '../helpers/calls.js';
import { EchoClient, EchoService, echoImplementation } from '../helpers/echo-service.js';
import { forwardFixture, startServer, stopServer } from '../helpers/servers.js';

describe('flow control under load', () => {
  it('200 concurrent bidi streams, half with slow readers: no deadlock, fast ones finish first', async () => {
    const f = await forwardFixture();
    const messages = 20;
    const size = 20_000; // over one chunk, so windows fill up
    const finished: Array<{ slow: boolean; at: number }> = [];
    const runs = Array.from({ length: 200 }, (_, i) => {
      const slow = i % 2 === 1;
      return new Promise<void>((resolve, reject) => {
        const call = f.echo.bidi();
        let received = 0;
        call.on('data', (m: Buffer) => {
          if (m.length !== size) reject(new Error('bad size'));
          received++;
          if (slow) {
            // A slow reader: pause after every message.
            call.pause();
            setTimeout(() => call.resume(), 15);
          }
        });
        call.on('error', reject);
        call.on('end', () => {
          if (received !== messages) reject(new Error(`got ${received}`));
          finished.push({ slow, at: Date.now() });
          resolve();
        });
        for (let k = 0; k < messages; k++) call.write(Buffer.alloc(size, k));
        call.end();
      });
    });
    await Promise.all(runs);
    const fastDone = Math.max(...finished.filter((x) => !x.slow).map((x) => x.at));
    const slowDone = Math.max(...finished.filter((x) => x.slow).map((x) => x.at));
    assert.ok(fastDone < slowDone, 'the fast streams were not held back by the slow ones');
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
      (await import('../../src/index.js')).TunnelServiceDefinition,
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
