import { type ChannelInterface, connectivityState, status as Status } from '@grpc/grpc-js';
import type { ParentCall } from '../grpc/client/tunnel-call.js';
import type { TunnelChannelImpl } from '../grpc/client/tunnel-channel.js';
import { watchConnectivity } from '../grpc/connectivity.js';
import { abortError, statusError } from '../grpc/errors.js';
import { type LongTimer, setLongTimeout } from '../grpc/long-timer.js';
import { checkWaitForReadyOptions, rejection } from '../grpc/options-check.js';
import { PoolCall, type TunnelSource } from './pool-call.js';
import type { PoolSelector, ReverseTunnelRegistry } from './registry.js';
import type { ReverseTunnel } from './reverse-tunnel.js';

type ChannelzRef = ReturnType<ChannelInterface['getChannelzRef']>;

/** Options of {@link TunnelPool.waitForReady}. */
export interface WaitForReadyOptions {
  /** Stop waiting when aborted (rejects with a CANCELLED `ServiceError` whose `cause` is the signal's reason). */
  signal?: AbortSignal;
  /** Stop waiting after this many milliseconds (rejects with DEADLINE_EXCEEDED). */
  timeoutMs?: number;
  /**
   * The same as `timeoutMs` (which wins when both are set).
   *
   * @deprecated Renamed `timeoutMs`, so that the unit is in the name; goes away before 1.0.
   */
  timeout?: number;
}

let poolIds = 0;

/**
 * A grpc-js `Channel` over a pool of reverse tunnels: all of a handler's
 * tunnels ({@link TunnelServiceHandler.asChannel}) or those of one affinity
 * key ({@link TunnelServiceHandler.keyAsChannel}). Each call takes the next
 * tunnel round-robin; tunnels join and leave as they open and close.
 *
 * With no tunnel ready a call fails UNAVAILABLE "no channels ready", unless
 * the caller set grpc-js's `waitForReady` call option
 * (`new Metadata({ waitForReady: true })`): then it waits for a tunnel until its deadline.
 * `close()` does nothing: the tunnels belong to the handler.
 */
export interface TunnelPool<K = unknown> extends ChannelInterface {
  /** Whether a call started now would find a tunnel. */
  ready(): boolean;
  /** Number of tunnels in the pool. */
  readonly size: number;
  /** The pool's tunnels at this moment. */
  tunnels(): ReverseTunnel<K>[];
  /**
   * Resolves once the pool has a tunnel (at once if it has one). Rejects with
   * a DEADLINE_EXCEEDED `ServiceError` after `timeoutMs`, or with a CANCELLED
   * one when `signal` aborts.
   */
  waitForReady(options?: WaitForReadyOptions): Promise<void>;
  /** Does nothing: the pool's tunnels belong to the handler (close them through it). */
  close(): void;
}

/**
 * The implementation of {@link TunnelPool}; users get it as the interface
 * (from the handler), pool calls use the methods only this library calls.
 */
export class TunnelPoolImpl<K = unknown> implements TunnelPool<K>, TunnelSource {
  private readonly channelzRef: ChannelzRef;

  /** Made by the handler's asChannel() and keyAsChannel(). */
  constructor(
    private readonly registry: ReverseTunnelRegistry<K>,
    private readonly selector: PoolSelector<K>,
    private readonly name: string,
  ) {
    this.channelzRef = { kind: 'channel', id: ++poolIds, name } as ChannelzRef;
  }

  ready(): boolean {
    return this.registry.count(this.selector) > 0;
  }

  get size(): number {
    return this.registry.count(this.selector);
  }

  tunnels(): ReverseTunnel<K>[] {
    return this.registry.snapshot(this.selector);
  }

  waitForReady(options: WaitForReadyOptions = {}): Promise<void> {
    const refused = rejection(() => checkWaitForReadyOptions(options));
    if (refused) return refused;
    if (this.ready()) return Promise.resolve();
    const { signal } = options;
    const timeout = options.timeoutMs ?? options.timeout;
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise<void>((resolve, reject) => {
      let timer: LongTimer | undefined;
      const done = (error?: Error) => {
        unwatch();
        timer?.clear();
        signal?.removeEventListener('abort', onAbort);
        if (error) reject(error);
        else resolve();
      };
      const onAbort = () => done(abortError(signal as AbortSignal));
      const unwatch = this.registry.watch(this.selector, () => {
        if (this.ready()) done();
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeout !== undefined) {
        // setLongTimeout: a timeout past Node's 2^31-1 ms limit waits its whole length.
        timer = setLongTimeout(
          () => done(statusError(Status.DEADLINE_EXCEEDED, `no tunnel became ready within ${timeout} ms`)),
          timeout,
        );
      }
    });
  }

  /** The next tunnel, round-robin, for a pool call. */
  pick(): TunnelChannelImpl | undefined {
    return this.registry.pick(this.selector)?.channel;
  }

  /** Calls `watcher` when tunnels come or go, until the returned function is called. */
  watch(watcher: () => void): () => void {
    return this.registry.watch(this.selector, watcher);
  }

  /** Takes a tunnel whose far side drains out of its pools. */
  retire(channel: TunnelChannelImpl): void {
    this.registry.retireChannel(channel);
  }

  close(): void {}

  getTarget(): string {
    return this.name;
  }

  getConnectivityState(_tryToConnect: boolean): connectivityState {
    return this.ready() ? connectivityState.READY : connectivityState.IDLE;
  }

  watchConnectivityState(
    currentState: connectivityState,
    deadline: Date | number,
    callback: (error?: Error) => void,
  ): void {
    const subscribe = (onChange: () => void) => this.registry.watch(this.selector, onChange);
    watchConnectivity(() => this.getConnectivityState(false), subscribe, currentState, deadline, callback);
  }

  getChannelzRef(): ChannelzRef {
    return this.channelzRef;
  }

  createCall(
    method: string,
    deadline: Date | number,
    host: string | null | undefined,
    parentCall: ParentCall | null,
    propagateFlags: number | null | undefined,
  ): PoolCall {
    return new PoolCall(this, method, deadline, host, parentCall, propagateFlags);
  }
}
