import { EventEmitter } from 'node:events';
import {
  type ClientHttp2Session,
  type ClientSessionOptions,
  connect,
  type SecureClientSessionOptions,
} from 'node:http2';
import { isIP } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Client } from '@grpc/grpc-js';
import { DEFAULT_HTTP2_WINDOW_SIZE, raiseSessionWindow } from '../../http2-window.js';
import { checkTunnelConnection } from '../../options-check.js';

// The library's own HTTP/2 connection to a tunnel server: the tunnel RPCs
// opened on it skip grpc-js's client call stack (resolving, retrying and
// load-balancing calls, filters, a Readable per call), which measured as
// the cost per tunnel frame on the client side (issue 16). A user who needs
// grpc-js's channel features on the tunnel RPC (interceptors, call
// credentials, service config, name resolution) passes a grpc-js Client or
// Channel instead, as before.

/** TLS settings of a {@link TunnelConnection}: `node:tls` options; ALPN is always h2. */
export interface TunnelConnectionTls {
  /** Trusted CA certificates (PEM); default Node's. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Client certificate chain (PEM), for mutual TLS. */
  cert?: string | Buffer | Array<string | Buffer>;
  /** Client private key (PEM), for mutual TLS. */
  key?: string | Buffer | Array<string | Buffer>;
  /** Server name for SNI and certificate checks; default the address's host when it is a name, none for an IP address. */
  servername?: string;
  /** Whether to refuse a server whose certificate does not verify; default true. */
  rejectUnauthorized?: boolean;
}

/** Options of {@link TunnelConnection}. */
export interface TunnelConnectionOptions {
  /** `false` (default): plaintext HTTP/2 (h2c), as `credentials.createInsecure()`; `true`: TLS with Node's CAs; or TLS settings. */
  tls?: boolean | TunnelConnectionTls;
  /** The `:authority` of tunnel RPCs; default the address. */
  authority?: string;
  /**
   * HTTP/2 receive window, in bytes, of the connection and of each of its
   * streams, from its first byte. Default 1 MiB (see `http2WindowSize` of
   * `openTunnel`).
   */
  http2WindowSize?: number;
  /** Longest message the server may send on a tunnel RPC; default grpc-js's 4 MiB; -1: no limit. */
  maxReceiveMessageLength?: number;
  /**
   * Longest wait, in ms, for a connection (TCP, and TLS when used) to come
   * up; then the tunnel RPCs waiting on it fail with UNAVAILABLE and the
   * next tunnel dials again. Default 20 s, grpc-js's minimum connect timeout,
   * so a server that drops packets is given up on as a grpc-js client would,
   * not after the system's TCP timeout of minutes.
   */
  connectTimeoutMs?: number;
}

/** Why a {@link TunnelConnection}'s HTTP/2 connection stopped taking new tunnels. */
export type TunnelDisconnectReason =
  /** The server sent GOAWAY (it is shutting down): tunnels already on the connection run on until they end. */
  | 'goaway'
  /** The connection closed: lost, ended by the server, or {@link TunnelConnection.close} was called. */
  | 'closed';

/** The events of a {@link TunnelConnection}, with the arguments each listener gets. */
export interface TunnelConnectionEvents {
  /**
   * Emitted once per HTTP/2 connection that had been established, as soon as
   * it stops taking new tunnels: the moment a grpc-js channel leaves READY.
   * After `'goaway'`, the tunnels on it go on until the server ends them
   * (with a draining server, once their calls have finished), so this is the
   * time to open a replacement elsewhere. The next tunnel opened on this
   * TunnelConnection dials a new connection.
   */
  disconnect: [reason: TunnelDisconnectReason];
}

/** grpc-js's default `grpc.max_receive_message_length`. */
const DEFAULT_MAX_RECEIVE = 4 * 1024 * 1024;

/** grpc-js's minimum connect timeout. */
const DEFAULT_CONNECT_TIMEOUT_MS = 20_000;

/**
 * A connection to a tunnel server made and owned by this library: pass it
 * to `openTunnel` or `ReverseTunnelServer` instead of a grpc-js client. The
 * tunnel RPCs opened on it run on Node's HTTP/2 directly, with no grpc-js
 * call under them, which is faster per tunnel frame. Every tunnel opened on
 * it shares one HTTP/2 session, dialed when the first tunnel opens and
 * dialed again for the next tunnel once it has closed or the server sent
 * GOAWAY. `close()` ends it: tunnels on it finish (the server ends their
 * RPCs), no new ones can open. Use a grpc-js client instead when the tunnel
 * RPC itself needs grpc-js's features (interceptors, call credentials, name
 * resolution, channel options).
 *
 * Events: see {@link TunnelConnectionEvents} (`'disconnect'` tells when the
 * server is going away, as a grpc-js channel leaving READY does).
 */
