// Connect-ES service implementations served over a reverse tunnel: the agent
// dials out to the network server and serves a Connect `ServiceImpl` through
// the tunnel; the network server calls it back with a Connect client on the
// agent's pool.
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { Metadata, Server, ServerCredentials } from '@grpc/grpc-js';
import { ReverseTunnelServer, TunnelConnection, TunnelServiceHandler } from 'grpctunnel';
import { addConnectService, createTunnelTransport, getTunnelInfoFromContext } from 'grpctunnel/connect';
import { Greeter } from './gen-es/example/greeter_pb.js';

// Network server: accepts reverse tunnels, pooled by agent id.
const handler = new TunnelServiceHandler({ affinityKey: (tunnel) => tunnel.metadata.get('x-agent-id')[0] });
const server = new Server();
handler.register(server);
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
);

// The agent: a Connect implementation, served through the tunnels it opens.
const connection = new TunnelConnection(`127.0.0.1:${port}`);
const agent = new ReverseTunnelServer(connection);
addConnectService(agent, Greeter, {
  sayHello(req, ctx) {
    if (req.name === '') throw new ConnectError('name is required', Code.InvalidArgument);
    // Which tunnel carried the call (on the agent: the metadata it dialed with).
    const via = getTunnelInfoFromContext(ctx)?.metadata.get('x-agent-id')[0];
    return { message: `hello, ${req.name} (served by ${via})` };
  },
  async *sayHellos(req) {
    for (let i = 1; i <= req.times; i++) yield { message: `hello #${i}, ${req.name}` };
  },
});
const metadata = new Metadata();
metadata.set('x-agent-id', 'edge-1');
const running = agent.keepOpen({ tunnels: 1, metadata });

// Back on the network server: a Connect client on the agent's pool.
const pool = handler.keyAsChannel('edge-1');
await pool.waitForReady({ timeoutMs: 5_000 });
const edge = createClient(Greeter, createTunnelTransport(pool));
console.log((await edge.sayHello({ name: 'network server' })).message); // hello, network server (served by edge-1)
for await (const r of edge.sayHellos({ name: 'network server', times: 2 })) console.log(r.message);
try {
  await edge.sayHello({ name: '' });
} catch (err) {
  console.log(`${ConnectError.from(err).code === Code.InvalidArgument}: ${ConnectError.from(err).rawMessage}`);
}

await agent.tryShutdown();
await running;
connection.close();
server.tryShutdown(() => console.log('done'));
