// npm run bench [-- --quick] [--json FILE] [--svg FILE] [--only NAME,...] [--rounds N] [--no-warmup]
//                [--window N] [--max-window N] [--update-threshold N] [--h2-window N] [--tunnel-channel-options]
//                [--handler-h2-window N] [--client-h2-window N] [--max-chunk N]
// Runs every scenario directly over grpc-js and through forward and reverse
// tunnels, in one run, against a service in another process, and prints each
// tunnel figure as a ratio to direct measured in the same run. Each tunnel
// kind runs twice: its tunnel RPC over a grpc-js client (forward, reverse)
// and on a TunnelConnection, the library's own HTTP/2 session (forward-own,
// reverse-own).
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { credentials, Server, ServerCredentials } from '@grpc/grpc-js';
import { openTunnel, TUNNEL_CHANNEL_OPTIONS, TunnelConnection, TunnelServiceHandler } from 'grpctunnel';
import { ratioChart } from './chart.js';
import { type AnyClient, BenchClient } from './clients.js';
import { fanInLoad, type Measured, pingPongLoad, streamLoad, unaryLoad } from './loads.js';

const args = process.argv.slice(2);
const flag = (name: string) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
};
const quick = args.includes('--quick');
const seconds = quick ? 2 : 10;
const only = flag('--only')?.split(',');
// Timed scenarios run in interleaved rounds (direct, forward, reverse, direct,
// ...), so that a shared machine's drift during a run hits every transport alike.
const rounds = Number(flag('--rounds') ?? (quick ? 1 : 5));
const warmUp = !args.includes('--no-warmup');

/** One row of the results (fields that do not apply are absent). */
interface Run extends Measured {
  scenario: string;
  transport: string;
  ratio_to_direct?: number;
  [extra: string]: unknown;
}

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));

