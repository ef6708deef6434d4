import {
  type CallOptions,
  type Client,
  Metadata,
  type ServerErrorResponse,
  type ServiceError,
  status as Status,
  type StatusObject,
} from '@grpc/grpc-js';
import { NEGOTIATE_HEADER, NEGOTIATE_ON } from '../engine/constants.js';
import {
  advertiseChunkSize,
  chunkOffer,
  clientReceiveLimit,
  serverReceiveLimit,
  type TunnelChunkSizes,
  takePeerChunkOffer,
  tunnelChunkSizes,
} from './chunk-size.js';
import { raiseClientHttp2Window } from './client/client-http2-window.js';
import { watchTunnelConnection } from './client/client-keepalive.js';
import type { DialedCall } from './client/dialed-call.js';
import { coreOf, type TunnelConnection } from './client/raw/connection.js';
import { RawTunnelCall } from './client/raw/raw-call.js';
import { TunnelRpcEnd } from './client/tunnel-rpc-end.js';
import { DRAIN_HEADER, DRAIN_ON } from './drain-notice.js';
import { statusError } from './errors.js';
import type { ResolvedKeepalive } from './keepalive.js';
import type { AcceptedCall } from './server/accepted-call.js';
import type { ServerKeepalive } from './server/server-keepalive.js';
import type { OnPeerGone } from './session-pinger.js';

// One tunnel RPC (OpenTunnel or OpenReverseTunnel) seen from either end.
// Four places run one: openTunnel and the ReverseTunnelServer dial it
// (DialedTunnelRpc), the handler accepts both kinds (AcceptedTunnelRpc). What
// they share lives here, once: the headers each end sends and reads
// (grpctunnel-negotiate, the large-chunk offer, the keepalive policy and the
// drain handshake), ending the RPC once and only once, the keepalive watch of
// its connection, and how the RPC's end and the tunnel's end map onto each
// other. Which engine runs on top (a channel or a session) is the caller's.

/** What the two ends of a tunnel RPC agreed on in its headers. */
export interface TunnelNegotiation {
  /** Whether the peer negotiates (protocol revision one is possible); false for a peer that never sends Settings. */
  readonly negotiated: boolean;
  /** Chunk sizes agreed with the peer: the protocol's unless both ends offered more. */
  readonly chunks: TunnelChunkSizes;
}

/** Whether tunnel RPC headers (request or response) say the sender negotiates. */
function negotiates(headers: Metadata): boolean {
  return headers.get(NEGOTIATE_HEADER)[0] === NEGOTIATE_ON;
}

/**
 * The error a tunnel reports when its RPC failed: the RPC's own code and
 * metadata, its details after `what` (which tunnel RPC it was).
 */
export function rpcFailure(status: Pick<StatusObject, 'code' | 'details' | 'metadata'>, what: string): ServiceError {
  return statusError(status.code, `${what}: ${status.details}`, status.metadata);
}

/** Options of {@link DialedTunnelRpc}. */
export interface DialTunnelRpcOptions<Out, In> {
  /**
   * What carries the tunnel: a grpc-js client (the RPC is a grpc-js call,
   * through its interceptors) or the library's own connection (the RPC is a
   * RawTunnelCall on its HTTP/2 session; of `callOptions` only the deadline applies).
   */
  readonly via: { readonly client: Client } | { readonly connection: TunnelConnection };
  /** OPEN_TUNNEL_PATH or OPEN_REVERSE_TUNNEL_PATH. */
  readonly path: string;
  /** Encodes the frames this side sends. */
  readonly serialize: (value: Out) => Buffer;
  /** {@link DialTunnelRpcOptions.serialize} with the 5-byte gRPC prefix, for the library's own connection. */
  readonly frame: (value: Out) => Buffer;
  /** Decodes the frames the server sends. */
  readonly deserialize: (bytes: Buffer) => In;
  /** The user's request metadata; copied, never changed. */
  readonly metadata?: Metadata | undefined;
  /** grpc-js call options of the tunnel RPC (a deadline bounds the tunnel's life). */
  readonly callOptions?: CallOptions | undefined;
  /** The user's `maxChunkSize` tunnel option. */
  readonly maxChunkSize?: number | undefined;
  /** Resolved keepalive settings; undefined when off. */
  readonly keepalive: ResolvedKeepalive | undefined;
  /** The user's `http2WindowSize` option. */
  readonly http2WindowSize?: number | undefined;
}

/** What the server said in the response headers of a dialed tunnel RPC. */
export interface DialedAnswer extends TunnelNegotiation {
  /** The response headers, without the chunk offer (this library's business, not the user's). */
  readonly headers: Metadata;
  /** Whether the server takes part in the drain handshake (drain-notice.ts). */
  readonly peerDrains: boolean;
}

