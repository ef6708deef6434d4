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
