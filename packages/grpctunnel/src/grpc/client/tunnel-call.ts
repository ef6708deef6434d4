import {
  type CallCredentials,
  connectivityState,
  Metadata,
  propagate,
  status as Status,
  type StatusObject,
} from '@grpc/grpc-js';
import { encodeTimeout } from '../../engine/deadline.js';
import type { StreamStatus } from '../../engine/status.js';
import type { ClientStreamHandlers, TunnelClientStream } from '../../engine/tunnel-client.js';
import type { Metadata as WireMetadata } from '../../gen/grpctunnel/v1/tunnel.js';
import { type LongTimer, setLongTimeout } from '../long-timer.js';
import { fromWireMetadata, toWireMetadata } from '../metadata.js';
import { toStatusObject } from '../status.js';
import type { AuthContext } from '../tunnel-info.js';
import type { TunnelChannelImpl } from './tunnel-channel.js';

/** The listener grpc-js's interceptor stack hands to a call. */
export interface CallListener {
  onReceiveMetadata(metadata: Metadata): void;
  onReceiveMessage(message: unknown): void;
  onReceiveStatus(status: StatusObject): void;
}

/** The parts of a grpc-js server call that deadline and cancellation propagation read. */
export interface ParentCall {
  getDeadline(): Date | number;
  on(event: 'cancelled', listener: () => void): unknown;
  removeListener(event: 'cancelled', listener: () => void): unknown;
}

let callCounter = 0;

function deadlineMs(deadline: Date | number | undefined): number {
  if (deadline === undefined) return Number.POSITIVE_INFINITY;
  return deadline instanceof Date ? deadline.getTime() : deadline;
}

/**
 * A call's deadline in ms since the epoch: its own, or its parent server
 * call's when that is sooner and the propagation flags carry deadlines (as
 * grpc-js applies them, from the moment the call is created).
 */
export function effectiveDeadline(
  deadline: Date | number,
  parent: ParentCall | null,
  propagateFlags: number | null | undefined,
): number {
  const flags = propagateFlags ?? propagate.DEFAULTS;
  const own = deadlineMs(deadline);
  return parent && flags & propagate.DEADLINE ? Math.min(own, deadlineMs(parent.getDeadline())) : own;
}

/**
 * One call through a tunnel, in the shape grpc-js's client stack expects of
 * a channel's call (messages are already serialized Buffers). It maps the
 * grpc-js call surface onto an engine stream and enforces the deadline.
 *
 * It keeps two promises grpc-js's own calls keep, which callers rely on:
 * the status is never delivered inside the method that ended the call (it
 * comes on the next tick, so `call.cancel()` returns first), and a write's
 * callback never receives an error (a failed call reports through its
 * status; an error there would be emitted as an unhandled 'error' event).
 */
export class TunnelCall implements ClientStreamHandlers {
  private listener: CallListener | undefined;
  private stream: TunnelClientStream | undefined;
  private finished = false;
  private timer: LongTimer | undefined;
  private readonly callNumber = ++callCounter;
  private readonly deadline: number;
  private readonly onParentCancelled: (() => void) | undefined;
  private credentials: CallCredentials | undefined;
  private refused = false;
  /** Operations held while per-call credentials are being generated. */
  private waiting: Array<() => void> | undefined;

  constructor(
    private readonly channel: TunnelChannelImpl,
    private readonly method: string,
    deadline: Date | number,
    private readonly parent: ParentCall | null,
    propagateFlags: number | null | undefined,
  ) {
    this.deadline = effectiveDeadline(deadline, parent, propagateFlags);
    if (parent && (propagateFlags ?? propagate.DEFAULTS) & propagate.CANCELLATION) {
      this.onParentCancelled = () => this.cancelWithStatus(Status.CANCELLED, 'Cancelled by parent call');
    }
  }

  start(metadata: Metadata, listener: CallListener): void {
    this.listener = listener;
    const failure = this.channel.unavailableReason();
    if (failure) {
      this.finish({ code: Status.UNAVAILABLE, details: failure, metadata: new Metadata() });
      return;
    }
    const expire = () => this.cancelWithStatus(Status.DEADLINE_EXCEEDED, 'Deadline exceeded');
    const remaining = this.deadline - Date.now();
    if (remaining <= 0) {
      // Ends a tick later, as grpc-js's deadline handling does.
      process.nextTick(expire);
      return;
    }
    // Any deadline gRPC can express is honoured: setLongTimeout waits past
    // Node's 2^31-1 ms timer limit (an infinite deadline sets no timer).
    this.timer = setLongTimeout(expire, remaining);
    if (this.onParentCancelled) this.parent?.on('cancelled', this.onParentCancelled);
    const credentials = this.credentials;
    if (!credentials) {
      this.open(metadata);
      return;
    }
    // Per-call credentials add their metadata first, as grpc-js does; what
    // the caller does meanwhile waits for the stream.
    this.waiting = [];
    const slash = this.method.lastIndexOf('/');
    credentials
      .generateMetadata({
        method_name: this.method.slice(slash + 1),
        service_url: `https://${this.channel.getTarget()}${this.method.slice(0, slash)}`,
      })
      .then(
        (extra) => {
          if (this.finished) return;
          metadata.merge(extra);
          this.open(metadata);
        },
        (err: unknown) => {
          const message = err instanceof Error ? err.message : String(err);
          this.finish({
            code: Status.UNAVAILABLE,
            details: `Getting metadata from plugin failed with error: ${message}`,
            metadata: new Metadata(),
          });
        },
      );
  }

