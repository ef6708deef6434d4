// Experiment B of issue 16 (a throwaway upper bound, not a product): the
// forward tunnel RPC carried on a raw node:http2 client session, with gRPC's
// length-prefixed framing done here, under the library's own TunnelChannel.
// It answers how much a client side without grpc-js's call stack would buy.
//
// node dist/bench/raw-tunnel.js [--seconds N] [--rounds N] [--interop PORT [--kind grpc-js|raw-h2]]
// Spawns bench/server.js and measures 1 KiB ping-pong, small unary and 1 MiB
// server streaming three ways in interleaved rounds: direct grpc-js,
// openTunnel (grpc-js client side), and the raw-http2 tunnel; prints ratios
// and CPU of both processes per op (per MB for streaming). The prototype
// has none of what a product needs (TLS, credentials, keepalive, errors,
// reconnection): figures only.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, constants } from 'node:http2';
import { fileURLToPath } from 'node:url';
import { credentials, Metadata } from '@grpc/grpc-js';
import { openTunnel } from 'grpctunnel';
import type { ClientFrame, ServerFrame } from '#grpctunnel/engine/frames.js';
import { advertiseChunkSize, chunkOffer, takePeerChunkOffer, tunnelChunkSizes } from '#grpctunnel/grpc/chunk-size.js';
import { TunnelChannelImpl } from '#grpctunnel/grpc/client/tunnel-channel.js';
import { decodeServerToClient, encodeClientToServer, OPEN_TUNNEL_PATH } from '#grpctunnel/grpc/tunnel-service.js';
import { countingClient } from '../interop/counting.js';
import { TestServiceClient } from '../interop/gen/grpchantesting/test.js';
import { sendRPCs } from '../interop/send-rpcs.js';
import { type AnyClient, BenchClient } from './clients.js';
import { type Measured, pingPongLoad, streamLoad, unaryLoad } from './loads.js';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: number) => {
  const at = argv.indexOf(name);
  return at >= 0 ? Number(argv[at + 1]) : dflt;
};
const seconds = opt('--seconds', 6);
const rounds = opt('--rounds', 3);

/** Opens a forward tunnel on a raw node:http2 session: the tunnel RPC with no grpc-js under it. */
async function rawTunnel(address: string): Promise<{ channel: TunnelChannelImpl; close(): void }> {
  const session = connect(`http://${address}`, { settings: { initialWindowSize: 1 << 20 } });
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('error', reject);
  });
  session.setLocalWindowSize(1 << 20);
  const md = new Metadata();
  md.set('grpctunnel-negotiate', 'on');
  const offer = chunkOffer(undefined, undefined);
  advertiseChunkSize(md, offer);
  const headers: Record<string, string> = {
    ':method': 'POST',
    ':path': OPEN_TUNNEL_PATH,
    ':scheme': 'http',
    'content-type': 'application/grpc',
    te: 'trailers',
  };
  for (const [k, v] of Object.entries(md.getMap())) headers[k] = String(v);
  const stream = session.request(headers, { endStream: false });
  const listeners: Array<(f: ServerFrame) => void> = [];
  // gRPC length-prefixed messages, reassembled from DATA pieces with one copy per message.
  let parts: Buffer[] = [];
  let have = 0;
  let need = -1;
  stream.on('data', (data: Buffer) => {
    parts.push(data);
    have += data.length;
    for (;;) {
      if (need < 0) {
        if (have < 5) return;
        const head = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
        parts = [head];
        need = 5 + head.readUInt32BE(1);
      }
      if (have < need) return;
      const all = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, have);
      const frame = decodeServerToClient(all.subarray(5, need));
      const rest = all.subarray(need);
      parts = rest.length > 0 ? [rest] : [];
      have = rest.length;
      need = -1;
      for (const l of listeners) l(frame);
    }
  });
  const frames = {
    write(frame: ClientFrame, callback: () => void): boolean {
      const body = encodeClientToServer(frame);
      const out = Buffer.allocUnsafe(5 + body.length);
      out[0] = 0;
      out.writeUInt32BE(body.length, 1);
      body.copy(out, 5);
      return stream.write(out, callback);
    },
    on(_event: 'data', listener: (frame: ServerFrame) => void) {
      listeners.push(listener);
    },
  };
  const response = await new Promise<Record<string, unknown>>((resolve) => stream.once('response', resolve));
  const answer = new Metadata();
  for (const [k, v] of Object.entries(response)) if (!k.startsWith(':') && typeof v === 'string') answer.set(k, v);
  const chunks = tunnelChunkSizes(offer, takePeerChunkOffer(answer));
  const channel = await new Promise<TunnelChannelImpl>((resolve) => {
    new TunnelChannelImpl({
      frames,
      negotiation: { negotiated: answer.get('grpctunnel-negotiate')[0] === 'on', chunks },
      tuning: {},
      info: { target: address, peer: address, authContext: null },
      endRpc: () => stream.close(constants.NGHTTP2_NO_ERROR),
      onReady: resolve,
    });
  });
  return {
    channel,
    close() {
      channel.close();
      session.close();
    },
  };
}

