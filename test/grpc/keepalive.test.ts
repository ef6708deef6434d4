// Liveness: connections that stop carrying bytes without closing are noticed
// by HTTP/2 pings, on both sides, forward and reverse; and a client never
// pings a server faster than its ping policy allows.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { type ClientDuplexStream, connectivityState, credentials, type ServiceError, status } from '@grpc/grpc-js';
import {
  openTunnel,
  ReverseTunnelServer,
  type ServeResult,
  type TunnelChannel,
  TunnelConnection,
  TunnelServiceHandler,
} from 'grpctunnel';
import { KEEPALIVE_POLICY_HEADER } from 'grpctunnel/protocol';
import { clientPingInterval, resolveKeepalive, UNADVERTISED_MIN_PING_INTERVAL_MS } from '#grpctunnel/grpc/keepalive.js';
import { type BlackholeProxy, startBlackholeProxy } from '../helpers/blackhole-proxy.js';
import {
  EchoClient,
  type EchoObservations,
  EchoService,
  echoImplementation,
  handlerCancelled,
} from '../helpers/echo-service.js';
import { startGoPolicyServer } from '../helpers/go-ping-policy.js';
import { startOwnServer } from '../helpers/own-server.js';
import { startServer, stopAllServers } from '../helpers/servers.js';
import { until } from '../helpers/until.js';

const FAST = { timeMs: 300, timeoutMs: 1000 } as const;
const CAUSE = /keepalive ping not answered within 1000 ms/;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await stopAllServers();
});

/** A bidi echo call that has made a round trip, so it is surely running on both sides. */
async function runningBidi(
  client: EchoClient,
): Promise<{ call: ClientDuplexStream<Buffer, Buffer>; failed: Promise<ServiceError> }> {
  const call = client.bidi() as ClientDuplexStream<Buffer, Buffer>;
  const failed = new Promise<ServiceError>((resolve) => call.on('error', resolve));
  const echoed = new Promise<void>((resolve) => call.once('data', () => resolve()));
  call.write(Buffer.from('ping'));
  await echoed;
  return { call, failed };
}

/** `ownConnection`: the tunnel RPC on a TunnelConnection (the library's own HTTP/2 session) rather than a grpc-js client. */
async function forwardThroughProxy(
  handlerKeepalive: object | false,
  clientKeepalive: object | false,
  ownConnection = false,
  ownServer = false,
) {
  const seen: EchoObservations = { cancelled: [] };
  const handler = new TunnelServiceHandler({ keepalive: handlerKeepalive });
  handler.addService(EchoService, echoImplementation(seen));
  // The echo service is also served directly, for differential tests (on the grpc-js server only).
  const { address } = ownServer
    ? await startOwnServerCleanedUp(handler)
    : await startServer((s) => {
        handler.register(s);
        s.addService(EchoService, echoImplementation());
      });
  const proxy = await startBlackholeProxy(address);
  cleanups.push(() => proxy.close());
  const connection = ownConnection
    ? new TunnelConnection(proxy.address)
    : new EchoClient(proxy.address, credentials.createInsecure());
  cleanups.push(() => connection.close());
  const tunnel = await openTunnel(connection, { keepalive: clientKeepalive });
  cleanups.push(() => tunnel.close());
  const echo = new EchoClient('tunnel', credentials.createInsecure(), { channelOverride: tunnel });
  cleanups.push(() => echo.close());
  return { handler, seen, proxy, connection, tunnel, echo };
}

/** The handler on a node:http2 server of its own (serveHttp2), stopped after the test. */
async function startOwnServerCleanedUp(handler: TunnelServiceHandler): Promise<{ address: string }> {
  const server = await startOwnServer(handler);
  cleanups.push(() => server.stop());
  return server;
}

