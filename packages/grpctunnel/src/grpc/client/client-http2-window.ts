import { experimental, logVerbosity } from '@grpc/grpc-js';
import { DEFAULT_HTTP2_WINDOW_SIZE, type Http2WindowResult, raiseSessionWindow } from '../http2-window.js';
import { clientSessionOf } from './call-session.js';

/** Options of the side that opens tunnel RPCs ({@link openTunnel}, {@link ReverseTunnelServer}). */
export interface ClientHttp2WindowOptions {
  /**
   * HTTP/2 receive window, in bytes, of the connection that carries the
   * tunnel RPC (the connection's window and each of its streams'), raised
   * when the tunnel opens. One HTTP/2 stream carries the whole tunnel, and
   * grpc-js's default 64 KiB window holds what the peer sends through it to
   * 64 KiB per round trip (about half the speed of a direct stream). Like
   * the handler's `http2WindowSize`, the setting is per connection: other
   * calls sharing it get the larger windows too, and it bounds what one
   * stream of the connection can make this process buffer. Windows already
   * larger (`grpc-node.flow_control_window`) are kept. 0 leaves the
   * connection's windows alone. Default 1 MiB.
   */
  http2WindowSize?: number;
}

let warned = false;

/**
 * Raises the receive windows of the connection under a grpc-js client call
 * (the tunnel RPC, once it has its response headers). Says once when this
 * grpc-js's call objects do not lead to the session; a tunnel nested in
 * another one has no session of its own and is left alone silently.
 */
export function raiseClientHttp2Window(rpc: object, size: number = DEFAULT_HTTP2_WINDOW_SIZE): Http2WindowResult {
  const session = clientSessionOf(rpc);
  const result = raiseSessionWindow(session, size);
  if (result === 'unsupported' && session !== undefined && !warned) {
    warned = true;
    experimental.log(
      logVerbosity.INFO,
      'grpctunnel: cannot reach the HTTP/2 session of tunnel RPCs with this grpc-js; keeping its windows',
    );
  }
  return result;
}
