import type { Metadata, ServiceError, StatusObject } from '@grpc/grpc-js';

/**
 * A tunnel RPC this side dialed, as the library uses it: the part of
 * grpc-js's `ClientDuplexStream` that DialedTunnelRpc, TunnelRpcEnd and
 * the reverse tunnel server touch. A grpc-js call (a connection given as a
 * Client or Channel) and RawTunnelCall (a {@link TunnelConnection}) both
 * are one, with the same events in the same order: `metadata` once the
 * server answered; `data` per frame; then `error` (a failed RPC) and
 * `status`, and `end` after them.
 */
export interface DialedCall<Out, In> {
  write(frame: Out, callback?: () => void): boolean;
  /** Half-closes: no more frames from this side. */
  end(): unknown;
  /** Cancels the RPC (an HTTP/2 reset once the stream exists); status CANCELLED. */
  cancel(): void;
  /** Reads on (grpc-js holds the status back behind unread frames). */
  resume(): unknown;
  getPeer(): string;
  getAuthContext?(): unknown;
  on(event: 'metadata', listener: (headers: Metadata) => void): unknown;
  on(event: 'data', listener: (frame: In) => void): unknown;
  on(event: 'error', listener: (error: ServiceError) => void): unknown;
  on(event: 'status', listener: (status: StatusObject) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
  once(event: 'metadata' | 'status', listener: () => void): unknown;
}
