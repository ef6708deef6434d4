import type { Http2SecureServer, Http2Server, IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import {
  experimental,
  logVerbosity,
  type Server,
  status as Status,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { ClientFrame, ServerFrame } from '../engine/frames.js';
import { ReceiveWindows } from '../engine/receive-window.js';
import { localStatus } from '../engine/status.js';
import { type ClientFrameStream, TunnelChannelImpl } from '../grpc/client/tunnel-channel.js';
import { isDrainNotice } from '../grpc/drain-notice.js';
import { statusError } from '../grpc/errors.js';
import { checkHttp2WindowSize, DEFAULT_HTTP2_WINDOW_SIZE } from '../grpc/http2-window.js';
import type { KeepaliveOptions } from '../grpc/keepalive.js';
import { checkHandlerOptions, checkShutdownOptions, rejection } from '../grpc/options-check.js';
import { peerFaults } from '../grpc/peer-faults.js';
import type { AcceptedCall } from '../grpc/server/accepted-call.js';
import { raiseHttp2Window } from '../grpc/server/http2-window.js';
import { acceptsAsGrpc, answerUnimplemented, RawAcceptedCall } from '../grpc/server/raw/accepted-call.js';
import { ServerKeepalive } from '../grpc/server/server-keepalive.js';
import { ServiceHost, type ShutdownOptions, servicesOf } from '../grpc/server/service-host.js';
import { type TunnelServerOptions, TunnelServerSession } from '../grpc/server/tunnel-server-session.js';
import { statusOfError } from '../grpc/status.js';
import type { TunnelInfo } from '../grpc/tunnel-info.js';
import { tunnelTuning } from '../grpc/tunnel-options.js';
import { type AcceptedRpcEnd, AcceptedTunnelRpc } from '../grpc/tunnel-rpc.js';
import {
  decodeClientToServer,
  decodeServerToClient,
  frameClientToServer,
  frameServerToClient,
  OPEN_REVERSE_TUNNEL_PATH,
  OPEN_TUNNEL_PATH,
  TunnelServiceDefinition,
} from '../grpc/tunnel-service.js';
import { ReverseTunnelRegistry } from '../pool/registry.js';
import type { PooledTunnel, ReverseTunnel } from '../pool/reverse-tunnel.js';
import { type TunnelPool, TunnelPoolImpl } from '../pool/tunnel-pool.js';

/** Options of {@link TunnelServiceHandler}; `K` is the type of the affinity keys. */
export interface TunnelServiceHandlerOptions<K = unknown> extends TunnelServerOptions {
  /** Refuse reverse tunnels: `OpenReverseTunnel` fails with UNIMPLEMENTED. Default false. */
  noReverseTunnels?: boolean;
  /**
   * The affinity key of a new reverse tunnel, from its tunnel RPC (request
   * metadata after the server's interceptors, peer, auth context). Tunnels
   * with equal keys (compared as `Map` keys) form the pool that
   * {@link TunnelServiceHandler.keyAsChannel} returns. Throwing refuses the
   * tunnel: with the thrown error's gRPC `code` and `details` when it has
   * them (e.g. UNAUTHENTICATED), else with INTERNAL. It may answer later (a
   * promise, e.g. after a lookup): the tunnel waits, and one whose RPC ends
   * meanwhile is dropped; a rejected promise refuses it like a throw.
   */
  affinityKey?: (tunnel: TunnelInfo) => K | Promise<K>;
  /**
   * A reverse tunnel is ready and has joined its pools.
   *
   * @deprecated Listen to the `'reverseTunnelOpen'` event instead (the same
   * call, and more than one listener may hear it); this option goes away before 1.0.
   */
  // Method syntax keeps TunnelServiceHandler<string> assignable to TunnelServiceHandler<unknown>.
  onReverseTunnelOpen?(tunnel: ReverseTunnel<K>): void;
  /**
   * A reverse tunnel that had opened has ended and left its pools.
   *
   * @deprecated Listen to the `'reverseTunnelClose'` event instead (the same
   * arguments); this option goes away before 1.0.
   */
  onReverseTunnelClose?(tunnel: ReverseTunnel<K>, error: Error | undefined): void;
  /**
   * HTTP/2 receive window, in bytes, of each connection that carries a
   * tunnel RPC (the connection's window and each of its streams'). grpc-js's
   * `Server` has no such option and keeps HTTP/2's 64 KiB default, which
   * holds what a client sends through a tunnel (reverse tunnels' responses,
   * forward tunnels' requests) to 64 KiB per round trip; streaming through a
   * reverse tunnel runs about twice as fast at 1 MiB (BENCHMARKS.md). The
   * setting is per connection, so other calls sharing it get the larger
   * windows too; it bounds what one stream of such a connection can make
   * this process buffer. 0 leaves grpc-js's windows alone. Default 1 MiB.
   */
  http2WindowSize?: number;
  /**
   * Liveness checks of each connection that carries a tunnel RPC: HTTP/2
   * pings every `timeMs`; a client that leaves one unanswered for
   * `timeoutMs` counts as gone: its tunnels end (reverse tunnels leave their
   * pools, their calls fail with UNAVAILABLE naming the cause) and the
   * connection is closed. `false` turns the pings off. Default: every 15 s,
   * 10 s to answer, so a dead client is noticed within 25 s. Clients are
   * told (response header `grpctunnel-keepalive-min-time-ms`) that they may
   * ping this server every second.
   */
  keepalive?: KeepaliveOptions | false;
}

/** The events of a {@link TunnelServiceHandler}, with the arguments each listener gets. */
export interface TunnelServiceHandlerEvents<K = unknown> {
  /** A reverse tunnel is ready and has joined its pools. */
  reverseTunnelOpen: [tunnel: ReverseTunnel<K>];
  /**
   * A reverse tunnel that had opened has ended and left its pools. `error`
   * says why, as a grpc-js `ServiceError` (`code`, `details`, `metadata`;
   * UNAVAILABLE when the tunnel server ended or lost it); undefined when this
   * side closed it.
   */
  reverseTunnelClose: [tunnel: ReverseTunnel<K>, error: Error | undefined];
}

/** How a forward tunnel is ended by a shutdown. */
interface ForwardEnding {
  /** Its calls have finished (graceful shutdown): end the tunnel RPC with OK. */
  readonly end: () => void;
  /** Cancel its running calls (forced shutdown); being drained, it then ends as `end` says. */
  readonly cancel: () => void;
}

type ForwardRpc = AcceptedCall<ClientFrame, ServerFrame>;
type ReverseRpc = AcceptedCall<ServerFrame, ClientFrame>;

/** What a forward tunnel's calls in flight are cancelled with when its RPC ends, by how it ended. */
const FORWARD_RPC_END: Record<AcceptedRpcEnd, string> = {
  closed: 'the tunnel client closed the tunnel',
  cancelled: 'the tunnel was cancelled',
  failed: 'the tunnel failed',
};

/** Why a reverse tunnel ended when its RPC did (UNAVAILABLE), by how the RPC ended. */
const REVERSE_RPC_END: Record<AcceptedRpcEnd, string> = {
  closed: 'the reverse tunnel server closed the tunnel',
  cancelled: 'the reverse tunnel was cancelled',
  failed: 'the reverse tunnel failed',
};

/**
 * The server side of `grpctunnel.v1.TunnelService`. Register it on a grpc-js
 * `Server` with {@link TunnelServiceHandler.register}.
 *
 * - Forward tunnels: services added with `addService` (same arguments
 *   as `Server.addService`) answer the calls that clients send through
 *   their tunnels.
 * - Reverse tunnels: clients that serve RPCs dial in; this side calls them
 *   through {@link TunnelServiceHandler.asChannel}, {@link TunnelServiceHandler.keyAsChannel} or a single tunnel from
 *   {@link TunnelServiceHandler.allReverseTunnels}.
 *
 * A reverse tunnel whose tunnel server drains leaves its pools at once and
 * is closed once its calls have finished: on the drain notice a
 * `ReverseTunnelServer` sends (see drain-notice.ts), or on the first call a
 * peer refuses with UNAVAILABLE before any handler ran (what a draining Go
 * agent does); a pool call refused so, having had no response yet, is sent
 * again on another tunnel of its pool.
 *
 * Events: see {@link TunnelServiceHandlerEvents}. `K` is the type of the
 * affinity keys, as the `affinityKey` option returns them.
 */
export class TunnelServiceHandler<K = unknown> extends ServiceHost<TunnelServiceHandlerEvents<K>> {
  /** Forward tunnels, each with the ways to end it. */
  private readonly sessions = new Map<TunnelServerSession, ForwardEnding>();
  private readonly reverse = new ReverseTunnelRegistry<K>();
  /** Reverse tunnels whose RPC is open, ready or not yet. */
  private readonly reverseChannels = new Set<TunnelChannelImpl>();
  private readonly allPool: TunnelPoolImpl<K>;
  /** Receive windows of every tunnel of this handler: one growth budget for all. */
  private readonly windows: ReceiveWindows;
  private draining = false;
  /** Callers of tryShutdown, told once shutting down and every tunnel has ended. */
  private readonly shutdownWaiters = new Set<() => void>();
  private readonly http2WindowSize: number;
  private warnedWindows = false;
  private readonly keepalive: ServerKeepalive;

  constructor(private readonly options: TunnelServiceHandlerOptions<K> = {}) {
    super();
    checkHandlerOptions(options);
    this.windows = new ReceiveWindows(tunnelTuning(options));
    this.http2WindowSize = checkHttp2WindowSize(options.http2WindowSize ?? DEFAULT_HTTP2_WINDOW_SIZE);
    this.keepalive = new ServerKeepalive(options.keepalive);
    this.allPool = new TunnelPoolImpl(this.reverse, { all: true }, 'reverse-tunnels');
  }

  /** Raises the HTTP/2 windows of the tunnel RPC's connection; says once if this grpc-js does not allow it. */
  private raiseWindows(call: ForwardRpc | ReverseRpc): void {
    if (raiseHttp2Window(call, this.http2WindowSize) !== 'unsupported' || this.warnedWindows) return;
    this.warnedWindows = true;
    experimental.log(
      logVerbosity.INFO,
      'grpctunnel: cannot reach the HTTP/2 session of tunnel RPCs with this grpc-js; keeping its 64 KiB windows',
    );
  }

  /** The grpc-js implementation of TunnelService, for `server.addService(TunnelServiceDefinition, …)`. */
  get implementation(): UntypedServiceImplementation {
    return {
      openTunnel: (call: ForwardRpc) => this.acceptForward(call),
      openReverseTunnel: (call: ReverseRpc) => this.acceptReverse(call),
    };
  }

  /** Registers the tunnel service on a grpc-js server. */
  register(server: Server): void {
    server.addService(TunnelServiceDefinition, this.implementation);
  }

  /**
   * Serves a tunnel RPC that arrived on a `node:http2` server of your own
   * (`http2.createServer` or `http2.createSecureServer`; with TLS and client
   * certificates, the verified certificate reaches `TunnelInfo.authContext`
   * as on a grpc-js `Server`), without a grpc-js `Server` under it: faster per
   * tunnel frame. Call it from the server's `'stream'` listener. Returns
   * false, leaving `stream` untouched, when it is not a method of the tunnel
   * service: it is yours to answer (see {@link TunnelServiceHandler.serveHttp2}
   * for a server that carries nothing else). Tunnel RPCs behave as on a
   * grpc-js server with default options: the same headers, trailers and
   * statuses, `grpc-timeout` deadlines, a 4 MiB receive limit; server
   * interceptors do not apply to the tunnel RPC (those of the handler's
   * `interceptors` option still apply to the calls inside tunnels).
   *
   * Shutting down: {@link TunnelServiceHandler.tryShutdown} and
   * {@link TunnelServiceHandler.forceShutdown} end the tunnels as they do on
   * a grpc-js server; the HTTP/2 server and its sessions stay yours to close.
   */
  handleHttp2Stream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): boolean {
    const path = headers[':path'];
    if (path !== OPEN_TUNNEL_PATH && path !== OPEN_REVERSE_TUNNEL_PATH) return false;
    if (!acceptsAsGrpc(stream, headers)) return true;
    if (path === OPEN_TUNNEL_PATH) {
      const call = new RawAcceptedCall({
        stream,
        headers,
        deserialize: decodeClientToServer,
        frame: frameServerToClient,
      });
      this.acceptForward(call);
    } else {
      const call = new RawAcceptedCall({
        stream,
        headers,
        deserialize: decodeServerToClient,
        frame: frameClientToServer,
      });
      this.acceptReverse(call);
    }
    return true;
  }

  /**
   * Serves the tunnel service on a `node:http2` server that carries nothing
   * else: tunnel RPCs as {@link TunnelServiceHandler.handleHttp2Stream}
   * serves them, every other request answered UNIMPLEMENTED (or HTTP 415 when
   * it is not gRPC) as a grpc-js `Server` answers a method it lacks. Aborting
   * `signal` stops listening (tunnels already open go on).
   */
  serveHttp2(server: Http2Server | Http2SecureServer, options: { signal?: AbortSignal } = {}): void {
    const { signal } = options;
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new TypeError('TunnelServiceHandler.serveHttp2: options.signal must be an AbortSignal');
    }
    if (signal?.aborted) return;
    const onStream = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      if (this.handleHttp2Stream(stream, headers)) return;
      if (acceptsAsGrpc(stream, headers)) answerUnimplemented(stream, headers);
    };
    server.on('stream', onStream);
    signal?.addEventListener('abort', () => server.off('stream', onStream), { once: true });
  }

  /** Forward tunnels currently open. */
  get openTunnels(): number {
    return this.sessions.size;
  }

  /** Tunneled calls currently running, over all forward tunnels. */
  get activeCalls(): number {
    let n = 0;
    for (const session of this.sessions.keys()) n += session.activeStreams;
    return n;
  }

  /** Reverse tunnels whose tunnel RPC is open (ready or still negotiating). */
  get openReverseTunnels(): number {
    return this.reverseChannels.size;
  }

  /** One channel over every ready reverse tunnel, round-robin. */
  asChannel(): TunnelPool<K> {
    return this.allPool;
  }

  /** One channel over the ready reverse tunnels whose affinity key is `key`, round-robin. */
  keyAsChannel(key: K): TunnelPool<K> {
    return new TunnelPoolImpl(this.reverse, { key }, `reverse-tunnels:${String(key)}`);
  }

  /** A snapshot of the ready reverse tunnels, in the order they opened. */
  allReverseTunnels(): ReverseTunnel<K>[] {
    return this.reverse.snapshot();
  }

  /**
   * The affinity keys that have ready reverse tunnels (each once), without
   * walking every tunnel: for example the agents a gateway can route to.
   */
  reverseTunnelKeys(): K[] {
    return this.reverse.keys();
  }

  /**
   * Shuts down gracefully, as grpc-js's `server.tryShutdown` does for a
   * server; resolves once every tunnel has ended. New tunnels of either kind
   * are refused with UNAVAILABLE. Forward tunnels refuse new calls with
   * UNAVAILABLE, let running calls finish, then end. Reverse tunnels leave
   * their pools at once (new calls see "no channels ready"), finish their
   * running calls, then end. Once they have, grpc-js's `server.tryShutdown`
   * can complete too. Aborting `signal` turns it into
   * {@link TunnelServiceHandler.forceShutdown}.
   */
  tryShutdown(options: ShutdownOptions = {}): Promise<void> {
    const refused = rejection(() => checkShutdownOptions('TunnelServiceHandler.tryShutdown', options));
    if (refused) return refused;
    const { signal } = options;
    this.drain();
    return new Promise<void>((resolve) => {
      const onAbort = () => this.forceShutdown();
      this.shutdownWaiters.add(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      if (signal?.aborted) this.forceShutdown();
      this.tellIfShutDown();
    });
  }

  /**
   * Shuts down now, as grpc-js's `server.forceShutdown` does for a server:
   * new tunnels are refused with UNAVAILABLE, every tunneled call running is
   * cancelled (callers see CANCELLED, handlers their call's `'cancelled'`)
   * and every tunnel ends. A forward tunnel ends once its callers have been
   * told, which takes a peer that reads: grpc-js's own `server.forceShutdown()`
   * (or keepalive) ends the connection of one that does not.
   */
  forceShutdown(): void {
    this.drain();
    for (const ending of [...this.sessions.values()]) ending.cancel();
    for (const channel of [...this.reverseChannels]) channel.close();
  }

  /**
   * Starts a graceful shutdown without waiting for it.
   *
   * @deprecated Use {@link TunnelServiceHandler.tryShutdown} (the same
   * shutdown, with a promise that says when it is over); goes away before 1.0.
   */
  initiateShutdown(): void {
    void this.tryShutdown();
  }

  /** Refuses new tunnels and new calls; running calls finish, then each tunnel ends. */
  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    for (const [session, ending] of this.sessions) session.drain(ending.end);
    for (const tunnel of this.reverse.snapshot()) this.reverse.remove(tunnel);
    for (const channel of this.reverseChannels) channel.closeWhenIdle();
  }

  /** Resolves the tryShutdown promises once no tunnel is left. */
  private tellIfShutDown(): void {
    if (!this.draining || this.sessions.size > 0 || this.reverseChannels.size > 0) return;
    const waiters = [...this.shutdownWaiters];
    this.shutdownWaiters.clear();
    for (const waiter of waiters) waiter();
  }

  /** A forward tunnel has ended. */
  private forget(session: TunnelServerSession): void {
    this.sessions.delete(session);
    this.tellIfShutDown();
  }

  private acceptForward(call: ForwardRpc): void {
    const rpc = new AcceptedTunnelRpc(call);
    if (this.draining) {
      rpc.refuse(Status.UNAVAILABLE, 'the server is shutting down');
      return;
    }
    this.raiseWindows(call);
    const negotiation = rpc.accept({ maxChunkSize: this.options.maxChunkSize, keepalive: this.keepalive });
    const session: TunnelServerSession = new TunnelServerSession({
      frames: call,
      negotiation,
      registry: servicesOf(this),
      tunnel: tunnelInfo('forward', call),
      options: this.options,
      metricsRecorder: () => call.getMetricsRecorder(),
      onProtocolError: (status) => {
        peerFaults.log(`${status.message} (tunnel from ${call.getPeer()})`);
        this.forget(session);
        rpc.finish(status.code, status.message);
      },
      windows: this.windows,
    });
    rpc.watchConnection(this.keepalive, (cause) => {
      this.forget(session);
      session.close(localStatus(Status.UNAVAILABLE, cause.message));
    });
    this.sessions.set(session, {
      end: () => {
        this.forget(session);
        session.close(localStatus(Status.UNAVAILABLE, 'the server is shutting down'));
        rpc.finish();
      },
      // Worded as grpc-js words the calls a force-shut-down server cancels;
      // the tunnel then ends as a drained one does, once the client has been told.
      cancel: () => session.cancelCalls(localStatus(Status.CANCELLED, 'Call cancelled')),
    });
    rpc.onEnd((how) => {
      this.forget(session);
      session.close(localStatus(Status.CANCELLED, FORWARD_RPC_END[how]));
      // A client that half-closed ended the tunnel cleanly: answered with OK.
      if (how === 'closed') rpc.finish();
    });
  }

  private acceptReverse(call: ReverseRpc): void {
    const rpc = new AcceptedTunnelRpc(call);
    if (this.options.noReverseTunnels) {
      rpc.refuse(Status.UNIMPLEMENTED, 'this server does not accept reverse tunnels');
      return;
    }
    if (this.draining) {
      rpc.refuse(Status.UNAVAILABLE, 'the server is shutting down');
      return;
    }
    const info = tunnelInfo('reverse', call);
    let key: K | Promise<K>;
    try {
      key = this.options.affinityKey?.(info) as K | Promise<K>;
    } catch (err) {
      const { code, details } = refusalOf(err);
      rpc.refuse(code, details);
      return;
    }
    if (!(key instanceof Promise)) {
      this.openReverse(call, rpc, info, key);
      return;
    }
    // Until the key is known the RPC is only watched: a tunnel server that
    // gives up meanwhile is not opened.
    let gone = false;
    const onGone = () => {
      gone = true;
    };
    call.once('cancelled', onGone);
    key.then(
      (resolved) => {
        call.off('cancelled', onGone);
        if (gone) return;
        if (this.draining) rpc.refuse(Status.UNAVAILABLE, 'the server is shutting down');
        else this.openReverse(call, rpc, info, resolved);
      },
      (err) => {
        call.off('cancelled', onGone);
        if (gone) return;
        const { code, details } = refusalOf(err);
        rpc.refuse(code, details);
      },
    );
  }

  private openReverse(call: ReverseRpc, rpc: AcceptedTunnelRpc, info: TunnelInfo, key: K): void {
    this.raiseWindows(call);
    // The drain handshake: a tunnel server of this project that drains tells
    // us so, and we end the tunnel once idle (see drain-notice.ts).
    const negotiation = rpc.accept({ maxChunkSize: this.options.maxChunkSize, keepalive: this.keepalive, drain: true });
    let retiring = false;
    let tunnel: PooledTunnel<K> | undefined;
    const frames: ClientFrameStream = {
      write: (frame, callback) => call.write(frame, callback),
      on: (_event, listener) =>
        call.on('data', (frame: ServerFrame) => {
          if (!isDrainNotice(frame)) {
            listener(frame);
            return;
          }
          retiring = true;
          if (tunnel) this.reverse.retire(tunnel);
          else channel.closeWhenIdle();
        }),
    };
    const channel: TunnelChannelImpl = new TunnelChannelImpl({
      frames,
      negotiation,
      tuning: tunnelTuning(this.options),
      info: { target: `reverse:${info.peer}`, peer: info.peer, authContext: info.authContext },
      windows: this.windows,
      endRpc: (error, closedWith) => rpc.finishTunnel(error, 'the reverse tunnel failed', closedWith),
      onReady: (ready) => {
        if (this.draining || retiring) {
          ready.closeWhenIdle();
          return;
        }
        tunnel = { channel: ready, key, info, openedAt: new Date() };
        this.reverse.add(tunnel);
        this.notify(() => this.options.onReverseTunnelOpen?.(tunnel as ReverseTunnel<K>));
        this.emit('reverseTunnelOpen', tunnel);
      },
    });
    this.reverseChannels.add(channel);
    rpc.watchConnection(this.keepalive, (cause) => channel.shutDown(cause));
    channel.once('close', (error: Error | undefined) => {
      this.reverseChannels.delete(channel);
      this.tellIfShutDown();
      if (!tunnel) return;
      this.reverse.remove(tunnel);
      const closed = tunnel;
      this.notify(() => this.options.onReverseTunnelClose?.(closed, error));
      this.emit('reverseTunnelClose', closed, error);
    });
    // Each end is a status: what the tunnel's calls in flight fail with, and
    // the error 'reverseTunnelClose' reports.
    rpc.onEnd((how) => channel.shutDown(statusError(Status.UNAVAILABLE, REVERSE_RPC_END[how])));
  }

  /** Runs a user callback; what it throws is logged, never allowed to break the tunnel. */
  private notify(callback: () => void): void {
    try {
      callback();
    } catch (err) {
      experimental.log(logVerbosity.ERROR, `grpctunnel: a reverse-tunnel callback threw: ${err}`);
    }
  }
}

function tunnelInfo(kind: 'forward' | 'reverse', call: ForwardRpc | ReverseRpc): TunnelInfo {
  return {
    kind,
    metadata: call.metadata,
    peer: call.getPeer(),
    authContext: call.getAuthContext(),
    host: call.getHost(),
  };
}

/** The status to refuse a tunnel with when the affinity-key function threw. */
function refusalOf(err: unknown): { code: Status; details: string } {
  const thrown = statusOfError(err);
  if (thrown.deliberate) return { code: thrown.code, details: thrown.details };
  experimental.log(logVerbosity.ERROR, `grpctunnel: the affinity-key function threw: ${err}`);
  return { code: Status.INTERNAL, details: 'failed to accept the reverse tunnel' };
}
