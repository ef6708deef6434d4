// Reverse-tunnel pools on the handler: round-robin, keys, callbacks, empty
// pools, waitForReady, tunnels closing mid-call, refusals.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { credentials, InterceptingCall, type Interceptor, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { getTunnelChannel, type ReverseTunnel, type TunnelChannel } from 'grpctunnel';
import { unary } from '../helpers/calls.js';
import { EchoClient, handlerStarted } from '../helpers/echo-service.js';
import { reverseFixture, stopAllServers } from '../helpers/servers.js';

// A failed test skips its own cleanup; never let that hang the run.
afterEach(stopAllServers);

const keyed = (key: string) => {
  const md = new Metadata();
  md.set('test-client-key', key);
  return { metadata: md };
};
const byHeader = { affinityKey: (t: { metadata: Metadata }) => t.metadata.get('test-client-key')[0] ?? '' };

/** Makes a unary call and reports which tunnel carried it. */
function unaryVia(
  client: EchoClient,
  md = new Metadata(),
): Promise<{ channel: TunnelChannel | undefined; error: ServiceError | null }> {
  return new Promise((resolve) => {
    const call = client.unary(Buffer.from('x'), md, (error: ServiceError | null) =>
      resolve({ channel: getTunnelChannel(call), error }),
    );
  });
}

