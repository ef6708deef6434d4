// Reverse tunnels whose agent drains: the handler stops routing to them at
// once, calls already on their way are served (or, when refused before any
// handler ran, sent to another tunnel), and a rolling restart of the agents
// of one key loses no call.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import {
  Client,
  credentials,
  Metadata,
  type Server,
  type ServerDuplexStream,
  type ServiceError,
  type StatusObject,
  status,
} from '@grpc/grpc-js';
import { ReverseTunnelServer, TunnelConnection, TunnelServiceHandler } from 'grpctunnel';
import type { ClientToServer, ServerToClient } from '#grpctunnel/gen/grpctunnel/v1/tunnel.js';
import { PROTOCOL_CHUNKS } from '#grpctunnel/grpc/chunk-size.js';
import { TunnelChannelImpl } from '#grpctunnel/grpc/client/tunnel-channel.js';
import {
  decodeClientToServer,
  encodeServerToClient,
  OPEN_REVERSE_TUNNEL_PATH,
  TunnelServiceDefinition,
} from '#grpctunnel/grpc/tunnel-service.js';
import { clientStream, type UnaryResult, unary } from '../helpers/calls.js';
import { EchoClient, type EchoObservations, EchoService, echoImplementation } from '../helpers/echo-service.js';
import { reverseFixture, startServer, stopAllServers, stopServer } from '../helpers/servers.js';

// A failed test skips its own cleanup; never let that hang the run.
afterEach(stopAllServers);

const KEY = 'edge';
const withDelay = (ms: number) => {
  const md = new Metadata();
  md.set('x-delay-ms', String(ms));
  return md;
};

/** Rejects if `promise` has not settled within `ms`: a bound on a wait, not a synchronisation. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  return Promise.race([promise, bound]).finally(() => clearTimeout(timer));
}

/** Starts a unary call; `running` settles once its handler has answered with headers (it is running). */
function runningUnary(echo: EchoClient, payload: Buffer, md: Metadata) {
  let onRunning: () => void = () => {};
  const running = new Promise<void>((resolve) => {
    onRunning = resolve;
  });
  const done = new Promise<ServiceError | null>((resolve) => {
    const call = echo.unary(payload, md, (error: ServiceError | null) => resolve(error));
    call.on('metadata', () => onRunning());
  });
  return { running, done };
}

/** A handler keyed by the `x-agent-id` tunnel header, on a real server. */
async function network() {
  const handler = new TunnelServiceHandler({ affinityKey: (t) => t.metadata.get('x-agent-id')[0] });
  const { server, address } = await startServer((s) => handler.register(s));
  const pool = handler.keyAsChannel(KEY);
  const echo = new EchoClient(KEY, credentials.createInsecure(), { channelOverride: pool });
  return { handler, server, address, pool, echo };
}

/** The handler's tunnels that a given agent opened. */
const tunnelsOf = (handler: TunnelServiceHandler, name: string) =>
  handler.allReverseTunnels().filter((t) => t.info.metadata.get('x-agent-name')[0] === name).length;

/**
 * An in-process agent: a ReverseTunnelServer keeping two tunnels open on KEY, counting the calls it serves.
 * `own`: its tunnel RPCs on a TunnelConnection (the library's own HTTP/2 session) rather than grpc-js.
 */
function startAgent(address: string, name: string, own = false) {
  const connection = own ? new TunnelConnection(address) : new EchoClient(address, credentials.createInsecure());
  const server = new ReverseTunnelServer(connection);
  const seen: EchoObservations = { cancelled: [] };
  const echo = echoImplementation(seen);
  let served = 0;
  let onFirst: () => void = () => {};
  const firstServed = new Promise<void>((resolve) => {
    onFirst = resolve;
  });
  server.addService(EchoService, {
    ...echo,
    unary: (call: Parameters<typeof echo.unary>[0], callback: Parameters<typeof echo.unary>[1]) => {
      if (++served === 1) onFirst();
      echo.unary(call, callback);
    },
  });
  const md = new Metadata();
  md.set('x-agent-id', KEY);
  md.set('x-agent-name', name);
  const running = server.keepOpen({ tunnels: 2, metadata: md, backoff: { initialDelayMs: 20, maxDelayMs: 100 } });
  return {
    name,
    server,
    seen,
    firstServed,
    get served() {
      return served;
    },
    async ready(handler: TunnelServiceHandler) {
      while (tunnelsOf(handler, name) < 2) {
        await new Promise((resolve) => handler.once('reverseTunnelOpen', resolve));
      }
    },
    async gracefulStop() {
      await server.gracefulStop();
      await running;
      connection.close();
    },
    async stop() {
      server.stop();
      await running;
      connection.close();
    },
  };
}
type Agent = ReturnType<typeof startAgent>;

