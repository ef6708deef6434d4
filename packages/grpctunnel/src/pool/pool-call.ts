import { type CallCredentials, Metadata, propagate, status as Status, type StatusObject } from '@grpc/grpc-js';
import { type CallListener, effectiveDeadline, type ParentCall, type TunnelCall } from '../grpc/client/tunnel-call.js';
import type { TunnelChannelImpl } from '../grpc/client/tunnel-channel.js';
import { type LongTimer, setLongTimeout } from '../grpc/long-timer.js';
import type { AuthContext } from '../grpc/tunnel-info.js';

/** Where a pool call finds its tunnel. */
export interface TunnelSource {
  /** The next tunnel, round-robin; undefined when none is ready. */
  pick(): TunnelChannelImpl | undefined;
  /** Calls `watcher` when tunnels come or go, until the returned function is called. */
  watch(watcher: () => void): () => void;
  /** The tunnel refused a call because its far side is draining: route nothing more to it. */
  retire(channel: TunnelChannelImpl): void;
}

type Write = { readonly message: Buffer; readonly callback: ((error?: Error | null) => void) | undefined };

/**
 * Request bytes a call keeps for sending again while no response has come:
 * past this it commits to its tunnel and a refusal is final (grpc-js's
 * per-call retry buffer is of the same order).
 */
const REPLAY_LIMIT = 256 * 1024;

/**
 * What one kept message costs beyond its bytes, and how many are kept at
 * most: empty or tiny messages must not let a caller pile up entries (each
 * may also hold on to the larger buffer it was cut from).
 */
const REPLAY_OVERHEAD = 64;
const REPLAY_MESSAGES = 64;

/** Refusals one call rides out; each one retires a tunnel, so this only guards against a pathological pool. */
const MAX_REFUSALS = 8;

let callNumbers = 0;

/**
 * A call on a pool: it takes a tunnel when it starts (round-robin) and then
 * is that tunnel's call. With no tunnel ready it fails UNAVAILABLE "no
 * channels ready", or, when the caller asked for grpc-js's `waitForReady`,
 * waits for one until its deadline; what the caller sends meanwhile is held.
 * Like a tunnel's call, it delivers its status on a later tick than the
 * method that ended it and never hands an error to a write callback.
 *
 * A tunnel whose far side is draining may refuse the call before any
 * handler saw it (UNAVAILABLE, no response headers): the tunnel is then
 * retired from the pool and the call goes to another tunnel, transparently,
 * as long as nothing came back yet and what it sent still fits the replay
 * buffer.
 */
export class PoolCall {
  private inner: TunnelCall | undefined;
  private listener: CallListener | undefined;
  private metadata: Metadata | undefined;
  private finished = false;
  private stopWaiting: (() => void) | undefined;
  private unwatchParent: (() => void) | undefined;
  private timer: LongTimer | undefined;
  private held: Write[] = [];
  /** What was sent to the current tunnel, kept to send again after a refusal; undefined once committed. */
  private sent: Buffer[] | undefined = [];
  private sentBytes = 0;
  private refusals = 0;
  private halfClosed = false;
  private reading = false;
  private credentials: CallCredentials | undefined;
  private readonly callNumber = ++callNumbers;

  constructor(
    private readonly source: TunnelSource,
    private readonly method: string,
    private readonly deadline: Date | number,
    private readonly host: string | null | undefined,
    private readonly parent: ParentCall | null,
    private readonly propagateFlags: number | null | undefined,
  ) {}

  start(metadata: Metadata, listener: CallListener): void {
    this.listener = listener;
    this.metadata = metadata;
    this.startOrWait({ code: Status.UNAVAILABLE, details: 'no channels ready', metadata: new Metadata() });
  }

  sendMessageWithContext(context: { callback?: (error?: Error | null) => void }, message: Buffer): void {
    const callback = context.callback;
    if (this.sent && !this.finished) {
      this.sent.push(message);
      this.sentBytes += message.length + REPLAY_OVERHEAD;
      if (this.sentBytes > REPLAY_LIMIT || this.sent.length > REPLAY_MESSAGES) this.commit();
    }
    if (this.inner) this.inner.sendMessageWithContext(context, message);
    else if (!this.finished) this.held.push({ message, callback });
    // As on any ended call: the write completes, the status tells the story.
    else if (callback) process.nextTick(callback);
  }

  startRead(): void {
    this.reading = true;
    this.inner?.startRead();
  }

  halfClose(): void {
    this.halfClosed = true;
    this.inner?.halfClose();
  }

  cancelWithStatus(code: Status, details: string): void {
    this.commit();
    if (this.inner) this.inner.cancelWithStatus(code, details);
    else this.fail({ code, details, metadata: new Metadata() });
  }

