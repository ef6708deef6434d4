// A forward tunnel: the client opens one tunnel RPC to the server and then
// calls the server's services through it, with an unchanged generated client.
import { credentials, Server, ServerCredentials } from '@grpc/grpc-js';
import { openTunnel, TunnelConnection, TunnelServiceHandler } from 'grpctunnel';
import { GreeterClient, GreeterService } from './gen/example/greeter.js';
import { greeterImplementation } from './greeter.js';

// Server: host services for tunnels, next to (or instead of) normal ones.
const handler = new TunnelServiceHandler();
handler.addService(GreeterService, greeterImplementation);
const server = new Server();
handler.register(server);
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
);

// Client: a connection to that server carries the tunnel (a grpc-js Client
// or Channel would too; this one skips grpc-js's call stack under the tunnel).
const connection = new TunnelConnection(`127.0.0.1:${port}`);
// connectTimeoutMs bounds the opening only; an AbortSignal given as `signal`
// would also close the tunnel later, whenever it fires.
const tunnel = await openTunnel(connection, { connectTimeoutMs: 5_000 });

// The tunnel is the channel of an ordinary generated client.
const greeter = new GreeterClient('ignored', credentials.createInsecure(), { channelOverride: tunnel });
greeter.sayHello({ name: 'tunnel', times: 0 }, (err, reply) => {
  if (err) throw err;
  console.log(reply.message); // hello, tunnel

  const stream = greeter.sayHellos({ name: 'tunnel', times: 2 });
  stream.on('data', (r: { message: string }) => console.log(r.message));
  stream.on('end', () => {
    tunnel.close(); // cancels anything still in flight and ends the tunnel RPC (a half-close, not a reset)
    connection.close();
    server.tryShutdown(() => console.log('done'));
  });
});
