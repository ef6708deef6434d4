// gRPC's HTTP/2 message framing and deadline header, for tunnel RPCs on the
// library's own HTTP/2 sessions (client/raw/raw-call.ts, server/raw/
// accepted-call.ts): what grpc-js does for a call, done once per message
// with one copy.
import { encodeTimeout } from '../engine/deadline.js';

/**
 * The grpc-timeout header value for a deadline (ms since the epoch) seen at
 * `now`, in grpc-js's units (milliseconds and up, rounded up); undefined for
 * no deadline (Infinity).
 */
export function grpcTimeout(deadline: number, now = Date.now()): string | undefined {
  if (deadline === Number.POSITIVE_INFINITY) return undefined;
  return encodeTimeout(deadline - now, 'm');
}

/** One gRPC message with its 5-byte prefix (uncompressed), ready to write. */
export function frameMessage(body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = 0;
  out.writeUInt32BE(body.length, 1);
  out.set(body, 5);
  return out;
}

/** Why a {@link MessageReader} stopped: the message it refused. */
export class MessageFramingError extends Error {
  constructor(
    message: string,
    /** 'too-large' (over the limit) or 'compressed' (a flag this side never agreed to). */
    readonly kind: 'too-large' | 'compressed',
  ) {
    super(message);
  }
}

/**
 * Reassembles gRPC messages from HTTP/2 DATA pieces: one copy per message
 * that spans pieces, none for a message inside one piece. Throws
 * {@link MessageFramingError} for a message over `maxLength` (grpc-js's
 * text) or a compressed one (unless `decompress` takes it: what it throws
 * passes through); after that it must not be fed again.
 */
export class MessageReader {
  private parts: Buffer[] = [];
  private have = 0;
  /** Length of the message being read, prefix included; -1 until its prefix is in. */
  private need = -1;
  private compressed = false;

  constructor(
    private readonly maxLength: number,
    /** Turns a message sent with the compressed flag into the message (a server that reads grpc-encoding). */
    private readonly decompress?: (body: Buffer) => Buffer,
  ) {}

  /** Feeds one DATA piece; returns the messages it completed, in order. */
  push(data: Buffer): Buffer[] {
    this.parts.push(data);
    this.have += data.length;
    const messages: Buffer[] = [];
    for (;;) {
      if (this.need < 0) {
        if (this.have < 5) return messages;
        const head = this.joined();
        this.compressed = head[0] !== 0;
        if (this.compressed && !this.decompress)
          throw new MessageFramingError('Received compressed message but no encoding was agreed', 'compressed');
        const size = head.readUInt32BE(1);
        if (size > this.maxLength) {
          throw new MessageFramingError(`Received message larger than max (${size} vs ${this.maxLength})`, 'too-large');
        }
        this.need = 5 + size;
      }
      if (this.have < this.need) return messages;
      const all = this.joined();
      const body = all.subarray(5, this.need);
      messages.push(this.compressed && this.decompress ? this.decompress(body) : body);
      const rest = all.subarray(this.need);
      this.parts = rest.length > 0 ? [rest] : [];
      this.have = rest.length;
      this.need = -1;
    }
  }

  /** Whether part of a message is still waiting for its remaining bytes. */
  get pending(): boolean {
    return this.have > 0;
  }

  private joined(): Buffer {
    if (this.parts.length !== 1) this.parts = [Buffer.concat(this.parts, this.have)];
    return this.parts[0] as Buffer;
  }
}