/**
 * A tunnel RPC this side opened (the gRPC client): `openTunnel` and the
 * `ReverseTunnelServer`. Sends the negotiation headers, reads the server's
 * answer, watches the connection and ends the RPC without an HTTP/2 reset
 * wherever the server allows it (TunnelRpcEnd).
 */
export class DialedTunnelRpc<Out, In> {
  /** The RPC: a grpc-js call or a RawTunnelCall (the same events, see DialedCall). */
  readonly call: DialedCall<Out, In>;
  /** The request metadata sent: the user's, with this library's headers added. */
  readonly metadata: Metadata;
  /**
   * The RPC as an engine's frame stream. After {@link DialedTunnelRpc.halfClose}
   * nothing can be answered: frames still on their way (new streams the
   * server sent before it saw the end) are dropped, never served, and writes
   * complete without a write after end.
   */
  readonly frames: {
    write(frame: Out, callback: () => void): boolean;
    on(event: 'data', listener: (frame: In) => void): unknown;
  };
  private readonly ending: TunnelRpcEnd;
  private readonly offer: number;
  private ended = false;
  private halfClosed = false;

  constructor(private readonly options: DialTunnelRpcOptions<Out, In>) {
    const { via } = options;
    this.metadata = options.metadata?.clone() ?? new Metadata();
    this.metadata.set(NEGOTIATE_HEADER, NEGOTIATE_ON);
    const receiveLimit =
      'client' in via ? clientReceiveLimit(via.client.getChannel()) : coreOf(via.connection).maxReceiveMessageLength;
    this.offer = chunkOffer(options.maxChunkSize, receiveLimit);
    advertiseChunkSize(this.metadata, this.offer);
    this.call =
      'client' in via
        ? via.client.makeBidiStreamRequest(
            options.path,
            options.serialize,
            options.deserialize,
            this.metadata,
            options.callOptions ?? {},
          )
        : new RawTunnelCall({
            connection: via.connection,
            path: options.path,
            frame: options.frame,
            deserialize: options.deserialize,
            metadata: this.metadata,
            deadline: options.callOptions?.deadline,
          });
    // Listens first, so it knows whether the server answered before anything else reacts.
    this.ending = new TunnelRpcEnd(this.call);
    const call = this.call;
    this.frames = {
      write: (frame, callback) => {
        if (!this.halfClosed) return call.write(frame, callback);
        process.nextTick(callback);
        return true;
      },
      on: (_event, listener) =>
        call.on('data', (frame: In) => {
          if (!this.halfClosed) listener(frame);
        }),
    };
  }

  /** Whether this side ended the RPC ({@link DialedTunnelRpc.end}): then its status is this side's doing. */
  get endedHere(): boolean {
    return this.ended;
  }

  /**
   * Runs `listener` once the server's response headers arrive, after the
   * connection's receive windows were raised (so what the server sends next
   * comes at the larger window) and the negotiation was read.
   */
  onAnswer(listener: (answer: DialedAnswer) => void): void {
    this.call.on('metadata', (headers: Metadata) => {
      raiseClientHttp2Window(this.call, this.options.http2WindowSize);
      const negotiated = negotiates(headers);
      const chunks = tunnelChunkSizes(this.offer, takePeerChunkOffer(headers));
      listener({ headers, negotiated, chunks, peerDrains: headers.get(DRAIN_HEADER)[0] === DRAIN_ON });
    });
  }

  /**
   * Pings the connection at the rate the server's `headers` allow until the
   * RPC's status arrives or the returned function is called; `onPeerGone`
   * runs when the server stops answering.
   */
  watchConnection(headers: Metadata, onPeerGone: OnPeerGone): () => void {
    const unwatch = watchTunnelConnection(this.call, headers, this.options.keepalive, onPeerGone);
    this.call.on('status', unwatch);
    return unwatch;
  }

  /** This side is done with the tunnel: half-close, cancel after a grace period (TunnelRpcEnd.end). */
  end(): void {
    this.ended = true;
    this.ending.end();
  }

  /** No more frames from this side; the server finishes the RPC when it likes (a graceful drain). */
  halfClose(): void {
    if (this.halfClosed) return;
    this.halfClosed = true;
    this.ending.halfClose();
  }

  /**
   * Runs `listener` when the RPC ends under a tunnel that is meant to be
   * up, with the error the tunnel ends with: the server finishing the RPC
   * means it ended the tunnel (UNAVAILABLE, `serverEnded`); a failure is the
   * RPC's own status after `what` (see {@link rpcFailure}), or passed on as
   * it came once this side had ended the RPC (then it is only the echo).
   */
  onEnd(what: string, serverEnded: string, listener: (error: ServiceError) => void): void {
    this.call.on('error', (error: ServiceError) => listener(this.ended ? error : rpcFailure(error, what)));
    this.call.on('end', () => listener(statusError(Status.UNAVAILABLE, serverEnded)));
  }