export class TunnelConnection extends EventEmitter<TunnelConnectionEvents> {
  /** `host:port` of the tunnel server. */
  readonly address: string;
  /** The `:authority` tunnel RPCs carry. */
  readonly authority: string;

  /** Throws a RangeError or TypeError for an address or option it cannot use. */
  constructor(address: string, options: TunnelConnectionOptions = {}) {
    super();
    checkTunnelConnection(address, options);
    const core = new ConnectionCore(address, options, (reason) => this.emit('disconnect', reason));
    cores.set(this, core);
    this.address = core.address;
    this.authority = core.authority;
  }

  /** Closes the connection: no new tunnels; the session closes once its tunnel RPCs have ended. */
  close(): void {
    coreOf(this).close();
  }
}

const cores = new WeakMap<TunnelConnection, ConnectionCore>();

/** The workings of a {@link TunnelConnection}, for the library's tunnel RPCs. */
export function coreOf(connection: TunnelConnection): ConnectionCore {
  const core = cores.get(connection);
  if (!core) throw new TypeError('not a TunnelConnection made by this library');
  return core;
}

/**
 * What a {@link TunnelConnection} does, kept out of its published
 * declarations: the library's tunnel RPCs reach it through {@link coreOf}.
 */
export class ConnectionCore {
  /** `host:port` of the tunnel server. */
  readonly address: string;
  /** The `:authority` tunnel RPCs carry. */
  readonly authority: string;
  /** The `:scheme` of tunnel RPCs. */
  readonly scheme: 'http' | 'https';
  /** Longest message accepted from the server (-1: no limit). */
  readonly maxReceiveMessageLength: number;
  private readonly windowSize: number;
  private readonly connectTimeoutMs: number;
  private readonly tls: TunnelConnectionTls | undefined;
  private current: ClientHttp2Session | undefined;
  private closed = false;

  constructor(
    address: string,
    options: TunnelConnectionOptions,
    private readonly onDisconnect: (reason: TunnelDisconnectReason) => void = () => {},
  ) {
    this.address = address;
    this.authority = options.authority ?? address;
    this.tls = options.tls === true ? {} : options.tls || undefined;
    this.scheme = this.tls ? 'https' : 'http';
    this.windowSize = options.http2WindowSize ?? DEFAULT_HTTP2_WINDOW_SIZE;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.maxReceiveMessageLength = options.maxReceiveMessageLength ?? DEFAULT_MAX_RECEIVE;
  }

  /**
   * The session to open a tunnel RPC on: the current one while it can take
   * new streams, else a new one (requests made before it connects wait for
   * it). Throws once the connection is closed.
   */
  session(): ClientHttp2Session {
    if (this.closed) throw new Error('the tunnel connection was closed');
    const current = this.current;
    if (current && !current.closed && !current.destroyed && !goneAway.has(current)) return current;
    const session = this.dial();
    this.current = session;
    return session;
  }

  /**
   * Counts a tunnel RPC on `session` until the returned function
   * is called, and tells `onDropped` (with the session's error, if any) when
   * the session closes under it. A session with no tunnel RPC does not keep
   * the process alive (as grpc-js's connections): a program that ends its
   * tunnels can exit without closing the connection. The session's own
   * listeners are added once, in dial(), however many tunnels it carries.
   */
  hold(session: ClientHttp2Session, onDropped: (error: (Error & { code?: string }) | undefined) => void): () => void {
    const state = sessionStates.get(session);
    if (!state) return () => {};
    const entry = { onDropped };
    state.calls.add(entry);
    if (state.calls.size === 1 && !session.destroyed) session.ref();
    return () => {
      if (!state.calls.delete(entry)) return;
      if (state.calls.size === 0 && !session.destroyed) session.unref();
    };
  }

  /** The first error `session` reported, if any. */
  sessionError(session: ClientHttp2Session): (Error & { code?: string }) | undefined {
    return sessionStates.get(session)?.error;
  }

  /** Closes the connection: no new tunnels; the session closes once its tunnel RPCs have ended. */
  close(): void {
    this.closed = true;
    // Ended here, whatever the server answers to our GOAWAY.
    if (this.current) sessionStates.get(this.current)?.disconnected('closed');
    this.current?.close();
    this.current = undefined;
  }

