// Binding servers to host:port strings, with errors a person can act on.
import type net from 'node:net';
import type { Server, ServerCredentials } from '@grpc/grpc-js';
import { connectionInfoFromPeer } from 'grpctunnel/internal';

/** Splits "host:port" ("[::1]:80" too); throws a one-line error when malformed. */
export function splitHostPort(address: string): { host: string; port: number } {
  const { remoteAddress: host, remotePort: port } = connectionInfoFromPeer(address);
  if (host === undefined || port === undefined || port > 65535)
    throw new Error(`"${address}" is not a host:port address`);
  return { host, port };
}

/** Binds a grpc-js server; resolves to the address it listens on (port 0 becomes the real port). */
export function bindGrpc(server: Server, address: string, credentials: ServerCredentials): Promise<string> {
  const { host } = splitHostPort(address);
  return new Promise((resolve, reject) =>
    server.bindAsync(address, credentials, (err, port) =>
      err ? reject(new Error(`cannot listen on ${address}: ${err.message}`)) : resolve(`${host}:${port}`),
    ),
  );
}

/**
 * Starts a server (HTTP/2, HTTP/1 for admin, or a plain TCP listener)
 * listening; resolves to its address. Errors the listener meets later (an
 * accept failing with EMFILE when descriptors run out) go to `onLaterError`
 * instead of ending the process, as an 'error' with no listener would.
 */
export function listenHttp2(
  server: net.Server,
  address: string,
  onLaterError: (err: Error) => void = (err) => process.emitWarning(`listener on ${address}: ${err.message}`),
): Promise<string> {
  const { host, port } = splitHostPort(address);
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(new Error(`cannot listen on ${address}: ${err.message}`));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.removeListener('error', onError);
      server.on('error', onLaterError);
      const bound = server.address();
      resolve(`${host}:${typeof bound === 'object' && bound ? bound.port : port}`);
    });
  });
}
