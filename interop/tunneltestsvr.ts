// tunneltestsvr: the tunnel test server of INTEROP.md, interchangeable with
// the Go reference's. `node tunneltestsvr.js -port 26354 [-no-flow-control] [-own-server=false]`
// -own-server (this implementation only, on by default): the tunnel service
// on node:http2 directly (the handler's handleHttp2Stream), the library's
// fastest server path; =false serves everything from a grpc-js Server.
import { credentials, Server, ServerCredentials, type ServiceError, status as Status } from '@grpc/grpc-js';
import { TunnelServiceHandler } from 'grpctunnel';
import { parseFlags } from '#gateway/cli/flags.js';
import { TestServiceClient, TestServiceService } from './gen/grpchantesting/test.js';
import { type TunnelTestServiceServer, TunnelTestServiceService } from './gen/tunneltest/tunneltest.js';
import { fatal, log } from './log.js';
import { ownServer } from './own-server.js';
import { sendRPCs } from './send-rpcs.js';
import { testServiceImplementation } from './test-service.js';

function main(): void {
  const flags = parseFlags(
    {
      port: { kind: 'int', default: 26354, usage: 'the port on which this server will listen' },
      'no-flow-control': { kind: 'bool', default: false, usage: 'disables flow control' },
      'own-server': {
        kind: 'bool',
        default: true,
        usage:
          "serves on node:http2 directly (handleHttp2Stream); =false: on a grpc-js Server (this implementation's own flag)",
      },
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

  const server = flags['own-server'] ? ownServerOf(handler, tester) : grpcServer(handler, tester);
  server.listen(flags.port, (port) => log(`Listening on 127.0.0.1:${port}`));

  // Stop cleanly on a signal: running calls get a moment to finish.
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void handler.tryShutdown();
    const force = setTimeout(() => server.forceShutdown(), 2000);
    server.tryShutdown().then(() => {
      clearTimeout(force);
      process.exit(0);
    });
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

/** The server the tunnel service and TunnelTestService listen on, either kind. */
interface TestServer {
  /** Listens on 127.0.0.1:`port` (0: any free port). */
  listen(port: number, onListening: (port: number) => void): void;
  tryShutdown(): Promise<void>;
  forceShutdown(): void;
}

/** Both services on a node:http2 server (-own-server): see own-server.ts. */
function ownServerOf(handler: TunnelServiceHandler, tester: TunnelTestServiceServer): TestServer {
  const server = ownServer(handler, {
    definition: TunnelTestServiceService.triggerTestRpCs,
    implementation: tester.triggerTestRpCs,
  });
  return { ...server, listen: (port, onListening) => server.listen(port, onListening, fatal) };
}

/** Both services on a grpc-js Server (the default). */
function grpcServer(handler: TunnelServiceHandler, tester: TunnelTestServiceServer): TestServer {
  const server = new Server();
  handler.register(server);
  server.addService(TunnelTestServiceService, tester);
  return {
    listen: (port, onListening) =>
      server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err, bound) => {
        if (err) fatal(err);
        onListening(bound);
      }),
    tryShutdown: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
    forceShutdown: () => server.forceShutdown(),
  };
}

try {
  main();
} catch (err) {
  fatal(err);
}
