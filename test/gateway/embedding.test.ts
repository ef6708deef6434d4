// The gateway and agent embedded in a program through grpctunnel-gateway:
// hooks for caller authentication, routing and agent admission, agents that
// serve implementations in-process, AbortSignals, token revocation on reload
// and the per-agent metrics, all in one process over loopback.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { credentials, Metadata, status } from '@grpc/grpc-js';
import {
  AccessPolicy,
  type Agent,
  AgentFailure,
  type AgentOptions,
  AgentTokens,
  type Gateway,
  GatewayRefusal,
  type IncomingCall,
  startAgent,
  startGateway,
} from 'grpctunnel-gateway';
import { handlerOf } from '#gateway/gateway/gateway.js';
import { unary } from '../helpers/calls.js';
import { EchoClient, EchoService, echoImplementation, handlerStarted } from '../helpers/echo-service.js';
import { cleanups, deferred, gatewayWith, recordingLogger, runCleanups } from '../helpers/gateway-embed.js';
import { type EchoTarget, startEchoTarget, stopServer } from '../helpers/servers.js';

afterEach(runCleanups);

async function targetServer(): Promise<EchoTarget> {
  const t = await startEchoTarget();
  cleanups.push(() => stopServer(t.server));
  return t;
}

function agentOf(gw: Gateway, options: Partial<AgentOptions> & { id: string }): Agent {
  const agent = startAgent({
    gateway: gw.agentsAddress,
    tunnels: 1,
    security: { insecure: true },
    logger: recordingLogger(),
    keepalive: false,
    backoff: { initialDelayMs: 20, maxDelayMs: 200 },
    ...options,
  });
  cleanups.push(() => agent.stop(0));
  return agent;
}

/** Resolves once the gateway holds `n` tunnels of `id`. */
function tunnelsOf(gw: Gateway, id: string, n = 1): Promise<void> {
  const count = () =>
    handlerOf(gw)
      .allReverseTunnels()
      .filter((t) => t.key === id).length;
  return new Promise((resolve) => {
    if (count() >= n) return resolve();
    const check = () => {
      if (count() < n) return;
      handlerOf(gw).off('reverseTunnelOpen', check);
      resolve();
    };
    handlerOf(gw).on('reverseTunnelOpen', check);
  });
}

function client(gw: Gateway): EchoClient {
  const c = new EchoClient(gw.listenAddress, credentials.createInsecure());
  cleanups.push(() => c.close());
  return c;
}

function md(entries: Record<string, string>): Metadata {
  const m = new Metadata();
  for (const [k, v] of Object.entries(entries)) m.set(k, v);
  return m;
}