/** Calls in a steady loop until stopped, from several concurrent callers; one of them makes slow calls. */
function callLoop(echo: EchoClient, callers = 8) {
  let stopping = false;
  let ok = 0;
  const failures: Array<ServiceError | null> = [];
  const loops = Array.from({ length: callers }, async (_, i) => {
    let n = 0;
    while (!stopping) {
      const payload = Buffer.from(`${i}:${n++}`);
      const r: UnaryResult = await unary(echo, payload, withDelay(i === 0 ? 120 : 20));
      if (r.error === null && r.value?.equals(payload)) ok++;
      else failures.push(r.error);
    }
  });
  return {
    get ok() {
      return ok;
    },
    failures,
    async stop() {
      stopping = true;
      await Promise.all(loops);
    },
  };
}

describe('draining reverse tunnels', () => {
  for (const own of [false, true]) {
    it(`README order: a call started just before gracefulStop() completes, gracefulStop() resolves, both sides count zero${own ? ' (on a TunnelConnection)' : ''}`, async () => {
      const net = await network();
      // 0 ms: the call is on the wire while the agent is idle; 50 ms: its handler runs when the agent drains.
      for (const delay of [0, 50]) {
        const agent = startAgent(net.address, `a${delay}`, own);
        await agent.ready(net.handler);
        // Not awaited, as in the README: the call is on its way when the agent drains.
        const call = unary(net.echo, Buffer.from(`hello ${delay}`), withDelay(delay));
        const stopped = agent.gracefulStop();
        const r = await within(call, 5000, 'the call');
        assert.equal(r.error, null, `the call (${delay} ms) completed`);
        assert.equal(r.value?.toString(), `hello ${delay}`);
        await within(stopped, 5000, 'gracefulStop()');
        assert.equal(agent.server.openTunnels, 0, 'the agent has no tunnel left');
        assert.equal(agent.server.activeCalls, 0);
        await within(
          (async () => {
            while (net.handler.openReverseTunnels > 0) {
              await new Promise((resolve) => net.handler.once('reverseTunnelClose', resolve));
            }
          })(),
          5000,
          'the handler closing its tunnels',
        );
        assert.equal(net.pool.size, 0);
      }
      net.echo.close();
      await stopServer(net.server);
    });
  }

  it('a rolling restart of the two agents of a key loses no call, and calls are served throughout', async () => {
    const net = await network();
    let a: Agent = startAgent(net.address, 'a1');
    let b: Agent = startAgent(net.address, 'b1');
    await Promise.all([a.ready(net.handler), b.ready(net.handler)]);
    const loop = callLoop(net.echo);
    await Promise.all([a.firstServed, b.firstServed]);

    const restart = async (old: Agent, name: string) => {
      // A slow call running on the agent that drains: the drain lasts at
      // least as long, and the loop's calls must go on meanwhile.
      const tunnel = net.handler.allReverseTunnels().find((t) => t.info.metadata.get('x-agent-name')[0] === old.name);
      assert.ok(tunnel);
      const direct = new EchoClient('direct', credentials.createInsecure(), { channelOverride: tunnel.channel });
      const slow = runningUnary(direct, Buffer.from('slow'), withDelay(300));
      await slow.running;
      const before = loop.ok;
      await within(old.gracefulStop(), 10_000, `${old.name}'s gracefulStop()`);
      assert.equal(await slow.done, null, 'the call running on the draining agent finished');
      assert.ok(loop.ok > before, `calls were served while ${old.name} drained`);
      assert.equal(tunnelsOf(net.handler, old.name), 0, `${old.name} left the pool`);
      direct.close();
      const fresh = startAgent(net.address, name);
      await fresh.ready(net.handler);
      await fresh.firstServed;
      return fresh;
    };
    try {
      a = await restart(a, 'a2');
      b = await restart(b, 'b2');
    } finally {
      await loop.stop();
    }
    assert.deepEqual(loop.failures, [], 'no call failed');
    assert.ok(loop.ok > 20, `calls kept succeeding (${loop.ok})`);
    await Promise.all([a.gracefulStop(), b.gracefulStop()]);
    assert.equal(net.handler.openReverseTunnels, 0);
    net.echo.close();
    await stopServer(net.server);
  });

  it('a call refused by a draining peer (as a Go agent refuses) goes to another tunnel, and the refusing tunnel leaves the pool and is closed once idle', async () => {
    const net = await network();
    const healthy = startAgent(net.address, 'healthy');
    await healthy.ready(net.handler);
    const refusing = refusingPeer(net.address);
    await new Promise((resolve) => net.handler.once('reverseTunnelOpen', resolve));
    assert.equal(net.pool.size, 3);
    const closed = new Promise<Error | undefined>((resolve) =>
      net.handler.on('reverseTunnelClose', (t, error) => {
        if (t.info.metadata.get('x-agent-name')[0] === 'refusing') resolve(error);
      }),
    );
    // Round-robin reaches the refusing tunnel within three calls; a
    // client-streaming call shows that what was sent is sent again whole.
    for (let i = 0; i < 3; i++) {
      const r = await clientStream(net.echo, [Buffer.alloc(10), Buffer.alloc(20_000), Buffer.alloc(5)]);
      assert.equal(r.error, null, `call ${i} succeeded`);
      assert.deepEqual(JSON.parse(r.value?.toString() ?? ''), { count: 3, total: 20_015 });
    }
    for (let i = 0; i < 6; i++) assert.equal((await unary(net.echo, Buffer.from('x'))).error, null);
    assert.equal(refusing.refused.length, 1, 'the refusing peer saw one call, then no more');
    assert.equal(net.pool.size, 2, 'only the healthy tunnels are left');
    assert.equal(await closed, undefined, 'the handler closed the refusing tunnel itself');
    assert.equal((await refusing.ended).code, status.OK, "the refusing peer's tunnel ended cleanly");
    refusing.close();
    await healthy.stop();
    net.echo.close();
    await stopServer(net.server);
  });

  it('a call that failed UNAVAILABLE after its handler ran is not sent again, and its tunnel stays', async () => {
    const net = await network();
    const failing = refusingPeer(net.address, true);
    await new Promise((resolve) => net.handler.once('reverseTunnelOpen', resolve));
    const r = await unary(net.echo, Buffer.from('x'));
    assert.equal(r.error?.code, status.UNAVAILABLE);
    assert.equal(r.error?.details, 'server is shutting down');
    assert.equal(failing.refused.length, 1, 'the call was made once');
    assert.equal(net.pool.size, 1, 'the tunnel is still pooled');
    failing.close();
    await failing.ended;
    net.echo.close();
    await stopServer(net.server);
  });

  for (const own of [false, true]) {
    it(`against a network server without the drain handshake (as Go), gracefulStop refuses new calls, ends the tunnel once idle, and resolves${own ? ' (on a TunnelConnection)' : ''}`, async () => {
      const net = await plainNetworkServer();
      const connection = own
        ? new TunnelConnection(net.address)
        : new EchoClient(net.address, credentials.createInsecure());
      const agent = new ReverseTunnelServer(connection);
      agent.addService(EchoService, echoImplementation({ cancelled: [] }));
      const served = agent.serve();
      const channel = await net.channel;
      const echo = new EchoClient('go', credentials.createInsecure(), { channelOverride: channel });

      const long = runningUnary(echo, Buffer.from('long'), withDelay(200));
      await long.running;
      const stopped = agent.gracefulStop();
      const refused = await unary(echo, Buffer.from('new'));
      assert.equal(refused.error?.code, status.UNAVAILABLE);
      assert.equal(refused.error?.details, 'the server is shutting down');
      assert.equal(await long.done, null, 'the running call finished');
      await within(stopped, 5000, 'gracefulStop()');
      assert.deepEqual(await served, { started: true });
      assert.equal(agent.openTunnels, 0);
      assert.equal(await net.peerEnded, true, 'the agent ended the tunnel by half-closing it');
      echo.close();
      connection.close();
      await stopServer(net.server);
    });
  }

  it('against a network server without the drain handshake, a stream arriving after the half-close is dropped and gracefulStop still resolves', async () => {
    const net = await plainNetworkServer();
    const agent = new ReverseTunnelServer(new EchoClient(net.address, credentials.createInsecure()));
    agent.addService(EchoService, echoImplementation({ cancelled: [] }));
    const served = agent.serve();
    const channel = await net.channel;
    const echo = new EchoClient('go', credentials.createInsecure(), { channelOverride: channel });
    // The README order against a Go-like handler: the call is on its way
    // while the idle tunnel ends. It cannot be served; it must not hang
    // anything either.
    const call = unary(echo, Buffer.from('late'));
    const stopped = agent.gracefulStop();
    await within(stopped, 5000, 'gracefulStop()');
    assert.deepEqual(await served, { started: true });
    const r = await within(call, 5000, 'the late call');
    if (r.error) assert.equal(r.error.code, status.UNAVAILABLE);
    assert.equal(agent.openTunnels, 0);
    echo.close();
    await stopServer(net.server);
  });

  it('a reverse tunnel that ends reports a ServiceError with a real status code', async () => {
    const f = await reverseFixture();
    const closed = new Promise<ServiceError>((resolve) =>
      f.handler.once('reverseTunnelClose', (_t, e) => resolve(e as ServiceError)),
    );
    const inFlight = runningUnary(f.echo, Buffer.from('x'), withDelay(5000));
    await inFlight.running;
    f.reverseServer.stop();
    const error = await closed;
    assert.equal(error.code, status.UNAVAILABLE);
    assert.equal(typeof error.details, 'string');
    assert.ok(error.details.length > 0);
    assert.ok(error.metadata instanceof Metadata);
    assert.equal((await inFlight.done)?.code, status.UNAVAILABLE);
    const [tunnel] = f.handler.allReverseTunnels();
    assert.equal(tunnel, undefined);
    await f.close();
  });
});

