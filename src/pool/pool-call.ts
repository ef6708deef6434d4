import { type CallCredentials, Metadata, propagate, status as Status, type StatusObject } from '@grpc/grpc-js';
import type { CallListener, ParentCall, TunnelCall } from '../grpc/client/tunnel-call.js';
import type { TunnelChannel } from '../grpc/client/tunnel-channel.js';
import { type LongTimer, setLongTimeout } from '../grpc/long-timer.js';
import type { AuthContext } from '../grpc/server/tunnel-info.js';

/** Where a pool call finds its tunnel. */
export interface TunnelSource {
  /** The next tunnel, round-robin; undefined when none is ready. */
  pick(): TunnelChannel | undefined;
  /** Calls `watcher` when tunnels come or go, until the returned function is called. */
  watch(watcher: () => void): () => void;
}

type Write = { readonly message: Buffer; readonly callback: ((error?: Error | null) => void) | undefined };

let callNumbers = 0;

function toMs(deadline: Date | number): number {
  return deadline instanceof Date ? deadline.getTime() : deadline;
}

/**
 * A call on a pool: it takes a tunnel when it starts (round-robin) and then
 * is that tunnel's call. With no tunnel ready it fails UNAVAILABLE "no
 * channels ready", or, when the caller asked for grpc-js's `waitForReady`,
 * waits for one until its deadline; what the caller sends meanwhile is held.
 * Like a tunnel's call, it delivers its status on a later tick than the
 * method that ended it and never hands an error to a write callback.
 */
export class PoolCall {
  private inner: TunnelCall | undefined;
  private listener: CallListener | undefined;
  private finished = false;
  private stopWaiting: (() => void) | undefined;
  private unwatchParent: (() => void) | undefined;
  private timer: LongTimer | undefined;
  private held: Write[] = [];
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
    if (this.tryStart(metadata)) return;
    if (!metadata.getOptions().waitForReady) {
      this.fail(Status.UNAVAILABLE, 'no channels ready');
      return;
    }
    // The wait honours what the call inherits from a parent server call, as
    // grpc-js applies propagation from the moment a call is created.
    const flags = this.propagateFlags ?? propagate.DEFAULTS;
    let due = toMs(this.deadline);
    if (this.parent && flags & propagate.DEADLINE) due = Math.min(due, toMs(this.parent.getDeadline()));
    const expire = () => this.fail(Status.DEADLINE_EXCEEDED, 'Deadline exceeded while waiting for a tunnel');
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
      const onCancelled = () => this.fail(Status.CANCELLED, 'Cancelled by parent call');
      parent.on('cancelled', onCancelled);
      this.unwatchParent = () => parent.removeListener('cancelled', onCancelled);
    }
    this.stopWaiting = this.source.watch(() => {
      if (this.tryStart(metadata)) this.stopWaitingNow();
    });
  }

  sendMessageWithContext(context: { callback?: (error?: Error | null) => void }, message: Buffer): void {
    const callback = context.callback;
    if (this.inner) this.inner.sendMessageWithContext(context, message);
    else if (!this.finished) this.held.push({ message, callback });
    // As on any ended call: the write completes, the status tells the story.
    else if (callback) process.nextTick(callback);
  }

  startRead(): void {
    if (this.inner) this.inner.startRead();
    else this.reading = true;
  }

  halfClose(): void {
    if (this.inner) this.inner.halfClose();
    else this.halfClosed = true;
  }

  cancelWithStatus(code: Status, details: string): void {
    if (this.inner) this.inner.cancelWithStatus(code, details);
    else this.fail(code, details);
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

  private tryStart(metadata: Metadata): boolean {
    if (this.finished) return true;
    const channel = this.source.pick();
    if (!channel) return false;
    const inner = channel.createCall(this.method, this.deadline, this.host, this.parent, this.propagateFlags);
    this.inner = inner;
    if (this.credentials) inner.setCredentials(this.credentials);
    inner.start(metadata, this.listener as CallListener);
    const held = this.held;
    this.held = [];
    for (const { message, callback } of held) {
      inner.sendMessageWithContext(callback ? { callback } : {}, message);
    }
    if (this.reading) inner.startRead();
    if (this.halfClosed) inner.halfClose();
    return true;
  }

  private stopWaitingNow(): void {
    this.stopWaiting?.();
    this.stopWaiting = undefined;
    this.unwatchParent?.();
    this.unwatchParent = undefined;
    this.timer?.clear();
    this.timer = undefined;
  }

  private fail(code: Status, details: string): void {
    if (this.finished || this.inner) return;
    this.finished = true;
    this.stopWaitingNow();
    const held = this.held;
    this.held = [];
    const status: StatusObject = { code, details, metadata: new Metadata() };
    const listener = this.listener;
    process.nextTick(() => {
      for (const { callback } of held) callback?.();
      listener?.onReceiveStatus(status);
    });
  }
}
