import {
  experimental,
  logVerbosity,
  Metadata,
  type Server,
  type ServerDuplexStream,
  type ServerErrorResponse,
  status as Status,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { NEGOTIATE_HEADER, NEGOTIATE_ON } from '../engine/constants.js';
import type { ClientFrame, ServerFrame } from '../engine/frames.js';
import { ReceiveWindows } from '../engine/receive-window.js';
import { localStatus } from '../engine/status.js';
import {
  advertiseChunkSize,
  chunkOffer,
  serverReceiveLimit,
  takePeerChunkOffer,
  tunnelChunkSizes,
} from '../grpc/chunk-size.js';
import { type ClientFrameStream, TunnelChannel, tunnelTuning } from '../grpc/client/tunnel-channel.js';
import { DRAIN_HEADER, DRAIN_ON, isDrainNotice } from '../grpc/drain-notice.js';
import { statusError, thrownStatus } from '../grpc/errors.js';
import type { KeepaliveOptions } from '../grpc/keepalive.js';
import { checkHandlerOptions } from '../grpc/options-check.js';
import { peerFaults } from '../grpc/peer-faults.js';
import { checkHttp2WindowSize, DEFAULT_HTTP2_WINDOW_SIZE, raiseHttp2Window } from '../grpc/server/http2-window.js';
import { ServerKeepalive } from '../grpc/server/server-keepalive.js';
import { ServiceHost } from '../grpc/server/service-host.js';
import type { TunnelInfo } from '../grpc/server/tunnel-info.js';
import { type TunnelServerOptions, TunnelServerSession } from '../grpc/server/tunnel-server-session.js';
import { TunnelServiceDefinition } from '../grpc/tunnel-service.js';
import { ReverseTunnelRegistry } from '../pool/registry.js';
import type { ReverseTunnel } from '../pool/reverse-tunnel.js';
import { TunnelPool } from '../pool/tunnel-pool.js';

/** Options of {@link TunnelServiceHandler}. */
export interface TunnelServiceHandlerOptions extends TunnelServerOptions {
  /** Refuse reverse tunnels: `OpenReverseTunnel` fails with UNIMPLEMENTED. Default false. */
  noReverseTunnels?: boolean;
  /**
   * The affinity key of a new reverse tunnel, from its tunnel RPC (request
   * metadata after the server's interceptors, peer, auth context). Tunnels
   * with equal keys (compared as `Map` keys) form the pool that
   * {@link TunnelServiceHandler.keyAsChannel} returns. Throwing refuses the
   * tunnel: with the thrown error's gRPC `code` and `details` when it has
   * them (e.g. UNAUTHENTICATED), else with INTERNAL.
   */
  affinityKey?: (tunnel: TunnelInfo) => unknown;
  /** A reverse tunnel is ready and has joined its pools (also the `'reverseTunnelOpen'` event). */
  onReverseTunnelOpen?: (tunnel: ReverseTunnel) => void;
  /**
   * A reverse tunnel that had opened has ended and left its pools (also the
   * `'reverseTunnelClose'` event). `error` says why, as a grpc-js
   * `ServiceError` (`code`, `details`, `metadata`; UNAVAILABLE when the
   * tunnel server ended or lost it); undefined when this side closed it.
   */
  onReverseTunnelClose?: (tunnel: ReverseTunnel, error: Error | undefined) => void;
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

type ForwardRpc = ServerDuplexStream<ClientFrame, ServerFrame>;
type ReverseRpc = ServerDuplexStream<ServerFrame, ClientFrame>;

function refuse(call: ForwardRpc | ReverseRpc, code: Status, details: string): void {
  call.emit('error', { code, details } as Partial<ServerErrorResponse>);
}

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
 * Events: `'reverseTunnelOpen'` (tunnel), `'reverseTunnelClose'` (tunnel, error?).
 */
export class TunnelServiceHandler extends ServiceHost {
  /** Forward tunnels, each with the function that ends its tunnel RPC with OK. */
  private readonly sessions = new Map<TunnelServerSession, () => void>();
  private readonly reverse = new ReverseTunnelRegistry();
  /** Reverse tunnels whose RPC is open, ready or not yet. */
  private readonly reverseChannels = new Set<TunnelChannel>();
  private readonly allPool: TunnelPool;
  /** Receive windows of every tunnel of this handler: one growth budget for all. */
  private readonly windows: ReceiveWindows;
  private draining = false;
  private readonly http2WindowSize: number;
  private warnedWindows = false;
  private readonly keepalive: ServerKeepalive;

  constructor(private readonly options: TunnelServiceHandlerOptions = {}) {
    super();
    checkHandlerOptions(options);
    this.windows = new ReceiveWindows(tunnelTuning(options));
    this.http2WindowSize = checkHttp2WindowSize(options.http2WindowSize ?? DEFAULT_HTTP2_WINDOW_SIZE);
    this.keepalive = new ServerKeepalive(options.keepalive);
    this.allPool = new TunnelPool(this.reverse, { all: true }, 'reverse-tunnels');
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
  asChannel(): TunnelPool {
    return this.allPool;
  }

  /** One channel over the ready reverse tunnels whose affinity key is `key`, round-robin. */
  keyAsChannel(key: unknown): TunnelPool {
    return new TunnelPool(this.reverse, { key }, `reverse-tunnels:${String(key)}`);
  }

  /** A snapshot of the ready reverse tunnels, in the order they opened. */
  allReverseTunnels(): ReverseTunnel[] {
    return this.reverse.snapshot();
  }

  /**
   * The affinity keys that have ready reverse tunnels (each once), without
   * walking every tunnel: for example the agents a gateway can route to.
   */
  reverseTunnelKeys(): unknown[] {
    return this.reverse.keys();
  }

  /**
   * Starts a graceful shutdown. New tunnels of either kind are refused with
   * UNAVAILABLE. Forward tunnels refuse new calls with UNAVAILABLE, let
   * running calls finish, then end. Reverse tunnels leave their pools at once
   * (new calls see "no channels ready"), finish their running calls, then
   * end. Once every tunnel has ended, grpc-js's `server.tryShutdown` can
   * complete.
   */
  initiateShutdown(): void {
    if (this.draining) return;
    this.draining = true;
    for (const [session, end] of this.sessions) session.drain(end);
    for (const tunnel of this.reverse.snapshot()) this.reverse.remove(tunnel);
    for (const channel of this.reverseChannels) channel.closeWhenIdle();
  }

  private acceptForward(call: ForwardRpc): void {
    const peerOffer = takePeerChunkOffer(call.metadata);
    if (this.draining) {
      refuse(call, Status.UNAVAILABLE, 'the server is shutting down');
      return;
    }
    this.raiseWindows(call);
    const offer = chunkOffer(this.options.maxChunkSize, serverReceiveLimit(call));
    sendNegotiationHeaders(call, this.keepalive, offer);
    const negotiated = call.metadata.get(NEGOTIATE_HEADER)[0] === NEGOTIATE_ON;
    let ended = false;
    const endRpc = (code: Status, details: string) => {
      if (ended) return;
      ended = true;
      if (code === Status.OK) call.end();
      else refuse(call, code, details);
    };
    const session: TunnelServerSession = new TunnelServerSession(
      call,
      negotiated,
      this.registry,
      tunnelInfo('forward', call),
      this.options,
      () => call.getMetricsRecorder(),
      (status) => {
        peerFaults.log(`${status.message} (tunnel from ${call.getPeer()})`);
        this.sessions.delete(session);
        endRpc(status.code, status.message);
      },
      this.windows,
      tunnelChunkSizes(offer, peerOffer),
    );
    const unwatch = this.keepalive.watch(call, (cause) => {
      this.sessions.delete(session);
      session.close(localStatus(Status.UNAVAILABLE, cause.message));
    });
    this.sessions.set(session, () => {
      unwatch();
      this.sessions.delete(session);
      session.close(localStatus(Status.UNAVAILABLE, 'the server is shutting down'));
      endRpc(Status.OK, 'OK');
    });
    const finish = (message: string) => {
      unwatch();
      this.sessions.delete(session);
      session.close(localStatus(Status.CANCELLED, message));
    };
    call.on('end', () => {
      finish('the tunnel client closed the tunnel');
      endRpc(Status.OK, 'OK');
    });
    call.on('cancelled', () => {
      ended = true;
      finish('the tunnel was cancelled');
    });
    call.on('error', () => {
      ended = true;
      finish('the tunnel failed');
    });
  }

  private acceptReverse(call: ReverseRpc): void {
    const peerOffer = takePeerChunkOffer(call.metadata);
    if (this.options.noReverseTunnels) {
      refuse(call, Status.UNIMPLEMENTED, 'this server does not accept reverse tunnels');
      return;
    }
    if (this.draining) {
      refuse(call, Status.UNAVAILABLE, 'the server is shutting down');
      return;
    }
    const info = tunnelInfo('reverse', call);
    let key: unknown;
    try {
      key = this.options.affinityKey?.(info);
    } catch (err) {
      const { code, details } = refusalOf(err);
      refuse(call, code, details);
      return;
    }
    this.raiseWindows(call);
    // The drain handshake: a tunnel server of this project that drains tells
    // us so, and we end the tunnel once idle (see drain-notice.ts).
    const offer = chunkOffer(this.options.maxChunkSize, serverReceiveLimit(call));
    sendNegotiationHeaders(call, this.keepalive, offer, true);
    const negotiated = call.metadata.get(NEGOTIATE_HEADER)[0] === NEGOTIATE_ON;
    let ended = false;
    let peerEnded = false;
    let retiring = false;
    let tunnel: ReverseTunnel | undefined;
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
    const channel: TunnelChannel = new TunnelChannel(
      frames,
      negotiated,
      tunnelTuning(this.options),
      { target: `reverse:${info.peer}`, peer: info.peer, authContext: info.authContext },
      (error) => {
        if (ended) return;
        ended = true;
        // A peer that half-closed is answered with OK: it ended cleanly.
        if (error && !peerEnded) refuse(call, Status.UNAVAILABLE, 'the reverse tunnel failed');
        else call.end();
      },
      (ready) => {
        if (this.draining || retiring) {
          ready.closeWhenIdle();
          return;
        }
        tunnel = { channel: ready, key, info, openedAt: new Date() };
        this.reverse.add(tunnel);
        this.notify(() => this.options.onReverseTunnelOpen?.(tunnel as ReverseTunnel));
        this.emit('reverseTunnelOpen', tunnel);
      },
      this.windows,
      tunnelChunkSizes(offer, peerOffer),
    );
    this.reverseChannels.add(channel);
    const unwatch = this.keepalive.watch(call, (cause) => channel.shutDown(cause));
    channel.once('close', (error: Error | undefined) => {
      unwatch();
      this.reverseChannels.delete(channel);
      if (!tunnel) return;
      this.reverse.remove(tunnel);
      const closed = tunnel;
      this.notify(() => this.options.onReverseTunnelClose?.(closed, error));
      this.emit('reverseTunnelClose', closed, error);
    });
    // Each end is a status: what the tunnel's calls in flight fail with, and
    // the error 'reverseTunnelClose' reports.
    call.on('end', () => {
      peerEnded = true;
      channel.shutDown(statusError(Status.UNAVAILABLE, 'the reverse tunnel server closed the tunnel'));
    });
    call.on('cancelled', () => {
      ended = true;
      channel.shutDown(statusError(Status.UNAVAILABLE, 'the reverse tunnel was cancelled'));
    });
    call.on('error', () => {
      ended = true;
      channel.shutDown(statusError(Status.UNAVAILABLE, 'the reverse tunnel failed'));
    });
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

function sendNegotiationHeaders(
  call: ForwardRpc | ReverseRpc,
  keepalive: ServerKeepalive,
  offer: number,
  drain = false,
): void {
  // Headers go out at once: the client learns the negotiation result (and
  // interceptors may add authentication material) before any frame.
  const headers = new Metadata();
  headers.set(NEGOTIATE_HEADER, NEGOTIATE_ON);
  if (drain) headers.set(DRAIN_HEADER, DRAIN_ON);
  advertiseChunkSize(headers, offer);
  keepalive.advertise(headers);
  call.sendMetadata(headers);
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
  const thrown = thrownStatus(err);
  if (thrown?.details !== undefined) return { code: thrown.code, details: thrown.details };
  experimental.log(logVerbosity.ERROR, `grpctunnel: the affinity-key function threw: ${err}`);
  return { code: Status.INTERNAL, details: 'failed to accept the reverse tunnel' };
}
