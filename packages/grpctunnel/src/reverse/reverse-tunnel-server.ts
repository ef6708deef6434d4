import {
  type CallOptions,
  type ChannelInterface,
  type Client,
  experimental,
  logVerbosity,
  type Metadata,
  type ServerInterceptingCallInterface,
  type ServiceError,
  status as Status,
  type StatusObject,
} from '@grpc/grpc-js';
import type { ClientFrame, ServerFrame } from '../engine/frames.js';
import { ReceiveWindows } from '../engine/receive-window.js';
import { localStatus } from '../engine/status.js';
import { asClient } from '../grpc/client/as-client.js';
import type { ClientHttp2WindowOptions } from '../grpc/client/client-http2-window.js';
import { type ClientKeepaliveOptions, clientKeepalive } from '../grpc/client/client-keepalive.js';
import { carrierTarget, TunnelConnection } from '../grpc/client/raw/connection.js';
import { drainNotice } from '../grpc/drain-notice.js';
import { abortError, statusError } from '../grpc/errors.js';
import { sleepUnlessAborted } from '../grpc/long-timer.js';
import * as check from '../grpc/options-check.js';
import { peerFaults } from '../grpc/peer-faults.js';
import { ServiceHost, type ShutdownOptions, servicesOf } from '../grpc/server/service-host.js';
import { type TunnelServerOptions, TunnelServerSession } from '../grpc/server/tunnel-server-session.js';
import { statusOfError } from '../grpc/status.js';
import type { TunnelInfo } from '../grpc/tunnel-info.js';
import { tunnelTuning } from '../grpc/tunnel-options.js';
import { DialedTunnelRpc } from '../grpc/tunnel-rpc.js';
import {
  decodeClientToServer,
  encodeServerToClient,
  frameServerToClient,
  OPEN_REVERSE_TUNNEL_PATH,
} from '../grpc/tunnel-service.js';
import { Backoff, type BackoffOptions } from './backoff.js';

/** Options of {@link ReverseTunnelServer}. */
export interface ReverseTunnelServerOptions
  extends TunnelServerOptions,
    ClientKeepaliveOptions,
    ClientHttp2WindowOptions {
  /**
   * Checks the network server before serving it: called with the response
   * headers of each tunnel RPC (which the server sends at once, so an
   * interceptor there can put credentials in them) and the tunnel RPC's peer
   * and auth context. What it returns (or resolves to) is the tunnel's
   * `identity`, readable by tunneled handlers through `getTunnelInfo(call)`.
   * Throwing or rejecting closes that tunnel: `serve()` resolves with the
   * error (its gRPC code when it has one, else UNAUTHENTICATED).
   */
  authenticate?: (
    responseHeaders: Metadata,
    tunnel: Pick<TunnelInfo, 'peer' | 'authContext' | 'host'>,
  ) => unknown | Promise<unknown>;
}

/** Options of {@link ReverseTunnelServer.serve}. */
export interface ServeOptions {
  /** Request metadata of the tunnel RPC (credentials, the affinity key the network server reads…). */
  metadata?: Metadata;
  /** grpc-js call options of the tunnel RPC (a deadline bounds the tunnel's life). */
  callOptions?: CallOptions;
  /** Aborting cancels the tunnel and every call running on it. */
  signal?: AbortSignal;
}

/** How one reverse tunnel ended. */
export interface ServeResult {
  /** Whether the tunnel was established and served (the network server answered and was authenticated). */
  readonly started: boolean;
  /**
   * Why it ended: undefined when it ended cleanly (the network server closed
   * it, or this side stopped it); otherwise a grpc-js `ServiceError` with the
   * tunnel RPC's status (UNIMPLEMENTED from a server that refuses reverse
   * tunnels, UNAVAILABLE when the connection was lost…).
   */
  readonly error?: ServiceError;
}

/** Options of {@link ReverseTunnelServer.keepOpen}. */
export interface KeepOpenOptions extends ServeOptions {
  /** How many tunnels to keep open at once. Default 1. */
  tunnels?: number;
  /** How to space reconnection attempts. */
  backoff?: BackoffOptions;
}

/** The events of a {@link ReverseTunnelServer}, with the arguments each listener gets. */
export interface ReverseTunnelServerEvents {
  /** A tunnel was established (the network server answered and was authenticated) and serves calls. */
  connected: [info: TunnelInfo];
  /** A tunnel that had been established ended: how, and which one. */
  disconnected: [result: ServeResult, info: TunnelInfo];
  /** {@link ReverseTunnelServer.keepOpen} will open a tunnel again after a wait. */
  retrying: [event: RetryEvent];
}

