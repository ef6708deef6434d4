import { type ServerInterceptingCallInterface, type ServerInterceptor, status as Status } from '@grpc/grpc-js';
import type { ClientFrame, ServerFrame } from '../../engine/frames.js';
import type { ReceiveWindows } from '../../engine/receive-window.js';
import { localStatus, type StreamStatus } from '../../engine/status.js';
import { type StreamDecision, TunnelServerEngine, type TunnelServerStream } from '../../engine/tunnel-server.js';
import { serverAuthContext } from '../context.js';
import type { TunnelInfo } from '../tunnel-info.js';
import { type TunnelOptions, tunnelTuning } from '../tunnel-options.js';
import type { TunnelNegotiation } from '../tunnel-rpc.js';
import { gateWrites } from '../write-gate.js';
import { dispatch, intercept } from './dispatch.js';
import type { ServiceRegistry } from './service-registry.js';
import { TunnelServerCall } from './tunnel-server-call.js';

/** Limits and hooks of the side that serves tunneled calls. */
export interface TunnelServerOptions extends TunnelOptions {
  /** Streams open at once on one tunnel; more get RESOURCE_EXHAUSTED. Default unlimited. */
  maxConcurrentStreams?: number;
  /** grpc-js server interceptors applied to every tunneled call, outermost first. */
  interceptors?: ServerInterceptor[];
}

/** The tunnel RPC as a tunnel server sees it: ServerToClient frames out, ClientToServer frames in. */
export interface ServerFrameStream {
  write(frame: ServerFrame, callback: () => void): boolean;
  on(event: 'data', listener: (frame: ClientFrame) => void): unknown;
}

type MetricsRecorder = ReturnType<ServerInterceptingCallInterface['getMetricsRecorder']>;

/** What a {@link TunnelServerSession} runs on. */
export interface TunnelServerSessionInit {
  /** The tunnel RPC: it takes ServerToClient frames and yields ClientToServer frames. */
  readonly frames: ServerFrameStream;
  /** What the tunnel RPC's headers agreed on. */
  readonly negotiation: TunnelNegotiation;
  /** The services the tunnel's calls go to. */
  readonly registry: ServiceRegistry;
  /** What is known about the tunnel; tunneled calls report it. */
  readonly tunnel: TunnelInfo;
  /** The user's limits and interceptors. */
  readonly options: TunnelServerOptions;
  /** The metrics recorder tunneled calls report (the tunnel RPC's, on a grpc-js server). */
  readonly metricsRecorder: () => MetricsRecorder;
  /** The peer broke the protocol: the tunnel must end with `status`. */
  readonly onProtocolError: (status: StreamStatus) => void;
  /** Receive windows (a growth budget) shared with other tunnels; one of its own when absent. */
  readonly windows?: ReceiveWindows | undefined;
}

/**
 * Serves the calls of one tunnel (the tunnel-server role) from a service
 * registry: protocol engine below, grpc-js call objects and interceptors
 * above. Forward tunnels (on the network server) and reverse tunnels (on the
 * network client) both run on it.
 */
export class TunnelServerSession {
  private readonly engine: TunnelServerEngine;
  private onIdle: (() => void) | undefined;

  /** What is known about the tunnel; tunneled calls report it. */
  readonly tunnel: TunnelInfo;

  constructor(init: TunnelServerSessionInit) {
    const { frames, registry, tunnel, options, metricsRecorder, negotiation } = init;
    this.tunnel = tunnel;
    const interceptors = options.interceptors ?? [];
    const authContext = serverAuthContext(tunnel);
    this.engine = new TunnelServerEngine({
      write: gateWrites(frames, () => this.engine.drained()),
      negotiated: negotiation.negotiated,
      ...tunnelTuning(options),
      ...negotiation.chunks,
      receiveWindows: init.windows,
      ...(options.maxConcurrentStreams !== undefined && { maxConcurrentStreams: options.maxConcurrentStreams }),
      onStream: (stream: TunnelServerStream): StreamDecision => {
        const method = registry.lookup(stream.method);
        // Worded as the Go reference words it, so mixed deployments log alike.
        if (!method) return { refuse: localStatus(Status.UNIMPLEMENTED, `${stream.method.slice(1)} not implemented`) };
        const call = new TunnelServerCall(stream, method, tunnel, authContext, metricsRecorder);
        return {
          handlers: call.handlers,
          singleRequest: method.kind === 'unary' || method.kind === 'serverStream',
          start: () => dispatch(method, intercept(interceptors, method, call)),
        };
      },
      onProtocolError: init.onProtocolError,
      onIdle: () => {
        const onIdle = this.onIdle;
        this.onIdle = undefined;
        if (onIdle) process.nextTick(onIdle);
      },
    });
    frames.on('data', (frame: ClientFrame) => this.engine.handleFrame(frame));
    this.engine.start();
  }

  /** Calls in flight on this tunnel. */
  get activeStreams(): number {
    return this.engine.activeStreams;
  }

  /**
   * Refuses new calls with UNAVAILABLE; running calls go on. `onIdle` runs
   * once none is left (at once if none is running).
   */
  drain(onIdle?: () => void): void {
    this.engine.drain();
    if (!onIdle) return;
    if (this.engine.activeStreams === 0) process.nextTick(onIdle);
    else this.onIdle = onIdle;
  }

  /**
   * Cancels every running call, telling the client of each (a forced
   * shutdown); the tunnel stays up until their close frames are written.
   */
  cancelCalls(status: StreamStatus): void {
    this.engine.cancelAll(status);
  }

  /** The tunnel is gone: every running call is cancelled. */
  close(status: StreamStatus): void {
    this.engine.close(status);
  }
}