/**
 * A peer that opens a reverse tunnel on KEY and refuses every stream with
 * UNAVAILABLE before any handler runs, as a draining Go agent does; with
 * `afterHeaders`, it fails each stream with UNAVAILABLE after response
 * headers instead, as a handler that ran would.
 */
function refusingPeer(address: string, afterHeaders = false) {
  const client = new Client(address, credentials.createInsecure());
  const md = new Metadata();
  md.set('grpctunnel-negotiate', 'on');
  md.set('x-agent-id', KEY);
  md.set('x-agent-name', 'refusing');
  const rpc = client.makeBidiStreamRequest(OPEN_REVERSE_TUNNEL_PATH, encodeServerToClient, decodeClientToServer, md);
  const refused: number[] = [];
  rpc.on('metadata', () =>
    rpc.write({
      streamId: -1,
      frame: { $case: 'settings', value: { supportedProtocolRevisions: [0, 1], initialWindowSize: 65536 } },
    } satisfies ServerToClient),
  );
  rpc.on('data', (frame: ClientToServer) => {
    if (frame.frame?.$case !== 'newStream') return;
    refused.push(frame.streamId);
    if (afterHeaders) rpc.write({ streamId: frame.streamId, frame: { $case: 'responseHeaders', value: { md: {} } } });
    rpc.write({
      streamId: frame.streamId,
      frame: {
        $case: 'closeStream',
        value: { responseTrailers: undefined, status: { code: 14, message: 'server is shutting down', details: [] } },
      },
    } satisfies ServerToClient);
  });
  rpc.on('error', () => {});
  const ended = new Promise<StatusObject>((resolve) => rpc.on('status', resolve));
  return {
    refused,
    ended,
    close: () => {
      rpc.cancel();
      client.close();
    },
  };
}

