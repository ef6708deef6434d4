// A raw node:http2 server that answers OpenTunnel as a Go grpctunnel server
// would (response headers at once, then nothing while the tunnel is idle) and
// enforces grpc-go's server keepalive policy on its clients' pings, as
// grpc-go's http2Server.handlePing does: a ping arriving sooner than MinTime
// after the previous one (2 hours without active streams, since
// PermitWithoutStream is false by default) is a strike, the server sending
// headers or data wipes the strikes, and more than two strikes get GOAWAY
// ENHANCE_YOUR_CALM "too_many_pings" and the connection closed.
import http2 from 'node:http2';
import { OPEN_TUNNEL_PATH } from 'grpctunnel/protocol';
import { WaitableCount } from './waitable-count.js';

const TWO_HOURS_MS = 2 * 3_600_000;
const MAX_PING_STRIKES = 2;

export interface GoPolicyServer {
  readonly address: string;
  /** Pings received, over all connections. */
  readonly pings: number;
  /** Pings received on each connection, in the order they were accepted. */
  pingsPerConnection(): number[];
  /** Times it sent GOAWAY too_many_pings. */
  readonly goaways: number;
  /** Resolves once `n` pings have arrived, over all connections. */
  waitForPings(n: number): Promise<void>;
  /** Resolves once it has sent `n` GOAWAYs. */
  waitForGoaways(n: number): Promise<void>;
  close(): Promise<void>;
}

export async function startGoPolicyServer(options: {
  /** grpc-go's EnforcementPolicy.MinTime; default 5 minutes as grpc-go's. */
  minTimeMs?: number;
  /** Extra response headers of the tunnel RPC (e.g. a keepalive advertisement). */
  headers?: Record<string, string>;
}): Promise<GoPolicyServer> {
  const minTimeMs = options.minTimeMs ?? 5 * 60_000;
  const pings = new WaitableCount();
  const goaways = new WaitableCount();
  const sessions = new Set<http2.ServerHttp2Session>();
  const perConnection: number[] = [];
  const server = http2.createServer();
  server.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
    session.on('error', () => {});
    let activeStreams = 0;
    let lastPingAt = 0;
    let strikes = 0;
    let resetStrikes = false;
    const index = perConnection.push(0) - 1;
    session.on('stream', (stream, headers) => {
      activeStreams++;
      stream.on('close', () => activeStreams--);
      stream.on('error', () => {});
      if (headers[':path'] !== OPEN_TUNNEL_PATH) {
        stream.respond(
          { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12' },
          { endStream: true },
        );
        return;
      }
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...options.headers });
      resetStrikes = true; // grpc-go: writing headers resets the ping strikes
      stream.resume(); // read (and drop) whatever the client sends; send nothing
    });
    session.on('ping', () => {
      perConnection[index] = (perConnection[index] ?? 0) + 1;
      const now = Date.now();
      const last = lastPingAt;
      lastPingAt = now;
      if (resetStrikes) {
        resetStrikes = false;
        strikes = 0;
      } else if (last + (activeStreams < 1 ? TWO_HOURS_MS : minTimeMs) > now) {
        strikes++;
      }
      if (strikes > MAX_PING_STRIKES) {
        goaways.increment();
        session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, 0, Buffer.from('too_many_pings'));
        session.close();
      }
      pings.increment();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no address');
  return {
    address: `127.0.0.1:${address.port}`,
    get pings() {
      return pings.value;
    },
    pingsPerConnection: () => [...perConnection],
    get goaways() {
      return goaways.value;
    },
    waitForPings: (n) => pings.until(n),
    waitForGoaways: (n) => goaways.until(n),
    close() {
      for (const s of sessions) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