  getPeer(): string {
    return this.inner?.getPeer() ?? '';
  }

  getCallNumber(): number {
    return this.callNumber;
  }

  setCredentials(credentials: CallCredentials): void {
    this.credentials = credentials;
    this.inner?.setCredentials(credentials);
  }

  getAuthContext(): AuthContext | null {
    return this.inner?.getAuthContext() ?? null;
  }

  /** Starts on a tunnel now, or waits for one (waitForReady), or fails with `otherwise`. */
  private startOrWait(otherwise: StatusObject): void {
    const metadata = this.metadata as Metadata;
    if (this.tryStart()) return;
    if (!metadata.getOptions().waitForReady) {
      this.fail(otherwise);
      return;
    }
    // The wait honours what the call inherits from a parent server call, as
    // grpc-js applies propagation from the moment a call is created.
    const flags = this.propagateFlags ?? propagate.DEFAULTS;
    const due = effectiveDeadline(this.deadline, this.parent, this.propagateFlags);
    const expire = () =>
      this.fail({
        code: Status.DEADLINE_EXCEEDED,
        details: 'Deadline exceeded while waiting for a tunnel',
        metadata: new Metadata(),
      });
    const ms = due - Date.now();
    if (ms <= 0) {
      // A tick later, as grpc-js's deadline handling does.
      process.nextTick(expire);
      return;
    }
    // Any deadline gRPC can express, even past Node's 2^31-1 ms timer limit
    // (an infinite one sets no timer).
    this.timer = setLongTimeout(expire, ms);
    const parent = this.parent;
    if (parent && flags & propagate.CANCELLATION) {
      const onCancelled = () =>
        this.fail({ code: Status.CANCELLED, details: 'Cancelled by parent call', metadata: new Metadata() });
      parent.on('cancelled', onCancelled);
      this.unwatchParent = () => parent.removeListener('cancelled', onCancelled);
    }
    this.stopWaiting = this.source.watch(() => {
      if (this.tryStart()) this.stopWaitingNow();
    });
  }

  private tryStart(): boolean {
    if (this.finished) return true;
    const channel = this.source.pick();
    if (!channel) return false;
    const inner = channel.createCall(this.method, this.deadline, this.host, this.parent, this.propagateFlags);
    this.inner = inner;
    if (this.credentials) inner.setCredentials(this.credentials);
    // A copy: per-call credentials add to the metadata, and a retry starts afresh.
    inner.start((this.metadata as Metadata).clone(), this.listenerFor(inner, channel));
    const held = this.held;
    this.held = [];
    for (const { message, callback } of held) {
      inner.sendMessageWithContext(callback ? { callback } : {}, message);
    }
    if (this.reading) inner.startRead();
    if (this.halfClosed) inner.halfClose();
    return true;
  }

  /** Passes the tunnel call's events on; a refusal before any response sends the call elsewhere instead. */
  private listenerFor(inner: TunnelCall, channel: TunnelChannelImpl): CallListener {
    const listener = this.listener as CallListener;
    return {
      onReceiveMetadata: (metadata) => {
        this.commit();
        listener.onReceiveMetadata(metadata);
      },
      onReceiveMessage: (message) => {
        this.commit();
        listener.onReceiveMessage(message);
      },
      onReceiveStatus: (status) => {
        if (this.inner !== inner) return;
        if (inner.refusedBeforeStart) {
          this.source.retire(channel);
          if (this.sent && this.refusals < MAX_REFUSALS) {
            this.refusals++;
            this.inner = undefined;
            // Everything sent so far goes again; the callbacks already ran.
            this.held = this.sent.map((message) => ({ message, callback: undefined }));
            this.startOrWait(status);
            return;
          }
        }
        this.finished = true;
        listener.onReceiveStatus(status);
      },
    };
  }

  /** A response came (or the caller gave up, or sent too much to keep): the call stays on its tunnel. */
  private commit(): void {
    this.sent = undefined;
    this.sentBytes = 0;
  }

  private stopWaitingNow(): void {
    this.stopWaiting?.();
    this.stopWaiting = undefined;
    this.unwatchParent?.();
    this.unwatchParent = undefined;
    this.timer?.clear();
    this.timer = undefined;
  }

  /** Ends a call that has no tunnel call: status on a later tick, held writes completed without error. */
  private fail(status: StatusObject): void {
    if (this.finished || this.inner) return;
    this.finished = true;
    this.stopWaitingNow();
    const held = this.held;
    this.held = [];
    const listener = this.listener;
    process.nextTick(() => {
      for (const { callback } of held) callback?.();
      listener?.onReceiveStatus(status);
    });
  }
}
