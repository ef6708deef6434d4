// Scenario "reverse-10k", agent side: opens N reverse tunnels to ADDRESS on
// one connection (a grpc-js client, or a TunnelConnection for `reverse-own`),
// each serving the bench service, and keeps them until killed.
import { credentials } from '@grpc/grpc-js';
import { ReverseTunnelServer, TunnelConnection } from 'grpctunnel';
import { BenchClient } from './clients.js';
import { BenchService, benchImplementation } from './service.js';

const [address, n, transport] = process.argv.slice(2);
const connection =
  transport === 'reverse-own'
    ? new TunnelConnection(address as string)
    : new BenchClient(address as string, credentials.createInsecure());
const reverse = new ReverseTunnelServer(connection);
reverse.addService(BenchService, benchImplementation);
for (let i = 0; i < Number(n); i++) void reverse.serve();
process.on('SIGTERM', () => process.exit(0));
