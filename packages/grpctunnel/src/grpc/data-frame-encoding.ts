// The hot path of the tunnel: data frames (one per 16 KiB chunk) encoded
// straight into one exactly sized buffer. The generated encoder grows its
// buffer by doubling, shifts a nested message to widen its length prefix and
// copies the result out again: three copies and several allocations per
// chunk where this makes one of each. Output is byte-for-byte what the
// generated encoder writes (a test compares them); every other frame still
// goes through the generated code. On the library's own HTTP/2 paths the
// frame is written behind room for the 5-byte gRPC prefix (`prefixed`), so
// the message is not copied once more to frame it.

/** Field tags shared by ClientToServer and ServerToClient. */
const TAG_STREAM_ID = 0x08; // field 1, varint
const TAG_MESSAGE = 0x1a; // field 3 (request_message / response_message), length-delimited
const TAG_MORE_DATA = 0x22; // field 4 (more_request_data / more_response_data), length-delimited
/** Fields of MessageData. */
const TAG_SIZE = 0x08; // field 1, varint
const TAG_DATA = 0x12; // field 2, length-delimited

function varintSize(value: number): number {
  let n = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    n++;
  }
  return n;
}

function writeVarint(buf: Buffer, pos: number, value: number): number {
  while (value >= 0x80) {
    buf[pos++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  buf[pos++] = value;
  return pos;
}

/** Whether the fast path can encode this stream id (data frames never use negative ids). */
export function fastStreamId(streamId: number): boolean {
  return Number.isSafeInteger(streamId) && streamId >= 0;
}

function streamIdSize(streamId: number): number {
  return streamId === 0 ? 0 : 1 + varintSize(streamId);
}

/** Bytes before the frame: none, or the gRPC message prefix (flag 0, big-endian length). */
function start(prefixed: boolean, frameLength: number): { buf: Buffer; pos: number } {
  if (!prefixed) return { buf: Buffer.allocUnsafe(frameLength), pos: 0 };
  const buf = Buffer.allocUnsafe(5 + frameLength);
  buf[0] = 0;
  buf.writeUInt32BE(frameLength, 1);
  return { buf, pos: 5 };
}

function writeStreamId(buf: Buffer, pos: number, streamId: number): number {
  if (streamId === 0) return pos;
  buf[pos] = TAG_STREAM_ID;
  return writeVarint(buf, pos + 1, streamId);
}

/**
 * A `request_message` / `response_message` frame: the first chunk of a
 * `size`-byte message; with `prefixed`, as a gRPC message (5-byte prefix first).
 */
export function encodeMessageStart(streamId: number, size: number, chunk: Uint8Array, prefixed = false): Buffer {
  const inner =
    (size === 0 ? 0 : 1 + varintSize(size)) + (chunk.length === 0 ? 0 : 1 + varintSize(chunk.length) + chunk.length);
  const { buf, pos: at } = start(prefixed, streamIdSize(streamId) + 1 + varintSize(inner) + inner);
  let pos = writeStreamId(buf, at, streamId);
  buf[pos++] = TAG_MESSAGE;
  pos = writeVarint(buf, pos, inner);
  if (size !== 0) {
    buf[pos++] = TAG_SIZE;
    pos = writeVarint(buf, pos, size);
  }
  if (chunk.length !== 0) {
    buf[pos++] = TAG_DATA;
    pos = writeVarint(buf, pos, chunk.length);
    buf.set(chunk, pos);
  }
  return buf;
}

/**
 * A `more_request_data` / `more_response_data` frame: a further chunk of the
 * message in progress; with `prefixed`, as a gRPC message.
 */
export function encodeMoreData(streamId: number, chunk: Uint8Array, prefixed = false): Buffer {
  const { buf, pos: at } = start(prefixed, streamIdSize(streamId) + 1 + varintSize(chunk.length) + chunk.length);
  let pos = writeStreamId(buf, at, streamId);
  buf[pos++] = TAG_MORE_DATA;
  pos = writeVarint(buf, pos, chunk.length);
  buf.set(chunk, pos);
  return buf;
}
