// npm run bench [-- --quick] [--json FILE] [--window N] [--update-threshold N]: the same work direct over
// grpc-js and through a forward tunnel, in one run, with the ratios. The
// server runs in its own process.
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { type Client, credentials, makeGenericClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { openTunnel } from '../src/index.js';
import { BenchService } from './service.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const jsonAt = args.indexOf('--json');
const jsonFile = jsonAt >= 0 ? args[jsonAt + 1] : undefined;
const seconds = quick ? 2 : 5;

const BenchClient = makeGenericClientConstructor(BenchService, 'Bench');
type AnyClient = Client & Record<string, any>;

interface Run {
  scenario: string;
  transport: string;
  qps?: number;
  p50_ms?: number;
  p99_ms?: number;
  mbps?: number;
  ratio_to_direct?: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
}

async function unaryLoad(
  client: AnyClient,
  concurrency: number,
  payload: Buffer,
): Promise<Omit<Run, 'scenario' | 'transport'>> {
  const latencies: number[] = [];
  const end = Date.now() + seconds * 1000;
  const worker = async () => {
    while (Date.now() < end) {
      const t0 = process.hrtime.bigint();
      await new Promise<void>((resolve, reject) =>
        client.unary(payload, (err: ServiceError | null) => (err ? reject(err) : resolve())),
      );
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  };
  const start = Date.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (Date.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return { qps: latencies.length / elapsed, p50_ms: percentile(latencies, 0.5), p99_ms: percentile(latencies, 0.99) };
}

async function streamLoad(client: AnyClient, size: number): Promise<Omit<Run, 'scenario' | 'transport'>> {
  const request = Buffer.alloc(4);
  request.writeUInt32BE(size, 0);
  const call = client.stream(request);
  let bytes = 0;
  let started = 0;
  call.on('error', () => {});
  await new Promise<void>((resolve) => {
    call.on('data', (m: Buffer) => {
      if (started === 0) started = Date.now();
      bytes += m.length;
      if (Date.now() - started >= seconds * 1000) {
        call.cancel();
        resolve();
      }
    });
  });
  const elapsed = (Date.now() - started) / 1000;
  return { mbps: bytes / elapsed / 1e6 };
}

function startServer(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./server.js', import.meta.url))], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.stdout?.once('data', (d: Buffer) => resolve({ child, port: Number(d.toString().trim()) }));
    child.once('exit', (code) => reject(new Error(`bench server exited with ${code}`)));
  });
}

async function main(): Promise<void> {
  const { child, port } = await startServer();
  const address = `127.0.0.1:${port}`;
  // --h2-window N: grpc-js's HTTP/2 receive window on the client connections (both transports).
  const h2Window = args.indexOf('--h2-window');
  const channelOptions = h2Window >= 0 ? { 'grpc-node.flow_control_window': Number(args[h2Window + 1]) } : {};
  const direct = new BenchClient(address, credentials.createInsecure(), channelOptions) as AnyClient;
  const tunnelConnection = new BenchClient(address, credentials.createInsecure(), channelOptions);
  const numberFlag = (name: string) => {
    const at = args.indexOf(name);
    return at >= 0 ? Number(args[at + 1]) : undefined;
  };
  const initialWindowSize = numberFlag('--window');
  const windowUpdateThreshold = numberFlag('--update-threshold');
  const tunnel = await openTunnel(tunnelConnection, {
    ...(initialWindowSize !== undefined ? { initialWindowSize } : {}),
    ...(windowUpdateThreshold !== undefined ? { windowUpdateThreshold } : {}),
  });
  const forward = new BenchClient('tunnel', credentials.createInsecure(), { channelOverride: tunnel }) as AnyClient;
  const transports: Array<[string, AnyClient]> = [
    ['direct', direct],
    ['forward', forward],
  ];
  const small = Buffer.alloc(100, 1);
  const scenarios: Array<[string, (c: AnyClient) => Promise<Omit<Run, 'scenario' | 'transport'>>, keyof Run]> = [
    ['unary-c1', (c) => unaryLoad(c, 1, small), 'qps'],
    ['unary-c64', (c) => unaryLoad(c, 64, small), 'qps'],
    ['stream-1mib', (c) => streamLoad(c, 1 << 20), 'mbps'],
  ];
  const runs: Run[] = [];
  for (const [scenario, load, metric] of scenarios) {
    // Warm up both paths so JIT and connection setup do not count.
    for (const [, client] of transports) await unaryLoad(client, 4, small).catch(() => undefined);
    let directValue = 0;
    for (const [transport, client] of transports) {
      const result = await load(client);
      const value = result[metric as keyof typeof result] as number;
      if (transport === 'direct') directValue = value;
      const run: Run = { scenario, transport, ...result };
      if (transport !== 'direct') run.ratio_to_direct = value / directValue;
      runs.push(run);
      const fmt = (n: number | undefined, d = 1) => (n === undefined ? '' : n.toFixed(d));
      console.log(
        `${scenario.padEnd(12)} ${transport.padEnd(8)} ${metric === 'qps' ? `${fmt(result.qps, 0)} qps` : `${fmt(result.mbps)} MB/s`}`.padEnd(
          40,
        ) +
          (result.p50_ms !== undefined
            ? ` p50 ${fmt(result.p50_ms, 2)} ms p99 ${fmt(result.p99_ms, 2)} ms`
            : ''
          ).padEnd(34) +
          (run.ratio_to_direct !== undefined ? ` ${run.ratio_to_direct.toFixed(2)}x direct` : ''),
      );
    }
  }
  tunnel.close();
  tunnelConnection.close();
  direct.close();
  child.kill('SIGTERM');
  if (jsonFile) {
    const meta = {
      node: process.version,
      cpus: cpus().length,
      date: new Date().toISOString(),
      seconds_per_run: seconds,
    };
    writeFileSync(jsonFile, `${JSON.stringify({ runs, meta }, null, 2)}\n`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
