// The benchmark's server process: the bench service served directly and
// through the tunnel handler, on one port; with `--reverse ADDRESS` it also
// dials ADDRESS and serves the same service through a reverse tunnel.
// Prints the port, then runs until SIGTERM.
import { credentials, Metadata, Server, ServerCredentials } from '@grpc/grpc-js';
import { ReverseTunnelServer, TUNNEL_CHANNEL_OPTIONS, TunnelConnection, TunnelServiceHandler } from 'grpctunnel';
import { BenchClient } from './clients.js';
import { BenchService, benchImplementation } from './service.js';

const numberFlag = (name: string) => {
  const at = process.argv.indexOf(name);
  return at >= 0 ? Number(process.argv[at + 1]) : undefined;
};
const handlerH2Window = numberFlag('--handler-h2-window');
const clientH2Window = numberFlag('--client-h2-window');
const maxChunkSize = numberFlag('--max-chunk');
const chunkOption = maxChunkSize !== undefined ? { maxChunkSize } : {};
const handler = new TunnelServiceHandler({
  ...chunkOption,
  ...(handlerH2Window !== undefined && { http2WindowSize: handlerH2Window }),
});
handler.addService(BenchService, benchImplementation);
const server = new Server();
server.addService(BenchService, benchImplementation);
handler.register(server);
server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.stdout.write(`${port}\n`);
});

const at = process.argv.indexOf('--reverse');
if (at >= 0) {
  const options = process.argv.includes('--tunnel-channel-options') ? TUNNEL_CHANNEL_OPTIONS : {};
  const address = process.argv[at + 1] as string;
  const reverseOptions = {
    ...chunkOption,
    ...(clientH2Window !== undefined && { http2WindowSize: clientH2Window }),
  };
  // Two reverse tunnels, told apart by the caller's handler (x-bench-kind): one
  // over a grpc-js client, one on a TunnelConnection (the library's own HTTP/2 session).
  const own = new TunnelConnection(address, {
    ...(clientH2Window !== undefined && { http2WindowSize: clientH2Window }),
  });
  for (const [kind, connection] of [
    ['grpc-js', new BenchClient(address, credentials.createInsecure(), options)],
    ['own', own],
  ] as const) {
    const reverse = new ReverseTunnelServer(connection, reverseOptions);
    reverse.addService(BenchService, benchImplementation);
    const metadata = new Metadata();
    metadata.set('x-bench-kind', kind);
    void reverse.keepOpen({ metadata, backoff: { initialDelayMs: 50, maxDelayMs: 500 } });
  }
}

process.on('SIGTERM', () => {
  server.forceShutdown();
  process.exit(0);
});
