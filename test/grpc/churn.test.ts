// Opening and closing tunnels fast on one connection must not cost the other
// tunnels on it. node:http2's server (nghttp2 >= 1.57) counts every
// RST_STREAM frame a client sends in a token bucket (1000 tokens, 33 more a
// second, whatever the error code); once it is empty the server sends
// GOAWAY(INTERNAL_ERROR) and every stream of the connection fails. A tunnel
// that ended its RPC with a reset tripped this after about 15 s of 100
// closes a second. These runs open and close tunnels at that rate next to
// long-lived tunnels that carry calls, and count on the wire (through a
// relay) the resets the client sent and the GOAWAYs it got. Each run lasts
// until it has closed enough tunnels that, had each close been a reset, the
// bucket would be empty (about 15 s at the full rate; longer on a busy
// machine, which cannot keep the rate), at least MIN_SECONDS, at most SECONDS.
import assert from 'node:assert/strict';
import { after, describe, it, type TestContext } from 'node:test';
import { type Client, connectivityState, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { openTunnel, type ReverseTunnel, ReverseTunnelServer, TunnelServiceHandler } from 'grpctunnel';
import { unary } from '../helpers/calls.js';
import { EchoClient, EchoService, echoImplementation } from '../helpers/echo-service.js';
import { type FrameTap, FrameType, startFrameTap } from '../helpers/h2-frame-tap.js';
import { rawHttp2TunnelServer } from '../helpers/raw-peer.js';
import { startServer, stopAllServers, stopServer } from '../helpers/servers.js';

// The runs go side by side; a failed one's servers are stopped at the end.
after(stopAllServers);

/** How long a run may last at most, to reach enough closes; CHURN_SECONDS sets it. */
const SECONDS = Number(process.env.CHURN_SECONDS ?? 60);
/** How long a run lasts at least, however fast it reaches enough closes. */
const MIN_SECONDS = Math.min(20, SECONDS);
/** Tunnels opened and closed a second. */
const RATE = 100;
const LONG_LIVED = 4;
/** nghttp2's defaults (NGHTTP2_DEFAULT_STREAM_RESET_BURST and _RATE), which node:http2 does not change. */
const RESET_BURST = 1000;
const RESET_RATE = 33;
/**
 * Closes a run must have made after `seconds` for resets, had each close
 * been one, to have emptied nghttp2's bucket (with one close a second more
 * than the refill, as a margin).
 */
const enoughToTrip = (seconds: number) => RESET_BURST + (RESET_RATE + 1) * seconds;
const TICK_MS = 10;
const insecure = credentials.createInsecure();

/** Keeps one unary call at a time running on a client, started from the run's ticks. */
class Caller {
  calls = 0;
  readonly failures: string[] = [];
  private running: Promise<void> | undefined;

  constructor(private readonly client: Client & Record<string, any>) {}

  tick(): void {
    if (this.running) return;
    this.running = unary(this.client, Buffer.from('long-lived')).then((r) => {
      this.calls++;
      if (r.error) this.failures.push(`${r.error.code} ${r.error.details}`);
      this.running = undefined;
    });
  }

  async idle(): Promise<void> {
    await this.running;
  }
}

/**
 * Starts `cycle` `RATE` times a second: each tick launches the cycles that
 * are due by the clock, so late ticks on a busy machine do not lower the
 * rate. Stops launching after MIN_SECONDS once `closed()` (the closes so far)
 * is enough to have tripped the bucket, or after SECONDS. `onTick` runs every
 * fifth tick. Resolves, once every cycle has finished, with the seconds the
 * run lasted.
 */
async function paced(
  cycle: (index: number) => Promise<void>,
  onTick: () => void,
  closed: () => number,
): Promise<number> {
  const started = Date.now();
  const running = new Set<Promise<void>>();
  let launched = 0;
  let ticks = 0;
  let seconds = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = Date.now() - started;
      seconds = elapsed / 1000;
      const enough = seconds >= MIN_SECONDS && closed() >= enoughToTrip(seconds);
      if (enough || seconds >= SECONDS) {
        clearInterval(timer);
        resolve();
        return;
      }
      const due = Math.floor((elapsed * RATE) / 1000);
      // A bound on cycles in flight keeps a stalled server from piling up thousands.
      while (launched < due && running.size < RATE * 5) {
        const run = cycle(launched++).finally(() => running.delete(run));
        running.add(run);
      }
      if (ticks++ % 5 === 0) onTick();
    }, TICK_MS);
  });
  await Promise.all(running);
  return seconds;
}