describe('reverse tunnel pools', () => {
  it('shares load round-robin among the tunnels of a key, and keys isolate', async () => {
    const f = await reverseFixture(byHeader, {}, keyed('a'), 3);
    await f.addTunnel(keyed('b'));
    await f.addTunnel(keyed('b'));
    let intercepted = 0;
    const counting: Interceptor = (options, next) => {
      intercepted++;
      return new InterceptingCall(next(options));
    };
    const a = new EchoClient('a', credentials.createInsecure(), {
      channelOverride: f.handler.keyAsChannel('a'),
      interceptors: [counting],
    });
    const b = new EchoClient('b', credentials.createInsecure(), { channelOverride: f.handler.keyAsChannel('b') });
    const tunnelsOf = (key: string) =>
      new Set(
        f.handler
          .allReverseTunnels()
          .filter((t) => t.key === key)
          .map((t) => t.channel),
      );
    const counts = new Map<TunnelChannel | undefined, number>();
    for (let i = 0; i < 9; i++) {
      const r = await unaryVia(a);
      assert.equal(r.error, null);
      assert.ok(r.channel && tunnelsOf('a').has(r.channel), 'a call on key a went to a tunnel of key a');
      counts.set(r.channel, (counts.get(r.channel) ?? 0) + 1);
    }
    assert.deepEqual([...counts.values()], [3, 3, 3], 'each of the three tunnels took three calls');
    assert.equal(intercepted, 9, 'client interceptors ran on every pool call');
    for (let i = 0; i < 4; i++) {
      const r = await unaryVia(b);
      assert.ok(r.channel && tunnelsOf('b').has(r.channel), 'a call on key b went to a tunnel of key b');
    }
    assert.equal(f.handler.keyAsChannel('a').size, 3);
    assert.equal(f.handler.asChannel().size, 5);
    assert.deepEqual(f.handler.reverseTunnelKeys().sort(), ['a', 'b'], 'each key once, however many tunnels');
    const none = await unaryVia(
      new EchoClient('c', credentials.createInsecure(), { channelOverride: f.handler.keyAsChannel('c') }),
    );
    assert.equal(none.error?.code, status.UNAVAILABLE);
    assert.equal(none.error?.details, 'no channels ready');
    await f.close();
  });

  it('fires the open and close callbacks once each, in order, and empties its bookkeeping', async () => {
    const events: string[] = [];
    const f = await reverseFixture({
      ...byHeader,
      onReverseTunnelOpen: (t: ReverseTunnel) => events.push(`open ${String(t.key)}`),
      onReverseTunnelClose: (t: ReverseTunnel) => events.push(`close ${String(t.key)}`),
    });
    await f.addTunnel(keyed('x'));
    const eventsSeen: string[] = [];
    f.handler.on('reverseTunnelClose', (t: ReverseTunnel) => eventsSeen.push(`close ${String(t.key)}`));
    const [first] = f.handler.allReverseTunnels();
    first?.channel.close();
    await first?.channel.closed;
    assert.deepEqual(events, ['open ', 'open x', 'close ']);
    assert.deepEqual(eventsSeen, ['close ']);
    const lastClosed = new Promise<void>((resolve) =>
      f.handler.on('reverseTunnelClose', (t: ReverseTunnel) => t.key === 'x' && resolve()),
    );
    await f.close();
    await lastClosed;
    assert.deepEqual(events, ['open ', 'open x', 'close ', 'close x']);
    assert.equal(f.handler.openReverseTunnels, 0);
    assert.equal(f.handler.allReverseTunnels().length, 0);
    assert.deepEqual(f.handler.reverseTunnelKeys(), []);
    assert.equal(f.handler.asChannel().ready(), false);
  });

  it('waits for a tunnel when the caller asks for waitForReady, up to the deadline', async () => {
    const f = await reverseFixture(byHeader);
    const pool = f.handler.keyAsChannel('late');
    const client = new EchoClient('late', credentials.createInsecure(), { channelOverride: pool });
    const fails = await unary(client, Buffer.from('x'));
    assert.equal(fails.error?.code, status.UNAVAILABLE);

    const expires = await unary(client, Buffer.from('x'), new Metadata({ waitForReady: true }), {
      deadline: Date.now() + 50,
    });
    assert.equal(expires.error?.code, status.DEADLINE_EXCEEDED);

    const waiting = unary(client, Buffer.from('patient'), new Metadata({ waitForReady: true }), {
      deadline: Date.now() + 5000,
    });
    const ready = pool.waitForReady({ timeout: 5000 });
    await f.addTunnel(keyed('late'));
    await ready;
    const r = await waiting;
    assert.equal(r.error, null);
    assert.equal(r.value?.toString(), 'patient');
    await f.close();
  });

  it('waitForReady on a pool honours its timeout and signal', async () => {
    const f = await reverseFixture(byHeader);
    const pool = f.handler.keyAsChannel('never');
    await assert.rejects(pool.waitForReady({ timeout: 20 }), { code: status.DEADLINE_EXCEEDED });
    const controller = new AbortController();
    const aborted = pool.waitForReady({ signal: controller.signal });
    controller.abort();
    await assert.rejects(aborted, { code: status.CANCELLED });
    await f.close();
  });

  it('a tunnel lost mid-call fails its calls with UNAVAILABLE, leaves the pool at once, and others take new calls', async () => {
    const f = await reverseFixture();
    const doomed = new AbortController();
    await f.addTunnel({ signal: doomed.signal });
    const [, lost] = f.handler.allReverseTunnels();
    assert.ok(lost);
    const slow = new Metadata();
    slow.set('x-delay-ms', '5000');
    // Round-robin: the first call goes to the first tunnel, the second to `lost`.
    const inFlight = [unary(f.echo, Buffer.from('1'), slow), unary(f.echo, Buffer.from('2'), slow)];
    await handlerStarted(f.seen, 'unary', 2);
    const closed = new Promise<void>((resolve) => f.handler.once('reverseTunnelClose', () => resolve()));
    doomed.abort();
    await closed;
    assert.equal(f.handler.asChannel().size, 1, 'the lost tunnel left the pool');
    const second = await inFlight[1];
    assert.equal(second?.error?.code, status.UNAVAILABLE);
    for (let i = 0; i < 3; i++) assert.equal((await unary(f.echo, Buffer.from('ok'))).error, null);
    await f.close();
    await Promise.all(inFlight);
  });

  it('refuses reverse tunnels with UNIMPLEMENTED when told to', async () => {
    const f = await reverseFixture({ noReverseTunnels: true }, {}, {}, 0);
    const result = await f.reverseServer.serve();
    assert.equal(result.started, false);
    assert.equal(result.error?.code, status.UNIMPLEMENTED);
    await f.close();
  });

  it('refuses a tunnel whose affinity-key function throws, with the status it threw', async () => {
    const f = await reverseFixture(
      {
        affinityKey: (t) => {
          if (!t.metadata.get('authorization')[0]) throw { code: status.UNAUTHENTICATED, details: 'no token' };
          return 'ok';
        },
      },
      {},
      {},
      0,
    );
    const result = await f.reverseServer.serve();
    assert.equal(result.started, false);
    assert.equal(result.error?.code, status.UNAUTHENTICATED);
    assert.match(result.error?.details ?? '', /no token/);
    await f.close();
  });
});
