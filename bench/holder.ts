// Scenario "reverse-10k", network-server side: a handler that holds N idle
// reverse tunnels. Prints its port; once N tunnels are open it measures
// memory, calls each tunnel once, prints one JSON line and exits.
// Run with --expose-gc so that memory is measured after a collection.
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { createTunnelClient, TunnelServiceHandler } from 'grpctunnel';
import { type AnyClient, BenchClient } from './clients.js';

const count = Number(process.argv[2] ?? 10_000);
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

const handler = new TunnelServiceHandler();
const server = new Server();
handler.register(server);
server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  gc();
  const before = process.memoryUsage();
  process.stdout.write(`${port}\n`);
  let opened = 0;
  handler.on('reverseTunnelOpen', () => {
    opened++;
    if (opened === count) void measure(before);
  });
});

async function measure(before: NodeJS.MemoryUsage): Promise<void> {
  const allOpenAt = Date.now();
  gc();
  const after = process.memoryUsage();
  const tunnels = handler.allReverseTunnels();
  const t0 = Date.now();
  let failures = 0;
  const batch = 500;
  for (let i = 0; i < tunnels.length; i += batch) {
    await Promise.all(
      tunnels.slice(i, i + batch).map(
        (t) =>
          new Promise<void>((resolve) => {
            const client = createTunnelClient(BenchClient, t.channel) as AnyClient;
            client.unary(Buffer.from('x'), (e: Error | null) => {
              if (e) failures++;
              resolve();
            });
          }),
      ),
    );
  }
  const result = {
    tunnels: tunnels.length,
    all_open_at: allOpenAt,
    rss_per_tunnel_kib: (after.rss - before.rss) / tunnels.length / 1024,
    heap_per_tunnel_kib: (after.heapUsed - before.heapUsed) / tunnels.length / 1024,
    call_each_ms: Date.now() - t0,
    failures,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  server.forceShutdown();
  process.exit(0);
}
