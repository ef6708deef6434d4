// npm run soak [-- --minutes N] [--workers N] [--json FILE]
//              [--max-heap-mb-per-min X] [--max-rss-mb-per-min X] [--max-fds-per-min X]
//
// One process runs a grpc-js server with the tunnel handler, and drives a
// mixed load at it for N minutes (default 1): every call kind, cancels,
// deadlines, requested errors, unknown methods, large messages; over a
// long-lived forward tunnel, a long-lived reverse tunnel, forward tunnels
// each on a new connection that are opened and closed all the time, reverse
// tunnels likewise, and directly over grpc-js; each kind of tunnel both over
// grpc-js clients and on TunnelConnections (the quick start's). It samples RSS, heap (after a
// forced GC when run with --expose-gc, as `npm run soak` does) and open file
// descriptors, and fails (exit 1) on any call ending with an unexpected
// status, on the loss of a long-lived tunnel, or when a figure grows faster
// than its bound per minute after the warm-up.
import { readdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { type Client, credentials, Metadata, Server, ServerCredentials } from '@grpc/grpc-js';
import {
  openTunnel,
  ReverseTunnelServer,
  TUNNEL_CHANNEL_OPTIONS,
  TunnelConnection,
  TunnelServiceHandler,
} from 'grpctunnel';
import { pickScenario } from './soak-calls.js';
import { SoakClient, SoakService, soakImplementation } from './soak-service.js';

const args = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const at = args.indexOf(name);
  return at >= 0 ? Number(args[at + 1]) : fallback;
};
const jsonAt = args.indexOf('--json');
const jsonFile = jsonAt >= 0 ? args[jsonAt + 1] : undefined;
const durationMs = flag('--minutes', 1) * 60_000;
const workers = flag('--workers', 6);
// Growth bounds per minute after warm-up. A leaked call or stream of the mix
// costs kilobytes, and the mix makes thousands a minute, so a real leak
// crosses these within a minute; V8's and malloc's own settling stays under.
const bounds = {
  heapMB: flag('--max-heap-mb-per-min', 3),
  externalMB: flag('--max-external-mb-per-min', 4),
  rssMB: flag('--max-rss-mb-per-min', 24),
  fds: flag('--max-fds-per-min', 3),
};
// The heap (after GC) settles within seconds; the allocator's RSS high-water
// mark takes minutes (a rare 3.5 MiB message raises it once, and samples
// swing by 20 MB with the buffers in flight), so RSS is judged on the second
// half of the run only, and only in runs of five minutes or more: in a
// one-minute run its 30-second slope was +47 MB/min once with the heap flat,
// while 25- and 30-minute runs settle at +-0.3 MB/min. Short runs still judge
// the heap, external memory and descriptors, which is where a leaked call,
// stream or session shows first.
const warmUpMs = Math.min(60_000, durationMs / 4);
const rssWarmUpMs = Math.max(warmUpMs, durationMs / 2);
const rssJudged = durationMs >= 5 * 60_000;
const sampleEveryMs = Math.max(1000, Math.min(10_000, durationMs / 60));

type AnyClient = Client & Record<string, any>;
const key = (t: { metadata: Metadata }) => String(t.metadata.get('x-soak-key')[0] ?? '');

interface Sample {
  t: number;
  rssMB: number;
  heapMB: number;
  externalMB: number;
  fds: number;
  load1: number;
  calls: number;
}

const failures: string[] = [];
const fail = (why: string) => {
  if (failures.length < 50) failures.push(why);
  else if (failures.length === 50) failures.push('(more failures not shown)');
};
const calls = new Map<string, number>();
const churned = { forward: 0, reverse: 0 };
let totalCalls = 0;
let stopping = false;

async function call(target: string, client: AnyClient): Promise<void> {
  const scenario = pickScenario();
  const { code, details } = await scenario.run(client);
  totalCalls++;
  const name = `${target} ${scenario.name}`;
  calls.set(name, (calls.get(name) ?? 0) + 1);
  if (code !== scenario.expected) fail(`${name}: expected code ${scenario.expected}, got ${code} (${details})`);
}

function openFds(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return -1;
  }
}

const gc = (globalThis as { gc?: () => void }).gc;

function sample(started: number): Sample {
  gc?.();
  const m = process.memoryUsage();
  const mb = (n: number) => Math.round((n / 2 ** 20) * 10) / 10;
  return {
    t: Math.round((Date.now() - started) / 100) / 10,
    rssMB: mb(m.rss),
    heapMB: mb(m.heapUsed),
    externalMB: mb(m.external),
    fds: openFds(),
    load1: Math.round((loadavg()[0] ?? 0) * 100) / 100,
    calls: totalCalls,
  };
}

/**
 * External memory growth per minute. Messages in flight (up to 3.5 MiB, sent
 * in chunks of up to 1 MiB between peers of this library) swing external
 * memory by tens of MB from one sample to the next, more than a minute's
 * leak would add; even the lowest of five samples moved by 10 MB. What a
 * leak leaves is what is still held with no call running: the quiet level
 * once the load has stopped (the last sample) against the level before it
 * began (the first), both after GC. External memory has no warm-up of its
 * own to speak of (0.1 MB in a minute without a leak).
 */
