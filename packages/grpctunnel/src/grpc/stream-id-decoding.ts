// The generated decoder reads int64 stream ids as JS numbers and throws for
// any id past 2^53, which grpc-js reports as "Error deserializing request"
// and which ends the whole tunnel RPC. Ids are int64 on the wire and the Go
// reference takes all of them, so the id is read here, exactly, and the
// generated code decodes the rest of the frame. Every encoder writes the id
// first (field 1), so the common case skips it in place with no copy.
import { normalizeStreamId, type StreamId } from '../engine/stream-id.js';

/** A frame split for decoding: the exact stream id, and the frame's other fields. */
export interface SplitFrame {
  /** The last stream_id field's value (protobuf's rule for repeated scalars), 0 when absent. */
  readonly id: StreamId;
  /** Bytes holding every other field. */
  readonly rest: Uint8Array;
  /** Where those fields start in `rest`. */
  readonly offset: number;
}

const TAG_STREAM_ID = 0x08; // field 1, varint

class Truncated extends Error {
  constructor() {
    super('truncated tunnel frame');
  }
}

/** Reads an int64 varint at `pos` exactly; returns the value and the position after it. */
function readInt64(buf: Uint8Array, pos: number): [StreamId, number] {
  // Seven bytes (49 bits) are exact in a double: every id a real tunnel uses.
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 7; i++) {
    if (pos >= buf.length) throw new Truncated();
    const b = buf[pos++] as number;
    value += (b & 0x7f) * scale;
    if (b < 0x80) return [value, pos];
    scale *= 128;
  }
  let big = BigInt(value);
  let shift = 49n;
  for (let i = 7; i < 10; i++) {
    if (pos >= buf.length) throw new Truncated();
    const b = buf[pos++] as number;
    big |= BigInt(b & 0x7f) << shift;
    if (b < 0x80) return [normalizeStreamId(BigInt.asIntN(64, big)), pos];
    shift += 7n;
  }
  throw new Error('malformed varint in a tunnel frame');
}

/** Reads a varint as a number (for tags and lengths, which fit 32 bits). */
function readLength(buf: Uint8Array, pos: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= buf.length) throw new Truncated();
    const b = buf[pos++] as number;
    value += (b & 0x7f) * scale;
    if (b < 0x80) return [value, pos];
    scale *= 128;
  }
  throw new Error('malformed varint in a tunnel frame');
}

/**
 * Finds the stream id of a ClientToServer or ServerToClient frame (both keep
 * it in field 1). Returns undefined when the frame holds something this
 * top-level walk does not follow (groups, field 0): the generated decoder
 * then sees the whole frame, as before.
 */
export function splitStreamId(buf: Uint8Array): SplitFrame | undefined {
  let id: StreamId = 0;
  // Ranges [start, end) of stream_id fields; usually one, at 0.
  let idFields: number[] | undefined;
  let pos = 0;
  while (pos < buf.length) {
    const start = pos;
    let tag: number;
    [tag, pos] = readLength(buf, pos);
    if (tag > 0xffffffff || tag >>> 3 === 0) return undefined;
    if (tag === TAG_STREAM_ID) {
      [id, pos] = readInt64(buf, pos);
      if (idFields) idFields.push(start, pos);
      else idFields = [start, pos];
      continue;
    }
    switch (tag & 7) {
      case 0:
        [, pos] = readLength(buf, pos);
        break;
      case 1:
        pos += 8;
        break;
      case 2: {
        let n: number;
        [n, pos] = readLength(buf, pos);
        pos += n;
        break;
      }
      case 5:
        pos += 4;
        break;
      default:
        return undefined;
    }
  }
  if (pos > buf.length) throw new Truncated();
  if (!idFields) return { id, rest: buf, offset: 0 };
  if (idFields.length === 2 && idFields[0] === 0) return { id, rest: buf, offset: idFields[1] as number };
  // The id elsewhere or more than once (legal, never seen in practice): copy the other fields.
  const parts: Uint8Array[] = [];
  let from = 0;
  for (let i = 0; i < idFields.length; i += 2) {
    parts.push(buf.subarray(from, idFields[i]));
    from = idFields[i + 1] as number;
  }
  parts.push(buf.subarray(from));
  return { id, rest: Buffer.concat(parts), offset: 0 };
}
