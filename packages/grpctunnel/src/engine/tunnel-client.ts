import { type Metadata, ProtocolRevision } from '../gen/grpctunnel/v1/tunnel.js';
import { Code } from './codes.js';
import { TUNNEL_STREAM_ID } from './constants.js';
import { type ClientFrame, clientDataFrames, type ServerFrame } from './frames.js';
import { InboundStream } from './inbound.js';
import { checkMetadataSize } from './metadata-size.js';
import { chooseRevision, type NegotiatedRevision, REVISION_ZERO } from './negotiation.js';
import { OutboundStream, type SendDone } from './outbound.js';
import type { ReceiveWindows } from './receive-window.js';
import { localStatus, type StreamStatus, statusFromClose, TunnelError } from './status.js';
import { nextStreamId, type StreamId } from './stream-id.js';
import { TunnelEngine, type TunnelEngineOptions } from './tunnel-engine.js';

/** Settings of the tunnel-client role. */
export interface TunnelClientEngineOptions extends TunnelEngineOptions<ClientFrame> {
  /** The tunnel is ready for streams (Settings received, or no negotiation). */
  readonly onReady: () => void;
}

/** What a tunnel client's stream reports to the layer above. */
export interface ClientStreamHandlers {
  onHeaders(headers: Metadata): void;
  onMessage(message: Buffer): void;
  /** The stream ended: the server's status, or a local failure. Called once. */
  onClose(status: StreamStatus): void;
}

/** One call opened by a tunnel client. */
export class TunnelClientStream {
  /** @internal */ readonly out: OutboundStream<ClientFrame>;
  /** @internal */ readonly in: InboundStream;
  /** @internal */ opened = false;
  /** @internal */ headersSeen = false;
  /** @internal */ messageSeen = false;
  private done = false;

  /** @internal */
  constructor(
    readonly streamId: StreamId,
    private readonly engine: TunnelClientEngine,
    readonly handlers: ClientStreamHandlers,
    sendWindow: number,
    windows: ReceiveWindows | undefined,
    maxMessageSize: number,
    maxChunkSize?: number,
  ) {
    this.out = new OutboundStream(streamId, sendWindow);
    this.in = new InboundStream({
      windows,
      maxMessageSize,
      ...(maxChunkSize !== undefined && { maxChunkSize }),
      endNeedsRead: false,
      sendWindowUpdate: (n) => engine.windowUpdates.add(streamId, n),
      deliver: (message) => handlers.onMessage(message),
    });
  }

  /** Whether the stream has ended (closed by the server, cancelled or failed). */
  get closed(): boolean {
    return this.done;
  }

  /** Queues one request message; `done` runs once it is all written. */
  sendMessage(message: Uint8Array, done?: SendDone): void {
    if (this.done) {
      done?.(new TunnelError(Code.CANCELLED, 'the stream has ended'));
      return;
    }
    this.engine.scheduler.sendMessage(this.out, message, done);
  }

  /** No more request messages (sent after the queued ones). */
  halfClose(): void {
    if (this.done) return;
    this.engine.scheduler.sendFrame(this.out, {
      streamId: this.streamId,
      frame: { $case: 'halfClose', value: {} },
    });
  }

  /**
   * Asks for the next response message. After the server's close_stream the
   * messages queued before it are still read (the status follows them); a
   * stream cancelled or failed here reads nothing more.
   */
  requestRead(): void {
    if (!this.done || this.in.ended) this.in.requestRead();
  }

  /**
   * Abandons the stream: the server is told (if it ever heard of the stream)
   * and `onClose` is not called; the caller reports its own status.
   */
  cancel(): void {
    if (this.done) return;
    this.engine.finish(this, new TunnelError(Code.CANCELLED, 'cancelled'));
    if (this.opened) this.engine.writeNow({ streamId: this.streamId, frame: { $case: 'cancel', value: {} } });
  }

  /** @internal Ends the stream once; returns false when it had already ended. */
  markDone(): boolean {
    if (this.done) return false;
    this.done = true;
    this.in.release();
    return true;
  }
}

/**
 * The tunnel-client role of the protocol (the side that opens streams): the
 * network client of a forward tunnel, the network server of a reverse one.
 */
export class TunnelClientEngine extends TunnelEngine<ClientFrame, TunnelClientStream> {
  /** The id the next stream gets; ids start at 1, as the Go client's do. */
  private nextStreamId: StreamId = 1;
  private negotiatedRevision: NegotiatedRevision | undefined;
  private readonly flowControl: boolean;

  constructor(protected override readonly options: TunnelClientEngineOptions) {
    super(options, clientDataFrames);
    this.flowControl = options.flowControl ?? true;
  }

  /** Call once the tunnel RPC is established; completes negotiation when there is none. */
  start(): void {
    if (!this.options.negotiated) {
      this.negotiatedRevision = REVISION_ZERO;
      this.options.onReady();
    }
  }

  /** The revision in use, once ready. */
  get revision(): ProtocolRevision | undefined {
    return this.negotiatedRevision?.revision;
  }