describe('keepalive settings', () => {
  it('detect a dead peer within 25 s by default and check their bounds', () => {
    const defaults = resolveKeepalive(undefined);
    assert.deepEqual(defaults, { timeMs: 15_000, timeoutMs: 10_000 });
    assert.ok((defaults?.timeMs ?? 0) + (defaults?.timeoutMs ?? 0) <= 30_000);
    assert.deepEqual(resolveKeepalive({ timeMs: 2000 }), { timeMs: 2000, timeoutMs: 2000 });
    assert.equal(resolveKeepalive(false), undefined);
    assert.throws(() => resolveKeepalive({ timeMs: 10 }), RangeError);
    assert.throws(() => resolveKeepalive({ timeoutMs: Number.NaN }), RangeError);
    assert.throws(() => new TunnelServiceHandler({ keepalive: { timeMs: -1 } }), RangeError);
  });

  it('toward a server that advertises no policy, ping no more often than grpc-go allows', () => {
    const own = { timeMs: 1000, timeoutMs: 1000 };
    assert.equal(UNADVERTISED_MIN_PING_INTERVAL_MS, 5 * 60_000);
    assert.equal(clientPingInterval(own, undefined), 5 * 60_000 + 10_000);
    assert.equal(clientPingInterval(own, 'soon'), 5 * 60_000 + 10_000);
    assert.equal(clientPingInterval({ timeMs: 400_000, timeoutMs: 1000 }, undefined), 400_000);
    assert.equal(clientPingInterval(own, '100'), 1000);
    assert.equal(clientPingInterval(own, '4000'), 4000);
  });
});

describe('keepalive, forward tunnels through a black-holed connection', { timeout: 60_000 }, () => {
  for (const [direction, own] of [
    ['both', false],
    ['toTarget', false],
    ['fromTarget', false],
    ['both', true],
    ['fromTarget', true],
  ] as const) {
    it(`the client notices (black hole: ${direction}${own ? ', on a TunnelConnection' : ''}): calls without deadlines fail UNAVAILABLE naming the cause, the connection is replaced`, async () => {
      const f = await forwardThroughProxy(false, FAST, own);
      const running = await Promise.all([runningBidi(f.echo), runningBidi(f.echo), runningBidi(f.echo)]);
      const start = Date.now();
      f.proxy.blackhole(direction);
      const errors = await Promise.all(running.map((r) => r.failed));
      const detectedMs = Date.now() - start;
      for (const error of errors) {
        assert.equal(error.code, status.UNAVAILABLE);
        assert.match(error.details, CAUSE);
      }
      assert.match(String((await f.tunnel.closed)?.message), CAUSE);
      assert.ok(detectedMs < 5000, `detected after ${detectedMs} ms`);
      // grpc-js dropped the dead connection: a new tunnel on the same client dials afresh and works.
      const again = await openTunnel(f.connection, { keepalive: FAST });
      cleanups.push(() => again.close());
      assert.equal(f.proxy.connections, 2);
      const echo = new EchoClient('tunnel', credentials.createInsecure(), { channelOverride: again });
      cleanups.push(() => echo.close());
      const { call } = await runningBidi(echo);
      call.end();
    });
  }

  it('fails calls with the code grpc-js gives a direct call on a connection its keepalive found dead', async () => {
    const f = await forwardThroughProxy(false, FAST);
    const directProxy = await startBlackholeProxy(f.proxy.address);
    cleanups.push(() => directProxy.close());
    const direct = new EchoClient(directProxy.address, credentials.createInsecure(), {
      'grpc.keepalive_time_ms': FAST.timeMs,
      'grpc.keepalive_timeout_ms': FAST.timeoutMs,
    });
    cleanups.push(() => direct.close());
    const [viaTunnel, viaDirect] = await Promise.all([runningBidi(f.echo), runningBidi(direct)]);
    f.proxy.blackhole();
    directProxy.blackhole();
    const [tunnelError, directError] = await Promise.all([viaTunnel.failed, viaDirect.failed]);
    assert.equal(tunnelError.code, directError.code);
    assert.equal(tunnelError.code, status.UNAVAILABLE);
  });

  for (const [direction, ownServer] of [
    ['both', false],
    ['toTarget', false],
    ['fromTarget', false],
    ['both', true],
  ] as const) {
    it(`the server notices on its own (black hole: ${direction}${ownServer ? ', handler on its own node:http2 server' : ''}): the tunnel and its calls end`, async () => {
      const f = await forwardThroughProxy(FAST, false, false, ownServer);
      await runningBidi(f.echo);
      assert.equal(f.handler.openTunnels, 1);
      f.proxy.blackhole(direction);
      await handlerCancelled(f.seen, 'bidi');
      // The handler emits nothing when a forward tunnel ends: poll its count.
      await until(() => f.handler.openTunnels === 0, 'the handler ended the tunnel');
    });
  }
});

