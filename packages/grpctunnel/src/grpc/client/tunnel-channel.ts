import { EventEmitter } from 'node:events';
import { type ChannelInterface, connectivityState, type status } from '@grpc/grpc-js';
import { Code } from '../../engine/codes.js';
import type { ClientFrame, ServerFrame } from '../../engine/frames.js';
import type { ReceiveWindows } from '../../engine/receive-window.js';
import { localStatus, type StreamStatus } from '../../engine/status.js';
import { type ClientStreamHandlers, TunnelClientEngine, type TunnelClientStream } from '../../engine/tunnel-client.js';
import type { Metadata as WireMetadata } from '../../gen/grpctunnel/v1/tunnel.js';
import { watchConnectivity } from '../connectivity.js';
import { clientAuthContext } from '../context.js';
import { statusError } from '../errors.js';
import type { AuthContext } from '../tunnel-info.js';
import { type TunnelOptions, tunnelTuning } from '../tunnel-options.js';
import type { TunnelNegotiation } from '../tunnel-rpc.js';
import { gateWrites } from '../write-gate.js';
import { type ParentCall, TunnelCall } from './tunnel-call.js';

/** Describes the tunnel RPC a tunnel channel runs on. */
export interface TunnelChannelInfo {
  /** The grpc-js target of the connection carrying the tunnel. */
  readonly target: string;
  /** The peer that answers tunneled calls, as grpc-js's `getPeer()` reports it. */
  readonly peer: string;
  /** Transport security of the tunnel RPC's connection, if grpc-js reports it. */
  readonly authContext?: AuthContext | null;
}

/** The tunnel RPC as a tunnel client sees it: ClientToServer frames out, ServerToClient frames in. */
export interface ClientFrameStream {
  write(frame: ClientFrame, callback: () => void): boolean;
  on(event: 'data', listener: (frame: ServerFrame) => void): unknown;
}

type ChannelzRef = ReturnType<ChannelInterface['getChannelzRef']>;

/**
 * The status a {@link TunnelChannel} is closed with, when the code closing it
 * wants calls in flight to say why rather than CANCELLED (for example a
 * server revoking a client's reverse tunnel).
 */
export interface TunnelCloseStatus {
  /** A gRPC status code other than OK. */
  readonly code: status;
  /** The status message callers and, for a reverse tunnel, its peer see. */
  readonly details: string;
}

/** The events of a {@link TunnelChannel}, with the arguments each listener gets. */
export interface TunnelChannelEvents {
  /**
   * Emitted once, when the tunnel has ended for any reason: with the error
   * that ended it, or undefined after {@link TunnelChannel.close}.
   */
  close: [error: Error | undefined];
}

/**
 * A grpc-js `Channel` whose calls travel through one tunnel. Pass it to any
 * generated client with the `channelOverride` option (or use
 * {@link createTunnelClient}), or to nice-grpc's `createClient`. Get one from
 * {@link openTunnel} (forward) or from a reverse tunnel's
 * {@link ReverseTunnel.channel}.
 *
 * How it ends: `close()` cancels every call in flight and ends the tunnel now
 * (as grpc-js's `Channel.close()`); `closeWhenIdle()` ends it once its calls
 * have finished. The end is observable as the `'close'` event (pushed once,
 * with the cause) and as the {@link TunnelChannel.closed} promise (which can
 * also be awaited after the fact); the connectivity state turns SHUTDOWN.
 */