/** Payload of the `'retrying'` event. */
export interface RetryEvent {
  /** Which of the kept-open tunnels (0-based). */
  readonly slot: number;
  /** Consecutive failed attempts of that slot so far. */
  readonly attempt: number;
  /** The wait before the next attempt, in ms. */
  readonly delayMs: number;
  /** Why the last attempt ended, if it failed. */
  readonly error: ServiceError | undefined;
}

type MetricsRecorder = ReturnType<ServerInterceptingCallInterface['getMetricsRecorder']>;

/** Tunneled calls on this side have no ORCA load reports to feed; their records go nowhere. */
const discardingMetricsRecorder = {
  recordRequestCostMetric() {},
  recordUtilizationMetric() {},
  recordNamedMetric() {},
  recordCPUUtilizationMetric() {},
  recordMemoryUtilizationMetric() {},
  recordApplicationUtilizationMetric() {},
  recordQpsMetric() {},
  recordEpsMetric() {},
} as unknown as MetricsRecorder;

interface OpenTunnel {
  session: TunnelServerSession | undefined;
  /** Ends the tunnel RPC cleanly (half-close) once it is idle. */
  drain(): void;
  /** Cancels every call on the tunnel and ends the tunnel RPC (without a reset when the server answers). */
  cancel(message: string): void;
  readonly done: Promise<ServeResult>;
}

/**
 * Serves gRPC services to a network server through reverse tunnels: this
 * side dials out (a grpc-js client of the server's TunnelService) and the
 * server calls the services added here, back through the tunnel (or on a
 * {@link TunnelConnection}: the tunnel RPCs then run on the library's own
 * HTTP/2 session, as with `openTunnel`). Useful
 * when this process cannot be dialed (behind NAT or a firewall). The
 * connection's HTTP/2 receive windows are raised when a tunnel opens
 * (`http2WindowSize`), so it can be made with grpc-js's defaults.
 *
 * Events: see {@link ReverseTunnelServerEvents}.
 */
export class ReverseTunnelServer extends ServiceHost<ReverseTunnelServerEvents> {
  /** What carries the tunnel RPCs: a grpc-js client, or the library's own connection. */
  private readonly via: { readonly client: Client } | { readonly connection: TunnelConnection };
  private readonly tunnels = new Set<OpenTunnel>();
  private readonly stopper = new AbortController();
  /** Receive windows of every tunnel this server opens: one growth budget for all. */
  private readonly windows: ReceiveWindows;
  private draining = false;
  private readonly keepalive: ReturnType<typeof clientKeepalive>;

  constructor(
    connection: Client | ChannelInterface | TunnelConnection,
    private readonly options: ReverseTunnelServerOptions = {},
  ) {
    super();
    check.checkReverseServer(connection, options, connection instanceof TunnelConnection);
    this.windows = new ReceiveWindows(tunnelTuning(options));
    this.keepalive = clientKeepalive(options);
    this.via = connection instanceof TunnelConnection ? { connection } : { client: asClient(connection) };
  }

  /** Tunnels currently open (negotiating or serving). */
  get openTunnels(): number {
    return this.tunnels.size;
  }

  /** Tunneled calls running, over all tunnels. */
  get activeCalls(): number {
    let n = 0;
    for (const tunnel of this.tunnels) n += tunnel.session?.activeStreams ?? 0;
    return n;
  }

  /**
   * Opens one reverse tunnel and serves calls on it until it ends; resolves
   * with whether it started and why it ended (rejects only on invalid options). Call it again,
   * or use {@link ReverseTunnelServer.keepOpen}, for more tunnels or to reconnect.
   */
  serve(options: ServeOptions = {}): Promise<ServeResult> {
    const refused = check.rejection(() => check.checkServeOptions(options, 'connection' in this.via));
    if (refused) return refused;
    if (this.stopper.signal.aborted || this.draining) {
      return Promise.resolve({
        started: false,
        error: statusError(Status.UNAVAILABLE, 'the reverse tunnel server is stopped'),
      });
    }
    if (options.signal?.aborted) return Promise.resolve({ started: false, error: abortError(options.signal) });
    const tunnel = this.open(options);
    this.tunnels.add(tunnel);
    return tunnel.done.finally(() => this.tunnels.delete(tunnel));
  }

