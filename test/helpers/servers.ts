import {
  type Client,
  type ClientOptions,
  credentials,
  Server,
  ServerCredentials,
  type ServerOptions,
} from '@grpc/grpc-js';
import {
  type OpenTunnelOptions,
  openTunnel,
  ReverseTunnelServer,
  type ReverseTunnelServerOptions,
  type ServeOptions,
  type ServeResult,
  type TunnelChannel,
  TunnelConnection,
  TunnelServiceHandler,
  type TunnelServiceHandlerOptions,
} from 'grpctunnel';
import { EchoClient, type EchoObservations, EchoService, echoImplementation } from './echo-service.js';
import { startOwnServer } from './own-server.js';

const running = new Set<Server>();

/** Starts a grpc-js server on 127.0.0.1 and a free port. */
export async function startServer(
  setup: (server: Server) => void,
  options: { serverOptions?: ServerOptions; credentials?: ServerCredentials; port?: number } = {},
): Promise<{ server: Server; address: string }> {
  const server = new Server(options.serverOptions);
  running.add(server);
  setup(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `127.0.0.1:${options.port ?? 0}`,
      options.credentials ?? ServerCredentials.createInsecure(),
      (err, p) => (err ? reject(err) : resolve(p)),
    ),
  );
  return { server, address: `127.0.0.1:${port}` };
}

/** A plain grpc-js server with the echo service (the target behind an agent), and what its handlers saw. */
export interface EchoTarget {
  server: Server;
  address: string;
  seen: EchoObservations;
}

export async function startEchoTarget(): Promise<EchoTarget> {
  const seen: EchoObservations = { cancelled: [] };
  const { server, address } = await startServer((s) => s.addService(EchoService, echoImplementation(seen)));
  return { server, address, seen };
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

/**
 * GRPCTUNNEL_TEST_OWN_CONNECTION=1 runs the fixtures' tunnel RPCs on a
 * TunnelConnection (the library's own HTTP/2 session) instead of a grpc-js
 * client, where a test asks for no grpc-js client options: an exploratory
 * switch to find where the two paths differ (tests that use the grpc-js
 * client itself, e.g. its channel, fail by design under it).
 */
const OWN_CONNECTION = process.env.GRPCTUNNEL_TEST_OWN_CONNECTION === '1';

/**
 * GRPCTUNNEL_TEST_OWN_SERVER=1 serves the fixtures' handler from a node:http2
 * server (serveHttp2) instead of a grpc-js Server: the same kind of
 * exploratory switch, for the handler's own server. The fixture's `server`
 * is then a stand-in with grpc-js's tryShutdown and forceShutdown.
 */
const OWN_SERVER = process.env.GRPCTUNNEL_TEST_OWN_SERVER === '1';

/** The fixtures' server for `handler`: a grpc-js Server, or the handler's own node:http2 server (see OWN_SERVER). */
async function fixtureServer(handler: TunnelServiceHandler): Promise<{ server: Server; address: string }> {
  if (!OWN_SERVER) return startServer((s) => handler.register(s));
  const own = await startOwnServer(handler);
  const server = {
    // As grpc-js's: the connections go, and the handler learns it from its tunnel RPCs.
    forceShutdown: () => void own.stop(),
    tryShutdown: (callback: (error?: Error) => void) => {
      own.close().then(() => callback(), callback);
    },
  } as unknown as Server;
  running.add(server);
  return { server, address: own.address };
}

/** The fixtures' connection to `address`: a grpc-js client, or a TunnelConnection (see OWN_CONNECTION). */
function fixtureConnection(address: string, connectionOptions: ClientOptions): Client {
  if (OWN_CONNECTION && Object.keys(connectionOptions).length === 0) {
    return new TunnelConnection(address) as unknown as Client;
  }
  return new EchoClient(address, credentials.createInsecure(), connectionOptions);
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
  connectionOptions: ClientOptions = {},
): Promise<TunnelFixture> {
  const seen: EchoObservations = { cancelled: [] };
  const handler = new TunnelServiceHandler(handlerOptions);
  handler.addService(EchoService, echoImplementation(seen));
  const { server, address } = await fixtureServer(handler);
  const connection = fixtureConnection(address, connectionOptions);
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

/**
 * Resolves once `handler` has seen `n` more reverse tunnels open (counting
 * from this call): the signal that a keepOpen() or serve() has arrived.
 */
export function reverseTunnelsOpened(handler: TunnelServiceHandler, n: number): Promise<void> {
  let opened = 0;
  return new Promise((resolve) => {
    const onOpen = () => {
      if (++opened < n) return;
      handler.off('reverseTunnelOpen', onOpen);
      resolve();
    };
    handler.on('reverseTunnelOpen', onOpen);
  });
}

/** A network server with the tunnel service, and a reverse tunnel server dialing in with the echo service. */
export interface ReverseFixture {
  server: Server;
  handler: TunnelServiceHandler;
  address: string;
  connection: Client;
  reverseServer: ReverseTunnelServer;
  /** One promise per serve() call, settling when that tunnel ends. */
  served: Promise<ServeResult>[];
  /** An echo client on the handler's pool of all reverse tunnels. */
  echo: EchoClient;
  seen: EchoObservations;
  /** Opens one more reverse tunnel and waits until the handler has it. */
  addTunnel(options?: ServeOptions): Promise<void>;
  close(): Promise<void>;
}

export async function reverseFixture(
  handlerOptions: TunnelServiceHandlerOptions = {},
  serverOptions: ReverseTunnelServerOptions = {},
  serveOptions: ServeOptions = {},
  tunnels = 1,
  connectionOptions: ClientOptions = {},
): Promise<ReverseFixture> {
  const seen: EchoObservations = { cancelled: [] };
  const handler = new TunnelServiceHandler(handlerOptions);
  const { server, address } = await fixtureServer(handler);
  const connection = fixtureConnection(address, connectionOptions);
  const reverseServer = new ReverseTunnelServer(connection, serverOptions);
  reverseServer.addService(EchoService, echoImplementation(seen));
  const served: Promise<ServeResult>[] = [];
  const addTunnel = async (options: ServeOptions = serveOptions) => {
    const opened = new Promise<void>((resolve) => handler.once('reverseTunnelOpen', () => resolve()));
    const result = reverseServer.serve(options);
    served.push(result);
    const early = result.then((r) => {
      throw r.error ?? new Error('the reverse tunnel ended before it opened');
    });
    await Promise.race([opened, early]);
  };
  for (let i = 0; i < tunnels; i++) await addTunnel();
  const echo = new EchoClient('pool', credentials.createInsecure(), { channelOverride: handler.asChannel() });
  return {
    server,
    handler,
    address,
    connection,
    reverseServer,
    served,
    echo,
    seen,
    addTunnel,
    async close() {
      reverseServer.stop();
      await Promise.all(served);
      connection.close();
      await stopServer(server);
    },
  };
}