export interface TunnelChannel extends ChannelInterface, EventEmitter<TunnelChannelEvents> {
  /** The peer that answers the tunneled calls. */
  readonly peer: string;
  /** Number of calls in flight on this tunnel. */
  readonly activeCalls: number;
  /** The protocol revision in use (0 or 1), once the tunnel is ready. */
  readonly protocolRevision: number | undefined;
  /**
   * Settles once the tunnel has ended, after every call in flight has been
   * given its status: with the error that ended it, or undefined after
   * {@link TunnelChannel.close}. The awaitable form of the `'close'` event.
   */
  readonly closed: Promise<Error | undefined>;
  /**
   * The error that ended the tunnel, if it ended by failure.
   *
   * @deprecated Read it from the `'close'` event or `await channel.closed`
   * instead (the same value); this getter goes away before 1.0.
   */
  readonly error: Error | undefined;
  /**
   * Cancels every call in flight (callers see CANCELLED) and ends the tunnel
   * RPC, as grpc-js's `Channel.close()` does for a connection.
   *
   * With a `status`, calls in flight fail with that status instead, the
   * tunnel ends as failed with it ({@link TunnelChannel.closed} settles with
   * a grpc-js `ServiceError` of that code), and a reverse tunnel's RPC ends
   * with it, so the client that opened the tunnel learns why. Throws a
   * RangeError for a code that is not a gRPC error code.
   */
  close(status?: TunnelCloseStatus): void;
  /**
   * Closes the tunnel gracefully: new calls fail with UNAVAILABLE at once,
   * calls in flight run to completion, then the tunnel ends.
   */
  closeWhenIdle(): void;
}

/** What a {@link TunnelChannelImpl} runs on. */
export interface TunnelChannelInit {
  /** The tunnel RPC: it takes ClientToServer frames and yields ServerToClient frames. */
  readonly frames: ClientFrameStream;
  /** What the tunnel RPC's headers agreed on. */
  readonly negotiation: TunnelNegotiation;
  /** The user's tunnel settings. */
  readonly tuning: TunnelOptions;
  /** The tunnel RPC this channel runs on. */
  readonly info: TunnelChannelInfo;
  /** Receive windows (a growth budget) shared with other tunnels; one of its own when absent. */
  readonly windows?: ReceiveWindows | undefined;
  /**
   * Finishes the tunnel RPC once the channel has closed (`error`: why,
   * undefined when closed on purpose; `closedWith`: the status the user
   * closed it with, if any).
   */
  readonly endRpc: (error: Error | undefined, closedWith?: TunnelCloseStatus) => void;
  /** The tunnel is ready for calls (negotiation done). */
  readonly onReady: (channel: TunnelChannelImpl) => void;
}

let channelIds = 0;

/**
 * The implementation of {@link TunnelChannel}. Only this library creates
 * and shuts them down; users hold them as the `TunnelChannel` interface, so
 * the constructor and the methods below that take engine types stay out of
 * the published declarations.
 */
export class TunnelChannelImpl extends EventEmitter<TunnelChannelEvents> implements TunnelChannel {
  readonly closed: Promise<Error | undefined>;
  private resolveClosed!: (error: Error | undefined) => void;
  private closeError: Error | undefined;
  private isClosed = false;
  private closingWhenIdle = false;
  private readonly engine: TunnelClientEngine;
  private readonly watchers = new Set<() => void>();
  private readonly channelzRef: ChannelzRef;
  /** What calls through this tunnel report as their auth context. */
  readonly callAuthContext: AuthContext;

  private readonly info: TunnelChannelInfo;
  private readonly endRpc: (error: Error | undefined, closedWith?: TunnelCloseStatus) => void;

  /** Made by {@link openTunnel} (forward) and the handler (reverse). */
  constructor(init: TunnelChannelInit) {
    super();
    const { frames, negotiation, info, onReady } = init;
    this.info = info;
    this.endRpc = init.endRpc;
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    this.callAuthContext = clientAuthContext(info.authContext ?? {}, this);
    this.channelzRef = { kind: 'channel', id: ++channelIds, name: `tunnel:${info.target}` } as ChannelzRef;
    this.engine = new TunnelClientEngine({
      write: gateWrites(frames, () => this.engine.drained()),
      negotiated: negotiation.negotiated,
      ...tunnelTuning(init.tuning),
      ...negotiation.chunks,
      receiveWindows: init.windows,
      onReady: () => onReady(this),
      onProtocolError: (status) => this.shutDown(statusError(status.code, status.message), status),
      onIdle: () => {
        if (this.closingWhenIdle) process.nextTick(() => this.close());
      },
    });
    frames.on('data', (frame: ServerFrame) => this.engine.handleFrame(frame));
    this.engine.start();
  }

  /** The peer that answers the tunneled calls. */
  get peer(): string {
    return this.info.peer;
  }

  /** Number of calls in flight on this tunnel. */
  get activeCalls(): number {
    return this.engine.activeStreams;
  }