  /**
   * Keeps `tunnels` reverse tunnels open until {@link ReverseTunnelServer.forceShutdown}, {@link ReverseTunnelServer.tryShutdown}
   * or the signal: each one that ends or fails to open is opened again after
   * an exponential backoff with jitter (reset once a tunnel has been healthy
   * for `backoff.resetAfterMs`). Resolves once stopped.
   */
  async keepOpen(options: KeepOpenOptions = {}): Promise<void> {
    check.checkKeepOpenOptions(options, 'connection' in this.via);
    const count = Math.max(1, Math.floor(options.tunnels ?? 1));
    const stop = options.signal ? AbortSignal.any([options.signal, this.stopper.signal]) : this.stopper.signal;
    const { tunnels: _n, backoff: backoffOptions, ...serveOptions } = options;
    const slot = async (index: number) => {
      const backoff = new Backoff(backoffOptions);
      let attempt = 0;
      while (!stop.aborted && !this.draining) {
        const began = Date.now();
        const result = await this.serve({ ...serveOptions, signal: stop });
        if (stop.aborted || this.draining) return;
        if (result.started && Date.now() - began >= backoff.resetAfterMs) {
          backoff.reset();
          attempt = 0;
        }
        attempt++;
        const delayMs = backoff.next();
        this.emit('retrying', { slot: index, attempt, delayMs, error: result.error } satisfies RetryEvent);
        await sleepUnlessAborted(delayMs, stop);
      }
    };
    await Promise.all(Array.from({ length: count }, (_, i) => slot(i)));
  }

  /**
   * Shuts down now, as grpc-js's `server.forceShutdown` does for a server:
   * cancels every call on every tunnel and ends
   * {@link ReverseTunnelServer.keepOpen}. Each tunnel RPC is half-closed, as
   * the Go reference's `Stop` does, and the network server finishes it;
   * {@link ReverseTunnelServer.serve} resolves then (it cancels the RPC, with
   * an HTTP/2 reset, if the server has not finished it within 5 s).
   */
  forceShutdown(): void {
    this.stopper.abort();
    for (const tunnel of this.tunnels) tunnel.cancel('the reverse tunnel server stopped');
  }

  /**
   * Shuts down now.
   *
   * @deprecated Renamed {@link ReverseTunnelServer.forceShutdown}, grpc-js's
   * word (the same behaviour); goes away before 1.0.
   */
  stop(): void {
    this.forceShutdown();
  }

  /**
   * Shuts down gracefully.
   *
   * @deprecated Renamed {@link ReverseTunnelServer.tryShutdown}, grpc-js's
   * word (the same behaviour and options); goes away before 1.0.
   */
  gracefulStop(options: ShutdownOptions = {}): Promise<void> {
    return this.tryShutdown(options);
  }

  /**
   * Shuts down gracefully, as grpc-js's `server.tryShutdown` does for a
   * server; {@link ReverseTunnelServer.keepOpen} does not reconnect. Resolves
   * once every tunnel has ended. Aborting `signal` turns it into
   * {@link ReverseTunnelServer.forceShutdown}.
   *
   * A network server of this project is told at once (drain-notice.ts): it
   * routes no new call to these tunnels, the calls it had already sent are
   * served to completion, and it ends each tunnel once idle, so a rolling
   * restart loses no call. A network server without that handshake (Go's)
   * gets the protocol's rule: new calls are refused with UNAVAILABLE,
   * running calls finish, then each tunnel is ended (half-closed) by this
   * side once idle.
   */
  async tryShutdown(options: ShutdownOptions = {}): Promise<void> {
    check.checkShutdownOptions('ReverseTunnelServer.tryShutdown', options);
    this.draining = true;
    const onAbort = () => this.forceShutdown();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    if (options.signal?.aborted) this.forceShutdown();
    const pending = [...this.tunnels].map((tunnel) => {
      tunnel.drain();
      return tunnel.done;
    });
    try {
      await Promise.all(pending);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      this.stopper.abort();
    }
  }

