import { create, type DescMessage, toBinary } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import type { Metadata, StatusObject } from '@grpc/grpc-js';
import { Status as RpcStatus } from '../gen/google/rpc/status.js';
import { STATUS_DETAILS_KEY } from '../grpc/status.js';
import { headersToMetadata, metadataToHeaders } from './headers.js';

/** A gRPC status a Connect handler ends with, in the form grpc-js's server call objects take. */
export interface ErrorStatus {
  code: number;
  details: string;
  metadata: Metadata;
}

/** Connect's outgoing error detail (a message and its schema) or an incoming one (type name and bytes). */
type Detail = ConnectError['details'][number];

function detailAny(detail: Detail): { typeUrl: string; value: Uint8Array } {
  if ('desc' in detail) {
    const desc = detail.desc as DescMessage;
    return { typeUrl: `type.googleapis.com/${desc.typeName}`, value: toBinary(desc, create(desc, detail.value)) };
  }
  return { typeUrl: `type.googleapis.com/${detail.type}`, value: detail.value };
}

/**
 * The status a handler's ConnectError stands for: its code and raw message,
 * its metadata and the handler's response trailers as trailers, and its
 * details as a google.rpc.Status in grpc-status-details-bin (what Connect's
 * own gRPC handler sends, and what grpc-js and Go callers read).
 */
export function statusFromConnectError(error: ConnectError, responseTrailer: Headers): ErrorStatus {
  const metadata = headersToMetadata(responseTrailer);
  // An error that came from another call's wire carries that call's
  // headers as metadata: like Connect, pass on its status but not those.
  if (!error.isWireError) headersToMetadata(error.metadata, metadata);
  metadata.remove(STATUS_DETAILS_KEY);
  if (error.details.length > 0) {
    const status = { code: error.code, message: error.rawMessage, details: error.details.map(detailAny) };
    metadata.set(STATUS_DETAILS_KEY, Buffer.from(RpcStatus.encode(status).finish()));
  }
  return { code: error.code, details: error.rawMessage, metadata };
}

/**
 * The ConnectError a failed grpc-js call stands for, as Connect's gRPC
 * transport builds it from the same trailers: code and message from a
 * google.rpc.Status in grpc-status-details-bin when there is one (its
 * details become the error's, for `findDetails`), else from the status;
 * trailers then response headers as metadata.
 */
export function connectErrorFromStatus(status: StatusObject, header: Headers): ConnectError {
  const metadata = trailerHeaders(status);
  header.forEach((value, key) => {
    metadata.append(key, value);
  });
  let code: number = status.code;
  let message = status.details;
  let details: ConnectError['details'] = [];
  const raw = status.metadata.get(STATUS_DETAILS_KEY)[0];
  if (Buffer.isBuffer(raw)) {
    try {
      const rich = RpcStatus.decode(raw);
      if (rich.code !== 0) code = rich.code;
      message = rich.message;
      details = rich.details.map((any) => ({
        type: any.typeUrl.slice(any.typeUrl.lastIndexOf('/') + 1),
        value: any.value,
      }));
    } catch {
      // Not a google.rpc.Status: keep the plain status, as Connect does with undecodable details.
    }
  }
  const error = new ConnectError(message, code in Code ? code : Code.Unknown, metadata);
  error.details = details;
  error.isWireError = true;
  return error;
}

/**
 * A call's trailers as Connect reports them: grpc-status and grpc-message
 * first (grpc-js keeps those out of its metadata; Connect's transport shows
 * the raw trailers), then the rest.
 */
export function trailerHeaders(status: StatusObject, into: Headers = new Headers()): Headers {
  into.set('grpc-status', String(status.code));
  if (status.code !== 0) into.set('grpc-message', encodeURIComponent(status.details));
  return metadataToHeaders(status.metadata, into);
}