  private open(metadata: Metadata): void {
    const headers: WireMetadata = toWireMetadata(metadata);
    const remaining = this.deadline - Date.now();
    if (Number.isFinite(remaining)) {
      headers.md['grpc-timeout'] = { val: [Buffer.from(encodeTimeout(Math.max(1, remaining)))] };
    }
    try {
      this.stream = this.channel.openStream(this.method, headers, this);
    } catch (err) {
      // The tunnel ended while per-call credentials were being generated:
      // nothing reached the server, so a pool may send the call elsewhere.
      const details = this.channel.unavailableReason() ?? (err instanceof Error ? err.message : String(err));
      this.refused = true;
      this.finish({ code: Status.UNAVAILABLE, details, metadata: new Metadata() });
      return;
    }
    const waiting = this.waiting;
    this.waiting = undefined;
    if (waiting) for (const op of waiting) op();
  }

  sendMessageWithContext(context: { callback?: (error?: Error | null) => void }, message: Buffer): void {
    if (this.waiting) {
      this.waiting.push(() => this.sendMessageWithContext(context, message));
      return;
    }
    const callback = context.callback;
    // A write on a call that ended (or never got a stream) is not an error to
    // grpc-js: the status says what happened. Its completion is deferred so
    // a loop of writes yields to the event loop instead of spinning.
    if (!this.stream || this.finished) {
      if (callback) process.nextTick(callback);
      return;
    }
    this.stream.sendMessage(
      message,
      callback ? (error) => (error ? process.nextTick(callback) : callback()) : undefined,
    );
  }

  startRead(): void {
    if (this.waiting) this.waiting.push(() => this.startRead());
    else this.stream?.requestRead();
  }

  halfClose(): void {
    if (this.waiting) this.waiting.push(() => this.halfClose());
    else this.stream?.halfClose();
  }

  cancelWithStatus(code: Status, details: string): void {
    if (this.finished) return;
    this.stream?.cancel();
    this.finish({ code, details, metadata: new Metadata() });
  }

  getPeer(): string {
    return this.channel.peer;
  }

  getCallNumber(): number {
    return this.callNumber;
  }

  setCredentials(credentials: CallCredentials): void {
    this.credentials = credentials;
  }

  getAuthContext(): AuthContext {
    return this.channel.callAuthContext;
  }

  /** The tunnel channel that carries this call. */
  getTunnelChannel(): TunnelChannelImpl {
    return this.channel;
  }

  onHeaders(headers: WireMetadata): void {
    if (!this.finished) this.listener?.onReceiveMetadata(fromWireMetadata(headers));
  }

  onMessage(message: Buffer): void {
    if (!this.finished) this.listener?.onReceiveMessage(message);
  }

  onClose(status: StreamStatus): void {
    // A close_stream with UNAVAILABLE and nothing before it is a refusal
    // made before any handler ran: a handler's own close always follows
    // response headers, Go's too. The channel's own failures end streams
    // only once it is shut down, so they never match.
    const stream = this.stream;
    this.refused =
      status.code === Status.UNAVAILABLE &&
      stream !== undefined &&
      !stream.headersSeen &&
      !stream.messageSeen &&
      this.channel.getConnectivityState(false) !== connectivityState.SHUTDOWN;
    this.finish(toStatusObject(status));
  }

  /**
   * Whether the tunnel server refused the call with UNAVAILABLE before any
   * handler ran (it is draining): the service never saw it, so it may be
   * sent again elsewhere, as gRPC retries a stream refused by GOAWAY.
   */
  get refusedBeforeStart(): boolean {
    return this.refused;
  }

  private finish(status: StatusObject): void {
    if (this.finished) return;
    this.finished = true;
    this.timer?.clear();
    if (this.onParentCancelled) this.parent?.removeListener('cancelled', this.onParentCancelled);
    // Operations held for per-call credentials now find the call ended:
    // their write callbacks complete, the rest does nothing.
    const waiting = this.waiting;
    this.waiting = undefined;
    if (waiting) for (const op of waiting) op();
    const listener = this.listener;
    process.nextTick(() => listener?.onReceiveStatus(status));
  }
}
