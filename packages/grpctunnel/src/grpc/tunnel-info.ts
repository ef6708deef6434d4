import type { Metadata, ServerInterceptingCallInterface } from '@grpc/grpc-js';

/** grpc-js's AuthContext (what `getAuthContext()` returns on server calls). */
export type AuthContext = ReturnType<ServerInterceptingCallInterface['getAuthContext']>;
/** grpc-js's ConnectionInfo (addresses of the underlying connection). */
export type ConnectionInfo = ReturnType<ServerInterceptingCallInterface['getConnectionInfo']>;

/**
 * What is known about one tunnel: its tunnel RPC's request metadata, peer and
 * transport security. Tunneled handlers and interceptors read it with
 * `getTunnelInfo(call)`; reverse-tunnel pools hand it to the affinity-key
 * function and the open/close callbacks.
 */
export interface TunnelInfo {
  /** `forward` (OpenTunnel) or `reverse` (OpenReverseTunnel). */
  readonly kind: 'forward' | 'reverse';
  /**
   * Request metadata of the tunnel RPC, as its handler saw it (after the
   * server's interceptors, which may have added to it). On the reverse
   * tunnel server (the dialing side) this is the metadata it sent.
   */
  readonly metadata: Metadata;
  /** The other end of the tunnel RPC, as grpc-js reports it (address:port). */
  readonly peer: string;
  /**
   * Transport security of the tunnel RPC's connection: on the network
   * server, the client's certificate under mTLS; on the reverse tunnel
   * server, the network server's certificate.
   */
  readonly authContext: AuthContext;
  /**
   * On the network server, the :authority of the tunnel RPC. On a reverse
   * tunnel server, the target it dialed: the grpc-js channel's target
   * (`getTarget()`, such as `dns:host:port`), the same form for a
   * `TunnelConnection`.
   */
  readonly host: string;
  /** Reverse tunnel server only: the network server's response headers on the tunnel RPC. */
  readonly responseHeaders?: Metadata;
  /** Reverse tunnel server only: what the `authenticate` option returned for this tunnel. */
  readonly identity?: unknown;
}

/** Splits a grpc-js peer string ("1.2.3.4:5", "[::1]:5") into address and port. */
export function connectionInfoFromPeer(peer: string): ConnectionInfo {
  const match = /^\[?([^\]]*?)\]?:(\d+)$/.exec(peer);
  if (!match) return {};
  return { remoteAddress: match[1], remotePort: Number(match[2]) };
}
