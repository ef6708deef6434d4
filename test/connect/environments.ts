// Where the Connect-ES tests run the same scenarios: Connect's own gRPC
// transport and server (the reference), and every way grpctunnel carries
// Connect clients and Connect service implementations.
import { once } from 'node:events';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { type Client, createClient, type Interceptor, type Transport } from '@connectrpc/connect';
import { connectNodeAdapter, createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { credentials, Client as GrpcClient } from '@grpc/grpc-js';
import { openTunnel, ReverseTunnelServer, type ServeResult, TunnelServiceHandler } from 'grpctunnel';
import { addConnectService, type ConnectServiceOptions, createTunnelTransport } from 'grpctunnel/connect';
import { startServer, stopServer } from '../helpers/servers.js';
import { EchoService, echoImpl, newSeen } from './echo-impl.js';

export type Seen = ReturnType<typeof newSeen>;

/** A Connect client on one path to the echo implementation, and what that implementation saw. */
export interface Env {
  client: Client<typeof EchoService>;
  transport: Transport;
  seen: Seen;
  /** Another transport on the same path, with these interceptors. */
  withInterceptors(interceptors: Interceptor[]): Transport;
  close(): Promise<void>;
}

export type EnvFactory = () => Promise<Env>;

const serveOptions = (seen: Seen): ConnectServiceOptions => ({ onInternalError: (e) => seen.internal.push(e) });

/** Connect's own gRPC transport to Connect's own Node HTTP/2 server: the reference. */
export async function connectNodeEnv(): Promise<Env> {
  const seen = newSeen();
  const server = http2.createServer(
    connectNodeAdapter({ routes: (router) => router.service(EchoService, echoImpl(seen)) }),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const sessionManager = new Http2SessionManager(baseUrl);
  const transport = createGrpcTransport({ baseUrl, sessionManager });
  return {
    client: createClient(EchoService, transport),
    transport,
    seen,
    withInterceptors: (interceptors) => createGrpcTransport({ baseUrl, sessionManager, interceptors }),
    async close() {
      sessionManager.abort();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Connect's gRPC transport to a grpc-js server serving the implementation with addConnectService (no tunnel). */
export async function grpcJsServerEnv(): Promise<Env> {
  const seen = newSeen();
  const { server, address } = await startServer((s) =>
    addConnectService(s, EchoService, echoImpl(seen), serveOptions(seen)),
  );
  const sessionManager = new Http2SessionManager(`http://${address}`);
  const transport = createGrpcTransport({ baseUrl: `http://${address}`, sessionManager });
  return {
    client: createClient(EchoService, transport),
    transport,
    seen,
    withInterceptors: (interceptors) =>
      createGrpcTransport({ baseUrl: `http://${address}`, sessionManager, interceptors }),
    async close() {
      sessionManager.abort();
      await stopServer(server);
    },
  };
}

/** A Connect client through a forward tunnel to the implementation served by the TunnelServiceHandler. */
export async function forwardEnv(): Promise<Env> {
  const seen = newSeen();
  const handler = new TunnelServiceHandler();
  addConnectService(handler, EchoService, echoImpl(seen), serveOptions(seen));
  const { server, address } = await startServer((s) => handler.register(s));
  const connection = new GrpcClient(address, credentials.createInsecure());
  const tunnel = await openTunnel(connection);
  const transport = createTunnelTransport(tunnel);
  return {
    client: createClient(EchoService, transport),
    transport,
    seen,
    withInterceptors: (interceptors) => createTunnelTransport(tunnel, { interceptors }),
    async close() {
      tunnel.close();
      connection.close();
      await stopServer(server);
    },
  };
}

/** A Connect client on a handler's pool of reverse tunnels to the implementation served by a ReverseTunnelServer. */
export async function reverseEnv(): Promise<Env> {
  const seen = newSeen();
  const handler = new TunnelServiceHandler();
  const { server, address } = await startServer((s) => handler.register(s));
  const connection = new GrpcClient(address, credentials.createInsecure());
  const reverseServer = new ReverseTunnelServer(connection);
  addConnectService(reverseServer, EchoService, echoImpl(seen), serveOptions(seen));
  const opened = once(handler, 'reverseTunnelOpen');
  const served: Promise<ServeResult> = reverseServer.serve();
  await opened;
  const transport = createTunnelTransport(handler.asChannel());
  return {
    client: createClient(EchoService, transport),
    transport,
    seen,
    withInterceptors: (interceptors) => createTunnelTransport(handler.asChannel(), { interceptors }),
    async close() {
      reverseServer.stop();
      await served;
      connection.close();
      await stopServer(server);
    },
  };
}

export const ENVIRONMENTS: Record<string, EnvFactory> = {
  'grpc-js server (addConnectService)': grpcJsServerEnv,
  'forward tunnel': forwardEnv,
  'reverse tunnel pool': reverseEnv,
};
