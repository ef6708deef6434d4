// Authentication both ways. The network server admits tunnels by token (a
// grpc-js server interceptor on tunneled calls reads the tunnel's metadata);
// the agent checks the network server's response headers before serving it.
import {
  credentials,
  Metadata,
  Server,
  ServerCredentials,
  ServerInterceptingCall,
  type ServerInterceptor,
  status,
} from '@grpc/grpc-js';
import { getTunnelInfo, openTunnel, ReverseTunnelServer, TunnelServiceHandler } from 'grpctunnel';
import { GreeterClient, type GreeterServer, GreeterService } from './gen/example/greeter.js';

const TOKENS = new Map([['s3cret', 'alice']]);

/** Rejects tunneled calls whose tunnel did not present a known bearer token. */
const requireTunnelToken: ServerInterceptor = (_method, call) =>
  new ServerInterceptingCall(call, {
    start: (next) =>
      next({
        onReceiveMetadata: (metadata, forward) => {
          const header = getTunnelInfo(call)?.metadata.get('authorization')[0]?.toString() ?? '';
          if (!TOKENS.has(header.replace(/^Bearer /, ''))) {
            call.sendStatus({ code: status.UNAUTHENTICATED, details: 'unknown tunnel token' });
          } else forward(metadata);
        },
      }),
  });

// Handlers can read who opened the tunnel that carried the call.
const whoAmI: GreeterServer = {
  sayHello(call, callback) {
    const tunnel = getTunnelInfo(call);
    const token =
      tunnel?.metadata
        .get('authorization')[0]
        ?.toString()
        .replace(/^Bearer /, '') ?? '';
    const who = TOKENS.get(token) ?? (tunnel?.identity as { gateway?: string } | undefined)?.gateway ?? 'nobody';
    callback(null, { message: `${call.request.name} via a ${tunnel?.kind} tunnel of ${who}` });
  },
  sayHellos(call) {
    call.end();
  },
};

// The network server: tunneled calls need a token; its response headers on
// tunnel RPCs carry a proof of its own identity for agents to check.
const handler = new TunnelServiceHandler({ interceptors: [requireTunnelToken] });
handler.addService(GreeterService, whoAmI);
const signsHeaders: ServerInterceptor = (_method, call) =>
  new ServerInterceptingCall(call, {
    sendMetadata: (metadata, next) => {
      metadata.set('x-gateway-proof', 'gateway-1');
      next(metadata);
    },
  });
const server = new Server({ interceptors: [signsHeaders] });
handler.register(server);
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
);
const connection = new GreeterClient(`127.0.0.1:${port}`, credentials.createInsecure());
const hello = (client: GreeterClient, name: string) =>
  new Promise<string>((resolve) =>
    client.sayHello({ name, times: 0 }, (err, r) => resolve(err ? `refused: ${err.details}` : r.message)),
  );

// Forward: a tunnel with a good token, then one without.
for (const token of ['s3cret', undefined]) {
  const metadata = new Metadata();
  if (token) metadata.set('authorization', `Bearer ${token}`);
  const tunnel = await openTunnel(connection, { metadata });
  const greeter = new GreeterClient('x', credentials.createInsecure(), { channelOverride: tunnel });
  console.log(await hello(greeter, 'forward call'));
  tunnel.close();
}

// Reverse: the agent serves only a network server that proves it is gateway-1.
const agent = new ReverseTunnelServer(connection, {
  authenticate: (headers) => {
    if (headers.get('x-gateway-proof')[0] !== 'gateway-1') throw new Error('unknown gateway');
    return { gateway: 'gateway-1' };
  },
});
agent.addService(GreeterService, whoAmI);
const served = agent.serve();
await handler.asChannel().waitForReady({ timeoutMs: 5_000 });
const back = new GreeterClient('agent', credentials.createInsecure(), { channelOverride: handler.asChannel() });
console.log(await hello(back, 'reverse call'));
agent.forceShutdown();
await served;
connection.close();
server.tryShutdown(() => console.log('done'));