/** What crossed the wire during a run. */
interface Wire {
  /** RST_STREAM frames the client sent (what nghttp2 counts). */
  resets: number;
  /** GOAWAY frames the server sent. */
  goaways: number;
  /** RST_STREAM frames the server sent (not counted by anyone; reported). */
  serverResets: number;
}

function wireOf(tap: FrameTap): Wire {
  return {
    resets: tap.fromClient(FrameType.RST_STREAM),
    goaways: tap.fromServer(FrameType.GOAWAY),
    serverResets: tap.fromServer(FrameType.RST_STREAM),
  };
}

interface ChurnOutcome {
  /** Tunnels opened and closed by the churn (for reverse tunnels, those the gRPC client closed). */
  closed: number;
  /** How long the churn ran. */
  seconds: number;
  /** What went wrong in churn cycles. */
  churnFailures: string[];
  /** Long-lived tunnels that ended during the run, with why. */
  lost: string[];
  callers: Caller[];
}

function assertHealthy(t: TestContext, outcome: ChurnOutcome, wire: Wire): void {
  const callFailures = outcome.callers.flatMap((c) => c.failures);
  const calls = outcome.callers.map((c) => c.calls);
  t.diagnostic(
    `closed ${outcome.closed} in ${outcome.seconds.toFixed(1)} s, churn failures ${outcome.churnFailures.length}, long-lived lost ${outcome.lost.length}, ` +
      `long-lived calls ${calls.join('/')} (${callFailures.length} failed), client RST_STREAM ${wire.resets}, server GOAWAY ${wire.goaways}, server RST_STREAM ${wire.serverResets}`,
  );
  assert.deepEqual(outcome.lost, [], 'no long-lived tunnel is lost');
  assert.deepEqual(callFailures.slice(0, 5), [], 'every call on a long-lived tunnel succeeds');
  assert.deepEqual(outcome.churnFailures.slice(0, 5), [], 'every churned tunnel opens and closes cleanly');
  assert.equal(wire.goaways, 0, 'the server never sends GOAWAY');
  assert.equal(wire.resets, 0, 'the client never resets a stream');
  for (const caller of outcome.callers) {
    assert.ok(caller.calls > outcome.seconds, 'the long-lived tunnels carried calls');
  }
  assert.ok(
    outcome.closed >= enoughToTrip(outcome.seconds),
    `${outcome.closed} closes in ${outcome.seconds.toFixed(1)} s: too few for resets to have emptied nghttp2's bucket`,
  );
}

/** Forward tunnels: four long-lived ones with calls, and RATE a second opened and closed beside them. */
async function forwardChurn(connection: Client): Promise<ChurnOutcome> {
  const long = await Promise.all(Array.from({ length: LONG_LIVED }, () => openTunnel(connection)));
  const callers = long.map((tunnel) => new Caller(new EchoClient('tunnel', insecure, { channelOverride: tunnel })));
  const churnFailures: string[] = [];
  let closed = 0;
  const seconds = await paced(
    async (index) => {
      try {
        const tunnel = await openTunnel(connection);
        // Some churned tunnels carry a call before they close.
        if (index % 10 === 0) {
          const r = await unary(new EchoClient('t', insecure, { channelOverride: tunnel }), Buffer.from('c'));
          if (r.error) churnFailures.push(`call: ${r.error.code} ${r.error.details}`);
        }
        tunnel.close();
        closed++;
      } catch (err) {
        churnFailures.push(`open: ${(err as ServiceError).message}`);
      }
    },
    () => {
      for (const caller of callers) caller.tick();
    },
    () => closed,
  );
  await Promise.all(callers.map((c) => c.idle()));
  const lost = long
    .filter((t) => t.getConnectivityState(false) !== connectivityState.READY)
    .map((t) => t.error?.message ?? 'closed');
  for (const tunnel of long) tunnel.close();
  return { closed, seconds, churnFailures, lost, callers };
}

