// One tunneled call's metadata travels inside one tunnel frame, and a frame
// larger than the tunnel RPC's message limit (grpc-js and Go both default to
// 4 MiB) makes the peer's gRPC layer fail the whole tunnel RPC: every call on
// it. So each side checks a call's metadata against a limit well below that,
// and fails only that call, with RESOURCE_EXHAUSTED, in both directions.
import type { Metadata } from '../gen/grpctunnel/v1/tunnel.js';
import { Code } from './codes.js';
import { TunnelError } from './status.js';

/**
 * Default limit on one metadata block of a tunneled call (request headers,
 * response headers or trailers): 1 MiB. Calls made straight over grpc-js
 * fail at about 100 KiB (Node's HTTP/2 header limits), so every call that
 * works directly also works through a tunnel, and a frame carrying a full
 * block stays a quarter of the tunnel RPC's 4 MiB message limit.
 */
export const DEFAULT_MAX_METADATA_SIZE = 1024 * 1024;

/**
 * The size of a metadata block as HTTP/2 counts a header list: for each
 * value, the name's length plus the value's length plus 32 (RFC 7540
 * §6.5.2). Binary values count raw, as the tunnel carries them.
 */
export function metadataSize(metadata: Metadata | undefined): number {
  if (!metadata) return 0;
  let size = 0;
  const md = metadata.md;
  for (const key of Object.keys(md)) {
    const values = md[key]?.val;
    if (!values) continue;
    for (const v of values) size += key.length + v.byteLength + 32;
  }
  return size;
}

/** The error for a metadata block over `limit`; undefined when it fits. */
export function checkMetadataSize(
  what: 'request headers' | 'response headers' | 'response trailers',
  metadata: Metadata | undefined,
  limit: number,
): TunnelError | undefined {
  const size = metadataSize(metadata);
  if (size <= limit) return undefined;
  return new TunnelError(Code.RESOURCE_EXHAUSTED, `${what} of ${size} bytes exceed the limit of ${limit} bytes`);
}
