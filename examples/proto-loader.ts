// The README's quick start: a forward tunnel with no generated code. The
// service is loaded from its .proto at run time with @grpc/proto-loader, as
// many grpc-js programs do; the implementation is an ordinary grpc-js one.
import { fileURLToPath } from 'node:url';
import {
  credentials,
  type GrpcObject,
  loadPackageDefinition,
  Server,
  ServerCredentials,
  type ServiceClientConstructor,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { openTunnel, TunnelConnection, TunnelServiceHandler } from 'grpctunnel';

// examples/proto/example/greeter.proto (this file runs from dist/examples/).
const PROTO = fileURLToPath(new URL('../../examples/proto/example/greeter.proto', import.meta.url));
const example = loadPackageDefinition(loadSync(PROTO)).example as GrpcObject;
const Greeter = example.Greeter as ServiceClientConstructor;
// proto-loader's clients are untyped; name the method this program calls.
type Reply = { message: string };
type GreeterClient = { SayHello(request: { name: string }, callback: (err: Error | null, reply: Reply) => void): void };

// Server: a TunnelServiceHandler hosts services for the tunnels it accepts.
const handler = new TunnelServiceHandler();
handler.addService(Greeter.service, {
  SayHello: (call: { request: { name: string } }, callback: (err: null, reply: Reply) => void) =>
    callback(null, { message: `hello, ${call.request.name}` }),
});
const server = new Server();
handler.register(server);
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
);

// Client: open a tunnel on a connection to that server, and use it as the
// channel of an ordinary client.
const connection = new TunnelConnection(`127.0.0.1:${port}`);
const tunnel = await openTunnel(connection, { connectTimeoutMs: 5_000 });
const greeter = new Greeter('ignored', credentials.createInsecure(), { channelOverride: tunnel });
(greeter as unknown as GreeterClient).SayHello({ name: 'proto-loader' }, (err, reply) => {
  if (err) throw err;
  console.log(reply.message); // hello, proto-loader
  tunnel.close();
  connection.close();
  server.tryShutdown(() => console.log('done'));
});
