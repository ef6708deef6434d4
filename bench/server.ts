// The benchmark's server process: the bench service served directly and
// through the tunnel handler, on one port. Prints the port, then runs until killed.
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { TunnelServiceHandler } from '../src/index.js';
import { BenchService, benchImplementation } from './service.js';

const handler = new TunnelServiceHandler();
handler.addService(BenchService, benchImplementation);
const server = new Server();
server.addService(BenchService, benchImplementation);
handler.register(server);
server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.stdout.write(`${port}\n`);
});
process.on('SIGTERM', () => {
  server.forceShutdown();
  process.exit(0);
});
