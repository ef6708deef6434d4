// A TCP proxy that can turn into a black hole: its connections stay open on
// both sides but stop carrying bytes, as through a NAT that dropped its
// mapping or a cable that was pulled. Closing one side is not passed on
// either, once black-holed: the other side hears nothing, ever.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { WaitableCount } from './waitable-count.js';

export interface BlackholeProxy {
  /** host:port to dial instead of the target. */
  readonly address: string;
  /** Connections accepted so far. */
  readonly connections: number;
  /**
   * From now on, every connection open now drops what it receives in the
   * given direction (default both; toTarget: what the dialer sends), and no
   * longer passes on a close. New connections forward normally.
   */
  blackhole(direction?: 'both' | 'toTarget' | 'fromTarget'): void;
  /** Resolves once `n` connections have been accepted. */
  waitForConnections(n: number): Promise<void>;
  /** Destroys every socket and stops listening. */
  close(): Promise<void>;
}

export async function startBlackholeProxy(target: string): Promise<BlackholeProxy> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const sockets = new Set<Socket>();
  const pairs: { a: Socket; b: Socket; dead: boolean; deadUp: boolean; deadDown: boolean }[] = [];
  const accepted = new WaitableCount();
  const server: Server = createServer((a) => {
    const b = createConnection({ host, port });
    const pair = { a, b, dead: false, deadUp: false, deadDown: false };
    pairs.push(pair);
    for (const s of [a, b]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    a.on('data', (chunk) => {
      if (!pair.deadUp) b.write(chunk);
    });
    b.on('data', (chunk) => {
      if (!pair.deadDown) a.write(chunk);
    });
    a.on('close', () => {
      if (!pair.dead) b.destroy();
    });
    b.on('close', () => {
      if (!pair.dead) a.destroy();
    });
    accepted.increment();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no address');
  return {
    address: `127.0.0.1:${address.port}`,
    get connections() {
      return accepted.value;
    },
    blackhole(direction = 'both') {
      for (const pair of pairs) {
        pair.dead = true;
        if (direction !== 'fromTarget') pair.deadUp = true;
        if (direction !== 'toTarget') pair.deadDown = true;
      }
    },
    waitForConnections: (n) => accepted.until(n),
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
