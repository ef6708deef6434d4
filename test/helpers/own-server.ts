// A TunnelServiceHandler served from a node:http2 server (serveHttp2), the
// counterpart of registering it on a grpc-js Server (servers.ts), for tests
// that run the same scenario on both.
import { once } from 'node:events';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TunnelServiceHandler } from 'grpctunnel';

/** A node:http2 server carrying a handler's tunnel service, and how to stop it. */
export interface OwnServer {
  address: string;
  /** Closes the server and destroys every session on it (as grpc-js's forceShutdown). */
  stop(): Promise<void>;
  /** Closes the server; each session closes once its streams have ended (as grpc-js's tryShutdown). */
  close(): Promise<void>;
}

/** Serves `handler` on a node:http2 server (plaintext, or TLS with `secure` options) on 127.0.0.1 and a free port. */
export async function startOwnServer(
  handler: TunnelServiceHandler,
  secure?: http2.SecureServerOptions,
): Promise<OwnServer> {
  const server = secure ? http2.createSecureServer(secure) : http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
  handler.serveHttp2(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    stop: async () => {
      for (const session of sessions) session.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    close: async () => {
      for (const session of sessions) session.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
