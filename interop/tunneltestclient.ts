// tunneltestclient: the tunnel test client of INTEROP.md, interchangeable
// with the Go reference's.
// `node tunneltestclient.js -server-port 26354 [-no-flow-control] -tunnel-type forward|reverse|both [-own-connection=false]`
// -own-connection (this implementation only, on by default as in the README's
// quick start): the tunnel RPCs run on a TunnelConnection, the library's own
// HTTP/2 session; =false runs them on the test service's grpc-js client.
import { randomBytes } from 'node:crypto';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { openTunnel, ReverseTunnelServer, TunnelConnection } from 'grpctunnel';
import { parseFlags } from '#gateway/cli/flags.js';
import { countingClient, countingServer } from './counting.js';
import { TestServiceClient, TestServiceService } from './gen/grpchantesting/test.js';
import { TunnelTestServiceClient } from './gen/tunneltest/tunneltest.js';
import { fatal, log } from './log.js';
import { sendRPCs } from './send-rpcs.js';
import { testServiceImplementation } from './test-service.js';

async function main(): Promise<void> {
  const flags = parseFlags(
    {
      'server-port': { kind: 'int', default: 26354, usage: 'the port on which the server is listening' },
      'no-flow-control': { kind: 'bool', default: false, usage: 'disables flow control' },
      'own-connection': {
        kind: 'bool',
        default: true,
        usage: 'tunnel RPCs on a TunnelConnection (the library’s own HTTP/2 session); =false: on a grpc-js client',
      },
      'tunnel-type': {
        kind: 'string',
        default: 'both',
        usage: 'type of tunnel to test, can be "forward", "reverse", or "both"',
      },
    },
    process.argv.slice(2),
  );
  const type = flags['tunnel-type'];
  if (type !== 'forward' && type !== 'reverse' && type !== 'both') {
    throw new Error(`tunnel type ${JSON.stringify(type)} is not valid; must be one of "forward", "reverse", or "both"`);
  }
  const flowControl = !flags['no-flow-control'];
  const address = `127.0.0.1:${flags['server-port']}`;
  const connection = new TunnelTestServiceClient(address, credentials.createInsecure());
  await new Promise<void>((resolve, reject) =>
    connection.waitForReady(Date.now() + 5000, (err) =>
      err ? reject(new Error(`failed to connect to ${address}: ${err.message}`)) : resolve(),
    ),
  );

  // The tunnels' connection: the test service client's, or one of the library's own.
  const tunnels = flags['own-connection'] ? new TunnelConnection(address) : connection;

  if (type !== 'reverse') {
    const tunnel = await openTunnel(tunnels, { flowControl });
    log('Tunnel created.');
    const counter = countingClient();
    const client = new TestServiceClient('tunnel', credentials.createInsecure(), {
      channelOverride: tunnel,
      interceptors: [counter.interceptor],
    });
    try {
      await sendRPCs(client);
    } finally {
      tunnel.close();
    }
    log(`Issued ${counter.count()} requests over tunnel.`);
  }

  if (type !== 'forward') {
    const key = randomBytes(32).toString('hex');
    const counter = countingServer();
    const reverse = new ReverseTunnelServer(tunnels, { flowControl, interceptors: [counter.interceptor] });
    reverse.addService(TestServiceService, testServiceImplementation());
    const metadata = new Metadata();
    metadata.set('test-client-key', key);
    const served = reverse.serve({ metadata }).then((result) => {
      if (!result.started) throw result.error ?? new Error('the reverse tunnel did not start');
    });
    log(`Reverse tunnel started (key = ${key}).`);
    const triggered = new Promise<void>((resolve, reject) =>
      connection.triggerTestRpCs({ clientKey: key }, (err: ServiceError | null) => (err ? reject(err) : resolve())),
    );
    // Whichever fails first is the error; a tunnel that ends after the
    // trigger succeeded is fine.
    await Promise.race([triggered, served.then(() => triggered)]);
    reverse.forceShutdown();
    await served.catch(() => undefined);
    log(`Served ${counter.count()} requests over reverse tunnel.`);
  }
  tunnels.close();
  connection.close();
}

main().then(
  () => process.exit(0),
  (err: unknown) => fatal(err),
);
