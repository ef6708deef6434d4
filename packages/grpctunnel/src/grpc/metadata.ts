import { Metadata } from '@grpc/grpc-js';
import type { Metadata as WireMetadata } from '../gen/grpctunnel/v1/tunnel.js';

// Headers that belong to the HTTP/2 transport of one hop, never to the
// application: they are neither sent into a tunnel nor taken out of one,
// and the proxies (src/proxy) do not forward them either. The one list.
const TRANSPORT_HEADERS = new Set([
  ':authority',
  ':method',
  ':path',
  ':scheme',
  ':status',
  'connection',
  'content-length',
  'content-type',
  'grpc-accept-encoding',
  'grpc-encoding',
  'grpc-message',
  'grpc-status',
  'grpc-timeout',
  'host',
  'te',
  'transfer-encoding',
  'user-agent',
]);

/** Whether a header is transport-level: it must not cross a tunnel or a proxy. */
export function isTransportHeader(key: string): boolean {
  return TRANSPORT_HEADERS.has(key);
}

/** Converts grpc-js metadata to the wire form, leaving out transport headers and `skip`. */
export function toWireMetadata(metadata: Metadata | undefined, skip?: string): WireMetadata {
  const md: WireMetadata['md'] = {};
  if (!metadata) return { md };
  const map = metadata.toJSON() as Record<string, Array<string | Buffer>>;
  for (const key of Object.keys(map)) {
    if (TRANSPORT_HEADERS.has(key) || key === skip) continue;
    const values = map[key] as Array<string | Buffer>;
    md[key] = { val: values.map((v) => (typeof v === 'string' ? Buffer.from(v, 'utf8') : v)) };
  }
  return { md };
}

/**
 * Converts wire metadata to grpc-js metadata. Keys grpc-js would reject (not
 * lower-case ASCII token characters) are dropped rather than failing the call.
 */
export function fromWireMetadata(wire: WireMetadata | undefined, skip?: string): Metadata {
  const metadata = new Metadata();
  if (!wire) return metadata;
  for (const key of Object.keys(wire.md)) {
    if (TRANSPORT_HEADERS.has(key) || key === skip) continue;
    const values = wire.md[key]?.val ?? [];
    const binary = key.endsWith('-bin');
    try {
      for (const v of values) {
        const buf = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
        metadata.add(key, binary ? Buffer.from(buf) : buf.toString('utf8'));
      }
    } catch {
      // An invalid key or value from the peer; leave it out.
    }
  }
  return metadata;
}

/** First value of a header as text, from wire metadata. */
export function wireHeader(wire: WireMetadata, key: string): string | undefined {
  const v = wire.md[key]?.val[0];
  return v === undefined ? undefined : Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('utf8');
}
