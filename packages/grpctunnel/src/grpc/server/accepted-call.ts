import type { Metadata, ServerErrorResponse, ServerInterceptingCallInterface } from '@grpc/grpc-js';

// The accepted tunnel RPC as the handler uses it: exactly the part of
// grpc-js's ServerDuplexStream it touches, so a grpc-js server call and the
// library's own (raw/accepted-call.ts, on a node:http2 server) both fit and
// the handler and AcceptedTunnelRpc run unchanged on either.

/**
 * One accepted tunnel RPC (`In` from the client, `Out` to it): grpc-js's
 * `ServerDuplexStream` satisfies it, and so does the library's own
 * RawAcceptedCall. Events: `data` (a message), `end` (the client
 * half-closed), `cancelled` (the RPC ended: grpc-js fires it for every
 * end, also after the status went out), `error` (emitted by this side: fails
 * the RPC with that status).
 */
export interface AcceptedCall<In, Out> {
  /** Request metadata, as the application sees it (no transport headers). */
  readonly metadata: Metadata;
  getPeer(): string;
  getHost(): string;
  getAuthContext(): object;
  getMetricsRecorder(): ReturnType<ServerInterceptingCallInterface['getMetricsRecorder']>;
  /** Sends the response headers, once. */
  sendMetadata(metadata: Metadata): void;
  /** Sends one message; `callback` once it is taken; false asks the writer to wait for it. */
  write(message: Out, callback: () => void): boolean;
  /** Ends the RPC with OK. */
  end(): void;
  on(event: 'data', listener: (message: In) => void): unknown;
  on(event: 'end' | 'cancelled', listener: () => void): unknown;
  on(event: 'error', listener: (error: unknown) => void): unknown;
  once(event: 'cancelled', listener: () => void): unknown;
  off(event: 'cancelled', listener: () => void): unknown;
  emit(event: 'error', error: Partial<ServerErrorResponse>): boolean;
}
