/**
 * The library's internals that grpctunnel's own gateway and CLI build on.
 *
 * Not a public API: no semver promise, and it may change in any release. It
 * exists so that the gateway, the CLI and the interop programs reach the
 * library through entry points only (test/architecture.test.ts checks it),
 * which lets them live in a package of their own (grpctunnel-gateway).
 * Anything here that an embedding user needs belongs in src/index.ts or
 * src/protocol.ts instead, with its documentation and API report.
 *
 * @packageDocumentation
 */

// Statuses and peer faults: one way to build a ServiceError, and the
// rate-limited log of what peers get wrong, shared so the gateway fails
// calls and logs as the library does.

export { statusError } from './grpc/errors.js';
export { PeerFaultLog } from './grpc/peer-faults.js';

// Waiting and retrying: the one long-timer module and the reverse tunnels'
// backoff, for the gateway's replica dialer.

export { sleepUnlessAborted } from './grpc/long-timer.js';
export { Backoff } from './reverse/backoff.js';

// Connections and tunnels: the HTTP/2 window the library gives tunnel
// connections, keepalive options checked as the library checks them, and
// peer addresses as grpc-js reports them.

export { DEFAULT_HTTP2_WINDOW_SIZE } from './grpc/http2-window.js';
export { resolveKeepalive } from './grpc/keepalive.js';
export { connectionInfoFromPeer } from './grpc/tunnel-info.js';

// The gRPC wire rules the gateway's caller port speaks on node:http2 (its
// any-method endpoint lives in the gateway package): timeouts, the one-hop
// header deny-list, status messages, reading length-prefixed messages (as
// the library's own HTTP/2 connection does), and relaying raw messages to a
// channel (as the library's proxy handler does).

export { decodeTimeout } from './engine/deadline.js';
export { asClient } from './grpc/client/as-client.js';
export { isTransportHeader } from './grpc/metadata.js';
export { encodeGrpcMessage } from './grpc/status.js';
export { MessageFramingError, MessageReader } from './grpc/wire.js';
export { onFinalStatus, rawBytes, relay } from './proxy/upstream.js';
