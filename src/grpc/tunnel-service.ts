import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import { MAX_CHUNK_SIZE } from '../engine/constants.js';
import { ClientToServer, ServerToClient } from '../gen/grpctunnel/v1/tunnel.js';
import { encodeMessageStart, encodeMoreData, fastStreamId } from './data-frame-encoding.js';

/** Full path of the forward-tunnel method. */
export const OPEN_TUNNEL_PATH = '/grpctunnel.v1.TunnelService/OpenTunnel';
/** Full path of the reverse-tunnel method. */
export const OPEN_REVERSE_TUNNEL_PATH = '/grpctunnel.v1.TunnelService/OpenReverseTunnel';

/**
 * The data chunk size this library sends over grpc-js. A full 16 KiB chunk
 * makes a gRPC message of 16,395 bytes (frame fields and the 5-byte gRPC
 * prefix), one more than fits HTTP/2's default 16,384-byte DATA frame: every
 * chunk then crossed the connection as a full DATA frame plus an 11-byte one,
 * and the receiving grpc-js copied the two parts into a new buffer before
 * decoding. 32 bytes less than the limit covers the largest frame overhead
 * (a 10-byte stream id, a 5-byte message size, the length prefixes), so each
 * frame is one DATA frame. Receivers accept any chunk up to 16384, Go's too.
 */
export const GRPC_CHUNK_SIZE = MAX_CHUNK_SIZE - 32;

function view(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Encodes a client-to-server frame; data frames take the one-copy path. */
export function encodeClientToServer(frame: ClientToServer): Buffer {
  const body = frame.frame;
  if (body && fastStreamId(frame.streamId)) {
    if (body.$case === 'moreRequestData') return encodeMoreData(frame.streamId, body.value);
    if (body.$case === 'requestMessage') return encodeMessageStart(frame.streamId, body.value.size, body.value.data);
  }
  return view(ClientToServer.encode(frame).finish());
}
/** Decodes a client-to-server frame; data fields are views of `buf`. */
export const decodeClientToServer = (buf: Buffer): ClientToServer => ClientToServer.decode(buf);
/** Encodes a server-to-client frame; data frames take the one-copy path. */
export function encodeServerToClient(frame: ServerToClient): Buffer {
  const body = frame.frame;
  if (body && fastStreamId(frame.streamId)) {
    if (body.$case === 'moreResponseData') return encodeMoreData(frame.streamId, body.value);
    if (body.$case === 'responseMessage') return encodeMessageStart(frame.streamId, body.value.size, body.value.data);
  }
  return view(ServerToClient.encode(frame).finish());
}
/** Decodes a server-to-client frame; data fields are views of `buf`. */
export const decodeServerToClient = (buf: Buffer): ServerToClient => ServerToClient.decode(buf);

const openTunnel: MethodDefinition<ClientToServer, ServerToClient> = {
  path: OPEN_TUNNEL_PATH,
  requestStream: true,
  responseStream: true,
  requestSerialize: encodeClientToServer,
  requestDeserialize: decodeClientToServer,
  responseSerialize: encodeServerToClient,
  responseDeserialize: decodeServerToClient,
  originalName: 'openTunnel',
};

const openReverseTunnel: MethodDefinition<ServerToClient, ClientToServer> = {
  path: OPEN_REVERSE_TUNNEL_PATH,
  requestStream: true,
  responseStream: true,
  requestSerialize: encodeServerToClient,
  requestDeserialize: decodeServerToClient,
  responseSerialize: encodeClientToServer,
  responseDeserialize: decodeClientToServer,
  originalName: 'openReverseTunnel',
};

/**
 * The grpc-js service definition of `grpctunnel.v1.TunnelService`, for
 * `server.addService` or `grpc.makeGenericClientConstructor`.
 */
export const TunnelServiceDefinition = {
  openTunnel,
  openReverseTunnel,
} satisfies ServiceDefinition;