function cpuUs(pid: number | undefined): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1e6) / 100;
}

/**
 * `--interop PORT`: the INTEROP.md load ("send RPCs", four loops for 5 s)
 * against a running tunneltestsvr (TS or Go) on 127.0.0.1:PORT, through a
 * forward tunnel opened by openTunnel and through the raw-h2 tunnel, in
 * alternating rounds; prints the RPCs each completed.
 */
async function interop(port: number): Promise<void> {
  const address = `127.0.0.1:${port}`;
  const insecure = credentials.createInsecure();
  for (let r = 0; r < rounds; r++) {
    const kinds = (['grpc-js tunnel', 'raw-h2 tunnel'] as const).filter(
      (k) => !argv.includes('--kind') || k.startsWith(argv[argv.indexOf('--kind') + 1] ?? ''),
    );
    for (const kind of kinds) {
      const connection = new BenchClient(address, insecure, { 'grpc.use_local_subchannel_pool': 1 });
      const opened =
        kind === 'raw-h2 tunnel'
          ? await rawTunnel(address)
          : await openTunnel(connection).then((t) => ({ channel: t, close: () => t.close() }));
      const counter = countingClient();
      const client = new TestServiceClient('t', insecure, {
        channelOverride: opened.channel,
        interceptors: [counter.interceptor],
      });
      const load0 = readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
      await sendRPCs(client);
      console.log(`interop round ${r + 1} ${kind.padEnd(16)} ${counter.count()} RPCs (load ${load0})`);
      client.close();
      opened.close();
      connection.close();
    }
  }
}

async function main(): Promise<void> {
  if (argv.includes('--interop')) return interop(opt('--interop', 0));
  const server = spawn(process.execPath, [fileURLToPath(new URL('./server.js', import.meta.url))], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<string>((resolve) =>
    server.stdout.once('data', (d: Buffer) => resolve(d.toString().trim())),
  );
  const address = `127.0.0.1:${port}`;
  const insecure = credentials.createInsecure();
  const direct = new BenchClient(address, insecure, { 'grpc.use_local_subchannel_pool': 1 }) as AnyClient;
  const connection = new BenchClient(address, insecure, { 'grpc.use_local_subchannel_pool': 1 });
  const tunnel = await openTunnel(connection);
  const raw = await rawTunnel(address);
  const transports: Array<[string, AnyClient]> = [
    ['direct', direct],
    ['grpc-js tunnel', new BenchClient('t', insecure, { channelOverride: tunnel }) as AnyClient],
    ['raw-h2 tunnel', new BenchClient('r', insecure, { channelOverride: raw.channel }) as AnyClient],
  ];
  const small = Buffer.alloc(100, 1);
  for (const [name, load] of [
    ['pingpong-1k', (c: AnyClient) => pingPongLoad(c, seconds / rounds, 1024)],
    ['unary-c1', (c: AnyClient) => unaryLoad(c, seconds / rounds, 1, small)],
    ['stream-1mib', (c: AnyClient) => streamLoad(c, seconds / rounds, 1 << 20)],
  ] as const) {
    const metric = name === 'stream-1mib' ? 'mbps' : 'qps';
    const sums = new Map<string, { qps: number; caller: number; service: number }>();
    for (let r = 0; r < rounds; r++) {
      for (const [t, c] of transports) {
        await unaryLoad(c, 0.2, 4, small);
        const c0 = process.cpuUsage();
        const s0 = cpuUs(server.pid);
        const m: Measured = await load(c);
        const cu = process.cpuUsage(c0);
        const su = cpuUs(server.pid) - s0;
        const acc = sums.get(t) ?? { qps: 0, caller: 0, service: 0 };
        // Per op; for streaming, per MB.
        const ops = m.ops ?? ((m.mbps ?? 0) * seconds) / rounds;
        acc.qps += (m[metric] ?? 0) / rounds;
        acc.caller += (cu.user + cu.system) / ops / rounds;
        acc.service += su / ops / rounds;
        sums.set(t, acc);
      }
    }
    const base = sums.get('direct')?.qps ?? 1;
    for (const [t, s] of sums) {
      console.log(
        `${name.padEnd(13)}${t.padEnd(16)}${s.qps.toFixed(0).padStart(7)} ${metric} ${(s.qps / base).toFixed(2)}x  cpu ${s.caller.toFixed(1)} + ${s.service.toFixed(1)} us/${metric === 'qps' ? 'op' : 'MB'}`,
      );
    }
  }
  raw.close();
  tunnel.close();
  connection.close();
  direct.close();
  server.kill('SIGTERM');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
