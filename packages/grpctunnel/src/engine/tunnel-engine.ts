import { Code } from './codes.js';
import { DEFAULT_MAX_RECEIVE_MESSAGE_SIZE } from './constants.js';
import type { ClientFrame, ServerFrame } from './frames.js';
import type { InboundStream } from './inbound.js';
import { DEFAULT_MAX_METADATA_SIZE } from './metadata-size.js';
import { type DataFrameBuilder, SendScheduler } from './outbound.js';
import { type ReceiveWindowOptions, ReceiveWindows } from './receive-window.js';
import { localStatus, type StreamStatus } from './status.js';
import type { StreamId } from './stream-id.js';
import { WindowUpdateBatch } from './window-updates.js';

/** Settings both roles of the protocol take. */
export interface TunnelEngineOptions<F> extends ReceiveWindowOptions {
  /**
   * Writes a frame on the tunnel; false asks to pause until the engine's
   * `drained()`. Declared as a method so that a transport typed with the
   * generated frame type fits: the ids it receives are bigints only on
   * tunnels whose peer chose ids beyond 2^53, and the codec in
   * src/grpc/tunnel-service.ts encodes both forms.
   */
  write(frame: F): boolean;
  /** True when both sides sent `grpctunnel-negotiate: on`: a Settings frame goes first. */
  readonly negotiated: boolean;
  /** Whether this side offers revision one (flow control). Default true. */
  readonly flowControl?: boolean;
  /**
   * Largest data chunk this side sends, 1 to 16384. Default 16384, the
   * protocol's limit; a transport may want less so that a frame fits its own
   * framing (the grpc-js adapters do). Up to MAX_EXTENDED_CHUNK_SIZE toward
   * a peer that accepts more (see negotiateChunkSizes).
   */
  readonly maxChunkSize?: number;
  /** Largest data chunk accepted from the peer. Default 16384, the protocol's limit. */
  readonly maxReceiveChunkSize?: number;
  /** Window sizing shared with other tunnels (one growth budget for all); built from the options above when absent. */
  readonly receiveWindows?: ReceiveWindows | undefined;
  /** Largest message accepted from the peer. Default 4 MiB. */
  readonly maxReceiveMessageSize?: number;
  /**
   * Largest metadata block of one call, in either direction (see
   * metadataSize). Over it, that call fails with RESOURCE_EXHAUSTED. Default 1 MiB.
   */
  readonly maxMetadataSize?: number;
  /** The peer broke the protocol; the tunnel must end with this status. */
  readonly onProtocolError: (status: StreamStatus) => void;
  /** The last running stream ended (for graceful shutdown). */
  readonly onIdle?: () => void;
}

/** What the shared engine code needs of a stream of either role. */
export interface EngineStream {
  readonly streamId: StreamId;
  /** @internal */ readonly in: InboundStream;
}

/**
 * What the two roles of the protocol share: the send scheduler and the
 * batched window updates, the table of running streams, the limits on what
 * the peer sends, and how the tunnel ends (a close that happens once, and a
 * protocol error that closes and tells the layer above). Each role adds how
 * its streams open and what its frames mean.
 */
export abstract class TunnelEngine<F extends ClientFrame | ServerFrame, S extends EngineStream> {
  /** @internal */ readonly scheduler: SendScheduler<F>;
  /** @internal */ readonly windowUpdates: WindowUpdateBatch;
  /** @internal */ readonly maxMetadataSize: number;
  protected readonly streams = new Map<StreamId, S>();
  /** Why the tunnel ended, once it has: nothing is sent or accepted after. */
  protected failure: StreamStatus | undefined;
  protected readonly windows: ReceiveWindows;
  protected readonly maxReceiveMessageSize: number;
  protected readonly maxReceiveChunkSize: number | undefined;

  protected constructor(
    protected readonly options: TunnelEngineOptions<F>,
    dataFrames: DataFrameBuilder<F>,
  ) {
    this.windows = options.receiveWindows ?? new ReceiveWindows(options);
    this.maxReceiveMessageSize = options.maxReceiveMessageSize ?? DEFAULT_MAX_RECEIVE_MESSAGE_SIZE;
    this.maxReceiveChunkSize = options.maxReceiveChunkSize;
    this.maxMetadataSize = options.maxMetadataSize ?? DEFAULT_MAX_METADATA_SIZE;
    this.scheduler = new SendScheduler((frame) => options.write(frame), dataFrames, options.maxChunkSize);
    this.windowUpdates = new WindowUpdateBatch(
      // The window_update frame has the same shape in both directions.
      (streamId, n) => this.writeNow({ streamId, frame: { $case: 'windowUpdate', value: n } } as F),
      (streamId) => {
        const stream = this.streams.get(streamId);
        return stream !== undefined && this.receiving(stream) && !stream.in.ended;
      },
    );
  }

  /** Number of streams that have not ended. */
  get activeStreams(): number {
    return this.streams.size;
  }

  /** The transport takes writes again. */
  drained(): void {
    this.scheduler.drained();
  }

  /** The tunnel is gone: every running stream ends with `status` at once. Later calls change nothing. */
  close(status: StreamStatus): void {
    if (this.failure) return;
    this.failure = status;
    this.scheduler.close();
    const streams = [...this.streams.values()];
    this.streams.clear();
    for (const stream of streams) this.endStream(stream, status);
  }

  /** @internal Writes a control frame ahead of queued data, unless the tunnel has ended. */
  writeNow(frame: F): void {
    if (!this.failure) this.scheduler.writeNow(frame);
  }

  /** Whether a stream still takes data, so that window updates for it are worth sending. */
  protected abstract receiving(stream: S): boolean;

  /** Ends one stream of a tunnel that {@link TunnelEngine.close} ended (it has left the table already). */
  protected abstract endStream(stream: S, status: StreamStatus): void;

  /** Call after a stream left the table: tells the layer above when none is left (graceful shutdown waits for it). */
  protected tellIfIdle(): void {
    if (this.streams.size === 0) this.options.onIdle?.();
  }

  /** The peer broke the protocol: the tunnel ends with INTERNAL, and the layer above is told. */
  protected protocolError(message: string): void {
    const status = localStatus(Code.INTERNAL, `tunnel protocol error: ${message}`);
    this.close(status);
    this.options.onProtocolError(status);
  }
}
