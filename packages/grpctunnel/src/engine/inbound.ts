import { Code } from './codes.js';
import { MAX_CHUNK_SIZE } from './constants.js';
import type { ReceiveWindows } from './receive-window.js';
import { TunnelError } from './status.js';

/** Receive-side settings of a stream. */
export interface InboundOptions {
  /** The tunnel's window sizing; undefined turns flow control off for this stream. */
  readonly windows: ReceiveWindows | undefined;
  /** Largest message accepted, in bytes. */
  readonly maxMessageSize: number;
  /**
   * Largest chunk accepted, in bytes: the protocol's 16384 (the default),
   * or more where both peers agreed on larger chunks (negotiation.ts).
   */
  readonly maxChunkSize?: number;
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
 * unread. While the reader keeps up, the window grows (see
 * {@link ReceiveWindows}).
 */
export class InboundStream {
  private readonly queue: Assembly[] = [];
  private readerWaiting = false;
  private delivering = false;
  private pendingCredit = 0;
  /** The current window: what the peer may have unacknowledged at most. */
  private window: number;
  private threshold: number;
  /** Bytes received and not yet credited back (read by nobody yet). */
  private unread = 0;
  /** Bytes consumed in a row while the reader kept up, since the window last grew. */
  private keptUp = 0;
  private onEnd: (() => void) | undefined;
  private peerEnded = false;
  /** The stream is over: messages still queued are read, but no credit goes out. */
  private released = false;

  constructor(private readonly options: InboundOptions) {
    const windows = options.windows;
    this.window = windows ? windows.initial : Number.POSITIVE_INFINITY;
    this.threshold = windows ? windows.threshold(this.window) : 0;
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
    this.peerEnded = true;
    this.deliverReady();
  }

  /** Whether the peer said it sends nothing more (a window is no use to it now). */
  get ended(): boolean {
    return this.peerEnded;
  }

  /** The stream ended: its window growth goes back to the tunnel. */
  release(): void {
    const windows = this.options.windows;
    if (this.released || !windows) return;
    this.released = true;
    windows.release(this.window - windows.initial);
  }

  private accept(message: Assembly, chunk: Uint8Array): void {
    const n = chunk.byteLength;
    const limit = this.options.maxChunkSize ?? MAX_CHUNK_SIZE;
    if (n > limit) {
      throw new TunnelError(Code.INVALID_ARGUMENT, `a chunk of ${n} bytes exceeds the ${limit}-byte limit`);
    }
    if (message.received + n > message.size) {
      throw new TunnelError(Code.INVALID_ARGUMENT, `message data exceeds its announced size of ${message.size} bytes`);
    }
    // The peer may send what is left of the window once the bytes it sent
    // and has not been credited for (unread, or read but not yet returned) are taken off.
    if (n > this.window - this.unread - this.pendingCredit) {
      throw new TunnelError(Code.RESOURCE_EXHAUSTED, 'flow control window exceeded');
    }
    this.unread += n;
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
    const windows = this.options.windows;
    if (n === 0 || !windows || this.released) return;
    this.unread -= n;
    this.pendingCredit += n;
    // Keeping up: little is left unread behind what the reader just took.
    this.keptUp = this.unread <= this.window / 2 ? this.keptUp + n : 0;
    if (this.pendingCredit < this.threshold) return;
    let update = this.pendingCredit;
    this.pendingCredit = 0;
    if (this.keptUp >= this.window && this.window < windows.max) {
      // A whole window went by without the reader falling behind, so the
      // window, not the reader, sets the pace: double it (within the budget).
      const extra = windows.grow(Math.min(this.window, windows.max - this.window));
      this.window += extra;
      this.threshold = windows.threshold(this.window);
      this.keptUp = 0;
      update += extra;
    }
    this.options.sendWindowUpdate(update);
  }
}
