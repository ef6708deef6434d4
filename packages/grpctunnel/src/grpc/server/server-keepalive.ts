import { experimental, logVerbosity, type Metadata } from '@grpc/grpc-js';
import {
  ADVERTISED_MIN_PING_INTERVAL_MS,
  KEEPALIVE_POLICY_HEADER,
  type KeepaliveOptions,
  type ResolvedKeepalive,
  resolveKeepalive,
} from '../keepalive.js';
import { isPingableSession, type OnPeerGone, watchSession } from '../session-pinger.js';
import { serverSessionOf } from './call-session.js';

/**
 * Liveness on the side that accepts tunnel RPCs (a grpc-js `Server` the user
 * made): pings each connection that carries a tunnel, and tells clients in
 * the tunnel RPC's response headers how often they may ping back.
 */
export class ServerKeepalive {
  private readonly settings: ResolvedKeepalive | undefined;
  private warned = false;

  /** Throws RangeError for bad settings. */
  constructor(options: KeepaliveOptions | false | undefined) {
    this.settings = resolveKeepalive(options);
  }

  /** Adds this server's ping policy to the tunnel RPC's response headers. */
  advertise(headers: Metadata): void {
    headers.set(KEEPALIVE_POLICY_HEADER, String(ADVERTISED_MIN_PING_INTERVAL_MS));
  }

  /**
   * Pings the connection of `call` (once per connection) until the returned
   * function is called or the connection closes. When the client stops
   * answering, `onPeerGone` runs with the cause and the connection is
   * destroyed. Does nothing when keepalive is off or this grpc-js hides the
   * connection (said once in the log).
   */
  watch(call: object, onPeerGone: OnPeerGone): () => void {
    if (!this.settings) return () => {};
    const session = serverSessionOf(call);
    if (!isPingableSession(session)) {
      if (!this.warned) {
        this.warned = true;
        experimental.log(
          logVerbosity.INFO,
          'grpctunnel: cannot reach the HTTP/2 session of tunnel RPCs with this grpc-js; no keepalive pings',
        );
      }
      return () => {};
    }
    return watchSession(session, this.settings.timeMs, this.settings.timeoutMs, onPeerGone);
  }
}
