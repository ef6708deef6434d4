// Stream ids are int64 on the wire. A JS number holds every id up to 2^53
// exactly and is what the engine keys and compares cheaply, so that is the
// form of every id real tunnels use; only ids beyond ±(2^53-1) are bigints.
// Keeping exactly one form per value (see normalizeStreamId) makes Map keys
// and === work across both, and <, <=, > compare a number with a bigint
// exactly, so ordering needs no conversion either.

/** A stream id: a number when it is a safe integer, otherwise a bigint. */
export type StreamId = number | bigint;

/** Smallest and largest int64. */
export const MIN_STREAM_ID = -(2n ** 63n);
export const MAX_STREAM_ID = 2n ** 63n - 1n;

/** The one form of an exact id: a number when safe, else the bigint itself. */
export function normalizeStreamId(id: bigint): StreamId {
  return id >= BigInt(Number.MIN_SAFE_INTEGER) && id <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(id) : id;
}

/** The id after `id` (a client's next stream id), in normal form. */
export function nextStreamId(id: StreamId): StreamId {
  if (typeof id === 'number' && id < Number.MAX_SAFE_INTEGER) return id + 1;
  return normalizeStreamId(BigInt(id) + 1n);
}
