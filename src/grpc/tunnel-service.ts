import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import { ClientToServer, ServerToClient } from '../gen/grpctunnel/v1/tunnel.js';

/** Full path of the forward-tunnel method. */
export const OPEN_TUNNEL_PATH = '/grpctunnel.v1.TunnelService/OpenTunnel';
/** Full path of the reverse-tunnel method. */
export const OPEN_REVERSE_TUNNEL_PATH = '/grpctunnel.v1.TunnelService/OpenReverseTunnel';

function view(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Encodes a client-to-server frame (no copy of the encoder's output). */
export const encodeClientToServer = (frame: ClientToServer): Buffer => view(ClientToServer.encode(frame).finish());
/** Decodes a client-to-server frame; data fields are views of `buf`. */
export const decodeClientToServer = (buf: Buffer): ClientToServer => ClientToServer.decode(buf);
/** Encodes a server-to-client frame (no copy of the encoder's output). */
export const encodeServerToClient = (frame: ServerToClient): Buffer => view(ServerToClient.encode(frame).finish());
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