describe('keepalive, reverse tunnels through a black-holed connection', { timeout: 60_000 }, () => {
  async function reverseThroughProxy(
    handlerKeepalive: object | false,
    serverKeepalive: object | false,
    ownConnection = false,
    ownServer = false,
  ) {
    const handler = new TunnelServiceHandler({ keepalive: handlerKeepalive });
    const { address } = ownServer
      ? await startOwnServerCleanedUp(handler)
      : await startServer((s) => handler.register(s));
    const proxy: BlackholeProxy = await startBlackholeProxy(address);
    cleanups.push(() => proxy.close());
    const connection = ownConnection
      ? new TunnelConnection(proxy.address)
      : new EchoClient(proxy.address, credentials.createInsecure(), { 'grpc.initial_reconnect_backoff_ms': 50 });
    cleanups.push(() => connection.close());
    const reverse = new ReverseTunnelServer(connection, { keepalive: serverKeepalive });
    reverse.addService(EchoService, echoImplementation());
    const opened = new Promise((resolve) => handler.once('reverseTunnelOpen', resolve));
    const kept = reverse.keepOpen({ backoff: { initialDelayMs: 10, maxDelayMs: 50 } });
    cleanups.push(() => kept);
    cleanups.push(() => reverse.stop());
    await opened;
    const echo = new EchoClient('pool', credentials.createInsecure(), { channelOverride: handler.asChannel() });
    cleanups.push(() => echo.close());
    return { handler, proxy, reverse, echo };
  }

  for (const [own, ownServer] of [
    [false, false],
    [true, false],
    [true, true],
  ] as const) {
    it(`the handler notices: the tunnel leaves the pool, its calls fail UNAVAILABLE naming the cause${own ? ' (agent on a TunnelConnection)' : ''}${ownServer ? ' (handler on its own node:http2 server)' : ''}`, async () => {
      const f = await reverseThroughProxy(FAST, false, own, ownServer);
      const { failed } = await runningBidi(f.echo);
      const closed = new Promise<Error | undefined>((resolve) =>
        f.handler.once('reverseTunnelClose', (_t: unknown, error: Error | undefined) => resolve(error)),
      );
      const start = Date.now();
      f.proxy.blackhole();
      const error = await failed;
      assert.equal(error.code, status.UNAVAILABLE);
      assert.match(error.details, CAUSE);
      assert.match(String((await closed)?.message), CAUSE);
      assert.ok(Date.now() - start < 5000);
      assert.equal(f.handler.allReverseTunnels().length, 0);
      assert.equal(f.handler.openReverseTunnels, 0);
    });
  }

  for (const own of [false, true]) {
    it(`the reverse tunnel server notices and reconnects; calls work again${own ? ' (on a TunnelConnection)' : ''}`, async () => {
      const f = await reverseThroughProxy(false, FAST, own);
      await runningBidi(f.echo);
      const disconnected = new Promise<ServeResult>((resolve) => f.reverse.once('disconnected', resolve));
      const reopened = new Promise((resolve) => f.handler.once('reverseTunnelOpen', resolve));
      const start = Date.now();
      f.proxy.blackhole();
      const result = await disconnected;
      assert.equal(result.error?.code, status.UNAVAILABLE);
      assert.match(String(result.error?.details), CAUSE);
      assert.ok(Date.now() - start < 5000);
      await reopened;
      assert.equal(f.proxy.connections, 2);
      // The handler (not pinging here) still holds the dead tunnel; call the new one directly.
      const fresh = f.handler.allReverseTunnels().at(-1);
      assert.ok(fresh);
      const echo = new EchoClient('fresh', credentials.createInsecure(), { channelOverride: fresh.channel });
      cleanups.push(() => echo.close());
      const { call } = await runningBidi(echo);
      call.end();
    });
  }

  for (const own of [false, true]) {
    it(`both sides ping (the defaults, scaled down): pool drops the tunnel, the agent reconnects, calls work${own ? ' (on a TunnelConnection)' : ''}`, async () => {
      const f = await reverseThroughProxy(FAST, FAST, own);
      const { failed } = await runningBidi(f.echo);
      const reopened = new Promise((resolve) => f.handler.once('reverseTunnelOpen', resolve));
      const dropped = new Promise((resolve) => f.handler.once('reverseTunnelClose', resolve));
      f.proxy.blackhole();
      assert.match((await failed).details, CAUSE);
      await Promise.all([dropped, reopened]);
      assert.equal(f.handler.allReverseTunnels().length, 1);
      assert.equal(f.handler.openReverseTunnels, 1);
      const { call } = await runningBidi(f.echo);
      call.end();
    });
  }
});

