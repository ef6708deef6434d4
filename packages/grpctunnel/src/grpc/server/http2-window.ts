import { type Http2WindowResult, raiseSessionWindow } from '../http2-window.js';
import { serverSessionOf } from './call-session.js';

// The server's half of http2-window.ts: the session is reached through a
// grpc-js server call object.

/**
 * Raises the HTTP/2 receive windows (the connection's and each stream's) of
 * the connection a tunnel RPC arrived on, once per connection. 'unsupported'
 * means grpc-js's call objects did not lead to a session (another grpc-js
 * version); 'closed', that the connection is ending anyway.
 */
export function raiseHttp2Window(call: object, size: number): Http2WindowResult {
  if (size === 0) return 'off';
  return raiseSessionWindow(serverSessionOf(call), size);
}
