// createTunnelClient: a generated client on a tunnel in one call, and what
// closing the tunnel does to a call in flight.
import { Server, ServerCredentials, status } from '@grpc/grpc-js';
import { createTunnelClient, openTunnel, TunnelConnection, TunnelServiceHandler } from 'grpctunnel';
import { GreeterClient, type GreeterServer, GreeterService } from './gen/example/greeter.js';
import { greeterImplementation } from './greeter.js';

const handler = new TunnelServiceHandler();
const neverEnding: GreeterServer = {
  ...greeterImplementation,
  // A stream that never ends by itself.
  sayHellos(call) {
    call.write({ message: 'first' });
  },
};
handler.addService(GreeterService, neverEnding);
const server = new Server();
handler.register(server);
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
);
const connection = new TunnelConnection(`127.0.0.1:${port}`);
const tunnel = await openTunnel(connection);
const greeter = createTunnelClient(GreeterClient, tunnel);

const stream = greeter.sayHellos({ name: 'x', times: 0 });
stream.on('data', () => tunnel.close()); // close the tunnel mid-call
stream.on('error', (err: { code: number }) => {
  console.log(err.code === status.CANCELLED ? 'in-flight call: CANCELLED' : `unexpected code ${err.code}`);
});
const reason = await tunnel.closed;
console.log(`tunnel closed${reason ? `: ${reason.message}` : ''}`);
connection.close();
await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
console.log('done');