function spawnNode(
  file: string,
  argv: string[],
  nodeArgs: string[] = [],
): { child: ChildProcess; firstLine: Promise<string> } {
  const child = spawn(process.execPath, [...nodeArgs, here(file), ...argv], { stdio: ['ignore', 'pipe', 'inherit'] });
  const firstLine = new Promise<string>((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        child.stdout?.off('data', onData);
        resolve(out.slice(0, nl).trim());
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${file} exited with ${code}`)));
  });
  return { child, firstLine };
}

const numberFlag = (name: string) => (flag(name) === undefined ? undefined : Number(flag(name)));

async function main(): Promise<void> {
  // The caller side hosts a tunnel handler too, for the reverse transport:
  // the service process dials it and serves through a reverse tunnel.
  const initialWindowSize = numberFlag('--window');
  const maxWindowSize = numberFlag('--max-window');
  const windowUpdateThreshold = numberFlag('--update-threshold');
  // Receive-side settings of this process: the forward tunnel's client and
  // the handler that receives the reverse tunnels.
  // Largest chunk offered between the two processes (both ends; 16384 turns larger chunks off).
  const maxChunkSize = numberFlag('--max-chunk');
  const receiveOptions = {
    ...(initialWindowSize !== undefined ? { initialWindowSize } : {}),
    ...(maxWindowSize !== undefined ? { maxWindowSize } : {}),
    ...(windowUpdateThreshold !== undefined ? { windowUpdateThreshold } : {}),
    ...(maxChunkSize !== undefined ? { maxChunkSize } : {}),
  };
  // The HTTP/2 window openTunnel and ReverseTunnelServer raise on their connections (0: leave grpc-js's).
  const clientH2Window = numberFlag('--client-h2-window');
  // The handlers' own HTTP/2 windows (http2WindowSize), here and in the service process.
  const handlerH2Window = numberFlag('--handler-h2-window');
  // Reverse tunnels from the service process say how they were dialed (bench/server.ts).
  const handler = new TunnelServiceHandler<string>({
    affinityKey: (tunnel) => String(tunnel.metadata.get('x-bench-kind')[0] ?? ''),
    ...receiveOptions,
    ...(handlerH2Window !== undefined && { http2WindowSize: handlerH2Window }),
  });
  const callerServer = new Server();
  handler.register(callerServer);
  const callerPort = await new Promise<number>((resolve, reject) =>
    callerServer.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  // TUNNEL_CHANNEL_OPTIONS on the connections that carry tunnels only (both
  // ends' clients), as the README suggests; off by default so that direct and
  // tunnels run on connections made alike.
  const tunnelChannelOptions = args.includes('--tunnel-channel-options');
  const service = spawnNode('./server.js', [
    '--reverse',
    `127.0.0.1:${callerPort}`,
    ...(tunnelChannelOptions ? ['--tunnel-channel-options'] : []),
    ...(handlerH2Window !== undefined ? ['--handler-h2-window', String(handlerH2Window)] : []),
    ...(clientH2Window !== undefined ? ['--client-h2-window', String(clientH2Window)] : []),
    ...(maxChunkSize !== undefined ? ['--max-chunk', String(maxChunkSize)] : []),
  ]);
  const address = `127.0.0.1:${await service.firstLine}`;

  const h2Window = numberFlag('--h2-window');
  const channelOptions = h2Window !== undefined ? { 'grpc-node.flow_control_window': h2Window } : {};
  // Direct calls get a connection of their own: grpc-js would otherwise share
  // the tunnel's (same target and options), whose HTTP/2 windows the
  // service's tunnel handler raises, and direct would no longer be plain grpc-js.
  const direct = new BenchClient(address, credentials.createInsecure(), {
    ...channelOptions,
    'grpc.use_local_subchannel_pool': 1,
  }) as AnyClient;
  const tunnelConnection = new BenchClient(address, credentials.createInsecure(), {
    ...channelOptions,
    ...(tunnelChannelOptions ? TUNNEL_CHANNEL_OPTIONS : {}),
  });
  const tunnel = await openTunnel(tunnelConnection, {
    ...receiveOptions,
    ...(clientH2Window !== undefined && { http2WindowSize: clientH2Window }),
  });
  // The same forward tunnel with its RPC on the library's own HTTP/2 session (TunnelConnection), not a grpc-js call.
  const ownConnection = new TunnelConnection(address, {
    ...(clientH2Window !== undefined && { http2WindowSize: clientH2Window }),
  });
  const ownTunnel = await openTunnel(ownConnection, receiveOptions);
  const reversePool = handler.keyAsChannel('grpc-js');
  const reverseOwnPool = handler.keyAsChannel('own');
  await reversePool.waitForReady({ timeoutMs: 10_000 });
  await reverseOwnPool.waitForReady({ timeoutMs: 10_000 });
  const transports: Array<[string, AnyClient]> = [
    ['direct', direct],
    ['forward', new BenchClient('tunnel', credentials.createInsecure(), { channelOverride: tunnel }) as AnyClient],
    ['forward-own', new BenchClient('own', credentials.createInsecure(), { channelOverride: ownTunnel }) as AnyClient],
    ['reverse', new BenchClient('pool', credentials.createInsecure(), { channelOverride: reversePool }) as AnyClient],
    [
      'reverse-own',
      new BenchClient('pool-own', credentials.createInsecure(), { channelOverride: reverseOwnPool }) as AnyClient,
    ],
  ];

  const small = Buffer.alloc(100, 1);
  const large = Buffer.alloc(64 * 1024, 2);
  const fanMessages = quick ? 10 : 100;
  const slice = seconds / rounds;
  const scenarios: Array<{
    name: string;
    metric: 'qps' | 'mbps';
    timed: boolean;
    load: (c: AnyClient) => Promise<Measured>;
  }> = [
    { name: 'unary-c1', metric: 'qps', timed: true, load: (c) => unaryLoad(c, slice, 1, small) },
    { name: 'unary-c64', metric: 'qps', timed: true, load: (c) => unaryLoad(c, slice, 64, small) },
    { name: 'unary-64k-c16', metric: 'qps', timed: true, load: (c) => unaryLoad(c, slice, 16, large) },
    { name: 'stream-1mib', metric: 'mbps', timed: true, load: (c) => streamLoad(c, slice, 1 << 20) },
    { name: 'pingpong-1k', metric: 'qps', timed: true, load: (c) => pingPongLoad(c, slice, 1024) },
    { name: 'fanin-1000', metric: 'mbps', timed: false, load: (c) => fanInLoad(c, 1000, fanMessages, 16 * 1024) },
  ];

  const runs: Run[] = [];
  console.log(
    `${'scenario'.padEnd(15)}${'transport'.padEnd(12)}${'result'.padEnd(16)}${'p50 / p99 (ms)'.padEnd(28)}ratio to direct`,
  );
  for (const { name, metric, timed, load } of scenarios) {
    if (only && !only.includes(name)) continue;
    const measured = new Map<string, Measured[]>(transports.map(([t]) => [t, []]));
    for (let round = 0; round < (timed ? rounds : 1); round++) {
      for (const [transport, client] of transports) {
        // Warm up each path so JIT and connection setup do not count
        // (--no-warmup skips it; see BENCHMARKS.md for what it changes).
        if (warmUp) await unaryLoad(client, 0.2, 4, small);
        // CPU of both processes per operation: steadier than throughput on a shared machine.
        const caller0 = process.cpuUsage();
        const service0 = processCpuUs(service.child.pid);
        const result = await load(client);
        const caller = process.cpuUsage(caller0);
        const serviceUs = processCpuUs(service.child.pid) - service0;
        if (result.ops) {
          result.cpu_caller_us_per_op = (caller.user + caller.system) / result.ops;
          result.cpu_service_us_per_op = serviceUs / result.ops;
        }
        measured.get(transport)?.push(result);
      }
    }
    let base = 0;
    for (const [transport] of transports) {
      const result = meanOf(measured.get(transport) ?? []);
      const value = result[metric] ?? 0;
      if (transport === 'direct') base = value;
      const run: Run = { scenario: name, transport, ...result };
      if (metric === 'mbps' && name !== 'unary-64k-c16') delete run.qps;
      if (transport !== 'direct') run.ratio_to_direct = value / base;
      runs.push(run);
      print(run, metric);
    }
  }
  tunnel.close();
  tunnelConnection.close();
  ownTunnel.close();
  ownConnection.close();
  direct.close();
  service.child.kill('SIGTERM');
  callerServer.forceShutdown();

  if (!only || only.includes('reverse-10k')) {
    for (const transport of ['reverse', 'reverse-own'] as const) {
      runs.push(await reverseScale(quick ? 2000 : 10_000, transport));
    }
  }

  const meta = {
    node: process.version,
    cpus: cpus().length,
    cpu_model: cpus()[0]?.model ?? '',
    memory_gib: Math.round(totalmem() / 2 ** 30),
    date: new Date().toISOString(),
    seconds_per_run: seconds,
    rounds,
    quick,
    warm_up: warmUp,
    tunnel_channel_options: tunnelChannelOptions,
    ...(h2Window !== undefined && { h2_window: h2Window }),
    ...(handlerH2Window !== undefined && { handler_h2_window: handlerH2Window }),
    ...(clientH2Window !== undefined && { client_h2_window: clientH2Window }),
    ...(maxChunkSize !== undefined && { max_chunk_size: maxChunkSize }),
  };
  const jsonFile = flag('--json');
  if (jsonFile) writeFileSync(jsonFile, `${JSON.stringify({ runs, meta }, null, 2)}\n`);
  const svgFile = flag('--svg');
  if (svgFile) writeFileSync(svgFile, ratioChart(runs, meta.date));
}

function print(run: Run, metric: 'qps' | 'mbps'): void {
  const value = metric === 'qps' ? `${(run.qps ?? 0).toFixed(0)} qps` : `${(run.mbps ?? 0).toFixed(1)} MB/s`;
  const lat =
    run.p50_ms !== undefined
      ? `${run.p50_ms.toFixed(2)} / ${(run.p99_ms ?? 0).toFixed(2)}`
      : run.slowest_ms !== undefined
        ? `slowest ${run.slowest_ms.toFixed(0)}, median ${(run.median_ms ?? 0).toFixed(0)}`
        : '';
  const ratio = run.ratio_to_direct !== undefined ? `${run.ratio_to_direct.toFixed(2)}x` : '';
  const cpu =
    run.cpu_caller_us_per_op !== undefined
      ? `cpu ${run.cpu_caller_us_per_op.toFixed(1)} + ${(run.cpu_service_us_per_op ?? 0).toFixed(1)} us/op`
      : '';
  console.log(
    `${run.scenario.padEnd(15)}${run.transport.padEnd(12)}${value.padEnd(16)}${lat.padEnd(28)}${ratio.padEnd(8)}${cpu}`,
  );
}

/** User + system CPU time of process `pid` so far, in µs (Linux /proc; 0 elsewhere). */
function processCpuUs(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1e6) / 100;
  } catch {
    return 0;
  }
}

/** The mean of each figure over a transport's rounds (rounds last equally long). */
function meanOf(results: Measured[]): Measured {
  const mean: Measured = {};
  for (const key of [
    'qps',
    'p50_ms',
    'p99_ms',
    'mbps',
    'slowest_ms',
    'median_ms',
    'cpu_caller_us_per_op',
    'cpu_service_us_per_op',
  ] as const) {
    const values = results.map((r) => r[key]).filter((v): v is number => v !== undefined);
    if (values.length > 0) mean[key] = values.reduce((a, b) => a + b, 0) / values.length;
  }
  return mean;
}

/**
 * Scenario 6: N idle reverse tunnels held by one handler process, dialed on
 * one grpc-js client (`reverse`) or one TunnelConnection (`reverse-own`).
 */
async function reverseScale(n: number, transport: 'reverse' | 'reverse-own'): Promise<Run> {
  const holder = spawnNode('./holder.js', [String(n)], ['--expose-gc']);
  const port = await holder.firstLine;
  const started = Date.now();
  const dialer = spawn(process.execPath, [here('./dialer.js'), `127.0.0.1:${port}`, String(n), transport], {
    stdio: 'inherit',
  });
  const line = await new Promise<string>((resolve) => {
    let out = '';
    holder.child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.trim());
    });
  });
  dialer.kill('SIGTERM');
  const r = JSON.parse(line) as Record<string, number>;
  const run: Run = {
    scenario: `reverse-${n >= 10_000 ? '10k' : n}`,
    transport,
    tunnels: r.tunnels,
    establish_ms: (r.all_open_at ?? 0) - started,
    rss_per_tunnel_kib: r.rss_per_tunnel_kib,
    heap_per_tunnel_kib: r.heap_per_tunnel_kib,
    call_each_ms: r.call_each_ms,
    failures: r.failures,
  };
  console.log(
    `${run.scenario.padEnd(15)}${transport.padEnd(12)}${`${r.tunnels} tunnels`.padEnd(16)}` +
      `open in ${run.establish_ms} ms, ${(r.rss_per_tunnel_kib ?? 0).toFixed(1)} KiB RSS + ` +
      `${(r.heap_per_tunnel_kib ?? 0).toFixed(1)} KiB heap each, one call on each in ${r.call_each_ms} ms` +
      `${r.failures ? `, ${r.failures} failed` : ''}`,
  );
  return run;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
