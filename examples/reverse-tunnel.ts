// A reverse tunnel: the process that serves (say, on a laptop behind NAT)
// dials out to the network server, which then calls it back through the
// tunnel with an ordinary generated client.
import { credentials, Metadata, Server, ServerCredentials, status } from '@grpc/grpc-js';
import { ReverseTunnelServer, TunnelConnection, TunnelServiceHandler } from 'grpctunnel';
import { GreeterClient, GreeterService } from './gen/example/greeter.js';
import { greeterImplementation } from './greeter.js';

// Network server: accepts reverse tunnels and pools them by an agent id.
// A tunnel without one is refused (thrown statuses reach the agent), rather
// than pooled under the key `undefined`.
const handler = new TunnelServiceHandler({
  affinityKey: (tunnel) => {
    const id = tunnel.metadata.get('x-agent-id')[0];
    if (typeof id !== 'string' || id === '') throw { code: status.UNAUTHENTICATED, details: 'x-agent-id is required' };
    return id;
  },
});
handler.on('reverseTunnelOpen', (tunnel) => console.log(`agent ${tunnel.key} connected`));
const server = new Server();
handler.register(server);
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
);

// The agent: serves Greeter through tunnels it opens itself, and keeps two
// open, reconnecting with backoff if they drop.
const connection = new TunnelConnection(`127.0.0.1:${port}`);
const agent = new ReverseTunnelServer(connection);
agent.addService(GreeterService, greeterImplementation);
const metadata = new Metadata();
metadata.set('x-agent-id', 'edge-1');
const running = agent.keepOpen({ tunnels: 2, metadata });

// Back on the network server: call the agent through its pool.
const pool = handler.keyAsChannel('edge-1');
await pool.waitForReady({ timeoutMs: 5_000 });
const edge = new GreeterClient('edge-1', credentials.createInsecure(), { channelOverride: pool });
const reply = await new Promise<string>((resolve, reject) =>
  edge.sayHello({ name: 'from the network server', times: 0 }, (err, r) => (err ? reject(err) : resolve(r.message))),
);
console.log(reply); // hello, from the network server

// An agent that does not say who it is gets the refusal, not a tunnel.
const anonymous = await new ReverseTunnelServer(connection).serve();
console.log(`anonymous agent: started=${anonymous.started}, code=${anonymous.error?.code}`);

await agent.tryShutdown(); // running calls finish, then the tunnels end
await running;
connection.close();
server.tryShutdown(() => console.log('done'));
