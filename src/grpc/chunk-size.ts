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

/** The largest chunk this side offers, from the `maxChunkSize` tunnel option. */
export function ownChunkSize(option: number | undefined): number {
  return option ?? DEFAULT_EXTENDED_CHUNK_SIZE;
}

/**
 * Adds the large-chunk offer to the headers of a tunnel RPC (request
 * headers of the side that opens it, response headers of the other); no
 * header when the extension is off.
 */
export function advertiseChunkSize(headers: Metadata, option: number | undefined): void {
  const own = ownChunkSize(option);
  if (own > MAX_CHUNK_SIZE) headers.set(CHUNK_SIZE_HEADER, String(own));
}

/**
 * The chunk sizes of a tunnel whose peer sent `peerHeaders` (see
 * negotiateChunkSize): the protocol's unless both sides offered more.
 */
export function tunnelChunkSizes(option: number | undefined, peerHeaders: Metadata): TunnelChunkSizes {
  const advertised = peerHeaders.get(CHUNK_SIZE_HEADER)[0];
  const agreed = negotiateChunkSize(ownChunkSize(option), typeof advertised === 'string' ? advertised : undefined);
  return agreed === undefined ? PROTOCOL_CHUNKS : { maxChunkSize: agreed, maxReceiveChunkSize: agreed };
}
