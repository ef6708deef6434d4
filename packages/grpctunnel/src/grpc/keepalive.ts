// Liveness of the connections that carry tunnels. A connection that stops
// carrying bytes without closing (a dropped NAT mapping, a frozen peer, a
// pulled cable) never fails on its own: TCP only notices when it has
// something to send, and an idle tunnel sends nothing. HTTP/2 PING frames
// give each side a question the peer must answer; no answer in time means
// the peer is gone, and the connection's tunnels end with UNAVAILABLE.
//
// Who may ping how often is the delicate part. A server may ping its clients
// freely. A client must respect the server's policy: grpc-go servers by
// default send GOAWAY `too_many_pings` to a client that pings more often
// than every 5 minutes while the server sends it nothing (an idle tunnel
// sends nothing). So a client pings fast only toward a server that says, in
// the tunnel RPC's response headers, how often it may; otherwise no more
// often than grpc-go's default allows.

/** Liveness settings: how often to ping the peer, and how long to wait for its answer. */
export interface KeepaliveOptions {
  /**
   * Time between one ping's answer and the next ping, in ms. Default 15000.
   * A client pings a server that does not advertise a faster policy at most
   * every 5 minutes whatever this says.
   */
  timeMs?: number;
  /**
   * How long a ping may go unanswered before the peer counts as gone, in ms.
   * Default: `timeMs` or 10000, whichever is smaller.
   */
  timeoutMs?: number;
}

/** Keepalive settings after defaults; a dead peer is noticed within `timeMs + timeoutMs`. */
export interface ResolvedKeepalive {
  readonly timeMs: number;
  readonly timeoutMs: number;
}

/** Default {@link KeepaliveOptions.timeMs}: 15 s, below common NAT and load-balancer idle timeouts. */
export const DEFAULT_KEEPALIVE_TIME_MS = 15_000;
/** Default {@link KeepaliveOptions.timeoutMs}: 10 s, so a dead peer is noticed within 25 s. */
export const DEFAULT_KEEPALIVE_TIMEOUT_MS = 10_000;
/** Shortest accepted ping interval or timeout, in ms. */
export const MIN_KEEPALIVE_MS = 100;

/**
 * grpc-go's default `keepalive.EnforcementPolicy.MinTime`: a client that
 * pings more often while the server sends nothing collects "ping strikes",
 * and after the third the server ends the connection. A client keeps to it
 * toward any server that did not advertise a faster policy.
 */
export const UNADVERTISED_MIN_PING_INTERVAL_MS = 5 * 60_000;

/**
 * Added to {@link UNADVERTISED_MIN_PING_INTERVAL_MS}: grpc-go never forgets a
 * strike while the tunnel is idle, so pings must never arrive even a
 * millisecond early, whatever timer slack (a timer armed from the event
 * loop's cached clock) and network jitter do to their spacing.
 */
export const UNADVERTISED_PING_MARGIN_MS = 10_000;

/**
 * Response header of a tunnel RPC (OpenTunnel and OpenReverseTunnel) with
 * which a server of this library tells its client the shortest interval
 * between pings it accepts, in ms as a decimal integer. Go peers ignore
 * headers they do not know; a Go server sends none.
 */
export const KEEPALIVE_POLICY_HEADER = 'grpctunnel-keepalive-min-time-ms';

/**
 * What a {@link TunnelServiceHandler} advertises in {@link KEEPALIVE_POLICY_HEADER}:
 * grpc-js servers enforce no ping policy, so any reasonable rate is fine.
 */
export const ADVERTISED_MIN_PING_INTERVAL_MS = 1_000;

function checkMs(name: string, value: number): number {
  if (!Number.isFinite(value) || value < MIN_KEEPALIVE_MS || value > 0x7fffffff) {
    throw new RangeError(
      `keepalive.${name} must be a number of ms from ${MIN_KEEPALIVE_MS} to ${0x7fffffff}, got ${value}`,
    );
  }
  return value;
}

/**
 * Applies the defaults to a `keepalive` option and checks it (RangeError);
 * undefined when liveness checks are off (`false`).
 */
export function resolveKeepalive(options: KeepaliveOptions | false | undefined): ResolvedKeepalive | undefined {
  if (options === false) return undefined;
  const timeMs = checkMs('timeMs', options?.timeMs ?? DEFAULT_KEEPALIVE_TIME_MS);
  const timeoutMs = checkMs('timeoutMs', options?.timeoutMs ?? Math.min(timeMs, DEFAULT_KEEPALIVE_TIMEOUT_MS));
  return { timeMs, timeoutMs };
}

/**
 * The ping interval a client uses toward a server whose tunnel RPC answered
 * with `advertised` (the {@link KEEPALIVE_POLICY_HEADER} value, if any): its
 * own interval, but never faster than the server allows. A missing or
 * unreadable header means a server with grpc-go's default policy: 5 minutes
 * plus a margin.
 */
export function clientPingInterval(own: ResolvedKeepalive, advertised: string | undefined): number {
  const allowed = advertised !== undefined && /^\d{1,10}$/.test(advertised) ? Number(advertised) : undefined;
  return Math.max(own.timeMs, allowed ?? UNADVERTISED_MIN_PING_INTERVAL_MS + UNADVERTISED_PING_MARGIN_MS);
}

/** The cause a tunnel ends with when its connection's peer stopped answering pings. */
export function keepaliveError(timeoutMs: number): Error {
  return new Error(`keepalive ping not answered within ${timeoutMs} ms`);
}
