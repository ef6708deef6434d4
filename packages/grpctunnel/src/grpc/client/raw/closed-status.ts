import { constants as h2 } from 'node:http2';
import { status as Status } from '@grpc/grpc-js';

// How a gRPC call on a raw HTTP/2 stream ends when the stream says so
// rather than the server's trailers: the rules grpc-js's client applies
// (build/src/subchannel-call.js), so a tunnel RPC on the library's own
// HTTP/2 session fails with the code and text it would have had through
// grpc-js. One pure function each, tested as tables.

/** A status code and its text, without metadata. */
export interface CodeAndDetails {
  readonly code: Status;
  readonly details: string;
}

/** The status of an HTTP response that is not a gRPC one (`:status` other than 200, or no grpc-status), as grpc-js maps it. */
export function statusOfHttpCode(httpStatus: number): CodeAndDetails {
  const details = `Received HTTP status code ${httpStatus}`;
  switch (httpStatus) {
    case 400:
      return { code: Status.INTERNAL, details };
    case 401:
      return { code: Status.UNAUTHENTICATED, details };
    case 403:
      return { code: Status.PERMISSION_DENIED, details };
    case 404:
      return { code: Status.UNIMPLEMENTED, details };
    case 429:
    case 502:
    case 503:
    case 504:
      return { code: Status.UNAVAILABLE, details };
    default:
      return { code: Status.UNKNOWN, details };
  }
}

/** What is known when an HTTP/2 stream closed before a gRPC status arrived. */
export interface ClosedStream {
  /** The stream's RST_STREAM code (NO_ERROR when it simply closed). */
  readonly rstCode: number;
  /** The response's `:status`, if headers came. */
  readonly httpStatus?: number | undefined;
  /** Whether the connection went away under the stream. */
  readonly connectionDropped: boolean;
  /** A Node error the stream or session reported (not one made from an RST_STREAM). */
  readonly internalError?: (Error & { code?: string }) | undefined;
}

/** The status of a stream that closed without a gRPC status, as grpc-js reports it. */
export function statusOfClosedStream(closed: ClosedStream): CodeAndDetails {
  const { rstCode, httpStatus, connectionDropped, internalError } = closed;
  switch (rstCode) {
    case h2.NGHTTP2_NO_ERROR:
      if (httpStatus && httpStatus !== 200) return statusOfHttpCode(httpStatus);
      return {
        code: Status.INTERNAL,
        details: `Received RST_STREAM with code ${rstCode} (Call ended without gRPC status)`,
      };
    case h2.NGHTTP2_REFUSED_STREAM:
      return { code: Status.UNAVAILABLE, details: 'Stream refused by server' };
    case h2.NGHTTP2_CANCEL:
      // Node reports a dropped connection as CANCEL too; that one is UNAVAILABLE.
      return connectionDropped
        ? { code: Status.UNAVAILABLE, details: 'Connection dropped' }
        : { code: Status.CANCELLED, details: 'Call cancelled' };
    case h2.NGHTTP2_ENHANCE_YOUR_CALM:
      return { code: Status.RESOURCE_EXHAUSTED, details: 'Bandwidth exhausted or memory limit exceeded' };
    case h2.NGHTTP2_INADEQUATE_SECURITY:
      return { code: Status.PERMISSION_DENIED, details: 'Protocol not secure enough' };
    case h2.NGHTTP2_INTERNAL_ERROR:
      if (!internalError) {
        return { code: Status.INTERNAL, details: `Received RST_STREAM with code ${rstCode} (Internal server error)` };
      }
      if (internalError.code === 'ECONNRESET' || internalError.code === 'ETIMEDOUT') {
        return { code: Status.UNAVAILABLE, details: internalError.message };
      }
      return {
        code: Status.INTERNAL,
        details: `Received RST_STREAM with code ${rstCode} triggered by internal client error: ${internalError.message}`,
      };
    default:
      return { code: Status.INTERNAL, details: `Received RST_STREAM with code ${rstCode}` };
  }
}
