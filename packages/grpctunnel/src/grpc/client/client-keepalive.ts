import type { Metadata } from '@grpc/grpc-js';
import {
  clientPingInterval,
  KEEPALIVE_POLICY_HEADER,
  type KeepaliveOptions,
  type ResolvedKeepalive,
  resolveKeepalive,
} from '../keepalive.js';
import { isPingableSession, type OnPeerGone, watchSession } from '../session-pinger.js';
import { clientSessionOf } from './call-session.js';

/** Options of the side that opens tunnel RPCs ({@link openTunnel}, {@link ReverseTunnelServer}). */
export interface ClientKeepaliveOptions {
  /**
   * Liveness checks of the connection carrying the tunnel: HTTP/2 pings,
   * at most as often as the server allows (a server of this library says
   * so in the tunnel RPC's response headers; toward any other, every 5
   * minutes, grpc-go's default limit). When the server stops answering, the
   * tunnel ends, its calls fail with UNAVAILABLE naming the cause, and the
   * connection is dropped so that grpc-js reconnects. `false` turns it off.
   * Default: ping every 15 s, give up after 10 s.
   */
  keepalive?: KeepaliveOptions | false;
}

/** Applies the defaults and checks a client's keepalive option (RangeError). */
export function clientKeepalive(options: ClientKeepaliveOptions): ResolvedKeepalive | undefined {
  return resolveKeepalive(options.keepalive);
}

/**
 * Pings the connection under the tunnel RPC `rpc`, which answered with
 * `responseHeaders`, until the returned function is called or the connection
 * closes; `onPeerGone` runs with the cause when the server stops answering
 * (then the connection is destroyed). Nothing happens when keepalive is off
 * or the connection cannot be reached (a tunnel nested in another one: the
 * outer connection is the one to watch).
 */
export function watchTunnelConnection(
  rpc: object,
  responseHeaders: Metadata,
  settings: ResolvedKeepalive | undefined,
  onPeerGone: OnPeerGone,
): () => void {
  if (!settings) return () => {};
  const session = clientSessionOf(rpc);
  if (!isPingableSession(session)) return () => {};
  const advertised = responseHeaders.get(KEEPALIVE_POLICY_HEADER)[0];
  const interval = clientPingInterval(settings, typeof advertised === 'string' ? advertised : undefined);
  return watchSession(session, interval, settings.timeoutMs, onPeerGone);
}
