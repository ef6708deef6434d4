import { MAX_CHUNK_SIZE, MAX_EXTENDED_CHUNK_SIZE } from './constants.js';
import type { StreamId } from './stream-id.js';

/** Writes one frame to the tunnel; false means "pause data until {@link SendScheduler.drained}". */
export type FrameWrite<F> = (frame: F) => boolean;

/** Builds the role-specific data frames (request_* for clients, response_* for servers). */
export interface DataFrameBuilder<F> {
  messageStart(streamId: StreamId, size: number, chunk: Uint8Array): F;
  moreData(streamId: StreamId, chunk: Uint8Array): F;
}

/** Completion callback of a queued message: called once all of it was written, or with the reason it never will be. */
export type SendDone = (error?: Error) => void;

interface QueuedMessage {
  readonly data: Uint8Array;
  offset: number;
  started: boolean;
  readonly done: SendDone | undefined;
}

type QueuedFrame<F> = { readonly frame: F; readonly sent?: () => void };

type Item<F> = QueuedMessage | QueuedFrame<F>;

function isFrame<F>(item: Item<F>): item is QueuedFrame<F> {
  return 'frame' in item;
}

/**
 * The outgoing half of one stream: frames that must stay in order behind the
 * stream's message data (headers, half-close, close) and the messages
 * themselves, cut into chunks as the flow-control window allows.
 */
export class OutboundStream<F> {
  /** Bytes the peer still accepts; Infinity when flow control is off. */
  window: number;
  private readonly items: Item<F>[] = [];
  private head = 0;
  /** Whether the stream sits in the scheduler's ready ring. */
  scheduled = false;

  constructor(
    readonly streamId: StreamId,
    initialWindow: number,
  ) {
    this.window = initialWindow;
  }

  /** True when the head item can be written now. */
  sendable(): boolean {
    if (this.head >= this.items.length) return false;
    const item = this.items[this.head] as Item<F>;
    if (isFrame(item)) return true;
    return item.offset >= item.data.length ? !item.started : this.window > 0;
  }

  push(item: Item<F>): void {
    this.items.push(item);
  }

  /** Writes the next frame of this stream (chunks of at most `maxChunk` bytes); returns what the transport said. */
  writeNext(write: FrameWrite<F>, frames: DataFrameBuilder<F>, maxChunk: number): boolean {
    const item = this.items[this.head] as Item<F>;
    if (isFrame(item)) {
      this.shift();
      const ok = write(item.frame);
      item.sent?.();
      return ok;
    }
    const remaining = item.data.length - item.offset;
    const n = Math.min(maxChunk, remaining, this.window);
    const chunk = item.data.subarray(item.offset, item.offset + n);
    const frame = item.started
      ? frames.moreData(this.streamId, chunk)
      : frames.messageStart(this.streamId, item.data.length, chunk);
    item.started = true;
    item.offset += n;
    this.window -= n;
    if (item.offset >= item.data.length) {
      this.shift();
      const ok = write(frame);
      item.done?.();
      return ok;
    }
    return write(frame);
  }

  /**
   * Drops everything not yet written, telling each message why. `reason`
   * may be a function that makes the error: it then runs only when a
   * message is left to tell, since most streams end with nothing pending and
   * building an Error (its stack) costs microseconds on every call.
   */
  discard(reason: Error | (() => Error)): void {
    const pending = this.items.slice(this.head);
    this.items.length = 0;
    this.head = 0;
    let error = typeof reason === 'function' ? undefined : reason;
    for (const item of pending) {
      if (isFrame(item) || !item.done) continue;
      error ??= (reason as () => Error)();
      item.done(error);
    }
  }

  private shift(): void {
    this.items[this.head] = undefined as unknown as Item<F>;
    this.head++;
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    }
  }
}

/**
 * Shares the tunnel among its streams: each turn writes one frame (at most
 * one 16 KiB chunk) of the next ready stream, round-robin, while the
 * transport accepts writes. A slow or blocked stream therefore never holds
 * up the others, and memory stays bounded by the transport's own buffer.
 */
export class SendScheduler<F> {
  private ring: OutboundStream<F>[] = [];
  private head = 0;
  private writable = true;
  private pumping = false;
  private closed = false;

  private readonly maxChunk: number;

  /**
   * `maxChunkSize`: the largest chunk to send, 1 to 16384 (the protocol's
   * limit, and the default), or up to {@link MAX_EXTENDED_CHUNK_SIZE} toward
   * a peer that said it accepts more.
   */
  constructor(
    private readonly write: FrameWrite<F>,
    private readonly frames: DataFrameBuilder<F>,
    maxChunkSize: number = MAX_CHUNK_SIZE,
  ) {
    if (!Number.isInteger(maxChunkSize) || maxChunkSize < 1 || maxChunkSize > MAX_EXTENDED_CHUNK_SIZE) {
      throw new RangeError(`maxChunkSize must be an integer from 1 to ${MAX_EXTENDED_CHUNK_SIZE}, got ${maxChunkSize}`);
    }
    this.maxChunk = maxChunkSize;
  }

  /** Writes a frame at once, ahead of queued data (window updates, cancels, settings). */
  writeNow(frame: F): void {
    if (this.closed) return;
    if (!this.write(frame)) this.writable = false;
  }

  /** Queues a message on a stream. */
  sendMessage(stream: OutboundStream<F>, data: Uint8Array, done?: SendDone): void {
    stream.push({ data, offset: 0, started: false, done });
    this.wake(stream);
  }

  /** Queues a frame behind the stream's pending data. */
  sendFrame(stream: OutboundStream<F>, frame: F, sent?: () => void): void {
    stream.push(sent ? { frame, sent } : { frame });
    this.wake(stream);
  }

  /** Credits a stream's window after a window_update from the peer. */
  addWindow(stream: OutboundStream<F>, n: number): void {
    stream.window += n;
    this.wake(stream);
  }

  /** The transport can take writes again. */
  drained(): void {
    this.writable = true;
    this.pump();
  }

  /** Stops all writing for good (the tunnel is gone). */
  close(): void {
    this.closed = true;
    this.ring = [];
    this.head = 0;
  }

  private wake(stream: OutboundStream<F>): void {
    if (this.closed || stream.scheduled || !stream.sendable()) return;
    stream.scheduled = true;
    this.ring.push(stream);
    this.pump();
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.writable && this.head < this.ring.length && !this.closed) {
        const stream = this.ring[this.head] as OutboundStream<F>;
        this.ring[this.head] = undefined as unknown as OutboundStream<F>;
        this.head++;
        stream.scheduled = false;
        if (!stream.sendable()) continue;
        if (!stream.writeNext(this.write, this.frames, this.maxChunk)) this.writable = false;
        if (!stream.scheduled && stream.sendable()) {
          stream.scheduled = true;
          this.ring.push(stream);
        }
      }
      if (this.head === this.ring.length) {
        this.ring.length = 0;
        this.head = 0;
      } else if (this.head > 1024 && this.head * 2 > this.ring.length) {
        this.ring = this.ring.slice(this.head);
        this.head = 0;
      }
    } finally {
      this.pumping = false;
    }
  }
}
