// tunneltestsvr: the tunnel test server of INTEROP.md, interchangeable with
// the Go reference's. `node tunneltestsvr.js -port 26354 [-no-flow-control]`
import { credentials, Server, ServerCredentials, type ServiceError, status as Status } from '@grpc/grpc-js';
import { TunnelServiceHandler } from 'grpctunnel';
import { parseFlags } from '#gateway/cli/flags.js';
import { TestServiceClient, TestServiceService } from './gen/grpchantesting/test.js';
import { type TunnelTestServiceServer, TunnelTestServiceService } from './gen/tunneltest/tunneltest.js';
import { fatal, log } from './log.js';
import { sendRPCs } from './send-rpcs.js';
import { testServiceImplementation } from './test-service.js';

function main(): void {
  const flags = parseFlags(
    {
      port: { kind: 'int', default: 26354, usage: 'the port on which this server will listen' },
      'no-flow-control': { kind: 'bool', default: false, usage: 'disables flow control' },
    },
    process.argv.slice(2),
  );
  const handler = new TunnelServiceHandler({
    affinityKey: (tunnel) => tunnel.metadata.get('test-client-key')[0]?.toString() ?? '',
    flowControl: !flags['no-flow-control'],
  });
  // Reachable only through forward tunnels.
  handler.addService(TestServiceService, testServiceImplementation());

  const tester: TunnelTestServiceServer = {
    triggerTestRpCs(call, callback) {
      const key = call.request.clientKey;
      const pool = handler.keyAsChannel(key);
      void pool
        .waitForReady({ timeoutMs: 1000 })
        .then(async () => {
          log(`Sending RPCs over reverse tunnel to ${key}`);
          const client = new TestServiceClient(key, credentials.createInsecure(), { channelOverride: pool });
          await sendRPCs(client);
          callback(null, {});
        })
        .catch((err: ServiceError) => {
          log(`Sending RPCs over reverse tunnel to ${key} failed: ${err.message}`);
          callback({ code: err.code ?? Status.UNKNOWN, details: err.details ?? err.message });
        });
    },
  };

  const server = new Server();
  handler.register(server);
  server.addService(TunnelTestServiceService, tester);
  server.bindAsync(`127.0.0.1:${flags.port}`, ServerCredentials.createInsecure(), (err, port) => {
    if (err) fatal(err);
    log(`Listening on 127.0.0.1:${port}`);
  });

  // Stop cleanly on a signal: running calls get a moment to finish.
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void handler.tryShutdown();
    const force = setTimeout(() => server.forceShutdown(), 2000);
    server.tryShutdown(() => {
      clearTimeout(force);
      process.exit(0);
    });
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

try {
  main();
} catch (err) {
  fatal(err);
}
