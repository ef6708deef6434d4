import { type Metadata, ProtocolRevision } from '../gen/grpctunnel/v1/tunnel.js';
import { Code } from './codes.js';
import { type ClientFrame, type ServerFrame, serverDataFrames } from './frames.js';
import { InboundStream } from './inbound.js';
import { checkMetadataSize } from './metadata-size.js';
import { isValidMethodName, settingsFrame } from './negotiation.js';
import { OutboundStream, type SendDone } from './outbound.js';
import type { ReceiveWindows } from './receive-window.js';
import { closeFromStatus, localStatus, type StreamStatus, TunnelError } from './status.js';
import type { StreamId } from './stream-id.js';
import { TunnelEngine, type TunnelEngineOptions } from './tunnel-engine.js';

/** Settings of the tunnel-server role. */
export interface TunnelServerEngineOptions extends TunnelEngineOptions<ServerFrame> {
  /** Streams open at once before new ones get RESOURCE_EXHAUSTED. Default unlimited. */
  readonly maxConcurrentStreams?: number;
  /**
   * A stream passed the protocol checks: the layer above says what to do
   * with it (synchronously). The engine acts on the answer: it refuses the
   * stream, or installs the handlers and then calls `start`.
   */
  readonly onStream: (stream: TunnelServerStream) => StreamDecision;
}

/** What a tunnel server's stream reports to the layer above. */
export interface ServerStreamHandlers {
  onMessage(message: Buffer): void;
  /** The client sends no more messages; called after the last message was delivered. */
  onHalfClose(): void;
  /** The stream ended before the server closed it: client cancel, bad input, or tunnel loss. */
  onCancel(status: StreamStatus): void;
}

/** What the layer above decided about a new stream: the answer of {@link TunnelServerEngineOptions.onStream}. */
export type StreamDecision =
  /** Refuse it before any handler ran: the client gets `refuse`, without response headers. */
  | { readonly refuse: StreamStatus }
  | {
      /** What the stream reports to; installed before `start` runs. */
      readonly handlers: ServerStreamHandlers;
      /** Unary and server-streaming methods: a second request message is an error. Default false. */
      readonly singleRequest?: boolean;
      /** Runs the handler, which may use the stream at once. */
      readonly start?: () => void;
    };

const noHandlers: ServerStreamHandlers = {
  onMessage: () => {},
  onHalfClose: () => {},
  onCancel: () => {},
};

/** One call arriving at a tunnel server. */
export class TunnelServerStream {
  /** @internal What the layer above hears about: set by the engine from its decision. */
  handlers: ServerStreamHandlers = noHandlers;
  /** @internal When true (unary and server-streaming methods), a second request message is an error. */
  singleRequest = false;
  /** @internal */ readonly out: OutboundStream<ServerFrame>;
  /** @internal */ readonly in: InboundStream;
  /** @internal */ requestsSeen = 0;
  private state: 'open' | 'closing' | 'done' = 'open';
  private headersQueued = false;

