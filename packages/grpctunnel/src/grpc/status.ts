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
 *
 * grpc-js treats grpc-status-details-bin as an ordinary trailer and passes
 * it on byte for byte, whatever it holds. When the status fields say all
 * it says (it decodes to this call's code and message plus at least one
 * detail, and re-encodes to the same bytes) they carry it as the Go
 * reference does; otherwise the bytes also travel, unchanged, as a trailer,
 * so the caller reads exactly what the handler sent.
 */
export function toStreamStatus(status: OutgoingStatus): StreamStatus {
  const trailers = toWireMetadata(status.metadata ?? undefined, STATUS_DETAILS_KEY);
  let details: StreamStatus['details'] = [];
  const raw = status.metadata?.get(STATUS_DETAILS_KEY) ?? [];
  const only = raw.length === 1 && Buffer.isBuffer(raw[0]) ? raw[0] : undefined;
  if (only && status.code !== grpcStatus.OK) {
    try {
      const decoded = RpcStatus.decode(only);
      if (decoded.details.length > 0 && encodeRpcStatus(status.code, status.details, decoded.details).equals(only))
        details = decoded.details;
    } catch {
      // Not a google.rpc.Status: it travels as a trailer below.
    }
  }
  if (raw.length > 0 && details.length === 0) {
    trailers.md[STATUS_DETAILS_KEY] = {
      val: raw.map((v) => (typeof v === 'string' ? Buffer.from(v, 'utf8') : v)),
    };
  }
  return { code: status.code, message: status.details, details, trailers };
}

function encodeRpcStatus(code: number, message: string, details: StreamStatus['details']): Buffer {
  return Buffer.from(RpcStatus.encode({ code, message, details }).finish());
}

/**
 * Turns a wire status into grpc-js's StatusObject. Details come back as
 * grpc-status-details-bin, so code written for direct grpc-js calls (for
 * example @grpc/grpc-js's rich error helpers) reads them unchanged: the
 * trailer's own bytes when the peer sent them, else a google.rpc.Status
 * built from the status fields (a Go peer sends details only there).
 */
export function toStatusObject(status: StreamStatus): StatusObject {
  const metadata = fromWireMetadata(status.trailers);
  if (metadata.get(STATUS_DETAILS_KEY).length === 0 && status.details.length > 0) {
    metadata.set(STATUS_DETAILS_KEY, encodeRpcStatus(status.code, status.message, status.details));
  }
  return { code: status.code, details: status.message, metadata };
}

/** The status an error stands for, and whether someone chose it. */
export interface ErrorStatus extends OutgoingStatus {
  readonly metadata: Metadata | null;
  /**
   * Whether the error names a real gRPC error code (1-16) of its own (a
   * `ServiceError`, a `{ code, details }`): a status someone chose, fit to
   * pass on to the peer as it is, rather than a failure whose text is internal.
   */
  readonly deliberate: boolean;
}

/**
 * The one rule for turning an error (thrown, passed to a callback or emitted)
 * into a gRPC status, grpc-js's own for server handlers: its `code` when that
 * is an integer, else UNKNOWN; its `details` when it has such a code and
 * string details, else its `message`, else "Unknown Error"; its metadata,
 * unless `trailer` is given. Used for handler errors and for errors thrown by
 * the library's user callbacks (`affinityKey`, `authenticate`), so one value
 * means one status wherever it is thrown.
 */
export function statusOfError(error: unknown, trailer?: Metadata): ErrorStatus {
  const e = (typeof error === 'object' && error !== null ? error : {}) as Partial<ServerErrorResponse> & {
    code?: unknown;
    details?: unknown;
    metadata?: unknown;
  };
  const integer = typeof e.code === 'number' && Number.isInteger(e.code);
  const code = integer ? (e.code as number) : grpcStatus.UNKNOWN;
  const details =
    integer && typeof e.details === 'string' ? e.details : typeof e.message === 'string' ? e.message : 'Unknown Error';
  const metadata = trailer ?? (e.metadata instanceof Metadata ? e.metadata : null);
  const deliberate = integer && code >= grpcStatus.CANCELLED && code <= grpcStatus.UNAUTHENTICATED;
  return { code, details, metadata, deliberate };
}

/**
 * Encodes a status message for the grpc-message header: percent-encoding
 * (of its UTF-8 bytes) for '%' and everything outside printable ASCII, as
 * the gRPC spec says, and for spaces too, as grpc-js does. HTTP/2
 * implementations (Node's among them) strip or refuse header values with
 * leading or trailing whitespace, which would leave the caller an empty
 * message; an encoded space survives and every gRPC peer decodes it.
 */
export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const b of Buffer.from(message, 'utf8')) {
    out +=
      b > 0x20 && b < 0x7f && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * Decodes a grpc-message header value: the inverse of
 * {@link encodeGrpcMessage}, with grpc-js's client rule (`decodeURI`; a
 * value that is not valid percent-encoding is taken as it came).
 */
export function decodeGrpcMessage(value: string): string {
  try {
    return decodeURI(value);
  } catch {
    return value;
  }
}