/**
 * A network server that accepts one reverse tunnel the way the Go reference
 * does: the negotiation header but no drain handshake, and the tunnel ends
 * when its tunnel server half-closes it.
 */
async function plainNetworkServer(): Promise<{
  server: Server;
  address: string;
  channel: Promise<TunnelChannelImpl>;
  peerEnded: Promise<boolean>;
}> {
  let resolveChannel: (c: TunnelChannelImpl) => void = () => {};
  const channel = new Promise<TunnelChannelImpl>((resolve) => {
    resolveChannel = resolve;
  });
  let resolveEnded: (ended: boolean) => void = () => {};
  const peerEnded = new Promise<boolean>((resolve) => {
    resolveEnded = resolve;
  });
  // Only the reverse method: this server stands for a network server.
  const definition = { openReverseTunnel: TunnelServiceDefinition.openReverseTunnel };
  const { server, address } = await startServer((s) =>
    s.addService(definition, {
      openReverseTunnel(call: ServerDuplexStream<ServerToClient, ClientToServer>) {
        const headers = new Metadata();
        headers.set('grpctunnel-negotiate', 'on');
        call.sendMetadata(headers);
        const tunnel = new TunnelChannelImpl({
          frames: call,
          negotiation: { negotiated: true, chunks: PROTOCOL_CHUNKS },
          tuning: {},
          info: { target: 'go-like', peer: call.getPeer() },
          endRpc: () => call.end(),
          onReady: (ready) => resolveChannel(ready),
        });
        call.on('end', () => {
          resolveEnded(true);
          tunnel.shutDown(new Error('the tunnel server ended the tunnel'));
        });
        call.on('cancelled', () => {
          resolveEnded(false);
          tunnel.shutDown(new Error('cancelled'));
        });
        call.on('error', () => {});
      },
    }),
  );
  return { server, address, channel, peerEnded };
}
