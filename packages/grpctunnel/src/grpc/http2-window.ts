// grpc-js's Server keeps HTTP/2's default 65,535-byte flow-control windows
// and has no option to change them (a grpc-js client has
// 'grpc-node.flow_control_window'; grpc-go grows its windows by probing the
// bandwidth-delay product). One HTTP/2 stream carries a whole tunnel, so that
// window caps everything a client sends through the tunnel at 64 KiB per
// round trip of a WINDOW_UPDATE through both event loops: a reverse tunnel's
// responses, a forward tunnel's requests. This raises the windows of the
// connections that carry tunnel RPCs, and nothing else.
//
// The session is reached through grpc-js's call objects, which is not public
// API: every step is checked, and when the shape is not the expected one
// (another grpc-js version) nothing happens and the tunnel works as before
// at the default window. A test reads the windows back as a raw HTTP/2 client
// receives them, so a grpc-js upgrade that breaks this is noticed.

/** What this module needs of a `node:http2` session (client or server). */
interface WindowedSession {
  readonly destroyed: boolean;
  readonly closed: boolean;
  readonly localSettings?: { initialWindowSize?: number };
  readonly state?: { localWindowSize?: number };
  setLocalWindowSize(size: number): void;
  settings(settings: { initialWindowSize: number }): void;
}

/** Default {@link TunnelServiceHandlerOptions.http2WindowSize}: 1 MiB. */
export const DEFAULT_HTTP2_WINDOW_SIZE = 1 << 20;
/** HTTP/2's own initial window, which a raised window must not go below. */
const HTTP2_DEFAULT_WINDOW = 65_535;

const raised = new WeakSet<object>();

function isSession(value: unknown): value is WindowedSession {
  const s = value as Partial<WindowedSession> | null;
  return (
    typeof s === 'object' &&
    s !== null &&
    typeof s.setLocalWindowSize === 'function' &&
    typeof s.settings === 'function' &&
    typeof s.destroyed === 'boolean'
  );
}

/** Checks a window size option: 0 (leave grpc-js's windows) or 65535 to 2^31-1. */
export function checkHttp2WindowSize(size: number): number {
  if (!Number.isInteger(size) || (size !== 0 && (size < HTTP2_DEFAULT_WINDOW || size > 0x7fffffff))) {
    throw new RangeError(
      `http2WindowSize must be 0 or an integer from ${HTTP2_DEFAULT_WINDOW} to ${0x7fffffff}, got ${size}`,
    );
  }
  return size;
}

/** What {@link raiseHttp2Window} did. */
export type Http2WindowResult = 'raised' | 'off' | 'closed' | 'unsupported';

/**
 * Raises the HTTP/2 receive windows of `session` (a `node:http2` session,
 * client or server, or anything else: then 'unsupported') to at least
 * `size`, once per session. Windows already larger (a client made with
 * `grpc-node.flow_control_window`) are left as they are: this only ever
 * raises them.
 */
export function raiseSessionWindow(session: unknown, size: number): Http2WindowResult {
  if (size === 0) return 'off';
  if (!isSession(session)) return 'unsupported';
  if (session.destroyed || session.closed) return 'closed';
  if (raised.has(session)) return 'raised';
  try {
    // The connection window is this side's alone; the initial stream window
    // is a SETTINGS value, which by HTTP/2 also resizes streams already open
    // (the tunnel RPC itself among them).
    if ((session.state?.localWindowSize ?? 0) < size) session.setLocalWindowSize(size);
    if ((session.localSettings?.initialWindowSize ?? 0) < size) session.settings({ initialWindowSize: size });
  } catch {
    return 'closed'; // the session ended meanwhile: nothing to tune
  }
  raised.add(session);
  return 'raised';
}
