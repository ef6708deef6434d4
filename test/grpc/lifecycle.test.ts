// Deadlines, cancellation from either side, closing and losing a tunnel.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { openTunnel } from 'grpctunnel';
import { collect, serverStream, unary } from '../helpers/calls.js';
import { EchoClient, handlerCancelled, handlerStarted } from '../helpers/echo-service.js';
import { c2s, closeOf, rawClient } from '../helpers/raw-peer.js';
import { forwardFixture, stopAllServers } from '../helpers/servers.js';
import { until } from '../helpers/until.js';

// A failed test skips its own cleanup; never let that hang the run.
afterEach(stopAllServers);

describe('deadlines', () => {
  it('expire on the client, which cancels the server handler', async () => {
    const f = await forwardFixture();
    const md = new Metadata();
    md.set('x-delay-ms', '2000');
    const started = Date.now();
    const r = await unary(f.echo, Buffer.from('slow'), md, { deadline: Date.now() + 150 });
    assert.equal(r.error?.code, status.DEADLINE_EXCEEDED);
    assert.ok(Date.now() - started < 1500);
    await handlerCancelled(f.seen, 'unary');
    await f.close();
  });

  it('are sent as grpc-timeout and visible to the handler', async () => {
    const f = await forwardFixture();
    const before = Date.now();
    const r = await unary(f.echo, Buffer.from('x'), new Metadata(), { deadline: before + 5000 });
    assert.equal(r.error, null);
    const deadline = f.seen.lastDeadline;
    assert.ok(deadline instanceof Date);
    assert.ok(Math.abs(deadline.getTime() - (before + 5000)) < 500);
    assert.equal(f.seen.lastMetadata?.get('grpc-timeout').length, 0, 'grpc-timeout is not application metadata');
    await f.close();
  });

  it('expire on the server when the client does not enforce them', async () => {
    const f = await forwardFixture();
    const peer = rawClient(f.address);
    await peer.frames.next();
    peer.send(c2s.newStream(1, '/test.Echo/Unary', 1, 65536, { 'grpc-timeout': '100m', 'x-delay-ms': '3000' }));
    peer.send(c2s.message(1, 1, Buffer.from('x')));
    peer.send(c2s.halfClose(1));
    const r = await closeOf(peer, 1);
    assert.equal(r.status?.code, status.DEADLINE_EXCEEDED);
    await handlerCancelled(f.seen, 'unary');
    peer.close();
    await f.close();
  });
});

describe('cancellation', () => {
  it('by the client reaches the server handler', async () => {
    const f = await forwardFixture();
    const md = new Metadata();
    md.set('x-delay-ms', '5000');
    const call = serverStream(f.echo, 3, 10, md);
    const result = collect(call);
    await handlerStarted(f.seen, 'serverStream');
    call.cancel();
    const r = await result;
    assert.equal(r.error?.code, status.CANCELLED);
    await handlerCancelled(f.seen, 'serverStream');
    assert.equal(f.tunnel.activeCalls, 0);
    await f.close();
  });

  it('stops a handler that writes in a loop, without spinning', async () => {
    const f = await forwardFixture();
    const call = f.echo.flood(Buffer.alloc(0));
    const result = collect(call);
    let n = 0;
    call.on('data', () => {
      if (++n === 5) call.cancel();
    });
    assert.equal((await result).error?.code, status.CANCELLED);
    await handlerCancelled(f.seen, 'flood');
    assert.equal(f.seen.writesAfterEnd, 0);
    await f.close();
  });

  it('by the server handler reaches the client', async () => {
    const f = await forwardFixture();
    const md = new Metadata();
    md.set('x-status-code', String(status.CANCELLED));
    md.set('x-status-message', 'handler gave up');
    const r = await collect(serverStream(f.echo, 2, 10, md));
    assert.equal(r.messages.length, 2);
    assert.equal(r.error?.code, status.CANCELLED);
    assert.equal(r.error?.details, 'handler gave up');
    await f.close();
  });
});

describe('closing and losing the tunnel', () => {
  it('close() cancels calls in flight and settles closed', async () => {
    const f = await forwardFixture();
    const md = new Metadata();
    md.set('x-delay-ms', '5000');
    const pending = unary(f.echo, Buffer.from('x'), md);
    await handlerStarted(f.seen, 'unary');
    f.tunnel.close();
    const r = await pending;
    assert.equal(r.error?.code, status.CANCELLED);
    assert.equal(await f.tunnel.closed, undefined);
    await handlerCancelled(f.seen, 'unary');
    const after = await unary(f.echo, Buffer.from('x'));
    assert.equal(after.error?.code, status.UNAVAILABLE);
    await f.close();
  });

  it('aborting the signal closes the tunnel', async () => {
    const controller = new AbortController();
    const f = await forwardFixture({}, { signal: controller.signal });
    const md = new Metadata();
    md.set('x-delay-ms', '5000');
    const pending = unary(f.echo, Buffer.from('x'), md);
    await handlerStarted(f.seen, 'unary');
    controller.abort();
    assert.equal((await pending).error?.code, status.CANCELLED);
    await f.tunnel.closed;
    await f.close();
  });

  it('an already aborted signal rejects openTunnel', async () => {
    const f = await forwardFixture();
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(
      openTunnel(f.connection, { signal: controller.signal }),
      (e: ServiceError) => e.code === status.CANCELLED,
    );
    await f.close();
  });

  it('loss of the tunnel RPC fails every call in flight with UNAVAILABLE at once', async () => {
    const f = await forwardFixture();
    const md = new Metadata();
    md.set('x-delay-ms', '10000');
    const calls = Array.from({ length: 5 }, () => unary(f.echo, Buffer.from('x'), md));
    await handlerStarted(f.seen, 'unary', 5);
    const started = Date.now();
    f.server.forceShutdown();
    const results = await Promise.all(calls);
    assert.ok(Date.now() - started < 1000);
    for (const r of results) assert.equal(r.error?.code, status.UNAVAILABLE);
    const error = await f.tunnel.closed;
    assert.ok(error instanceof Error);
    assert.equal(f.tunnel.getConnectivityState(false), 4 /* SHUTDOWN */);
    await f.close();
  });

  it('openTunnel rejects with UNIMPLEMENTED against a server without the tunnel service', async () => {
    const { startServer, stopServer } = await import('../helpers/servers.js');
    const { server, address } = await startServer(() => {});
    const connection = new EchoClient(address, credentials.createInsecure());
    await assert.rejects(openTunnel(connection), (e: ServiceError) => e.code === status.UNIMPLEMENTED);
    connection.close();
    await stopServer(server);
  });

  it('emits close once', async () => {
    const f = await forwardFixture();
    // Every emission over the tunnel's whole life, not just the first (once() would stop at it).
    const emitted: unknown[][] = [];
    f.tunnel.on('close', (...args: unknown[]) => emitted.push(args));
    f.tunnel.close();
    f.tunnel.close();
    assert.equal(await f.tunnel.closed, undefined);
    // The later ends a second emission could come from: the server finishing
    // the tunnel RPC, then the connection and the server going away. No event
    // tells when the handler has finished a forward tunnel, so poll its count.
    await until(() => f.handler.openTunnels === 0, 'the handler ended the tunnel RPC');
    await f.close();
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(emitted, [[undefined]]);
  });
});
