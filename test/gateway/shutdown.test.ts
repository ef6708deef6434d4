// How an embedded gateway stops and what its hooks may do to it: the drain
// delay, close() with calls still routing, waiting for an agent or mid
// handshake, a shorter grace asked for later, a start that fails part way,
// hooks that answer with the wrong shape or fail with a gRPC-looking error,
// and tokens revoked while an agent's admission is under way.
import assert from 'node:assert/strict';
import net from 'node:net';
import { afterEach, describe, it } from 'node:test';
import { credentials, Metadata, status } from '@grpc/grpc-js';
import { AgentTokens, type Gateway, startAgent, startGateway } from 'grpctunnel-gateway';
import { handlerOf } from '#gateway/gateway/gateway.js';
import { unary } from '../helpers/calls.js';
import { makePki } from '../helpers/certs.js';
import { freePort } from '../helpers/cli.js';
import { EchoClient } from '../helpers/echo-service.js';
import { cleanups, deferred, gatewayWith, recordingLogger, runCleanups } from '../helpers/gateway-embed.js';
import { startEchoTarget, stopServer } from '../helpers/servers.js';

/**
 * Resolves with `p`, or rejects naming `what` after `ms`: a close that hangs
 * fails its test with a reason instead of running into the file's timeout.
 */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

afterEach(runCleanups);

function client(address: string): EchoClient {
  const c = new EchoClient(address, credentials.createInsecure());
  cleanups.push(() => c.close());
  return c;
}

const toAgent = (id: string) => {
  const md = new Metadata();
  md.set('grpctunnel-agent', id);
  return md;
};

async function echoAgent(gw: Gateway, id: string, token?: string) {
  const t = await startEchoTarget();
  cleanups.push(() => stopServer(t.server));
  const agent = startAgent({
    gateway: gw.agentsAddress,
    target: t.address,
    id,
    ...(token && { token }),
    tunnels: 1,
    security: { insecure: true },
    logger: recordingLogger(),
    keepalive: false,
    backoff: { initialDelayMs: 20, maxDelayMs: 200 },
  });
  cleanups.push(() => agent.stop(0));
  return agent;
}

/** Resolves once the gateway holds a tunnel of `id`. */
function arrived(gw: Gateway, id: string): Promise<void> {
  const handler = handlerOf(gw);
  return new Promise((resolve) => {
    if (gw.agents().has(id)) return resolve();
    const check = () => {
      if (!gw.agents().has(id)) return;
      handler.off('reverseTunnelOpen', check);
      resolve();
    };
    handler.on('reverseTunnelOpen', check);
  });
}

const healthz = async (gw: Gateway) => (await fetch(`http://${gw.adminAddress}/healthz`)).status;

describe('closing a gateway', () => {
  it('says not ready at once and serves calls through the drain delay; close(0) then cuts the delay short', async () => {
    const gw = await gatewayWith({ admin: '127.0.0.1:0', drainDelayMs: 60_000 });
    await echoAgent(gw, 'edge');
    await arrived(gw, 'edge');
    const echo = client(gw.listenAddress);
    assert.equal(await healthz(gw), 200);
    const closing = gw.close();
    assert.equal(await healthz(gw), 503, 'not ready as soon as close() is called');
    const during = await unary(echo, Buffer.from('still served'), toAgent('edge'));
    assert.equal(during.error, null, 'a call during the drain delay is served');
    assert.equal(during.value?.toString(), 'still served');
    assert.equal(gw.close(0), closing, 'the same close');
    await within(closing, 5000, 'close(0) ending the 60 s drain delay');
  });

  it('aborting the signal given to close() ends the grace: running calls are cut', async () => {
    const gw = await gatewayWith({});
    await echoAgent(gw, 'edge');
    await arrived(gw, 'edge');
    const echo = client(gw.listenAddress);
    // A call that would run for a minute (the echo service holds it).
    const md = toAgent('edge');
    md.set('x-delay-ms', '60000');
    const running = unary(echo, Buffer.from('slow'), md);
    const stop = new AbortController();
    const closed = gw.close({ graceMs: 60_000, signal: stop.signal });
    stop.abort();
    await within(closed, 5000, 'close() after its signal aborted');
    const result = await running;
    assert.notEqual(result.error, null, 'the running call was cut');
  });

  it('close(0) ends calls whose routeCall hook never answers, and aborts the hook signal', async () => {
    const inHook = deferred<AbortSignal>();
    const gw = await gatewayWith({
      hooks: {
        routeCall: (call) => {
          inHook.resolve(call.signal);
          return new Promise<string>(() => {});
        },
      },
    });
    const echo = client(gw.listenAddress);
    const call = unary(echo, Buffer.from('x'));
    const hookSignal = await inHook.promise;
    await within(gw.close(0), 5000, 'close(0) with a routeCall hook pending');
    assert.equal(hookSignal.aborted, true, 'the hook was told the gateway stopped');
    const result = await call;
    assert.notEqual(result.error, null);
  });

  it('releases calls waiting for an agent with UNAVAILABLE "the gateway is shutting down"', async () => {
    // The (synchronous) routing hook says when the call is at the gateway;
    // the wait for the agent begins right after it, in the same turn.
    const routed = deferred();
    const gw = await gatewayWith({
      agentArrivalWaitMs: 60_000,
      hooks: {
        routeCall: () => {
          routed.resolve();
          return undefined;
        },
      },
    });
    const echo = client(gw.listenAddress);
    const waiting = unary(echo, Buffer.from('x'), toAgent('late'));
    await routed.promise;
    const closed = gw.close();
    const result = await within(waiting, 5000, 'the waiting call ending');
    assert.equal(result.error?.code, status.UNAVAILABLE);
    assert.equal(result.error?.details, 'the gateway is shutting down');
    await within(closed, 5000, 'close()');
  });

  it('closes a TLS connection that never finished its handshake at once, not after the idle timeout', async () => {
    const pki = makePki([]);
    const gw = await gatewayWith({
      tls: pki.server,
      limits: { maxConnectionsPerPeer: 16, idleTimeoutMs: 120_000 },
    });
    const silent = net.connect(Number(gw.listenAddress.split(':')[1]), '127.0.0.1');
    cleanups.push(() => silent.destroy());
    await new Promise<void>((resolve) => silent.once('connect', () => resolve()));
    const ended = new Promise<void>((resolve) => silent.once('close', () => resolve()));
    await within(gw.close(0), 5000, 'close(0) with a connection mid-handshake');
    await within(ended, 5000, 'the silent connection closing');
  });
});

