import { status as grpcStatus, Metadata, type ServerErrorResponse, type StatusObject } from '@grpc/grpc-js';
import type { StreamStatus } from '../engine/status.js';
import { Status as RpcStatus } from '../gen/google/rpc/status.js';
import { fromWireMetadata, toWireMetadata } from './metadata.js';

/** Trailer that carries google.rpc.Status (code, message and typed details). */
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';

/** What a server call reports as its outcome (grpc-js's PartialStatusObject). */
export interface OutgoingStatus {
  code: number;
  details: string;
  metadata?: Metadata | null | undefined;
}

/**
 * Turns a server outcome into the wire status: trailers travel as
 * response_trailers, and the details of grpc-status-details-bin become
 * CloseStream.status.details, where a Go peer looks for them.
 */
export function toStreamStatus(status: OutgoingStatus): StreamStatus {
  const trailers = toWireMetadata(status.metadata ?? undefined, STATUS_DETAILS_KEY);
  let details: StreamStatus['details'] = [];
  const raw = status.metadata?.get(STATUS_DETAILS_KEY)[0];
  if (Buffer.isBuffer(raw)) {
    try {
      details = RpcStatus.decode(raw).details;
    } catch {
      // Unreadable details are dropped; the code and message still go through.
    }
  }
  return { code: status.code, message: status.details, details, trailers };
}

/**
 * Turns a wire status into grpc-js's StatusObject. Details come back as
 * grpc-status-details-bin, so code written for direct grpc-js calls (for
 * example @grpc/grpc-js's rich error helpers) reads them unchanged.
 */
export function toStatusObject(status: StreamStatus): StatusObject {
  const metadata = fromWireMetadata(status.trailers, STATUS_DETAILS_KEY);
  if (status.details.length > 0) {
    metadata.set(
      STATUS_DETAILS_KEY,
      Buffer.from(RpcStatus.encode({ code: status.code, message: status.message, details: status.details }).finish()),
    );
  }
  return { code: status.code, details: status.message, metadata };
}

/** The status a server handler's error stands for (grpc-js's rules: code if numeric, else UNKNOWN). */
export function statusFromHandlerError(
  error: Partial<ServerErrorResponse> & { code?: unknown; details?: unknown; metadata?: unknown },
  trailer?: Metadata,
): OutgoingStatus {
  const code = typeof error.code === 'number' && Number.isInteger(error.code) ? error.code : grpcStatus.UNKNOWN;
  const details =
    typeof error.details === 'string' && typeof error.code === 'number'
      ? error.details
      : typeof error.message === 'string'
        ? error.message
        : 'Unknown Error';
  const metadata = trailer ?? (error.metadata instanceof Metadata ? error.metadata : null);
  return { code, details, metadata };
}
