import { BinaryReader } from '@bufbuild/protobuf/wire';
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import { MAX_CHUNK_SIZE } from '../engine/constants.js';
import type { ClientFrame, ServerFrame } from '../engine/frames.js';
import { ClientToServer, ServerToClient } from '../gen/grpctunnel/v1/tunnel.js';
import { encodeMessageStart, encodeMoreData, fastStreamId } from './data-frame-encoding.js';
import { splitStreamId } from './stream-id-decoding.js';
import { frameMessage } from './wire.js';

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
export function encodeClientToServer(frame: ClientFrame): Buffer {
  return clientToServer(frame, false);
}

/** {@link encodeClientToServer} as one gRPC message (5-byte prefix first), for the library's own HTTP/2 paths. */
export function frameClientToServer(frame: ClientFrame): Buffer {
  return clientToServer(frame, true);
}

function clientToServer(frame: ClientFrame, prefixed: boolean): Buffer {
  const body = frame.frame;
  const id = frame.streamId;
  if (body && typeof id === 'number' && fastStreamId(id)) {
    if (body.$case === 'moreRequestData') return encodeMoreData(id, body.value, prefixed);
    if (body.$case === 'requestMessage') return encodeMessageStart(id, body.value.size, body.value.data, prefixed);
  }
  // The generated writer's int64() takes a bigint as well as a number, so an
  // id past 2^53 is written exactly; only the generated type says number.
  const bytes = ClientToServer.encode(frame as ClientToServer).finish();
  return prefixed ? frameMessage(bytes) : view(bytes);
}

/** Decodes a client-to-server frame with its exact stream id; data fields are views of `buf`. */
export function decodeClientToServer(buf: Buffer): ClientFrame {
  const split = splitStreamId(buf);
  if (!split) return ClientToServer.decode(buf);
  const frame: ClientFrame = ClientToServer.decode(
    readerAt(split.rest, split.offset),
    split.rest.length - split.offset,
  );
  frame.streamId = split.id;
  return frame;
}

/** Encodes a server-to-client frame; data frames take the one-copy path. */
export function encodeServerToClient(frame: ServerFrame): Buffer {
  return serverToClient(frame, false);
}

/** {@link encodeServerToClient} as one gRPC message (5-byte prefix first), for the library's own HTTP/2 paths. */
export function frameServerToClient(frame: ServerFrame): Buffer {
  return serverToClient(frame, true);
}

function serverToClient(frame: ServerFrame, prefixed: boolean): Buffer {
  const body = frame.frame;
  const id = frame.streamId;
  if (body && typeof id === 'number' && fastStreamId(id)) {
    if (body.$case === 'moreResponseData') return encodeMoreData(id, body.value, prefixed);
    if (body.$case === 'responseMessage') return encodeMessageStart(id, body.value.size, body.value.data, prefixed);
  }
  const bytes = ServerToClient.encode(frame as ServerToClient).finish();
  return prefixed ? frameMessage(bytes) : view(bytes);
}

/** Decodes a server-to-client frame with its exact stream id; data fields are views of `buf`. */
export function decodeServerToClient(buf: Buffer): ServerFrame {
  const split = splitStreamId(buf);
  if (!split) return ServerToClient.decode(buf);
  const frame: ServerFrame = ServerToClient.decode(
    readerAt(split.rest, split.offset),
    split.rest.length - split.offset,
  );
  frame.streamId = split.id;
  return frame;
}

/** A reader positioned after the stream id, so the frame is not copied to skip it. */
function readerAt(bytes: Uint8Array, offset: number): BinaryReader {
  const reader = new BinaryReader(bytes);
  reader.pos = offset;
  return reader;
}

const openTunnel: MethodDefinition<ClientFrame, ServerFrame> = {
  path: OPEN_TUNNEL_PATH,
  requestStream: true,
  responseStream: true,
  requestSerialize: encodeClientToServer,
  requestDeserialize: decodeClientToServer,
  responseSerialize: encodeServerToClient,
  responseDeserialize: decodeServerToClient,
  originalName: 'openTunnel',
};

const openReverseTunnel: MethodDefinition<ServerFrame, ClientFrame> = {
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
