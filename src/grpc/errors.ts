import { Metadata, type ServiceError, status as Status } from '@grpc/grpc-js';

/** Builds a grpc-js ServiceError: an Error with code, details and metadata. */
export function statusError(code: Status, details: string, metadata: Metadata = new Metadata()): ServiceError {
  const error = new Error(`${code} ${Status[code]}: ${details}`) as ServiceError;
  error.code = code;
  error.details = details;
  error.metadata = metadata;
  return error;
}

/** The error a call rejects with after its AbortSignal fired: a CANCELLED ServiceError carrying the reason as `cause`. */
export function abortError(signal: AbortSignal): ServiceError {
  const error = statusError(Status.CANCELLED, 'the operation was aborted');
  (error as Error).cause = signal.reason;
  return error;
}

/**
 * The error status a thrown value carries (a `ServiceError`, or a plain
 * `{ code, details }`), when its code is a real gRPC error code (1-16).
 */
export function thrownStatus(err: unknown): { code: Status; details: string | undefined } | undefined {
  const candidate = err as { code?: unknown; details?: unknown } | null;
  if (!candidate || typeof candidate.code !== 'number' || candidate.code < 1 || candidate.code > 16) return undefined;
  return { code: candidate.code, details: typeof candidate.details === 'string' ? candidate.details : undefined };
}
