import { Code } from './codes.js';
import { MAX_CHUNK_SIZE } from './constants.js';
import { TunnelError } from './status.js';

/** Receive-side settings of a stream. */
export interface InboundOptions {
  /** Receive window announced to the peer; Infinity turns flow control off. */
  readonly window: number;
  /** Largest message accepted, in bytes. */
  readonly maxMessageSize: number;
  /** Consumed bytes gathered before one window_update is sent (batching). */
  readonly updateThreshold: number;
  /** Sends window_update for this stream. */
  readonly sendWindowUpdate: (n: number) => void;
  /**
   * Whether the end of the stream waits for a read request like a message
   * does (a server's half-close, read as end-of-stream), or is reported as
   * soon as the queued messages are consumed (a client's final status).
   */
  readonly endNeedsRead: boolean;
  /** Hands one complete message to the application (only after {@link InboundStream.requestRead}). */
  readonly deliver: (message: Buffer) => void;
}

interface Assembly {
  readonly size: number;
  readonly parts: Uint8Array[];
  received: number;
  /** Bytes of this message already counted as consumed for flow control. */
  credited: number;
}

function toBuffer(part: Uint8Array): Buffer {
  return Buffer.from(part.buffer, part.byteOffset, part.byteLength);
}

/**
 * The incoming half of one stream: reassembles chunked messages, enforces the
 * receive window and size limits, and returns window credit as the
 * application consumes data.
 *
 * Credit is returned for a message's bytes when it is delivered, and for a
 * partly received message as soon as the reader waits on it, so a message
 * larger than the window still flows while the window bounds what sits
 * unread.
 */
export class InboundStream {
  private readonly queue: Assembly[] = [];
  private readerWaiting = false;
  private delivering = false;
  private pendingCredit = 0;
  /** Bytes the peer may still send before it must wait for an update. */
  private allowance: number;
  private onEnd: (() => void) | undefined;

  constructor(private readonly options: InboundOptions) {
    this.allowance = options.window;
  }

  /** A `*_message` frame: a new message of `size` bytes begins with `chunk`. */
  messageStart(size: number, chunk: Uint8Array): void {
    const last = this.queue[this.queue.length - 1];
    if (last && last.received < last.size) {
      throw new TunnelError(Code.INVALID_ARGUMENT, 'a new message began before the previous one was complete');
    }
    if (size > this.options.maxMessageSize) {
      throw new TunnelError(
        Code.RESOURCE_EXHAUSTED,
        `Received message larger than max (${size} vs. ${this.options.maxMessageSize})`,
      );
    }
    const message: Assembly = { size, parts: [], received: 0, credited: 0 };
    this.queue.push(message);
    this.accept(message, chunk);
    this.deliverReady();
  }

  /** A `more_*_data` frame: the next chunk of the message in progress. */
  moreData(chunk: Uint8Array): void {
    const last = this.queue[this.queue.length - 1];
    if (!last || last.received >= last.size) {
      throw new TunnelError(Code.INVALID_ARGUMENT, 'message data arrived without a message envelope');
    }
    this.accept(last, chunk);
    this.deliverReady();
  }

  /** The application is ready for one more message. */
  requestRead(): void {
    this.readerWaiting = true;
    this.deliverReady();
  }

  /**
   * The peer sends nothing more. `onEnd` runs once every complete message was
   * delivered; a message cut off in the middle is an error.
   */
  end(onEnd: () => void): void {
    const last = this.queue[this.queue.length - 1];
    if (last && last.received < last.size) {
      throw new TunnelError(Code.INVALID_ARGUMENT, 'the stream ended in the middle of a message');
    }
    this.onEnd = onEnd;
    this.deliverReady();
  }

  /** Whether complete or partial messages wait to be read. */
  get hasQueued(): boolean {
    return this.queue.length > 0;
  }

  private accept(message: Assembly, chunk: Uint8Array): void {
    const n = chunk.byteLength;
    if (n > MAX_CHUNK_SIZE) {
      throw new TunnelError(Code.INVALID_ARGUMENT, `a chunk of ${n} bytes exceeds the ${MAX_CHUNK_SIZE}-byte limit`);
    }
    if (message.received + n > message.size) {
      throw new TunnelError(Code.INVALID_ARGUMENT, `message data exceeds its announced size of ${message.size} bytes`);
    }
    if (n > this.allowance) {
      throw new TunnelError(Code.RESOURCE_EXHAUSTED, 'flow control window exceeded');
    }
    this.allowance -= n;
    if (n > 0) message.parts.push(chunk);
    message.received += n;
  }

  private deliverReady(): void {
    if (this.delivering) return;
    this.delivering = true;
    try {
      while (this.readerWaiting) {
        const head = this.queue[0];
        if (!head) break;
        this.credit(head.received - head.credited);
        head.credited = head.received;
        if (head.received < head.size) break;
        this.queue.shift();
        this.readerWaiting = false;
        const message =
          head.parts.length === 1 ? toBuffer(head.parts[0] as Uint8Array) : Buffer.concat(head.parts, head.size);
        this.options.deliver(message);
      }
      if (this.onEnd && this.queue.length === 0 && (this.readerWaiting || !this.options.endNeedsRead)) {
        const onEnd = this.onEnd;
        this.onEnd = undefined;
        onEnd();
      }
    } finally {
      this.delivering = false;
    }
  }

  private credit(n: number): void {
    if (n === 0 || this.options.window === Number.POSITIVE_INFINITY) return;
    this.pendingCredit += n;
    if (this.pendingCredit >= this.options.updateThreshold) {
      const update = this.pendingCredit;
      this.pendingCredit = 0;
      this.allowance += update;
      this.options.sendWindowUpdate(update);
    }
  }
}