  private open(options: ServeOptions): OpenTunnel {
    const rpc = new DialedTunnelRpc<ServerFrame, ClientFrame>({
      via: this.via,
      path: OPEN_REVERSE_TUNNEL_PATH,
      serialize: encodeServerToClient,
      frame: frameServerToClient,
      deserialize: decodeClientToServer,
      metadata: options.metadata,
      callOptions: options.callOptions,
      maxChunkSize: this.options.maxChunkSize,
      keepalive: this.keepalive,
      http2WindowSize: this.options.http2WindowSize,
    });
    const { call } = rpc;
    const host = carrierTarget(this.via);
    let started = false;
    /** Set when this side ended the tunnel for a reason the caller must hear. */
    let failure: ServiceError | undefined;
    let info: TunnelInfo | undefined;
    let draining = false;
    /** Whether the network server takes part in the drain handshake (drain-notice.ts). */
    let peerDrains = false;
    let drainStarted = false;
    const startDrain = (session: TunnelServerSession) => {
      if (drainStarted) return;
      drainStarted = true;
      if (!peerDrains) {
        // The protocol's own rule, all a Go network server understands:
        // refuse new streams with UNAVAILABLE, end the tunnel once idle.
        session.drain(() => rpc.halfClose());
        return;
      }
      // The network server takes the tunnel out of its pools on this notice
      // and ends it once idle. Streams that arrive meanwhile were sent
      // before it read the notice: they are served, not refused.
      call.write(drainNotice());
    };
    const tunnel: OpenTunnel = {
      session: undefined,
      drain: () => {
        draining = true;
        if (tunnel.session) startDrain(tunnel.session);
        else tunnel.cancel('the reverse tunnel server is stopping');
      },
      cancel: (message) => {
        tunnel.session?.close(localStatus(Status.CANCELLED, message));
        rpc.end();
      },
      done: new Promise<ServeResult>((resolve) => {
        const onAbort = () => tunnel.cancel('the reverse tunnel was aborted');
        options.signal?.addEventListener('abort', onAbort, { once: true });
        // A failed tunnel RPC also emits 'error'; the outcome is read from 'status'.
        call.on('error', () => {});
        call.on('status', (status: StatusObject) => {
          options.signal?.removeEventListener('abort', onAbort);
          tunnel.session?.close(
            localStatus(Status.UNAVAILABLE, status.code === Status.OK ? 'the tunnel ended' : 'the tunnel was lost'),
          );
          const error = failure ?? rpc.outcome(status, 'reverse tunnel');
          const result: ServeResult = error ? { started, error } : { started };
          if (started && info) this.emit('disconnected', result, info);
          resolve(result);
        });
      }),
    };

    rpc.onAnswer(({ headers, ...negotiation }) => {
      rpc.watchConnection(headers, (cause) => {
        failure = statusError(Status.UNAVAILABLE, `reverse tunnel: ${cause.message}`);
        tunnel.cancel(cause.message);
      });
      const tunnelPart = {
        peer: call.getPeer(),
        authContext: call.getAuthContext?.() ?? {},
        host,
      };
      const serve = (identity: unknown) => {
        if (rpc.endedHere) return;
        info = {
          kind: 'reverse',
          metadata: rpc.metadata,
          ...tunnelPart,
          responseHeaders: headers,
          ...(identity !== undefined && { identity }),
        };
        peerDrains = negotiation.peerDrains;
        const session = new TunnelServerSession({
          frames: rpc.frames,
          negotiation,
          registry: servicesOf(this),
          tunnel: info,
          options: this.options,
          metricsRecorder: () => discardingMetricsRecorder,
          onProtocolError: (status) => {
            peerFaults.log(`reverse tunnel: ${status.message}`);
            failure = statusError(status.code, `reverse tunnel: ${status.message}`);
            tunnel.cancel(status.message);
          },
          windows: this.windows,
        });
        tunnel.session = session;
        started = true;
        if (draining || this.draining) startDrain(session);
        this.emit('connected', info);
      };
      const authenticate = this.options.authenticate;
      if (!authenticate) {
        serve(undefined);
        return;
      }
      Promise.resolve()
        .then(() => authenticate(headers, tunnelPart))
        .then(serve, (err: unknown) => {
          failure = authenticationError(err);
          experimental.log(logVerbosity.INFO, `grpctunnel: the network server failed authentication: ${err}`);
          rpc.end();
        });
    });
    return tunnel;
  }
}

function authenticationError(err: unknown): ServiceError {
  const thrown = statusOfError(err);
  if (thrown.deliberate) return statusError(thrown.code, thrown.details);
  const message = err instanceof Error ? err.message : String(err);
  return statusError(Status.UNAUTHENTICATED, `the network server failed authentication: ${message}`);
}
