import { type Client, credentials, Server, ServerCredentials } from '@grpc/grpc-js';
import type { TunnelServiceHandlerOptions } from '../../src/index.js';
import { type OpenTunnelOptions, openTunnel, type TunnelChannel, TunnelServiceHandler } from '../../src/index.js';
import { EchoClient, type EchoObservations, EchoService, echoImplementation } from './echo-service.js';

const running = new Set<Server>();

/** Starts a grpc-js server on 127.0.0.1 and a free port. */
export async function startServer(setup: (server: Server) => void): Promise<{ server: Server; address: string }> {
  const server = new Server();
  running.add(server);
  setup(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { server, address: `127.0.0.1:${port}` };
}

/** Stops a server at once (cancelling calls). */
export function stopServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    running.delete(server);
    server.forceShutdown();
    resolve();
  });
}

/**
 * Stops every server a test left running (a failed assertion skips its
 * cleanup); used as an `afterEach` hook so one failure cannot hang the run.
 */
export async function stopAllServers(): Promise<void> {
  await Promise.all([...running].map(stopServer));
}

/** A server with the tunnel service hosting the echo service, a client connection and a forward tunnel. */
export interface TunnelFixture {
  server: Server;
  handler: TunnelServiceHandler;
  address: string;
  connection: Client;
  tunnel: TunnelChannel;
  echo: EchoClient;
  seen: EchoObservations;
  close(): Promise<void>;
}

export async function forwardFixture(
  handlerOptions: TunnelServiceHandlerOptions = {},
  tunnelOptions: OpenTunnelOptions = {},
): Promise<TunnelFixture> {
  const seen: EchoObservations = { cancelled: [] };
  const handler = new TunnelServiceHandler(handlerOptions);
  handler.addService(EchoService, echoImplementation(seen));
  const { server, address } = await startServer((s) => handler.register(s));
  const connection = new EchoClient(address, credentials.createInsecure());
  const tunnel = await openTunnel(connection, tunnelOptions);
  const echo = new EchoClient('tunnel', credentials.createInsecure(), { channelOverride: tunnel });
  return {
    server,
    handler,
    address,
    connection,
    tunnel,
    echo,
    seen,
    async close() {
      tunnel.close();
      connection.close();
      await stopServer(server);
    },
  };
}