  /**
   * Opens a stream for `method` (a full path such as "/pkg.Service/Method").
   * Request headers over the metadata limit are never sent: the stream comes
   * back already ended, and `onClose` reports RESOURCE_EXHAUSTED right after
   * this call returns.
   */
  openStream(method: string, headers: Metadata, handlers: ClientStreamHandlers): TunnelClientStream {
    const rev = this.negotiatedRevision;
    if (this.failure || !rev) {
      throw new TunnelError(Code.UNAVAILABLE, this.failure?.message ?? 'the tunnel is not ready');
    }
    const tooLarge = checkMetadataSize('request headers', headers, this.maxMetadataSize);
    if (tooLarge) {
      // Never registered and no id used: the peer hears nothing of it.
      const refused = new TunnelClientStream(this.nextStreamId, this, handlers, 0, undefined, 0);
      refused.markDone();
      queueMicrotask(() => handlers.onClose(tooLarge.toStatus()));
      return refused;
    }
    const streamId = this.nextStreamId;
    this.nextStreamId = nextStreamId(streamId);
    const flow = rev.revision === ProtocolRevision.REVISION_ONE;
    const stream = new TunnelClientStream(
      streamId,
      this,
      handlers,
      rev.sendWindow,
      flow ? this.windows : undefined,
      this.maxReceiveMessageSize,
      this.maxReceiveChunkSize,
    );
    this.streams.set(streamId, stream);
    this.scheduler.sendFrame(
      stream.out,
      {
        streamId,
        frame: {
          $case: 'newStream',
          value: {
            methodName: method,
            requestHeaders: headers,
            initialWindowSize: flow ? this.windows.initial : 0,
            protocolRevision: rev.revision,
          },
        },
      },
      () => {
        stream.opened = true;
      },
    );
    return stream;
  }

  /** Feeds one frame received from the tunnel server. */
  handleFrame(frame: ServerFrame): void {
    if (this.failure) return;
    const body = frame.frame;
    if (!body) return; // an unknown frame kind from a newer peer: nothing to act on
    if (body.$case === 'settings') {
      if (frame.streamId !== TUNNEL_STREAM_ID) {
        this.protocolError(`settings frame on stream ${frame.streamId}`);
        return;
      }
      if (this.negotiatedRevision) return; // repeated settings change nothing
      this.negotiatedRevision = chooseRevision(body.value, this.flowControl);
      this.options.onReady();
      return;
    }
    if (!this.negotiatedRevision) {
      this.protocolError(`expected settings as the first frame, got ${body.$case}`);
      return;
    }
    const stream = this.streams.get(frame.streamId);
    if (!stream) {
      // As the Go reference does: frames may trail a stream that ended, so an
      // id at or below the last one opened is dropped (negative ones too);
      // a higher id, or any id before the first stream, was never opened.
      if (this.nextStreamId === 1 || frame.streamId >= this.nextStreamId) {
        this.protocolError(`received ${body.$case} for stream ${frame.streamId}, which was never created`);
      }
      return;
    }
    try {
      switch (body.$case) {
        case 'responseHeaders': {
          if (stream.headersSeen || stream.messageSeen) {
            throw new TunnelError(Code.INTERNAL, 'response headers arrived twice or after a message');
          }
          const tooLarge = checkMetadataSize('response headers', body.value, this.maxMetadataSize);
          if (tooLarge) throw tooLarge;
          stream.headersSeen = true;
          stream.handlers.onHeaders(body.value);
          break;
        }
        case 'responseMessage':
          stream.messageSeen = true;
          stream.in.messageStart(body.value.size, body.value.data);
          break;
        case 'moreResponseData':
          stream.in.moreData(body.value);
          break;
        case 'windowUpdate':
          this.scheduler.addWindow(stream.out, body.value);
          break;
        case 'closeStream': {
          const tooLarge = checkMetadataSize('response trailers', body.value.responseTrailers, this.maxMetadataSize);
          const status = tooLarge ? tooLarge.toStatus() : statusFromClose(body.value);
          this.finish(stream, () => new TunnelError(Code.CANCELLED, 'the server closed the stream'));
          stream.in.end(() => stream.handlers.onClose(status));
          break;
        }
      }
    } catch (err) {
      this.failStream(stream, err);
    }
  }

  protected receiving(): boolean {
    return true;
  }

  protected endStream(stream: TunnelClientStream, status: StreamStatus): void {
    if (!stream.markDone()) return;
    stream.out.discard(new TunnelError(status.code as Code, status.message));
    stream.handlers.onClose(status);
  }

  /** @internal Removes a stream and drops what it had not sent. */
  finish(stream: TunnelClientStream, reason: TunnelError | (() => TunnelError)): void {
    if (!stream.markDone()) return;
    this.streams.delete(stream.streamId);
    stream.out.discard(reason);
    this.tellIfIdle();
  }

  private failStream(stream: TunnelClientStream, err: unknown): void {
    const status =
      err instanceof TunnelError
        ? localStatus(err.code === Code.RESOURCE_EXHAUSTED ? err.code : Code.INTERNAL, err.message)
        : localStatus(Code.INTERNAL, 'failed to process a frame from the tunnel server');
    this.finish(stream, new TunnelError(status.code as Code, status.message));
    if (stream.opened) this.writeNow({ streamId: stream.streamId, frame: { $case: 'cancel', value: {} } });
    stream.handlers.onClose(status);
  }
}