describe('gateway hooks', () => {
  it('authenticateCaller names callers (async), refuses with the status it throws, and hides its own failures', async () => {
    const logger = recordingLogger();
    const gw = await gatewayWith({
      logger,
      access: { policy: AccessPolicy.parse('allow alice edge-1\n') },
      hooks: {
        async authenticateCaller(call) {
          await Promise.resolve();
          const key = call.metadata.get('x-api-key')[0]?.toString();
          if (key === 'boom') throw new Error('database connection lost (secret detail)');
          if (key === 'banned') throw new GatewayRefusal(status.PERMISSION_DENIED, 'this key is banned');
          if (key === 'alice-key' || key === 'bob-key') return { name: key.slice(0, -4) };
          return undefined;
        },
      },
    });
    const t = await targetServer();
    agentOf(gw, { id: 'edge-1', target: t.address });
    await tunnelsOf(gw, 'edge-1');
    const echo = client(gw);
    const call = (key: string) =>
      unary(echo, Buffer.from('hi'), md({ 'x-api-key': key, 'grpctunnel-agent': 'edge-1' }));

    const ok = await call('alice-key');
    assert.equal(ok.error, null);
    assert.equal(ok.value?.toString(), 'hi');
    // The hook's header is the program's business: it reaches the target unless the hook removes it.
    assert.equal(t.seen.lastMetadata?.get('x-api-key')[0], 'alice-key');
    assert.equal(t.seen.lastMetadata?.get('grpctunnel-agent').length, 0);

    const denied = await call('bob-key');
    assert.equal(denied.error?.code, status.PERMISSION_DENIED, 'the policy applies to the name the hook gave');
    assert.match(denied.error?.details ?? '', /caller bob may not call \/test\.Echo\/Unary on agent edge-1/);

    const unknown = await call('nope');
    assert.equal(unknown.error?.code, status.UNAUTHENTICATED);
    assert.equal(unknown.error?.details, 'missing or invalid caller credentials');

    const banned = await call('banned');
    assert.equal(banned.error?.code, status.PERMISSION_DENIED);
    assert.equal(banned.error?.details, 'this key is banned');

    const broken = await call('boom');
    assert.equal(broken.error?.code, status.INTERNAL);
    assert.equal(broken.error?.details, 'the gateway failed to authenticate the call');
    assert.ok(!broken.error?.details.includes('secret'), 'internal error text is not sent to the caller');
    assert.ok(logger.lines.some((l) => l.startsWith('error ') && l.includes('database connection lost')));
    const refusals = await gw.metrics.getSingleMetricAsString('grpctunnel_gateway_caller_refusals_total');
    assert.match(refusals, /reason="unauthenticated"} 1/);
  });

  it('a caller that leaves while authenticateCaller waits is counted as cancelled and aborts the hook signal', async () => {
    let signalled: AbortSignal | undefined;
    let release = () => {};
    const entered = deferred<void>();
    const aborted = deferred<void>();
    const gw = await gatewayWith({
      hooks: {
        authenticateCaller(call: IncomingCall) {
          signalled = call.signal;
          call.signal.addEventListener('abort', () => aborted.resolve());
          entered.resolve();
          return new Promise((resolve) => {
            release = () => resolve({ name: 'late' });
          });
        },
      },
    });
    const t = await targetServer();
    agentOf(gw, { id: 'edge-1', target: t.address });
    await tunnelsOf(gw, 'edge-1');
    const echo = client(gw);
    const finished = deferred<number>();
    const call = echo.unary(Buffer.from('y'), md({ 'grpctunnel-agent': 'edge-1' }), (err: { code: number } | null) =>
      finished.resolve(err?.code ?? status.OK),
    );
    await entered.promise;
    assert.equal(signalled?.aborted, false);
    call.cancel();
    assert.equal(await finished.promise, status.CANCELLED);
    await aborted.promise; // the hook learns that its caller left
    release(); // and its late answer forwards nothing
    const calls = await gw.metrics.getSingleMetricAsString('grpctunnel_gateway_calls_total');
    assert.match(calls, /code="CANCELLED"} 1/);
    assert.equal(t.seen.lastMetadata, undefined, 'nothing reached the target');
  });

  it('routeCall chooses the agent from the call; undefined falls back to the header', async () => {
    const gw = await gatewayWith({
      agentArrivalWaitMs: 0,
      hooks: {
        routeCall: async (call, caller) => {
          assert.equal(caller, 'anonymous');
          const tenant = call.metadata.get('x-tenant')[0]?.toString();
          return tenant ? `tenant-${tenant}` : undefined;
        },
      },
    });
    const a = await targetServer();
    const b = await targetServer();
    agentOf(gw, { id: 'tenant-a', target: a.address });
    agentOf(gw, { id: 'tenant-b', target: b.address });
    await Promise.all([tunnelsOf(gw, 'tenant-a'), tunnelsOf(gw, 'tenant-b')]);
    const echo = client(gw);
    assert.equal((await unary(echo, Buffer.from('1'), md({ 'x-tenant': 'b' }))).error, null);
    assert.equal(b.seen.lastMetadata?.get('x-tenant')[0], 'b');
    assert.equal(a.seen.lastMetadata, undefined);
    assert.equal((await unary(echo, Buffer.from('2'), md({ 'grpctunnel-agent': 'tenant-a' }))).error, null);
    assert.ok(a.seen.lastMetadata, 'the header routes when the hook has no opinion');
    const none = await unary(echo, Buffer.from('3'), md({ 'x-tenant': 'c' }));
    assert.equal(none.error?.code, status.UNAVAILABLE);
    assert.equal(none.error?.details, 'no agent tenant-c connected');
  });

  it('a young gateway holds a call for an agent until it arrives', async () => {
    const routed = deferred<void>();
    const gw = await gatewayWith({
      agentArrivalWaitMs: 60_000,
      hooks: {
        // Routing by the header, synchronously: once this ran, the call waits at the gateway.
        routeCall: () => void routed.resolve(),
      },
    });
    const t = await targetServer();
    const echo = client(gw);
    const early = unary(echo, Buffer.from('early'), md({ 'grpctunnel-agent': 'late' }));
    await routed.promise;
    agentOf(gw, { id: 'late', target: t.address });
    const result = await early;
    assert.equal(result.error, null);
    assert.equal(result.value?.toString(), 'early');
  });

  it('admitAgent refuses with its status, renames agents, and runs after the token check', async () => {
    const seen: Array<string | undefined> = [];
    const gw = await gatewayWith({
      access: { agentTokens: AgentTokens.parse('t1 *\n') },
      hooks: {
        async admitAgent(tunnel) {
          seen.push(tunnel.requestedId);
          assert.ok(tunnel.peer.startsWith('127.0.0.1:') || tunnel.peer.startsWith('ipv4:127.0.0.1:'));
          if (tunnel.requestedId === 'intruder') throw new GatewayRefusal(status.PERMISSION_DENIED, 'not on the list');
          return `site/${tunnel.requestedId}`;
        },
      },
    });
    const t = await targetServer();
    const refused = agentOf(gw, { id: 'intruder', target: t.address, token: 't1' });
    const failure = await refused.done;
    assert.ok(failure instanceof AgentFailure);
    assert.equal(failure.reason, 'refused');
    assert.match(failure.message, /not on the list/);

    const noToken = agentOf(gw, { id: 'edge-9', target: t.address });
    assert.equal((await noToken.done)?.reason, 'refused');
    assert.ok(!seen.includes('edge-9'), 'an agent without a valid token never reaches the hook');

    agentOf(gw, { id: 'edge-1', target: t.address, token: 't1' });
    await tunnelsOf(gw, 'site/edge-1');
    const echo = client(gw);
    const routed = await unary(echo, Buffer.from('hi'), md({ 'grpctunnel-agent': 'site/edge-1' }));
    assert.equal(routed.error, null);
    const connects = await gw.metrics.getSingleMetricAsString('grpctunnel_gateway_agent_connections_total');
    assert.match(connects, /result="refused"} 2/);
  });
});

