import type { StreamId } from './stream-id.js';

/** Runs a callback once the current batch of received frames is processed. */
export type Defer = (callback: () => void) => void;

/**
 * Gathers the window updates of one tunnel and writes them once the frames
 * at hand are processed, instead of one frame per credit.
 *
 * grpc-js hands the tunnel's frames over one per tick, so a burst read from
 * the socket is credited piece by piece. Deferring to the end of the batch
 * merges a stream's credits into one update, and drops the ones that no
 * longer matter: a stream that ended or whose peer half-closed in the same
 * batch sends nothing more, so it needs no window (a unary call's request
 * or response otherwise costs its peer a window_update per 16 KiB chunk).
 */
export class WindowUpdateBatch {
  private pending = new Map<StreamId, number>();
  private scheduled = false;

  constructor(
    /** Writes one window_update frame. */
    private readonly send: (streamId: StreamId, bytes: number) => void,
    /** Whether the stream may still receive data (open, and the peer has not finished sending). */
    private readonly wanted: (streamId: StreamId) => boolean,
    private readonly defer: Defer = setImmediate,
  ) {}

  /** Credits `bytes` to a stream at the end of the batch. */
  add(streamId: StreamId, bytes: number): void {
    this.pending.set(streamId, (this.pending.get(streamId) ?? 0) + bytes);
    if (this.scheduled) return;
    this.scheduled = true;
    this.defer(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    const pending = this.pending;
    this.pending = new Map<StreamId, number>();
    for (const [streamId, bytes] of pending) {
      if (this.wanted(streamId)) this.send(streamId, bytes);
    }
  }
}