describe(`${RATE} tunnels a second opened and closed on one connection, until resets would have tripped nghttp2`, {
  concurrency: true,
}, () => {
  it('forward, against TunnelServiceHandler on a grpc-js server: no long-lived tunnel is lost', async (t) => {
    const handler = new TunnelServiceHandler();
    handler.addService(EchoService, echoImplementation());
    const { server, address } = await startServer((s) => handler.register(s));
    const tap = await startFrameTap(address);
    const connection = new EchoClient(tap.address, insecure);
    const outcome = await forwardChurn(connection);
    const wire = wireOf(tap);
    connection.close();
    await stopServer(server);
    await tap.close();
    assertHealthy(t, outcome, wire);
  });

  it('forward, against a tunnel server on bare node:http2: no long-lived tunnel is lost', async (t) => {
    const peer = await rawHttp2TunnelServer();
    const tap = await startFrameTap(peer.address);
    const connection = new EchoClient(tap.address, insecure);
    const outcome = await forwardChurn(connection);
    const wire = wireOf(tap);
    connection.close();
    await peer.close();
    await tap.close();
    assertHealthy(t, outcome, wire);
    assert.equal(peer.reset, 0, 'the server saw no stream reset');
    assert.equal(peer.sessionErrors, 0);
    assert.ok(peer.finished >= outcome.closed, 'each closed tunnel RPC was finished by the server');
  });

  it('reverse, closed by either side: no long-lived reverse tunnel is lost', async (t) => {
    const handler = new TunnelServiceHandler({ affinityKey: (t) => t.metadata.get('x-pool')[0] });
    const { server, address } = await startServer((s) => handler.register(s));
    const tap = await startFrameTap(address);
    const connection = new EchoClient(tap.address, insecure);
    const agent = new ReverseTunnelServer(connection);
    agent.addService(EchoService, echoImplementation());

    // Churned tunnels are found by the id in their metadata once the handler has them.
    const waiting = new Map<string, (tunnel: ReverseTunnel) => void>();
    const lost: string[] = [];
    handler.on('reverseTunnelOpen', (tunnel: ReverseTunnel) => {
      const id = tunnel.info.metadata.get('x-churn')[0];
      if (id !== undefined) waiting.get(String(id))?.(tunnel);
    });
    handler.on('reverseTunnelClose', (tunnel: ReverseTunnel, error: Error | undefined) => {
      if (tunnel.key === 'long') lost.push(`handler side: ${error?.message ?? 'closed'}`);
    });

    const longMetadata = new Metadata();
    longMetadata.set('x-pool', 'long');
    const longOpen = new Promise<void>((resolve) => {
      let open = 0;
      handler.on('reverseTunnelOpen', (tunnel: ReverseTunnel) => {
        if (tunnel.key === 'long' && ++open === LONG_LIVED) resolve();
      });
    });
    const stopLong = new AbortController();
    const longServed = Array.from({ length: LONG_LIVED }, () =>
      agent.serve({ metadata: longMetadata, signal: stopLong.signal }).then((r) => {
        if (!stopLong.signal.aborted) lost.push(`agent side: ${r.error?.message ?? 'ended'}`);
      }),
    );
    await longOpen;
    const pool = handler.keyAsChannel('long');
    const callers = Array.from(
      { length: LONG_LIVED },
      () => new Caller(new EchoClient('pool', insecure, { channelOverride: pool })),
    );

    const churnFailures: string[] = [];
    let closed = 0;
    const seconds = await paced(
      async (index) => {
        const metadata = new Metadata();
        metadata.set('x-pool', 'churn');
        metadata.set('x-churn', String(index));
        const stop = new AbortController();
        const opened = new Promise<ReverseTunnel>((resolve) => waiting.set(String(index), resolve));
        const served = agent.serve({ metadata, signal: stop.signal });
        const first = await Promise.race([opened, served]);
        waiting.delete(String(index));
        if (!('channel' in first)) {
          churnFailures.push(`open: ${first.error?.message ?? 'ended before it opened'}`);
          return;
        }
        // Most are closed by the agent (the gRPC client, whose resets would
        // count), every fourth by the handler (the gRPC server).
        const byAgent = index % 4 !== 3;
        if (byAgent) stop.abort();
        else first.channel.close();
        const result = await served;
        if (result.error) churnFailures.push(`close: ${result.error.message}`);
        else if (byAgent) closed++;
      },
      () => {
        for (const caller of callers) caller.tick();
      },
      () => closed,
    );
    await Promise.all(callers.map((c) => c.idle()));
    const wire = wireOf(tap);
    const lostDuringRun = [...lost];
    stopLong.abort();
    await Promise.all(longServed);
    connection.close();
    await stopServer(server);
    await tap.close();
    assertHealthy(t, { closed, seconds, churnFailures, lost: lostDuringRun, callers }, wire);
  });
});
