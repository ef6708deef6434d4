import type { Metadata } from '@grpc/grpc-js';
import { CHUNK_SIZE_HEADER, DEFAULT_EXTENDED_CHUNK_SIZE, MAX_CHUNK_SIZE } from '../engine/constants.js';
import { negotiateChunkSize } from '../engine/negotiation.js';
import { GRPC_CHUNK_SIZE } from './tunnel-service.js';

/** Chunk sizes of one tunnel, as the engines take them. */
export interface TunnelChunkSizes {
  /** Largest chunk this side sends. */
  readonly maxChunkSize: number;
  /** Largest chunk accepted from the peer; undefined: the protocol's 16384. */
  readonly maxReceiveChunkSize?: number;
}

/** The protocol's chunks, cut to fit one HTTP/2 DATA frame (see GRPC_CHUNK_SIZE). */
export const PROTOCOL_CHUNKS: TunnelChunkSizes = Object.freeze({ maxChunkSize: GRPC_CHUNK_SIZE });

/** Room for a data frame's own fields and gRPC's 5-byte prefix around a chunk. */
const FRAME_ROOM = 64;

/**
 * The largest chunk this side offers: the `maxChunkSize` tunnel option (1
 * MiB by default), kept below what grpc-js on this side's connection
 * accepts in one message (`receiveLimit`, its
 * `grpc.max_receive_message_length`; -1 is unlimited), since each chunk
 * is one message of the tunnel RPC. At 16384 or less nothing is offered.
 */
export function chunkOffer(option: number | undefined, receiveLimit: number | undefined): number {
  const wanted = option ?? DEFAULT_EXTENDED_CHUNK_SIZE;
  if (receiveLimit === undefined || receiveLimit < 0) return wanted;
  return Math.min(wanted, receiveLimit - FRAME_ROOM);
}

/**
 * Adds the large-chunk offer to the headers of a tunnel RPC (request
 * headers of the side that opens it, response headers of the other); no
 * header when the extension is off.
 */
export function advertiseChunkSize(headers: Metadata, offer: number): void {
  if (offer > MAX_CHUNK_SIZE) headers.set(CHUNK_SIZE_HEADER, String(offer));
}

/**
 * Takes the peer's offer out of the tunnel RPC's headers: the header is
 * this library's business, so what users see of the tunnel's metadata
 * (TunnelInfo, affinity keys) stays as it was without the extension, and
 * each idle tunnel does not keep it.
 */
export function takePeerChunkOffer(headers: Metadata): string | undefined {
  const advertised = headers.get(CHUNK_SIZE_HEADER)[0];
  headers.remove(CHUNK_SIZE_HEADER);
  return typeof advertised === 'string' ? advertised : undefined;
}

/**
 * The chunk sizes of a tunnel whose peer offered `advertised` (see
 * takePeerChunkOffer), this side having offered `offer` (see
 * negotiateChunkSize): the protocol's unless both sides offered more.
 */
export function tunnelChunkSizes(offer: number, advertised: string | undefined): TunnelChunkSizes {
  const agreed = negotiateChunkSize(offer, advertised);
  return agreed === undefined ? PROTOCOL_CHUNKS : { maxChunkSize: agreed, maxReceiveChunkSize: agreed };
}

/**
 * The `grpc.max_receive_message_length` of a grpc-js client's channel, read
 * from grpc-js's channel object (not public API: any other shape, or a
 * tunnel channel, gives undefined and the offer stays as configured).
 */
export function clientReceiveLimit(channel: unknown): number | undefined {
  const options = (channel as { internalChannel?: { options?: Record<string, unknown> } } | null)?.internalChannel
    ?.options;
  const limit = options?.['grpc.max_receive_message_length'];
  return typeof limit === 'number' ? limit : undefined;
}

/**
 * The limit on received messages of a grpc-js server call (its server's
 * `grpc.max_receive_message_length`), read from grpc-js's call objects
 * (not public API: undefined when they look different).
 */
export function serverReceiveLimit(call: object): number | undefined {
  // A tunnel RPC on the library's own HTTP/2 handling (RawAcceptedCall) says it directly.
  const own = (call as { maxReceiveMessageSize?: unknown }).maxReceiveMessageSize;
  if (typeof own === 'number') return own;
  let layer = (call as { call?: unknown }).call;
  for (let depth = 0; depth < 64 && typeof layer === 'object' && layer !== null; depth++) {
    const base = layer as { stream?: unknown; maxReceiveMessageSize?: unknown; nextCall?: unknown };
    if (typeof base.stream === 'object' && base.stream !== null) {
      return typeof base.maxReceiveMessageSize === 'number' ? base.maxReceiveMessageSize : undefined;
    }
    layer = base.nextCall;
  }
  return undefined;
}