describe('starting a gateway', () => {
  it('a start that fails on its admin port releases the ports it had bound', async () => {
    const [listen, agents] = [await freePort(), await freePort()];
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', () => resolve()));
    cleanups.push(() => new Promise((resolve) => taken.close(resolve)));
    const adminTaken = `127.0.0.1:${(taken.address() as net.AddressInfo).port}`;
    const options = {
      listen: `127.0.0.1:${listen}`,
      agents: `127.0.0.1:${agents}`,
      access: {},
      logger: recordingLogger(),
      keepalive: false as const,
    };
    await assert.rejects(startGateway({ ...options, admin: adminTaken }), /cannot listen/);
    const again = await startGateway(options);
    await again.close(0);
  });

  it('refuses durations a timer cannot hold', async () => {
    await assert.rejects(gatewayWith({ drainDelayMs: 3_000_000_000 }), RangeError);
    await assert.rejects(gatewayWith({ agentArrivalWaitMs: -1 }), RangeError);
    const gw = await gatewayWith({});
    assert.throws(() => gw.close({ graceMs: Number.NaN }), RangeError);
  });
});

describe('hooks that misbehave', () => {
  it('a hook answering with the wrong shape fails that call with INTERNAL, logged, and the gateway goes on', async () => {
    const logger = recordingLogger();
    let answer: unknown = 42;
    const gw = await gatewayWith({
      logger,
      hooks: {
        routeCall: async () => answer as string,
        authenticateCaller: (call) =>
          call.metadata.get('x-bad-auth').length > 0 ? ({ name: 7 } as never) : { name: 'someone' },
      },
    });
    await echoAgent(gw, 'edge');
    await arrived(gw, 'edge');
    const echo = client(gw.listenAddress);
    const routed = await unary(echo, Buffer.from('x'), toAgent('edge'));
    assert.equal(routed.error?.code, status.INTERNAL);
    assert.equal(routed.error?.details, 'the gateway failed to route the call');
    const badAuth = toAgent('edge');
    badAuth.set('x-bad-auth', 'yes');
    const authed = await unary(echo, Buffer.from('x'), badAuth);
    assert.equal(authed.error?.code, status.INTERNAL);
    assert.equal(authed.error?.details, 'the gateway failed to authenticate the call');
    assert.ok(logger.lines.some((l) => l.startsWith('error') && l.includes('routeCall resolved to a number')));
    assert.ok(logger.lines.some((l) => l.startsWith('error') && l.includes('authenticateCaller resolved to')));
    answer = undefined; // the header chooses again
    const ok = await unary(echo, Buffer.from('fine'), toAgent('edge'));
    assert.equal(ok.error, null, 'the gateway still serves');
  });

  it('a hook failing with an error that carries a gRPC code does not pass its text on', async () => {
    const logger = recordingLogger();
    const gw = await gatewayWith({
      logger,
      hooks: {
        authenticateCaller: () => {
          throw Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:50051'), {
            code: status.UNAVAILABLE,
            details: 'No connection established. Last error: connect ECONNREFUSED 10.1.2.3:50051',
          });
        },
      },
    });
    const echo = client(gw.listenAddress);
    const result = await unary(echo, Buffer.from('x'));
    assert.equal(result.error?.code, status.INTERNAL);
    assert.equal(result.error?.details, 'the gateway failed to authenticate the call');
    assert.ok(
      logger.lines.some((l) => l.startsWith('error') && l.includes('10.1.2.3')),
      'logged where it belongs',
    );
  });

  it('tokens revoked while an agent was being admitted close its tunnel once it opens', async () => {
    const admitting = deferred();
    const release = deferred();
    const gw = await gatewayWith({
      access: { agentTokens: AgentTokens.parse('old-token *\n') },
      hooks: {
        admitAgent: async ({ requestedId }) => {
          admitting.resolve();
          await release.promise;
          return requestedId;
        },
      },
    });
    const closedTunnel = new Promise<void>((resolve) => handlerOf(gw).once('reverseTunnelClose', () => resolve()));
    await echoAgent(gw, 'edge', 'old-token');
    await admitting.promise;
    assert.equal(gw.reload({ agentTokens: AgentTokens.parse('new-token *\n') }), 0, 'no tunnel was open yet');
    release.resolve();
    await within(closedTunnel, 5000, 'the revoked tunnel closing');
    assert.equal(gw.agents().has('edge'), false);
  });
});
