// A TCP relay that counts the HTTP/2 frames crossing it, by direction and
// frame type. Tests put it between a grpc-js client and a server to see what
// travels on the wire (RST_STREAM from the client, GOAWAY from the server)
// without instrumenting either side.
import net from 'node:net';

/** HTTP/2 frame types (RFC 9113 §6) the tests look at. */
export const FrameType = { DATA: 0, HEADERS: 1, RST_STREAM: 3, GOAWAY: 7 } as const;

/** The 24-byte client connection preface that precedes the client's first frame. */
const PREFACE_LENGTH = 24;
const FRAME_HEADER_LENGTH = 9;

/** Reads frame headers out of one direction of a connection, skipping payloads. */
class FrameCounter {
  readonly byType = new Map<number, number>();
  private readonly header = Buffer.alloc(FRAME_HEADER_LENGTH);
  private headerBytes = 0;
  private skip: number;

  constructor(preface: number) {
    this.skip = preface;
  }

  push(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - i);
        this.skip -= n;
        i += n;
        continue;
      }
      const n = Math.min(FRAME_HEADER_LENGTH - this.headerBytes, chunk.length - i);
      chunk.copy(this.header, this.headerBytes, i, i + n);
      this.headerBytes += n;
      i += n;
      if (this.headerBytes < FRAME_HEADER_LENGTH) continue;
      this.headerBytes = 0;
      const type = this.header[3] as number;
      this.byType.set(type, (this.byType.get(type) ?? 0) + 1);
      this.skip = this.header.readUIntBE(0, 3);
    }
  }
}

/** A running frame-counting relay. */
export interface FrameTap {
  /** Where clients connect (host:port); traffic goes on to the target. */
  readonly address: string;
  /** Frames of `type` the clients sent, over every connection so far. */
  fromClient(type: number): number;
  /** Frames of `type` the server sent, over every connection so far. */
  fromServer(type: number): number;
  /** Stops listening and drops every relayed connection. */
  close(): Promise<void>;
}

/** Starts a relay on 127.0.0.1 to `target` (host:port). */
export async function startFrameTap(target: string): Promise<FrameTap> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const toServer: FrameCounter[] = [];
  const toClient: FrameCounter[] = [];
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
  };
  const server = net.createServer((downstream) => {
    const upstream = net.connect(port, host);
    track(downstream);
    track(upstream);
    const up = new FrameCounter(PREFACE_LENGTH);
    const down = new FrameCounter(0);
    toServer.push(up);
    toClient.push(down);
    downstream.on('data', (chunk: Buffer) => up.push(chunk));
    upstream.on('data', (chunk: Buffer) => down.push(chunk));
    downstream.pipe(upstream);
    upstream.pipe(downstream);
    downstream.on('close', () => upstream.destroy());
    upstream.on('close', () => downstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: tapPort } = server.address() as net.AddressInfo;
  const sum = (counters: FrameCounter[], type: number) =>
    counters.reduce((n, counter) => n + (counter.byType.get(type) ?? 0), 0);
  return {
    address: `127.0.0.1:${tapPort}`,
    fromClient: (type) => sum(toServer, type),
    fromServer: (type) => sum(toClient, type),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