  /**
   * The tunnel's outcome from the RPC's final status: clean when the
   * server finished it with OK, or when this side ended it and the server
   * answered the half-close (OK) or the grace ran out (CANCELLED);
   * otherwise the RPC's failure (see {@link rpcFailure}).
   */
  outcome(status: StatusObject, what: string): ServiceError | undefined {
    if (status.code === Status.OK) return undefined;
    if (this.ended && status.code === Status.CANCELLED) return undefined;
    return rpcFailure(status, what);
  }
}

/** How an accepted tunnel RPC ended on the client's side. */
export type AcceptedRpcEnd =
  /** The client half-closed: it ended the tunnel cleanly, and is answered with OK. */
  | 'closed'
  /** The client cancelled it (or its connection went): nothing can be answered. */
  | 'cancelled'
  /** The RPC failed (including this side refusing it): nothing more can be answered. */
  | 'failed';

/** Options of {@link AcceptedTunnelRpc.accept}. */
export interface AcceptTunnelRpcOptions {
  /** The handler's `maxChunkSize` tunnel option. */
  readonly maxChunkSize?: number | undefined;
  /** Advertises the ping policy and watches the connection. */
  readonly keepalive: ServerKeepalive;
  /** Offer the drain handshake (reverse tunnels: drain-notice.ts). */
  readonly drain?: boolean | undefined;
}

type AnyServerRpc = AcceptedCall<unknown, unknown>;

/**
 * A tunnel RPC this side accepted (the gRPC server): the handler's forward
 * and reverse tunnels. Create it first thing, since it takes the client's
 * chunk offer out of the request metadata before anyone else sees it.
 */
export class AcceptedTunnelRpc {
  private readonly peerOffer: string | undefined;
  private ended = false;
  private peerClosed = false;
  private unwatch: () => void = () => {};

  constructor(private readonly call: AnyServerRpc) {
    this.peerOffer = takePeerChunkOffer(call.metadata);
  }

  /** Refuses the tunnel: fails the RPC with `code` and `details`. */
  refuse(code: Status, details: string): void {
    this.call.emit('error', { code, details } as Partial<ServerErrorResponse>);
  }

  /**
   * Accepts the tunnel: sends the response headers at once (the client
   * learns the negotiation result, and interceptors may add authentication
   * material, before any frame) and returns what was agreed.
   */
  accept(options: AcceptTunnelRpcOptions): TunnelNegotiation {
    const offer = chunkOffer(options.maxChunkSize, serverReceiveLimit(this.call));
    const headers = new Metadata();
    headers.set(NEGOTIATE_HEADER, NEGOTIATE_ON);
    if (options.drain) headers.set(DRAIN_HEADER, DRAIN_ON);
    advertiseChunkSize(headers, offer);
    options.keepalive.advertise(headers);
    this.call.sendMetadata(headers);
    return { negotiated: negotiates(this.call.metadata), chunks: tunnelChunkSizes(offer, this.peerOffer) };
  }

  /**
   * Pings the RPC's connection until the RPC ends; `onPeerGone` runs (and
   * the connection is destroyed) when the client stops answering.
   */
  watchConnection(keepalive: ServerKeepalive, onPeerGone: OnPeerGone): void {
    this.unwatch = keepalive.watch(this.call, onPeerGone);
  }

  /**
   * Runs `listener` when the client ends the RPC, saying how. After a
   * cancel or a failure nothing is answered any more.
   */
  onEnd(listener: (how: AcceptedRpcEnd) => void): void {
    this.call.on('end', () => {
      this.peerClosed = true;
      this.unwatch();
      listener('closed');
    });
    this.call.on('cancelled', () => {
      this.ended = true;
      this.unwatch();
      listener('cancelled');
    });
    this.call.on('error', () => {
      this.ended = true;
      this.unwatch();
      listener('failed');
    });
  }

  /** Finishes the RPC, once: with OK, or failing it with `code` and `details`. */
  finish(code: Status = Status.OK, details = 'OK'): void {
    if (this.ended) return;
    this.ended = true;
    this.unwatch();
    if (code === Status.OK) this.call.end();
    else this.refuse(code, details);
  }

  /**
   * Finishes the RPC for a tunnel that ended with `error` (undefined: ended
   * cleanly): a failed tunnel fails its RPC with UNAVAILABLE and `details`
   * (never the error's own text, which may be internal), or with the status
   * this side's user closed it with, unless the client had half-closed,
   * which is a clean end answered with OK.
   */
  finishTunnel(error: Error | undefined, details: string, closedWith?: { code: Status; details: string }): void {
    if (this.peerClosed || (!error && !closedWith)) this.finish();
    else if (closedWith) this.finish(closedWith.code, closedWith.details);
    else this.finish(Status.UNAVAILABLE, details);
  }
}