  /** @internal */
  constructor(
    readonly streamId: StreamId,
    readonly method: string,
    readonly headers: Metadata,
    readonly revision: ProtocolRevision,
    private readonly engine: TunnelServerEngine,
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
      endNeedsRead: true,
      sendWindowUpdate: (n) => engine.windowUpdates.add(streamId, n),
      deliver: (message) => this.handlers.onMessage(message),
    });
  }

  /** True once the server closed the stream or it was cancelled. */
  get closed(): boolean {
    return this.state !== 'open';
  }

  /**
   * Sends response headers; only the first call has an effect. Headers over
   * the metadata limit end the stream with RESOURCE_EXHAUSTED instead (the
   * handler hears of it as a cancel), so the peer never gets a frame its
   * gRPC layer would refuse for the whole tunnel.
   */
  sendHeaders(headers: Metadata): void {
    if (this.state !== 'open' || this.headersQueued) return;
    const tooLarge = checkMetadataSize('response headers', headers, this.engine.maxMetadataSize);
    if (tooLarge) {
      const status = tooLarge.toStatus();
      this.close(status, false);
      // After the caller's own call returns: a handler sending headers does
      // not expect to be re-entered with its own cancellation.
      queueMicrotask(() => this.handlers.onCancel(status));
      return;
    }
    this.headersQueued = true;
    this.engine.scheduler.sendFrame(this.out, {
      streamId: this.streamId,
      frame: { $case: 'responseHeaders', value: headers },
    });
  }

  /** Queues one response message (headers go first, empty if none were set). */
  sendMessage(message: Uint8Array, done?: SendDone): void {
    if (this.state !== 'open') {
      done?.(new TunnelError(Code.CANCELLED, 'the stream has ended'));
      return;
    }
    if (!this.headersQueued) this.sendHeaders({ md: {} });
    this.engine.scheduler.sendMessage(this.out, message, done);
  }

  /** Asks for the next request message. */
  requestRead(): void {
    if (this.state === 'open') this.in.requestRead();
  }

  /**
   * Ends the stream with a status, after the queued messages. Headers are
   * sent first when the handler ran but set none (as the Go reference does);
   * pass `withHeaders: false` for a stream refused before any handler ran.
   */
  close(status: StreamStatus, withHeaders = true): void {
    if (this.state !== 'open') return;
    const tooLarge = checkMetadataSize('response trailers', status.trailers, this.engine.maxMetadataSize);
    // The caller learns of trailers it cannot have as it would of any failed call.
    const sent = tooLarge ? tooLarge.toStatus() : status;
    if (withHeaders && !this.headersQueued) this.sendHeaders({ md: {} });
    this.state = 'closing';
    this.engine.scheduler.sendFrame(
      this.out,
      { streamId: this.streamId, frame: { $case: 'closeStream', value: closeFromStatus(sent) } },
      () => this.engine.forget(this),
    );
  }

  /**
   * Ends the call from this side at once (a forced shutdown): what it had
   * not sent is dropped, the client gets `status`, the handler hears of a
   * cancel, as with grpc-js's `server.forceShutdown()`.
   */
  cancel(status: StreamStatus): void {
    if (this.state !== 'open') return;
    this.out.discard(new TunnelError(status.code as Code, status.message));
    this.close(status, false);
    this.handlers.onCancel(status);
  }

  /** @internal The client cancelled, the input was bad, or the tunnel died. */
  abort(status: StreamStatus): void {
    if (this.state === 'done') return;
    const wasOpen = this.state === 'open';
    this.state = 'done';
    // The handler hears of the cancel before its pending writes are failed,
    // so a writer looping on completions sees the call is over.
    if (wasOpen) this.handlers.onCancel(status);
    this.out.discard(new TunnelError(status.code as Code, status.message));
  }

  /** @internal */
  markDone(): void {
    this.state = 'done';
    this.in.release();
  }

  /** @internal */
  get accepting(): boolean {
    return this.state === 'open';
  }
}

/**
 * The tunnel-server role of the protocol (the side that answers streams):
 * the network server of a forward tunnel, the network client of a reverse one.
 */
export class TunnelServerEngine extends TunnelEngine<ServerFrame, TunnelServerStream> {
  private lastStreamId: StreamId = -1;
  private draining = false;
  private readonly flowControl: boolean;
  private readonly maxConcurrentStreams: number;

  constructor(protected override readonly options: TunnelServerEngineOptions) {
    super(options, serverDataFrames);
    this.flowControl = (options.flowControl ?? true) && options.negotiated;
    this.maxConcurrentStreams = options.maxConcurrentStreams ?? Number.POSITIVE_INFINITY;
  }

  /** Call once the tunnel RPC is established: sends Settings when negotiated. */
  start(): void {
    if (this.options.negotiated) {
      this.scheduler.writeNow(settingsFrame(this.options.flowControl ?? true, this.windows.initial));
    }
  }

  /** Refuse new streams (UNAVAILABLE) from now on; running ones go on. */
  drain(): void {
    this.draining = true;
  }

