// The same kind of tunnel used by a nice-grpc client: promises, async
// iterables, AbortSignal per call.
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { openTunnel, TunnelConnection, TunnelServiceHandler } from 'grpctunnel';
import { type Channel, createClient } from 'nice-grpc';
import { GreeterService } from './gen/example/greeter.js';
import { greeterImplementation } from './greeter.js';

const handler = new TunnelServiceHandler();
handler.addService(GreeterService, greeterImplementation);
const server = new Server();
handler.register(server);
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
);
const connection = new TunnelConnection(`127.0.0.1:${port}`);
const tunnel = await openTunnel(connection);

// nice-grpc types its channel as grpc-js's Channel class; a TunnelChannel
// implements the same interface, hence the cast.
const greeter = createClient(GreeterService, tunnel as unknown as Channel);
const reply = await greeter.sayHello({ name: 'nice-grpc', times: 0 });
console.log(reply.message); // hello, nice-grpc
for await (const r of greeter.sayHellos({ name: 'nice-grpc', times: 2 })) console.log(r.message);

tunnel.close();
connection.close();
await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
console.log('done');