function externalGrowth(samples: Sample[]): number {
  const first = samples[0];
  const last = samples.at(-1);
  if (!first || !last || last.t <= first.t) return 0;
  return (last.externalMB - first.externalMB) / ((last.t - first.t) / 60);
}

/** Least-squares slope of `y` over time, per minute. */
function slopePerMinute(samples: Sample[], y: (s: Sample) => number): number {
  const n = samples.length;
  if (n < 2) return 0;
  const mt = samples.reduce((a, s) => a + s.t, 0) / n;
  const my = samples.reduce((a, s) => a + y(s), 0) / n;
  let num = 0;
  let den = 0;
  for (const s of samples) {
    num += (s.t - mt) * (y(s) - my);
    den += (s.t - mt) ** 2;
  }
  return den === 0 ? 0 : (num / den) * 60;
}

async function main(): Promise<number> {
  const handler = new TunnelServiceHandler({ affinityKey: key });
  handler.addService(SoakService, soakImplementation);
  const server = new Server();
  server.addService(SoakService, soakImplementation);
  handler.register(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const address = `127.0.0.1:${port}`;
  const insecure = credentials.createInsecure();
  handler.on('reverseTunnelClose', (t: { key: unknown }, error: Error | undefined) => {
    if ((t.key === 'long' || t.key === 'long-own') && !stopping)
      fail(`the long-lived reverse tunnel closed: ${error?.message ?? 'cleanly'}`);
  });

  /** A forward and a reverse tunnel that must stay up for the whole run, and a client through each. */
  const longLived = async (
    kind: '' | '-own',
    forwardOn: Client | TunnelConnection,
    reverseOn: Client | TunnelConnection,
  ) => {
    const tunnel = await openTunnel(forwardOn);
    tunnel.on('close', (error: Error | undefined) => {
      const on = kind ? ' on a TunnelConnection' : '';
      if (!stopping) fail(`the long-lived forward tunnel${on} closed: ${error?.message ?? 'cleanly'}`);
    });
    const reverseServer = new ReverseTunnelServer(reverseOn);
    reverseServer.addService(SoakService, soakImplementation);
    const reverseOpen = reverseServer.keepOpen(keyed(`long${kind}`));
    const pool = handler.keyAsChannel(`long${kind}`);
    await pool.waitForReady({ timeoutMs: 10_000 });
    const forward = new SoakClient(`long-forward${kind}`, insecure, { channelOverride: tunnel }) as AnyClient;
    const reverse = new SoakClient(`long-reverse${kind}`, insecure, { channelOverride: pool }) as AnyClient;
    const close = async () => {
      forward.close();
      reverse.close();
      tunnel.close();
      reverseServer.forceShutdown();
      await reverseOpen;
      reverseOn.close();
    };
    return { forward, reverse, close };
  };

  // Long-lived tunnels, one of each direction, for the whole run: over
  // grpc-js clients (forward on the client of the direct calls), and the
  // same two on TunnelConnections.
  const direct = new SoakClient(address, insecure, TUNNEL_CHANNEL_OPTIONS) as AnyClient;
  const long = await longLived('', direct, new SoakClient(address, insecure, TUNNEL_CHANNEL_OPTIONS));
  const ownConnection = new TunnelConnection(address);
  const longOwn = await longLived('-own', ownConnection, new TunnelConnection(address));

  const started = Date.now();
  const samples: Sample[] = [sample(started)];
  const sampler = setInterval(() => samples.push(sample(started)), sampleEveryMs);
  const deadline = started + durationMs;
  const running = () => !stopping && Date.now() < deadline;

  const worker = async () => {
    const targets: Array<[string, AnyClient]> = [
      ['direct', direct],
      ['forward', long.forward],
      ['reverse', long.reverse],
      ['forward-own', longOwn.forward],
      ['reverse-own', longOwn.reverse],
    ];
    while (running()) {
      const [name, client] = targets[Math.floor(Math.random() * targets.length)] as [string, AnyClient];
      await call(name, client);
    }
  };

  // A new connection for a churned tunnel: a grpc-js client and a
  // TunnelConnection in turn.
  const churnConnection = (n: number) =>
    n % 2 === 0
      ? { kind: '', connection: new SoakClient(address, insecure) }
      : { kind: '-own', connection: new TunnelConnection(address) };

  // Forward tunnel churn: a new connection and tunnel, a few calls, closed.
  const forwardChurn = async () => {
    while (running()) {
      const { kind, connection } = churnConnection(churned.forward);
      try {
        const tunnel = await openTunnel(connection, { signal: AbortSignal.timeout(10_000) });
        const name = `churn-forward${kind}`;
        const client = new SoakClient(name, insecure, { channelOverride: tunnel }) as AnyClient;
        await Promise.all([call(name, client), call(name, client), call(name, client)]);
        tunnel.close();
        client.close();
        churned.forward++;
      } catch (err) {
        fail(`forward churn: ${err instanceof Error ? err.message : String(err)}`);
      } finally {
        connection.close();
      }
    }
  };

  // Reverse tunnel churn: a new connection and reverse tunnel under a key of
  // its own, a few calls through its pool, then a graceful stop.
  const reverseChurn = async () => {
    while (running()) {
      const name = `churn-${churned.reverse}`;
      const { kind, connection } = churnConnection(churned.reverse);
      const tunnelServer = new ReverseTunnelServer(connection);
      tunnelServer.addService(SoakService, soakImplementation);
      const served = tunnelServer.serve(keyed(name));
      try {
        const pool = handler.keyAsChannel(name);
        await pool.waitForReady({ timeoutMs: 10_000 });
        const calls = `churn-reverse${kind}`;
        const client = new SoakClient(calls, insecure, { channelOverride: pool }) as AnyClient;
        await Promise.all([call(calls, client), call(calls, client), call(calls, client)]);
        client.close();
        await tunnelServer.tryShutdown({ signal: AbortSignal.timeout(10_000) });
        const result = await served;
        if (result.error) fail(`reverse churn: the tunnel ended with ${result.error.message}`);
        churned.reverse++;
      } catch (err) {
        fail(`reverse churn: ${err instanceof Error ? err.message : String(err)}`);
        tunnelServer.forceShutdown();
      } finally {
        connection.close();
      }
    }
  };

  await Promise.all([...Array.from({ length: workers }, worker), forwardChurn(), reverseChurn()]);
  clearInterval(sampler);
  // The load has stopped. Buffers of the last calls are released as their
  // sockets and HTTP/2 sessions finish with them, over the next moments: the
  // quiet level is the lowest of a few samples a tenth of a second apart.
  let quiet = sample(started);
  for (let i = 0; i < 10; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const next = sample(started);
    if (next.externalMB < quiet.externalMB) quiet = { ...next, t: quiet.t };
  }
  samples.push(quiet);

  stopping = true;
  await long.close();
  await longOwn.close();
  ownConnection.close();
  direct.close();
  server.forceShutdown();
  return report(samples);
}

function keyed(name: string) {
  const metadata = new Metadata();
  metadata.set('x-soak-key', name);
  return { metadata };
}

function report(samples: Sample[]): number {
  const settled = samples.filter((s) => s.t * 1000 >= warmUpMs);
  const growth = {
    heapMB: slopePerMinute(settled, (s) => s.heapMB),
    externalMB: externalGrowth(samples),
    rssMB: slopePerMinute(
      samples.filter((s) => s.t * 1000 >= rssWarmUpMs),
      (s) => s.rssMB,
    ),
    fds: slopePerMinute(settled, (s) => s.fds),
  };
  if (!gc) console.log('note: run with node --expose-gc for a heap figure after GC (npm run soak does)');
  for (const [name, bound] of Object.entries(bounds) as Array<[keyof typeof bounds, number]>) {
    if (name === 'rssMB' && !rssJudged) continue;
    if (growth[name] > bound) fail(`${name} grew ${growth[name].toFixed(2)} per minute (bound ${bound})`);
  }
  const minutes = durationMs / 60_000;
  console.log(`soak: ${minutes} min, ${workers} workers, warm-up ${warmUpMs / 1000} s, pid ${process.pid}`);
  console.log(`calls: ${totalCalls} (${Math.round(totalCalls / minutes)}/min)`);
  for (const [name, n] of [...calls].sort()) console.log(`  ${name.padEnd(36)} ${n}`);
  console.log(`tunnels churned: ${churned.forward} forward, ${churned.reverse} reverse (each on a new connection)`);
  console.log('    t(s)  rss(MB) heap(MB) ext(MB)  fds  load1   calls');
  const step = Math.max(1, Math.floor(samples.length / 30));
  samples.forEach((s, i) => {
    if (i % step !== 0 && i !== samples.length - 1) return;
    console.log(
      `${String(s.t).padStart(8)} ${String(s.rssMB).padStart(8)} ${String(s.heapMB).padStart(8)} ${String(s.externalMB).padStart(7)} ${String(s.fds).padStart(4)} ${String(s.load1).padStart(6)} ${String(s.calls).padStart(7)}`,
    );
  });
  console.log(
    `growth per minute after warm-up (external: quiet after the load vs before it): heap ${growth.heapMB.toFixed(2)} MB (bound ${bounds.heapMB}), ` +
      `external ${growth.externalMB.toFixed(2)} MB (bound ${bounds.externalMB}), ` +
      `rss ${growth.rssMB.toFixed(2)} MB (${rssJudged ? `bound ${bounds.rssMB}, second half` : 'not judged under 5 minutes'}), fds ${growth.fds.toFixed(2)} (bound ${bounds.fds})`,
  );
  if (jsonFile) {
    writeFileSync(
      jsonFile,
      JSON.stringify(
        { minutes, workers, calls: Object.fromEntries(calls), churned, growth, bounds, samples, failures },
        null,
        1,
      ),
    );
  }
  if (failures.length > 0) {
    console.log(`FAIL (${failures.length}):`);
    for (const f of failures) console.log(`  ${f}`);
    return 1;
  }
  console.log('PASS');
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