  /** Feeds one frame received from the tunnel client. */
  handleFrame(frame: ClientFrame): void {
    if (this.failure) return;
    const body = frame.frame;
    if (!body) return; // an unknown frame kind from a newer peer: nothing to act on
    const id = frame.streamId;
    if (body.$case === 'newStream') {
      if (id <= this.lastStreamId || this.streams.has(id)) {
        this.protocolError(`cannot create stream ID ${id}: that ID has already been used`);
        return;
      }
      this.lastStreamId = id;
      const v = body.value;
      this.openStream(id, v.methodName, v.requestHeaders ?? { md: {} }, v.protocolRevision, v.initialWindowSize);
      return;
    }
    const stream = this.streams.get(id);
    if (!stream) {
      // As the Go reference does: an id at or below the last one opened
      // (negative ones included) may belong to a stream that already ended,
      // so its frames are dropped; a higher id was never opened.
      if (id > this.lastStreamId) {
        this.protocolError(`received ${body.$case} for stream ID ${id}, which was never created`);
      }
      return;
    }
    if (body.$case === 'windowUpdate') {
      this.scheduler.addWindow(stream.out, body.value);
      return;
    }
    if (body.$case === 'cancel') {
      stream.abort(localStatus(Code.CANCELLED, 'the client cancelled the call'));
      this.forget(stream);
      return;
    }
    if (!stream.accepting) return; // the server already closed it; late client data is moot
    try {
      switch (body.$case) {
        case 'requestMessage':
          if (stream.singleRequest && stream.requestsSeen > 0) {
            throw new TunnelError(
              Code.INVALID_ARGUMENT,
              `received a second request message for ${stream.method}, which takes one`,
            );
          }
          stream.requestsSeen++;
          stream.in.messageStart(body.value.size, body.value.data);
          break;
        case 'moreRequestData':
          stream.in.moreData(body.value);
          break;
        case 'halfClose':
          stream.in.end(() => stream.handlers.onHalfClose());
          break;
      }
    } catch (err) {
      this.failStream(stream, err);
    }
  }

  /** Cancels every running call, telling the client (see {@link TunnelServerStream.cancel}). */
  cancelAll(status: StreamStatus): void {
    for (const stream of [...this.streams.values()]) stream.cancel(status);
  }

  /** @internal The stream's close frame was written (or it was cancelled): drop it. */
  forget(stream: TunnelServerStream): void {
    if (!this.streams.delete(stream.streamId)) return;
    stream.markDone();
    this.tellIfIdle();
  }

  protected receiving(stream: TunnelServerStream): boolean {
    return stream.accepting;
  }

  protected endStream(stream: TunnelServerStream, status: StreamStatus): void {
    stream.abort(status);
    stream.markDone(); // hands the stream's window growth back to the shared budget
  }

  private openStream(id: StreamId, method: string, headers: Metadata, revision: number, clientWindow: number): void {
    const flow = revision === ProtocolRevision.REVISION_ONE;
    const refusal = (() => {
      if (flow ? !this.flowControl : revision !== ProtocolRevision.REVISION_ZERO) {
        return localStatus(Code.UNAVAILABLE, `unsupported protocol revision ${revision}`);
      }
      if (this.draining) return localStatus(Code.UNAVAILABLE, 'the server is shutting down');
      if (!isValidMethodName(method)) {
        return localStatus(Code.INVALID_ARGUMENT, `malformed method name: ${JSON.stringify(method)}`);
      }
      const tooLarge = checkMetadataSize('request headers', headers, this.maxMetadataSize);
      if (tooLarge) return tooLarge.toStatus();
      if (this.streams.size >= this.maxConcurrentStreams) {
        return localStatus(Code.RESOURCE_EXHAUSTED, `too many concurrent streams (limit ${this.maxConcurrentStreams})`);
      }
      return undefined;
    })();
    if (refusal) {
      // Only a close_stream: no handler ran, so no headers (as the Go reference does).
      this.scheduler.writeNow({
        streamId: id,
        frame: {
          $case: 'closeStream',
          value: { responseTrailers: undefined, status: closeFromStatus(refusal).status },
        },
      });
      return;
    }
    const stream = new TunnelServerStream(
      id,
      method,
      headers,
      revision,
      this,
      // Under revision one the client states its window, and 0 is a window
      // like any other (proto3 cannot tell it from absent): nothing may be
      // sent until the client grants some, as the Go reference does.
      flow ? clientWindow : Number.POSITIVE_INFINITY,
      flow ? this.windows : undefined,
      this.maxReceiveMessageSize,
      this.maxReceiveChunkSize,
    );
    this.streams.set(id, stream);
    const decision = this.options.onStream(stream);
    if ('refuse' in decision) {
      stream.close(decision.refuse, false);
      return;
    }
    stream.handlers = decision.handlers;
    stream.singleRequest = decision.singleRequest ?? false;
    decision.start?.();
  }

  private failStream(stream: TunnelServerStream, err: unknown): void {
    const status =
      err instanceof TunnelError ? err.toStatus() : localStatus(Code.INTERNAL, 'failed to process a frame');
    stream.abort(status);
    this.forget(stream);
    this.writeNow({ streamId: stream.streamId, frame: { $case: 'closeStream', value: closeFromStatus(status) } });
  }
}
