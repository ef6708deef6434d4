// Run as a child process by tunnel-connection.test.ts: opens a forward
// tunnel to the address in argv[2], on a grpc-js client (argv[3] 'grpc-js')
// or a TunnelConnection ('own'), makes one call, closes the tunnel and
// leaves the connection open. The process must then exit on its own, as a
// grpc-js client with no call in flight lets it.
import { credentials } from '@grpc/grpc-js';
import { openTunnel, TunnelConnection } from 'grpctunnel';
import { unary } from '../helpers/calls.js';
import { EchoClient } from '../helpers/echo-service.js';

const [address, way] = process.argv.slice(2) as [string, string];
const connection =
  way === 'own' ? new TunnelConnection(address) : new EchoClient(address, credentials.createInsecure());
const tunnel = await openTunnel(connection);
const echo = new EchoClient('tunnel', credentials.createInsecure(), { channelOverride: tunnel });
const result = await unary(echo, Buffer.from('x'));
tunnel.close();
await tunnel.closed;
console.log(JSON.stringify({ error: result.error?.code ?? null }));
