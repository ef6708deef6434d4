import type { Any } from '../gen/google/protobuf/any.js';
import type { CloseStream, Metadata as WireMetadata } from '../gen/grpctunnel/v1/tunnel.js';
import { Code } from './codes.js';

/** How a stream or a tunnel ended, in wire terms (no grpc-js types). */
export interface StreamStatus {
  code: number;
  message: string;
  /** google.rpc.Status details (packed Any messages). */
  details: Any[];
  /** Response trailers; undefined for failures made locally (the frame then omits them, as the Go reference does). */
  trailers: WireMetadata | undefined;
}

/** A status made locally (not received from the peer): no trailers, no details. */
export function localStatus(code: Code, message: string): StreamStatus {
  return { code, message, details: [], trailers: undefined };
}

/** An error that carries a gRPC status; the engine's only error type. */
export class TunnelError extends Error {
  override readonly name = 'TunnelError';
  constructor(
    readonly code: Code,
    message: string,
  ) {
    super(message);
  }
  /** The status to report for this error. */
  toStatus(): StreamStatus {
    return localStatus(this.code, this.message);
  }
}

/** Reads the status out of a received close_stream frame. */
export function statusFromClose(close: CloseStream): StreamStatus {
  const s = close.status;
  return {
    code: s?.code ?? Code.OK,
    message: s?.message ?? '',
    details: s?.details ?? [],
    trailers: close.responseTrailers,
  };
}

/** Builds the close_stream frame body for a status. OK carries no status, as the Go reference does. */
export function closeFromStatus(status: StreamStatus): CloseStream {
  if (status.code === Code.OK) {
    return { responseTrailers: status.trailers, status: undefined };
  }
  return {
    responseTrailers: status.trailers,
    status: { code: status.code, message: status.message, details: status.details },
  };
}