  private dial(): ClientHttp2Session {
    const host = this.address.slice(0, this.address.lastIndexOf(':')).replace(/^\[|\]$/g, '');
    const settings = { initialWindowSize: this.windowSize === 0 ? 65_535 : this.windowSize };
    const options: ClientSessionOptions | SecureClientSessionOptions = this.tls
      ? {
          settings,
          ...this.tls,
          ...(this.tls.servername === undefined && isIP(host) === 0 && { servername: host }),
          ALPNProtocols: ['h2'],
        }
      : { settings };
    const session = connect(`${this.scheme}://${this.address}`, options);
    const state: SessionState = { calls: new Set(), error: undefined, disconnected: () => {} };
    sessionStates.set(session, state);
    // Errors reach the streams on the session (raw-call.ts reports them as statuses); an unheard one must not throw.
    session.on('error', (error: SessionError) => {
      state.error ??= error;
    });
    session.once('close', () => {
      for (const call of [...state.calls]) call.onDropped(state.error);
    });
    // Told once per established session: at GOAWAY, or at its close.
    let connected = false;
    let told = false;
    const disconnected = (reason: TunnelDisconnectReason) => {
      if (!connected || told) return;
      told = true;
      this.onDisconnect(reason);
    };
    state.disconnected = disconnected;
    session.once('goaway', () => {
      goneAway.add(session);
      disconnected('goaway');
    });
    session.once('close', () => disconnected('closed'));
    // Referenced only while it carries a tunnel RPC (see hold).
    session.unref();
    // Without a bound, a server that drops packets holds the dial for the
    // system's TCP timeout (minutes); the error is what the waiting RPCs report.
    const connectTimer = setTimeout(() => {
      const error: SessionError = new Error(`connection timed out after ${this.connectTimeoutMs} ms`);
      error.code = 'ETIMEDOUT';
      session.destroy(error);
    }, this.connectTimeoutMs);
    connectTimer.unref();
    session.once('close', () => clearTimeout(connectTimer));
    session.once('connect', () => {
      connected = true;
      clearTimeout(connectTimer);
      if (this.windowSize !== 0) raiseSessionWindow(session, this.windowSize);
    });
    session.once('close', () => {
      if (this.current === session) this.current = undefined;
    });
    return session;
  }
}

/** A Node error on a session or stream, with its code. */
export type SessionError = Error & { code?: string };

/** What a TunnelConnection keeps per session: the tunnel RPCs on it (see hold) and its first error. */
interface SessionState {
  readonly calls: Set<{ onDropped(error: SessionError | undefined): void }>;
  error: SessionError | undefined;
  /** Tells the connection's 'disconnect' listeners, once, if the session had connected. */
  disconnected(reason: TunnelDisconnectReason): void;
}

const sessionStates = new WeakMap<ClientHttp2Session, SessionState>();

/** Sessions that received GOAWAY: they take no new streams. */
const goneAway = new WeakSet<ClientHttp2Session>();

/**
 * The target a user sees for tunnels carried by `via` (a tunnel channel's
 * `getTarget()`, a reverse tunnel's `TunnelInfo.host`): the grpc-js
 * channel's target, or for a TunnelConnection the target a grpc-js channel
 * made with the same address reports, `dns:host:port` (the address is
 * always host:port), so both ways of carrying tunnels read the same.
 */
export function carrierTarget(via: { readonly client: Client } | { readonly connection: TunnelConnection }): string {
  return 'client' in via ? via.client.getChannel().getTarget() : `dns:${via.connection.address}`;
}

/** `address:port` of the server end of a session's socket, as grpc-js's `getPeer()` writes it. */
export function peerOf(session: ClientHttp2Session): string {
  const socket = session.socket as { remoteAddress?: string; remotePort?: number } | undefined;
  const address = socket?.remoteAddress;
  if (!address) return 'unknown';
  return `${isIP(address) === 6 ? `[${address}]` : address}:${socket?.remotePort}`;
}

/** What grpc-js reports as a client call's auth context: the server's certificate over verified TLS, else nothing. */
export function authContextOf(session: ClientHttp2Session): Record<string, unknown> {
  const socket = session.socket as Partial<TLSSocket> | undefined;
  if (socket?.encrypted && socket.authorized && typeof socket.getPeerCertificate === 'function') {
    return { transportSecurityType: 'ssl', sslPeerCertificate: socket.getPeerCertificate() };
  }
  return {};
}
