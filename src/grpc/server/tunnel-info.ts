import type { Metadata, ServerInterceptingCallInterface } from '@grpc/grpc-js';

/** grpc-js's AuthContext (what `getAuthContext()` returns on server calls). */
export type AuthContext = ReturnType<ServerInterceptingCallInterface['getAuthContext']>;
/** grpc-js's ConnectionInfo (addresses of the underlying connection). */
export type ConnectionInfo = ReturnType<ServerInterceptingCallInterface['getConnectionInfo']>;

/**
 * What a tunneled call knows about the tunnel that carried it: the tunnel
 * RPC's own request metadata, peer and transport security.
 */
export interface TunnelInfo {
  /** Request metadata of the tunnel RPC (OpenTunnel or OpenReverseTunnel). */
  readonly metadata: Metadata;
  /** The peer of the tunnel RPC, as grpc-js reports it (address:port). */
  readonly peer: string;
  /** Transport security of the tunnel RPC's connection (TLS peer certificate, if any). */
  readonly authContext: AuthContext;
  /** The :authority the tunnel RPC was sent to. */
  readonly host: string;
}

/** Splits a grpc-js peer string ("1.2.3.4:5", "[::1]:5") into address and port. */
export function connectionInfoFromPeer(peer: string): ConnectionInfo {
  const match = /^\[?([^\]]*?)\]?:(\d+)$/.exec(peer);
  if (!match) return {};
  return { remoteAddress: match[1], remotePort: Number(match[2]) };
}
