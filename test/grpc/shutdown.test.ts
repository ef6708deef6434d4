// Graceful shutdown on both sides: running calls finish, new ones are
// refused with UNAVAILABLE, then tunnels end and grpc-js's tryShutdown completes.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { Metadata, status } from '@grpc/grpc-js';
import { unary } from '../helpers/calls.js';
import { handlerCancelled, handlerStarted, release } from '../helpers/echo-service.js';
import { forwardFixture, reverseFixture, stopAllServers } from '../helpers/servers.js';
import { until } from '../helpers/until.js';

// A failed test skips its own cleanup; never let that hang the run.
afterEach(stopAllServers);

/** A call the echo service answers only once the test calls release(): it runs for as long as the test needs. */
const held = () => {
  const md = new Metadata();
  md.set('x-hold', '1');
  return md;
};

describe('graceful shutdown', () => {
  it('handler: forward tunnels finish running calls, refuse new ones, then end; tryShutdown completes', async () => {
    const f = await forwardFixture();
    const long = unary(f.echo, Buffer.from('long'), held());
    await handlerStarted(f.seen, 'unary');
    f.handler.initiateShutdown();
    const shutDown = new Promise<void>((resolve) => f.server.tryShutdown(() => resolve()));
    const refused = await unary(f.echo, Buffer.from('new'));
    assert.equal(refused.error?.code, status.UNAVAILABLE);
    release(f.seen);
    const r = await long;
    assert.equal(r.error, null, 'the running call completed');
    assert.equal(r.value?.toString(), 'long');
    const reason = await f.tunnel.closed;
    assert.match(reason?.message ?? '', /ended the tunnel/);
    await shutDown;
    assert.equal(f.handler.openTunnels, 0);
    await f.close();
  });

  it('handler: reverse tunnels leave the pools at once, finish running calls, then end', async () => {
    const f = await reverseFixture();
    const long = unary(f.echo, Buffer.from('long'), held());
    await handlerStarted(f.seen, 'unary');
    f.handler.initiateShutdown();
    const shutDown = new Promise<void>((resolve) => f.server.tryShutdown(() => resolve()));
    const refused = await unary(f.echo, Buffer.from('new'));
    assert.equal(refused.error?.code, status.UNAVAILABLE);
    assert.equal(refused.error?.details, 'no channels ready');
    release(f.seen);
    const r = await long;
    assert.equal(r.error, null, 'the running call completed');
    const served = await f.served[0];
    assert.deepEqual(served, { started: true });
    await shutDown;
    assert.equal(f.handler.openReverseTunnels, 0);
    await f.close();
  });

  it('client: closeWhenIdle refuses new calls, finishes running ones, then closes the tunnel', async () => {
    const f = await forwardFixture();
    const long = unary(f.echo, Buffer.from('long'), held());
    await handlerStarted(f.seen, 'unary');
    f.tunnel.closeWhenIdle();
    const refused = await unary(f.echo, Buffer.from('new'));
    assert.equal(refused.error?.code, status.UNAVAILABLE);
    assert.equal(refused.error?.details, 'the tunnel is shutting down');
    release(f.seen);
    assert.equal((await long).error, null);
    assert.equal(await f.tunnel.closed, undefined, 'closed by this side, not by a failure');
    await f.close();
  });

  it('reverse tunnel server: gracefulStop lets a long call finish and refuses new ones', async () => {
    const f = await reverseFixture();
    const long = unary(f.echo, Buffer.from('long'), held());
    await handlerStarted(f.seen, 'unary');
    const stopped = f.reverseServer.gracefulStop();
    // The drain notice takes the tunnel out of the handler's pool; the
    // handler emits nothing for that (only when the tunnel ends), so poll.
    await until(() => f.handler.asChannel().size === 0, 'the draining tunnel left the pool');
    const refused = await unary(f.echo, Buffer.from('new'));
    assert.equal(refused.error?.code, status.UNAVAILABLE);
    release(f.seen);
    const r = await long;
    assert.equal(r.error, null, 'the running call completed');
    await stopped;
    assert.deepEqual(await f.served[0], { started: true });
    assert.equal(f.reverseServer.openTunnels, 0);
    const late = await f.reverseServer.serve();
    assert.equal(late.started, false, 'a stopped server opens no tunnel');
    await f.close();
  });

  it('reverse tunnel server: stop cancels running calls at once', async () => {
    const f = await reverseFixture();
    const long = unary(f.echo, Buffer.from('long'), held());
    await handlerStarted(f.seen, 'unary');
    f.reverseServer.stop();
    const r = await long;
    assert.equal(r.error?.code, status.UNAVAILABLE);
    assert.deepEqual(await f.served[0], { started: true });
    await handlerCancelled(f.seen, 'unary');
    assert.deepEqual(f.seen.cancelled, ['unary'], 'the handler saw the cancellation');
    await f.close();
  });
});