describe('embedded agent and gateway', () => {
  it('an agent serves in-process implementations with no target', async () => {
    const gw = await gatewayWith({});
    const seen = { cancelled: [] };
    agentOf(gw, { id: 'inproc', services: (server) => server.addService(EchoService, echoImplementation(seen)) });
    await tunnelsOf(gw, 'inproc');
    const echo = client(gw);
    const ok = await unary(echo, Buffer.from('local'));
    assert.equal(ok.error, null);
    assert.equal(ok.value?.toString(), 'local');
    const other = await new Promise<{ code: number }>((resolve) =>
      echo.makeUnaryRequest(
        '/nowhere.Svc/Method',
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.alloc(0),
        (err) => resolve({ code: err?.code ?? status.OK }),
      ),
    );
    assert.equal(other.code, status.UNIMPLEMENTED, 'no target: unknown methods are UNIMPLEMENTED');
    // The embedding program calls its agents itself, and sees who is connected.
    assert.deepEqual([...gw.agents()], [['inproc', 1]]);
    const direct = new EchoClient('', credentials.createInsecure(), { channelOverride: gw.channelFor('inproc') });
    const own = await unary(direct, Buffer.from('from the host'));
    assert.equal(own.value?.toString(), 'from the host');
    const nobody = new EchoClient('', credentials.createInsecure(), { channelOverride: gw.channelFor('nobody') });
    assert.equal((await unary(nobody, Buffer.from('x'))).error?.code, status.UNAVAILABLE);
  });

  it('startAgent refuses to start with neither target nor services', () => {
    assert.throws(
      () => startAgent({ gateway: '127.0.0.1:1', id: 'x', tunnels: 1, security: { insecure: true } }),
      /needs a target to forward to, or services/,
    );
  });

  it('AbortSignals stop the gateway and the agent, and an aborted signal refuses to start', async () => {
    const stopGateway = new AbortController();
    const gw = await startGateway({
      listen: '127.0.0.1:0',
      agents: '127.0.0.1:0',
      access: {},
      logger: recordingLogger(),
      signal: stopGateway.signal,
    });
    const t = await targetServer();
    const stopAgent = new AbortController();
    const agent = agentOf(gw, { id: 'edge-1', target: t.address, signal: stopAgent.signal });
    await tunnelsOf(gw, 'edge-1');
    stopAgent.abort();
    assert.equal(await agent.done, undefined, 'an aborted agent stops cleanly');
    stopGateway.abort();
    await gw.close(); // the same close the signal started
    const echo = client(gw);
    const after = await unary(echo, Buffer.from('x'), new Metadata(), { deadline: Date.now() + 2000 });
    assert.equal(after.error?.code, status.UNAVAILABLE, 'the caller port is closed');

    const already = AbortSignal.abort();
    await assert.rejects(startGateway({ listen: '127.0.0.1:0', agents: '127.0.0.1:0', access: {}, signal: already }), {
      name: 'AbortError',
    });
    assert.throws(
      () =>
        startAgent({
          gateway: '127.0.0.1:1',
          target: t.address,
          id: 'x',
          tunnels: 1,
          security: { insecure: true },
          signal: already,
        }),
      { name: 'AbortError' },
    );
  });

  it('reload closes tunnels whose token was revoked and keeps the others', async () => {
    const gw = await gatewayWith({ access: { agentTokens: AgentTokens.parse('keep edge-1\nrevoke edge-2\n') } });
    const t = await targetServer();
    agentOf(gw, { id: 'edge-1', target: t.address, token: 'keep', tunnels: 2 });
    const revoked = agentOf(gw, { id: 'edge-2', target: t.address, token: 'revoke', tunnels: 2 });
    await Promise.all([tunnelsOf(gw, 'edge-1', 2), tunnelsOf(gw, 'edge-2', 2)]);
    const perAgent = await gw.metrics.getSingleMetricAsString('grpctunnel_gateway_agent_tunnels');
    assert.match(perAgent, /agent="edge-1"} 2/);
    assert.match(perAgent, /agent="edge-2"} 2/);
    // A call in flight on the revoked agent: it fails with a status that says why.
    const inFlight = unary(client(gw), Buffer.from('0'), md({ 'grpctunnel-agent': 'edge-2', 'x-hold': '1' }));
    await handlerStarted(t.seen, 'unary');

    const cut = gw.reload({ agentTokens: AgentTokens.parse('keep edge-1\n') });
    assert.equal(cut, 2);
    const failed = (await inFlight).error;
    assert.equal(failed?.code, status.UNAVAILABLE);
    assert.equal(failed?.details, 'the agent is no longer admitted');
    assert.deepEqual(
      handlerOf(gw)
        .allReverseTunnels()
        .map((x) => x.key),
      ['edge-1', 'edge-1'],
    );
    // The agent redials, is refused with its revoked token, and gives up.
    assert.equal((await revoked.done)?.reason, 'refused');
    const echo = client(gw);
    assert.equal((await unary(echo, Buffer.from('1'), md({ 'grpctunnel-agent': 'edge-1' }))).error, null);
    const gone = await unary(echo, Buffer.from('2'), md({ 'grpctunnel-agent': 'edge-2' }));
    assert.equal(gone.error?.code, status.UNAVAILABLE);
    assert.equal(gw.reload({ agentTokens: AgentTokens.parse('keep edge-1\n') }), 0, 'nothing more to cut');
  });
});