describe('keepalive toward a server with grpc-go ping policy', { timeout: 60_000 }, () => {
  it('pings fast only where advertised, never triggering too_many_pings on an idle tunnel', async () => {
    // Both servers enforce grpc-go's rules; one says (as ours do) that it allows a ping every 100 ms.
    const quiet = await startGoPolicyServer({});
    // (Enforcing 95 ms: Node's millisecond clock may round a 100 ms gap down.)
    const advertising = await startGoPolicyServer({ minTimeMs: 95, headers: { [KEEPALIVE_POLICY_HEADER]: '100' } });
    cleanups.push(() => quiet.close());
    cleanups.push(() => advertising.close());
    const tunnels: TunnelChannel[] = [];
    for (const server of [quiet, advertising]) {
      const connection = new EchoClient(server.address, credentials.createInsecure());
      cleanups.push(() => connection.close());
      const tunnel = await openTunnel(connection, { keepalive: { timeMs: 100, timeoutMs: 1000 } });
      cleanups.push(() => tunnel.close());
      tunnels.push(tunnel);
    }
    await advertising.waitForPings(10);
    assert.equal(quiet.pings, 0, 'a server that advertises nothing is pinged every 5 minutes at most');
    assert.equal(advertising.goaways, 0);
    for (const tunnel of tunnels) assert.equal(tunnel.getConnectivityState(false), connectivityState.READY);
  });

  it('stops pinging a connection once its last tunnel has ended', async () => {
    const server = await startGoPolicyServer({ minTimeMs: 95, headers: { [KEEPALIVE_POLICY_HEADER]: '100' } });
    cleanups.push(() => server.close());
    const tunnels: TunnelChannel[] = [];
    for (let i = 0; i < 2; i++) {
      // Separate connections: grpc-js would otherwise share one between equal clients.
      const connection = new EchoClient(server.address, credentials.createInsecure(), {
        'grpc.use_local_subchannel_pool': 1,
      });
      cleanups.push(() => connection.close());
      tunnels.push(await openTunnel(connection, { keepalive: { timeMs: 100, timeoutMs: 1000 } }));
      cleanups.push(() => tunnels[i]?.close());
    }
    await server.waitForPings(4);
    tunnels[0]?.close();
    const [first = 0, second = 0] = server.pingsPerConnection();
    // The other connection keeps being pinged meanwhile: 5 more pings there is ~500 ms.
    await server.waitForPings(first + second + 5);
    assert.ok((server.pingsPerConnection()[0] ?? 0) <= first + 1, `${server.pingsPerConnection()}`);
    assert.ok((server.pingsPerConnection()[1] ?? 0) >= second + 5 - 1);
  });

  it('a server that dies while the tunnel negotiates fails openTunnel with UNAVAILABLE naming the cause', async () => {
    // Answers with grpctunnel-negotiate: on, then never sends its settings frame.
    const server = await startGoPolicyServer({
      minTimeMs: 95,
      headers: { [KEEPALIVE_POLICY_HEADER]: '100', 'grpctunnel-negotiate': 'on' },
    });
    cleanups.push(() => server.close());
    const proxy = await startBlackholeProxy(server.address);
    cleanups.push(() => proxy.close());
    const connection = new EchoClient(proxy.address, credentials.createInsecure());
    cleanups.push(() => connection.close());
    const opening = openTunnel(connection, { keepalive: { timeMs: 100, timeoutMs: 500 } });
    await server.waitForPings(1);
    proxy.blackhole();
    await assert.rejects(opening, (err: ServiceError) => {
      assert.equal(err.code, status.UNAVAILABLE);
      assert.match(err.details, /tunnel RPC failed: keepalive ping not answered within 500 ms/);
      return true;
    });
  });

  it('a grpc-go policy server does send GOAWAY to a client that pings too fast (the helper is real)', async () => {
    const strict = await startGoPolicyServer({ minTimeMs: 60_000, headers: { [KEEPALIVE_POLICY_HEADER]: '100' } });
    cleanups.push(() => strict.close());
    const connection = new EchoClient(strict.address, credentials.createInsecure());
    cleanups.push(() => connection.close());
    const tunnel = await openTunnel(connection, { keepalive: { timeMs: 100, timeoutMs: 1000 } });
    cleanups.push(() => tunnel.close());
    await strict.waitForPings(4);
    await strict.waitForGoaways(1);
    assert.equal(strict.goaways, 1);
    await tunnel.closed;
  });
});
