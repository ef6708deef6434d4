// The gateway embedded in a program (grpctunnel-gateway): hooks decide who
// may call and where calls go, an agent serves an implementation in-process,
// and the program calls its agent itself.
import { credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { AccessPolicy, GatewayRefusal, startAgent, startGateway } from 'grpctunnel-gateway';
import { GreeterClient, GreeterService } from './gen/example/greeter.js';
import { greeterImplementation } from './greeter.js';

const gateway = await startGateway({
  listen: '127.0.0.1:0', // callers
  agents: '127.0.0.1:0', // agents' reverse tunnels
  access: { policy: AccessPolicy.parse('allow alice edge-1\n') },
  hooks: {
    // Who is calling: replaces caller tokens and client certificates.
    async authenticateCaller(call) {
      const key = call.metadata.get('x-api-key')[0]?.toString();
      if (key === 'banned') throw new GatewayRefusal(status.PERMISSION_DENIED, 'this key is banned');
      return key === 'alice-key' ? { name: 'alice' } : undefined; // undefined: UNAUTHENTICATED
    },
    // Where the call goes: undefined leaves it to the grpctunnel-agent header.
    routeCall: (call) => (call.metadata.get('x-site')[0] === 'berlin' ? 'edge-1' : undefined),
  },
});

// An agent (here in the same process) that serves Greeter itself, with no target.
const agent = startAgent({
  gateway: gateway.agentsAddress,
  id: 'edge-1',
  tunnels: 1,
  security: { insecure: true },
  services: (server) => server.addService(GreeterService, greeterImplementation),
});

// A caller of the gateway. In its first minute the gateway holds a call
// for an agent that has not arrived yet, so no wait is needed here.
const caller = new GreeterClient(gateway.listenAddress, credentials.createInsecure());
const hello = (key: string) =>
  new Promise<string>((resolve) => {
    const metadata = new Metadata();
    metadata.set('x-api-key', key);
    metadata.set('x-site', 'berlin');
    caller.sayHello({ name: key, times: 0 }, metadata, (err: ServiceError | null, reply) =>
      resolve(err ? `refused: ${status[err.code]} ${err.details}` : reply.message),
    );
  });
console.log(await hello('alice-key')); // hello, alice-key
console.log(await hello('banned')); // refused: PERMISSION_DENIED this key is banned
console.log(await hello('nobody')); // refused: UNAUTHENTICATED ...

// The embedding program sees its agents and calls them itself.
console.log(JSON.stringify([...gateway.agents()])); // [["edge-1",1]]
const direct = new GreeterClient('', credentials.createInsecure(), { channelOverride: gateway.channelFor('edge-1') });
direct.sayHello({ name: 'the host', times: 0 }, async (err, reply) => {
  console.log(err ? `error ${err.code}` : reply.message); // hello, the host
  caller.close();
  await agent.stop();
  await gateway.close();
  console.log('done');
});
