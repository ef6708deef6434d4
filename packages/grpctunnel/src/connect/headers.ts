import { Metadata } from '@grpc/grpc-js';
import { isTransportHeader } from '../grpc/metadata.js';

// Connect carries metadata as fetch `Headers` (binary values base64 in
// `-bin` keys, repeated values joined with ", "); grpc-js as `Metadata`
// (binary values as Buffers, repeated values as a list). These two
// functions are the only place the forms meet.

/**
 * Copies application headers into grpc-js metadata. Transport headers
 * (content-type, grpc-timeout, ...) stay out: grpc-js writes its own.
 * A `-bin` value holding several base64 values (", "-joined) becomes
 * several binary values, as on the wire.
 */
export function headersToMetadata(headers: Headers, into: Metadata = new Metadata()): Metadata {
  headers.forEach((value, key) => {
    if (isTransportHeader(key)) return;
    if (key.endsWith('-bin')) {
      for (const part of value.split(',')) {
        const trimmed = part.trim();
        if (trimmed !== '') into.add(key, Buffer.from(trimmed, 'base64'));
      }
    } else {
      into.add(key, value);
    }
  });
  return into;
}

/**
 * Appends grpc-js metadata to Connect headers: binary values as unpadded
 * standard base64, as Connect's own `encodeBinaryHeader` writes them.
 */
export function metadataToHeaders(metadata: Metadata, into: Headers = new Headers()): Headers {
  const map = metadata.toJSON() as Record<string, Array<string | Buffer>>;
  for (const [key, values] of Object.entries(map)) {
    for (const value of values) {
      into.append(key, typeof value === 'string' ? value : value.toString('base64').replace(/=+$/, ''));
    }
  }
  return into;
}
