// Bounds what one network peer can hold at the gateway's ports: connections
// at once per address, and connections that carry nothing. Without them, a
// slow trickle of idle sockets (or of HTTP/2 sessions that never open a
// stream) would exhaust the gateway's file descriptors and memory.
import type http2 from 'node:http2';
import net from 'node:net';
import type { Server, ServerCredentials } from '@grpc/grpc-js';
import { listenHttp2 } from './net.js';

/** Limits of one listening port. */
export interface PeerLimits {
  /** Connections one remote address may hold at once; more are closed at once. */
  maxConnectionsPerPeer: number;
  /** A connection that sends nothing, or holds no stream, for this long is closed (ms). */
  idleTimeoutMs: number;
}

/** Default limits: generous for NAT-shared addresses, tight enough to stop a trickle. */
export const DEFAULT_PEER_LIMITS: PeerLimits = { maxConnectionsPerPeer: 256, idleTimeoutMs: 5 * 60_000 };

/** Why a connection was turned away or closed, for logs and metrics. */
export type ConnectionRefusal = 'too-many-connections' | 'idle';

/**
 * Counts connections per remote address and closes those over the limit or
 * silent for longer than the idle timeout. Sockets that carry live HTTP/2
 * sessions are never silent for long: keepalive pings cross them.
 */
export class PeerConnectionGuard {
  private readonly perPeer = new Map<string, number>();

  constructor(
    private readonly limits: PeerLimits,
    private readonly onRefused: (peer: string, why: ConnectionRefusal) => void,
  ) {}

  /** Connections open now. */
  get connections(): number {
    let n = 0;
    for (const count of this.perPeer.values()) n += count;
    return n;
  }

  /** Takes a new connection: false (the socket destroyed) when its peer already holds its share. */
  accept(socket: net.Socket): boolean {
    const peer = socket.remoteAddress ?? 'unknown';
    const held = this.perPeer.get(peer) ?? 0;
    if (held >= this.limits.maxConnectionsPerPeer) {
      this.onRefused(peer, 'too-many-connections');
      socket.destroy();
      return false;
    }
    this.perPeer.set(peer, held + 1);
    socket.once('close', () => {
      const n = (this.perPeer.get(peer) ?? 1) - 1;
      if (n > 0) this.perPeer.set(peer, n);
      else this.perPeer.delete(peer);
    });
    return true;
  }

  /**
   * Resolves true once the connection has sent its first bytes (left unread
   * in its buffer, where node:http2 takes them from); false, with the socket
   * destroyed, when it stays silent for the idle timeout. Once grpc-js owns a
   * socket, destroying it no longer ends the HTTP/2 session, so silence is
   * judged before handing it over; after that, grpc-js's own idle timeout
   * (sessions with no stream) and keepalive take over.
   */
  firstBytes(socket: net.Socket): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        socket.removeListener('readable', onReadable);
        socket.removeListener('close', onClose);
        if (!ok && !socket.destroyed) {
          this.onRefused(socket.remoteAddress ?? 'unknown', 'idle');
          socket.destroy();
        }
        resolve(ok);
      };
      const onReadable = () => done(socket.readableLength > 0);
      const onClose = () => done(false);
      const timer = setTimeout(() => done(false), this.limits.idleTimeoutMs);
      socket.on('readable', onReadable);
      socket.once('close', onClose);
    });
  }
}

/** A port whose connections pass the guard before grpc-js serves them. */
export interface GuardedPort {
  readonly address: string;
  close(): Promise<void>;
}

/**
 * Serves a grpc-js server on `address` through a TCP listener of our own
 * (grpc-js's connection injector), so the guard sees every connection first.
 * Give the grpc-js server `grpc.max_connection_idle_ms` too: it closes HTTP/2
 * sessions that hold no stream, which byte silence alone would not catch.
 */
export async function listenGuarded(
  server: Server,
  address: string,
  credentials: ServerCredentials,
  guard: PeerConnectionGuard,
): Promise<GuardedPort> {
  const injector = server.createConnectionInjector(credentials);
  /** Sockets still waiting for their first bytes: ours to close until grpc-js takes them. */
  const pending = new Set<net.Socket>();
  const tcp = net.createServer((socket) => {
    // A peer may reset the connection at any moment: that is its business,
    // never an unhandled 'error' that ends the gateway.
    socket.on('error', () => {});
    if (!guard.accept(socket)) return;
    pending.add(socket);
    void guard.firstBytes(socket).then((ok) => {
      pending.delete(socket);
      if (ok) injector.injectConnection(socket);
    });
  });
  const bound = await listenHttp2(tcp, address);
  return {
    address: bound,
    close: () =>
      new Promise<void>((done) => {
        tcp.close(() => done());
        injector.destroy();
        for (const socket of pending) socket.destroy();
      }),
  };
}

/**
 * Closes HTTP/2 sessions of a node:http2 server that hold no stream for
 * `idleTimeoutMs` (they may still be sending pings, so byte silence does
 * not catch them).
 */
export function closeIdleSessions(server: http2.Http2Server | http2.Http2SecureServer, idleTimeoutMs: number): void {
  server.on('session', (session: http2.ServerHttp2Session) => {
    let streams = 0;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      timer = setTimeout(() => session.close(), idleTimeoutMs);
      timer.unref();
    };
    arm();
    session.on('stream', (stream: http2.ServerHttp2Stream) => {
      streams++;
      if (timer) clearTimeout(timer);
      timer = undefined;
      stream.once('close', () => {
        if (--streams === 0 && !session.closed && !session.destroyed) arm();
      });
    });
    session.once('close', () => {
      if (timer) clearTimeout(timer);
    });
  });
}