  /** The protocol revision in use (0 or 1), once the tunnel is ready. */
  get protocolRevision(): number | undefined {
    return this.engine.revision;
  }

  /** The error that ended the tunnel, if it ended by failure. */
  get error(): Error | undefined {
    return this.closeError;
  }

  /**
   * Cancels every call in flight (callers see CANCELLED) and ends the tunnel
   * RPC. The RPC ends without an HTTP/2 reset once the server has answered:
   * this side half-closes and the server finishes it (see `TunnelRpcEnd`),
   * so closing tunnels at any rate cannot trip a server's reset limit.
   */
  close(status?: TunnelCloseStatus): void {
    if (status === undefined) {
      this.shutDown(undefined, localStatus(Code.CANCELLED, 'the tunnel channel was closed'));
      return;
    }
    const { code, details } = checkCloseStatus(status);
    this.shutDown(statusError(code, details), localStatus(code, details), { code, details });
  }

  /**
   * Closes the tunnel gracefully: new calls fail with UNAVAILABLE at once,
   * calls in flight run to completion, then the tunnel ends.
   */
  closeWhenIdle(): void {
    if (this.isClosed || this.closingWhenIdle) return;
    this.closingWhenIdle = true;
    if (this.engine.activeStreams === 0) this.close();
  }

  getTarget(): string {
    return `tunnel:${this.info.target}`;
  }

  getConnectivityState(_tryToConnect: boolean): connectivityState {
    return this.isClosed ? connectivityState.SHUTDOWN : connectivityState.READY;
  }

  watchConnectivityState(
    currentState: connectivityState,
    deadline: Date | number,
    callback: (error?: Error) => void,
  ): void {
    const subscribe = (onChange: () => void) => {
      this.watchers.add(onChange);
      return () => this.watchers.delete(onChange);
    };
    watchConnectivity(() => this.getConnectivityState(false), subscribe, currentState, deadline, callback);
  }

  getChannelzRef(): ChannelzRef {
    return this.channelzRef;
  }

  createCall(
    method: string,
    deadline: Date | number,
    _host: string | null | undefined,
    parentCall: ParentCall | null,
    propagateFlags: number | null | undefined,
  ): TunnelCall {
    return new TunnelCall(this, method, deadline, parentCall, propagateFlags);
  }

  /** Why new calls cannot start, or undefined while the tunnel is up. */
  unavailableReason(): string | undefined {
    if (!this.isClosed) return this.closingWhenIdle ? 'the tunnel is shutting down' : undefined;
    return this.closeError ? `tunnel closed: ${this.closeError.message}` : 'the tunnel channel was closed';
  }

  /** Starts a stream on the tunnel for one call. */
  openStream(method: string, headers: WireMetadata, handlers: ClientStreamHandlers): TunnelClientStream {
    return this.engine.openStream(method, headers, handlers);
  }

  /**
   * The tunnel RPC ended (or must end): fail the calls in flight
   * with `status` and settle {@link TunnelChannelImpl.closed}. `error` is undefined for a close
   * the user asked for.
   */
  shutDown(error: Error | undefined, status?: StreamStatus, closedWith?: TunnelCloseStatus): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.closeError = error;
    this.engine.close(
      status ?? localStatus(Code.UNAVAILABLE, `tunnel closed: ${error?.message ?? 'the tunnel RPC ended'}`),
    );
    this.endRpc(error, closedWith);
    for (const watcher of [...this.watchers]) watcher();
    // Calls get their statuses on the next tick, as grpc-js delivers them;
    // `closed` settles after those, so awaiting it means every call was told.
    process.nextTick(() => this.resolveClosed(error));
    this.emit('close', error);
  }
}

/** A close status as given, checked: a gRPC error code (1-16) and a string (RangeError / TypeError otherwise). */
function checkCloseStatus(status: TunnelCloseStatus): TunnelCloseStatus {
  const { code, details } = status ?? {};
  if (!Number.isInteger(code) || code < Code.CANCELLED || code > Code.UNAUTHENTICATED) {
    throw new RangeError(`a tunnel is closed with a gRPC error code (1-16), got ${String(code)}`);
  }
  if (typeof details !== 'string')
    throw new TypeError(`the close status' details must be a string, got ${typeof details}`);
  return { code, details };
}
